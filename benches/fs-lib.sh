# Shared by benches/fs-compare.sh and benches/fs-before-after.sh (sourced).
# Every mount made here is recorded and undone by fs_cleanup, which the
# scripts run from an EXIT trap: also after a failure or Ctrl-C.

FS_MOUNTS=()   # mountpoints we mounted, unmounted in reverse order
FS_PIDS=()     # daemons we started, waited for (then killed) after unmounting
FS_TMPFS=""    # the tmpfs we mounted, if any
FS_IMAGE=""    # the loop-mounted ext4 image we mounted, if any

say() { echo "== $*" >&2; }

is_mounted() { mountpoint -q "$1" 2>/dev/null; }

# Unmount one of our mountpoints; lazily if it is busy.
fs_unmount() {
    local mp=$1
    is_mounted "$mp" || return 0
    umount "$mp" 2>/dev/null || umount -l "$mp" || say "cannot unmount $mp"
}

# Wait up to 60 s for a daemon we started to exit, then kill it.
fs_reap() {
    local pid=$1 i
    for ((i = 0; i < 600; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    say "daemon $pid did not exit after its unmount; killing it"
    kill -9 "$pid" 2>/dev/null || true
}

# Unmount everything we mounted and reap our daemons.
fs_unmount_all() {
    local i
    for ((i = ${#FS_MOUNTS[@]} - 1; i >= 0; i--)); do fs_unmount "${FS_MOUNTS[i]}"; done
    for pid in "${FS_PIDS[@]}"; do fs_reap "$pid"; done
    FS_MOUNTS=() FS_PIDS=()
}

fs_cleanup() {
    fs_unmount_all
    if [[ -n $FS_TMPFS ]]; then fs_unmount "$FS_TMPFS"; fi
    if [[ -n $FS_IMAGE ]]; then fs_unmount "$FS_IMAGE"; fi
}

# Mount a size-limited tmpfs of SIZE_MIB at DIR.
mount_tmpfs() {
    local dir=$1 size_mib=$2
    mkdir -p "$dir"
    mount -t tmpfs -o "size=${size_mib}m,mode=0700" holt-bench-tmpfs "$dir"
    FS_TMPFS=$dir
}

# Mount a fresh ext4 image of SIZE_MIB (mkfs defaults, so with a journal,
# as most disks are formatted) at DIR, the image file beside DIR. A root
# filesystem made without a journal makes ext4 search recently deleted
# inodes on every create, which no common setup does.
mount_ext4_image() {
    local dir=$1 size_mib=$2
    mkdir -p "$dir"
    truncate -s "${size_mib}M" "$dir.img"
    mkfs.ext4 -q -F "$dir.img"
    mount -o loop "$dir.img" "$dir"
    FS_IMAGE=$dir
}

# holt_mount BIN MOUNTPOINT (--store DIR | --memory) [mount options...]:
# a background daemon; records the mount and the daemon's pid.
holt_mount() {
    local bin=$1 mp=$2 pid_file
    shift 2
    mkdir -p "$mp"
    pid_file="$mp.pid"
    FS_MOUNTS+=("$mp")
    "$bin" mount "$mp" -d --pid-file "$pid_file" --log-level warn "$@"
    FS_PIDS+=("$(cat "$pid_file")")
}

# Forget a mountpoint and a pid once they are undone, so the cleanup never
# touches a pid that another process may have been given since.
fs_forget() {
    local mp=$1 pid=$2 m p keep_mounts=() keep_pids=()
    for m in "${FS_MOUNTS[@]}"; do [[ $m == "$mp" ]] || keep_mounts+=("$m"); done
    for p in "${FS_PIDS[@]}"; do [[ $p == "$pid" ]] || keep_pids+=("$p"); done
    FS_MOUNTS=("${keep_mounts[@]}") FS_PIDS=("${keep_pids[@]}")
}

# nullfs_mount BIN MOUNTPOINT: holt-nullfs (benches/src/bin/holt-nullfs)
# in the background, its pid in MOUNTPOINT.pid as holt_mount leaves it;
# returns once mounted, or 1 (and says why) if it is not within 10 s.
nullfs_mount() {
    local bin=$1 mp=$2 pid i
    mkdir -p "$mp"
    FS_MOUNTS+=("$mp")
    "$bin" "$mp" &
    pid=$!
    FS_PIDS+=("$pid")
    echo "$pid" >"$mp.pid"
    for ((i = 0; i < 100; i++)); do
        is_mounted "$mp" && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    say "holt-nullfs did not mount $mp"
    return 1
}

# Unmount a mount of holt-fs or holt-nullfs and wait for its daemon to
# exit (holt-fs: to close the store), by the pid in MOUNTPOINT.pid, so this
# works for builds whose `umount` does not wait.
daemon_unmount() {
    local mp=$1 pid
    pid=$(cat "$mp.pid")
    fs_unmount "$mp"
    fs_reap "$pid"
    fs_forget "$mp" "$pid"
}

# bindfs SRC over MOUNTPOINT, installing bindfs through apt when we are
# root and it is missing; returns 1 (and says why) when it cannot.
bindfs_mount() {
    local src=$1 mp=$2
    if ! command -v bindfs >/dev/null; then
        if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
            say "bindfs is not installed (apt package bindfs): skipping the FUSE passthrough"
            return 1
        fi
        say "bindfs is missing: installing the apt package bindfs"
        apt-get install -y -qq bindfs >/dev/null || { apt-get update -qq && apt-get install -y -qq bindfs >/dev/null; } ||
            { say "cannot install bindfs: skipping the FUSE passthrough"; return 1; }
    fi
    mkdir -p "$src" "$mp"
    FS_MOUNTS+=("$mp")
    bindfs "$src" "$mp"
}
