#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer) of every parser of untrusted input: builds
# every target of fuzz/ and runs each for SECONDS (default 60), starting from its seed corpus in
# fuzz/seeds/<target> (the inputs it finds go to a scratch directory, not into the repository).
# A crash, a failed assertion or a leak fails the target; its input is kept under
# $PGAADAUTH_FUZZ_OUT (default target/fuzz-out) and named in the output. Ends with one line:
# "N passed, N failed". On the stable toolchain RUSTC_BOOTSTRAP=1 gives cargo fuzz the
# sanitizer flags it needs; cargo-fuzz itself comes from scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: scripts/fuzz.sh [SECONDS] (a whole number of seconds per target)" >&2
    exit 2
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
export RUSTC_BOOTSTRAP=1
out=${PGAADAUTH_FUZZ_OUT:-$PWD/target/fuzz-out}
cargo fuzz build
passed=0
failed=0
for target in $(cargo fuzz list); do
    corpus="$out/corpus/$target"
    artifacts="$out/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    log="$out/$target.log"
    if cargo fuzz run "$target" "$corpus" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -artifact_prefix="$artifacts/" -print_final_stats=1 \
        >"$log" 2>&1; then
        passed=$((passed + 1))
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        echo "fuzz $target: ok, ${runs:-?} executions in ${seconds} s"
    else
        failed=$((failed + 1))
        echo "fuzz $target: FAILED; the input: $(ls -t "$artifacts" | head -1 | sed "s|^|$artifacts/|"); the log: $log"
        grep -m 20 -E 'panicked|ERROR: |SUMMARY' "$log" || true
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
