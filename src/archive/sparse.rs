//! Sparse files in layer tars, as GNU tar writes them: the old GNU format
//! (entry type `S`: 4 segments in the header, 21 more in each extension
//! block after it, the real size in `realsize`) and the PAX formats 0.0
//! (`GNU.sparse.offset`/`numbytes` records), 0.1 (`GNU.sparse.map`) and
//! 1.0 (`GNU.sparse.major=1`, `minor=0`: the map as decimal lines at the
//! start of the data, padded to 512 bytes). PAX sparse entries are regular
//! files to a tar reader that does not know them; their real name is in
//! `GNU.sparse.name` (0.1, 1.0) and their real size in `GNU.sparse.size`
//! or `GNU.sparse.realsize`.
//!
//! Maps are hostile input. They are read with bounds (at most
//! `MAX_SEGMENTS` segments, numbers that fit in 64 bits), checked by
//! `SparseMap::new` (in order, not overlapping, within the real size) and
//! their lengths must add up to the data the entry stores.

use img_sparse::{SparseMap, MAX_SEGMENTS};
use std::io::{self, Read};

/// A map that cannot be used, said in words for an error about its entry.
pub type MapError = String;

fn too_many() -> MapError {
    format!("the sparse map has more than {MAX_SEGMENTS} segments")
}

/// A decimal number as GNU tar writes them in sparse maps.
fn number(v: &[u8], what: &str) -> Result<u64, MapError> {
    let s = std::str::from_utf8(v).ok().filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    s.and_then(|s| s.parse().ok()).ok_or_else(|| format!("{what} is not a number: {:?}", String::from_utf8_lossy(v)))
}

/// What the `GNU.sparse.*` PAX records of one entry say, gathered in order.
#[derive(Debug, Default)]
pub struct PaxSparse {
    seen: bool,
    name: Option<Vec<u8>>,
    major: Option<u64>,
    minor: Option<u64>,
    size: Option<u64>,
    numblocks: Option<u64>,
    pairs: Vec<(u64, u64)>,
    /// A 0.0 `offset` waiting for its `numbytes`.
    pending: Option<u64>,
    maps: usize,
    /// The first record that could not be used.
    error: Option<MapError>,
}

/// A PAX sparse entry, as its records describe it.
#[derive(Debug, PartialEq, Eq)]
pub struct PaxSparseFile {
    /// `GNU.sparse.name`, the file's real name, if given.
    pub name: Option<Vec<u8>>,
    pub real_size: u64,
    /// The map (formats 0.0 and 0.1), or `None` when it starts the data (1.0).
    pub pairs: Option<Vec<(u64, u64)>>,
}

impl PaxSparse {
    /// Takes one PAX record; keys not starting with `GNU.sparse.` are ignored.
    pub fn record(&mut self, key: &str, value: &[u8]) {
        let Some(k) = key.strip_prefix("GNU.sparse.") else { return };
        self.seen = true;
        if self.error.is_none() {
            if let Err(e) = self.take(k, value) {
                self.error = Some(e);
            }
        }
    }

    fn take(&mut self, k: &str, v: &[u8]) -> Result<(), MapError> {
        let key = format!("GNU.sparse.{k}");
        match k {
            "name" => self.name = Some(v.to_vec()),
            "major" => self.major = Some(number(v, &key)?),
            "minor" => self.minor = Some(number(v, &key)?),
            "size" | "realsize" => {
                let n = number(v, &key)?;
                if self.size.is_some_and(|s| s != n) {
                    return Err("GNU.sparse.size and GNU.sparse.realsize disagree".into());
                }
                self.size = Some(n);
            }
            "numblocks" => self.numblocks = Some(number(v, &key)?),
            "offset" => {
                if self.pending.is_some() {
                    return Err("a GNU.sparse.offset without its GNU.sparse.numbytes".into());
                }
                self.pending = Some(number(v, &key)?);
            }
            "numbytes" => {
                let off = self.pending.take().ok_or("a GNU.sparse.numbytes without its GNU.sparse.offset")?;
                self.push(off, number(v, &key)?)?;
            }
            "map" => {
                self.maps += 1;
                if self.maps > 1 {
                    return Err("two GNU.sparse.map records".into());
                }
                if !v.is_empty() {
                    let mut it = v.split(|&b| b == b',');
                    while let Some(off) = it.next() {
                        let len = it.next().ok_or("GNU.sparse.map has an odd count of numbers")?;
                        self.push(number(off, &key)?, number(len, &key)?)?;
                    }
                }
            }
            // Other records (GNU tar writes none) say nothing about the data.
            _ => {}
        }
        Ok(())
    }

    fn push(&mut self, off: u64, len: u64) -> Result<(), MapError> {
        if self.pairs.len() >= MAX_SEGMENTS {
            return Err(too_many());
        }
        self.pairs.push((off, len));
        Ok(())
    }

    /// `GNU.sparse.name`, the file's real name, if given.
    pub fn name(&self) -> Option<&[u8]> {
        self.name.as_deref()
    }

    /// `None` when the entry had no `GNU.sparse.*` records (not sparse).
    pub fn finish(self) -> Result<Option<PaxSparseFile>, MapError> {
        if !self.seen {
            return Ok(None);
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        let real_size =
            self.size.ok_or("a sparse file without its real size (GNU.sparse.size or GNU.sparse.realsize)")?;
        let pairs = match (self.major, self.minor) {
            (None, None) => {
                if self.pending.is_some() {
                    return Err("a GNU.sparse.offset without its GNU.sparse.numbytes".into());
                }
                if let Some(n) = self.numblocks.filter(|&n| n != self.pairs.len() as u64) {
                    return Err(format!(
                        "GNU.sparse.numblocks says {n}, but the map has {} segments",
                        self.pairs.len()
                    ));
                }
                Some(self.pairs)
            }
            (Some(1), Some(0)) => {
                if !self.pairs.is_empty() || self.maps > 0 || self.pending.is_some() {
                    return Err("a sparse file of format 1.0 with a map in its PAX records too".into());
                }
                None
            }
            (major, minor) => {
                let v = |n: Option<u64>| n.map_or("?".to_string(), |n| n.to_string());
                return Err(format!("sparse format {}.{} is not known", v(major), v(minor)));
            }
        };
        Ok(Some(PaxSparseFile { name: self.name, real_size, pairs }))
    }
}

/// Reads the map a PAX 1.0 sparse entry keeps at the start of its data
/// (`r`, at most `limit` bytes): decimal numbers one a line, the count of
/// segments first, then each segment's offset and length, padded to a
/// 512-byte block. Reads whole blocks, so that `r` is left where the file's
/// data starts. Returns the (offset, length) pairs and the bytes the map
/// takes, padding included.
pub fn read_map_1_0(mut r: impl Read, limit: u64) -> Result<(Vec<(u64, u64)>, u64), MapError> {
    let mut block = [0u8; 512];
    let (mut used, mut i) = (0u64, block.len());
    let mut next = |what: &str| -> Result<u64, MapError> {
        let mut n = 0u64;
        let mut digits = 0;
        loop {
            if i == block.len() {
                if used + 512 > limit {
                    return Err("the sparse map at the start of the data runs past the data".into());
                }
                r.read_exact(&mut block).map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof => "the sparse map at the start of the data ends early".to_string(),
                    _ => format!("reading the sparse map: {e}"),
                })?;
                used += 512;
                i = 0;
            }
            let b = block[i];
            i += 1;
            match b {
                b'\n' if digits > 0 => return Ok(n),
                b'0'..=b'9' => {
                    digits += 1;
                    n = n
                        .checked_mul(10)
                        .and_then(|n| n.checked_add((b - b'0') as u64))
                        .ok_or_else(|| format!("{what} is not a number (too large)"))?;
                }
                _ => return Err(format!("{what} is not a number")),
            }
        }
    };
    let count = next("the count of the sparse map's segments")?;
    if count > MAX_SEGMENTS as u64 {
        return Err(too_many());
    }
    let mut pairs = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let off = next("an offset of the sparse map")?;
        let len = next("a length of the sparse map")?;
        pairs.push((off, len));
    }
    Ok((pairs, used))
}

/// The map of an old GNU sparse entry: the header's 4 descriptors, then 21
/// from each extension block in `ext` (the blocks that followed the header,
/// 512 bytes each). Empty descriptors are skipped, as the tar reader skips
/// them.
pub fn gnu_pairs(h: &tar::GnuHeader, ext: &[u8]) -> Result<Vec<(u64, u64)>, MapError> {
    if !ext.len().is_multiple_of(512) || h.is_extended() == ext.is_empty() {
        return Err("the sparse header's extension blocks are not where it says".into());
    }
    let mut pairs = Vec::new();
    let mut add = |d: &tar::GnuSparseHeader| -> Result<(), MapError> {
        if d.is_empty() {
            return Ok(());
        }
        if pairs.len() >= MAX_SEGMENTS {
            return Err(too_many());
        }
        let off = d.offset().map_err(|e| e.to_string())?;
        let len = d.length().map_err(|e| e.to_string())?;
        pairs.push((off, len));
        Ok(())
    };
    for d in &h.sparse {
        add(d)?;
    }
    let blocks = ext.chunks_exact(512);
    let n = blocks.len();
    for (i, b) in blocks.enumerate() {
        let mut x = tar::GnuExtSparseHeader::new();
        x.as_mut_bytes().copy_from_slice(b);
        if x.is_extended() != (i + 1 < n) {
            return Err("the sparse header's extension blocks are not where it says".into());
        }
        for d in x.sparse() {
            add(d)?;
        }
    }
    Ok(pairs)
}

/// Checks a map against its entry: a file of `real_size` bytes whose data
/// is stored from `at` in the layer, `stored` bytes of it.
pub fn check(real_size: u64, at: u64, stored: u64, pairs: Vec<(u64, u64)>) -> Result<SparseMap, MapError> {
    let map = SparseMap::new(real_size, at, pairs).map_err(|e| e.to_string())?;
    if map.stored() != stored {
        return Err(format!(
            "the sparse map's data lengths add up to {} bytes, but the entry stores {stored}",
            map.stored()
        ));
    }
    Ok(map)
}

/// An entry's name (for a PAX sparse file, its real one from
/// `GNU.sparse.name`) and what its `GNU.sparse.*` records say, which only
/// regular files may mean.
pub fn name_and_pax_sparse<R: Read>(e: &mut tar::Entry<'_, R>) -> (String, Result<Option<PaxSparseFile>, MapError>) {
    let mut p = PaxSparse::default();
    if e.header().entry_type().is_file() {
        if let Ok(Some(exts)) = e.pax_extensions() {
            for ext in exts.flatten() {
                if let Ok(k) = ext.key() {
                    p.record(k, ext.value_bytes());
                }
            }
        }
    }
    let name = match p.name() {
        Some(n) => super::name::name_string(n),
        None => super::name::name_string(&e.path_bytes()),
    };
    (name, p.finish())
}

/// The bytes of a PAX sparse file, holes filled with zeros, from its entry
/// `e` (for format 1.0, the map is read from the start of the data first).
pub fn expand_pax<'e, 'a, R: Read>(
    e: &'e mut tar::Entry<'a, R>,
    f: PaxSparseFile,
) -> Result<Expand<&'e mut tar::Entry<'a, R>>, MapError> {
    let size = e.size();
    let (pairs, used) = match f.pairs {
        Some(p) => (p, 0),
        None => read_map_1_0(&mut *e, size)?,
    };
    let map = check(f.real_size, 0, size - used, pairs)?;
    Ok(Expand::new(e, map))
}

/// A sparse file's bytes with its holes filled with zeros, from a reader of
/// its stored data (which follows `map`, made with `at` 0).
pub struct Expand<R> {
    inner: R,
    map: SparseMap,
    pos: u64,
    seg: usize,
}

impl<R: Read> Expand<R> {
    pub fn new(inner: R, map: SparseMap) -> Expand<R> {
        Expand { inner, map, pos: 0, seg: 0 }
    }
}

impl<R: Read> Read for Expand<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.map.size();
        if self.pos >= size || buf.is_empty() {
            return Ok(0);
        }
        let segs = self.map.segments();
        while self.seg < segs.len() && segs[self.seg].start + segs[self.seg].len <= self.pos {
            self.seg += 1;
        }
        let room = buf.len() as u64;
        let n = match segs.get(self.seg) {
            Some(s) if s.start <= self.pos => {
                let want = room.min(s.start + s.len - self.pos) as usize;
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the sparse file's data ends early"));
                }
                n
            }
            next => {
                let hole_end = next.map_or(size, |s| s.start);
                let n = room.min(hole_end - self.pos) as usize;
                buf[..n].fill(0);
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pax(records: &[(&str, &str)]) -> Result<Option<PaxSparseFile>, MapError> {
        let mut p = PaxSparse::default();
        for (k, v) in records {
            p.record(k, v.as_bytes());
        }
        p.finish()
    }

    #[test]
    fn pax_records_of_each_format() {
        assert_eq!(pax(&[("path", "x"), ("mtime", "1")]), Ok(None));
        let v00 = pax(&[
            ("GNU.sparse.size", "10485760"),
            ("GNU.sparse.numblocks", "2"),
            ("GNU.sparse.offset", "3145728"),
            ("GNU.sparse.numbytes", "4096"),
            ("GNU.sparse.offset", "10485760"),
            ("GNU.sparse.numbytes", "0"),
        ]);
        let want = Some(vec![(3145728, 4096), (10485760, 0)]);
        assert_eq!(v00, Ok(Some(PaxSparseFile { name: None, real_size: 10485760, pairs: want.clone() })));
        let v01 = pax(&[
            ("GNU.sparse.size", "10485760"),
            ("GNU.sparse.numblocks", "2"),
            ("GNU.sparse.name", "f"),
            ("GNU.sparse.map", "3145728,4096,10485760,0"),
        ]);
        assert_eq!(v01, Ok(Some(PaxSparseFile { name: Some(b"f".to_vec()), real_size: 10485760, pairs: want })));
        let v10 = pax(&[
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", "f"),
            ("GNU.sparse.realsize", "6442450944"),
        ]);
        assert_eq!(v10, Ok(Some(PaxSparseFile { name: Some(b"f".to_vec()), real_size: 6 << 30, pairs: None })));
    }

    #[test]
    fn bad_pax_records_are_refused() {
        let table: &[(&[(&str, &str)], &str)] = &[
            (&[("GNU.sparse.map", "0,1")], "real size"),
            (&[("GNU.sparse.size", "9"), ("GNU.sparse.map", "0,1,5")], "odd count"),
            (&[("GNU.sparse.size", "9"), ("GNU.sparse.map", "0,x")], "not a number"),
            (&[("GNU.sparse.size", "9"), ("GNU.sparse.map", "0,-1")], "not a number"),
            (&[("GNU.sparse.size", "99999999999999999999999")], "not a number"),
            (&[("GNU.sparse.size", "9"), ("GNU.sparse.offset", "1")], "without its GNU.sparse.numbytes"),
            (&[("GNU.sparse.size", "9"), ("GNU.sparse.numbytes", "1")], "without its GNU.sparse.offset"),
            (&[("GNU.sparse.size", "9"), ("GNU.sparse.offset", "1"), ("GNU.sparse.offset", "2")], "without"),
            (&[("GNU.sparse.size", "9"), ("GNU.sparse.numblocks", "2"), ("GNU.sparse.map", "0,1")], "numblocks says 2"),
            (&[("GNU.sparse.size", "9"), ("GNU.sparse.map", "0,1"), ("GNU.sparse.map", "2,1")], "two"),
            (&[("GNU.sparse.size", "9"), ("GNU.sparse.realsize", "8")], "disagree"),
            (&[("GNU.sparse.major", "2"), ("GNU.sparse.minor", "0"), ("GNU.sparse.realsize", "8")], "2.0 is not known"),
            (&[("GNU.sparse.major", "1"), ("GNU.sparse.realsize", "8")], "1.? is not known"),
            (
                &[
                    ("GNU.sparse.major", "1"),
                    ("GNU.sparse.minor", "0"),
                    ("GNU.sparse.realsize", "8"),
                    ("GNU.sparse.map", "0,1"),
                ],
                "a map in its PAX records too",
            ),
        ];
        for (records, want) in table {
            let e = pax(records).unwrap_err();
            assert!(e.contains(want), "{records:?}: {e}");
        }
    }

    #[test]
    fn too_many_segments_in_pax_records() {
        let mut map = String::new();
        for i in 0..=MAX_SEGMENTS {
            map.push_str(&format!("{},1,", i * 2));
        }
        map.pop();
        let e = pax(&[("GNU.sparse.size", "99999999"), ("GNU.sparse.map", &map)]).unwrap_err();
        assert!(e.contains("more than 1000000 segments"), "{e}");
    }

    #[test]
    fn maps_at_the_start_of_the_data() {
        let data = b"2\n3145728\n4096\n10485760\n0\n";
        let mut block = data.to_vec();
        block.resize(512, 0);
        block.extend_from_slice(b"hello");
        let (pairs, used) = read_map_1_0(&block[..], block.len() as u64).unwrap();
        assert_eq!((pairs, used), (vec![(3145728, 4096), (10485760, 0)], 512));
        // A map longer than a block takes two.
        let mut long = format!("{}\n", 60);
        for i in 0..60 {
            long.push_str(&format!("{}\n{}\n", i * 1000, 10));
        }
        let mut bytes = long.into_bytes();
        assert!(bytes.len() > 512);
        bytes.resize(1024 + 600, 0);
        assert_eq!(read_map_1_0(&bytes[..], bytes.len() as u64).unwrap().1, 1024);
        let table: &[(&[u8], u64, &str)] = &[
            (b"1\n0\n", 512, "not a number"),
            (b"1\n0\n10", 512, "not a number"),
            (b"1\n0\n10\n", 7, "runs past the data"),
            (b"x\n", 512, "not a number"),
            (b"\n", 512, "not a number"),
            (b"1\n-5\n1\n", 512, "not a number"),
            (b"1\n99999999999999999999\n1\n", 512, "too large"),
            (b"1000001\n", 512, "more than 1000000 segments"),
        ];
        for (bytes, limit, want) in table {
            let mut v = bytes.to_vec();
            v.resize(1000, 0);
            let e = read_map_1_0(&v[..], *limit).unwrap_err();
            assert!(e.contains(want), "{:?}: {e}", String::from_utf8_lossy(bytes));
        }
        // The stream ends inside the map.
        let mut v = b"200\n".to_vec();
        while v.len() < 512 {
            v.extend_from_slice(b"1\n");
        }
        let e = read_map_1_0(&v[..], 4096).unwrap_err();
        assert!(e.contains("ends early"), "{e}");
        // What is left of the reader is the data.
        let mut r = &block[..];
        read_map_1_0(&mut r, block.len() as u64).unwrap();
        assert_eq!(r, b"hello");
    }

    fn gnu_header(descriptors: &[(u64, u64)], extended: bool, real: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNUSparse);
        let g = h.as_gnu_mut().unwrap();
        for (d, &(off, len)) in g.sparse.iter_mut().zip(descriptors) {
            d.set_offset(off);
            d.set_length(len);
        }
        g.set_is_extended(extended);
        g.set_real_size(real);
        h
    }

    fn ext_block(descriptors: &[(u64, u64)], extended: bool) -> Vec<u8> {
        let mut x = tar::GnuExtSparseHeader::new();
        for (d, &(off, len)) in x.sparse_mut().iter_mut().zip(descriptors) {
            d.set_offset(off);
            d.set_length(len);
        }
        x.set_is_extended(extended);
        x.as_bytes().to_vec()
    }

    #[test]
    fn old_gnu_maps_with_extension_blocks() {
        let h = gnu_header(&[(0, 512), (1024, 512), (4096, 512), (8192, 512)], true, 1 << 33);
        let mut ext = ext_block(&[(10000, 512), (20000, 512)], true);
        ext.extend(ext_block(&[(1 << 32, 1024), (1 << 33, 0)], false));
        let pairs = gnu_pairs(h.as_gnu().unwrap(), &ext).unwrap();
        assert_eq!(pairs.len(), 8);
        assert_eq!(pairs[6..], [(1 << 32, 1024), (1 << 33, 0)]);
        let map = check(1 << 33, 1536, 4096, pairs).unwrap();
        assert_eq!(map.segments().len(), 7);
        // The header and its blocks disagree about extension blocks.
        assert!(gnu_pairs(h.as_gnu().unwrap(), &[]).is_err());
        assert!(gnu_pairs(h.as_gnu().unwrap(), &ext_block(&[], true)).is_err());
        assert!(gnu_pairs(gnu_header(&[], false, 0).as_gnu().unwrap(), &ext_block(&[], false)).is_err());
        assert!(gnu_pairs(h.as_gnu().unwrap(), &ext[..100]).is_err());
    }

    #[test]
    fn maps_that_disagree_with_their_entry_are_refused() {
        // Overlapping, beyond the real size, lengths that do not add up to
        // the data stored, too many segments.
        let e = check(100, 0, 20, vec![(0, 10), (5, 10)]).unwrap_err();
        assert!(e.contains("overlap"), "{e}");
        let e = check(100, 0, 20, vec![(0, 10), (95, 10)]).unwrap_err();
        assert!(e.contains("beyond the file's size 100"), "{e}");
        let e = check(100, 0, 21, vec![(0, 10), (50, 10)]).unwrap_err();
        assert!(e.contains("add up to 20 bytes, but the entry stores 21"), "{e}");
        let e = check(1 << 40, 0, 0, (0..=MAX_SEGMENTS as u64).map(|i| (i, 0)).collect()).unwrap_err();
        assert!(e.contains("more than 1000000 segments"), "{e}");
    }

    #[test]
    fn expanding_fills_holes() {
        let map = SparseMap::new(20, 0, [(2, 3), (10, 4), (20, 0)]).unwrap();
        let mut out = Vec::new();
        // One byte at a time and in one go.
        for chunk in [1usize, 64] {
            out.clear();
            let mut x = Expand::new(&b"abcdefg"[..], map.clone());
            let mut buf = vec![0u8; chunk];
            loop {
                let n = x.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert_eq!(out, b"\0\0abc\0\0\0\0\0defg\0\0\0\0\0\0");
        }
        let mut x = Expand::new(&b"abc"[..], map);
        let e = io::copy(&mut x, &mut io::sink()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
