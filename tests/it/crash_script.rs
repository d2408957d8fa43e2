//! The kill-and-remount driver that `scripts/crash-test.sh` runs
//! (`holt-crash`), for a few rounds in each durability mode and data path.

use std::process::Command;

use crate::harness::{require_fuse, seed};

/// Rounds per mode: enough to meet every kind of in-flight call, short
/// enough for the suite (about a second a round).
const ROUNDS: &str = "8";

fn crash_rounds_pass(test: &str, extra: &[&str]) {
    require_fuse();
    let seed = seed(test).to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_holt-crash"))
        .args(["--rounds", ROUNDS, "--seed", &seed, "--kill-ms-max", "800"])
        .arg("--holt-fs")
        .arg(env!("CARGO_BIN_EXE_holt-fs"))
        .args(extra)
        .output()
        .expect("holt-crash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(&format!("{ROUNDS} passed, 0 failed")),
        "holt-crash {extra:?} failed ({}):\n{stdout}{stderr}",
        out.status
    );
    print!("{stdout}");
}

#[test]
fn crash_rounds_keep_every_acknowledged_operation() {
    crash_rounds_pass("crash_rounds_default", &[]);
}

/// Writes through the daemon rather than FUSE passthrough (the default
/// where the kernel offers it), so that kills cut writes off in flight.
#[test]
fn crash_rounds_keep_every_acknowledged_operation_without_passthrough() {
    crash_rounds_pass("crash_rounds_no_passthrough", &["--daemon-arg=--no-passthrough"]);
}

#[test]
fn crash_rounds_keep_every_acknowledged_operation_with_sync() {
    crash_rounds_pass("crash_rounds_sync", &["--sync"]);
}
