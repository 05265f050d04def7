#!/usr/bin/env bash
# The main job: build and install pgaadauth, start a throwaway cluster and a local identity
# provider, create a principal, and log in with a token using psql. Everything is stopped after.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG
if [ -w "$("$PG_CONFIG" --pkglibdir)" ]; then sudo_flag=(); else sudo_flag=(--sudo); fi
cargo pgrx install --release "${sudo_flag[@]}" --pg-config "$PG_CONFIG"
cargo run -q -p pgaadauth-e2e --bin pgaadauth-demo
