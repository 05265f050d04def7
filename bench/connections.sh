#!/usr/bin/env bash
# Connection rate: token logins vs trust vs SCRAM, measured side by side with pgbench -C.
# Installs the release build of pgaadauth first. BENCH_ROUNDS, BENCH_SECONDS, BENCH_CLIENTS tune it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG
if [ -w "$("$PG_CONFIG" --pkglibdir)" ]; then sudo_flag=(); else sudo_flag=(--sudo); fi
cargo pgrx install --release "${sudo_flag[@]}" --pg-config "$PG_CONFIG"
cargo run -q --release -p pgaadauth-e2e --bin pgaadauth-bench
