#!/usr/bin/env bash
# Connection rate: token logins vs trust vs SCRAM, measured side by side with pgbench -C, on each
# PostgreSQL major of PG_VERSIONS (default "15 18"); ends with the ratios of every major in one
# table. Installs the release build of pgaadauth first. BENCH_ROUNDS, BENCH_SECONDS,
# BENCH_CLIENTS tune it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PG_VERSIONS=${PG_VERSIONS:-15 18}
. scripts/pg.sh
scripts/install.sh --release
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for v in $PG_VERSIONS; do
    echo "=== PostgreSQL $v"
    PG_CONFIG=$(pg_config_for "$v") cargo run -q --release -p pgaadauth-e2e --bin pgaadauth-bench |
        tee "$out/$v"
done

# One table: each ratio line of the benchmark (per client count), one column per major.
echo
echo "=== ratios by PostgreSQL major (median of the per-round ratios)"
printf '%-34s' ""
for v in $PG_VERSIONS; do printf '%10s' "$v"; done
echo
first=${PG_VERSIONS%% *}
# "N|name|value" for every ratio line of one benchmark output.
ratios() {
    awk '/client\(s\):/ { n = $1; r = 0; next }
         /ratios, median/ { r = 1; next }
         r && /^  [^ ]/ && !/^  cost/ {
             line = substr($0, 3)
             if (match(line, /  +-?[0-9.]+/)) {
                 name = substr(line, 1, RSTART - 1)
                 split(substr(line, RSTART), f, " ")
                 print n "|" name "|" f[1] (f[2] == "%" ? " %" : "")
             }
         }' "$1"
}
ratios "$out/$first" | while IFS='|' read -r n name _; do
    printf '%-34s' "$n client(s): $name"
    for v in $PG_VERSIONS; do
        value=$(ratios "$out/$v" | awk -F'|' -v n="$n" -v name="$name" '$1 == n && $2 == name { print $3; exit }')
        printf '%10s' "${value:--}"
    done
    echo
done
