//! Blobs: get and head (with byte ranges) and delete of an uploaded blob.

use super::{error, internal, Api, Reply};
use crate::digest::Digest;
use crate::serve::http::{Body, Request, Response};
use crate::serve::route::{self, Name};
use std::fs::File;

impl Api {
    pub(super) fn get_blob(&self, req: &Request, name: &Name, digest: &Digest) -> Reply<Response> {
        let repo = name.to_string();
        let unknown = || error(404, "BLOB_UNKNOWN", format!("blob {digest} is not in {repo}"));
        if !self.with_index(|ix| ix.served_blob(&repo, digest))? {
            return Ok(unknown());
        }
        let p = self.paths.blob_path(digest);
        let file = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(unknown()),
            Err(e) => return Err(internal(&format!("opening blob {digest}"), e)),
        };
        let size = file.metadata().map_err(|e| internal("reading a blob's size", e))?.len();
        let base = Response::new(200)
            .header("Docker-Content-Digest", digest.as_str())
            .header("ETag", format!("\"{digest}\""))
            .header("Accept-Ranges", "bytes")
            .header("Content-Type", "application/octet-stream");
        if let Some(range) = req.header("range") {
            let Some((start, end)) = route::byte_range(range, size) else {
                return Ok(error(
                    416,
                    "RANGE_INVALID",
                    format!("range {range:?} is not within the {size} bytes of {digest}"),
                )
                .header("Content-Range", format!("bytes */{size}")));
            };
            let mut r = base.header("Content-Range", format!("bytes {start}-{}/{size}", end - 1));
            r.status = 206;
            r.body = Body::File { file, offset: start, len: end - start };
            return Ok(r);
        }
        let mut r = base;
        r.body = Body::File { file, offset: 0, len: size };
        Ok(r)
    }

    /// `DELETE` of a blob: forgets an uploaded blob no manifest came for.
    pub(super) fn delete_blob(&self, name: &Name, digest: &Digest) -> Reply<Response> {
        if self.with_index(|ix| ix.unlink_served_upload(&name.to_string(), digest))? {
            Ok(Response::new(202))
        } else {
            Ok(error(404, "BLOB_UNKNOWN", format!("{name} has no uploaded blob {digest} to delete")))
        }
    }
}
