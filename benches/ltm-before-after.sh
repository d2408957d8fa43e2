#!/usr/bin/env bash
# The larger-than-memory cells (`holt-bench --ltm`) on two holt-cores,
# interleaved (before, after, before, after, ...): BEFORE_REV's holt-core
# with this checkout's bench (built --no-default-features, so it needs no
# the frame-read counters of `Tree::counters`), and this checkout's. Each run's table goes to
# OUT/<name>-<round>.log; compare the deterministic columns (frames and
# bytes per op) and CPU per op, which a loaded machine disturbs less than
# the rate.
#
# usage: benches/ltm-before-after.sh BEFORE_REV [--keys N] [--ops N]
#            [--rounds N] [--work DIR] [--out DIR]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
[[ $# -ge 1 ]] || { sed -n '10,11p' "$0" >&2; exit 2; }
REV=$1
shift
KEYS=2000000 OPS=100000 ROUNDS=2
WORK=/var/tmp/holt-ltm-before-after
OUT=/var/tmp/holt-ltm-results.$(date -u +%Y%m%dT%H%M%S)
while [[ $# -gt 0 ]]; do
    case $1 in
        --keys) KEYS=$2; shift 2 ;;
        --ops) OPS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$WORK" "$OUT"

# The before tree: BEFORE_REV's sources with this checkout's benches/.
rm -rf "$WORK/before-src"
mkdir -p "$WORK/before-src"
git -C "$ROOT" archive "$REV" | tar -x -C "$WORK/before-src"
rm -rf "$WORK/before-src/benches"
cp -a "$ROOT/benches" "$WORK/before-src/benches"

CARGO_TARGET_DIR="$WORK/target-before" cargo build --release --no-default-features \
    --manifest-path "$WORK/before-src/benches/Cargo.toml"
CARGO_TARGET_DIR="$WORK/target-after" cargo build --release --manifest-path "$ROOT/benches/Cargo.toml"

for round in $(seq "$ROUNDS"); do
    for name in before after; do
        log="$OUT/$name-$round.log"
        echo "== $name round $round $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$log"
        "$WORK/target-$name/release/holt-bench" --keys "$KEYS" --ltm "$WORK/store-$name" --ltm-ops "$OPS" \
            >>"$log" 2>&1
        grep '^ltm: |' "$log" || echo "no table: see $log"
    done
done
rm -rf "$WORK/store-before" "$WORK/store-after"
echo "logs in $OUT"
