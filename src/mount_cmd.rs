//! `holt-fs mount`: options, store, stale-mount cleanup, then serve.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use holt_mount::ctl::{self, DaemonHandler};
use holt_mount::fuse::{self, FuseOptions, Mounted, Unmounter};
use holt_mount::metrics::http::{self, HttpServer, Limits};
use holt_mount::metrics::prometheus;
use holt_mount::mountpoint::{self, MountState};
use holt_mount::{cache_frames, default_cache_bytes, parse_size, CACHE_BYTES_MIN};
use holt_mount::{AtimeMode, Fs, FsConfig, Recovery, Store, StoreOptions};
use log::{info, warn};

use crate::background::{self, Ready};
use crate::{pid_file, signals};

#[derive(Args, Debug)]
pub struct MountArgs {
    /// Directory to mount the filesystem on.
    mountpoint: PathBuf,
    /// Store directory, created on first use (mode 0700): metadata in
    /// STORE/meta, file contents in STORE/data.
    #[arg(long, value_name = "DIR", required_unless_present = "memory", conflicts_with = "memory")]
    store: Option<PathBuf>,
    /// Keep everything in memory, like tmpfs: nothing survives the unmount.
    #[arg(long)]
    memory: bool,
    /// Return once the mount is ready and serve from a background process.
    #[arg(short = 'd', long)]
    background: bool,
    /// Mount options, comma separated: ro, rw, allow_other, relatime (or
    /// atime), noatime, strictatime, nodiratime, diratime, lazytime,
    /// nolazytime, suid, nosuid, dev, nodev, exec, noexec. The mount is
    /// nosuid,nodev unless suid or dev is given.
    #[arg(short = 'o', value_name = "OPTIONS", value_delimiter = ',')]
    options: Vec<String>,
    /// Make every operation durable (on stable storage) before replying.
    #[arg(long)]
    sync: bool,
    /// Memory for the metadata cache, in bytes with an optional K, M, G or
    /// T suffix (e.g. 512M, 2G); file data never goes through it. Default:
    /// an eighth of the memory this process may use (MemTotal, or its
    /// cgroup's limit), between 64M and 4G.
    #[arg(long, value_name = "SIZE", value_parser = cache_size)]
    cache_size: Option<u64>,
    /// Seconds the kernel may cache a name lookup.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    entry_ttl: f64,
    /// Seconds the kernel may cache attributes.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    attr_ttl: f64,
    /// Seconds the kernel may cache "no such file" (0 disables).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    negative_ttl: f64,
    /// Opt-in speed mode: let the kernel cache writes and send them later.
    /// A write is then acknowledged before it reaches the daemon, so killing
    /// the daemon can lose writes that were not fsync'd, and the kernel's
    /// cached ctime/mtime can lag (3 pjdfstest time cases fail in this mode).
    #[arg(long)]
    writeback_cache: bool,
    /// Serve every read and write through the daemon instead of letting the
    /// kernel use the data objects directly (FUSE passthrough, used by
    /// default where the kernel offers it, except with --sync and
    /// --writeback-cache).
    #[arg(long)]
    no_passthrough: bool,
    /// Threads serving FUSE requests.
    #[arg(long, value_name = "N", default_value_t = 4)]
    threads: usize,
    /// With --background: append the daemon's log here (default:
    /// discarded); SIGHUP reopens it, for logrotate.
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// Serve the daemon's counters in the Prometheus text format at
    /// http://ADDR/metrics (doc/METRICS.md). ADDR: HOST:PORT as given, or
    /// a bare PORT on 127.0.0.1 (e.g. 9567). No authentication: an
    /// address other hosts can reach shows them request counts and
    /// latencies.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Write the serving process's pid here once the mount is ready.
    #[arg(long, value_name = "PATH")]
    pid_file: Option<PathBuf>,
    /// Internal: report readiness of a background daemon on this descriptor.
    #[arg(long, hide = true)]
    ready_fd: Option<i32>,
}

/// The address `--metrics` names: a bare port is one on loopback.
fn metrics_addr(arg: &str) -> Result<SocketAddr, String> {
    let with_host = if arg.bytes().all(|b| b.is_ascii_digit()) { format!("127.0.0.1:{arg}") } else { arg.to_string() };
    let bad = |why: String| format!("--metrics {arg}: {why} (expected HOST:PORT or PORT)");
    let mut addrs = with_host.to_socket_addrs().map_err(|e| bad(e.to_string()))?;
    addrs.next().ok_or_else(|| bad("names no address".into()))
}

#[derive(Debug)]
pub(crate) struct MountOptions {
    read_only: bool,
    allow_other: bool,
    atime: AtimeMode,
    /// Listings leave directory atimes alone.
    nodiratime: bool,
    /// Shown in the mount table; nothing to do otherwise.
    lazytime: bool,
    /// Honour setuid/setgid bits; off by default (nosuid).
    suid: bool,
    /// Honour device files; off by default (nodev).
    dev: bool,
    exec: bool,
}

const KNOWN_OPTIONS: &str = "ro, rw, allow_other, atime, relatime, noatime, strictatime, diratime, nodiratime, \
                             lazytime, nolazytime, suid, nosuid, dev, nodev, exec, noexec";

pub(crate) fn parse_options(opts: &[String]) -> Result<MountOptions, String> {
    let mut out = MountOptions {
        read_only: false,
        allow_other: false,
        atime: AtimeMode::Relatime,
        nodiratime: false,
        lazytime: false,
        suid: false,
        dev: false,
        exec: true,
    };
    for o in opts.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
        match o {
            "ro" | "rw" => out.read_only = o == "ro",
            "allow_other" => out.allow_other = true,
            "noatime" => out.atime = AtimeMode::Noatime,
            "relatime" | "atime" => out.atime = AtimeMode::Relatime,
            "strictatime" => out.atime = AtimeMode::Strictatime,
            "nodiratime" | "diratime" => out.nodiratime = o == "nodiratime",
            "lazytime" | "nolazytime" => out.lazytime = o == "lazytime",
            "suid" | "nosuid" => out.suid = o == "suid",
            "dev" | "nodev" => out.dev = o == "dev",
            "exec" | "noexec" => out.exec = o == "exec",
            "default_permissions" => {}
            other => return Err(format!("unknown mount option '{other}' (known: {KNOWN_OPTIONS})")),
        }
    }
    Ok(out)
}

impl MountOptions {
    /// The security flags as mount(8) shows them.
    fn flags(&self) -> String {
        let words = [(self.suid, "suid", "nosuid"), (self.dev, "dev", "nodev"), (self.exec, "exec", "noexec")];
        words.iter().map(|&(on, yes, no)| if on { yes } else { no }).collect::<Vec<_>>().join(",")
    }
}

/// `--cache-size`: a size no smaller than the cache can usefully be.
fn cache_size(s: &str) -> Result<u64, String> {
    let bytes = parse_size(s)?;
    if bytes < CACHE_BYTES_MIN {
        return Err(format!("{s} is below the smallest cache, {}M", CACHE_BYTES_MIN >> 20));
    }
    Ok(bytes)
}

fn ttl(secs: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs).map_err(|_| format!("--{what} must be a non-negative number of seconds"))
}

pub fn run(args: MountArgs) -> Result<(), String> {
    if args.background && args.ready_fd.is_none() {
        let pid = background::spawn_and_wait(args.log_file.as_deref())?;
        info!("holt-fs serving {} from pid {pid}", args.mountpoint.display());
        return Ok(());
    }
    let mut ready = Ready::from_fd(args.ready_fd);
    let result = serve(&args, &mut ready);
    if let Err(msg) = &result {
        ready.failed(msg);
    }
    result
}

/// Clear a dead mount at `mp`, refuse a live one; returns the canonical path.
fn prepare_mountpoint(mp: &Path) -> Result<PathBuf, String> {
    let state = mountpoint::state(mp).map_err(|e| format!("mountpoint {}: {e}", mp.display()))?;
    match state {
        MountState::Dead => {
            warn!("clearing a dead FUSE mount at {} (its daemon is gone)", mp.display());
            mountpoint::unmount(mp, true).map_err(|e| format!("cannot clear the dead mount at {}: {e}", mp.display()))?;
        }
        MountState::Mounted => return Err(format!("{} is already a mountpoint; unmount it first", mp.display())),
        MountState::Free => {}
    }
    let canonical = std::fs::canonicalize(mp).map_err(|e| format!("mountpoint {}: {e}", mp.display()))?;
    if !canonical.is_dir() {
        return Err(format!("mountpoint {} is not a directory", mp.display()));
    }
    Ok(canonical)
}

/// Raise the soft limit on open descriptors to the hard one, and return
/// how many data objects the daemon may keep open: half of the limit past
/// 1024 left for everything else, between 512 and 16384. A kept descriptor
/// spares an object's path lookup on every stat and change of it.
fn object_descriptors() -> usize {
    // SAFETY: getrlimit/setrlimit with a valid struct.
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, ..lim };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    let spare = usize::try_from(lim.rlim_cur.saturating_sub(1024)).unwrap_or(usize::MAX);
    let objects = (spare / 2).clamp(512, 16384);
    presize_descriptor_table((objects + 1024).min(usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)) - 1);
    objects
}

/// Grow this process's descriptor table to hold `highest` now, before
/// the daemon's threads start: the kernel grows a table shared by threads
/// only after an RCU grace period, which stalled whichever create opened
/// descriptor 1024, 2048, 4096, ... for several milliseconds. A table
/// never shrinks, so one dup2 onto the highest number (closed at once) is
/// enough. A failure only leaves the growth for later.
fn presize_descriptor_table(highest: usize) {
    let Ok(highest) = libc::c_int::try_from(highest) else { return };
    // SAFETY: dup2 of standard error onto a number this process does not
    // use yet, closed at once; nothing else holds that number.
    unsafe {
        if libc::fcntl(highest, libc::F_GETFD) == -1 && libc::dup2(libc::STDERR_FILENO, highest) == highest {
            libc::close(highest);
        }
    }
}

fn open_fs(args: &MountArgs, opts: &MountOptions) -> Result<Fs, String> {
    let cache_bytes = args.cache_size.unwrap_or_else(default_cache_bytes);
    if !args.memory {
        info!("metadata cache: {} MiB ({} frames)", cache_bytes >> 20, cache_frames(cache_bytes));
    }
    let store_opts = StoreOptions {
        sync: args.sync,
        fds_max: object_descriptors(),
        atime: opts.atime,
        read_only: opts.read_only,
        cache_frames: cache_frames(cache_bytes),
    };
    let store = match &args.store {
        Some(dir) if !args.memory => Store::open(dir, &store_opts).map_err(|e| e.to_string())?,
        _ => Store::memory(&store_opts).map_err(|e| e.to_string())?,
    };
    let cfg = FsConfig {
        read_only: opts.read_only,
        sync_data: args.sync,
        atime: opts.atime,
        nodiratime: opts.nodiratime,
        boot_id: None,
    };
    Fs::from_store(store, cfg).map_err(|e| format!("cannot open the filesystem: {e}"))
}

/// The mount table's source column: the store's absolute path (what
/// `holt-fs umount` waits on), or `holt-fs:memory`.
fn source_name(args: &MountArgs) -> Result<String, String> {
    match &args.store {
        Some(dir) if !args.memory => {
            let path = std::fs::canonicalize(dir).map_err(|e| format!("store {}: {e}", dir.display()))?;
            let name = path.to_str().ok_or_else(|| format!("store path {} is not UTF-8", path.display()))?;
            if name.contains(',') {
                return Err(format!("store path {name} contains ',', which mount options cannot carry"));
            }
            Ok(name.to_string())
        }
        _ => Ok(mountpoint::MEMORY_SOURCE.into()),
    }
}

/// The one line a mount logs: what is mounted where, in which mode, and
/// what it recovered from the last mount.
fn mounted_line(source: &str, mp: &Path, args: &MountArgs, opts: &MountOptions, fs: &FsSummary) -> String {
    let mode = if opts.read_only { "ro" } else { "rw" };
    let durability = match (args.memory, args.sync) {
        (true, _) => "in memory",
        (false, true) => "sync",
        (false, false) => "async",
    };
    let data_path = if fs.passthrough { "FUSE passthrough" } else { "through the daemon" };
    let recovery = match (&fs.recovery, opts.read_only) {
        (Some(r), _) => format!("; {r}"),
        (None, true) if !args.memory => "; read-only: nothing recovered, the WAL replayed in memory".to_string(),
        (None, _) => String::new(),
    };
    format!(
        "mounted {source} at {} ({mode}, {durability}, {}, data path: {data_path}{recovery})",
        mp.display(),
        opts.flags()
    )
}

/// What the line needs to know of the filesystem once it is mounted.
struct FsSummary {
    passthrough: bool,
    recovery: Option<Recovery>,
}

/// Unmount on SIGINT/SIGTERM (lazily if that fails); on SIGHUP reopen the
/// log file of a background daemon.
fn handle_signals(
    signals: signals::Signals,
    mp: &Path,
    mut unmounter: Unmounter,
    log_file: Option<PathBuf>,
) -> Result<(), String> {
    let target = mp.to_path_buf();
    let mut unmounted = false;
    let on_terminate = move |sig| {
        if unmounted {
            info!("signal {sig}: already unmounting {}", target.display());
            return;
        }
        info!("signal {sig}: unmounting {}", target.display());
        if let Err(e) = unmounter.unmount(false) {
            warn!("unmount after signal {sig} failed: {e}; detaching lazily");
            if let Err(e) = unmounter.unmount(true) {
                warn!("lazy unmount of {} failed: {e}", target.display());
                return;
            }
        }
        unmounted = true;
    };
    let on_hangup = move || match &log_file {
        Some(path) => match background::reopen_log(path) {
            Ok(()) => info!("SIGHUP: reopened log file {}", path.display()),
            Err(e) => warn!("SIGHUP: cannot reopen log file {}: {e}; still logging to the old one", path.display()),
        },
        None => info!("SIGHUP: no log file to reopen; the mount stays"),
    };
    signals.handle(on_terminate, on_hangup).map_err(|e| format!("cannot start the signal thread: {e}"))
}

/// Listen on the store's control socket (`holt-fs info`, `dump`). A read-write
/// mount without one still serves files, so a failure is only a warning.
fn start_control(mounted: &mut Mounted, store: &Path, mp: &Path) {
    let handler = DaemonHandler {
        fs: Arc::clone(mounted.fs()),
        stats: mounted.stats().clone(),
        store: store.to_path_buf(),
        mountpoint: mp.to_path_buf(),
    };
    match ctl::Server::start(store, Arc::new(handler)) {
        Ok(server) => mounted.attach_control(server),
        Err(e) => warn!(
            "cannot listen on the control socket {}: {e}; holt-fs info and dump will not reach this daemon",
            store.join(ctl::SOCKET_NAME).display()
        ),
    }
}

/// Bind the metrics address, if asked for: before the mount, so a bad
/// or busy address fails the command instead of leaving a mount without
/// its endpoint.
fn bind_metrics(args: &MountArgs) -> Result<Option<TcpListener>, String> {
    let Some(arg) = &args.metrics else { return Ok(None) };
    let addr = metrics_addr(arg)?;
    let listener = http::bind(addr).map_err(|e| format!("cannot listen for --metrics on {addr}: {e}"))?;
    Ok(Some(listener))
}

/// Serve the Prometheus text on `listener` while the filesystem is served.
fn start_metrics(mounted: &mut Mounted, listener: TcpListener) -> Result<(), String> {
    let addr = listener.local_addr().map_err(|e| format!("--metrics: {e}"))?;
    let stats = mounted.stats().clone();
    let render = Arc::new(move || prometheus::render(&stats.report()));
    let server = HttpServer::start(listener, render, Limits::DEFAULT).map_err(|e| format!("--metrics on {addr}: {e}"))?;
    let reach = if addr.ip().is_loopback() { "this host only" } else { "other hosts too, without authentication" };
    info!("metrics at http://{addr}{} ({reach})", http::METRICS_PATH);
    mounted.attach_metrics(server);
    Ok(())
}

fn serve(args: &MountArgs, ready: &mut Ready) -> Result<(), String> {
    let signals = signals::block();
    let opts = parse_options(&args.options)?;
    // A background daemon's stderr is its log file; resolve it now so a
    // reopen finds the same path.
    let log_file = match (&args.log_file, args.ready_fd) {
        (Some(p), Some(_)) => Some(std::path::absolute(p).map_err(|e| format!("log file {}: {e}", p.display()))?),
        _ => None,
    };
    let fuse_opts = FuseOptions {
        entry_ttl: ttl(args.entry_ttl, "entry-ttl")?,
        attr_ttl: ttl(args.attr_ttl, "attr-ttl")?,
        negative_ttl: ttl(args.negative_ttl, "negative-ttl")?,
        threads: args.threads.max(1),
        allow_other: opts.allow_other,
        read_only: opts.read_only,
        suid: opts.suid,
        dev: opts.dev,
        exec: opts.exec,
        atime: opts.atime,
        nodiratime: opts.nodiratime,
        lazytime: opts.lazytime,
        writeback_cache: args.writeback_cache,
        // --sync needs every write to reach the daemon (it syncs each one);
        // the writeback cache is the kernel's own alternative data path.
        passthrough: !(args.no_passthrough || args.sync || args.writeback_cache || args.memory),
        fsname: mountpoint::MEMORY_SOURCE.into(),
    };
    let metrics = bind_metrics(args)?;
    let mp = prepare_mountpoint(&args.mountpoint)?;
    let fs = open_fs(args, &opts)?;
    let recovery = fs.recovery().copied();
    let fuse_opts = FuseOptions { fsname: source_name(args)?, ..fuse_opts };
    let mut mounted = fuse::mount(fs, &mp, &fuse_opts).map_err(|e| format!("cannot mount at {}: {e}", mp.display()))?;
    if !args.memory && !opts.read_only {
        start_control(&mut mounted, Path::new(&fuse_opts.fsname), &mp);
    }
    if let Some(listener) = metrics {
        start_metrics(&mut mounted, listener)?;
    }
    handle_signals(signals, &mp, mounted.unmounter(), log_file)?;
    if let Some(p) = &args.pid_file {
        pid_file::write(p).map_err(|e| format!("cannot write pid file {}: {e}", p.display()))?;
    }
    let summary = FsSummary { passthrough: mounted.passthrough(), recovery };
    info!("{}", mounted_line(&fuse_opts.fsname, &mp, args, &opts, &summary));
    ready.ready();
    let served = mounted.run();
    if let Some(p) = &args.pid_file {
        pid_file::remove(p);
    }
    served.map_err(|e| format!("serving {} failed: {e}", mp.display()))?;
    info!("unmounted {}; store closed", mp.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_parse_and_reject_unknown() {
        let o = parse_options(&["ro".into(), "allow_other".into(), "noatime".into()]).unwrap();
        assert!(o.read_only && o.allow_other && o.atime == AtimeMode::Noatime);
        assert_eq!(o.flags(), "nosuid,nodev,exec", "safe by default");
        let o = parse_options(&["suid".into(), "dev".into(), "noexec".into()]).unwrap();
        assert_eq!(o.flags(), "suid,dev,noexec");
        let o = parse_options(&["suid".into(), "nosuid".into(), "nodev".into(), "exec".into()]).unwrap();
        assert_eq!(o.flags(), "nosuid,nodev,exec", "the last word wins");
        assert!(parse_options(&["bogus".into()]).unwrap_err().contains("bogus"));
        assert!(ttl(-1.0, "entry-ttl").is_err());
    }

    #[test]
    fn cache_size_takes_suffixes_and_refuses_a_useless_cache() {
        assert_eq!(cache_size("2G"), Ok(2 << 30));
        assert_eq!(cache_size("64M"), Ok(64 << 20));
        assert!(cache_size("1M").unwrap_err().contains("smallest"));
        assert!(cache_size("lots").is_err());
    }

    #[test]
    fn metrics_addresses_default_to_loopback_and_take_any_given() {
        assert_eq!(metrics_addr("127.0.0.1:9567").unwrap(), "127.0.0.1:9567".parse().unwrap());
        assert_eq!(metrics_addr("9100").unwrap(), "127.0.0.1:9100".parse().unwrap());
        assert_eq!(metrics_addr("0.0.0.0:9100").unwrap(), "0.0.0.0:9100".parse().unwrap());
        assert_eq!(metrics_addr("[::1]:9100").unwrap(), "[::1]:9100".parse().unwrap());
        assert!(metrics_addr("localhost:9100").unwrap().ip().is_loopback());
        for bad in ["", "host", "127.0.0.1", "1.2.3.4:99999", "99999"] {
            assert!(metrics_addr(bad).is_err(), "{bad}");
        }
    }
}
