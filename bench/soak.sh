#!/usr/bin/env bash
# Soak: 2 minutes of 32 concurrent clients mixing good and bad tokens and passwords while the
# provider rotates keys, the key worker is killed twice and the directory stalls and recovers.
# Installs the release build first. SOAK_SECONDS and SOAK_CLIENTS tune it; exits 1 on a missed goal.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --release
cargo run -q --release -p pgaadauth-e2e --bin pgaadauth-soak
