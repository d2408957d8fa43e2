#!/usr/bin/env bash
# What a holt-fs daemon does per operation, counted rather than timed (so
# a loaded machine does not disturb it): FUSE requests read from /dev/fuse
# and system calls, from `strace -c -f` on the daemon, over the second run
# of a loop of one operation (the first run warms the caches).
#
# usage: benches/fs-op-counts.sh BIN [BIN...] [--files N]
# Each BIN is a holt-fs build; its store is on a fresh journaled ext4 image
# (mkfs defaults). Needs root and strace.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/benches/fs-lib.sh"
BINS=() N=2000
while [[ $# -gt 0 ]]; do
    case $1 in
        --files) N=$2; shift 2 ;;
        *) BINS+=("$(realpath "$1")"); shift ;;
    esac
done
[[ ${#BINS[@]} -gt 0 ]] || { sed -n '7,9p' "$0" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "fs-op-counts.sh: run as root (it mounts)" >&2; exit 1; }
command -v strace >/dev/null || { echo "fs-op-counts.sh: needs strace (apt package strace)" >&2; exit 1; }

WORK=$(mktemp -d /var/tmp/holt-fs-op-counts.XXXXXX)
trap 'fs_cleanup; rm -rf "$WORK"' EXIT
mount_ext4_image "$WORK/ext4" 2048

# One operation per loop step; every loop runs twice on the same tree.
declare -A OPS=(
    [create]='import os,sys; d=sys.argv[1]+"/c%d"%os.getpid(); os.mkdir(d)
for i in range(N): os.close(os.open(d+"/f%d"%i, os.O_CREAT|os.O_WRONLY, 0o644))'
    [write4k]='import os,sys; d=sys.argv[1]+"/w%d"%os.getpid(); os.mkdir(d)
for i in range(N):
    fd=os.open(d+"/f%d"%i, os.O_CREAT|os.O_WRONLY|os.O_TRUNC, 0o644); os.write(fd, b"x"*4096); os.close(fd)'
    [read4k]='import os,sys; d=sys.argv[1]+"/r"; os.makedirs(d, exist_ok=True)
for i in range(N):
    p=d+"/f%d"%i
    if not os.path.exists(p): open(p,"wb").write(b"x"*4096)
    fd=os.open(p, os.O_RDONLY); os.read(fd, 4096); os.close(fd)'
    [ls-l]='import os,sys; d=sys.argv[1]+"/l"; os.makedirs(d, exist_ok=True)
if len(os.listdir(d)) < N:
    for i in range(N): os.close(os.open(d+"/f%d"%i, os.O_CREAT|os.O_WRONLY, 0o644))
for e in os.scandir(d): os.lstat(e.path)'
    [append4]='import os,sys; fd=os.open(sys.argv[1]+"/a", os.O_CREAT|os.O_WRONLY|os.O_APPEND, 0o644)
for i in range(N): os.write(fd, b"abcd")
os.close(fd)'
)

# count BIN OP: "requests syscalls" per operation.
count() {
    local bin=$1 op=$2 mp=$WORK/mnt pid code
    code="N=$N
${OPS[$op]}"
    holt_mount "$bin" "$mp" --store "$WORK/ext4/store"
    pid=$(cat "$mp.pid")
    python3 -c "$code" "$mp"
    strace -c -f -p "$pid" -o "$WORK/strace.txt" 2>/dev/null &
    local tracer=$!
    sleep 1
    python3 -c "$code" "$mp"
    sleep 0.5
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null || true
    daemon_unmount "$mp"
    rm -rf "$WORK/ext4/store"
    # Waiting and memory management are not work done for the operation.
    awk -v n="$N" 'NR > 2 && $4 ~ /^[0-9]+$/ && $NF !~ /^(total|futex|restart_syscall|mprotect|sched_yield|madvise|munmap|mmap)$/ {
        all += $4; if ($NF == "read") req = $4 }
        END { printf "%.2f %.2f\n", req / n, all / n }' "$WORK/strace.txt"
}

printf '| operation |'
for b in "${BINS[@]}"; do printf ' %s requests | syscalls |' "$b"; done
printf '\n|---|'
for _ in "${BINS[@]}"; do printf -- '---:|---:|'; done
printf '\n'
for op in create write4k read4k ls-l append4; do
    printf '| %s |' "$op"
    for b in "${BINS[@]}"; do
        read -r req all < <(count "$b" "$op")
        printf ' %s | %s |' "$req" "$all"
    done
    printf '\n'
done
