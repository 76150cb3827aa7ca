//! The system calls: the only file of img with `unsafe`. Each block turns
//! Rust values into C strings and buffers that outlive the call.

use std::ffi::CString;
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

/// mount(2).
pub fn mount(source: &str, target: &Path, fstype: &str, flags: libc::c_ulong, data: &str) -> io::Result<()> {
    let (source, target, fstype, data) = (cstr(source)?, cpath(target)?, cstr(fstype)?, cstr(data)?);
    // SAFETY: the four pointers come from CStrings that live until the end
    // of this function, so they are valid, NUL-terminated and unaliased for
    // the whole call; mount(2) only reads them.
    let rc = unsafe {
        libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, data.as_ptr() as *const libc::c_void)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A bind mount of `source` at `target` (not recursive).
pub fn mount_bind(source: &Path, target: &Path) -> io::Result<()> {
    let (source, target, none) = (cpath(source)?, cpath(target)?, cstr("none")?);
    // SAFETY: the pointers come from CStrings alive across the call; the
    // data argument may be NULL for a bind mount.
    let rc = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), none.as_ptr(), libc::MS_BIND, std::ptr::null()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Remounts the bind mount at `target` read-only with `flags` added.
pub fn remount_bind_read_only(target: &Path, flags: libc::c_ulong) -> io::Result<()> {
    let (target, none) = (cpath(target)?, cstr("none")?);
    let all = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | flags;
    // SAFETY: as in mount_bind; the source is ignored for a remount.
    let rc = unsafe { libc::mount(none.as_ptr(), target.as_ptr(), none.as_ptr(), all, std::ptr::null()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// umount2(2).
pub fn umount2(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let target = cpath(target)?;
    // SAFETY: `target` is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::umount2(target.as_ptr(), flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Gives the memory the allocator holds free back to the system (glibc
/// keeps freed blocks for reuse; after a mount's tree is built from its
/// layers' entries, most of what was used is free and would stay counted
/// in the serving process's resident memory).
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
    // process's namespaces; no memory is passed.
    let rc = unsafe { libc::unshare(flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks the kernel to kill the calling process when its parent dies.
pub fn die_with_parent() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers and changes only
    // the calling process's own death signal.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
    }
}

/// Removes capability `cap` from the calling thread's bounding set, so
/// that no program it runs afterwards can hold it.
pub fn drop_bounding_cap(cap: u32) -> io::Result<()> {
    // SAFETY: prctl(PR_CAPBSET_DROP) takes plain integers and changes only
    // the calling thread's own bounding set.
    let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the access and modification times of `path` without following it
/// if it is a symlink (utimensat with AT_SYMLINK_NOFOLLOW).
pub fn set_times_nofollow(path: &Path, secs: i64, nsec: i64) -> io::Result<()> {
    let p = cpath(path)?;
    let t = libc::timespec { tv_sec: secs as libc::time_t, tv_nsec: nsec as libc::c_long };
    let times = [t, t];
    // SAFETY: `p` is a valid C string and `times` an array of two timespecs,
    // both alive across the call; utimensat only reads them.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// pivot_root(2): `new_root` becomes the root, the old one is put at `put_old`.
pub fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let (n, o) = (cpath(new_root)?, cpath(put_old)?);
    // SAFETY: both pointers come from CStrings alive across the call; the
    // system call only reads them.
    let rc = unsafe { libc::syscall(libc::SYS_pivot_root, n.as_ptr(), o.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// setsid(2): a new session without a controlling terminal.
pub fn setsid() -> io::Result<()> {
    // SAFETY: setsid(2) takes no arguments.
    let rc = unsafe { libc::setsid() };
    if rc >= 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// umask(2).
pub fn umask(mask: u32) {
    // SAFETY: umask(2) takes a plain integer and cannot fail.
    unsafe {
        libc::umask(mask as libc::mode_t);
    }
}

/// Whether every writer of the pipe read at standard input is gone (the
/// read end reports a hang-up and holds no data), without waiting.
pub fn stdin_writers_gone() -> bool {
    let mut p = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
    // SAFETY: `p` is one valid pollfd that lives across the call, and the
    // zero timeout makes poll(2) return at once.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & libc::POLLHUP != 0
}

/// Blocks until every writer of the pipe read at standard input is gone
/// (a hang-up, or the end of the data); what is written meanwhile is read
/// and dropped. On standard input that is not a pipe (a file, /dev/null)
/// it returns at its end.
pub fn wait_for_stdin_writers_gone() {
    let mut buf = [0u8; 512];
    loop {
        let mut p = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
        // SAFETY: `p` is one valid pollfd that lives across the call; a
        // timeout of -1 waits until the descriptor is ready.
        let n = unsafe { libc::poll(&mut p, 1, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if p.revents & libc::POLLIN != 0 {
            // SAFETY: `buf` is a writable buffer of `buf.len()` bytes that
            // lives across the call.
            let got = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if got > 0 {
                continue;
            }
            if got < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            return;
        }
    }
}

/// The parent process's id.
pub fn getppid() -> u32 {
    // SAFETY: getppid(2) takes no arguments and cannot fail.
    unsafe { libc::getppid() as u32 }
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
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &mut req);
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
    // SAFETY: the pointer and length describe `name`'s bytes, which live
    // across the call; sethostname(2) only reads them.
    let rc = unsafe { libc::sethostname(name.as_ptr() as *const libc::c_char, name.len()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The real group ID.
pub fn getegid() -> u32 {
    // SAFETY: getegid(2) takes no arguments and cannot fail.
    unsafe { libc::getegid() }
}

/// The effective user ID.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// The names of the extended attributes of `path` (not following a
/// symlink), in the order the filesystem gives them.
pub fn list_xattrs(path: &Path) -> io::Result<Vec<String>> {
    let p = cpath(path)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `p` is a valid C string; `buf` is a writable buffer of
        // exactly `buf.len()` bytes that lives across the call.
        let n = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    }
    Ok(buf.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
}

/// The value of extended attribute `name` of `path` (not following a
/// symlink), or None when it has none.
pub fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let p = cpath(path)?;
    let n = cstr(name)?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: `p` and `n` are valid C strings; `buf` is a writable
        // buffer of exactly `buf.len()` bytes that lives across the call.
        let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 16, 0),
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Sets extended attribute `name` of `path` (not following a symlink).
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = cpath(path)?;
    let n = cstr(name)?;
    // SAFETY: `p` and `n` are valid C strings and `value` a readable slice
    // of `value.len()` bytes, all alive across the call.
    let rc = unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr() as *const libc::c_void, value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Removes extended attribute `name` of `path` (not following a symlink).
pub fn remove_xattr(path: &Path, name: &str) -> io::Result<()> {
    let p = cpath(path)?;
    let n = cstr(name)?;
    // SAFETY: `p` and `n` are valid C strings alive across the call.
    let rc = unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A read-only, private mapping of a whole file (mmap(2)).
pub struct Mapped(memmap2::Mmap);

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Maps `file` read-only. The caller maps only files that nobody changes in
/// place once written (img's index files are written to a temporary name and
/// renamed over, never truncated or rewritten), because a mapping shows later
/// writes and a truncation makes reads beyond the new end fault.
pub fn map_read_only(file: &std::fs::File) -> io::Result<Mapped> {
    // SAFETY: the mapping is read-only and private, so nothing img does
    // through it changes the file; the caller's contract above rules out
    // the changes by others that would make the `&[u8]` it hands out change
    // or fault underneath a reader. memmap2 keeps the length it mapped and
    // unmaps on drop, after the last borrow of the bytes.
    let m = unsafe { memmap2::MmapOptions::new().map(file)? };
    Ok(Mapped(m))
}

/// Reads one line from standard input with the terminal's echo off when
/// standard input is a terminal (as getpass does), after writing `prompt`
/// to standard error; the terminal's settings are put back whatever
/// happens. The line comes without its line end.
pub fn read_secret_line(prompt: &str) -> io::Result<String> {
    use std::io::{BufRead, Write};
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data that tcgetattr fills; an all-zero value
    // is a valid (if meaningless) termios before it is filled.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 is open for the whole process; `saved` is a valid,
    // writable termios.
    let is_tty = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if is_tty {
        let mut quiet = saved;
        quiet.c_lflag &= !(libc::ECHO | libc::ECHOE | libc::ECHOK);
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: as above; `quiet` is a termios copied from the terminal's own.
        if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
            return Err(io::Error::last_os_error());
        }
        eprint!("{prompt}");
        let _ = io::stderr().flush();
    }
    let mut line = String::new();
    let read = io::stdin().lock().read_line(&mut line);
    if is_tty {
        // SAFETY: as above; `saved` holds the settings the terminal had.
        unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &saved) };
    }
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
