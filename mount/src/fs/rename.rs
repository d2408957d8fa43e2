//! rename(2) and renameat2's RENAME_NOREPLACE / RENAME_EXCHANGE as one
//! transaction. A directory moving to a new parent must not land in its own
//! subtree: the move walks the new parent's ancestor chain. Moves of
//! directories to a new parent are serialized by one lock (as the kernel's
//! own cross-directory renames are), and only they change a directory's
//! parent, so the walk reads the chain beyond the new parent without
//! guards: a create or rename in some ancestor (which rewrites that
//! ancestor's inode) no longer makes the move start over. Renames of files,
//! and within one directory, take no lock.

use parking_lot::MutexGuard;

use super::namespace::{drop_name, remove_dir_inode};
use super::Fs;
use crate::error::{FsError, FsResult};
use crate::meta::Txn;
use crate::schema::{check_name, Dentry, FileKind, Ino, Inode, Timespec};

/// Deepest directory nesting the subtree check walks before calling the tree corrupt.
const DEPTH_MAX: u32 = 1 << 20;

/// renameat2 flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenameFlags {
    /// Fail with EEXIST instead of replacing the destination.
    pub noreplace: bool,
    /// Swap source and destination, which must both exist.
    pub exchange: bool,
}

/// Read-modify-write of one inode through the transaction (sees earlier writes).
fn update(t: &mut Txn, ino: Ino, f: impl FnOnce(&mut Inode)) -> FsResult<()> {
    let mut inode = t.inode(ino)?;
    f(&mut inode);
    t.put_inode(ino, &inode);
    Ok(())
}

fn live_dir(t: &mut Txn, ino: Ino) -> FsResult<()> {
    let p = t.inode(ino)?;
    if p.kind != FileKind::Dir {
        return Err(FsError::NotDir);
    }
    if p.nlink == 0 {
        return Err(FsError::NotFound);
    }
    Ok(())
}

/// Held while a directory moves to a new parent: the only change of a
/// directory's parent pointer.
type DirMoves<'f> = MutexGuard<'f, ()>;

/// EINVAL if `dir` is `start` or one of its ancestors. `start` is read
/// guarded (the move rewrites it); the chain above it unguarded, which
/// `DirMoves` keeps still.
fn check_not_ancestor(t: &mut Txn, dir: Ino, start: Ino, _moves: &DirMoves) -> FsResult<()> {
    let mut cur = start;
    let mut parent = t.inode(start)?.parent;
    for _ in 0..DEPTH_MAX {
        if cur == dir {
            return Err(FsError::Invalid("moving a directory into its own subtree"));
        }
        if cur == Ino::ROOT {
            return Ok(());
        }
        cur = parent;
        parent = t.inode_unguarded(cur)?.parent;
    }
    Err(FsError::Corrupt { key: crate::schema::inode_key(start), what: "directory parent chain does not reach the root" })
}

/// Moving directory `ino` from `from` to `to` changes `..` and both parents' nlink.
fn reparent_dir(t: &mut Txn, ino: Ino, from: Ino, to: Ino, moves: Option<&DirMoves>) -> FsResult<()> {
    if from == to {
        return Ok(());
    }
    let moves = moves.expect("a rename that moves a directory to a new parent holds the directory-move lock");
    check_not_ancestor(t, ino, to, moves)?;
    update(t, ino, |i| i.parent = to)?;
    update(t, from, |p| p.nlink -= 1)?;
    update(t, to, |p| p.nlink += 1)
}

/// Whether the rename moves a directory to another parent.
fn moves_dir(parent: Ino, new_parent: Ino, src: &Dentry, dst: Option<&Dentry>, exchange: bool) -> bool {
    parent != new_parent && (src.kind == FileKind::Dir || (exchange && dst.is_some_and(|d| d.kind == FileKind::Dir)))
}

impl Fs {
    pub fn rename(&self, parent: Ino, name: &[u8], new_parent: Ino, new_name: &[u8], flags: RenameFlags) -> FsResult<()> {
        self.writable()?;
        check_name(name)?;
        check_name(new_name)?;
        if flags.noreplace && flags.exchange {
            return Err(FsError::Invalid("RENAME_NOREPLACE with RENAME_EXCHANGE"));
        }
        let ends = (parent, name, new_parent, new_name);
        let (src, replaced) = match self.rename_txn(ends, flags, None)? {
            Some(done) => done,
            None => {
                let moves = self.dir_moves.lock();
                self.rename_txn(ends, flags, Some(&moves))?.expect("a rename holding the directory-move lock goes ahead")
            }
        };
        self.status_changed(src.ino, src.kind);
        match replaced {
            Some(Replaced::Gone(ino)) => self.reclaim_after_commit(ino),
            Some(Replaced::Kept(d)) => self.status_changed(d.ino, d.kind),
            None => {}
        }
        Ok(())
    }

    /// The rename's transaction; `None` (nothing written) if it moves a
    /// directory to a new parent and `moves` is not held.
    fn rename_txn(
        &self,
        (parent, name, new_parent, new_name): (Ino, &[u8], Ino, &[u8]),
        flags: RenameFlags,
        moves: Option<&DirMoves>,
    ) -> FsResult<Option<(Dentry, Option<Replaced>)>> {
        self.transact(|t| {
            live_dir(t, parent)?;
            live_dir(t, new_parent)?;
            let src = t.dentry(parent, name)?.ok_or(FsError::NotFound)?;
            let dst = t.dentry(new_parent, new_name)?;
            if moves.is_none() && moves_dir(parent, new_parent, &src, dst.as_ref(), flags.exchange) {
                return Ok(None);
            }
            let now = Timespec::now();
            let replaced = match (dst, flags.exchange) {
                (None, true) => return Err(FsError::NotFound),
                (Some(d), true) => {
                    exchange(t, (parent, name, src), (new_parent, new_name, d), moves)?;
                    Some(Replaced::Kept(d))
                }
                (Some(d), false) if d.ino == src.ino => return Ok(Some((src, None))),
                (Some(_), false) if flags.noreplace => return Err(FsError::Exists),
                (d, false) => move_entry(t, (parent, name, src), (new_parent, new_name, d), now, moves)?,
            };
            update(t, src.ino, |i| i.ctime = now)?;
            for p in [parent, new_parent] {
                update(t, p, |p| {
                    p.mtime = now;
                    p.ctime = now;
                })?;
            }
            Ok(Some((src, replaced)))
        })
    }
}

type End<'a> = (Ino, &'a [u8], Dentry);

/// What a rename did to the inode its destination named.
enum Replaced {
    /// It lost its last name and awaits reclaim.
    Gone(Ino),
    /// It keeps a name (another link, or the other side of an exchange);
    /// its status changed.
    Kept(Dentry),
}

/// Plain rename; says what became of the inode the destination named.
fn move_entry(
    t: &mut Txn,
    src: End,
    dst: (Ino, &[u8], Option<Dentry>),
    now: Timespec,
    moves: Option<&DirMoves>,
) -> FsResult<Option<Replaced>> {
    let (parent, name, s) = src;
    let (new_parent, new_name, d) = dst;
    let mut replaced = None;
    if let Some(d) = d {
        match (s.kind == FileKind::Dir, d.kind == FileKind::Dir) {
            (true, false) => return Err(FsError::NotDir),
            (false, true) => return Err(FsError::IsDir),
            (true, true) => {
                if !t.dir_is_empty(d.ino)? {
                    return Err(FsError::NotEmpty);
                }
                remove_dir_inode(t, d.ino, now)?;
                update(t, new_parent, |p| p.nlink -= 1)?;
                replaced = Some(Replaced::Gone(d.ino));
            }
            (false, false) => {
                replaced = Some(match drop_name(t, d.ino, now)? {
                    true => Replaced::Gone(d.ino),
                    false => Replaced::Kept(d),
                });
            }
        }
    }
    if s.kind == FileKind::Dir {
        reparent_dir(t, s.ino, parent, new_parent, moves)?;
    }
    t.delete_dentry(parent, name);
    t.put_dentry(new_parent, new_name, s);
    Ok(replaced)
}

/// RENAME_EXCHANGE: swap two existing entries.
fn exchange(t: &mut Txn, a: End, b: End, moves: Option<&DirMoves>) -> FsResult<()> {
    let (a_parent, a_name, a_d) = a;
    let (b_parent, b_name, b_d) = b;
    if a_d.kind == FileKind::Dir {
        reparent_dir(t, a_d.ino, a_parent, b_parent, moves)?;
    }
    if b_d.kind == FileKind::Dir {
        reparent_dir(t, b_d.ino, b_parent, a_parent, moves)?;
    }
    let now = Timespec::now();
    update(t, b_d.ino, |i| i.ctime = now)?;
    t.put_dentry(a_parent, a_name, b_d);
    t.put_dentry(b_parent, b_name, a_d);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::inode_key;
    use crate::tests::{memory_fs, USER};

    /// A create in an ancestor of the new parent rewrites that ancestor's
    /// inode; a directory move must not have guarded it, or it starts over.
    #[test]
    fn a_directory_move_guards_its_new_parent_but_not_the_chain_above() {
        let fs = memory_fs();
        let mk = |parent, name: &[u8]| fs.mkdir(USER, parent, name, 0o755).unwrap().ino;
        let a = mk(Ino::ROOT, b"a");
        let c = mk(mk(a, b"b"), b"c");
        let x = mk(Ino::ROOT, b"x");
        let moves = fs.dir_moves.lock();
        let mut t = fs.meta.txn();
        check_not_ancestor(&mut t, x, c, &moves).unwrap();
        assert_eq!(t.guarded_keys().collect::<Vec<_>>(), vec![inode_key(c).as_slice()]);
        let mut t = fs.meta.txn();
        assert!(matches!(check_not_ancestor(&mut t, a, c, &moves), Err(FsError::Invalid(_))), "a is above c");
    }
}
