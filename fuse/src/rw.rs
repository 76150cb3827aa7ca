//! A writable filesystem for rootless mounts: the read-only image tree
//! under an upper directory that takes every change, as overlayfs would,
//! but in a form an ordinary user can write.
//!
//! The upper directory holds the changed and new entries at their paths.
//! A deleted name is an empty file `.wh.NAME` beside it, a directory that
//! replaced a lower one holds `.wh..wh..opq` (the OCI layer markers, so a
//! commit copies them as they are). What an unprivileged user cannot make
//! or set is kept in extended attributes: `user.img.override` holds
//! "uid:gid:mode:rdev" (mode with the file type; devices and fifos are
//! empty regular files), and an attribute outside the `user.` namespace
//! NAME is kept as `user.img.x.NAME`.
//!
//! The user who mounts is the image's root: no permission checks, and new
//! entries belong to 0:0, as in a rootless container.

use crate::fs::{Attr, BlobSource, DirEntry, FileType, ImageFs};
use crate::tree::ROOT;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub const OVERRIDE_XATTR: &str = "user.img.override";
pub const FOREIGN_XATTR_PREFIX: &str = "user.img.x.";
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

type R<T> = Result<T, i32>;

fn os_err(e: io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// What is bound to a merged inode.
#[derive(Debug, Clone, Default)]
struct Binding {
    /// The inode in the image tree, when the entry comes from the image.
    lower: Option<u64>,
    /// The entry exists in the upper directory.
    upper: bool,
}

#[derive(Default)]
struct State {
    next_ino: u64,
    bind: HashMap<u64, Binding>,
    /// Where each inode was last seen: (parent, name).
    names: HashMap<u64, (u64, Vec<u8>)>,
    by_name: HashMap<(u64, Vec<u8>), u64>,
    /// Upper inode numbers to merged ones (so hard links and copied-up
    /// files keep their inode).
    by_upper: HashMap<u64, u64>,
    /// Image inodes copied up: the other names of that inode (hard links
    /// in the image) share another inode, as under overlayfs.
    detached: HashMap<u64, u64>,
    handles: HashMap<u64, Option<Arc<File>>>,
    next_fh: u64,
}

pub struct RwFs<S> {
    lower: ImageFs<S>,
    upper: PathBuf,
    st: Mutex<State>,
}

/// Stat-like overrides kept in `user.img.override`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Override {
    pub uid: u32,
    pub gid: u32,
    /// With the file type bits.
    pub mode: u32,
    pub rdev: u32,
}

impl Override {
    pub fn parse(b: &[u8]) -> Option<Override> {
        let s = std::str::from_utf8(b).ok()?;
        let mut it = s.split(':');
        let o = Override {
            uid: it.next()?.parse().ok()?,
            gid: it.next()?.parse().ok()?,
            mode: u32::from_str_radix(it.next()?, 8).ok()?,
            rdev: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(o)
    }
    fn encode(&self) -> String {
        format!("{}:{}:{:o}:{}", self.uid, self.gid, self.mode, self.rdev)
    }
    pub fn kind(&self) -> Option<FileType> {
        Some(match self.mode & libc::S_IFMT {
            libc::S_IFREG => FileType::Regular,
            libc::S_IFDIR => FileType::Directory,
            libc::S_IFLNK => FileType::Symlink,
            libc::S_IFIFO => FileType::Fifo,
            libc::S_IFCHR => FileType::CharDevice,
            libc::S_IFBLK => FileType::BlockDevice,
            _ => return None,
        })
    }
}

fn type_bits(k: FileType) -> u32 {
    match k {
        FileType::Regular => libc::S_IFREG,
        FileType::Directory => libc::S_IFDIR,
        FileType::Symlink => libc::S_IFLNK,
        FileType::Fifo => libc::S_IFIFO,
        FileType::CharDevice => libc::S_IFCHR,
        FileType::BlockDevice => libc::S_IFBLK,
    }
}

fn whiteout_name(name: &[u8]) -> Vec<u8> {
    [WHITEOUT_PREFIX, name].concat()
}

fn osname(b: &[u8]) -> &std::ffi::OsStr {
    std::ffi::OsStr::from_bytes(b)
}

/// The attribute name kept in the upper directory for `name`.
fn stored_xattr(name: &[u8]) -> R<String> {
    let n = std::str::from_utf8(name).map_err(|_| libc::EINVAL)?;
    if n.starts_with("user.img.") {
        return Err(libc::EPERM);
    }
    Ok(if n.starts_with("user.") { n.to_string() } else { format!("{FOREIGN_XATTR_PREFIX}{n}") })
}

/// The attribute name shown for `stored`, or None for img's own.
fn shown_xattr(stored: &str) -> Option<String> {
    if let Some(n) = stored.strip_prefix(FOREIGN_XATTR_PREFIX) {
        return Some(n.to_string());
    }
    if stored.starts_with("user.img.") || !stored.starts_with("user.") {
        return None;
    }
    Some(stored.to_string())
}

impl<S: BlobSource> RwFs<S> {
    pub fn new(lower: ImageFs<S>, upper: PathBuf) -> RwFs<S> {
        let mut st = State { next_ino: lower.tree().len() as u64 + 1, next_fh: 1, ..State::default() };
        st.bind.insert(ROOT, Binding { lower: Some(ROOT), upper: true });
        RwFs { lower, upper, st: Mutex::new(st) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn root(&self) -> u64 {
        ROOT
    }

    /// The path of `ino` under the upper directory.
    fn upath(&self, st: &State, ino: u64) -> R<PathBuf> {
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != ROOT {
            let (p, n) = st.names.get(&cur).ok_or(libc::ESTALE)?;
            parts.push(n.clone());
            cur = *p;
            if parts.len() > 4096 {
                return Err(libc::ELOOP);
            }
        }
        let mut path = self.upper.clone();
        for n in parts.iter().rev() {
            path.push(osname(n));
        }
        Ok(path)
    }

    fn binding(&self, st: &State, ino: u64) -> R<Binding> {
        if let Some(b) = st.bind.get(&ino) {
            return Ok(b.clone());
        }
        Err(libc::ENOENT)
    }

    fn is_opaque(&self, st: &State, dir: u64) -> R<bool> {
        if !self.binding(st, dir)?.upper {
            return Ok(false);
        }
        Ok(self.upath(st, dir)?.join(osname(OPAQUE)).exists())
    }

    /// The image inode a lookup of `name` in `parent` finds, if any.
    fn lower_child(&self, st: &State, parent: u64, name: &[u8]) -> R<Option<u64>> {
        let b = self.binding(st, parent)?;
        let Some(pl) = b.lower else { return Ok(None) };
        if self.is_opaque(st, parent)? {
            return Ok(None);
        }
        Ok(self.lower.tree().lookup(pl, name))
    }

    fn record(&self, st: &mut State, ino: u64, parent: u64, name: &[u8], b: Binding) {
        st.bind.insert(ino, b);
        if let Some(old) = st.names.insert(ino, (parent, name.to_vec())) {
            if st.by_name.get(&old) == Some(&ino) {
                st.by_name.remove(&old);
            }
        }
        st.by_name.insert((parent, name.to_vec()), ino);
    }

    fn fresh(&self, st: &mut State) -> u64 {
        let i = st.next_ino;
        st.next_ino += 1;
        i
    }

    /// Finds `name` in `parent`: its inode, or ENOENT.
    fn find(&self, st: &mut State, parent: u64, name: &[u8]) -> R<u64> {
        if name.starts_with(WHITEOUT_PREFIX) {
            return Err(libc::ENOENT);
        }
        let pb = self.binding(st, parent)?;
        if pb.upper {
            let up = self.upath(st, parent)?.join(osname(name));
            if let Ok(md) = std::fs::symlink_metadata(&up) {
                let lower = self.lower_child(st, parent, name)?;
                let ino = match st.by_upper.get(&md.ino()) {
                    Some(&i) if st.bind.contains_key(&i) => i,
                    _ => match (lower, md.is_dir()) {
                        // A directory in both: the image's inode, merged.
                        (Some(l), true) if !st.detached.contains_key(&l) => l,
                        _ => st.by_name.get(&(parent, name.to_vec())).copied().unwrap_or_else(|| self.fresh(st)),
                    },
                };
                let lower = if md.is_dir() { lower } else { st.bind.get(&ino).and_then(|b| b.lower) };
                st.by_upper.insert(md.ino(), ino);
                self.record(st, ino, parent, name, Binding { lower, upper: true });
                return Ok(ino);
            }
            if self.upath(st, parent)?.join(osname(&whiteout_name(name))).exists() {
                return Err(libc::ENOENT);
            }
        }
        let l = self.lower_child(st, parent, name)?.ok_or(libc::ENOENT)?;
        let ino = st.detached.get(&l).copied().unwrap_or(l);
        self.record(st, ino, parent, name, Binding { lower: Some(l), upper: false });
        Ok(ino)
    }

    fn attr_of(&self, st: &State, ino: u64) -> R<Attr> {
        let b = self.binding(st, ino)?;
        if b.upper {
            let p = self.upath(st, ino)?;
            let md = std::fs::symlink_metadata(&p).map_err(os_err)?;
            let ov = img_sys::fs::xattr(&p, OVERRIDE_XATTR).ok().flatten().and_then(|v| Override::parse(&v));
            let real_kind = if md.is_dir() {
                FileType::Directory
            } else if md.file_type().is_symlink() {
                FileType::Symlink
            } else {
                FileType::Regular
            };
            let (kind, perm, uid, gid, rdev) = match ov {
                Some(o) => (o.kind().unwrap_or(real_kind), (o.mode & 0o7777) as u16, o.uid, o.gid, o.rdev),
                None => (real_kind, if real_kind == FileType::Symlink { 0o777 } else { 0o755 }, 0, 0, 0),
            };
            return Ok(Attr {
                ino,
                kind,
                perm,
                nlink: md.nlink() as u32,
                uid,
                gid,
                size: if matches!(kind, FileType::Regular | FileType::Symlink | FileType::Directory) {
                    md.len()
                } else {
                    0
                },
                blocks: md.blocks(),
                mtime: (md.mtime(), md.mtime_nsec() as u32),
                rdev,
            });
        }
        let l = b.lower.ok_or(libc::ENOENT)?;
        let mut a = self.lower.attr(l)?;
        a.ino = ino;
        Ok(a)
    }

    pub fn attr(&self, ino: u64) -> R<Attr> {
        let st = self.lock();
        self.attr_of(&st, ino)
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> R<Attr> {
        let mut st = self.lock();
        let ino = match name {
            b"." => parent,
            b".." => st.names.get(&parent).map(|(p, _)| *p).unwrap_or(ROOT),
            _ => self.find(&mut st, parent, name)?,
        };
        self.attr_of(&st, ino)
    }

    /// The names in directory `ino` (without `.` and `..`), sorted.
    fn list(&self, st: &mut State, ino: u64) -> R<Vec<(Vec<u8>, u64)>> {
        let b = self.binding(st, ino)?;
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut hidden: HashSet<Vec<u8>> = HashSet::new();
        if b.upper {
            let dir = self.upath(st, ino)?;
            for e in std::fs::read_dir(&dir).map_err(os_err)? {
                let n = e.map_err(os_err)?.file_name().as_bytes().to_vec();
                if let Some(t) = n.strip_prefix(WHITEOUT_PREFIX) {
                    hidden.insert(t.to_vec());
                } else {
                    hidden.insert(n.clone());
                    names.push(n);
                }
            }
        }
        if let Some(l) = b.lower {
            if !self.is_opaque(st, ino)? {
                if let Some(children) = self.lower.tree().children(l) {
                    for (n, _) in children {
                        if !hidden.contains(n) {
                            names.push(n.to_vec());
                        }
                    }
                }
            }
        }
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let child = self.find(st, ino, &n)?;
            out.push((n, child));
        }
        Ok(out)
    }

    pub fn readdir(&self, ino: u64, offset: u64) -> R<Vec<DirEntry>> {
        let mut st = self.lock();
        if self.attr_of(&st, ino)?.kind != FileType::Directory {
            return Err(libc::ENOTDIR);
        }
        let parent = st.names.get(&ino).map(|(p, _)| *p).unwrap_or(ROOT);
        let mut all = vec![(b".".to_vec(), ino), (b"..".to_vec(), parent)];
        all.extend(self.list(&mut st, ino)?);
        let mut out = Vec::new();
        for (i, (name, child)) in all.into_iter().enumerate().skip(offset as usize) {
            let kind = if i < 2 { FileType::Directory } else { self.attr_of(&st, child)?.kind };
            out.push((i as u64 + 1, child, kind, name));
        }
        Ok(out)
    }

    pub fn readlink(&self, ino: u64) -> R<Vec<u8>> {
        let st = self.lock();
        let b = self.binding(&st, ino)?;
        if b.upper {
            let p = self.upath(&st, ino)?;
            return std::fs::read_link(p).map(|t| t.as_os_str().as_bytes().to_vec()).map_err(os_err);
        }
        self.lower.readlink(b.lower.ok_or(libc::ENOENT)?)
    }

    fn set_override(path: &Path, o: Override) -> R<()> {
        img_sys::fs::set_xattr(path, OVERRIDE_XATTR, o.encode().as_bytes()).map_err(os_err)
    }

    fn override_of(&self, st: &State, ino: u64) -> R<Override> {
        let a = self.attr_of(st, ino)?;
        Ok(Override { uid: a.uid, gid: a.gid, mode: type_bits(a.kind) | a.perm as u32, rdev: a.rdev })
    }

    /// Makes `ino` exist in the upper directory (its parents first), with
    /// the image's contents, owner, mode, times and attributes.
    fn copy_up(&self, st: &mut State, ino: u64) -> R<()> {
        let b = self.binding(st, ino)?;
        if b.upper {
            return Ok(());
        }
        let (parent, _) = st.names.get(&ino).cloned().ok_or(libc::ESTALE)?;
        self.copy_up(st, parent)?;
        let l = b.lower.ok_or(libc::ENOENT)?;
        let a = self.lower.attr(l)?;
        let ov = Override { uid: a.uid, gid: a.gid, mode: type_bits(a.kind) | a.perm as u32, rdev: a.rdev };
        let dst = self.upath(st, ino)?;
        let tmp = dst.with_file_name(format!(".img-copyup-{ino}"));
        let _ = std::fs::remove_file(&tmp);
        match a.kind {
            FileType::Directory => {
                std::fs::create_dir(&dst).map_err(os_err)?;
                Self::set_override(&dst, ov)?;
            }
            FileType::Symlink => {
                let t = self.lower.readlink(l)?;
                std::os::unix::fs::symlink(osname(&t), &dst).map_err(os_err)?;
            }
            FileType::Regular => {
                let f =
                    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(os_err)?;
                let mut off = 0u64;
                while off < a.size {
                    let chunk = self.lower.read(l, off, 1 << 20)?;
                    if chunk.is_empty() {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(libc::EIO);
                    }
                    // Runs of zeros (a sparse file's holes) stay holes.
                    if chunk.iter().any(|&b| b != 0) {
                        f.write_all_at(&chunk, off).map_err(os_err)?;
                    }
                    off += chunk.len() as u64;
                }
                f.set_len(a.size).map_err(os_err)?;
                Self::set_override(&tmp, ov)?;
                std::fs::rename(&tmp, &dst).map_err(os_err)?;
            }
            _ => {
                File::create(&tmp).map_err(os_err)?;
                Self::set_override(&tmp, ov)?;
                std::fs::rename(&tmp, &dst).map_err(os_err)?;
            }
        }
        if a.kind != FileType::Symlink {
            if let Ok(names) = self.lower.listxattr(l) {
                for n in names.split(|&c| c == 0).filter(|n| !n.is_empty()) {
                    if let (Ok(v), Ok(stored)) = (self.lower.getxattr(l, n), stored_xattr(n)) {
                        img_sys::fs::set_xattr(&dst, &stored, &v).map_err(os_err)?;
                    }
                }
            }
            set_mtime(&dst, a.mtime)?;
        }
        let md = std::fs::symlink_metadata(&dst).map_err(os_err)?;
        st.by_upper.insert(md.ino(), ino);
        if a.nlink > 1 && a.kind != FileType::Directory {
            let other = self.fresh(st);
            st.detached.insert(l, other);
        }
        st.bind.insert(ino, Binding { lower: Some(l), upper: true });
        Ok(())
    }

    /// Prepares `name` in `parent` for a new entry: the parent copied up
    /// and a whiteout of the name removed. Returns the path and whether the
    /// name hid an image entry (a new directory there must be opaque).
    fn prepare_new(&self, st: &mut State, parent: u64, name: &[u8]) -> R<(PathBuf, bool)> {
        if name.starts_with(WHITEOUT_PREFIX) || name.starts_with(b".img-copyup-") {
            return Err(libc::EPERM);
        }
        if self.find(st, parent, name).is_ok() {
            return Err(libc::EEXIST);
        }
        self.copy_up(st, parent)?;
        let dir = self.upath(st, parent)?;
        let wh = dir.join(osname(&whiteout_name(name)));
        let hid = wh.exists();
        if hid {
            std::fs::remove_file(&wh).map_err(os_err)?;
        }
        Ok((dir.join(osname(name)), hid))
    }

    fn bind_new(&self, st: &mut State, parent: u64, name: &[u8], path: &Path) -> R<Attr> {
        let md = std::fs::symlink_metadata(path).map_err(os_err)?;
        let ino = self.fresh(st);
        st.by_upper.insert(md.ino(), ino);
        self.record(st, ino, parent, name, Binding { lower: None, upper: true });
        self.attr_of(st, ino)
    }

    pub fn mknod(&self, parent: u64, name: &[u8], mode: u32, rdev: u32) -> R<Attr> {
        let mut st = self.lock();
        let (path, _) = self.prepare_new(&mut st, parent, name)?;
        let kind = mode & libc::S_IFMT;
        if ![libc::S_IFREG, libc::S_IFIFO, libc::S_IFCHR, libc::S_IFBLK].contains(&kind) {
            return Err(libc::EINVAL);
        }
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(os_err)?;
        let rdev = if kind == libc::S_IFCHR || kind == libc::S_IFBLK { rdev } else { 0 };
        Self::set_override(&path, Override { uid: 0, gid: 0, mode, rdev })?;
        self.bind_new(&mut st, parent, name, &path)
    }

    pub fn create(&self, parent: u64, name: &[u8], mode: u32, flags: i32) -> R<(Attr, u64)> {
        let mut st = self.lock();
        let (path, _) = self.prepare_new(&mut st, parent, name)?;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(flags & libc::O_APPEND)
            .open(&path)
            .map_err(os_err)?;
        Self::set_override(&path, Override { uid: 0, gid: 0, mode: libc::S_IFREG | (mode & 0o7777), rdev: 0 })?;
        let a = self.bind_new(&mut st, parent, name, &path)?;
        let fh = st.next_fh;
        st.next_fh += 1;
        st.handles.insert(fh, Some(Arc::new(f)));
        Ok((a, fh))
    }

    pub fn mkdir(&self, parent: u64, name: &[u8], mode: u32) -> R<Attr> {
        let mut st = self.lock();
        let (path, hid) = self.prepare_new(&mut st, parent, name)?;
        std::fs::create_dir(&path).map_err(os_err)?;
        Self::set_override(&path, Override { uid: 0, gid: 0, mode: libc::S_IFDIR | (mode & 0o7777), rdev: 0 })?;
        if hid {
            File::create(path.join(osname(OPAQUE))).map_err(os_err)?;
        }
        self.bind_new(&mut st, parent, name, &path)
    }

    pub fn symlink(&self, parent: u64, name: &[u8], target: &[u8]) -> R<Attr> {
        let mut st = self.lock();
        let (path, _) = self.prepare_new(&mut st, parent, name)?;
        std::os::unix::fs::symlink(osname(target), &path).map_err(os_err)?;
        self.bind_new(&mut st, parent, name, &path)
    }

    pub fn link(&self, ino: u64, newparent: u64, newname: &[u8]) -> R<Attr> {
        let mut st = self.lock();
        if self.attr_of(&st, ino)?.kind == FileType::Directory {
            return Err(libc::EPERM);
        }
        self.copy_up(&mut st, ino)?;
        let (path, _) = self.prepare_new(&mut st, newparent, newname)?;
        std::fs::hard_link(self.upath(&st, ino)?, &path).map_err(os_err)?;
        let b = self.binding(&st, ino)?;
        self.record(&mut st, ino, newparent, newname, b);
        self.attr_of(&st, ino)
    }

    /// Removes `name` from `parent`: its upper entry, and a whiteout when
    /// the image has the name.
    fn remove(&self, st: &mut State, parent: u64, name: &[u8], dir: bool) -> R<()> {
        let ino = self.find(st, parent, name)?;
        let a = self.attr_of(st, ino)?;
        if dir && a.kind != FileType::Directory {
            return Err(libc::ENOTDIR);
        }
        if !dir && a.kind == FileType::Directory {
            return Err(libc::EISDIR);
        }
        if dir && !self.list(st, ino)?.is_empty() {
            return Err(libc::ENOTEMPTY);
        }
        let in_lower = self.lower_child(st, parent, name)?.is_some();
        self.copy_up(st, parent)?;
        let pdir = self.upath(st, parent)?;
        let b = self.binding(st, ino)?;
        if b.upper {
            let p = pdir.join(osname(name));
            if dir { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) }.map_err(os_err)?;
        }
        if in_lower {
            File::create(pdir.join(osname(&whiteout_name(name)))).map_err(os_err)?;
        }
        st.by_name.remove(&(parent, name.to_vec()));
        if st.names.get(&ino) == Some(&(parent, name.to_vec())) {
            st.names.remove(&ino);
        }
        Ok(())
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> R<()> {
        let mut st = self.lock();
        self.remove(&mut st, parent, name, false)
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> R<()> {
        let mut st = self.lock();
        self.remove(&mut st, parent, name, true)
    }

    /// Renames; `noreplace` fails when the target exists. A directory that
    /// comes from the image cannot move (EXDEV, as overlayfs without
    /// redirects says): `mv` then copies it.
    pub fn rename(&self, parent: u64, name: &[u8], newparent: u64, newname: &[u8], noreplace: bool) -> R<()> {
        let mut st = self.lock();
        if newname.starts_with(WHITEOUT_PREFIX) || newname.starts_with(b".img-copyup-") {
            return Err(libc::EPERM);
        }
        let ino = self.find(&mut st, parent, name)?;
        let a = self.attr_of(&st, ino)?;
        let b = self.binding(&st, ino)?;
        if a.kind == FileType::Directory && b.lower.is_some() {
            return Err(libc::EXDEV);
        }
        if let Ok(target) = self.find(&mut st, newparent, newname) {
            if target == ino {
                return Ok(());
            }
            if noreplace {
                return Err(libc::EEXIST);
            }
            let ta = self.attr_of(&st, target)?;
            match (a.kind == FileType::Directory, ta.kind == FileType::Directory) {
                (true, false) => return Err(libc::ENOTDIR),
                (false, true) => return Err(libc::EISDIR),
                _ => {}
            }
            self.remove(&mut st, newparent, newname, ta.kind == FileType::Directory)?;
        }
        let in_lower_src = self.lower_child(&st, parent, name)?.is_some();
        self.copy_up(&mut st, ino)?;
        let (dst, hid) = self.prepare_new(&mut st, newparent, newname)?;
        let src = self.upath(&st, ino)?;
        std::fs::rename(&src, &dst).map_err(os_err)?;
        if a.kind == FileType::Directory && hid {
            File::create(dst.join(osname(OPAQUE))).map_err(os_err)?;
        }
        if in_lower_src {
            File::create(src.with_file_name(osname(&whiteout_name(name)))).map_err(os_err)?;
        }
        st.by_name.remove(&(parent, name.to_vec()));
        let b = self.binding(&st, ino)?;
        self.record(&mut st, ino, newparent, newname, b);
        Ok(())
    }

    pub fn setattr(
        &self,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        mtime: Option<(i64, u32)>,
    ) -> R<Attr> {
        let mut st = self.lock();
        self.copy_up(&mut st, ino)?;
        let p = self.upath(&st, ino)?;
        let is_link = std::fs::symlink_metadata(&p).map_err(os_err)?.file_type().is_symlink();
        if mode.is_some() || uid.is_some() || gid.is_some() {
            if is_link {
                return Err(libc::EPERM);
            }
            let mut o = self.override_of(&st, ino)?;
            if let Some(m) = mode {
                o.mode = (o.mode & libc::S_IFMT) | (m & 0o7777);
            }
            if let Some(u) = uid {
                o.uid = u;
            }
            if let Some(g) = gid {
                o.gid = g;
            }
            Self::set_override(&p, o)?;
        }
        if let Some(s) = size {
            std::fs::OpenOptions::new().write(true).open(&p).and_then(|f| f.set_len(s)).map_err(os_err)?;
        }
        if let Some(t) = mtime {
            if !is_link {
                set_mtime(&p, t)?;
            }
        }
        self.attr_of(&st, ino)
    }

    /// Opens `ino`; writing copies it up first.
    pub fn open(&self, ino: u64, flags: i32) -> R<u64> {
        let mut st = self.lock();
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        if self.attr_of(&st, ino)?.kind == FileType::Directory && write {
            return Err(libc::EISDIR);
        }
        if write {
            self.copy_up(&mut st, ino)?;
        }
        let b = self.binding(&st, ino)?;
        let file = if b.upper && self.attr_of(&st, ino)?.kind == FileType::Regular {
            let p = self.upath(&st, ino)?;
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(write)
                .custom_flags(flags & (libc::O_APPEND | libc::O_TRUNC))
                .open(&p)
                .map_err(os_err)?;
            Some(Arc::new(f))
        } else {
            None
        };
        let fh = st.next_fh;
        st.next_fh += 1;
        st.handles.insert(fh, file);
        Ok(fh)
    }

    pub fn release(&self, fh: u64) {
        self.lock().handles.remove(&fh);
    }

    fn handle(&self, fh: u64) -> R<Option<Arc<File>>> {
        self.lock().handles.get(&fh).cloned().ok_or(libc::EBADF)
    }

    pub fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> R<Vec<u8>> {
        match self.handle(fh)? {
            Some(f) => {
                let mut buf = vec![0u8; size as usize];
                let mut got = 0;
                while got < buf.len() {
                    match f.read_at(&mut buf[got..], offset + got as u64) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(os_err(e)),
                    }
                }
                buf.truncate(got);
                Ok(buf)
            }
            None => {
                let l = {
                    let st = self.lock();
                    self.binding(&st, ino)?.lower.ok_or(libc::EIO)?
                };
                self.lower.read(l, offset, size)
            }
        }
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> R<u32> {
        let f = self.handle(fh)?.ok_or(libc::EBADF)?;
        f.write_all_at(data, offset).map_err(os_err)?;
        Ok(data.len() as u32)
    }

    pub fn fsync(&self, fh: u64) -> R<()> {
        if let Some(f) = self.handle(fh)? {
            f.sync_all().map_err(os_err)?;
        }
        Ok(())
    }

    pub fn getxattr(&self, ino: u64, name: &[u8]) -> R<Vec<u8>> {
        let st = self.lock();
        let b = self.binding(&st, ino)?;
        if b.upper {
            let p = self.upath(&st, ino)?;
            let stored = stored_xattr(name).map_err(|_| libc::ENODATA)?;
            return img_sys::fs::xattr(&p, &stored).map_err(os_err)?.ok_or(libc::ENODATA);
        }
        self.lower.getxattr(b.lower.ok_or(libc::ENOENT)?, name)
    }

    pub fn listxattr(&self, ino: u64) -> R<Vec<u8>> {
        let st = self.lock();
        let b = self.binding(&st, ino)?;
        if b.upper {
            let p = self.upath(&st, ino)?;
            let mut out = Vec::new();
            for (n, _) in img_sys::fs::xattrs(&p).map_err(os_err)? {
                if let Some(shown) = shown_xattr(&n) {
                    out.extend_from_slice(shown.as_bytes());
                    out.push(0);
                }
            }
            return Ok(out);
        }
        self.lower.listxattr(b.lower.ok_or(libc::ENOENT)?)
    }

    pub fn setxattr(&self, ino: u64, name: &[u8], value: &[u8]) -> R<()> {
        let mut st = self.lock();
        let stored = stored_xattr(name)?;
        self.copy_up(&mut st, ino)?;
        let p = self.upath(&st, ino)?;
        img_sys::fs::set_xattr(&p, &stored, value).map_err(os_err)
    }

    pub fn removexattr(&self, ino: u64, name: &[u8]) -> R<()> {
        let mut st = self.lock();
        let stored = stored_xattr(name)?;
        self.copy_up(&mut st, ino)?;
        let p = self.upath(&st, ino)?;
        img_sys::fs::remove_xattr(&p, &stored).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENODATA) {
                libc::ENODATA
            } else {
                os_err(e)
            }
        })
    }

    pub fn totals(&self) -> (u64, u64) {
        self.lower.totals()
    }

    pub fn lower(&self) -> &ImageFs<S> {
        &self.lower
    }
}

fn set_mtime(p: &Path, (secs, nanos): (i64, u32)) -> R<()> {
    let t = if secs >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::new(secs as u64, nanos)
    } else {
        std::time::UNIX_EPOCH - std::time::Duration::from_secs(secs.unsigned_abs())
    };
    let f = File::open(p).map_err(os_err)?;
    f.set_times(std::fs::FileTimes::new().set_modified(t)).map_err(os_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{DataRef, Entry, Kind, Layer, Tree};

    struct Mem(Vec<u8>);
    impl BlobSource for Mem {
        fn read_at(&self, _layer: usize, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
            let start = (offset as usize).min(self.0.len());
            let n = buf.len().min(self.0.len() - start);
            buf[..n].copy_from_slice(&self.0[start..start + n]);
            Ok(n)
        }
    }

    /// An image with etc/passwd ("root"), etc/shadow, a hard link pair
    /// a <-> b and a directory d/x; and an empty upper directory.
    fn rw() -> (RwFs<Mem>, PathBuf) {
        let e = |path: &str, kind: Kind, mode: u32| Entry {
            path: path.as_bytes().to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: (1_700_000_000, 0),
            xattrs: vec![],
        };
        let file = |off, size| Kind::File(DataRef::plain(0, off, size));
        let layer = Layer {
            entries: vec![
                e("etc", Kind::Dir, 0o755),
                e("etc/passwd", file(0, 4), 0o644),
                e("etc/shadow", file(4, 6), 0o600),
                e("a", file(10, 2), 0o644),
                e("b", Kind::HardLink(b"a".to_vec()), 0o644),
                e("d", Kind::Dir, 0o755),
                e("d/x", file(12, 1), 0o644),
            ],
            ..Layer::default()
        };
        let tree = Tree::build(&[layer]).unwrap();
        let lower = ImageFs::new(tree, Mem(b"rootsecretHIx".to_vec()));
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let up = std::env::temp_dir().join(format!(
            "img-rw-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&up).unwrap();
        (RwFs::new(lower, up.clone()), up)
    }

    fn names(fs: &RwFs<Mem>, dir: u64) -> Vec<String> {
        fs.readdir(dir, 2).unwrap().into_iter().map(|(_, _, _, n)| String::from_utf8(n).unwrap()).collect()
    }

    fn read_all(fs: &RwFs<Mem>, ino: u64) -> Vec<u8> {
        let fh = fs.open(ino, libc::O_RDONLY).unwrap();
        let d = fs.read(ino, fh, 0, 1 << 16).unwrap();
        fs.release(fh);
        d
    }

    #[test]
    fn writing_copies_up_and_keeps_owner_mode_and_inode() {
        let (fs, up) = rw();
        let etc = fs.lookup(ROOT, b"etc").unwrap().ino;
        let shadow = fs.lookup(etc, b"shadow").unwrap();
        let fh = fs.open(shadow.ino, libc::O_WRONLY | libc::O_APPEND).unwrap();
        fs.write(fh, 6, b"!").unwrap();
        fs.release(fh);
        let after = fs.lookup(etc, b"shadow").unwrap();
        assert_eq!(after.ino, shadow.ino);
        assert_eq!((after.perm, after.uid, after.size), (0o600, 0, 7));
        assert_eq!(read_all(&fs, after.ino), b"secret!");
        assert!(up.join("etc/shadow").is_file());
        assert!(!up.join("etc/passwd").exists(), "only the written file is copied up");
        assert_eq!(read_all(&fs, fs.lookup(etc, b"passwd").unwrap().ino), b"root");
        std::fs::remove_dir_all(up).unwrap();
    }

    #[test]
    fn deleting_an_image_file_leaves_a_whiteout_and_hides_it() {
        let (fs, up) = rw();
        let d = fs.lookup(ROOT, b"d").unwrap().ino;
        fs.unlink(d, b"x").unwrap();
        assert_eq!(fs.lookup(d, b"x").unwrap_err(), libc::ENOENT);
        assert!(names(&fs, d).is_empty());
        assert!(up.join("d/.wh.x").is_file());
        // Made again, it is a new file and the whiteout goes.
        let (a, fh) = fs.create(d, b"x", 0o640, 0).unwrap();
        fs.write(fh, 0, b"new").unwrap();
        fs.release(fh);
        assert_eq!((a.perm, a.uid), (0o640, 0));
        assert!(!up.join("d/.wh.x").exists());
        assert_eq!(read_all(&fs, fs.lookup(d, b"x").unwrap().ino), b"new");
        std::fs::remove_dir_all(up).unwrap();
    }

    #[test]
    fn a_directory_made_where_one_was_deleted_is_opaque() {
        let (fs, up) = rw();
        let d = fs.lookup(ROOT, b"d").unwrap().ino;
        assert_eq!(fs.rmdir(ROOT, b"d").unwrap_err(), libc::ENOTEMPTY);
        fs.unlink(d, b"x").unwrap();
        fs.rmdir(ROOT, b"d").unwrap();
        assert!(up.join(".wh.d").is_file());
        let d2 = fs.mkdir(ROOT, b"d", 0o700).unwrap().ino;
        assert!(up.join("d/.wh..wh..opq").is_file());
        assert!(names(&fs, d2).is_empty(), "the image's d/x must not show through");
        assert_eq!(fs.attr(d2).unwrap().perm, 0o700);
        std::fs::remove_dir_all(up).unwrap();
    }

    #[test]
    fn rename_moves_files_and_refuses_image_directories_with_exdev() {
        let (fs, up) = rw();
        let etc = fs.lookup(ROOT, b"etc").unwrap().ino;
        let passwd = fs.lookup(etc, b"passwd").unwrap().ino;
        fs.rename(etc, b"passwd", ROOT, b"moved", false).unwrap();
        assert_eq!(fs.lookup(etc, b"passwd").unwrap_err(), libc::ENOENT);
        let moved = fs.lookup(ROOT, b"moved").unwrap();
        assert_eq!(moved.ino, passwd);
        assert_eq!(read_all(&fs, moved.ino), b"root");
        assert!(up.join("etc/.wh.passwd").is_file());
        assert_eq!(fs.rename(ROOT, b"d", ROOT, b"e", false).unwrap_err(), libc::EXDEV);
        assert_eq!(fs.rename(ROOT, b"moved", ROOT, b"a", true).unwrap_err(), libc::EEXIST);
        std::fs::remove_dir_all(up).unwrap();
    }

    #[test]
    fn copying_up_one_name_of_a_hard_link_leaves_the_others_linked() {
        let (fs, up) = rw();
        let a = fs.lookup(ROOT, b"a").unwrap().ino;
        assert_eq!(fs.lookup(ROOT, b"b").unwrap().ino, a);
        // A change through the inode copies up one of its names (the one
        // last looked up, as the kernel names no path); the other stays
        // the image's file, under an inode of its own.
        fs.setattr(a, Some(0o600), None, None, None, None).unwrap();
        let (x, y) = (fs.lookup(ROOT, b"a").unwrap(), fs.lookup(ROOT, b"b").unwrap());
        let (copied, other) = if x.ino == a { (x, y) } else { (y, x) };
        assert_eq!(copied.ino, a);
        assert_eq!(copied.perm, 0o600);
        assert_ne!(other.ino, a);
        assert_eq!(other.perm, 0o644);
        std::fs::remove_dir_all(up).unwrap();
    }

    #[test]
    fn owners_devices_and_foreign_attributes_live_in_user_attributes() {
        let (fs, up) = rw();
        let dev = fs.mknod(ROOT, b"null", libc::S_IFCHR | 0o666, (1 << 8) | 3).unwrap();
        assert_eq!((dev.kind, dev.rdev), (FileType::CharDevice, (1 << 8) | 3));
        let (f, fh) = fs.create(ROOT, b"f", 0o755, 0).unwrap();
        fs.release(fh);
        fs.setattr(f.ino, Some(0o4755), Some(1234), Some(5678), None, None).unwrap();
        fs.setxattr(f.ino, b"security.capability", b"cap").unwrap();
        let a = fs.attr(f.ino).unwrap();
        assert_eq!((a.perm, a.uid, a.gid), (0o4755, 1234, 5678));
        assert_eq!(fs.getxattr(f.ino, b"security.capability").unwrap(), b"cap");
        assert_eq!(fs.listxattr(f.ino).unwrap(), b"security.capability\0");
        assert_eq!(fs.setxattr(f.ino, b"user.img.override", b"0:0:0:0").unwrap_err(), libc::EPERM);
        assert_eq!(fs.create(ROOT, b".wh.x", 0o644, 0).unwrap_err(), libc::EPERM);
        let ov = img_sys::fs::xattr(&up.join("f"), OVERRIDE_XATTR).unwrap().unwrap();
        assert_eq!(Override::parse(&ov).unwrap().uid, 1234);
        std::fs::remove_dir_all(up).unwrap();
    }

    #[test]
    fn override_parsing_refuses_garbage() {
        for bad in ["", "1:2:3", "1:2:3:4:5", "a:2:644:0", "1:2:9:0"] {
            assert_eq!(Override::parse(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(Override::parse(b"1:2:100644:0").unwrap().kind(), Some(FileType::Regular));
    }
}
