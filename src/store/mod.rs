//! The store: a content-addressed blob directory beside the SQLite index,
//! coordinated by a lock file.
//!
//! Layout under the root (see ARCHITECTURE.md "On-disk format"):
//! - `img.db`: the index (only `index` reads and writes it);
//! - `blobs/sha256/<hex>`: complete, verified, read-only blobs;
//! - `ingest/`: temporary files of ingests in progress;
//! - `gc.lock`: held shared by every process that may add blobs or
//!   references, exclusive by whoever deletes blob files.

mod blobs;
pub mod config;
pub mod index;
mod lock;
mod paths;
mod range_cache;

pub use crate::compression::Compression;
pub use blobs::{uncompressed_size, BlobWriter, ChannelReader, StagedBlob, StagedIndex, StoredBlobs};
pub use config::StoreConfig;
pub use lock::LockFile;
pub use paths::StorePaths;
pub use range_cache::RangeCache;

use crate::digest::Digest;
use index::{Index, IndexError};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("no space left on device while {action} {path}; nothing was stored; free some space (img prune removes unused blobs) or use a store on a larger disk (--root)")]
    NoSpace { action: &'static str, path: PathBuf },
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("blob {digest} is missing from the store at {path}; run img fsck")]
    MissingBlob { digest: Digest, path: PathBuf },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: Digest, actual: Digest },
    #[error("{what}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { what: String, expected: u64, actual: u64 },
    #[error("it is {size} bytes, over the {limit}-byte limit; refusing to read it into memory")]
    TooLarge { size: u64, limit: u64 },
}

pub type Result<T> = std::result::Result<T, StoreError>;

fn f_len(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.len())
}

pub(crate) fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| {
        if source.kind() == io::ErrorKind::StorageFull || source.kind() == io::ErrorKind::QuotaExceeded {
            StoreError::NoSpace { action, path: path.to_path_buf() }
        } else {
            StoreError::Io { action, path: path.to_path_buf(), source }
        }
    }
}

/// A directory removed, with what it holds, when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = remove_tree(&self.0);
    }
}

/// Removes directory `p` and everything under it; where a directory cannot
/// be read or emptied (a build step can leave one of mode 000), the
/// directories the caller owns are opened up (0700) and the removal tried
/// again.
pub fn remove_tree(p: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            open_up(p);
            fs::remove_dir_all(p)
        }
    }
}

fn open_up(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(md) = fs::symlink_metadata(p) else { return };
    if !md.is_dir() {
        return;
    }
    let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            open_up(&e.path());
        }
    }
}

/// What opening the store cleaned up after interrupted commands.
#[derive(Debug, Default, Clone)]
pub struct Recovery {
    /// Temporary files of dead ingests that were removed.
    pub temp_files: u64,
    /// Blobs moved into place by an interrupted ingest, now indexed.
    pub recovered_blobs: u64,
}

pub struct Store {
    root: PathBuf,
    index: Index,
    lock: LockFile,
    exclusive: bool,
    recovery: Recovery,
}

impl Store {
    /// The default root: `/var/lib/img` for root, else
    /// `${XDG_DATA_HOME:-~/.local/share}/img`.
    pub fn default_root() -> PathBuf {
        if is_root() {
            return PathBuf::from("/var/lib/img");
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
            return PathBuf::from(x).join("img");
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
        home.join(".local/share/img")
    }

    /// Opens the store at `root`, creating it on first use, and cleans up
    /// after interrupted commands when no other img process is ingesting.
    /// The returned store holds the lock file shared.
    pub fn open(root: &Path) -> Result<Store> {
        let paths = StorePaths::new(root);
        // Directories made here are fsynced once all are made, with the
        // index, deepest first: three fsyncs for a new store, none for one
        // that exists.
        let mut unsynced = Vec::new();
        for p in [root.to_path_buf(), paths.blobs_parent(), paths.blobs_dir(), paths.ingest_dir()] {
            if !p.is_dir() {
                make_dirs(&p, &mut unsynced)?;
            }
        }
        let lock = LockFile::open(&paths.lock_file()).map_err(io_err("opening lock file", &paths.lock_file()))?;
        let db = paths.db();
        if !db.exists() {
            unsynced.push(root.to_path_buf());
        }
        let index = Index::open(&db)?;
        sync_dirs(unsynced)?;
        let mut store =
            Store { root: root.to_path_buf(), index, lock, exclusive: false, recovery: Recovery::default() };
        store.recover_if_idle()?;
        if !store.exclusive {
            store.lock.lock_shared().map_err(io_err("locking", &store.paths().lock_file()))?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn index_mut(&mut self) -> &mut Index {
        &mut self.index
    }

    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The store's settings (`ROOT/config.toml`); the default when absent.
    pub fn config(&self) -> std::result::Result<StoreConfig, config::ConfigError> {
        StoreConfig::load(&self.paths().config())
    }

    /// The store's layout: where each of its files is.
    pub fn paths(&self) -> StorePaths {
        StorePaths::new(&self.root)
    }

    pub fn ingest_dir(&self) -> PathBuf {
        self.paths().ingest_dir()
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.paths().blob_path(d)
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        let p = self.blob_path(d);
        File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob { digest: d.clone(), path: p.clone() }
            } else {
                StoreError::Io { action: "opening blob", path: p.clone(), source: e }
            }
        })
    }

    /// Reads a small stored blob (a manifest or config) whole.
    pub fn read_blob(&self, d: &Digest, limit: u64) -> Result<Vec<u8>> {
        use std::io::Read;
        let p = self.blob_path(d);
        let f = self.open_blob(d)?;
        let mut buf = Vec::new();
        f.take(limit + 1).read_to_end(&mut buf).map_err(io_err("reading blob", &p))?;
        if buf.len() as u64 > limit {
            let size = f_len(&p).unwrap_or(buf.len() as u64);
            return Err(StoreError::TooLarge { size, limit });
        }
        Ok(buf)
    }

    /// Where the layer index of blob `d` is kept (derived data, rebuilt when
    /// missing or damaged; removed with the blob).
    pub fn layer_index_path(&self, d: &Digest) -> PathBuf {
        self.paths().layer_index(d)
    }

    /// Writes derived data for blob `d` (a layer index) atomically: a temp
    /// file in `ingest/`, then a rename.
    /// The bytes are those `write` writes.
    pub fn write_layer_index(
        &self,
        d: &Digest,
        write: &mut dyn FnMut(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<()> {
        let dir = self.paths().layer_indexes_dir();
        if !dir.is_dir() {
            create_dir_private(&dir)?;
        }
        let mut w = self.blob_writer()?;
        write(&mut w).map_err(io_err("writing", &dir))?;
        let staged = w.finish()?;
        let target = self.layer_index_path(d);
        fs::rename(staged.path(), &target).map_err(io_err("renaming into", &target))?;
        Ok(())
    }

    /// A scratch directory in `ingest/`, removed with its contents when
    /// dropped (or, if the process is killed, by the next one to recover).
    pub fn temp_dir(&self) -> Result<TempDir> {
        let p = blobs::temp_name(&self.ingest_dir());
        create_dir_private(&p)?;
        Ok(TempDir(p))
    }

    /// Starts writing a new blob into `ingest/`.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        BlobWriter::create(&self.ingest_dir())
    }

    /// Moves staged blobs into `blobs/sha256/` (each becomes visible only
    /// complete and verified) and returns them as `StoredBlobs`, which the
    /// index transaction that references them requires. Staged blobs whose
    /// digest is already stored are dropped.
    pub fn commit_blobs(&mut self, staged: &mut [&mut StagedBlob]) -> Result<StoredBlobs> {
        let digests: Vec<Digest> = staged.iter().map(|s| s.digest().clone()).collect();
        // Recorded first: if this process dies after a rename below, the
        // next process to open the store indexes the blob (see recover_if_idle).
        self.index.add_pending(&digests)?;
        let dir = self.paths().blobs_dir();
        let mut out = Vec::with_capacity(staged.len());
        for s in staged.iter_mut() {
            let target = self.blob_path(s.digest());
            s.commit_to(&target)?;
            out.push((s.digest().clone(), s.size()));
        }
        sync_dir(&dir)?;
        crate::crashpoint("after_blob_rename_before_index");
        Ok(StoredBlobs::found(out))
    }

    /// Takes the lock exclusively, waiting for ingests in progress to end.
    /// `on_wait` is called once if the wait is noticeable.
    pub fn lock_exclusive(&mut self, on_wait: impl FnOnce()) -> Result<()> {
        if self.exclusive {
            return Ok(());
        }
        let path = self.paths().lock_file();
        self.lock.unlock().map_err(io_err("unlocking", &path))?;
        if !self.lock.try_lock_exclusive().map_err(io_err("locking", &path))? {
            on_wait();
            self.lock.lock_exclusive().map_err(io_err("locking", &path))?;
        }
        self.exclusive = true;
        self.recover_locked()?;
        Ok(())
    }

    /// Goes back from the exclusive lock to the shared one (after an
    /// eviction, before the command adds data of its own).
    pub fn lock_shared_again(&mut self) -> Result<()> {
        if !self.exclusive {
            return Ok(());
        }
        let path = self.paths().lock_file();
        self.lock.unlock().map_err(io_err("unlocking", &path))?;
        self.exclusive = false;
        self.lock.lock_shared().map_err(io_err("locking", &path))?;
        Ok(())
    }

    /// Takes the lock exclusively if no other process holds it.
    pub fn try_lock_exclusive(&mut self) -> Result<bool> {
        if self.exclusive {
            return Ok(true);
        }
        let path = self.paths().lock_file();
        self.lock.unlock().map_err(io_err("unlocking", &path))?;
        if self.lock.try_lock_exclusive().map_err(io_err("locking", &path))? {
            self.exclusive = true;
            self.recover_locked()?;
            Ok(true)
        } else {
            self.lock.lock_shared().map_err(io_err("locking", &path))?;
            Ok(false)
        }
    }

    fn recover_if_idle(&mut self) -> Result<()> {
        let ingest_busy = fs::read_dir(self.ingest_dir()).map(|mut d| d.next().is_some()).unwrap_or(false);
        if !ingest_busy
            && self.index.pending()?.is_empty()
            && self.index.doomed()?.is_empty()
            && !self.lazy_orphans()?
        {
            return Ok(());
        }
        let path = self.paths().lock_file();
        if self.lock.try_lock_exclusive().map_err(io_err("locking", &path))? {
            self.exclusive = true;
            self.recover_locked()?;
            // Go back to shared: this command is not a collector.
            self.lock.unlock().map_err(io_err("unlocking", &path))?;
            self.exclusive = false;
        }
        Ok(())
    }

    /// With the lock held exclusively no other ingest is in progress: every
    /// temp file not this process's is a leftover, and every pending blob either made it into
    /// `blobs/` (complete and verified, since only verified files are
    /// renamed there) or did not.
    /// Whether `lazy/` holds files of layers no partial image reads (left
    /// by a lazy pull that was refused or killed).
    fn lazy_orphans(&self) -> Result<bool> {
        let Ok(entries) = fs::read_dir(self.paths().lazy_dir()) else { return Ok(false) };
        let names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        if names.is_empty() {
            return Ok(false);
        }
        let used: Vec<String> = self.index.remote_layer_digests()?.iter().map(|d| d.hex().to_string()).collect();
        Ok(names.iter().any(|n| !used.iter().any(|u| u == n.split('.').next().unwrap_or_default())))
    }

    fn recover_locked(&mut self) -> Result<()> {
        self.remove_unused_lazy_caches()?;
        let dir = self.ingest_dir();
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                let p = e.path();
                // Partial downloads are kept so that the next pull resumes
                // them (a week at most), unless their blob is stored (the
                // pull that finished it took it through a link of its own).
                let name = e.file_name().to_string_lossy().into_owned();
                // This command's own staged files (an archive read from a
                // pipe, a build's layers) wait for it to make room and
                // commit them.
                if blobs::is_own_temp(&name) {
                    continue;
                }
                if let Some(hex) = name.strip_prefix("partial-") {
                    let stored = self.paths().blob_path_hex(hex).is_file();
                    let fresh = !stored
                        && e.metadata()
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| t.elapsed().ok())
                            .is_some_and(|age| age < std::time::Duration::from_secs(7 * 86400));
                    if fresh {
                        continue;
                    }
                }
                let r = if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    remove_tree(&p)
                } else {
                    fs::remove_file(&p)
                };
                if r.is_ok() {
                    self.recovery.temp_files += 1;
                }
            }
        }
        // Blobs a killed rmi or prune had deleted from the index but not yet
        // from the disk (unless a later ingest brought them back).
        let doomed = self.index.doomed()?;
        if !doomed.is_empty() {
            for d in &doomed {
                if !self.index.has_blob(d)? {
                    let _ = fs::remove_file(self.blob_path(d));
                }
            }
            sync_dir(&self.paths().blobs_dir())?;
            self.index.clear_doomed(&doomed)?;
        }
        let pending = self.index.pending()?;
        if !pending.is_empty() {
            let mut present = Vec::new();
            let mut absent = Vec::new();
            for d in pending {
                match fs::metadata(self.blob_path(&d)) {
                    Ok(m) => present.push((d, m.len())),
                    Err(_) => absent.push(d),
                }
            }
            self.recovery.recovered_blobs += present.len() as u64;
            self.index.resolve_pending(&StoredBlobs::found(present), &absent)?;
        }
        Ok(())
    }

    /// Deletes unreferenced blobs among `candidates` (all unreferenced blobs
    /// when `None`). Needs the exclusive lock. Returns (count, bytes).
    pub fn delete_unreferenced(&mut self, candidates: Option<&[Digest]>) -> Result<(u64, u64)> {
        assert!(self.exclusive, "blob deletion needs the exclusive lock");
        let unref = self.index.unreferenced_blobs()?;
        let chosen: Vec<(Digest, u64)> = match candidates {
            None => unref,
            Some(c) => unref.into_iter().filter(|(d, _)| c.contains(d)).collect(),
        };
        let digests: Vec<Digest> = chosen.iter().map(|(d, _)| d.clone()).collect();
        // Rows first, files second: a crash in between leaves a file without
        // a row, which fsck reports and prune removes, never a row without a file.
        let deleted = self.index.delete_unreferenced_blob_rows(&digests)?;
        crate::crashpoint("after_index_delete_before_unlink");
        let mut n = 0;
        let mut bytes = 0;
        for (d, size) in &chosen {
            if !deleted.contains(d) {
                continue;
            }
            let _ = fs::remove_file(self.layer_index_path(d));
            match fs::remove_file(self.blob_path(d)) {
                Ok(()) => {
                    n += 1;
                    bytes += size;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::Io { action: "removing blob", path: self.blob_path(d), source: e }),
            }
        }
        self.index.clear_doomed(&deleted)?;
        if n > 0 {
            sync_dir(&self.paths().blobs_dir())?;
            self.index.checkpoint();
        }
        self.remove_unused_lazy_caches()?;
        Ok((n, bytes))
    }

    /// Removes what lazy mounts fetched of layers no partial image reads
    /// from a registry any more (`lazy/<hex>` and `lazy/<hex>.ranges`).
    /// Needs the exclusive lock: a lazy pull in progress holds it shared.
    pub fn remove_unused_lazy_caches(&mut self) -> Result<()> {
        assert!(self.exclusive, "cache deletion needs the exclusive lock");
        let dir = self.paths().lazy_dir();
        let Ok(entries) = fs::read_dir(&dir) else { return Ok(()) };
        let used: Vec<String> = self.index.remote_layer_digests()?.iter().map(|d| d.hex().to_string()).collect();
        for e in entries.flatten() {
            // <hex>, <hex>.ranges, <hex>.index (and its temp files).
            let name = e.file_name().to_string_lossy().into_owned();
            let hex = name.split('.').next().unwrap_or_default();
            if !used.iter().any(|u| u == hex) {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(())
    }

    /// Removes damaged blobs (which `fsck --repair` found) that no image
    /// needs any more: rows first, recorded as doomed, files second. Needs
    /// the exclusive lock.
    pub fn remove_damaged_blobs(&mut self, digests: &[Digest]) -> Result<()> {
        assert!(self.exclusive, "blob deletion needs the exclusive lock");
        self.index.delete_unreferenced_blob_rows(digests)?;
        for d in digests {
            let _ = fs::remove_file(self.blob_path(d));
        }
        sync_dir(&self.paths().blobs_dir())?;
        self.index.clear_doomed(digests)?;
        Ok(())
    }

    /// Removes files in `blobs/sha256/` the index does not know (left by a
    /// crash, or put there by hand); returns those removed with their sizes.
    /// Needs the exclusive lock, under which no ingest is in progress.
    pub fn remove_unindexed_files(&mut self) -> Result<Vec<(String, u64)>> {
        assert!(self.exclusive, "blob deletion needs the exclusive lock");
        let mut removed = Vec::new();
        for (name, size) in self.unindexed_blob_files()? {
            if fs::remove_file(self.paths().blob_path_hex(&name)).is_ok() {
                removed.push((name, size));
            }
        }
        Ok(removed)
    }

    /// Files in `blobs/sha256/` with no index row: (digest or raw name, size).
    pub fn unindexed_blob_files(&self) -> Result<Vec<(String, u64)>> {
        let dir = self.paths().blobs_dir();
        let known: std::collections::HashSet<Digest> = self.index.blobs()?.into_iter().map(|(d, _)| d).collect();
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("reading", &dir))? {
            let e = e.map_err(io_err("reading", &dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            match Digest::from_hex(&name) {
                Ok(d) if known.contains(&d) => {}
                _ => out.push((name, size)),
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Creates a directory readable only by its owner (setuid files in layers
/// must not be reachable by other users; CVE-2021-41103 class), and fsyncs
/// its parent so the new entry survives a crash.
fn create_dir_private(p: &Path) -> Result<()> {
    let mut unsynced = Vec::new();
    make_dirs(p, &mut unsynced)?;
    sync_dirs(unsynced)
}

/// Creates directory `p` and its missing parents, readable only by their
/// owner (see [`create_dir_private`]); adds the parents of those created
/// to `unsynced`, for [`sync_dirs`].
fn make_dirs(p: &Path, unsynced: &mut Vec<PathBuf>) -> Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(p);
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        missing.push(d.to_path_buf());
        at = d.parent();
    }
    fs::DirBuilder::new().recursive(true).mode(0o700).create(p).map_err(|e| StoreError::Io {
        action: "creating store directory",
        path: p.to_path_buf(),
        source: e,
    })?;
    unsynced
        .extend(missing.iter().filter_map(|d| d.parent()).filter(|d| !d.as_os_str().is_empty()).map(Path::to_path_buf));
    Ok(())
}

/// fsyncs each directory of `dirs` once, deepest first, so that the
/// entries made in them survive a crash.
/// (A directory that cannot be opened for it, such as a parent the user
/// may not read, is left as it was.)
fn sync_dirs(mut dirs: Vec<PathBuf>) -> Result<()> {
    dirs.sort_by(|a, b| b.components().count().cmp(&a.components().count()).then_with(|| a.cmp(b)));
    dirs.dedup();
    for d in &dirs {
        let _ = sync_dir(d);
    }
    Ok(())
}

/// fsyncs a directory so that renames and unlinks in it are durable.
pub fn sync_dir(p: &Path) -> Result<()> {
    File::open(p).and_then(|f| f.sync_all()).map_err(io_err("syncing directory", p))
}

fn is_root() -> bool {
    crate::user::effective_uid() == Some(0)
}

/// Makes a file read-only for everyone (blobs are immutable).
pub(crate) fn make_read_only(p: &Path) -> io::Result<()> {
    fs::set_permissions(p, fs::Permissions::from_mode(0o444))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_tree_opens_up_directories_it_cannot_read() {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("img-remove-tree-{}", std::process::id()));
        fs::create_dir_all(d.join("a/locked/inner")).unwrap();
        fs::write(d.join("a/locked/inner/f"), b"x").unwrap();
        fs::set_permissions(d.join("a/locked/inner"), fs::Permissions::from_mode(0o000)).unwrap();
        fs::set_permissions(d.join("a/locked"), fs::Permissions::from_mode(0o000)).unwrap();
        remove_tree(&d).unwrap();
        assert!(!d.exists());
        remove_tree(&d).unwrap();
    }
}
