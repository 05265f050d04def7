#!/usr/bin/env bash
# The main job: build and install pgaadauth, start a throwaway cluster and a local identity
# provider, create a principal, and log in with a token using psql. Everything is stopped after.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --release
cargo run -q -p pgaadauth-e2e --bin pgaadauth-demo
