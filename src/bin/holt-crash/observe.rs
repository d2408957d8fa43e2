//! What the remounted filesystem shows: a walk that lists every directory,
//! stats every entry and reads every file, symlink and user xattr.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::model::Time;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeenKind {
    Dir,
    File,
    Symlink,
    Other,
}

/// One entry as lstat, read, readlink and the xattr calls see it.
#[derive(Debug)]
pub struct Seen {
    pub kind: SeenKind,
    pub ino: u64,
    pub nlink: u64,
    pub mode: u32,
    pub size: u64,
    pub mtime: Time,
    /// A file's contents or a symlink's target.
    pub bytes: Vec<u8>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

fn kind_of(ft: fs::FileType) -> SeenKind {
    if ft.is_dir() {
        SeenKind::Dir
    } else if ft.is_file() {
        SeenKind::File
    } else if ft.is_symlink() {
        SeenKind::Symlink
    } else {
        SeenKind::Other
    }
}

/// An xattr call's result: its length, or the error.
fn xattr_call(ret: libc::ssize_t, what: &str, path: &Path) -> Result<usize, String> {
    if ret < 0 {
        Err(format!("{what} {}: {}", path.display(), std::io::Error::last_os_error()))
    } else {
        Ok(ret as usize)
    }
}

/// Every `user.` xattr of `path` (not following a symlink).
fn user_xattrs(path: &Path) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| "NUL in a path".to_string())?;
    let mut names = vec![0u8; 64 << 10];
    // SAFETY: llistxattr into a buffer of the length passed.
    let n = xattr_call(
        unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) },
        "llistxattr",
        path,
    )?;
    let mut out = BTreeMap::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| n.starts_with(b"user.")) {
        let cname = CString::new(name).expect("split at NUL");
        let mut value = vec![0u8; 64 << 10];
        // SAFETY: lgetxattr into a buffer of the length passed.
        let len = unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        value.truncate(xattr_call(len, "lgetxattr", path)?);
        out.insert(name.to_vec(), value);
    }
    Ok(out)
}

fn see(path: &Path) -> Result<Seen, String> {
    let meta = fs::symlink_metadata(path).map_err(|e| format!("lstat {}: {e}", path.display()))?;
    let kind = kind_of(meta.file_type());
    let bytes = match kind {
        SeenKind::File => fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?,
        SeenKind::Symlink => fs::read_link(path)
            .map_err(|e| format!("readlink {}: {e}", path.display()))?
            .as_os_str()
            .as_bytes()
            .to_vec(),
        _ => Vec::new(),
    };
    let xattrs = if kind == SeenKind::Symlink { BTreeMap::new() } else { user_xattrs(path)? };
    Ok(Seen {
        kind,
        ino: meta.ino(),
        nlink: meta.nlink(),
        mode: meta.mode() & 0o7777,
        size: meta.size(),
        mtime: Time { sec: meta.mtime(), nsec: meta.mtime_nsec() },
        bytes,
        xattrs,
    })
}

/// Every entry at or below `rel` (a path relative to `mount`), keyed by
/// that relative path.
pub fn walk(mount: &Path, rel: &str) -> Result<BTreeMap<String, Seen>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![rel.to_string()];
    while let Some(path) = stack.pop() {
        let seen = see(&mount.join(&path))?;
        if seen.kind == SeenKind::Dir {
            let listing = fs::read_dir(mount.join(&path)).map_err(|e| format!("readdir {path}: {e}"))?;
            for entry in listing {
                let entry = entry.map_err(|e| format!("readdir {path}: {e}"))?;
                stack.push(format!("{path}/{}", entry.file_name().to_string_lossy()));
            }
        }
        out.insert(path, seen);
    }
    Ok(out)
}

/// The namespace checks over the whole mount: every directory lists, every
/// entry stats with the type readdir gave, a directory's nlink is 2 plus
/// its subdirectories and a file's is the number of names found. Returns
/// the entries checked.
pub fn check_tree(mount: &Path) -> Result<usize, String> {
    let mut names: HashMap<u64, (u64, u64, String)> = HashMap::new();
    let mut stack = vec![mount.to_path_buf()];
    let mut checked = 0;
    while let Some(dir) = stack.pop() {
        let mut subdirs = 0;
        let listing = fs::read_dir(&dir).map_err(|e| format!("readdir {}: {e}", dir.display()))?;
        for entry in listing {
            let entry = entry.map_err(|e| format!("readdir {}: {e}", dir.display()))?;
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(|e| format!("lstat {}: {e}", path.display()))?;
            let listed = entry.file_type().map_err(|e| format!("readdir type of {}: {e}", path.display()))?;
            if kind_of(listed) != kind_of(meta.file_type()) {
                return Err(format!(
                    "{}: readdir says {:?}, lstat {:?}",
                    path.display(),
                    kind_of(listed),
                    kind_of(meta.file_type())
                ));
            }
            if meta.is_dir() {
                subdirs += 1;
                stack.push(path);
            } else {
                let e = names.entry(meta.ino()).or_insert((meta.nlink(), 0, path.display().to_string()));
                e.1 += 1;
            }
            checked += 1;
        }
        let nlink = fs::metadata(&dir).map_err(|e| format!("stat {}: {e}", dir.display()))?.nlink();
        if nlink != 2 + subdirs {
            return Err(format!("directory {} has nlink {nlink} but {subdirs} subdirectories", dir.display()));
        }
    }
    match names.into_values().find(|(nlink, found, _)| nlink != found) {
        Some((nlink, found, path)) => Err(format!("{path}: nlink {nlink} but {found} names found")),
        None => Ok(checked),
    }
}
