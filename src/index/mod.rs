//! The SQLite image index: the only module that speaks SQL.
//!
//! Every process opens its own connection (WAL, `synchronous=FULL`, foreign
//! keys on). Write transactions start with `BEGIN IMMEDIATE` so that they wait
//! for the write lock instead of failing with "database is locked" on upgrade;
//! a busy timeout plus a retry loop hides contention from users.

mod migrations;
mod serve;

pub use serve::{ManifestBody, ServeUser, ServedManifest, ServedTag};

use crate::digest::Digest;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The on-disk store format this build understands. Bumped only for changes
/// outside the SQL schema (the blob layout); the schema has `user_version`.
pub const STORE_FORMAT: u32 = 1;

/// `PRAGMA application_id`, so that the file is recognisably an img index.
const APPLICATION_ID: i32 = 0x696d_6731; // "img1"

/// How long one attempt waits for another writer before SQLite reports busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts of a write transaction before giving up with a clear message.
const BUSY_ATTEMPTS: u32 = 30;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("opening image index {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("image index {path} has schema version {found}, newer than this img understands ({known}); upgrade img")]
    TooNew { path: PathBuf, found: u32, known: u32 },
    #[error("image index {path} has store format {found}, which this img does not understand (it knows {known}); upgrade img")]
    UnknownFormat { path: PathBuf, found: String, known: u32 },
    #[error("{path} is not an img index (application id {found:#x})")]
    NotAnIndex { path: PathBuf, found: i32 },
    #[error("image index is busy: other img processes held the write lock for over {secs} s; try again")]
    Busy { secs: u64 },
    #[error("image index: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("image {0} is not known (it was removed)")]
    ImageGone(Digest),
    #[error("image index holds an invalid digest {0:?}; run img fsck")]
    BadDigest(String),
}

pub type Result<T> = std::result::Result<T, IndexError>;

/// A build step's cached result: the layer it made (digest, DiffID, size,
/// media type), if any, and the time of its history entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub key: String,
    pub layer: Option<(Digest, Digest, u64, String)>,
    pub created: String,
}

/// An image as the index records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    pub id: Digest,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    /// Seconds since the epoch, from the config's `created`.
    pub created: Option<i64>,
    /// The image's size as docker and podman show it: the sum of its
    /// layers' uncompressed sizes (a layer's stored size where that is not
    /// known, as for the layers of a partial image still in the registry).
    /// For embedded images, the size their manifest gives.
    pub size: u64,
    pub architecture: String,
    pub os: String,
    pub variant: String,
    pub author: String,
    /// The config's labels as a JSON object.
    pub labels: String,
    pub added_at: i64,
    /// "oci" for images whose blobs are in the store, "embedded" for iSulad embedded images.
    pub kind: String,
    /// Fully qualified `repository:tag` names, sorted.
    pub tags: Vec<String>,
}

/// What `insert_image` records.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub id: Digest,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub created: Option<i64>,
    pub size: u64,
    pub architecture: String,
    pub os: String,
    pub variant: String,
    pub author: String,
    pub labels: String,
    pub kind: String,
    pub config_digest: Digest,
    pub layer_digests: Vec<Digest>,
    pub external_layers: Vec<ExternalLayer>,
    /// Layers of a partial image (kind "partial") that are not stored:
    /// they get no blob reference, only a `remote_layers` row.
    pub remote_layers: Vec<RemoteLayer>,
    /// The uncompressed sizes of layer blobs, where measured, recorded
    /// for blobs that have none yet.
    pub layer_diff_sizes: Vec<(Digest, u64)>,
}

/// A layer of a partial image that is read from its registry on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLayer {
    /// Its place among the image's layers, bottom first.
    pub position: usize,
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    /// The digest of its table of contents, from the manifest.
    pub toc_digest: String,
    /// Where it is read from: `registry/repository`.
    pub source: String,
}

/// A mount made by `img mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRecord {
    pub mountpoint: String,
    pub image_id: Digest,
    pub pid: i64,
    pub writable: bool,
    pub created_at: i64,
    /// A writable mount's own directory (upper, work, lower); empty when read-only.
    pub state_dir: String,
    /// The fingerprint of the upper directory when it was last committed.
    pub committed: String,
    /// The name the mount was asked for (empty: an ID, or not known).
    pub name: String,
}

/// A layer kept outside the store (iSulad embedded images).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalLayer {
    pub media_type: String,
    pub path_in_host: String,
    pub path_in_container: String,
    pub digest: String,
    pub size: u64,
}

/// A name to point at an image.
#[derive(Debug, Clone)]
pub struct TagName {
    pub name: String,
    pub repository: String,
    pub tag: String,
}

/// What `delete_image` removed.
#[derive(Debug, Clone, Default)]
pub struct Deleted {
    pub untagged: Vec<String>,
    pub deleted: bool,
}

pub struct Index {
    conn: Connection,
    path: PathBuf,
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn digest_col(s: String) -> Result<Digest> {
    Digest::parse(&s).map_err(|_| IndexError::BadDigest(s))
}

impl Index {
    /// Opens (creating and migrating if needed) the index at `path`.
    pub fn open(path: &Path) -> Result<Index> {
        let open_err = |source| IndexError::Open { path: path.to_path_buf(), source };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // journal_mode is persistent; asking again is cheap and covers a
        // first open racing with another process.
        // On a filesystem without shared memory (some network or FUSE
        // filesystems) SQLite keeps the rollback journal, which still works.
        let _mode: String = with_busy_retry(|| conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)))?;
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA mmap_size=268435456;")
            .map_err(open_err)?;
        let mut index = Index { conn, path: path.to_path_buf() };
        index.migrate()?;
        Ok(index)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self) -> Result<()> {
        let known = migrations::MIGRATIONS.len() as u32;
        let version: u32 = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version == known {
            return self.check_format();
        }
        if version > known {
            return Err(IndexError::TooNew { path: self.path.clone(), found: version, known });
        }
        let path = self.path.clone();
        self.write(|tx| {
            // Re-read inside the write lock: another process may have migrated meanwhile.
            let version: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version > known {
                return Err(IndexError::TooNew { path: path.clone(), found: version, known });
            }
            if version == 0 {
                let app: i32 = tx.query_row("PRAGMA application_id", [], |r| r.get(0))?;
                let tables: i64 = tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
                if app != 0 && app != APPLICATION_ID || app == 0 && tables > 0 {
                    return Err(IndexError::NotAnIndex { path: path.clone(), found: app });
                }
                tx.execute_batch(&format!("PRAGMA application_id={APPLICATION_ID}"))?;
            }
            for (i, sql) in migrations::MIGRATIONS.iter().enumerate().skip(version as usize) {
                tx.execute_batch(sql)?;
                tx.execute_batch(&format!("PRAGMA user_version={}", i + 1))?;
            }
            tx.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('format', ?1)",
                params![STORE_FORMAT.to_string()],
            )?;
            Ok(())
        })?;
        self.check_format()
    }

    fn check_format(&self) -> Result<()> {
        let found: Option<String> =
            self.conn.query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| r.get(0)).optional()?;
        match found {
            Some(f) if f == STORE_FORMAT.to_string() => Ok(()),
            Some(f) => Err(IndexError::UnknownFormat { path: self.path.clone(), found: f, known: STORE_FORMAT }),
            None => {
                Err(IndexError::UnknownFormat { path: self.path.clone(), found: "(none)".into(), known: STORE_FORMAT })
            }
        }
    }

    /// Schema version (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<u32> {
        Ok(self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Runs `f` in an immediate (write) transaction, retrying while the
    /// database is busy.
    pub fn write<T>(&mut self, mut f: impl FnMut(&Transaction) -> Result<T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let res = (|| {
                let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let value = f(&tx)?;
                tx.commit()?;
                Ok(value)
            })();
            match res {
                Err(IndexError::Sql(e)) if is_busy(&e) => {
                    if attempt >= BUSY_ATTEMPTS {
                        return Err(IndexError::Busy { secs: BUSY_TIMEOUT.as_secs() * attempt as u64 });
                    }
                    std::thread::sleep(Duration::from_millis(10 * attempt as u64));
                }
                other => return other,
            }
        }
    }

    // ---- blobs -------------------------------------------------------------

    /// Records digests an ingest is about to move into `blobs/`.
    pub fn add_pending(&mut self, digests: &[Digest]) -> Result<()> {
        self.write(|tx| {
            let mut st = tx.prepare_cached("INSERT OR IGNORE INTO pending_blobs(digest, added_at) VALUES (?1, ?2)")?;
            for d in digests {
                st.execute(params![d.as_str(), now()])?;
            }
            Ok(())
        })
    }

    pub fn pending(&self) -> Result<Vec<Digest>> {
        let mut st = self.conn.prepare_cached("SELECT digest FROM pending_blobs")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| digest_col(r?)).collect()
    }

    /// Turns pending digests whose file exists into blob rows, and forgets
    /// the rest. `sizes` gives the size of each file that exists.
    pub fn resolve_pending(&mut self, present: &[(Digest, u64)], absent: &[Digest]) -> Result<()> {
        self.write(|tx| {
            for (d, size) in present {
                tx.execute(
                    "INSERT OR IGNORE INTO blobs(digest, size, added_at) VALUES (?1, ?2, ?3)",
                    params![d.as_str(), *size as i64, now()],
                )?;
                tx.execute("DELETE FROM pending_blobs WHERE digest = ?1", params![d.as_str()])?;
            }
            for d in absent {
                tx.execute("DELETE FROM pending_blobs WHERE digest = ?1", params![d.as_str()])?;
            }
            Ok(())
        })
    }

    /// The cached result of build step `key`, if its layer (if any) is stored.
    pub fn cache_get(&self, key: &str) -> Result<Option<CacheEntry>> {
        let mut st = self.conn.prepare_cached(
            "SELECT c.layer, c.diff_id, c.size, c.media_type, c.created FROM build_cache c
             WHERE c.key = ?1 AND (c.layer IS NULL OR EXISTS (SELECT 1 FROM blobs b WHERE b.digest = c.layer))",
        )?;
        let mut rows = st.query(params![key])?;
        let Some(r) = rows.next()? else { return Ok(None) };
        let layer = match r.get::<_, Option<String>>(0)? {
            None => None,
            Some(d) => {
                let diff: String = r.get(1)?;
                let size: i64 = r.get(2)?;
                let mt: String = r.get(3)?;
                Some((digest_col(d)?, digest_col(diff)?, size.max(0) as u64, mt))
            }
        };
        Ok(Some(CacheEntry { key: key.to_string(), layer, created: r.get(4)? }))
    }

    /// Records build steps' results (replacing older ones of the same keys).
    pub fn cache_put(&mut self, entries: &[CacheEntry]) -> Result<()> {
        self.write(|tx| {
            let mut st = tx.prepare_cached(
                "INSERT OR REPLACE INTO build_cache(key, layer, diff_id, size, media_type, created, used_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for e in entries {
                let (l, d, s, m) = match &e.layer {
                    Some((l, d, s, m)) => (Some(l.as_str()), Some(d.as_str()), Some(*s as i64), Some(m.as_str())),
                    None => (None, None, None, None),
                };
                st.execute(params![e.key, l, d, s, m, e.created, now()])?;
            }
            Ok(())
        })
    }

    /// Forgets the whole build cache; returns how many steps it held.
    pub fn cache_clear(&mut self) -> Result<usize> {
        self.write(|tx| Ok(tx.execute("DELETE FROM build_cache", [])?))
    }

    /// Manifest list `name`: its media type and JSON.
    pub fn manifest_list(&self, name: &str) -> Result<Option<(String, Vec<u8>)>> {
        let mut st = self.conn.prepare_cached("SELECT media_type, body FROM manifest_lists WHERE name = ?1")?;
        let mut rows = st.query(params![name])?;
        match rows.next()? {
            Some(r) => Ok(Some((r.get(0)?, r.get(1)?))),
            None => Ok(None),
        }
    }

    /// Stores manifest list `name` (replacing one of that name).
    pub fn put_manifest_list(&mut self, name: &str, media_type: &str, body: &[u8]) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO manifest_lists(name, media_type, body, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET media_type = excluded.media_type, body = excluded.body,
                 updated_at = excluded.updated_at",
                params![name, media_type, body, now()],
            )?;
            Ok(())
        })
    }

    /// Where the members of list `name` that are not in the store came
    /// from: digest to `REGISTRY/REPOSITORY`.
    pub fn manifest_list_sources(&self, name: &str) -> Result<std::collections::BTreeMap<String, String>> {
        let mut st = self.conn.prepare_cached("SELECT sources FROM manifest_lists WHERE name = ?1")?;
        let text: Option<String> = st.query_row(params![name], |r| r.get(0)).optional()?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default())
    }

    /// Records where member `digest` of list `name` came from.
    pub fn add_manifest_list_source(&mut self, name: &str, digest: &str, source: &str) -> Result<()> {
        let mut all = self.manifest_list_sources(name)?;
        all.insert(digest.to_string(), source.to_string());
        let text = serde_json::to_string(&all).unwrap_or_else(|_| "{}".into());
        self.write(|tx| {
            tx.execute("UPDATE manifest_lists SET sources = ?2 WHERE name = ?1", params![name, text])?;
            Ok(())
        })
    }

    /// Removes manifest list `name`; false if there was none.
    pub fn remove_manifest_list(&mut self, name: &str) -> Result<bool> {
        self.write(|tx| Ok(tx.execute("DELETE FROM manifest_lists WHERE name = ?1", params![name])? > 0))
    }

    /// The names of all manifest lists.
    pub fn manifest_list_names(&self) -> Result<Vec<String>> {
        let mut st = self.conn.prepare_cached("SELECT name FROM manifest_lists ORDER BY name")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn has_blob(&self, d: &Digest) -> Result<bool> {
        let mut st = self.conn.prepare_cached("SELECT 1 FROM blobs WHERE digest = ?1")?;
        Ok(st.exists(params![d.as_str()])?)
    }

    /// Every blob row with its size.
    pub fn blobs(&self) -> Result<Vec<(Digest, u64)>> {
        let mut st = self.conn.prepare_cached("SELECT digest, size FROM blobs ORDER BY digest")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        rows.map(|r| {
            let (d, s) = r?;
            Ok((digest_col(d)?, s as u64))
        })
        .collect()
    }

    /// Blob rows no image and nothing `img serve` serves refers to.
    pub fn unreferenced_blobs(&self) -> Result<Vec<(Digest, u64)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT b.digest, b.size FROM blobs b
             WHERE NOT EXISTS (SELECT 1 FROM image_blobs ib WHERE ib.digest = b.digest)
               AND NOT EXISTS (SELECT 1 FROM served_manifests m WHERE m.digest = b.digest)
               AND NOT EXISTS (SELECT 1 FROM served_blob_refs r WHERE r.digest = b.digest)
               AND NOT EXISTS (SELECT 1 FROM served_uploads u WHERE u.digest = b.digest)
             ORDER BY b.digest",
        )?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        rows.map(|r| {
            let (d, s) = r?;
            Ok((digest_col(d)?, s as u64))
        })
        .collect()
    }

    /// Deletes blob rows that are still unreferenced; returns those deleted.
    /// The caller unlinks their files afterwards (row first, file second).
    pub fn delete_unreferenced_blob_rows(&mut self, candidates: &[Digest]) -> Result<Vec<Digest>> {
        self.write(|tx| {
            let mut out = Vec::new();
            let mut st = tx.prepare_cached(
                "DELETE FROM blobs WHERE digest = ?1
                 AND NOT EXISTS (SELECT 1 FROM image_blobs WHERE digest = ?1)
                 AND NOT EXISTS (SELECT 1 FROM served_manifests WHERE digest = ?1)
                 AND NOT EXISTS (SELECT 1 FROM served_blob_refs WHERE digest = ?1)
                 AND NOT EXISTS (SELECT 1 FROM served_uploads WHERE digest = ?1)",
            )?;
            let mut doom = tx.prepare_cached("INSERT OR IGNORE INTO doomed_blobs(digest, added_at) VALUES (?1, ?2)")?;
            for d in candidates {
                if st.execute(params![d.as_str()])? > 0 {
                    doom.execute(params![d.as_str(), now()])?;
                    out.push(d.clone());
                }
            }
            Ok(out)
        })
    }

    /// Blobs whose rows were deleted but whose files may still exist.
    pub fn doomed(&self) -> Result<Vec<Digest>> {
        let mut st = self.conn.prepare_cached("SELECT digest FROM doomed_blobs")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| digest_col(r?)).collect()
    }

    /// Forgets doomed blobs once their files are gone.
    pub fn clear_doomed(&mut self, digests: &[Digest]) -> Result<()> {
        if digests.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut st = tx.prepare_cached("DELETE FROM doomed_blobs WHERE digest = ?1")?;
            for d in digests {
                st.execute(params![d.as_str()])?;
            }
            Ok(())
        })
    }

    /// Adds rows for blob files that exist on disk but are not indexed.
    pub fn add_blob_rows(&mut self, blobs: &[(Digest, u64)]) -> Result<()> {
        self.write(|tx| {
            let mut st =
                tx.prepare_cached("INSERT OR IGNORE INTO blobs(digest, size, added_at) VALUES (?1, ?2, ?3)")?;
            for (d, s) in blobs {
                st.execute(params![d.as_str(), *s as i64, now()])?;
            }
            Ok(())
        })
    }

    /// References whose blob row is missing (a broken index).
    pub fn dangling_references(&self) -> Result<Vec<(Digest, String, Digest)>> {
        let mut st = self.conn.prepare(
            "SELECT ib.image_id, ib.role, ib.digest FROM image_blobs ib
             WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = ib.digest)",
        )?;
        let rows =
            st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
        rows.map(|r| {
            let (i, role, d) = r?;
            Ok((digest_col(i)?, role, digest_col(d)?))
        })
        .collect()
    }

    /// `PRAGMA integrity_check` and `foreign_key_check` problems, if any.
    pub fn integrity_problems(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut st = self.conn.prepare("PRAGMA integrity_check")?;
        for r in st.query_map([], |r| r.get::<_, String>(0))? {
            let r = r?;
            if r != "ok" {
                out.push(format!("integrity: {r}"));
            }
        }
        let mut st = self.conn.prepare("PRAGMA foreign_key_check")?;
        for r in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (table, rowid) = r?;
            out.push(format!("foreign key violation in {table} row {rowid}"));
        }
        Ok(out)
    }

    // ---- images ------------------------------------------------------------

    /// Inserts an image, its blob references and tags in one transaction.
    /// Tags already pointing elsewhere move to this image; returns, for each
    /// moved tag, the image it left.
    pub fn insert_image(
        &mut self,
        img: &NewImage,
        blobs: &[(Digest, u64)],
        tags: &[TagName],
    ) -> Result<Vec<(String, Digest)>> {
        self.write(|tx| insert_image_tx(tx, img, blobs, tags))
    }

    /// Points `name` at `image_id`; returns the image it pointed at before, if another.
    pub fn tag(&mut self, name: &TagName, image_id: &Digest) -> Result<Option<Digest>> {
        self.write(|tx| {
            let exists = tx.prepare_cached("SELECT 1 FROM images WHERE id = ?1")?.exists(params![image_id.as_str()])?;
            if !exists {
                return Err(IndexError::ImageGone(image_id.clone()));
            }
            tag_in_tx(tx, name, image_id)
        })
    }

    /// Points every name at `image_id` if the image still exists, in one
    /// transaction; returns false (changing nothing) if it does not.
    pub fn tag_existing(&mut self, names: &[TagName], image_id: &Digest) -> Result<bool> {
        self.write(|tx| {
            let exists = tx.prepare_cached("SELECT 1 FROM images WHERE id = ?1")?.exists(params![image_id.as_str()])?;
            if !exists {
                return Ok(false);
            }
            for n in names {
                tag_in_tx(tx, n, image_id)?;
            }
            Ok(true)
        })
    }

    /// Removes one tag; returns whether it existed.
    pub fn untag(&mut self, name: &str) -> Result<bool> {
        self.write(|tx| Ok(tx.execute("DELETE FROM tags WHERE name = ?1", params![name])? > 0))
    }

    /// Deletes an image row (and with it its tags and blob references).
    pub fn delete_image(&mut self, id: &Digest) -> Result<Deleted> {
        self.write(|tx| {
            let mut untagged = Vec::new();
            {
                let mut st = tx.prepare_cached("SELECT name FROM tags WHERE image_id = ?1 ORDER BY name")?;
                for r in st.query_map(params![id.as_str()], |r| r.get::<_, String>(0))? {
                    untagged.push(r?);
                }
            }
            let deleted = tx.execute("DELETE FROM images WHERE id = ?1", params![id.as_str()])? > 0;
            Ok(Deleted { untagged, deleted })
        })
    }

    /// Records a mount (replacing a stale row for the same mountpoint).
    pub fn add_mount(&mut self, m: &MountRecord) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO mounts(mountpoint, image_id, pid, writable, created_at, state_dir, committed, name) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![m.mountpoint, m.image_id.as_str(), m.pid, m.writable as i64, m.created_at, m.state_dir, m.committed, m.name],
            )?;
            Ok(())
        })
    }

    /// Forgets the mount at `mountpoint` if process `pid` serves it.
    pub fn remove_mount_of(&mut self, mountpoint: &str, pid: i64) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute("DELETE FROM mounts WHERE mountpoint = ?1 AND pid = ?2", params![mountpoint, pid])? > 0)
        })
    }

    /// Records the fingerprint of a writable mount's upper directory at commit.
    pub fn set_mount_committed(&mut self, mountpoint: &str, fingerprint: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute("UPDATE mounts SET committed = ?2 WHERE mountpoint = ?1", params![mountpoint, fingerprint])?;
            Ok(())
        })
    }

    pub fn remove_mount(&mut self, mountpoint: &str) -> Result<bool> {
        self.write(|tx| Ok(tx.execute("DELETE FROM mounts WHERE mountpoint = ?1", params![mountpoint])? > 0))
    }

    pub fn mounts(&self) -> Result<Vec<MountRecord>> {
        let mut st = self.conn.prepare_cached(
            "SELECT mountpoint, image_id, pid, writable, created_at, state_dir, committed, name FROM mounts ORDER BY created_at, mountpoint",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mountpoint, id, pid, writable, created_at, state_dir, committed, name) = row?;
            out.push(MountRecord {
                mountpoint,
                image_id: digest_col(id)?,
                pid,
                writable: writable != 0,
                created_at,
                state_dir,
                committed,
                name,
            });
        }
        Ok(out)
    }

    /// The image a tag points at.
    pub fn image_for_tag(&self, name: &str) -> Result<Option<Digest>> {
        let mut st = self.conn.prepare_cached("SELECT image_id FROM tags WHERE name = ?1")?;
        let id: Option<String> = st.query_row(params![name], |r| r.get(0)).optional()?;
        id.map(digest_col).transpose()
    }

    /// Image IDs starting with `prefix` (hex, without "sha256:").
    pub fn ids_with_prefix(&self, prefix: &str) -> Result<Vec<Digest>> {
        let mut st =
            self.conn.prepare_cached("SELECT id FROM images WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT 3")?;
        let lo = format!("sha256:{prefix}");
        let hi = format!("sha256:{prefix}\u{10ffff}");
        let rows = st.query_map(params![lo, hi], |r| r.get::<_, String>(0))?;
        rows.map(|r| digest_col(r?)).collect()
    }

    pub fn image(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        let mut all = self.query_images(Some(id), true)?;
        Ok(all.pop())
    }

    /// Every image with its tags, newest first.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        self.query_images(None, true)
    }

    /// Every image with its tags, newest first, without the descriptive
    /// columns (media type, platform, author, kind are left empty): what a
    /// listing needs, at a fraction of the allocations.
    pub fn images_brief(&self) -> Result<Vec<ImageRecord>> {
        self.query_images(None, false)
    }

    fn query_images(&self, only: Option<&Digest>, full: bool) -> Result<Vec<ImageRecord>> {
        // Two flat queries joined here: a correlated, ordered subquery per
        // image costs a temp b-tree each and dominated `img images`.
        let sql = format!(
            "SELECT id, manifest_digest, {}, created, size, {}, labels, added_at
             FROM images {} ORDER BY created DESC, added_at DESC, id",
            if full { "manifest_media_type" } else { "''" },
            if full { "architecture, os, variant, author, kind" } else { "'', '', '', '', kind" },
            if only.is_some() { "WHERE id = ?1" } else { "" }
        );
        let mut tags: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
        {
            let tag_sql = if only.is_some() {
                "SELECT image_id, name FROM tags WHERE image_id = ?1 ORDER BY name"
            } else {
                "SELECT image_id, name FROM tags ORDER BY name"
            };
            let mut st = self.conn.prepare_cached(tag_sql)?;
            let map = |r: &rusqlite::Row| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?));
            let rows: Vec<(String, String)> = match only {
                Some(id) => st.query_map(params![id.as_str()], map)?.collect::<rusqlite::Result<_>>()?,
                None => st.query_map([], map)?.collect::<rusqlite::Result<_>>()?,
            };
            for (id, name) in rows {
                tags.entry(id).or_default().push(name);
            }
        }
        let totals = self.layer_totals(only)?;
        let mut st = self.conn.prepare_cached(&sql)?;
        let bad = |i: usize, s: String| {
            rusqlite::Error::FromSqlConversionFailure(
                i,
                rusqlite::types::Type::Text,
                Box::new(IndexError::BadDigest(s)),
            )
        };
        let map = |r: &rusqlite::Row| {
            let id: String = r.get(0)?;
            let tags = tags.remove(&id).unwrap_or_default();
            let md: String = r.get(1)?;
            let kind: String = r.get(9)?;
            let size = if kind == "embedded" {
                r.get::<_, i64>(4)?.max(0) as u64
            } else {
                totals.get(&id).copied().unwrap_or(0)
            };
            Ok(ImageRecord {
                id: Digest::parse(&id).map_err(|_| bad(0, id.clone()))?,
                manifest_digest: Digest::parse(&md).map_err(|_| bad(1, md.clone()))?,
                manifest_media_type: r.get(2)?,
                created: r.get(3)?,
                size,
                architecture: r.get(5)?,
                os: r.get(6)?,
                variant: r.get(7)?,
                author: r.get(8)?,
                kind,
                labels: r.get(10)?,
                added_at: r.get(11)?,
                tags,
            })
        };
        let mut out = Vec::with_capacity(1024);
        match only {
            Some(id) => {
                for r in st.query_map(params![id.as_str()], map)? {
                    out.push(r?);
                }
            }
            None => {
                for r in st.query_map([], map)? {
                    out.push(r?);
                }
            }
        }
        Ok(out)
    }

    /// The uncompressed size recorded for a layer blob, if any.
    pub fn diff_size(&self, d: &Digest) -> Result<Option<u64>> {
        let mut st = self.conn.prepare_cached("SELECT diff_size FROM blobs WHERE digest = ?1")?;
        let v: Option<Option<i64>> = st.query_row(params![d.as_str()], |r| r.get(0)).optional()?;
        Ok(v.flatten().map(|n| n.max(0) as u64))
    }

    /// Layer blobs of stored images whose uncompressed size is not recorded
    /// (the layers of embedded images, squashfs files whose size is their
    /// manifest's, are not counted).
    pub fn unmeasured_layers(&self) -> Result<Vec<Digest>> {
        let mut st = self.conn.prepare_cached(
            "SELECT DISTINCT b.digest FROM blobs b JOIN image_blobs ib ON ib.digest = b.digest
             JOIN images i ON i.id = ib.image_id
             WHERE ib.role = 'layer' AND i.kind != 'embedded' AND b.diff_size IS NULL ORDER BY b.digest",
        )?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| digest_col(r?)).collect()
    }

    /// Records the uncompressed sizes of layer blobs that have none.
    pub fn set_diff_sizes(&mut self, sizes: &[(Digest, u64)]) -> Result<()> {
        self.write(|tx| set_diff_sizes_tx(tx, sizes))
    }

    /// Each image's layer total: uncompressed sizes where known, stored
    /// sizes elsewhere, and for a partial image its layers in the registry
    /// at their compressed size. Flat grouped queries, like `query_images`.
    fn layer_totals(&self, only: Option<&Digest>) -> Result<std::collections::HashMap<String, u64>> {
        let mut totals: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        let filter = if only.is_some() { "AND ib.image_id = ?1" } else { "" };
        let stored = format!(
            "SELECT ib.image_id, sum(coalesce(b.diff_size, b.size)) FROM image_blobs ib
             JOIN blobs b ON b.digest = ib.digest WHERE ib.role = 'layer' {filter} GROUP BY ib.image_id"
        );
        let remote = format!(
            "SELECT image_id, sum(size) FROM remote_layers {} GROUP BY image_id",
            if only.is_some() { "WHERE image_id = ?1" } else { "" }
        );
        for sql in [stored, remote] {
            let mut st = self.conn.prepare_cached(&sql)?;
            let map = |r: &rusqlite::Row| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?));
            let rows: Vec<(String, i64)> = match only {
                Some(id) => st.query_map(params![id.as_str()], map)?.collect::<rusqlite::Result<_>>()?,
                None => st.query_map([], map)?.collect::<rusqlite::Result<_>>()?,
            };
            for (id, n) in rows {
                *totals.entry(id).or_default() += n.max(0) as u64;
            }
        }
        Ok(totals)
    }

    /// The blobs of an image by role, in order: (role, position, digest).
    pub fn image_blobs(&self, id: &Digest) -> Result<Vec<(String, Digest)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT role, digest FROM image_blobs WHERE image_id = ?1
             ORDER BY CASE role WHEN 'manifest' THEN 0 WHEN 'config' THEN 1 ELSE 2 END, position",
        )?;
        let rows = st.query_map(params![id.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|r| {
            let (role, d) = r?;
            Ok((role, digest_col(d)?))
        })
        .collect()
    }

    pub fn external_layers(&self, id: &Digest) -> Result<Vec<ExternalLayer>> {
        let mut st = self.conn.prepare_cached(
            "SELECT media_type, path_in_host, path_in_container, digest, size
             FROM external_layers WHERE image_id = ?1 ORDER BY position",
        )?;
        let rows = st.query_map(params![id.as_str()], |r| {
            Ok(ExternalLayer {
                media_type: r.get(0)?,
                path_in_host: r.get(1)?,
                path_in_container: r.get(2)?,
                digest: r.get(3)?,
                size: r.get::<_, i64>(4)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The layers of partial image `id` that are not stored, bottom first.
    pub fn remote_layers(&self, id: &Digest) -> Result<Vec<RemoteLayer>> {
        let mut st = self.conn.prepare_cached(
            "SELECT position, digest, size, media_type, toc_digest, source
             FROM remote_layers WHERE image_id = ?1 ORDER BY position",
        )?;
        let rows = st.query_map(params![id.as_str()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        rows.map(|r| {
            let (position, d, size, media_type, toc_digest, source) = r?;
            Ok(RemoteLayer {
                position: position as usize,
                digest: digest_col(d)?,
                size: size as u64,
                media_type,
                toc_digest,
                source,
            })
        })
        .collect()
    }

    /// Every digest some partial image still reads from a registry.
    pub fn remote_layer_digests(&self) -> Result<Vec<Digest>> {
        let mut st = self.conn.prepare_cached("SELECT DISTINCT digest FROM remote_layers ORDER BY digest")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| digest_col(r?)).collect()
    }

    /// How many images use each blob of `id` (for "shared size").
    pub fn blob_use_counts(&self) -> Result<Vec<(Digest, u64, u64)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT b.digest, b.size, (SELECT count(DISTINCT image_id) FROM image_blobs ib WHERE ib.digest = b.digest)
             FROM blobs b",
        )?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
        rows.map(|r| {
            let (d, s, n) = r?;
            Ok((digest_col(d)?, s as u64, n as u64))
        })
        .collect()
    }

    /// Counts for `img info`: (images, tags, blobs, blob bytes).
    pub fn counts(&self) -> Result<(u64, u64, u64, u64)> {
        Ok(self.conn.query_row(
            "SELECT (SELECT count(*) FROM images), (SELECT count(*) FROM tags),
                    (SELECT count(*) FROM blobs), (SELECT coalesce(sum(size), 0) FROM blobs)",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, i64>(3)? as u64,
                ))
            },
        )?)
    }

    /// Checkpoints the WAL into the main file (after bulk deletes).
    pub fn checkpoint(&self) {
        let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
    }
}

/// Rows for blobs now in `blobs/`, no longer pending.
fn set_diff_sizes_tx(tx: &Transaction, sizes: &[(Digest, u64)]) -> Result<()> {
    let mut st = tx.prepare_cached("UPDATE blobs SET diff_size = ?2 WHERE digest = ?1 AND diff_size IS NULL")?;
    for (d, n) in sizes {
        st.execute(params![d.as_str(), *n as i64])?;
    }
    Ok(())
}

fn add_blob_rows_tx(tx: &Transaction, blobs: &[(Digest, u64)]) -> Result<()> {
    let mut st = tx.prepare_cached("INSERT OR IGNORE INTO blobs(digest, size, added_at) VALUES (?1, ?2, ?3)")?;
    for (d, s) in blobs {
        st.execute(params![d.as_str(), *s as i64, now()])?;
    }
    drop(st);
    let mut st = tx.prepare_cached("DELETE FROM pending_blobs WHERE digest = ?1")?;
    for (d, _) in blobs {
        st.execute(params![d.as_str()])?;
    }
    Ok(())
}

/// `Index::insert_image` inside the caller's transaction.
fn insert_image_tx(
    tx: &Transaction,
    img: &NewImage,
    blobs: &[(Digest, u64)],
    tags: &[TagName],
) -> Result<Vec<(String, Digest)>> {
    add_blob_rows_tx(tx, blobs)?;
    set_diff_sizes_tx(tx, &img.layer_diff_sizes)?;
    let exists: bool = tx.prepare_cached("SELECT 1 FROM images WHERE id = ?1")?.exists(params![img.id.as_str()])?;
    if !exists {
        tx.execute(
            "INSERT INTO images(id, manifest_digest, manifest_media_type, created, size,
                architecture, os, variant, author, labels, added_at, kind)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                img.id.as_str(),
                img.manifest_digest.as_str(),
                img.manifest_media_type,
                img.created,
                img.size as i64,
                img.architecture,
                img.os,
                img.variant,
                img.author,
                img.labels,
                now(),
                img.kind,
            ],
        )?;
        let mut st =
            tx.prepare_cached("INSERT INTO image_blobs(image_id, role, position, digest) VALUES (?1, ?2, ?3, ?4)")?;
        if img.kind != "embedded" {
            st.execute(params![img.id.as_str(), "manifest", 0, img.manifest_digest.as_str()])?;
        }
        st.execute(params![img.id.as_str(), "config", 0, img.config_digest.as_str()])?;
        for (i, d) in img.layer_digests.iter().enumerate() {
            if img.remote_layers.iter().any(|r| r.position == i) {
                continue;
            }
            st.execute(params![img.id.as_str(), "layer", i as i64, d.as_str()])?;
        }
        drop(st);
        let mut st = tx.prepare_cached(
            "INSERT INTO remote_layers(image_id, position, digest, size, media_type, toc_digest, source)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for r in &img.remote_layers {
            st.execute(params![
                img.id.as_str(),
                r.position as i64,
                r.digest.as_str(),
                r.size as i64,
                r.media_type,
                r.toc_digest,
                r.source
            ])?;
        }
        drop(st);
        let mut st = tx.prepare_cached(
            "INSERT INTO external_layers(image_id, position, media_type, path_in_host,
                path_in_container, digest, size) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for (i, l) in img.external_layers.iter().enumerate() {
            st.execute(params![
                img.id.as_str(),
                i as i64,
                l.media_type,
                l.path_in_host,
                l.path_in_container,
                l.digest,
                l.size as i64
            ])?;
        }
    } else if img.remote_layers.is_empty() && img.kind != "embedded" {
        // A partial image is completed: its layers are stored now.
        let partial: bool = tx
            .prepare_cached("SELECT 1 FROM images WHERE id = ?1 AND kind = 'partial'")?
            .exists(params![img.id.as_str()])?;
        if partial {
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO image_blobs(image_id, role, position, digest) VALUES (?1, 'layer', ?2, ?3)",
            )?;
            for (i, d) in img.layer_digests.iter().enumerate() {
                st.execute(params![img.id.as_str(), i as i64, d.as_str()])?;
            }
            drop(st);
            tx.execute("DELETE FROM remote_layers WHERE image_id = ?1", params![img.id.as_str()])?;
            tx.execute(
                "UPDATE images SET kind = ?2, size = ?3 WHERE id = ?1",
                params![img.id.as_str(), img.kind, img.size as i64],
            )?;
        }
    }
    let mut moved = Vec::new();
    for t in tags {
        if let Some(prev) = tag_in_tx(tx, t, &img.id)? {
            moved.push((t.name.clone(), prev));
        }
    }
    Ok(moved)
}

fn tag_in_tx(tx: &Transaction, name: &TagName, image_id: &Digest) -> Result<Option<Digest>> {
    let prev: Option<String> = tx
        .prepare_cached("SELECT image_id FROM tags WHERE name = ?1")?
        .query_row(params![name.name], |r| r.get(0))
        .optional()?;
    tx.execute(
        "INSERT INTO tags(name, repository, tag, image_id, tagged_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id, tagged_at = excluded.tagged_at",
        params![name.name, name.repository, name.tag, image_id.as_str(), now()],
    )?;
    match prev {
        Some(p) if p != image_id.as_str() => Ok(Some(digest_col(p)?)),
        _ => Ok(None),
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::DatabaseBusy || f.code == rusqlite::ErrorCode::DatabaseLocked
    )
}

fn with_busy_retry<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> Result<T> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match f() {
            Err(e) if is_busy(&e) && attempt < BUSY_ATTEMPTS => {
                std::thread::sleep(Duration::from_millis(10 * attempt as u64))
            }
            Err(e) if is_busy(&e) => return Err(IndexError::Busy { secs: BUSY_TIMEOUT.as_secs() }),
            other => return Ok(other?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> crate::testdir::TestDir {
        crate::testdir::TestDir::new(&format!("index-{name}"))
    }

    fn d(n: u8) -> Digest {
        Digest::of_bytes(&[n])
    }

    fn new_image(config: u8, layers: &[u8]) -> NewImage {
        NewImage {
            id: d(config),
            manifest_digest: d(config + 100),
            manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            created: Some(1_700_000_000),
            size: 10,
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: String::new(),
            author: String::new(),
            labels: "{}".into(),
            kind: "oci".into(),
            config_digest: d(config),
            layer_digests: layers.iter().map(|l| d(*l)).collect(),
            external_layers: vec![],
            remote_layers: vec![],
            layer_diff_sizes: vec![],
        }
    }

    fn blobs_of(img: &NewImage) -> Vec<(Digest, u64)> {
        let mut v = vec![(img.manifest_digest.clone(), 1), (img.config_digest.clone(), 1)];
        v.extend(img.layer_digests.iter().map(|l| (l.clone(), 1)));
        v
    }

    fn tag(name: &str) -> TagName {
        let (repo, t) = name.rsplit_once(':').unwrap();
        TagName { name: name.into(), repository: repo.into(), tag: t.into() }
    }

    #[test]
    fn migrations_are_applied_once_and_recorded() {
        let dir = temp_dir("migrate");
        let p = dir.join("img.db");
        let ix = Index::open(&p).unwrap();
        assert_eq!(ix.schema_version().unwrap(), migrations::MIGRATIONS.len() as u32);
        drop(ix);
        let ix = Index::open(&p).unwrap();
        assert_eq!(ix.schema_version().unwrap(), migrations::MIGRATIONS.len() as u32);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = temp_dir("newer");
        let p = dir.join("img.db");
        drop(Index::open(&p).unwrap());
        let c = Connection::open(&p).unwrap();
        c.execute_batch("PRAGMA user_version=999").unwrap();
        drop(c);
        let err = Index::open(&p).err().unwrap();
        assert!(matches!(err, IndexError::TooNew { found: 999, .. }), "{err}");
    }

    #[test]
    fn unknown_store_format_is_refused() {
        let dir = temp_dir("format");
        let p = dir.join("img.db");
        drop(Index::open(&p).unwrap());
        let c = Connection::open(&p).unwrap();
        c.execute("UPDATE meta SET value = '7' WHERE key = 'format'", []).unwrap();
        drop(c);
        let err = Index::open(&p).err().unwrap();
        assert!(err.to_string().contains("store format 7"), "{err}");
    }

    #[test]
    fn foreign_database_is_refused() {
        let dir = temp_dir("foreign");
        let p = dir.join("img.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch("CREATE TABLE x(a)").unwrap();
        drop(c);
        assert!(matches!(Index::open(&p).err().unwrap(), IndexError::NotAnIndex { .. }));
    }

    #[test]
    fn image_size_is_its_layers_uncompressed_size() {
        let dir = temp_dir("sizes");
        let mut ix = Index::open(&dir.join("img.db")).unwrap();
        // Layer 20 appears twice; 21 is not measured: its stored size (1) counts.
        let mut a = new_image(1, &[20, 21, 20]);
        a.layer_diff_sizes = vec![(d(20), 100)];
        ix.insert_image(&a, &blobs_of(&a), &[tag("docker.io/library/a:1")]).unwrap();
        assert_eq!(ix.image(&a.id).unwrap().unwrap().size, 201);
        assert_eq!(ix.unmeasured_layers().unwrap(), vec![d(21)]);
        ix.set_diff_sizes(&[(d(21), 50), (d(20), 7)]).unwrap();
        assert_eq!(ix.diff_size(&d(20)).unwrap(), Some(100), "a recorded size is not replaced");
        assert_eq!(ix.image(&a.id).unwrap().unwrap().size, 250);
        assert_eq!(ix.images_brief().unwrap()[0].size, 250);
        assert!(ix.unmeasured_layers().unwrap().is_empty());
        // The same layers reached another way: the same size.
        let b = new_image(2, &[20, 21, 20]);
        ix.insert_image(&b, &blobs_of(&b), &[]).unwrap();
        assert_eq!(ix.image(&b.id).unwrap().unwrap().size, 250);
    }

    #[test]
    fn image_blobs_and_tags_round_trip_and_cascade() {
        let dir = temp_dir("roundtrip");
        let mut ix = Index::open(&dir.join("img.db")).unwrap();
        let a = new_image(1, &[10, 11]);
        let b = new_image(2, &[10, 12]);
        ix.insert_image(&a, &blobs_of(&a), &[tag("docker.io/library/a:1")]).unwrap();
        ix.insert_image(&b, &blobs_of(&b), &[tag("docker.io/library/b:1")]).unwrap();
        assert_eq!(ix.images().unwrap().len(), 2);
        assert!(ix.unreferenced_blobs().unwrap().is_empty());
        // Moving a tag reports where it came from.
        let moved = ix.tag(&tag("docker.io/library/a:1"), &b.id).unwrap();
        assert_eq!(moved, Some(a.id.clone()));
        let del = ix.delete_image(&a.id).unwrap();
        assert!(del.deleted);
        let unref: Vec<_> = ix.unreferenced_blobs().unwrap().into_iter().map(|x| x.0).collect();
        // Layer 10 is shared with b and must stay referenced.
        assert!(!unref.contains(&d(10)));
        assert!(unref.contains(&d(11)));
        let gone = ix.delete_unreferenced_blob_rows(&[d(10), d(11)]).unwrap();
        assert_eq!(gone, vec![d(11)]);
        assert!(ix.integrity_problems().unwrap().is_empty());
    }

    #[test]
    fn id_prefix_lookup() {
        let dir = temp_dir("prefix");
        let mut ix = Index::open(&dir.join("img.db")).unwrap();
        let a = new_image(1, &[]);
        ix.insert_image(&a, &blobs_of(&a), &[]).unwrap();
        let hex = a.id.hex();
        assert_eq!(ix.ids_with_prefix(&hex[..6]).unwrap(), vec![a.id.clone()]);
        assert!(ix.ids_with_prefix("ffffffffff").unwrap().is_empty() || hex.starts_with("ffffffffff"));
    }

    #[test]
    fn killed_writer_leaves_no_trace_and_no_stale_lock() {
        // A child process opens a write transaction, inserts, and is killed
        // before committing; the parent must see no row and write at once.
        let dir = temp_dir("killed");
        let p = dir.join("img.db");
        drop(Index::open(&p).unwrap());
        let script = format!(
            "import sqlite3,os,signal\nc=sqlite3.connect('{}',isolation_level=None)\nc.execute('BEGIN IMMEDIATE')\nc.execute(\"INSERT INTO meta(key,value) VALUES('x','y')\")\nos.kill(os.getpid(), signal.SIGKILL)\n",
            p.display()
        );
        let status = std::process::Command::new("python3").arg("-c").arg(&script).status();
        let Ok(status) = status else { return };
        assert!(!status.success());
        let mut ix = Index::open(&p).unwrap();
        let n: i64 = ix.conn.query_row("SELECT count(*) FROM meta WHERE key='x'", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0);
        ix.add_pending(&[d(1)]).unwrap();
        assert_eq!(ix.pending().unwrap(), vec![d(1)]);
        assert!(ix.integrity_problems().unwrap().is_empty());
    }
}
