//! Layer tars: checking entry names and flattening a stack of layers into
//! one root filesystem tar with OCI whiteouts applied.
//!
//! Names from layers are hostile: a leading `/` is dropped as tar does, and
//! a name that still leaves the root after cleaning (`../`) is refused, as
//! are whiteouts that name `.`, `..` or nothing. Nothing here touches the
//! host filesystem: layers are read from the store and written to a stream.

pub use crate::archive::name::{name_bytes, name_path, name_string};
use crate::archive::sparse;
use crate::compression::Compression;
use crate::digest::Digest;
use crate::store::{Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read, Write};

pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE: &str = ".wh..wh..opq";

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("layer {layer}: entry {name:?}: {msg}")]
    Entry { layer: String, name: String, msg: String },
    #[error("layer {layer}: {source}")]
    Read { layer: String, source: io::Error },
    #[error("writing {target}: {source}")]
    Write { target: String, source: io::Error },
}

pub type Result<T> = std::result::Result<T, LayerError>;

/// Cleans a layer entry name. `Ok(None)` is the root itself.
pub fn clean_entry_path(raw: &str) -> std::result::Result<Option<String>, &'static str> {
    if raw.contains('\0') {
        return Err("the name contains a NUL byte");
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err("the name leaves the root filesystem (../); refusing the layer");
                }
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    Ok(Some(parts.join("/")))
}

/// What a cleaned name means in a layer.
#[derive(Debug, PartialEq, Eq)]
pub enum EntryKind {
    Normal,
    /// Deletes this path from lower layers.
    Whiteout(String),
    /// Hides everything lower layers have under this directory ("" = root).
    Opaque(String),
}

/// Classifies a cleaned name, refusing malformed whiteouts.
pub fn classify(path: &str) -> std::result::Result<EntryKind, &'static str> {
    let (dir, base) = match path.rsplit_once('/') {
        Some((d, b)) => (d, b),
        None => ("", path),
    };
    if base == OPAQUE {
        return Ok(EntryKind::Opaque(dir.to_string()));
    }
    if let Some(name) = base.strip_prefix(WHITEOUT_PREFIX) {
        if name.is_empty() || name == "." || name == ".." {
            return Err("a whiteout that names no file (.wh. , .wh.. or .wh...); refusing the layer");
        }
        if name.starts_with(".wh.") {
            return Err("an unknown whiteout meta-file (.wh..wh.*); refusing the layer");
        }
        let target = if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") };
        return Ok(EntryKind::Whiteout(target));
    }
    Ok(EntryKind::Normal)
}

fn bad_map(msg: &str) -> String {
    format!("a sparse file whose map cannot be used: {msg}; refusing the layer")
}

/// A file entry's bytes: a PAX sparse file's with its holes filled.
fn file_data<'e, 'a: 'e, R: Read + 'e>(
    e: &'e mut tar::Entry<'a, R>,
    sparse_file: Option<sparse::PaxSparseFile>,
) -> std::result::Result<Box<dyn Read + 'e>, String> {
    Ok(match sparse_file {
        Some(f) => Box::new(sparse::expand_pax(e, f)?),
        None => Box::new(e),
    })
}

fn open_layer<'a>(store: &Store, d: &Digest) -> Result<Box<dyn Read + Send + 'a>> {
    let f = store.open_blob(d)?;
    let mut r = BufReader::with_capacity(256 * 1024, f);
    let head = r.fill_buf().map_err(|e| LayerError::Read { layer: d.to_string(), source: e })?;
    let c = Compression::sniff(head);
    c.decoder(r).map_err(|e| LayerError::Read { layer: d.to_string(), source: e })
}

/// Is any proper ancestor directory of `path` blocking (`blocks`)? Answers
/// are remembered per directory in `memo`, so a deep tree costs each
/// directory once, not once per entry under it (a 10,000-deep chain would
/// otherwise hash 10^12 bytes).
fn parent_blocked(path: &str, memo: &mut HashMap<String, bool>, blocks: impl Fn(&str) -> bool) -> bool {
    // The ancestors not yet known, nearest first, up to one that is known.
    let mut unknown: Vec<&str> = Vec::new();
    let mut cur = path;
    let mut known = false;
    while let Some(i) = cur.rfind('/') {
        cur = &path[..i];
        if let Some(&b) = memo.get(cur) {
            known = b;
            break;
        }
        unknown.push(cur);
    }
    // From the top down: a directory is blocked when it blocks or its parent is.
    for a in unknown.into_iter().rev() {
        known = known || blocks(a);
        memo.insert(a.to_string(), known);
    }
    known
}

/// Writes the merged root filesystem of `layers` (bottom first) as one tar.
///
/// Top-down, pass 1 decides which layer's entry wins for each path:
/// whiteouts, opaque directories and non-directories of a layer hide what
/// lower layers have at and under that path. Bottom-up, pass 2 writes the
/// winners, so parents and hard-link targets come before what needs them.
/// A hard link whose target was later replaced or deleted keeps the content
/// it linked to: that version is written under the link's name (found by an
/// extra pass only when such links exist).
pub fn flatten<W: Write>(store: &Store, layers: &[Digest], out: W, target: &str) -> Result<W> {
    // path -> (layer index, is directory)
    let mut winner: HashMap<String, (usize, bool)> = HashMap::new();
    let mut deleted: HashSet<String> = HashSet::new();
    let mut opaque: HashSet<String> = HashSet::new();
    // Winning hard links: (target, layer, link name).
    let mut links: Vec<(String, usize, String)> = Vec::new();
    for (i, d) in layers.iter().enumerate().rev() {
        let mut new_deleted = HashSet::new();
        let mut new_opaque = HashSet::new();
        // Directories known (in this layer's pass) to be hidden or not.
        let mut blocked: HashMap<String, bool> = HashMap::new();
        let mut ar = tar::Archive::new(open_layer(store, d)?);
        let entries = ar.entries().map_err(|e| LayerError::Read { layer: d.to_string(), source: e })?;
        for e in entries {
            let mut e = e.map_err(|e| LayerError::Read { layer: d.to_string(), source: e })?;
            let (raw, sparse_file) = sparse::name_and_pax_sparse(&mut e);
            let entry_err =
                |msg: &str| LayerError::Entry { layer: d.to_string(), name: raw.clone(), msg: msg.to_string() };
            sparse_file.map_err(|m| entry_err(&bad_map(&m)))?;
            let Some(path) = clean_entry_path(&raw).map_err(entry_err)? else { continue };
            match classify(&path).map_err(entry_err)? {
                EntryKind::Whiteout(t) => {
                    new_deleted.insert(t);
                    continue;
                }
                EntryKind::Opaque(dir) => {
                    new_opaque.insert(dir);
                    continue;
                }
                EntryKind::Normal => {}
            }
            let kind = e.header().entry_type();
            if !kind.is_dir() {
                // A file, link or device here replaces whatever lower layers
                // had at this path, directories with their contents included.
                new_deleted.insert(path.clone());
            }
            let hidden = deleted.contains(&path)
                || opaque.contains("")
                || parent_blocked(&path, &mut blocked, |a| {
                    deleted.contains(a) || opaque.contains(a) || winner.get(a).is_some_and(|(_, is_dir)| !is_dir)
                });
            if hidden || winner.contains_key(&path) {
                continue;
            }
            if !kind.is_dir() {
                // What this layer puts under a non-directory is hidden too
                // (and what was decided under it, as a directory, is stale).
                if blocked.contains_key(&path) {
                    let under = format!("{path}/");
                    blocked.retain(|k, _| !k.starts_with(&under));
                }
                blocked.insert(path.clone(), true);
            }
            if kind.is_hard_link() {
                let link = e.link_name_bytes().map(|b| name_string(&b)).unwrap_or_default();
                match clean_entry_path(&link) {
                    Ok(Some(t)) => links.push((t, i, path.clone())),
                    _ => return Err(entry_err("a hard link that leaves the root filesystem; refusing the layer")),
                }
            }
            winner.insert(path, (i, kind.is_dir()));
        }
        deleted.extend(new_deleted);
        opaque.extend(new_opaque);
    }
    // Hard links whose target is not the final version at or below their layer.
    let unsatisfied: Vec<&(String, usize, String)> = links
        .iter()
        .filter(|(t, i, _)| match winner.get(t) {
            Some((j, false)) => j > i,
            _ => true,
        })
        .collect();
    // (layer, target path) -> link names that must carry that version.
    let mut materialize: HashMap<(usize, String), Vec<String>> = HashMap::new();
    if !unsatisfied.is_empty() {
        let wanted: HashSet<&str> = unsatisfied.iter().map(|(t, _, _)| t.as_str()).collect();
        let mut versions: HashMap<String, Vec<usize>> = HashMap::new();
        for (j, d) in layers.iter().enumerate() {
            let mut ar = tar::Archive::new(open_layer(store, d)?);
            let entries = ar.entries().map_err(|e| LayerError::Read { layer: d.to_string(), source: e })?;
            for e in entries {
                let mut e = e.map_err(|e| LayerError::Read { layer: d.to_string(), source: e })?;
                let (raw, _) = sparse::name_and_pax_sparse(&mut e);
                if let Ok(Some(p)) = clean_entry_path(&raw) {
                    if wanted.contains(p.as_str()) && e.header().entry_type().is_file() {
                        versions.entry(p).or_default().push(j);
                    }
                }
            }
        }
        for (t, i, name) in unsatisfied {
            if let Some(j) = versions.get(t).and_then(|v| v.iter().copied().filter(|j| j <= i).max()) {
                materialize.entry((j, t.clone())).or_default().push(name.clone());
            }
        }
    }
    let materialized: HashSet<String> = materialize.values().flatten().cloned().collect();
    let mut b = tar::Builder::new(out);
    let werr = |e: io::Error| LayerError::Write { target: target.to_string(), source: e };
    for (i, d) in layers.iter().enumerate() {
        let mut ar = tar::Archive::new(open_layer(store, d)?);
        let entries = ar.entries().map_err(|e| LayerError::Read { layer: d.to_string(), source: e })?;
        for e in entries {
            let mut e = e.map_err(|e| LayerError::Read { layer: d.to_string(), source: e })?;
            let (raw, sparse_file) = sparse::name_and_pax_sparse(&mut e);
            let entry_err = |msg: String| LayerError::Entry { layer: d.to_string(), name: raw.clone(), msg };
            let mut sparse_file = sparse_file.map_err(|m| entry_err(bad_map(&m)))?;
            let Ok(Some(path)) = clean_entry_path(&raw) else { continue };
            let is_winner = winner.get(&path).map(|(l, _)| *l) == Some(i);
            let carried = if e.header().entry_type().is_file() { materialize.get(&(i, path.clone())) } else { None };
            if !is_winner && carried.is_none() {
                continue;
            }
            if is_winner && materialized.contains(&path) {
                // Already written with the content it links to.
                continue;
            }
            // Keep PAX records that carry metadata (xattrs such as
            // security.capability, long link names, high-precision times).
            let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
            if let Ok(Some(exts)) = e.pax_extensions() {
                for ext in exts.flatten() {
                    if let Ok(k) = ext.key() {
                        if k.starts_with("SCHILY.xattr.") || k.ends_with("time") {
                            pax.push((k.to_string(), ext.value_bytes().to_vec()));
                        }
                    }
                }
            }
            let mut h = e.header().clone();
            let real_size = match &sparse_file {
                Some(f) => Some(f.real_size),
                // The tar reader expands an old GNU sparse file's holes.
                None if h.entry_type().is_gnu_sparse() => Some(e.size()),
                None => None,
            };
            if let Some(size) = real_size {
                // Written as a plain file of the full size.
                let mut plain = tar::Header::new_gnu();
                plain.set_entry_type(tar::EntryType::Regular);
                plain.set_mode(h.mode().unwrap_or(0o644));
                plain.set_uid(h.uid().unwrap_or(0));
                plain.set_gid(h.gid().unwrap_or(0));
                plain.set_mtime(h.mtime().unwrap_or(0));
                plain.set_size(size);
                h = plain;
            }

            let kind = h.entry_type();
            if let Some(names) = carried {
                // This version of a later-replaced file lives on under the
                // names of the hard links made to it.
                if !pax.is_empty() {
                    b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).map_err(werr)?;
                }
                let data = file_data(&mut e, sparse_file.take()).map_err(|m| entry_err(bad_map(&m)))?;
                b.append_data(&mut h, name_path(&names[0]), data).map_err(werr)?;
                for other in &names[1..] {
                    let mut lh = e.header().clone();
                    lh.set_entry_type(tar::EntryType::Link);
                    lh.set_size(0);
                    b.append_link(&mut lh, name_path(other), name_path(&names[0])).map_err(werr)?;
                }
                continue;
            }
            if !pax.is_empty() {
                b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).map_err(werr)?;
            }
            let name = if kind.is_dir() { format!("{path}/") } else { path.clone() };
            if kind.is_hard_link() || kind.is_symlink() {
                let link = e.link_name_bytes().map(|b| name_string(&b)).unwrap_or_default();
                let link = if kind.is_hard_link() {
                    match clean_entry_path(&link) {
                        Ok(Some(l)) => l,
                        _ => {
                            return Err(LayerError::Entry {
                                layer: d.to_string(),
                                name: raw,
                                msg: "a hard link that leaves the root filesystem; refusing the layer".into(),
                            })
                        }
                    }
                } else {
                    // Symlink targets are kept as written; they are only
                    // resolved inside the root by whoever follows them.
                    link
                };
                h.set_size(0);
                if kind.is_symlink() {
                    // As written, byte for byte (not through a string).
                    let raw_link = e.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default();
                    super::append_symlink(&mut b, &mut h, name_path(&name), &raw_link).map_err(werr)?;
                } else {
                    b.append_link(&mut h, name_path(&name), name_path(&link)).map_err(werr)?;
                }
            } else {
                let data = file_data(&mut e, sparse_file.take()).map_err(|m| entry_err(bad_map(&m)))?;
                b.append_data(&mut h, name_path(&name), data).map_err(werr)?;
            }
        }
    }
    b.into_inner().map_err(werr)
}

/// Reads a tar stream to the end, checking every entry name; returns the
/// number of entries. Used to refuse a bad rootfs tarball before storing it.
pub fn validate_tar<R: Read>(r: R, label: &str) -> Result<u64> {
    let mut ar = tar::Archive::new(r);
    let mut n = 0;
    let entries = ar.entries().map_err(|e| LayerError::Read { layer: label.to_string(), source: e })?;
    for e in entries {
        let mut e = e.map_err(|e| LayerError::Read { layer: label.to_string(), source: e })?;
        let (raw, sparse_file) = sparse::name_and_pax_sparse(&mut e);
        let entry_err =
            |msg: &str| LayerError::Entry { layer: label.to_string(), name: raw.clone(), msg: msg.to_string() };
        sparse_file.map_err(|m| entry_err(&bad_map(&m)))?;
        if let Some(p) = clean_entry_path(&raw).map_err(entry_err)? {
            classify(&p).map_err(entry_err)?;
        }
        if e.header().entry_type().is_hard_link() {
            let link = e.link_name_bytes().map(|b| name_string(&b)).unwrap_or_default();
            if !matches!(clean_entry_path(&link), Ok(Some(_))) {
                return Err(entry_err("a hard link that leaves the root filesystem; refusing the layer"));
            }
        }
        // The data is skipped by the next step of the reader: only the bytes
        // stored, not the holes of a sparse file filled in.
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    #[test]
    fn clean_entry_path_table() {
        assert_eq!(clean_entry_path("./etc/passwd"), Ok(Some("etc/passwd".into())));
        assert_eq!(clean_entry_path("/etc/passwd"), Ok(Some("etc/passwd".into())));
        assert_eq!(clean_entry_path("a/../b"), Ok(Some("b".into())));
        assert_eq!(clean_entry_path("./"), Ok(None));
        assert!(clean_entry_path("../etc/passwd").is_err());
        assert!(clean_entry_path("a/../../b").is_err());
        assert!(clean_entry_path("/../x").is_err());
    }

    #[test]
    fn classify_table() {
        assert_eq!(classify("etc/.wh.passwd"), Ok(EntryKind::Whiteout("etc/passwd".into())));
        assert_eq!(classify(".wh.x"), Ok(EntryKind::Whiteout("x".into())));
        assert_eq!(classify("etc/.wh..wh..opq"), Ok(EntryKind::Opaque("etc".into())));
        assert_eq!(classify(".wh..wh..opq"), Ok(EntryKind::Opaque("".into())));
        assert_eq!(classify("etc/passwd"), Ok(EntryKind::Normal));
        assert!(classify("etc/.wh.").is_err());
        assert!(classify(".wh..").is_err());
        assert!(classify(".wh...").is_err());
        assert!(classify(".wh..wh.foo").is_err());
    }

    proptest! {
        #[test]
        fn cleaned_paths_never_escape(parts in proptest::collection::vec(prop_oneof![
            Just("..".to_string()), Just(".".to_string()), Just("".to_string()), "[a-z]{1,3}"
        ], 0..12)) {
            let raw = parts.join("/");
            if let Ok(Some(p)) = clean_entry_path(&raw) {
                prop_assert!(!p.split('/').any(|c| c == ".." || c == "." || c.is_empty()));
                prop_assert!(!p.starts_with('/'));
            }
        }
    }
}
