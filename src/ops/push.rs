//! `img push`: an image from the store to a registry. Blobs the registry
//! has are skipped (HEAD), blobs another repository of the same registry
//! has are mounted (`?mount=&from=`), the rest are uploaded a few at a time,
//! in one request each or in chunks. Layers are sent as stored unless a
//! compression is asked for (or a layer is uncompressed, which is gzipped as
//! podman does); the manifest is pushed last, so a failure never leaves a
//! tag pointing at missing blobs.

use super::progress::Progress;
use crate::digest::{Digest, HashingWriter};
use crate::image::{self, Document};
use crate::layerindex::estargz;
use crate::reference::Reference;
use crate::registry::{config, Client, ClientOptions, RegistryError, Repo, Upload};
use crate::store::index::ImageRecord;
use crate::store::{Compression, Store};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Layer compression for `--compression-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    Gzip,
    Zstd,
    /// A format with a table of contents, for lazy pulling: eStargz
    /// (gzip; the layer's tar changes, so the config's DiffIDs do too) or
    /// zstd:chunked (zstd; the tar stays as it is).
    Toc(super::convert::TocFormat),
}

impl LayerCompression {
    pub fn parse(s: &str) -> Result<LayerCompression> {
        match s {
            "gzip" => Ok(LayerCompression::Gzip),
            "zstd" => Ok(LayerCompression::Zstd),
            other => match super::convert::TocFormat::parse(other) {
                Some(f) => Ok(LayerCompression::Toc(f)),
                None => bail!("unknown compression format {s:?}: use gzip, zstd, estargz or zstd:chunked"),
            },
        }
    }
    fn matches(self, c: Compression) -> bool {
        matches!((self, c), (LayerCompression::Gzip, Compression::Gzip) | (LayerCompression::Zstd, Compression::Zstd))
    }
}

pub struct PushOptions {
    /// The local image (name, ID or ID prefix).
    pub source: String,
    /// Where to push; the source's name when it is a name.
    pub dest: Option<String>,
    pub client: ClientOptions,
    /// Recompress every layer that is not in this format.
    pub compression: Option<LayerCompression>,
    /// Upload in chunks of this many bytes (PATCH with Content-Range); one
    /// request per blob otherwise.
    pub chunk_size: Option<u64>,
    /// Blobs uploaded at once.
    pub jobs: usize,
    /// Put the manifest at its own digest (no tag; `dest`'s tag or digest ignored).
    pub by_digest: bool,
    /// Signatures to make, and whether the image's own go along.
    pub sign: super::trust::SignOptions,
    /// Where registries.d says signatures are kept.
    pub trust: super::trust::TrustOptions,
}

/// What a push did.
#[derive(Debug, Default)]
pub struct Pushed {
    pub reference: String,
    pub manifest_digest: Option<Digest>,
    /// The pushed manifest's media type and size.
    pub manifest_media_type: String,
    pub manifest_size: u64,
    pub uploaded: usize,
    pub skipped: usize,
    pub mounted: usize,
}

/// Attempts per blob upload (each a new upload session).
const MAX_ATTEMPTS: u32 = 3;

/// One blob to send: where its bytes are and what the manifest calls it.
struct Item {
    /// "blob" or "config", as the messages name it.
    kind: &'static str,
    digest: Digest,
    size: u64,
    path: PathBuf,
    /// Repositories of the same registry whose images in the store hold it.
    mount_from: Vec<String>,
}

/// Puts manifest (or list) `bytes` at `reference` (a tag or digest) in
/// `r`'s repository; returns its digest.
pub fn put_manifest(
    r: &Reference,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
    client: &ClientOptions,
) -> Result<Digest> {
    let conf = config::load()?;
    let ep = conf
        .endpoints(r.domain(), r.path(), false)
        .map_err(|e| anyhow::anyhow!("pushing {r}: {e}"))?
        .pop()
        .context("no endpoint")?;
    let mut copts = client.clone();
    copts.insecure |= ep.insecure || conf.insecure(&ep.host);
    let client = Client::connect(&ep.host, &copts)?;
    let repo = Repo::new(&client, &ep.path);
    Ok(repo.put_manifest(reference, media_type, bytes)?)
}

pub fn push(store: &Store, opts: &PushOptions, progress: &dyn Progress) -> Result<Pushed> {
    let (img, tag) = super::resolve_name(store, &opts.source)?;
    super::require_complete(&img, &opts.source)?;
    let dest = match (&opts.dest, &tag) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.clone(),
        (None, None) => bail!(
            "pushing {}: an image ID needs a destination: img push {} REGISTRY/NAME:TAG",
            opts.source,
            opts.source
        ),
    };
    let dest = dest.strip_prefix("docker://").unwrap_or(&dest).to_string();
    let r = Reference::parse_with_default_tag(&dest).with_context(|| format!("invalid destination {dest:?}"))?;
    let name = r.to_string();
    if img.kind == crate::store::index::ImageKind::Embedded {
        bail!("pushing {name}: {} is an iSulad embedded image, whose layers live outside the store; img save it to a docker-archive, load that, and push the loaded image", opts.source);
    }
    let ctx = || format!("pushing {name}");
    let manifest_bytes = store.read_blob(&img.manifest_digest, image::MAX_MANIFEST_SIZE).with_context(ctx)?;
    let Document::Manifest(manifest) =
        image::parse_document("stored manifest", &manifest_bytes, Some(&img.manifest_media_type)).with_context(ctx)?
    else {
        bail!("pushing {name}: the stored manifest is an index; run img fsck");
    };
    // Pushes go to the registry's location (a configured rewrite), never to a mirror.
    let conf = config::load()?;
    let ep = conf
        .endpoints(r.domain(), r.path(), false)
        .map_err(|e| anyhow::anyhow!("pushing {name}: {e}"))?
        .pop()
        .context("no endpoint")?;
    let mut copts = super::options::rate_limited(store.root(), &opts.client)?;
    copts.insecure |= ep.insecure || conf.insecure(&ep.host);
    let client = Client::connect(&ep.host, &copts).with_context(ctx)?;
    let repo = Repo::new(&client, &ep.path);
    let mount_candidates = mount_candidates(store, &img, &ep.host, &ep.path)?;
    let mut pushed = Pushed { reference: name.clone(), ..Pushed::default() };

    // Layers, recompressed where asked: (media type, digest, size) as the
    // manifest will list them.
    let staging = store.temp_dir()?;
    let mut layers: Vec<(String, Digest, u64)> = Vec::new();
    let mut annotations: Vec<Vec<(String, String)>> = Vec::new();
    let mut diff_ids: Vec<Option<Digest>> = Vec::new();
    let mut items: Vec<Item> = Vec::new();
    let mut changed = false;
    let docker = manifest.media_type == image::DOCKER_MANIFEST;
    for l in &manifest.layers {
        let path = store.blob_path(&l.digest);
        let current = sniff(&path)?;
        let want = match opts.compression {
            Some(LayerCompression::Toc(f)) => (!f.is(l)).then_some(LayerCompression::Toc(f)),
            Some(c) if !c.matches(current) => Some(c),
            None if current == Compression::None => Some(LayerCompression::Gzip),
            _ => None,
        };
        let candidates = mount_candidates.iter().filter(|(d, _)| d == &l.digest).map(|(_, r)| r.clone()).collect();
        match want {
            None => {
                layers.push((l.media_type.clone(), l.digest.clone(), l.size));
                annotations.push(l.annotations.clone());
                diff_ids.push(None);
                items.push(Item { kind: "blob", digest: l.digest.clone(), size: l.size, path, mount_from: candidates });
            }
            Some(LayerCompression::Toc(f)) => {
                changed = true;
                progress.line(&format!("Converting layer {} to {}", l.digest.short(), f.name()));
                let out = staging.path().join(format!("layer-{}", l.digest.hex()));
                let (c, digest, size) = to_toc_format(f, &path, current, &out)
                    .with_context(|| format!("pushing {name}: converting layer {} to {}", l.digest, f.name()))?;
                layers.push((c.media_type.to_string(), digest.clone(), size));
                annotations.push(c.annotations);
                diff_ids.push(Some(c.diff_id));
                items.push(Item { kind: "blob", digest, size, path: out, mount_from: vec![] });
            }
            Some(c) => {
                changed = true;
                progress.line(&format!("Compressing layer {} with {}", l.digest.short(), name_of(c)));
                let (digest, size, out) = recompress(&path, current, c, staging.path())
                    .with_context(|| format!("pushing {name}: recompressing layer {}", l.digest))?;
                let mt = match c {
                    LayerCompression::Gzip if docker => image::DOCKER_LAYER_GZIP,
                    LayerCompression::Gzip => image::OCI_LAYER_GZIP,
                    LayerCompression::Zstd => image::OCI_LAYER_ZSTD,
                    LayerCompression::Toc(f) => bail!("pushing {name}: {} is not a recompression", f.name()),
                };
                layers.push((mt.to_string(), digest.clone(), size));
                annotations.push(Vec::new());
                diff_ids.push(None);
                items.push(Item { kind: "blob", digest, size, path: out, mount_from: vec![] });
            }
        }
    }
    // Layers whose tar changed (eStargz) change the config's DiffIDs.
    let (config_digest, config_size) = if diff_ids.iter().any(Option::is_some) {
        let bytes = store.read_blob(&manifest.config.digest, image::MAX_CONFIG_SIZE).with_context(ctx)?;
        let mut config: serde_json::Value =
            serde_json::from_slice(&bytes).with_context(|| format!("pushing {name}: the config is not JSON"))?;
        let Some(ids) = config.pointer_mut("/rootfs/diff_ids").and_then(|v| v.as_array_mut()) else {
            bail!("pushing {name}: the config has no rootfs.diff_ids");
        };
        if ids.len() != diff_ids.len() {
            bail!("pushing {name}: the config lists {} DiffIDs for {} layers; run img fsck", ids.len(), diff_ids.len());
        }
        for (id, new) in ids.iter_mut().zip(&diff_ids) {
            if let Some(new) = new {
                *id = serde_json::json!(new.as_str());
            }
        }
        let out = serde_json::to_vec(&config)?;
        let digest = Digest::of_bytes(&out);
        let path = staging.path().join("config");
        std::fs::write(&path, &out).with_context(|| format!("writing {}", path.display()))?;
        items.push(Item { kind: "config", digest: digest.clone(), size: out.len() as u64, path, mount_from: vec![] });
        (digest, out.len() as u64)
    } else {
        items.push(Item {
            kind: "config",
            digest: manifest.config.digest.clone(),
            size: manifest.config.size,
            path: store.blob_path(&manifest.config.digest),
            mount_from: mount_candidates
                .iter()
                .filter(|(d, _)| d == &manifest.config.digest)
                .map(|(_, r)| r.clone())
                .collect(),
        });
        (manifest.config.digest.clone(), manifest.config.size)
    };
    // zstd and eStargz layers need an OCI manifest; any change means a new
    // manifest.
    let (manifest_type, manifest_out) = if changed {
        let oci_only =
            layers.iter().any(|(mt, _, _)| mt == image::OCI_LAYER_ZSTD) || annotations.iter().any(|a| !a.is_empty());
        let (mt, cfg_mt) = if docker && !oci_only {
            (image::DOCKER_MANIFEST, image::DOCKER_CONFIG)
        } else {
            (image::OCI_MANIFEST, image::OCI_CONFIG)
        };
        let layers: Vec<(String, Digest, u64)> = layers
            .into_iter()
            .map(|(m, d, s)| {
                let m = if mt == image::OCI_MANIFEST { oci_layer_type(&m) } else { m };
                (m, d, s)
            })
            .collect();
        let refs: Vec<image::AnnotatedLayer> =
            layers.iter().zip(&annotations).map(|((m, d, s), a)| (m.as_str(), d, *s, a.as_slice())).collect();
        (mt.to_string(), image::build_manifest_annotated(mt, (cfg_mt, &config_digest, config_size), &refs))
    } else {
        (img.manifest_media_type.clone(), manifest_bytes)
    };

    progress.line("Getting image source signatures");
    let outcomes = send_all(&repo, &items, opts, progress).with_context(ctx)?;
    for o in outcomes {
        match o {
            Outcome::Skipped => pushed.skipped += 1,
            Outcome::Mounted => pushed.mounted += 1,
            Outcome::Uploaded => pushed.uploaded += 1,
        }
    }
    progress.line("Writing manifest to image destination");
    // A destination of `REPO@` alone: the manifest goes by its own digest.
    let reference = if opts.by_digest {
        Digest::of_bytes(&manifest_out).as_str().to_string()
    } else {
        r.digest().or(r.tag()).unwrap_or("latest").to_string()
    };
    if let (Some(d), false) = (r.digest(), opts.by_digest) {
        if d != Digest::of_bytes(&manifest_out).as_str() {
            bail!(
                "pushing {name}: the manifest's digest is {}, not the {d} in the destination; push to a tag instead",
                Digest::of_bytes(&manifest_out)
            );
        }
    }
    let digest = repo.put_manifest(&reference, &manifest_type, &manifest_out).with_context(ctx)?;
    // The signatures the image came with go along when they sign what was
    // sent; new ones are made as asked.
    let kept = store.index().signatures(&img.id).with_context(ctx)?;
    let sigs = super::trust::outgoing(&kept, &digest, &r, &opts.sign, progress).with_context(ctx)?;
    super::trust::publish(&opts.trust, &repo, &r, &digest, &sigs, progress)?;
    pushed.manifest_digest = Some(digest);
    pushed.manifest_media_type = manifest_type;
    pushed.manifest_size = manifest_out.len() as u64;
    Ok(pushed)
}

enum Outcome {
    Skipped,
    Mounted,
    Uploaded,
}

fn send_all(repo: &Repo, items: &[Item], opts: &PushOptions, progress: &dyn Progress) -> Result<Vec<Outcome>> {
    let jobs = opts.jobs.clamp(1, 16).min(items.len().max(1));
    let queue = std::sync::Mutex::new(items.iter());
    let failed = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<Result<Outcome>> = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..jobs {
            let tx = tx.clone();
            let queue = &queue;
            let failed = &failed;
            s.spawn(move || loop {
                if failed.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some(item) = next else { break };
                let r = send_blob(repo, item, opts.chunk_size, progress);
                if r.is_err() {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                let _ = tx.send(r);
            });
        }
        drop(tx);
        rx.iter().collect()
    });
    results.into_iter().collect()
}

fn send_blob(repo: &Repo, item: &Item, chunk: Option<u64>, progress: &dyn Progress) -> Result<Outcome> {
    let d = &item.digest;
    if repo.has_blob(d, &repo.push_scope())? {
        progress.line(&format!("Copying {} {} skipped: already exists", item.kind, d.short()));
        return Ok(Outcome::Skipped);
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_send(repo, item, chunk, progress) {
            Ok(o) => return Ok(o),
            Err(e) if attempt < MAX_ATTEMPTS && transient(&e) => {
                progress.line(&format!("blob {}: {e}; starting the upload again", d.short()));
                std::thread::sleep(std::time::Duration::from_millis(500 << attempt));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn transient(e: &RegistryError) -> bool {
    match e {
        RegistryError::Http { msg, .. } => !msg.contains("answered 4") || msg.contains("answered 429"),
        _ => false,
    }
}

fn try_send(
    repo: &Repo,
    item: &Item,
    chunk: Option<u64>,
    progress: &dyn Progress,
) -> std::result::Result<Outcome, RegistryError> {
    let d = &item.digest;
    // One mount attempt: a registry that cannot mount starts a plain upload
    // instead, which is then used.
    let mut location = None;
    if let Some(from) = item.mount_from.first() {
        match repo.start_upload(Some((d, from)))? {
            Upload::Mounted => {
                progress.line(&format!("Copying {} {} mounted from {from}", item.kind, d.short()));
                return Ok(Outcome::Mounted);
            }
            Upload::Location(l) => location = Some(l),
        }
    }
    let location = match location {
        Some(l) => l,
        None => match repo.start_upload(None)? {
            Upload::Location(l) => l,
            Upload::Mounted => return Ok(Outcome::Mounted),
        },
    };
    progress.line(&format!("Copying {} {}", item.kind, d.short()));
    let io = |e: std::io::Error| RegistryError::Refused {
        what: format!("blob {d}"),
        msg: format!("reading {}: {e}", item.path.display()),
    };
    let file = File::open(&item.path).map_err(io)?;
    progress.blob_start(d, item.size, 0);
    let mut file = Counting { inner: file, done: 0, d, progress };
    match chunk {
        Some(n) if n > 0 && item.size > n => {
            let mut loc = location;
            let mut start = 0;
            while start < item.size {
                let len = n.min(item.size - start);
                file.inner.seek(SeekFrom::Start(start)).map_err(io)?;
                file.done = start;
                loc = repo.patch_chunk(&loc, &mut file, start, len)?;
                start += len;
            }
            repo.finish_upload(&loc, d)?;
        }
        _ => repo.put_blob(&location, d, &mut BufReader::with_capacity(256 * 1024, file), item.size)?,
    }
    progress.blob_end(d, true);
    progress.line(&format!("Copying {} {} done", item.kind, d.short()));
    Ok(Outcome::Uploaded)
}

/// A reader that reports how much of a blob it has given out.
struct Counting<'a, R> {
    inner: R,
    done: u64,
    d: &'a Digest,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        self.progress.blob_bytes(self.d, self.done);
        Ok(n)
    }
}

/// (blob, repository) pairs: repositories on `registry` other than `path`
/// whose images in the store hold the blob, so the registry may have it.
fn mount_candidates(store: &Store, img: &ImageRecord, registry: &str, path: &str) -> Result<Vec<(Digest, String)>> {
    let mine: Vec<Digest> = store.index().image_blobs(&img.id)?.into_iter().map(|(_, d)| d).collect();
    let mut out = Vec::new();
    for other in store.index().images()? {
        let repos: Vec<String> = other
            .tags
            .iter()
            .filter_map(|t| Reference::parse(t).ok())
            .filter(|r| r.domain() == registry && r.path() != path)
            .map(|r| r.path().to_string())
            .collect();
        if repos.is_empty() {
            continue;
        }
        for (_, d) in store.index().image_blobs(&other.id)? {
            if mine.contains(&d) {
                for r in &repos {
                    if !out.iter().any(|(od, or): &(Digest, String)| od == &d && or == r) {
                        out.push((d.clone(), r.clone()));
                    }
                }
            }
        }
    }
    Ok(out)
}

fn sniff(path: &Path) -> Result<Compression> {
    let mut head = [0u8; 6];
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let n = f.read(&mut head).with_context(|| format!("reading {}", path.display()))?;
    Ok(Compression::sniff(&head[..n]))
}

fn name_of(c: LayerCompression) -> &'static str {
    match c {
        LayerCompression::Gzip => "gzip",
        LayerCompression::Zstd => "zstd",
        LayerCompression::Toc(f) => f.name(),
    }
}

/// The OCI media type of a Docker layer media type (others as they are).
fn oci_layer_type(mt: &str) -> String {
    match mt {
        image::DOCKER_LAYER_GZIP => image::OCI_LAYER_GZIP.to_string(),
        other => other.to_string(),
    }
}

/// Writes `src` (compressed with `from`) as a layer of format `f` to `out`.
fn to_toc_format(
    format: super::convert::TocFormat,
    src: &Path,
    from: Compression,
    out: &Path,
) -> Result<(super::convert::TocLayer, Digest, u64)> {
    let open = || -> std::io::Result<Box<dyn Read + Send>> {
        let input = File::open(src)?;
        from.decoder(BufReader::with_capacity(256 * 1024, input))
    };
    let f = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let hw = HashingWriter::new(BufWriter::with_capacity(256 * 1024, f));
    let (c, hw) = format.write(open, hw, estargz::DEFAULT_CHUNK_SIZE, &[])?;
    let (digest, size, mut w) = hw.finish();
    w.flush()?;
    Ok((c, digest, size))
}

/// Writes `src` (compressed with `from`) compressed with `to` into `dir`;
/// returns the new blob's digest, size and path.
fn recompress(src: &Path, from: Compression, to: LayerCompression, dir: &Path) -> Result<(Digest, u64, PathBuf)> {
    let input = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut reader = from.decoder(BufReader::with_capacity(256 * 1024, input))?;
    let out_path = dir.join(format!("layer-{}", src.file_name().and_then(|n| n.to_str()).unwrap_or("x")));
    let out = File::create(&out_path).with_context(|| format!("creating {}", out_path.display()))?;
    let mut hw = HashingWriter::new(BufWriter::with_capacity(256 * 1024, out));
    match to {
        LayerCompression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(&mut hw, flate2::Compression::default());
            std::io::copy(&mut reader, &mut enc)?;
            enc.finish()?;
        }
        LayerCompression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(&mut hw, 3)?;
            enc.multithread(2).ok();
            std::io::copy(&mut reader, &mut enc)?;
            enc.finish()?;
        }
        // `to_toc_format` writes these.
        LayerCompression::Toc(f) => bail!("a {} layer is not a recompression", f.name()),
    }
    let (digest, size, mut w) = hw.finish();
    w.flush()?;
    Ok((digest, size, out_path))
}
