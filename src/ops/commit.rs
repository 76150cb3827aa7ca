//! `img commit`: the changes in a writable mount become a new image, one
//! gzip layer on top of the mounted image, with its config and history
//! updated as `docker commit` does.

use super::parse_target_name;
use crate::digest::{Digest, HashingWriter};
use crate::image::{self, Document};
use crate::mount::{upper, StateDir};
use crate::ops::build::changes;
use crate::store::index::MountRecord;
use crate::store::{Compression, Store};
use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::path::PathBuf;

#[derive(Debug, Default)]
pub struct CommitOptions {
    pub reference: Option<String>,
    pub author: Option<String>,
    pub message: Option<String>,
    /// Dockerfile-style instructions applied to the config (`-c`).
    pub changes: Vec<String>,
    /// "oci" or "docker"; the mounted image's format when None.
    pub format: Option<String>,
}

#[derive(Debug)]
pub struct Committed {
    pub id: Digest,
    pub stats: upper::ChangeStats,
}

/// The layer media type of `mt` in the target family (OCI or Docker).
pub(crate) fn convert_layer_type(mt: &str, docker: bool) -> Result<String> {
    let out = match (mt, docker) {
        (image::OCI_LAYER_GZIP, true) => image::DOCKER_LAYER_GZIP,
        (image::OCI_LAYER, true) => image::DOCKER_LAYER,
        (image::DOCKER_LAYER_GZIP, false) => image::OCI_LAYER_GZIP,
        (image::DOCKER_LAYER, false) => image::OCI_LAYER,
        (image::OCI_LAYER_ZSTD, true) => {
            bail!("the image has zstd layers, which the docker format cannot describe; use --format oci")
        }
        _ => mt,
    };
    Ok(out.to_string())
}

pub fn commit(store: &mut Store, mount: &MountRecord, opts: &CommitOptions) -> Result<Committed> {
    let dir = &mount.mountpoint;
    if !mount.writable || mount.state_dir.is_empty() {
        bail!("{dir} is a read-only mount; mount the image with img mount --rw to change and commit it");
    }
    let target = opts.reference.as_deref().map(parse_target_name).transpose()?;
    let base = store.index().image(&mount.image_id)?.with_context(|| {
        format!("the image mounted at {dir} ({}) was removed; img umount --discard {dir}", mount.image_id)
    })?;
    super::require_complete(&base, &base.tags.first().cloned().unwrap_or_else(|| base.id.hex()[..12].to_string()))
        .context("the new image would refer to layers the store does not hold")?;
    let docker = match opts.format.as_deref() {
        None => base.manifest_media_type == image::DOCKER_MANIFEST,
        Some("docker") => true,
        Some("oci") => false,
        Some(f) => bail!("unknown format {f:?}: use oci or docker"),
    };
    let manifest_bytes = store.read_blob(&base.manifest_digest, image::MAX_MANIFEST_SIZE)?;
    let Document::Manifest(manifest) =
        image::parse_document("the mounted image's manifest", &manifest_bytes, Some(&base.manifest_media_type))?
    else {
        bail!("the mounted image's manifest is an index");
    };
    let config_bytes = store.read_blob(&manifest.config.digest, image::MAX_CONFIG_SIZE)?;
    let mut config: Map<String, Value> = serde_json::from_slice(&config_bytes)
        .with_context(|| format!("the config of {} is not a JSON object", base.id))?;

    // The layer: the upper directory as a tar, hashed (DiffID) and gzipped
    // on its way into the store.
    let upper_dir = StateDir(PathBuf::from(&mount.state_dir)).upper();
    let fingerprint = upper::fingerprint(&upper_dir)?;
    let w = store.blob_writer()?;
    let gz = flate2::write::GzEncoder::new(w, flate2::Compression::new(6));
    let hashing = HashingWriter::new(gz);
    let (hashing, stats) = if upper_dir.is_dir() {
        upper::write_layer(&upper_dir, hashing).with_context(|| format!("committing {dir}"))?
    } else {
        let b = tar::Builder::new(hashing);
        (b.into_inner()?, upper::ChangeStats::default())
    };
    let (diff_id, _, gz) = hashing.finish();
    let mut layer = gz.finish().context("writing the layer")?.finish()?;

    // The config, as docker commit changes it.
    let now = crate::timefmt::format_rfc3339(crate::timefmt::now());
    config.insert("created".into(), json!(now));
    if let Some(a) = &opts.author {
        config.insert("author".into(), json!(a));
    }
    if !opts.changes.is_empty() {
        let c = config.entry("config").or_insert_with(|| json!({}));
        if !c.is_object() {
            *c = json!({});
        }
        let c = c.as_object_mut().expect("made an object above");
        changes::apply(c, &opts.changes)?;
    }
    let mut entry = json!({"created": now, "created_by": "img commit"});
    if let Some(a) = &opts.author {
        entry["author"] = json!(a);
    }
    if let Some(m) = &opts.message {
        entry["comment"] = json!(m);
    }
    let history = config.entry("history").or_insert_with(|| json!([]));
    match history.as_array_mut() {
        Some(h) => h.push(entry),
        None => *history = json!([entry]),
    }
    let rootfs = config.entry("rootfs").or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    match rootfs.get_mut("diff_ids").and_then(Value::as_array_mut) {
        Some(ids) => ids.push(json!(diff_id.as_str())),
        None => bail!("the config of {} has no rootfs.diff_ids", base.id),
    }
    let new_config = serde_json::to_vec(&Value::Object(config))?;
    let parsed = image::parse_config("the committed config", &new_config)?;

    // The manifest: the mounted image's layers and the new one.
    let mut layers: Vec<(String, Digest, u64)> = Vec::new();
    for l in &manifest.layers {
        layers.push((convert_layer_type(&l.media_type, docker)?, l.digest.clone(), l.size));
    }
    let new_mt = image::layer_media_type(docker, Compression::Gzip).expect("gzip has a media type in both families");
    layers.push((new_mt.to_string(), layer.digest().clone(), layer.size()));
    let config_digest = Digest::of_bytes(&new_config);
    let (manifest_mt, config_mt) =
        if docker { (image::DOCKER_MANIFEST, image::DOCKER_CONFIG) } else { (image::OCI_MANIFEST, image::OCI_CONFIG) };
    let refs: Vec<(&str, &Digest, u64)> = layers.iter().map(|(m, d, s)| (m.as_str(), d, *s)).collect();
    let new_manifest = image::build_manifest(manifest_mt, (config_mt, &config_digest, new_config.len() as u64), &refs);

    let sizes: Vec<(Digest, u64)> = layers.iter().map(|(_, d, s)| (d.clone(), *s)).collect();
    let tags: Vec<_> = target.into_iter().collect();
    let id = super::store_made_image(
        store,
        &super::MadeImage {
            manifest_media_type: manifest_mt,
            manifest: &new_manifest,
            config: &new_config,
            parsed: &parsed,
            layers: &sizes,
        },
        &mut [&mut layer],
        &tags,
    )?;
    store.index_mut().set_mount_committed(dir, &fingerprint)?;
    Ok(Committed { id, stats })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_types_follow_the_target_family() {
        assert_eq!(convert_layer_type(image::OCI_LAYER_GZIP, true).unwrap(), image::DOCKER_LAYER_GZIP);
        assert_eq!(convert_layer_type(image::DOCKER_LAYER, false).unwrap(), image::OCI_LAYER);
        assert_eq!(convert_layer_type(image::OCI_LAYER_ZSTD, false).unwrap(), image::OCI_LAYER_ZSTD);
        assert!(convert_layer_type(image::OCI_LAYER_ZSTD, true).unwrap_err().to_string().contains("--format oci"));
    }
}
