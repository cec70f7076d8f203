#!/usr/bin/env bash
# Runs a search and samples its resident memory every 10 s, to check that memory stays flat however
# long a search runs (the caches are bounded; see ARCHITECTURE.md, search/).
#
#   scripts/memory-soak.sh [SPEC] [THREADS]      default: searches/soak.ron, one thread per core
#
# Writes runs/<spec name>-memory.csv: seconds since start, resident memory in MiB, and the number of
# finished evaluations in the journal at that moment. Prints the first and last rows and the peak.
set -euo pipefail
spec=${1:-searches/soak.ron}
threads=${2:-}
name=$(basename "$spec" .ron)
out=runs/$name-memory
csv=runs/$name-memory.csv
mkdir -p runs
cargo build --release --quiet
args=(search "$spec" --out "$out" --force --no-report --quiet)
[ -n "$threads" ] && args+=(--threads "$threads")
./target/release/synaptogen "${args[@]}" > "runs/$name-memory.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' INT TERM
echo "seconds,rss_mib,evaluations" > "$csv"
start=$(date +%s)
while kill -0 $pid 2>/dev/null; do
  rss=$(awk '/VmRSS/{printf "%.1f", $2/1024}' /proc/$pid/status 2>/dev/null || true)
  evaluations=$( (cat "$out"/journal.jsonl 2>/dev/null || true) | wc -l)
  [ -n "$rss" ] && echo "$(( $(date +%s) - start )),$rss,$evaluations" >> "$csv"
  sleep 10
done
wait $pid
echo "first:  $(sed -n 2p "$csv")"
echo "last:   $(tail -1 "$csv")"
echo "peak:   $(tail -n +2 "$csv" | sort -t, -k2 -g | tail -1)"
echo "(seconds,rss_mib,evaluations) in $csv"
