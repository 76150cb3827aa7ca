//! File operations of COPY, ADD and WORKDIR inside a stage's root (a
//! mounted overlay): paths are resolved as they would be inside the
//! container, every symlink kept within the root (an absolute target or
//! `..` above `/` stays at the root, as `chroot` would), so that what an
//! image holds cannot send a write to the host.

use anyhow::{bail, Context, Result};
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::rootpath::components;
pub use crate::rootpath::resolve_in_root;

/// `p` cleaned lexically as an absolute container path (`/a/../b` is `/b`).
pub fn clean_abs(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => out.push(s.to_str().unwrap_or("")),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    format!("/{}", out.join("/"))
}

/// Owner and mode settings of a copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attrs {
    /// `--chown`: the owner of everything copied (and of directories made
    /// for it); 0:0 when None.
    pub owner: Option<(u32, u32)>,
    /// `--chmod`: the mode of everything copied.
    pub mode: Option<u32>,
    /// Without `--chown`, keep the source's owners (COPY --from) instead of 0:0.
    pub keep_owner: bool,
}

/// Makes directory `path` (a container path) and its missing parents in
/// `root`, mode 0755 owned by `owner`; returns the host path.
pub fn mkdir_all(root: &Path, path: &str, owner: (u32, u32)) -> Result<PathBuf> {
    let mut cur = String::new();
    let mut host = root.to_path_buf();
    for c in components(path) {
        cur.push('/');
        cur.push_str(&c);
        host = resolve_in_root(root, &cur, true)?;
        match fs::symlink_metadata(&host) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => bail!("{cur} exists and is not a directory"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&host).with_context(|| format!("making {cur}"))?;
                fs::set_permissions(&host, fs::Permissions::from_mode(0o755))?;
                std::os::unix::fs::lchown(&host, Some(owner.0), Some(owner.1))
                    .with_context(|| format!("setting the owner of {cur}"))?;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {cur}")),
        }
    }
    Ok(host)
}

/// Removes whatever is at host path `p` (a file, a symlink or a tree).
fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Copies one entry `src` (a host path, not followed if it is a symlink)
/// to container path `dest` in `root` (its parent exists), with `attrs`;
/// a directory is made (or kept, if there) but not filled. The source's
/// mtime is kept.
pub fn copy_entry(src: &Path, root: &Path, dest: &str, attrs: Attrs) -> Result<u64> {
    let md = fs::symlink_metadata(src).with_context(|| format!("reading {}", src.display()))?;
    let name = Path::new(dest).file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with(".wh.") {
        bail!(
            "{}: names starting with .wh. mark deletions in image layers and cannot be copied in; rename it",
            src.display()
        );
    }
    let host = resolve_in_root(root, dest, false)?;
    let (uid, gid) = match (attrs.owner, attrs.keep_owner) {
        (Some(o), _) => o,
        (None, true) => (md.uid(), md.gid()),
        (None, false) => (0, 0),
    };
    let ft = md.file_type();
    let mut bytes = 0;
    if ft.is_dir() {
        match fs::symlink_metadata(&host) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                remove_any(&host)?;
                fs::create_dir(&host).with_context(|| format!("making {dest}"))?;
            }
            Err(_) => fs::create_dir(&host).with_context(|| format!("making {dest}"))?,
        }
        let mode = attrs.mode.unwrap_or(md.mode() & 0o7777);
        fs::set_permissions(&host, fs::Permissions::from_mode(mode))?;
    } else if ft.is_symlink() {
        let target = fs::read_link(src)?;
        remove_any(&host)?;
        symlink(&target, &host).with_context(|| format!("making the symlink {dest}"))?;
    } else if ft.is_file() {
        if fs::symlink_metadata(&host).map(|m| m.is_dir()).unwrap_or(false) {
            remove_any(&host)?;
        }
        // Through a fresh file, so that a symlink at `dest` is replaced,
        // never written through.
        let _ = fs::remove_file(&host);
        let mut from = fs::File::open(src).with_context(|| format!("reading {}", src.display()))?;
        let mut to = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&host)
            .with_context(|| format!("writing {dest}"))?;
        bytes = io::copy(&mut from, &mut to).with_context(|| format!("copying {} to {dest}", src.display()))?;
        let mode = attrs.mode.unwrap_or(md.mode() & 0o7777);
        fs::set_permissions(&host, fs::Permissions::from_mode(mode))?;
    } else {
        bail!("{}: only files, directories and symlinks can be copied into an image", src.display());
    }
    std::os::unix::fs::lchown(&host, Some(uid), Some(gid)).with_context(|| format!("setting the owner of {dest}"))?;
    set_mtime(&host, md.mtime(), md.mtime_nsec())?;
    Ok(bytes)
}

/// Sets the mtime of `p` (not following a symlink).
pub fn set_mtime(p: &Path, secs: i64, nsec: i64) -> Result<()> {
    img_sys::fs::set_times_nofollow(p, secs.max(0), nsec.clamp(0, 999_999_999))
        .with_context(|| format!("setting the mtime of {}", p.display()))
}

/// Extracts the tar stream `r` into container directory `dest` in `root`
/// (ADD of a local archive), the archive's owners, modes and times kept.
/// Entry names are confined to `dest`: `..`, absolute names and symlinks
/// resolve inside it. Whiteouts, devices and fifos are refused.
pub fn extract_tar(r: impl io::Read, root: &Path, dest: &str, label: &str) -> Result<u64> {
    let dest_host = resolve_in_root(root, dest, true)?;
    let mut ar = tar::Archive::new(r);
    let mut n = 0;
    let mut dirs: Vec<(PathBuf, i64)> = Vec::new();
    for e in ar.entries().with_context(|| format!("reading {label}"))? {
        let mut e = e.with_context(|| format!("reading {label}"))?;
        let name = e.path().with_context(|| format!("reading {label}"))?.to_string_lossy().into_owned();
        let rel = clean_abs(&name);
        if rel == "/" {
            continue;
        }
        let base = rel.rsplit('/').next().unwrap_or("");
        if base.starts_with(".wh.") {
            bail!("{label}: entry {name:?} is a whiteout, which ADD does not apply; extract the archive in a RUN step");
        }
        let h = e.header().clone();
        let (uid, gid) = (h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32);
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let mtime = h.mtime().unwrap_or(0) as i64;
        // The parent inside `dest`, made if missing.
        let parent = Path::new(&rel).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        mkdir_all(&dest_host, &parent, (0, 0))?;
        let host = resolve_in_root(&dest_host, &rel, false)?;
        match h.entry_type() {
            tar::EntryType::Directory => {
                if !fs::symlink_metadata(&host).map(|m| m.is_dir()).unwrap_or(false) {
                    remove_any(&host)?;
                    fs::create_dir(&host).with_context(|| format!("{label}: making {name}"))?;
                }
                fs::set_permissions(&host, fs::Permissions::from_mode(mode))?;
                dirs.push((host.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_any(&host)?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&host)
                    .with_context(|| format!("{label}: writing {name}"))?;
                io::copy(&mut e, &mut f).with_context(|| format!("{label}: reading {name}"))?;
                fs::set_permissions(&host, fs::Permissions::from_mode(mode))?;
            }
            tar::EntryType::Symlink => {
                let target = e.link_name()?.map(|t| t.into_owned()).unwrap_or_default();
                remove_any(&host)?;
                symlink(&target, &host).with_context(|| format!("{label}: making {name}"))?;
            }
            tar::EntryType::Link => {
                let target = e.link_name()?.map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
                let from = resolve_in_root(&dest_host, &clean_abs(&target), false)?;
                remove_any(&host)?;
                fs::hard_link(&from, &host).with_context(|| format!("{label}: linking {name} to {target}"))?;
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            other => bail!("{label}: entry {name:?} is a {other:?}, which ADD does not make; extract it in a RUN step"),
        }
        std::os::unix::fs::lchown(&host, Some(uid), Some(gid))
            .with_context(|| format!("{label}: setting the owner of {name} to {uid}:{gid}"))?;
        if !h.entry_type().is_dir() {
            set_mtime(&host, mtime, 0)?;
        }
        n += 1;
    }
    // Directories' times last: the entries written into them changed them.
    for (d, t) in dirs.iter().rev() {
        set_mtime(d, *t, 0)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> crate::testdir::TestDir {
        crate::testdir::TestDir::new(&format!("fsops-{name}"))
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let r = tmp("resolve");
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        symlink("/etc", r.join("abs")).unwrap();
        symlink("../../../../..", r.join("usr/up")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        assert_eq!(resolve_in_root(&r, "/bin/sh", false).unwrap(), r.join("usr/bin/sh"));
        assert_eq!(resolve_in_root(&r, "/abs/passwd", false).unwrap(), r.join("etc/passwd"));
        assert_eq!(resolve_in_root(&r, "/usr/up/etc/x", false).unwrap(), r.join("etc/x"));
        assert_eq!(resolve_in_root(&r, "/../../x", false).unwrap(), r.join("x"));
        assert_eq!(resolve_in_root(&r, "/bin", false).unwrap(), r.join("bin"));
        assert_eq!(resolve_in_root(&r, "/bin", true).unwrap(), r.join("usr/bin"));
        assert!(resolve_in_root(&r, "/loop1/x", false).unwrap_err().to_string().contains("symbolic links"));
        fs::remove_dir_all(&r).unwrap();
    }

    #[test]
    fn extracting_a_tar_stays_inside_its_directory() {
        let r = tmp("extract");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "esc", "/").unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o640);
        h.set_mtime(1_000_000);
        b.append_data(&mut h, "esc/etc/evil", &b"bad"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        // tar refuses to write such a name; an attacker's archive has it.
        h.as_old_mut().name[..8].copy_from_slice(b"../../up");
        h.set_cksum();
        b.append(&h, &b"up"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        fs::create_dir(r.join("t")).unwrap();
        // As an ordinary user the owners cannot be set; the paths are what matters.
        let res = extract_tar(&bytes[..], &r, "/t", "a.tar");
        if overlay_is_root() {
            res.unwrap();
            assert_eq!(fs::read(r.join("t/etc/evil")).unwrap(), b"bad");
            assert_eq!(fs::metadata(r.join("t/etc/evil")).unwrap().mtime(), 1_000_000);
            assert_eq!(fs::read(r.join("t/up")).unwrap(), b"up");
        }
        assert!(!r.join("etc").exists() && !r.join("up").exists());
        fs::remove_dir_all(&r).unwrap();
    }

    fn overlay_is_root() -> bool {
        img_sys::process::is_root()
    }

    #[test]
    fn whiteout_names_are_refused() {
        let r = tmp("wh");
        fs::write(r.join(".wh.x"), b"").unwrap();
        let e = copy_entry(&r.join(".wh.x"), &r, "/.wh.x", Attrs::default()).unwrap_err().to_string();
        assert!(e.contains("mark deletions"), "{e}");
        fs::remove_dir_all(&r).unwrap();
    }

    #[test]
    fn clean_abs_stays_at_the_root() {
        assert_eq!(clean_abs("a/../../b/./c/"), "/b/c");
        assert_eq!(clean_abs("/"), "/");
        assert_eq!(clean_abs(""), "/");
    }
}
