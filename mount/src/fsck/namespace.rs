//! The namespace checks, over the census: reachability from the root, one
//! name per directory, detached subtrees and cycles, nlink, and the parent
//! each directory records.
//!
//! Reconnection plan: every directory the root does not reach is followed
//! up through its name to the top of its detached subtree (a directory
//! without a name), or around a cycle (then one directory of the cycle is
//! cut out of it); that top is reconnected under `/lost+found`, which makes
//! its whole subtree reachable again. Non-directories without any valid
//! name are reconnected one by one. nlink is judged against the entries as
//! they are; the fixes that move names adjust nlinks themselves.

use std::collections::{HashMap, HashSet};

use holt_core::Tree;

use super::paths::Namer;
use super::repair::Fix;
use super::scan::Census;
use super::{Place, Plan, Problem};
use crate::error::FsResult;
use crate::schema::{FileKind, Ino};

pub(super) fn analyse(c: &mut Census, tree: &Tree, plan: &mut Plan) -> FsResult<()> {
    match c.inodes.get(&Ino::ROOT) {
        Some(root) if root.kind != FileKind::Dir => {
            plan.report(Problem::RootNotDir { kind: root.kind });
            return Ok(());
        }
        Some(_) => {}
        None if c.unreadable.contains(&Ino::ROOT) => return Ok(()),
        None => {
            plan.report(Problem::RootMissing);
            return Ok(());
        }
    }
    reach(c);
    let mut namer = Namer::new(tree);
    keep_one_dir_name(c, &mut namer, plan)?;
    reconnect_dirs(c, &mut namer, plan)?;
    reconnect_nameless(c, plan);
    check_links(c, plan);
    Ok(())
}

fn sorted_inos(c: &Census, keep: impl Fn(&super::scan::Facts) -> bool) -> Vec<Ino> {
    let mut inos: Vec<Ino> = c.inodes.iter().filter(|(_, f)| keep(f)).map(|(&i, _)| i).collect();
    inos.sort_unstable();
    inos
}

/// Mark what the root reaches over valid entries. Unreadable inodes that an
/// entry calls a directory are walked through: their entries are trusted.
fn reach(c: &mut Census) {
    c.edges.sort_unstable_by_key(|e| (e.parent, e.child));
    let mut through_unreadable = HashSet::new();
    let mut queue = vec![Ino::ROOT];
    if let Some(root) = c.inodes.get_mut(&Ino::ROOT) {
        root.reachable = true;
    }
    while let Some(dir) = queue.pop() {
        let start = c.edges.partition_point(|e| e.parent < dir);
        for e in c.edges[start..].iter().take_while(|e| e.parent == dir) {
            match c.inodes.get_mut(&e.child) {
                Some(f) if !f.reachable => {
                    f.reachable = true;
                    if f.kind == FileKind::Dir {
                        queue.push(e.child);
                    }
                }
                Some(_) => {}
                None if e.dir && through_unreadable.insert(e.child) => queue.push(e.child),
                None => {}
            }
        }
    }
}

/// A directory has one name. Keep the one in the directory it records as
/// parent if the root reaches it, else one the root reaches, else the one
/// in its recorded parent, else the first; plan removing the others.
fn keep_one_dir_name(c: &mut Census, namer: &mut Namer, plan: &mut Plan) -> FsResult<()> {
    let multi: HashSet<Ino> = sorted_inos(c, |f| f.kind == FileKind::Dir && f.names > 1).into_iter().collect();
    if multi.is_empty() {
        return Ok(());
    }
    let mut parents: HashMap<Ino, Vec<Ino>> = HashMap::new();
    for e in c.edges.iter().filter(|e| multi.contains(&e.child)) {
        parents.entry(e.child).or_default().push(e.parent);
    }
    let mut dirs: Vec<Ino> = multi.into_iter().collect();
    dirs.sort_unstable();
    for dir in dirs {
        let mut ps = parents.remove(&dir).unwrap_or_default();
        ps.dedup();
        let recorded = c.inodes[&dir].parent;
        let reached = |p: &Ino| c.inodes.get(p).is_some_and(|f| f.reachable);
        let kept = (ps.iter().find(|&&p| p == recorded && reached(&p)))
            .or_else(|| ps.iter().find(|p| reached(p)))
            .or_else(|| ps.iter().find(|&&p| p == recorded))
            .or(ps.first())
            .copied()
            .expect("a directory with several names has a parent");
        c.inodes.get_mut(&dir).expect("multi holds census inodes").first_parent = kept;
        for p in ps {
            let names = namer.names_of(p, dir)?;
            for name in names.into_iter().skip(usize::from(p == kept)) {
                let fix = Fix::DropDirName { dir: p, name: name.clone(), child: dir };
                plan.fix(Problem::DirExtraName { ino: dir, at: Place { dir: p, name, path: None } }, fix);
            }
        }
    }
    Ok(())
}

/// Plan one reconnection per detached subtree (its top) or cycle.
fn reconnect_dirs(c: &Census, namer: &mut Namer, plan: &mut Plan) -> FsResult<()> {
    let mut done: HashSet<Ino> = HashSet::new();
    for dir in sorted_inos(c, |f| f.kind == FileKind::Dir && !f.reachable && !f.marker) {
        let mut walk = HashSet::new();
        let mut cur = dir;
        while !done.contains(&cur) {
            let Some(f) = c.inodes.get(&cur).filter(|f| !f.reachable && !f.marker) else { break };
            if !walk.insert(cur) {
                let parent = f.first_parent;
                let name = namer.names_of(parent, cur)?.into_iter().next().unwrap_or_default();
                let fix = Fix::Reconnect { ino: cur, detach: Some((parent, name.clone())) };
                plan.fix(Problem::DirCycle { ino: cur, at: Place { dir: parent, name, path: None } }, fix);
                break;
            }
            if f.first_parent == Ino(0) {
                let problem = Problem::Unreachable { ino: cur, kind: f.kind, nlink: f.nlink };
                plan.fix(problem, Fix::Reconnect { ino: cur, detach: None });
                break;
            }
            cur = f.first_parent;
        }
        done.extend(walk);
    }
    Ok(())
}

/// A non-directory with no valid name that is not an orphan.
fn reconnect_nameless(c: &Census, plan: &mut Plan) {
    for ino in sorted_inos(c, |f| f.kind != FileKind::Dir && f.names == 0 && !f.marker) {
        let f = &c.inodes[&ino];
        let problem = Problem::Unreachable { ino, kind: f.kind, nlink: f.nlink };
        plan.fix(problem, Fix::Reconnect { ino, detach: None });
    }
}

/// nlink of every inode that is not an orphan, and each directory's parent.
fn check_links(c: &Census, plan: &mut Plan) {
    for ino in sorted_inos(c, |f| !f.marker) {
        let f = &c.inodes[&ino];
        let expected = match f.kind {
            FileKind::Dir => 2 + f.subdirs,
            // Reconnection gives it its one name and nlink 1.
            _ if f.names == 0 => continue,
            _ => f.names,
        };
        if f.nlink != expected {
            let problem = Problem::NlinkWrong { ino, kind: f.kind, path: None, nlink: f.nlink, expected };
            plan.fix(problem, Fix::SetNlink { ino, nlink: expected });
        }
        let actual = if ino == Ino::ROOT { Ino::ROOT } else { f.first_parent };
        if f.kind == FileKind::Dir && actual != Ino(0) && f.parent != actual {
            let problem = Problem::DirParentWrong { ino, path: None, recorded: f.parent, actual };
            plan.fix(problem, Fix::SetParent { ino, parent: actual });
        }
    }
}
