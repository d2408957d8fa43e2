#!/usr/bin/env bash
# Alternate `holt-bench --tail` runs of several holt-bench binaries and print
# one summary line per phase and run: p99, p99.9, max, the max of puts not
# preempted, the max of those blocked in the engine, and the puts over 1 ms
# as preempted/blocked/neither (benches/RESULTS.md runs 17-18). Single maxima
# swing with the machine; compare the counts over several runs.
#
#   benches/tail-ab.sh ROUNDS BIN... [| sort -s -k1,2 | column -t]
#
# Each run writes its store under ${TAIL_DIR:-/tmp/holt-tail-ab}, removed after.
# TAIL_ARGS are passed to every run (e.g. --room-ahead); to compare a flag on
# one binary, name a wrapper script that adds it as one of the BINs.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 ROUNDS HOLT_BENCH_BINARY..." >&2
  exit 2
fi
rounds=$1
shift
dir=${TAIL_DIR:-/tmp/holt-tail-ab}
trap 'rm -rf "$dir"' EXIT
for _ in $(seq "$rounds"); do
  for bin in "$@"; do
    rm -rf "$dir"
    "$bin" --tail "$dir" --keys "${TAIL_KEYS:-1000000}" ${TAIL_ARGS:-} 2>/dev/null |
      grep -E "^(load|updates)" |
      sed -E 's/^(load|updates): .*p99 ([0-9.]+) µs, p99.9 ([0-9.]+) µs, max ([0-9.]+) µs; max not preempted ([0-9.]+) µs \(blocked in the engine: ([0-9.]+) µs\); puts over 1 ms: ([0-9]+) preempted, ([0-9]+) blocked, ([0-9]+) neither.*/\1 p99 \2 p999 \3 max \4 quietmax \5 blockedmax \6 slow \7\/\8\/\9/' |
      sed "s|^|$(basename "$bin") |"
  done
done
