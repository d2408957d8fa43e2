#!/usr/bin/env bash
# The whole test suite: installs what the tests need on Debian, then runs
# every test of the workspace. Real-mount tests need /dev/fuse and root (or
# fusermount3); they fail with a message naming what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v fusermount3 >/dev/null || need_pkgs+=(fuse3)
command -v rsync >/dev/null || need_pkgs+=(rsync)
command -v sqlite3 >/dev/null || need_pkgs+=(sqlite3)
command -v git >/dev/null || need_pkgs+=(git)
command -v setfacl >/dev/null || need_pkgs+=(acl)
command -v setfattr >/dev/null || need_pkgs+=(attr)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing: ${need_pkgs[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
    else
        echo "missing packages: ${need_pkgs[*]} (install them, or run as root on Debian)" >&2
        exit 1
    fi
fi

cargo test --workspace --release -- --test-threads=2

# The real-mount tests once more with file data through the daemon: the
# run above used FUSE passthrough wherever the kernel offers it.
HOLT_IT_MOUNT_ARGS=--no-passthrough cargo test --release --test it -- --test-threads=2

# File I/O through io_uring: the store tests on the other Vfs, and a
# persistent engine opened the way the feature build opens it.
cargo test -p holt-core --release --features io-uring --lib -- --test-threads=2 store:: engine::tests

# The benchmark crate (outside the workspace) must build, and its
# do-nothing FUSE peer (holt-nullfs) must mount and serve; its own tests.
cargo test --release --manifest-path benches/Cargo.toml --bin holt-nullfs --test nullfs -- --test-threads=2

# POSIX conformance of a real mount (crates.io pjdfstest): on disk with
# passthrough, on disk through the daemon, and in memory.
scripts/pjdfstest.sh
scripts/pjdfstest.sh --no-passthrough
scripts/pjdfstest.sh --memory
