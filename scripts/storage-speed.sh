#!/usr/bin/env bash
# A shared search's speed against a local one, on this machine: the quickstart with a budget of 100
# evaluations and no held-out check, run alternately as a local search (1 and 2 threads) and as a
# search shared through PostgreSQL (1 process and 2 processes of one thread), ROUNDS times, each in a
# fresh database. Prints every run's wall time; every run must end with the same best rule. Last in
# each round, two independent local searches of one thread at once: the machine's own ceiling for two
# workers (two cores sharing caches, memory and clock), against which the two-worker figures stand.
#
#   pg_virtualenv scripts/storage-speed.sh [ROUNDS] [BINARY]      (needs scripts/fetch-data.sh)
#
# BATCH=32 (and POPULATION=32) run it with rounds of 32 trials instead of the quickstart's 8: a round
# ends with its longest trial, so with few trials per round a second worker idles more. BUDGET=300
# runs 300 evaluations: the first round (the baselines, MESU's 20-task trial alone about 60% of it)
# weighs less in a longer search.
#
# Run it on an otherwise idle machine. The URL comes from PGHOST, PGPORT and PGUSER (pg_virtualenv
# sets them).
set -euo pipefail
rounds=${1:-2}
bin=$(realpath "${2:-target/release/synaptogen}")
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed -e 's/name: "quickstart"/name: "storage-speed"/' \
    -e "s/budget: (evaluations: 240)/budget: (evaluations: ${BUDGET:-100})/" \
    -e 's/held_out: (finalists: 3,/held_out: (finalists: 0,/' \
    -e "s/population: 16,/population: ${POPULATION:-16},/" \
    -e "s/batch: 8,/batch: ${BATCH:-8},/" searches/quickstart.ron > "$dir/spec.ron"
grep -q "evaluations: ${BUDGET:-100}" "$dir/spec.ron" && grep -q 'finalists: 0' "$dir/spec.ron" \
  || { echo "storage-speed.sh: searches/quickstart.ron changed; update the sed lines" >&2; exit 2; }
timed() { # label command...: runs it (its output dropped), prints the label and the wall time
  local label=$1; shift
  local start end
  start=$(date +%s.%N)
  "$@" > /dev/null
  end=$(date +%s.%N)
  printf '%-28s %6.1f s\n' "$label" "$(echo "$end - $start" | bc)"
}
shared() { # processes run
  local processes=$1 run=$2
  psql -q -c "DROP DATABASE IF EXISTS speed$run" -c "CREATE DATABASE speed$run"
  local url="postgresql://$PGUSER@$PGHOST:$PGPORT/speed$run"
  for p in $(seq "$processes"); do
    "$bin" search "$dir/spec.ron" --storage "$url" --threads 1 --out "$dir/$run-p$p" --quiet --no-report &
  done
  wait
}
two_at_once() { # run: two independent local searches of one thread, side by side
  for p in 1 2; do
    "$bin" search "$dir/spec.ron" --threads 1 --out "$dir/both$p-$1" --quiet --no-report &
  done
  wait
}
for round in $(seq "$rounds"); do
  timed "local, 1 thread" "$bin" search "$dir/spec.ron" --threads 1 --out "$dir/l1-$round" --quiet --no-report
  timed "shared, 1 process" shared 1 "s1r$round"
  timed "shared, 2 processes" shared 2 "s2r$round"
  timed "local, 2 threads" "$bin" search "$dir/spec.ron" --threads 2 --out "$dir/l2-$round" --quiet --no-report
  timed "2 local searches at once" two_at_once "$round"
done
echo "best rules (all must be equal):"
md5sum "$dir"/*/best.rhai | awk '{print $1}' | sort | uniq -c
