//! holt-nullfs: a minimal in-memory FUSE filesystem, the round-trip ceiling
//! of a FUSE filesystem that does nothing. Every inode lives in one
//! `HashMap` behind one lock, file data in a `Vec<u8>`; nothing is stored,
//! logged or counted. The benches (benches/fs-compare.sh) run `holt-fs
//! bench` on it beside holt-fs: what holt-fs spends above this is its own
//! work (storage, journal, metadata tree), and what this costs above the
//! kernel filesystem is the FUSE round trip. It serves requests on as many
//! threads as holt-fs does by default (4, each with its own cloned
//! /dev/fuse descriptor) and tells the kernel to cache as holt-fs does.
//!
//! usage: holt-nullfs MOUNTPOINT [--threads N]
//!
//! Serves until unmounted: `umount MOUNTPOINT`, or SIGINT/SIGTERM, which
//! unmount it (lazily when busy). Everything is gone at unmount.

mod adapter;
mod nodes;

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::ExitCode;

use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};

const USAGE: &str = "usage: holt-nullfs MOUNTPOINT [--threads N]";
/// holt-fs's default count of request-serving threads.
const THREADS_DEFAULT: usize = 4;

struct Args {
    mountpoint: PathBuf,
    threads: usize,
}

fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Args, String> {
    let (mut mountpoint, mut threads) = (None, THREADS_DEFAULT);
    while let Some(arg) = args.next() {
        if arg == "--threads" {
            let n = args.next().and_then(|n| n.to_str()?.parse().ok());
            threads = n.filter(|&n| n > 0).ok_or("--threads takes a positive number")?;
        } else if mountpoint.is_none() && !arg.to_string_lossy().starts_with('-') {
            mountpoint = Some(PathBuf::from(arg));
        } else {
            return Err(format!("unexpected argument {arg:?}"));
        }
    }
    Ok(Args { mountpoint: mountpoint.ok_or("no MOUNTPOINT")?, threads })
}

fn config(threads: usize) -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("holt-nullfs".into()),
        MountOption::Subtype("holt-nullfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::RW,
    ];
    config.acl = SessionACL::Owner;
    config.n_threads = Some(threads);
    config.clone_fd = true;
    config
}

/// Block SIGINT and SIGTERM in this thread and every thread it spawns,
/// so that only `sigwait` in `unmount_on_signal` sees them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local set; pthread_sigmask on this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// On a thread of its own: at the first SIGINT or SIGTERM, unmount, which
/// ends the session; lazily if the mount is busy.
fn unmount_on_signal(set: libc::sigset_t, mut unmounter: SessionUnmounter, mountpoint: PathBuf) -> io::Result<()> {
    let wait = move || {
        let mut sig = 0;
        // SAFETY: sigwait on a set blocked in every thread.
        while unsafe { libc::sigwait(&set, &mut sig) } != 0 {}
        if let Err(e) = unmounter.unmount() {
            eprintln!("holt-nullfs: unmount {}: {e}; detaching it", mountpoint.display());
            let path = std::ffi::CString::new(mountpoint.into_os_string().into_encoded_bytes()).expect("a path has no NUL");
            // SAFETY: umount2 on a NUL-terminated path.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
    };
    std::thread::Builder::new().name("signals".into()).spawn(wait).map(drop)
}

/// Mount, serve until unmounted, return.
fn serve(args: &Args, signals: libc::sigset_t) -> io::Result<()> {
    let owner = std::fs::metadata(&args.mountpoint)?;
    let fs = adapter::NullFs::new(nodes::Table::new(owner.uid(), owner.gid()));
    let mut session = Session::new(fs, &args.mountpoint, &config(args.threads))?;
    unmount_on_signal(signals, session.unmount_callable(), args.mountpoint.clone())?;
    session.run()
}

fn main() -> ExitCode {
    let args = match parse(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("holt-nullfs: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let signals = block_signals();
    match serve(&args, signals) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("holt-nullfs: {}: {e}", args.mountpoint.display());
            ExitCode::FAILURE
        }
    }
}
