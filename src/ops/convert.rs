//! `img convert`: a stored image rewritten with eStargz layers, which any
//! tool pulls as ordinary gzip layers and lazy-pulling tools read file by
//! file through their table of contents.

use super::parse_target_name;
use crate::digest::Digest;
use crate::image::{self, Document};
use crate::index::{ImageRecord, NewImage};
use crate::layerindex::estargz;
use crate::store::{Compression, Store};
use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Write};

#[derive(Debug)]
pub struct ConvertOptions {
    /// "estargz" (the only format written so far).
    pub format: String,
    pub chunk_size: u64,
    /// Paths to put first, before `.prefetch.landmark`, in every layer
    /// that has them.
    pub prefetch: Vec<String>,
}

#[derive(Debug)]
pub struct Converted {
    pub id: Digest,
    /// (layer it was, layer it is, TOC digest)
    pub layers: Vec<(Digest, Digest, Digest)>,
}

/// Converts image `src` and names the result `target`.
pub fn convert(store: &mut Store, src: &ImageRecord, target: &str, opts: &ConvertOptions) -> Result<Converted> {
    match opts.format.as_str() {
        "estargz" => {}
        "zstd:chunked" => bail!("zstd:chunked is not written yet; use --format estargz"),
        f => bail!("unknown format {f:?}; use --format estargz"),
    }
    if src.kind == "embedded" {
        bail!("{} is an iSulad embedded image; img save it and load the archive to convert it", src.id);
    }
    let tag = parse_target_name(target)?;
    let manifest_bytes = store.read_blob(&src.manifest_digest, image::MAX_MANIFEST_SIZE)?;
    let Document::Manifest(manifest) =
        image::parse_document("the manifest", &manifest_bytes, Some(&src.manifest_media_type))?
    else {
        bail!("the manifest of {} is an index", src.id);
    };
    let config_bytes = store.read_blob(&manifest.config.digest, image::MAX_CONFIG_SIZE)?;
    let mut config: Map<String, Value> = serde_json::from_slice(&config_bytes)
        .with_context(|| format!("the config of {} is not a JSON object", src.id))?;

    let mut staged = Vec::new();
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    let mut converted = Vec::new();
    for l in &manifest.layers {
        let d = &l.digest;
        let open = || -> std::io::Result<Box<dyn std::io::Read + Send>> {
            let f = store.open_blob(d).map_err(std::io::Error::other)?;
            let mut r = BufReader::with_capacity(256 << 10, f);
            let c = Compression::sniff(r.fill_buf()?);
            c.decoder(r)
        };
        let w = store.blob_writer()?;
        let (c, w) = estargz::convert(open, w, opts.chunk_size, &opts.prefetch)
            .with_context(|| format!("converting layer {d}"))?;
        let blob = w.finish()?;
        descriptors.push(json!({
            "mediaType": image::OCI_LAYER_GZIP,
            "digest": blob.digest().as_str(),
            "size": blob.size(),
            "annotations": {
                estargz::TOC_DIGEST_ANNOTATION: c.toc_digest.as_str(),
                estargz::UNCOMPRESSED_SIZE_ANNOTATION: c.uncompressed_size.to_string(),
            },
        }));
        diff_ids.push(json!(c.diff_id.as_str()));
        converted.push((d.clone(), blob.digest().clone(), c.toc_digest.clone()));
        staged.push(blob);
    }
    match config.get_mut("rootfs").and_then(|r| r.get_mut("diff_ids")) {
        Some(ids) => *ids = Value::Array(diff_ids),
        None => bail!("the config of {} has no rootfs.diff_ids", src.id),
    }
    let new_config = serde_json::to_vec(&Value::Object(config))?;
    let parsed = image::parse_config("the converted config", &new_config)?;
    let config_digest = Digest::of_bytes(&new_config);
    let new_manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": image::OCI_MANIFEST,
        "config": {"mediaType": image::OCI_CONFIG, "digest": config_digest.as_str(), "size": new_config.len()},
        "layers": descriptors,
    }))?;
    let stage = |store: &Store, data: &[u8]| -> Result<crate::store::StagedBlob> {
        let mut w = store.blob_writer()?;
        w.write_all(data)?;
        Ok(w.finish()?)
    };
    let mut config_blob = stage(store, &new_config)?;
    let mut manifest_blob = stage(store, &new_manifest)?;
    let size = staged.iter().map(|b| b.size()).sum::<u64>() + new_config.len() as u64 + new_manifest.len() as u64;
    let layer_digests: Vec<Digest> = staged.iter().map(|b| b.digest().clone()).collect();
    let mut all: Vec<&mut crate::store::StagedBlob> = vec![&mut manifest_blob, &mut config_blob];
    all.extend(staged.iter_mut());
    let blobs = store.commit_blobs(&mut all)?;
    let new = NewImage {
        id: config_digest.clone(),
        manifest_digest: manifest_blob.digest().clone(),
        manifest_media_type: image::OCI_MANIFEST.into(),
        created: parsed.created,
        size,
        architecture: parsed.architecture(),
        os: parsed.os(),
        variant: parsed.variant(),
        author: parsed.author(),
        labels: parsed.labels_json(),
        kind: "oci".into(),
        config_digest: config_digest.clone(),
        layer_digests,
        external_layers: vec![],
    };
    store.index_mut().insert_image(&new, &blobs, &[tag])?;
    Ok(Converted { id: config_digest, layers: converted })
}
