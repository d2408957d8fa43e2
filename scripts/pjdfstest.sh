#!/usr/bin/env bash
# POSIX conformance: runs the crates.io pjdfstest suite against a fresh
# holt-fs mount, prints its pass/fail counts, and fails on any failure not
# listed (with a reason) in scripts/pjdfstest-exclude.txt.
#
#   scripts/pjdfstest.sh [--memory | --no-passthrough] [TEST_PATTERN...]
#
# The filesystem runs on a fresh store on disk (file data through FUSE
# passthrough where the kernel offers it; through the daemon with
# --no-passthrough), or with --memory in memory.
# Needs root (the suite switches users and creates device nodes).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
exclude="$root/scripts/pjdfstest-exclude.txt"
memory=0
extra_args=()
case "${1:-}" in
    --memory) memory=1; shift ;;
    --no-passthrough) extra_args=(--no-passthrough); shift ;;
esac
target="${CARGO_TARGET_DIR:-$root/target}"

if [ "$(id -u)" != 0 ]; then
    echo "pjdfstest.sh: must run as root (the suite switches users and makes device nodes)" >&2
    exit 1
fi
[ -e /dev/fuse ] || { echo "pjdfstest.sh: /dev/fuse is missing (modprobe fuse)" >&2; exit 1; }

if ! command -v pjdfstest >/dev/null; then
    if ! ls /usr/lib/*/libacl.so >/dev/null 2>&1 && command -v apt-get >/dev/null; then
        echo "installing libacl1-dev (pjdfstest links libacl)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libacl1-dev >/dev/null
    fi
    echo "installing pjdfstest from crates.io"
    cargo install --locked pjdfstest
fi
pjdfstest=$(command -v pjdfstest || echo "$HOME/.cargo/bin/pjdfstest")

# The suite switches to these users; Debian's nobody has group nogroup.
id tests >/dev/null 2>&1 || useradd --no-create-home --user-group --shell /usr/sbin/nologin tests
nobody_group=$(id -gn nobody)

cargo build --release --quiet --bin holt-fs
bin="$target/release/holt-fs"

work=$(mktemp -d /tmp/holt-pjdfstest.XXXXXX)
chmod 755 "$work"  # the suite switches to other users, who must reach the mountpoint
mnt="$work/mnt"
mkdir "$mnt" "$work/secondary"  # secondary: another filesystem, for EXDEV cases
cleanup() {
    local pid
    pid=$(cat "$work/pid" 2>/dev/null || true)
    "$bin" umount -l "$mnt" 2>/dev/null || true
    if [ -n "$pid" ]; then
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

store_args=(--store "$work/store")
[ "$memory" = 1 ] && store_args=(--memory)
"$bin" mount "$mnt" "${store_args[@]}" "${extra_args[@]}" -o allow_other -d --pid-file "$work/pid" --log-file "$work/daemon.log" --log-level warn

cat > "$work/pjdfstest.toml" <<TOML
[features]
posix_fallocate = {}
utimensat = {}
utime_now = {}
rename_ctime = {}

# Remount tests (EROFS) stay off: they remount the filesystem under test.
[settings]
naptime = 0.001
allow_remount = false

[dummy_auth]
entries = [["nobody", "$nobody_group"], ["tests", "tests"]]
TOML

set +e
(cd "$mnt" && NO_COLOR=1 CLICOLOR=0 "$pjdfstest" -c "$work/pjdfstest.toml" -p "$mnt" -s "$work/secondary" "$@") > "$work/out.txt" 2>&1
status=$?
set -e

# Strip any colour codes, then collect the names of failed test cases.
sed -e 's/\x1b\[[0-9;]*m//g' "$work/out.txt" > "$work/plain.txt"
cp "$work/plain.txt" "$target/pjdfstest-last.txt"
grep -E '^[^[:space:]]+ +FAILED$' "$work/plain.txt" | awk '{print $1}' | sort -u > "$work/failed.txt" || true
{ grep -vE '^[[:space:]]*(#|$)' "$exclude" || true; } | awk '{print $1}' | sort -u > "$work/excluded.txt"
comm -23 "$work/failed.txt" "$work/excluded.txt" > "$work/unexpected.txt"

summary=$(grep -E '^Summary:' "$work/plain.txt" || true)
echo "pjdfstest (${store_args[*]} ${extra_args[*]}): ${summary:-no summary (exit status $status)}"
echo "pjdfstest: $(wc -l < "$work/failed.txt") failed, $(wc -l < "$work/excluded.txt") excluded in $(basename "$exclude")"
if [ -z "$summary" ]; then
    tail -n 30 "$work/plain.txt" >&2
    exit 1
fi
if [ -s "$work/unexpected.txt" ]; then
    echo "pjdfstest: failures not in the exclude file:" >&2
    while read -r name; do
        grep -A2 -F "$name " "$work/plain.txt" | sed 's/^/  /' >&2
    done < "$work/unexpected.txt"
    exit 1
fi
echo "pjdfstest: OK"
