#!/usr/bin/env bash
# Installs what pgaadauth needs (scripts/setup.sh), then builds and installs the extension into
# the PostgreSQL of $PG_CONFIG. Arguments go to `cargo pgrx install` (e.g. --release).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
if [ -w "$("$PG_CONFIG" --pkglibdir)" ]; then sudo_flag=(); else sudo_flag=(--sudo); fi
cargo pgrx install "$@" "${sudo_flag[@]}" --pg-config "$PG_CONFIG"
