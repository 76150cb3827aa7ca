//! The upper directory of a writable mount, read as an OCI changeset.
//!
//! overlayfs records changes in its upper directory: new and modified
//! files as themselves, a deleted name as a character device 0/0 (a
//! whiteout), and a directory that replaced a lower one with the
//! `trusted.overlay.opaque` attribute (`user.overlay.opaque` with
//! `userxattr`). A layer says the same with `.wh.NAME` files and
//! `.wh..wh..opq`. `write_layer` turns one into the other; `fingerprint`
//! tells whether the upper directory changed since a commit.

use crate::digest::Digest;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Attributes overlayfs keeps for itself: never part of a layer.
fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}

fn is_opaque(path: &Path) -> Result<bool> {
    for name in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        if let Some(v) = img_overlay::xattr(path, name).with_context(|| format!("reading {}", path.display()))? {
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
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut stats = ChangeStats::default();
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    walk(&mut b, upper, "", &mut stats, &mut links)?;
    let out = b.into_inner().context("writing the layer")?;
    Ok((out, stats))
}

fn walk<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &str,
    stats: &mut ChangeStats,
    links: &mut HashMap<(u64, u64), String>,
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
        if ft.is_char_device() && md.rdev() == 0 {
            // An overlayfs whiteout: the name was deleted.
            let mut h = header(&md, tar::EntryType::Regular);
            h.set_mode(0o600);
            h.set_size(0);
            append(b, &mut h, &md, &format!("{prefix}.wh.{name}"), &[], std::io::empty())?;
            stats.deleted += 1;
            continue;
        }
        if name.starts_with(".wh.") {
            bail!(
                "{}: names starting with .wh. are whiteouts in a layer and cannot be committed; rename it",
                path.display()
            );
        }
        let xattrs: Vec<(String, Vec<u8>)> = img_overlay::xattrs(&path)
            .with_context(|| format!("reading the attributes of {}", path.display()))?
            .into_iter()
            .filter(|(n, _)| !is_overlay_xattr(n))
            .collect();
        if ft.is_dir() {
            let mut h = header(&md, tar::EntryType::Directory);
            h.set_size(0);
            append(b, &mut h, &md, &format!("{rel}/"), &xattrs, std::io::empty())?;
            stats.changed += 1;
            if is_opaque(&path)? {
                let mut h = header(&md, tar::EntryType::Regular);
                h.set_mode(0o600);
                h.set_size(0);
                append(b, &mut h, &md, &format!("{rel}/.wh..wh..opq"), &[], std::io::empty())?;
                stats.opaque += 1;
            }
            walk(b, &path, &format!("{rel}/"), stats, links)?;
            continue;
        }
        stats.changed += 1;
        if md.nlink() > 1 && !ft.is_dir() {
            if let Some(first) = links.get(&(md.dev(), md.ino())) {
                let mut h = header(&md, tar::EntryType::Link);
                h.set_size(0);
                // The link carries the file's times too: an extractor sets
                // them again on the shared inode when it makes the link.
                pax(b, &md, &[])?;
                b.append_link(&mut h, &rel, first).with_context(|| format!("writing {rel} to the layer"))?;
                continue;
            }
            links.insert((md.dev(), md.ino()), rel.clone());
        }
        if ft.is_file() {
            let mut h = header(&md, tar::EntryType::Regular);
            h.set_size(md.len());
            let f = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            // The size in the header is the size at stat; a file that
            // changes while it is committed is refused, not written torn.
            let mut limited = std::io::Read::take(f, md.len());
            append(b, &mut h, &md, &rel, &xattrs, &mut limited)?;
            if limited.limit() != 0 {
                bail!("{}: the file changed while it was committed; commit again", path.display());
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut h = header(&md, tar::EntryType::Symlink);
            h.set_size(0);
            pax(b, &md, &xattrs)?;
            b.append_link(&mut h, &rel, &target).with_context(|| format!("writing {rel} to the layer"))?;
        } else {
            let kind = if ft.is_fifo() {
                tar::EntryType::Fifo
            } else if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else {
                bail!("{}: a socket cannot be part of a layer; remove it", path.display());
            };
            let mut h = header(&md, kind);
            h.set_size(0);
            if kind != tar::EntryType::Fifo {
                h.set_device_major(libc_major(md.rdev()))?;
                h.set_device_minor(libc_minor(md.rdev()))?;
            }
            append(b, &mut h, &md, &rel, &xattrs, std::io::empty())?;
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

fn header(md: &std::fs::Metadata, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(md.mode() & 0o7777);
    h.set_uid(md.uid() as u64);
    h.set_gid(md.gid() as u64);
    h.set_mtime(md.mtime().max(0) as u64);
    h
}

/// PAX records: the mtime with its nanoseconds (the header has seconds
/// only), and the extended attributes.
fn pax<W: Write>(b: &mut tar::Builder<W>, md: &std::fs::Metadata, xattrs: &[(String, Vec<u8>)]) -> Result<()> {
    let mut recs: Vec<(String, Vec<u8>)> =
        xattrs.iter().map(|(n, v)| (format!("SCHILY.xattr.{n}"), v.clone())).collect();
    if md.mtime_nsec() != 0 && md.mtime() >= 0 {
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
) -> Result<()> {
    pax(b, md, xattrs)?;
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
    fn a_name_that_looks_like_a_whiteout_is_refused() {
        let d = tempdir();
        std::fs::write(d.join(".wh.x"), b"").unwrap();
        let e = write_layer(&d, Vec::new()).unwrap_err().to_string();
        assert!(e.contains(".wh.") && e.contains("rename"), "{e}");
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

    fn tempdir() -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir()
            .join(format!("img-upper-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
