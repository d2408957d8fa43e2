//! The fixes `--repair` applies, each one guarded `meta::Txn` (re-run if a
//! guard fails). Fixes that set a value run first, in the order found;
//! then the structural ones, which move names and adjust the nlinks they
//! touch relative to what they read, so they compose with the first kind.
//! `/lost+found` is made on first need: a directory inode in the root,
//! mode 0700, owned like the root, numbered from `C/next_ino` and counted
//! in usage shard 0.

use log::warn;

use super::{kind_name, show_name, Item, Progress, Ticker};
use crate::data::DataStore;
use crate::error::{FsError, FsResult};
use crate::meta::{Meta, Txn};
use crate::schema::{self, Dentry, FileKind, Ino, Inode, Timespec, Usage};

/// Attempts of one fix's transaction before giving up.
const TXN_ATTEMPTS_MAX: u32 = 100;
/// Names tried in `/lost+found` for one inode (`#<ino>`, `#<ino>.1`, ...).
const NAME_TRIES_MAX: u32 = 100;
const LOST_FOUND: &[u8] = b"lost+found";

/// One repair, planned by the checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Fix {
    /// Delete a key nothing valid refers to (an entry, xattr, marker, ...).
    DeleteKey { key: Vec<u8>, what: &'static str },
    PutValue { key: Vec<u8>, value: Vec<u8>, what: &'static str },
    SetDentryKind { dir: Ino, name: Vec<u8>, kind: FileKind },
    SetNlink { ino: Ino, nlink: u32 },
    SetParent { ino: Ino, parent: Ino },
    ZeroSize { ino: Ino },
    RemoveObject { ino: Ino },
    /// Write the inode total into shard 0 and zero the other shards.
    Counters { inodes: u64 },
    NextIno { next: u64 },
    /// Remove a directory's extra name; its directory loses a subdirectory.
    DropDirName { dir: Ino, name: Vec<u8>, child: Ino },
    /// Give `ino` a name in `/lost+found`, first cutting it out of a cycle.
    Reconnect { ino: Ino, detach: Option<(Ino, Vec<u8>)> },
}

impl Fix {
    fn structural(&self) -> bool {
        matches!(self, Fix::DropDirName { .. } | Fix::Reconnect { .. })
    }
}

/// Apply every planned fix; per item, what was done (`None`: no fix, or
/// it could not be applied).
pub(super) fn apply(
    tree: &holt_core::Tree,
    data: &dyn DataStore,
    items: &[Item],
    progress: &mut dyn FnMut(Progress),
) -> FsResult<Vec<Option<String>>> {
    let meta = Meta::new(tree.clone());
    let mut r = Repairer { meta: &meta, data, lost_found: None };
    let mut done = vec![None; items.len()];
    let fixes = items.iter().filter(|i| i.fix.is_some()).count();
    let mut ticker = Ticker::new("repair", Some(fixes as u64), progress);
    for structural in [false, true] {
        for (i, item) in items.iter().enumerate() {
            let Some(fix) = item.fix.as_ref().filter(|f| f.structural() == structural) else { continue };
            done[i] = r.apply(fix)?;
            ticker.tick();
        }
    }
    meta.sync()?;
    ticker.finish();
    Ok(done)
}

fn transact<T>(meta: &Meta, mut body: impl FnMut(&mut Txn) -> FsResult<T>) -> FsResult<T> {
    for _ in 0..TXN_ATTEMPTS_MAX {
        let mut txn = meta.txn();
        let out = body(&mut txn)?;
        if txn.commit()? {
            return Ok(out);
        }
    }
    Err(FsError::Contention { attempts: TXN_ATTEMPTS_MAX })
}

fn update_inode(t: &mut Txn, ino: Ino, change: impl FnOnce(&mut Inode)) -> FsResult<()> {
    let mut inode = t.inode(ino)?;
    change(&mut inode);
    t.put_inode(ino, &inode);
    Ok(())
}

struct Repairer<'a> {
    meta: &'a Meta,
    data: &'a dyn DataStore,
    lost_found: Option<Ino>,
}

impl Repairer<'_> {
    fn apply(&mut self, fix: &Fix) -> FsResult<Option<String>> {
        let meta = self.meta;
        let said = match fix {
            Fix::DeleteKey { key, what } => {
                transact(meta, |t| {
                    if t.get(key)?.is_some() {
                        t.delete(key.clone());
                    }
                    Ok(())
                })?;
                format!("removed the {what}")
            }
            Fix::PutValue { key, value, what } => {
                transact(meta, |t| {
                    t.get(key)?;
                    t.put(key.clone(), value.clone());
                    Ok(())
                })?;
                format!("rewrote the {what}")
            }
            Fix::SetDentryKind { dir, name, kind } => {
                transact(meta, |t| {
                    if let Some(d) = t.dentry(*dir, name)? {
                        t.put_dentry(*dir, name, Dentry { ino: d.ino, kind: *kind });
                    }
                    Ok(())
                })?;
                format!("set the entry's type to {}", kind_name(*kind))
            }
            Fix::SetNlink { ino, nlink } => {
                transact(meta, |t| update_inode(t, *ino, |i| i.nlink = *nlink))?;
                format!("set nlink to {nlink}")
            }
            Fix::SetParent { ino, parent } => {
                transact(meta, |t| update_inode(t, *ino, |i| i.parent = *parent))?;
                format!("set the recorded parent to inode {}", parent.0)
            }
            Fix::ZeroSize { ino } => {
                transact(meta, |t| update_inode(t, *ino, |i| (i.size, i.blocks) = (0, 0)))?;
                "cleared the size and blocks in the inode".to_string()
            }
            Fix::RemoveObject { ino } => return self.remove_object(*ino),
            Fix::Counters { inodes } => self.counters(*inodes)?,
            Fix::NextIno { next } => self.next_ino(*next)?,
            Fix::DropDirName { dir, name, child } => self.drop_dir_name(*dir, name, *child)?,
            Fix::Reconnect { ino, detach } => return self.reconnect(*ino, detach.as_ref()),
        };
        Ok(Some(said))
    }

    /// Only an object no regular file owns (checked again here).
    fn remove_object(&self, ino: Ino) -> FsResult<Option<String>> {
        match self.meta.inode(ino) {
            Ok(i) if i.kind == FileKind::File => return Ok(None),
            Ok(_) | Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        self.data.remove(ino).map_err(|e| FsError::data("remove", ino, e))?;
        Ok(Some("removed the data object".to_string()))
    }

    fn counters(&self, inodes: u64) -> FsResult<String> {
        let keys: Vec<Vec<u8>> = self.meta.scan(schema::USAGE_PREFIX)?.into_iter().map(|(k, _)| k).collect();
        let total = Usage { inodes: inodes as i64 };
        transact(self.meta, |t| {
            for key in &keys {
                if t.get(key)?.is_some() {
                    t.put(key.clone(), Usage::default().encode().to_vec());
                }
            }
            t.get(&schema::usage_key(0))?;
            t.put(schema::usage_key(0), total.encode().to_vec());
            Ok(())
        })?;
        Ok(format!("rewrote the usage counters: {inodes} inodes in shard 0, the other shards zero"))
    }

    fn next_ino(&self, next: u64) -> FsResult<String> {
        let key = schema::NEXT_INO_KEY;
        let raised = transact(self.meta, |t| {
            let now = t.get(key)?.and_then(|v| schema::decode_u64(key, &v).ok()).unwrap_or(0);
            let raised = now.max(next);
            t.put(key.to_vec(), schema::encode_u64(raised).to_vec());
            Ok(raised)
        })?;
        Ok(format!("raised C/next_ino to {raised}"))
    }

    fn drop_dir_name(&self, dir: Ino, name: &[u8], child: Ino) -> FsResult<String> {
        transact(self.meta, |t| {
            if t.dentry(dir, name)?.is_some_and(|d| d.ino == child) {
                t.delete_dentry(dir, name);
                update_inode(t, dir, |p| p.nlink = p.nlink.saturating_sub(1).max(2))?;
            }
            Ok(())
        })?;
        Ok("removed this name; the directory keeps its other one".to_string())
    }

    fn reconnect(&mut self, ino: Ino, detach: Option<&(Ino, Vec<u8>)>) -> FsResult<Option<String>> {
        let Some(lf) = self.lost_found()? else { return Ok(None) };
        let name = transact(self.meta, |t| {
            let mut inode = t.inode(ino)?;
            let name = free_name(t, lf, ino)?;
            if let Some((parent, old)) = detach {
                t.delete_dentry(*parent, old);
                update_inode(t, *parent, |p| p.nlink = p.nlink.saturating_sub(1).max(2))?;
            }
            let mut dir = t.inode(lf)?;
            let now = Timespec::now();
            if inode.kind == FileKind::Dir {
                inode.parent = lf;
                dir.nlink += 1;
            } else {
                inode.nlink = 1;
            }
            (dir.mtime, dir.ctime) = (now, now);
            t.put_inode(ino, &inode);
            t.put_inode(lf, &dir);
            t.put_dentry(lf, &name, Dentry { ino, kind: inode.kind });
            Ok(name)
        })?;
        Ok(Some(format!("reconnected as /lost+found/{}", show_name(&name))))
    }

    /// `/lost+found`, made if missing; `None` if the name holds something
    /// else than a live directory (then nothing is reconnected).
    fn lost_found(&mut self) -> FsResult<Option<Ino>> {
        if self.lost_found.is_none() {
            self.lost_found = transact(self.meta, make_lost_found)?;
            if self.lost_found.is_none() {
                warn!("/lost+found is not a directory: rename it and run fsck --repair again to reconnect inodes");
            }
        }
        Ok(self.lost_found)
    }
}

fn make_lost_found(t: &mut Txn) -> FsResult<Option<Ino>> {
    if let Some(d) = t.dentry(Ino::ROOT, LOST_FOUND)? {
        return match t.inode(d.ino) {
            Ok(i) if i.kind == FileKind::Dir && i.nlink > 0 => Ok(Some(d.ino)),
            Ok(_) | Err(FsError::NotFound) => Ok(None),
            Err(e) => Err(e),
        };
    }
    let key = schema::NEXT_INO_KEY;
    let next = match t.get(key)? {
        Some(v) => schema::decode_u64(key, &v)?.max(Ino::FIRST_FREE.0),
        None => Ino::FIRST_FREE.0,
    };
    let ino = Ino(next);
    if t.get(&schema::inode_key(ino))?.is_some() {
        return Err(FsError::Corrupt { key: key.to_vec(), what: "next inode number is taken" });
    }
    let mut root = t.inode(Ino::ROOT)?;
    let now = Timespec::now();
    let mut dir = Inode::new(FileKind::Dir, 0o700, root.uid, root.gid, now);
    dir.parent = Ino::ROOT;
    root.nlink += 1;
    (root.mtime, root.ctime) = (now, now);
    let shard = schema::usage_key(0);
    let mut usage = match t.get(&shard)? {
        Some(v) => Usage::decode(&shard, &v)?,
        None => Usage::default(),
    };
    usage.inodes += 1;
    t.put(shard, usage.encode().to_vec());
    t.put(key.to_vec(), schema::encode_u64(next + 1).to_vec());
    t.put_inode(Ino::ROOT, &root);
    t.put_inode(ino, &dir);
    t.put_dentry(Ino::ROOT, LOST_FOUND, Dentry { ino, kind: FileKind::Dir });
    Ok(Some(ino))
}

/// `#<ino>`, or `#<ino>.<n>` if taken.
fn free_name(t: &mut Txn, dir: Ino, ino: Ino) -> FsResult<Vec<u8>> {
    for n in 0..NAME_TRIES_MAX {
        let name = match n {
            0 => format!("#{}", ino.0),
            _ => format!("#{}.{n}", ino.0),
        };
        if t.dentry(dir, name.as_bytes())?.is_none() {
            return Ok(name.into_bytes());
        }
    }
    Err(FsError::Exists)
}
