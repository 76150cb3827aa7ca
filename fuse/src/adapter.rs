//! The FUSE adapter: the only file that names fuser types. It turns kernel
//! requests into calls on `ImageFs` and its answers into replies.

use crate::fs::{Attr, BlobSource, FileType, ImageFs};
use crate::rw::RwFs;
use fuser::{
    BsdFileFlags, Config, Errno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, KernelConfig,
    LockOwner, MountOption, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, SessionACL, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Image contents never change while mounted: the kernel may cache
/// entries and attributes for long.
const TTL: Duration = Duration::from_secs(3600);

struct Adapter<S>(Arc<ImageFs<S>>);

impl<S: BlobSource> Adapter<S> {
    /// While the tree grows, answers are not kept by the kernel.
    fn ttl(&self) -> Duration {
        if self.0.settled() {
            TTL
        } else {
            Duration::ZERO
        }
    }
}

fn time((secs, nanos): (i64, u32)) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

fn kind(k: FileType) -> fuser::FileType {
    match k {
        FileType::Regular => fuser::FileType::RegularFile,
        FileType::Directory => fuser::FileType::Directory,
        FileType::Symlink => fuser::FileType::Symlink,
        FileType::Fifo => fuser::FileType::NamedPipe,
        FileType::CharDevice => fuser::FileType::CharDevice,
        FileType::BlockDevice => fuser::FileType::BlockDevice,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    let t = time(a.mtime);
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: kind(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 4096,
        flags: 0,
    }
}

fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

/// Directory rows as far as the kernel's buffer takes them.
fn reply_dir(entries: Result<Vec<crate::fs::DirEntry>, i32>, mut reply: ReplyDirectory) {
    match entries {
        Ok(entries) => {
            for (next, child, k, name) in entries {
                if reply.add(INodeNo(child), next, kind(k), OsStr::from_bytes(&name)) {
                    break;
                }
            }
            reply.ok();
        }
        Err(e) => reply.error(errno(e)),
    }
}

/// Opens a directory (with `flags`) if `attr` is one.
fn reply_opendir(attr: Result<Attr, i32>, flags: FopenFlags, reply: ReplyOpen) {
    match attr {
        Ok(a) if a.kind == FileType::Directory => reply.opened(FileHandle(0), flags),
        Ok(_) => reply.error(errno(libc::ENOTDIR)),
        Err(e) => reply.error(errno(e)),
    }
}

fn xattr_reply(data: Result<Vec<u8>, i32>, size: u32, reply: ReplyXattr) {
    match data {
        Err(e) => reply.error(errno(e)),
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(errno(libc::ERANGE)),
        Ok(v) => reply.data(&v),
    }
}

impl<S: BlobSource + 'static> Filesystem for Adapter<S> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(1 << 20);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.0.lookup(parent.0, name.as_bytes()) {
            Ok(a) => reply.entry(&self.ttl(), &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.0.attr(ino.0) {
            Ok(a) => reply.attr(&self.ttl(), &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.0.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(errno(libc::EROFS));
        }
        match self.0.attr(ino.0) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.0.read(ino.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply_opendir(self.0.attr(ino.0), FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR, reply)
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, reply: ReplyDirectory) {
        reply_dir(self.0.readdir(ino.0, offset), reply)
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (files, bytes) = self.0.totals();
        reply.statfs(bytes.div_ceil(4096), 0, 0, files, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        xattr_reply(self.0.getxattr(ino.0, name.as_bytes()), size, reply)
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        xattr_reply(self.0.listxattr(ino.0), size, reply)
    }
}

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountConfig {
    /// The source name shown in /proc/mounts.
    pub fs_name: String,
    /// Let other users (root, a container's users) in; needs `user_allow_other`
    /// in /etc/fuse.conf when not root.
    pub allow_other: bool,
    pub threads: usize,
}

/// Mounts `fs` at `mountpoint` (read-only, setuid bits and device nodes
/// not honoured), calls `mounted` once the mount is in place, and serves it
/// until it is unmounted; blocks. When `mounted` fails, the mount is
/// removed and its error returned.
pub fn serve<S: BlobSource + 'static>(
    fs: Arc<ImageFs<S>>,
    mountpoint: &Path,
    cfg: &MountConfig,
    mounted: impl FnOnce() -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::FSName(cfg.fs_name.clone()),
        MountOption::Subtype("img".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
    ];
    if cfg.allow_other {
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(cfg.threads.max(1));
    // The threads share the one /dev/fuse descriptor, as libfuse's default
    // does: cloning it (FUSE_DEV_IOC_CLONE) fails with ENOSYS under
    // qemu-user, where the ARM builds are tested, after the mount is up.
    config.clone_fd = false;
    let session = fuser::Session::new(Adapter(fs), mountpoint, &config)?;
    // `mounted` may use the mount (an overlay over it), so the session
    // already answers. On failure, dropping the session unmounts it.
    let bg = session.spawn()?;
    raise_read_ahead(mountpoint);
    mounted()?;
    bg.join()
}

/// The kernel's read-ahead for the files of a mount, once it is up: a
/// long sequential read (a copy-up by overlayfs, which splices the file
/// through the page cache, or a whole file read) then asks for 1 MiB
/// (`max_pages`) a request, several at once, instead of 128 KiB one or
/// two at a time, which left the copy waiting on each round trip.
pub const READ_AHEAD: u64 = 8 << 20;

/// Raises the read-ahead of the FUSE mount at `mountpoint` to
/// [`READ_AHEAD`]. FUSE's init can only lower the kernel's 128 KiB, so it
/// is set through the mount's backing device in sysfs, which root alone
/// may write: a rootless mount keeps the kernel's default (its copy-ups
/// are made by `rw.rs` in 1 MiB reads anyway). Best effort: a mount
/// without it is slower, not wrong. The stat waits for the session's
/// init, after which the kernel no longer changes the setting.
fn raise_read_ahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(md) = std::fs::metadata(mountpoint) else { return };
    let _ = std::fs::write(read_ahead_file(md.dev()), format!("{}\n", READ_AHEAD >> 10));
}

/// The sysfs file of the read-ahead (KiB) of the backing device of the
/// filesystem on device `dev` (glibc's encoding of the major and minor).
fn read_ahead_file(dev: u64) -> String {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xffff_f000);
    let minor = (dev & 0xff) | ((dev >> 12) & 0xffff_ff00);
    format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Device numbers as stat gives them name their sysfs backing device
    /// as the kernel does (MAJOR:MINOR).
    #[test]
    fn read_ahead_file_names_the_backing_device() {
        let table: &[(u64, &str)] = &[
            (0x28, "/sys/class/bdi/0:40/read_ahead_kb"),
            (0x0801, "/sys/class/bdi/8:1/read_ahead_kb"),
            // Minor numbers past 255 (many FUSE mounts) and big majors.
            (0x10_0028, "/sys/class/bdi/0:296/read_ahead_kb"),
            (0x31_03e8, "/sys/class/bdi/259:1000/read_ahead_kb"),
        ];
        for (dev, want) in table {
            assert_eq!(read_ahead_file(*dev), *want, "{dev:#x}");
        }
    }
}

/// Changes come from this mount only, but other processes' views of the
/// upper directory are not tracked: keep the kernel's caches short.
const RW_TTL: Duration = Duration::from_secs(1);

struct RwAdapter<S>(Arc<RwFs<S>>);

fn reply_entry(r: Result<Attr, i32>, reply: ReplyEntry) {
    match r {
        Ok(a) => reply.entry(&RW_TTL, &file_attr(&a), Generation(0)),
        Err(e) => reply.error(errno(e)),
    }
}

fn reply_empty(r: Result<(), i32>, reply: ReplyEmpty) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

fn time_of(t: TimeOrNow) -> (i64, u32) {
    let t = match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    };
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => (-(e.duration().as_secs() as i64), 0),
    }
}

impl<S: BlobSource + 'static> Filesystem for RwAdapter<S> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(1 << 20);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(self.0.lookup(parent.0, name.as_bytes()), reply)
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.0.attr(ino.0) {
            Ok(a) => reply.attr(&RW_TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.0.setattr(ino.0, mode, uid, gid, size, mtime.map(time_of)) {
            Ok(a) => reply.attr(&RW_TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.0.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        reply_entry(self.0.mknod(parent.0, name.as_bytes(), mode & !umask, rdev), reply)
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        reply_entry(self.0.mkdir(parent.0, name.as_bytes(), mode & !umask), reply)
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(self.0.unlink(parent.0, name.as_bytes()), reply)
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(self.0.rmdir(parent.0, name.as_bytes()), reply)
    }

    fn symlink(&self, _req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        reply_entry(self.0.symlink(parent.0, link_name.as_bytes(), target.as_os_str().as_bytes()), reply)
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return reply.error(errno(libc::EINVAL));
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        reply_empty(self.0.rename(parent.0, name.as_bytes(), newparent.0, newname.as_bytes(), noreplace), reply)
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        reply_entry(self.0.link(ino.0, newparent.0, newname.as_bytes()), reply)
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.0.open(ino.0, flags.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.0.read(ino.0, fh.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.0.write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.0.release(fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply_empty(self.0.fsync(fh.0), reply)
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply_opendir(self.0.attr(ino.0), FopenFlags::empty(), reply)
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, reply: ReplyDirectory) {
        reply_dir(self.0.readdir(ino.0, offset), reply)
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (files, bytes) = self.0.totals();
        reply.statfs(bytes.div_ceil(4096), 0, 0, files, 0, 4096, 255, 4096);
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply_empty(self.0.setxattr(ino.0, name.as_bytes(), value), reply)
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        xattr_reply(self.0.getxattr(ino.0, name.as_bytes()), size, reply)
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        xattr_reply(self.0.listxattr(ino.0), size, reply)
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(self.0.removexattr(ino.0, name.as_bytes()), reply)
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.0.create(parent.0, name.as_bytes(), mode & !umask, flags) {
            Ok((a, fh)) => reply.created(&RW_TTL, &file_attr(&a), Generation(0), FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }
}

/// Mounts the writable `fs` at `mountpoint` for its owner alone (the owner
/// is the image's root there, so the kernel checks no permissions; setuid
/// bits and device nodes are not honoured), calls `mounted`, and serves
/// until it is unmounted; blocks.
pub fn serve_rw<S: BlobSource + 'static>(
    fs: Arc<RwFs<S>>,
    mountpoint: &Path,
    cfg: &MountConfig,
    mounted: impl FnOnce() -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RW,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::FSName(cfg.fs_name.clone()),
        MountOption::Subtype("img".into()),
        MountOption::NoAtime,
    ];
    config.n_threads = Some(cfg.threads.max(1));
    config.clone_fd = false; // see serve
    let session = fuser::Session::new(RwAdapter(fs), mountpoint, &config)?;
    let bg = session.spawn()?;
    mounted()?;
    bg.join()
}
