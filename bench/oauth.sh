#!/usr/bin/env bash
# PostgreSQL 18: logins by SASL OAUTHBEARER (pgaadauth as the OAuth validator) vs the same token
# as the password, on one server, side by side in one run. Installs the release build first.
# BENCH_LOGINS and BENCH_ROUNDS tune it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PG_VERSIONS=18
. scripts/pg.sh
scripts/install.sh --release
PG_CONFIG=$(pg_config_for 18) cargo run -q --release -p pgaadauth-e2e --bin pgaadauth-oauth-bench
