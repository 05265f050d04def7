#!/usr/bin/env bash
# Connection rate: token logins vs trust vs SCRAM, measured side by side with pgbench -C.
# Installs the release build of pgaadauth first. BENCH_ROUNDS, BENCH_SECONDS, BENCH_CLIENTS tune it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --release
cargo run -q --release -p pgaadauth-e2e --bin pgaadauth-bench
