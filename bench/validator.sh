#!/usr/bin/env bash
# Microbenchmark of the pure token validator (release build): p50 and p99 per token.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test -q --release --lib validator_benchmark -- --ignored --nocapture --test-threads 1
