//! Writing images out: docker-archive, OCI archive and OCI layout directory.
//!
//! Entries are written with fixed metadata (mode 0644, uid 0, mtime 0) so the
//! same images always give the same archive bytes.

use crate::digest::Digest;
use crate::image::{self, Document};
use crate::store::{Store, StoreError};
use std::collections::HashMap;

/// Where the writers read blobs from: the store, or the store plus blobs
/// made for the occasion (an embedded image converted to tar layers).
pub trait Blobs {
    fn open_blob(&self, d: &Digest) -> std::result::Result<fs::File, StoreError>;
    fn read_blob(&self, d: &Digest, limit: u64) -> std::result::Result<Vec<u8>, StoreError>;
}

impl Blobs for Store {
    fn open_blob(&self, d: &Digest) -> std::result::Result<fs::File, StoreError> {
        Store::open_blob(self, d)
    }
    fn read_blob(&self, d: &Digest, limit: u64) -> std::result::Result<Vec<u8>, StoreError> {
        Store::read_blob(self, d, limit)
    }
}

/// The store, with extra blobs in files outside it.
pub struct Overlay<'a> {
    pub store: &'a Store,
    pub extra: HashMap<Digest, std::path::PathBuf>,
}

impl Blobs for Overlay<'_> {
    fn open_blob(&self, d: &Digest) -> std::result::Result<fs::File, StoreError> {
        match self.extra.get(d) {
            Some(p) => {
                fs::File::open(p).map_err(|source| StoreError::Io { action: "opening", path: p.clone(), source })
            }
            None => self.store.open_blob(d),
        }
    }
    fn read_blob(&self, d: &Digest, limit: u64) -> std::result::Result<Vec<u8>, StoreError> {
        match self.extra.get(d) {
            Some(p) => {
                let data =
                    fs::read(p).map_err(|source| StoreError::Io { action: "reading", path: p.clone(), source })?;
                if data.len() as u64 > limit {
                    return Err(StoreError::Io {
                        action: "reading",
                        path: p.clone(),
                        source: io::Error::other("too large"),
                    });
                }
                Ok(data)
            }
            None => self.store.read_blob(d, limit),
        }
    }
}
use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing {target}: {source}")]
    Io { target: String, source: io::Error },
    #[error("image {id}: {msg}")]
    Image { id: String, msg: String },
}

pub type Result<T> = std::result::Result<T, WriteError>;

/// One image to write, with the names to record for it.
pub struct SaveItem {
    pub id: Digest,
    pub manifest_digest: Digest,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DockerArchive,
    OciArchive,
    OciDir,
}

/// A manifest as it will be written: its bytes, digest and layer list.
struct Resolved {
    config: Digest,
    layers: Vec<(String, Digest, u64)>,
    manifest: Vec<u8>,
    manifest_digest: Digest,
    manifest_media_type: String,
}

fn resolve(store: &dyn Blobs, item: &SaveItem, oci: bool) -> Result<Resolved> {
    let bytes = store.read_blob(&item.manifest_digest, image::MAX_MANIFEST_SIZE)?;
    let what = format!("manifest {}", item.manifest_digest);
    let Document::Manifest(m) = image::parse_document(&what, &bytes, None)
        .map_err(|e| WriteError::Image { id: item.id.to_string(), msg: e.to_string() })?
    else {
        return Err(WriteError::Image { id: item.id.to_string(), msg: "stored manifest is an index".into() });
    };
    let docker = m.media_type == image::DOCKER_MANIFEST;
    let layers: Vec<(String, Digest, u64)> =
        m.layers.iter().map(|l| (l.media_type.clone(), l.digest.clone(), l.size)).collect();
    if oci && docker {
        // OCI layouts carry OCI media types (umoci refuses Docker ones); the
        // config bytes, and so the image ID, stay the same.
        let mapped: Vec<(&str, &Digest, u64)> = layers
            .iter()
            .map(|(mt, d, s)| {
                let oci_mt = match mt.as_str() {
                    image::DOCKER_LAYER_GZIP => image::OCI_LAYER_GZIP,
                    image::DOCKER_LAYER => image::OCI_LAYER,
                    other => other,
                };
                (oci_mt, d, *s)
            })
            .collect();
        let manifest =
            image::build_manifest(image::OCI_MANIFEST, (image::OCI_CONFIG, &m.config.digest, m.config.size), &mapped);
        let manifest_digest = Digest::of_bytes(&manifest);
        return Ok(Resolved {
            config: m.config.digest,
            layers: mapped.into_iter().map(|(mt, d, s)| (mt.to_string(), d.clone(), s)).collect(),
            manifest,
            manifest_digest,
            manifest_media_type: image::OCI_MANIFEST.into(),
        });
    }
    Ok(Resolved {
        config: m.config.digest,
        layers,
        manifest: bytes,
        manifest_digest: item.manifest_digest.clone(),
        manifest_media_type: m.media_type,
    })
}

fn header(size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn io_err(target: &str) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| WriteError::Io { target: target.to_string(), source }
}

fn append_bytes<W: Write>(b: &mut tar::Builder<W>, target: &str, name: &str, data: &[u8]) -> Result<()> {
    let mut h = header(data.len() as u64, 0o644);
    b.append_data(&mut h, name, data).map_err(io_err(target))
}

fn append_blob<W: Write>(
    b: &mut tar::Builder<W>,
    store: &dyn Blobs,
    target: &str,
    name: &str,
    d: &Digest,
) -> Result<()> {
    let f = store.open_blob(d)?;
    let len = f.metadata().map_err(io_err(target))?.len();
    let mut h = header(len, 0o644);
    b.append_data(&mut h, name, f).map_err(io_err(target))
}

fn append_dir<W: Write>(b: &mut tar::Builder<W>, target: &str, name: &str) -> Result<()> {
    let mut h = header(0, 0o755);
    h.set_entry_type(tar::EntryType::Directory);
    b.append_data(&mut h, name, io::empty()).map_err(io_err(target))
}

/// Writes a docker-archive (`manifest.json`, `<config>.json`, `<layer>.tar`).
pub fn write_docker_archive<W: Write>(store: &dyn Blobs, items: &[SaveItem], out: W, target: &str) -> Result<W> {
    let mut b = tar::Builder::new(out);
    let mut written: HashSet<String> = HashSet::new();
    let mut manifest = Vec::new();
    for item in items {
        let r = resolve(store, item, false)?;
        let config_name = format!("{}.json", r.config.hex());
        if written.insert(config_name.clone()) {
            append_blob(&mut b, store, target, &config_name, &r.config)?;
        }
        let mut layer_names = Vec::new();
        for (_, d, _) in &r.layers {
            let name = format!("{}.tar", d.hex());
            if written.insert(name.clone()) {
                append_blob(&mut b, store, target, &name, d)?;
            }
            layer_names.push(name);
        }
        manifest.push(serde_json::json!({
            "Config": config_name,
            "RepoTags": item.names,
            "Layers": layer_names,
        }));
    }
    let manifest = serde_json::to_vec(&manifest).expect("JSON values serialise");
    append_bytes(&mut b, target, "manifest.json", &manifest)?;
    b.into_inner().map_err(io_err(target))
}

fn index_entries(items: &[(Resolved, &SaveItem)]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for (r, item) in items {
        let desc = |name: Option<&str>| {
            let mut v = serde_json::json!({
                "mediaType": r.manifest_media_type,
                "digest": r.manifest_digest.as_str(),
                "size": r.manifest.len(),
            });
            if let Some(n) = name {
                v["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": n });
            }
            v
        };
        if item.names.is_empty() {
            out.push(desc(None));
        }
        for n in &item.names {
            out.push(desc(Some(n)));
        }
    }
    out
}

fn index_json(entries: Vec<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": image::OCI_INDEX,
        "manifests": entries,
    }))
    .expect("JSON values serialise")
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Writes an OCI archive (a tar of an OCI layout).
pub fn write_oci_archive<W: Write>(store: &dyn Blobs, items: &[SaveItem], out: W, target: &str) -> Result<W> {
    let mut b = tar::Builder::new(out);
    append_bytes(&mut b, target, "oci-layout", OCI_LAYOUT)?;
    append_dir(&mut b, target, "blobs")?;
    append_dir(&mut b, target, "blobs/sha256")?;
    let mut written: HashSet<Digest> = HashSet::new();
    let mut resolved = Vec::new();
    for item in items {
        let r = resolve(store, item, true)?;
        for (_, d, _) in &r.layers {
            if written.insert(d.clone()) {
                append_blob(&mut b, store, target, &format!("blobs/sha256/{}", d.hex()), d)?;
            }
        }
        if written.insert(r.config.clone()) {
            append_blob(&mut b, store, target, &format!("blobs/sha256/{}", r.config.hex()), &r.config)?;
        }
        if written.insert(r.manifest_digest.clone()) {
            append_bytes(&mut b, target, &format!("blobs/sha256/{}", r.manifest_digest.hex()), &r.manifest)?;
        }
        resolved.push((r, item));
    }
    append_bytes(&mut b, target, "index.json", &index_json(index_entries(&resolved)))?;
    b.into_inner().map_err(io_err(target))
}

/// Writes (or adds to) an OCI layout directory. Blobs go in first, each
/// through a temp file; `index.json` is replaced last, atomically.
pub fn write_oci_dir(store: &dyn Blobs, items: &[SaveItem], dir: &Path) -> Result<()> {
    let target = dir.display().to_string();
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io_err(&target))?;
    let mut existing: Vec<serde_json::Value> = Vec::new();
    let index_path = dir.join("index.json");
    if let Ok(data) = fs::read(&index_path) {
        if let Ok(Document::Index(_)) = image::parse_document("index.json", &data, None) {
            let v: serde_json::Value = serde_json::from_slice(&data).unwrap_or_default();
            if let Some(m) = v.get("manifests").and_then(|m| m.as_array()) {
                existing = m.clone();
            }
        } else {
            return Err(WriteError::Io {
                target: target.clone(),
                source: io::Error::other("index.json exists but is not an OCI index; choose an empty directory"),
            });
        }
    }
    let put = |name: &Digest, data: Option<&[u8]>| -> Result<()> {
        let p = blobs.join(name.hex());
        if p.exists() {
            return Ok(());
        }
        let tmp = tmp_path(&p);
        let res = (|| -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            match data {
                Some(d) => f.write_all(d)?,
                None => {
                    let mut src = store.open_blob(name).map_err(io::Error::other)?;
                    io::copy(&mut src, &mut f)?;
                }
            }
            f.sync_all()?;
            fs::rename(&tmp, &p)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map_err(io_err(&target))
    };
    let mut resolved = Vec::new();
    for item in items {
        let r = resolve(store, item, true)?;
        for (_, d, _) in &r.layers {
            put(d, None)?;
        }
        put(&r.config, None)?;
        put(&r.manifest_digest, Some(&r.manifest))?;
        resolved.push((r, item));
    }
    let new_entries = index_entries(&resolved);
    let new_names: HashSet<String> = new_entries
        .iter()
        .filter_map(|e| e.pointer("/annotations/org.opencontainers.image.ref.name").and_then(|v| v.as_str()))
        .map(str::to_string)
        .collect();
    existing.retain(|e| {
        e.pointer("/annotations/org.opencontainers.image.ref.name")
            .and_then(|v| v.as_str())
            .is_none_or(|n| !new_names.contains(n))
    });
    existing.extend(new_entries);
    write_atomic(&dir.join("oci-layout"), OCI_LAYOUT).map_err(io_err(&target))?;
    write_atomic(&index_path, &index_json(existing)).map_err(io_err(&target))?;
    Ok(())
}

/// A temp file name beside `p`, for writing it and renaming it into place.
pub fn tmp_path(p: &Path) -> PathBuf {
    let mut name = p.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    p.with_file_name(name)
}

/// Writes a file through a temp file and rename, so a reader never sees it half-written.
pub fn write_atomic(p: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(p);
    let res = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, p)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}
