//! A lazy layer's table of contents: where it is (`TocAt`), read and
//! checked against the manifest's digest (eStargz's footer and member,
//! zstd:chunked's skippable frame), and turned into the layer's tree and
//! chunk table (`TocLayer`), every entry checked as a tar's would be.

use super::Fetch;
use crate::archive::layer::{clean_entry_path, name_bytes};
use crate::digest::Digest;
use crate::layerindex::estargz::{TocEntryRef, TocFile, FOOTER_SIZE, MAX_TOC_SIZE, TOC_NAME};
use crate::layerindex::zstd_chunked;
use crate::store::RangeCache;
use anyhow::Context as _;
use img_fuse::{DataRef, Entry, Kind, Layer};

/// The most one chunk may take, compressed or not; stargz-snapshotter
/// writes 4 MiB chunks.
pub const MAX_CHUNK: u64 = 64 << 20;

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
    pub(super) fn code(self) -> u64 {
        match self {
            Codec::Gzip => 0,
            Codec::Zstd => 1,
            Codec::Zeros => 2,
        }
    }

    pub(super) fn from_code(c: u64) -> Option<Codec> {
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
        if super::super::scan::take_marker(&mut out, &path).map_err(&err)? {
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
pub fn toc_at_of_row(r: &crate::store::index::RemoteLayer) -> anyhow::Result<TocAt> {
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
