//! Every system call img makes outside std. Every mount system call and all
//! of img's `unsafe` code live in this crate (in `sys.rs`). What is mounted
//! and unshared (overlayfs, squashfs and bind mounts, unmounting directly as
//! root or through `fusermount3` otherwise, namespaces, a build step's
//! sandbox) goes through the [`Kernel`] and [`Sandbox`] traits: `main` makes
//! the one [`RealKernel`] and passes it down as `&dyn Kernel`, so the code
//! that decides what to mount is tested with [`RecordingKernel`] and no
//! privileges. File calls std lacks are in [`fs`], process-level calls that
//! decide nothing about mounts in [`process`], termination signals as a
//! descriptor to wait on in [`signal`].

#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod fs;
pub mod process;
pub mod signal;
mod sys;

use rustix::mount::MountFlags;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(
        "{path}: {what} cannot contain {ch:?} (overlayfs separates its options with it); use a store path without it"
    )]
    BadPath { path: String, what: &'static str, ch: char },
    #[error("mounting overlayfs at {target}: {source}{hint}")]
    Overlay { target: String, source: io::Error, hint: &'static str },
    #[error("unmounting {target}: {msg}")]
    Unmount { target: String, msg: String },
    #[error("mounting {what} at {target}: {msg}")]
    Mount { what: String, target: String, msg: String },
}

/// An overlayfs mount: `lower` (top first) under `upper`, at `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayMount {
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub target: PathBuf,
    /// Keep overlay's own attributes in `user.overlay.*` (needed inside a
    /// user namespace) instead of `trusted.overlay.*`.
    pub userxattr: bool,
}

impl OverlayMount {
    /// The mount data: the layers and the features that keep the upper
    /// directory a plain changeset (no redirects, no metadata-only copies,
    /// no index), so that it can be committed as an OCI layer.
    pub fn data(&self) -> Result<String, MountError> {
        let check = |p: &Path, what: &'static str| -> Result<String, MountError> {
            let s = p.to_string_lossy().into_owned();
            for ch in [',', ':', '\\'] {
                if s.contains(ch) {
                    return Err(MountError::BadPath { path: s, what, ch });
                }
            }
            Ok(s)
        };
        let lower = self.lower.iter().map(|l| check(l, "a lower directory")).collect::<Result<Vec<_>, _>>()?;
        // In a user namespace (userxattr) the kernel takes redirect_dir=nofollow
        // only: no redirects made or followed, as "off" does elsewhere.
        let redirect = if self.userxattr { "nofollow" } else { "off" };
        let mut d = format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir={redirect},index=off,metacopy=off",
            lower.join(":"),
            check(&self.upper, "the upper directory")?,
            check(&self.work, "the work directory")?,
        );
        if self.userxattr {
            d.push_str(",userxattr");
        }
        Ok(d)
    }
}

/// How to unmount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmount {
    /// Fails while the mount is busy.
    Normal,
    /// Detaches now; the kernel finishes when the last user goes.
    Lazy,
}

/// The mount calls img makes (and, as a [`Sandbox`], the namespace and
/// sandbox calls), passed down from `main` as `&dyn Kernel`.
pub trait Kernel: Sandbox + Send + Sync {
    fn mount_overlay(&self, m: &OverlayMount) -> Result<(), MountError>;
    /// Mounts the lower directories of `m` (two or more) as a read-only
    /// overlayfs at its target (its upper and work directories are not used).
    fn mount_overlay_read_only(&self, m: &OverlayMount) -> Result<(), MountError>;
    /// Binds directory `src` at `target`, read-only (not its submounts).
    fn bind_read_only(&self, src: &Path, target: &Path) -> Result<(), MountError>;
    /// Mounts the squashfs filesystem in `image` (a block device, or a
    /// file through a loop device) read-only at `target`.
    fn mount_squashfs(&self, image: &Path, target: &Path) -> Result<(), MountError>;
    /// Unmounts `target` (a FUSE or overlay mount).
    fn unmount(&self, target: &Path, how: Unmount) -> Result<(), MountError>;
}

/// The running kernel.
pub struct RealKernel;

/// Mounts made for images never honour setuid bits or device nodes: the
/// files are as the image says, but running or opening them through the
/// mount gains nothing.
const MOUNT_FLAGS: MountFlags = MountFlags::NOSUID.union(MountFlags::NODEV);

/// The mount data of a read-only overlay of `m`'s lower directories.
fn read_only_overlay_data(m: &OverlayMount) -> Result<String, MountError> {
    let full = m.data()?;
    let lower = full.split(',').next().unwrap_or_default();
    let redirect = if m.userxattr { "nofollow" } else { "off" };
    let mut data = format!("{lower},redirect_dir={redirect},metacopy=off");
    if m.userxattr {
        data.push_str(",userxattr");
    }
    Ok(data)
}

impl Kernel for RealKernel {
    fn mount_overlay(&self, m: &OverlayMount) -> Result<(), MountError> {
        let data = m.data()?;
        sys::mount("img", &m.target, "overlay", MOUNT_FLAGS, &data).map_err(|source| {
            let hint = match source.raw_os_error() {
                Some(libc::EPERM) => "; writable mounts through overlayfs need root",
                Some(libc::ENODEV) => "; the kernel has no overlayfs (modprobe overlay)",
                Some(libc::EINVAL) => "; the store may be on a filesystem overlayfs cannot use as an upper layer (overlayfs, or one without xattrs); use --root on ext4, xfs or tmpfs",
                _ => "",
            };
            MountError::Overlay { target: m.target.display().to_string(), source, hint }
        })
    }

    fn mount_overlay_read_only(&self, m: &OverlayMount) -> Result<(), MountError> {
        let data = read_only_overlay_data(m)?;
        sys::mount("img", &m.target, "overlay", MOUNT_FLAGS | MountFlags::RDONLY, &data)
            .map_err(|source| MountError::Overlay { target: m.target.display().to_string(), source, hint: "" })
    }

    fn bind_read_only(&self, src: &Path, target: &Path) -> Result<(), MountError> {
        let err = |e: io::Error| MountError::Mount {
            what: src.display().to_string(),
            target: target.display().to_string(),
            msg: match e.raw_os_error() {
                Some(libc::EPERM) => format!("{e}; binding the host's directories needs root"),
                _ => e.to_string(),
            },
        };
        sys::mount_bind(src, target).map_err(err)?;
        // A bind is read-only only once remounted so.
        if let Err(e) = sys::remount_bind_read_only(target, MOUNT_FLAGS) {
            let _ = sys::umount2(target, true);
            return Err(err(e));
        }
        Ok(())
    }

    fn mount_squashfs(&self, image: &Path, target: &Path) -> Result<(), MountError> {
        let err = |msg: String| MountError::Mount {
            what: image.display().to_string(),
            target: target.display().to_string(),
            msg,
        };
        if sys::geteuid() != 0 {
            return Err(err("kernel squashfs mounts need root".into()));
        }
        // mount(8) sets up (and at unmount releases) the loop device a file needs.
        let out = std::process::Command::new("mount")
            .args(["-t", "squashfs", "-o", "loop,ro,nosuid,nodev"])
            .arg(image)
            .arg(target)
            .output()
            .map_err(|e| err(format!("cannot run mount ({e}); install mount (util-linux)")))?;
        if !out.status.success() {
            return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()));
        }
        Ok(())
    }

    fn unmount(&self, target: &Path, how: Unmount) -> Result<(), MountError> {
        let err = |msg: String| MountError::Unmount { target: target.display().to_string(), msg };
        if sys::geteuid() == 0 {
            return sys::umount2(target, how == Unmount::Lazy).map_err(|e| err(e.to_string()));
        }
        // An ordinary user unmounts their FUSE mounts through the setuid helper.
        let mut cmd = std::process::Command::new("fusermount3");
        cmd.arg("-u");
        if how == Unmount::Lazy {
            cmd.arg("-z");
        }
        let out = cmd.arg(target).output().map_err(|e| err(format!("cannot run fusermount3 ({e}); install fuse3")))?;
        if !out.status.success() {
            return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()));
        }
        Ok(())
    }
}

/// A kernel that records the calls and makes none (for tests), failing the
/// ones it is told to.
#[derive(Default)]
pub struct RecordingKernel {
    pub calls: Mutex<Vec<String>>,
    /// Calls whose description starts with one of these fail.
    pub fail: Mutex<Vec<String>>,
}

impl RecordingKernel {
    fn record(&self, call: String) -> Result<(), io::Error> {
        let failing = self.fail.lock().unwrap().iter().any(|f| call.starts_with(f.as_str()));
        self.calls.lock().unwrap().push(call);
        if failing {
            Err(io::Error::from_raw_os_error(libc::EPERM))
        } else {
            Ok(())
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Kernel for RecordingKernel {
    fn bind_read_only(&self, src: &Path, target: &Path) -> Result<(), MountError> {
        self.record(format!("bind {} {}", src.display(), target.display())).map_err(|e| MountError::Mount {
            what: src.display().to_string(),
            target: target.display().to_string(),
            msg: e.to_string(),
        })
    }

    fn mount_squashfs(&self, image: &Path, target: &Path) -> Result<(), MountError> {
        self.record(format!("squashfs {} {}", image.display(), target.display())).map_err(|e| MountError::Mount {
            what: image.display().to_string(),
            target: target.display().to_string(),
            msg: e.to_string(),
        })
    }

    fn mount_overlay(&self, m: &OverlayMount) -> Result<(), MountError> {
        let data = m.data()?;
        self.record(format!("mount overlay {} {data}", m.target.display())).map_err(|source| MountError::Overlay {
            target: m.target.display().to_string(),
            source,
            hint: "",
        })
    }

    fn mount_overlay_read_only(&self, m: &OverlayMount) -> Result<(), MountError> {
        let data = read_only_overlay_data(m)?;
        self.record(format!("mount overlay-ro {} {data}", m.target.display())).map_err(|source| MountError::Overlay {
            target: m.target.display().to_string(),
            source,
            hint: "",
        })
    }

    fn unmount(&self, target: &Path, how: Unmount) -> Result<(), MountError> {
        self.record(format!("unmount {} {how:?}", target.display()))
            .map_err(|e| MountError::Unmount { target: target.display().to_string(), msg: e.to_string() })
    }
}

/// The namespaces a sandboxed step gets (see [`Kernel::unshare`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Namespaces {
    /// A user namespace, with no mapping yet (the parent maps it).
    pub user: bool,
    pub mount: bool,
    pub pid: bool,
    pub ipc: bool,
    pub uts: bool,
    pub net: bool,
}

impl Namespaces {
    fn flags(self) -> libc::c_int {
        let mut f = 0;
        for (on, flag) in [
            (self.user, libc::CLONE_NEWUSER),
            (self.mount, libc::CLONE_NEWNS),
            (self.pid, libc::CLONE_NEWPID),
            (self.ipc, libc::CLONE_NEWIPC),
            (self.uts, libc::CLONE_NEWUTS),
            (self.net, libc::CLONE_NEWNET),
        ] {
            if on {
                f |= flag;
            }
        }
        f
    }
}

/// The calls that set up a sandbox for a build step: namespaces, the
/// special filesystems of its root, and binds of the host's device files.
/// (Separate from [`Kernel`], whose mounts are the image mounts.)
pub trait Sandbox {
    /// Moves the calling process into new namespaces (a new PID namespace
    /// takes effect for its children); mounts in a new mount namespace are
    /// made private, so that nothing mounted there reaches the host. A new
    /// user namespace has no mapping: the parent maps it (newuidmap and
    /// newgidmap, for the user's subordinate ids), then the process goes
    /// on. The process must have one thread.
    fn unshare(&self, ns: Namespaces) -> io::Result<()>;
    /// Gives the calling process (root) a private mount namespace of its
    /// own, so that what it mounts goes away with it. The process must have
    /// one thread.
    fn enter_mount_namespace(&self) -> io::Result<()> {
        self.unshare(Namespaces { mount: true, ..Default::default() })
    }
    /// Makes the calling process root of a new user namespace (with a new
    /// mount namespace, private) in which only the caller's own user and
    /// group are mapped, to 0: an ordinary user can then mount FUSE and
    /// overlayfs and run a build step as root of its image, as rootless
    /// podman and buildah do. The process must have one thread.
    fn enter_user_namespace(&self) -> io::Result<()>;
    /// Mounts a `fstype` filesystem (proc, tmpfs, devpts, mqueue) at
    /// `target`, without setuid bits, and without devices unless `dev`
    /// (proc, sysfs, devpts and mqueue without executables either).
    fn mount_special(&self, fstype: &str, target: &Path, data: &str, dev: bool) -> io::Result<()>;
    /// Mounts a `fstype` filesystem (sysfs) at `target` read-only, without
    /// setuid bits, devices or executables.
    fn mount_special_read_only(&self, fstype: &str, target: &Path, data: &str) -> io::Result<()>;
    /// Binds the tree at `src` (the directory and the mounts under it) at
    /// `target`, every mount of it read-only, without setuid bits, devices
    /// or executables.
    fn bind_tree_read_only(&self, src: &Path, target: &Path) -> io::Result<()>;
    /// Binds `src` (a file or a directory) at `target`, writable.
    fn bind(&self, src: &Path, target: &Path) -> io::Result<()>;
    fn sethostname(&self, name: &str) -> io::Result<()>;
    /// Detaches whatever is mounted at `target`.
    fn detach(&self, target: &Path) -> io::Result<()>;
    /// Limits the capabilities of whatever the caller runs from now on to
    /// `keep` (capability numbers): the others leave the bounding set.
    fn limit_capabilities(&self, keep: &[u32]) -> io::Result<()>;
    /// Binds `path` onto itself read-only (a file or a directory).
    fn bind_self_read_only(&self, path: &Path) -> io::Result<()>;
    /// Makes `root` (a mount point) the root of this mount namespace with
    /// nothing of the old root left reachable (pivot_root, then the old
    /// root detached), as runc does.
    fn pivot_into(&self, root: &Path) -> io::Result<()>;
    /// Brings the loopback interface of this network namespace up.
    fn loopback_up(&self) -> io::Result<()>;
}

/// nosuid, nodev and noexec.
const NO_SUID_DEV_EXEC: MountFlags = MountFlags::NOSUID.union(MountFlags::NODEV).union(MountFlags::NOEXEC);

impl Sandbox for RealKernel {
    fn unshare(&self, ns: Namespaces) -> io::Result<()> {
        sys::unshare(ns.flags())?;
        if ns.mount {
            let private = MountFlags::from_bits_retain(libc::MS_PRIVATE as u32);
            sys::mount("none", Path::new("/"), "none", MountFlags::REC | private, "")?;
        }
        Ok(())
    }

    fn enter_user_namespace(&self) -> io::Result<()> {
        let (uid, gid) = (sys::geteuid(), sys::getegid());
        self.unshare(Namespaces { user: true, ..Default::default() })?;
        std::fs::write("/proc/self/setgroups", "deny")?;
        std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))?;
        std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))?;
        self.enter_mount_namespace()
    }

    fn mount_special(&self, fstype: &str, target: &Path, data: &str, dev: bool) -> io::Result<()> {
        let mut flags = MountFlags::NOSUID;
        if !dev {
            flags |= MountFlags::NODEV;
        }
        if ["proc", "sysfs", "devpts", "mqueue"].contains(&fstype) {
            flags |= MountFlags::NOEXEC;
        }
        sys::mount(fstype, target, fstype, flags, data)
    }

    fn mount_special_read_only(&self, fstype: &str, target: &Path, data: &str) -> io::Result<()> {
        sys::mount(fstype, target, fstype, MountFlags::RDONLY | NO_SUID_DEV_EXEC, data)
    }

    fn bind_tree_read_only(&self, src: &Path, target: &Path) -> io::Result<()> {
        let src_text = src.to_str().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: a path that is not UTF-8 cannot be bound", src.display()),
            )
        })?;
        // Recursive: inside a user namespace, a mount whose submounts are
        // locked (those it was given by the namespace's maker) can only be
        // bound with them.
        sys::mount(src_text, target, "none", MountFlags::BIND | MountFlags::REC, "")?;
        // Each mount of the tree is read-only once remounted so (the
        // flags a mount has are kept: inside a user namespace, those it
        // was given cannot be dropped).
        let target = std::fs::canonicalize(target)?;
        let mounts = mounts_under(&std::fs::read_to_string("/proc/self/mountinfo")?, &target);
        if mounts.first().map(|(p, _)| p) != Some(&target) {
            return Err(io::Error::other(format!(
                "{} is not listed in /proc/self/mountinfo after the bind",
                target.display()
            )));
        }
        for (p, flags) in mounts {
            sys::remount_bind_read_only(&p, flags | NO_SUID_DEV_EXEC)?;
        }
        Ok(())
    }

    fn bind(&self, src: &Path, target: &Path) -> io::Result<()> {
        sys::mount_bind(src, target)
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        sys::sethostname(name)
    }

    fn detach(&self, target: &Path) -> io::Result<()> {
        sys::umount2(target, true)
    }

    fn bind_self_read_only(&self, path: &Path) -> io::Result<()> {
        sys::mount_bind(path, path)?;
        sys::remount_bind_read_only(path, NO_SUID_DEV_EXEC)
    }

    fn pivot_into(&self, root: &Path) -> io::Result<()> {
        // pivot_root(".", "."): the old root ends up on top of the new one,
        // and is detached from there.
        std::env::set_current_dir(root)?;
        sys::pivot_root(Path::new("."), Path::new("."))?;
        sys::umount2(Path::new("."), true)?;
        std::env::set_current_dir("/")
    }

    fn loopback_up(&self) -> io::Result<()> {
        sys::loopback_up()
    }

    fn limit_capabilities(&self, keep: &[u32]) -> io::Result<()> {
        let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40);
        for cap in 0..=last {
            if !keep.contains(&cap) {
                sys::drop_bounding_cap(cap)?;
            }
        }
        Ok(())
    }
}

impl Sandbox for RecordingKernel {
    fn unshare(&self, ns: Namespaces) -> io::Result<()> {
        self.record(format!("unshare {ns:?}"))
    }

    fn enter_user_namespace(&self) -> io::Result<()> {
        self.record("enter user namespace".into())
    }

    fn mount_special(&self, fstype: &str, target: &Path, data: &str, dev: bool) -> io::Result<()> {
        self.record(format!("mount {fstype} {} {data} dev={dev}", target.display()))
    }

    fn mount_special_read_only(&self, fstype: &str, target: &Path, data: &str) -> io::Result<()> {
        self.record(format!("mount-ro {fstype} {} {data}", target.display()))
    }

    fn bind_tree_read_only(&self, src: &Path, target: &Path) -> io::Result<()> {
        self.record(format!("rbind-ro {} {}", src.display(), target.display()))
    }

    fn bind(&self, src: &Path, target: &Path) -> io::Result<()> {
        self.record(format!("bind-rw {} {}", src.display(), target.display()))
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        self.record(format!("sethostname {name}"))
    }

    fn detach(&self, target: &Path) -> io::Result<()> {
        self.record(format!("detach {}", target.display()))
    }

    fn limit_capabilities(&self, keep: &[u32]) -> io::Result<()> {
        self.record(format!("capabilities {keep:?}"))
    }

    fn bind_self_read_only(&self, path: &Path) -> io::Result<()> {
        self.record(format!("bind-ro {}", path.display()))
    }

    fn pivot_into(&self, root: &Path) -> io::Result<()> {
        self.record(format!("pivot {}", root.display()))
    }

    fn loopback_up(&self) -> io::Result<()> {
        self.record("loopback up".into())
    }
}

/// The mounts at `dir` or under it that `mountinfo` (the text of
/// /proc/self/mountinfo) lists, in its order (a mount before those on top
/// of it), each with the flags of its own options (read-only, nosuid,
/// nodev, noexec and the access time ones) for a remount that keeps them.
/// A pure parser, kept out of the traits: the kernel call is the read of
/// /proc/self/mountinfo in [`RealKernel`]'s `bind_tree_read_only`.
fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<(PathBuf, MountFlags)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 6 {
            continue;
        }
        let point = PathBuf::from(unescape_mountinfo(f[4]));
        if !point.starts_with(dir) {
            continue;
        }
        let mut flags = MountFlags::empty();
        for o in f[5].split(',') {
            flags |= match o {
                "ro" => MountFlags::RDONLY,
                "nosuid" => MountFlags::NOSUID,
                "nodev" => MountFlags::NODEV,
                "noexec" => MountFlags::NOEXEC,
                "noatime" => MountFlags::NOATIME,
                "nodiratime" => MountFlags::NODIRATIME,
                "relatime" => MountFlags::RELATIME,
                "strictatime" => MountFlags::STRICTATIME,
                _ => MountFlags::empty(),
            };
        }
        out.push((point, flags));
    }
    out
}

/// A mountinfo path: blanks, tabs, newlines and backslashes come as octal
/// escapes (`\040`).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let oct = |c: &u8| (b'0'..=b'7').contains(c);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code = (b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(oct))
            .then(|| b[i + 1..i + 4].iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0')))
            .and_then(|n| u8::try_from(n).ok());
        match code {
            Some(c) => {
                out.push(c);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(lower: &str) -> OverlayMount {
        OverlayMount {
            lower: vec![lower.into()],
            upper: "/s/u".into(),
            work: "/s/w".into(),
            target: "/mnt".into(),
            userxattr: false,
        }
    }

    #[test]
    fn data_names_the_layers_and_turns_off_redirects_and_metacopy() {
        assert_eq!(
            m("/s/l").data().unwrap(),
            "lowerdir=/s/l,upperdir=/s/u,workdir=/s/w,redirect_dir=off,index=off,metacopy=off"
        );
        let mut two = m("/a");
        two.lower.push("/b".into());
        two.userxattr = true;
        assert!(two.data().unwrap().starts_with("lowerdir=/a:/b,"));
        assert!(two.data().unwrap().ends_with(",userxattr"));
    }

    #[test]
    fn data_refuses_separators_in_paths() {
        for bad in ["/s/a,b", "/s/a:b", "/s/a\\b"] {
            let e = m(bad).data().unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("cannot contain"), "{e}");
        }
    }

    #[test]
    fn namespaces_become_clone_flags() {
        assert_eq!(Namespaces::default().flags(), 0);
        let all = Namespaces { user: true, mount: true, pid: true, ipc: true, uts: true, net: true };
        assert_eq!(
            all.flags(),
            libc::CLONE_NEWUSER
                | libc::CLONE_NEWNS
                | libc::CLONE_NEWPID
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWUTS
                | libc::CLONE_NEWNET
        );
        let k = RecordingKernel::default();
        k.unshare(Namespaces { pid: true, ..Default::default() }).unwrap();
        k.mount_special("proc", Path::new("/r/proc"), "", false).unwrap();
        assert_eq!(k.calls()[1], "mount proc /r/proc  dev=false");
    }

    #[test]
    fn mounts_under_a_directory_keep_their_flags() {
        let info = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
69 47 0:22 / /r/sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs rw
70 69 0:28 / /r/sys/fs/cgroup rw,nosuid,noatime - tmpfs tmpfs rw,mode=755
71 70 0:29 / /r/sys/fs/cgroup/a\\040b rw,relatime shared:5 - cgroup cgroup rw,cpu
72 27 0:30 / /r/system rw - tmpfs tmpfs rw
";
        let m = mounts_under(info, Path::new("/r/sys"));
        let want: Vec<(PathBuf, MountFlags)> = vec![
            ("/r/sys".into(), MountFlags::RDONLY | NO_SUID_DEV_EXEC | MountFlags::RELATIME),
            ("/r/sys/fs/cgroup".into(), MountFlags::NOSUID | MountFlags::NOATIME),
            ("/r/sys/fs/cgroup/a b".into(), MountFlags::RELATIME),
        ];
        assert_eq!(m, want);
        assert_eq!(unescape_mountinfo("a\\134b\\011c\\0"), "a\\b\tc\\0");
        assert_eq!(unescape_mountinfo("\\777\\040"), "\\777 ");
    }

    #[test]
    fn recording_kernel_records_and_fails_on_demand() {
        let k = RecordingKernel::default();
        k.mount_overlay(&m("/s/l")).unwrap();
        k.fail.lock().unwrap().push("unmount /mnt".into());
        assert!(k.unmount(Path::new("/mnt"), Unmount::Lazy).is_err());
        assert_eq!(k.calls().len(), 2);
        assert!(k.calls()[0].starts_with("mount overlay /mnt lowerdir=/s/l"));
        assert_eq!(k.calls()[1], "unmount /mnt Lazy");
    }

    #[test]
    fn xattrs_of_a_plain_file_are_readable() {
        let d = std::env::temp_dir().join(format!("img-sys-test-{}", std::process::id()));
        std::fs::write(&d, b"x").unwrap();
        // tmp filesystems may carry security labels; nothing else is there.
        let xs = fs::xattrs(&d).unwrap();
        assert!(xs.iter().all(|(n, _)| n.starts_with("security.")), "{xs:?}");
        assert_eq!(fs::xattr(&d, "user.img.absent").unwrap(), None);
        std::fs::remove_file(&d).unwrap();
    }
}
