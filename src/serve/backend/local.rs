//! The embedded backend: the store's index and blob directory on this
//! machine. Reads use a pool of index connections and open blob files
//! directly (blobs are immutable and verified). Writes open the store for
//! the moment they need it (its lock held shared, so `img prune` waits),
//! never between requests. Uploads are written to the store's upload
//! directory, hashed as they arrive, and become blobs only when their
//! digest is checked; no file stays open between an upload's requests.
//! A pushed runnable image becomes an image of the store
//! (`localhost/NAMESPACE/REPOSITORY:TAG`).

use super::{
    BlobBody, BlobRead, Error, ManifestBody, PutError, RepositoryInfo, Result, ServeUser, ServedManifest, ServedTag,
    UploadError, UploadInfo, MAX_DISCARD,
};
use crate::digest::{Digest, Hasher};
use crate::image;
use crate::serve::route::Reference;
use crate::store::index::Index;
use crate::store::{StagedBlob, Store, StorePaths};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An upload in progress. Its file is opened for each request that
/// writes to it, so that an abandoned upload holds no descriptor.
struct Upload {
    repo: String,
    owner: String,
    path: PathBuf,
    /// Bytes received (read without taking `hasher`, for quotas).
    size: AtomicU64,
    touched: Mutex<Instant>,
    /// Held while a request writes to the upload.
    hasher: Mutex<Hasher>,
}

impl Upload {
    fn idle(&self) -> Duration {
        self.touched.lock().unwrap_or_else(|e| e.into_inner()).elapsed()
    }

    fn info(&self, id: &str) -> UploadInfo {
        UploadInfo {
            id: id.to_string(),
            repo: self.repo.clone(),
            owner: self.owner.clone(),
            size: self.size.load(Ordering::SeqCst),
            idle: self.idle(),
        }
    }
}

pub struct Local {
    paths: StorePaths,
    pool: Mutex<Vec<Index>>,
    uploads: Mutex<HashMap<String, Arc<Upload>>>,
}

fn ix_err(e: crate::store::index::IndexError) -> Error {
    crate::serve::metrics::backend_error("store");
    Error::failed("image index", e)
}

impl Local {
    /// The store at `root`, which must have been opened (made and
    /// migrated) already.
    pub fn new(root: &Path) -> std::io::Result<Local> {
        let paths = StorePaths::new(root);
        std::fs::create_dir_all(paths.uploads_dir())?;
        Ok(Local { paths, pool: Mutex::new(Vec::new()), uploads: Mutex::new(HashMap::new()) })
    }

    /// Runs `f` with an index connection from the pool.
    fn ix<T>(&self, f: impl FnOnce(&mut Index) -> crate::store::index::Result<T>) -> Result<T> {
        let taken = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut ix = match taken {
            Some(ix) => ix,
            None => Index::open(&self.paths.db()).map_err(ix_err)?,
        };
        let out = f(&mut ix).map_err(ix_err);
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < 16 {
            pool.push(ix);
        }
        out
    }

    fn store(&self) -> Result<Store> {
        Store::open(self.paths.root()).map_err(|e| {
            crate::serve::metrics::backend_error("store");
            Error::failed("opening the store", e)
        })
    }

    fn upload(&self, id: &str) -> Option<Arc<Upload>> {
        self.uploads.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    fn drop_upload(&self, id: &str) {
        if let Some(u) = self.uploads.lock().unwrap_or_else(|e| e.into_inner()).remove(id) {
            let _ = std::fs::remove_file(&u.path);
        }
    }
}

/// Appends a request body to an upload, hashing it, up to `room` bytes.
/// The file is open only for this. When the upload cannot be written (a
/// full disk), the rest of the body is read and dropped, so that the
/// client is there to read the answer.
fn append(u: &Upload, hasher: &mut Hasher, body: &mut dyn Read, room: u64) -> std::result::Result<(), UploadError> {
    let broken = |e: std::io::Error| {
        if e.raw_os_error() == Some(libc::ENOSPC) {
            UploadError::Backend(Error::NoSpace("no space left on the registry's disk".into()))
        } else {
            UploadError::Broken(e.to_string())
        }
    };
    let mut file = std::fs::OpenOptions::new().append(true).open(&u.path).map_err(broken)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut added = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(UploadError::Broken(e.to_string())),
        };
        added += n as u64;
        if added > room {
            return Err(UploadError::Quota);
        }
        if let Err(e) = file.write_all(&buf[..n]) {
            let _ = std::io::copy(&mut body.take(MAX_DISCARD), &mut std::io::sink());
            return Err(broken(e));
        }
        hasher.update(&buf[..n]);
        u.size.store(hasher.len(), Ordering::SeqCst);
    }
    *u.touched.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    Ok(())
}

impl super::Backend for Local {
    fn kind(&self) -> &'static str {
        "store"
    }

    fn ready(&self) -> std::result::Result<(), String> {
        if self.ix(|ix| ix.schema_version()).is_err() {
            return Err("the image index does not answer".into());
        }
        if !self.paths.blobs_dir().is_dir() {
            return Err("the blob directory is missing".into());
        }
        Ok(())
    }

    fn token_key(&self) -> Result<Vec<u8>> {
        let fresh = crate::serve::auth::random_bytes(32).map_err(|e| Error::failed("making the token key", e))?;
        self.ix(|ix| ix.serve_secret("token-key", || fresh.clone()))
    }

    fn user(&self, name: &str) -> Result<Option<ServeUser>> {
        self.ix(|ix| ix.serve_user(name))
    }
    fn users(&self) -> Result<Vec<ServeUser>> {
        self.ix(|ix| ix.serve_users())
    }
    fn user_count(&self) -> Result<u64> {
        self.ix(|ix| ix.serve_user_count())
    }
    fn put_user(&self, u: &ServeUser) -> Result<bool> {
        self.ix(|ix| ix.put_serve_user(u))
    }
    fn remove_user(&self, name: &str) -> Result<bool> {
        self.ix(|ix| ix.remove_serve_user(name))
    }
    fn namespace(&self, name: &str) -> Result<Option<bool>> {
        self.ix(|ix| ix.serve_namespace(name))
    }
    fn namespaces(&self) -> Result<Vec<(String, bool)>> {
        self.ix(|ix| ix.serve_namespaces())
    }
    fn put_namespace(&self, name: &str, public: bool) -> Result<bool> {
        self.ix(|ix| ix.put_serve_namespace(name, public))
    }
    fn namespace_external(&self, name: &str) -> Result<bool> {
        self.ix(|ix| ix.serve_namespace_external(name))
    }
    fn set_namespace_external(&self, name: &str, external: bool) -> Result<bool> {
        self.ix(|ix| ix.set_serve_namespace_external(name, external))
    }
    fn remove_namespace(&self, name: &str) -> Result<bool> {
        self.ix(|ix| ix.remove_serve_namespace(name))
    }
    fn repository_visibility(&self, name: &str) -> Result<Option<bool>> {
        self.ix(|ix| ix.serve_repository_visibility(name))
    }
    fn repository_visibilities(&self) -> Result<Vec<(String, bool)>> {
        self.ix(|ix| ix.serve_repository_visibilities())
    }
    fn set_repository_visibility(&self, name: &str, public: Option<bool>) -> Result<()> {
        self.ix(|ix| ix.set_serve_repository_visibility(name, public))
    }
    fn grants(&self, user: Option<&str>) -> Result<Vec<(String, String, String)>> {
        self.ix(|ix| ix.serve_grants(user))
    }
    fn put_grant(&self, user: &str, scope: &str, access: &str) -> Result<bool> {
        self.ix(|ix| ix.put_serve_grant(user, scope, access))
    }
    fn remove_grant(&self, user: &str, scope: &str) -> Result<bool> {
        self.ix(|ix| ix.remove_serve_grant(user, scope))
    }
    fn repository_info(&self, name: &str) -> Result<Option<RepositoryInfo>> {
        Ok(self.ix(|ix| ix.serve_repository_info(Some(name)))?.into_iter().next().map(info))
    }
    fn repository_infos(&self) -> Result<Vec<RepositoryInfo>> {
        Ok(self.ix(|ix| ix.serve_repository_info(None))?.into_iter().map(info).collect())
    }
    fn put_repository_info(&self, i: &RepositoryInfo) -> Result<bool> {
        self.ix(|ix| ix.put_serve_repository_info(&i.name, &i.summary, &i.description))
    }
    fn remove_repository(&self, name: &str) -> Result<bool> {
        self.ix(|ix| ix.remove_serve_repository(name))
    }

    fn find_manifest(&self, repo: &str, reference: &Reference) -> Result<Option<ManifestBody>> {
        self.ix(|ix| match reference {
            Reference::Tag(t) => ix.served_tag(repo, t),
            Reference::Digest(d) => ix.served_manifest(repo, d),
        })
    }

    fn read_small(&self, d: &Digest, max: u64) -> Result<Option<Vec<u8>>> {
        let mut buf = Vec::new();
        match File::open(self.paths.blob_path(d)) {
            Ok(f) => {
                f.take(max + 1).read_to_end(&mut buf).map_err(|e| Error::failed(&format!("reading blob {d}"), e))?;
                Ok(Some(buf))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::failed(&format!("reading blob {d}"), e)),
        }
    }

    fn blob_in_repo(&self, repo: &str, d: &Digest) -> Result<bool> {
        self.ix(|ix| ix.served_blob(repo, d))
    }

    fn blob_size(&self, d: &Digest) -> Result<Option<u64>> {
        match std::fs::metadata(self.paths.blob_path(d)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::failed(&format!("reading the size of blob {d}"), e)),
        }
    }

    fn open_blob(&self, d: &Digest, range: Option<(u64, u64)>) -> Result<Option<BlobRead>> {
        let file = match File::open(self.paths.blob_path(d)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::failed(&format!("opening blob {d}"), e)),
        };
        let size = file.metadata().map_err(|e| Error::failed("reading a blob's size", e))?.len();
        let (start, end) = range.unwrap_or((0, size));
        Ok(Some(BlobRead { size, start, len: end.min(size).saturating_sub(start), body: BlobBody::File(file) }))
    }

    fn blob_redirect(&self, _d: &Digest) -> Result<Option<String>> {
        Ok(None)
    }

    fn link_blob(&self, repo: &str, d: &Digest) -> Result<bool> {
        let Ok(stored) = self.paths.stored_blobs(std::slice::from_ref(d)) else { return Ok(false) };
        self.ix(|ix| ix.link_served_uploads(repo, &stored))?;
        Ok(true)
    }

    fn unlink_blob(&self, repo: &str, d: &Digest) -> Result<bool> {
        self.ix(|ix| ix.unlink_served_upload(repo, d))
    }

    fn tags(&self, repo: &str) -> Result<Vec<String>> {
        self.ix(|ix| ix.served_tags(repo))
    }
    fn repository_exists(&self, repo: &str) -> Result<bool> {
        self.ix(|ix| Ok(ix.served_repository_exists(repo)? || !ix.serve_repository_info(Some(repo))?.is_empty()))
    }
    fn repositories(&self) -> Result<Vec<String>> {
        self.ix(|ix| {
            let mut all = ix.served_repositories()?;
            all.extend(ix.serve_repository_info(None)?.into_iter().map(|i| i.0));
            all.sort();
            all.dedup();
            Ok(all)
        })
    }
    fn tag_listing(&self) -> Result<Vec<ServedTag>> {
        self.ix(|ix| ix.served_tag_listing())
    }
    fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<ServedManifest>> {
        self.ix(|ix| ix.served_referrers(repo, subject))
    }
    fn signatures(&self, repo: &str, d: &Digest) -> Result<Vec<Vec<u8>>> {
        self.ix(|ix| ix.served_signatures(repo, d))
    }
    fn add_signature(&self, repo: &str, d: &Digest, body: &[u8], max: usize) -> Result<bool> {
        self.ix(|ix| ix.add_served_signature(repo, d, body, max))
    }

    fn put_manifest(
        &self,
        repo: &str,
        m: &ServedManifest,
        bytes: &[u8],
        refs: &[Digest],
        tag: Option<&str>,
        parts: Option<&image::Manifest>,
    ) -> std::result::Result<(), PutError> {
        let mut store = self.store()?;
        let new_image = match parts {
            Some(p) => {
                let config = store
                    .read_blob(&p.config.digest, image::MAX_CONFIG_SIZE)
                    .map_err(|e| PutError::Invalid(format!("reading config {}: {e}", p.config.digest)))?;
                let parsed = image::parse_config(&format!("config {}", p.config.digest), &config)
                    .map_err(|e| PutError::Invalid(e.to_string()))?;
                let size = p.layers.iter().map(|l| l.size).sum::<u64>() + p.config.size + bytes.len() as u64;
                let mut img = crate::ops::stored_image(
                    &parsed,
                    &p.config.digest,
                    &m.digest,
                    &m.media_type,
                    size,
                    p.layers.iter().map(|l| l.digest.clone()).collect(),
                );
                // Its size is its layers' uncompressed size, as for a pulled image.
                img.layer_diff_sizes = crate::ops::measure_layers(&store, &img.layer_digests)
                    .map_err(|e| Error::failed("measuring the layers", e))?;
                Some(img)
            }
            None => None,
        };
        let stage = || -> crate::store::Result<StagedBlob> {
            let mut w = store.blob_writer()?;
            w.write_all(bytes).map_err(|e| crate::store::StoreError::Io {
                action: "writing",
                path: store.ingest_dir(),
                source: e,
            })?;
            w.finish()
        };
        let mut staged = stage().map_err(|e| Error::failed("storing the manifest", e))?;
        let blobs = store.commit_blobs(&mut [&mut staged]).map_err(|e| Error::failed("storing the manifest", e))?;
        store
            .index_mut()
            .put_served_manifest(repo, m, refs, &blobs, tag, new_image.as_ref())
            .map_err(|e| Error::failed("recording the manifest", e))?;
        Ok(())
    }

    fn delete_manifest(&self, repo: &str, d: &Digest) -> Result<bool> {
        self.ix(|ix| ix.delete_served_manifest(repo, d))
    }
    fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        self.ix(|ix| ix.delete_served_tag(repo, tag))
    }

    fn upload_start(&self, repo: &str, owner: &str) -> Result<String> {
        let id = crate::digest::hex_encode(
            &crate::serve::auth::random_bytes(16).map_err(|e| Error::failed("making an upload id", e))?,
        );
        let path = self.paths.upload(&id);
        std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::failed("making an upload", e))?;
        let up = Arc::new(Upload {
            repo: repo.to_string(),
            owner: owner.to_string(),
            path,
            size: AtomicU64::new(0),
            touched: Mutex::new(Instant::now()),
            hasher: Mutex::new(Hasher::new()),
        });
        self.uploads.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), up);
        Ok(id)
    }

    fn upload_info(&self, id: &str) -> Result<Option<UploadInfo>> {
        Ok(self.upload(id).map(|u| u.info(id)))
    }

    fn uploads_of(&self, owner: &str) -> Result<Vec<UploadInfo>> {
        let ups = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        Ok(ups.iter().filter(|(_, u)| u.owner == owner).map(|(id, u)| u.info(id)).collect())
    }

    fn upload_append(
        &self,
        id: &str,
        at: Option<u64>,
        body: &mut dyn Read,
        room: u64,
    ) -> std::result::Result<u64, UploadError> {
        let up = self.upload(id).ok_or(UploadError::Unknown)?;
        let mut h = up.hasher.lock().unwrap_or_else(|e| e.into_inner());
        if at.is_some_and(|a| a != h.len()) {
            return Err(UploadError::Offset { have: h.len() });
        }
        if let Err(e) = append(&up, &mut h, body, room) {
            drop(h);
            self.drop_upload(id);
            return Err(e);
        }
        Ok(h.len())
    }

    fn upload_finish(
        &self,
        id: &str,
        body: &mut dyn Read,
        room: u64,
        want: &Digest,
    ) -> std::result::Result<u64, UploadError> {
        let up = self.upload(id).ok_or(UploadError::Unknown)?;
        let mut h = up.hasher.lock().unwrap_or_else(|e| e.into_inner());
        let written = append(&up, &mut h, body, room).and_then(|()| {
            File::open(&up.path).and_then(|f| f.sync_all()).map_err(|e| UploadError::Broken(e.to_string()))
        });
        let size = h.len();
        let got = h.clone().finish();
        drop(h);
        self.uploads.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        let done = (|| {
            written?;
            if got != *want {
                return Err(UploadError::Digest { got: got.clone(), size });
            }
            let mut store = self.store()?;
            let mut staged = StagedBlob::adopt_download(up.path.clone(), got.clone(), size, None);
            let blobs = store.commit_blobs(&mut [&mut staged]).map_err(|e| Error::failed("storing an upload", e))?;
            drop(staged);
            store
                .index_mut()
                .link_served_uploads(&up.repo, &blobs)
                .map_err(|e| Error::failed("recording an upload", e))?;
            Ok(size)
        })();
        let _ = std::fs::remove_file(&up.path);
        done
    }

    fn upload_cancel(&self, id: &str) -> Result<bool> {
        let Some(up) = self.uploads.lock().unwrap_or_else(|e| e.into_inner()).remove(id) else { return Ok(false) };
        // After a request writing to it ends.
        let _held = up.hasher.lock().unwrap_or_else(|e| e.into_inner());
        let _ = std::fs::remove_file(&up.path);
        Ok(true)
    }

    fn collect_garbage(&self, ttl: Duration) {
        let mut live = Vec::new();
        {
            let mut ups = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
            ups.retain(|_, u| {
                let keep = u.idle() < ttl;
                if !keep {
                    let _ = std::fs::remove_file(&u.path);
                }
                keep
            });
            live.extend(ups.keys().cloned());
        }
        // Upload files no live upload owns (left by an earlier process),
        // once they are that old.
        if let Ok(rd) = std::fs::read_dir(self.paths.uploads_dir()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if live.contains(&name) {
                    continue;
                }
                let old =
                    e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_none_or(|a| a > ttl);
                if old {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        // Uploaded blobs no manifest came for within a day are forgotten
        // (`img prune` removes them then).
        let _ = self.ix(|ix| ix.expire_served_uploads(super::now() - 86_400));
    }
}

fn info((name, summary, description, created_at): (String, String, String, i64)) -> RepositoryInfo {
    RepositoryInfo { name, summary, description, created_at }
}
