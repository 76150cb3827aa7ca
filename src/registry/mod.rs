//! Talking to registries (OCI distribution spec v1.1). Only this module
//! opens sockets. `client` does transport, auth and redirects; `Repo` maps
//! the API: manifests, blobs (with Range resume), uploads, tags.

pub mod authfile;
pub mod challenge;
pub mod client;
pub mod config;
pub mod signatures;
pub mod tls;

pub use client::{Client, ClientOptions, RegistryError, Response, Result};

use crate::digest::Digest;
use crate::image;
use std::io::Read;

/// Every manifest type img reads, for `Accept`.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.1";

/// One repository on a registry.
pub struct Repo<'c> {
    pub client: &'c Client,
    /// The repository path (`library/busybox`).
    pub name: String,
}

/// A fetched manifest: its bytes as served and what the registry said about them.
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    pub digest: Digest,
}

impl<'c> Repo<'c> {
    pub fn new(client: &'c Client, name: &str) -> Repo<'c> {
        Repo { client, name: name.to_string() }
    }

    pub fn pull_scope(&self) -> String {
        format!("repository:{}:pull", self.name)
    }

    pub fn push_scope(&self) -> String {
        format!("repository:{}:pull,push", self.name)
    }

    fn what(&self, thing: &str) -> String {
        format!("{}/{}{thing}", self.client.registry, self.name)
    }

    /// Fetches a manifest by tag or digest. The bytes are limited to 4 MiB
    /// and, when `reference` is a digest, checked against it.
    pub fn manifest(&self, reference: &str) -> Result<FetchedManifest> {
        let sep = if reference.starts_with("sha256:") { "@" } else { ":" };
        let what = self.what(&format!("{sep}{reference}"));
        let url = self.client.url(&format!("/v2/{}/manifests/{reference}", self.name));
        let resp =
            self.client.request("GET", &url, &[("Accept", MANIFEST_ACCEPT.to_string())], &self.pull_scope(), None)?;
        if resp.status != 200 {
            return Err(self.client.status_error(&format!("reading manifest {what}"), resp));
        }
        let content_type = resp.header("content-type").map(|c| c.split(';').next().unwrap_or(c).trim().to_string());
        let bytes = resp.read_limited(image::MAX_MANIFEST_SIZE, &format!("manifest {what}"))?;
        let digest = Digest::of_bytes(&bytes);
        if let Ok(want) = Digest::parse(reference) {
            if want != digest {
                return Err(RegistryError::Refused {
                    what: format!("manifest {what}"),
                    msg: format!("digest mismatch: expected {want}, got {digest}; refusing it"),
                });
            }
        }
        Ok(FetchedManifest { bytes, content_type, digest })
    }

    /// Starts a blob download at `offset`. Returns the response positioned at
    /// `offset`: a 206 whose Content-Range starts there, or a 200 whose first
    /// `offset` bytes were skipped.
    pub fn blob_from(&self, digest: &Digest, offset: u64) -> Result<Response> {
        self.blob_at(digest, offset, None)
    }

    /// Bytes `start..end` of a blob (a Range request), exactly; the caller
    /// checks them against the digests it has for them.
    pub fn blob_range(&self, digest: &Digest, start: u64, end: u64) -> Result<Vec<u8>> {
        let what = self.what(&format!("@{digest}"));
        let len = end.saturating_sub(start);
        let resp = self.blob_at(digest, start, Some(end))?;
        let mut out = Vec::with_capacity(len as usize);
        resp.body.take(len).read_to_end(&mut out).map_err(|e| RegistryError::Http {
            registry: self.client.registry.clone(),
            msg: format!("reading blob {what}: {e}"),
        })?;
        if out.len() as u64 != len {
            return Err(RegistryError::Http {
                registry: self.client.registry.clone(),
                msg: format!("reading blob {what}: the body ended after {} of the {len} bytes asked for", out.len()),
            });
        }
        Ok(out)
    }

    /// A blob from `start` (to `end`, when given, else to its end), the
    /// response positioned at `start`: a 206 whose Content-Range starts
    /// there, or a 200 (a server that ignores Range) whose first bytes were
    /// skipped.
    fn blob_at(&self, digest: &Digest, start: u64, end: Option<u64>) -> Result<Response> {
        let what = self.what(&format!("@{digest}"));
        let url = self.client.url(&format!("/v2/{}/blobs/{digest}", self.name));
        let mut headers = Vec::new();
        match end {
            Some(end) => headers.push(("Range", format!("bytes={start}-{}", end.saturating_sub(1)))),
            None if start > 0 => headers.push(("Range", format!("bytes={start}-"))),
            None => {}
        }
        let mut resp = self.client.request("GET", &url, &headers, &self.pull_scope(), None)?;
        match resp.status {
            200 => {
                if start > 0 {
                    // The server ignored Range: skip to the start.
                    let skipped =
                        std::io::copy(&mut (&mut resp.body).take(start), &mut std::io::sink()).map_err(|e| {
                            RegistryError::Http {
                                registry: self.client.registry.clone(),
                                msg: format!("reading blob {what}: {e}"),
                            }
                        })?;
                    if skipped != start {
                        return Err(RegistryError::Http {
                            registry: self.client.registry.clone(),
                            msg: format!("reading blob {what}: the body ended early"),
                        });
                    }
                }
                Ok(resp)
            }
            206 => {
                let cr = resp.header("content-range").unwrap_or("").to_string();
                let first = cr
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.trim().parse::<u64>().ok());
                if first != Some(start) {
                    let asked = match end {
                        Some(end) => format!("bytes {start}..{end}"),
                        None => format!("bytes from {start}"),
                    };
                    return Err(RegistryError::Refused {
                        what: format!("blob {what}"),
                        msg: format!("asked for {asked}, got Content-Range {cr:?}"),
                    });
                }
                Ok(resp)
            }
            _ => Err(self.client.status_error(&format!("reading blob {what}"), resp)),
        }
    }

    /// A small blob read whole (at most `limit` bytes) and checked against its digest.
    pub fn blob_bytes(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let what = format!("blob {}", self.what(&format!("@{digest}")));
        let bytes = self.blob_from(digest, 0)?.read_limited(limit, &what)?;
        let got = Digest::of_bytes(&bytes);
        if &got != digest {
            return Err(RegistryError::Refused {
                what,
                msg: format!("digest mismatch: expected {digest}, got {got}; refusing it"),
            });
        }
        Ok(bytes)
    }

    /// True if the registry has the blob (HEAD).
    pub fn has_blob(&self, digest: &Digest, scope: &str) -> Result<bool> {
        let url = self.client.url(&format!("/v2/{}/blobs/{digest}", self.name));
        let resp = self.client.request("HEAD", &url, &[], scope, None)?;
        match resp.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.client.status_error(&format!("checking blob {}", self.what(&format!("@{digest}"))), resp)),
        }
    }

    /// Starts a blob upload (`POST /blobs/uploads/`). With `mount`, asks the
    /// registry to mount the blob from another repository of the same
    /// registry instead; a registry that cannot answers with a plain upload.
    pub fn start_upload(&self, mount: Option<(&Digest, &str)>) -> Result<Upload> {
        let (query, scope) = match mount {
            Some((d, from)) => (
                format!("?mount={d}&from={}", client::urlencode(from)),
                format!("{} repository:{from}:pull", self.push_scope()),
            ),
            None => (String::new(), self.push_scope()),
        };
        let url = self.client.url(&format!("/v2/{}/blobs/uploads/{query}", self.name));
        let resp = self.client.request("POST", &url, &[("Content-Length", "0".into())], &scope, Some(&[]))?;
        match resp.status {
            201 if mount.is_some() => Ok(Upload::Mounted),
            202 => {
                let loc = resp.header("location").ok_or_else(|| RegistryError::Refused {
                    what: format!("upload to {}", self.what("")),
                    msg: "the registry started an upload without a Location".into(),
                })?;
                Ok(Upload::Location(client::resolve_location(&url, loc)))
            }
            _ => Err(self.client.status_error(&format!("starting an upload to {}", self.what("")), resp)),
        }
    }

    /// Sends a whole blob in one request and completes the upload (PUT with `?digest=`).
    pub fn put_blob(&self, location: &str, digest: &Digest, body: &mut dyn Read, size: u64) -> Result<()> {
        let url = with_query(location, &format!("digest={}", client::urlencode(digest.as_str())));
        let headers = [("Content-Type", "application/octet-stream".to_string())];
        let resp = self.client.send_stream("PUT", &url, &headers, &self.push_scope(), body, size)?;
        self.check_blob_created(resp, digest)
    }

    /// Sends one chunk (`PATCH` with `Content-Range`); returns the next location.
    pub fn patch_chunk(&self, location: &str, body: &mut dyn Read, start: u64, len: u64) -> Result<String> {
        let headers = [
            ("Content-Type", "application/octet-stream".to_string()),
            ("Content-Range", format!("{start}-{}", start + len - 1)),
        ];
        let resp = self.client.send_stream("PATCH", location, &headers, &self.push_scope(), body, len)?;
        if resp.status != 202 {
            return Err(self.client.status_error(&format!("uploading a chunk to {}", self.what("")), resp));
        }
        let loc = resp.header("location").unwrap_or(location).to_string();
        Ok(client::resolve_location(location, &loc))
    }

    /// Completes a chunked upload (`PUT ?digest=` with no body).
    pub fn finish_upload(&self, location: &str, digest: &Digest) -> Result<()> {
        let url = with_query(location, &format!("digest={}", client::urlencode(digest.as_str())));
        let resp = self.client.send_stream("PUT", &url, &[], &self.push_scope(), &mut std::io::empty(), 0)?;
        self.check_blob_created(resp, digest)
    }

    fn check_blob_created(&self, resp: Response, digest: &Digest) -> Result<()> {
        if resp.status != 201 {
            return Err(self
                .client
                .status_error(&format!("uploading blob {}", self.what(&format!("@{digest}"))), resp));
        }
        if let Some(got) = resp.header("docker-content-digest") {
            if got != digest.as_str() {
                return Err(RegistryError::Refused {
                    what: format!("blob {}", self.what(&format!("@{digest}"))),
                    msg: format!("the registry stored it as {got}"),
                });
            }
        }
        Ok(())
    }

    /// Puts a manifest under `reference` (a tag or its digest); returns the
    /// digest the registry reports, checked against the bytes sent.
    pub fn put_manifest(&self, reference: &str, media_type: &str, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of_bytes(bytes);
        let what = self.what(&format!(":{reference}"));
        let url = self.client.url(&format!("/v2/{}/manifests/{reference}", self.name));
        let headers = [("Content-Type", media_type.to_string())];
        let resp = self.client.request("PUT", &url, &headers, &self.push_scope(), Some(bytes))?;
        if resp.status != 201 && resp.status != 200 {
            return Err(self.client.status_error(&format!("writing manifest {what}"), resp));
        }
        if let Some(got) = resp.header("docker-content-digest") {
            if got != digest.as_str() {
                return Err(RegistryError::Refused {
                    what: format!("manifest {what}"),
                    msg: format!("the registry stored it as {got}, not {digest}"),
                });
            }
        }
        Ok(digest)
    }

    /// Tags of the repository, following `Link` pagination.
    pub fn tags(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let url = self.client.url(&format!("/v2/{}/tags/list?n=1000", self.name));
        let what = format!("tag list of {}", self.what(""));
        list_pages(self.client, url, &self.pull_scope(), "tags", &what, 1000, |page| {
            out.extend(page);
            true
        })?;
        Ok(out)
    }
}

/// Repository names in the registry's catalog (`/v2/_catalog`), following
/// `Link` pagination, at most `limit`.
pub fn catalog(client: &Client, limit: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let what = format!("the catalog of {}", client.registry);
    list_pages(
        client,
        client.url("/v2/_catalog?n=1000"),
        "registry:catalog:*",
        "repositories",
        &what,
        10_000,
        |page| {
            let empty = page.is_empty();
            out.extend(page);
            out.truncate(limit);
            !empty && out.len() < limit
        },
    )?;
    Ok(out)
}

/// Reads a paginated list (the strings under `key` in each page's JSON),
/// following `Link: <...>; rel="next"` on the same host, for at most
/// `max_pages` pages; `page` gets each page's strings and says whether to
/// go on.
fn list_pages(
    client: &Client,
    mut url: String,
    scope: &str,
    key: &str,
    what: &str,
    max_pages: usize,
    mut page: impl FnMut(Vec<String>) -> bool,
) -> Result<()> {
    for _ in 0..max_pages {
        let resp = client.request("GET", &url, &[], scope, None)?;
        if resp.status != 200 {
            return Err(client.status_error(&format!("reading {what}"), resp));
        }
        let link = resp.header("link").map(str::to_string);
        let body = resp.read_limited(16 << 20, what)?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::Refused { what: what.to_string(), msg: format!("not JSON: {e}") })?;
        let items = v
            .get(key)
            .and_then(|t| t.as_array())
            .map(|a| a.iter().filter_map(|t| t.as_str()).map(str::to_string).collect())
            .unwrap_or_default();
        if !page(items) {
            return Ok(());
        }
        match link.and_then(|l| next_link(&l)) {
            Some(next) => {
                let next = client::resolve_location(&url, &next);
                if client::authority(&next) != client::authority(&url) {
                    return Err(RegistryError::Refused {
                        what: what.to_string(),
                        msg: "the next page is on another host; refusing it".into(),
                    });
                }
                url = next;
            }
            None => return Ok(()),
        }
    }
    Ok(())
}

/// The answer to starting an upload.
pub enum Upload {
    /// The blob was mounted from another repository: nothing to send.
    Mounted,
    /// Send the blob to this URL.
    Location(String),
}

fn with_query(url: &str, q: &str) -> String {
    format!("{url}{}{q}", if url.contains('?') { '&' } else { '?' })
}

/// The `rel="next"` target of a `Link` header.
pub fn next_link(header: &str) -> Option<String> {
    for part in header.split(',') {
        let part = part.trim();
        if part.contains("rel=\"next\"") || part.contains("rel=next") {
            let start = part.find('<')? + 1;
            let end = part[start..].find('>')? + start;
            return Some(part[start..end].to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(next_link(r#"<x>; rel="prev""#), None);
        assert_eq!(next_link(""), None);
    }
}
