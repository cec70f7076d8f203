#!/usr/bin/env bash
# Training speed of every shipped rule and committed search winner against native SGD, on real data:
# ten tasks of searches/pmnist-quick.ron (196-256-10 LIF, T = 8, batch 32), one thread, from the
# samples_per_second column of each learner's tasks.csv (the median over the ten tasks, so one task
# slowed by the machine does not move it). Native SGD runs before the first rule, between every two
# rules and after the last, and each rule is compared with the mean of the two SGD runs around it: on
# a machine whose speed drifts by tens of percent within a minute (shared cloud cores do), a rule is
# only ever compared with SGD measured seconds before and after it.
#
#   scripts/rule-speed.sh [OUT_DIR]        (default runs/rule-speed; needs scripts/fetch-data.sh)
#
# Run it on an otherwise idle machine: learners are timed one after another in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/rule-speed}
rm -rf "$out"
bin=${SYNAPTOGEN:-target/release/synaptogen}
mapfile -t rules < <(ls rules/*/*.rhai reports/*/best.rhai)
args=(--learner sgd)
for rule in "${rules[@]}"; do args+=(--rule "$rule" --learner sgd); done
"$bin" run searches/pmnist-quick.ron --tasks 10 --threads 1 "${args[@]}" --out "$out" --quiet --no-report >/dev/null
python3 - "$out" "${rules[@]}" <<'PY'
import csv, os, statistics, sys
out, rules = sys.argv[1], sys.argv[2:]
def samples_per_second(learner):
    rows = list(csv.DictReader(open(os.path.join(out, learner, "tasks.csv"))))
    return statistics.median(float(r["samples_per_second"]) for r in rows)
# A run names each learner's directory by its name (a rule's: its file name), adding -2, -3 … to
# repeats, in command-line order: the SGD runs are sgd, sgd-2, …, sgd-(n+1).
sgd = [samples_per_second("sgd" if k == 0 else f"sgd-{k + 1}") for k in range(len(rules) + 1)]
seen, ratios = {}, {}
for k, rule in enumerate(rules):
    name = os.path.basename(rule)
    seen[name] = seen.get(name, 0) + 1
    rule_speed = samples_per_second(name if seen[name] == 1 else f"{name}-{seen[name]}")
    ratios[rule] = rule_speed / ((sgd[k] + sgd[k + 1]) / 2)
print(f"native sgd: median {statistics.median(sgd):,.0f} samples/s over {len(sgd)} runs "
      f"(from {min(sgd):,.0f} to {max(sgd):,.0f})")
for rule, ratio in sorted(ratios.items(), key=lambda kv: -kv[1]):
    print(f"{rule:45s} {ratio:.2f}x")
PY
