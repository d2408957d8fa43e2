//! The FUSE adapter: the only module that names fuser types. `adapter`
//! holds the callbacks: each decodes its request into plain values, calls
//! [`Fs`] once, and encodes the reply; errno comes from
//! [`FsError::errno`](crate::FsError::errno) and nowhere else. `call`
//! counts each request in the daemon's metrics as it ends. `convert`
//! turns fuser's types into plain ones and back; `backing` holds the
//! kernel's passthrough handles for open regular files; `kernel_mount`
//! mounts through mount(2) where we may. This file: the options, the
//! session, and the mounted filesystem's lifetime.

mod adapter;
mod backing;
mod call;
mod convert;
mod kernel_mount;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, MountOption, Session, SessionACL};
use log::{debug, error};

use adapter::Adapter;
use backing::Backings;

use crate::metrics::http::HttpServer;
use crate::metrics::{Requests, StatsSource};
use crate::Fs;

/// How the kernel caches what this daemon tells it.
#[derive(Clone, Debug)]
pub struct FuseOptions {
    /// How long a name → inode answer stays valid.
    pub entry_ttl: Duration,
    /// How long attributes stay valid.
    pub attr_ttl: Duration,
    /// How long "no such name" stays valid (0: not cached).
    pub negative_ttl: Duration,
    /// Request-serving threads.
    pub threads: usize,
    /// Let other users in (`allow_other`).
    pub allow_other: bool,
    /// Mount read-only.
    pub read_only: bool,
    /// Honour setuid/setgid bits (`suid`); off: the mount is `nosuid`.
    pub suid: bool,
    /// Honour device files (`dev`); off: the mount is `nodev`.
    pub dev: bool,
    /// Allow executing files (`exec`); off: the mount is `noexec`.
    pub exec: bool,
    /// The atime option (the kernel shows it; the daemon keeps atimes).
    pub atime: crate::AtimeMode,
    /// `nodiratime` (shown; the daemon leaves directory atimes alone).
    pub nodiratime: bool,
    /// `lazytime` (shown; the daemon makes no timestamp durable before the
    /// next sync anyway).
    pub lazytime: bool,
    /// Source name shown in mount tables.
    pub fsname: String,
    /// Opt-in speed mode: the kernel buffers writes in its page cache and
    /// sends them later, so a write(2) is acknowledged before the daemon
    /// has it (kill -9 of the daemon can lose writes not yet fsync'd).
    pub writeback_cache: bool,
    /// Let the kernel read and write data objects directly (FUSE
    /// passthrough) where it can; else every read and write is a request.
    pub passthrough: bool,
}

impl Default for FuseOptions {
    fn default() -> Self {
        FuseOptions {
            entry_ttl: Duration::from_secs(60),
            attr_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(60),
            threads: 4,
            allow_other: false,
            read_only: false,
            suid: false,
            dev: false,
            exec: true,
            atime: crate::AtimeMode::Relatime,
            nodiratime: false,
            lazytime: false,
            fsname: "holt-fs".into(),
            writeback_cache: false,
            passthrough: true,
        }
    }
}

/// A mounted filesystem, handshake done; `run` serves it until unmounted.
pub struct Mounted {
    session: Session<Adapter>,
    fs: Arc<Fs>,
    mountpoint: PathBuf,
    /// The adapter's passthrough flag, as the handshake left it.
    passthrough: Arc<AtomicBool>,
    /// What the request counters and the engine say, for reports.
    stats: StatsSource,
    /// The control socket, stopped (and removed) before the filesystem closes.
    control: Option<crate::ctl::Server>,
    /// The metrics endpoint, stopped with the control socket.
    metrics: Option<HttpServer>,
}

/// Unmounts a [`Mounted`] from another thread (e.g. the signal thread),
/// with umount2(2), or fusermount3 where that is not permitted.
pub struct Unmounter(PathBuf);

impl Unmounter {
    /// Unmount; `lazy` detaches even while files are in use.
    pub fn unmount(&mut self, lazy: bool) -> io::Result<()> {
        crate::mountpoint::unmount(&self.0, lazy)
    }
}

/// fuser's session settings, and its mount options for the fusermount3
/// path (the mount(2) path passes the same through `kernel_mount`).
fn session_config(opts: &FuseOptions) -> Config {
    let mut config = Config::default();
    let pick = |on: bool, yes: MountOption, no: MountOption| if on { yes } else { no };
    config.mount_options = vec![
        MountOption::FSName(opts.fsname.clone()),
        MountOption::Subtype(crate::mountpoint::FS_TYPE["fuse.".len()..].into()),
        MountOption::DefaultPermissions,
        pick(opts.dev, MountOption::Dev, MountOption::NoDev),
        pick(opts.suid, MountOption::Suid, MountOption::NoSuid),
        pick(opts.exec, MountOption::Exec, MountOption::NoExec),
        pick(opts.read_only, MountOption::RO, MountOption::RW),
    ];
    if opts.atime == crate::AtimeMode::Noatime {
        config.mount_options.push(MountOption::NoAtime);
    }
    config.acl = if opts.allow_other { SessionACL::All } else { SessionACL::Owner };
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = true;
    config
}

/// Mount `fs` at `mountpoint` and complete the FUSE handshake: when this
/// returns, the mount is ready for use.
pub fn mount(fs: Fs, mountpoint: &Path, opts: &FuseOptions) -> io::Result<Mounted> {
    let config = session_config(opts);
    let fs = Arc::new(fs);
    Fs::start_reclaimer(&fs)?;
    let passthrough = Arc::new(AtomicBool::new(false));
    let backings = Arc::new(Backings::default());
    let kept = Arc::clone(&backings);
    fs.on_object_removal(move |ino| kept.forget(ino)).map_err(io::Error::other)?;
    let requests = Arc::new(Requests::default());
    let stats = StatsSource::new(Arc::clone(&fs), Arc::clone(&requests), Arc::clone(&passthrough));
    let adapter =
        Adapter { fs: Arc::clone(&fs), opts: opts.clone(), passthrough: Arc::clone(&passthrough), backings, requests };
    let session = match kernel_mount::mount(mountpoint, opts)? {
        Some(fd) => Session::from_fd(adapter, fd, config.acl, config).inspect_err(|_| {
            // The handshake failed: leave no dead mount behind.
            let _ = crate::mountpoint::unmount(mountpoint, true);
        })?,
        None => {
            debug!("mount(2) is not permitted; mounting through fusermount3");
            Session::new(adapter, mountpoint, &config)?
        }
    };
    let mountpoint = mountpoint.to_path_buf();
    Ok(Mounted { session, fs, mountpoint, passthrough, stats, control: None, metrics: None })
}

impl Mounted {
    pub fn unmounter(&self) -> Unmounter {
        Unmounter(self.mountpoint.clone())
    }

    /// Whether the kernel reads and writes data objects directly (FUSE
    /// passthrough granted at the handshake).
    pub fn passthrough(&self) -> bool {
        self.passthrough.load(Ordering::Relaxed)
    }

    /// The filesystem being served (for the control socket's handler).
    pub fn fs(&self) -> &Arc<Fs> {
        &self.fs
    }

    /// The daemon's counters, for the control socket and the metrics endpoint.
    pub fn stats(&self) -> &StatsSource {
        &self.stats
    }

    /// Keep `server` running while the filesystem is served.
    pub fn attach_control(&mut self, server: crate::ctl::Server) {
        self.control = Some(server);
    }

    /// Keep the metrics endpoint running while the filesystem is served.
    pub fn attach_metrics(&mut self, server: HttpServer) {
        self.metrics = Some(server);
    }

    /// Serve requests until the filesystem is unmounted, then stop the
    /// metrics endpoint and the control socket (removing it, while the
    /// store is still ours) and
    /// close the filesystem (queued reclaims done, clean close recorded)
    /// before returning, so the caller can release the store right after.
    pub fn run(mut self) -> io::Result<()> {
        let served = session_end(self.session.run());
        drop(self.metrics.take());
        drop(self.control.take());
        if let Err(e) = self.fs.shutdown() {
            error!("closing the filesystem: {e} (the next mount finishes the work)");
        }
        served
    }
}

/// What a finished session means. The kernel ends a connection (an
/// unmount, or an abort) by failing the daemon's next read with ENODEV,
/// which fuser takes as the end; but a read that had already taken a
/// request off the queue when the connection went fails with ECONNABORTED
/// instead (`fuse_dev_do_read` in fs/fuse/dev.c), which fuser passes on as
/// an error. Both are the same end: the filesystem closes cleanly after it.
fn session_end(served: io::Result<()>) -> io::Result<()> {
    match served {
        Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
            debug!("the kernel ended the FUSE connection while handing over a request");
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod session_tests {
    use super::*;

    #[test]
    fn a_connection_ended_mid_handover_ends_the_session_and_other_errors_stay() {
        assert!(session_end(Ok(())).is_ok());
        assert!(session_end(Err(io::Error::from_raw_os_error(libc::ECONNABORTED))).is_ok());
        for errno in [libc::EIO, libc::EINVAL, libc::ENOMEM] {
            let e = session_end(Err(io::Error::from_raw_os_error(errno))).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(errno));
        }
    }
}
