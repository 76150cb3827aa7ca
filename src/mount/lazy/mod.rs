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
//!
//! `toc` reads and checks the TOC and makes the tree and chunk table,
//! `index` keeps them in `lazy/<hex>.index`, `source` serves the chunks,
//! `plan` joins the fetches of neighbouring chunks into Range requests,
//! `registry` fetches them; the range cache is the store's
//! (`store::RangeCache`).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

mod index;
mod plan;
mod registry;
mod source;
pub mod stream;
mod toc;

pub use index::{read_index, write_index};
pub use registry::{lazy_timeout, RegistryFetch, RegistrySource};
pub use source::{RemoteLayer, TocFileAt};
pub use toc::{
    read_toc, read_toc_layer, read_zstd_toc, toc_at_of_row, toc_layer, toc_layer_with, ChunkRef, Codec, LazyError,
    TocAt, TocKind, TocLayer, MAX_CHUNK,
};

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

#[cfg(test)]
mod tests {
    use super::source::AHEAD_MIN;
    use super::*;
    use crate::digest::Digest;
    use crate::layerindex::estargz::tests::random;
    use crate::layerindex::estargz::TocEntryRef;
    use crate::layerindex::estargz::{self, Toc};
    use crate::layerindex::zstd_chunked;
    use crate::store::{RangeCache, StorePaths};
    use img_fuse::Kind;
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

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
        /// The layout of a store rooted here.
        fn paths(&self) -> StorePaths {
            StorePaths::new(&self.0)
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
        let cache = RangeCache::open(&dir.paths(), &d, blob.len() as u64).unwrap();
        let src = RemoteLayer::new("test".into(), tl.chunks.clone(), mem.clone(), Some(cache), stats.clone());
        let got = contents(&tl, &src);
        src.settle();
        assert_eq!(got[&b"d/a".to_vec()], b"hello\n");
        assert_eq!(got[&b"d/big".to_vec()], big);
        assert_eq!(got[&b"d/empty".to_vec()], b"");
        let calls = mem.calls.lock().unwrap().len();
        assert_eq!(calls as u64, stats.requests.load(Ordering::Relaxed));
        // Chunks read in order go several to a request.
        assert!(calls < tl.chunks.len(), "{calls} requests for {} chunks", tl.chunks.len());
        assert!(stats.fetched_bytes.load(Ordering::Relaxed) <= blob.len() as u64);
        // A second layer over the same cache fetches nothing.
        let cache = RangeCache::open(&dir.paths(), &d, blob.len() as u64).unwrap();
        let again = RemoteLayer::new("test".into(), tl.chunks.clone(), mem.clone(), Some(cache), stats.clone());
        assert_eq!(contents(&tl, &again)[&b"d/big".to_vec()], big);
        assert_eq!(mem.calls.lock().unwrap().len(), calls);
        assert!(stats.cache_bytes.load(Ordering::Relaxed) > 0);
    }

    /// 300 files of 3,000 random bytes in one layer, served remotely.
    struct Small {
        data: Vec<Vec<u8>>,
        names: Vec<String>,
        blob: Vec<u8>,
        tl: TocLayer,
        dir: Scratch,
        d: Digest,
        mem: Arc<Mem>,
        stats: Arc<Stats>,
        src: RemoteLayer,
    }

    fn small_files(label: &str) -> Small {
        let data: Vec<Vec<u8>> = (0..300).map(|i| random(3000, i)).collect();
        let names: Vec<String> = (0..300).map(|i| format!("d/f{i:03}")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| n.as_str()).zip(data.iter().map(|d| &d[..])).collect();
        let (blob, tl, _) = layer(&files, 1 << 20);
        let dir = scratch(label);
        let d = Digest::of_bytes(&blob);
        let mem = Arc::new(Mem { blob: blob.clone(), calls: Mutex::new(Vec::new()), fail: false.into() });
        let stats = Arc::new(Stats::default());
        let cache = RangeCache::open(&dir.paths(), &d, blob.len() as u64).unwrap();
        let src = RemoteLayer::new("test".into(), tl.chunks.clone(), mem.clone(), Some(cache), stats.clone());
        Small { data, names, blob, tl, dir, d, mem, stats, src }
    }

    #[test]
    fn small_files_read_in_order_share_requests_and_half_read_fetches_the_rest() {
        let Small { data, names, blob, tl, dir, d, mem, stats, src } = small_files("order");
        // A first read fetches its chunk and a little after it, no more.
        let mut buf = vec![0u8; 3000];
        assert_eq!(src.read_at(offset_of(&tl, "d/f000"), &mut buf).unwrap(), 3000);
        assert_eq!(buf, data[0]);
        assert_eq!(mem.calls.lock().unwrap().len(), 1);
        let first = stats.fetched_bytes.load(Ordering::Relaxed);
        assert!(first <= 4000 + AHEAD_MIN + plan::GAP, "a first read fetched {first} bytes");
        assert!(first * 5 < blob.len() as u64, "a first read fetched {first} of {}", blob.len());
        // Reading on in order: requests grow; past half the layer the rest
        // comes in the background.
        for i in 1..160 {
            assert_eq!(src.read_at(offset_of(&tl, &names[i]), &mut buf).unwrap(), 3000);
            assert_eq!(buf, data[i], "{}", names[i]);
        }
        src.settle();
        let calls = mem.calls.lock().unwrap().len();
        assert!(calls <= 10, "{calls} requests for 160 files read in order");
        let cache = RangeCache::open(&dir.paths(), &d, blob.len() as u64).unwrap();
        for c in &tl.chunks {
            assert!(cache.get(c.comp, c.comp_end).unwrap().is_some(), "chunk at {} not fetched", c.comp);
        }
        // The rest reads without a fetch.
        assert_eq!(contents(&tl, &src)[&b"d/f299".to_vec()], data[299]);
        assert_eq!(mem.calls.lock().unwrap().len(), calls);
        // Bytes fetched once each (coalescing fetches few bytes twice).
        assert!(stats.fetched_bytes.load(Ordering::Relaxed) <= blob.len() as u64 * 11 / 10);
    }

    #[test]
    fn a_small_file_read_does_not_fetch_the_big_file_after_it() {
        let big = random(1 << 20, 9);
        let files: Vec<(&str, &[u8])> = vec![("d/a", b"small\n"), ("d/big", &big)];
        let (blob, tl, _) = layer(&files, 4 << 20);
        let dir = scratch("small-big");
        let d = Digest::of_bytes(&blob);
        let mem = Arc::new(Mem { blob: blob.clone(), calls: Mutex::new(Vec::new()), fail: false.into() });
        let stats = Arc::new(Stats::default());
        let cache = RangeCache::open(&dir.paths(), &d, blob.len() as u64).unwrap();
        let src = RemoteLayer::new("test".into(), tl.chunks.clone(), mem.clone(), Some(cache), stats.clone());
        let mut buf = [0u8; 6];
        assert_eq!(src.read_at(offset_of(&tl, "d/a"), &mut buf).unwrap(), 6);
        assert_eq!(&buf, b"small\n");
        let fetched = stats.fetched_bytes.load(Ordering::Relaxed);
        assert!(fetched < 64 << 10, "reading 6 bytes fetched {fetched}");
    }

    #[test]
    fn reads_far_apart_stay_small() {
        let Small { data, names, blob, tl, dir: _dir, stats, src, .. } = small_files("apart");
        let mut buf = vec![0u8; 3000];
        for i in [290, 10, 200, 100, 50] {
            assert_eq!(src.read_at(offset_of(&tl, &names[i]), &mut buf).unwrap(), 3000);
            assert_eq!(buf, data[i]);
        }
        src.settle();
        let fetched = stats.fetched_bytes.load(Ordering::Relaxed);
        assert!(fetched * 2 < blob.len() as u64, "5 reads far apart fetched {fetched} of {}", blob.len());
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
        let cache = RangeCache::open(&dir.paths(), &d, blob.len() as u64).unwrap();
        let src = RemoteLayer::new("test".into(), tl.chunks.clone(), mem, Some(cache), Arc::new(Stats::default()));
        let mut buf = [0u8; 64];
        let e = src.read_at(offset_of(&tl, "d/a"), &mut buf).unwrap_err().to_string();
        assert!(e.contains("other bytes than the image's table of contents says"), "{e}");
        let cache = RangeCache::open(&dir.paths(), &d, blob.len() as u64).unwrap();
        assert!(cache.ranges().is_empty());
    }

    #[test]
    fn a_damaged_cache_is_fetched_again() {
        let files: Vec<(&str, &[u8])> = vec![("d/a", b"cached content\n")];
        let (blob, tl, _) = layer(&files, 1 << 20);
        let dir = scratch("t3");
        let d = Digest::of_bytes(&blob);
        let c = tl.chunks.iter().find(|c| c.virt == offset_of(&tl, "d/a")).unwrap().clone();
        let cache = RangeCache::open(&dir.paths(), &d, blob.len() as u64).unwrap();
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
        write_index(&dir.paths(), &d, &tl).unwrap();
        let (layer, (chunks, toc_file, prefetch)) = read_index(&dir.paths(), &d, 3).unwrap();
        assert_eq!(layer, tl.layer);
        assert_eq!(chunks, tl.chunks);
        assert_eq!(toc_file, tl.toc_file);
        assert_eq!(prefetch, tl.prefetch_end);
        // Another layer's digest, or a damaged file, gives nothing.
        assert!(read_index(&dir.paths(), &Digest::of_bytes(b"other"), 3).is_none());
        let p = dir.paths().lazy_index(&d);
        let mut bytes = std::fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert!(read_index(&dir.paths(), &d, 3).is_none());
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
        let cache = RangeCache::open(&dir.paths(), &d, blob.len() as u64).unwrap();
        let mem = Mem { blob: blob.clone(), calls: Mutex::new(Vec::new()), fail: false.into() };
        let at = TocAt::ZstdChunked(conv.toc_digest.clone(), Some(conv.toc));
        let tl = read_toc_layer(&cache, &mem, &d, blob.len() as u64, &at, 0, "z").unwrap();
        assert_eq!(mem.calls.lock().unwrap().len(), 1, "the TOC is one request");
        // Without the position, the footer gives it (one more request).
        let cache = RangeCache::open(&scratch("zf").paths(), &d, blob.len() as u64).unwrap();
        let by_footer =
            read_toc_layer(&cache, &mem, &d, blob.len() as u64, &TocAt::ZstdChunked(conv.toc_digest, None), 0, "z")
                .unwrap();
        assert_eq!(by_footer.chunks, tl.chunks);
        let (json, _) = read_zstd_toc(
            &RangeCache::open(&scratch("zj").paths(), &d, blob.len() as u64).unwrap(),
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
        let cache = RangeCache::open(&dir.paths(), &d, blob.len() as u64).unwrap();
        let src = RemoteLayer::new("z".into(), tl.chunks.clone(), mem.clone(), Some(cache), Arc::new(Stats::default()));
        let got = contents(&tl, &src);
        src.settle();
        assert_eq!(got[&b"d/a".to_vec()], b"hello zstd\n");
        assert_eq!(got[&b"d/big".to_vec()], big);
        assert_eq!(got[&b"d/empty".to_vec()], b"");
        // Chunks read in order share requests; the TOC and the tar-split
        // after the frames are not fetched.
        let calls = mem.calls.lock().unwrap().clone();
        assert!(calls.len() < tl.chunks.len(), "{} requests for {} chunks", calls.len(), tl.chunks.len());
        let fetched: u64 = calls.iter().map(|(s, e)| e - s).sum();
        assert!(fetched < blob.len() as u64, "fetched {fetched} of {}", blob.len());
        // The index keeps the codec.
        write_index(&dir.paths(), &d, &tl).unwrap();
        let (_, (chunks, _, _)) = read_index(&dir.paths(), &d, 0).unwrap();
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
