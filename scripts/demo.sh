#!/usr/bin/env bash
# The main job: build and install pgaadauth, start a throwaway cluster and a local identity
# provider, create a principal, and log in with a token using psql. Everything is stopped after.
# PostgreSQL 18 by default; PG_VERSION=NN picks another supported major (14–18).
set -euo pipefail
cd "$(dirname "$0")/.."
PG_VERSION=${PG_VERSION:-18}
export PG_VERSIONS=$PG_VERSION
. scripts/pg.sh
scripts/install.sh --release
PG_CONFIG=$(pg_config_for "$PG_VERSION") cargo run -q -p pgaadauth-e2e --bin pgaadauth-demo
