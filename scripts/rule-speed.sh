#!/usr/bin/env bash
# Training speed of every shipped rule and committed search winner against native SGD, on real data:
# ten tasks of searches/pmnist-quick.ron (196-256-10 LIF, T = 8, batch 32), one thread, from the
# samples_per_second column of each learner's tasks.csv (the median over the ten tasks, so one task
# slowed by the machine does not move it). Native SGD runs before the first rule, between every two
# rules and after the last, and each rule is compared with the mean of the two SGD runs around it: on
# a machine whose speed drifts by tens of percent within a minute (shared cloud cores do), a rule is
# only ever compared with SGD measured seconds before and after it. The whole sequence runs ROUNDS
# times (default 3), and each rule's line gives the median of its rounds' ratios and their range: one
# round's ratio of a rule moves by ±0.1 on such a machine.
#
#   scripts/rule-speed.sh [OUT_DIR [RULE...]]   (default runs/rule-speed; needs scripts/fetch-data.sh)
#   ROUNDS=5 SYNAPTOGEN=path/to/synaptogen scripts/rule-speed.sh /tmp/speed
#   scripts/rule-speed.sh /tmp/speed my_rule.rhai tests/fixtures/speed/*.rhai
#
# With RULE files it measures those; without, every shipped rule and committed search winner.
#
# Run it on an otherwise idle machine: learners are timed one after another in one process. About
# 35 s per round.
set -euo pipefail
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 0
fi
cd "$(dirname "$0")/.."
out=${1:-runs/rule-speed}
rounds=${ROUNDS:-3}
rm -rf -- "$out"
bin=${SYNAPTOGEN:-target/release/synaptogen}
if (($# > 1)); then
    rules=("${@:2}")
else
    mapfile -t rules < <(ls rules/*/*.rhai reports/*/best.rhai)
fi
args=(--learner sgd)
for rule in "${rules[@]}"; do args+=(--rule "$rule" --learner sgd); done
for round in $(seq "$rounds"); do
    "$bin" run searches/pmnist-quick.ron --tasks 10 --threads 1 "${args[@]}" --out "$out/round-$round" \
        --quiet --no-report >/dev/null
done
python3 - "$out" "$rounds" "${rules[@]}" <<'PY'
import csv, os, statistics, sys
out, rounds, rules = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def samples_per_second(run, learner):
    rows = list(csv.DictReader(open(os.path.join(run, learner, "tasks.csv"))))
    return statistics.median(float(r["samples_per_second"]) for r in rows)
# A run names each learner's directory by its name (a rule's: its file name), adding -2, -3 … to
# repeats, in command-line order: the SGD runs are sgd, sgd-2, …, sgd-(n+1).
ratios, sgd_all = {rule: [] for rule in rules}, []
for round in range(1, rounds + 1):
    run = os.path.join(out, f"round-{round}")
    sgd = [samples_per_second(run, "sgd" if k == 0 else f"sgd-{k + 1}") for k in range(len(rules) + 1)]
    sgd_all += sgd
    seen = {}
    for k, rule in enumerate(rules):
        name = os.path.basename(rule)
        seen[name] = seen.get(name, 0) + 1
        rule_speed = samples_per_second(run, name if seen[name] == 1 else f"{name}-{seen[name]}")
        ratios[rule].append(rule_speed / ((sgd[k] + sgd[k + 1]) / 2))
print(f"native sgd: median {statistics.median(sgd_all):,.0f} samples/s over {len(sgd_all)} runs "
      f"(from {min(sgd_all):,.0f} to {max(sgd_all):,.0f}); each rule: median of {rounds} rounds (range)")
for rule, r in sorted(ratios.items(), key=lambda kv: -statistics.median(kv[1])):
    print(f"{rule:45s} {statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f})")
PY
