//! iSulad "embedded" images: a `NAME.manifest` JSON file beside `NAME.sgn`
//! (`sha256:<hex>` of the manifest bytes), whose layers are squashfs files
//! (or directories) that stay where they are. Layer 0 is the root: a block
//! device or the host's `/`. The validation follows iSulad's, with its
//! messages where they help.

use crate::digest::Digest;
use crate::reference::Reference;
use crate::store::index::ExternalLayer;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

pub const MEDIA_TYPE: &str = "application/embedded.manifest+json";
pub const LAYER_SQUASHFS: &str = "application/squashfs.image.rootfs.diff.img";
pub const LAYER_DIR: &str = "application/bind.image.rootfs.diff.dir";
const MAX_LAYERS: usize = 125;
const MAX_MANIFEST: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[error("loading embedded image {file}: {msg}")]
pub struct EmbeddedError {
    pub file: String,
    pub msg: String,
}

/// A checked embedded image, ready to record.
#[derive(Debug)]
pub struct EmbeddedImage {
    pub name: Reference,
    pub created: Option<i64>,
    pub manifest_digest: Digest,
    /// A synthesised OCI image config carrying ENV, ENTRYPOINT and WORKDIR.
    pub config: Vec<u8>,
    pub layers: Vec<ExternalLayer>,
    /// Sum of the sizes of layers 1..n (iSulad's image size).
    pub size: u64,
    /// Absolute paths of layers 1..n, for `--copy`.
    pub layer_files: Vec<PathBuf>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<u32>,
    media_type: Option<String>,
    image_name: Option<String>,
    created: Option<String>,
    #[serde(default)]
    config: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    layers: Vec<RawLayer>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLayer {
    media_type: Option<String>,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    digest: Option<String>,
    path_in_host: Option<String>,
    #[serde(default)]
    path_in_container: Option<String>,
}

fn field<'a>(m: &'a serde_json::Map<String, serde_json::Value>, keys: &[&str]) -> Option<&'a serde_json::Value> {
    m.iter().find(|(k, _)| keys.iter().any(|want| k.eq_ignore_ascii_case(want))).map(|(_, v)| v)
}

fn file_sha256(p: &Path) -> std::io::Result<(Digest, u64)> {
    let h = crate::digest::hash_reader(&mut fs::File::open(p)?)?;
    let n = h.len();
    Ok((h.finish(), n))
}

/// Reads and checks `manifest_path` and its `.sgn`, and every layer.
pub fn read(manifest_path: &Path) -> Result<EmbeddedImage, EmbeddedError> {
    let file = manifest_path.display().to_string();
    let err = |msg: String| EmbeddedError { file: file.clone(), msg };
    let meta = fs::metadata(manifest_path).map_err(|e| err(format!("cannot read the manifest: {e}")))?;
    if meta.len() > MAX_MANIFEST {
        return Err(err(format!("the manifest is {} bytes, over the {MAX_MANIFEST}-byte limit", meta.len())));
    }
    let bytes = fs::read(manifest_path).map_err(|e| err(format!("cannot read the manifest: {e}")))?;
    let manifest_digest = Digest::of_bytes(&bytes);
    let sgn = manifest_path.with_extension("sgn");
    let sgn_text = fs::read_to_string(&sgn).map_err(|e| {
        err(format!(
            "cannot read its signature file {}: {e}; it must hold the manifest's sha256 as sha256:<hex>",
            sgn.display()
        ))
    })?;
    if sgn_text.trim() != manifest_digest.as_str() {
        return Err(err(format!(
            "the manifest does not match its signature file {} (expected {}); the files are corrupt or were changed",
            sgn.display(),
            manifest_digest
        )));
    }
    crate::image::check_duplicate_keys("embedded manifest", &bytes).map_err(|e| err(e.to_string()))?;
    let raw: RawManifest =
        serde_json::from_slice(&bytes).map_err(|e| err(format!("invalid content in manifest: {e}")))?;
    if raw.layers.is_empty() || raw.layers.len() > MAX_LAYERS {
        return Err(err(format!(
            "invalid content in manifest: layer empty or max depth exceeded ({} layers, 1 to {MAX_LAYERS} allowed)",
            raw.layers.len()
        )));
    }
    if raw.schema_version != Some(1) {
        return Err(err("invalid content in manifest: schema version must be 1".into()));
    }
    if raw.media_type.as_deref() != Some(MEDIA_TYPE) {
        return Err(err(format!("invalid content in manifest: manifest's media type must be {MEDIA_TYPE}")));
    }
    let name = raw.image_name.ok_or_else(|| err("invalid content in manifest: image name not exist".into()))?;
    if name == "none" || name == "none:latest" {
        return Err(err("image name 'none' or 'none:latest' in manifest is reserved, please use other name".into()));
    }
    let parsed =
        Reference::parse(&name).map_err(|e| err(format!("invalid content in manifest: invalid image name: {e}")))?;
    if parsed.tag().is_none() || parsed.digest().is_some() {
        return Err(err(format!("invalid content in manifest: image name {name:?} must have an explicit tag")));
    }
    let created_text = raw.created.unwrap_or_default();
    let created = crate::timefmt::parse_rfc3339(&created_text);
    if created.is_none() {
        return Err(err(format!(
            "invalid content in manifest: invalid created time {created_text:?} (RFC 3339 with a time zone)"
        )));
    }
    let location = manifest_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let location = fs::canonicalize(&location).map_err(|e| err(format!("{}: {e}", location.display())))?;
    let mut layers = Vec::new();
    let mut layer_files = Vec::new();
    let mut size = 0u64;
    for (i, l) in raw.layers.iter().enumerate() {
        if l.size < 0 {
            return Err(err(format!("invalid content in manifest: layer {i}: size must not be negative")));
        }
        let mt = l.media_type.clone().unwrap_or_default();
        let is_dir = match mt.as_str() {
            LAYER_SQUASHFS => false,
            LAYER_DIR => true,
            _ => {
                return Err(err(format!(
                    "invalid content in manifest: layer {i}: media type must be {LAYER_SQUASHFS} or {LAYER_DIR}"
                )))
            }
        };
        let host = l.path_in_host.clone().unwrap_or_default();
        let container = l.path_in_container.clone().unwrap_or_default();
        let digest = l.digest.clone().unwrap_or_default();
        if i == 0 {
            if !host.starts_with('/') {
                return Err(err("invalid content in manifest: first layer path in host must be absolute path".into()));
            }
            if is_dir && host != "/" {
                return Err(err("invalid content in manifest: first layer path in host must be /".into()));
            }
            if !container.is_empty() {
                return Err(err("invalid content in manifest: first layer path in container must be empty".into()));
            }
            if !digest.is_empty() {
                return Err(err("invalid content in manifest: first layer's digest must be empty".into()));
            }
            let m = fs::metadata(&host)
                .map_err(|_| err(format!("invalid content in manifest: layer 0 ({host}) not exists")))?;
            let ok = if is_dir { m.is_dir() } else { m.file_type().is_block_device() };
            if !ok {
                return Err(err(format!(
                    "invalid content in manifest: layer 0 ({host}) is not a {}",
                    if is_dir { "directory" } else { "block device" }
                )));
            }
            layers.push(ExternalLayer {
                media_type: mt,
                path_in_host: host,
                path_in_container: String::new(),
                digest: String::new(),
                size: 0,
            });
            continue;
        }
        if host.is_empty() || host.starts_with('/') {
            return Err(err(format!(
                "invalid content in manifest: layer {i}: path in host (except first layer) must be relative path"
            )));
        }
        if !container.starts_with('/') {
            return Err(err(format!(
                "invalid content in manifest: layer {i}: path in container (except first layer) must be absolute path"
            )));
        }
        let real = fs::canonicalize(location.join(&host))
            .map_err(|_| err(format!("invalid content in manifest: layer {i} ({host}) not exists")))?;
        // Symlinks may not lead outside the manifest's directory.
        if !real.starts_with(&location) {
            return Err(err(format!(
                "invalid content in manifest: layer {i} ({host}) leads outside {}",
                location.display()
            )));
        }
        let m = fs::metadata(&real).map_err(|e| err(format!("layer {i}: {e}")))?;
        if is_dir && !m.is_dir() || !is_dir && !m.is_file() {
            return Err(err(format!(
                "invalid content in manifest: layer {i} ({host}) is not a {}",
                if is_dir { "directory" } else { "regular file" }
            )));
        }
        if !digest.is_empty() {
            if is_dir {
                return Err(err(format!(
                    "invalid content in manifest: layer {i}: digest must be empty if mediaType is {LAYER_DIR}"
                )));
            }
            let want = Digest::parse(&digest)
                .map_err(|e| err(format!("invalid content in manifest: layer {i} has invalid digest: {e}")))?;
            let (got, _) = file_sha256(&real).map_err(|e| err(format!("layer {i}: {e}")))?;
            if got != want {
                return Err(err(format!(
                    "invalid content in manifest: layer {i} ({host}) has digest {got}, the manifest says {want}"
                )));
            }
        }
        let file_size = if is_dir { 0 } else { m.len() };
        size += file_size;
        layers.push(ExternalLayer {
            media_type: mt,
            path_in_host: real.display().to_string(),
            path_in_container: container,
            digest,
            size: file_size,
        });
        layer_files.push(real);
    }
    let cfg = raw.config.unwrap_or_default();
    let mut config = serde_json::Map::new();
    if let Some(v) = field(&cfg, &["Env"]) {
        config.insert("Env".into(), v.clone());
    }
    if let Some(v) = field(&cfg, &["Entrypoint"]) {
        config.insert("Entrypoint".into(), v.clone());
    }
    if let Some(v) = field(&cfg, &["WorkingDir", "Workdir"]) {
        config.insert("WorkingDir".into(), v.clone());
    }
    let (os, arch) = super::resolve::host_platform();
    let config_json = serde_json::json!({
        "created": created_text,
        "architecture": arch,
        "os": os,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [{"created": created_text, "created_by": format!("isulad embedded image {}", manifest_path.display()), "empty_layer": true}],
    });
    let config = serde_json::to_vec(&config_json).expect("JSON values serialise");
    Ok(EmbeddedImage { name: parsed, created, manifest_digest, config, layers, size, layer_files })
}
