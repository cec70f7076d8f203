#!/usr/bin/env bash
# Many light processes on one shared search: how much the database can coordinate, for sizing a search
# for hundreds of workers. Starts N processes (one thread each) of a search over the synthetic dataset
# whose trials take milliseconds, so the database, not training, sets the pace; reports the wall time,
# the trials recorded per second and the connections the server saw at most.
#
#   pg_virtualenv -o max_connections=300 scripts/storage-load.sh 200 [BINARY]
#
# ROUNDS=K (default 10) sets how many rounds of 2 × PROCESSES trials the search has.
# The URL comes from PGHOST, PGPORT and PGUSER (pg_virtualenv sets them); the database `load` is
# created afresh.
set -euo pipefail
n=${1:?usage: storage-load.sh PROCESSES [BINARY]}
rounds=${ROUNDS:-10}
bin=$(realpath "${2:-target/release/synaptogen}")
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
psql -q -c 'DROP DATABASE IF EXISTS load' -c 'CREATE DATABASE load'
url="postgresql://$PGUSER@$PGHOST:$PGPORT/load"
cat > "$dir/spec.ron" <<SPEC
(
    name: "load",
    seed: 1,
    benchmark: (dataset: Synthetic, tasks: 1, train_per_task: 100, test_per_task: 50,
                protocol: Minibatch(batch: 20, epochs: 1), retention_sample: 1, probe_size: 20),
    network: (hidden: [8], time_steps: 2),
    learner: (lr: 0.1),
    seed_rules: ["$repo/rules/baselines/sgd.rhai", "$repo/rules/local/bcm.rhai"],
    baselines: [Sgd(lr: 0.1)],
    evolution: (population: 64, tournament: 4, islands: 4, migrate_every: 5, batch: $((2 * n))),
    fidelity: (rungs: [1, 2], promote: 0.3, abort_after: 1, abort_margin: 0.5),
    budget: (evaluations: $((2 * n * rounds))),
    held_out: (finalists: 0, seeds: 1),
)
SPEC
peak=0
cpu_before=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)
start=$(date +%s.%N)
for i in $(seq "$n"); do
  (cd "$dir" && /usr/bin/time -f "%U %S" -o "w$i.cpu" "$bin" search spec.ron --storage "$url" --threads 1 --out "w$i" --quiet --no-report > /dev/null 2> "w$i.err") &
done
while [ "$(jobs -r | wc -l)" -gt 0 ]; do
  c=$(psql -At -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'synaptogen'" 2>/dev/null || echo 0)
  if [ "$c" -gt "$peak" ]; then peak=$c; fi
  sleep 0.5
done
wait
end=$(date +%s.%N)
cpu_after=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)
# CPU seconds of the workers against the whole machine's: the rest is the
# database server and the polling loop above.
workers=$(cat "$dir"/w*.cpu | awk '{ t += $1 + $2 } END { printf "%.0f", t }')
machine=$(echo "($cpu_after - $cpu_before) / $(getconf CLK_TCK)" | bc)
trials=$(psql -At -d load -c 'SELECT count(*) FROM synaptogen_trials WHERE record IS NOT NULL')
failed=$(cat "$dir"/w*.err | grep -c . || true)
seconds=$(echo "$end - $start" | bc)
echo "$n processes: $trials trials in $seconds s ($(echo "scale=1; $trials / $seconds" | bc) trials/s), at most $peak connections, $failed lines of errors; CPU: workers ${workers} s, whole machine ${machine} s"
if [ "$failed" -gt 0 ]; then head -n 3 "$dir"/w*.err | head -n 20; fi
