#!/usr/bin/env bash
# holt-fs side by side with its peers, one `holt-fs bench` each, in one run:
#   holt-disk    holt-fs, store on the machine's disk (a dir under --work)
#   holt-tmpfs   holt-fs, store on a size-limited tmpfs mounted here
#   holt-memory  holt-fs --memory (FUSE with no storage cost)
#   nullfs       holt-nullfs, a minimal in-memory FUSE filesystem of ours
#                (benches/src/bin/holt-nullfs): the round-trip ceiling of
#                a FUSE filesystem that does nothing
#   bindfs       bindfs over a disk directory (FUSE passthrough), when
#                installed (installed through apt when root and missing)
#   ext4, tmpfs  the kernel filesystems underneath, without FUSE
# then a table of ops/s per phase with the ratio of each holt-fs to the best
# FUSE peer (nullfs or bindfs, whichever is faster in that row) and to the
# kernel filesystem beneath it, and the geometric mean of those ratios over
# the metadata phases (create, stat, rename, unlink, mkdir).
#
# usage: benches/fs-compare.sh [--files N] [--size MIB] [--threads N]
#            [--phases LIST] [--rounds N] [--tree DIR] [--work DIR] [--out DIR]
# Defaults fit ~5 minutes on 2 cores (--files 3000 --size 64, 1 round);
# raise them for steadier numbers: with --rounds N every filesystem is
# benched once per round and the table shows medians with (min-max).
# --tree DIR adds whole jobs on a real tree on every filesystem
# (fs_tool_phases.py): untar of DIR's tarball, cp -a, rm -rf, and git
# status on a checkout of it; e.g. --tree ~/.cargo/registry/src/*/librocksdb-sys-*.
# Needs root (mounts). HOLT_FS=path and NULLFS=path skip the builds.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/benches/fs-lib.sh"

FILES=3000 SIZE=64 THREADS=2 PHASES=all ROUNDS=1 TREE=""
WORK=/var/tmp/holt-fs-compare.$$
OUT=/var/tmp/holt-fs-compare-results.$(date -u +%Y%m%dT%H%M%S)
while [[ $# -gt 0 ]]; do
    case $1 in
        --files) FILES=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --phases) PHASES=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --tree) TREE=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        *) sed -n '17,18p' "$0" >&2; exit 2 ;;
    esac
done
[[ $(id -u) -eq 0 ]] || { echo "fs-compare.sh: run as root (it mounts tmpfs and FUSE filesystems)" >&2; exit 1; }
[[ -e $WORK ]] && { echo "fs-compare.sh: $WORK exists; pick another --work" >&2; exit 1; }

if [[ -z ${HOLT_FS:-} ]]; then
    say "building holt-fs (release)"
    (cd "$ROOT" && cargo build --release --bin holt-fs)
    HOLT_FS=${CARGO_TARGET_DIR:-$ROOT/target}/release/holt-fs
fi
if [[ -z ${NULLFS:-} ]]; then
    say "building holt-nullfs (release)"
    (cd "$ROOT/benches" && cargo build --release --bin holt-nullfs)
    NULLFS=${CARGO_TARGET_DIR:-$ROOT/benches/target}/release/holt-nullfs
fi

cleanup() {
    fs_cleanup
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK" "$OUT"
TREE_MIB=0
if [[ -n $TREE ]]; then
    say "packing $TREE for the untar, cp -a, rm -rf and git-status phases"
    tar -C "$TREE" -cf "$WORK/tree.tar" .
    TREE_MIB=$(($(stat -c %s "$WORK/tree.tar") >> 20))
fi
# Room for both tmpfs runs' files, and the tree three times over (tree,
# copy, checkout) with its git objects.
mount_tmpfs "$WORK/tmpfs" $((2 * SIZE + 4 * TREE_MIB + 1024))

# bench LABEL DIR: one `holt-fs bench` into $OUT/LABEL.ROUND.json, then
# the tree phases appended to it when --tree is given.
bench() {
    say "round $round: $1: bench on $2"
    "$HOLT_FS" bench "$2" --files "$FILES" --size "$SIZE" --threads "$THREADS" --phases "$PHASES" --json \
        >"$OUT/$1.$round.json" 2>"$OUT/$1.$round.log"
    if [[ -n $TREE ]]; then
        python3 "$ROOT/benches/fs_tool_phases.py" "$2" "$WORK/tree.tar" "$OUT/$1.$round.json" 2>>"$OUT/$1.$round.log"
    fi
}

# holt LABEL STORE-ARGS...: mount, bench, unmount, drop the store.
holt() {
    local label=$1 mp=$WORK/mnt-$1
    shift
    holt_mount "$HOLT_FS" "$mp" "$@"
    bench "$label" "$mp"
    daemon_unmount "$mp"
}

# A fresh holt-nullfs: mount, bench, unmount (everything in it is gone).
nullfs() {
    local mp=$WORK/mnt-nullfs
    nullfs_mount "$NULLFS" "$mp"
    bench nullfs "$mp"
    daemon_unmount "$mp"
}

# One bench of every filesystem, each on a fresh directory or store.
one_round() {
    mkdir -p "$WORK/ext4" "$WORK/tmpfs/plain"
    bench ext4 "$WORK/ext4"
    rm -rf "$WORK/ext4"
    holt holt-disk --store "$WORK/store-disk"
    rm -rf "$WORK/store-disk"
    bench tmpfs "$WORK/tmpfs/plain"
    rm -rf "$WORK/tmpfs/plain"
    holt holt-tmpfs --store "$WORK/tmpfs/store"
    rm -rf "$WORK/tmpfs/store"
    holt holt-memory --memory
    nullfs
    if [[ $HAVE_BINDFS == 1 ]]; then
        bench bindfs "$WORK/mnt-bindfs"
    fi
}

LABELS=(ext4 holt-disk tmpfs holt-tmpfs holt-memory nullfs)
HAVE_BINDFS=0
if bindfs_mount "$WORK/bindfs-src" "$WORK/mnt-bindfs"; then # unmounted by the cleanup
    HAVE_BINDFS=1
    LABELS+=(bindfs)
fi
for ((round = 1; round <= ROUNDS; round++)); do one_round; done

files() { local f=("$OUT/$1".*.json); local IFS=,; echo "${f[*]}"; }
args=()
for l in "${LABELS[@]}"; do args+=("$l=$(files "$l")"); done
PEER=nullfs
[[ $HAVE_BINDFS == 1 ]] && PEER="nullfs|bindfs"
{
    echo "holt-fs bench --files $FILES --size $SIZE --threads $THREADS, $ROUNDS round(s)${TREE:+, tree $TREE} ($(uname -r), $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg))"
    echo
    python3 "$ROOT/benches/fs_table.py" "${args[@]}" \
        --ratio "holt-disk/$PEER" --ratio holt-disk/ext4 --ratio "holt-tmpfs/$PEER" --ratio holt-tmpfs/tmpfs \
        --ratio holt-memory/nullfs --ratio nullfs/tmpfs --geomean create,stat,rename,unlink,mkdir
} | tee "$OUT/table.md"
say "results in $OUT"
