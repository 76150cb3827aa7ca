//! Lazy pulls: the eStargz and zstd:chunked layers of an image stay in the registry and a
//! mount reads them on demand (`mount::lazy`); here the TOC is fetched and
//! checked at pull time, and a later full pull takes what the mount fetched.

use crate::digest::{Digest, Hasher};
use crate::image::Descriptor;
use crate::layerindex::estargz::TOC_DIGEST_ANNOTATION;
use crate::layerindex::zstd_chunked;
use crate::mount::lazy::{read_toc_layer, Fetch, TocAt};
use crate::registry::Repo;
use crate::store::{RangeCache, StorePaths};
use anyhow::{Context, Result};
use std::io::{self, Write};

/// Where the TOC of a lazily readable layer is: an eStargz layer (a gzip
/// layer whose descriptor has the TOC digest annotation) or a zstd:chunked
/// one (a zstd layer with the manifest checksum and position annotations);
/// `None` for other layers, which are pulled whole (so are layers whose
/// annotations cannot be read: they are hints, the blob's digest decides).
pub fn toc_at(l: &Descriptor) -> Option<TocAt> {
    if l.media_type.ends_with("gzip") {
        let v = l.annotations.iter().find(|(k, _)| k == TOC_DIGEST_ANNOTATION)?;
        return Digest::parse(&v.1).ok().map(TocAt::Estargz);
    }
    if l.media_type.ends_with("zstd") {
        let (d, pos) = zstd_chunked::toc_of(&l.annotations)?.ok()?;
        return Some(TocAt::ZstdChunked(d, Some(pos)));
    }
    None
}

/// Reads a layer through a `Repo` already connected.
struct RepoFetch<'a> {
    repo: &'a Repo<'a>,
    digest: &'a Digest,
}

impl Fetch for RepoFetch<'_> {
    fn fetch(&self, start: u64, end: u64) -> io::Result<Vec<u8>> {
        self.repo.blob_range(self.digest, start, end).map_err(io::Error::other)
    }
}

/// Fetches and checks the TOC of lazy layer `l` at pull time, keeping it
/// in the store's lazy cache for the mount.
/// Its tree and chunk table are checked now and written to
/// `lazy/<hex>.index`, so a mount maps them instead of reading the TOC.
pub fn fetch_toc(paths: &StorePaths, repo: &Repo, l: &Descriptor, at: &TocAt) -> Result<()> {
    let cache = RangeCache::open(paths, &l.digest, l.size).context("opening the lazy cache")?;
    let fetch = RepoFetch { repo, digest: &l.digest };
    let tl = read_toc_layer(&cache, &fetch, &l.digest, l.size, at, 0, &l.digest.to_string())?;
    crate::mount::lazy::write_index(paths, &l.digest, &tl).context("writing the layer's index")?;
    Ok(())
}

/// Removes what a lazy mount fetched of blob `d` (once the blob is stored,
/// or its image gone).
pub fn forget_cache(paths: &StorePaths, d: &Digest) {
    let (data, ranges) = paths.lazy_cache(d);
    let _ = std::fs::remove_file(paths.lazy_index(d));
    let _ = std::fs::remove_file(ranges);
    let _ = std::fs::remove_file(data);
}

/// Before a full pull of blob `d`: when a lazy mount fetched some of it,
/// writes the whole blob to its partial download file from those bytes
/// and Range requests for the rest, checking the digest. A mismatch drops
/// the cache and leaves the download to start afresh; a partial file that
/// exists already (a download in progress or interrupted) is left alone.
pub fn seed_download(paths: &StorePaths, repo: &Repo, d: &Digest, size: u64) -> Result<()> {
    let (data_path, _) = paths.lazy_cache(d);
    if !data_path.exists() {
        return Ok(());
    }
    let part = paths.partial_download(d);
    if std::fs::metadata(&part).is_ok_and(|m| m.len() > 0) {
        return Ok(());
    }
    let cache = RangeCache::open(paths, d, size).context("opening the lazy cache")?;
    let held = cache.ranges();
    if held.is_empty() {
        return Ok(());
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&part)
        .with_context(|| format!("opening {}", part.display()))?;
    if file.try_lock().is_err() {
        // Another process is downloading it.
        return Ok(());
    }
    file.set_len(0)?;
    let mut hasher = Hasher::new();
    let mut at = 0u64;
    let mut put = |bytes: &[u8], file: &mut std::fs::File| -> Result<()> {
        hasher.update(bytes);
        file.write_all(bytes).map_err(crate::store::io_err("writing", &part))?;
        Ok(())
    };
    const STEP: u64 = 8 << 20;
    let mut spans: Vec<(u64, u64, bool)> = Vec::new();
    for &(s, e) in &held {
        if s > at {
            spans.push((at, s, false));
        }
        spans.push((s, e, true));
        at = e;
    }
    if at < size {
        spans.push((at, size, false));
    }
    for (s, e, cached) in spans {
        let mut pos = s;
        while pos < e {
            let end = (pos + STEP).min(e);
            let bytes = if cached {
                let mut b = vec![0u8; (end - pos) as usize];
                cache.read_held(pos, &mut b)?;
                b
            } else {
                repo.blob_range(d, pos, end)?
            };
            put(&bytes, &mut file)?;
            pos = end;
        }
    }
    if hasher.finish() != *d {
        // Something in the cache was wrong: nothing of it is used.
        drop(file);
        let _ = std::fs::remove_file(&part);
        forget_cache(paths, d);
    }
    Ok(())
}
