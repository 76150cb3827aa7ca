//! The merged tree of an image: its layers applied bottom first with OCI
//! semantics, held in memory as inodes. Pure: built from entry lists, no IO.
//!
//! Per layer, before its own entries: an opaque marker (`.wh..wh..opq`)
//! empties its directory of what lower layers put there, and a whiteout
//! (`.wh.NAME`) removes NAME and everything under it from lower layers.
//! Then the entries in tar order: a directory over a directory keeps the
//! children and takes the new metadata; anything else replaces what was at
//! the path, a directory's whole subtree included; the last entry for a
//! path wins. Missing parents are made as directories (0755, root-owned),
//! replacing a non-directory in the way, as a layer unpacked into its own
//! directory and stacked by overlayfs would show. A hard link shares the
//! inode of its target as it is at that moment, so replacing the target
//! later does not change what the link shows.
//!
//! Built with a map of children per directory; once built, every name is
//! in one arena and every directory's children are one sorted run of a
//! link table (16 bytes a name), so a tree of a million entries costs its
//! nodes, its names and little else.

pub use img_sparse::{Segment, SparseError, SparseMap, MAX_SEGMENTS};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The root directory's inode number (as FUSE numbers it).
pub const ROOT: u64 = 1;

/// Where a regular file's bytes are: a range of one layer's uncompressed
/// tar, or for a sparse file, runs of data in that range with holes (zeros)
/// between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRef {
    pub layer: usize,
    /// Where the stored bytes start in the layer's uncompressed tar.
    pub offset: u64,
    /// The file's size (holes included).
    pub size: u64,
    /// For a sparse file, where its data is; `None`: the `size` bytes at
    /// `offset` are the whole file.
    pub sparse: Option<Arc<SparseMap>>,
}

impl DataRef {
    /// A file stored whole: `size` bytes at `offset` of layer `layer`.
    pub fn plain(layer: usize, offset: u64, size: u64) -> DataRef {
        DataRef { layer, offset, size, sparse: None }
    }

    /// A sparse file whose data `map` places.
    pub fn sparse(layer: usize, map: SparseMap) -> DataRef {
        DataRef { layer, offset: map.at(), size: map.size(), sparse: Some(Arc::new(map)) }
    }

    /// The bytes the layer holds for the file (its data without holes).
    pub fn stored(&self) -> u64 {
        self.sparse.as_ref().map_or(self.size, |m| m.stored())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File(DataRef),
    Dir,
    Symlink(Vec<u8>),
    /// A hard link to the path given (cleaned, relative to the root).
    HardLink(Vec<u8>),
    Fifo,
    Char {
        major: u32,
        minor: u32,
    },
    Block {
        major: u32,
        minor: u32,
    },
}

/// One entry of a layer, as its tar header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Cleaned, relative, `/`-separated; empty for the root itself.
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky (no file type bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds and nanoseconds since the epoch.
    pub mtime: (i64, u32),
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What a layer holds: whiteouts and opaque markers are given apart from
/// the entries, by the paths they apply to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    pub entries: Vec<Entry>,
    /// Paths whited out (`a/.wh.b` gives `a/b`).
    pub whiteouts: Vec<Vec<u8>>,
    /// Directories made opaque (`a/.wh..wh..opq` gives `a`; the root is empty).
    pub opaque: Vec<Vec<u8>>,
}

/// A directory's children: `len` links from `start` in the tree's link
/// table, in name order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Children {
    start: u32,
    len: u32,
}

impl Children {
    pub fn len(&self) -> usize {
        self.len as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    File(DataRef),
    Dir(Children),
    Symlink(Vec<u8>),
    Fifo,
    Char { major: u32, minor: u32 },
    Block { major: u32, minor: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: NodeKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, u32),
    pub nlink: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The directory holding it (itself for the root); for a hard-linked
    /// file, the first one.
    pub parent: u64,
}

impl Node {
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, NodeKind::Dir(_))
    }
    pub fn size(&self) -> u64 {
        match &self.kind {
            NodeKind::File(d) => d.size,
            NodeKind::Symlink(t) => t.len() as u64,
            NodeKind::Dir(c) => 4096.max(c.len as u64 * 32),
            _ => 0,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    #[error("layer {layer}: entry {path:?}: {msg}")]
    Entry { layer: usize, path: String, msg: &'static str },
    #[error("the image has more than {} files", u32::MAX)]
    TooLarge,
}

/// One name in a directory: `len` bytes at `off` of the name arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    off: u64,
    len: u32,
    ino: u32,
}

/// An image's merged tree. Inode numbers are dense: 1 (the root) to `len()`.
/// Held compactly once built: every directory's children are one run of
/// `links` (name order), every name is in the one `names` arena.
#[derive(Debug, Clone)]
pub struct Tree {
    nodes: Vec<Node>,
    links: Vec<Link>,
    names: Vec<u8>,
}

fn dir_node(parent: u64) -> Node {
    Node {
        kind: NodeKind::Dir(Children::default()),
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: (0, 0),
        nlink: 2,
        xattrs: vec![],
        parent,
    }
}

fn split(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

/// The tree while it is built: directories' children in maps beside the
/// nodes (`kids[ino - 1]`), frozen into the link table at the end.
pub(crate) struct Builder {
    nodes: Vec<Node>,
    kids: Vec<Option<BTreeMap<Box<[u8]>, u64>>>,
    /// Per node, the layer that made it or set its metadata last.
    origin: Vec<u32>,
    /// The layer being applied.
    layer: u32,
    /// Each directory's name in its parent.
    dir_names: std::collections::HashMap<u64, Box<[u8]>>,
}

impl Builder {
    fn node(&self, ino: u64) -> &Node {
        &self.nodes[(ino - 1) as usize]
    }
    fn node_mut(&mut self, ino: u64) -> &mut Node {
        &mut self.nodes[(ino - 1) as usize]
    }
    fn add(&mut self, n: Node) -> u64 {
        self.kids.push(n.is_dir().then(BTreeMap::new));
        self.origin.push(self.layer);
        self.nodes.push(n);
        self.nodes.len() as u64
    }
    fn kids(&self, dir: u64) -> Option<&BTreeMap<Box<[u8]>, u64>> {
        self.kids[(dir - 1) as usize].as_ref()
    }
    fn child(&self, dir: u64, name: &[u8]) -> Option<u64> {
        self.kids(dir)?.get(name).copied()
    }
    /// Follows `path` through directories only (no symlinks).
    fn resolve(&self, path: &[u8]) -> Option<u64> {
        let mut cur = ROOT;
        for c in split(path) {
            cur = self.child(cur, c)?;
        }
        Some(cur)
    }
    /// Removes `name` from `dir`, with what it names.
    fn detach(&mut self, dir: u64, name: &[u8]) {
        let old = self.kids[(dir - 1) as usize].as_mut().and_then(|c| c.remove(name));
        if let Some(old) = old {
            if self.node(old).is_dir() {
                self.node_mut(dir).nlink -= 1;
            }
            self.unlink(old);
        }
    }
    /// Drops one name of `ino` (and, for a directory, its whole subtree).
    fn unlink(&mut self, ino: u64) {
        let n = self.node_mut(ino);
        n.nlink = n.nlink.saturating_sub(1);
        if let Some(c) = self.kids[(ino - 1) as usize].as_mut() {
            let children: Vec<u64> = std::mem::take(c).into_values().collect();
            for ch in children {
                self.unlink(ch);
            }
        }
    }
    /// The directory `path` names, made (with its parents) where missing or
    /// where a non-directory stands.
    fn ensure_dir(&mut self, path: &[u8]) -> u64 {
        let mut cur = ROOT;
        for c in split(path) {
            cur = match self.child(cur, c) {
                Some(ino) if self.node(ino).is_dir() => ino,
                other => {
                    if other.is_some() {
                        self.detach(cur, c);
                    }
                    let ino = self.add(dir_node(cur));
                    self.link(cur, c, ino);
                    ino
                }
            };
        }
        cur
    }
    /// Directories at `path` and above it where nothing is; stops at the
    /// first name that is not a directory. A path that is not clean is
    /// left alone.
    fn add_missing_dirs(&mut self, path: &[u8]) {
        if split(path).any(|c| c == b"." || c == b"..") {
            return;
        }
        let root = self.node(ROOT);
        let (uid, gid, mtime) = (root.uid, root.gid, root.mtime);
        let mut cur = ROOT;
        for c in split(path) {
            cur = match self.child(cur, c) {
                Some(ino) if self.node(ino).is_dir() => ino,
                Some(_) => return,
                None => {
                    let mut n = dir_node(cur);
                    (n.uid, n.gid, n.mtime) = (uid, gid, mtime);
                    let ino = self.add(n);
                    self.link(cur, c, ino);
                    ino
                }
            };
        }
    }
    fn link(&mut self, dir: u64, name: &[u8], ino: u64) {
        if let Some(c) = self.kids[(dir - 1) as usize].as_mut() {
            c.insert(name.into(), ino);
        }
        if self.node(ino).is_dir() {
            self.node_mut(dir).nlink += 1;
            self.dir_names.insert(ino, name.into());
        }
    }
}

impl Builder {
    /// The tree of nothing but the root.
    pub(crate) fn new() -> Builder {
        let mut b = Builder {
            nodes: Vec::new(),
            kids: Vec::new(),
            origin: Vec::new(),
            layer: 0,
            dir_names: Default::default(),
        };
        b.add(dir_node(ROOT));
        b
    }

    /// The node numbered `ino`, if there is one.
    pub(crate) fn get(&self, ino: u64) -> Option<&Node> {
        ino.checked_sub(1).and_then(|i| self.nodes.get(i as usize))
    }

    /// The layer that made node `ino` or set its metadata last.
    pub(crate) fn origin(&self, ino: u64) -> Option<usize> {
        ino.checked_sub(1).and_then(|i| self.origin.get(i as usize)).map(|&l| l as usize)
    }

    pub(crate) fn lookup(&self, dir: u64, name: &[u8]) -> Option<u64> {
        self.kids.get(dir.checked_sub(1)? as usize)?.as_ref()?.get(name).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The path of directory `ino` (empty for the root).
    pub(crate) fn path_of(&self, ino: u64) -> Option<Vec<u8>> {
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut cur = ino;
        while cur != ROOT {
            let n = self.get(cur).filter(|n| n.is_dir())?;
            parts.push(self.dir_names.get(&cur)?);
            if parts.len() > self.nodes.len() {
                return None;
            }
            cur = n.parent;
        }
        parts.reverse();
        Some(parts.join(&b'/'))
    }

    /// A layer's opaque markers, then its whiteouts: what they hide of
    /// the layers below goes.
    pub(crate) fn apply_markers(&mut self, opaque: &[Vec<u8>], whiteouts: &[Vec<u8>]) {
        for dir in opaque {
            if let Some(d) = self.resolve(dir).filter(|&d| self.node(d).is_dir()) {
                let names: Vec<Box<[u8]>> = self.kids(d).map(|c| c.keys().cloned().collect()).unwrap_or_default();
                for n in names {
                    self.detach(d, &n);
                }
            }
        }
        for w in whiteouts {
            let (parent, name) = parent_and_name(w);
            if name.is_empty() {
                continue;
            }
            if let Some(p) = self.resolve(parent).filter(|&p| self.node(p).is_dir()) {
                self.detach(p, name);
            }
        }
    }

    /// Entry `e` of layer `li` (every layer below applied already).
    pub(crate) fn apply_entry(&mut self, li: usize, e: Entry) -> Result<(), TreeError> {
        self.layer = li as u32;
        let b = self;
        let Entry { path, kind, mode, uid, gid, mtime, xattrs } = e;
        let err = |msg| TreeError::Entry { layer: li, path: String::from_utf8_lossy(&path).into_owned(), msg };
        if split(&path).any(|c| c == b"." || c == b"..") {
            return Err(err("the path is not clean"));
        }
        let (parent, name) = parent_and_name(&path);
        if name.is_empty() {
            // The root itself: only a directory may stand there.
            if kind != Kind::Dir {
                return Err(err("the root must be a directory"));
            }
            let r = b.node_mut(ROOT);
            (r.mode, r.uid, r.gid, r.mtime, r.xattrs) = (mode, uid, gid, mtime, xattrs);
            b.origin[0] = li as u32;
            return Ok(());
        }
        let p = b.ensure_dir(parent);
        let existing = b.child(p, name);
        match kind {
            Kind::Dir => {
                if let Some(d) = existing.filter(|&d| b.node(d).is_dir()) {
                    let n = b.node_mut(d);
                    (n.mode, n.uid, n.gid, n.mtime, n.xattrs) = (mode, uid, gid, mtime, xattrs);
                    b.origin[(d - 1) as usize] = li as u32;
                    return Ok(());
                }
                if existing.is_some() {
                    b.detach(p, name);
                }
                let mut n = dir_node(p);
                (n.mode, n.uid, n.gid, n.mtime, n.xattrs) = (mode, uid, gid, mtime, xattrs);
                let ino = b.add(n);
                b.link(p, name, ino);
            }
            Kind::HardLink(target) => {
                let t = b.resolve(&target).ok_or_else(|| err("a hard link to a path that does not exist"))?;
                if b.node(t).is_dir() {
                    return Err(err("a hard link to a directory"));
                }
                if existing == Some(t) {
                    return Ok(());
                }
                if existing.is_some() {
                    b.detach(p, name);
                }
                b.node_mut(t).nlink += 1;
                b.link(p, name, t);
            }
            other => {
                if existing.is_some() {
                    b.detach(p, name);
                }
                let kind = match other {
                    Kind::File(d) => NodeKind::File(d),
                    Kind::Symlink(t) => NodeKind::Symlink(t),
                    Kind::Fifo => NodeKind::Fifo,
                    Kind::Char { major, minor } => NodeKind::Char { major, minor },
                    Kind::Block { major, minor } => NodeKind::Block { major, minor },
                    Kind::Dir | Kind::HardLink(_) => unreachable!("handled above"),
                };
                let ino = b.add(Node { kind, mode, uid, gid, mtime, nlink: 1, xattrs, parent: p });
                b.link(p, name, ino);
            }
        }
        Ok(())
    }

    /// The finished tree, numbered as built (the inodes handed out while
    /// it grew stay valid; those no name reaches any more stay too).
    pub(crate) fn freeze_numbered(self) -> Result<Tree, TreeError> {
        let Builder { mut nodes, kids, .. } = self;
        if nodes.len() > u32::MAX as usize {
            return Err(TreeError::TooLarge);
        }
        let (mut links, mut names) = (Vec::new(), Vec::new());
        for (i, c) in kids.into_iter().enumerate() {
            let Some(c) = c else { continue };
            let start = u32::try_from(links.len()).map_err(|_| TreeError::TooLarge)?;
            for (name, ch) in c {
                links.push(Link { off: names.len() as u64, len: name.len() as u32, ino: ch as u32 });
                names.extend_from_slice(&name);
            }
            let len = links.len() as u32 - start;
            nodes[i].kind = NodeKind::Dir(Children { start, len });
        }
        links.shrink_to_fit();
        names.shrink_to_fit();
        Ok(Tree { nodes, links, names })
    }
}

fn parent_and_name(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

impl Tree {
    /// Applies `layers`, bottom first.
    pub fn build(layers: &[Layer]) -> Result<Tree, TreeError> {
        Tree::build_from(layers.to_vec())
    }

    /// `build`, taking the layers: each entry's heap parts move into the
    /// tree or are freed as it is applied, and each layer is dropped once
    /// applied, so a large image is not held twice.
    pub fn build_from(layers: Vec<Layer>) -> Result<Tree, TreeError> {
        Tree::build_with_dirs(layers, &[])
    }

    /// `build_from`, then an empty directory at each path of `dirs` that
    /// the layers leave missing (and at the missing directories above it):
    /// mount points a container runtime needs on a root it cannot write.
    /// They are the root's (mode 0755, the root's owner and mtime); a path
    /// that meets a file or a symlink stays as the layers made it.
    pub fn build_with_dirs(layers: Vec<Layer>, dirs: &[Vec<u8>]) -> Result<Tree, TreeError> {
        let mut b = Builder::new();
        for (li, layer) in layers.into_iter().enumerate() {
            b.apply_markers(&layer.opaque, &layer.whiteouts);
            for e in layer.entries {
                b.apply_entry(li, e)?;
            }
        }
        for d in dirs {
            b.add_missing_dirs(d);
        }
        compact(b)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, ino: u64) -> Option<&Node> {
        ino.checked_sub(1).and_then(|i| self.nodes.get(i as usize))
    }

    fn links(&self, dir: u64) -> Option<&[Link]> {
        match &self.node(dir)?.kind {
            NodeKind::Dir(c) => self.links.get(c.start as usize..(c.start + c.len) as usize),
            _ => None,
        }
    }

    fn name(&self, l: &Link) -> &[u8] {
        &self.names[l.off as usize..l.off as usize + l.len as usize]
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Option<u64> {
        let links = self.links(parent)?;
        let i = links.binary_search_by(|l| self.name(l).cmp(name)).ok()?;
        Some(u64::from(links[i].ino))
    }

    /// The inode at `path` (directories only along the way; no symlinks).
    pub fn resolve(&self, path: &[u8]) -> Option<u64> {
        let mut cur = ROOT;
        for c in split(path) {
            cur = self.lookup(cur, c)?;
        }
        Some(cur)
    }

    /// A directory's entries in name order.
    pub fn children(&self, dir: u64) -> Option<impl Iterator<Item = (&[u8], u64)>> {
        Some(self.links(dir)?.iter().map(|l| (self.name(l), u64::from(l.ino))))
    }
}

/// Keeps the inodes reachable from the root, numbered in walk order, and
/// freezes the directories' maps into the link table and name arena (the
/// nodes move; nothing is copied but the names).
fn compact(b: Builder) -> Result<Tree, TreeError> {
    let Builder { nodes, mut kids, .. } = b;
    let mut map = vec![0u64; nodes.len() + 1];
    let mut order = vec![ROOT];
    map[ROOT as usize] = ROOT;
    let mut i = 0;
    while i < order.len() {
        let ino = order[i];
        if let Some(c) = &kids[(ino - 1) as usize] {
            for &ch in c.values() {
                if map[ch as usize] == 0 {
                    order.push(ch);
                    map[ch as usize] = order.len() as u64;
                }
            }
        }
        i += 1;
    }
    if order.len() > u32::MAX as usize {
        return Err(TreeError::TooLarge);
    }
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(order.len());
    let mut links = Vec::new();
    let mut names = Vec::new();
    for &old in &order {
        // Each inode is in `order` once (a hard-linked file too), so its
        // slot is full and its place in `out` is its new number.
        let Some(mut n) = slots[(old - 1) as usize].take() else { return Err(TreeError::TooLarge) };
        if let Some(c) = kids[(old - 1) as usize].take() {
            let start = u32::try_from(links.len()).map_err(|_| TreeError::TooLarge)?;
            for (name, ch) in c {
                links.push(Link { off: names.len() as u64, len: name.len() as u32, ino: map[ch as usize] as u32 });
                names.extend_from_slice(&name);
            }
            let len = links.len() as u32 - start;
            n.kind = NodeKind::Dir(Children { start, len });
        }
        n.parent = if map[n.parent as usize] == 0 { ROOT } else { map[n.parent as usize] };
        out.push(n);
    }
    links.shrink_to_fit();
    names.shrink_to_fit();
    Ok(Tree { nodes: out, links, names })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: Kind) -> Entry {
        Entry { path: path.as_bytes().to_vec(), kind, mode: 0o644, uid: 0, gid: 0, mtime: (1, 0), xattrs: vec![] }
    }
    fn file(path: &str, layer: usize, offset: u64, size: u64) -> Entry {
        entry(path, Kind::File(DataRef::plain(layer, offset, size)))
    }
    fn dir(path: &str) -> Entry {
        Entry { mode: 0o755, ..entry(path, Kind::Dir) }
    }
    fn layer(entries: Vec<Entry>) -> Layer {
        Layer { entries, ..Layer::default() }
    }
    /// Every path with a short description, sorted.
    fn listing(t: &Tree) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(t: &Tree, ino: u64, prefix: &str, out: &mut Vec<String>) {
            for (name, ch) in t.children(ino).unwrap() {
                let p = format!("{prefix}{}", String::from_utf8_lossy(name));
                let n = t.node(ch).unwrap();
                let what = match &n.kind {
                    NodeKind::File(d) => format!("file L{}@{}+{} n{}", d.layer, d.offset, d.size, n.nlink),
                    NodeKind::Dir(_) => format!("dir {:o}", n.mode),
                    NodeKind::Symlink(t) => format!("-> {}", String::from_utf8_lossy(t)),
                    NodeKind::Fifo => "fifo".into(),
                    NodeKind::Char { major, minor } => format!("char {major}:{minor}"),
                    NodeKind::Block { major, minor } => format!("block {major}:{minor}"),
                };
                out.push(format!("{p} {what}"));
                if n.is_dir() {
                    walk(t, ch, &format!("{p}/"), out);
                }
            }
        }
        walk(t, ROOT, "", &mut out);
        out
    }

    #[test]
    fn whiteouts_and_opaque_dirs_apply_to_lower_layers_only() {
        let l0 = layer(vec![dir("a"), file("a/x", 0, 0, 1), file("a/y", 0, 1, 1), dir("b"), file("b/z", 0, 2, 1)]);
        let l1 = Layer {
            // A whiteout and a new entry of the same name in one layer: the new entry stays.
            entries: vec![file("a/x", 1, 0, 5), file("b/new", 1, 5, 1)],
            whiteouts: vec![b"a/x".to_vec(), b"a/y".to_vec()],
            opaque: vec![b"b".to_vec()],
        };
        let t = Tree::build(&[l0, l1]).unwrap();
        assert_eq!(listing(&t), vec!["a dir 755", "a/x file L1@0+5 n1", "b dir 755", "b/new file L1@5+1 n1"],);
    }

    #[test]
    fn mount_points_are_added_only_where_nothing_is() {
        let root = Entry { mode: 0o700, uid: 7, gid: 8, mtime: (42, 0), ..dir("") };
        let l0 = layer(vec![root, dir("dev"), file("sys", 0, 0, 1), entry("vol", Kind::Symlink(b"/x".to_vec()))]);
        let dirs: Vec<Vec<u8>> = ["/proc", "dev", "sys/fs", "vol/a", "/var/lib/data", "../up", "a/../b"]
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        let t = Tree::build_with_dirs(vec![l0], &dirs).unwrap();
        assert_eq!(
            listing(&t),
            vec![
                "dev dir 755",
                "proc dir 755",
                "sys file L0@0+1 n1",
                "var dir 755",
                "var/lib dir 755",
                "var/lib/data dir 755",
                "vol -> /x",
            ]
        );
        let p = t.node(t.resolve(b"proc").unwrap()).unwrap();
        assert_eq!((p.uid, p.gid, p.mtime), (7, 8, (42, 0)));
        assert_eq!(t.node(1).unwrap().nlink, 2 + 3, "the root counts its subdirectories");
    }

    #[test]
    fn a_file_replaces_a_directory_and_its_subtree() {
        let l0 = layer(vec![dir("d"), dir("d/e"), file("d/e/f", 0, 0, 1)]);
        let l1 = layer(vec![file("d", 1, 0, 2)]);
        let l2 = layer(vec![dir("d"), file("d/g", 2, 0, 1)]);
        let t = Tree::build(&[l0.clone(), l1.clone()]).unwrap();
        assert_eq!(listing(&t), vec!["d file L1@0+2 n1"]);
        let t = Tree::build(&[l0, l1, l2]).unwrap();
        assert_eq!(listing(&t), vec!["d dir 755", "d/g file L2@0+1 n1"]);
        assert_eq!(t.len(), 3, "unreachable inodes are dropped");
    }

    #[test]
    fn a_directory_over_a_directory_keeps_children_and_takes_metadata() {
        let l0 = layer(vec![dir("d"), file("d/f", 0, 0, 1)]);
        let l1 = layer(vec![Entry { mode: 0o700, uid: 5, ..dir("d") }]);
        let t = Tree::build(&[l0, l1]).unwrap();
        assert_eq!(listing(&t), vec!["d dir 700", "d/f file L0@0+1 n1"]);
        assert_eq!(t.node(t.resolve(b"d").unwrap()).unwrap().uid, 5);
    }

    #[test]
    fn hard_links_share_an_inode_and_keep_it_when_the_target_is_replaced() {
        let l0 = layer(vec![dir("a"), file("a/f", 0, 0, 3), entry("b/link", Kind::HardLink(b"a/f".to_vec()))]);
        let t = Tree::build(std::slice::from_ref(&l0)).unwrap();
        let (f, l) = (t.resolve(b"a/f").unwrap(), t.resolve(b"b/link").unwrap());
        assert_eq!(f, l);
        assert_eq!(t.node(f).unwrap().nlink, 2);
        let l1 = layer(vec![file("a/f", 1, 0, 9)]);
        let t = Tree::build(&[l0, l1]).unwrap();
        let (f, l) = (t.resolve(b"a/f").unwrap(), t.resolve(b"b/link").unwrap());
        assert_ne!(f, l);
        assert_eq!(t.node(l).unwrap().kind, NodeKind::File(DataRef::plain(0, 0, 3)));
        assert_eq!((t.node(l).unwrap().nlink, t.node(f).unwrap().nlink), (1, 1));
    }

    #[test]
    fn bad_hard_links_are_refused() {
        let e = Tree::build(&[layer(vec![entry("x", Kind::HardLink(b"nope".to_vec()))])]).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        let e = Tree::build(&[layer(vec![dir("d"), entry("x", Kind::HardLink(b"d".to_vec()))])]).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        let e = Tree::build(&[layer(vec![file("a/../b", 0, 0, 1)])]).unwrap_err();
        assert!(e.to_string().contains("not clean"), "{e}");
    }

    #[test]
    fn missing_parents_are_made_and_last_entry_wins() {
        let l0 = layer(vec![file("p/q/r", 0, 0, 1), file("p/q/r", 0, 10, 2), entry("s", Kind::Symlink(b"p".to_vec()))]);
        let l1 = layer(vec![file("s/t", 1, 0, 1)]);
        let t = Tree::build(&[l0, l1]).unwrap();
        assert_eq!(
            listing(&t),
            vec!["p dir 755", "p/q dir 755", "p/q/r file L0@10+2 n1", "s dir 755", "s/t file L1@0+1 n1"]
        );
    }

    #[test]
    fn directory_link_counts() {
        let t = Tree::build(&[layer(vec![dir("a"), dir("a/b"), dir("a/c"), file("a/f", 0, 0, 1)])]).unwrap();
        assert_eq!(t.node(ROOT).unwrap().nlink, 3);
        assert_eq!(t.node(t.resolve(b"a").unwrap()).unwrap().nlink, 4);
        let t = Tree::build(&[
            layer(vec![dir("a"), dir("a/b"), dir("a/c")]),
            Layer { whiteouts: vec![b"a/b".to_vec()], ..Layer::default() },
        ])
        .unwrap();
        assert_eq!(t.node(t.resolve(b"a").unwrap()).unwrap().nlink, 3);
    }

    #[test]
    fn opaque_root_and_whiteouts_of_missing_paths() {
        let l0 = layer(vec![file("x", 0, 0, 1), dir("d")]);
        let l1 = Layer {
            entries: vec![file("y", 1, 0, 1)],
            whiteouts: vec![b"nothing/here".to_vec(), b"x/under-a-file".to_vec()],
            opaque: vec![Vec::new()],
        };
        let t = Tree::build(&[l0, l1]).unwrap();
        assert_eq!(listing(&t), vec!["y file L1@0+1 n1"]);
        assert_eq!(t.node(ROOT).unwrap().nlink, 2);
    }

    #[test]
    fn sparse_maps_place_data_contiguously_and_drop_empty_segments() {
        let m = SparseMap::new(100, 1000, [(0, 10), (10, 0), (40, 5), (95, 5), (100, 0)]).unwrap();
        assert_eq!(
            m.segments(),
            &[
                Segment { start: 0, len: 10, at: 1000 },
                Segment { start: 40, len: 5, at: 1010 },
                Segment { start: 95, len: 5, at: 1015 }
            ]
        );
        assert_eq!((m.at(), m.stored()), (1000, 20));
        let d = DataRef::sparse(3, m);
        assert_eq!((d.layer, d.offset, d.size, d.stored()), (3, 1000, 100, 20));
        let empty = SparseMap::new(1 << 40, 0, [(1 << 40, 0)]).unwrap();
        assert!(empty.segments().is_empty());
        assert_eq!(empty.stored(), 0);
        // Beyond 4 GiB.
        let big = SparseMap::new(5 << 30, 512, [(0, 4096), ((4 << 30) - 100, 200)]).unwrap();
        assert_eq!(big.segments()[1], Segment { start: (4 << 30) - 100, len: 200, at: 512 + 4096 });
    }

    #[test]
    fn a_hard_link_to_a_sparse_file_shares_its_map() {
        let m = SparseMap::new(1 << 33, 512, [(1 << 32, 10)]).unwrap();
        let l0 = layer(vec![entry("s", Kind::File(DataRef::sparse(0, m))), entry("h", Kind::HardLink(b"s".to_vec()))]);
        let t = Tree::build(&[l0]).unwrap();
        let (s, h) = (t.resolve(b"s").unwrap(), t.resolve(b"h").unwrap());
        assert_eq!(s, h);
        let n = t.node(s).unwrap();
        assert_eq!((n.size(), n.nlink), (1 << 33, 2));
    }

    proptest::proptest! {
        #[test]
        fn any_sparse_map_is_refused_or_consistent(
            size in 0u64..200, at in 0u64..1000, pairs in proptest::collection::vec((0u64..220, 0u64..40), 0..12)) {
            if let Ok(m) = SparseMap::new(size, at, pairs.iter().copied()) {
                let mut end = 0;
                let mut next = at;
                for s in m.segments() {
                    proptest::prop_assert!(s.len > 0 && s.start >= end && s.start + s.len <= size);
                    proptest::prop_assert_eq!(s.at, next);
                    end = s.start + s.len;
                    next += s.len;
                }
                proptest::prop_assert_eq!(m.stored(), pairs.iter().map(|p| p.1).sum::<u64>());
            }
        }

        #[test]
        fn any_layers_build_a_consistent_tree(ops in proptest::collection::vec(
            (0usize..3, proptest::sample::select(vec!["a", "a/b", "a/b/c", "d", "d/e", "f"]), 0u8..6), 0..40)) {
            let mut layers = vec![Layer::default(), Layer::default(), Layer::default()];
            for (l, p, op) in ops {
                let path = p.as_bytes().to_vec();
                let e = |kind| Entry { path: path.clone(), kind, mode: 0o644, uid: 0, gid: 0, mtime: (0, 0), xattrs: vec![] };
                match op {
                    0 => layers[l].entries.push(e(Kind::Dir)),
                    1 => layers[l].entries.push(e(Kind::File(DataRef::plain(l, 0, 1)))),
                    2 => layers[l].entries.push(e(Kind::Symlink(b"a".to_vec()))),
                    3 => layers[l].whiteouts.push(path.clone()),
                    4 => layers[l].opaque.push(path.clone()),
                    _ => layers[l].entries.push(e(Kind::HardLink(b"f".to_vec()))),
                }
            }
            if let Ok(t) = Tree::build(&layers) {
                // Every inode is reachable, link counts match the names pointing at it.
                let mut names = vec![0u32; t.len() + 1];
                let mut subdirs = vec![0u32; t.len() + 1];
                for ino in 1..=t.len() as u64 {
                    if let Some(ch) = t.children(ino) {
                        for (_, c) in ch {
                            names[c as usize] += 1;
                            if t.node(c).unwrap().is_dir() { subdirs[ino as usize] += 1; }
                        }
                    }
                }
                for ino in 2..=t.len() as u64 {
                    let n = t.node(ino).unwrap();
                    proptest::prop_assert!(names[ino as usize] >= 1);
                    if n.is_dir() {
                        proptest::prop_assert_eq!(n.nlink, 2 + subdirs[ino as usize]);
                    } else {
                        proptest::prop_assert_eq!(n.nlink, names[ino as usize]);
                    }
                }
                proptest::prop_assert_eq!(t.node(ROOT).unwrap().nlink, 2 + subdirs[ROOT as usize]);
            }
        }
    }
}
