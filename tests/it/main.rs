//! Real-mount integration tests: each test mounts holt-fs (the built binary)
//! on a temporary directory and works through the kernel. Mount guards always
//! unmount, even when a test fails. Without /dev/fuse these tests fail and
//! say what is missing; they never skip.

mod acl;
mod bigdir;
mod boot;
mod crash_script;
mod direct_io;
mod dump;
mod fsck;
mod full_disk;
mod harness;
mod info;
mod metrics;
mod passthrough;
mod persist;
mod posix;
mod safety;
mod stress;
mod tools;
