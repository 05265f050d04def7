#!/usr/bin/env bash
# What session identity, claims and revocations cost a token login: session_claims off vs on, no
# revocations vs 1,000 (with session_lifetime = token), and trust as the floor, side by side in
# one run (pgbench -C). Installs the release build into PostgreSQL $PG_VERSION (default 15).
# BENCH_ROUNDS, BENCH_SECONDS and BENCH_CLIENTS tune it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PG_VERSIONS=${PG_VERSION:-15}
. scripts/pg.sh
scripts/install.sh --release
PG_CONFIG=$(pg_config_for "$PG_VERSIONS") cargo run -q --release -p pgaadauth-e2e --bin pgaadauth-sessions-bench
