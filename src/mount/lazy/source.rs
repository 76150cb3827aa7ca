//! The bytes of a lazy layer for the filesystem: each chunk from memory,
//! the range cache or the registry, checked against its sha256 before it
//! is served; and the TOC's own file, read when first asked for.

use super::toc::{read_toc, ChunkRef, Codec};
use super::{Fetch, Stats};
use crate::digest::Digest;
use crate::store::RangeCache;
use sha2::{Digest as _, Sha256};
use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// Decoded chunks kept in memory, most recent first.
const DECODED: usize = 8;

/// Where the TOC's own file lies in a layer's virtual stream, and what
/// its bytes are checked against when first read.
pub struct TocFileAt {
    pub virt: u64,
    /// The layer blob and its size; the TOC digest from the manifest.
    pub layer: Digest,
    pub size: u64,
    pub want: Digest,
    json: Mutex<Option<Arc<Vec<u8>>>>,
}

impl TocFileAt {
    pub fn new(virt: u64, layer: Digest, size: u64, want: Digest) -> TocFileAt {
        TocFileAt { virt, layer, size, want, json: Mutex::new(None) }
    }
}

/// A layer read from its registry, chunk by chunk.
pub struct RemoteLayer {
    label: String,
    chunks: Vec<ChunkRef>,
    /// The TOC's own file: where it starts in the virtual stream, and how
    /// to get its bytes (read from the cache, or fetched, on first use).
    toc_file: Option<TocFileAt>,
    fetch: Arc<dyn Fetch>,
    cache: Option<RangeCache>,
    decoded: Mutex<Vec<(usize, Arc<Vec<u8>>)>>,
    stats: Arc<Stats>,
}

impl RemoteLayer {
    pub fn new(
        label: String,
        chunks: Vec<ChunkRef>,
        fetch: Arc<dyn Fetch>,
        cache: Option<RangeCache>,
        stats: Arc<Stats>,
    ) -> RemoteLayer {
        RemoteLayer { label, chunks, toc_file: None, fetch, cache, decoded: Mutex::new(Vec::new()), stats }
    }

    /// Serves the TOC's own file as `at` says.
    pub fn with_toc_file(mut self, at: Option<TocFileAt>) -> RemoteLayer {
        self.toc_file = at;
        self
    }

    /// The TOC's JSON, read (and checked) when first asked for.
    fn toc_json(&self, at: &TocFileAt) -> io::Result<Arc<Vec<u8>>> {
        let mut slot = at.json.lock().map_err(|_| io::Error::other("TOC lock poisoned"))?;
        if let Some(j) = slot.as_ref() {
            return Ok(j.clone());
        }
        let cache = self.cache.as_ref().ok_or_else(|| io::Error::other("no cache"))?;
        let (file, _) = read_toc(cache, self.fetch.as_ref(), &at.layer, at.size, &at.want)
            .map_err(|e| io::Error::other(format!("{e:#}")))?;
        let j = Arc::new(file.json);
        *slot = Some(j.clone());
        Ok(j)
    }

    /// Fetches `0..end` of the blob into the cache in one request (the
    /// files before a prefetch landmark), unless all of it is there.
    pub fn prefetch(&self, end: u64) -> io::Result<()> {
        let Some(cache) = &self.cache else { return Ok(()) };
        if end == 0 || cache.get(0, end)?.is_some() {
            return Ok(());
        }
        let bytes = self.fetch.fetch(0, end)?;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats.fetched_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        cache.put(0, &bytes)
    }

    fn remembered(&self, i: usize) -> Option<Arc<Vec<u8>>> {
        let d = self.decoded.lock().ok()?;
        d.iter().find(|(n, _)| *n == i).map(|(_, b)| b.clone())
    }

    fn remember(&self, i: usize, data: Arc<Vec<u8>>) {
        if let Ok(mut d) = self.decoded.lock() {
            d.retain(|(n, _)| *n != i);
            d.insert(0, (i, data));
            d.truncate(DECODED);
        }
    }

    /// Chunk `i`, checked against its digest: from memory, the cache, or
    /// the registry (then kept in the cache).
    fn chunk(&self, i: usize) -> io::Result<Arc<Vec<u8>>> {
        if let Some(d) = self.remembered(i) {
            return Ok(d);
        }
        let c = &self.chunks[i];
        if c.codec == Codec::Zeros {
            return Ok(Arc::new(vec![0u8; c.len as usize]));
        }
        if let Some(cache) = &self.cache {
            if let Some(comp) = cache.get(c.comp, c.comp_end)? {
                if let Ok(data) = inflate_chunk(&comp, c) {
                    self.stats.cache_bytes.fetch_add(comp.len() as u64, Ordering::Relaxed);
                    let data = Arc::new(data);
                    self.remember(i, data.clone());
                    return Ok(data);
                }
                // A damaged cache is fetched again and overwritten.
            }
        }
        let comp = self.fetch.fetch(c.comp, c.comp_end).inspect_err(|_| {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        })?;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats.fetched_bytes.fetch_add(comp.len() as u64, Ordering::Relaxed);
        let data = inflate_chunk(&comp, c).map_err(|why| {
            io::Error::other(format!(
                "layer {}: bytes {}..{} from the registry: {why}; the registry serves other bytes than the image's table of contents says",
                self.label, c.comp, c.comp_end
            ))
        })?;
        if let Some(cache) = &self.cache {
            // A cache that cannot be written costs a fetch next time, no more.
            let _ = cache.put(c.comp, &comp);
        }
        let data = Arc::new(data);
        self.remember(i, data.clone());
        Ok(data)
    }

    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(at) = self.toc_file.as_ref().filter(|t| offset >= t.virt) {
            let json = self.toc_json(at)?;
            let start = (offset - at.virt) as usize;
            let n = buf.len().min(json.len().saturating_sub(start));
            buf[..n].copy_from_slice(&json[start..start + n]);
            return Ok(n);
        }
        let i = self.chunks.partition_point(|c| c.virt + c.len <= offset);
        let Some(c) = self.chunks.get(i).filter(|c| c.virt <= offset) else { return Ok(0) };
        let data = self.chunk(i)?;
        let start = (offset - c.virt) as usize;
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }
}

/// The chunk `c` from the bytes of its gzip member(s) or zstd frame(s),
/// checked.
fn inflate_chunk(comp: &[u8], c: &ChunkRef) -> Result<Vec<u8>, String> {
    let (mut dec, what): (Box<dyn Read + '_>, &str) = match c.codec {
        Codec::Gzip => (Box::new(flate2::read::MultiGzDecoder::new(comp)), "gzip member"),
        Codec::Zstd => {
            let mut z = zstd::stream::read::Decoder::with_buffer(comp).map_err(|e| e.to_string())?;
            z.window_log_max(27).map_err(|e| e.to_string())?;
            (Box::new(z), "zstd frame")
        }
        Codec::Zeros => return Ok(vec![0u8; c.len as usize]),
    };
    let skipped = io::copy(&mut (&mut dec).take(c.inner), &mut io::sink()).map_err(|e| e.to_string())?;
    if skipped != c.inner {
        return Err(format!("the {what} ends before the chunk"));
    }
    let mut data = Vec::with_capacity(c.len as usize);
    dec.take(c.len).read_to_end(&mut data).map_err(|e| format!("the {what} is damaged ({e})"))?;
    if data.len() as u64 != c.len {
        return Err(format!("the {what} ends inside the chunk"));
    }
    if Sha256::digest(&data).as_slice() != c.sha256 {
        return Err("a chunk that does not match its digest in the table of contents".into());
    }
    Ok(data)
}
