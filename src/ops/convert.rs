//! `img convert`: a stored image rewritten with eStargz or zstd:chunked
//! layers, which any tool pulls as ordinary gzip or zstd layers and
//! lazy-pulling tools read file by file through their table of contents.

use super::parse_target_name;
use crate::digest::Digest;
use crate::image::{self, Document};
use crate::layerindex::{estargz, zstd_chunked};
use crate::store::index::ImageRecord;
use crate::store::{Compression, Store};
use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Read, Write};

/// A layer format with a table of contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TocFormat {
    /// gzip members and a TOC in the tar (stargz-snapshotter).
    Estargz,
    /// zstd frames and a TOC in skippable frames (containers/storage).
    ZstdChunked,
}

/// A layer written by [`TocFormat::write`].
#[derive(Debug, Clone)]
pub struct TocLayer {
    pub media_type: &'static str,
    pub annotations: Vec<(String, String)>,
    /// The uncompressed tar's digest: eStargz adds entries to the tar,
    /// zstd:chunked keeps it as it is.
    pub diff_id: Digest,
    /// The digest that the descriptor's annotation gives the TOC.
    pub toc_digest: Digest,
}

impl TocFormat {
    pub fn parse(s: &str) -> Option<TocFormat> {
        match s {
            "estargz" => Some(TocFormat::Estargz),
            "zstd:chunked" => Some(TocFormat::ZstdChunked),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TocFormat::Estargz => "eStargz",
            TocFormat::ZstdChunked => "zstd:chunked",
        }
    }

    /// Whether a layer is in this format already (by its descriptor).
    pub fn is(self, l: &image::Descriptor) -> bool {
        match self {
            TocFormat::Estargz => l.annotations.iter().any(|(k, _)| k == estargz::TOC_DIGEST_ANNOTATION),
            TocFormat::ZstdChunked => {
                l.media_type.ends_with("zstd") && zstd_chunked::toc_of(&l.annotations).is_some_and(|r| r.is_ok())
            }
        }
    }

    /// Writes the layer whose uncompressed tar `open_tar` reads (called
    /// two or three times) to `out`.
    pub fn write<R: Read, W: Write>(
        self,
        open_tar: impl FnMut() -> std::io::Result<R>,
        out: W,
        chunk_size: u64,
        prefetch: &[String],
    ) -> Result<(TocLayer, W)> {
        Ok(match self {
            TocFormat::Estargz => {
                let (c, w) = estargz::convert(open_tar, out, chunk_size, prefetch)?;
                let l = TocLayer {
                    media_type: image::OCI_LAYER_GZIP,
                    annotations: c.annotations(),
                    diff_id: c.diff_id,
                    toc_digest: c.toc_digest,
                };
                (l, w)
            }
            TocFormat::ZstdChunked => {
                if !prefetch.is_empty() {
                    bail!("zstd:chunked layers keep the tar's order and have no prefetch list; use --format estargz");
                }
                let (c, w) = zstd_chunked::convert(open_tar, out, chunk_size)?;
                let l = TocLayer {
                    media_type: image::OCI_LAYER_ZSTD,
                    annotations: c.annotations(),
                    diff_id: c.diff_id,
                    toc_digest: c.toc_digest,
                };
                (l, w)
            }
        })
    }
}

#[derive(Debug)]
pub struct ConvertOptions {
    pub format: TocFormat,
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

/// Adds the conversion to the config's history, as a step that made no
/// layer (dated as the image, so that converting an image again gives the
/// same image). The converted image is a new image even when its layers'
/// tars, and so its DiffIDs, are the source's (zstd:chunked): its ID, the
/// config's digest, is not the source's, whose stored layers stay as they
/// are.
fn record_conversion(config: &mut Map<String, Value>, format: TocFormat) {
    let mut step = Map::new();
    if let Some(created) = config.get("created").filter(|c| c.is_string()) {
        step.insert("created".into(), created.clone());
    }
    let name = match format {
        TocFormat::Estargz => "estargz",
        TocFormat::ZstdChunked => "zstd:chunked",
    };
    step.insert("created_by".into(), json!(format!("img convert --format {name}")));
    step.insert("comment".into(), json!(format!("layers rewritten as {}", format.name())));
    step.insert("empty_layer".into(), json!(true));
    match config.get_mut("history").and_then(Value::as_array_mut) {
        Some(h) => h.push(Value::Object(step)),
        None => {
            config.insert("history".into(), json!([step]));
        }
    }
}

/// Converts image `src` and names the result `target`.
pub fn convert(store: &mut Store, src: &ImageRecord, target: &str, opts: &ConvertOptions) -> Result<Converted> {
    if src.kind == crate::store::index::ImageKind::Embedded {
        bail!("{} is an iSulad embedded image; img save it and load the archive to convert it", src.id);
    }
    super::require_complete(src, &src.tags.first().cloned().unwrap_or_else(|| src.id.hex()[..12].to_string()))?;
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
    let mut annotations = Vec::new();
    let mut media_types = Vec::new();
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
        let (c, w) = opts
            .format
            .write(open, w, opts.chunk_size, &opts.prefetch)
            .with_context(|| format!("converting layer {d} to {}", opts.format.name()))?;
        let blob = w.finish()?;
        annotations.push(c.annotations);
        media_types.push(c.media_type);
        diff_ids.push(json!(c.diff_id.as_str()));
        converted.push((d.clone(), blob.digest().clone(), c.toc_digest.clone()));
        staged.push(blob);
    }
    match config.get_mut("rootfs").and_then(|r| r.get_mut("diff_ids")) {
        Some(ids) => *ids = Value::Array(diff_ids),
        None => bail!("the config of {} has no rootfs.diff_ids", src.id),
    }
    record_conversion(&mut config, opts.format);
    let new_config = serde_json::to_vec(&Value::Object(config))?;
    let parsed = image::parse_config("the converted config", &new_config)?;
    let config_digest = Digest::of_bytes(&new_config);
    let layers: Vec<(Digest, u64)> = staged.iter().map(|b| (b.digest().clone(), b.size())).collect();
    let refs: Vec<image::AnnotatedLayer> =
        layers.iter().zip(&annotations).zip(&media_types).map(|(((d, s), a), m)| (*m, d, *s, a.as_slice())).collect();
    let new_manifest = image::build_manifest_annotated(
        image::OCI_MANIFEST,
        (image::OCI_CONFIG, &config_digest, new_config.len() as u64),
        &refs,
    );
    let mut new_layers: Vec<&mut crate::store::StagedBlob> = staged.iter_mut().collect();
    let id = super::store_made_image(
        store,
        &super::MadeImage {
            manifest_media_type: image::OCI_MANIFEST,
            manifest: &new_manifest,
            config: &new_config,
            parsed: &parsed,
            layers: &layers,
        },
        &mut new_layers,
        &[tag],
    )?;
    Ok(Converted { id, layers: converted })
}
