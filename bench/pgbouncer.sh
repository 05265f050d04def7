#!/usr/bin/env bash
# Client logins through PgBouncer (pam_pgaadauth.so, set up as docs/pgbouncer.md says: its own
# PAM view, the module waking PgBouncer) vs direct token logins, the same token, side by side in
# one run (pgbench -C), without and with TLS, at 1 and 8 clients; also wake=off, the machine's
# whole /etc/pam.d, two processes with so_reuseport, and PgBouncer's own trust (the ceiling).
# Installs the release builds first (the extension into PostgreSQL $PG_VERSION, default 15, and
# the PAM module). Touches nothing of the machine's PAM configuration. BENCH_ROUNDS,
# BENCH_SECONDS, BENCH_CLIENTS and BENCH_TLS tune it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PG_VERSIONS=${PG_VERSION:-15}
. scripts/pg.sh
scripts/install.sh --release
PG_CONFIG=$(pg_config_for "$PG_VERSIONS") cargo run -q --release -p pgaadauth-e2e --bin pgaadauth-pgbouncer-bench
