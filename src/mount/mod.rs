//! `img mount`: an image's merged root filesystem served through FUSE
//! straight from the layer blobs in the store. `scan` reads each layer's
//! entries (with the offsets of their data in the uncompressed stream),
//! `img_fuse::Tree` merges them, and `source` reads the bytes on demand.
//! One background process serves each mount, recorded in the index.

pub mod bundle;
pub mod embedded;
pub mod index_file;
pub mod lazy;
pub mod scan;
pub mod source;
pub mod upper;

pub use lazy::stream;

use crate::digest::Digest;
use crate::layerindex::SharedBytes;
use crate::store::index::{ImageRecord, MountRecord};
use crate::store::{Compression, Store};
use anyhow::{bail, Context, Result};
use img_fuse::{ImageFs, Tree};
use source::StoreSource;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The filesystem of stored layers `layers` (bottom first), named `label`
/// in errors.
pub fn layers_fs(store: &Store, layers: &[Digest], label: &str) -> Result<ImageFs<StoreSource>> {
    layers_fs_with(store, layers, label, &[])
}

/// [`layers_fs`] with an empty directory at each of `mount_points` the
/// layers lack (see [`Tree::build_with_dirs`]): the filesystem of a
/// complete image, ready to serve. (A partial image needs registry
/// options: see [`partial_fs`].)
pub fn layers_fs_with(
    store: &Store,
    layers: &[Digest],
    label: &str,
    mount_points: &[Vec<u8>],
) -> Result<ImageFs<StoreSource>> {
    let mut scanned = Vec::new();
    let mut sources = Vec::new();
    for (i, d) in layers.iter().enumerate() {
        let (layer, spec) = stored_layer(store, d, i)?;
        scanned.push(layer);
        sources.push(spec);
    }
    let tree = Tree::build_with_dirs(scanned, mount_points).with_context(|| format!("mounting {label}"))?;
    let source = StoreSource::open(sources).context("opening the layer blobs")?;
    Ok(ImageFs::new(tree, source))
}

/// [`ensure_indexes`] for stored layers `layers` (bottom first).
pub fn ensure_layer_indexes(store: &Store, layers: &[Digest]) -> Result<()> {
    for (i, d) in layers.iter().enumerate() {
        ensure_index(store, d, i)?;
    }
    Ok(())
}

/// Builds the index file of stored layer `d` (number `i` in its image)
/// unless a current one is there.
fn ensure_index(store: &Store, d: &Digest, i: usize) -> Result<()> {
    let mut head = [0u8; 12];
    let current = std::fs::File::open(store.layer_index_path(d))
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|()| index_file::has_current_header(&head));
    if !current {
        let (f, c) = open_layer(store, d)?;
        build_index(store, d, i, f, c)?;
    }
    Ok(())
}

/// Stored layer `d` (number `i` in its image): its entries, and how to
/// open its blob for reading.
fn stored_layer(store: &Store, d: &Digest, i: usize) -> Result<(img_fuse::Layer, source::LayerSpec)> {
    let (ix, compression) = layer_entries(store, d, i)?;
    let spec = source::LayerSpec { path: store.blob_path(d), compression, chunks: ix.chunks, access: ix.access };
    Ok((ix.layer, spec))
}

/// The filesystem of partial image `img`: its stored layers as any
/// image's, the others read from their registry
/// through their TOC (with the client options `options_for` gives for
/// each registry host), fetches counted in `stats`. Layers with a prefetch
/// landmark start fetching the files before it in the background.
/// `mount_points` are added as [`image_fs`] adds them, but to a tree that
/// grows while layers stream (which cannot know what is missing).
/// With `whole`, every layer read through its TOC is fetched whole in the
/// background, on threads added there.
pub fn partial_fs(
    store: &Store,
    img: &ImageRecord,
    options_for: &dyn Fn(&str) -> Result<crate::registry::ClientOptions>,
    stats: std::sync::Arc<lazy::Stats>,
    mount_points: &[Vec<u8>],
    mut whole: Option<&mut Vec<std::thread::JoinHandle<()>>>,
) -> Result<ImageFs<StoreSource>> {
    use std::sync::Arc;
    let manifest = store.read_blob(&img.manifest_digest, crate::image::MAX_MANIFEST_SIZE)?;
    let crate::image::Document::Manifest(manifest) =
        crate::image::parse_document("the manifest", &manifest, Some(&img.manifest_media_type))?
    else {
        bail!("the manifest of {} is an index", img.id);
    };
    let all_remote = store.index().remote_layers(&img.id)?;
    // One connection per repository, checked now: options that cannot work
    // are an error here; a registry that is away only fails the reads of
    // bytes not fetched yet.
    let mut repos: Vec<(String, Arc<lazy::RegistrySource>)> = Vec::new();
    for r in &all_remote {
        if repos.iter().any(|(s, _)| *s == r.source) {
            continue;
        }
        let src = lazy::RegistrySource::new(&r.source, options_for)?;
        match src.connect() {
            Ok(()) => {}
            Err(e @ crate::registry::RegistryError::Http { .. }) => {
                eprintln!("img mount: {} does not answer yet: {e}", r.source)
            }
            Err(e) => return Err(anyhow::Error::from(e)).with_context(|| format!("layers are read from {}", r.source)),
        }
        repos.push((r.source.clone(), src));
    }
    // Layers without a TOC are streamed; the others are built from their
    // TOCs on threads of their own.
    let (streamed, remote): (Vec<_>, Vec<_>) = all_remote.into_iter().partition(|r| r.toc_digest.is_empty());
    type Built = Result<(img_fuse::Layer, Arc<lazy::RemoteLayer>, Option<u64>)>;
    let paths = store.paths();
    let id = img.id.clone();
    let mut built: Vec<(usize, Built)> = std::thread::scope(|s| {
        let handles: Vec<_> = remote
            .iter()
            .map(|r| {
                let src = repos.iter().find(|(n, _)| *n == r.source).map(|(_, s)| s.clone());
                let stats = stats.clone();
                let (paths, id) = (&paths, &id);
                (
                    r.position,
                    s.spawn(move || -> Built {
                        let i = r.position;
                        let src = src.context("no source")?;
                        let at = lazy::toc_at_of_row(r).with_context(|| format!("layer {i} of {id}"))?;
                        let fetch: Arc<dyn lazy::Fetch> = Arc::new(src.layer(r.digest.clone()));
                        let cache = crate::store::RangeCache::open(paths, &r.digest, r.size)
                            .context("opening the lazy cache")?;
                        let label = format!("{} (layer {i})", r.digest);
                        // The tree and chunk table the pull wrote, or the TOC
                        // read again (and the index written for next time).
                        let (layer, (chunks, toc_file, prefetch_end)) = match lazy::read_index(paths, &r.digest, i) {
                            Some(got) => got,
                            None => {
                                let tl =
                                    lazy::read_toc_layer(&cache, fetch.as_ref(), &r.digest, r.size, &at, i, &label)?;
                                let _ = lazy::write_index(paths, &r.digest, &tl);
                                (tl.layer, (tl.chunks, tl.toc_file, tl.prefetch_end))
                            }
                        };
                        let toc_file = toc_file
                            .map(|(virt, _)| lazy::TocFileAt::new(virt, r.digest.clone(), r.size, at.digest().clone()));
                        let layer_src =
                            lazy::RemoteLayer::new(label, chunks, fetch, Some(cache), stats).with_toc_file(toc_file);
                        Ok((layer, Arc::new(layer_src), prefetch_end))
                    }),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(i, h)| (i, h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("building layer {i} failed")))))
            .collect()
    });
    let mut scanned = Vec::new();
    let mut sources = Vec::new();
    let mut prefetch = Vec::new();
    let limit = lazy::lazy_timeout();
    let grow = Arc::new(img_fuse::Grow::new(manifest.layers.len(), limit));
    let mut jobs = Vec::new();
    let diff_ids = if streamed.is_empty() {
        Vec::new()
    } else {
        let c = store.read_blob(&img.id, crate::image::MAX_CONFIG_SIZE)?;
        crate::image::parse_config(&format!("config of {}", img.id), &c)?.diff_ids
    };
    for (i, l) in manifest.layers.iter().enumerate() {
        if let Some(r) = streamed.iter().find(|r| r.position == i) {
            let label = format!("{} (layer {i})", r.digest);
            let src = repos.iter().find(|(n, _)| *n == r.source).map(|(_, s)| s.clone()).context("no source")?;
            let layer = Arc::new(
                stream::StreamLayer::new(i, label, &store.ingest_dir(), grow.clone(), limit)
                    .context("making the spill file of a streamed layer")?,
            );
            let cache = crate::store::RangeCache::open(&paths, &r.digest, r.size).context("opening the lazy cache")?;
            let diff_id =
                diff_ids.get(i).cloned().with_context(|| format!("the config of {} has no DiffID {i}", img.id))?;
            let digest = r.digest.clone();
            jobs.push(stream::Job {
                layer: layer.clone(),
                open: Arc::new(move |at| src.open_from(&digest, at).map_err(std::io::Error::other)),
                cache: Some(Arc::new(cache)),
                digest: r.digest.clone(),
                size: r.size,
                diff_id,
                stats: stats.clone(),
            });
            scanned.push(None);
            sources.push(source::LayerOpen::Stream(layer));
            continue;
        }
        let Some(pos) = built.iter().position(|(n, _)| *n == i) else {
            let (layer, spec) = stored_layer(store, &l.digest, i)?;
            scanned.push(Some(layer));
            sources.push(source::LayerOpen::Stored(spec));
            continue;
        };
        let (layer, remote_layer, prefetch_end) = built.swap_remove(pos).1?;
        prefetch.push((remote_layer.clone(), prefetch_end));
        scanned.push(Some(layer));
        sources.push(source::LayerOpen::Remote(remote_layer));
    }
    let source = StoreSource::open_mixed(sources).context("opening the layer blobs")?;
    let fetch_whole = whole.is_some();
    for (layer, end) in prefetch.into_iter().filter(|(_, end)| end.is_some() || fetch_whole) {
        let h = std::thread::spawn(move || {
            if let Some(Err(e)) = end.map(|end| layer.prefetch(end)) {
                eprintln!("prefetching: {e}");
            }
            if let Some(Err(e)) = fetch_whole.then(|| layer.fetch_all()) {
                eprintln!("img mount: fetching a layer whole: {e}");
            }
        });
        if let Some(w) = whole.as_mut() {
            w.push(h);
        }
    }
    if jobs.is_empty() {
        let scanned: Vec<img_fuse::Layer> = scanned.into_iter().flatten().collect();
        let tree = Tree::build_with_dirs(scanned, mount_points).with_context(|| format!("mounting {}", img.id))?;
        return Ok(ImageFs::new(tree, source));
    }
    // The layers at hand are in the tree at once; the streamed ones grow
    // it as their entries come.
    for (i, l) in scanned.into_iter().enumerate() {
        if let Some(l) = l {
            grow.feed(i, l);
            grow.finish(i);
        }
    }
    for j in jobs {
        stream::start(j).context("starting a layer's stream")?;
    }
    Ok(ImageFs::growing(grow, source))
}

/// Builds the index files that image `img` lacks, so that the process
/// serving its mount only maps them: the memory a build takes is then
/// given back when this (short-lived) process ends, not kept by the server.
pub fn ensure_indexes(store: &Store, img: &ImageRecord) -> Result<()> {
    if img.kind == crate::store::index::ImageKind::Embedded {
        return Ok(());
    }
    // A partial image's stored layers are indexed as any image's.
    let stored: Vec<(usize, Digest)> = if img.kind == crate::store::index::ImageKind::Partial {
        let remote = store.index().remote_layers(&img.id)?;
        let mut all: Vec<(usize, Digest)> = Vec::new();
        let mut n = 0;
        for (role, d) in store.index().image_blobs(&img.id)? {
            if role != "layer" {
                continue;
            }
            while remote.iter().any(|r| r.position == n) {
                n += 1;
            }
            all.push((n, d));
            n += 1;
        }
        all
    } else {
        let layers = store.index().image_blobs(&img.id)?.into_iter().filter(|(r, _)| r == "layer");
        layers.map(|(_, d)| d).enumerate().collect()
    };
    for (i, d) in &stored {
        ensure_index(store, d, *i)?;
    }
    Ok(())
}

/// The index of layer `d` (number `i` in its image) and its compression:
/// from its index file, or scanned from the blob (and the index file
/// written for next time).
pub fn layer_entries(store: &Store, d: &Digest, i: usize) -> Result<(index_file::LayerIndex, Compression)> {
    let (f, c) = open_layer(store, d)?;
    if let Some(ix) = mapped_index(store, d, i) {
        return Ok((ix, c));
    }
    let built = build_index(store, d, i, f, c)?;
    // Served from the file just written, as a warm mount is: the windows
    // stay in the page cache instead of this process's memory.
    if let Some(ix) = mapped_index(store, d, i) {
        return Ok((ix, c));
    }
    Ok((built.into_memory().with_context(|| format!("reading the index of layer {d}"))?, c))
}

/// Layer `d`'s blob, buffered, and its compression.
fn open_layer(store: &Store, d: &Digest) -> Result<(BufReader<std::fs::File>, Compression)> {
    let mut f = BufReader::with_capacity(256 * 1024, store.open_blob(d)?);
    let c = Compression::sniff(f.fill_buf().with_context(|| format!("reading layer {d}"))?);
    Ok((f, c))
}

/// Layer `d`'s index file, mapped and decoded, if it is there and sound.
fn mapped_index(store: &Store, d: &Digest, i: usize) -> Option<index_file::LayerIndex> {
    index_file::decode(&map_index(&store.layer_index_path(d))?, d, i).ok()
}

/// Scans layer `d` (blob `f`, compressed with `c`) and writes its index
/// file (a failure to write it is only a warning: the index is returned).
fn build_index(
    store: &Store,
    d: &Digest,
    i: usize,
    f: BufReader<std::fs::File>,
    c: Compression,
) -> Result<scan::BuiltIndex> {
    let built = scan::index_layer(d, i, f, c, store.paths().scratch_file().ok())?;
    if let Err(e) = store.write_layer_index(d, &mut |w| built.write_to(d, w)) {
        eprintln!("warning: keeping the index of layer {d}: {e}");
    }
    Ok(built)
}

/// An index file, mapped: a mount reads the windows of its random-access
/// index from the page cache when it needs them, and never copies them.
pub(crate) fn map_index(path: &Path) -> Option<SharedBytes> {
    let map = img_sys::fs::map_index_file(path).ok()?;
    Some(SharedBytes::new(std::sync::Arc::new(map)))
}

/// Where a mount goes when no directory is given: under the store.
pub fn default_mountpoint(store: &Store, img: &ImageRecord) -> PathBuf {
    store.paths().default_mountpoint(&img.id)
}

/// Every mountpoint now (from /proc/self/mountinfo).
fn mountpoints() -> Vec<String> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    info.lines().filter_map(|l| l.split(' ').nth(4)).map(unescape_mountinfo).collect()
}

/// Is `dir` a mountpoint now?
pub fn is_mounted(dir: &Path) -> bool {
    let want = dir.to_string_lossy();
    mountpoints().iter().any(|m| *m == want)
}

fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v as char);
            i += 4;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Is process `pid` alive?
pub fn pid_alive(pid: i64) -> bool {
    pid > 0
        && Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
            .unwrap_or(false)
}

/// A recorded mount and what is true of it now.
#[derive(Debug, Clone)]
pub struct MountState {
    pub record: MountRecord,
    /// The serving process is alive.
    pub serving: bool,
    /// The directory is a mountpoint.
    pub mounted: bool,
}

pub fn mounts(store: &Store) -> Result<Vec<MountState>> {
    let records = store.index().mounts()?;
    let now = if records.is_empty() { Vec::new() } else { mountpoints() };
    Ok(records
        .into_iter()
        .map(|record| {
            let mounted = now.contains(&record.mountpoint);
            // Pid 0: kernel mounts with no process serving them (embedded images).
            let serving = if record.pid == 0 { mounted } else { pid_alive(record.pid) };
            MountState { record, serving, mounted }
        })
        .collect())
}

/// The directories of a writable mount: the FUSE tree (`lower`), the
/// changes (`upper`) and overlayfs's scratch space (`work`).
/// Where the process serving a lazy mount at `mountpoint` reports what it
/// fetched (`img mounts --format json`).
pub fn stats_path(store: &Store, mountpoint: &Path) -> PathBuf {
    let key = Digest::of_bytes(mountpoint.as_os_str().as_encoded_bytes());
    store.paths().mount_stats(&key)
}

#[derive(Debug, Clone)]
pub struct StateDir(pub PathBuf);

impl StateDir {
    /// The state directory of a writable mount at `mountpoint`.
    pub fn for_mountpoint(store: &Store, mountpoint: &Path) -> StateDir {
        let key = Digest::of_bytes(mountpoint.as_os_str().as_encoded_bytes());
        // Absolute: the row is read by commands run from other directories.
        let root = std::path::absolute(store.root()).unwrap_or_else(|_| store.root().to_path_buf());
        StateDir(crate::store::StorePaths::new(&root).writable_state(&key))
    }
    pub fn lower(&self) -> PathBuf {
        self.0.join("lower")
    }
    pub fn upper(&self) -> PathBuf {
        self.0.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.0.join("work")
    }
}

/// Does the writable mount `m` hold changes made since its last commit?
pub fn has_uncommitted_changes(m: &MountRecord) -> Result<bool> {
    if !m.writable || m.state_dir.is_empty() {
        return Ok(false);
    }
    let fp = upper::fingerprint(&StateDir(PathBuf::from(&m.state_dir)).upper())?;
    Ok(!fp.is_empty() && fp != m.committed)
}

/// Unmounts a recorded mount if it is still mounted (lazily when its
/// server is dead) and forgets it, with a writable mount's changes. A
/// writable mount with changes not yet committed is refused unless
/// `discard`. The server forgets a mount when it ends; this covers a server
/// that died.
/// Refuses (with what to do) if `m` holds changes not committed.
pub fn refuse_uncommitted(m: &MountRecord) -> Result<()> {
    let dir = &m.mountpoint;
    if has_uncommitted_changes(m)? {
        bail!(
            "{dir} has changes that are not committed; run img commit {dir} IMAGE to keep them, or img umount --discard {dir}"
        );
    }
    Ok(())
}

/// The log of the process serving the mount at `mountpoint`.
pub fn log_path(store: &Store, mountpoint: &Path) -> PathBuf {
    let key = Digest::of_bytes(mountpoint.as_os_str().as_encoded_bytes());
    store.paths().mount_log(&key)
}

pub fn unmount(kernel: &dyn Kernel, store: &mut Store, m: &MountState, discard: bool) -> Result<()> {
    let dir = &m.record.mountpoint;
    if !discard {
        refuse_uncommitted(&m.record)?;
    }
    let bundle = bundle::record_of(store.root(), Path::new(dir));
    detach(kernel, m)?;
    if let Some(note) = bundle.and_then(|b| bundle::forget(store.root(), Path::new(dir), &b)) {
        eprintln!("note: {note}");
    }
    if m.record.writable && !m.record.state_dir.is_empty() {
        wait_for_exit(m.record.pid);
        let state = Path::new(&m.record.state_dir);
        if let Err(e) = std::fs::remove_dir_all(state) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(e).with_context(|| format!("removing the changes of {dir} in {}", state.display()));
            }
        }
    }
    // This record only: another mount may be at the same directory by now.
    store.index_mut().remove_mount_of(dir, m.record.pid)?;
    Ok(())
}

/// Takes a mount's directories out of the tree (the overlay first, then
/// the FUSE tree under it), lazily when the server is dead.
pub fn detach(kernel: &dyn Kernel, m: &MountState) -> Result<()> {
    // An embedded image's layers are mounts under its root: detached with it.
    let how = if m.serving && m.record.pid != 0 { img_sys::Unmount::Normal } else { img_sys::Unmount::Lazy };
    let dir = Path::new(&m.record.mountpoint);
    if m.record.writable && !m.record.state_dir.is_empty() {
        let state = StateDir(PathBuf::from(&m.record.state_dir));
        return upper::unmount_writable(kernel, &state, dir, how, m.mounted, is_mounted).map_err(busy_hint);
    }
    if m.mounted {
        kernel.unmount(dir, how).map_err(busy_hint)?;
    }
    Ok(())
}

fn busy_hint(e: img_sys::MountError) -> anyhow::Error {
    let s = e.to_string();
    if s.contains("busy") {
        anyhow::anyhow!("{s}; close the files and shells using it and try again")
    } else {
        anyhow::Error::new(e)
    }
}

/// Waits (a few seconds at most) for a serving process to end after its
/// mount went away, so that it is not still writing when its state goes.
fn wait_for_exit(pid: i64) {
    for _ in 0..100 {
        if !pid_alive(pid) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

use img_sys::Kernel;
