//! The signature API extension (`/extensions/v2/NAME/signatures/DIGEST`,
//! announced by `X-Registry-Supports-Signatures: 1` on `/v2/`): simple
//! signatures of a manifest, read and added as containers/image does.

use super::{error, Api, Reply};
use crate::digest::Digest;
use crate::serve::http::Response;
use crate::serve::route::{Name, Reference};
use crate::trust::{MAX_SIGNATURES, MAX_SIGNATURE_SIZE};
use base64::Engine;
use std::io::Read;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Incoming {
    #[serde(rename = "schemaVersion")]
    version: u32,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    content: String,
}

impl Api {
    pub(super) fn get_signatures(&self, name: &Name, d: &Digest) -> Reply<Response> {
        if self.find_manifest(name, &Reference::Digest(d.clone()))?.is_none() {
            return Ok(error(404, "MANIFEST_UNKNOWN", format!("manifest {name}@{d} is not known")));
        }
        let repo = name.to_string();
        let sigs = self.backend.signatures(&repo, d)?;
        let list: Vec<serde_json::Value> = sigs
            .iter()
            .map(|b| {
                serde_json::json!({
                    "schemaVersion": 2,
                    "name": format!("{d}@{}", &Digest::of_bytes(b).hex()[..32]),
                    "type": "atomic",
                    "content": base64::engine::general_purpose::STANDARD.encode(b),
                })
            })
            .collect();
        Ok(Response::new(200).json(&serde_json::json!({ "signatures": list })))
    }

    pub(super) fn put_signature(&self, name: &Name, d: &Digest, body: &mut dyn Read) -> Reply<Response> {
        // Base64 of the largest signature, and room for the JSON around it.
        let limit = MAX_SIGNATURE_SIZE / 3 * 4 + 8192;
        let mut bytes = Vec::new();
        body.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| error(400, "SIGNATURE_INVALID", format!("reading the signature: {e}")))?;
        if bytes.len() as u64 > limit {
            return Err(error(413, "SIZE_INVALID", format!("a signature is at most {MAX_SIGNATURE_SIZE} bytes")));
        }
        let bad = |m: String| error(400, "SIGNATURE_INVALID", m);
        let s: Incoming = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a signature record: {e}")))?;
        if s.version != 2 || s.kind != "atomic" {
            return Err(bad(format!("signature records of schema {} and type {:?} are not kept", s.version, s.kind)));
        }
        if !s.name.starts_with(&format!("{d}@")) {
            return Err(bad(format!("signature name {:?} does not name manifest {d}", s.name)));
        }
        let sig = base64::engine::general_purpose::STANDARD
            .decode(s.content.as_bytes())
            .map_err(|e| bad(format!("the content is not base64: {e}")))?;
        if sig.is_empty() {
            return Err(bad("the signature is empty".into()));
        }
        if self.find_manifest(name, &Reference::Digest(d.clone()))?.is_none() {
            return Ok(error(404, "MANIFEST_UNKNOWN", format!("manifest {name}@{d} is not known; push it first")));
        }
        let repo = name.to_string();
        if !self.backend.add_signature(&repo, d, &sig, MAX_SIGNATURES)? {
            return Err(error(
                400,
                "SIGNATURE_INVALID",
                format!("manifest {name}@{d} already has {MAX_SIGNATURES} signatures"),
            ));
        }
        Ok(Response::new(201))
    }
}
