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
pam_unix=$(find /usr/lib /lib -name pam_unix.so -path '*security*' 2>/dev/null | head -n1)
if [ -z "$pam_unix" ]; then
    echo "install: no PAM module directory found (no pam_unix.so under /usr/lib or /lib)" >&2
    exit 1
fi
pam_dir=$(dirname "$pam_unix")
if [ "$(id -u)" = 0 ]; then as_root=(); else as_root=(sudo); fi
"${as_root[@]}" install -m 0644 "target/$profile/libpam_pgaadauth.so" "$pam_dir/pam_pgaadauth.so"
echo "install: $pam_dir/pam_pgaadauth.so"
