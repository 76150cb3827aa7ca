//! Writing blobs: a temp file in `ingest/`, hashed while written, fsynced,
//! then linked into `blobs/sha256/` under its digest. A file may be synced
//! later than it is written (a pull syncs one blob while it downloads the
//! next), but never later than its commit: `commit_to` syncs any that is
//! not yet.
//!
//! For layers the writer can also hash the *uncompressed* stream (the
//! DiffID that image configs list) on a second thread, so that a layer is
//! verified against its config without a second pass over the file.

use super::{io_err, make_read_only, Result, StoreError};
use crate::compression::Compression;
use crate::digest::{Digest, Hasher};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

/// The uncompressed size of a layer file, plain or compressed: its bytes
/// decompressed and counted, nothing kept.
pub fn uncompressed_size(path: &Path) -> io::Result<u64> {
    let mut f = File::open(path)?;
    let mut head = Vec::with_capacity(6);
    (&mut f).take(6).read_to_end(&mut head)?;
    let c = Compression::sniff(&head);
    if c == Compression::None {
        return Ok(f.metadata()?.len());
    }
    f.seek(io::SeekFrom::Start(0))?;
    let mut dec = c.decoder(io::BufReader::with_capacity(256 * 1024, f))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        match dec.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub(super) fn temp_name(dir: &Path) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    dir.join(format!("tmp-{}-{n}-{nanos:08x}", std::process::id()))
}

/// Whether `name` (in `ingest/`) is a temporary file of this process: one
/// it is still writing or has staged, never a leftover.
pub(super) fn is_own_temp(name: &str) -> bool {
    name.strip_prefix("tmp-")
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(pid, _)| pid == std::process::id().to_string())
}

/// Size of the chunks handed to the DiffID thread.
const TAP_CHUNK: usize = 256 * 1024;

/// Hashes the decompressed form of what is written, on its own thread.
struct DiffIdTap {
    tx: Option<SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
    handle: Option<JoinHandle<io::Result<(Digest, u64)>>>,
}

/// The bytes sent through a channel, in order, as one stream (its end
/// when the sender is dropped).
pub struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    pub fn new(rx: Receiver<Vec<u8>>) -> ChannelReader {
        ChannelReader { rx, cur: Vec::new(), pos: 0 }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(v) => {
                    self.cur = v;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl DiffIdTap {
    fn start(compression: Compression) -> DiffIdTap {
        let (tx, rx) = sync_channel::<Vec<u8>>(4);
        let handle = std::thread::spawn(move || -> io::Result<(Digest, u64)> {
            let reader = ChannelReader::new(rx);
            let mut dec = compression.decoder(reader)?;
            let mut h = Hasher::new();
            let mut buf = vec![0u8; 128 * 1024];
            loop {
                let n = dec.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            // Drain what is left so the writer never blocks on a full channel
            // (trailing bytes after the compressed stream).
            let mut rest = dec;
            let _ = io::copy(&mut rest, &mut io::sink());
            let len = h.len();
            Ok((h.finish(), len))
        });
        DiffIdTap { tx: Some(tx), buf: Vec::with_capacity(TAP_CHUNK), handle: Some(handle) }
    }

    fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= TAP_CHUNK {
            self.flush_chunk();
        }
    }

    fn flush_chunk(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(TAP_CHUNK));
        if let Some(tx) = &self.tx {
            // A send error means the decoder thread stopped (bad data); the
            // error surfaces from join.
            if tx.send(chunk).is_err() {
                self.tx = None;
            }
        }
    }

    fn finish(mut self) -> io::Result<(Digest, u64)> {
        self.flush_chunk();
        self.tx = None;
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            _ => Err(io::Error::other("decompressor thread failed")),
        }
    }
}

impl Drop for DiffIdTap {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A blob being written into `ingest/`.
pub struct BlobWriter {
    file: Option<File>,
    path: PathBuf,
    hasher: Hasher,
    head: Vec<u8>,
    want_diff_id: bool,
    tap: Option<DiffIdTap>,
    compression: Option<Compression>,
}

/// Bytes looked at to recognise the compression.
const SNIFF_LEN: usize = 6;

impl BlobWriter {
    pub(super) fn create(dir: &Path) -> Result<BlobWriter> {
        let path = temp_name(dir);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_err("creating temporary blob", &path))?;
        Ok(BlobWriter {
            file: Some(file),
            path,
            hasher: Hasher::new(),
            head: Vec::new(),
            want_diff_id: false,
            tap: None,
            compression: None,
        })
    }

    /// Also computes the digest of the decompressed content (the DiffID of a layer).
    pub fn with_diff_id(mut self) -> Self {
        self.want_diff_id = true;
        self
    }

    fn start_tap_if_ready(&mut self, force: bool) {
        if self.compression.is_some() || (!force && self.head.len() < SNIFF_LEN) {
            return;
        }
        let c = Compression::sniff(&self.head);
        self.compression = Some(c);
        if self.want_diff_id && matches!(c, Compression::Gzip | Compression::Zstd | Compression::Xz) {
            let mut tap = DiffIdTap::start(c);
            tap.feed(&self.head);
            self.tap = Some(tap);
        }
    }

    /// Writes everything from `r`; returns the bytes copied.
    pub fn copy_from(&mut self, r: &mut dyn Read) -> Result<u64> {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("reading input for", &self.path)(e)),
            };
            self.write_all(&buf[..n]).map_err(io_err("writing", &self.path))?;
            total += n as u64;
        }
        Ok(total)
    }

    /// fsyncs and closes the temp file; returns it with its digests.
    pub fn finish(self) -> Result<StagedBlob> {
        let mut s = self.finish_unsynced()?;
        s.sync()?;
        Ok(s)
    }

    /// Closes the temp file without waiting for its bytes to reach the
    /// disk; returns it with its digests. It is synced by `StagedBlob::sync`
    /// or, at the latest, when it is committed.
    pub fn finish_unsynced(mut self) -> Result<StagedBlob> {
        self.start_tap_if_ready(true);
        let file = self.file.take().expect("finish is called once");
        drop(file);
        let hasher = std::mem::take(&mut self.hasher);
        let size = hasher.len();
        let digest = hasher.finish();
        let compression = self.compression.unwrap_or(Compression::None);
        let (diff_id, uncompressed_size) = match self.tap.take() {
            Some(tap) => match tap.finish() {
                Ok((d, n)) => (Some(Ok(d)), n),
                Err(e) => (Some(Err(e.to_string())), 0),
            },
            None if compression == Compression::None => (Some(Ok(digest.clone())), size),
            None => (None, 0),
        };
        let path = std::mem::take(&mut self.path);
        Ok(StagedBlob {
            path,
            digest,
            size,
            compression,
            diff_id,
            uncompressed_size,
            committed: false,
            synced: false,
            download: None,
        })
    }
}

impl Write for BlobWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let file = self.file.as_mut().ok_or_else(|| io::Error::other("blob writer finished"))?;
        file.write_all(data)?;
        self.hasher.update(data);
        if self.compression.is_none() {
            let need = SNIFF_LEN - self.head.len();
            self.head.extend_from_slice(&data[..need.min(data.len())]);
            let rest = &data[need.min(data.len())..];
            self.start_tap_if_ready(false);
            if let (Some(tap), false) = (self.tap.as_mut(), rest.is_empty()) {
                tap.feed(rest);
            }
        } else if let Some(tap) = self.tap.as_mut() {
            tap.feed(data);
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A complete blob in `ingest/`, not yet in the store. Dropping it removes
/// the temp file unless it was committed.
#[derive(Debug)]
pub struct StagedBlob {
    path: PathBuf,
    digest: Digest,
    size: u64,
    compression: Compression,
    diff_id: Option<std::result::Result<Digest, String>>,
    uncompressed_size: u64,
    committed: bool,
    /// Its bytes are known to be on the disk (fsynced by this process).
    synced: bool,
    /// A finished download: the open, locked partial file, held until the
    /// blob is committed so that no other process adopts the same file, and
    /// kept on disk if the command fails before committing it.
    download: Option<File>,
}

impl StagedBlob {
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn compression(&self) -> Compression {
        self.compression
    }
    /// The digest of the decompressed content, if it was computed; an error
    /// message if the content did not decompress.
    pub fn diff_id(&self) -> Option<std::result::Result<&Digest, &str>> {
        self.diff_id.as_ref().map(|r| r.as_ref().map_err(|e| e.as_str()))
    }
    pub fn uncompressed_size(&self) -> u64 {
        self.uncompressed_size
    }
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adopts a complete file in `ingest/` whose digest and size were
    /// verified by the caller (a finished download), with the open file
    /// that holds its lock. The lock is kept until the blob is committed,
    /// and a blob never committed stays in `ingest/` for the next pull.
    pub fn adopt_download(path: PathBuf, digest: Digest, size: u64, locked: Option<File>) -> StagedBlob {
        StagedBlob {
            path,
            digest,
            size,
            compression: Compression::None,
            diff_id: None,
            uncompressed_size: 0,
            committed: false,
            synced: false,
            download: locked,
        }
    }

    /// Waits until the staged file's bytes are on the disk (fsync). A blob
    /// is committed only after this; `commit_to` calls it for one that was
    /// not synced yet.
    pub fn sync(&mut self) -> Result<()> {
        if self.synced || self.committed {
            return Ok(());
        }
        let f = match &self.download {
            Some(f) => f.sync_all(),
            None => File::open(&self.path).and_then(|f| f.sync_all()),
        };
        f.map_err(io_err("syncing", &self.path))?;
        self.synced = true;
        Ok(())
    }

    /// Marks a blob that is already in `blobs/` (the path is the stored
    /// file): committing it does nothing and dropping it deletes nothing.
    pub fn already_stored(mut self) -> StagedBlob {
        self.committed = true;
        self
    }

    /// Checks the digest and size against a descriptor.
    pub fn verify(&self, what: &str, digest: &Digest, size: Option<u64>) -> Result<()> {
        if let Some(size) = size {
            if size != self.size {
                return Err(StoreError::SizeMismatch { what: what.to_string(), expected: size, actual: self.size });
            }
        }
        if digest != &self.digest {
            return Err(StoreError::DigestMismatch {
                what: what.to_string(),
                expected: digest.clone(),
                actual: self.digest.clone(),
            });
        }
        Ok(())
    }

    /// Reads the staged content whole (small blobs only).
    pub fn read_all(&self, limit: u64) -> Result<Vec<u8>> {
        let f = File::open(&self.path).map_err(io_err("opening", &self.path))?;
        let mut buf = Vec::new();
        f.take(limit + 1).read_to_end(&mut buf).map_err(io_err("reading", &self.path))?;
        if buf.len() as u64 > limit {
            return Err(StoreError::TooLarge { size: self.size, limit });
        }
        Ok(buf)
    }

    /// Links the temp file into place; an existing target (same digest)
    /// means the blob is already stored. The temp file is removed either way.
    pub(super) fn commit_to(&mut self, target: &Path) -> Result<()> {
        if self.committed {
            return Ok(());
        }
        if !self.synced {
            match self.sync() {
                Ok(()) => {}
                // Committed and removed by another process meanwhile.
                Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound && target.exists() => {
                    self.committed = true;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        if let Err(e) = make_read_only(&self.path) {
            // Another process may have committed the same partial download
            // and removed it; the blob is then in place already.
            if e.kind() == io::ErrorKind::NotFound && target.exists() {
                self.committed = true;
                return Ok(());
            }
            return Err(io_err("setting mode of", &self.path)(e));
        }
        match fs::hard_link(&self.path, target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::Io { action: "moving blob into", path: target.to_path_buf(), source: e }),
        }
        let _ = fs::remove_file(&self.path);
        self.committed = true;
        // Waiters on the download's lock find the blob stored now.
        self.download = None;
        Ok(())
    }
}

/// A layer's index file, built while its blob was downloaded and written
/// in `ingest/`; put in place under `indexes/` once the blob is stored, so
/// no index file names a blob that is not there. Dropping it removes the
/// temp file. It is derived data and not synced: a mount checks it and
/// rebuilds one that a crash damaged.
#[derive(Debug)]
pub struct StagedIndex {
    path: PathBuf,
    digest: Digest,
}

impl super::StorePaths {
    /// A scratch file in `ingest/`, unlinked at once: it goes with the
    /// process (an index's windows while it is built).
    pub fn scratch_file(&self) -> Result<File> {
        let path = temp_name(&self.ingest_dir());
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_err("creating scratch file", &path))?;
        fs::remove_file(&path).map_err(io_err("unlinking", &path))?;
        Ok(f)
    }

    /// Writes the index file of layer `d` into `ingest/`: the bytes
    /// `write` writes.
    pub fn stage_layer_index(
        &self,
        d: &Digest,
        write: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<StagedIndex> {
        let path = temp_name(&self.ingest_dir());
        let staged = StagedIndex { path, digest: d.clone() };
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&staged.path)
            .map_err(io_err("creating temporary index", &staged.path))?;
        let mut w = io::BufWriter::with_capacity(64 << 10, f);
        write(&mut w).and_then(|()| w.flush()).map_err(io_err("writing", &staged.path))?;
        Ok(staged)
    }
}

impl StagedIndex {
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Moves the index file into place; its blob must be stored already
    /// (the proof is asked for).
    pub fn install(mut self, paths: &super::StorePaths, stored: &StoredBlobs) -> Result<()> {
        let target = paths.layer_index(&self.digest);
        if !stored.contains(&self.digest) {
            return Ok(());
        }
        let dir = paths.layer_indexes_dir();
        if !dir.is_dir() {
            super::create_dir_private(&dir)?;
        }
        fs::rename(&self.path, &target).map_err(io_err("renaming into", &target))?;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for StagedIndex {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Blobs that are complete files under `blobs/sha256/`, with their sizes:
/// what the index asks for before it records blob rows.
///
/// It carries the invariant "an index row refers only to a blob that
/// exists" in the type, instead of in the order of calls at each ingest:
/// - its field is private to this module and it has no public constructor
///   (nor `Default`, `From`, `DerefMut` or `Deserialize`), so no code
///   outside `store` can make one or add a digest to one;
/// - inside `store` it is made only by `Store::commit_blobs`, after each
///   staged file is linked into `blobs/sha256/` and the directory fsynced,
///   and by `Store::stored_blobs` and the crash recovery, after `stat` found
///   each file there;
/// - `Index::insert_image`, `Index::add_blob_rows` and
///   `Index::resolve_pending` take one, and record rows only for the blobs
///   it holds;
/// - blob files are deleted only under the exclusive `gc.lock`, which a
///   process that may add references holds shared for its whole run, so
///   the files are still in place when the rows are written.
///
/// An ingest that indexes before it commits does not compile:
///
/// ```compile_fail
/// // Outside the store no one can claim that blobs are stored.
/// let forged = img::store::StoredBlobs(vec![]);
/// ```
#[derive(Debug, Clone)]
pub struct StoredBlobs(Vec<(Digest, u64)>);

impl StoredBlobs {
    /// Blobs found in `blobs/sha256/` (linked there, or seen by `stat`).
    pub(super) fn found(blobs: Vec<(Digest, u64)>) -> StoredBlobs {
        StoredBlobs(blobs)
    }

    /// For the index's own tests, whose rows need no files.
    #[cfg(test)]
    pub(crate) fn assumed(blobs: Vec<(Digest, u64)>) -> StoredBlobs {
        StoredBlobs(blobs)
    }

    /// Both sets of stored blobs (each blob once).
    pub fn merge(mut self, other: StoredBlobs) -> StoredBlobs {
        for b in other.0 {
            if !self.0.iter().any(|(d, _)| d == &b.0) {
                self.0.push(b);
            }
        }
        self
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.0.iter().any(|(x, _)| x == d)
    }
}

impl std::ops::Deref for StoredBlobs {
    type Target = [(Digest, u64)];
    fn deref(&self) -> &[(Digest, u64)] {
        &self.0
    }
}

impl super::Store {
    /// Proof that blobs already in the store are there: each file is
    /// looked up in `blobs/sha256/` (its size is the file's). A missing one
    /// is an error naming it.
    pub fn stored_blobs(&self, digests: &[Digest]) -> Result<StoredBlobs> {
        self.paths().stored_blobs(digests)
    }
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        if !self.committed && self.download.is_none() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_temp_files_are_told_from_others() {
        let own = temp_name(Path::new("/x"));
        assert!(is_own_temp(&own.file_name().unwrap().to_string_lossy()));
        assert!(!is_own_temp("tmp-1-0-00000000"), "pid 1 is not this test");
        assert!(!is_own_temp(&format!("partial-{}", std::process::id())));
        assert!(!is_own_temp(&format!("tmp-{}0-1-2", std::process::id())), "a longer pid with the same start");
    }

    fn dir(name: &str) -> crate::testdir::TestDir {
        crate::testdir::TestDir::new(&format!("blobs-{name}"))
    }

    #[test]
    fn writer_computes_digest_and_diff_id_of_gzip() {
        let d = dir("gz");
        let raw = b"layer content ".repeat(100_000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let gz = gz.finish().unwrap();
        let mut w = BlobWriter::create(&d).unwrap().with_diff_id();
        // Write in odd-sized pieces to exercise the sniffing buffer.
        for chunk in gz.chunks(3) {
            w.write_all(chunk).unwrap();
        }
        let s = w.finish().unwrap();
        assert_eq!(s.digest(), &Digest::of_bytes(&gz));
        assert_eq!(s.compression(), Compression::Gzip);
        assert_eq!(s.diff_id().unwrap().unwrap(), &Digest::of_bytes(&raw));
        assert_eq!(s.uncompressed_size(), raw.len() as u64);
        let p = s.path().to_path_buf();
        drop(s);
        assert!(!p.exists(), "dropping an uncommitted blob removes its temp file");
    }

    #[test]
    fn uncompressed_size_of_plain_gzip_and_zstd_files() {
        let d = dir("measure");
        let raw = b"layer content ".repeat(50_000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&raw[..], 3).unwrap();
        for (name, bytes) in [("plain", &raw[..]), ("gz", &gz[..]), ("zst", &zs[..])] {
            let p = d.join(name);
            fs::write(&p, bytes).unwrap();
            assert_eq!(uncompressed_size(&p).unwrap(), raw.len() as u64, "{name}");
        }
        let bad = d.join("bad");
        fs::write(&bad, &gz[..gz.len() / 2]).unwrap();
        assert!(uncompressed_size(&bad).is_err(), "a cut gzip stream has no size");
    }

    #[test]
    fn corrupt_gzip_reports_a_diff_id_error() {
        let d = dir("badgz");
        let mut w = BlobWriter::create(&d).unwrap().with_diff_id();
        w.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
        let s = w.finish().unwrap();
        assert!(s.diff_id().unwrap().is_err());
    }

    #[test]
    fn stored_blobs_are_only_files_in_place() {
        let d = dir("stored");
        let mut store = super::super::Store::open(&d.join("store")).unwrap();
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"config").unwrap();
        let mut staged = w.finish().unwrap();
        let digest = staged.digest().clone();
        let stored = store.commit_blobs(&mut [&mut staged]).unwrap();
        assert_eq!(&stored[..], &[(digest.clone(), 6)]);
        assert!(store.blob_path(&digest).is_file(), "committed means linked into blobs/");
        // Blobs already stored are proven by looking: the same proof.
        let again = store.stored_blobs(std::slice::from_ref(&digest)).unwrap();
        assert_eq!(&again[..], &stored[..]);
        // A blob that is not there cannot be claimed.
        let absent = Digest::of_bytes(b"never written");
        let err = store.stored_blobs(&[digest.clone(), absent.clone()]).unwrap_err();
        assert!(matches!(&err, StoreError::MissingBlob { digest, .. } if digest == &absent), "{err}");
        // The index records rows for the blobs proven stored, once each.
        let both = stored.merge(again);
        assert_eq!(both.len(), 1);
        store.index_mut().add_blob_rows(&both).unwrap();
        assert_eq!(store.index().blobs().unwrap(), vec![(digest, 6)]);
    }

    #[test]
    fn uncompressed_diff_id_is_the_digest() {
        let d = dir("plain");
        let mut w = BlobWriter::create(&d).unwrap().with_diff_id();
        w.write_all(b"ab").unwrap();
        let s = w.finish().unwrap();
        assert_eq!(s.diff_id().unwrap().unwrap(), s.digest());
    }
}
