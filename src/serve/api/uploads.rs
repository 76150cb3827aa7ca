//! Uploads: started, sent in one request or in chunks, checked against
//! their digest and made blobs; each caller may have a bounded number and
//! size of them in progress.

use super::{error, internal, Api, Caller, Reply};
use crate::digest::{Digest, Hasher};
use crate::serve::auth::{self, Access};
use crate::serve::http::{Request, Response};
use crate::serve::route::{self, Name};
use crate::store::{StagedBlob, Store};
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An upload in progress. Its file is opened for each request that
/// writes to it, so that an abandoned upload holds no descriptor.
pub(super) struct Upload {
    repo: String,
    /// Who started it (a user's name, or `@ADDRESS` for anonymous callers).
    owner: String,
    pub(super) path: PathBuf,
    /// Bytes received (read without taking `hasher`, for quotas).
    size: AtomicU64,
    touched: Mutex<Instant>,
    /// Held while a request writes to the upload.
    hasher: Mutex<Hasher>,
}

impl Upload {
    pub(super) fn idle(&self) -> Duration {
        self.touched.lock().unwrap_or_else(|e| e.into_inner()).elapsed()
    }
}

/// An upload untouched this long may be dropped to make room for its
/// owner's next one.
const UPLOAD_IDLE: Duration = Duration::from_secs(60);

/// The most of a body read and dropped after its upload failed.
const MAX_DISCARD: u64 = 16 << 30;

impl Api {
    pub(super) fn upload(&self, name: &Name, id: &str) -> Reply<Arc<Upload>> {
        let found = self.uploads.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned();
        match found {
            Some(u) if u.repo == name.to_string() => Ok(u),
            _ => Err(error(
                404,
                "BLOB_UPLOAD_UNKNOWN",
                format!("upload {id} of {name} is not known (it may have expired); start again"),
            )),
        }
    }

    /// `GET` of an upload: how far it is.
    pub(super) fn upload_progress(&self, name: &Name, id: &str) -> Reply<Response> {
        let up = self.upload(name, id)?;
        Ok(upload_status(204, name, id, up.size.load(Ordering::SeqCst)))
    }

    /// `DELETE` of an upload: drops it (after a request writing to it ends).
    pub(super) fn cancel_upload(&self, name: &Name, id: &str) -> Reply<Response> {
        let up = self.upload(name, id)?;
        self.uploads.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        let _held = up.hasher.lock().unwrap_or_else(|e| e.into_inner());
        let _ = std::fs::remove_file(&up.path);
        Ok(Response::new(204))
    }

    /// Bytes `owner` may still add to uploads in progress.
    pub(super) fn upload_room(&self, owner: &str) -> u64 {
        let ups = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        let used: u64 = ups.values().filter(|u| u.owner == owner).map(|u| u.size.load(Ordering::SeqCst)).sum();
        self.settings.upload_bytes_per_user.saturating_sub(used)
    }

    /// Makes room for one more upload of `owner`: at the limit, the
    /// owner's upload untouched longest goes if it has been idle a while;
    /// else the caller is told to finish or cancel one.
    pub(super) fn room_for_upload(&self, owner: &str) -> Reply<()> {
        let mut ups = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        let mine: Vec<(String, Duration)> =
            ups.iter().filter(|(_, u)| u.owner == owner).map(|(id, u)| (id.clone(), u.idle())).collect();
        if mine.len() < self.settings.max_uploads_per_user {
            return Ok(());
        }
        match mine.into_iter().max_by_key(|(_, idle)| *idle) {
            Some((id, idle)) if idle >= UPLOAD_IDLE => {
                if let Some(u) = ups.remove(&id) {
                    let _ = std::fs::remove_file(&u.path);
                }
                Ok(())
            }
            _ => Err(error(
                429,
                "TOOMANYREQUESTS",
                format!(
                    "{owner} has {} uploads in progress, as many as one may; finish or cancel one (DELETE its Location), or wait a minute",
                    self.settings.max_uploads_per_user
                ),
            )
            .header("Retry-After", "60")),
        }
    }

    pub(super) fn start_upload(
        &self,
        req: &Request,
        caller: &Caller,
        name: &Name,
        body: &mut dyn Read,
    ) -> Reply<Response> {
        let repo = name.to_string();
        let q = route::query(&req.query);
        let get = |k: &str| q.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
        if let (Some(mount), Some(from)) = (get("mount"), get("from")) {
            if let (Ok(d), Ok(src)) = (Digest::parse(&mount), route::parse_name(&from)) {
                let readable = self.access(caller, &src)? >= Access::Pull;
                if readable && self.with_index(|ix| ix.served_blob(&src.to_string(), &d))? {
                    if let Ok(stored) = self.paths.stored_blobs(std::slice::from_ref(&d)) {
                        self.with_index(|ix| ix.link_served_uploads(&repo, &stored))?;
                        return Ok(Response::new(201)
                            .header("Location", format!("/v2/{repo}/blobs/{d}"))
                            .header("Docker-Content-Digest", d.as_str()));
                    }
                }
            }
            // Not mountable: an ordinary upload, as the spec says.
        }
        let owner = caller.owner(req);
        self.room_for_upload(&owner)?;
        let id = crate::digest::hex_encode(&auth::random_bytes(16).map_err(|e| internal("making an upload id", e))?);
        let path = self.paths.upload(&id);
        std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(|e| internal("making an upload", e))?;
        let up = Arc::new(Upload {
            repo: repo.clone(),
            owner,
            path,
            size: AtomicU64::new(0),
            touched: Mutex::new(Instant::now()),
            hasher: Mutex::new(Hasher::new()),
        });
        self.uploads.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), up);
        if get("digest").is_some() {
            // A monolithic upload: the body is the blob.
            return self.finish_upload(req, caller, name, &id, body);
        }
        Ok(upload_status(202, name, &id, 0))
    }

    pub(super) fn patch_upload(
        &self,
        req: &Request,
        caller: &Caller,
        name: &Name,
        id: &str,
        body: &mut dyn Read,
    ) -> Reply<Response> {
        let up = self.upload(name, id)?;
        let mut h = up.hasher.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cr) = req.header("content-range") {
            let start =
                cr.trim().trim_start_matches("bytes").trim_start_matches([' ', '=']).split('-').next().unwrap_or("");
            match start.parse::<u64>() {
                Ok(s) if s == h.len() => {}
                _ => {
                    let have = h.len();
                    return Ok(error(
                        416,
                        "BLOB_UPLOAD_INVALID",
                        format!("chunk {cr:?} does not start at {have}, where the upload {id} is"),
                    )
                    .header("Location", format!("/v2/{name}/blobs/uploads/{id}"))
                    .header("Range", range_header(have)));
                }
            }
        }
        let room = self.upload_room(&caller.owner(req));
        append(&up, &mut h, body, room).map_err(|e| self.abandon(id, &up, e))?;
        Ok(upload_status(202, name, id, h.len()))
    }

    /// Drops a broken upload and says why.
    pub(super) fn abandon(&self, id: &str, u: &Upload, e: std::io::Error) -> Response {
        self.uploads.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        let _ = std::fs::remove_file(&u.path);
        if e.raw_os_error() == Some(libc::ENOSPC) {
            return error(507, "UNKNOWN", format!("no space left on the registry's disk while receiving upload {id}"));
        }
        if e.kind() == std::io::ErrorKind::QuotaExceeded {
            return error(
                413,
                "SIZE_INVALID",
                format!(
                    "upload {id} goes over the {} bytes {} may have in uploads in progress; finish or cancel others first",
                    self.settings.upload_bytes_per_user, u.owner
                ),
            );
        }
        error(400, "BLOB_UPLOAD_INVALID", format!("receiving upload {id}: {e}; start again"))
    }

    pub(super) fn finish_upload(
        &self,
        req: &Request,
        caller: &Caller,
        name: &Name,
        id: &str,
        body: &mut dyn Read,
    ) -> Reply<Response> {
        let repo = name.to_string();
        let q = route::query(&req.query);
        let Some(want) = q.iter().find(|(k, _)| k == "digest").map(|(_, v)| v.clone()) else {
            return Ok(error(400, "DIGEST_INVALID", "closing an upload needs ?digest="));
        };
        let want = match Digest::parse(&want) {
            Ok(d) => d,
            Err(e) => return Ok(error(400, "DIGEST_INVALID", e.to_string())),
        };
        let up = self.upload(name, id)?;
        let mut h = up.hasher.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.upload_room(&caller.owner(req));
        append(&up, &mut h, body, room).map_err(|e| self.abandon(id, &up, e))?;
        File::open(&up.path).and_then(|f| f.sync_all()).map_err(|e| self.abandon(id, &up, e))?;
        let size = h.len();
        let got = h.clone().finish();
        self.uploads.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        if got != want {
            let _ = std::fs::remove_file(&up.path);
            return Ok(error(
                400,
                "DIGEST_INVALID",
                format!("the upload's {size} bytes have digest {got}, not {want}"),
            ));
        }
        let mut store = Store::open(self.paths.root()).map_err(|e| internal("opening the store", e))?;
        let mut staged = StagedBlob::adopt_download(up.path.clone(), got.clone(), size, None);
        let blobs = store.commit_blobs(&mut [&mut staged]).map_err(|e| internal("storing an upload", e))?;
        drop(staged);
        let _ = std::fs::remove_file(&up.path);
        store.index_mut().link_served_uploads(&repo, &blobs).map_err(|e| internal("recording an upload", e))?;
        Ok(Response::new(201)
            .header("Location", format!("/v2/{repo}/blobs/{got}"))
            .header("Docker-Content-Digest", got.as_str()))
    }
}

/// Appends a request body to an upload, hashing it, up to `room` bytes
/// (more is the error `QuotaExceeded`). The file is open only for this.
/// When the upload cannot be written (a full disk), the rest of the body
/// is read and dropped, so that the client is there to read the answer.
pub(super) fn append(u: &Upload, hasher: &mut Hasher, body: &mut dyn Read, room: u64) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().append(true).open(&u.path)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut added = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        added += n as u64;
        if added > room {
            return Err(std::io::Error::new(std::io::ErrorKind::QuotaExceeded, "over the caller's upload quota"));
        }
        if let Err(e) = file.write_all(&buf[..n]) {
            let _ = std::io::copy(&mut body.take(MAX_DISCARD), &mut std::io::sink());
            return Err(e);
        }
        hasher.update(&buf[..n]);
        u.size.store(hasher.len(), Ordering::SeqCst);
    }
    *u.touched.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    Ok(())
}

pub(super) fn range_header(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

pub(super) fn upload_status(status: u16, name: &Name, id: &str, size: u64) -> Response {
    Response::new(status)
        .header("Location", format!("/v2/{name}/blobs/uploads/{id}"))
        .header("Range", range_header(size))
        .header("Docker-Upload-UUID", id)
}
