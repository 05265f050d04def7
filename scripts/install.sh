#!/usr/bin/env bash
# Installs what pgaadauth needs (scripts/setup.sh), then builds and installs the extension into
# each PostgreSQL major of $PG_VERSIONS (default: every supported one, scripts/pg.sh).
# Arguments go to `cargo pgrx install` (e.g. --release).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/pg.sh
for v in $PG_VERSIONS; do
    pg_config=$(pg_config_for "$v")
    if [ -w "$("$pg_config" --pkglibdir)" ]; then sudo_flag=(); else sudo_flag=(--sudo); fi
    cargo pgrx install "$@" "${sudo_flag[@]}" --pg-config "$pg_config" \
        --no-default-features --features "pg$v"
done
