#!/usr/bin/env bash
# Installs what pgaadauth needs (scripts/setup.sh), then builds and installs the extension into
# each PostgreSQL major of $PG_VERSIONS (default: every supported one, scripts/pg.sh), and the
# PAM module for PgBouncer (pam_pgaadauth.so) into the system's PAM module directory.
# Arguments go to `cargo pgrx install` and `cargo build` (e.g. --release).
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

# The PAM module: next to the system's own (Debian: /usr/lib/x86_64-linux-gnu/security).
cargo build -p pam_pgaadauth "$@"
profile=debug
for a in "$@"; do [ "$a" = --release ] && profile=release; done
pam_dir=$(pam_module_dir)
if [ "$(id -u)" = 0 ]; then as_root=(); else as_root=(sudo); fi
"${as_root[@]}" install -m 0644 "target/$profile/libpam_pgaadauth.so" "$pam_dir/pam_pgaadauth.so"
echo "install: $pam_dir/pam_pgaadauth.so"
