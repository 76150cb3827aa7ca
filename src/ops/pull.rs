//! `img pull`: manifest (verified, platform chosen), config, then the
//! layers the store lacks, downloaded in parallel straight into `ingest/`,
//! hashed as they stream, resumed with HTTP Range after a reset or a kill,
//! and deduplicated across processes by a lock on each partial file.

use super::download::download;
use super::options::{options_for, parse_platform};
use super::progress::Progress;
use super::tag_name;
use crate::digest::Digest;
use crate::image::{self, Document};
use crate::reference::Reference;
use crate::registry::{config, Client, ClientOptions, FetchedManifest, Repo};
use crate::store::index::NewImage;
use crate::store::{Compression, StagedBlob, StagedIndex, Store};
use anyhow::{bail, Context, Result};
use std::io::Write;

#[derive(Clone)]
pub struct PullOptions {
    pub reference: String,
    /// `os/arch[/variant]`; the host's by default.
    pub platform: Option<String>,
    pub client: ClientOptions,
    /// Layers downloaded at once.
    pub jobs: usize,
    /// Leave eStargz and zstd:chunked layers in the registry, to be read on demand by a
    /// mount (the image is recorded as partial).
    pub lazy: bool,
    /// The signature policy to obey.
    pub trust: super::trust::TrustOptions,
}

/// Where to look for `input`: a short name (`busybox`) under each search
/// registry in turn (docker.io when none is configured), a full name as it
/// is; each with the endpoints the configuration gives (mirrors first).
pub fn candidates(input: &str, conf: &config::Config) -> Result<Vec<(Reference, Vec<config::Endpoint>)>> {
    let input = input.strip_prefix("docker://").unwrap_or(input);
    let names: Vec<String> = if super::is_short_name(input) {
        let search = if conf.search.is_empty() { vec!["docker.io".to_string()] } else { conf.search.clone() };
        search.iter().map(|s| format!("{s}/{input}")).collect()
    } else {
        vec![input.to_string()]
    };
    let mut out = Vec::new();
    for n in names {
        let r = Reference::parse_with_default_tag(&n).with_context(|| format!("invalid image reference {input:?}"))?;
        let eps = conf
            .endpoints(r.domain(), r.path(), r.digest().is_some())
            .map_err(|e| anyhow::anyhow!("pulling {r}: {e}"))?;
        out.push((r, eps));
    }
    Ok(out)
}

/// Pulls every tag of a repository (`pull --all-tags`); returns the IDs,
/// one a tag, in the registry's tag order.
pub fn pull_all_tags(store: &mut Store, opts: &PullOptions, progress: &dyn Progress) -> Result<Vec<Digest>> {
    let r = Reference::parse(&opts.reference).with_context(|| format!("invalid repository {:?}", opts.reference))?;
    if r.tag().is_some() || r.digest().is_some() {
        bail!("--all-tags takes a repository without a tag or digest, not {}", opts.reference);
    }
    let opts = &PullOptions { client: super::options::rate_limited(store.root(), &opts.client)?, ..opts.clone() };
    let copts = options_for(r.domain(), &opts.client)?;
    let client = Client::connect(r.domain(), &copts).with_context(|| format!("listing tags of {r}"))?;
    let tags = Repo::new(&client, r.path()).tags().with_context(|| format!("listing tags of {r}"))?;
    if tags.is_empty() {
        bail!("{r} has no tags");
    }
    let mut ids = Vec::new();
    for t in tags {
        let one = PullOptions { reference: format!("{}/{}:{t}", r.domain(), r.path()), ..opts.clone() };
        ids.push(pull(store, &one, progress)?);
    }
    Ok(ids)
}

/// Where a pull found its image: the first registry endpoint that served
/// the manifest (it serves the blobs too).
pub struct Located {
    /// The name as the user meant it (search registry applied).
    pub reference: Reference,
    /// The top-level document as served (an index when the name gives
    /// one): signatures sign its digest.
    pub top: FetchedManifest,
    pub fetched: FetchedManifest,
    pub manifest: image::Manifest,
    /// The endpoint's host and repository path.
    pub host: String,
    pub path: String,
    pub client: Client,
}

/// Finds the manifest `opts` asks for: each candidate name in turn, each
/// with its endpoints (mirrors first); the platform's from an index.
pub fn locate(opts: &PullOptions, progress: &dyn Progress) -> Result<Located> {
    let (os, arch, variant) = parse_platform(opts.platform.as_deref())?;
    let conf = config::load()?;
    let cands = candidates(&opts.reference, &conf)?;
    let mut tried: Vec<String> = Vec::new();
    for (r, endpoints) in &cands {
        let reference = r.digest().or(r.tag()).unwrap_or("latest").to_string();
        for ep in endpoints {
            let sep = if r.digest().is_some() { '@' } else { ':' };
            let where_ = format!("{}/{}{sep}{reference}", ep.host, ep.path);
            if cands.len() > 1 || endpoints.len() > 1 {
                progress.line(&format!("Trying to pull {where_}..."));
            }
            let mut copts = opts.client.clone();
            copts.insecure |= ep.insecure || conf.insecure(&ep.host);
            let attempt = Client::connect(&ep.host, &copts).map_err(anyhow::Error::from).and_then(|client| {
                let repo = Repo::new(&client, &ep.path);
                let (top, fetched, manifest) = fetch_manifest(&repo, &where_, &reference, (&os, &arch, &variant))?;
                Ok((top, fetched, manifest, client))
            });
            match attempt {
                Ok((top, fetched, manifest, client)) => {
                    return Ok(Located {
                        reference: r.clone(),
                        top,
                        fetched,
                        manifest,
                        host: ep.host.clone(),
                        path: ep.path.clone(),
                        client,
                    })
                }
                Err(e) => tried.push(format!("{where_}: {}", crate::error_chain(&e))),
            }
        }
    }
    let name = cands.first().map(|(r, _)| r.to_string()).unwrap_or_else(|| opts.reference.clone());
    if tried.len() == 1 {
        bail!("pulling {name}: {}", tried[0].split_once(": ").map(|x| x.1).unwrap_or(&tried[0]));
    }
    bail!("pulling {name}: no registry served it; tried {}", tried.join("; "))
}

/// Pulls an image; returns its ID.
pub fn pull(store: &mut Store, opts: &PullOptions, progress: &dyn Progress) -> Result<Digest> {
    let opts = &PullOptions { client: super::options::rate_limited(store.root(), &opts.client)?, ..opts.clone() };
    let trust = super::trust::Trust::load(&opts.trust)?;
    let Located { reference: r, top, fetched, manifest, path, client, .. } = locate(opts, progress)?;
    let name = r.to_string();
    let repo = Repo::new(&client, &path);
    // The policy decides before anything is stored.
    let signatures = super::trust::admit_remote(&trust, &repo, &r, &top, progress)?;
    for (i, l) in manifest.layers.iter().enumerate() {
        if !image::is_tar_layer(&l.media_type) {
            bail!("pulling {name}: layer {i} has media type {:?}, which img does not store", l.media_type);
        }
    }
    let tag = r.tag().map(|_| tag_name(&r));
    let id = manifest.config.digest.clone();
    let tags: Vec<_> = tag.into_iter().collect();
    let have = store.index().image(&id)?;
    let complete_enough = have.as_ref().is_some_and(|i| opts.lazy || i.kind != crate::store::index::ImageKind::Partial);
    if complete_enough && store.index_mut().tag_existing(&tags, &id)? {
        store.index_mut().add_signatures(&id, &signatures)?;
        progress.line(&format!("{name}: image is up to date"));
        return Ok(id);
    }
    // A store with a max-size makes room (or refuses) before a byte is written.
    if !opts.lazy {
        let mut sizes = vec![manifest.config.size];
        let mut seen = std::collections::HashSet::new();
        for l in &manifest.layers {
            if seen.insert(&l.digest) && !store.index().has_blob(&l.digest)? {
                sizes.push(l.size);
            }
        }
        let keep: Vec<Digest> = have.iter().map(|i| i.id.clone()).collect();
        super::evict::make_room(
            store,
            super::evict::incoming_bytes(&sizes),
            &format!("pulling {name}"),
            &keep,
            progress,
        )?;
    }
    // Config: small, read whole, verified, parsed.
    let config_blob =
        download(&store.paths(), &repo, &manifest.config.digest, manifest.config.size, progress, true, None)
            .with_context(|| format!("pulling {name}"))?;
    let config_bytes = config_blob.read_all(image::MAX_CONFIG_SIZE)?;
    let config =
        image::parse_config(&format!("config of {name}"), &config_bytes).with_context(|| format!("pulling {name}"))?;
    if config.diff_ids.len() != manifest.layers.len() {
        bail!(
            "pulling {name}: the manifest lists {} layers but the config lists {}; the image is inconsistent",
            manifest.layers.len(),
            config.diff_ids.len()
        );
    }
    // Layers the store lacks, a few at a time; with `lazy`, they stay in
    // the registry: eStargz and zstd:chunked layers are read through their
    // TOC (fetched and checked now), the others are streamed by a mount.
    let mut missing: Vec<(usize, Digest, u64)> = Vec::new();
    let mut remote: Vec<crate::store::index::RemoteLayer> = Vec::new();
    let source = format!("{}/{path}", client.registry);
    let mut tocs: Vec<(usize, &image::Descriptor, crate::mount::lazy::TocAt)> = Vec::new();
    for (i, l) in manifest.layers.iter().enumerate() {
        if store.index().has_blob(&l.digest)?
            || missing.iter().any(|(_, d, _)| d == &l.digest)
            || tocs.iter().any(|(_, t, _)| t.digest == l.digest)
            || remote.iter().any(|r| r.digest == l.digest)
        {
            continue;
        }
        if opts.lazy {
            if let Some(at) = super::lazy::toc_at(l) {
                tocs.push((i, l, at));
                continue;
            }
            // No TOC: a mount streams it (an empty TOC digest says so).
            remote.extend(remote_rows(&manifest.layers, l, "", &source));
            continue;
        }
        if !opts.lazy {
            // Bytes a lazy mount fetched are used, not fetched again.
            super::lazy::seed_download(&store.paths(), &repo, &l.digest, l.size)
                .with_context(|| format!("pulling {name}: layer {i}"))?;
        }
        missing.push((i, l.digest.clone(), l.size));
    }
    // The TOCs, all at once (each is two Range requests).
    let paths = store.paths();
    let fetched_tocs: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = tocs
            .iter()
            .map(|(_, l, want)| {
                let (paths, repo) = (&paths, &repo);
                s.spawn(move || super::lazy::fetch_toc(paths, repo, l, want))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("reading a TOC failed")))).collect()
    });
    let known = store.index().remote_layer_digests()?;
    let mut first_err = None;
    for ((i, l, at), r) in tocs.iter().zip(fetched_tocs) {
        match r {
            Ok(()) => remote.extend(remote_rows(&manifest.layers, l, at.digest().as_str(), &source)),
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(e.context(format!("pulling {name}: layer {i}")));
                }
            }
        }
    }
    if let Some(e) = first_err {
        // Nothing is kept of layers no partial image reads.
        for (_, l, _) in &tocs {
            if !known.contains(&l.digest) {
                super::lazy::forget_cache(&store.paths(), &l.digest);
            }
        }
        return Err(e);
    }
    // The manifest as served (its digest is what the registry and skopeo report).
    let mut w = store.blob_writer()?;
    w.write_all(&fetched.bytes)?;
    let manifest_blob = w.finish_unsynced()?;
    let jobs = opts.jobs.clamp(1, 16);
    let queue = std::sync::Mutex::new(missing.iter());
    // Each layer is measured uncompressed and indexed for mounts as it
    // streams; a finished one is synced by the syncer while the workers
    // download the next, and the index is committed only after all are.
    let (results, small): (Vec<Result<Pulled>>, Result<(StagedBlob, StagedBlob)>) = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel::<Result<Pulled>>();
        let small = s.spawn(move || -> Result<(StagedBlob, StagedBlob)> {
            let (mut m, mut c) = (manifest_blob, config_blob);
            m.sync()?;
            c.sync()?;
            Ok((m, c))
        });
        for _ in 0..jobs.min(missing.len().max(1)) {
            let tx = tx.clone();
            let queue = &queue;
            let repo = &repo;
            let paths = &paths;
            s.spawn(move || loop {
                let next = queue.lock().ok().and_then(|mut q| q.next().cloned());
                let Some((i, d, size)) = next else { break };
                let r = download_layer(paths, repo, i, &d, size, progress);
                let failed = r.is_err();
                let _ = tx.send(r);
                if failed {
                    break;
                }
            });
        }
        drop(tx);
        let syncer = s.spawn(move || {
            rx.iter()
                .map(|r| {
                    let mut p = r?;
                    p.blob.sync()?;
                    Ok(p)
                })
                .collect::<Vec<_>>()
        });
        let small = small.join().unwrap_or_else(|_| Err(anyhow::anyhow!("syncing the manifest failed")));
        (syncer.join().unwrap_or_else(|_| vec![Err(anyhow::anyhow!("syncing the layers failed"))]), small)
    });
    let (mut manifest_blob, mut config_blob) = small.with_context(|| format!("pulling {name}"))?;
    let mut staged = Vec::new();
    let mut diff_sizes = Vec::new();
    let mut indexes = Vec::new();
    for r in results {
        let p = r.with_context(|| format!("pulling {name}"))?;
        if let Some(n) = p.diff_size {
            diff_sizes.push((p.blob.digest().clone(), n));
        }
        indexes.extend(p.index);
        staged.push(p.blob);
    }
    if staged.len() != missing.len() {
        bail!("pulling {name}: not every layer was downloaded");
    }
    let mut parts: Vec<&mut StagedBlob> = vec![&mut manifest_blob, &mut config_blob];
    parts.extend(staged.iter_mut());
    let mut blobs = store.commit_blobs(&mut parts)?;
    // Their blobs in place, the layers' index files follow (a failure only
    // leaves the scan to the first mount).
    for ix in indexes {
        let d = ix.digest().clone();
        if let Err(e) = ix.install(&store.paths(), &blobs) {
            progress.line(&format!("warning: keeping the index of layer {d}: {e}"));
        }
    }
    // Layers already in the store are referenced as they are.
    let kept: Vec<Digest> = manifest
        .layers
        .iter()
        .filter(|l| !blobs.contains(&l.digest) && !remote.iter().any(|r| r.digest == l.digest))
        .map(|l| l.digest.clone())
        .collect();
    blobs = blobs.merge(store.stored_blobs(&kept)?);
    // Stored layers that no img before measured are measured now.
    let others: Vec<Digest> = manifest
        .layers
        .iter()
        .filter(|l| !diff_sizes.iter().any(|(d, _)| d == &l.digest) && !remote.iter().any(|r| r.digest == l.digest))
        .map(|l| l.digest.clone())
        .collect();
    diff_sizes.extend(super::measure_layers(store, &others)?);
    let size = fetched.bytes.len() as u64 + manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>();
    let new = NewImage {
        id: id.clone(),
        manifest_digest: fetched.digest.clone(),
        manifest_media_type: manifest.media_type.clone(),
        created: config.created,
        size,
        architecture: config.architecture(),
        os: config.os(),
        variant: config.variant(),
        author: config.author(),
        labels: config.labels_json(),
        kind: if remote.is_empty() {
            crate::store::index::ImageKind::Oci
        } else {
            crate::store::index::ImageKind::Partial
        },
        config_digest: id.clone(),
        layer_digests: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
        external_layers: vec![],
        remote_layers: remote,
        layer_diff_sizes: diff_sizes,
    };
    store
        .index_mut()
        .insert_signed_image(&new, &blobs, &tags, &signatures)
        .context("recording the image in the index")?;
    if !opts.lazy && store.paths().lazy_dir().is_dir() {
        // What lazy mounts fetched of these layers, now stored, unless a
        // partial image still reads them from the registry.
        let still = store.index().remote_layer_digests()?;
        for l in manifest.layers.iter().filter(|l| !still.contains(&l.digest)) {
            super::lazy::forget_cache(&store.paths(), &l.digest);
        }
    }
    Ok(id)
}

/// A layer downloaded: its blob (staged, not yet synced), its size
/// uncompressed, and its index file for mounts when one was built as it
/// streamed.
struct Pulled {
    blob: StagedBlob,
    diff_size: Option<u64>,
    index: Option<StagedIndex>,
}

/// Chunks handed to the indexer, and how many may wait for it: 1 MiB
/// ahead is enough to keep the download and the indexer both busy, and
/// every layer downloading at once holds that much.
const TAP_CHUNK: usize = 256 * 1024;
const TAP_QUEUE: usize = 4;

/// The bytes of a download, in chunks, on their way to the indexer.
struct Tap {
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
    seen: u64,
}

/// What the indexer makes of a layer: its index (a gzip layer's windows
/// in a scratch file, written as they were made) and its size
/// uncompressed; nothing for a layer that is neither gzip nor zstd, or
/// that does not decompress.
type Indexer = std::thread::JoinHandle<Option<crate::mount::scan::BuiltIndex>>;

impl Tap {
    /// Starts the indexer of layer `d` (number `i` in its image) on its own
    /// thread, its checkpoint windows going to `windows` as they are made;
    /// the tap hands it the layer's bytes.
    fn start(d: &Digest, i: usize, windows: Option<std::fs::File>) -> (Tap, Indexer) {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(TAP_QUEUE);
        let label = d.clone();
        let indexer = std::thread::spawn(move || -> Option<crate::mount::scan::BuiltIndex> {
            let mut r = std::io::BufReader::with_capacity(64 * 1024, crate::store::ChannelReader::new(rx));
            let c = Compression::sniff(std::io::BufRead::fill_buf(&mut r).ok()?);
            if !matches!(c, Compression::Gzip | Compression::Zstd) {
                let _ = std::io::copy(&mut r, &mut std::io::sink());
                return None;
            }
            crate::mount::scan::index_layer(&label, i, r, c, windows).ok()
        });
        (Tap { tx: Some(tx), buf: Vec::with_capacity(TAP_CHUNK), seen: 0 }, indexer)
    }

    /// Ends the stream; returns the bytes the indexer was handed, if it
    /// took them all.
    fn finish(mut self) -> Option<u64> {
        if !self.buf.is_empty() {
            self.send();
        }
        self.tx.take().map(|_| self.seen)
    }

    fn feed(&mut self, b: &[u8]) {
        self.seen += b.len() as u64;
        self.buf.extend_from_slice(b);
        if self.buf.len() >= TAP_CHUNK {
            self.send();
        }
    }

    fn send(&mut self) {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(TAP_CHUNK));
        // The indexer stops listening when it fails; the download goes on.
        if self.tx.as_ref().is_some_and(|tx| tx.send(chunk).is_err()) {
            self.tx = None;
        }
    }
}

/// Downloads layer `d` (number `i` in its image) and, from the same bytes
/// on other threads, its size uncompressed and its index file (gzip and
/// zstd layers; a mount then needs no scan). A layer that resumed a partial
/// file is measured from the file afterwards and indexed by its first mount.
fn download_layer(
    paths: &crate::store::StorePaths,
    repo: &Repo,
    i: usize,
    d: &Digest,
    size: u64,
    progress: &dyn Progress,
) -> Result<Pulled> {
    let (mut tap, indexer) = Tap::start(d, i, paths.scratch_file().ok());
    let got = download(paths, repo, d, size, progress, false, Some(&mut |b: &[u8]| tap.feed(b)));
    let whole = tap.finish() == Some(size);
    let built = indexer.join().ok().flatten();
    let blob = got?;
    let (diff_size, index) = match built {
        Some(b) if whole => (Some(b.size), paths.stage_layer_index(d, &mut |w| b.write_to(d, w)).ok()),
        _ => (crate::store::uncompressed_size(blob.path()).ok(), None),
    };
    Ok(Pulled { blob, diff_size, index })
}

/// The `remote_layers` rows of layer `l`: one for every place it has in
/// the image (a layer may repeat), read from `source`, with its TOC digest
/// (empty for a layer a mount streams).
fn remote_rows<'a>(
    layers: &'a [image::Descriptor],
    l: &'a image::Descriptor,
    toc_digest: &'a str,
    source: &'a str,
) -> impl Iterator<Item = crate::store::index::RemoteLayer> + 'a {
    layers.iter().enumerate().filter(move |(_, m)| m.digest == l.digest).map(move |(p, same)| {
        crate::store::index::RemoteLayer {
            position: p,
            digest: l.digest.clone(),
            size: l.size,
            media_type: same.media_type.clone(),
            toc_digest: toc_digest.to_string(),
            source: source.to_string(),
        }
    })
}

/// Fetches the manifest `reference` names and, from an index, the one for
/// the platform `(os, arch, variant)` (variant empty: any). Returns the
/// top-level document as served, the chosen manifest as served, and the
/// chosen manifest parsed.
pub fn fetch_manifest(
    repo: &Repo,
    name: &str,
    reference: &str,
    (os, arch, variant): (&str, &str, &str),
) -> Result<(FetchedManifest, FetchedManifest, image::Manifest)> {
    let top = repo.manifest(reference)?;
    let mut fetched = FetchedManifest {
        bytes: top.bytes.clone(),
        content_type: top.content_type.clone(),
        digest: top.digest.clone(),
    };
    let known = |ct: &Option<String>| {
        ct.as_deref()
            .filter(|c| {
                [
                    image::OCI_MANIFEST,
                    image::OCI_INDEX,
                    image::DOCKER_MANIFEST,
                    image::DOCKER_LIST,
                    image::DOCKER_SCHEMA1,
                    image::DOCKER_SCHEMA1_SIGNED,
                ]
                .contains(c)
            })
            .map(str::to_string)
    };
    let mut doc =
        image::parse_document(&format!("manifest of {name}"), &fetched.bytes, known(&fetched.content_type).as_deref())?;
    let mut depth = 0;
    let manifest = loop {
        match doc {
            Document::Manifest(m) => break m,
            Document::Index(ix) => {
                depth += 1;
                if depth > 4 {
                    bail!("indexes nested too deep");
                }
                let pick = ix
                    .manifests
                    .iter()
                    .find(|d| {
                        d.platform.as_ref().is_some_and(|p| {
                            p.os == os && p.architecture == arch && (variant.is_empty() || p.variant == variant)
                        })
                    })
                    .cloned()
                    .with_context(|| {
                        let have: Vec<String> = ix
                            .manifests
                            .iter()
                            .filter_map(|d| d.platform.as_ref())
                            .map(|p| {
                                if p.variant.is_empty() {
                                    format!("{}/{}", p.os, p.architecture)
                                } else {
                                    format!("{}/{}/{}", p.os, p.architecture, p.variant)
                                }
                            })
                            .collect();
                        format!(
                            "no image for {os}/{arch} in its index (it has {}); choose one with --platform",
                            have.join(", ")
                        )
                    })?;
                fetched = repo.manifest(pick.digest.as_str())?;
                if fetched.bytes.len() as u64 != pick.size {
                    bail!("manifest {} is {} bytes, the index says {}", pick.digest, fetched.bytes.len(), pick.size);
                }
                doc = image::parse_document(
                    &format!("manifest {}", pick.digest),
                    &fetched.bytes,
                    Some(&pick.media_type),
                )?;
            }
        }
    };
    Ok((top, fetched, manifest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    /// A layer of a few hundred files of mixed sizes, as a tar.
    fn tar_layer(seed: u64) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut x = seed | 1;
        for n in 0..300u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40_000) as usize;
            let data: Vec<u8> =
                (0..len).map(|k| if k % 7 == 0 { (x >> (k % 56)) as u8 } else { b'a' + (k % 13) as u8 }).collect();
            let mut h = tar::Header::new_gnu();
            h.set_size(len as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, format!("dir{}/file{n}", n % 9), &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gzip(raw: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(raw).unwrap();
        gz.finish().unwrap()
    }

    /// The index file `b` writes.
    fn file_of(d: &Digest, b: &crate::mount::scan::BuiltIndex) -> Vec<u8> {
        let mut v = Vec::new();
        b.write_to(d, &mut v).unwrap();
        v
    }

    /// The index file a mount's scan of the stored blob writes, its
    /// windows held in memory as the scan did before it streamed them.
    fn scanned(d: &Digest, blob: &[u8]) -> (Vec<u8>, u64) {
        let c = Compression::sniff(blob);
        let b = crate::mount::scan::index_layer(d, 2, std::io::Cursor::new(blob.to_vec()), c, None).unwrap();
        (file_of(d, &b), b.size)
    }

    /// What the pull's tap makes of the same bytes handed over in pieces.
    fn streamed(d: &Digest, blob: &[u8], pieces: &[usize]) -> (Option<u64>, Option<(Vec<u8>, u64)>) {
        let scratch = crate::testdir::TestDir::new("pull-tap");
        let windows = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(scratch.join("windows"))
            .unwrap();
        let (mut tap, indexer) = Tap::start(d, 2, Some(windows));
        let (mut at, mut k) = (0, 0);
        while at < blob.len() {
            let n = pieces.get(k % pieces.len().max(1)).copied().unwrap_or(4096).clamp(1, blob.len() - at);
            tap.feed(&blob[at..at + n]);
            at += n;
            k += 1;
        }
        let seen = tap.finish();
        (seen, indexer.join().unwrap().map(|b| (file_of(d, &b), b.size)))
    }

    #[test]
    fn index_built_while_streaming_equals_the_scanned_one() {
        let raw = tar_layer(7);
        let cases = [("gzip", gzip(&raw)), ("zstd", zstd::encode_all(&raw[..], 3).unwrap())];
        for (name, blob) in cases {
            let d = Digest::of_bytes(&blob);
            let want = scanned(&d, &blob);
            for pieces in [vec![1 << 20], vec![3, 70_000, 1], vec![256 * 1024], vec![65_536, 7]] {
                let (seen, got) = streamed(&d, &blob, &pieces);
                assert_eq!(seen, Some(blob.len() as u64), "{name}: every byte reached the indexer");
                let got = got.unwrap_or_else(|| panic!("{name}: no index built"));
                assert!(got.0 == want.0, "{name} {pieces:?}: the streamed index differs from the scanned one");
                assert_eq!(got.1, raw.len() as u64, "{name}: uncompressed size");
            }
            // The file decodes as a mount reads it.
            let bytes = crate::layerindex::SharedBytes::from_vec(want.0.clone());
            crate::mount::index_file::decode(&bytes, &d, 2).unwrap();
        }
    }

    #[test]
    fn plain_and_broken_layers_get_no_streamed_index() {
        let raw = tar_layer(3);
        let d = Digest::of_bytes(&raw);
        assert_eq!(streamed(&d, &raw, &[10_000]).1, None, "a plain tar is measured from its file");
        let gz = gzip(&raw);
        let cut = &gz[..gz.len() / 2];
        assert_eq!(streamed(&d, cut, &[10_000]).1, None, "half a gzip stream is no index");
        let mut bad = gz.clone();
        bad[gz.len() / 3] ^= 0xff;
        bad[gz.len() / 3 + 1] ^= 0x55;
        let (seen, got) = streamed(&d, &bad, &[10_000]);
        assert!(got.is_none() || seen != Some(bad.len() as u64), "a corrupt stream is never taken as indexed");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn any_chunking_gives_the_same_index(pieces in proptest::collection::vec(1usize..300_000, 1..6), seed in 1u64..1000) {
            let raw = tar_layer(seed);
            let blob = gzip(&raw);
            let d = Digest::of_bytes(&blob);
            let want = scanned(&d, &blob);
            let (_, got) = streamed(&d, &blob, &pieces);
            prop_assert!(got.map(|g| g.0) == Some(want.0));
        }
    }
}
