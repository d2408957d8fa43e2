#!/usr/bin/env bash
# Kill-and-remount crash test of holt-fs. Builds the release binaries, then
# runs `holt-crash`: each round mounts a store, runs a seeded multi-threaded
# workload, SIGKILLs the daemon at a seeded moment, remounts, checks every
# acknowledged operation (and each in-flight one either way), unmounts and
# runs `holt-fs fsck`. The store carries over from round to round.
#
#   scripts/crash-test.sh [--rounds N] [--sync] [--seed S] [--store DIR]
#                         [--threads T] [--kill-ms-max MS] [--no-fsck]
#                         [--daemon-arg=ARG ...]   (e.g. --daemon-arg=--no-passthrough)
#
# A failing round prints its seed, the command that replays it and the
# store it leaves for inspection, and the script exits non-zero. Needs
# /dev/fuse and root (or fusermount3). doc/CRASH-TESTING.md has more.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bins --quiet
target="${CARGO_TARGET_DIR:-target}"
holt_fs="$target/release/holt-fs"

work="$(mktemp -d "${TMPDIR:-/tmp}/holt-crash.XXXXXX")"
# However the driver ends, nothing stays mounted at the mountpoint it used.
detach() {
    if grep -qF " $work/mnt " /proc/self/mountinfo 2>/dev/null; then
        "$holt_fs" umount -l "$work/mnt" || true
    fi
}
trap detach EXIT

"$target/release/holt-crash" --holt-fs "$holt_fs" --work-dir "$work" "$@"
