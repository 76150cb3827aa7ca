//! Uploads: started, sent in one request or in chunks, checked against
//! their digest and made blobs; each caller may have a bounded number and
//! size of them in progress.

use super::{error, Api, Caller, Reply};
use crate::digest::Digest;
use crate::serve::auth::Access;
use crate::serve::backend::{UploadError, UploadInfo};
use crate::serve::http::{Request, Response};
use crate::serve::route::{self, Name};
use std::io::Read;
use std::time::Duration;

/// An upload untouched this long may be dropped to make room for its
/// owner's next one.
const UPLOAD_IDLE: Duration = Duration::from_secs(60);

impl Api {
    pub(super) fn upload(&self, name: &Name, id: &str) -> Reply<UploadInfo> {
        match self.backend.upload_info(id)? {
            Some(u) if u.repo == name.to_string() => Ok(u),
            _ => Err(unknown_upload(name, id)),
        }
    }

    /// `GET` of an upload: how far it is.
    pub(super) fn upload_progress(&self, name: &Name, id: &str) -> Reply<Response> {
        let up = self.upload(name, id)?;
        Ok(upload_status(204, name, id, up.size))
    }

    /// `DELETE` of an upload: drops it (after a request writing to it ends).
    pub(super) fn cancel_upload(&self, name: &Name, id: &str) -> Reply<Response> {
        self.upload(name, id)?;
        self.backend.upload_cancel(id)?;
        Ok(Response::new(204))
    }

    /// Bytes `owner` may still add to uploads in progress.
    pub(super) fn upload_room(&self, owner: &str) -> Reply<u64> {
        let used: u64 = self.backend.uploads_of(owner)?.iter().map(|u| u.size).sum();
        Ok(self.settings.upload_bytes_per_user.saturating_sub(used))
    }

    /// Makes room for one more upload of `owner`: at the limit, the
    /// owner's upload untouched longest goes if it has been idle a while;
    /// else the caller is told to finish or cancel one.
    pub(super) fn room_for_upload(&self, owner: &str) -> Reply<()> {
        let mine = self.backend.uploads_of(owner)?;
        if mine.len() < self.settings.max_uploads_per_user {
            return Ok(());
        }
        match mine.into_iter().max_by_key(|u| u.idle) {
            Some(u) if u.idle >= UPLOAD_IDLE => {
                self.backend.upload_cancel(&u.id)?;
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

    /// The answer to an upload that failed.
    fn upload_failed(&self, name: &Name, id: &str, owner: &str, e: UploadError) -> Response {
        match e {
            UploadError::Unknown => unknown_upload(name, id),
            UploadError::Offset { have } => error(
                416,
                "BLOB_UPLOAD_INVALID",
                format!("the chunk does not start at {have}, where the upload {id} is"),
            )
            .header("Location", format!("/v2/{name}/blobs/uploads/{id}"))
            .header("Range", range_header(have)),
            UploadError::Quota => error(
                413,
                "SIZE_INVALID",
                format!(
                    "upload {id} goes over the {} bytes {owner} may have in uploads in progress; finish or cancel others first",
                    self.settings.upload_bytes_per_user
                ),
            ),
            UploadError::Broken(m) => error(400, "BLOB_UPLOAD_INVALID", format!("receiving upload {id}: {m}; start again")),
            UploadError::Digest { got, size } => error(
                400,
                "DIGEST_INVALID",
                format!("the upload's {size} bytes have digest {got}, not the one its URL names"),
            ),
            UploadError::Backend(crate::serve::backend::Error::NoSpace(_)) => {
                error(507, "UNKNOWN", format!("no space left on the registry's disk while receiving upload {id}"))
            }
            UploadError::Backend(e) => Response::from(e),
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
                if readable && self.backend.blob_in_repo(&src.to_string(), &d)? && self.backend.link_blob(&repo, &d)? {
                    return Ok(Response::new(201)
                        .header("Location", format!("/v2/{repo}/blobs/{d}"))
                        .header("Docker-Content-Digest", d.as_str()));
                }
            }
            // Not mountable: an ordinary upload, as the spec says.
        }
        let owner = caller.owner(req);
        self.room_for_upload(&owner)?;
        let id = self.backend.upload_start(&repo, &owner)?;
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
        self.upload(name, id)?;
        let at = match req.header("content-range") {
            Some(cr) => {
                let start = cr
                    .trim()
                    .trim_start_matches("bytes")
                    .trim_start_matches([' ', '='])
                    .split('-')
                    .next()
                    .unwrap_or("");
                match start.parse::<u64>() {
                    Ok(s) => Some(s),
                    Err(_) => Some(u64::MAX),
                }
            }
            None => None,
        };
        let owner = caller.owner(req);
        let room = self.upload_room(&owner)?;
        match self.backend.upload_append(id, at, body, room) {
            Ok(size) => Ok(upload_status(202, name, id, size)),
            Err(e) => Ok(self.upload_failed(name, id, &owner, e)),
        }
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
        self.upload(name, id)?;
        let owner = caller.owner(req);
        let room = self.upload_room(&owner)?;
        match self.backend.upload_finish(id, body, room, &want) {
            Ok(_) => Ok(Response::new(201)
                .header("Location", format!("/v2/{repo}/blobs/{want}"))
                .header("Docker-Content-Digest", want.as_str())),
            Err(UploadError::Digest { got, size }) => {
                Ok(error(400, "DIGEST_INVALID", format!("the upload's {size} bytes have digest {got}, not {want}")))
            }
            Err(e) => Ok(self.upload_failed(name, id, &owner, e)),
        }
    }
}

fn unknown_upload(name: &Name, id: &str) -> Response {
    error(404, "BLOB_UPLOAD_UNKNOWN", format!("upload {id} of {name} is not known (it may have expired); start again"))
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
