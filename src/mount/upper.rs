//! The upper directory of a writable mount, read as an OCI changeset.
//!
//! overlayfs records changes in its upper directory: new and modified
//! files as themselves, a deleted name as a character device 0/0 (a
//! whiteout), and a directory that replaced a lower one with the
//! `trusted.overlay.opaque` attribute (`user.overlay.opaque` with
//! `userxattr`). A layer says the same with `.wh.NAME` files and
//! `.wh..wh..opq`. `write_layer` turns one into the other; `fingerprint`
//! tells whether the upper directory changed since a commit.
//! `mount_writable` and `unmount_writable` put a root's writable mount
//! (that overlay over the image's FUSE tree) up and take it down, through
//! the kernel passed down from `main`.

use crate::digest::Digest;
use anyhow::{bail, Context, Result};
use img_sys::{Kernel, Unmount};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// The overlay of a writable mount as root at `dir`: the image's tree
/// (served through FUSE at the state's `lower`) under the state's `upper`
/// directory, which takes the changes.
pub fn writable_overlay(state: &super::StateDir, dir: &Path) -> img_sys::OverlayMount {
    img_sys::OverlayMount {
        lower: vec![state.lower()],
        upper: state.upper(),
        work: state.work(),
        target: dir.to_path_buf(),
        userxattr: false,
    }
}

/// Mounts the writable overlay of `state` at `dir` (see [`writable_overlay`]).
pub fn mount_writable(kernel: &dyn Kernel, state: &super::StateDir, dir: &Path) -> Result<(), img_sys::MountError> {
    kernel.mount_overlay(&writable_overlay(state, dir))
}

/// Takes a writable mount down: the overlay at `dir` first (when
/// `overlay_mounted`), then the image's tree under it (when
/// `lower_mounted`), which ends its serving process. The first failure
/// stops: the tree stays while the overlay over it does.
pub fn unmount_writable(
    kernel: &dyn Kernel,
    state: &super::StateDir,
    dir: &Path,
    how: Unmount,
    overlay_mounted: bool,
    lower_mounted: impl FnOnce(&Path) -> bool,
) -> Result<(), img_sys::MountError> {
    if overlay_mounted {
        kernel.unmount(dir, how)?;
    }
    let lower = state.lower();
    if lower_mounted(&lower) {
        kernel.unmount(&lower, how)?;
    }
    Ok(())
}

/// Attributes overlayfs keeps for itself: never part of a layer.
fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}

fn is_opaque(path: &Path) -> Result<bool> {
    for name in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        if let Some(v) = img_sys::fs::xattr(path, name).with_context(|| format!("reading {}", path.display()))? {
            if v == b"y" {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// What a changeset holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChangeStats {
    /// Files, directories, links and nodes added or changed.
    pub changed: u64,
    /// Names deleted (whiteouts).
    pub deleted: u64,
    /// Directories that replace the lower one (opaque).
    pub opaque: u64,
}

/// Entries of `dir`, sorted by name (so a layer is the same for the same changes).
fn sorted_entries(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    v.sort_by_key(|e| e.file_name());
    Ok(v)
}

/// Writes the changes in `upper` as an uncompressed layer tar to `out`.
pub fn write_layer<W: Write>(upper: &Path, out: W) -> Result<(W, ChangeStats)> {
    write_layer_with(upper, out, None)
}

/// [`write_layer`], every entry's mtime set to `fixed` when given (for
/// reproducible builds).
pub fn write_layer_with<W: Write>(upper: &Path, out: W, fixed: Option<u64>) -> Result<(W, ChangeStats)> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut stats = ChangeStats::default();
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    // An upper directory an ordinary user owns is a rootless mount's.
    let rootless = std::fs::metadata(upper).with_context(|| format!("reading {}", upper.display()))?.uid() != 0;
    walk(&mut b, upper, "", rootless, &mut stats, &mut links, fixed)?;
    let out = b.into_inner().context("writing the layer")?;
    Ok((out, stats))
}

/// Owner, mode (with the file type) and device of an upper entry: from
/// `user.img.override` when a rootless mount kept them there, else as stat says.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    rdev: u64,
}

fn meta(path: &Path, md: &std::fs::Metadata, rootless: bool) -> Result<Meta> {
    if let Some(v) = img_sys::fs::xattr(path, img_fuse::rw::OVERRIDE_XATTR)
        .with_context(|| format!("reading the attributes of {}", path.display()))?
    {
        let Some(o) = img_fuse::rw::Override::parse(&v) else {
            bail!("{}: a damaged {} attribute; fix or remove the file", path.display(), img_fuse::rw::OVERRIDE_XATTR);
        };
        // A symlink keeps its type whatever the attribute says.
        let mode = if md.file_type().is_symlink() { libc::S_IFLNK | 0o777 } else { o.mode };
        let rdev = make_rdev(kernel_major(o.rdev), kernel_minor(o.rdev));
        return Ok(Meta { uid: o.uid, gid: o.gid, mode, rdev });
    }
    if rootless {
        // What a rootless mount could not mark (symlinks) is the image
        // root's, as everything its user makes.
        return Ok(Meta { uid: 0, gid: 0, mode: md.mode(), rdev: 0 });
    }
    Ok(Meta { uid: md.uid(), gid: md.gid(), mode: md.mode(), rdev: md.rdev() })
}

/// The major and minor numbers of a 32-bit device number as FUSE carries it.
fn kernel_major(dev: u32) -> u32 {
    (dev >> 8) & 0xfff
}
fn kernel_minor(dev: u32) -> u32 {
    (dev & 0xff) | ((dev >> 12) & 0xfff00)
}
/// glibc's makedev.
fn make_rdev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (major as u64, minor as u64);
    ((ma & 0xfffff000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffffff00) << 12) | (mi & 0xff)
}

/// The attributes to put in the layer: overlayfs's and img's own left
/// out, the ones a rootless mount kept under `user.img.x.` under their names.
fn layer_xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for (n, v) in img_sys::fs::xattrs(path).with_context(|| format!("reading the attributes of {}", path.display()))? {
        if is_overlay_xattr(&n) {
            continue;
        }
        if let Some(real) = n.strip_prefix(img_fuse::rw::FOREIGN_XATTR_PREFIX) {
            out.push((real.to_string(), v));
        } else if !n.starts_with("user.img.") {
            out.push((n, v));
        }
    }
    out.sort();
    Ok(out)
}

fn walk<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &str,
    rootless: bool,
    stats: &mut ChangeStats,
    links: &mut HashMap<(u64, u64), String>,
    fixed: Option<u64>,
) -> Result<()> {
    for e in sorted_entries(dir)? {
        let path = e.path();
        let name = e.file_name();
        let Some(name) = name.to_str() else {
            bail!("{}: the name is not UTF-8, which a layer cannot carry portably; rename it", path.display());
        };
        let rel = format!("{prefix}{name}");
        let md = std::fs::symlink_metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        let ft = md.file_type();
        if name.starts_with(".img-copyup-") {
            // A copy-up a killed rootless mount did not finish.
            continue;
        }
        let marker = |b: &mut tar::Builder<W>, entry: &str| -> Result<()> {
            let mut h = header(&md, &Meta { uid: 0, gid: 0, mode: 0o600, rdev: 0 }, tar::EntryType::Regular, fixed);
            h.set_size(0);
            append(b, &mut h, &md, entry, &[], std::io::empty(), fixed)
        };
        if ft.is_char_device() && md.rdev() == 0 {
            // An overlayfs whiteout: the name was deleted.
            marker(b, &format!("{prefix}.wh.{name}"))?;
            stats.deleted += 1;
            continue;
        }
        if name == ".wh..wh..opq" {
            // A rootless mount's opaque directory (written before the entries).
            continue;
        }
        if name.starts_with(".wh.") {
            // A rootless mount's whiteout, already in the layer's form.
            marker(b, &rel)?;
            stats.deleted += 1;
            continue;
        }
        let m = meta(&path, &md, rootless)?;
        let xattrs = layer_xattrs(&path)?;
        let kind = m.mode & libc::S_IFMT;
        if ft.is_dir() {
            let mut h = header(&md, &m, tar::EntryType::Directory, fixed);
            h.set_size(0);
            append(b, &mut h, &md, &format!("{rel}/"), &xattrs, std::io::empty(), fixed)?;
            stats.changed += 1;
            if is_opaque(&path)? || path.join(".wh..wh..opq").exists() {
                marker(b, &format!("{rel}/.wh..wh..opq"))?;
                stats.opaque += 1;
            }
            walk(b, &path, &format!("{rel}/"), rootless, stats, links, fixed)?;
            continue;
        }
        stats.changed += 1;
        if md.nlink() > 1 {
            if let Some(first) = links.get(&(md.dev(), md.ino())) {
                let mut h = header(&md, &m, tar::EntryType::Link, fixed);
                h.set_size(0);
                // The link carries the file's times too: an extractor sets
                // them again on the shared inode when it makes the link.
                pax(b, &md, &[], fixed)?;
                b.append_link(&mut h, &rel, first).with_context(|| format!("writing {rel} to the layer"))?;
                continue;
            }
            links.insert((md.dev(), md.ino()), rel.clone());
        }
        if ft.is_symlink() {
            let target = std::fs::read_link(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut h = header(&md, &m, tar::EntryType::Symlink, fixed);
            h.set_size(0);
            pax(b, &md, &xattrs, fixed)?;
            use std::os::unix::ffi::OsStrExt;
            crate::archive::append_symlink(b, &mut h, &rel, target.as_os_str().as_bytes())
                .with_context(|| format!("writing {rel} to the layer"))?;
        } else if ft.is_file() && kind == libc::S_IFREG {
            let mut h = header(&md, &m, tar::EntryType::Regular, fixed);
            h.set_size(md.len());
            let f = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            // The size in the header is the size at stat; a file that
            // changes while it is committed is refused, not written torn.
            let mut limited = std::io::Read::take(f, md.len());
            append(b, &mut h, &md, &rel, &xattrs, &mut limited, fixed)?;
            if limited.limit() != 0 {
                bail!("{}: the file changed while it was committed; commit again", path.display());
            }
        } else {
            let et = match kind {
                libc::S_IFIFO => tar::EntryType::Fifo,
                libc::S_IFCHR => tar::EntryType::Char,
                libc::S_IFBLK => tar::EntryType::Block,
                _ => bail!("{}: a socket cannot be part of a layer; remove it", path.display()),
            };
            let mut h = header(&md, &m, et, fixed);
            h.set_size(0);
            if et != tar::EntryType::Fifo {
                h.set_device_major(libc_major(m.rdev))?;
                h.set_device_minor(libc_minor(m.rdev))?;
            }
            append(b, &mut h, &md, &rel, &xattrs, std::io::empty(), fixed)?;
        }
    }
    Ok(())
}

fn libc_major(rdev: u64) -> u32 {
    (((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff)) as u32
}

fn libc_minor(rdev: u64) -> u32 {
    (((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff)) as u32
}

fn header(md: &std::fs::Metadata, m: &Meta, kind: tar::EntryType, fixed: Option<u64>) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(m.mode & 0o7777);
    h.set_uid(m.uid as u64);
    h.set_gid(m.gid as u64);
    h.set_mtime(fixed.unwrap_or(md.mtime().max(0) as u64));
    h
}

/// PAX records: the mtime with its nanoseconds (the header has seconds
/// only), and the extended attributes.
fn pax<W: Write>(
    b: &mut tar::Builder<W>,
    md: &std::fs::Metadata,
    xattrs: &[(String, Vec<u8>)],
    fixed: Option<u64>,
) -> Result<()> {
    let mut recs: Vec<(String, Vec<u8>)> =
        xattrs.iter().map(|(n, v)| (format!("SCHILY.xattr.{n}"), v.clone())).collect();
    if fixed.is_none() && md.mtime_nsec() != 0 && md.mtime() >= 0 {
        recs.push(("mtime".into(), format!("{}.{:09}", md.mtime(), md.mtime_nsec()).into_bytes()));
    }
    if recs.is_empty() {
        return Ok(());
    }
    b.append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).context("writing the layer")?;
    Ok(())
}

fn append<W: Write>(
    b: &mut tar::Builder<W>,
    h: &mut tar::Header,
    md: &std::fs::Metadata,
    rel: &str,
    xattrs: &[(String, Vec<u8>)],
    data: impl std::io::Read,
    fixed: Option<u64>,
) -> Result<()> {
    pax(b, md, xattrs, fixed)?;
    b.append_data(h, rel, data).with_context(|| format!("writing {rel} to the layer"))
}

/// A digest of everything in `upper` that a commit would read (names,
/// kinds, sizes, times, inode numbers), to tell whether it changed since.
/// An upper directory that does not exist or is empty has the fingerprint "".
pub fn fingerprint(upper: &Path) -> Result<String> {
    let mut lines = Vec::new();
    if upper.is_dir() {
        fingerprint_dir(upper, "", &mut lines)?;
    }
    if lines.is_empty() {
        return Ok(String::new());
    }
    Ok(Digest::of_bytes(lines.join("\n").as_bytes()).to_string())
}

fn fingerprint_dir(dir: &Path, prefix: &str, lines: &mut Vec<String>) -> Result<()> {
    for e in sorted_entries(dir)? {
        let md = std::fs::symlink_metadata(e.path()).with_context(|| format!("reading {}", e.path().display()))?;
        let rel = format!("{prefix}{}", e.file_name().to_string_lossy());
        lines.push(format!(
            "{rel}\0{}\0{}\0{}\0{}\0{}\0{}\0{}",
            md.mode(),
            md.len(),
            md.mtime_nsec() + md.mtime() * 1_000_000_000,
            md.ctime_nsec() + md.ctime() * 1_000_000_000,
            md.ino(),
            md.uid(),
            md.gid()
        ));
        if md.is_dir() {
            fingerprint_dir(&e.path(), &format!("{rel}/"), lines)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mount::StateDir;
    use img_sys::RecordingKernel;

    #[test]
    fn a_writable_mount_is_an_overlay_of_the_tree_under_the_state_directory() {
        let k = RecordingKernel::default();
        let st = StateDir("/s/rw-1".into());
        mount_writable(&k, &st, Path::new("/mnt/a")).unwrap();
        assert_eq!(
            k.calls(),
            ["mount overlay /mnt/a lowerdir=/s/rw-1/lower,upperdir=/s/rw-1/upper,workdir=/s/rw-1/work,redirect_dir=off,index=off,metacopy=off"]
        );
    }

    #[test]
    fn a_writable_mount_comes_down_overlay_first_then_the_tree() {
        let k = RecordingKernel::default();
        let st = StateDir("/s/rw-1".into());
        unmount_writable(&k, &st, Path::new("/mnt/a"), Unmount::Normal, true, |_| true).unwrap();
        assert_eq!(k.calls(), ["unmount /mnt/a Normal", "unmount /s/rw-1/lower Normal"]);
        // Only what is still mounted, asked once the overlay is gone.
        let k = RecordingKernel::default();
        unmount_writable(&k, &st, Path::new("/mnt/a"), Unmount::Lazy, false, |p| {
            assert_eq!(p, Path::new("/s/rw-1/lower"));
            true
        })
        .unwrap();
        assert_eq!(k.calls(), ["unmount /s/rw-1/lower Lazy"]);
        // A busy overlay keeps the tree under it.
        let k = RecordingKernel::default();
        k.fail.lock().unwrap().push("unmount /mnt/a".into());
        assert!(unmount_writable(&k, &st, Path::new("/mnt/a"), Unmount::Normal, true, |_| true).is_err());
        assert_eq!(k.calls(), ["unmount /mnt/a Normal"]);
    }

    fn entries(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType, u64)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), e.header().entry_type(), e.size())
            })
            .collect()
    }

    #[test]
    fn files_dirs_links_and_hard_links_become_entries_in_name_order() {
        let d = tempdir();
        std::fs::create_dir_all(d.join("etc/sub")).unwrap();
        std::fs::write(d.join("etc/b"), b"hello").unwrap();
        std::fs::hard_link(d.join("etc/b"), d.join("etc/c")).unwrap();
        std::os::unix::fs::symlink("b", d.join("etc/a")).unwrap();
        let (tar, stats) = write_layer(&d, Vec::new()).unwrap();
        let got = entries(&tar);
        let names: Vec<_> = got.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["etc/", "etc/a", "etc/b", "etc/c", "etc/sub/"]);
        assert_eq!(got[1].1, tar::EntryType::Symlink);
        assert_eq!((got[2].1, got[2].2), (tar::EntryType::Regular, 5));
        assert_eq!(got[3].1, tar::EntryType::Link);
        assert_eq!(stats, ChangeStats { changed: 5, deleted: 0, opaque: 0 });
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn rootless_markers_and_overrides_become_layer_entries() {
        let d = tempdir();
        std::fs::write(d.join(".wh.gone"), b"").unwrap();
        std::fs::create_dir(d.join("dir")).unwrap();
        std::fs::write(d.join("dir/.wh..wh..opq"), b"").unwrap();
        std::fs::write(d.join("dev"), b"").unwrap();
        // A char device 1:3 (rdev as FUSE carries it) owned by 0:5, and a
        // security attribute kept under user.img.x.
        let ov = format!("0:5:{:o}:{}", libc::S_IFCHR | 0o640, (1 << 8) | 3);
        img_sys::fs::set_xattr(&d.join("dev"), img_fuse::rw::OVERRIDE_XATTR, ov.as_bytes()).unwrap();
        img_sys::fs::set_xattr(&d.join("dir"), "user.img.x.security.capability", b"cap").unwrap();
        std::fs::write(d.join(".img-copyup-7"), b"half").unwrap();
        let (tar, stats) = write_layer(&d, Vec::new()).unwrap();
        let got = entries(&tar);
        let names: Vec<_> = got.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, [".wh.gone", "dev", "dir/", "dir/.wh..wh..opq"]);
        assert_eq!(stats, ChangeStats { changed: 2, deleted: 1, opaque: 1 });
        let mut a = tar::Archive::new(tar.as_slice());
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            if name == "dev" {
                let h = e.header();
                assert_eq!(h.entry_type(), tar::EntryType::Char);
                assert_eq!((h.device_major().unwrap(), h.device_minor().unwrap()), (Some(1), Some(3)));
                assert_eq!((h.uid().unwrap(), h.gid().unwrap(), h.mode().unwrap()), (0, 5, 0o640));
            }
            if name == "dir/" {
                let exts: Vec<(String, Vec<u8>)> = e
                    .pax_extensions()
                    .unwrap()
                    .unwrap()
                    .map(|x| x.unwrap())
                    .map(|x| (x.key().unwrap().to_string(), x.value_bytes().to_vec()))
                    .collect();
                assert!(exts.contains(&("SCHILY.xattr.security.capability".into(), b"cap".to_vec())), "{exts:?}");
                assert!(!exts.iter().any(|(k, _)| k.contains("user.img")), "{exts:?}");
            }
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn fingerprint_changes_with_content_and_is_empty_for_an_empty_upper() {
        let d = tempdir();
        assert_eq!(fingerprint(&d).unwrap(), "");
        assert_eq!(fingerprint(&d.join("missing")).unwrap(), "");
        std::fs::write(d.join("f"), b"1").unwrap();
        let a = fingerprint(&d).unwrap();
        assert!(a.starts_with("sha256:"));
        assert_eq!(fingerprint(&d).unwrap(), a);
        std::fs::write(d.join("f"), b"22").unwrap();
        assert_ne!(fingerprint(&d).unwrap(), a);
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn tempdir() -> crate::testdir::TestDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        crate::testdir::TestDir::new(&format!("upper-{}", N.fetch_add(1, Ordering::SeqCst)))
    }
}
