//! Where a registry keeps signatures: sigstore attachments (the
//! `sha256-<hex>.sig` tag and OCI referrers), the
//! `/extensions/v2/.../signatures/` API of registries that announce it, and
//! lookaside servers reached by plain HTTP(S) GETs.

use super::client::{authority, Result};
use super::{Client, FetchedManifest, RegistryError, Repo};
use crate::digest::Digest;
use crate::image;
use base64::Engine;
use std::io::Read;

/// The version of the signature API extension's records.
const EXTENSION_SCHEMA_VERSION: u32 = 2;

#[derive(serde::Serialize, serde::Deserialize)]
struct ExtensionSignature {
    #[serde(rename = "schemaVersion")]
    version: u32,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    /// Base64, as Go encodes a `[]byte`.
    content: String,
}

#[derive(serde::Deserialize)]
struct ExtensionList {
    #[serde(default)]
    signatures: Vec<ExtensionSignature>,
}

impl Repo<'_> {
    /// A manifest that may not exist: `None` for 404.
    pub fn manifest_if_exists(&self, reference: &str) -> Result<Option<FetchedManifest>> {
        match self.manifest(reference) {
            Ok(m) => Ok(Some(m)),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The referrers index of `digest` filtered by `artifact_type`, as
    /// served; `None` when the registry has no referrers API.
    pub fn referrers(&self, digest: &Digest, artifact_type: &str) -> Result<Option<Vec<u8>>> {
        let url = self.client.url(&format!(
            "/v2/{}/referrers/{digest}?artifactType={}",
            self.name,
            super::client::urlencode(artifact_type)
        ));
        let accept = [("Accept", image::OCI_INDEX.to_string())];
        let resp = self.client.request("GET", &url, &accept, &self.pull_scope(), None)?;
        if resp.status == 404 || resp.status == 405 || resp.status == 400 {
            return Ok(None);
        }
        if resp.status != 200 {
            return Err(self.client.status_error(&format!("reading the referrers of {}@{digest}", self.name), resp));
        }
        Ok(Some(resp.read_limited(image::MAX_MANIFEST_SIZE, &format!("referrers of {}@{digest}", self.name))?))
    }

    /// Simple signatures of `digest` through the signature API extension,
    /// at most `max` of at most `limit` bytes each, and `total` in all.
    pub fn extension_signatures(&self, digest: &Digest, max: usize, limit: u64, total: u64) -> Result<Vec<Vec<u8>>> {
        let what = format!("signatures of {}/{}@{digest}", self.client.registry, self.name);
        let url = self.client.url(&format!("/extensions/v2/{}/signatures/{digest}", self.name));
        let resp = self.client.request("GET", &url, &[], &self.pull_scope(), None)?;
        if resp.status == 404 {
            return Ok(Vec::new());
        }
        if resp.status != 200 {
            return Err(self.client.status_error(&format!("reading {what}"), resp));
        }
        // Base64 makes 4 bytes of 3, and the records' JSON adds a little.
        let body = resp.read_limited(total / 3 * 4 + 64 * 1024, &what)?;
        let list: ExtensionList = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::Refused { what: what.clone(), msg: format!("not a signature list: {e}") })?;
        let mut out = Vec::new();
        for s in list.signatures.into_iter().take(max) {
            if s.version != EXTENSION_SCHEMA_VERSION || s.kind != "atomic" {
                continue;
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.content.as_bytes())
                .map_err(|e| RegistryError::Refused { what: what.clone(), msg: format!("invalid base64: {e}") })?;
            if bytes.len() as u64 > limit {
                return Err(RegistryError::Refused {
                    what,
                    msg: format!("a signature of {} bytes is over the limit of {limit}", bytes.len()),
                });
            }
            out.push(bytes);
        }
        Ok(out)
    }

    /// Adds a simple signature of `digest` through the signature API extension.
    pub fn put_extension_signature(&self, digest: &Digest, signature: &[u8]) -> Result<()> {
        let what = format!("signature of {}/{}@{digest}", self.client.registry, self.name);
        let url = self.client.url(&format!("/extensions/v2/{}/signatures/{digest}", self.name));
        let name = format!("{digest}@{}", Digest::of_bytes(signature).hex().get(..32).unwrap_or_default());
        let body = serde_json::to_vec(&ExtensionSignature {
            version: EXTENSION_SCHEMA_VERSION,
            name,
            kind: "atomic".into(),
            content: base64::engine::general_purpose::STANDARD.encode(signature),
        })
        .unwrap_or_default();
        let headers = [("Content-Type", "application/json".to_string())];
        let resp = self.client.request("PUT", &url, &headers, &self.push_scope(), Some(&body))?;
        if resp.status != 201 && resp.status != 200 {
            return Err(self.client.status_error(&format!("writing {what}"), resp));
        }
        Ok(())
    }
}

/// GETs `url` (a lookaside server), with no credentials: `None` for 404,
/// the body otherwise, refused when it is over `limit` bytes.
pub fn get_lookaside(url: &str, limit: u64) -> Result<Option<Vec<u8>>> {
    let host = authority(url).unwrap_or_default().to_string();
    let settings = super::tls::settings_for(&host, false, None)
        .map_err(|msg| RegistryError::Tls { registry: host.clone(), msg })?;
    let agent = super::client::plain_agent(&settings);
    let resp = agent
        .get(url)
        .call()
        .map_err(|e| RegistryError::Http { registry: host.clone(), msg: format!("reading {url}: {e}") })?;
    match resp.status().as_u16() {
        404 => return Ok(None),
        200 => {}
        s => {
            return Err(RegistryError::Http { registry: host, msg: format!("reading {url}: the server answered {s}") })
        }
    }
    let mut out = Vec::new();
    resp.into_body()
        .into_reader()
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| RegistryError::Http { registry: host.clone(), msg: format!("reading {url}: {e}") })?;
    if out.len() as u64 > limit {
        return Err(RegistryError::Refused { what: url.to_string(), msg: format!("over the limit of {limit} bytes") });
    }
    Ok(Some(out))
}

impl Client {
    /// Whether the registry announced the signature API extension.
    pub fn has_signature_extension(&self) -> bool {
        self.signature_extension
    }
}
