//! Manifests: get, head, put (every blob or manifest named must be in the
//! repository with the size the descriptor says), delete, and referrers.

use super::{error, now, Api, Caller, Reply};
use crate::digest::Digest;
use crate::image::{self, Document};
use crate::serve::backend::PutError;
use crate::serve::backend::{ManifestBody, ServedManifest};
use crate::serve::http::{Request, Response};
use crate::serve::route::{self, Name, Reference};
use std::io::Read;

impl Api {
    pub(super) fn find_manifest(&self, name: &Name, reference: &Reference) -> Reply<Option<ManifestBody>> {
        Ok(self.backend.find_manifest(&name.to_string(), reference)?)
    }

    pub(super) fn manifest_bytes(&self, body: ManifestBody) -> Reply<(String, Vec<u8>)> {
        match body {
            ManifestBody::Inline { media_type, body } => Ok((media_type, body)),
            ManifestBody::Blob { digest, media_type } => match self
                .backend
                .read_small(&digest, image::MAX_MANIFEST_SIZE)?
            {
                Some(buf) => Ok((media_type, buf)),
                None => Err(error(500, "UNKNOWN", format!("manifest {digest} is recorded but its bytes are missing"))),
            },
        }
    }

    pub(super) fn get_manifest(&self, name: &Name, reference: &Reference) -> Reply<Response> {
        let Some(found) = self.find_manifest(name, reference)? else {
            let what = match reference {
                Reference::Tag(t) => format!("{name}:{t}"),
                Reference::Digest(d) => format!("{name}@{d}"),
            };
            return Ok(error(404, "MANIFEST_UNKNOWN", format!("manifest {what} is not known")));
        };
        let (media_type, bytes) = self.manifest_bytes(found)?;
        let d = Digest::of_bytes(&bytes);
        Ok(Response::new(200)
            .header("Docker-Content-Digest", d.as_str())
            .header("ETag", format!("\"{d}\""))
            .bytes(&media_type, bytes))
    }

    pub(super) fn put_manifest(
        &self,
        req: &Request,
        caller: &Caller,
        name: &Name,
        reference: &Reference,
        body: &mut dyn Read,
    ) -> Reply<Response> {
        let repo = name.to_string();
        let mut bytes = Vec::new();
        body.take(image::MAX_MANIFEST_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| error(400, "MANIFEST_INVALID", format!("reading the manifest: {e}")))?;
        if bytes.len() as u64 > image::MAX_MANIFEST_SIZE {
            return Err(error(413, "SIZE_INVALID", format!("the manifest is over {} bytes", image::MAX_MANIFEST_SIZE)));
        }
        let digest = Digest::of_bytes(&bytes);
        if let Reference::Digest(want) = reference {
            if *want != digest {
                return Err(error(
                    400,
                    "DIGEST_INVALID",
                    format!("the manifest's digest is {digest}, not {want} as its URL says"),
                ));
            }
        }
        let declared = req.header("content-type").map(|c| c.split(';').next().unwrap_or("").trim().to_string());
        let declared = declared.filter(|c| !c.is_empty() && c != "application/json" && c != "application/octet-stream");
        let doc = image::parse_document(&format!("manifest for {repo}"), &bytes, declared.as_deref())
            .map_err(|e| error(400, "MANIFEST_INVALID", e.to_string()))?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let subject = v.pointer("/subject/digest").and_then(|s| s.as_str()).unwrap_or("").to_string();
        if !subject.is_empty() && Digest::parse(&subject).is_err() {
            return Err(error(
                400,
                "MANIFEST_INVALID",
                format!("the manifest's subject {subject:?} is not a sha256 digest"),
            ));
        }
        let mut artifact_type = v.get("artifactType").and_then(|s| s.as_str()).unwrap_or("").to_string();
        let media_type = match &doc {
            Document::Manifest(m) => m.media_type.clone(),
            Document::Index(i) => i.media_type.clone(),
        };
        // What it refers to must be in this repository.
        let mut refs = Vec::new();
        let mut image_parts = None;
        match &doc {
            Document::Manifest(m) => {
                for d in std::iter::once(&m.config).chain(m.layers.iter()) {
                    if !self.backend.blob_in_repo(&repo, &d.digest)? {
                        return Err(error(
                            400,
                            "MANIFEST_BLOB_UNKNOWN",
                            format!("blob {} is not in {repo}; push it first", d.digest),
                        ));
                    }
                    let Some(size) = self.backend.blob_size(&d.digest)? else {
                        return Err(error(
                            400,
                            "MANIFEST_BLOB_UNKNOWN",
                            format!("blob {} is not in {repo}; push it first", d.digest),
                        ));
                    };
                    if size != d.size {
                        return Err(error(
                            400,
                            "SIZE_INVALID",
                            format!("the manifest says blob {} has {} bytes; it has {size}", d.digest, d.size),
                        ));
                    }
                    refs.push(d.digest.clone());
                }
                if artifact_type.is_empty()
                    && m.config.media_type != image::OCI_CONFIG
                    && m.config.media_type != image::DOCKER_CONFIG
                {
                    artifact_type = m.config.media_type.clone();
                }
                let runnable = (m.config.media_type == image::OCI_CONFIG
                    || m.config.media_type == image::DOCKER_CONFIG)
                    && m.layers.iter().all(|l| image::is_tar_layer(&l.media_type));
                if runnable {
                    image_parts = Some(m.clone());
                }
            }
            Document::Index(i) => {
                for d in &i.manifests {
                    if self.backend.find_manifest(&repo, &Reference::Digest(d.digest.clone()))?.is_none() {
                        return Err(error(
                            400,
                            "MANIFEST_BLOB_UNKNOWN",
                            format!("manifest {} is not in {repo}; push it first", d.digest),
                        ));
                    }
                }
            }
        }
        let tag = match reference {
            Reference::Tag(t) => Some(t.as_str()),
            Reference::Digest(_) => None,
        };
        let _ = caller;
        let served = ServedManifest {
            digest: digest.clone(),
            media_type,
            size: bytes.len() as u64,
            artifact_type,
            subject: subject.clone(),
            pushed_at: now(),
        };
        self.backend.put_manifest(&repo, &served, &bytes, &refs, tag, image_parts.as_ref()).map_err(|e| match e {
            PutError::Invalid(m) => error(400, "MANIFEST_INVALID", m),
            PutError::Backend(e) => Response::from(e),
        })?;
        let mut resp = Response::new(201)
            .header("Location", format!("/v2/{repo}/manifests/{digest}"))
            .header("Docker-Content-Digest", digest.as_str());
        if !subject.is_empty() {
            resp = resp.header("OCI-Subject", subject);
        }
        Ok(resp)
    }

    pub(super) fn delete_manifest(&self, name: &Name, reference: &Reference) -> Reply<Response> {
        let repo = name.to_string();
        let done = match reference {
            Reference::Digest(d) => self.backend.delete_manifest(&repo, d)?,
            Reference::Tag(t) => self.backend.delete_tag(&repo, t)?,
        };
        if done {
            Ok(Response::new(202))
        } else {
            Ok(error(404, "MANIFEST_UNKNOWN", format!("{repo} has no such manifest")))
        }
    }

    /// The `annotations` object of manifest `d` of `repo`, if it has one.
    fn manifest_annotations(&self, repo: &str, d: &Digest) -> Option<serde_json::Value> {
        let body = self.backend.find_manifest(repo, &Reference::Digest(d.clone())).ok()??;
        let (_, bytes) = self.manifest_bytes(body).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        v.get("annotations").filter(|a| a.as_object().is_some_and(|o| !o.is_empty())).cloned()
    }

    pub(super) fn referrers(&self, req: &Request, name: &Name, subject: &Digest) -> Reply<Response> {
        let repo = name.to_string();
        let q = route::query(&req.query);
        let filter = q.iter().find(|(k, _)| k == "artifactType").map(|(_, v)| v.clone());
        let list = self.backend.referrers(&repo, subject)?;
        let manifests: Vec<serde_json::Value> = list
            .iter()
            .filter(|m| filter.as_ref().is_none_or(|f| &m.artifact_type == f))
            .map(|m| {
                let mut d =
                    serde_json::json!({ "mediaType": m.media_type, "digest": m.digest.as_str(), "size": m.size });
                if !m.artifact_type.is_empty() {
                    d["artifactType"] = serde_json::Value::String(m.artifact_type.clone());
                }
                // The descriptor carries the referring manifest's annotations.
                if let Some(a) = self.manifest_annotations(&repo, &m.digest) {
                    d["annotations"] = a;
                }
                d
            })
            .collect();
        let body = serde_json::json!({ "schemaVersion": 2, "mediaType": image::OCI_INDEX, "manifests": manifests });
        let mut resp = Response::new(200).bytes(image::OCI_INDEX, serde_json::to_vec(&body).unwrap_or_default());
        if filter.is_some() {
            resp = resp.header("OCI-Filters-Applied", "artifactType");
        }
        Ok(resp)
    }
}
