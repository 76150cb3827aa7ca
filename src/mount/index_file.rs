//! The layer index file: what a scan of one layer found (entries with the
//! offsets of their data, whiteouts, opaque directories), kept in the store
//! under `indexes/<layer hex>` so that a layer is scanned once, not at
//! every mount. Derived data: written to a temp file and renamed, checked
//! (magic, version, layer digest, sha256 of the body) when read, and simply
//! rebuilt when anything is wrong with it. Parsing is pure and bounded.
//!
//! Layout: magic, version, the sha256 of the head and the head's length,
//! then the head (entries, whiteouts, opaque directories, chunk hashes) and
//! last the random-access index, which is not hashed here: it checks itself
//! (a checksum over its table, one per window when a read uses it), so an
//! index file can be mapped and its windows left unread until needed.

use crate::digest::Digest;
use crate::layerindex::SharedBytes;
use img_fuse::{DataRef, Entry, Kind, Layer, SparseMap, MAX_SEGMENTS};
use sha2::{Digest as _, Sha256};

const MAGIC: &[u8; 8] = b"IMGLIDX\0";
pub const VERSION: u32 = 6;
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

/// The sha256 of each `CHUNK` bytes (64 KiB) of a layer blob, so that a read of
/// part of the blob can be checked without hashing all of it.
pub const CHUNK: u64 = 64 << 10;

/// What an index file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerIndex {
    pub layer: Layer,
    /// sha256 of each `CHUNK` of the (compressed) blob, in order.
    pub chunks: Vec<[u8; 32]>,
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
    w.u64(index.chunks.len() as u64);
    for c in &index.chunks {
        w.0.extend_from_slice(c);
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

/// Whether `head` (the first bytes of a file) starts an index file of this
/// format; the rest is checked when it is decoded.
pub fn has_current_header(head: &[u8]) -> bool {
    head.len() >= 12 && &head[..8] == MAGIC && head[8..12] == VERSION.to_le_bytes()
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
    if version != VERSION {
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
    let n = r.count()?;
    let mut chunks = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let c = r.take(32)?;
        let mut a = [0u8; 32];
        a.copy_from_slice(c);
        chunks.push(a);
    }
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
        let l = LayerIndex {
            layer: sample(),
            chunks: vec![[7u8; 32], [9u8; 32]],
            access: SharedBytes::from_vec(b"gz".to_vec()),
        };
        assert_eq!(dec(&encode(&d, &l), &d, 2).unwrap(), l);
    }

    #[test]
    fn damage_is_detected() {
        let d = Digest::of_bytes(b"layer");
        let bytes = encode(&d, &LayerIndex { layer: sample(), chunks: vec![], access: SharedBytes::default() });
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
        let mut v = encode(&d, &LayerIndex { layer: sample(), chunks: vec![], access: SharedBytes::default() });
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
