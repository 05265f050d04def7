#!/usr/bin/env bash
# pgaadauth-proxy vs direct token logins over TLS, side by side in one run: new connections
# (pgbench -C, 1 client) and statements on kept connections (4 clients, PgBouncer beside as a
# reference relay), rounds interleaved, medians of the per-round ratios against the goals (0.7
# and 0.8). Each round twice: the server on half the CPUs and pgbench and the proxy on the
# other half (as deployed; the goals), and every process on every CPU. Installs the release build
# of pgaadauth into PostgreSQL $PG_VERSION (default 15) and builds the proxy's release build
# first. BENCH_ROUNDS and BENCH_SECONDS tune it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PG_VERSIONS=${PG_VERSION:-15}
. scripts/pg.sh
scripts/install.sh --release
cargo build -q --release -p pgaadauth-proxy
PGAADAUTH_PROXY=target/release/pgaadauth-proxy PG_CONFIG=$(pg_config_for "$PG_VERSIONS") \
    cargo run -q --release -p pgaadauth-e2e --bin pgaadauth-proxy-bench
