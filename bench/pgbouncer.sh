#!/usr/bin/env bash
# Client logins through PgBouncer (pam_pgaadauth.so) vs direct token logins, the same token, side
# by side in one run (pgbench -C). Installs the release builds first (the extension into
# PostgreSQL $PG_VERSION, default 15, and the PAM module), and writes /etc/pam.d/pgbouncer.
# BENCH_ROUNDS, BENCH_SECONDS and BENCH_CLIENTS tune it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PG_VERSIONS=${PG_VERSION:-15}
. scripts/pg.sh
scripts/install.sh --release
PG_CONFIG=$(pg_config_for "$PG_VERSIONS") cargo run -q --release -p pgaadauth-e2e --bin pgaadauth-pgbouncer-bench
