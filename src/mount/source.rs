//! Layer bytes for the image filesystem, from the blobs in the store.
//!
//! Every byte read from a blob is checked first: the blob is read in
//! chunks of `index_file::CHUNK` bytes, each checked against the CRC-32
//! (sha256 in index files of format 6) recorded when the layer was scanned
//! from bytes that matched its digest, so a blob damaged after it was
//! stored gives an error (EIO for the file) rather than wrong data.
//!
//! An uncompressed layer is read in place. A compressed one is read through
//! a decoder kept open at the last position, so that a file read from start
//! to end decompresses the layer once up to that file; a read behind the
//! decoder starts it again from the beginning of the layer.

use super::index_file::{ChunkSums, CHUNK};
use crate::layerindex::gzip::{GzipIndex, GzipReader};
use crate::layerindex::RandomRead;
use crate::layerindex::SharedBytes;
use crate::store::Compression;
use img_fuse::BlobSource;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A blob file whose chunks are checked against their sha256 when read.
pub struct VerifiedBlob {
    file: File,
    path: PathBuf,
    chunks: ChunkSums,
    /// The chunks last read and checked, the newest last: enough for the
    /// readers that decode ahead at once (each reads its own stretch) to
    /// check every chunk once.
    cache: Mutex<std::collections::VecDeque<(u64, Arc<Vec<u8>>)>>,
}

/// How many checked chunks a blob keeps (1 MiB).
const CACHED_CHUNKS: usize = 16;

impl VerifiedBlob {
    pub fn open(path: PathBuf, chunks: ChunkSums) -> io::Result<VerifiedBlob> {
        Ok(VerifiedBlob { file: File::open(&path)?, path, chunks, cache: Mutex::new(Default::default()) })
    }

    fn chunk(&self, i: u64) -> io::Result<Arc<Vec<u8>>> {
        if let Ok(c) = self.cache.lock() {
            if let Some((_, data)) = c.iter().rev().find(|(n, _)| *n == i) {
                return Ok(data.clone());
            }
        }
        if i as usize >= self.chunks.len() {
            return Err(io::Error::other(format!(
                "{}: no checksum for chunk {i}; the layer index is stale",
                self.path.display()
            )));
        }
        let mut buf = vec![0u8; CHUNK as usize];
        let mut got = 0;
        while got < buf.len() {
            let n = FileExt::read_at(&self.file, &mut buf[got..], i * CHUNK + got as u64)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        if self.chunks.check(i as usize, &buf) != Some(true) {
            return Err(io::Error::other(format!(
                "{} is damaged at bytes {}..{}: its content no longer matches its digest; run img fsck",
                self.path.display(),
                i * CHUNK,
                i * CHUNK + got as u64
            )));
        }
        let data = Arc::new(buf);
        if let Ok(mut c) = self.cache.lock() {
            if !c.iter().any(|(n, _)| *n == i) {
                if c.len() >= CACHED_CHUNKS {
                    c.pop_front();
                }
                c.push_back((i, data.clone()));
            }
        }
        Ok(data)
    }

    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let i = offset / CHUNK;
        let data = self.chunk(i)?;
        let start = (offset - i * CHUNK) as usize;
        if start >= data.len() {
            return Ok(0);
        }
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }
}

/// Reads a `VerifiedBlob` from the start, in order.
struct Sequential {
    blob: Arc<VerifiedBlob>,
    pos: u64,
}

impl Read for Sequential {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.blob.read_at(self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

type Decoder = Box<dyn Read + Send>;

/// A reader this close behind a read goes on to it rather than starting
/// again from a checkpoint.
const REUSE: u64 = 1 << 20;

struct Cursor {
    pos: u64,
    reader: Decoder,
}

type GzReader = GzipReader<'static, VerifiedBlob>;

enum LayerData {
    Plain(Arc<VerifiedBlob>),
    /// Read through a decoder kept where the last read ended; a zstd
    /// layer of several frames starts a read far ahead at its frame.
    Compressed {
        blob: Arc<VerifiedBlob>,
        compression: Compression,
        cursor: Mutex<Option<Cursor>>,
        frames: Option<crate::layerindex::zstd::ZstdIndex>,
    },
    /// A layer that cannot be indexed (a zstd layer of one frame, xz):
    /// decoded in whole blocks from the start, the blocks passed kept in a
    /// bounded cache, so reads that go back are served from memory while
    /// they are recent.
    Blocks(Arc<BlockLayer>),
    /// A layer not stored, read from its registry chunk by chunk.
    Remote(Arc<super::lazy::RemoteLayer>),
    /// A layer without a TOC, read as it streams from its registry.
    Stream(Arc<super::stream::StreamLayer>),
    /// A gzip layer with its random-access index: a read starts from the
    /// nearest checkpoint, and a reader left where the last read ended
    /// serves the next one if it continues from there.
    Gzip {
        blob: &'static VerifiedBlob,
        index: &'static GzipIndex,
        reader: Mutex<Option<GzReader>>,
        ahead: Arc<Ahead>,
    },
}

/// A read that goes on this many bytes in a row is a long sequential
/// read (a whole file read or copied up): from then on it is served from
/// segments decoded ahead.
const AHEAD_AFTER: u64 = 4 << 20;
/// Reads this close to where the last one ended count as going on from
/// it: the kernel's read-ahead requests (8 MiB of them at once, see
/// `READ_AHEAD` in fuse/src/adapter.rs) are served by several threads, so
/// they may come some MiB out of order. A read further away is a read
/// elsewhere, which drops what was decoded ahead.
const AHEAD_SLACK: u64 = 16 << 20;

/// At most this many bytes are decoded ahead, and a segment larger than
/// this (a huge deflate block) is read the usual way.
const AHEAD_BYTES: u64 = 16 << 20;
/// Segments that end this close behind the read being served are kept for
/// the requests that come late.
const AHEAD_BEHIND: u64 = 4 << 20;
const MAX_SEGMENT: u64 = 8 << 20;

/// Parallel read-ahead of a gzip layer: once reads go on in a row long
/// enough, the segments between the next checkpoints are decoded by
/// threads of their own at once (each from its checkpoint, so nothing is
/// decoded twice), a few segments ahead of the reads, and reads are
/// copied out of them. What it holds is bounded: the segments in its
/// window (each about the index's span, ~1 MiB).
struct Ahead {
    /// The checkpoints' uncompressed offsets, then the layer's size:
    /// segment `k` is `bounds[k]..bounds[k + 1]`.
    bounds: Vec<u64>,
    /// Segments decoded at once, and how many are kept ahead.
    window: usize,
    state: Mutex<AheadState>,
    decoded: std::sync::Condvar,
    /// How many segments were decoded (each should be once in a read
    /// from start to end).
    decodes: std::sync::atomic::AtomicU64,
}

type Segment = Option<Result<Arc<Vec<u8>>, String>>;

#[derive(Default)]
struct AheadState {
    /// The furthest offset read so far in this run of reads, and how many
    /// bytes the run has read.
    end: u64,
    run: u64,
    /// Segment number -> its bytes once decoded (None while a thread
    /// decodes it, the error if that failed).
    segments: std::collections::BTreeMap<usize, Segment>,
}

impl Ahead {
    fn new(index: &GzipIndex) -> Ahead {
        let mut bounds: Vec<u64> = index.checkpoint_offsets().collect();
        bounds.push(index.uncompressed_size());
        bounds.dedup();
        let window = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(2, 4) * 2;
        Ahead {
            bounds,
            window,
            state: Mutex::new(AheadState::default()),
            decoded: std::sync::Condvar::new(),
            decodes: Default::default(),
        }
    }

    /// Serves a read from decoded segments if it is part of a long
    /// sequential read (None: read it the usual way).
    fn read(
        self: &Arc<Self>,
        blob: &'static VerifiedBlob,
        index: &'static GzipIndex,
        offset: u64,
        buf: &mut [u8],
    ) -> io::Result<Option<usize>> {
        let nseg = self.bounds.len().saturating_sub(1);
        let mut st = self.state.lock().map_err(|_| io::Error::other("layer read-ahead poisoned"))?;
        if offset.abs_diff(st.end) <= AHEAD_SLACK {
            st.run += buf.len() as u64;
        } else {
            st.run = buf.len() as u64;
            // A read elsewhere: what was decoded ahead is of no use now.
            st.segments.retain(|_, s| s.is_none());
        }
        st.end = st.end.max(offset + buf.len() as u64);
        if st.end > offset + buf.len() as u64 + AHEAD_SLACK {
            st.end = offset + buf.len() as u64;
        }
        let k = self.bounds.partition_point(|&b| b <= offset);
        if st.run < AHEAD_AFTER || k == 0 || k > nseg || buf.is_empty() {
            return Ok(None);
        }
        let k = k - 1;
        let size = |s: usize| self.bounds[s + 1] - self.bounds[s];
        if size(k) > MAX_SEGMENT {
            return Ok(None);
        }
        // Decode the window ahead, within AHEAD_BYTES. Keep what is
        // decoded from AHEAD_BEHIND bytes behind to as far past the
        // window: a thread may still wait for a segment behind while
        // another serves a request further on, and a request that comes
        // late must not drop what those further on decoded (dropped, a
        // segment would be decoded again). Start the ones missing.
        let mut last = k + 1;
        let mut bytes = size(k);
        while last < (k + self.window).min(nseg) && bytes + size(last) <= AHEAD_BYTES {
            bytes += size(last);
            last += 1;
        }
        let (behind, ahead) =
            (self.bounds[k].saturating_sub(AHEAD_BEHIND), self.bounds[k] + AHEAD_BYTES + AHEAD_BEHIND);
        st.segments.retain(|&s, seg| seg.is_none() || (self.bounds[s + 1] > behind && self.bounds[s] < ahead));
        for s in k..last {
            if st.segments.contains_key(&s) {
                continue;
            }
            st.segments.insert(s, None);
            let (me, from, to) = (self.clone(), self.bounds[s], self.bounds[s + 1]);
            let spawned = std::thread::Builder::new().name("img-ahead".into()).spawn(move || {
                me.decodes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let got = decode_segment(blob, index, from, to).map(Arc::new).map_err(|e| e.to_string());
                if let Ok(mut st) = me.state.lock() {
                    if let Some(slot) = st.segments.get_mut(&s) {
                        *slot = Some(got);
                    }
                }
                me.decoded.notify_all();
            });
            if spawned.is_err() {
                st.segments.remove(&s);
                if s == k {
                    return Ok(None);
                }
                break;
            }
        }
        loop {
            match st.segments.get(&k) {
                Some(Some(Ok(data))) => {
                    let start = (offset - self.bounds[k]) as usize;
                    let n = buf.len().min(data.len().saturating_sub(start));
                    buf[..n].copy_from_slice(&data[start..start + n]);
                    return Ok(Some(n));
                }
                Some(Some(Err(e))) => {
                    let e = io::Error::other(e.clone());
                    st.segments.remove(&k);
                    return Err(e);
                }
                Some(None) => {
                    st = self.decoded.wait(st).map_err(|_| io::Error::other("layer read-ahead poisoned"))?;
                }
                // Dropped by a read elsewhere meanwhile: read it the usual way.
                None => return Ok(None),
            }
        }
    }
}

/// The uncompressed bytes `from..to` of a gzip layer, `from` a checkpoint.
fn decode_segment(blob: &'static VerifiedBlob, index: &'static GzipIndex, from: u64, to: u64) -> io::Result<Vec<u8>> {
    let len = to - from;
    let mut r = index.reader_at(blob, from).map_err(io::Error::from)?;
    let mut out = Vec::with_capacity(len as usize);
    (&mut r).take(len).read_to_end(&mut out)?;
    if (out.len() as u64) < len {
        return Err(io::Error::other(format!("the layer ended at {} of {to} bytes", from + out.len() as u64)));
    }
    Ok(out)
}

/// Decoded blocks of an unindexed layer.
const BLOCK: u64 = 1 << 20;
/// How many decoded blocks an unindexed layer keeps (16 MiB).
const CACHED_BLOCKS: usize = 16;

/// An unindexed layer: its decoder, and the blocks decoded, under locks
/// of their own, so that a thread decoding the next block while the reads
/// of this one are served holds up none of them.
struct BlockLayer {
    blob: Arc<VerifiedBlob>,
    compression: Compression,
    /// Always at a block boundary.
    cursor: Mutex<Option<Cursor>>,
    /// Block number -> its bytes, least recently used first.
    cache: Mutex<std::collections::VecDeque<(u64, Arc<Vec<u8>>)>>,
    /// A thread is decoding the block after the one last read.
    ahead: std::sync::atomic::AtomicBool,
}

impl BlockLayer {
    fn new(blob: Arc<VerifiedBlob>, compression: Compression) -> BlockLayer {
        BlockLayer {
            blob,
            compression,
            cursor: Mutex::new(None),
            cache: Mutex::new(Default::default()),
            ahead: Default::default(),
        }
    }

    fn cached(&self, b: u64) -> Option<Arc<Vec<u8>>> {
        let mut cache = self.cache.lock().ok()?;
        let i = cache.iter().position(|(k, _)| *k == b)?;
        let e = cache.remove(i)?;
        let data = e.1.clone();
        cache.push_back(e);
        Some(data)
    }

    fn put(&self, b: u64, data: Arc<Vec<u8>>) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.iter().any(|(k, _)| *k == b) {
                return;
            }
            if cache.len() >= CACHED_BLOCKS {
                cache.pop_front();
            }
            cache.push_back((b, data));
        }
    }

    /// Block `b`, decoded from where the cursor is (or from the start).
    fn block(&self, b: u64) -> io::Result<Arc<Vec<u8>>> {
        if let Some(d) = self.cached(b) {
            return Ok(d);
        }
        let mut cursor = self.cursor.lock().map_err(|_| io::Error::other("layer reader poisoned"))?;
        // Decoded while this read waited for the decoder.
        if let Some(d) = self.cached(b) {
            return Ok(d);
        }
        if cursor.as_ref().is_none_or(|cur| cur.pos > b * BLOCK) {
            let seq = Sequential { blob: self.blob.clone(), pos: 0 };
            *cursor =
                Some(Cursor { pos: 0, reader: self.compression.decoder(BufReader::with_capacity(256 * 1024, seq))? });
        }
        loop {
            let Some(cur) = cursor.as_mut() else { return Err(io::Error::other("no layer reader")) };
            let at = cur.pos / BLOCK;
            let mut data = Vec::with_capacity(BLOCK as usize);
            if let Err(e) = (&mut cur.reader).take(BLOCK).read_to_end(&mut data) {
                // The decoder's position is unknown now: start afresh next time.
                *cursor = None;
                return Err(e);
            }
            cur.pos += data.len() as u64;
            let short = (data.len() as u64) < BLOCK;
            let data = Arc::new(data);
            self.put(at, data.clone());
            if at == b || short {
                return Ok(if at == b { data } else { Arc::new(Vec::new()) });
            }
        }
    }

    /// Reads at `offset`; a read that goes on from the block before has
    /// the next block decoded meanwhile by a thread of its own.
    fn read_at(self: &Arc<Self>, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        use std::sync::atomic::Ordering;
        let b = offset / BLOCK;
        let data = self.block(b)?;
        let sequential = b == 0 || self.cache.lock().is_ok_and(|c| c.iter().any(|(k, _)| *k == b - 1));
        if sequential
            && data.len() as u64 == BLOCK
            && self.cache.lock().is_ok_and(|c| !c.iter().any(|(k, _)| *k == b + 1))
            && !self.ahead.swap(true, Ordering::AcqRel)
        {
            let me = self.clone();
            let spawned = std::thread::Builder::new().name("img-ahead".into()).spawn(move || {
                // An error is the next read's to report, when it decodes again.
                let _ = me.block(b + 1);
                me.ahead.store(false, Ordering::Release);
            });
            if spawned.is_err() {
                self.ahead.store(false, Ordering::Release);
            }
        }
        let start = (offset - b * BLOCK) as usize;
        if start >= data.len() {
            return Ok(0);
        }
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }
}

/// One layer of a mount: stored, or read from its registry.
pub enum LayerOpen {
    Stored(LayerSpec),
    Remote(Arc<super::lazy::RemoteLayer>),
    /// A layer without a TOC, read as it streams from its registry.
    Stream(Arc<super::stream::StreamLayer>),
}

/// How to open one stored layer.
pub struct LayerSpec {
    pub path: PathBuf,
    pub compression: Compression,
    pub chunks: ChunkSums,
    /// A serialised gzip or zstd index, or empty.
    pub access: SharedBytes,
}

impl RandomRead for VerifiedBlob {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        VerifiedBlob::read_at(self, off, buf)
    }
}

/// Reads what a channel of byte chunks carries, in order.
pub struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    at: usize,
}

impl ChannelReader {
    pub fn new(rx: std::sync::mpsc::Receiver<Vec<u8>>) -> Self {
        ChannelReader { rx, buf: Vec::new(), at: 0 }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

pub struct StoreSource {
    layers: Vec<LayerData>,
}

impl StoreSource {
    /// Opens the layer blobs, bottom first. The blobs and gzip indexes live
    /// as long as the serving process, which ends with the mount.
    pub fn open(layers: Vec<LayerSpec>) -> io::Result<StoreSource> {
        StoreSource::open_mixed(layers.into_iter().map(LayerOpen::Stored).collect())
    }

    /// Opens stored and remote layers, bottom first.
    pub fn open_mixed(layers: Vec<LayerOpen>) -> io::Result<StoreSource> {
        let mut out = Vec::new();
        for l in layers {
            let l = match l {
                LayerOpen::Remote(r) => {
                    out.push(LayerData::Remote(r));
                    continue;
                }
                LayerOpen::Stream(r) => {
                    out.push(LayerData::Stream(r));
                    continue;
                }
                LayerOpen::Stored(l) => l,
            };
            let blob = VerifiedBlob::open(l.path, l.chunks)?;
            let gzip = if l.compression == Compression::Gzip && !l.access.is_empty() {
                GzipIndex::from_shared(l.access.clone()).ok()
            } else {
                None
            };
            let frames = if l.compression == Compression::Zstd {
                crate::layerindex::zstd::ZstdIndex::from_bytes(&l.access).filter(|f| f.frames.len() > 1)
            } else {
                None
            };
            out.push(match (l.compression, gzip) {
                (Compression::None, _) => LayerData::Plain(Arc::new(blob)),
                (Compression::Gzip, Some(index)) => LayerData::Gzip {
                    ahead: Arc::new(Ahead::new(&index)),
                    blob: Box::leak(Box::new(blob)),
                    index: Box::leak(Box::new(index)),
                    reader: Mutex::new(None),
                },
                (c, _) if frames.is_some() => {
                    LayerData::Compressed { blob: Arc::new(blob), compression: c, cursor: Mutex::new(None), frames }
                }
                (c, _) => LayerData::Blocks(Arc::new(BlockLayer::new(Arc::new(blob), c))),
            });
        }
        Ok(StoreSource { layers: out })
    }
}

impl BlobSource for StoreSource {
    fn read_at(&self, layer: usize, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        match self.layers.get(layer) {
            None => Err(io::Error::other(format!("no layer {layer}"))),
            Some(LayerData::Plain(b)) => b.read_at(offset, buf),
            Some(LayerData::Remote(r)) => r.read_at(offset, buf),
            Some(LayerData::Stream(r)) => r.read_at(offset, buf),
            Some(LayerData::Gzip { blob, index, reader, ahead }) => {
                if let Some(n) = ahead.read(blob, index, offset, buf)? {
                    return Ok(n);
                }
                let mut guard = reader.lock().map_err(|_| io::Error::other("layer reader poisoned"))?;
                let reuse = guard.as_ref().is_some_and(|r| r.position() <= offset && offset - r.position() < REUSE);
                if !reuse {
                    *guard = Some(index.reader_at(*blob, offset).map_err(io::Error::other)?);
                }
                let Some(r) = guard.as_mut() else { return Err(io::Error::other("no layer reader")) };
                let res = (|| {
                    let skip = offset - r.position();
                    io::copy(&mut (&mut *r).take(skip), &mut io::sink())?;
                    if r.position() < offset {
                        return Ok(0);
                    }
                    r.read(buf)
                })();
                if res.is_err() {
                    *guard = None;
                }
                res
            }
            Some(LayerData::Blocks(l)) => l.read_at(offset, buf),
            Some(LayerData::Compressed { blob, compression, cursor, frames }) => {
                let mut guard = cursor.lock().map_err(|_| io::Error::other("layer reader poisoned"))?;
                // Where a fresh decoder would start: the frame holding the
                // offset, or the start of the layer.
                let (c_off, u_off) = frames.as_ref().map(|f| f.frame_for(offset)).unwrap_or((0, 0));
                let restart =
                    guard.as_ref().is_none_or(|c| c.pos > offset || (c.pos < u_off && offset - c.pos > REUSE));
                if restart {
                    let seq = Sequential { blob: blob.clone(), pos: c_off };
                    let reader = compression.decoder(BufReader::with_capacity(256 * 1024, seq))?;
                    *guard = Some(Cursor { pos: u_off, reader });
                }
                let Some(c) = guard.as_mut() else { return Err(io::Error::other("no layer reader")) };
                let res = (|| {
                    let skip = offset - c.pos;
                    let skipped = io::copy(&mut (&mut c.reader).take(skip), &mut io::sink())?;
                    c.pos += skipped;
                    if skipped < skip {
                        return Ok(0);
                    }
                    let n = c.reader.read(buf)?;
                    c.pos += n as u64;
                    Ok(n)
                })();
                if res.is_err() {
                    // The decoder's position is unknown now: start afresh next time.
                    *guard = None;
                }
                res
            }
        }
    }
}

/// Checks what passes through it (the scan of a layer blob): a CRC-32 of
/// each `CHUNK`, and the sha256 of the whole, which says whether the
/// chunks' checks were made from the layer's bytes.
pub struct ChunkHasher<R> {
    inner: R,
    crc: flate2::Crc,
    whole: crate::digest::Hasher,
    in_chunk: u64,
    chunks: Vec<u32>,
}

impl<R: Read> ChunkHasher<R> {
    pub fn new(inner: R) -> Self {
        ChunkHasher {
            inner,
            crc: flate2::Crc::new(),
            whole: crate::digest::Hasher::new(),
            in_chunk: 0,
            chunks: Vec::new(),
        }
    }

    /// The chunks' checks, the last (partial) chunk included, and the
    /// digest of all the bytes read.
    pub fn finish(mut self) -> (ChunkSums, crate::digest::Digest) {
        if self.in_chunk > 0 {
            self.chunks.push(self.crc.sum());
        }
        (ChunkSums::Crc32(self.chunks), self.whole.finish())
    }
}

impl<R: Read> Read for ChunkHasher<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = (CHUNK - self.in_chunk) as usize;
        let len = buf.len().min(room);
        let n = self.inner.read(&mut buf[..len])?;
        self.crc.update(&buf[..n]);
        self.whole.update(&buf[..n]);
        self.in_chunk += n as u64;
        if self.in_chunk == CHUNK {
            self.chunks.push(self.crc.sum());
            self.crc.reset();
            self.in_chunk = 0;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_chunks_are_errors_and_good_ones_read() {
        let dir_dir = crate::testdir::TestDir::new("vb");
        let dir = dir_dir.to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("blob");
        let data: Vec<u8> = (0..(CHUNK * 2 + 100)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let mut h = ChunkHasher::new(&data[..]);
        io::copy(&mut h, &mut io::sink()).unwrap();
        let chunks = h.finish().0;
        assert_eq!(chunks.len(), 3);
        let vb = VerifiedBlob::open(p.clone(), chunks.clone()).unwrap();
        let mut buf = vec![0u8; 50];
        assert_eq!(vb.read_at(CHUNK * 2 + 60, &mut buf).unwrap(), 40);
        assert_eq!(&buf[..40], &data[(CHUNK * 2 + 60) as usize..]);
        // Damage the middle chunk: reads there fail, the others still work.
        let mut bad = data.clone();
        bad[(CHUNK + 5) as usize] ^= 1;
        std::fs::write(&p, &bad).unwrap();
        let vb = VerifiedBlob::open(p.clone(), chunks).unwrap();
        let e = vb.read_at(CHUNK + 10, &mut buf).unwrap_err().to_string();
        assert!(e.contains("damaged") && e.contains("img fsck"), "{e}");
        assert_eq!(vb.read_at(10, &mut buf).unwrap(), 50);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A zstd layer of several frames reads right at any offset, in any
    /// order, starting far reads at their frame.
    #[test]
    fn multi_frame_zstd_reads_from_the_frame_of_the_offset() {
        let dir_dir = crate::testdir::TestDir::new("zf");
        let dir = dir_dir.to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("blob");
        let parts: Vec<Vec<u8>> =
            (0..8u32).map(|k| (0..700_000u32).map(|i| ((i * 31 + k * 7) % 253) as u8).collect()).collect();
        let blob: Vec<u8> = parts.iter().flat_map(|x| zstd::encode_all(x.as_slice(), 1).unwrap()).collect();
        let whole: Vec<u8> = parts.concat();
        std::fs::write(&p, &blob).unwrap();
        let mut h = ChunkHasher::new(&blob[..]);
        let ix = crate::layerindex::zstd::ZstdIndex::build(&mut h, &mut |_| {}).unwrap();
        io::copy(&mut h, &mut io::sink()).unwrap();
        assert_eq!(ix.frames.len(), 8);
        let spec = LayerSpec {
            path: p,
            compression: Compression::Zstd,
            chunks: h.finish().0,
            access: SharedBytes::from_vec(ix.to_bytes()),
        };
        let src = StoreSource::open(vec![spec]).unwrap();
        assert!(matches!(&src.layers[0], LayerData::Compressed { frames: Some(_), .. }));
        for off in [5_000_000u64, 100, 3_500_123, 4_899_990, 0, 2_100_000] {
            let mut buf = vec![0u8; 4096];
            let mut got = 0;
            while got < buf.len() {
                let n = src.read_at(0, off + got as u64, &mut buf[got..]).unwrap();
                if n == 0 {
                    break;
                }
                got += n;
            }
            let end = (off as usize + 4096).min(whole.len());
            assert_eq!(&buf[..got], &whole[off as usize..end], "at {off}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// An index is made only from the layer's own bytes: a blob whose
    /// bytes are not those of its digest (damaged on disk before its index
    /// was made) is refused, whatever its compression, with an error that
    /// says so; the layer's own bytes get a CRC-32 per chunk.
    #[test]
    fn an_index_is_only_made_from_the_layers_bytes() {
        let mut b = tar::Builder::new(Vec::new());
        let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "f", &data[..]).unwrap();
        let raw = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        let cases = [
            (Compression::Gzip, gz.finish().unwrap()),
            (Compression::Zstd, zstd::encode_all(&raw[..], 1).unwrap()),
            (Compression::None, raw.clone()),
        ];
        for (c, blob) in cases {
            let d = crate::digest::Digest::of_bytes(&blob);
            let built = super::super::scan::index_layer(&d, 0, io::Cursor::new(blob.clone()), c, None).unwrap();
            assert_eq!(built.size, raw.len() as u64, "{c:?}");
            let ChunkSums::Crc32(sums) = &built.index.chunks else { panic!("{c:?}: not CRC-32 chunks") };
            assert_eq!(sums.len() as u64, (blob.len() as u64).div_ceil(CHUNK), "{c:?}");
            for at in [blob.len() / 2, blob.len() - 1] {
                let mut bad = blob.clone();
                bad[at] ^= 0x10;
                let e = super::super::scan::index_layer(&d, 0, io::Cursor::new(bad), c, None).err().unwrap();
                let e = format!("{e:#}");
                assert!(e.contains(&format!("layer {d} is damaged")) && e.contains("img fsck"), "{c:?} at {at}: {e}");
            }
        }
    }

    /// A gzip layer of `len` bytes of varied data (compressible and not),
    /// with its index of 256 KiB spans, as a source.
    /// Layer 0's `req` bytes at `off` (fewer at its end, `len`), read as a
    /// FUSE request is answered: until full, each read giving something.
    fn read_fully(src: &StoreSource, off: usize, req: usize, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; req];
        let mut got = 0;
        while got < buf.len() && off + got < len {
            let n = src.read_at(0, (off + got) as u64, &mut buf[got..]).unwrap();
            assert!(n > 0, "nothing read at {}", off + got);
            got += n;
        }
        buf.truncate(got);
        buf
    }

    /// A source over one gzip layer of `len` bytes (`gzip_layer`) in a test
    /// directory named `name`, with the layer's bytes.
    fn gzip_source(name: &str, len: usize) -> (crate::testdir::TestDir, StoreSource, Vec<u8>) {
        let dir = crate::testdir::TestDir::new(name);
        std::fs::create_dir_all(dir.to_path_buf()).unwrap();
        let (spec, whole) = gzip_layer(&dir.to_path_buf(), len);
        (dir, StoreSource::open(vec![spec]).unwrap(), whole)
    }

    fn gzip_layer(dir: &std::path::Path, len: usize) -> (LayerSpec, Vec<u8>) {
        use std::io::Write as _;
        let mut x = 0x9e3779b97f4a7c15u64;
        let whole: Vec<u8> = (0..len as u64)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if (i >> 14) % 3 == 0 {
                    x as u8
                } else {
                    b'a' + (x % 26) as u8
                }
            })
            .collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&whole).unwrap();
        let blob = gz.finish().unwrap();
        let p = dir.join("blob");
        std::fs::write(&p, &blob).unwrap();
        let mut h = ChunkHasher::new(&blob[..]);
        let ix = GzipIndex::build(&mut h, 256 << 10, &mut |_| {}).unwrap();
        io::copy(&mut h, &mut io::sink()).unwrap();
        assert!(ix.checkpoint_count() > 20, "{} checkpoints", ix.checkpoint_count());
        let spec = LayerSpec {
            path: p,
            compression: Compression::Gzip,
            chunks: h.finish().0,
            access: SharedBytes::from_vec(ix.to_bytes()),
        };
        (spec, whole)
    }

    /// A single-frame zstd layer read from start to end in 128 KiB
    /// requests (the next block decoded meanwhile) reads right, and a read
    /// back at the start after it too.
    #[test]
    fn unindexed_layer_read_in_order_reads_right_with_the_next_block_ahead() {
        let dir_dir = crate::testdir::TestDir::new("blk-seq");
        let dir = dir_dir.to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("blob");
        let whole: Vec<u8> = (0..(9u32 << 20) + 777).map(|i| ((i / 5) % 241) as u8 ^ (i >> 16) as u8).collect();
        std::fs::write(&p, zstd::encode_all(whole.as_slice(), 1).unwrap()).unwrap();
        let blob = std::fs::read(&p).unwrap();
        let mut h = ChunkHasher::new(&blob[..]);
        io::copy(&mut h, &mut io::sink()).unwrap();
        let spec =
            LayerSpec { path: p, compression: Compression::Zstd, chunks: h.finish().0, access: SharedBytes::default() };
        let src = StoreSource::open(vec![spec]).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 128 << 10];
        loop {
            let n = src.read_at(0, got.len() as u64, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got == whole, "the layer read in order differs");
        let n = src.read_at(0, 10, &mut buf).unwrap();
        assert_eq!(&buf[..n], &whole[10..10 + n]);
    }

    /// A whole gzip layer read in 128 KiB requests, pairs of them swapped
    /// (as the kernel's read-ahead may send them), is served from segments
    /// decoded ahead and reads right; so do reads elsewhere meanwhile and
    /// after, and what is held ahead stays within its bound.
    #[test]
    fn long_sequential_gzip_reads_are_decoded_ahead_and_right() {
        let len = (13 << 20) + 4321;
        let (_dir, src, whole) = gzip_source("ahead", len);
        let LayerData::Gzip { ahead, .. } = &src.layers[0] else { panic!("not a gzip layer with its index") };
        let req = 128 << 10;
        let mut offs: Vec<usize> = (0..len.div_ceil(req)).map(|i| i * req).collect();
        for pair in offs.chunks_mut(2) {
            pair.reverse();
        }
        let mut served_ahead = false;
        for (i, &off) in offs.iter().enumerate() {
            let end = (off + req).min(len);
            assert_eq!(read_fully(&src, off, req, len), &whole[off..end], "at {off}");
            let st = ahead.state.lock().unwrap();
            served_ahead |= !st.segments.is_empty();
            let held: usize = st.segments.values().flatten().flatten().map(|d| d.len()).sum();
            assert!(held as u64 <= AHEAD_BYTES + 2 * AHEAD_BEHIND, "{held} bytes held ahead");
            drop(st);
            if i == offs.len() / 2 {
                // A read elsewhere in the middle of it all.
                let mut b = vec![0u8; 1000];
                let n = src.read_at(0, 12345, &mut b).unwrap();
                assert_eq!(&b[..n], &whole[12345..12345 + n]);
            }
        }
        assert!(served_ahead, "the sequential read was never decoded ahead");
        let mut b = vec![0u8; 5000];
        let n = src.read_at(0, (len - 3000) as u64, &mut b).unwrap();
        assert_eq!(&b[..n], &whole[len - 3000..]);
        assert_eq!(src.read_at(0, len as u64, &mut b).unwrap(), 0);
    }

    /// A whole gzip layer read in 1 MiB requests that come up to 3 MiB out
    /// of order (the kernel's 8 MiB read-ahead served by two threads, one
    /// of them slow) decodes each segment once and reads right: segments a
    /// late request still needs are kept, and the late request does not
    /// count as a read elsewhere (regression: with one segment kept behind
    /// and 4 MiB of slack, late requests had their segments decoded again,
    /// 50% more CPU for a copy-up of text).
    #[test]
    fn late_requests_of_a_long_read_decode_no_segment_twice() {
        let len = (24 << 20) + 777;
        let (_dir, src, whole) = gzip_source("ahead-late", len);
        let LayerData::Gzip { ahead, .. } = &src.layers[0] else { panic!("not a gzip layer with its index") };
        let req = 1 << 20;
        let n = len.div_ceil(req);
        // In order, except that every fourth request comes after the three
        // that follow it.
        let mut offs = Vec::new();
        for base in (0..n).step_by(4) {
            offs.extend((base + 1..(base + 4).min(n)).chain([base]).map(|i| i * req));
        }
        for &off in &offs {
            assert!(read_fully(&src, off, req, len) == whole[off..(off + req).min(len)], "wrong bytes at {off}");
        }
        let segments = ahead.bounds.len() as u64 - 1;
        let decodes = ahead.decodes.load(std::sync::atomic::Ordering::Relaxed);
        assert!(decodes > segments / 2, "the read was hardly decoded ahead: {decodes} of {segments} segments");
        assert!(decodes <= segments, "{decodes} segments decoded for {segments}");
    }

    /// A damaged chunk of a gzip layer read ahead is an error for the reads
    /// that need it, never other bytes.
    #[test]
    fn damaged_gzip_layer_read_ahead_fails_never_lies() {
        let dir_dir = crate::testdir::TestDir::new("ahead-bad");
        let dir = dir_dir.to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let len = 10 << 20;
        let (spec, whole) = gzip_layer(&dir, len);
        let mut blob = std::fs::read(&spec.path).unwrap();
        let at = blob.len() * 3 / 4;
        blob[at] ^= 0x55;
        std::fs::write(&spec.path, &blob).unwrap();
        let src = StoreSource::open(vec![spec]).unwrap();
        let mut failed = false;
        for off in (0..len).step_by(128 << 10) {
            let mut buf = vec![0u8; 128 << 10];
            match src.read_at(0, off as u64, &mut buf) {
                Ok(n) => assert_eq!(&buf[..n], &whole[off..off + n], "wrong bytes at {off}"),
                Err(e) => {
                    assert!(e.to_string().contains("damaged"), "{e}");
                    failed = true;
                }
            }
        }
        assert!(failed, "the damaged chunk was never noticed");
    }

    /// A single-frame zstd layer is read in cached blocks: any order,
    /// right bytes, and never more than the cache's blocks in memory.
    #[test]
    fn unindexed_layers_read_through_a_bounded_block_cache() {
        let dir_dir = crate::testdir::TestDir::new("blk");
        let dir = dir_dir.to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("blob");
        let whole: Vec<u8> = (0..(40u32 << 20) + 1234).map(|i| ((i / 3) % 251) as u8).collect();
        let blob = zstd::encode_all(whole.as_slice(), 1).unwrap();
        std::fs::write(&p, &blob).unwrap();
        let mut h = ChunkHasher::new(&blob[..]);
        io::copy(&mut h, &mut io::sink()).unwrap();
        let spec =
            LayerSpec { path: p, compression: Compression::Zstd, chunks: h.finish().0, access: SharedBytes::default() };
        let src = StoreSource::open(vec![spec]).unwrap();
        let len = whole.len() as u64;
        for off in [30u64 << 20, 5, (30 << 20) + 999_999, 12 << 20, len - 10, len, len + 5, 3 << 20] {
            let mut buf = vec![0u8; 3000];
            let n = src.read_at(0, off, &mut buf).unwrap();
            let end = ((off + n as u64).min(len)) as usize;
            assert_eq!(&buf[..n], &whole[(off.min(len) as usize)..end], "at {off}");
            assert!(n > 0 || off >= len, "nothing read at {off}");
        }
        let LayerData::Blocks(l) = &src.layers[0] else { panic!("not read in blocks") };
        assert!(l.cache.lock().unwrap().len() <= CACHED_BLOCKS);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
