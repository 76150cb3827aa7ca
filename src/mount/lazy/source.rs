//! The bytes of a lazy layer for the filesystem: each chunk from memory,
//! the range cache or the registry, checked against its sha256 before it
//! is served; and the TOC's own file, read when first asked for.

use super::toc::{read_toc, ChunkRef, Codec};
use super::{plan, Fetch, Stats};
use crate::digest::Digest;
use crate::store::RangeCache;
use sha2::{Digest as _, Sha256};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

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
    decoded: Mutex<Vec<(usize, Arc<Vec<u8>>)>>,
    fetcher: Arc<Fetcher>,
}

/// How a layer's compressed bytes are fetched: planned requests, one fetch
/// of a range at a time, the rest of the layer in the background once most
/// of it is held.
struct Fetcher {
    fetch: Arc<dyn Fetch>,
    cache: Option<RangeCache>,
    stats: Arc<Stats>,
    /// The end of the chunks' compressed bytes (where the TOC starts).
    data_end: u64,
    /// Requests under way: a read of bytes one of them fetches waits for it.
    inflight: Mutex<Vec<(u64, u64)>>,
    landed: Condvar,
    ahead: Mutex<Readahead>,
    /// The rest of the layer is being fetched, or is held.
    completing: AtomicBool,
    /// Reads that fetched.
    misses: AtomicU64,
    background: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Reads that go on from where the last fetch ended fetch more ahead each
/// time (up to a request's bound); a read elsewhere starts small again.
struct Readahead {
    /// The last miss's chunk start, and how far its fetch went (0: none yet).
    start: u64,
    reach: u64,
    window: u64,
}

/// Bytes fetched past a chunk on a first read, and the most a read in order
/// fetches ahead.
pub(super) const AHEAD_MIN: u64 = 64 << 10;
const AHEAD_MAX: u64 = plan::MAX_REQUEST;

/// Once this share (in percent) of a layer's chunk bytes is held, or reads
/// of it have missed this many times, the rest is fetched in the
/// background: a layer read mostly, or by many reads all over it, is
/// likely read whole, and a few large requests in order cost less than the
/// round trips of the misses to come.
const COMPLETE_AT: u64 = 50;
const COMPLETE_AFTER_MISSES: u64 = 32;

/// The most bytes a request of a background fetch asks for.
const BACKGROUND_REQUEST: u64 = 4 << 20;

impl RemoteLayer {
    pub fn new(
        label: String,
        chunks: Vec<ChunkRef>,
        fetch: Arc<dyn Fetch>,
        cache: Option<RangeCache>,
        stats: Arc<Stats>,
    ) -> RemoteLayer {
        let data_end = chunks.iter().filter(|c| c.codec != Codec::Zeros).map(|c| c.comp_end).max().unwrap_or(0);
        let fetcher = Arc::new(Fetcher {
            fetch,
            cache,
            stats,
            data_end,
            inflight: Mutex::new(Vec::new()),
            landed: Condvar::new(),
            ahead: Mutex::new(Readahead { start: 0, reach: 0, window: AHEAD_MIN }),
            completing: AtomicBool::new(false),
            misses: AtomicU64::new(0),
            background: Mutex::new(None),
        });
        RemoteLayer { label, chunks, toc_file: None, decoded: Mutex::new(Vec::new()), fetcher }
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
        let f = &self.fetcher;
        let cache = f.cache.as_ref().ok_or_else(|| io::Error::other("no cache"))?;
        let (file, _) = read_toc(cache, f.fetch.as_ref(), &at.layer, at.size, &at.want)
            .map_err(|e| io::Error::other(format!("{e:#}")))?;
        let j = Arc::new(file.json);
        *slot = Some(j.clone());
        Ok(j)
    }

    /// Fetches `0..end` of the blob into the cache (the files before a
    /// prefetch landmark), in requests of at most `plan::MAX_REQUEST`,
    /// skipping what is held.
    pub fn prefetch(&self, end: u64) -> io::Result<()> {
        self.fetcher.fetch_missing(&[(0, end)])
    }

    /// Fetches the rest of the layer's chunks into the cache, in order, in
    /// requests of at most `plan::MAX_REQUEST`; once this returns without
    /// an error, every read is served from the store.
    pub fn fetch_all(&self) -> io::Result<()> {
        self.fetcher.completing.store(true, Ordering::Relaxed);
        self.fetcher.fetch_missing(&self.chunk_ranges())
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
    /// the registry (then kept in the cache, with the chunks after it that
    /// the same request fetched).
    fn chunk(&self, i: usize) -> io::Result<Arc<Vec<u8>>> {
        if let Some(d) = self.remembered(i) {
            return Ok(d);
        }
        let c = &self.chunks[i];
        if c.codec == Codec::Zeros {
            return Ok(Arc::new(vec![0u8; c.len as usize]));
        }
        let f = &self.fetcher;
        let Some(cache) = &f.cache else {
            let comp = f.fetch_counted(c.comp, c.comp_end)?;
            let data = Arc::new(inflate_chunk(&comp, c).map_err(|why| self.refused(c, &why))?);
            self.remember(i, data.clone());
            return Ok(data);
        };
        for _ in 0..3 {
            if let Some(comp) = cache.get(c.comp, c.comp_end)? {
                // A damaged cache is fetched again and overwritten.
                if let Ok(data) = inflate_chunk(&comp, c) {
                    f.stats.cache_bytes.fetch_add(comp.len() as u64, Ordering::Relaxed);
                    let data = Arc::new(data);
                    self.remember(i, data.clone());
                    return Ok(data);
                }
            }
            // Another read is fetching these bytes: they are looked for
            // in the cache again once it is done.
            if f.wait_inflight(c.comp, c.comp_end) {
                continue;
            }
            if let Some(data) = self.fetch_for(i)? {
                let data = Arc::new(data);
                self.remember(i, data.clone());
                return Ok(data);
            }
        }
        // The cache does not keep what was fetched: the chunk alone.
        let comp = f.fetch_counted(c.comp, c.comp_end)?;
        let data = Arc::new(inflate_chunk(&comp, c).map_err(|why| self.refused(c, &why))?);
        self.remember(i, data.clone());
        Ok(data)
    }

    fn refused(&self, c: &ChunkRef, why: &str) -> io::Error {
        io::Error::other(format!(
            "layer {}: bytes {}..{} from the registry: {why}; the registry serves other bytes than the image's table of contents says",
            self.label, c.comp, c.comp_end
        ))
    }

    /// Fetches chunk `i` and, in the same requests, the chunks after it
    /// that the readahead window reaches and the cache lacks; returns the
    /// chunk, checked before anything of its requests is kept. `None` when
    /// another read is fetching some of those bytes.
    fn fetch_for(&self, i: usize) -> io::Result<Option<Vec<u8>>> {
        let f = &self.fetcher;
        let c = &self.chunks[i];
        let Some(cache) = &f.cache else { return Ok(None) };
        let reach = f.ahead(c.comp, c.comp_end);
        let held = cache.ranges();
        // The chunk whole (held bytes of it may be damaged), then what the
        // cache lacks of the chunks the window reaches.
        let mut want = vec![(c.comp, c.comp_end)];
        for n in self.chunks[i + 1..].iter().take_while(|n| n.comp < reach) {
            // Chunks the window holds whole: a big file's after a small
            // one's is not fetched for the small one.
            if n.codec != Codec::Zeros && n.comp >= c.comp && n.comp_end <= reach {
                want.extend(plan::missing(n.comp, n.comp_end, &held));
            }
        }
        let reqs = plan::coalesce(&want, plan::GAP, plan::MAX_REQUEST);
        let Some(claim) = f.claim(&reqs) else { return Ok(None) };
        f.misses.fetch_add(1, Ordering::Relaxed);
        let mut got = Vec::with_capacity(reqs.len());
        for &(s, e) in &reqs {
            got.push((s, f.fetch_counted(s, e)?));
        }
        // The chunk's bytes, from the requests that hold them (in order,
        // the first starting at the chunk).
        let mut comp = Vec::with_capacity((c.comp_end - c.comp) as usize);
        for (s, b) in &got {
            let (from, to) = (c.comp.max(*s), c.comp_end.min(s + b.len() as u64));
            if from < to {
                comp.extend_from_slice(&b[(from - s) as usize..(to - s) as usize]);
            }
        }
        let data = inflate_chunk(&comp, c).map_err(|why| self.refused(c, &why))?;
        for (s, b) in &got {
            // A cache that cannot be written costs a fetch next time, no more.
            let _ = cache.put(*s, b);
        }
        drop(claim);
        f.maybe_complete(&self.chunk_ranges());
        Ok(Some(data))
    }

    /// The compressed ranges of the chunks that are fetched, in order.
    fn chunk_ranges(&self) -> Vec<(u64, u64)> {
        self.chunks.iter().filter(|c| c.codec != Codec::Zeros).map(|c| (c.comp, c.comp_end)).collect()
    }

    /// Waits for the background fetch of the rest of the layer, if one runs.
    pub fn settle(&self) {
        let h = self.fetcher.background.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = h {
            let _ = h.join();
        }
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

/// Requests claimed by one fetch; released (and waiters woken) when dropped.
struct Claim<'a> {
    f: &'a Fetcher,
    reqs: Vec<(u64, u64)>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Ok(mut v) = self.f.inflight.lock() {
            v.retain(|r| !self.reqs.contains(r));
        }
        self.f.landed.notify_all();
    }
}

impl Fetcher {
    /// Bytes `start..end` from the registry, counted.
    fn fetch_counted(&self, start: u64, end: u64) -> io::Result<Vec<u8>> {
        let comp = self.fetch.fetch(start, end).inspect_err(|_| {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        })?;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats.fetched_bytes.fetch_add(comp.len() as u64, Ordering::Relaxed);
        Ok(comp)
    }

    /// Where to stop fetching after a chunk at `comp..comp_end`: further
    /// each time a read misses past the last miss and not far beyond what
    /// that fetched (reads in order), a little past the chunk otherwise.
    fn ahead(&self, comp: u64, comp_end: u64) -> u64 {
        let Ok(mut a) = self.ahead.lock() else { return comp_end };
        let in_order = a.reach != 0 && comp > a.start && comp <= a.reach.saturating_add(a.window);
        a.window = if in_order { (a.window * 2).min(AHEAD_MAX) } else { AHEAD_MIN };
        a.start = comp;
        a.reach = comp_end.saturating_add(a.window);
        a.reach
    }

    /// Waits while a request under way overlaps `start..end`; true if one did.
    fn wait_inflight(&self, start: u64, end: u64) -> bool {
        let Ok(mut v) = self.inflight.lock() else { return false };
        let mut waited = false;
        while v.iter().any(|&(s, e)| s < end && start < e) {
            waited = true;
            v = match self.landed.wait_timeout(v, std::time::Duration::from_millis(200)) {
                Ok((g, _)) => g,
                Err(_) => return waited,
            };
        }
        waited
    }

    /// Claims `reqs` for one fetch; `None` when one of them is under way
    /// already (the caller looks in the cache again).
    fn claim(&self, reqs: &[(u64, u64)]) -> Option<Claim<'_>> {
        let mut v = self.inflight.lock().ok()?;
        if reqs.iter().any(|&(s, e)| v.iter().any(|&(a, b)| a < e && s < b)) {
            return None;
        }
        v.extend_from_slice(reqs);
        Some(Claim { f: self, reqs: reqs.to_vec() })
    }

    /// Fetches what the cache lacks of `ranges` (sorted), in order, in
    /// requests of at most `BACKGROUND_REQUEST` (a read that needs bytes of
    /// one waits for it), skipping bytes another fetch is getting.
    fn fetch_missing(&self, ranges: &[(u64, u64)]) -> io::Result<()> {
        let Some(cache) = &self.cache else { return Ok(()) };
        let held = cache.ranges();
        let want: Vec<(u64, u64)> = ranges.iter().flat_map(|&(s, e)| plan::missing(s, e, &held)).collect();
        for (s, e) in plan::coalesce(&want, plan::GAP, BACKGROUND_REQUEST) {
            self.wait_inflight(s, e);
            for (s, e) in plan::missing(s, e, &cache.ranges()) {
                let Some(_claim) = self.claim(&[(s, e)]) else { continue };
                let bytes = self.fetch_counted(s, e)?;
                cache.put(s, &bytes)?;
            }
        }
        Ok(())
    }

    /// Starts fetching the rest of the layer (its chunks: `ranges`) in the
    /// background once most of it is held.
    fn maybe_complete(self: &Arc<Self>, ranges: &[(u64, u64)]) {
        let Some(cache) = &self.cache else { return };
        if self.completing.load(Ordering::Relaxed) || self.data_end == 0 {
            return;
        }
        let held = plan::held_within(0, self.data_end, &cache.ranges());
        let most = held.saturating_mul(100) >= self.data_end.saturating_mul(COMPLETE_AT);
        if !most && self.misses.load(Ordering::Relaxed) < COMPLETE_AFTER_MISSES {
            return;
        }
        if self.completing.swap(true, Ordering::Relaxed) {
            return;
        }
        let (me, ranges) = (self.clone(), ranges.to_vec());
        let h = std::thread::Builder::new().name("lazy-complete".into()).spawn(move || {
            if let Err(e) = me.fetch_missing(&ranges) {
                eprintln!("img mount: fetching the rest of a layer: {e}");
                // A later read tries again.
                me.completing.store(false, Ordering::Relaxed);
            }
        });
        if let (Ok(h), Ok(mut slot)) = (h, self.background.lock()) {
            *slot = Some(h);
        }
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
