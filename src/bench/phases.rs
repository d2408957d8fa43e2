//! The phases: one function per phase, run by every thread on its own
//! directory, timing each operation through a `Recorder`.
//!
//! A phase may need what an earlier phase left (stat needs the files create
//! made); that is a `Fixture`. When the phase that makes a fixture is not
//! selected, the runner runs it untimed first, so any subset of phases can
//! be run. A new phase is one function and one row in `PHASES`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::IntoRawFd;
use std::path::{Path, PathBuf};

use super::record::Recorder;

/// Bytes written or read by one small-file operation.
pub const SMALL_FILE_BYTES: usize = 4096;
/// Bytes written or read by one sequential operation.
pub const SEQ_OP_BYTES: usize = 1 << 20;
/// Entries of the big directory per entry of the small-file phases.
pub const BIGDIR_FACTOR: usize = 10;

/// What one thread works on.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// This thread's own directory (created by the runner).
    pub dir: PathBuf,
    /// Files (and directories) this thread creates in the small-file phases.
    pub files: usize,
    /// Entries this thread creates in its big directory.
    pub bigdir_files: usize,
    /// 1 MiB operations this thread does in each sequential phase.
    pub seq_ops: usize,
}

/// State that one phase leaves for later ones, per thread directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixture {
    /// `files` empty files in `a/`.
    Created,
    /// The same files moved to `b/`.
    Renamed,
    /// `files` empty directories in `d/`.
    Dirs,
    /// `files` 4 KiB files in `w/`.
    SmallFiles,
    /// One file of `seq_ops` MiB, `seq/data`.
    SeqFile,
    /// `bigdir_files` empty files in `big/`.
    BigDir,
}

pub type PhaseFn = fn(&Ctx, &mut Recorder<'_>) -> io::Result<()>;

/// One benchmark phase.
#[derive(Debug)]
pub struct Phase {
    /// The name `--phases` takes and the report prints.
    pub name: &'static str,
    /// One operation, as the report's legend states it.
    pub op: &'static str,
    /// What must exist before it runs.
    pub needs: Option<Fixture>,
    /// Whether it uses `needs` up (rename moves the created files away).
    pub consumes: bool,
    /// What it leaves behind.
    pub makes: Option<Fixture>,
    pub run: PhaseFn,
}

const fn phase(name: &'static str, op: &'static str, needs: Option<Fixture>, consumes: bool, makes: Option<Fixture>, run: PhaseFn) -> Phase {
    Phase { name, op, needs, consumes, makes, run }
}

use Fixture::*;

/// Every phase, in the order they run.
pub static PHASES: [Phase; 16] = [
    phase("create", "open(O_CREAT) + close, empty file", None, false, Some(Created), create),
    phase("stat", "stat of a file just created", Some(Created), false, None, stat),
    phase("ls-l", "readdir step + lstat, per entry", Some(Created), false, None, ls_l),
    phase("open", "open(O_RDONLY) + close of a file just created", Some(Created), false, None, open_close),
    phase("rename", "rename to another directory", Some(Created), true, Some(Renamed), rename),
    phase("unlink", "unlink", Some(Renamed), true, None, unlink),
    phase("mkdir", "mkdir", None, false, Some(Dirs), mkdir),
    phase("rmdir", "rmdir", Some(Dirs), true, None, rmdir),
    phase("write4k", "open(O_CREAT) + write 4 KiB + close", None, false, Some(SmallFiles), write_small),
    phase("read4k", "open + read 4 KiB + close", Some(SmallFiles), false, None, read_small),
    phase("seqwrite", "write 1 MiB (sequential, one file)", None, false, Some(SeqFile), seq_write),
    phase("seqread", "read 1 MiB (sequential, warm)", Some(SeqFile), false, None, seq_read),
    phase("seqwrite-fsync", "write 1 MiB + fsync", None, false, None, seq_write_fsync),
    phase("bigdir-create", "open(O_CREAT) + close in one big directory", None, false, Some(BigDir), bigdir_create),
    phase("bigdir-ls", "readdir step, per entry (names only)", Some(BigDir), false, None, bigdir_ls),
    phase("bigdir-rm", "unlink in the big directory", Some(BigDir), true, None, bigdir_rm),
];

/// Name an error by the path it happened on.
fn at(path: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// `n` paths in `dir/sub`, creating the directory; built before timing.
fn paths(c: &Ctx, sub: &str, n: usize) -> io::Result<Vec<PathBuf>> {
    let dir = c.dir.join(sub);
    fs::create_dir_all(&dir).map_err(at(&dir))?;
    Ok((0..n).map(|i| dir.join(format!("file-{i:08}"))).collect())
}

/// close(2) with its error reported (dropping a `File` ignores it; on a
/// FUSE mount close is a FLUSH request that can fail).
fn close(file: File) -> io::Result<()> {
    // SAFETY: we own the descriptor and close it exactly once.
    if unsafe { libc::close(file.into_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn create_empty(p: &Path) -> io::Result<()> {
    close(OpenOptions::new().write(true).create(true).truncate(false).open(p)?)
}

fn for_each_path(c: &Ctx, rec: &mut Recorder<'_>, sub: &str, n: usize, op: impl Fn(&Path) -> io::Result<()>) -> io::Result<()> {
    for p in paths(c, sub, n)? {
        rec.op(|| op(&p)).map_err(at(&p))?;
    }
    Ok(())
}

fn create(c: &Ctx, rec: &mut Recorder<'_>) -> io::Result<()> {
    for_each_path(c, rec, "a", c.files, create_empty)
}

fn stat(c: &Ctx, rec: &mut Recorder<'_>) -> io::Result<()> {
    for_each_path(c, rec, "a", c.files, |p| fs::metadata(p).map(drop))
}

/// Walk `dir` with readdir, timing each entry (with `lstat` of it when
/// `long`); the opendir counts in the first step, the final empty readdir
/// in the phase's wall time only. Fails unless exactly `expect` entries.
fn list(dir: &Path, rec: &mut Recorder<'_>, long: bool, expect: usize) -> io::Result<()> {
    let mut iter: Option<fs::ReadDir> = None;
    let mut seen = 0usize;
    let mut next = || -> io::Result<Option<()>> {
        let it = match &mut iter {
            Some(it) => it,
            None => iter.insert(fs::read_dir(dir)?),
        };
        let Some(entry) = it.next().transpose()? else { return Ok(None) };
        if long {
            fs::symlink_metadata(entry.path())?;
        }
        Ok(Some(()))
    };
    while rec.op_if_some(&mut next).map_err(at(dir))?.is_some() {
        seen += 1;
    }
    if seen != expect {
        return Err(io::Error::other(format!("{}: listed {seen} entries, expected {expect}", dir.display())));
    }
    Ok(())
}

fn open_close(c: &Ctx, rec: &mut Recorder<'_>) -> io::Result<()> {
    for_each_path(c, rec, "a", c.files, |p| close(File::open(p)?))
}

fn ls_l(c: &Ctx, rec: &mut Recorder<'_>) -> io::Result<()> {
    list(&c.dir.join("a"), rec, true, c.files)
}

fn rename(c: &Ctx, rec: &mut Recorder<'_>) -> io::Result<()> {
    let to = paths(c, "b", c.files)?;
    for (from, to) in paths(c, "a", c.files)?.iter().zip(&to) {
        rec.op(|| fs::rename(from, to)).map_err(at(from))?;
    }
    Ok(())
}

fn unlink(c: &Ctx, rec: &mut Recorder<'_>) -> io::Result<()> {
    for_each_path(c, rec, "b", c.files, |p| fs::remove_file(p))
}

fn mkdir(c: &Ctx, rec: &mut Recorder<'_>) -> io::Result<()> {
    for_each_path(c, rec, "d", c.files, |p| fs::create_dir(p))
}

fn rmdir(c: &Ctx, rec: &mut Recorder<'_>) -> io::Result<()> {
    for_each_path(c, rec, "d", c.files, |p| fs::remove_dir(p))
}

fn write_small(c: &Ctx, rec: &mut Recorder<'_>) -> io::Result<()> {
    let buf = [0x5au8; SMALL_FILE_BYTES];
    for_each_path(c, rec, "w", c.files, |p| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(false).open(p)?;
        f.write_all(&buf)?;
        close(f)
    })
}

fn read_small(c: &Ctx, rec: &mut Recorder<'_>) -> io::Result<()> {
    let mut buf = [0u8; SMALL_FILE_BYTES];
    for p in paths(c, "w", c.files)? {
        rec.op(|| {
            let mut f = File::open(&p)?;
            f.read_exact(&mut buf)?;
            close(f)
        })
        .map_err(at(&p))?;
        if buf[0] != 0x5a || buf[SMALL_FILE_BYTES - 1] != 0x5a {
            return Err(io::Error::other(format!("{}: read back bytes that were not written", p.display())));
        }
    }
    Ok(())
}

/// Write `c.seq_ops` MiB to `seq/NAME`; open and close count in the wall
/// time, each 1 MiB write (and fsync) is an op.
fn write_seq(c: &Ctx, rec: &mut Recorder<'_>, name: &str, fsync: bool) -> io::Result<PathBuf> {
    let dir = c.dir.join("seq");
    fs::create_dir_all(&dir).map_err(at(&dir))?;
    let path = dir.join(name);
    let buf = vec![0xa5u8; SEQ_OP_BYTES];
    let mut f = rec.step(|| OpenOptions::new().write(true).create(true).truncate(true).open(&path)).map_err(at(&path))?;
    for _ in 0..c.seq_ops {
        rec.op(|| {
            f.write_all(&buf)?;
            if fsync {
                f.sync_all()?;
            }
            Ok(())
        })
        .map_err(at(&path))?;
    }
    rec.step(|| close(f)).map_err(at(&path))?;
    Ok(path)
}

fn seq_write(c: &Ctx, rec: &mut Recorder<'_>) -> io::Result<()> {
    write_seq(c, rec, "data", false).map(drop)
}

fn seq_write_fsync(c: &Ctx, rec: &mut Recorder<'_>) -> io::Result<()> {
    let path = write_seq(c, rec, "fsynced", true)?;
    fs::remove_file(&path).map_err(at(&path))
}

fn seq_read(c: &Ctx, rec: &mut Recorder<'_>) -> io::Result<()> {
    let path = c.dir.join("seq").join("data");
    let mut buf = vec![0u8; SEQ_OP_BYTES];
    let mut f = rec.step(|| File::open(&path)).map_err(at(&path))?;
    for _ in 0..c.seq_ops {
        rec.op(|| f.read_exact(&mut buf)).map_err(at(&path))?;
    }
    rec.step(|| close(f)).map_err(at(&path))?;
    Ok(())
}

fn bigdir_create(c: &Ctx, rec: &mut Recorder<'_>) -> io::Result<()> {
    for_each_path(c, rec, "big", c.bigdir_files, create_empty)
}

fn bigdir_ls(c: &Ctx, rec: &mut Recorder<'_>) -> io::Result<()> {
    list(&c.dir.join("big"), rec, false, c.bigdir_files)
}

fn bigdir_rm(c: &Ctx, rec: &mut Recorder<'_>) -> io::Result<()> {
    for_each_path(c, rec, "big", c.bigdir_files, |p| fs::remove_file(p))
}

/// The phase that leaves `fixture`.
pub fn maker_of(fixture: Fixture) -> &'static Phase {
    PHASES.iter().find(|p| p.makes == Some(fixture)).expect("every fixture has a phase that makes it")
}

/// The phases named in `list` (comma separated, or "all"), in run order.
pub fn select(list: &str) -> Result<Vec<&'static Phase>, String> {
    let names: Vec<&str> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if names.contains(&"all") {
        return Ok(PHASES.iter().collect());
    }
    if let Some(bad) = names.iter().find(|n| !PHASES.iter().any(|p| p.name == **n)) {
        let known: Vec<&str> = PHASES.iter().map(|p| p.name).collect();
        return Err(format!("unknown phase '{bad}' (known: all, {})", known.join(", ")));
    }
    if names.is_empty() {
        return Err("--phases names no phase".into());
    }
    Ok(PHASES.iter().filter(|p| names.contains(&p.name)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_keeps_run_order_and_rejects_unknown_names() {
        let got: Vec<&str> = select("unlink,create").unwrap().iter().map(|p| p.name).collect();
        assert_eq!(got, ["create", "unlink"]);
        assert_eq!(select("all").unwrap().len(), PHASES.len());
        assert!(select("create,bogus").unwrap_err().contains("bogus"));
        assert!(select(" , ").is_err());
    }

    #[test]
    fn every_needed_fixture_is_made_by_an_earlier_phase() {
        for (i, p) in PHASES.iter().enumerate() {
            if let Some(f) = p.needs {
                let maker = PHASES.iter().position(|m| m.makes == Some(f)).unwrap();
                assert!(maker < i, "{} needs {f:?}, made later", p.name);
            }
        }
    }
}
