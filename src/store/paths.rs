//! The store's on-disk layout: every path under a store root is made here
//! and nowhere else. Other modules ask a [`StorePaths`] (from
//! `Store::paths`, or [`StorePaths::new`] where only the root is known, as
//! in a serving process) for the path of what they need.
//!
//! ```text
//! ROOT/img.db                      the SQLite index
//! ROOT/config.toml                 the store's settings (store::config)
//! ROOT/gc.lock                     shared by every command, exclusive for GC and recovery
//! ROOT/blobs/sha256/HEX            content-addressed blobs, complete and verified
//! ROOT/ingest/                     blobs being written (temp files), partial-HEX downloads
//! ROOT/indexes/HEX                 a stored layer's random-access index
//! ROOT/lazy/HEX, HEX.ranges        a lazy layer's range cache and its log
//! ROOT/lazy/HEX.index              a lazy layer's tree and chunk table
//! ROOT/mounts/ID12                 a mount's default mountpoint
//! ROOT/mounts/rw-KEY16/            a writable mount's lower, upper and work
//! ROOT/mounts/stats-KEY16.json     a mount server's counters
//! ROOT/mounts/serve-KEY16.log      a mount server's log
//! ROOT/mounts/bundle-KEY16.json    a runtime bundle's record
//! ROOT/uploads/ID                  img serve's uploads in progress
//! ```

use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// Where things are in a store; cheap to clone and share between threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePaths {
    root: PathBuf,
}

impl StorePaths {
    pub fn new(root: &Path) -> StorePaths {
        StorePaths { root: root.to_path_buf() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite index.
    pub fn db(&self) -> PathBuf {
        self.root.join("img.db")
    }

    /// The store's settings.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// The lock file every command holds shared.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("gc.lock")
    }

    pub fn blobs_parent(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// The directory of stored blobs, `blobs/sha256`.
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blobs_dir().join(d.hex())
    }

    /// The stored blob whose hex digest is `hex` (a name read from the
    /// blob directory or a `partial-` file).
    pub fn blob_path_hex(&self, hex: &str) -> PathBuf {
        self.blobs_dir().join(hex)
    }

    /// Where blobs are written before they are verified and renamed into
    /// the blob directory.
    pub fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// A download of blob `d` kept to be resumed.
    pub fn partial_download(&self, d: &Digest) -> PathBuf {
        self.ingest_dir().join(format!("partial-{}", d.hex()))
    }

    /// This process's own link to another process's finished download of
    /// blob `d` (a temp file of `ingest/`, collected as one if left behind).
    pub fn download_link(&self, d: &Digest) -> PathBuf {
        self.ingest_dir().join(format!("tmp-{}-{}", std::process::id(), d.hex()))
    }

    pub fn layer_indexes_dir(&self) -> PathBuf {
        self.root.join("indexes")
    }

    /// A stored layer's random-access index.
    pub fn layer_index(&self, d: &Digest) -> PathBuf {
        self.layer_indexes_dir().join(d.hex())
    }

    /// The directory of lazy layers' caches and indexes.
    pub fn lazy_dir(&self) -> PathBuf {
        self.root.join("lazy")
    }

    /// `lazy/<hex>` and `lazy/<hex>.ranges`: the range cache of lazy layer
    /// `d` and the log of the ranges it holds.
    pub fn lazy_cache(&self, d: &Digest) -> (PathBuf, PathBuf) {
        let dir = self.lazy_dir();
        (dir.join(d.hex()), dir.join(format!("{}.ranges", d.hex())))
    }

    /// `lazy/<hex>.index`: lazy layer `d`'s tree and chunk table.
    pub fn lazy_index(&self, d: &Digest) -> PathBuf {
        self.lazy_dir().join(format!("{}.index", d.hex()))
    }

    /// The directory of mounts' default mountpoints and state.
    pub fn mounts_dir(&self) -> PathBuf {
        self.root.join("mounts")
    }

    /// The default mountpoint of image `id`.
    pub fn default_mountpoint(&self, id: &Digest) -> PathBuf {
        self.mounts_dir().join(&id.hex()[..12])
    }

    /// A writable mount's state directory (lower, upper, work), by the key
    /// of its mountpoint.
    pub fn writable_state(&self, key: &Digest) -> PathBuf {
        self.mounts_dir().join(format!("rw-{}", &key.hex()[..16]))
    }

    /// A mount server's counters, by the key of its mountpoint.
    pub fn mount_stats(&self, key: &Digest) -> PathBuf {
        self.mounts_dir().join(format!("stats-{}.json", &key.hex()[..16]))
    }

    /// A mount server's log, by the key of its mountpoint.
    pub fn mount_log(&self, key: &Digest) -> PathBuf {
        self.mounts_dir().join(format!("serve-{}.log", &key.hex()[..16]))
    }

    /// A runtime bundle's record, by the key of its directory.
    pub fn bundle_record(&self, key: &Digest) -> PathBuf {
        self.mounts_dir().join(format!("bundle-{}.json", &key.hex()[..16]))
    }

    /// Proof that blobs already in the store are there: each file is
    /// looked up in `blobs/sha256/` (its size is the file's). A missing one
    /// is an error naming it. (For a process that holds no `Store`, as
    /// `img serve` between requests.)
    pub fn stored_blobs(&self, digests: &[Digest]) -> super::Result<super::StoredBlobs> {
        let mut out = Vec::with_capacity(digests.len());
        for d in digests {
            let path = self.blob_path(d);
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => out.push((d.clone(), m.len())),
                _ => return Err(super::StoreError::MissingBlob { digest: d.clone(), path }),
            }
        }
        Ok(super::StoredBlobs::found(out))
    }

    /// The directory of `img serve`'s uploads in progress.
    pub fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    /// Upload `id` of `img serve` (an id the server made).
    pub fn upload(&self, id: &str) -> PathBuf {
        self.uploads_dir().join(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_documented_one() {
        let p = StorePaths::new(Path::new("/s"));
        let d = Digest::of_bytes(b"x");
        let hex = d.hex().to_string();
        assert_eq!(p.db(), Path::new("/s/img.db"));
        assert_eq!(p.lock_file(), Path::new("/s/gc.lock"));
        assert_eq!(p.blob_path(&d), Path::new("/s/blobs/sha256").join(&hex));
        assert_eq!(p.blob_path_hex(&hex), p.blob_path(&d));
        assert_eq!(p.partial_download(&d), Path::new("/s/ingest").join(format!("partial-{hex}")));
        assert_eq!(p.layer_index(&d), Path::new("/s/indexes").join(&hex));
        assert_eq!(
            p.lazy_cache(&d),
            (Path::new("/s/lazy").join(&hex), Path::new("/s/lazy").join(format!("{hex}.ranges")))
        );
        assert_eq!(p.lazy_index(&d), Path::new("/s/lazy").join(format!("{hex}.index")));
        assert_eq!(p.default_mountpoint(&d), Path::new("/s/mounts").join(&hex[..12]));
        assert_eq!(p.writable_state(&d), Path::new("/s/mounts").join(format!("rw-{}", &hex[..16])));
        assert_eq!(p.mount_stats(&d), Path::new("/s/mounts").join(format!("stats-{}.json", &hex[..16])));
        assert_eq!(p.mount_log(&d), Path::new("/s/mounts").join(format!("serve-{}.log", &hex[..16])));
        assert_eq!(p.bundle_record(&d), Path::new("/s/mounts").join(format!("bundle-{}.json", &hex[..16])));
        assert_eq!(p.upload("u1"), Path::new("/s/uploads/u1"));
    }
}
