//! The scaled-out backend: PostgreSQL keeps users, namespaces,
//! repositories, grants, manifests (their bodies too: they are small and
//! read most), tags, signatures and upload sessions; an S3 bucket keeps the
//! blobs and the parts of uploads in progress. Any number of instances
//! share one database and one bucket; nothing is kept in an instance
//! between requests, so a client may send each request to another one.
//!
//! Uploads stream to S3 as a multipart upload of `PART` bytes a part,
//! sent by a second thread while the next part is read; bytes short of a
//! part at the end of a request are kept as a small tail object (of that
//! request's own) that the next request, on any instance, takes up. The
//! SHA-256 state is saved in the upload's row after each request. One
//! request at a time writes to an upload: it takes a lease in the row
//! first, renews it before each part, and saves only while it holds it,
//! so that two requests sent at once (a hostile client's) can never mix
//! their bytes under one digest. Nothing is spilled to local disk.
//!
//! Blobs are objects with a key of their own (`blobs/<random>`), found by
//! digest through the `blobs` table; an upload of a blob that is stored
//! already is dropped after its row says so. Garbage collection is mark
//! and sweep in the database with a grace period: a blob row is deleted
//! only when nothing refers to it and it was not touched (stored, linked,
//! mounted, referred to) for the grace period, in one statement that
//! PostgreSQL rechecks against a concurrent touch; only then is its
//! object deleted. A push that links a blob touches its row in the same
//! transaction, so a sweep never takes a blob a push is using.

use super::sha256;
use super::{
    BlobBody, BlobRead, Error, ManifestBody, PutError, RepositoryInfo, Result, ServeUser, ServedManifest, ServedTag,
    UploadError, UploadInfo, MAX_DISCARD,
};
use crate::digest::Digest;
use crate::image;
use crate::pg::{Param, PgError, Pool, Row};
use crate::s3::{self, S3Error};
use crate::serve::route::Reference;
use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

/// Bytes of a multipart upload's part (S3 wants at least 5 MiB but for
/// the last).
const PART: usize = 8 << 20;
const MIN_PART: usize = 5 << 20;
/// Unreferenced blobs untouched this long are collected.
const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
/// Manifest bodies kept in memory (they never change under a digest).
const CACHE_BYTES: usize = 32 << 20;

/// The schema, one migration after another; applied under an advisory
/// lock, so that instances starting together apply each once.
const MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE users (
        name       TEXT PRIMARY KEY,
        password   TEXT NOT NULL,
        admin      BOOLEAN NOT NULL DEFAULT false,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE namespaces (
        name       TEXT PRIMARY KEY,
        public     BOOLEAN NOT NULL,
        external   BOOLEAN NOT NULL DEFAULT false,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE repository_visibility (
        name       TEXT PRIMARY KEY,
        public     BOOLEAN NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE TABLE repository_info (
        name        TEXT PRIMARY KEY,
        summary     TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        created_at  BIGINT NOT NULL
    );
    CREATE TABLE grants (
        username TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        scope    TEXT NOT NULL,
        access   TEXT NOT NULL CHECK (access IN ('pull', 'push')),
        PRIMARY KEY (username, scope)
    );
    CREATE TABLE secrets (
        name       TEXT PRIMARY KEY,
        value      BYTEA NOT NULL,
        created_at BIGINT NOT NULL
    );
    -- Blobs in the bucket, by digest: `object` is the key, touched_at the
    -- last time a push stored, linked or referred to it.
    CREATE TABLE blobs (
        digest     TEXT PRIMARY KEY,
        object     TEXT NOT NULL,
        size       BIGINT NOT NULL CHECK (size >= 0),
        touched_at BIGINT NOT NULL
    );
    CREATE TABLE manifest_bodies (
        digest TEXT PRIMARY KEY,
        body   BYTEA NOT NULL
    );
    CREATE TABLE manifests (
        repository    TEXT NOT NULL,
        digest        TEXT NOT NULL REFERENCES manifest_bodies(digest),
        media_type    TEXT NOT NULL,
        artifact_type TEXT NOT NULL DEFAULT '',
        subject       TEXT NOT NULL DEFAULT '',
        size          BIGINT NOT NULL,
        pushed_at     BIGINT NOT NULL,
        PRIMARY KEY (repository, digest)
    );
    CREATE INDEX manifests_subject ON manifests(repository, subject);
    CREATE INDEX manifests_digest ON manifests(digest);
    -- Blobs and manifests a manifest refers to.
    CREATE TABLE manifest_refs (
        repository TEXT NOT NULL,
        manifest   TEXT NOT NULL,
        digest     TEXT NOT NULL,
        PRIMARY KEY (repository, manifest, digest),
        FOREIGN KEY (repository, manifest) REFERENCES manifests(repository, digest) ON DELETE CASCADE
    );
    CREATE INDEX manifest_refs_digest ON manifest_refs(digest);
    CREATE TABLE tags (
        repository TEXT NOT NULL,
        tag        TEXT NOT NULL,
        digest     TEXT NOT NULL,
        tagged_at  BIGINT NOT NULL,
        PRIMARY KEY (repository, tag),
        FOREIGN KEY (repository, digest) REFERENCES manifests(repository, digest) ON DELETE CASCADE
    );
    -- Blobs uploaded or mounted into a repository.
    CREATE TABLE repository_blobs (
        repository TEXT NOT NULL,
        digest     TEXT NOT NULL REFERENCES blobs(digest),
        added_at   BIGINT NOT NULL,
        PRIMARY KEY (repository, digest)
    );
    CREATE INDEX repository_blobs_digest ON repository_blobs(digest);
    CREATE TABLE signatures (
        repository  TEXT NOT NULL,
        digest      TEXT NOT NULL,
        body        BYTEA NOT NULL,
        body_digest TEXT NOT NULL,
        added_at    BIGINT NOT NULL,
        PRIMARY KEY (repository, digest, body_digest)
    );
    -- Uploads in progress: the bytes so far are the parts of multipart
    -- upload `multipart` of object `object`, then the `tail_size` bytes of
    -- object `tail`; `hash` is the saved SHA-256 state.
    CREATE TABLE uploads (
        id         TEXT PRIMARY KEY,
        repository TEXT NOT NULL,
        owner      TEXT NOT NULL,
        object     TEXT NOT NULL,
        size       BIGINT NOT NULL DEFAULT 0,
        hash       BYTEA NOT NULL,
        multipart  TEXT NOT NULL DEFAULT '',
        parts      TEXT NOT NULL DEFAULT '[]',
        tail_size  BIGINT NOT NULL DEFAULT 0,
        -- The object holding the tail (each request writes its own).
        tail       TEXT NOT NULL DEFAULT '',
        touched_at BIGINT NOT NULL,
        -- The request writing to the upload, and until when it may.
        lease_owner TEXT NOT NULL DEFAULT '',
        lease_until BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX uploads_owner ON uploads(owner);
"#];

pub struct Cluster {
    db: Pool,
    s3: Option<s3::Client>,
    grace: Duration,
    cache: Mutex<(HashMap<Digest, std::sync::Arc<Vec<u8>>>, usize)>,
}

fn db_err(e: PgError) -> Error {
    crate::serve::metrics::backend_error("database");
    if e.is_unavailable() {
        Error::Unavailable(format!("the database does not answer: {e}"))
    } else {
        Error::Failed(format!("database: {e}"))
    }
}

fn s3_err(what: &str, e: S3Error) -> Error {
    crate::serve::metrics::backend_error("s3");
    if e.is_transient() {
        Error::Unavailable(format!("the object store does not answer ({what}): {e}"))
    } else {
        Error::Failed(format!("object store ({what}): {e}"))
    }
}

fn digest_of(row: &Row, i: usize) -> std::result::Result<Digest, PgError> {
    let s = row.str(i)?;
    Digest::parse(s).map_err(|e| PgError::value(format!("a stored digest {s:?} is not valid: {e}")))
}

/// A random id: 16 bytes in hex.
fn random_id() -> Result<String> {
    Ok(crate::digest::hex_encode(&crate::serve::auth::random_bytes(16).map_err(|e| Error::failed("making an id", e))?))
}

fn now() -> i64 {
    super::now()
}

impl Cluster {
    /// Connects to the database (and applies its migrations) and, when
    /// given, the bucket. `storage` may carry `gc_grace=SECONDS`.
    pub fn open(database: &str, storage: Option<&str>) -> anyhow::Result<Cluster> {
        use anyhow::Context;
        let mut grace = DEFAULT_GRACE;
        let s3 = match storage {
            Some(url) => {
                let (url, g) = take_param(url, "gc_grace");
                if let Some(g) = g {
                    let secs: u64 =
                        g.parse().ok().filter(|s| *s > 0).with_context(|| format!("gc_grace={g}: give seconds"))?;
                    grace = Duration::from_secs(secs);
                }
                let cfg = s3::Config::parse(&url).with_context(|| format!("--storage {url}"))?;
                let c = s3::Client::new(cfg);
                c.ping().with_context(|| format!("the bucket of --storage {url} does not answer"))?;
                Some(c)
            }
            None => None,
        };
        let db = Pool::new(database, 32).context("connecting to the database given by --database")?;
        db.with(migrate).context("preparing the database's tables")?;
        Ok(Cluster { db, s3, grace, cache: Mutex::new((HashMap::new(), 0)) })
    }

    fn s3(&self) -> Result<&s3::Client> {
        self.s3.as_ref().ok_or_else(|| Error::Failed("no --storage was given for the blobs".into()))
    }

    fn q<T>(&self, f: impl FnOnce(&mut crate::pg::Conn) -> std::result::Result<T, PgError>) -> Result<T> {
        self.db.with(f).map_err(db_err)
    }

    fn cached(&self, d: &Digest) -> Option<std::sync::Arc<Vec<u8>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).0.get(d).cloned()
    }

    fn remember(&self, d: &Digest, body: Vec<u8>) -> std::sync::Arc<Vec<u8>> {
        let body = std::sync::Arc::new(body);
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.1 + body.len() > CACHE_BYTES {
            c.0.clear();
            c.1 = 0;
        }
        c.1 += body.len();
        c.0.insert(d.clone(), body.clone());
        body
    }

    /// Reads what an upload's row says.
    fn upload_row(&self, id: &str) -> Result<Option<UploadRow>> {
        self.q(|c| {
            c.query_opt(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1"), &[id.into()])?
                .map(|r| upload_of(id, &r))
                .transpose()
        })
    }

    /// Takes the lease of upload `id` for this request (`lease`), if no
    /// other request holds it; gives the upload's row.
    fn claim(&self, id: &str, lease: &str) -> std::result::Result<UploadRow, UploadError> {
        let row = self.q(|c| {
            c.query_opt(
                &format!(
                    "UPDATE uploads SET lease_owner = $2, lease_until = $3, touched_at = $4
                     WHERE id = $1 AND (lease_owner = '' OR lease_until < $4) RETURNING {UPLOAD_COLUMNS}"
                ),
                &[id.into(), lease.into(), (now() + LEASE).into(), now().into()],
            )?
            .map(|r| upload_of(id, &r))
            .transpose()
        })?;
        match row {
            Some(r) => Ok(r),
            None if self.upload_row(id)?.is_some() => {
                Err(UploadError::Broken("another request is writing to this upload; send one at a time".into()))
            }
            None => Err(UploadError::Unknown),
        }
    }

    /// Renews the lease before a part is sent; an error if it was lost.
    fn renew(&self, id: &str, lease: &str) -> std::result::Result<(), UploadError> {
        let n = self.q(|c| {
            c.execute(
                "UPDATE uploads SET lease_until = $3 WHERE id = $1 AND lease_owner = $2",
                &[id.into(), lease.into(), (now() + LEASE).into()],
            )
        })?;
        if n == 1 {
            Ok(())
        } else {
            Err(UploadError::Broken("the upload was cancelled or taken over while this request wrote to it".into()))
        }
    }

    /// Takes a request body into an upload: the kept tail first, then the
    /// body, in parts sent by a second thread. Returns the new state, with
    /// what is short of a part left in `buf` (the caller keeps it as the
    /// tail or sends it as the last part).
    fn stream_parts(
        &self,
        row: &mut UploadRow,
        lease: Option<&str>,
        state: &mut sha256::State,
        body: &mut dyn Read,
        room: u64,
    ) -> std::result::Result<Vec<u8>, UploadError> {
        let s3 = self.s3()?;
        let mut buf = Vec::with_capacity(PART);
        if row.tail_size > 0 {
            let tail = s3
                .get(&row.tail, None)
                .map_err(|e| s3_err("reading an upload's tail", e))?
                .ok_or_else(|| UploadError::Broken("the upload's kept bytes are gone".into()))?;
            let mut r = tail.reader.take(PART as u64);
            r.read_to_end(&mut buf).map_err(|e| UploadError::Broken(format!("reading the upload's tail: {e}")))?;
            if buf.len() as u64 != row.tail_size {
                return Err(UploadError::Broken("the upload's kept bytes are not what its record says".into()));
            }
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<(u32, Vec<u8>)>(1);
        let mut added = 0u64;
        let next_part = row.parts.len() as u32 + 1;
        std::thread::scope(|scope| {
            let object = row.object.clone();
            let multipart = std::sync::Arc::new(Mutex::new(row.multipart.clone()));
            let mp = multipart.clone();
            let upload_id = row.id.clone();
            let sender = scope.spawn(move || -> std::result::Result<Vec<(u32, String)>, UploadError> {
                let mut done = Vec::new();
                for (n, part) in rx {
                    if let Some(l) = lease {
                        self.renew(&upload_id, l)?;
                    }
                    let id = {
                        let mut m = mp.lock().unwrap_or_else(|e| e.into_inner());
                        if m.is_empty() {
                            *m = s3.create_multipart(&object).map_err(|e| s3_err("starting a multipart upload", e))?;
                        }
                        m.clone()
                    };
                    let etag =
                        s3.upload_part(&object, &id, n, &part).map_err(|e| s3_err("sending an upload's part", e))?;
                    done.push((n, etag));
                }
                Ok(done)
            });
            let mut n = next_part;
            let mut chunk = vec![0u8; 256 * 1024];
            let read: std::result::Result<(), UploadError> = (|| {
                loop {
                    let k = match body.read(&mut chunk) {
                        Ok(0) => return Ok(()),
                        Ok(k) => k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(UploadError::Broken(e.to_string())),
                    };
                    added += k as u64;
                    if added > room {
                        return Err(UploadError::Quota);
                    }
                    state.update(&chunk[..k]);
                    buf.extend_from_slice(&chunk[..k]);
                    if buf.len() >= PART {
                        let rest = buf.split_off(PART);
                        let part = std::mem::replace(&mut buf, rest);
                        if tx.send((n, part)).is_err() {
                            // The sender failed; its error is the answer.
                            let _ = std::io::copy(&mut body.take(MAX_DISCARD), &mut std::io::sink());
                            return Ok(());
                        }
                        n += 1;
                    }
                }
            })();
            drop(tx);
            let sent = sender
                .join()
                .unwrap_or_else(|_| Err(UploadError::Backend(Error::Failed("the part sender panicked".into()))));
            row.multipart = multipart.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let sent = sent?;
            read?;
            row.parts.extend(sent);
            row.size += added;
            Ok::<(), UploadError>(())
        })?;
        Ok(buf)
    }

    /// Saves an upload's state after a request and gives its lease back,
    /// if the request still holds it.
    fn save_upload(&self, row: &UploadRow, lease: &str, state: &sha256::State) -> Result<bool> {
        let parts = serde_json::to_string(&row.parts).unwrap_or_else(|_| "[]".into());
        let hash = state.to_bytes();
        self.q(|c| {
            c.execute(
                "UPDATE uploads SET size = $2, hash = $3, multipart = $4, parts = $5, tail_size = $6, tail = $7,
                        touched_at = $8, lease_owner = '', lease_until = 0
                 WHERE id = $1 AND lease_owner = $9",
                &[
                    row.id.as_str().into(),
                    (row.size as i64).into(),
                    Param::Bytes(&hash),
                    row.multipart.as_str().into(),
                    parts.as_str().into(),
                    (row.tail_size as i64).into(),
                    row.tail.as_str().into(),
                    now().into(),
                    lease.into(),
                ],
            )
        })
        .map(|n| n == 1)
    }

    /// Drops an upload whose lease this request holds: its row, its
    /// multipart upload and its tail.
    fn drop_upload(&self, row: &UploadRow, lease: &str) {
        let held = self.q(|c| {
            c.execute("DELETE FROM uploads WHERE id = $1 AND lease_owner = $2", &[row.id.as_str().into(), lease.into()])
        });
        // Only if it was still this request's: else another owns its parts.
        if matches!(held, Ok(1)) {
            self.drop_objects(&row.object, &row.multipart, &row.tail);
        }
    }

    /// Aborts a multipart upload and deletes a tail, as far as they exist.
    fn drop_objects(&self, object: &str, multipart: &str, tail: &str) {
        if let Some(s3) = &self.s3 {
            if !multipart.is_empty() {
                let _ = s3.abort_multipart(object, multipart);
            }
            if !tail.is_empty() {
                let _ = s3.delete(tail);
            }
        }
    }

    /// Records blob `d` stored as `object`, in `repo`; if it was stored
    /// already, the older object stays and `object` is deleted.
    fn record_blob(&self, repo: &str, d: &Digest, object: &str, size: u64) -> Result<()> {
        let kept: String = self.q(|c| {
            c.transaction(|c| {
                let row = c.query_opt(
                    "INSERT INTO blobs(digest, object, size, touched_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at
                     RETURNING object",
                    &[d.as_str().into(), object.into(), (size as i64).into(), now().into()],
                )?;
                let kept = row.map(|r| r.str(0).map(str::to_string)).transpose()?.unwrap_or_default();
                link_in_repository(c, repo, d)?;
                Ok(kept)
            })
        })?;
        if kept != object {
            let _ = self.s3()?.delete(object);
        }
        Ok(())
    }
}

/// Marks a blob as used now, so that a sweep running at the same time
/// keeps it; false if there is no such blob.
fn touch_blob(c: &mut crate::pg::Conn, d: &Digest) -> std::result::Result<bool, PgError> {
    Ok(c.execute("UPDATE blobs SET touched_at = $2 WHERE digest = $1", &[d.as_str().into(), now().into()])? > 0)
}

/// Links a stored blob into a repository (uploaded or mounted there).
fn link_in_repository(c: &mut crate::pg::Conn, repo: &str, d: &Digest) -> std::result::Result<(), PgError> {
    c.execute(
        "INSERT INTO repository_blobs(repository, digest, added_at) VALUES ($1, $2, $3)
         ON CONFLICT (repository, digest) DO UPDATE SET added_at = excluded.added_at",
        &[repo.into(), d.as_str().into(), now().into()],
    )?;
    Ok(())
}

/// Takes `name=value` out of a URL's query.
fn take_param(url: &str, name: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_string(), None) };
    let mut found = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.split_once('=') {
            Some((k, v)) if k == name => {
                found = Some(v.to_string());
                false
            }
            _ => true,
        })
        .collect();
    if kept.is_empty() {
        (base.to_string(), found)
    } else {
        (format!("{base}?{}", kept.join("&")), found)
    }
}

/// A new tail object's key for an upload's object.
fn new_tail_key(object: &str) -> Result<String> {
    Ok(format!("{object}.tail.{}", random_id()?))
}

/// How long a request may write to an upload without renewing its lease
/// (it renews before each part; S3 requests time out well before).
const LEASE: i64 = 300;

const UPLOAD_COLUMNS: &str = "repository, owner, object, size, hash, multipart, parts, tail_size, touched_at, tail";

fn upload_of(id: &str, r: &Row) -> std::result::Result<UploadRow, PgError> {
    Ok(UploadRow {
        id: id.to_string(),
        repo: r.str(0)?.to_string(),
        owner: r.str(1)?.to_string(),
        object: r.str(2)?.to_string(),
        size: r.i64(3)? as u64,
        hash: r.bytes(4)?,
        multipart: r.str(5)?.to_string(),
        parts: serde_json::from_str(r.str(6)?)
            .map_err(|e| PgError::value(format!("an upload's parts are not JSON: {e}")))?,
        tail_size: r.i64(7)? as u64,
        touched_at: r.i64(8)?,
        tail: r.str(9)?.to_string(),
    })
}

fn migrate(c: &mut crate::pg::Conn) -> std::result::Result<(), PgError> {
    c.transaction(|c| {
        // One instance at a time; the others wait, then see the version.
        c.execute("SELECT pg_advisory_xact_lock(7231046)", &[])?;
        c.batch("CREATE TABLE IF NOT EXISTS img_serve_schema (version INTEGER NOT NULL)")?;
        let v = match c.query_opt("SELECT version FROM img_serve_schema", &[])? {
            Some(r) => r.i64(0)?,
            None => {
                c.execute("INSERT INTO img_serve_schema(version) VALUES (0)", &[])?;
                0
            }
        };
        if v > MIGRATIONS.len() as i64 {
            return Err(PgError::value(format!(
                "the database's schema is version {v}, newer than this img's {}; upgrade img",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(v as usize) {
            c.batch(sql)?;
            c.execute("UPDATE img_serve_schema SET version = $1", &[((i + 1) as i64).into()])?;
        }
        Ok(())
    })
}

#[derive(Clone)]
struct UploadRow {
    id: String,
    repo: String,
    owner: String,
    object: String,
    size: u64,
    hash: Vec<u8>,
    multipart: String,
    parts: Vec<(u32, String)>,
    tail_size: u64,
    touched_at: i64,
    tail: String,
}

impl UploadRow {
    fn info(&self) -> UploadInfo {
        UploadInfo {
            id: self.id.clone(),
            repo: self.repo.clone(),
            owner: self.owner.clone(),
            size: self.size,
            idle: Duration::from_secs((now() - self.touched_at).max(0) as u64),
        }
    }
}

fn user_of(r: &Row) -> std::result::Result<ServeUser, PgError> {
    Ok(ServeUser { name: r.str(0)?.to_string(), password: r.str(1)?.to_string(), admin: r.bool(2)? })
}

fn info_of(r: &Row) -> std::result::Result<RepositoryInfo, PgError> {
    Ok(RepositoryInfo {
        name: r.str(0)?.to_string(),
        summary: r.str(1)?.to_string(),
        description: r.str(2)?.to_string(),
        created_at: r.i64(3)?,
    })
}

/// Deletes what a repository holds; returns the rows deleted.
fn remove_repository_rows(c: &mut crate::pg::Conn, repo: &str) -> std::result::Result<u64, PgError> {
    let mut n = 0;
    for sql in [
        "DELETE FROM signatures WHERE repository = $1",
        "DELETE FROM tags WHERE repository = $1",
        "DELETE FROM manifests WHERE repository = $1",
        "DELETE FROM repository_blobs WHERE repository = $1",
        "DELETE FROM repository_visibility WHERE name = $1",
        "DELETE FROM repository_info WHERE name = $1",
        "DELETE FROM grants WHERE scope = $1",
    ] {
        n += c.execute(sql, &[repo.into()])?;
    }
    Ok(n)
}

impl super::Backend for Cluster {
    fn kind(&self) -> &'static str {
        "cluster"
    }

    fn ready(&self) -> std::result::Result<(), String> {
        self.q(|c| c.query("SELECT 1", &[])).map_err(|e| format!("the database does not answer: {e}"))?;
        if let Some(s3) = &self.s3 {
            s3.ping().map_err(|e| format!("the bucket does not answer: {e}"))?;
        }
        Ok(())
    }

    fn token_key(&self) -> Result<Vec<u8>> {
        let fresh = crate::serve::auth::random_bytes(32).map_err(|e| Error::failed("making the token key", e))?;
        self.q(|c| {
            c.execute(
                "INSERT INTO secrets(name, value, created_at) VALUES ('token-key', $1, $2) ON CONFLICT (name) DO NOTHING",
                &[Param::Bytes(&fresh), now().into()],
            )?;
            let r = c
                .query_opt("SELECT value FROM secrets WHERE name = 'token-key'", &[])?
                .ok_or_else(|| PgError::value("the token key was not kept"))?;
            r.bytes(0)
        })
    }

    fn user(&self, name: &str) -> Result<Option<ServeUser>> {
        self.q(|c| {
            c.query_opt("SELECT name, password, admin FROM users WHERE name = $1", &[name.into()])?
                .map(|r| user_of(&r))
                .transpose()
        })
    }
    fn users(&self) -> Result<Vec<ServeUser>> {
        self.q(|c| c.query("SELECT name, password, admin FROM users ORDER BY name", &[])?.iter().map(user_of).collect())
    }
    fn user_count(&self) -> Result<u64> {
        self.q(|c| Ok(c.query("SELECT count(*) FROM users", &[])?[0].i64(0)? as u64))
    }
    fn put_user(&self, u: &ServeUser) -> Result<bool> {
        self.q(|c| {
            let r = c.query_opt(
                "INSERT INTO users(name, password, admin, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET password = excluded.password, admin = excluded.admin
                 RETURNING (xmax = 0)",
                &[u.name.as_str().into(), u.password.as_str().into(), u.admin.into(), now().into()],
            )?;
            r.map(|r| r.bool(0)).transpose().map(|b| b.unwrap_or(false))
        })
    }
    fn remove_user(&self, name: &str) -> Result<bool> {
        self.q(|c| Ok(c.execute("DELETE FROM users WHERE name = $1", &[name.into()])? > 0))
    }
    fn namespace(&self, name: &str) -> Result<Option<bool>> {
        self.q(|c| {
            c.query_opt("SELECT public FROM namespaces WHERE name = $1", &[name.into()])?.map(|r| r.bool(0)).transpose()
        })
    }
    fn namespaces(&self) -> Result<Vec<(String, bool)>> {
        self.q(|c| {
            c.query("SELECT name, public FROM namespaces ORDER BY name", &[])?
                .iter()
                .map(|r| Ok((r.str(0)?.to_string(), r.bool(1)?)))
                .collect()
        })
    }
    fn put_namespace(&self, name: &str, public: bool) -> Result<bool> {
        self.q(|c| {
            let r = c.query_opt(
                "INSERT INTO namespaces(name, public, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET public = excluded.public RETURNING (xmax = 0)",
                &[name.into(), public.into(), now().into()],
            )?;
            r.map(|r| r.bool(0)).transpose().map(|b| b.unwrap_or(false))
        })
    }
    fn namespace_external(&self, name: &str) -> Result<bool> {
        self.q(|c| {
            Ok(c.query_opt("SELECT external FROM namespaces WHERE name = $1", &[name.into()])?
                .map(|r| r.bool(0))
                .transpose()?
                .unwrap_or(false))
        })
    }
    fn set_namespace_external(&self, name: &str, external: bool) -> Result<bool> {
        self.q(|c| {
            Ok(c.execute("UPDATE namespaces SET external = $2 WHERE name = $1", &[name.into(), external.into()])? > 0)
        })
    }
    fn remove_namespace(&self, name: &str) -> Result<bool> {
        let prefix = format!("{name}/");
        self.q(|c| {
            c.transaction(|c| {
                let mut n = c.execute("DELETE FROM namespaces WHERE name = $1", &[name.into()])?;
                let mut repos: Vec<String> = Vec::new();
                for sql in [
                    "SELECT DISTINCT repository FROM manifests WHERE starts_with(repository, $1)",
                    "SELECT DISTINCT repository FROM repository_blobs WHERE starts_with(repository, $1)",
                    "SELECT name FROM repository_visibility WHERE starts_with(name, $1)",
                    "SELECT name FROM repository_info WHERE starts_with(name, $1)",
                    "SELECT DISTINCT scope FROM grants WHERE starts_with(scope, $1)",
                ] {
                    for r in c.query(sql, &[prefix.as_str().into()])? {
                        repos.push(r.str(0)?.to_string());
                    }
                }
                repos.sort();
                repos.dedup();
                for r in &repos {
                    n += remove_repository_rows(c, r)?;
                }
                n += c.execute("DELETE FROM grants WHERE scope = $1", &[name.into()])?;
                Ok(n > 0)
            })
        })
    }
    fn repository_visibility(&self, name: &str) -> Result<Option<bool>> {
        self.q(|c| {
            c.query_opt("SELECT public FROM repository_visibility WHERE name = $1", &[name.into()])?
                .map(|r| r.bool(0))
                .transpose()
        })
    }
    fn repository_visibilities(&self) -> Result<Vec<(String, bool)>> {
        self.q(|c| {
            c.query("SELECT name, public FROM repository_visibility ORDER BY name", &[])?
                .iter()
                .map(|r| Ok((r.str(0)?.to_string(), r.bool(1)?)))
                .collect()
        })
    }
    fn set_repository_visibility(&self, name: &str, public: Option<bool>) -> Result<()> {
        self.q(|c| {
            match public {
                Some(p) => c.execute(
                    "INSERT INTO repository_visibility(name, public, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET public = excluded.public, updated_at = excluded.updated_at",
                    &[name.into(), p.into(), now().into()],
                )?,
                None => c.execute("DELETE FROM repository_visibility WHERE name = $1", &[name.into()])?,
            };
            Ok(())
        })
    }
    fn grants(&self, user: Option<&str>) -> Result<Vec<(String, String, String)>> {
        self.q(|c| {
            c.query(
                "SELECT username, scope, access FROM grants WHERE $1::text IS NULL OR username = $1 ORDER BY username, scope",
                &[user.into()],
            )?
            .iter()
            .map(|r| Ok((r.str(0)?.to_string(), r.str(1)?.to_string(), r.str(2)?.to_string())))
            .collect()
        })
    }
    fn put_grant(&self, user: &str, scope: &str, access: &str) -> Result<bool> {
        self.q(|c| {
            Ok(c.execute(
                "INSERT INTO grants(username, scope, access) SELECT name, $2, $3 FROM users WHERE name = $1
                 ON CONFLICT (username, scope) DO UPDATE SET access = excluded.access",
                &[user.into(), scope.into(), access.into()],
            )? > 0)
        })
    }
    fn remove_grant(&self, user: &str, scope: &str) -> Result<bool> {
        self.q(|c| {
            Ok(c.execute("DELETE FROM grants WHERE username = $1 AND scope = $2", &[user.into(), scope.into()])? > 0)
        })
    }
    fn repository_info(&self, name: &str) -> Result<Option<RepositoryInfo>> {
        self.q(|c| {
            c.query_opt(
                "SELECT name, summary, description, created_at FROM repository_info WHERE name = $1",
                &[name.into()],
            )?
            .map(|r| info_of(&r))
            .transpose()
        })
    }
    fn repository_infos(&self) -> Result<Vec<RepositoryInfo>> {
        self.q(|c| {
            c.query("SELECT name, summary, description, created_at FROM repository_info ORDER BY name", &[])?
                .iter()
                .map(info_of)
                .collect()
        })
    }
    fn put_repository_info(&self, i: &RepositoryInfo) -> Result<bool> {
        self.q(|c| {
            let r = c.query_opt(
                "INSERT INTO repository_info(name, summary, description, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET summary = excluded.summary, description = excluded.description
                 RETURNING (xmax = 0)",
                &[
                    i.name.as_str().into(),
                    i.summary.as_str().into(),
                    i.description.as_str().into(),
                    i.created_at.into(),
                ],
            )?;
            r.map(|r| r.bool(0)).transpose().map(|b| b.unwrap_or(false))
        })
    }
    fn remove_repository(&self, name: &str) -> Result<bool> {
        self.q(|c| c.transaction(|c| Ok(remove_repository_rows(c, name)? > 0)))
    }

    fn find_manifest(&self, repo: &str, reference: &Reference) -> Result<Option<ManifestBody>> {
        self.q(|c| {
            let r = match reference {
                Reference::Tag(t) => c.query_opt(
                    "SELECT m.digest, m.media_type FROM tags t
                     JOIN manifests m ON m.repository = t.repository AND m.digest = t.digest
                     WHERE t.repository = $1 AND t.tag = $2",
                    &[repo.into(), t.as_str().into()],
                )?,
                Reference::Digest(d) => c.query_opt(
                    "SELECT digest, media_type FROM manifests WHERE repository = $1 AND digest = $2",
                    &[repo.into(), d.as_str().into()],
                )?,
            };
            r.map(|r| Ok(ManifestBody::Blob { digest: digest_of(&r, 0)?, media_type: r.str(1)?.to_string() }))
                .transpose()
        })
    }

    fn read_small(&self, d: &Digest, max: u64) -> Result<Option<Vec<u8>>> {
        if let Some(b) = self.read_manifest_body(d)? {
            return Ok(Some(b));
        }
        let Some(blob) = self.open_blob(d, None)? else { return Ok(None) };
        let BlobBody::Stream(r) = blob.body else { return Ok(None) };
        let mut buf = Vec::new();
        r.take(max + 1).read_to_end(&mut buf).map_err(|e| Error::Failed(format!("reading blob {d}: {e}")))?;
        Ok(Some(buf))
    }

    fn blob_in_repo(&self, repo: &str, d: &Digest) -> Result<bool> {
        self.q(|c| {
            Ok(c.query(
                "SELECT EXISTS (SELECT 1 FROM manifest_refs WHERE repository = $1 AND digest = $2)
                     OR EXISTS (SELECT 1 FROM repository_blobs WHERE repository = $1 AND digest = $2)
                     OR EXISTS (SELECT 1 FROM manifests WHERE repository = $1 AND digest = $2)",
                &[repo.into(), d.as_str().into()],
            )?[0]
                .bool(0)?)
        })
    }

    fn blob_size(&self, d: &Digest) -> Result<Option<u64>> {
        self.q(|c| {
            let r = c.query_opt(
                "SELECT size FROM blobs WHERE digest = $1
                 UNION ALL SELECT octet_length(body)::bigint FROM manifest_bodies WHERE digest = $1 LIMIT 1",
                &[d.as_str().into()],
            )?;
            r.map(|r| r.i64(0).map(|s| s as u64)).transpose()
        })
    }

    fn open_blob(&self, d: &Digest, range: Option<(u64, u64)>) -> Result<Option<BlobRead>> {
        let found = self.q(|c| {
            c.query_opt("SELECT object, size FROM blobs WHERE digest = $1", &[d.as_str().into()])?
                .map(|r| Ok((r.str(0)?.to_string(), r.i64(1)? as u64)))
                .transpose()
        })?;
        let Some((object, size)) = found else {
            // A manifest asked for as a blob.
            let Some(body) = self.read_manifest_body(d)? else { return Ok(None) };
            let size = body.len() as u64;
            let (start, end) = range.unwrap_or((0, size));
            let part = body[start.min(size) as usize..end.min(size) as usize].to_vec();
            let len = part.len() as u64;
            return Ok(Some(BlobRead {
                size,
                start,
                len,
                body: BlobBody::Stream(Box::new(std::io::Cursor::new(part))),
            }));
        };
        let o = self.s3()?.get(&object, range).map_err(|e| s3_err(&format!("reading blob {d}"), e))?;
        match o {
            Some(o) => Ok(Some(BlobRead {
                size: o.size.max(size),
                start: o.start,
                len: o.len,
                body: BlobBody::Stream(o.reader),
            })),
            None => {
                Err(Error::Failed(format!("blob {d} is recorded but its object {object} is missing from the bucket")))
            }
        }
    }

    fn blob_redirect(&self, d: &Digest) -> Result<Option<String>> {
        let Some(s3) = &self.s3 else { return Ok(None) };
        if !s3.config().redirect {
            return Ok(None);
        }
        let object = self.q(|c| {
            c.query_opt("SELECT object FROM blobs WHERE digest = $1", &[d.as_str().into()])?
                .map(|r| r.str(0).map(str::to_string))
                .transpose()
        })?;
        Ok(object.map(|o| s3.presign_get(&o, Duration::from_secs(600))))
    }

    fn link_blob(&self, repo: &str, d: &Digest) -> Result<bool> {
        self.q(|c| {
            c.transaction(|c| {
                // Touching the row keeps a sweep from taking it.
                if !touch_blob(c, d)? {
                    return Ok(false);
                }
                link_in_repository(c, repo, d)?;
                Ok(true)
            })
        })
    }

    fn unlink_blob(&self, repo: &str, d: &Digest) -> Result<bool> {
        self.q(|c| {
            Ok(c.execute(
                "DELETE FROM repository_blobs WHERE repository = $1 AND digest = $2",
                &[repo.into(), d.as_str().into()],
            )? > 0)
        })
    }

    fn tags(&self, repo: &str) -> Result<Vec<String>> {
        self.q(|c| {
            c.query("SELECT tag FROM tags WHERE repository = $1 ORDER BY tag", &[repo.into()])?
                .iter()
                .map(|r| r.str(0).map(str::to_string))
                .collect()
        })
    }

    fn repository_exists(&self, repo: &str) -> Result<bool> {
        self.q(|c| {
            Ok(c.query(
                "SELECT EXISTS (SELECT 1 FROM manifests WHERE repository = $1)
                     OR EXISTS (SELECT 1 FROM repository_info WHERE name = $1)",
                &[repo.into()],
            )?[0]
                .bool(0)?)
        })
    }

    fn repositories(&self) -> Result<Vec<String>> {
        self.q(|c| {
            c.query("SELECT repository FROM manifests UNION SELECT name FROM repository_info ORDER BY 1", &[])?
                .iter()
                .map(|r| r.str(0).map(str::to_string))
                .collect()
        })
    }

    fn tag_listing(&self) -> Result<Vec<ServedTag>> {
        self.q(|c| {
            c.query(
                "SELECT t.repository, t.tag, t.digest, m.media_type,
                        m.size + COALESCE((SELECT sum(b.size) FROM manifest_refs r JOIN blobs b ON b.digest = r.digest
                                           WHERE r.repository = m.repository AND r.manifest = m.digest), 0)::bigint,
                        t.tagged_at
                 FROM tags t JOIN manifests m ON m.repository = t.repository AND m.digest = t.digest
                 ORDER BY t.repository, t.tag",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(ServedTag {
                    repository: r.str(0)?.to_string(),
                    tag: r.str(1)?.to_string(),
                    digest: digest_of(r, 2)?,
                    media_type: r.str(3)?.to_string(),
                    size: r.i64(4)? as u64,
                    at: r.i64(5)?,
                })
            })
            .collect()
        })
    }

    fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<ServedManifest>> {
        self.q(|c| {
            c.query(
                "SELECT digest, media_type, size, artifact_type, subject, pushed_at FROM manifests
                 WHERE repository = $1 AND subject = $2 ORDER BY pushed_at, digest",
                &[repo.into(), subject.as_str().into()],
            )?
            .iter()
            .map(|r| {
                Ok(ServedManifest {
                    digest: digest_of(r, 0)?,
                    media_type: r.str(1)?.to_string(),
                    size: r.i64(2)? as u64,
                    artifact_type: r.str(3)?.to_string(),
                    subject: r.str(4)?.to_string(),
                    pushed_at: r.i64(5)?,
                })
            })
            .collect()
        })
    }

    fn signatures(&self, repo: &str, d: &Digest) -> Result<Vec<Vec<u8>>> {
        self.q(|c| {
            c.query(
                "SELECT body FROM signatures WHERE repository = $1 AND digest = $2 ORDER BY added_at, body_digest",
                &[repo.into(), d.as_str().into()],
            )?
            .iter()
            .map(|r| r.bytes(0))
            .collect()
        })
    }

    fn add_signature(&self, repo: &str, d: &Digest, body: &[u8], max: usize) -> Result<bool> {
        let body_digest = Digest::of_bytes(body);
        self.q(|c| {
            c.transaction(|c| {
                // One writer per manifest at a time, so the count holds.
                c.execute(
                    "SELECT 1 FROM manifests WHERE repository = $1 AND digest = $2 FOR UPDATE",
                    &[repo.into(), d.as_str().into()],
                )?;
                let n = c.query(
                    "SELECT count(*) FROM signatures WHERE repository = $1 AND digest = $2 AND body_digest <> $3",
                    &[repo.into(), d.as_str().into(), body_digest.as_str().into()],
                )?[0]
                    .i64(0)?;
                if n as usize >= max {
                    return Ok(false);
                }
                c.execute(
                    "INSERT INTO signatures(repository, digest, body, body_digest, added_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT DO NOTHING",
                    &[repo.into(), d.as_str().into(), Param::Bytes(body), body_digest.as_str().into(), now().into()],
                )?;
                Ok(true)
            })
        })
    }

    fn put_manifest(
        &self,
        repo: &str,
        m: &ServedManifest,
        bytes: &[u8],
        refs: &[Digest],
        tag: Option<&str>,
        _parts: Option<&image::Manifest>,
    ) -> std::result::Result<(), PutError> {
        self.q(|c| {
            c.transaction(|c| {
                c.execute(
                    "INSERT INTO manifest_bodies(digest, body) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[m.digest.as_str().into(), Param::Bytes(bytes)],
                )?;
                c.execute(
                    "INSERT INTO manifests(repository, digest, media_type, artifact_type, subject, size, pushed_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (repository, digest) DO UPDATE SET pushed_at = excluded.pushed_at",
                    &[
                        repo.into(),
                        m.digest.as_str().into(),
                        m.media_type.as_str().into(),
                        m.artifact_type.as_str().into(),
                        m.subject.as_str().into(),
                        (m.size as i64).into(),
                        now().into(),
                    ],
                )?;
                for d in refs {
                    // Touched, so that a sweep running now keeps it.
                    touch_blob(c, d)?;
                    c.execute(
                        "INSERT INTO manifest_refs(repository, manifest, digest) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        &[repo.into(), m.digest.as_str().into(), d.as_str().into()],
                    )?;
                }
                if let Some(t) = tag {
                    c.execute(
                        "INSERT INTO tags(repository, tag, digest, tagged_at) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (repository, tag) DO UPDATE SET digest = excluded.digest, tagged_at = excluded.tagged_at",
                        &[repo.into(), t.into(), m.digest.as_str().into(), now().into()],
                    )?;
                }
                Ok(())
            })
        })?;
        Ok(())
    }

    fn delete_manifest(&self, repo: &str, d: &Digest) -> Result<bool> {
        self.q(|c| {
            c.transaction(|c| {
                c.execute(
                    "DELETE FROM signatures WHERE repository = $1 AND digest = $2",
                    &[repo.into(), d.as_str().into()],
                )?;
                Ok(c.execute(
                    "DELETE FROM manifests WHERE repository = $1 AND digest = $2",
                    &[repo.into(), d.as_str().into()],
                )? > 0)
            })
        })
    }

    fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        self.q(
            |c| Ok(c.execute("DELETE FROM tags WHERE repository = $1 AND tag = $2", &[repo.into(), tag.into()])? > 0),
        )
    }

    fn upload_start(&self, repo: &str, owner: &str) -> Result<String> {
        self.s3()?;
        let id = random_id()?;
        let object = format!("blobs/{}", random_id()?);
        let hash = sha256::State::new().to_bytes();
        self.q(|c| {
            c.execute(
                "INSERT INTO uploads(id, repository, owner, object, hash, touched_at) VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    id.as_str().into(),
                    repo.into(),
                    owner.into(),
                    object.as_str().into(),
                    Param::Bytes(&hash),
                    now().into(),
                ],
            )
        })?;
        crate::serve::metrics::upload_started();
        Ok(id)
    }

    fn upload_info(&self, id: &str) -> Result<Option<UploadInfo>> {
        Ok(self.upload_row(id)?.map(|r| r.info()))
    }

    fn uploads_of(&self, owner: &str) -> Result<Vec<UploadInfo>> {
        self.q(|c| {
            c.query("SELECT id, repository, size, touched_at FROM uploads WHERE owner = $1", &[owner.into()])?
                .iter()
                .map(|r| {
                    Ok(UploadInfo {
                        id: r.str(0)?.to_string(),
                        repo: r.str(1)?.to_string(),
                        owner: owner.to_string(),
                        size: r.i64(2)? as u64,
                        idle: Duration::from_secs((now() - r.i64(3)?).max(0) as u64),
                    })
                })
                .collect()
        })
    }

    fn upload_append(
        &self,
        id: &str,
        at: Option<u64>,
        body: &mut dyn Read,
        room: u64,
    ) -> std::result::Result<u64, UploadError> {
        let lease = random_id()?;
        let mut row = self.claim(id, &lease)?;
        let give_back = |row: &UploadRow| {
            let _ = self.q(|c| {
                c.execute(
                    "UPDATE uploads SET lease_owner = '', lease_until = 0 WHERE id = $1 AND lease_owner = $2",
                    &[row.id.as_str().into(), lease.as_str().into()],
                )
            });
        };
        if at.is_some_and(|a| a != row.size) {
            give_back(&row);
            return Err(UploadError::Offset { have: row.size });
        }
        let Some(mut state) = sha256::State::from_bytes(&row.hash) else {
            give_back(&row);
            return Err(UploadError::Broken("the upload's saved hash state is damaged".into()));
        };
        let old_tail = row.tail.clone();
        let mut new_tail = String::new();
        let result = (|| {
            let rest = self.stream_parts(&mut row, Some(&lease), &mut state, body, room)?;
            let s3 = self.s3()?;
            if rest.len() >= MIN_PART {
                self.renew(id, &lease)?;
                if row.multipart.is_empty() {
                    row.multipart =
                        s3.create_multipart(&row.object).map_err(|e| s3_err("starting a multipart upload", e))?;
                }
                let n = row.parts.len() as u32 + 1;
                let etag = s3
                    .upload_part(&row.object, &row.multipart, n, &rest)
                    .map_err(|e| s3_err("sending an upload's part", e))?;
                row.parts.push((n, etag));
                row.tail_size = 0;
                row.tail.clear();
            } else if !rest.is_empty() {
                new_tail = new_tail_key(&row.object)?;
                s3.put(&new_tail, &rest).map_err(|e| s3_err("keeping an upload's last bytes", e))?;
                row.tail_size = rest.len() as u64;
                row.tail = new_tail.clone();
            } else if row.tail_size > 0 {
                // Nothing new short of a part: the kept tail was sent in one.
                row.tail_size = 0;
                row.tail.clear();
            }
            Ok::<_, UploadError>(())
        })();
        if let Err(e) = result {
            if !new_tail.is_empty() {
                let _ = self.s3().map(|s3| s3.delete(&new_tail));
            }
            let mut gone = row.clone();
            gone.tail = old_tail;
            self.drop_upload(&gone, &lease);
            crate::serve::metrics::upload_ended();
            return Err(e);
        }
        if !self.save_upload(&row, &lease, &state)? {
            if !new_tail.is_empty() {
                let _ = self.s3().map(|s3| s3.delete(&new_tail));
            }
            return Err(UploadError::Broken(
                "the upload was cancelled or taken over while this request wrote to it".into(),
            ));
        }
        if !old_tail.is_empty() && old_tail != row.tail {
            let _ = self.s3().map(|s3| s3.delete(&old_tail));
        }
        Ok(row.size)
    }

    fn upload_finish(
        &self,
        id: &str,
        body: &mut dyn Read,
        room: u64,
        want: &Digest,
    ) -> std::result::Result<u64, UploadError> {
        // Claimed by deleting its row, which only a request that holds no
        // lease (none is writing) may: nothing else may touch it after.
        let row = self.q(|c| {
            c.query_opt(
                &format!(
                    "DELETE FROM uploads WHERE id = $1 AND (lease_owner = '' OR lease_until < $2) RETURNING {UPLOAD_COLUMNS}"
                ),
                &[id.into(), now().into()],
            )?
            .map(|r| upload_of(id, &r))
            .transpose()
        })?;
        let mut row = match row {
            Some(r) => r,
            None if self.upload_row(id)?.is_some() => {
                return Err(UploadError::Broken("another request is writing to this upload; send one at a time".into()))
            }
            None => return Err(UploadError::Unknown),
        };
        crate::serve::metrics::upload_ended();
        let old_tail = row.tail.clone();
        let result = (|| {
            let mut state = sha256::State::from_bytes(&row.hash)
                .ok_or_else(|| UploadError::Broken("the upload's saved hash state is damaged".into()))?;
            let rest = self.stream_parts(&mut row, None, &mut state, body, room)?;
            let got = Digest::parse(&format!("sha256:{}", crate::digest::hex_encode(&state.finish())))
                .map_err(|e| UploadError::Broken(e.to_string()))?;
            if got != *want {
                return Err(UploadError::Digest { got, size: row.size });
            }
            let s3 = self.s3()?;
            if row.multipart.is_empty() {
                s3.put(&row.object, &rest).map_err(|e| s3_err("storing a blob", e))?;
            } else {
                if !rest.is_empty() {
                    let n = row.parts.len() as u32 + 1;
                    let etag = s3
                        .upload_part(&row.object, &row.multipart, n, &rest)
                        .map_err(|e| s3_err("sending an upload's last part", e))?;
                    row.parts.push((n, etag));
                }
                s3.complete_multipart(&row.object, &row.multipart, &row.parts)
                    .map_err(|e| s3_err("completing a multipart upload", e))?;
                row.multipart.clear();
            }
            self.record_blob(&row.repo, &got, &row.object, row.size)?;
            Ok(row.size)
        })();
        // The row is gone: the tail goes, and on failure the parts too.
        self.drop_objects(&row.object, if result.is_err() { &row.multipart } else { "" }, &old_tail);
        result
    }

    fn upload_cancel(&self, id: &str) -> Result<bool> {
        // Whoever writes to it: a request still sending finds its lease
        // gone before its next part, and saves nothing.
        let gone = self.q(|c| {
            c.query_opt("DELETE FROM uploads WHERE id = $1 RETURNING object, multipart, tail", &[id.into()])?
                .map(|r| Ok((r.str(0)?.to_string(), r.str(1)?.to_string(), r.str(2)?.to_string())))
                .transpose()
        })?;
        let Some((object, multipart, tail)) = gone else { return Ok(false) };
        self.drop_objects(&object, &multipart, &tail);
        crate::serve::metrics::upload_ended();
        Ok(true)
    }

    fn collect_garbage(&self, upload_ttl: Duration) {
        if let Err(e) = self.sweep(upload_ttl) {
            eprintln!("img serve: collecting garbage: {e}");
        }
    }
}

impl Cluster {
    /// A manifest's body, from the cache or the database (then kept in
    /// the cache: it never changes under its digest).
    fn read_manifest_body(&self, d: &Digest) -> Result<Option<Vec<u8>>> {
        if let Some(b) = self.cached(d) {
            return Ok(Some(b.to_vec()));
        }
        let body = self.q(|c| {
            c.query_opt("SELECT body FROM manifest_bodies WHERE digest = $1", &[d.as_str().into()])?
                .map(|r| r.bytes(0))
                .transpose()
        })?;
        Ok(body.map(|b| self.remember(d, b).to_vec()))
    }

    /// One collection, by at most one instance at a time: expired uploads,
    /// links of uploaded blobs no manifest of their repository names after
    /// the grace period, then blobs and
    /// manifest bodies nothing refers to and nobody touched for the grace
    /// period, then objects no row names (left by a crash between the
    /// bucket and the database) once they are older than the grace period.
    fn sweep(&self, upload_ttl: Duration) -> Result<()> {
        let cutoff = now() - upload_ttl.as_secs() as i64;
        let grace_cutoff = now() - self.grace.as_secs() as i64;
        let (expired, gone) = self.q(|c| {
            c.transaction(|c| {
                let locked = c.query("SELECT pg_try_advisory_xact_lock(7231047)", &[])?[0].bool(0)?;
                if !locked {
                    return Ok((Vec::new(), Vec::new()));
                }
                let expired: Vec<(String, String, String)> = c
                    .query(
                        "DELETE FROM uploads WHERE touched_at < $1 AND lease_until < $2 RETURNING object, multipart, tail",
                        &[cutoff.into(), now().into()],
                    )?
                    .iter()
                    .map(|r| Ok((r.str(0)?.to_string(), r.str(1)?.to_string(), r.str(2)?.to_string())))
                    .collect::<std::result::Result<_, PgError>>()?;
                c.execute(
                    "DELETE FROM repository_blobs rb WHERE added_at < $1 AND NOT EXISTS
                     (SELECT 1 FROM manifest_refs r WHERE r.repository = rb.repository AND r.digest = rb.digest)",
                    &[grace_cutoff.into()],
                )?;
                let gone: Vec<String> = c
                    .query(
                        "DELETE FROM blobs b WHERE b.touched_at < $1
                           AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.digest = b.digest)
                           AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)
                         RETURNING object",
                        &[grace_cutoff.into()],
                    )?
                    .iter()
                    .map(|r| r.str(0).map(str::to_string))
                    .collect::<std::result::Result<_, PgError>>()?;
                c.execute(
                    "DELETE FROM manifest_bodies mb WHERE NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = mb.digest)",
                    &[],
                )?;
                Ok((expired, gone))
            })
        })?;
        let Some(s3) = &self.s3 else { return Ok(()) };
        for (object, multipart, tail) in expired {
            crate::serve::metrics::upload_ended();
            self.drop_objects(&object, &multipart, &tail);
        }
        for object in gone {
            s3.delete(&object).map_err(|e| s3_err("deleting a collected blob", e))?;
        }
        // Objects no row names.
        let listed = s3.list("blobs/").map_err(|e| s3_err("listing blobs", e))?;
        let old: Vec<_> = listed.into_iter().filter(|o| o.last_modified < grace_cutoff).collect();
        if old.is_empty() {
            return Ok(());
        }
        let named: std::collections::HashSet<String> = self.q(|c| {
            let mut s = std::collections::HashSet::new();
            for r in c.query(
                "SELECT object FROM blobs UNION ALL SELECT object FROM uploads UNION ALL SELECT tail FROM uploads",
                &[],
            )? {
                s.insert(r.str(0)?.to_string());
            }
            Ok(s)
        })?;
        for o in old {
            if !named.contains(&o.key) {
                let _ = s3.delete(&o.key);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_parameters_are_taken_out_of_the_storage_url() {
        assert_eq!(
            take_param("s3://b/p?endpoint=http://x&gc_grace=5&region=r", "gc_grace"),
            ("s3://b/p?endpoint=http://x&region=r".to_string(), Some("5".to_string()))
        );
        assert_eq!(take_param("s3://b?gc_grace=5", "gc_grace"), ("s3://b".to_string(), Some("5".to_string())));
        assert_eq!(take_param("s3://b", "gc_grace"), ("s3://b".to_string(), None));
    }
}
