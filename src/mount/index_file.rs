//! The layer index file: what a scan of one layer found (entries with the
//! offsets of their data, whiteouts, opaque directories), kept in the store
//! under `indexes/<layer hex>` so that a layer is scanned once, not at
//! every mount. Derived data: written to a temp file and renamed, checked
//! (magic, version, layer digest, sha256 of the body) when read, and simply
//! rebuilt when anything is wrong with it. Parsing is pure and bounded.
//!
//! Layout: magic, version, the sha256 of the head and the head's length,
//! then the head (entries, whiteouts, opaque directories, chunk checks) and
//! last the random-access index, which is not hashed here: it checks itself
//! (a checksum over its table, one per window when a read uses it), so an
//! index file can be mapped and its windows left unread until needed.

use crate::digest::Digest;
use crate::layerindex::SharedBytes;
use img_fuse::{DataRef, Entry, Kind, Layer, SparseMap, MAX_SEGMENTS};
use sha2::{Digest as _, Sha256};

const MAGIC: &[u8; 8] = b"IMGLIDX\0";
/// Format 7 says how its chunks are checked (a CRC-32 each, or sha256);
/// format 6, whose chunks are all sha256, is still read.
pub const VERSION: u32 = 7;
const VERSION_SHA256_CHUNKS: u32 = 6;
/// Magic, version, sha256 of the head, length of the head.
const HEADER: usize = 8 + 4 + 32 + 8;
/// Upper bounds a file is checked against before anything is allocated.
const MAX_ITEMS: u64 = 50_000_000;
const MAX_BYTES: u64 = 1 << 16;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum IndexFileError {
    #[error("not a layer index")]
    Magic,
    #[error("layer index format {0} is not known to this img")]
    Version(u32),
    #[error("the layer index is for another layer")]
    Layer,
    #[error("the layer index is damaged: {0}")]
    Damaged(&'static str),
}

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
}

struct R<'a> {
    b: &'a [u8],
    at: usize,
}

type Res<T> = Result<T, IndexFileError>;

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or(IndexFileError::Damaged("truncated"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Res<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Res<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| IndexFileError::Damaged("truncated"))?))
    }
    fn u64(&mut self) -> Res<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| IndexFileError::Damaged("truncated"))?))
    }
    fn count(&mut self) -> Res<usize> {
        let n = self.u64()?;
        if n > MAX_ITEMS || n as usize > self.b.len() - self.at {
            return Err(IndexFileError::Damaged("a count is too large"));
        }
        Ok(n as usize)
    }
    /// A sparse file's map: where its data starts, its size and its
    /// segments, checked as a scan checks them.
    fn sparse_map(&mut self) -> Res<SparseMap> {
        let (at, size) = (self.u64()?, self.u64()?);
        let n = self.count()?;
        if n > MAX_SEGMENTS {
            return Err(IndexFileError::Damaged("a sparse map has too many segments"));
        }
        if n > (self.b.len() - self.at) / 16 {
            return Err(IndexFileError::Damaged("truncated"));
        }
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            pairs.push((self.u64()?, self.u64()?));
        }
        SparseMap::new(size, at, pairs).map_err(|_| IndexFileError::Damaged("a bad sparse map"))
    }
    fn bytes(&mut self, max: u64) -> Res<Vec<u8>> {
        let n = self.u64()?;
        if n > max {
            return Err(IndexFileError::Damaged("a string is too long"));
        }
        Ok(self.take(n as usize)?.to_vec())
    }
}

/// A check of each `CHUNK` bytes (64 KiB) of a layer blob, so that a read of
/// part of the blob can be checked without hashing all of it.
pub const CHUNK: u64 = 64 << 10;

/// The checks of a blob's chunks, in order.
///
/// A CRC-32 per chunk is what an index written now holds: the chunks'
/// checks are made from bytes whose sha256 is checked against the layer's
/// digest at the same time (see `mount::index_layer`), so they only have
/// to catch the blob changing on disk afterwards (a flipped bit, a torn or
/// truncated write), which a CRC-32 does as well as a sha256 of the chunk:
/// every error burst of up to 32 bits and any odd number of flipped bits
/// are caught, and other damage passes with a chance of 2^-32 per chunk.
/// Against someone who can write the store a sha256 per chunk would not
/// help either: the index file beside the blob is theirs to rewrite too.
/// The CRC is computed with carry-less multiplication (PCLMULQDQ, ARM's CRC
/// instructions) where the CPU has it, at several GB/s, which makes the
/// check a small part of reading a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkSums {
    /// sha256 of each chunk (index files of format 6; lazy layers keep
    /// their chunk table as 32-byte words here).
    Sha256(Vec<[u8; 32]>),
    /// CRC-32 (the gzip polynomial) of each chunk.
    Crc32(Vec<u32>),
}

impl Default for ChunkSums {
    fn default() -> Self {
        ChunkSums::Crc32(Vec::new())
    }
}

impl ChunkSums {
    pub fn len(&self) -> usize {
        match self {
            ChunkSums::Sha256(v) => v.len(),
            ChunkSums::Crc32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The 32-byte words of an index that holds them.
    pub fn words(&self) -> Option<&[[u8; 32]]> {
        match self {
            ChunkSums::Sha256(v) => Some(v),
            ChunkSums::Crc32(_) => None,
        }
    }

    /// Whether chunk `i` holds `data`; None when there is no check for it.
    pub fn check(&self, i: usize, data: &[u8]) -> Option<bool> {
        match self {
            ChunkSums::Sha256(v) => v.get(i).map(|want| Sha256::digest(data).as_slice() == want),
            ChunkSums::Crc32(v) => v.get(i).map(|&want| crc32(data) == want),
        }
    }
}

/// The CRC-32 of `data` (zlib-rs's, hardware-assisted where it can be).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(data);
    c.sum()
}

/// What an index file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerIndex {
    pub layer: Layer,
    /// A check of each `CHUNK` of the (compressed) blob, in order.
    pub chunks: ChunkSums,
    /// The random-access index of a gzip layer (`layerindex::gzip`) or a
    /// zstd layer (`layerindex::zstd`), serialised; empty for others.
    pub access: SharedBytes,
}

/// Serialises the scan of layer `digest`.
pub fn encode(digest: &Digest, index: &LayerIndex) -> Vec<u8> {
    let layer = &index.layer;
    let mut w = W(Vec::new());
    w.bytes(digest.as_str().as_bytes());
    w.u64(layer.entries.len() as u64);
    for e in &layer.entries {
        w.bytes(&e.path);
        match &e.kind {
            Kind::File(d) => match &d.sparse {
                None => {
                    w.u8(0);
                    w.u64(d.offset);
                    w.u64(d.size);
                }
                Some(map) => {
                    // The data's segments as (start, length); where each is
                    // stored follows from the order, as in the tar.
                    w.u8(7);
                    w.u64(d.offset);
                    w.u64(d.size);
                    w.u64(map.segments().len() as u64);
                    for s in map.segments() {
                        w.u64(s.start);
                        w.u64(s.len);
                    }
                }
            },
            Kind::Dir => w.u8(1),
            Kind::Symlink(t) => {
                w.u8(2);
                w.bytes(t);
            }
            Kind::HardLink(t) => {
                w.u8(3);
                w.bytes(t);
            }
            Kind::Fifo => w.u8(4),
            Kind::Char { major, minor } => {
                w.u8(5);
                w.u32(*major);
                w.u32(*minor);
            }
            Kind::Block { major, minor } => {
                w.u8(6);
                w.u32(*major);
                w.u32(*minor);
            }
        }
        w.u32(e.mode);
        w.u32(e.uid);
        w.u32(e.gid);
        w.u64(e.mtime.0 as u64);
        w.u32(e.mtime.1);
        w.u64(e.xattrs.len() as u64);
        for (k, v) in &e.xattrs {
            w.bytes(k);
            w.bytes(v);
        }
    }
    for list in [&layer.whiteouts, &layer.opaque] {
        w.u64(list.len() as u64);
        for p in list {
            w.bytes(p);
        }
    }
    match &index.chunks {
        ChunkSums::Sha256(v) => {
            w.u8(CHUNKS_SHA256);
            w.u64(v.len() as u64);
            for c in v {
                w.0.extend_from_slice(c);
            }
        }
        ChunkSums::Crc32(v) => {
            w.u8(CHUNKS_CRC32);
            w.u64(v.len() as u64);
            for c in v {
                w.u32(*c);
            }
        }
    }
    let head = w.0;
    let mut out = Vec::with_capacity(HEADER + head.len() + index.access.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&head));
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&index.access);
    out
}

/// How a format 7 file says its chunks are checked.
const CHUNKS_SHA256: u8 = 0;
const CHUNKS_CRC32: u8 = 1;

/// Whether `head` (the first bytes of a file) starts an index file of a
/// format this img reads; the rest is checked when it is decoded.
pub fn has_current_header(head: &[u8]) -> bool {
    head.len() >= 12
        && &head[..8] == MAGIC
        && [VERSION, VERSION_SHA256_CHUNKS].iter().any(|v| head[8..12] == v.to_le_bytes())
}

/// Reads an index file for layer `digest` (number `index` in its image).
/// The random-access index is handed on as the part of `file` it is, not
/// copied.
pub fn decode(file: &SharedBytes, digest: &Digest, index: usize) -> Res<LayerIndex> {
    let bytes = file.as_slice();
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(IndexFileError::Magic);
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != VERSION && version != VERSION_SHA256_CHUNKS {
        return Err(IndexFileError::Version(version));
    }
    if bytes.len() < HEADER {
        return Err(IndexFileError::Damaged("truncated"));
    }
    let head_len = u64::from_le_bytes(bytes[44..52].try_into().map_err(|_| IndexFileError::Damaged("truncated"))?);
    let head_end = usize::try_from(head_len)
        .ok()
        .and_then(|n| n.checked_add(HEADER))
        .filter(|&e| e <= bytes.len())
        .ok_or(IndexFileError::Damaged("truncated"))?;
    let body = &bytes[HEADER..head_end];
    if Sha256::digest(body).as_slice() != &bytes[12..44] {
        return Err(IndexFileError::Damaged("checksum mismatch"));
    }
    let mut r = R { b: body, at: 0 };
    if r.bytes(100)? != digest.as_str().as_bytes() {
        return Err(IndexFileError::Layer);
    }
    let mut layer = Layer::default();
    let n = r.count()?;
    for _ in 0..n {
        let path = r.bytes(MAX_BYTES)?;
        let kind = match r.u8()? {
            0 => Kind::File(DataRef::plain(index, r.u64()?, r.u64()?)),
            1 => Kind::Dir,
            2 => Kind::Symlink(r.bytes(MAX_BYTES)?),
            3 => Kind::HardLink(r.bytes(MAX_BYTES)?),
            4 => Kind::Fifo,
            5 => Kind::Char { major: r.u32()?, minor: r.u32()? },
            6 => Kind::Block { major: r.u32()?, minor: r.u32()? },
            7 => Kind::File(DataRef::sparse(index, r.sparse_map()?)),
            _ => return Err(IndexFileError::Damaged("unknown entry kind")),
        };
        let (mode, uid, gid) = (r.u32()?, r.u32()?, r.u32()?);
        let mtime = (r.u64()? as i64, r.u32()?);
        let nx = r.count()?;
        let mut xattrs = Vec::with_capacity(nx.min(64));
        for _ in 0..nx {
            xattrs.push((r.bytes(MAX_BYTES)?, r.bytes(MAX_BYTES)?));
        }
        layer.entries.push(Entry { path, kind, mode, uid, gid, mtime, xattrs });
    }
    for which in 0..2 {
        let n = r.count()?;
        for _ in 0..n {
            let p = r.bytes(MAX_BYTES)?;
            if which == 0 {
                layer.whiteouts.push(p);
            } else {
                layer.opaque.push(p);
            }
        }
    }
    let kind = if version == VERSION_SHA256_CHUNKS { CHUNKS_SHA256 } else { r.u8()? };
    let n = r.count()?;
    let chunks = match kind {
        CHUNKS_SHA256 => {
            let mut v = Vec::with_capacity(n.min(1 << 20));
            for _ in 0..n {
                let mut a = [0u8; 32];
                a.copy_from_slice(r.take(32)?);
                v.push(a);
            }
            ChunkSums::Sha256(v)
        }
        CHUNKS_CRC32 => {
            let mut v = Vec::with_capacity(n.min(1 << 20));
            for _ in 0..n {
                v.push(r.u32()?);
            }
            ChunkSums::Crc32(v)
        }
        _ => return Err(IndexFileError::Damaged("unknown chunk checks")),
    };
    let access = file.slice(head_end..bytes.len()).ok_or(IndexFileError::Damaged("truncated"))?;
    if r.at != body.len() {
        return Err(IndexFileError::Damaged("trailing bytes"));
    }
    Ok(LayerIndex { layer, chunks, access })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sparse map beyond 4 GiB, ending in a hole.
    fn sparse_map() -> SparseMap {
        SparseMap::new(5 << 30, 2048, [(0, 512), ((4 << 30) - 10, 20), ((5 << 30) - 4096, 1024), (5 << 30, 0)]).unwrap()
    }

    fn sample() -> Layer {
        let e = |path: &str, kind| Entry {
            path: path.as_bytes().to_vec(),
            kind,
            mode: 0o4755,
            uid: 1000,
            gid: 100,
            mtime: (-5, 7),
            xattrs: vec![(b"security.capability".to_vec(), vec![1, 2, 3])],
        };
        Layer {
            entries: vec![
                e("a", Kind::Dir),
                e("a/f", Kind::File(DataRef::plain(2, 512, 9))),
                e("a/sparse", Kind::File(DataRef::sparse(2, sparse_map()))),
                e("a/s", Kind::Symlink(b"../x".to_vec())),
                e("a/h", Kind::HardLink(b"a/f".to_vec())),
                e("p", Kind::Fifo),
                e("c", Kind::Char { major: 1, minor: 3 }),
                e("b", Kind::Block { major: 8, minor: 1 }),
            ],
            whiteouts: vec![b"gone".to_vec()],
            opaque: vec![b"a".to_vec(), Vec::new()],
        }
    }

    #[test]
    fn round_trip() {
        let d = Digest::of_bytes(b"layer");
        for chunks in [ChunkSums::Sha256(vec![[7u8; 32], [9u8; 32]]), ChunkSums::Crc32(vec![7, u32::MAX, 0])] {
            let l = LayerIndex { layer: sample(), chunks, access: SharedBytes::from_vec(b"gz".to_vec()) };
            assert_eq!(dec(&encode(&d, &l), &d, 2).unwrap(), l);
        }
    }

    /// A format 6 file (sha256 chunks, no word saying so) as the img
    /// before format 7 wrote it.
    fn format6(d: &Digest, l: &LayerIndex) -> Vec<u8> {
        let ChunkSums::Sha256(sums) = &l.chunks else { panic!("format 6 has sha256 chunks only") };
        let v7 = encode(d, l);
        let head_len = u64::from_le_bytes(v7[44..52].try_into().unwrap()) as usize;
        let head = &v7[HEADER..HEADER + head_len];
        // The chunk list is the head's end: its kind byte goes.
        let list = 8 + 32 * sums.len();
        let kind_at = head.len() - list - 1;
        assert_eq!(head[kind_at], CHUNKS_SHA256);
        let mut body = head[..kind_at].to_vec();
        body.extend_from_slice(&head[kind_at + 1..]);
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&6u32.to_le_bytes());
        v.extend_from_slice(&Sha256::digest(&body));
        v.extend_from_slice(&(body.len() as u64).to_le_bytes());
        v.extend_from_slice(&body);
        v.extend_from_slice(&v7[HEADER + head_len..]);
        v
    }

    #[test]
    fn format_6_index_files_are_still_read() {
        let d = Digest::of_bytes(b"layer");
        let l = LayerIndex {
            layer: sample(),
            chunks: ChunkSums::Sha256(vec![[7u8; 32], [9u8; 32], [1u8; 32]]),
            access: SharedBytes::from_vec(b"gz".to_vec()),
        };
        let old = format6(&d, &l);
        assert!(has_current_header(&old[..12]));
        assert_eq!(dec(&old, &d, 2).unwrap(), l);
        // Its chunks are checked with sha256, a format 7 file's with CRC-32.
        let data = b"some blob bytes";
        let mut sums = vec![[0u8; 32]; 2];
        sums[1].copy_from_slice(&Sha256::digest(data));
        let l6 = LayerIndex { chunks: ChunkSums::Sha256(sums), ..l.clone() };
        let got = dec(&format6(&d, &l6), &d, 2).unwrap().chunks;
        assert_eq!((got.check(1, data), got.check(0, data), got.check(2, data)), (Some(true), Some(false), None));
        let l7 = LayerIndex { chunks: ChunkSums::Crc32(vec![crc32(data), crc32(b"other")]), ..l };
        let got = dec(&encode(&d, &l7), &d, 2).unwrap().chunks;
        assert_eq!((got.check(0, data), got.check(1, data), got.check(2, data)), (Some(true), Some(false), None));
    }

    /// CRC-32 as gzip has it: the check value of the standard test string,
    /// and the empty input.
    #[test]
    fn crc32_is_the_gzip_one() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        let long: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut c = flate2::Crc::new();
        for part in long.chunks(999) {
            c.update(part);
        }
        assert_eq!(crc32(&long), c.sum());
    }

    #[test]
    fn damage_is_detected() {
        let d = Digest::of_bytes(b"layer");
        let bytes =
            encode(&d, &LayerIndex { layer: sample(), chunks: ChunkSums::default(), access: SharedBytes::default() });
        assert_eq!(dec(&bytes, &Digest::of_bytes(b"other"), 2), Err(IndexFileError::Layer));
        let mut v = bytes.clone();
        v[8] = 9;
        assert_eq!(dec(&v, &d, 2), Err(IndexFileError::Version(9)));
        let mut v = bytes.clone();
        let last = v.len() - 1;
        v[last] ^= 1;
        assert_eq!(dec(&v, &d, 2), Err(IndexFileError::Damaged("checksum mismatch")));
        assert_eq!(dec(&bytes[..bytes.len() - 1], &d, 2), Err(IndexFileError::Damaged("truncated")));
        assert_eq!(dec(&bytes[..30], &d, 2), Err(IndexFileError::Damaged("truncated")));
        assert_eq!(dec(b"junk", &d, 2), Err(IndexFileError::Magic));
    }

    fn dec(b: &[u8], d: &Digest, i: usize) -> Res<LayerIndex> {
        decode(&SharedBytes::from_vec(b.to_vec()), d, i)
    }

    /// An index file around head `body` (valid header and checksum) with
    /// no random-access index.
    fn seal(body: &[u8]) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&VERSION.to_le_bytes());
        v.extend_from_slice(&Sha256::digest(body));
        v.extend_from_slice(&(body.len() as u64).to_le_bytes());
        v.extend_from_slice(body);
        v
    }

    /// The body of an index with one sparse file: data at `at`, `size`
    /// bytes, `n` segments said and `pairs` written.
    fn sparse_body(d: &Digest, at: u64, size: u64, n: u64, pairs: &[(u64, u64)]) -> Vec<u8> {
        let mut w = W(Vec::new());
        w.bytes(d.as_str().as_bytes());
        w.u64(1);
        w.bytes(b"f");
        w.u8(7);
        w.u64(at);
        w.u64(size);
        w.u64(n);
        for &(s, l) in pairs {
            w.u64(s);
            w.u64(l);
        }
        for v in [0o644, 0, 0] {
            w.u32(v);
        }
        w.u64(0);
        w.u32(0);
        w.u64(0); // xattrs
        w.u64(0); // whiteouts
        w.u64(0); // opaque
        w.u8(CHUNKS_CRC32);
        w.u64(0); // chunks
        w.0
    }

    #[test]
    fn sparse_maps_round_trip_and_bad_ones_are_refused() {
        let d = Digest::of_bytes(b"layer");
        let ok = dec(&seal(&sparse_body(&d, 512, 100, 2, &[(0, 10), (50, 5)])), &d, 1).unwrap();
        let Kind::File(f) = &ok.layer.entries[0].kind else { panic!("not a file") };
        assert_eq!((f.layer, f.offset, f.size, f.stored()), (1, 512, 100, 15));
        assert_eq!(f.sparse.as_ref().unwrap().segments()[1].at, 522);
        let bad = IndexFileError::Damaged("a bad sparse map");
        // (what, where the data starts, size, segments, the error)
        type Case<'a> = (&'a str, u64, u64, &'a [(u64, u64)], IndexFileError);
        let table: &[Case] = &[
            ("overlapping", 0, 100, &[(0, 10), (5, 10)], bad.clone()),
            ("out of order", 0, 100, &[(50, 10), (0, 10)], bad.clone()),
            ("beyond the size", 0, 100, &[(0, 10), (95, 10)], bad.clone()),
            ("an offset overflowing", 0, i64::MAX as u64, &[(u64::MAX, 1)], bad.clone()),
            ("a size no file may have", 0, u64::MAX, &[(0, 10)], bad.clone()),
            ("stored bytes overflowing", u64::MAX, 100, &[(0, 10)], bad.clone()),
        ];
        for (what, at, size, pairs, want) in table {
            let got = dec(&seal(&sparse_body(&d, *at, *size, pairs.len() as u64, pairs)), &d, 0);
            assert_eq!(got.as_ref().err(), Some(want), "{what}");
        }
        // Counts larger than what follows, or than any file may have.
        let got = dec(&seal(&sparse_body(&d, 0, 100, 1 << 40, &[(0, 10)])), &d, 0);
        assert_eq!(got, Err(IndexFileError::Damaged("a count is too large")));
        let got = dec(&seal(&sparse_body(&d, 0, 100, 20, &[(0, 10)])), &d, 0);
        assert_eq!(got, Err(IndexFileError::Damaged("truncated")));
        let many: Vec<(u64, u64)> = (0..=MAX_SEGMENTS as u64).map(|i| (i * 2, 1)).collect();
        let got = dec(&seal(&sparse_body(&d, 0, 1 << 40, many.len() as u64, &many)), &d, 0);
        assert_eq!(got, Err(IndexFileError::Damaged("a sparse map has too many segments")));
    }

    #[test]
    fn older_formats_are_rebuilt() {
        let d = Digest::of_bytes(b"layer");
        let mut v =
            encode(&d, &LayerIndex { layer: sample(), chunks: ChunkSums::default(), access: SharedBytes::default() });
        v[8..12].copy_from_slice(&5u32.to_le_bytes());
        assert_eq!(dec(&v, &d, 0), Err(IndexFileError::Version(5)));
    }

    proptest::proptest! {
        #[test]
        fn damaged_sparse_maps_never_panic(at in 0usize..600, byte in proptest::num::u8::ANY) {
            // One byte of a valid index with a sparse file changed, the
            // checksum made right again.
            let d = Digest::of_bytes(b"layer");
            let body = sparse_body(&d, 4096, 5 << 30, 3, &[(0, 512), ((4 << 30) - 1, 2), ((5 << 30) - 1, 1)]);
            let mut body = body.clone();
            let i = at % body.len();
            body[i] = byte;
            if let Ok(ix) = dec(&seal(&body), &d, 0) {
                for e in &ix.layer.entries {
                    if let Kind::File(f) = &e.kind {
                        let end = f.sparse.as_ref().and_then(|m| m.segments().last()).map_or(0, |s| s.start + s.len);
                        proptest::prop_assert!(end <= f.size);
                    }
                }
            }
        }

        #[test]
        fn any_bytes_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            // With a valid header and checksum, so the parser itself is attacked.
            let d = Digest::of_bytes(b"layer");
            let _ = dec(&seal(&body), &d, 0);
        }
    }
}
