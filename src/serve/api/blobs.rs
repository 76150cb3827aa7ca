//! Blobs: get and head (with byte ranges) and delete of an uploaded blob.

use super::{error, Api, Reply};
use crate::digest::Digest;
use crate::serve::backend::BlobBody;
use crate::serve::http::{Body, Request, Response};
use crate::serve::route::{self, Name};

impl Api {
    pub(super) fn get_blob(&self, req: &Request, name: &Name, digest: &Digest) -> Reply<Response> {
        let repo = name.to_string();
        let unknown = || error(404, "BLOB_UNKNOWN", format!("blob {digest} is not in {repo}"));
        if !self.backend.blob_in_repo(&repo, digest)? {
            return Ok(unknown());
        }
        let size = match self.backend.blob_size(digest)? {
            Some(s) => s,
            None => return Ok(unknown()),
        };
        let base = Response::new(200)
            .header("Docker-Content-Digest", digest.as_str())
            .header("ETag", format!("\"{digest}\""))
            .header("Accept-Ranges", "bytes")
            .header("Content-Type", "application/octet-stream");
        let range = match req.header("range") {
            Some(range) => match route::byte_range(range, size) {
                Some(r) => Some(r),
                None => {
                    return Ok(error(
                        416,
                        "RANGE_INVALID",
                        format!("range {range:?} is not within the {size} bytes of {digest}"),
                    )
                    .header("Content-Range", format!("bytes */{size}")))
                }
            },
            None => None,
        };
        if req.method == "HEAD" {
            // The length without the bytes.
            let (start, end) = range.unwrap_or((0, size));
            let mut r = base.header("Content-Length", (end - start).to_string());
            if range.is_some() {
                r = r.header("Content-Range", format!("bytes {start}-{}/{size}", end - 1));
                r.status = 206;
            }
            r.body = Body::Empty;
            return Ok(r);
        }
        if range.is_none() {
            if let Some(url) = self.backend.blob_redirect(digest)? {
                return Ok(Response::new(307).header("Location", url).header("Docker-Content-Digest", digest.as_str()));
            }
        }
        let Some(blob) = self.backend.open_blob(digest, range)? else { return Ok(unknown()) };
        let mut r = base;
        if range.is_some() {
            r = r.header("Content-Range", format!("bytes {}-{}/{}", blob.start, blob.start + blob.len - 1, blob.size));
            r.status = 206;
        }
        r.body = match blob.body {
            BlobBody::File(file) => Body::File { file, offset: blob.start, len: blob.len },
            BlobBody::Stream(reader) => Body::Reader { reader: std::sync::Mutex::new(reader), len: blob.len },
        };
        Ok(r)
    }

    /// `DELETE` of a blob: forgets an uploaded blob no manifest came for.
    pub(super) fn delete_blob(&self, name: &Name, digest: &Digest) -> Reply<Response> {
        if self.backend.unlink_blob(&name.to_string(), digest)? {
            Ok(Response::new(202))
        } else {
            Ok(error(404, "BLOB_UNKNOWN", format!("{name} has no uploaded blob {digest} to delete")))
        }
    }
}
