#!/usr/bin/env bash
# Training speed of every shipped rule and committed search winner against native SGD, on real data:
# three tasks of searches/pmnist-quick.ron (196-256-10 LIF, T = 8, batch 32), one thread, from the
# samples_per_second column of each learner's tasks.csv (the mean over the three tasks). Native SGD
# runs first and last, and the rules are compared with the mean of the two, so a machine whose speed
# drifts during the run does not favour the rules measured nearest to one of them.
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
args=()
for rule in "${rules[@]}"; do args+=(--rule "$rule"); done
"$bin" run searches/pmnist-quick.ron --tasks 3 --threads 1 --learner sgd "${args[@]}" --learner sgd --out "$out" --quiet --no-report >/dev/null
python3 - "$out" "${rules[@]}" <<'PY'
import csv, os, sys
out, rules = sys.argv[1], sys.argv[2:]
def samples_per_second(learner):
    rows = list(csv.DictReader(open(os.path.join(out, learner, "tasks.csv"))))
    return sum(float(r["samples_per_second"]) for r in rows) / len(rows)
first, last = samples_per_second("sgd"), samples_per_second("sgd-2")
sgd = (first + last) / 2
# A run names each rule's directory by its file name, adding -2, -3 … to repeats, in --rule order.
seen, ratios = {}, {}
for rule in rules:
    name = os.path.basename(rule)
    seen[name] = seen.get(name, 0) + 1
    ratios[rule] = samples_per_second(name if seen[name] == 1 else f"{name}-{seen[name]}") / sgd
print(f"native sgd: {sgd:,.0f} samples/s (first {first:,.0f}, last {last:,.0f})")
for rule, ratio in sorted(ratios.items(), key=lambda kv: -kv[1]):
    print(f"{rule:45s} {ratio:.2f}x")
PY
