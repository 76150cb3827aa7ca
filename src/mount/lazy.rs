//! Lazy layers: an eStargz or zstd:chunked layer served before it is
//! stored, from its table of contents (TOC), each chunk of file data
//! fetched from the registry with a Range request the first time it is
//! read.
//!
//! Trust: the manifest names the TOC's digest (the descriptor annotation
//! `containerd.io/snapshot/stargz/toc.digest`, or zstd:chunked's
//! `…manifest-checksum` of the compressed TOC), the TOC names each chunk's
//! sha256 (a zstd:chunked file of one chunk: the file's), and a chunk is
//! served only after its decompressed bytes match. The
//! compressed bytes fetched are kept in `lazy/<hex>` (a sparse file the size
//! of the blob) with the ranges held listed in `lazy/<hex>.ranges`, so a
//! second read, a second mount and the `img pull` that completes the image
//! fetch nothing again; bytes taken from there are checked the same way,
//! and the completing pull checks the whole blob against its digest.
//!
//! Files get offsets in a virtual stream of their own (each file's bytes
//! after the previous file's), which `img_fuse` reads as it reads a tar
//! stream; [`RemoteLayer`] maps them to chunks.

use crate::archive::layer::{clean_entry_path, name_bytes};
use crate::digest::Digest;
use crate::layerindex::estargz::{TocEntryRef, TocFile, FOOTER_SIZE, MAX_TOC_SIZE, TOC_NAME};
use crate::layerindex::zstd_chunked;
use anyhow::Context as _;
use img_fuse::{DataRef, Entry, Kind, Layer};
use sha2::{Digest as _, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

mod registry;

pub use registry::{lazy_timeout, RegistryFetch, RegistrySource};

/// The most one chunk may take, compressed or not; stargz-snapshotter
/// writes 4 MiB chunks.
pub const MAX_CHUNK: u64 = 64 << 20;

/// Decoded chunks kept in memory, most recent first.
const DECODED: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum LazyError {
    #[error("layer {layer}: entry {name:?} of its table of contents: {msg}")]
    Entry { layer: String, name: String, msg: String },
}

/// How a chunk's bytes are stored in the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// gzip member(s) (eStargz).
    Gzip,
    /// zstd frame(s) (zstd:chunked).
    Zstd,
    /// Zeros, nothing to fetch (zstd:chunked's "zeros" chunks).
    Zeros,
}

impl Codec {
    fn code(self) -> u64 {
        match self {
            Codec::Gzip => 0,
            Codec::Zstd => 1,
            Codec::Zeros => 2,
        }
    }

    fn from_code(c: u64) -> Option<Codec> {
        [Codec::Gzip, Codec::Zstd, Codec::Zeros].into_iter().find(|x| x.code() == c)
    }
}

/// The two layer formats with a table of contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TocKind {
    /// Each chunk's gzip member ends where the next member starts.
    Estargz,
    /// Each file gives where its frames end (`endOffset`); a file of one
    /// chunk is checked against the file's digest.
    ZstdChunked,
}

/// One chunk of a file: where its bytes are in the virtual stream and in
/// the blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRef {
    /// Where it starts in the layer's virtual stream.
    pub virt: u64,
    pub len: u64,
    /// The gzip member(s) or zstd frame(s) holding it: `comp..comp_end` of
    /// the blob.
    pub comp: u64,
    pub comp_end: u64,
    /// Bytes to skip in the decompressed bytes before the chunk starts.
    pub inner: u64,
    pub sha256: [u8; 32],
    pub codec: Codec,
}

/// A layer's tree and chunk table, from its TOC.
#[derive(Debug, Clone)]
pub struct TocLayer {
    pub layer: Layer,
    /// Sorted by `virt`; no gaps.
    pub chunks: Vec<ChunkRef>,
    /// `0..end` of the blob holds the files to fetch first, when the layer
    /// has a `.prefetch.landmark`.
    pub prefetch_end: Option<u64>,
    /// Where the TOC's own file starts in the virtual stream, and its size.
    pub toc_file: Option<(u64, u64)>,
}

fn sha256_of(s: &str) -> Option<[u8; 32]> {
    let d = Digest::parse(s).ok()?;
    let hex = d.hex();
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The eStargz layer (number `index` in its image) that TOC `toc`
/// describes; the TOC's own member starts at `toc_at` of the blob.
/// Untrusted: names are cleaned and checked as a tar's are, chunks must
/// cover each file in order, lie before the TOC and carry a digest.
pub fn toc_layer(toc: &[TocEntryRef], index: usize, toc_at: u64, label: &str) -> Result<TocLayer, LazyError> {
    toc_layer_with(TocKind::Estargz, toc, None, index, toc_at, label)
}

/// The regular file whose chunks are being read.
struct OpenFile {
    name: String,
    size: u64,
    /// Bytes its chunks cover so far.
    done: u64,
    /// zstd:chunked: where its last chunk's frames end.
    end: u64,
}

/// A layer of format `kind` from its TOC, as `toc_layer` says. With
/// `file`, the TOC's own file (`stargz.index.json`, which a full read of
/// an eStargz layer shows) is placed after the last file in the virtual
/// stream, as [`TocLayer::toc_file`] says. For zstd:chunked, `toc_at` is
/// where the TOC's skippable frame starts.
pub fn toc_layer_with(
    kind: TocKind,
    toc: &[TocEntryRef],
    file: Option<&TocFile>,
    index: usize,
    toc_at: u64,
    label: &str,
) -> Result<TocLayer, LazyError> {
    let mut out = Layer::default();
    let mut chunks: Vec<ChunkRef> = Vec::new();
    let mut virt = 0u64;
    let mut prefetch_end = None;
    let mut open: Option<OpenFile> = None;
    let mut starts: Vec<u64> = vec![toc_at];
    let codec = match kind {
        TocKind::Estargz => Codec::Gzip,
        TocKind::ZstdChunked => Codec::Zstd,
    };
    for e in toc {
        let err =
            |msg: &str| LazyError::Entry { layer: label.to_string(), name: e.name.to_string(), msg: msg.to_string() };
        if e.kind == "chunk" {
            let Some(f) = open.as_mut() else {
                return Err(err("a chunk with no file before it; refusing the layer"));
            };
            if f.name != *e.name {
                return Err(err("a chunk of another file than the one before it; refusing the layer"));
            }
            let c = chunk(kind, e, f.size, f.done, virt, toc_at, codec).map_err(|m| err(&m))?;
            if let Some(prev) = chunks.last_mut().filter(|p| p.comp_end == 0) {
                // zstd:chunked: the chunk before ends where this one starts.
                prev.comp_end = c.comp;
            }
            f.done += c.len;
            starts.push(c.comp);
            chunks.push(c);
            continue;
        }
        virt += close_file(open.take(), &mut chunks, label)?;
        let path = clean_entry_path(&e.name).map_err(&err)?.unwrap_or_default();
        if super::scan::take_marker(&mut out, &path).map_err(&err)? {
            continue;
        }
        let entry_kind = match &*e.kind {
            "dir" => Kind::Dir,
            "reg" => {
                if e.size > 0 {
                    let c = chunk(kind, e, e.size, 0, virt, toc_at, codec).map_err(|m| err(&m))?;
                    starts.push(c.comp);
                    open = Some(OpenFile { name: e.name.to_string(), size: e.size, done: c.len, end: e.end_offset });
                    chunks.push(c);
                }
                if kind == TocKind::Estargz && path == crate::layerindex::estargz::PREFETCH_LANDMARK {
                    prefetch_end = Some(e.offset);
                }
                Kind::File(DataRef::plain(index, virt, e.size))
            }
            "symlink" => Kind::Symlink(e.link_name.as_bytes().to_vec()),
            "hardlink" => match clean_entry_path(&e.link_name) {
                Ok(Some(t)) => Kind::HardLink(name_bytes(&t)),
                _ => return Err(err("a hard link that leaves the root filesystem; refusing the layer")),
            },
            "fifo" => Kind::Fifo,
            "char" | "block" => {
                let (major, minor) = (e.dev_major.try_into(), e.dev_minor.try_into());
                let (Ok(major), Ok(minor)) = (major, minor) else {
                    return Err(err("a device number out of range; refusing the layer"));
                };
                if e.kind == "char" {
                    Kind::Char { major, minor }
                } else {
                    Kind::Block { major, minor }
                }
            }
            other => return Err(err(&format!("unknown entry type {other:?}; refusing the layer"))),
        };
        if path.is_empty() && entry_kind != Kind::Dir {
            return Err(err("the root must be a directory"));
        }
        let mut xattrs = Vec::new();
        for (k, v) in &e.xattrs {
            use base64::Engine as _;
            let v = base64::engine::general_purpose::STANDARD
                .decode(v)
                .map_err(|_| err(&format!("xattr {k:?} is not base64; refusing the layer")))?;
            xattrs.push((k.as_bytes().to_vec(), v));
        }
        let mtime = crate::timefmt::parse_rfc3339(&e.mod_time).unwrap_or(0);
        let (Ok(uid), Ok(gid)) = (u32::try_from(e.uid), u32::try_from(e.gid)) else {
            return Err(err("an owner out of range; refusing the layer"));
        };
        out.entries.push(Entry {
            path: name_bytes(&path),
            kind: entry_kind,
            mode: (e.mode & 0o7777) as u32,
            uid,
            gid,
            mtime: (mtime, 0),
            xattrs,
        });
    }
    virt += close_file(open.take(), &mut chunks, label)?;
    let mut toc_file = None;
    if let Some(f) = file {
        out.entries.push(Entry {
            path: TOC_NAME.as_bytes().to_vec(),
            kind: Kind::File(DataRef::plain(index, virt, f.json.len() as u64)),
            mode: f.mode,
            uid: u32::try_from(f.uid).unwrap_or(0),
            gid: u32::try_from(f.gid).unwrap_or(0),
            mtime: (f.mtime, 0),
            xattrs: Vec::new(),
        });
        toc_file = Some((virt, f.json.len() as u64));
    }
    if kind == TocKind::Estargz {
        // Each member ends where the next one (or the TOC's) starts.
        starts.sort_unstable();
        starts.dedup();
        for c in &mut chunks {
            c.comp_end = starts[starts.partition_point(|&s| s <= c.comp)..].first().copied().unwrap_or(toc_at);
        }
    }
    for c in &chunks {
        let fail = |msg: String| LazyError::Entry { layer: label.to_string(), name: format!("at {}", c.comp), msg };
        if c.comp_end <= c.comp || c.comp_end > toc_at {
            return Err(fail(format!(
                "compressed bytes {}..{}, which are not before the table of contents; refusing the layer",
                c.comp, c.comp_end
            )));
        }
        if c.comp_end - c.comp > MAX_CHUNK + (1 << 20) {
            return Err(fail(format!(
                "a compressed chunk of {} bytes, over the {MAX_CHUNK} bytes allowed; refusing the layer",
                c.comp_end - c.comp
            )));
        }
    }
    Ok(TocLayer { layer: out, chunks, prefetch_end, toc_file })
}

/// The end of the regular file whose chunks were being read, if any: its
/// chunks must cover it; a zstd:chunked file's last chunk ends where the
/// file's frames end. Returns its size (what it takes in the virtual
/// stream).
fn close_file(open: Option<OpenFile>, chunks: &mut [ChunkRef], label: &str) -> Result<u64, LazyError> {
    let Some(f) = open else { return Ok(0) };
    if f.done != f.size {
        return Err(LazyError::Entry {
            layer: label.to_string(),
            name: f.name,
            msg: format!("its chunks cover {} of its {} bytes; refusing the layer", f.done, f.size),
        });
    }
    if let Some(last) = chunks.last_mut().filter(|c| c.comp_end == 0 && c.codec != Codec::Gzip) {
        last.comp_end = f.end;
    }
    Ok(f.size)
}

/// The chunk entry `e` of a file of `size` bytes, `done` of them covered by
/// the chunks before it; the file starts at `virt` of the virtual stream.
/// Its end in the blob is filled in later (0 here) unless the entry gives
/// it.
fn chunk(
    kind: TocKind,
    e: &TocEntryRef,
    size: u64,
    done: u64,
    virt: u64,
    toc_at: u64,
    codec: Codec,
) -> Result<ChunkRef, String> {
    if e.chunk_offset != done {
        return Err(format!("a chunk at {} where {done} was expected; refusing the layer", e.chunk_offset));
    }
    let len = if e.chunk_size == 0 { size - done } else { e.chunk_size };
    if len == 0 || len > size - done {
        return Err(format!("a chunk of {len} bytes at {done} of a {size}-byte file; refusing the layer"));
    }
    if len > MAX_CHUNK {
        return Err(format!("a chunk of {len} bytes, over the {MAX_CHUNK} bytes allowed; refusing the layer"));
    }
    if e.offset >= toc_at {
        return Err("a chunk that is not before the table of contents; refusing the layer".into());
    }
    let mut c =
        ChunkRef { virt: virt + done, len, comp: e.offset, comp_end: 0, inner: e.inner_offset, sha256: [0; 32], codec };
    match kind {
        TocKind::Estargz => {
            c.sha256 = sha256_of(&e.chunk_digest).ok_or_else(|| {
                format!("a chunk without a sha256 chunkDigest ({:?}); refusing the layer", e.chunk_digest)
            })?;
        }
        TocKind::ZstdChunked => {
            if e.offset == 0 {
                return Err("file data at offset 0, where the first tar header is; refusing the layer".into());
            }
            c.inner = 0;
            // A file of one chunk has only the file's digest and end.
            let single = e.chunk_digest.is_empty() && e.kind == "reg" && len == size;
            let digest = if single { &e.digest } else { &e.chunk_digest };
            c.sha256 = sha256_of(digest)
                .ok_or_else(|| format!("a chunk without a sha256 digest ({digest:?}); refusing the layer"))?;
            if single {
                c.comp_end = e.end_offset;
            }
            if e.chunk_type == "zeros" {
                c.codec = Codec::Zeros;
            } else if !e.chunk_type.is_empty() {
                return Err(format!("a chunk of unknown type {:?}; refusing the layer", e.chunk_type));
            }
        }
    }
    Ok(c)
}

/// The TOC of layer `d` (`size` bytes) and where its member starts:
/// footer and TOC from the cache or fetched (then kept), the TOC checked
/// against `want` before anything else is done with it.
pub fn read_toc(
    cache: &RangeCache,
    fetch: &dyn Fetch,
    d: &Digest,
    size: u64,
    want: &Digest,
) -> anyhow::Result<(TocFile, u64)> {
    let footer_at = size
        .checked_sub(FOOTER_SIZE as u64)
        .with_context(|| format!("layer {d} is {size} bytes, too small for eStargz"))?;
    let get = |start: u64, end: u64| -> anyhow::Result<(Vec<u8>, bool)> {
        if let Some(b) = cache.get(start, end)? {
            return Ok((b, false));
        }
        Ok((fetch.fetch(start, end).with_context(|| format!("reading bytes {start}..{end} of layer {d}"))?, true))
    };
    let (footer, fetched) = get(footer_at, size)?;
    let toc_at = crate::layerindex::estargz::parse_footer(&footer).with_context(|| format!("layer {d}"))?;
    if toc_at >= footer_at || footer_at - toc_at > MAX_TOC_SIZE {
        anyhow::bail!(
            "layer {d}: its eStargz footer puts the table of contents at {toc_at}, which cannot be right; refusing it"
        );
    }
    let (member, toc_fetched) = get(toc_at, footer_at)?;
    let file = crate::layerindex::estargz::read_toc_file(&member, Some(want)).with_context(|| format!("layer {d}"))?;
    // Kept only once checked.
    if fetched {
        let _ = cache.put(footer_at, &footer);
    }
    if toc_fetched {
        let _ = cache.put(toc_at, &member);
    }
    Ok((file, toc_at))
}

/// The TOC of zstd:chunked layer `d` (`size` bytes) at `pos` (from the
/// descriptor's annotation, or else from the layer's footer), checked
/// against `want` (the compressed TOC's digest) before it is decompressed;
/// from the cache or fetched (then kept). Returns its JSON and where its
/// skippable frame starts.
pub fn read_zstd_toc(
    cache: &RangeCache,
    fetch: &dyn Fetch,
    d: &Digest,
    size: u64,
    pos: Option<zstd_chunked::Position>,
    want: &Digest,
) -> anyhow::Result<(Vec<u8>, u64)> {
    let get = |start: u64, end: u64| -> anyhow::Result<(Vec<u8>, bool)> {
        if let Some(b) = cache.get(start, end)? {
            return Ok((b, false));
        }
        Ok((fetch.fetch(start, end).with_context(|| format!("reading bytes {start}..{end} of layer {d}"))?, true))
    };
    let pos = match pos {
        Some(p) => p,
        None => {
            let at = size
                .checked_sub(zstd_chunked::FOOTER_SIZE as u64)
                .with_context(|| format!("layer {d} is {size} bytes, too small for zstd:chunked"))?;
            let (footer, _) = get(at, size)?;
            zstd_chunked::parse_footer(&footer).with_context(|| format!("layer {d}"))?
        }
    };
    let end = pos.offset.checked_add(pos.len).filter(|&e| e <= size && pos.offset >= 8).with_context(|| {
        format!(
            "layer {d}: its table of contents is said to be at {}..+{}, outside its {size} bytes",
            pos.offset, pos.len
        )
    })?;
    if pos.len > zstd_chunked::MAX_TOC_SIZE {
        anyhow::bail!(
            "layer {d}: its table of contents is {} bytes, over the {} bytes accepted",
            pos.len,
            zstd_chunked::MAX_TOC_SIZE
        );
    }
    let (comp, fetched) = get(pos.offset, end)?;
    let json = zstd_chunked::read_toc(&comp, pos, want).with_context(|| format!("layer {d}"))?;
    // Kept only once checked.
    if fetched {
        let _ = cache.put(pos.offset, &comp);
    }
    Ok((json, pos.offset - 8))
}

/// Where a lazy layer's TOC is and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TocAt {
    /// eStargz: the TOC's digest (its footer says where it is).
    Estargz(Digest),
    /// zstd:chunked: the compressed TOC's digest, and where it lies when
    /// the descriptor says (else its footer is read).
    ZstdChunked(Digest, Option<zstd_chunked::Position>),
}

impl TocAt {
    pub fn digest(&self) -> &Digest {
        match self {
            TocAt::Estargz(d) | TocAt::ZstdChunked(d, _) => d,
        }
    }
}

/// What a stored remote layer's row says of its TOC (the media type gives
/// the format; a zstd:chunked TOC is found through the layer's footer).
pub fn toc_at_of_row(r: &crate::index::RemoteLayer) -> anyhow::Result<TocAt> {
    let d = Digest::parse(&r.toc_digest).with_context(|| format!("layer {}: its TOC digest", r.digest))?;
    Ok(if r.media_type.ends_with("zstd") { TocAt::ZstdChunked(d, None) } else { TocAt::Estargz(d) })
}

/// Layer `d` (`size` bytes, number `index` of its image) from its TOC,
/// read from the cache or fetched and checked as `at` says.
pub fn read_toc_layer(
    cache: &RangeCache,
    fetch: &dyn Fetch,
    d: &Digest,
    size: u64,
    at: &TocAt,
    index: usize,
    label: &str,
) -> anyhow::Result<TocLayer> {
    match at {
        TocAt::Estargz(want) => {
            let (file, toc_at) = read_toc(cache, fetch, d, size, want)?;
            let toc = crate::layerindex::estargz::toc_entries(&file.json).with_context(|| format!("layer {d}"))?;
            Ok(toc_layer_with(TocKind::Estargz, &toc, Some(&file), index, toc_at, label)?)
        }
        TocAt::ZstdChunked(want, pos) => {
            let (json, toc_at) = read_zstd_toc(cache, fetch, d, size, *pos, want)?;
            let toc = crate::layerindex::estargz::toc_entries(&json)
                .map_err(|e| anyhow::anyhow!("layer {d}: the zstd:chunked table of contents is damaged: {e}"))?;
            Ok(toc_layer_with(TocKind::ZstdChunked, &toc, None, index, toc_at, label)?)
        }
    }
}

/// Where a layer's bytes come from: a registry, or a test's stand-in.
pub trait Fetch: Send + Sync {
    /// Bytes `start..end` of the blob, exactly.
    fn fetch(&self, start: u64, end: u64) -> io::Result<Vec<u8>>;
}

/// What a mount fetched, per mount.
#[derive(Debug, Default)]
pub struct Stats {
    pub fetched_bytes: AtomicU64,
    pub requests: AtomicU64,
    pub cache_bytes: AtomicU64,
    pub failures: AtomicU64,
}

impl Stats {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "BytesFetched": self.fetched_bytes.load(Ordering::Relaxed),
            "Requests": self.requests.load(Ordering::Relaxed),
            "BytesFromCache": self.cache_bytes.load(Ordering::Relaxed),
            "FailedFetches": self.failures.load(Ordering::Relaxed),
        })
    }
}

/// The compressed bytes of a blob fetched so far: `lazy/<hex>` holds them
/// at their offsets (a sparse file), `lazy/<hex>.ranges` lists the ranges
/// written, 16 bytes each (start, length; little-endian), appended after
/// the bytes are written. Nothing read from here is trusted: every use
/// checks it against a digest.
pub struct RangeCache {
    data: File,
    log: Mutex<File>,
    have: Mutex<Vec<(u64, u64)>>,
}

/// `lazy/<hex>` and `lazy/<hex>.ranges` of blob `d` in store root `root`.
pub fn cache_paths(root: &Path, d: &Digest) -> (PathBuf, PathBuf) {
    let dir = root.join("lazy");
    (dir.join(d.hex()), dir.join(format!("{}.ranges", d.hex())))
}

impl RangeCache {
    pub fn open(root: &Path, d: &Digest, size: u64) -> io::Result<RangeCache> {
        let (data_path, log_path) = cache_paths(root, d);
        std::fs::create_dir_all(root.join("lazy"))?;
        let data = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&data_path)?;
        if data.metadata()?.len() != size {
            data.set_len(size)?;
        }
        let mut log = OpenOptions::new().read(true).append(true).create(true).open(&log_path)?;
        let mut have = Vec::new();
        let mut bytes = Vec::new();
        log.read_to_end(&mut bytes)?;
        for rec in bytes.chunks_exact(16) {
            let start = u64::from_le_bytes(rec[..8].try_into().unwrap_or([0; 8]));
            let len = u64::from_le_bytes(rec[8..].try_into().unwrap_or([0; 8]));
            if let Some(end) = start.checked_add(len).filter(|&e| e <= size) {
                have.push((start, end));
            }
        }
        Ok(RangeCache { data, log: Mutex::new(log), have: Mutex::new(merge(have)) })
    }

    /// Ranges held, merged and sorted.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.have.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Bytes `start..end`, if all are held.
    pub fn get(&self, start: u64, end: u64) -> io::Result<Option<Vec<u8>>> {
        let held = self.have.lock().map(|h| covered(&h, start, end)).unwrap_or(false);
        if !held {
            return Ok(None);
        }
        let mut buf = vec![0u8; (end - start) as usize];
        self.data.read_exact_at(&mut buf, start)?;
        Ok(Some(buf))
    }

    /// Keeps `bytes` at `start`.
    pub fn put(&self, start: u64, bytes: &[u8]) -> io::Result<()> {
        self.data.write_all_at(bytes, start)?;
        let mut rec = [0u8; 16];
        rec[..8].copy_from_slice(&start.to_le_bytes());
        rec[8..].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
        if let Ok(mut log) = self.log.lock() {
            log.write_all(&rec)?;
        }
        if let Ok(mut h) = self.have.lock() {
            h.push((start, start + bytes.len() as u64));
            let merged = merge(std::mem::take(&mut *h));
            *h = merged;
        }
        Ok(())
    }

    /// Reads bytes `start..end` that are held into `buf`.
    pub fn read_held(&self, start: u64, buf: &mut [u8]) -> io::Result<()> {
        self.data.read_exact_at(buf, start)
    }
}

fn merge(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

fn covered(have: &[(u64, u64)], start: u64, end: u64) -> bool {
    let i = have.partition_point(|r| r.1 < end);
    have.get(i).is_some_and(|r| r.0 <= start && r.1 >= end)
}

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

/// `lazy/<hex>.index`: layer `d`'s tree and chunk table, from its TOC
/// (written at pull time, so that a mount maps it instead of parsing the
/// TOC again).
pub fn index_path(root: &Path, d: &Digest) -> PathBuf {
    root.join("lazy").join(format!("{}.index", d.hex()))
}

const PACK_MAGIC: &[u8; 8] = b"IMGLAZY1";

/// The chunk table as 32-byte words, in the checksum list of an index
/// file (`index_file`, whose head is hashed): a header word (magic, chunk
/// count, where the TOC's file starts and its size), a word with the
/// prefetch end (+1; 0 for none), then three words a chunk: virtual
/// offset, length, member start and end; bytes to skip and codec; sha256.
fn pack(tl: &TocLayer) -> Vec<[u8; 32]> {
    let mut out = Vec::with_capacity(2 + 3 * tl.chunks.len());
    let word = |vals: [u64; 4]| {
        let mut w = [0u8; 32];
        for (i, v) in vals.iter().enumerate() {
            w[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        w
    };
    let (toc_virt, toc_len) = tl.toc_file.unwrap_or((0, 0));
    let mut head = word([0, tl.chunks.len() as u64, toc_virt, toc_len]);
    head[..8].copy_from_slice(PACK_MAGIC);
    out.push(head);
    out.push(word([tl.prefetch_end.map(|e| e + 1).unwrap_or(0), 0, 0, 0]));
    for c in &tl.chunks {
        out.push(word([c.virt, c.len, c.comp, c.comp_end]));
        out.push(word([c.inner, c.codec.code(), 0, 0]));
        out.push(c.sha256);
    }
    out
}

/// What [`pack`] wrote: (chunks, TOC file start and size, prefetch end).
type Unpacked = (Vec<ChunkRef>, Option<(u64, u64)>, Option<u64>);

fn unpack(words: &[[u8; 32]]) -> Option<Unpacked> {
    let u = |w: &[u8; 32], i: usize| u64::from_le_bytes(w[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    let head = words.first()?;
    if &head[..8] != PACK_MAGIC {
        return None;
    }
    let n = usize::try_from(u(head, 1)).ok()?;
    if words.len() != 2 + 3 * n {
        return None;
    }
    let toc = (u(head, 3) > 0).then(|| (u(head, 2), u(head, 3)));
    let prefetch = u(&words[1], 0).checked_sub(1);
    let chunks = words[2..]
        .chunks_exact(3)
        .map(|w| {
            Some(ChunkRef {
                virt: u(&w[0], 0),
                len: u(&w[0], 1),
                comp: u(&w[0], 2),
                comp_end: u(&w[0], 3),
                inner: u(&w[1], 0),
                sha256: w[2],
                codec: Codec::from_code(u(&w[1], 1))?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some((chunks, toc, prefetch))
}

/// Writes `lazy/<hex>.index` for layer `d` (aside, then renamed into place).
pub fn write_index(root: &Path, d: &Digest, tl: &TocLayer) -> io::Result<()> {
    let ix = super::index_file::LayerIndex {
        layer: tl.layer.clone(),
        chunks: pack(tl),
        access: crate::layerindex::SharedBytes::default(),
    };
    let bytes = super::index_file::encode(d, &ix);
    let path = index_path(root, d);
    std::fs::create_dir_all(root.join("lazy"))?;
    let tmp = path.with_extension(format!("index.tmp-{}", std::process::id()));
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, &path)
}

/// Layer `d`'s tree (as layer `i` of its image), chunk table, TOC file
/// place and prefetch end, from `lazy/<hex>.index`; `None` when it is
/// missing or damaged (the TOC is read instead).
pub fn read_index(root: &Path, d: &Digest, i: usize) -> Option<(Layer, Unpacked)> {
    let map = super::map_index(&index_path(root, d))?;
    let ix = super::index_file::decode(&map, d, i).ok()?;
    let unpacked = unpack(&ix.chunks)?;
    Some((ix.layer, unpacked))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layerindex::estargz::tests::random;
    use crate::layerindex::estargz::{self, Toc};
    use std::collections::HashMap;

    /// Serves a blob from memory, counting requests.
    struct Mem {
        blob: Vec<u8>,
        calls: Mutex<Vec<(u64, u64)>>,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Fetch for Mem {
        fn fetch(&self, start: u64, end: u64) -> io::Result<Vec<u8>> {
            if self.fail.load(Ordering::Relaxed) {
                return Err(io::Error::other("registry gone"));
            }
            self.calls.lock().unwrap().push((start, end));
            Ok(self.blob[start as usize..end as usize].to_vec())
        }
    }

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, "d/", io::empty()).unwrap();
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o640);
            h.set_size(data.len() as u64);
            h.set_mtime(1_700_000_000);
            b.append_data(&mut h, name, *data).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o644);
        b.append_data(&mut h, "d/.wh.gone", io::empty()).unwrap();
        b.into_inner().unwrap()
    }

    fn layer(files: &[(&str, &[u8])], chunk: u64) -> (Vec<u8>, TocLayer, Toc) {
        let tar = tar_of(files);
        let mut blob = Vec::new();
        let (conv, _) = estargz::convert(|| Ok(io::Cursor::new(tar.clone())), &mut blob, chunk, &[]).unwrap();
        let toc_at = estargz::parse_footer(&blob[blob.len() - estargz::FOOTER_SIZE..]).unwrap();
        let (toc, _) =
            estargz::parse_toc(&blob[toc_at as usize..blob.len() - estargz::FOOTER_SIZE], Some(&conv.toc_digest))
                .unwrap();
        let refs: Vec<TocEntryRef> = toc.entries.iter().map(TocEntryRef::from).collect();
        let tl = toc_layer(&refs, 0, toc_at, "test").unwrap();
        (blob, tl, toc)
    }

    /// A fresh directory, removed when dropped.
    struct Scratch(PathBuf);
    impl Scratch {
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn scratch(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("img-lazy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }

    fn offset_of(tl: &TocLayer, path: &str) -> u64 {
        tl.layer
            .entries
            .iter()
            .find_map(|e| match &e.kind {
                Kind::File(r) if e.path == path.as_bytes() => Some(r.offset),
                _ => None,
            })
            .unwrap()
    }

    fn contents(tl: &TocLayer, src: &RemoteLayer) -> HashMap<Vec<u8>, Vec<u8>> {
        let mut out = HashMap::new();
        for e in &tl.layer.entries {
            if let Kind::File(r) = &e.kind {
                let mut buf = vec![0u8; r.size as usize];
                let mut got = 0;
                while got < buf.len() {
                    let n = src.read_at(r.offset + got as u64, &mut buf[got..]).unwrap();
                    assert!(n > 0);
                    got += n;
                }
                out.insert(e.path.clone(), buf);
            }
        }
        out
    }

    #[test]
    fn files_read_from_chunks_fetched_once_and_cached() {
        let big = random(300_000, 3);
        let files: Vec<(&str, &[u8])> = vec![("d/a", b"hello\n"), ("d/big", &big), ("d/empty", b"")];
        let (blob, tl, _) = layer(&files, 64 << 10);
        assert_eq!(tl.layer.whiteouts, vec![b"d/gone".to_vec()]);
        assert!(tl.chunks.len() >= 6, "300 kB in 64 KiB chunks: {}", tl.chunks.len());
        let dir = scratch("t1");
        let d = Digest::of_bytes(&blob);
        let mem = Arc::new(Mem { blob: blob.clone(), calls: Mutex::new(Vec::new()), fail: false.into() });
        let stats = Arc::new(Stats::default());
        let cache = RangeCache::open(dir.path(), &d, blob.len() as u64).unwrap();
        let src = RemoteLayer::new("test".into(), tl.chunks.clone(), mem.clone(), Some(cache), stats.clone());
        let got = contents(&tl, &src);
        assert_eq!(got[&b"d/a".to_vec()], b"hello\n");
        assert_eq!(got[&b"d/big".to_vec()], big);
        assert_eq!(got[&b"d/empty".to_vec()], b"");
        let calls = mem.calls.lock().unwrap().len();
        assert_eq!(calls as u64, stats.requests.load(Ordering::Relaxed));
        assert!(calls >= tl.chunks.len());
        // A second layer over the same cache fetches nothing.
        let cache = RangeCache::open(dir.path(), &d, blob.len() as u64).unwrap();
        let again = RemoteLayer::new("test".into(), tl.chunks.clone(), mem.clone(), Some(cache), stats.clone());
        assert_eq!(contents(&tl, &again)[&b"d/big".to_vec()], big);
        assert_eq!(mem.calls.lock().unwrap().len(), calls);
        assert!(stats.cache_bytes.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn a_registry_serving_other_bytes_fails_the_read_and_caches_nothing() {
        let files: Vec<(&str, &[u8])> = vec![("d/a", b"the real content\n")];
        let (mut blob, tl, _) = layer(&files, 1 << 20);
        let c = tl.chunks.iter().find(|c| c.virt == offset_of(&tl, "d/a")).unwrap().clone();
        // A byte of the deflate data changed, just after the gzip header.
        blob[c.comp as usize + 11] ^= 0x55;
        let dir = scratch("t2");
        let d = Digest::of_bytes(b"x");
        let mem = Arc::new(Mem { blob: blob.clone(), calls: Mutex::new(Vec::new()), fail: false.into() });
        let cache = RangeCache::open(dir.path(), &d, blob.len() as u64).unwrap();
        let src = RemoteLayer::new("test".into(), tl.chunks.clone(), mem, Some(cache), Arc::new(Stats::default()));
        let mut buf = [0u8; 64];
        let e = src.read_at(offset_of(&tl, "d/a"), &mut buf).unwrap_err().to_string();
        assert!(e.contains("other bytes than the image's table of contents says"), "{e}");
        let cache = RangeCache::open(dir.path(), &d, blob.len() as u64).unwrap();
        assert!(cache.ranges().is_empty());
    }

    #[test]
    fn a_damaged_cache_is_fetched_again() {
        let files: Vec<(&str, &[u8])> = vec![("d/a", b"cached content\n")];
        let (blob, tl, _) = layer(&files, 1 << 20);
        let dir = scratch("t3");
        let d = Digest::of_bytes(&blob);
        let c = tl.chunks.iter().find(|c| c.virt == offset_of(&tl, "d/a")).unwrap().clone();
        let cache = RangeCache::open(dir.path(), &d, blob.len() as u64).unwrap();
        cache.put(c.comp, &vec![0u8; (c.comp_end - c.comp) as usize]).unwrap();
        let mem = Arc::new(Mem { blob: blob.clone(), calls: Mutex::new(Vec::new()), fail: false.into() });
        let src =
            RemoteLayer::new("test".into(), tl.chunks.clone(), mem.clone(), Some(cache), Arc::new(Stats::default()));
        let mut buf = [0u8; 15];
        assert_eq!(src.read_at(offset_of(&tl, "d/a"), &mut buf).unwrap(), 15);
        assert_eq!(&buf, b"cached content\n");
        assert_eq!(mem.calls.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_failed_fetch_is_an_error_and_a_later_one_succeeds() {
        let files: Vec<(&str, &[u8])> = vec![("d/a", b"later\n")];
        let (blob, tl, _) = layer(&files, 1 << 20);
        let mem = Arc::new(Mem { blob, calls: Mutex::new(Vec::new()), fail: true.into() });
        let stats = Arc::new(Stats::default());
        let src = RemoteLayer::new("test".into(), tl.chunks.clone(), mem.clone(), None, stats.clone());
        let mut buf = [0u8; 6];
        let at = offset_of(&tl, "d/a");
        assert!(src.read_at(at, &mut buf).is_err());
        assert_eq!(stats.failures.load(Ordering::Relaxed), 1);
        mem.fail.store(false, Ordering::Relaxed);
        assert_eq!(src.read_at(at, &mut buf).unwrap(), 6);
        assert_eq!(&buf, b"later\n");
    }

    #[test]
    fn the_index_written_at_pull_gives_back_the_tree_and_the_chunks() {
        let big = random(200_000, 5);
        let files: Vec<(&str, &[u8])> = vec![("d/a", b"x"), ("d/big", &big)];
        let (blob, _, toc) = layer(&files, 64 << 10);
        let toc_at = estargz::parse_footer(&blob[blob.len() - estargz::FOOTER_SIZE..]).unwrap();
        let (_, file) =
            estargz::parse_toc_file(&blob[toc_at as usize..blob.len() - estargz::FOOTER_SIZE], None).unwrap();
        let refs: Vec<TocEntryRef> = toc.entries.iter().map(TocEntryRef::from).collect();
        let tl = toc_layer_with(TocKind::Estargz, &refs, Some(&file), 3, toc_at, "t").unwrap();
        let dir = scratch("index");
        let d = Digest::of_bytes(&blob);
        write_index(dir.path(), &d, &tl).unwrap();
        let (layer, (chunks, toc_file, prefetch)) = read_index(dir.path(), &d, 3).unwrap();
        assert_eq!(layer, tl.layer);
        assert_eq!(chunks, tl.chunks);
        assert_eq!(toc_file, tl.toc_file);
        assert_eq!(prefetch, tl.prefetch_end);
        // Another layer's digest, or a damaged file, gives nothing.
        assert!(read_index(dir.path(), &Digest::of_bytes(b"other"), 3).is_none());
        let p = index_path(dir.path(), &d);
        let mut bytes = std::fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert!(read_index(dir.path(), &d, 3).is_none());
    }

    #[test]
    fn hostile_tocs_are_refused_naming_the_entry() {
        let files: Vec<(&str, &[u8])> = vec![("d/a", b"abc")];
        let (_, _, toc) = layer(&files, 1 << 20);
        let toc_at = 1 << 30;
        let reg = toc.entries.iter().position(|e| e.name == "d/a").unwrap();
        type Edit = Box<dyn Fn(&mut Toc)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(move |t: &mut Toc| t.entries[reg].name = "../../etc/passwd".into()), "passwd"),
            (Box::new(move |t: &mut Toc| t.entries[reg].chunk_digest = String::new()), "chunkDigest"),
            (Box::new(move |t: &mut Toc| t.entries[reg].chunk_size = 2), "cover 2 of its 3"),
            (Box::new(move |t: &mut Toc| t.entries[reg].chunk_size = 9), "a chunk of 9 bytes"),
            (Box::new(move |t: &mut Toc| t.entries[reg].offset = 1 << 31), "not before the table"),
            (Box::new(move |t: &mut Toc| t.entries[reg].kind = "socket".into()), "unknown entry type"),
            (Box::new(move |t: &mut Toc| t.entries[reg].uid = 1 << 40), "owner out of range"),
            (
                Box::new(move |t: &mut Toc| {
                    t.entries[reg].kind = "hardlink".into();
                    t.entries[reg].link_name = "/../../x/../../..".into();
                }),
                "hard link",
            ),
            (
                Box::new(move |t: &mut Toc| {
                    let mut c = t.entries[reg].clone();
                    c.kind = "chunk".into();
                    c.name = "other".into();
                    t.entries.insert(reg + 1, c);
                }),
                "another file",
            ),
        ];
        for (f, want) in cases {
            let mut t = toc.clone();
            f(&mut t);
            let refs: Vec<TocEntryRef> = t.entries.iter().map(TocEntryRef::from).collect();
            let e = toc_layer(&refs, 0, toc_at, "L").unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    /// A zstd:chunked layer of `files`, its TOC read back through a fetch.
    fn zlayer(files: &[(&str, &[u8])], chunk: u64) -> (Vec<u8>, TocLayer, Vec<u8>) {
        let tar = tar_of(files);
        let (conv, blob) = zstd_chunked::convert(|| Ok(io::Cursor::new(tar.clone())), Vec::new(), chunk).unwrap();
        let dir = scratch(&format!("z{}", files.len()));
        let d = Digest::of_bytes(&blob);
        let cache = RangeCache::open(dir.path(), &d, blob.len() as u64).unwrap();
        let mem = Mem { blob: blob.clone(), calls: Mutex::new(Vec::new()), fail: false.into() };
        let at = TocAt::ZstdChunked(conv.toc_digest.clone(), Some(conv.toc));
        let tl = read_toc_layer(&cache, &mem, &d, blob.len() as u64, &at, 0, "z").unwrap();
        assert_eq!(mem.calls.lock().unwrap().len(), 1, "the TOC is one request");
        // Without the position, the footer gives it (one more request).
        let cache = RangeCache::open(scratch("zf").path(), &d, blob.len() as u64).unwrap();
        let by_footer =
            read_toc_layer(&cache, &mem, &d, blob.len() as u64, &TocAt::ZstdChunked(conv.toc_digest, None), 0, "z")
                .unwrap();
        assert_eq!(by_footer.chunks, tl.chunks);
        let (json, _) = read_zstd_toc(
            &RangeCache::open(scratch("zj").path(), &d, blob.len() as u64).unwrap(),
            &mem,
            &d,
            blob.len() as u64,
            Some(conv.toc),
            at.digest(),
        )
        .unwrap();
        (blob, tl, json)
    }

    #[test]
    fn zstd_chunked_files_read_from_their_frames_and_the_tree_is_the_tars() {
        let big = random(300_000, 11);
        let files: Vec<(&str, &[u8])> = vec![("d/a", b"hello zstd\n"), ("d/big", &big), ("d/empty", b"")];
        let (blob, tl, _) = zlayer(&files, 64 << 10);
        assert_eq!(tl.layer.whiteouts, vec![b"d/gone".to_vec()]);
        assert!(tl.chunks.iter().all(|c| c.codec == Codec::Zstd && c.comp < c.comp_end));
        assert_eq!(tl.chunks.len(), 1 + 5, "one chunk for d/a, five of 64 KiB for 300 kB");
        let dir = scratch("zt1");
        let d = Digest::of_bytes(&blob);
        let mem = Arc::new(Mem { blob: blob.clone(), calls: Mutex::new(Vec::new()), fail: false.into() });
        let cache = RangeCache::open(dir.path(), &d, blob.len() as u64).unwrap();
        let src = RemoteLayer::new("z".into(), tl.chunks.clone(), mem.clone(), Some(cache), Arc::new(Stats::default()));
        let got = contents(&tl, &src);
        assert_eq!(got[&b"d/a".to_vec()], b"hello zstd\n");
        assert_eq!(got[&b"d/big".to_vec()], big);
        assert_eq!(got[&b"d/empty".to_vec()], b"");
        // Each chunk is one request for its own frames, no more.
        let calls = mem.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), tl.chunks.len());
        let fetched: u64 = calls.iter().map(|(s, e)| e - s).sum();
        assert!(fetched < blob.len() as u64, "fetched {fetched} of {}", blob.len());
        // The index keeps the codec.
        write_index(dir.path(), &d, &tl).unwrap();
        let (_, (chunks, _, _)) = read_index(dir.path(), &d, 0).unwrap();
        assert_eq!(chunks, tl.chunks);
    }

    #[test]
    fn zstd_chunked_frames_that_do_not_match_the_toc_fail_the_read() {
        let files: Vec<(&str, &[u8])> = vec![("d/a", b"the real zstd content\n")];
        let (mut blob, tl, _) = zlayer(&files, 1 << 20);
        let c = tl.chunks[0].clone();
        // The frame of another content put in its place, same length.
        let other = zstd::bulk::compress(b"the fake zstd content\n", 3).unwrap();
        assert_eq!(other.len() as u64, c.comp_end - c.comp);
        blob[c.comp as usize..c.comp_end as usize].copy_from_slice(&other);
        let mem = Arc::new(Mem { blob, calls: Mutex::new(Vec::new()), fail: false.into() });
        let src = RemoteLayer::new("z".into(), tl.chunks.clone(), mem, None, Arc::new(Stats::default()));
        let mut buf = [0u8; 64];
        let e = src.read_at(offset_of(&tl, "d/a"), &mut buf).unwrap_err().to_string();
        assert!(e.contains("does not match its digest"), "{e}");
    }

    #[test]
    fn zstd_chunked_zero_chunks_are_not_fetched_and_hostile_offsets_are_refused() {
        let zeros = vec![0u8; 200_000];
        let files: Vec<(&str, &[u8])> = vec![("d/z", &zeros)];
        let (_, _, json) = zlayer(&files, 64 << 10);
        let toc_at = 1 << 30;
        let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        for e in v["entries"].as_array_mut().unwrap() {
            if e["name"] == "d/z" {
                e["chunkType"] = "zeros".into();
            }
        }
        let edited = serde_json::to_vec(&v).unwrap();
        let refs = estargz::toc_entries(&edited).unwrap();
        let tl = toc_layer_with(TocKind::ZstdChunked, &refs, None, 0, toc_at, "z").unwrap();
        assert!(tl.chunks.iter().all(|c| c.codec == Codec::Zeros));
        let mem = Arc::new(Mem { blob: Vec::new(), calls: Mutex::new(Vec::new()), fail: true.into() });
        let src = RemoteLayer::new("z".into(), tl.chunks.clone(), mem, None, Arc::new(Stats::default()));
        assert_eq!(contents(&tl, &src)[&b"d/z".to_vec()], zeros);

        let bad = |edit: &dyn Fn(&mut serde_json::Value), at: u64, want: &str| {
            let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
            let reg = v["entries"].as_array().unwrap().iter().position(|e| e["type"] == "reg").unwrap();
            edit(&mut v["entries"][reg]);
            let edited = serde_json::to_vec(&v).unwrap();
            let refs = estargz::toc_entries(&edited).unwrap();
            let e = toc_layer_with(TocKind::ZstdChunked, &refs, None, 0, at, "z").unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        };
        let real_at = 2 << 20;
        bad(&|e| e["chunkDigest"] = "".into(), real_at, "sha256 digest");
        bad(&|e| e["offset"] = 0.into(), real_at, "offset 0");
        bad(&|e| e["chunkType"] = "holes".into(), real_at, "unknown type");
        bad(&|e| e["offset"] = (real_at + 5).into(), real_at, "not before the table");
        // The file's last frames said to end past the TOC, or before they start.
        bad(&|e| e["endOffset"] = (real_at + 1).into(), real_at, "not before the table of contents");
        bad(&|e| e["endOffset"] = 1.into(), real_at, "not before the table of contents");
    }

    proptest::proptest! {
        /// Any TOC entries, in either format: a layer or an error, never a
        /// panic; a layer's chunks lie before the TOC and cover its files.
        #[test]
        fn any_toc_gives_a_checked_layer_or_an_error(
            ents in proptest::collection::vec((
                0usize..5, 0usize..4, 0u64..300, 0u64..2000, 0u64..2000, 0u64..300, 0u64..300, proptest::bool::ANY,
            ), 0..12),
            zstd in proptest::bool::ANY,
        ) {
            let names = ["a", "a/b", "c", "../x", ""];
            let kinds = ["reg", "chunk", "dir", "hardlink"];
            let sha = Digest::of_bytes(b"x").to_string();
            let toc: Vec<estargz::TocEntry> = ents
                .iter()
                .map(|&(n, k, size, offset, end, chunk_offset, chunk_size, digest)| estargz::TocEntry {
                    name: names[n].into(),
                    kind: kinds[k].into(),
                    size,
                    offset,
                    chunk_offset,
                    chunk_size,
                    link_name: "a".into(),
                    digest: if digest { sha.clone() } else { String::new() },
                    chunk_digest: if digest { sha.clone() } else { String::new() },
                    ..estargz::TocEntry { inner_offset: end % 7, ..estargz::TocEntry::default() }
                })
                .collect();
            let mut refs: Vec<TocEntryRef> = toc.iter().map(TocEntryRef::from).collect();
            for (r, e) in refs.iter_mut().zip(&ents) {
                r.end_offset = e.4;
            }
            let kind = if zstd { TocKind::ZstdChunked } else { TocKind::Estargz };
            let toc_at = 1500;
            if let Ok(tl) = toc_layer_with(kind, &refs, None, 0, toc_at, "p") {
                let mut virt = 0;
                for c in &tl.chunks {
                    proptest::prop_assert!(c.comp < c.comp_end && c.comp_end <= toc_at);
                    proptest::prop_assert_eq!(c.virt, virt);
                    virt += c.len;
                }
            }
        }
    }
}
