//! The filesystem operations over a merged tree and a source of layer
//! bytes, in plain types: what the FUSE adapter calls, and what tests call
//! without a kernel. Read-only; errors are errno values.

use crate::grow::Grow;
use crate::nodes::Nodes;
use crate::tree::{Node, NodeKind, Tree, ROOT};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Where file contents come from: byte ranges of a layer's uncompressed
/// tar stream (`DataRef` offsets).
pub trait BlobSource: Send + Sync {
    /// Reads up to `buf.len()` bytes of layer `layer` at `offset`; returns
    /// how many were read (fewer only at the end of the layer).
    fn read_at(&self, layer: usize, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

/// File types, as `stat` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
}

/// A directory entry as `readdir` gives it: (next offset, inode, type, name).
pub type DirEntry = (u64, u64, FileType, Vec<u8>);

/// What `stat` shows for an inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: FileType,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub blocks: u64,
    pub mtime: (i64, u32),
    pub rdev: u32,
}

/// Counters for `img mounts`.
#[derive(Debug, Default)]
pub struct Stats {
    pub reads: AtomicU64,
    pub bytes_read: AtomicU64,
    pub errors: AtomicU64,
}

enum Trees {
    Whole(Tree),
    Growing(Arc<Grow>),
}

pub struct ImageFs<S> {
    trees: Trees,
    source: S,
    pub stats: Stats,
    /// Called with a description of each failed read (the mount logs them).
    on_error: Box<dyn Fn(&str) + Send + Sync>,
}

fn makedev(major: u32, minor: u32) -> u32 {
    // The kernel's new_encode_dev for 32-bit device numbers.
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

fn attr_of(t: &dyn Nodes, ino: u64) -> Result<Attr, i32> {
    let n = t.node(ino).ok_or(libc::ENOENT)?;
    let (kind, rdev) = match &n.kind {
        NodeKind::File(_) => (FileType::Regular, 0),
        NodeKind::Dir(_) => (FileType::Directory, 0),
        NodeKind::Symlink(_) => (FileType::Symlink, 0),
        NodeKind::Fifo => (FileType::Fifo, 0),
        NodeKind::Char { major, minor } => (FileType::CharDevice, makedev(*major, *minor)),
        NodeKind::Block { major, minor } => (FileType::BlockDevice, makedev(*major, *minor)),
    };
    let size = n.size();
    // Blocks count what is stored: a sparse file's holes take none.
    let stored = match &n.kind {
        NodeKind::File(d) => d.stored(),
        _ => size,
    };
    Ok(Attr {
        ino,
        kind,
        perm: (n.mode & 0o7777) as u16,
        nlink: n.nlink.max(1),
        uid: n.uid,
        gid: n.gid,
        size,
        blocks: stored.div_ceil(512),
        mtime: n.mtime,
        rdev,
    })
}

impl<S: BlobSource> ImageFs<S> {
    pub fn new(tree: Tree, source: S) -> ImageFs<S> {
        ImageFs { trees: Trees::Whole(tree), source, stats: Stats::default(), on_error: Box::new(|_| {}) }
    }

    /// A filesystem whose layers' entries are still to come: they are fed
    /// through `grow` (see `grow`).
    pub fn growing(grow: Arc<Grow>, source: S) -> ImageFs<S> {
        ImageFs { trees: Trees::Growing(grow), source, stats: Stats::default(), on_error: Box::new(|_| {}) }
    }

    pub fn with_error_log(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_error = Box::new(f);
        self
    }

    /// Whether the tree is whole (answers given now will not change).
    pub fn settled(&self) -> bool {
        match &self.trees {
            Trees::Whole(_) => true,
            Trees::Growing(g) => g.frozen().is_some(),
        }
    }

    /// Waits until the tree is whole; why it cannot be.
    pub fn settle(&self) -> Result<(), String> {
        match &self.trees {
            Trees::Whole(_) => Ok(()),
            Trees::Growing(g) => g.settle().map(|_| ()),
        }
    }

    /// The whole tree. A growing one must be settled first (`settle`).
    pub fn tree(&self) -> &Tree {
        match &self.trees {
            Trees::Whole(t) => t,
            Trees::Growing(g) => g.settle().expect("the tree of a filesystem that could not be settled"),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&dyn Nodes) -> R) -> R {
        match &self.trees {
            Trees::Whole(t) => f(t),
            Trees::Growing(g) => g.with(f),
        }
    }

    pub fn attr(&self, ino: u64) -> Result<Attr, i32> {
        self.with(|t| attr_of(t, ino))
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Attr, i32> {
        let up = self.with(|t| {
            let p = t.node(parent).ok_or(libc::ENOENT)?;
            if !p.is_dir() {
                return Err(libc::ENOTDIR);
            }
            Ok(p.parent)
        })?;
        let ino = match name {
            b"." => parent,
            b".." => up,
            _ => match &self.trees {
                Trees::Whole(t) => t.lookup(parent, name).ok_or(libc::ENOENT)?,
                Trees::Growing(g) => g.child(parent, name)?.ok_or(libc::ENOENT)?,
            },
        };
        self.attr(ino)
    }

    /// Directory entries from position `offset` on: (next offset, inode,
    /// type, name), with `.` and `..` first. A growing tree is listed
    /// once it is whole.
    pub fn readdir(&self, ino: u64, offset: u64) -> Result<Vec<DirEntry>, i32> {
        let t = match &self.trees {
            Trees::Whole(t) => t,
            Trees::Growing(g) => {
                if !self.with(|t| t.node(ino).map(|n| n.is_dir())).ok_or(libc::ENOENT)? {
                    return Err(libc::ENOTDIR);
                }
                g.wait_frozen()?
            }
        };
        let n = t.node(ino).ok_or(libc::ENOENT)?;
        let children = t.children(ino).ok_or(libc::ENOTDIR)?;
        let mut out = Vec::new();
        let all = [(b".".as_slice(), ino), (b"..".as_slice(), n.parent)].into_iter().chain(children);
        for (i, (name, child)) in all.enumerate().skip(offset as usize) {
            let kind = if i < 2 { FileType::Directory } else { attr_of(t, child)?.kind };
            out.push((i as u64 + 1, child, kind, name.to_vec()));
        }
        Ok(out)
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>, i32> {
        self.with(|t| match &t.node(ino).ok_or(libc::ENOENT)?.kind {
            NodeKind::Symlink(t) => Ok(t.clone()),
            _ => Err(libc::EINVAL),
        })
    }

    /// Reads up to `size` bytes of a file at `offset`: a sparse file's
    /// holes as zeros, its data from the layer (one read may span holes and
    /// several segments). A failing source is EIO for this read, logged,
    /// never a crash.
    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, i32> {
        let d = self.with(|t| match &t.node(ino).ok_or(libc::ENOENT)?.kind {
            NodeKind::File(d) => Ok(d.clone()),
            NodeKind::Dir(_) => Err(libc::EISDIR),
            _ => Err(libc::EINVAL),
        })?;
        if offset >= d.size {
            return Ok(Vec::new());
        }
        let want = (d.size - offset).min(size as u64) as usize;
        let mut buf = vec![0u8; want];
        match &d.sparse {
            None => self.fill(ino, d.layer, d.offset + offset, &mut buf)?,
            Some(map) => {
                let end = offset + want as u64;
                let segs = map.segments();
                // The first segment that ends after `offset`.
                let first = segs.partition_point(|s| s.start + s.len <= offset);
                for s in segs[first..].iter().take_while(|s| s.start < end) {
                    let (from, to) = (s.start.max(offset), (s.start + s.len).min(end));
                    let part = &mut buf[(from - offset) as usize..(to - offset) as usize];
                    self.fill(ino, d.layer, s.at + (from - s.start), part)?;
                }
            }
        }
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_read.fetch_add(want as u64, Ordering::Relaxed);
        Ok(buf)
    }

    /// Fills `buf` from layer `layer` at `at`.
    fn fill(&self, ino: u64, layer: usize, at: u64, buf: &mut [u8]) -> Result<(), i32> {
        let mut got = 0;
        while got < buf.len() {
            match self.source.read_at(layer, at + got as u64, &mut buf[got..]) {
                Ok(0) => {
                    self.fail(&format!("inode {ino}: layer {layer} ended at {} of {} bytes", got, buf.len()));
                    return Err(libc::EIO);
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.fail(&format!("inode {ino}: reading layer {layer}: {e}"));
                    return Err(libc::EIO);
                }
            }
        }
        Ok(())
    }

    fn fail(&self, msg: &str) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        (self.on_error)(msg);
    }

    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>, i32> {
        self.with(|t| {
            t.node(ino)
                .ok_or(libc::ENOENT)?
                .xattrs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .ok_or(libc::ENODATA)
        })
    }

    /// Attribute names, each followed by a NUL, as listxattr(2) returns them.
    pub fn listxattr(&self, ino: u64) -> Result<Vec<u8>, i32> {
        self.with(|t| {
            let mut out = Vec::new();
            for (k, _) in &t.node(ino).ok_or(libc::ENOENT)?.xattrs {
                out.extend_from_slice(k);
                out.push(0);
            }
            Ok(out)
        })
    }

    /// (inodes, bytes stored for regular files: sparse files' holes left
    /// out) for statfs; of the tree so far while it grows.
    pub fn totals(&self) -> (u64, u64) {
        self.with(|t| {
            let mut bytes = 0u64;
            for ino in 1..=t.count() as u64 {
                if let Some(Node { kind: NodeKind::File(d), .. }) = t.node(ino) {
                    bytes = bytes.saturating_add(d.stored());
                }
            }
            (t.count() as u64, bytes)
        })
    }

    pub fn root(&self) -> u64 {
        ROOT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{DataRef, Entry, Kind, Layer, SparseMap};

    /// Layers as byte vectors.
    struct Mem(Vec<Vec<u8>>);
    impl BlobSource for Mem {
        fn read_at(&self, layer: usize, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
            let l = self.0.get(layer).ok_or_else(|| io::Error::other("no such layer"))?;
            let start = (offset as usize).min(l.len());
            let n = buf.len().min(l.len() - start);
            // Short reads on purpose: at most 3 bytes at a time.
            let n = n.min(3);
            buf[..n].copy_from_slice(&l[start..start + n]);
            Ok(n)
        }
    }

    fn fs() -> ImageFs<Mem> {
        let e = |path: &str, kind: Kind, mode: u32| Entry {
            path: path.as_bytes().to_vec(),
            kind,
            mode,
            uid: 1000,
            gid: 100,
            mtime: (1_700_000_000, 5),
            xattrs: vec![],
        };
        let mut cap = e("bin/ping", Kind::File(DataRef::plain(0, 4, 6)), 0o4755);
        cap.xattrs.push((b"security.capability".to_vec(), vec![1, 0, 0, 2]));
        let l0 = Layer {
            entries: vec![
                e("bin", Kind::Dir, 0o755),
                cap,
                e("bin/sh", Kind::Symlink(b"busybox".to_vec()), 0o777),
                e("dev/null", Kind::Char { major: 1, minor: 3 }, 0o666),
                e("broken", Kind::File(DataRef::plain(7, 0, 4)), 0o644),
            ],
            ..Layer::default()
        };
        ImageFs::new(Tree::build(&[l0]).unwrap(), Mem(vec![b"....abcdef....".to_vec()]))
    }

    #[test]
    fn attributes_and_lookup() {
        let f = fs();
        let bin = f.lookup(ROOT, b"bin").unwrap();
        assert_eq!((bin.kind, bin.perm, bin.uid, bin.nlink), (FileType::Directory, 0o755, 1000, 2));
        let ping = f.lookup(bin.ino, b"ping").unwrap();
        assert_eq!((ping.kind, ping.perm, ping.size, ping.mtime), (FileType::Regular, 0o4755, 6, (1_700_000_000, 5)));
        assert_eq!(f.lookup(bin.ino, b"nope"), Err(libc::ENOENT));
        assert_eq!(f.lookup(ping.ino, b"x"), Err(libc::ENOTDIR));
        assert_eq!(f.lookup(bin.ino, b"..").unwrap().ino, ROOT);
        let null = f.lookup(f.lookup(ROOT, b"dev").unwrap().ino, b"null").unwrap();
        assert_eq!((null.kind, null.rdev), (FileType::CharDevice, (1 << 8) | 3));
        assert_eq!(f.attr(999), Err(libc::ENOENT));
    }

    #[test]
    fn reads_symlinks_and_xattrs() {
        let f = fs();
        let bin = f.lookup(ROOT, b"bin").unwrap().ino;
        let ping = f.lookup(bin, b"ping").unwrap().ino;
        assert_eq!(f.read(ping, 0, 100).unwrap(), b"abcdef");
        assert_eq!(f.read(ping, 2, 3).unwrap(), b"cde");
        assert_eq!(f.read(ping, 6, 10).unwrap(), b"");
        assert_eq!(f.read(bin, 0, 1), Err(libc::EISDIR));
        assert_eq!(f.readlink(f.lookup(bin, b"sh").unwrap().ino).unwrap(), b"busybox");
        assert_eq!(f.readlink(ping), Err(libc::EINVAL));
        assert_eq!(f.getxattr(ping, b"security.capability").unwrap(), vec![1, 0, 0, 2]);
        assert_eq!(f.getxattr(ping, b"user.x"), Err(libc::ENODATA));
        assert_eq!(f.listxattr(ping).unwrap(), b"security.capability\0");
        assert_eq!(f.stats.bytes_read.load(Ordering::Relaxed), 9);
    }

    #[test]
    fn a_failing_source_is_eio_and_logged() {
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let l2 = log.clone();
        let f = fs().with_error_log(move |m| l2.lock().unwrap().push(m.to_string()));
        let broken = f.lookup(ROOT, b"broken").unwrap().ino;
        assert_eq!(f.read(broken, 0, 4), Err(libc::EIO));
        assert_eq!(f.stats.errors.load(Ordering::Relaxed), 1);
        assert!(log.lock().unwrap()[0].contains("layer 7"));
    }

    #[test]
    fn readdir_pages() {
        let f = fs();
        let all = f.readdir(ROOT, 0).unwrap();
        let names: Vec<&[u8]> = all.iter().map(|(_, _, _, n)| n.as_slice()).collect();
        assert_eq!(names, vec![b".".as_slice(), b"..", b"bin", b"broken", b"dev"]);
        // Resuming at an entry's offset continues after it.
        let rest = f.readdir(ROOT, all[2].0).unwrap();
        assert_eq!(
            rest.iter().map(|(_, _, _, n)| n.as_slice()).collect::<Vec<_>>(),
            vec![b"broken".as_slice(), b"dev"]
        );
        assert!(f.readdir(ROOT, 99).unwrap().is_empty());
        assert_eq!(f.readdir(f.lookup(ROOT, b"broken").unwrap().ino, 0), Err(libc::ENOTDIR));
    }

    /// A filesystem of one sparse file, `sparse`, over `source`.
    fn sparse_fs<S: BlobSource>(map: SparseMap, source: S) -> (ImageFs<S>, u64) {
        let e = Entry {
            path: b"sparse".to_vec(),
            kind: Kind::File(DataRef::sparse(0, map)),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: (0, 0),
            xattrs: vec![],
        };
        let f = ImageFs::new(Tree::build(&[Layer { entries: vec![e], ..Layer::default() }]).unwrap(), source);
        let ino = f.lookup(ROOT, b"sparse").unwrap().ino;
        (f, ino)
    }

    #[test]
    fn sparse_reads_give_zeros_for_holes_and_data_for_segments() {
        // 32 bytes: ABC at 0, DEFG at 10, HIJK at 26, holes between and a
        // 2-byte hole at the end; stored from offset 4 of the layer.
        let map = SparseMap::new(32, 4, [(0, 3), (10, 4), (26, 4), (32, 0)]).unwrap();
        let (f, ino) = sparse_fs(map, Mem(vec![b"....ABCDEFGHIJK....".to_vec()]));
        let mut want = [0u8; 32];
        want[0..3].copy_from_slice(b"ABC");
        want[10..14].copy_from_slice(b"DEFG");
        want[26..30].copy_from_slice(b"HIJK");
        let a = f.attr(ino).unwrap();
        assert_eq!((a.size, a.blocks), (32, 1));
        assert_eq!(f.totals().1, 11);
        // Every offset and length, across holes, segments and the end.
        for offset in 0..40u64 {
            for size in 0..40u32 {
                let got = f.read(ino, offset, size).unwrap();
                let lo = (offset as usize).min(32);
                let hi = (offset as usize + size as usize).min(32);
                assert_eq!(got, &want[lo..hi], "read of {size} at {offset}");
            }
        }
    }

    #[test]
    fn sparse_reads_beyond_4_gib_and_in_holes_touch_only_the_data() {
        /// A source that fails reads outside the stored data.
        struct Only(u64, Vec<u8>);
        impl BlobSource for Only {
            fn read_at(&self, _layer: usize, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
                let i = offset
                    .checked_sub(self.0)
                    .filter(|&i| i < self.1.len() as u64)
                    .ok_or_else(|| io::Error::other("outside"))?;
                let n = buf.len().min(self.1.len() - i as usize);
                buf[..n].copy_from_slice(&self.1[i as usize..i as usize + n]);
                Ok(n)
            }
        }
        let four = 4u64 << 30;
        let map = SparseMap::new(5 << 30, 1 << 20, [(0, 2), (four - 2, 4), ((5 << 30) - 1, 1)]).unwrap();
        let (f, ino) = sparse_fs(map, Only(1 << 20, b"abWXYZz".to_vec()));
        assert_eq!(f.attr(ino).unwrap().size, 5 << 30);
        assert_eq!(f.read(ino, 0, 4).unwrap(), b"ab\0\0");
        assert_eq!(f.read(ino, four - 4, 8).unwrap(), b"\0\0WXYZ\0\0");
        assert_eq!(f.read(ino, four + 100, 1 << 17).unwrap(), vec![0u8; 1 << 17]);
        assert_eq!(f.read(ino, (5 << 30) - 3, 100).unwrap(), b"\0\0z");
        assert_eq!(f.read(ino, 5 << 30, 100).unwrap(), b"");
        assert_eq!(f.stats.errors.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_failing_source_under_a_sparse_segment_is_eio() {
        // The map points past the end of the layer's bytes.
        let map = SparseMap::new(20, 4, [(0, 2), (10, 8)]).unwrap();
        let (f, ino) = sparse_fs(map, Mem(vec![b"....ab".to_vec()]));
        assert_eq!(f.read(ino, 0, 5).unwrap(), b"ab\0\0\0");
        assert_eq!(f.read(ino, 0, 20), Err(libc::EIO));
        assert_eq!(f.read(ino, 12, 1), Err(libc::EIO));
        assert_eq!(f.stats.errors.load(Ordering::Relaxed), 2);
    }
}
