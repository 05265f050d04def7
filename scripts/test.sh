#!/usr/bin/env bash
# Runs every test: formatting and lints; the pure core's unit tests once; then, for each
# PostgreSQL major of $PG_VERSIONS (default all: 14 15 16 17 18; e.g. PG_VERSIONS="16 18"),
# the extension's tests and #[pg_test]s (cargo pgrx test) and the end-to-end tests against real
# clusters (pgrx-tests/); the fuzz targets briefly (scripts/fuzz.sh). Ends with one line over
# everything: "all: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/pg.sh
results=$(mktemp)
identd_pid=
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
stop_identd() { if [ -n "$identd_pid" ]; then as_root pkill -P "$identd_pid" 2>/dev/null; as_root kill "$identd_pid" 2>/dev/null; fi; }
trap 'rm -f "$results"; stop_identd || true' EXIT
failed_steps=()
# Run a test step, its output counted; a failing step is recorded and the run goes on.
step() {
    local name=$1
    shift
    "$@" 2>&1 | tee -a "$results" || failed_steps+=("$name")
}

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The layout's rules: which concern may import which, no import circle, files of one concern.
python3 scripts/layers.py
# Code under cfg(feature = "pg14") and cfg(feature = "pg18") is compiled only there.
for v in 14 18; do
    if [[ " $PG_VERSIONS " == *" $v "* ]]; then
        cargo clippy -p pgaadauth --lib --tests --no-default-features --features "pg$v,pg_test" -- -D warnings
    fi
done

# Layer 1: the pure core and the proxy's own tests, once; and every parser of untrusted input
# fuzzed briefly (scripts/fuzz.sh: 10 s per target here; run it longer by hand).
step core cargo test -p pgaadauth-core
step proxy cargo test -p pgaadauth-proxy
step fuzz scripts/fuzz.sh 10

# The #[pg_test] harness logs in through `ident` (pgrx-tests/pg_test_hba.conf).
as_root python3 scripts/identd.py &
identd_pid=$!
for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/113) 2>/dev/null && break
    sleep 0.1
done

for v in $PG_VERSIONS; do
    echo "=== PostgreSQL $v"
    PG_CONFIG=$(pg_config_for "$v")
    export PG_CONFIG
    # Layer 2: the extension's unit tests and #[pg_test]s, in a server with pgaadauth preloaded.
    pgdata=$(mktemp -d /tmp/pgaadauth-pgtest.XXXXXX)
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$pgdata"; runas=(--runas postgres); else runas=(); fi
    step "pg$v pg_tests" cargo pgrx test "pg$v" "${runas[@]}" --pgdata "$pgdata"
    rm -rf "$pgdata"

    # Layer 3: end to end, with the extension installed into this major's PostgreSQL.
    if PG_VERSIONS=$v scripts/install.sh; then
        step "pg$v end-to-end" cargo test -p pgaadauth-e2e --test '*' --no-fail-fast -- --test-threads 4
    else
        failed_steps+=("pg$v install")
    fi
done

# On its own: the CloudNativePG image (release builds), for 18, as the operator mounts it.
if [[ " $PG_VERSIONS " == *" 18 "* ]]; then
    step "image" env PG_CONFIG="$(pg_config_for 18)" \
        cargo test -p pgaadauth-e2e --test image -- --ignored
fi

# Last, on its own: the PostgreSQL 15 Debian package, installed into Debian's PostgreSQL 15
# (replacing the development install there), upgraded and removed.
if [[ " $PG_VERSIONS " == *" 15 "* ]] && [ -x /usr/lib/postgresql/15/bin/pg_config ] && [ "$(id -u)" = 0 ]; then
    step "package" env PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config \
        cargo test -p pgaadauth-e2e --test package -- --ignored
fi

# One closing line for the whole run.
awk '/^test result:/ { p += $4; f += $6 } /^[0-9]+ passed, [0-9]+ failed$/ { p += $1; f += $3 } END { printf "all: %d passed, %d failed\n", p, f }' "$results"
if [ ${#failed_steps[@]} -gt 0 ]; then
    echo "failed: ${failed_steps[*]}"
    exit 1
fi
