#!/usr/bin/env bash
# Two holt-fs builds (daemons) under one bench client, interleaved:
# each round mounts OLD and NEW, store on disk and store on tmpfs, one
# `holt-fs bench` each, the order flipping every round (old new, new old,
# ...) so a drift in the machine's speed hits both alike. Two tables follow:
# the median ops/s per phase, (min-max) over the rounds, and new/old; and
# the CPU time per operation of bench client plus daemon, which a loaded
# machine disturbs much less than the rate (there new/old > 1 is worse).
#
# usage: benches/fs-before-after.sh OLD_BIN NEW_BIN [--rounds N] [--files N]
#            [--size MIB] [--threads N] [--phases LIST] [--mount-args "ARGS"]
#            [--stores "disk ext4 tmpfs"] [--tree DIR] [--work DIR] [--out DIR]
# The disk store lives in --work (on whatever filesystem holds it); ext4
# is a fresh journaled ext4 image loop-mounted in --work; tmpfs a tmpfs.
# --tree DIR adds whole jobs on a real tree (fs_tool_phases.py): untar of
# DIR's tarball, cp -a, rm -rf, git status on a committed checkout of it;
# e.g. --tree ~/.cargo/registry/src.
# The client is NEW_BIN's `bench` (HOLT_BENCH=path overrides): a program
# making system calls, the same for both daemons. Needs root (mounts).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/benches/fs-lib.sh"

[[ $# -ge 2 ]] || { sed -n '10,17p' "$0" >&2; exit 2; }
OLD=$(realpath "$1") NEW=$(realpath "$2")
shift 2
ROUNDS=3 FILES=5000 SIZE=128 THREADS=2 PHASES=all MOUNT_ARGS="" STORES="disk tmpfs" TREE=""
WORK=/var/tmp/holt-fs-before-after.$$
OUT=/var/tmp/holt-fs-before-after-results.$(date -u +%Y%m%dT%H%M%S)
while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --files) FILES=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --phases) PHASES=$2; shift 2 ;;
        --mount-args) MOUNT_ARGS=$2; shift 2 ;;
        --stores) STORES=$2; shift 2 ;;
        --tree) TREE=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        *) sed -n '10,17p' "$0" >&2; exit 2 ;;
    esac
done
CLIENT=${HOLT_BENCH:-$NEW}
[[ $(id -u) -eq 0 ]] || { echo "fs-before-after.sh: run as root (it mounts tmpfs and FUSE filesystems)" >&2; exit 1; }
[[ -e $WORK ]] && { echo "fs-before-after.sh: $WORK exists; pick another --work" >&2; exit 1; }

cleanup() {
    fs_cleanup
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK" "$OUT"
mount_tmpfs "$WORK/tmpfs" $((2 * SIZE + 1024))
[[ " $STORES " == *" ext4 "* ]] && mount_ext4_image "$WORK/ext4" $((4 * SIZE + 2048))
if [[ -n $TREE ]]; then
    say "packing $TREE for the untar, cp -a, rm -rf and git-status phases"
    tar -C "$TREE" -cf "$WORK/tree.tar" .
fi

# one BUILD-NAME BIN STORE-PARENT LABEL ROUND: a fresh store, mount, bench, unmount.
one() {
    local bin=$2 store=$3/store-$1 label=$4 mp=$WORK/mnt
    # shellcheck disable=SC2086 # MOUNT_ARGS is a list of words
    holt_mount "$bin" "$mp" --store "$store" $MOUNT_ARGS
    say "round $5: $label"
    "$CLIENT" bench "$mp" --daemon-pid "$(cat "$mp.pid")" --files "$FILES" --size "$SIZE" --threads "$THREADS" --phases "$PHASES" --json \
        >"$OUT/$label.$5.json" 2>"$OUT/$label.$5.log"
    if [[ -n $TREE ]]; then
        python3 "$ROOT/benches/fs_tool_phases.py" "$mp" "$WORK/tree.tar" "$OUT/$label.$5.json" --daemon-pid "$(cat "$mp.pid")"
    fi
    daemon_unmount "$mp"
    rm -rf "$store"
}

for ((r = 1; r <= ROUNDS; r++)); do
    order=(old new)
    ((r % 2 == 0)) && order=(new old)
    for where in $STORES; do
        parent=$WORK
        [[ $where == tmpfs || $where == ext4 ]] && parent=$WORK/$where
        for b in "${order[@]}"; do
            bin=$OLD
            [[ $b == new ]] && bin=$NEW
            one "$b" "$bin" "$parent" "$b-$where" "$r"
        done
    done
done

files() { local f=("$OUT/$1".*.json); local IFS=,; echo "${f[*]}"; }
{
    echo "old: $OLD"
    echo "new: $NEW"
    echo "holt-fs bench --files $FILES --size $SIZE --threads $THREADS, mount args '$MOUNT_ARGS', $ROUNDS rounds ($(uname -r), $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg))"
    echo
    runs=() ratios=()
    for where in $STORES; do
        runs+=("old-$where=$(files "old-$where")" "new-$where=$(files "new-$where")")
        ratios+=(--ratio "new-$where/old-$where")
    done
    echo "ops/s, median (min-max) of the rounds:"
    echo
    python3 "$ROOT/benches/fs_table.py" "${runs[@]}" "${ratios[@]}"
    echo
    echo "CPU us per op (bench + daemon), median (min-max); lower is better:"
    echo
    python3 "$ROOT/benches/fs_table.py" --cpu "${runs[@]}" "${ratios[@]}"
} | tee "$OUT/table.md"
say "results in $OUT"
