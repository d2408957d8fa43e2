//! The operations of the workload, each exactly one system call that may
//! change the filesystem, and what each does to the model once it is
//! acknowledged, or may have done while it was in flight.

use std::fmt;

use crate::model::{parent, Content, Kind, Model, Node, Time};
use crate::rng::fnv;

#[derive(Clone, Debug)]
pub enum Op {
    Mkdir {
        path: String,
        mode: u32,
    },
    Rmdir {
        path: String,
    },
    /// open(O_CREAT | O_EXCL | O_WRONLY); the descriptor stays open for
    /// the writes that follow.
    Create {
        path: String,
        mode: u32,
    },
    /// open(O_WRONLY | O_TRUNC) of an existing file.
    OpenTrunc {
        path: String,
    },
    /// pwrite on the open descriptor of `path`.
    Write {
        path: String,
        off: usize,
        data: Vec<u8>,
    },
    /// fsync of the open descriptor: changes nothing a kill can observe.
    Fsync {
        path: String,
    },
    /// ftruncate of the open descriptor.
    Truncate {
        path: String,
        len: usize,
    },
    /// rename(2); replaces a file or an empty directory at `to`.
    Rename {
        from: String,
        to: String,
    },
    Link {
        from: String,
        to: String,
    },
    Symlink {
        target: Vec<u8>,
        path: String,
    },
    Unlink {
        path: String,
    },
    Chmod {
        path: String,
        mode: u32,
    },
    /// utimensat setting both times (only the mtime is checked).
    Utimens {
        path: String,
        mtime: Time,
    },
    SetXattr {
        path: String,
        name: Vec<u8>,
        value: Vec<u8>,
    },
    RemoveXattr {
        path: String,
        name: Vec<u8>,
    },
}

fn file(bytes: Vec<u8>) -> Kind {
    Kind::File(Content::Exact(bytes))
}

/// The exact contents of a file the model holds.
fn exact(m: &Model, path: &str) -> Vec<u8> {
    match &m.node(path).kind {
        Kind::File(Content::Exact(bytes)) => bytes.clone(),
        other => panic!("{path}: an operation on a file found {other:?}"),
    }
}

fn set_content(m: &mut Model, path: &str, content: Content) {
    let node = m.node_mut(path);
    node.kind = Kind::File(content);
    node.mtime = None;
}

impl Op {
    /// The call's name, for tallies.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Mkdir { .. } => "mkdir",
            Op::Rmdir { .. } => "rmdir",
            Op::Create { .. } => "create",
            Op::OpenTrunc { .. } => "open O_TRUNC",
            Op::Write { .. } => "pwrite",
            Op::Fsync { .. } => "fsync",
            Op::Truncate { .. } => "ftruncate",
            Op::Rename { .. } => "rename",
            Op::Link { .. } => "link",
            Op::Symlink { .. } => "symlink",
            Op::Unlink { .. } => "unlink",
            Op::Chmod { .. } => "chmod",
            Op::Utimens { .. } => "utimens",
            Op::SetXattr { .. } => "setxattr",
            Op::RemoveXattr { .. } => "removexattr",
        }
    }

    /// Whether a kill during this call can leave the filesystem changed.
    pub fn mutates(&self) -> bool {
        !matches!(self, Op::Fsync { .. })
    }

    /// The operation as acknowledged: a write that returned `done` bytes
    /// wrote only those.
    pub fn acknowledged(mut self, done: usize) -> Op {
        if let Op::Write { data, .. } = &mut self {
            data.truncate(done);
        }
        self
    }

    /// The model after this operation returned success.
    pub fn apply(&self, m: &mut Model) {
        match self {
            Op::Write { path, off, data } => {
                let mut bytes = exact(m, path);
                if bytes.len() < off + data.len() {
                    bytes.resize(off + data.len(), 0);
                }
                bytes[*off..off + data.len()].copy_from_slice(data);
                set_content(m, path, Content::Exact(bytes));
            }
            _ => self.apply_whole(m),
        }
    }

    /// The model after this operation happened, where a kill may have cut
    /// it short: a write may have landed in part, page by page; every other
    /// operation is all or nothing.
    pub fn apply_in_flight(&self, m: &mut Model) {
        match self {
            Op::Write { path, off, data } => {
                let old = exact(m, path);
                set_content(m, path, Content::Torn { old, off: *off, new: data.clone() });
            }
            _ => self.apply(m),
        }
    }

    fn apply_whole(&self, m: &mut Model) {
        match self {
            Op::Mkdir { path, mode } => m.add(path, Node::new(Kind::Dir, *mode)),
            Op::Create { path, mode } => m.add(path, Node::new(file(Vec::new()), *mode)),
            Op::Symlink { target, path } => m.add(path, Node::new(Kind::Symlink(target.clone()), 0o777)),
            Op::Link { from, to } => m.link(from, to),
            Op::Rmdir { path } | Op::Unlink { path } => m.remove_name(path),
            Op::Rename { from, to } => self.apply_rename(m, from, to),
            Op::OpenTrunc { path } => set_content(m, path, Content::Exact(Vec::new())),
            Op::Truncate { path, len } => {
                let mut bytes = exact(m, path);
                bytes.resize(*len, 0);
                set_content(m, path, Content::Exact(bytes));
            }
            Op::Chmod { path, mode } => m.node_mut(path).mode = *mode,
            Op::Utimens { path, mtime } => m.node_mut(path).mtime = Some(*mtime),
            Op::SetXattr { path, name, value } => {
                m.node_mut(path).xattrs.insert(name.clone(), value.clone());
            }
            Op::RemoveXattr { path, name } => {
                m.node_mut(path).xattrs.remove(name);
            }
            Op::Fsync { .. } | Op::Write { .. } => {}
        }
        self.touch_parents(m);
    }

    fn apply_rename(&self, m: &mut Model, from: &str, to: &str) {
        // POSIX leaves a moved directory's own times to the implementation
        // (its ".." changes): no longer checked.
        if m.node(from).kind == Kind::Dir {
            m.touched(from);
        }
        m.rename(from, to);
    }

    /// Directories whose entries this operation changed get a new mtime.
    fn touch_parents(&self, m: &mut Model) {
        match self {
            Op::Mkdir { path, .. }
            | Op::Rmdir { path }
            | Op::Create { path, .. }
            | Op::Symlink { path, .. }
            | Op::Unlink { path } => m.touched(parent(path)),
            Op::Link { to, .. } => m.touched(parent(to)),
            Op::Rename { from, to } => {
                m.touched(parent(from));
                m.touched(parent(to));
            }
            _ => {}
        }
    }
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Mkdir { path, mode } => write!(f, "mkdir {path} {mode:o}"),
            Op::Rmdir { path } => write!(f, "rmdir {path}"),
            Op::Create { path, mode } => write!(f, "create {path} {mode:o}"),
            Op::OpenTrunc { path } => write!(f, "open O_TRUNC {path}"),
            Op::Write { path, off, data } => {
                write!(f, "pwrite {path} [{off}, {}) ({} bytes, fnv {:016x})", off + data.len(), data.len(), fnv(data))
            }
            Op::Fsync { path } => write!(f, "fsync {path}"),
            Op::Truncate { path, len } => write!(f, "ftruncate {path} to {len}"),
            Op::Rename { from, to } => write!(f, "rename {from} -> {to}"),
            Op::Link { from, to } => write!(f, "link {from} -> {to}"),
            Op::Symlink { target, path } => write!(f, "symlink {path} -> {}", show(target)),
            Op::Unlink { path } => write!(f, "unlink {path}"),
            Op::Chmod { path, mode } => write!(f, "chmod {path} {mode:o}"),
            Op::Utimens { path, mtime } => write!(f, "utimens {path} mtime {}.{:09}", mtime.sec, mtime.nsec),
            Op::SetXattr { path, name, value } => {
                write!(f, "setxattr {path} {} ({} bytes, fnv {:016x})", show(name), value.len(), fnv(value))
            }
            Op::RemoveXattr { path, name } => write!(f, "removexattr {path} {}", show(name)),
        }
    }
}
