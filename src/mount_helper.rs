//! `mount.holt-fs`: the same binary started under the name mount(8) gives
//! an external helper (`/sbin/mount.fuse.holt-fs` for `-t fuse.holt-fs`,
//! `/sbin/mount.holt-fs` for `-t holt-fs`). mount(8) calls it as
//! `mount.holt-fs SOURCE MOUNTPOINT [-sfnv] [-N NS] [-o OPTIONS] [-t TYPE]`
//! and waits for it to exit, so the helper translates that call into
//! `holt-fs mount MOUNTPOINT --store SOURCE -d ...` and execs it: one code
//! path mounts, whoever called it, and `-d` returns only once the mount is
//! usable (or failed, exiting non-zero with the reason).
//!
//! The translation is pure (`plan`); the helper never mounts anything
//! itself. Options mount(8) keeps for itself or for systemd are accepted and
//! dropped; every other word must mean something to `holt-fs mount`, or the
//! helper fails naming it (with `-s`, "sloppy", it warns and drops it).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::Parser;
use holt_mount::mountpoint;

use crate::mount_cmd;

/// The file names under which the binary acts as the helper.
const HELPER_NAMES: [&str; 2] = ["mount.holt-fs", "mount.fuse.holt-fs"];

/// The types mount(8) may pass with `-t`.
const TYPES: [&str; 2] = [mountpoint::FS_TYPE, "holt-fs"];

/// Options that concern mount(8), fstab or systemd, not the filesystem.
/// mount(8) already keeps `noauto`, `comment=` and `x-*` to itself; the rest
/// reach the helper and mean nothing to a FUSE mount.
const IGNORED: [&str; 8] = ["defaults", "auto", "noauto", "nofail", "_netdev", "user", "users", "async"];
const IGNORED_PREFIXES: [&str; 2] = ["x-", "comment="];

/// holt-fs's own options without a value, as `holt-fs mount` flags.
const FLAGS: [(&str, &str); 3] =
    [("sync", "--sync"), ("writeback_cache", "--writeback-cache"), ("no_passthrough", "--no-passthrough")];

/// holt-fs's own `NAME=VALUE` options, as `holt-fs mount` flags.
const VALUES: [(&str, &str); 7] = [
    ("entry_ttl", "--entry-ttl"),
    ("attr_ttl", "--attr-ttl"),
    ("negative_ttl", "--negative-ttl"),
    ("threads", "--threads"),
    ("log_file", "--log-file"),
    ("pid_file", "--pid-file"),
    ("log_level", "--log-level"),
];

/// Shown after the options, in --help and the man page (blank lines keep
/// the three apart in roff).
const EXAMPLES: &str = "Install (as root): ln -s /usr/local/bin/holt-fs /sbin/mount.fuse.holt-fs

An /etc/fstab line:  /var/holt  /mnt/holt  fuse.holt-fs  defaults,noatime  0 0

By hand:  mount -t fuse.holt-fs -o noatime /var/holt /mnt/holt";

/// Mount a holt-fs store: the helper mount(8) runs for type fuse.holt-fs.
///
/// It returns once the filesystem is mounted and served by a background
/// daemon, or exits non-zero saying why not.
///
/// Options, comma separated: the mount options of `holt-fs mount -o` (ro,
/// rw, allow_other, the atime options, suid, dev, exec and their no- forms:
/// see holt-fs-mount(1); the mount is nosuid,nodev unless suid or dev is
/// given); sync; writeback_cache; no_passthrough; entry_ttl=SECS,
/// attr_ttl=SECS, negative_ttl=SECS, threads=N, log_file=PATH,
/// pid_file=PATH, log_level=LEVEL. mount(8)'s and systemd's own words
/// (defaults, auto, noauto, nofail, _netdev, user, users, async,
/// comment=..., x-...) are ignored. Any other option is an error.
#[derive(Parser, Debug)]
#[command(name = "mount.holt-fs", version, after_long_help = EXAMPLES)]
pub struct HelperArgs {
    /// The store directory (made absolute), or holt-fs:memory for a
    /// filesystem kept in memory.
    source: PathBuf,
    /// Directory to mount the filesystem on.
    mountpoint: PathBuf,
    /// Sloppy: warn about unknown options and ignore them.
    #[arg(short = 's')]
    sloppy: bool,
    /// Fake: check the options, print nothing unless -v, mount nothing.
    #[arg(short = 'f')]
    fake: bool,
    /// Do not write /etc/mtab (holt-fs never does; accepted for mount(8)).
    #[arg(short = 'n')]
    no_mtab: bool,
    /// Print the holt-fs command the helper runs.
    #[arg(short = 'v')]
    verbose: bool,
    /// Mount options, comma separated (see above).
    #[arg(short = 'o', value_name = "OPTIONS", value_delimiter = ',')]
    options: Vec<String>,
    /// The filesystem type: fuse.holt-fs or holt-fs.
    #[arg(short = 't', value_name = "TYPE")]
    fs_type: Option<String>,
    /// A mount namespace to mount in (not supported: run the helper there).
    #[arg(short = 'N', value_name = "NS")]
    namespace: Option<String>,
}

/// Whether argv[0] names the helper (a link such as /sbin/mount.holt-fs).
pub fn invoked_as_helper() -> bool {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let name = Path::new(&argv0).file_name().unwrap_or_default();
    HELPER_NAMES.iter().any(|n| name == *n)
}

/// The helper's whole life: parse, translate, exec `holt-fs mount`.
pub fn main() -> ExitCode {
    let args = HelperArgs::parse();
    let result = plan(&args).and_then(|plan| {
        for word in &plan.dropped {
            eprintln!("mount.holt-fs: ignoring unknown option '{word}' (-s)");
        }
        if args.verbose {
            let words: Vec<_> = plan.argv.iter().map(|a| a.to_string_lossy()).collect();
            eprintln!("mount.holt-fs: holt-fs {}", words.join(" "));
        }
        if args.fake {
            return Ok(());
        }
        Err(exec_holt_fs(&plan.argv))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("mount.holt-fs: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Replace this process with `holt-fs ARGV` (the same executable); returns
/// only on failure, with the reason.
fn exec_holt_fs(argv: &[OsString]) -> String {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return format!("cannot find our own executable: {e}"),
    };
    let err = Command::new(&exe).arg0("holt-fs").args(argv).exec();
    format!("cannot run {}: {err}", exe.display())
}

/// The `holt-fs` command line a helper call stands for.
#[derive(Debug, PartialEq)]
struct Plan {
    /// Arguments after `holt-fs`.
    argv: Vec<OsString>,
    /// Unknown options dropped under `-s`.
    dropped: Vec<String>,
}

/// One option word, sorted by who takes it.
enum Word<'a> {
    Ignored,
    /// A `holt-fs mount -o` option.
    MountOption(&'a str),
    /// A `holt-fs mount` flag, with its value if it takes one.
    Flag(&'static str, Option<&'a str>),
}

fn classify(word: &str) -> Result<Word<'_>, String> {
    if IGNORED.contains(&word) || IGNORED_PREFIXES.iter().any(|p| word.starts_with(p)) {
        return Ok(Word::Ignored);
    }
    if word == "remount" {
        return Err("a holt-fs mount cannot be remounted; unmount it and mount it again".into());
    }
    let (name, value) = match word.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (word, None),
    };
    if let Some(&(_, flag)) = FLAGS.iter().find(|(n, _)| *n == name) {
        return match value {
            None => Ok(Word::Flag(flag, None)),
            Some(_) => Err(format!("option '{name}' takes no value (got '{word}')")),
        };
    }
    if let Some(&(_, flag)) = VALUES.iter().find(|(n, _)| *n == name) {
        return match value {
            Some(v) if !v.is_empty() => Ok(Word::Flag(flag, Some(v))),
            _ => Err(format!("option '{name}' needs a value ({name}=...)")),
        };
    }
    // The mount command's parser is the one list of its options.
    if mount_cmd::parse_options(&[word.to_string()]).is_ok() {
        return Ok(Word::MountOption(word));
    }
    Err(format!("unknown mount option '{word}' (see mount.holt-fs --help)"))
}

/// Translate a helper call into `holt-fs mount` arguments.
fn plan(args: &HelperArgs) -> Result<Plan, String> {
    if let Some(t) = args.fs_type.as_deref().filter(|t| !TYPES.contains(t)) {
        return Err(format!("this helper mounts type {}, not '{t}'", mountpoint::FS_TYPE));
    }
    if let Some(ns) = &args.namespace {
        return Err(format!("mounting in another namespace (-N {ns}) is not supported; run mount there"));
    }
    // Absolute paths: the daemon's command line (ps) and the mount table
    // then name the same directories whatever the caller's working directory.
    let absolute = |p: &Path, what: &str| std::path::absolute(p).map_err(|e| format!("{what} {}: {e}", p.display()));
    let mut argv: Vec<OsString> = vec!["mount".into(), absolute(&args.mountpoint, "mountpoint")?.into()];
    if args.source == Path::new(mountpoint::MEMORY_SOURCE) {
        argv.push("--memory".into());
    } else {
        argv.extend(["--store".into(), absolute(&args.source, "store")?.into()]);
    }
    argv.push("--background".into());
    let (mut mount_options, mut dropped) = (Vec::new(), Vec::new());
    for word in args.options.iter().map(|w| w.trim()).filter(|w| !w.is_empty()) {
        match classify(word) {
            Ok(Word::Ignored) => {}
            Ok(Word::MountOption(o)) => mount_options.push(o),
            Ok(Word::Flag(flag, value)) => argv.extend([flag].into_iter().chain(value).map(OsString::from)),
            Err(_) if args.sloppy => dropped.push(word.to_string()),
            Err(msg) => return Err(msg),
        }
    }
    if !mount_options.is_empty() {
        argv.extend(["-o".into(), mount_options.join(",").into()]);
    }
    Ok(Plan { argv, dropped })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn helper(argv: &[&str]) -> HelperArgs {
        HelperArgs::try_parse_from(std::iter::once("mount.holt-fs").chain(argv.iter().copied())).unwrap()
    }

    fn plan_words(argv: &[&str]) -> Result<Vec<String>, String> {
        let plan = plan(&helper(argv))?;
        Ok(plan.argv.iter().map(|a| a.to_string_lossy().into_owned()).collect())
    }

    #[test]
    fn mount8_call_becomes_a_background_mount() {
        let words =
            plan_words(&["/var/holt", "/mnt/x", "-o", "rw,noatime,nofail,_netdev", "-t", "fuse.holt-fs"]).unwrap();
        assert_eq!(words, ["mount", "/mnt/x", "--store", "/var/holt", "--background", "-o", "rw,noatime"]);
    }

    #[test]
    fn holt_options_become_flags_and_mount_words_stay_options() {
        let words = plan_words(&[
            "/s",
            "/m",
            "-sfnv",
            "-o",
            "ro,sync,threads=8,entry_ttl=1.5,log_file=/var/log/h.log,allow_other,nodiratime,x-systemd.automount,comment=a=b",
        ])
        .unwrap();
        let want = "mount /m --store /s --background --sync --threads 8 --entry-ttl 1.5 --log-file /var/log/h.log \
                    -o ro,allow_other,nodiratime";
        assert_eq!(words.join(" "), want);
    }

    #[test]
    fn relative_paths_are_made_absolute_and_memory_source_means_memory() {
        let words = plan_words(&["store", "mnt"]).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(words[1], cwd.join("mnt").to_string_lossy());
        assert_eq!(words[3], cwd.join("store").to_string_lossy());
        let words = plan_words(&[mountpoint::MEMORY_SOURCE, "/m", "-o", "defaults"]).unwrap();
        assert_eq!(words, ["mount", "/m", "--memory", "--background"]);
    }

    #[test]
    fn unknown_or_malformed_options_are_errors_naming_them() {
        let err = plan_words(&["/s", "/m", "-o", "rw,bogus"]).unwrap_err();
        assert!(err.contains("unknown mount option 'bogus'"), "{err}");
        assert!(plan_words(&["/s", "/m", "-o", "threads"]).unwrap_err().contains("'threads' needs a value"));
        assert!(plan_words(&["/s", "/m", "-o", "sync=1"]).unwrap_err().contains("'sync' takes no value"));
        assert!(plan_words(&["/s", "/m", "-o", "remount,ro"]).unwrap_err().contains("cannot be remounted"));
        assert!(plan_words(&["/s", "/m", "-t", "ext4"]).unwrap_err().contains("'ext4'"));
        assert!(plan_words(&["/s", "/m", "-N", "1"]).unwrap_err().contains("-N 1"));
    }

    #[test]
    fn sloppy_drops_unknown_options() {
        let plan = plan(&helper(&["/s", "/m", "-s", "-o", "bogus,noatime"])).unwrap();
        assert_eq!(plan.dropped, ["bogus"]);
        assert_eq!(plan.argv.last().unwrap(), "noatime");
    }
}
