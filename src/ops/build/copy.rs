//! COPY and ADD's sources: globs matched in the context or a stage's
//! root, directories copied entry by entry (what .dockerignore leaves out
//! skipped), the digest of what is copied (for the cache and the history),
//! ADD's archives told by their first bytes, and `--chown` resolved.

use super::fsops::{self, Attrs};
use super::run;
use crate::digest::Digest;
use crate::dockerignore::{self, Matcher};
use crate::store::Compression;
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest as _, Sha256};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `--chown` as ids, names looked up in the stage's /etc files. A user
/// without a group: a named user's own group, a numeric one's same number.
pub fn chown_ids(spec: &str, root: &Path) -> Result<(u32, u32)> {
    if !spec.contains(':') {
        if let Ok(n) = spec.parse::<u32>() {
            return Ok((n, n));
        }
    }
    run::resolve_user(spec, root)
}

/// Walks `root` matching the glob's components; pushes what matches.
pub fn glob_walk(root: &Path, prefix: &str, parts: &[&str], out: &mut Vec<(PathBuf, String)>) -> Result<()> {
    let Some((first, rest)) = parts.split_first() else { return Ok(()) };
    // Every path is resolved inside the root: a symlink met on the way (an
    // image's /etc/mtab, a context's link to /etc) cannot lead out of it.
    let dir = fsops::resolve_in_root(root, prefix, true)?;
    let Ok(rd) = std::fs::read_dir(&dir) else { return Ok(()) };
    let mut names: Vec<String> = rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect();
    names.sort();
    for n in names {
        if !dockerignore::path_matches(first, &n).map_err(|e| anyhow!(e))? {
            continue;
        }
        let rel = if prefix.is_empty() { n.clone() } else { format!("{prefix}/{n}") };
        let host = fsops::resolve_in_root(root, &rel, true)?;
        if rest.is_empty() {
            out.push((host, rel));
        } else if std::fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir()) {
            glob_walk(root, &rel, rest, out)?;
        }
    }
    Ok(())
}

/// Copies the contents of directory `src` (named `rel` in its root) into
/// `dest` (made already), leaving out what `ignore` excludes.
pub fn copy_tree(src: &Path, rel: &str, root: &Path, dest: &str, attrs: Attrs, ignore: Option<&Matcher>) -> Result<()> {
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(src)
        .with_context(|| format!("reading {}", src.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for n in names {
        let Some(name) = n.to_str() else {
            bail!("{}: a name that is not UTF-8 cannot go into a layer; rename it", src.join(&n).display());
        };
        let child_rel = if rel.is_empty() { name.to_string() } else { format!("{rel}/{name}") };
        let host = src.join(name);
        let md = std::fs::symlink_metadata(&host)?;
        let ignored = ignore.is_some_and(|m| m.excluded(&child_rel));
        if ignored && !(md.is_dir() && ignore.is_some_and(|m| m.has_exceptions())) {
            continue;
        }
        let target = format!("{}/{name}", dest.trim_end_matches('/'));
        if md.is_dir() {
            if ignored {
                // Only for the exceptions inside: made when something is kept.
                if !tree_has_kept(&host, &child_rel, ignore.expect("ignored implies a matcher"))? {
                    continue;
                }
            }
            fsops::copy_entry(&host, root, &target, attrs)?;
            copy_tree(&host, &child_rel, root, &target, attrs, ignore)?;
            // The directory's time, now that its entries are in.
            let t = fsops::resolve_in_root(root, &target, false)?;
            fsops::set_mtime(&t, md.mtime(), md.mtime_nsec())?;
        } else {
            fsops::copy_entry(&host, root, &target, attrs)?;
        }
    }
    Ok(())
}

pub fn tree_has_kept(dir: &Path, rel: &str, ignore: &Matcher) -> Result<bool> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else { continue };
        let r = format!("{rel}/{name}");
        if !ignore.excluded(&r) {
            return Ok(true);
        }
        if e.file_type()?.is_dir() && tree_has_kept(&e.path(), &r, ignore)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A digest of what a COPY copies (names, kinds, modes, link targets and
/// contents; owners when `owners`, as COPY --from keeps them; not times),
/// for its history entry and the cache.
pub fn content_digest(sources: &[(PathBuf, String)], ignore: Option<&Matcher>, owners: bool) -> Result<Digest> {
    let mut h = Sha256::new();
    fn visit(h: &mut Sha256, p: &Path, rel: &str, ignore: Option<&Matcher>, top: bool, owners: bool) -> Result<()> {
        // Errors name the path (shortened: a deep tree's is long) once, here.
        let at = || format!("reading {}", crate::reference::shorten_to(&p.display().to_string(), 200));
        visit_here(h, p, rel, top, owners).with_context(at)?;
        let md = if top { std::fs::metadata(p) } else { std::fs::symlink_metadata(p) };
        if md.with_context(at)?.is_dir() {
            let mut names: Vec<String> = std::fs::read_dir(p)
                .with_context(at)?
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            names.sort();
            for n in names {
                let r = if rel.is_empty() { n.clone() } else { format!("{rel}/{n}") };
                if ignore.is_some_and(|m| m.excluded(&r)) && !ignore.is_some_and(|m| m.has_exceptions()) {
                    continue;
                }
                visit(h, &p.join(&n), &r, ignore, false, owners)?;
            }
        }
        Ok(())
    }
    fn visit_here(h: &mut Sha256, p: &Path, rel: &str, top: bool, owners: bool) -> Result<()> {
        let md = if top { std::fs::metadata(p)? } else { std::fs::symlink_metadata(p)? };
        // Every field with its length: {a -> bc, c} and {a -> b, cc} differ.
        let field = |h: &mut Sha256, b: &[u8]| {
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        };
        field(h, rel.as_bytes());
        h.update(md.mode().to_le_bytes());
        if owners {
            h.update(md.uid().to_le_bytes());
            h.update(md.gid().to_le_bytes());
        }
        if md.file_type().is_symlink() {
            h.update(b"l");
            field(h, std::fs::read_link(p)?.as_os_str().as_encoded_bytes());
        } else if md.is_file() {
            h.update(b"f");
            h.update(md.len().to_le_bytes());
            let mut f = std::fs::File::open(p)?;
            std::io::copy(&mut f, h)?;
        }
        Ok(())
    }
    for (p, rel) in sources {
        visit(&mut h, p, rel, ignore, true, owners)?;
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Digest::parse(&format!("sha256:{hex}")).expect("a sha256 digest"))
}

/// ADD's archives: a tar, plain or compressed with gzip, xz or zstd (told by
/// its first bytes, the tar by its `ustar` magic); None for any other file.
pub fn archive_reader(p: &Path) -> Result<Option<Box<dyn std::io::Read + Send>>> {
    use std::io::Read;
    let mut head = [0u8; 6];
    let n = std::fs::File::open(p)?.read(&mut head)?;
    let c = Compression::sniff(&head[..n]);
    if c == Compression::Bzip2 {
        // Not decoded here: the file is copied as it is.
        return Ok(None);
    }
    // Is it a tar? Look at the first header's magic.
    let mut check = c.decoder(std::fs::File::open(p)?)?;
    let mut block = vec![0u8; 512];
    let mut got = 0;
    while got < 512 {
        match check.read(&mut block[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(_) => return Ok(None),
        }
    }
    if got < 512 || &block[257..262] != b"ustar" {
        return Ok(None);
    }
    // Start again from the beginning, decoded the same way.
    Ok(Some(c.decoder(std::fs::File::open(p)?)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> crate::testdir::TestDir {
        crate::testdir::TestDir::new(&format!("copy-{name}"))
    }

    // Found in review: {a -> bc, c} and {a -> b, cc} had the same digest, so
    // one context's cached COPY was given for the other.
    #[test]
    fn digests_of_different_trees_differ() {
        let (x, y) = (tmp("x"), tmp("y"));
        std::os::unix::fs::symlink("bc", x.join("a")).unwrap();
        std::fs::write(x.join("c"), b"").unwrap();
        std::os::unix::fs::symlink("b", y.join("a")).unwrap();
        std::fs::write(y.join("cc"), b"").unwrap();
        let dx = content_digest(&[(x.to_path_buf(), String::new())], None, false).unwrap();
        let dy = content_digest(&[(y.to_path_buf(), String::new())], None, false).unwrap();
        assert_ne!(dx, dy);
        std::fs::remove_dir_all(&x).unwrap();
        std::fs::remove_dir_all(&y).unwrap();
    }

    #[test]
    fn globs_stay_inside_their_root() {
        let r = tmp("glob");
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/passwd"), b"inside").unwrap();
        std::os::unix::fs::symlink("/etc", r.join("hostetc")).unwrap();
        let mut out = Vec::new();
        glob_walk(&r, "", &["host*", "pass*"], &mut out).unwrap();
        assert_eq!(out, vec![(r.join("etc/passwd"), "hostetc/passwd".to_string())]);
        let mut out = Vec::new();
        glob_walk(&r, "", &["host*"], &mut out).unwrap();
        assert_eq!(out, vec![(r.join("etc"), "hostetc".to_string())]);
        std::fs::remove_dir_all(&r).unwrap();
    }
}
