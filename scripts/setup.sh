#!/usr/bin/env bash
# Installs what building and testing pgaadauth needs, on a fresh Debian 12 machine; idempotent.
# apt packages, cargo-pgrx 0.18.0, `cargo pgrx init` for the system PostgreSQL 15, and the PAM
# service the #[pg_test] harness logs in through (see README, "Tests").
set -euo pipefail

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
# procps: pgrep, used by the end-to-end tests to find the key worker.
packages=(postgresql-15 postgresql-server-dev-15 libclang-dev libkrb5-dev clang sudo pkg-config build-essential procps)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q '0\.18\.0'; then
    echo "setup: installing cargo-pgrx 0.18.0 (takes a few minutes)"
    cargo install cargo-pgrx --version 0.18.0 --locked
fi

if ! grep -qs "^pg15 = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    cargo pgrx init --pg15 "$PG_CONFIG"
fi

if [ ! -f /etc/pam.d/pgaadauth-pgtest ]; then
    printf 'auth required pam_permit.so\naccount required pam_permit.so\n' |
        as_root tee /etc/pam.d/pgaadauth-pgtest >/dev/null
fi
