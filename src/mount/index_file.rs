//! The layer index file: what a scan of one layer found (entries with the
//! offsets of their data, whiteouts, opaque directories), kept in the store
//! under `indexes/<layer hex>` so that a layer is scanned once, not at
//! every mount. Derived data: written to a temp file and renamed, checked
//! (magic, version, layer digest, sha256 of the body) when read, and simply
//! rebuilt when anything is wrong with it. Parsing is pure and bounded.

use crate::digest::Digest;
use img_fuse::{DataRef, Entry, Kind, Layer};
use sha2::{Digest as _, Sha256};

const MAGIC: &[u8; 8] = b"IMGLIDX\0";
pub const VERSION: u32 = 3;
/// Upper bounds a file is checked against before anything is allocated.
const MAX_ITEMS: u64 = 50_000_000;
const MAX_BYTES: u64 = 1 << 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
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
    /// For a gzip layer: its random-access index (`layerindex::gzip`), serialised.
    pub gzip: Vec<u8>,
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
            Kind::File(d) => {
                w.u8(0);
                w.u64(d.offset);
                w.u64(d.size);
            }
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
    w.bytes(&index.gzip);
    let body = w.0;
    let mut out = Vec::with_capacity(body.len() + 48);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&body));
    out.extend_from_slice(&body);
    out
}

/// Reads an index file for layer `digest` (number `index` in its image).
pub fn decode(bytes: &[u8], digest: &Digest, index: usize) -> Res<LayerIndex> {
    if bytes.len() < 44 || &bytes[..8] != MAGIC {
        return Err(IndexFileError::Magic);
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != VERSION {
        return Err(IndexFileError::Version(version));
    }
    let body = &bytes[44..];
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
    let gzip = r.bytes(MAX_ITEMS)?;
    if r.at != body.len() {
        return Err(IndexFileError::Damaged("trailing bytes"));
    }
    Ok(LayerIndex { layer, chunks, gzip })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let l = LayerIndex { layer: sample(), chunks: vec![[7u8; 32], [9u8; 32]], gzip: b"gz".to_vec() };
        assert_eq!(decode(&encode(&d, &l), &d, 2).unwrap(), l);
    }

    #[test]
    fn damage_is_detected() {
        let d = Digest::of_bytes(b"layer");
        let bytes = encode(&d, &LayerIndex { layer: sample(), chunks: vec![], gzip: vec![] });
        assert_eq!(decode(&bytes, &Digest::of_bytes(b"other"), 2), Err(IndexFileError::Layer));
        let mut v = bytes.clone();
        v[8] = 9;
        assert_eq!(decode(&v, &d, 2), Err(IndexFileError::Version(9)));
        let mut v = bytes.clone();
        let last = v.len() - 1;
        v[last] ^= 1;
        assert_eq!(decode(&v, &d, 2), Err(IndexFileError::Damaged("checksum mismatch")));
        assert_eq!(decode(&bytes[..bytes.len() - 1], &d, 2), Err(IndexFileError::Damaged("checksum mismatch")));
        assert_eq!(decode(b"junk", &d, 2), Err(IndexFileError::Magic));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            // With a valid header and checksum, so the parser itself is attacked.
            let d = Digest::of_bytes(b"layer");
            let mut v = MAGIC.to_vec();
            v.extend_from_slice(&VERSION.to_le_bytes());
            v.extend_from_slice(&Sha256::digest(&body));
            v.extend_from_slice(&body);
            let _ = decode(&v, &d, 0);
        }
    }
}
