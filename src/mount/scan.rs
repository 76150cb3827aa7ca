//! Reading a layer tar into the entries the image filesystem merges: each
//! file's data is found by its offset in the uncompressed stream, so it can
//! later be read without unpacking anything. A sparse file (old GNU or PAX
//! sparse formats, see `archive::sparse`) keeps its map: where its runs of
//! data are in the file and in the stream.

use super::index_file::{self, LayerIndex};
use super::source::ChunkHasher;
use crate::archive::layer::{classify, clean_entry_path, name_bytes, name_string, EntryKind};
use crate::archive::sparse;
use crate::digest::Digest;
use crate::layerindex::gzip::{GzipIndex, DEFAULT_SPAN};
use crate::layerindex::SharedBytes;
use crate::store::{ChannelReader, Compression};
use img_fuse::{DataRef, Entry, Kind, Layer};
use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::rc::Rc;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("layer {layer}: entry {name:?}: {msg}")]
    Entry { layer: String, name: String, msg: String },
    #[error("layer {layer}: {source}")]
    Read { layer: String, source: std::io::Error },
}

/// A layer's index file as built from its compressed bytes, read once:
/// the entries and chunk hashes in memory, and the random-access index
/// (gzip: header and checkpoint table here, the windows in a scratch file
/// as they were made; zstd: all of it here).
pub struct BuiltIndex {
    /// Entries and chunk hashes; its `access` is empty.
    pub index: LayerIndex,
    access_head: Vec<u8>,
    windows: Option<(File, u64)>,
    /// The layer's size decompressed.
    pub size: u64,
}

impl BuiltIndex {
    /// Writes the index file of layer `d` (`index_file`'s format).
    pub fn write_to(&self, d: &Digest, w: &mut dyn Write) -> io::Result<()> {
        w.write_all(&index_file::encode(d, &self.index))?;
        w.write_all(&self.access_head)?;
        if let Some((f, len)) = &self.windows {
            let mut buf = vec![0u8; 64 << 10];
            let mut at = 0u64;
            while at < *len {
                let n = buf.len().min((len - at) as usize);
                f.read_exact_at(&mut buf[..n], at)?;
                w.write_all(&buf[..n])?;
                at += n as u64;
            }
        }
        Ok(())
    }

    /// The whole index in memory (when no file could be written).
    pub fn into_memory(self) -> io::Result<LayerIndex> {
        let mut access = self.access_head;
        if let Some((f, len)) = &self.windows {
            let start = access.len();
            access.resize(start + *len as usize, 0);
            f.read_exact_at(&mut access[start..], 0)?;
        }
        Ok(LayerIndex { access: SharedBytes::from_vec(access), ..self.index })
    }
}

/// The index of layer `d` (number `i` in its image) from its compressed
/// bytes `f` (compressed with `c`), read once from start to end: a stored
/// blob, or a download as it streams. A gzip layer's checkpoint windows go
/// to `windows` as they are made (memory then stays bounded whatever the
/// layer's size); without it they are held in memory.
pub fn index_layer<R: Read + Send + 'static>(
    d: &Digest,
    i: usize,
    f: R,
    c: Compression,
    windows: Option<File>,
) -> anyhow::Result<BuiltIndex> {
    use anyhow::Context as _;
    if !matches!(c, Compression::Gzip | Compression::Zstd) {
        let mut hasher = ChunkHasher::new(f);
        let mut counted =
            Counted { inner: c.decoder(&mut hasher).with_context(|| format!("reading layer {d}"))?, n: 0 };
        let layer = scan(&mut counted, i, d.as_str());
        // What follows the tar's end is counted where it decompresses.
        let _ = io::copy(&mut counted, &mut io::sink());
        let size = counted.n;
        drop(counted);
        // The rest of the blob (padding after the tar's end, or all that a
        // failed scan left) is hashed too.
        io::copy(&mut hasher, &mut io::sink()).with_context(|| format!("reading layer {d}"))?;
        let chunks = checked_sums(d, hasher.finish())?;
        let index = LayerIndex { layer: layer?, chunks, access: SharedBytes::default() };
        return Ok(BuiltIndex { index, access_head: Vec::new(), windows: None, size });
    }
    // One pass: the random-access index is built on another thread while
    // the decompressed stream it hands on is scanned here.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    let builder = std::thread::spawn(move || {
        let mut hasher = ChunkHasher::new(f);
        let mut size = 0u64;
        let ix = {
            let mut sink = |b: &[u8]| {
                size += b.len() as u64;
                // A scan that ended (the tar's end) stops listening; the
                // index is finished all the same.
                let _ = tx.send(b.to_vec());
            };
            match (c, windows) {
                (Compression::Gzip, Some(mut file)) => {
                    let mut w = io::BufWriter::with_capacity(64 << 10, &mut file);
                    let built = GzipIndex::build_streaming(&mut hasher, DEFAULT_SPAN, &mut sink, &mut w, &mut |_| {});
                    drop(w);
                    built.map(|s| (s.head().to_vec(), Some((file, s.windows_len())))).map_err(anyhow::Error::from)
                }
                (Compression::Gzip, None) => GzipIndex::build(&mut hasher, DEFAULT_SPAN, &mut sink)
                    .map(|ix| (ix.to_bytes(), None))
                    .map_err(anyhow::Error::from),
                _ => crate::layerindex::zstd::ZstdIndex::build(&mut hasher, &mut sink)
                    .map(|ix| (ix.to_bytes(), None))
                    .map_err(anyhow::Error::from),
            }
        };
        drop(tx);
        io::copy(&mut hasher, &mut io::sink()).map(|_| ()).ok();
        (ix, hasher.finish(), size)
    });
    let scanned = scan(ChannelReader::new(rx), i, d.as_str());
    let (ix, sums, size) = builder.join().map_err(|_| anyhow::anyhow!("indexing layer {d}: the indexer failed"))?;
    // A damaged blob fails to decompress too; saying it is damaged tells
    // more.
    let chunks = checked_sums(d, sums)?;
    let (access_head, windows) = ix.with_context(|| format!("reading layer {d}"))?;
    let index = LayerIndex { layer: scanned?, chunks, access: SharedBytes::default() };
    Ok(BuiltIndex { index, access_head, windows, size })
}

/// The chunks' checks of layer `d`, if the bytes they were made from are
/// the layer's (their digest is `d`): an index is only ever made from the
/// right bytes, so a read it checks gets nothing else.
fn checked_sums(
    d: &Digest,
    (sums, got): (super::index_file::ChunkSums, Digest),
) -> anyhow::Result<super::index_file::ChunkSums> {
    if &got != d {
        anyhow::bail!("layer {d} is damaged: its content no longer matches its digest (it is {got}); run img fsck");
    }
    Ok(sums)
}

/// A reader that counts the bytes it hands on.
struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Largest xattr value kept (the kernel's own limit is 64 KiB).
const MAX_XATTR: usize = 64 << 10;

/// Most bytes of headers one entry may have (PAX records, long names, the
/// header, old GNU sparse extension blocks). A million sparse segments take
/// about 23 MiB of extension blocks; real entries take a few KiB.
const MAX_HEADERS: usize = 32 << 20;

/// The uncompressed layer stream as the tar reader sees it: it counts the
/// position, keeps the bytes read while `keeping` (one entry's headers, so
/// that the extension blocks of an old GNU sparse header, which the tar
/// reader consumes, can be read here too) and skips data by seeking
/// forward, without keeping it.
struct Tap<R> {
    inner: R,
    state: Rc<RefCell<TapState>>,
    scratch: Vec<u8>,
}

#[derive(Default)]
struct TapState {
    pos: u64,
    keeping: bool,
    kept: Vec<u8>,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut st = self.state.borrow_mut();
        st.pos += n as u64;
        if st.keeping {
            if st.kept.len() + n > MAX_HEADERS {
                return Err(io::Error::other(format!(
                    "the headers of one entry take more than {} MiB; refusing the layer",
                    MAX_HEADERS >> 20
                )));
            }
            st.kept.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

impl<R: Read> Seek for Tap<R> {
    /// Only forward from here (how the tar reader skips data).
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let SeekFrom::Current(n) = to else {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "a layer stream is only read forward"));
        };
        let mut left = u64::try_from(n).map_err(|_| io::Error::other("a layer stream is only read forward"))?;
        self.scratch.resize(64 << 10, 0);
        while left > 0 {
            let want = left.min(self.scratch.len() as u64) as usize;
            let got = match self.inner.read(&mut self.scratch[..want]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the layer ends inside an entry")),
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            left -= got as u64;
            self.state.borrow_mut().pos += got as u64;
        }
        Ok(self.state.borrow().pos)
    }
}

/// Scans the uncompressed tar stream of layer number `index` (`label` names
/// it in errors).
pub fn scan(r: impl Read, index: usize, label: &str) -> Result<Layer, ScanError> {
    scan_with(r, index, label, &mut |_| {})
}

/// `scan`, handing what was found so far to `sink` before each entry is
/// read (it may take it: what it leaves is returned at the end).
pub fn scan_with(
    r: impl Read,
    index: usize,
    label: &str,
    sink: &mut dyn FnMut(&mut Layer),
) -> Result<Layer, ScanError> {
    let mut out = Layer::default();
    let state = Rc::new(RefCell::new(TapState::default()));
    let mut ar = tar::Archive::new(Tap { inner: r, state: state.clone(), scratch: Vec::new() });
    let read_err = |e| ScanError::Read { layer: label.to_string(), source: e };
    let mut entries = ar.entries_with_seek().map_err(read_err)?;
    loop {
        sink(&mut out);
        {
            let mut st = state.borrow_mut();
            st.kept.clear();
            st.keeping = true;
        }
        let next = entries.next();
        state.borrow_mut().keeping = false;
        let mut e = match next {
            None => break,
            Some(Ok(e)) => e,
            Some(Err(err)) => {
                // Name the entry when its headers were read far enough.
                let name = name_in_headers(&state.borrow().kept);
                return Err(match name {
                    Some(name) => ScanError::Entry { layer: label.to_string(), name, msg: err.to_string() },
                    None => read_err(err),
                });
            }
        };
        let h = e.header().clone();
        let t = h.entry_type();
        let mut mtime = (h.mtime().unwrap_or(0) as i64, 0u32);
        let mut xattrs = Vec::new();
        let mut pax_size = None;
        let mut pax_sparse = sparse::PaxSparse::default();
        if let Ok(Some(exts)) = e.pax_extensions() {
            for ext in exts.flatten() {
                let Ok(k) = ext.key() else { continue };
                if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                    if ext.value_bytes().len() <= MAX_XATTR {
                        xattrs.push((name.as_bytes().to_vec(), ext.value_bytes().to_vec()));
                    }
                } else if k == "mtime" {
                    if let Some(t) = ext.value().ok().and_then(parse_pax_time) {
                        mtime = t;
                    }
                } else if k == "size" {
                    pax_size = ext.value().ok().and_then(|v| v.parse::<u64>().ok());
                } else {
                    pax_sparse.record(k, ext.value_bytes());
                }
            }
        }
        // GNU.sparse.* records mean something on regular files only; there,
        // GNU.sparse.name is the real name.
        let regular = t.is_file() || t == tar::EntryType::Continuous;
        let raw = match pax_sparse.name() {
            Some(n) if regular => name_string(n),
            _ => name_string(&e.path_bytes()),
        };
        let pax_sparse = if regular { pax_sparse.finish() } else { Ok(None) };
        let err = |msg: &str| ScanError::Entry { layer: label.to_string(), name: raw.clone(), msg: msg.to_string() };
        let bad_map = |msg: String| err(&format!("a sparse file whose map cannot be used: {msg}; refusing the layer"));
        let pax_sparse = pax_sparse.map_err(bad_map)?;
        let path = clean_entry_path(&raw).map_err(err)?.unwrap_or_default();
        if take_marker(&mut out, &path).map_err(err)? {
            continue;
        }
        let link = || e.link_name_bytes().map(|b| b.into_owned()).unwrap_or_default();
        let kind = if t.is_dir() {
            Kind::Dir
        } else if t.is_symlink() {
            Kind::Symlink(link())
        } else if t.is_hard_link() {
            let target = name_string(&link());
            match clean_entry_path(&target) {
                Ok(Some(t)) => Kind::HardLink(name_bytes(&t)),
                _ => return Err(err("a hard link that leaves the root filesystem; refusing the layer")),
            }
        } else if t.is_fifo() {
            Kind::Fifo
        } else if t.is_character_special() || t.is_block_special() {
            let major = h.device_major().ok().flatten().unwrap_or(0);
            let minor = h.device_minor().ok().flatten().unwrap_or(0);
            if t.is_character_special() {
                Kind::Char { major, minor }
            } else {
                Kind::Block { major, minor }
            }
        } else if t.is_gnu_sparse() {
            // The tar reader checked the map and read the extension blocks
            // after the header; `raw_file_position` is where those start,
            // and the data starts where the stream is now. (`e.size()` is
            // the real size; its reads fill holes, so they are not used.)
            let data_at = state.borrow().pos;
            let gnu = h.as_gnu().ok_or_else(|| err("a GNU sparse entry without a GNU header; refusing the layer"))?;
            let real_size = gnu.real_size().map_err(|e| bad_map(e.to_string()))?;
            let stored = match pax_size {
                Some(s) => s,
                None => h.entry_size().map_err(|e| bad_map(e.to_string()))?,
            };
            let pairs = {
                let st = state.borrow();
                let ext_len = data_at.checked_sub(e.raw_file_position()).filter(|&n| n <= st.kept.len() as u64);
                let ext_len = ext_len.ok_or_else(|| bad_map("its extension blocks were not found".into()))?;
                sparse::gnu_pairs(gnu, &st.kept[st.kept.len() - ext_len as usize..]).map_err(bad_map)?
            };
            let map = sparse::check(real_size, data_at, stored, pairs).map_err(bad_map)?;
            Kind::File(DataRef::sparse(index, map))
        } else if t.is_file() || t == tar::EntryType::Continuous {
            let at = e.raw_file_position();
            match pax_sparse {
                None => Kind::File(DataRef::plain(index, at, e.size())),
                Some(sparse::PaxSparseFile { real_size, pairs: Some(pairs), .. }) => {
                    Kind::File(DataRef::sparse(index, sparse::check(real_size, at, e.size(), pairs).map_err(bad_map)?))
                }
                Some(sparse::PaxSparseFile { real_size, pairs: None, .. }) => {
                    let size = e.size();
                    let (pairs, used) = sparse::read_map_1_0(&mut e, size).map_err(bad_map)?;
                    let map = sparse::check(real_size, at + used, size - used, pairs).map_err(bad_map)?;
                    Kind::File(DataRef::sparse(index, map))
                }
            }
        } else {
            // PAX and GNU meta entries are consumed by the tar reader;
            // anything else (sockets, unknown types) is skipped, as tar does.
            continue;
        };
        if path.is_empty() && kind != Kind::Dir {
            return Err(err("the root must be a directory"));
        }
        out.entries.push(Entry {
            path: name_bytes(&path),
            kind,
            mode: h.mode().unwrap_or(0o644) & 0o7777,
            uid: h.uid().unwrap_or(0) as u32,
            gid: h.gid().unwrap_or(0) as u32,
            mtime,
            xattrs,
        });
        // The data is skipped (not read) when the next entry is asked for.
    }
    Ok(out)
}

/// Records a whiteout (`a/.wh.b`) or opaque marker (`a/.wh..wh..opq`) at
/// cleaned `path` in `out`; false for an ordinary entry.
pub(super) fn take_marker(out: &mut Layer, path: &str) -> Result<bool, &'static str> {
    match classify(path)? {
        EntryKind::Whiteout(t) => out.whiteouts.push(name_bytes(&t)),
        EntryKind::Opaque(d) => out.opaque.push(name_bytes(&d)),
        EntryKind::Normal => return Ok(false),
    }
    Ok(true)
}

/// The name of the entry whose headers start `headers` (PAX records and
/// GNU long names applied), if they were read far enough and are sound.
fn name_in_headers(headers: &[u8]) -> Option<String> {
    let (mut at, mut long, mut pax_name) = (0usize, None::<Vec<u8>>, None::<Vec<u8>>);
    loop {
        let block = headers.get(at..at + 512)?;
        let h = tar::Header::from_byte_slice(block);
        let sum: u32 = block[..148].iter().chain(&block[156..]).map(|&b| b as u32).sum::<u32>() + 8 * 32;
        if block.iter().all(|&b| b == 0) || h.cksum().ok()? != sum {
            return None;
        }
        let t = h.entry_type();
        if !(t.is_pax_local_extensions() || t.is_gnu_longname() || t.is_gnu_longlink()) {
            let name = pax_name.or(long).unwrap_or_else(|| h.path_bytes().into_owned());
            return Some(name_string(&name));
        }
        let size = usize::try_from(h.entry_size().ok()?).ok()?;
        let data = headers.get(at + 512..at.checked_add(512 + size)?)?;
        if t.is_gnu_longname() {
            long = Some(data.split(|&b| b == 0).next().unwrap_or_default().to_vec());
        } else if t.is_pax_local_extensions() {
            for ext in tar::PaxExtensions::new(data).flatten() {
                match ext.key() {
                    Ok("GNU.sparse.name") => pax_name = Some(ext.value_bytes().to_vec()),
                    Ok("path") if pax_name.is_none() => pax_name = Some(ext.value_bytes().to_vec()),
                    _ => {}
                }
            }
        }
        at += 512 + size.div_ceil(512) * 512;
    }
}

/// A PAX time (`1700000000.123456789`).
fn parse_pax_time(s: &str) -> Option<(i64, u32)> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() { 0 } else { format!("{digits:0<9}").parse().ok()? };
    Some((secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(parse_pax_time("12"), Some((12, 0)));
        assert_eq!(parse_pax_time("x"), None);
    }

    #[test]
    fn offsets_point_at_file_data() {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8], mode: u32| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_mtime(7);
            // Names written as given (the builder refuses absolute ones).
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, data).unwrap();
        };
        add("a/one", b"first file", 0o644);
        add("./a/.wh.gone", b"", 0o644);
        add("b/.wh..wh..opq", b"", 0o644);
        add("/abs/two", b"second", 0o4755);
        let data = b.into_inner().unwrap();
        let l = scan(&data[..], 3, "test").unwrap();
        assert_eq!(l.whiteouts, vec![b"a/gone".to_vec()]);
        assert_eq!(l.opaque, vec![b"b".to_vec()]);
        assert_eq!(l.entries.len(), 2);
        for (e, want) in l.entries.iter().zip([&b"first file"[..], b"second"]) {
            let Kind::File(d) = &e.kind else { panic!("not a file") };
            assert_eq!(d.layer, 3);
            assert_eq!(&data[d.offset as usize..(d.offset + d.size) as usize], want);
        }
        assert_eq!(l.entries[1].path, b"abs/two");
        assert_eq!(l.entries[1].mode, 0o4755);
    }

    #[test]
    fn escaping_names_and_links_are_refused() {
        for (name, link) in [("../x", None), ("ok", Some("../../etc/passwd"))] {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            match link {
                Some(l) => {
                    h.set_entry_type(tar::EntryType::Link);
                    b.append_link(&mut h, name, l).unwrap();
                }
                None => {
                    // The builder refuses `..`; write the name into the header by hand.
                    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                    h.set_cksum();
                    b.append(&h, &[][..]).unwrap();
                }
            }
            let data = b.into_inner().unwrap();
            let e = scan(&data[..], 0, "bad").unwrap_err().to_string();
            assert!(e.contains("leaves the root"), "{e}");
        }
    }

    /// The bytes of a sparse file's data segments, made up from their offsets.
    fn content(pairs: &[(u64, u64)]) -> Vec<u8> {
        let mut v = Vec::new();
        for &(off, len) in pairs {
            v.extend((0..len).map(|i| (off + i) as u8 | 1));
        }
        v
    }

    fn pad(v: &mut Vec<u8>) {
        v.resize(v.len().div_ceil(512) * 512, 0);
    }

    /// A tar with an old GNU sparse entry `name` (the map spread over the
    /// header and extension blocks; `stored` data bytes, as many as the
    /// lengths add up to unless given) and a plain file after it.
    fn gnu_sparse_tar(name: &str, real: u64, pairs: &[(u64, u64)], stored: Option<u64>) -> Vec<u8> {
        let data = content(pairs);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(stored.unwrap_or(data.len() as u64));
        h.set_mode(0o640);
        h.set_mtime(9);
        let (first, rest) = pairs.split_at(pairs.len().min(4));
        let g = h.as_gnu_mut().unwrap();
        for (d, &(off, len)) in g.sparse.iter_mut().zip(first) {
            d.set_offset(off);
            d.set_length(len);
        }
        g.set_is_extended(!rest.is_empty());
        g.set_real_size(real);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        let blocks: Vec<&[(u64, u64)]> = rest.chunks(21).collect();
        for (i, chunk) in blocks.iter().enumerate() {
            let mut x = tar::GnuExtSparseHeader::new();
            for (d, &(off, len)) in x.sparse_mut().iter_mut().zip(chunk.iter()) {
                d.set_offset(off);
                d.set_length(len);
            }
            x.set_is_extended(i + 1 < blocks.len());
            out.extend_from_slice(x.as_bytes());
        }
        out.extend_from_slice(&data);
        pad(&mut out);
        out.extend(after());
        out
    }

    /// A plain file "after" holding "after!", and the end of the archive.
    fn after() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(6);
        b.append_data(&mut h, "after", &b"after!"[..]).unwrap();
        b.into_inner().unwrap()
    }

    /// A tar with a PAX sparse entry: the records given, then a regular
    /// file `name` holding `data`, then a plain file.
    fn pax_sparse_tar(records: &[(&str, String)], name: &str, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions(records.iter().map(|(k, v)| (*k, v.as_bytes()))).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        b.append_data(&mut h, name, data).unwrap();
        let mut v = b.into_inner().unwrap();
        v.truncate(v.len() - 1024);
        v.extend(after());
        v
    }

    /// The 1.0 map text padded to a block, then the data.
    fn map_1_0(pairs: &[(u64, u64)]) -> Vec<u8> {
        let mut m = format!("{}\n", pairs.len());
        for (o, l) in pairs {
            m.push_str(&format!("{o}\n{l}\n"));
        }
        let mut v = m.into_bytes();
        pad(&mut v);
        v.extend(content(pairs));
        v
    }

    /// Checks that the one sparse file of `tar` is `name`, `real` bytes,
    /// with `pairs` as its data, found where the tar keeps it.
    fn check_sparse(tar: &[u8], name: &str, real: u64, pairs: &[(u64, u64)]) {
        let l = scan(tar, 1, "test").unwrap();
        assert_eq!(
            l.entries.len(),
            2,
            "{:?}",
            l.entries.iter().map(|e| String::from_utf8_lossy(&e.path)).collect::<Vec<_>>()
        );
        let e = &l.entries[0];
        assert_eq!(e.path, name.as_bytes());
        let Kind::File(d) = &e.kind else { panic!("not a file") };
        assert_eq!((d.layer, d.size), (1, real));
        let map = d.sparse.as_ref().expect("a sparse file");
        let want: Vec<(u64, u64)> = pairs.iter().copied().filter(|p| p.1 > 0).collect();
        let got: Vec<(u64, u64)> = map.segments().iter().map(|s| (s.start, s.len)).collect();
        assert_eq!(got, want);
        for s in map.segments() {
            assert_eq!(
                &tar[s.at as usize..(s.at + s.len) as usize],
                content(&[(s.start, s.len)]),
                "segment at {}",
                s.start
            );
        }
        let Kind::File(a) = &l.entries[1].kind else { panic!("not a file") };
        assert_eq!(&tar[a.offset as usize..(a.offset + a.size) as usize], b"after!");
    }

    /// 30 segments (two extension blocks in the old GNU format), one across
    /// 4 GiB, in a 5 GiB file ending in a hole.
    fn many_pairs() -> Vec<(u64, u64)> {
        let mut p: Vec<(u64, u64)> = (0..28).map(|i| (i * 8192, 512 + (i % 3) * 512)).collect();
        p.push(((4 << 30) - 512, 1024));
        p.push((5 << 30, 0));
        p
    }

    #[test]
    fn old_gnu_sparse_entries_keep_their_maps() {
        let pairs = many_pairs();
        check_sparse(&gnu_sparse_tar("data/holes.img", 5 << 30, &pairs, None), "data/holes.img", 5 << 30, &pairs);
        // The map in the header alone, data at the start and the end.
        let pairs = [(0, 512), (1 << 20, 100)];
        check_sparse(&gnu_sparse_tar("small", (1 << 20) + 100, &pairs, None), "small", (1 << 20) + 100, &pairs);
    }

    #[test]
    fn pax_sparse_entries_of_each_format_keep_their_maps() {
        let pairs = many_pairs();
        let real = (5u64 << 30).to_string();
        let data = content(&pairs);
        let mut r00 = vec![("GNU.sparse.size", real.clone()), ("GNU.sparse.numblocks", pairs.len().to_string())];
        for (o, l) in &pairs {
            r00.push(("GNU.sparse.offset", o.to_string()));
            r00.push(("GNU.sparse.numbytes", l.to_string()));
        }
        check_sparse(&pax_sparse_tar(&r00, "data/v00", &data), "data/v00", 5 << 30, &pairs);
        let map = pairs.iter().map(|(o, l)| format!("{o},{l}")).collect::<Vec<_>>().join(",");
        let r01 = [
            ("GNU.sparse.size", real.clone()),
            ("GNU.sparse.numblocks", pairs.len().to_string()),
            ("GNU.sparse.name", "data/v01".to_string()),
            ("GNU.sparse.map", map),
        ];
        check_sparse(&pax_sparse_tar(&r01, "GNUSparseFile.7/v01", &data), "data/v01", 5 << 30, &pairs);
        let r10 = [
            ("GNU.sparse.major", "1".to_string()),
            ("GNU.sparse.minor", "0".to_string()),
            ("GNU.sparse.name", "data/v10".to_string()),
            ("GNU.sparse.realsize", real),
        ];
        check_sparse(&pax_sparse_tar(&r10, "GNUSparseFile.7/v10", &map_1_0(&pairs)), "data/v10", 5 << 30, &pairs);
    }

    /// The error of scanning `tar`, which must name `name`.
    fn refused(tar: &[u8], name: &str) -> String {
        let e = scan(tar, 0, "bad").unwrap_err().to_string();
        assert!(e.contains(&format!("{name:?}")), "the error does not name {name}: {e}");
        e
    }

    #[test]
    fn hostile_old_gnu_maps_are_refused_naming_the_entry() {
        // Overlapping.
        let e = refused(&gnu_sparse_tar("x/overlap", 4096, &[(0, 1024), (512, 512), (4096, 0)], None), "x/overlap");
        assert!(e.contains("overlapping"), "{e}");
        // Beyond the real size (the last segment ends past it).
        let e = refused(&gnu_sparse_tar("x/beyond", 1000, &[(0, 512), (1024, 512)], None), "x/beyond");
        assert!(e.contains("size"), "{e}");
        // Lengths that do not add up to the stored data.
        let e = refused(&gnu_sparse_tar("x/sum", 4096, &[(0, 512), (4096, 0)], Some(1024)), "x/sum");
        assert!(e.contains("mismatch"), "{e}");
        // Too many segments (empty ones, which cost no data).
        let many: Vec<(u64, u64)> = (0..=img_fuse::MAX_SEGMENTS as u64).map(|i| (i, 0)).collect();
        let e = refused(&gnu_sparse_tar("x/many", img_fuse::MAX_SEGMENTS as u64, &many, None), "x/many");
        assert!(e.contains("more than 1000000 segments"), "{e}");
    }

    #[test]
    fn endless_extension_blocks_are_refused() {
        // Extension blocks of empty descriptors, each saying another follows.
        let mut tar = gnu_sparse_tar("x/endless", 4096, &[(0, 512), (4096, 0)], None);
        let mut block = tar::GnuExtSparseHeader::new();
        block.set_is_extended(true);
        let mut h = tar::Header::from_byte_slice(&tar[..512]).clone();
        h.as_gnu_mut().unwrap().set_is_extended(true);
        h.set_cksum();
        let mut v = h.as_bytes().to_vec();
        for _ in 0..(33 << 20) / 512 {
            v.extend_from_slice(block.as_bytes());
        }
        v.extend_from_slice(&tar[512..]);
        tar = v;
        let e = refused(&tar, "x/endless");
        assert!(e.contains("more than 32 MiB"), "{e}");
    }

    #[test]
    fn hostile_pax_maps_are_refused_naming_the_entry() {
        let size = |n: u64| ("GNU.sparse.size", n.to_string());
        let map = |m: &str| ("GNU.sparse.map", m.to_string());
        let name = |n: &str| ("GNU.sparse.name", n.to_string());
        let v10 = |real: u64| {
            vec![
                ("GNU.sparse.major", "1".to_string()),
                ("GNU.sparse.minor", "0".to_string()),
                ("GNU.sparse.realsize", real.to_string()),
                ("GNU.sparse.name", "x/v10".to_string()),
            ]
        };
        let cases: Vec<(Vec<u8>, &str, &str)> = vec![
            // 0.1: overlapping, beyond the real size, a sum that is not the data's size.
            (pax_sparse_tar(&[size(100), name("x/a"), map("0,10,5,10")], "G/a", &[1; 20]), "x/a", "overlap"),
            (pax_sparse_tar(&[size(100), name("x/b"), map("0,10,95,10")], "G/b", &[1; 20]), "x/b", "beyond"),
            (pax_sparse_tar(&[size(100), name("x/c"), map("0,10,50,10")], "G/c", &[1; 21]), "x/c", "add up to 20"),
            // 0.0: an offset without its length.
            (pax_sparse_tar(&[size(100), ("GNU.sparse.offset", "1".into())], "x/d", &[]), "x/d", "numbytes"),
            // 1.0: the same, and a map longer than the data.
            (pax_sparse_tar(&v10(100), "G/v10", &map_1_0(&[(0, 10), (5, 10)])), "x/v10", "overlap"),
            (pax_sparse_tar(&v10(100), "G/v10", &map_1_0(&[(0, 10), (95, 10)])), "x/v10", "beyond"),
            (
                pax_sparse_tar(&v10(100), "G/v10", &[map_1_0(&[(0, 10)]), vec![7]].concat()),
                "x/v10",
                "add up to 10 bytes, but the entry stores 11",
            ),
            (pax_sparse_tar(&v10(100), "G/v10", b"1\n0\n10\n"), "x/v10", "runs past the data"),
            (
                pax_sparse_tar(&v10(100), "G/v10", &[&b"1000001\n"[..], &[0; 504]].concat()),
                "x/v10",
                "more than 1000000 segments",
            ),
        ];
        for (tar, name, want) in cases {
            let e = refused(&tar, name);
            assert!(e.contains(want), "{name}: {e}");
        }
        // Too many segments in a 0.1 map.
        let m: Vec<String> = (0..=img_fuse::MAX_SEGMENTS).map(|i| format!("{},0", i * 2)).collect();
        let tar = pax_sparse_tar(&[size(1 << 30), name("x/many"), map(&m.join(","))], "G/many", &[]);
        let e = refused(&tar, "x/many");
        assert!(e.contains("more than 1000000 segments"), "{e}");
    }

    #[test]
    fn sparse_records_on_other_entries_are_ignored() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("GNU.sparse.map", &b"junk"[..]), ("GNU.sparse.name", b"elsewhere")]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        b.append_data(&mut h, "d/", &[][..]).unwrap();
        let l = scan(&b.into_inner().unwrap()[..], 0, "t").unwrap();
        assert_eq!((l.entries[0].path.as_slice(), &l.entries[0].kind), (&b"d"[..], &Kind::Dir));
    }
}
