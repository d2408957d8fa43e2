//! What one worker thread expects to find under its own directory: every
//! name it has made and not removed, and for each inode the facts an
//! acknowledged operation fixed (contents, mode, xattrs, an mtime set
//! explicitly, a symlink's target). Names are paths relative to the mount;
//! names that share a node are hard links.

use std::collections::BTreeMap;

/// A node of the model; hard links share one.
pub type NodeId = u64;

/// Size of the unit a multi-page write lands in (DataStore: "a write of
/// several pages may land page by page").
pub const PAGE_BYTES: usize = 4096;

/// A timestamp set by utimensat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time {
    pub sec: i64,
    pub nsec: i64,
}

/// A file's contents as the checker may find them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Exact(Vec<u8>),
    /// An in-flight write of `new` at `off` over `old`: each page of the
    /// written range holds all old or all new bytes, and the size grew only
    /// to the end of a page (or of the write) that landed.
    Torn {
        old: Vec<u8>,
        off: usize,
        new: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Content),
    Symlink(Vec<u8>),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits (`st_mode & 0o7777`); not checked for symlinks.
    pub mode: u32,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Set by utimensat and not changed since by anything that moves it.
    pub mtime: Option<Time>,
}

impl Node {
    pub fn new(kind: Kind, mode: u32) -> Node {
        Node { kind, mode, xattrs: BTreeMap::new(), mtime: None }
    }
}

#[derive(Clone, Debug)]
pub struct Model {
    /// The thread's own directory, relative to the mount.
    pub root: String,
    pub paths: BTreeMap<String, NodeId>,
    pub nodes: BTreeMap<NodeId, Node>,
    next_node: NodeId,
    /// Names handed out so far; each new name is unique to its thread.
    pub names_made: u64,
}

/// The directory holding `path`.
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// Whether `path` is `dir` or lies below it.
pub fn within(path: &str, dir: &str) -> bool {
    path == dir || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

impl Model {
    pub fn new(root: &str) -> Model {
        let mut m = Model {
            root: root.to_string(),
            paths: BTreeMap::new(),
            nodes: BTreeMap::new(),
            next_node: 0,
            names_made: 0,
        };
        m.add(root, Node::new(Kind::Dir, 0o755));
        m
    }

    /// A name no earlier operation of this thread used.
    pub fn fresh_name(&mut self, dir: &str, prefix: &str) -> String {
        self.names_made += 1;
        format!("{dir}/{prefix}{}", self.names_made)
    }

    pub fn node(&self, path: &str) -> &Node {
        &self.nodes[&self.paths[path]]
    }

    pub fn node_mut(&mut self, path: &str) -> &mut Node {
        let id = self.paths[path];
        self.nodes.get_mut(&id).expect("every path names a live node")
    }

    pub fn add(&mut self, path: &str, node: Node) {
        let id = self.next_node;
        self.next_node += 1;
        self.nodes.insert(id, node);
        self.paths.insert(path.to_string(), id);
    }

    /// Give `node`'s inode one more name.
    pub fn link(&mut self, existing: &str, path: &str) {
        let id = self.paths[existing];
        self.paths.insert(path.to_string(), id);
    }

    /// Remove one name; the node goes with its last name.
    pub fn remove_name(&mut self, path: &str) {
        let id = self.paths.remove(path).expect("removing a name the model holds");
        if self.links(id) == 0 {
            self.nodes.remove(&id);
        }
    }

    /// Move `from` (and, for a directory, everything below it) to `to`,
    /// replacing a file or an empty directory at `to`.
    pub fn rename(&mut self, from: &str, to: &str) {
        if self.paths.contains_key(to) {
            self.remove_name(to);
        }
        let moved: Vec<String> = self.paths.keys().filter(|p| within(p, from)).cloned().collect();
        for old in moved {
            let id = self.paths.remove(&old).expect("listed just above");
            self.paths.insert(format!("{to}{}", &old[from.len()..]), id);
        }
    }

    /// Names of the node `id`.
    pub fn links(&self, id: NodeId) -> usize {
        self.paths.values().filter(|&&n| n == id).count()
    }

    /// Forget an explicitly set mtime that a change of `path` moved.
    pub fn touched(&mut self, path: &str) {
        if let Some(&id) = self.paths.get(path) {
            self.nodes.get_mut(&id).expect("every path names a live node").mtime = None;
        }
    }

    /// The entries directly inside `dir`.
    pub fn children<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.paths.keys().filter(move |p| parent(p) == dir)
    }

    pub fn is_empty_dir(&self, dir: &str) -> bool {
        self.children(dir).next().is_none()
    }

    /// Paths whose node is of the kind `pred` accepts, in order.
    pub fn paths_where(&self, pred: impl Fn(&Kind) -> bool) -> Vec<String> {
        self.paths.iter().filter(|(_, id)| pred(&self.nodes[id].kind)).map(|(p, _)| p.clone()).collect()
    }

    /// Directory depth below the thread's root.
    pub fn depth(&self, path: &str) -> usize {
        path.matches('/').count() - self.root.matches('/').count()
    }

    /// Replace contents left `Torn` by an in-flight write with what a
    /// verification read, once they passed the check.
    pub fn settle(&mut self, read: &dyn Fn(&str) -> Vec<u8>) {
        let torn: Vec<(NodeId, String)> = self
            .paths
            .iter()
            .filter(|(_, id)| matches!(self.nodes[id].kind, Kind::File(Content::Torn { .. })))
            .map(|(p, &id)| (id, p.clone()))
            .collect();
        for (id, path) in torn {
            let bytes = read(&path);
            self.nodes.get_mut(&id).expect("listed just above").kind = Kind::File(Content::Exact(bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_of_a_directory_moves_its_subtree_only() {
        let mut m = Model::new("t0");
        m.add("t0/a", Node::new(Kind::Dir, 0o755));
        m.add("t0/a/x", Node::new(Kind::File(Content::Exact(vec![1])), 0o644));
        m.add("t0/ab", Node::new(Kind::Dir, 0o755));
        m.rename("t0/a", "t0/ab/c");
        let paths: Vec<&str> = m.paths.keys().map(String::as_str).collect();
        assert_eq!(paths, ["t0", "t0/ab", "t0/ab/c", "t0/ab/c/x"]);
    }

    #[test]
    fn a_node_lives_while_it_has_a_name() {
        let mut m = Model::new("t0");
        m.add("t0/f", Node::new(Kind::File(Content::Exact(vec![])), 0o644));
        m.link("t0/f", "t0/g");
        m.remove_name("t0/f");
        assert_eq!(m.nodes.len(), 2, "t0/g still names the file");
        m.remove_name("t0/g");
        assert_eq!(m.nodes.len(), 1);
    }
}
