//! `img import`: a root filesystem tarball becomes a one-layer image. The
//! tarball is streamed into the store as it is (gzip and zstd stay as they
//! are; xz, which registries do not take, is recompressed to gzip) and
//! checked entry by entry before anything is recorded.

use super::parse_target_name;
use crate::archive::layer;
use crate::digest::{Digest, HashingReader};
use crate::image;
use crate::ops::build::changes;
use crate::store::{Compression, StagedBlob, Store};
use anyhow::{bail, Context, Result};
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

pub struct ImportOptions {
    /// None reads standard input.
    pub file: Option<PathBuf>,
    pub reference: Option<String>,
    pub changes: Vec<String>,
    pub message: Option<String>,
}

pub fn import(store: &mut Store, opts: &ImportOptions) -> Result<Digest> {
    let label = opts.file.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "standard input".into());
    let target = opts.reference.as_deref().map(parse_target_name).transpose()?;
    let mut cfg = serde_json::Map::new();
    changes::apply(&mut cfg, &opts.changes)?;
    let input: Box<dyn Read + Send> = match &opts.file {
        Some(p) => {
            if p.is_dir() {
                bail!("importing {label}: it is a directory; give a tarball of the root filesystem (tar -C DIR -c .)");
            }
            Box::new(std::fs::File::open(p).with_context(|| format!("importing {label}: cannot open"))?)
        }
        None => Box::new(io::stdin()),
    };
    let mut input = BufReader::with_capacity(256 * 1024, input);
    let head = input.fill_buf().with_context(|| format!("importing {label}: cannot read"))?.to_vec();
    if head.is_empty() {
        bail!("importing {label}: the file is empty; expected a tar archive of a root filesystem");
    }
    let compression = Compression::sniff(&head);
    let mut w = store.blob_writer()?;
    let layer: StagedBlob;
    let diff_id: Digest;
    match compression {
        Compression::None | Compression::Gzip | Compression::Zstd => {
            w = w.with_diff_id();
            w.copy_from(&mut input).with_context(|| format!("importing {label}"))?;
            layer = w.finish()?;
            diff_id = match layer.diff_id() {
                Some(Ok(d)) => d.clone(),
                Some(Err(e)) => bail!("importing {label}: the {} data is corrupt: {e}", compression.name()),
                None => bail!("importing {label}: cannot compute the layer digest"),
            };
        }
        Compression::Xz | Compression::Bzip2 => {
            let dec = compression.decoder(input).with_context(|| format!("importing {label}"))?;
            let mut hashing = HashingReader::new(dec);
            let mut gz = flate2::write::GzEncoder::new(w, flate2::Compression::new(6));
            io::copy(&mut hashing, &mut gz)
                .with_context(|| format!("importing {label}: the {} data is corrupt", compression.name()))?;
            let w = gz.finish().with_context(|| format!("importing {label}"))?;
            layer = w.finish()?;
            diff_id = hashing.finish().0;
        }
    }
    // Second pass: every entry must be a well-formed tar entry with a safe name.
    let f = std::fs::File::open(layer.path()).context("reopening the staged layer")?;
    let mut r = BufReader::new(f);
    let head = r.fill_buf()?.to_vec();
    let dec = Compression::sniff(&head).decoder(r)?;
    let mut dec = BufReader::new(dec);
    let first = dec.fill_buf()?;
    if !crate::archive::source::looks_like_tar(first) {
        bail!(
            "importing {label}: {}",
            match Compression::sniff(&head) {
                Compression::None => "not a tar archive (nor a gzip, xz or zstd compressed one)".to_string(),
                c => format!("the {} data is not a tar archive", c.name()),
            }
        );
    }
    layer::validate_tar(dec, &label).with_context(|| format!("importing {label}"))?;

    let now = crate::timefmt::format_rfc3339(crate::timefmt::now());
    let (os, arch) = crate::archive::resolve::host_platform();
    let mut history = serde_json::json!({"created": now, "created_by": format!("img import {label}")});
    if let Some(m) = &opts.message {
        history["comment"] = serde_json::json!(m);
    }
    let config = serde_json::json!({
        "created": now,
        "architecture": arch,
        "os": os,
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [diff_id.as_str()]},
        "history": [history],
    });
    let config_bytes = serde_json::to_vec(&config)?;
    let parsed = image::parse_config("imported config", &config_bytes)?;
    let layer_mt = image::layer_media_type(false, layer.compression()).unwrap_or(image::OCI_LAYER_GZIP);
    let config_digest = Digest::of_bytes(&config_bytes);
    let manifest = image::build_manifest(
        image::OCI_MANIFEST,
        (image::OCI_CONFIG, &config_digest, config_bytes.len() as u64),
        &[(layer_mt, layer.digest(), layer.size())],
    );
    // Its architecture and OS are the ones written above; it has no variant
    // or author.
    let layers = [(layer.digest().clone(), layer.size())];
    let mut layer = layer;
    let tags: Vec<_> = target.into_iter().collect();
    super::store_made_image(
        store,
        &super::MadeImage {
            manifest_media_type: image::OCI_MANIFEST,
            manifest: &manifest,
            config: &config_bytes,
            parsed: &parsed,
            layers: &layers,
        },
        &mut [&mut layer],
        &tags,
    )
}
