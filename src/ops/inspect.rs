//! `img inspect` and `img history`: an image's metadata as podman shows it.

use crate::image::{self, Document};
use crate::index::ImageRecord;
use crate::store::Store;
use anyhow::{Context, Result};
use serde_json::{json, Value};

/// A layer as a manifest lists it: media type, digest, size.
type LayerInfo = (String, crate::digest::Digest, u64);

fn config_of(store: &Store, img: &ImageRecord) -> Result<(Value, Vec<LayerInfo>)> {
    let config = store
        .read_blob(&img.id, image::MAX_CONFIG_SIZE)
        .with_context(|| format!("reading the config of {}", img.id))?;
    let config: Value = serde_json::from_slice(&config).with_context(|| format!("parsing the config of {}", img.id))?;
    let mut layers = Vec::new();
    if img.kind != "embedded" {
        let m = store.read_blob(&img.manifest_digest, image::MAX_MANIFEST_SIZE)?;
        if let Document::Manifest(m) = image::parse_document(&format!("manifest {}", img.manifest_digest), &m, None)? {
            layers = m.layers.into_iter().map(|l| (l.media_type, l.digest, l.size)).collect();
        }
    } else {
        for (role, d) in store.index().image_blobs(&img.id)? {
            if role == "layer" {
                let size = store.open_blob(&d)?.metadata().map(|m| m.len()).unwrap_or(0);
                layers.push((crate::archive::embedded::LAYER_SQUASHFS.to_string(), d, size));
            }
        }
    }
    Ok((config, layers))
}

/// The inspect document of one image (podman's `image inspect` shape).
pub fn inspect(store: &Store, img: &ImageRecord) -> Result<Value> {
    let (config, layers) = config_of(store, img)?;
    let repo_digests: Vec<String> = {
        let mut repos: Vec<&str> = img.tags.iter().map(|t| super::split_name(t).0).collect();
        repos.dedup();
        repos.iter().map(|r| format!("{r}@{}", img.manifest_digest)).collect()
    };
    let cfg = config.get("config").cloned().unwrap_or(json!({}));
    let labels = cfg.get("Labels").cloned().filter(|l| l.is_object()).unwrap_or(Value::Null);
    let mut doc = json!({
        "Id": img.id.hex(),
        "Digest": img.manifest_digest.as_str(),
        "RepoTags": img.tags,
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": config.get("comment").cloned().unwrap_or(json!("")),
        "Created": config.get("created").cloned().unwrap_or(Value::Null),
        "Config": cfg,
        "Version": config.get("docker_version").cloned().unwrap_or(json!("")),
        "Author": img.author,
        "Architecture": img.architecture,
        "Os": img.os,
        "Size": img.size,
        "VirtualSize": img.size,
        "RootFS": {
            "Type": "layers",
            "Layers": config.pointer("/rootfs/diff_ids").cloned().unwrap_or(json!([])),
        },
        "Layers": layers.iter().map(|(mt, d, s)| json!({"MediaType": mt, "Digest": d.as_str(), "Size": s})).collect::<Vec<_>>(),
        "Labels": labels,
        "Annotations": {},
        "ManifestType": img.manifest_media_type,
        "User": config.pointer("/config/User").cloned().unwrap_or(json!("")),
        "History": config.get("history").cloned().unwrap_or(json!([])),
    });
    if !img.variant.is_empty() {
        doc["Variant"] = json!(img.variant);
    }
    if img.kind == "partial" {
        // Layers still read from the registry by a lazy mount.
        let remote = store.index().remote_layers(&img.id)?;
        doc["Partial"] = json!(true);
        doc["RemoteLayers"] = remote
            .iter()
            .map(
                |r| json!({"Digest": r.digest.as_str(), "Size": r.size, "Source": r.source, "TocDigest": r.toc_digest}),
            )
            .collect();
    }
    if img.kind == "embedded" {
        let ext = store.index().external_layers(&img.id)?;
        doc["EmbeddedLayers"] = ext
            .iter()
            .map(|l| json!({"MediaType": l.media_type, "PathInHost": l.path_in_host, "PathInContainer": l.path_in_container, "Digest": l.digest, "Size": l.size}))
            .collect();
    }
    Ok(doc)
}

/// One line of `img history`.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// The image ID on the top entry; None shows as `<missing>`.
    pub id: Option<String>,
    pub created: Option<i64>,
    pub created_by: String,
    pub size: u64,
    pub comment: String,
    pub empty_layer: bool,
}

/// History entries, newest first, with each non-empty entry's layer size.
pub fn history(store: &Store, img: &ImageRecord) -> Result<Vec<HistoryEntry>> {
    let (config, layers) = config_of(store, img)?;
    let hist = config.get("history").and_then(|h| h.as_array()).cloned().unwrap_or_default();
    let mut out = Vec::new();
    let mut layer_idx = 0;
    for h in &hist {
        let empty = h.get("empty_layer").and_then(|e| e.as_bool()).unwrap_or(false);
        let size = if empty {
            0
        } else {
            let s = layers.get(layer_idx).map(|l| l.2).unwrap_or(0);
            layer_idx += 1;
            s
        };
        out.push(HistoryEntry {
            id: None,
            created: h.get("created").and_then(|c| c.as_str()).and_then(crate::timefmt::parse_rfc3339),
            created_by: h.get("created_by").and_then(|c| c.as_str()).unwrap_or("").to_string(),
            size,
            comment: h.get("comment").and_then(|c| c.as_str()).unwrap_or("").to_string(),
            empty_layer: empty,
        });
    }
    // Layers without history entries still show, as docker does.
    while layer_idx < layers.len() {
        out.push(HistoryEntry {
            id: None,
            created: img.created,
            created_by: String::new(),
            size: layers[layer_idx].2,
            comment: String::new(),
            empty_layer: false,
        });
        layer_idx += 1;
    }
    out.reverse();
    if let Some(first) = out.first_mut() {
        first.id = Some(img.id.hex().to_string());
    }
    Ok(out)
}
