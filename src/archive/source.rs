//! Reading image archives without extracting them: a docker-archive or
//! OCI archive (plain or compressed tar, from a file or a pipe) or an OCI
//! layout directory.
//!
//! A tar is read once, front to back. Regular files are staged into the
//! store's `ingest/` directory (hashed while written, and for compressed
//! files their uncompressed digest computed on a second thread); the small
//! metadata files are kept in memory. Names in `manifest.json` and
//! `index.json` are then resolved only against the tar's own headers, after
//! cleaning, so `../` or absolute names can never reach a host file
//! (jib #4522, containers/image `findTarComponent`).

use crate::compression::Compression;
use crate::store::{StagedBlob, Store, StoreError};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Metadata files read into memory, with their size limits.
const META_FILES: &[(&str, u64)] =
    &[("manifest.json", 1 << 20), ("repositories", 1 << 20), ("index.json", 4 << 20), ("oci-layout", 4 << 10)];

/// Regular files an archive may hold (a layer, config or blob each).
const MAX_FILES: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{file}: {msg}")]
    Bad { file: String, msg: String },
    #[error("{file}: {source}")]
    Store { file: String, source: StoreError },
    /// The archive's files would take more than the `cap` bytes the
    /// reader was allowed to stage.
    #[error("{file}: more than {cap} bytes to stage, more than the store can take")]
    OverCap { file: String, cap: u64 },
}

pub type Result<T> = std::result::Result<T, SourceError>;

fn bad(file: &str, msg: impl Into<String>) -> SourceError {
    SourceError::Bad { file: file.to_string(), msg: msg.into() }
}

/// Cleans an archive member name: drops `./` and a leading `/` as tar
/// does, resolves `..` lexically; refuses names that would leave the
/// archive or are empty.
pub fn clean_name(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                // Lexical, as path.Clean: `a/../b` is `b`; leaving the
                // archive's root is refused.
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() || name.contains('\0') {
        return None;
    }
    Some(parts.join("/"))
}

/// The contents of an archive, staged.
pub struct Staged {
    /// The file name used in messages.
    pub label: String,
    meta: HashMap<String, Vec<u8>>,
    files: HashMap<String, StagedBlob>,
    links: HashMap<String, String>,
    dir: Option<PathBuf>,
}

/// Where `img load` reads from.
pub enum Input {
    Path(PathBuf),
    Stdin,
}

impl Staged {
    /// Reads `input` (a tar, compressed or not, or an OCI layout directory).
    /// With a `cap`, stops with `OverCap` before staging a file that would
    /// take the staged bytes over it (a directory is not staged).
    pub fn read(store: &Store, input: &Input, cap: Option<u64>) -> Result<Staged> {
        match input {
            Input::Path(p) if p.is_dir() => Staged::from_dir(p),
            Input::Path(p) => {
                let label = p.display().to_string();
                let f = File::open(p).map_err(|e| bad(&label, format!("cannot open: {e}")))?;
                Staged::from_stream(store, label, Box::new(f), cap)
            }
            Input::Stdin => Staged::from_stream(store, "standard input".into(), Box::new(io::stdin()), cap),
        }
    }

    /// The bytes of the files staged.
    pub fn staged_sizes(&self) -> Vec<u64> {
        self.files.values().map(|b| b.size()).collect()
    }

    fn from_dir(dir: &Path) -> Result<Staged> {
        let label = dir.display().to_string();
        let mut meta = HashMap::new();
        for (name, limit) in META_FILES {
            let p = dir.join(name);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_file() => {
                    if m.len() > *limit {
                        return Err(bad(&label, format!("{name} is {} bytes, over the {limit}-byte limit", m.len())));
                    }
                    let data = fs::read(&p).map_err(|e| bad(&label, format!("reading {name}: {e}")))?;
                    meta.insert(name.to_string(), data);
                }
                Ok(_) => return Err(bad(&label, format!("{name} is not a regular file"))),
                Err(_) => {}
            }
        }
        if meta.is_empty() {
            return Err(bad(
                &label,
                "not an image directory: no index.json (OCI layout) or manifest.json (docker-archive)",
            ));
        }
        Ok(Staged { label, meta, files: HashMap::new(), links: HashMap::new(), dir: Some(dir.to_path_buf()) })
    }

    fn from_stream(store: &Store, label: String, input: Box<dyn Read + Send + '_>, cap: Option<u64>) -> Result<Staged> {
        let mut staged_bytes = 0u64;
        let mut buffered = BufReader::with_capacity(256 * 1024, input);
        let head = buffered.fill_buf().map_err(|e| bad(&label, format!("cannot read: {e}")))?.to_vec();
        if head.is_empty() {
            return Err(bad(&label, "the file is empty; expected a docker-archive or OCI archive (tar)"));
        }
        let compression = Compression::sniff(&head);
        let decoded: Box<dyn Read + Send + '_> = compression
            .decoder(buffered)
            .map_err(|e| bad(&label, format!("cannot decompress ({}): {e}", compression.name())))?;
        let mut tar_in = BufReader::with_capacity(256 * 1024, decoded);
        let first = tar_in.fill_buf().map_err(|e| bad(&label, read_err_msg(compression, &e)))?;
        if !looks_like_tar(first) {
            return Err(bad(
                &label,
                "not a tar archive (nor a gzip, xz or zstd compressed one); expected a docker-archive or OCI archive",
            ));
        }
        let mut staged = Staged {
            label: label.clone(),
            meta: HashMap::new(),
            files: HashMap::new(),
            links: HashMap::new(),
            dir: None,
        };
        let mut archive = tar::Archive::new(tar_in);
        let entries = archive.entries().map_err(|e| bad(&label, format!("reading tar: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad(&label, read_err_msg(compression, &e)))?;
            let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some(name) = clean_name(&raw_name) else {
                // Never referenced: references are cleaned the same way and
                // cannot name it. Skip its content.
                continue;
            };
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                continue;
            }
            if staged.files.contains_key(&name) || staged.meta.contains_key(&name) || staged.links.contains_key(&name) {
                return Err(bad(
                    &label,
                    format!("the archive has two entries named {name:?}; refusing an ambiguous archive"),
                ));
            }
            if kind.is_symlink() || kind.is_hard_link() {
                let target =
                    entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                // A symlink target is relative to the link's directory; a
                // hard link names a member from the archive root.
                let resolved = if kind.is_symlink() && !target.starts_with('/') {
                    match name.rsplit_once('/') {
                        Some((dir, _)) => format!("{dir}/{target}"),
                        None => target,
                    }
                } else {
                    target
                };
                if let Some(t) = clean_name(&resolved) {
                    staged.links.insert(name, t);
                }
                continue;
            }
            if !kind.is_file() && kind != tar::EntryType::Continuous {
                continue;
            }
            if let Some((_, limit)) = META_FILES.iter().find(|(n, _)| *n == name) {
                let size = entry.size();
                if size > *limit {
                    return Err(bad(&label, format!("{name} is {size} bytes, over the {limit}-byte limit")));
                }
                let mut data = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut data).map_err(|e| bad(&label, read_err_msg(compression, &e)))?;
                staged.meta.insert(name, data);
                continue;
            }
            if staged.files.len() >= MAX_FILES {
                return Err(bad(&label, format!("more than {MAX_FILES} files; this is not an image archive")));
            }
            staged_bytes = staged_bytes.saturating_add(entry.size());
            if let Some(cap) = cap.filter(|&c| staged_bytes > c) {
                return Err(SourceError::OverCap { file: label.clone(), cap });
            }
            let mut w = store
                .blob_writer()
                .map_err(|source| SourceError::Store { file: label.clone(), source })?
                .with_diff_id();
            let n = w.copy_from(&mut entry).map_err(|e| match e {
                StoreError::Io { source, .. } if is_read_side(&source) => {
                    bad(&label, read_err_msg(compression, &source))
                }
                other => SourceError::Store { file: label.clone(), source: other },
            })?;
            if n != entry.size() {
                return Err(bad(&label, format!("entry {name:?} is truncated; the archive is incomplete")));
            }
            let blob = w.finish().map_err(|source| SourceError::Store { file: label.clone(), source })?;
            staged.files.insert(name, blob);
        }
        // Anything after the tar's end marker would be ignored by tar; read
        // to the end so a compressed stream's checksum is verified.
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|e| bad(&label, read_err_msg(compression, &e)))?;
        if staged.meta.is_empty() {
            return Err(bad(
                &label,
                "not an image archive: it has no manifest.json (docker-archive) or index.json (OCI); to make an image from a root filesystem tarball use img import",
            ));
        }
        Ok(staged)
    }

    pub fn meta(&self, name: &str) -> Option<&[u8]> {
        self.meta.get(name).map(|v| v.as_slice())
    }

    /// Returns the staged file a reference names, following one link.
    pub fn get(&mut self, store: &Store, reference: &str) -> Result<&mut StagedBlob> {
        let label = self.label.clone();
        let Some(mut name) = clean_name(reference) else {
            return Err(bad(&label, format!("refers to {reference:?}, a path outside the archive; refusing it")));
        };
        if !self.files.contains_key(&name) {
            if let Some(t) = self.links.get(&name) {
                name = t.clone();
            }
        }
        if self.files.contains_key(&name) {
            return Ok(self.files.get_mut(&name).expect("checked above"));
        }
        let Some(dir) = self.dir.clone() else {
            return Err(bad(&label, format!("refers to {reference:?}, which the archive does not contain")));
        };
        let path = dir.join(&name);
        let meta = fs::symlink_metadata(&path)
            .map_err(|_| bad(&label, format!("refers to {reference:?}, which the directory does not contain")))?;
        if !meta.file_type().is_file() {
            return Err(bad(
                &label,
                format!("{reference:?} is not a regular file (symlinks, fifos and devices are refused)"),
            ));
        }
        // Every parent component must be a real directory inside `dir`.
        let canon_dir = fs::canonicalize(&dir).map_err(|e| bad(&label, e.to_string()))?;
        let canon = fs::canonicalize(&path).map_err(|e| bad(&label, e.to_string()))?;
        if !canon.starts_with(&canon_dir) {
            return Err(bad(&label, format!("{reference:?} leads outside the directory; refusing it")));
        }
        let mut f = File::open(&canon).map_err(|e| bad(&label, format!("opening {reference}: {e}")))?;
        let mut w =
            store.blob_writer().map_err(|source| SourceError::Store { file: label.clone(), source })?.with_diff_id();
        w.copy_from(&mut f).map_err(|source| SourceError::Store { file: label.clone(), source })?;
        let blob = w.finish().map_err(|source| SourceError::Store { file: label.clone(), source })?;
        self.files.insert(name.clone(), blob);
        Ok(self.files.get_mut(&name).expect("just inserted"))
    }

    /// Takes several staged files for committing together.
    pub fn get_many(&mut self, names: &[String]) -> Vec<&mut StagedBlob> {
        let mut wanted: Vec<String> = names.to_vec();
        wanted.sort();
        wanted.dedup();
        self.files.iter_mut().filter(|(k, _)| wanted.contains(k)).map(|(_, v)| v).collect()
    }

    /// Resolves a reference to the key `get_many` understands.
    pub fn key_of(&self, reference: &str) -> Option<String> {
        let name = clean_name(reference)?;
        if self.files.contains_key(&name) {
            return Some(name);
        }
        self.links.get(&name).cloned()
    }

    /// Adds an in-memory blob (a synthesised manifest) under a private name.
    pub fn add_bytes(&mut self, store: &Store, key: &str, data: &[u8]) -> Result<()> {
        use std::io::Write;
        let mut w = store.blob_writer().map_err(|source| SourceError::Store { file: self.label.clone(), source })?;
        w.write_all(data).map_err(|e| bad(&self.label, e.to_string()))?;
        let blob = w.finish().map_err(|source| SourceError::Store { file: self.label.clone(), source })?;
        self.files.insert(key.to_string(), blob);
        Ok(())
    }
}

fn is_read_side(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::UnexpectedEof
        || e.kind() == io::ErrorKind::InvalidData
        || e.kind() == io::ErrorKind::Other
}

fn read_err_msg(c: Compression, e: &io::Error) -> String {
    // The tar crate reports a short entry as "unexpected EOF during skip"
    // or similar with another kind.
    if e.kind() == io::ErrorKind::UnexpectedEof || e.to_string().contains("unexpected EOF") {
        return "unexpected end of file: the archive is truncated".into();
    }
    match c {
        Compression::None => format!("reading tar: {e}"),
        c => format!("reading {}-compressed tar: {e}", c.name()),
    }
}

/// True if `block` starts with a tar header whose checksum is right.
pub fn looks_like_tar(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    let h = &block[..512];
    let field = &h[148..156];
    let s: String = field.iter().take_while(|&&b| b != 0 && b != b' ').map(|&b| b as char).collect();
    let s = s.trim();
    let Ok(stored) = u32::from_str_radix(s, 8) else {
        return false;
    };
    let sum: u32 = h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as u32 }).sum();
    sum == stored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_name_table() {
        assert_eq!(clean_name("a/b.tar").as_deref(), Some("a/b.tar"));
        assert_eq!(clean_name("./a//b.tar").as_deref(), Some("a/b.tar"));
        assert_eq!(clean_name("/blobs/sha256/x").as_deref(), Some("blobs/sha256/x"));
        assert_eq!(clean_name("../x"), None);
        assert_eq!(clean_name("a/../../x"), None);
        assert_eq!(clean_name("d/../x.tar").as_deref(), Some("x.tar"));
        assert_eq!(clean_name(""), None);
        assert_eq!(clean_name("."), None);
        assert_eq!(clean_name("a\0b"), None);
    }

    #[test]
    fn tar_detection() {
        let mut h = tar::Header::new_gnu();
        h.set_path("x").unwrap();
        h.set_size(0);
        h.set_cksum();
        let mut block = h.as_bytes().to_vec();
        assert!(looks_like_tar(&block));
        block[0] ^= 1;
        assert!(!looks_like_tar(&block));
        assert!(!looks_like_tar(b"hello"));
        assert!(!looks_like_tar(&[0u8; 512]));
    }
}
