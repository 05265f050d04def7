#!/usr/bin/env bash
# Runs every test: formatting and lints, unit tests and #[pg_test]s (cargo pgrx test), then the
# end-to-end tests against real clusters (pgrx-tests/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
results=$(mktemp)
trap 'rm -f "$results"' EXIT
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

# Layers 1 and 2: pure unit tests and #[pg_test]s in a server with pgaadauth preloaded.
pgdata=$(mktemp -d /tmp/pgaadauth-pgtest.XXXXXX)
if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$pgdata"; runas=(--runas postgres); else runas=(); fi
cargo pgrx test pg15 "${runas[@]}" --pgdata "$pgdata" 2>&1 | tee -a "$results"
rm -rf "$pgdata"

# Layer 3: end to end, with the extension installed into the system PostgreSQL.
scripts/install.sh
cargo test -p pgaadauth-e2e --test '*' -- --test-threads 4 2>&1 | tee -a "$results"

# One closing line for the whole run.
awk '/^test result:/ { p += $4; f += $6 } END { printf "all: %d passed, %d failed\n", p, f }' "$results"
