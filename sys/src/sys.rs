//! The system calls: the only file of img with `unsafe`. Calls that rustix
//! wraps safely go through it; the `unsafe` blocks left are the calls it
//! has no safe form for (unshare, malloc_trim, the loopback ioctl, code run
//! between fork and exec, mapping a file, and the termination signals'
//! handler and mask), each with a SAFETY comment.

use rustix::mount::{MountFlags, UnmountFlags};
use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{} contains a NUL byte", p.display())))
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a mount argument"))
}

const NONE: &CStr = c"none";

/// mount(2).
pub fn mount(source: &str, target: &Path, fstype: &str, flags: MountFlags, data: &str) -> io::Result<()> {
    let (source, target, fstype, data) = (cstr(source)?, cpath(target)?, cstr(fstype)?, cstr(data)?);
    Ok(rustix::mount::mount(source.as_c_str(), target.as_c_str(), fstype.as_c_str(), flags, data.as_c_str())?)
}

/// A bind mount of `source` at `target` (not recursive).
pub fn mount_bind(source: &Path, target: &Path) -> io::Result<()> {
    let (source, target) = (cpath(source)?, cpath(target)?);
    Ok(rustix::mount::mount(source.as_c_str(), target.as_c_str(), NONE, MountFlags::BIND, None)?)
}

/// Remounts the bind mount at `target` read-only with `flags` added.
pub fn remount_bind_read_only(target: &Path, flags: MountFlags) -> io::Result<()> {
    let target = cpath(target)?;
    let remount = MountFlags::from_bits_retain(libc::MS_REMOUNT as u32);
    let all = remount | MountFlags::BIND | MountFlags::RDONLY | flags;
    // The source is ignored for a remount.
    Ok(rustix::mount::mount(NONE, target.as_c_str(), NONE, all, None)?)
}

/// umount2(2), detaching at once when `detach`.
pub fn umount2(target: &Path, detach: bool) -> io::Result<()> {
    let target = cpath(target)?;
    let flags = if detach { UnmountFlags::DETACH } else { UnmountFlags::empty() };
    Ok(rustix::mount::unmount(target.as_c_str(), flags)?)
}

/// Nothing to do: musl's allocator gives freed memory back by itself (and
/// has no malloc_trim).
#[cfg(not(target_env = "gnu"))]
pub fn release_free_memory() {}

/// Gives the memory the allocator holds free back to the system (glibc
/// keeps freed blocks for reuse; after a mount's tree is built from its
/// layers' entries, most of what was used is free and would stay counted
/// in the serving process's resident memory).
#[cfg(target_env = "gnu")]
pub fn release_free_memory() {
    // SAFETY: malloc_trim(3) takes a plain integer, only rearranges the
    // allocator's own free lists and cannot fail in a way that matters (it
    // returns whether memory was released).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// unshare(2) with `flags` (CLONE_NEW*).
pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare(2) takes a plain integer and changes only the calling
    // process's namespaces; no memory is passed. img passes CLONE_NEW*
    // flags only, never CLONE_FILES (the flag that makes rustix's wrapper
    // unsafe: descriptors another thread holds would stop being shared).
    let rc = unsafe { libc::unshare(flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks the kernel to kill the calling process when its parent dies.
pub fn die_with_parent() {
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
}

/// Removes capability `cap` from the calling thread's bounding set, so
/// that no program it runs afterwards can hold it.
pub fn drop_bounding_cap(cap: u32) -> io::Result<()> {
    let one = 1u64.checked_shl(cap).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    Ok(rustix::thread::remove_capability_from_bounding_set(rustix::thread::CapabilitySet::from_bits_retain(one))?)
}

/// Sets the access and modification times of `path` without following it
/// if it is a symlink (utimensat with AT_SYMLINK_NOFOLLOW).
pub fn set_times_nofollow(path: &Path, secs: i64, nsec: i64) -> io::Result<()> {
    let p = cpath(path)?;
    let t = rustix::fs::Timespec { tv_sec: secs, tv_nsec: nsec };
    let times = rustix::fs::Timestamps { last_access: t, last_modification: t };
    Ok(rustix::fs::utimensat(rustix::fs::CWD, p.as_c_str(), &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?)
}

/// pivot_root(2): `new_root` becomes the root, the old one is put at `put_old`.
pub fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let (n, o) = (cpath(new_root)?, cpath(put_old)?);
    Ok(rustix::process::pivot_root(n.as_c_str(), o.as_c_str())?)
}

/// setsid(2): a new session without a controlling terminal.
pub fn setsid() -> io::Result<()> {
    rustix::process::setsid()?;
    Ok(())
}

/// umask(2).
pub fn umask(mask: u32) {
    rustix::process::umask(rustix::fs::Mode::from_bits_retain(mask));
}

/// Whether every writer of the pipe read at standard input is gone (the
/// read end reports a hang-up and holds no data), without waiting.
pub fn stdin_writers_gone() -> bool {
    use rustix::event::{PollFd, PollFlags};
    let stdin = io::stdin();
    let mut p = [PollFd::new(&stdin, PollFlags::IN)];
    let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
    let n = rustix::event::poll(&mut p, Some(&zero)).unwrap_or(0);
    n == 1 && p[0].revents().contains(PollFlags::HUP)
}

/// Blocks until every writer of the pipe read at standard input is gone
/// (a hang-up, or the end of the data); what is written meanwhile is read
/// and dropped. On standard input that is not a pipe (a file, /dev/null)
/// it returns at its end.
pub fn wait_for_stdin_writers_gone() {
    use rustix::event::{PollFd, PollFlags};
    use rustix::io::Errno;
    let stdin = io::stdin();
    let mut buf = [0u8; 512];
    loop {
        let mut p = [PollFd::new(&stdin, PollFlags::IN)];
        match rustix::event::poll(&mut p, None) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(_) => return,
        }
        let revents = p[0].revents();
        if revents.contains(PollFlags::IN) {
            match rustix::io::read(&stdin, &mut buf) {
                Ok(got) if got > 0 => continue,
                Err(Errno::INTR) => continue,
                _ => return,
            }
        }
        if revents.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL) {
            return;
        }
    }
}

/// The parent process's id.
pub fn getppid() -> u32 {
    std::os::unix::process::parent_id()
}

/// Brings the loopback interface of the current network namespace up.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: a datagram socket is opened and closed here; `req` is a
    // zeroed ifreq that lives across both ioctls, its name a NUL-terminated
    // "lo", and the kernel reads and writes only its flags.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS as libc::Ioctl, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS as libc::Ioctl, &mut req);
        }
        let err = io::Error::last_os_error();
        libc::close(fd);
        if rc == 0 {
            Ok(())
        } else {
            Err(err)
        }
    }
}

/// Makes `cmd`'s process take the user `uid`, group `gid` and supplementary
/// `groups` before it runs its program (setgroups, setgid, setuid in the
/// child, between fork and exec). setgroups is skipped where the user
/// namespace denies it (a rootless build mapping only its user).
pub fn run_as(cmd: &mut std::process::Command, uid: u32, gid: u32, groups: Vec<u32>) {
    use std::os::unix::process::CommandExt;
    let groups: Vec<libc::gid_t> = groups.into_iter().map(|g| g as libc::gid_t).collect();
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes three system calls on memory it owns (`groups`, moved in and
    // not reallocated); it allocates nothing and takes no locks, as code
    // there must.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EPERM) {
                    return Err(e);
                }
            }
            if libc::setgid(gid as libc::gid_t) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::setuid(uid as libc::uid_t) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// sethostname(2).
pub fn sethostname(name: &str) -> io::Result<()> {
    Ok(rustix::system::sethostname(name.as_bytes())?)
}

/// The effective group ID.
pub fn getegid() -> u32 {
    rustix::process::getegid().as_raw()
}

/// The effective user ID.
pub fn geteuid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The names of the extended attributes of `path` (not following a
/// symlink), in the order the filesystem gives them.
pub fn list_xattrs(path: &Path) -> io::Result<Vec<String>> {
    use rustix::io::Errno;
    let p = cpath(path)?;
    let mut buf = vec![0u8; 1024];
    loop {
        match rustix::fs::llistxattr(p.as_c_str(), &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                break;
            }
            Err(Errno::RANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(buf.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
}

/// The value of extended attribute `name` of `path` (not following a
/// symlink), or None when it has none.
pub fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    use rustix::io::Errno;
    let p = cpath(path)?;
    let n = cstr(name)?;
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(p.as_c_str(), n.as_c_str(), &mut buf[..]) {
            Ok(r) => {
                buf.truncate(r);
                return Ok(Some(buf));
            }
            Err(Errno::RANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 16, 0),
            Err(Errno::NODATA) | Err(Errno::NOTSUP) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sets extended attribute `name` of `path` (not following a symlink).
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = cpath(path)?;
    let n = cstr(name)?;
    Ok(rustix::fs::lsetxattr(p.as_c_str(), n.as_c_str(), value, rustix::fs::XattrFlags::empty())?)
}

/// Removes extended attribute `name` of `path` (not following a symlink).
pub fn remove_xattr(path: &Path, name: &str) -> io::Result<()> {
    let p = cpath(path)?;
    let n = cstr(name)?;
    Ok(rustix::fs::lremovexattr(p.as_c_str(), n.as_c_str())?)
}

/// A read-only, private mapping of a whole file (mmap(2)).
pub struct Mapped(memmap2::Mmap);

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Maps `file` read-only and private.
///
/// # Safety
///
/// Nobody may write to the file in place or truncate it while the mapping
/// lives: a mapping shows later writes (so the `&[u8]` it hands out would
/// change underneath a reader) and a truncation makes reads beyond the new
/// end fault (SIGBUS). Replacing the file by renaming another over it, or
/// unlinking it, is fine: the mapping keeps the old inode.
pub unsafe fn map_read_only(file: &std::fs::File) -> io::Result<Mapped> {
    // SAFETY: the mapping is read-only and private, so nothing img does
    // through it changes the file; the caller's contract rules out the
    // changes by others. memmap2 keeps the length it mapped and unmaps on
    // drop, after the last borrow of the bytes.
    let m = unsafe { memmap2::MmapOptions::new().map(file)? };
    Ok(Mapped(m))
}

/// Maps an index file of the store (`indexes/<hex>`, `lazy/<hex>.index`)
/// read-only, refusing anything but a regular file.
///
/// This is safe to call because of how the store treats these files, not
/// because of anything the caller does: they are derived data, written
/// whole to a temporary file and renamed into place, then only read, and
/// replaced (by another rename) or deleted, never opened for writing or
/// truncated; a mapping keeps the inode it mapped through a rename or an
/// unlink. Only code that writes index files in place would break this, and
/// the store has none. (Another process changing the store's files behind
/// img's back is outside what any program can guard against, like a write
/// to /proc/self/mem.) Pass nothing else: any other file goes through
/// [`map_read_only`], whose contract the caller upholds.
pub fn map_index_file(path: &Path) -> io::Result<Mapped> {
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a regular file, so not an index file to map", path.display()),
        ));
    }
    // SAFETY: `path` is an index file of the store (this function's
    // contract, above), which nothing writes in place or truncates once
    // renamed into place; it is a regular file (checked), not a device or
    // a /proc file whose contents change on their own.
    unsafe { map_read_only(&file) }
}

/// Reads one line from standard input with the terminal's echo off when
/// standard input is a terminal (as getpass does), after writing `prompt`
/// to standard error; the terminal's settings are put back whatever
/// happens. The line comes without its line end.
pub fn read_secret_line(prompt: &str) -> io::Result<String> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    use std::io::{BufRead, Write};
    let stdin = io::stdin();
    let saved = tcgetattr(&stdin).ok();
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO | LocalModes::ECHOE | LocalModes::ECHOK);
        quiet.local_modes.insert(LocalModes::ECHONL);
        tcsetattr(&stdin, OptionalActions::Flush, &quiet)?;
        eprint!("{prompt}");
        let _ = io::stderr().flush();
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = &saved {
        let _ = tcsetattr(&stdin, OptionalActions::Flush, saved);
    }
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// The write end of the pipe SIGTERM and SIGINT are reported to; -1 while
/// there is none. Once stored, a descriptor is never closed (a handler
/// running in another thread may be writing to it).
static TERMINATION_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// The handler of SIGTERM and SIGINT: a byte to the pipe, nothing else.
extern "C" fn on_termination(_signal: libc::c_int) {
    let fd = TERMINATION_PIPE.load(std::sync::atomic::Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    let byte = 1u8;
    // SAFETY: write(2) is async-signal-safe; the buffer is a local byte that
    // outlives the call; `fd` is a pipe's write end that is never closed once
    // stored (non-blocking: a full pipe loses the byte, and a byte is already
    // waiting then). errno is read and put back through the calling thread's
    // own errno location, so that the interrupted code sees its own value.
    unsafe {
        let errno = libc::__errno_location();
        let saved = *errno;
        libc::write(fd, (&raw const byte).cast(), 1);
        *errno = saved;
    }
}

/// From now on SIGTERM and SIGINT write a byte to `write_end` (a
/// non-blocking pipe) instead of ending the process.
pub fn report_termination(write_end: std::os::fd::OwnedFd) -> io::Result<()> {
    use std::os::fd::IntoRawFd;
    // A descriptor stored before is left open on purpose (see above).
    TERMINATION_PIPE.store(write_end.into_raw_fd(), std::sync::atomic::Ordering::SeqCst);
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: sigaction(2) is given a fully initialised struct (zeroed,
        // then an empty mask, flags and the handler set) and a null pointer
        // for the old action. The handler only does async-signal-safe work
        // (an atomic load and write(2)). SA_RESTART keeps the system calls
        // it interrupts from failing with EINTR where the kernel allows.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_RESTART;
            action.sa_sigaction = on_termination as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Blocks SIGTERM and SIGINT in the calling thread (and the threads it
/// starts afterwards), so that they are handled by another thread and
/// never interrupt this one's system calls.
pub fn block_termination() -> io::Result<()> {
    // SAFETY: the signal set is initialised by sigemptyset before use and
    // lives on the stack for the call; pthread_sigmask(3) changes only the
    // calling thread's mask and is given a null pointer for the old one.
    let rc = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}
