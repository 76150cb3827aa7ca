//! The SQLite image index: the only module that speaks SQL.
//!
//! Every process opens its own connection (WAL, `synchronous=FULL`, foreign
//! keys on). Write transactions start with `BEGIN IMMEDIATE` so that they wait
//! for the write lock instead of failing with "database is locked" on upgrade;
//! a busy timeout plus a retry loop hides contention from users.

mod blobs;
mod build_cache;
mod eviction;
mod images;
mod manifest_lists;
mod migrations;
mod mounts;
mod remote_layers;
mod serve;
mod signatures;
mod tags;
mod usage;

pub use build_cache::CacheEntry;
pub use eviction::{EvictionRow, Lease};
pub use images::{Deleted, ExternalLayer, ImageKind, ImageRecord, NewImage};
pub use mounts::MountRecord;
pub use remote_layers::RemoteLayer;
pub use serve::{ManifestBody, ServeUser, ServedManifest, ServedTag};
pub use signatures::StoredSignature;
pub use tags::TagName;
pub use usage::BlobUsage;

// For the served registry's tables (`serve.rs`), whose transactions add
// blob rows and images as the other tables' code does.
use blobs::add_blob_rows_tx;
use images::insert_image_tx;

use crate::digest::Digest;
use rusqlite::config::DbConfig;
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
/// Pages the write-ahead log may hold before a commit copies them into the
/// main file. The log is kept between commands (no checkpoint on close), and
/// every process that opens the index first reads it whole: 1 MiB keeps
/// that read short while checkpoints (two fsyncs each) stay rare.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 256;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("opening image index {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("creating image index {path}: {source}; check that its directory is writable and has space")]
    Create { path: PathBuf, source: std::io::Error },
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
    #[error("image index holds an image of unknown kind {0:?}; upgrade img")]
    UnknownKind(String),
}

pub type Result<T> = std::result::Result<T, IndexError>;

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
        if !path.exists() {
            create(path)?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // journal_mode is persistent (a new index is made in WAL mode);
        // asking again is cheap and converts an index made otherwise.
        // On a filesystem without shared memory (some network or FUSE
        // filesystems) SQLite keeps the rollback journal, which still works.
        let _mode: String = with_busy_retry(|| conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)))?;
        conn.execute_batch(&format!(
            "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA mmap_size=268435456; PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES};"
        ))
        .map_err(open_err)?;
        // The last connection to close would otherwise copy the log into
        // the main file and fsync it, and the next writer would make the
        // log again (an fsync of the directory and one of the log's
        // header): tens of milliseconds on every command that writes. What
        // is committed is as durable in the log as in the main file.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true).map_err(open_err)?;
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
    /// database is busy. The transaction is durable once this returns.
    pub fn write<T>(&mut self, f: impl FnMut(&Transaction) -> Result<T>) -> Result<T> {
        self.write_tx(f)
    }

    /// Like [`Index::write`], for what only matters while the machine runs
    /// (when an image was last used, the leases of live commands, read-only
    /// mounts): the commit is not fsynced. A power loss may take it back,
    /// never leaves the index inconsistent, and the next durable commit
    /// makes it durable too (it fsyncs the whole log).
    pub fn write_soft<T>(&self, f: impl FnMut(&Transaction) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("PRAGMA synchronous=NORMAL")?;
        let res = self.write_tx(f);
        self.conn.execute_batch("PRAGMA synchronous=FULL")?;
        res
    }

    fn write_tx<T>(&self, mut f: impl FnMut(&Transaction) -> Result<T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let res = (|| {
                let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
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

    /// Checkpoints the WAL into the main file (after bulk deletes).
    pub fn checkpoint(&self) {
        let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
    }
}

/// Makes a new index at `path`, whole: built under a name of its own beside
/// it (no journal and no fsync while the schema is made, since nobody else
/// sees it), switched to WAL, fsynced once, then linked into place. Another
/// process making the same index at the same time wins or loses the link;
/// either way `path` is a complete index afterwards. The directory entry is
/// the caller's to make durable (`Store::open` fsyncs the root).
fn create(path: &Path) -> Result<()> {
    let open_err = |source| IndexError::Open { path: path.to_path_buf(), source };
    let io_err = |source| IndexError::Create { path: path.to_path_buf(), source };
    static BUILDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = new_index_path(path, std::process::id(), n);
    let _ = std::fs::remove_file(&tmp);
    let res = (|| {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&tmp, flags).map_err(open_err)?;
        let _off: String = conn.query_row("PRAGMA journal_mode=OFF", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA synchronous=OFF")?;
        let mut index = Index { conn, path: path.to_path_buf() };
        index.migrate()?;
        let mode: String = index.conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // No shared memory here: the rollback journal it is.
            let _: String = index.conn.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))?;
        }
        index.conn.close().map_err(|(_, e)| open_err(e))?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io_err)?;
        match std::fs::hard_link(&tmp, path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(io_err(e)),
            _ => Ok(()),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    res
}

/// Where process `pid` builds its `n`th new index for `path` (see [`create`]).
fn new_index_path(path: &Path, pid: u32, n: u32) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".new-{pid}-{n}"));
    path.with_file_name(name)
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
pub(crate) mod tests {
    use super::*;

    pub(crate) fn temp_dir(name: &str) -> crate::testdir::TestDir {
        crate::testdir::TestDir::new(&format!("index-{name}"))
    }

    pub(crate) fn d(n: u8) -> Digest {
        Digest::of_bytes(&[n])
    }

    pub(crate) fn new_image(config: u8, layers: &[u8]) -> NewImage {
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
            kind: ImageKind::Oci,
            config_digest: d(config),
            layer_digests: layers.iter().map(|l| d(*l)).collect(),
            external_layers: vec![],
            remote_layers: vec![],
            layer_diff_sizes: vec![],
        }
    }

    /// The image's blobs, taken as stored (these tests have no blob files).
    pub(crate) fn blobs_of(img: &NewImage) -> crate::store::StoredBlobs {
        let mut v = vec![(img.manifest_digest.clone(), 1), (img.config_digest.clone(), 1)];
        v.extend(img.layer_digests.iter().map(|l| (l.clone(), 1)));
        crate::store::StoredBlobs::assumed(v)
    }

    pub(crate) fn tag(name: &str) -> TagName {
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

    fn schema(p: &Path) -> Vec<(String, String, Option<String>)> {
        let c = Connection::open(p).unwrap();
        let mut st = c.prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").unwrap();
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
        rows.map(|r| r.unwrap()).collect()
    }

    #[test]
    fn a_new_index_equals_one_migrated_step_by_step() {
        let dir = temp_dir("new-vs-migrated");
        let new = dir.join("new.db");
        drop(Index::open(&new).unwrap());
        for start in [1, 7, migrations::MIGRATIONS.len() - 1] {
            // An index left at schema `start` by an older img (made in
            // place, in WAL mode), then opened by this one.
            let old = dir.join(format!("old-{start}.db"));
            let c = Connection::open(&old).unwrap();
            let _: String = c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).unwrap();
            c.execute_batch(&format!("PRAGMA application_id={APPLICATION_ID}")).unwrap();
            for (i, sql) in migrations::MIGRATIONS.iter().take(start).enumerate() {
                c.execute_batch(sql).unwrap();
                c.execute_batch(&format!("PRAGMA user_version={}", i + 1)).unwrap();
            }
            c.execute("INSERT INTO meta(key, value) VALUES ('format', ?1)", params![STORE_FORMAT.to_string()]).unwrap();
            drop(c);
            let ix = Index::open(&old).unwrap();
            assert_eq!(ix.schema_version().unwrap(), migrations::MIGRATIONS.len() as u32);
            drop(ix);
            assert_eq!(schema(&old), schema(&new), "migrated from {start}");
        }
        let c = Connection::open(&new).unwrap();
        let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let app: i32 = c.query_row("PRAGMA application_id", [], |r| r.get(0)).unwrap();
        assert_eq!(app, APPLICATION_ID);
    }

    #[test]
    fn a_new_index_is_made_whole_by_one_of_many_openers() {
        let dir = temp_dir("racing-create");
        let p = dir.join("img.db");
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || Index::open(&p).map(|ix| ix.schema_version().unwrap()))
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().unwrap(), migrations::MIGRATIONS.len() as u32);
        }
        let names: Vec<String> =
            std::fs::read_dir(&*dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(!names.iter().any(|n| n.contains(".new-")), "a build left behind: {names:?}");
    }

    #[test]
    fn soft_writes_are_kept_and_a_reopened_index_sees_them() {
        let dir = temp_dir("soft");
        let p = dir.join("img.db");
        let ix = Index::open(&p).unwrap();
        ix.write_soft(|tx| Ok(tx.execute("INSERT INTO meta(key, value) VALUES ('soft', 'x')", [])?)).unwrap();
        drop(ix);
        // The log is kept between commands: the row is read from it.
        assert!(dir.join("img.db-wal").exists());
        let ix = Index::open(&p).unwrap();
        let v: String = ix.conn.query_row("SELECT value FROM meta WHERE key = 'soft'", [], |r| r.get(0)).unwrap();
        assert_eq!(v, "x");
        let sync: i64 = ix.conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "durable writes are fsynced again after a soft one");
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
