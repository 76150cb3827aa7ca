//! Sigstore (cosign) signatures as containers/image reads and writes them:
//! the payload (`cosign container image signature`), public keys, cosign's
//! encrypted private keys, and the `\0sigstore-json\n` file format.

use super::json::{self, Node, Value};
pub use super::sigjson::SignatureError;
use super::sigjson::{self, invalid, parse_json};
use crate::digest::Digest;
use base64::Engine;
use std::collections::BTreeMap;

/// The media type of a sigstore signature layer (its payload).
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The layer annotation holding a Fulcio certificate (PEM).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// The layer annotation holding the certificate's chain (PEM).
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// The layer annotation holding a Rekor bundle (JSON).
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// The `critical.type` of a sigstore payload.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";

const FILE_PREFIX: &[u8] = b"\x00sigstore-json\n";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The tag cosign attaches signatures of `digest` under: `sha256-<hex>.sig`.
pub fn attachment_tag(digest: &Digest) -> String {
    format!("sha256-{}.sig", digest.hex())
}

/// What a sigstore payload claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub identity: String,
    pub manifest_digest: Digest,
}

/// The payload containers/image writes, without the optional fields.
pub fn payload(identity: &str, digest: &Digest) -> Vec<u8> {
    sigjson::write_claims(SIGNATURE_TYPE, identity, digest, None, None)
}

/// The payload with containers/image's optional `creator` and `timestamp`.
pub fn payload_with(identity: &str, digest: &Digest, creator: &str, timestamp: i64) -> Vec<u8> {
    sigjson::write_claims(SIGNATURE_TYPE, identity, digest, Some(creator), Some(timestamp))
}

/// Reads a payload as containers/image's `sigstore_payload.go` does
/// (`"optional": null`, as cosign writes, is accepted).
pub fn parse_payload(bytes: &[u8]) -> Result<Payload, SignatureError> {
    let c = sigjson::parse_claims(bytes, SIGNATURE_TYPE, true)?;
    Ok(Payload { identity: c.identity, manifest_digest: c.manifest_digest })
}

#[derive(Debug, Clone)]
enum Key {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// A sigstore public key: ECDSA P-256 or P-384, or Ed25519.
#[derive(Debug, Clone)]
pub struct PublicKey {
    key: Key,
    der: Vec<u8>,
}

const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";

fn pem_decode(bytes: &[u8], what: &str) -> Result<(String, Vec<u8>), SignatureError> {
    // Text before the PEM block (as Go's pem.Decode skips it) is ignored.
    let start = bytes
        .windows(11)
        .position(|w| w == b"-----BEGIN ")
        .ok_or_else(|| SignatureError::Key(format!("{what} is not PEM (no \"-----BEGIN\" line)")))?;
    let text =
        std::str::from_utf8(&bytes[start..]).map_err(|_| SignatureError::Key(format!("{what} is not PEM text")))?;
    let (label, der) = pkcs8::der::pem::decode_vec(text.trim_end().as_bytes())
        .map_err(|e| SignatureError::Key(format!("{what} is not valid PEM: {e}")))?;
    Ok((label.to_owned(), der))
}

impl PublicKey {
    /// Reads a PKIX `PUBLIC KEY` PEM block, as `cosign generate-key-pair`
    /// writes `cosign.pub`.
    pub fn parse_pem(bytes: &[u8]) -> Result<PublicKey, SignatureError> {
        let (label, der) = pem_decode(bytes, "the public key")?;
        if label != "PUBLIC KEY" {
            return Err(SignatureError::Key(format!(
                "PEM block {label:?} is not a \"PUBLIC KEY\"; give the cosign.pub file"
            )));
        }
        PublicKey::from_der(&der)
    }

    /// Reads a DER SubjectPublicKeyInfo.
    pub fn from_der(der: &[u8]) -> Result<PublicKey, SignatureError> {
        use pkcs8::der::Decode;
        let bad = |e: &dyn std::fmt::Display| SignatureError::Key(format!("not a valid public key: {e}"));
        let spki = pkcs8::spki::SubjectPublicKeyInfoRef::from_der(der).map_err(|e| bad(&e))?;
        let alg = spki.algorithm.oid.to_string();
        let bits = spki.subject_public_key.as_bytes().ok_or_else(|| bad(&"unaligned key bits"))?;
        let key = match alg.as_str() {
            OID_EC => {
                let curve = spki.algorithm.parameters_oid().map_err(|e| bad(&e))?.to_string();
                match curve.as_str() {
                    OID_P256 => Key::P256(p256::ecdsa::VerifyingKey::from_sec1_bytes(bits).map_err(|e| bad(&e))?),
                    OID_P384 => Key::P384(p384::ecdsa::VerifyingKey::from_sec1_bytes(bits).map_err(|e| bad(&e))?),
                    c => {
                        return Err(SignatureError::Key(format!(
                            "elliptic curve {c} is not supported (P-256 and P-384 are)"
                        )))
                    }
                }
            }
            OID_ED25519 => {
                let b: [u8; 32] = bits.try_into().map_err(|_| bad(&"an Ed25519 key is 32 bytes"))?;
                Key::Ed25519(ed25519_dalek::VerifyingKey::from_bytes(&b).map_err(|e| bad(&e))?)
            }
            a => {
                return Err(SignatureError::Key(format!(
                    "public key algorithm {a} is not supported (ECDSA P-256, P-384 and Ed25519 are)"
                )))
            }
        };
        Ok(PublicKey { key, der: der.to_vec() })
    }

    /// The SHA-256 of the key's DER, hex: how img names the signer.
    pub fn id(&self) -> String {
        Digest::of_bytes(&self.der).hex().to_owned()
    }

    /// The key as PEM.
    pub fn to_pem(&self) -> String {
        pkcs8::der::pem::encode_string("PUBLIC KEY", pkcs8::LineEnding::LF, &self.der).unwrap_or_default()
    }

    /// Checks `sig` over `data`: ECDSA over its SHA-256 (DER, or the fixed
    /// r‖s form), or Ed25519 over the data itself.
    pub fn verify(&self, data: &[u8], sig: &[u8]) -> Result<(), SignatureError> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        use sha2::Digest as _;
        let bad = || invalid("the signature does not match the payload and the trusted key");
        match &self.key {
            Key::P256(k) => {
                let s = p256::ecdsa::Signature::from_der(sig)
                    .or_else(|_| p256::ecdsa::Signature::from_slice(sig))
                    .map_err(|_| bad())?;
                k.verify_prehash(&sha2::Sha256::digest(data), &s).map_err(|_| bad())
            }
            Key::P384(k) => {
                let s = p384::ecdsa::Signature::from_der(sig)
                    .or_else(|_| p384::ecdsa::Signature::from_slice(sig))
                    .map_err(|_| bad())?;
                k.verify_prehash(&sha2::Sha256::digest(data), &s).map_err(|_| bad())
            }
            Key::Ed25519(k) => {
                let s = ed25519_dalek::Signature::from_slice(sig).map_err(|_| bad())?;
                k.verify_strict(data, &s).map_err(|_| bad())
            }
        }
    }
}

impl PublicKey {
    /// Checks a certificate's signature made with `alg` (ECDSA with
    /// SHA-256 or SHA-384, or Ed25519) over `tbs`.
    fn verify_cert_signature(&self, alg: &str, tbs: &[u8], sig: &[u8]) -> bool {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        use sha2::Digest as _;
        let hash: Vec<u8> = match alg {
            "1.2.840.10045.4.3.2" => sha2::Sha256::digest(tbs).to_vec(),
            "1.2.840.10045.4.3.3" => sha2::Sha384::digest(tbs).to_vec(),
            "1.3.101.112" => return matches!(self.key, Key::Ed25519(_)) && self.verify(tbs, sig).is_ok(),
            _ => return false,
        };
        match &self.key {
            Key::P256(k) => {
                p256::ecdsa::Signature::from_der(sig).map(|s| k.verify_prehash(&hash, &s).is_ok()).unwrap_or(false)
            }
            Key::P384(k) => {
                p384::ecdsa::Signature::from_der(sig).map(|s| k.verify_prehash(&hash, &s).is_ok()).unwrap_or(false)
            }
            Key::Ed25519(_) => false,
        }
    }
}

fn signature_bytes(annotations: &BTreeMap<String, String>) -> Result<Vec<u8>, SignatureError> {
    let b64 = annotations
        .get(SIGNATURE_ANNOTATION)
        .ok_or_else(|| invalid(format!("missing {SIGNATURE_ANNOTATION} annotation")))?;
    B64.decode(b64).map_err(|e| invalid(format!("annotation {SIGNATURE_ANNOTATION} is not base64: {e}")))
}

/// Checks a sigstore signature (the layer's payload and annotations)
/// with a trusted public key, then reads the payload. The identity and
/// digest it claims are not checked here.
pub fn verify_with_key(
    payload: &[u8],
    annotations: &BTreeMap<String, String>,
    key: &PublicKey,
) -> Result<Payload, SignatureError> {
    if payload.len() as u64 > super::MAX_SIGNATURE_SIZE {
        return Err(SignatureError::TooLarge { size: payload.len() as u64, max: super::MAX_SIGNATURE_SIZE });
    }
    let sig = signature_bytes(annotations)?;
    key.verify(payload, &sig)?;
    parse_payload(payload)
}

/// Checks a key-signed signature that must also be logged in Rekor: the
/// bundle annotation's SignedEntryTimestamp must be signed by `rekor_key`
/// and its entry must record this signature, payload and key (as
/// containers/image does when a policy gives both a key and a Rekor key).
pub fn verify_with_key_and_rekor(
    payload: &[u8],
    annotations: &BTreeMap<String, String>,
    key: &PublicKey,
    rekor_key: &PublicKey,
) -> Result<Payload, SignatureError> {
    let bundle = annotations
        .get(BUNDLE_ANNOTATION)
        .ok_or_else(|| invalid(format!("missing {BUNDLE_ANNOTATION} annotation (the Rekor bundle)")))?;
    let sig = signature_bytes(annotations)?;
    verify_rekor_set(rekor_key, bundle.as_bytes(), &key.der, &sig, payload)?;
    verify_with_key(payload, annotations, key)
}

/// RFC 8785 canonical JSON of `v` (integers only: a Rekor payload has no
/// other numbers).
fn canonical_json(v: &Value, out: &mut Vec<u8>) -> Result<(), SignatureError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(_) => {
            let n = v.as_f64().unwrap_or(f64::NAN);
            if n.fract() != 0.0 || n.abs() >= 1e21 || !n.is_finite() {
                return Err(invalid("the Rekor bundle holds a non-integer number"));
            }
            out.extend_from_slice(format!("{}", n as i128).as_bytes())
        }
        Value::String(s) => out.extend_from_slice(serde_json::to_string(s).unwrap_or_default().as_bytes()),
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(&x.value, out)?;
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            let mut sorted: Vec<&(String, Node)> = fields.iter().collect();
            sorted.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (k, x)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(serde_json::to_string(k).unwrap_or_default().as_bytes());
                out.push(b':');
                canonical_json(&x.value, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// The string at `path` in the Rekor entry, read laxly (other fields and
/// objects ignored), as Go's generated Rekor models read the entry body.
fn str_at<'a>(v: &'a Node, path: &[&str]) -> Result<&'a str, SignatureError> {
    let mut cur = v;
    for p in path {
        cur = cur.value.get(p).ok_or_else(|| invalid(format!("the Rekor entry has no field {:?}", path.join("."))))?;
    }
    cur.value.as_str().ok_or_else(|| invalid(format!("the Rekor entry's field {:?} is not a string", path.join("."))))
}

/// Checks a Rekor bundle (containers/image's `VerifyRekorSET`) and
/// returns the entry's integrated time (Unix seconds). `key_or_cert_der`
/// is the DER of the public key or certificate the entry must name.
fn verify_rekor_set(
    rekor_key: &PublicKey,
    bundle: &[u8],
    key_or_cert_der: &[u8],
    sig: &[u8],
    payload: &[u8],
) -> Result<i64, SignatureError> {
    let doc = parse_json(bundle, "the Rekor bundle")?;
    let [set, set_payload] = doc.exact_fields("the Rekor bundle", ["SignedEntryTimestamp", "Payload"])?;
    let set = B64
        .decode(set.string("field \"SignedEntryTimestamp\"")?)
        .map_err(|e| invalid(format!("the Rekor bundle's SignedEntryTimestamp is not base64: {e}")))?;
    let mut canonical = Vec::new();
    canonical_json(&set_payload.value, &mut canonical)?;
    let (Key::P256(_) | Key::P384(_)) = rekor_key.key else {
        return Err(invalid("the Rekor public key is not an ECDSA key"));
    };
    rekor_key
        .verify(&canonical, &set)
        .map_err(|_| invalid("the Rekor bundle's SignedEntryTimestamp is not signed by the trusted Rekor key"))?;

    let verified = parse_json(&canonical, "the Rekor bundle's Payload")?;
    let [body, time, _index, log_id] =
        verified.exact_fields("the Rekor bundle's Payload", ["body", "integratedTime", "logIndex", "logID"])?;
    log_id.string("Rekor field \"logID\"")?;
    let integrated = match time.value.as_f64() {
        Some(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => n as i64,
        _ => return Err(invalid("the Rekor bundle's integratedTime is not an integer")),
    };
    let body = B64
        .decode(body.string("Rekor field \"body\"")?)
        .map_err(|e| invalid(format!("the Rekor entry body is not base64: {e}")))?;
    let entry = parse_json(&body, "the Rekor entry body")?;
    if str_at(&entry, &["kind"])? != "hashedrekord" {
        return Err(invalid("the Rekor entry is not a hashedrekord"));
    }
    let version = str_at(&entry, &["apiVersion"])?;
    if version != "0.0.1" {
        return Err(invalid(format!("unsupported hashedrekord version {version:?}")));
    }
    let pem = B64
        .decode(str_at(&entry, &["spec", "signature", "publicKey", "content"])?)
        .map_err(|e| invalid(format!("the Rekor entry's public key is not base64: {e}")))?;
    let (_, logged) = pem_decode(&pem, "the Rekor entry's public key").map_err(|e| invalid(e.to_string()))?;
    if logged != key_or_cert_der {
        return Err(invalid("the public key or certificate in the Rekor entry does not match the signature's"));
    }
    let logged_sig = B64
        .decode(str_at(&entry, &["spec", "signature", "content"])?)
        .map_err(|e| invalid(format!("the Rekor entry's signature is not base64: {e}")))?;
    if logged_sig != sig {
        return Err(invalid("the signature in the Rekor entry does not match"));
    }
    let alg = str_at(&entry, &["spec", "data", "hash", "algorithm"])?;
    if alg != "sha256" {
        return Err(invalid(format!("unexpected Rekor data.hash.algorithm {alg:?}")));
    }
    if str_at(&entry, &["spec", "data", "hash", "value"])? != Digest::of_bytes(payload).hex() {
        return Err(invalid("the payload in the Rekor entry does not match"));
    }
    Ok(integrated)
}

/// Certificates in PEM text, in order; anything but certificates is refused.
fn pem_certificates(bytes: &[u8], what: &str) -> Result<Vec<(Vec<u8>, x509_cert::Certificate)>, SignatureError> {
    use pkcs8::der::Decode;
    let text = std::str::from_utf8(bytes).map_err(|_| invalid(format!("{what} is not PEM text")))?;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let end_marker =
            rest[start..].find("-----END ").ok_or_else(|| invalid(format!("{what}: a PEM block has no END line")))?
                + start;
        let end = rest[end_marker..].find('\n').map(|i| end_marker + i + 1).unwrap_or(rest.len());
        let (label, der) = pkcs8::der::pem::decode_vec(rest[start..end].trim_end().as_bytes())
            .map_err(|e| invalid(format!("{what} is not valid PEM: {e}")))?;
        if label != "CERTIFICATE" {
            return Err(invalid(format!("{what} holds a {label:?} PEM block, not a certificate")));
        }
        let cert = x509_cert::Certificate::from_der(&der)
            .map_err(|e| invalid(format!("{what}: not a valid certificate: {e}")))?;
        out.push((der, cert));
        rest = &rest[end..];
        if out.len() > 32 {
            return Err(invalid(format!("{what} holds more than 32 certificates")));
        }
    }
    Ok(out)
}

const OID_FULCIO_ISSUER: &str = "1.3.6.1.4.1.57264.1.1";
const OID_BASIC_CONSTRAINTS: &str = "2.5.29.19";
const OID_KEY_USAGE: &str = "2.5.29.15";
const OID_EXT_KEY_USAGE: &str = "2.5.29.37";
const OID_SAN: &str = "2.5.29.17";
const OID_CODE_SIGNING: &str = "1.3.6.1.5.5.7.3.3";
const OID_ANY_EKU: &str = "2.5.29.37.0";

fn extensions(c: &x509_cert::Certificate) -> &[x509_cert::ext::Extension] {
    c.tbs_certificate.extensions.as_deref().unwrap_or(&[])
}

/// Whether `c` was valid at `t`, is not refused for its critical
/// extensions, and allows code signing (when it limits key usages).
fn usable(c: &x509_cert::Certificate, t: i64) -> Result<(), String> {
    use pkcs8::der::Decode;
    let v = &c.tbs_certificate.validity;
    if t < v.not_before.to_unix_duration().as_secs() as i64 || t > v.not_after.to_unix_duration().as_secs() as i64 {
        return Err("it was not valid when the signature was logged".into());
    }
    for e in extensions(c) {
        let oid = e.extn_id.to_string();
        if e.critical
            && ![OID_BASIC_CONSTRAINTS, OID_KEY_USAGE, OID_EXT_KEY_USAGE, OID_SAN, "2.5.29.14", "2.5.29.35"]
                .contains(&oid.as_str())
        {
            return Err(format!("it has an unknown critical extension {oid}"));
        }
        if oid == OID_EXT_KEY_USAGE {
            let eku = x509_cert::ext::pkix::ExtendedKeyUsage::from_der(e.extn_value.as_bytes())
                .map_err(|e| format!("bad extended key usage: {e}"))?;
            if !eku.0.iter().any(|o| [OID_CODE_SIGNING, OID_ANY_EKU].contains(&o.to_string().as_str())) {
                return Err("its extended key usage does not allow code signing".into());
            }
        }
    }
    Ok(())
}

fn is_ca(c: &x509_cert::Certificate) -> bool {
    use pkcs8::der::Decode;
    extensions(c).iter().any(|e| {
        e.extn_id.to_string() == OID_BASIC_CONSTRAINTS
            && x509_cert::ext::pkix::BasicConstraints::from_der(e.extn_value.as_bytes()).map(|b| b.ca).unwrap_or(false)
    })
}

/// Whether `issuer` signed `c`.
fn signed_by(c: &x509_cert::Certificate, issuer: &x509_cert::Certificate) -> bool {
    use pkcs8::der::Encode;
    if c.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return false;
    }
    let (Ok(tbs), Ok(spki)) = (c.tbs_certificate.to_der(), issuer.tbs_certificate.subject_public_key_info.to_der())
    else {
        return false;
    };
    let Ok(key) = PublicKey::from_der(&spki) else { return false };
    let Some(sig) = c.signature.as_bytes() else { return false };
    key.verify_cert_signature(&c.signature_algorithm.oid.to_string(), &tbs, sig)
}

/// Finds a path from `c` to a root in `roots` through `intermediates`,
/// every certificate usable at `t`.
fn chains_to(
    c: &x509_cert::Certificate,
    intermediates: &[x509_cert::Certificate],
    roots: &[x509_cert::Certificate],
    t: i64,
    depth: usize,
) -> bool {
    if depth > 8 {
        return false;
    }
    for r in roots {
        if is_ca(r) && usable(r, t).is_ok() && signed_by(c, r) {
            return true;
        }
    }
    intermediates.iter().any(|i| {
        is_ca(i) && usable(i, t).is_ok() && signed_by(c, i) && chains_to(i, intermediates, roots, t, depth + 1)
    })
}

/// Checks a Fulcio-certified signature offline, as containers/image does:
/// the Rekor bundle is signed by `rekor_key` and records this signature,
/// payload and certificate; the certificate chains (through the chain
/// annotation) to a CA of `ca_pem` at the bundle's integrated time,
/// allows code signing, names `oidc_issuer` in Fulcio's issuer extension
/// and `subject_email` among its email addresses; and its key signed the
/// payload. Returns the payload and the signer (the email address).
pub fn verify_with_fulcio(
    payload: &[u8],
    annotations: &BTreeMap<String, String>,
    ca_pem: &[u8],
    oidc_issuer: &str,
    subject_email: &str,
    rekor_key: &PublicKey,
) -> Result<(Payload, String), SignatureError> {
    use pkcs8::der::{Decode, Encode};
    let cert_pem = annotations
        .get(CERTIFICATE_ANNOTATION)
        .ok_or_else(|| invalid(format!("missing {CERTIFICATE_ANNOTATION} annotation (the Fulcio certificate)")))?;
    let bundle = annotations
        .get(BUNDLE_ANNOTATION)
        .ok_or_else(|| invalid(format!("missing {BUNDLE_ANNOTATION} annotation (the Rekor bundle)")))?;
    let sig = signature_bytes(annotations)?;
    let mut leaf = pem_certificates(cert_pem.as_bytes(), "the certificate annotation")?;
    if leaf.len() != 1 {
        return Err(invalid(format!("the certificate annotation holds {} certificates, not one", leaf.len())));
    }
    let (leaf_der, leaf) = leaf.remove(0);
    let time = verify_rekor_set(rekor_key, bundle.as_bytes(), &leaf_der, &sig, payload)?;

    // The chain's last certificate is its root: only the CA file is trusted.
    let mut intermediates: Vec<x509_cert::Certificate> = match annotations.get(CHAIN_ANNOTATION) {
        Some(chain) => {
            pem_certificates(chain.as_bytes(), "the chain annotation")?.into_iter().map(|(_, c)| c).collect()
        }
        None => Vec::new(),
    };
    intermediates.pop();
    let roots: Vec<x509_cert::Certificate> = pem_certificates(ca_pem, "the Fulcio CA file")
        .map_err(|e| SignatureError::Key(e.to_string()))?
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    if roots.is_empty() {
        return Err(SignatureError::Key("the Fulcio CA file holds no certificate".into()));
    }
    usable(&leaf, time).map_err(|e| invalid(format!("the Fulcio certificate is refused: {e}")))?;
    if !chains_to(&leaf, &intermediates, &roots, time, 0) {
        return Err(invalid(
            "the Fulcio certificate is not issued by the trusted CA (at the time Rekor logged the signature)",
        ));
    }

    let mut issuer = None;
    for e in extensions(&leaf) {
        if e.extn_id.to_string() == OID_FULCIO_ISSUER {
            if issuer.is_some() {
                return Err(invalid("the Fulcio certificate has a duplicate OIDC issuer extension"));
            }
            issuer = Some(String::from_utf8_lossy(e.extn_value.as_bytes()).into_owned());
        }
    }
    let issuer = issuer.ok_or_else(|| invalid("the Fulcio certificate has no OIDC issuer extension"))?;
    if issuer != oidc_issuer {
        return Err(invalid(format!("unexpected Fulcio OIDC issuer {issuer:?} (the policy wants {oidc_issuer:?})")));
    }
    let mut emails = Vec::new();
    for e in extensions(&leaf).iter().filter(|e| e.extn_id.to_string() == OID_SAN) {
        let san = x509_cert::ext::pkix::SubjectAltName::from_der(e.extn_value.as_bytes())
            .map_err(|e| invalid(format!("the certificate's subject alternative name: {e}")))?;
        for n in san.0 {
            if let x509_cert::ext::pkix::name::GeneralName::Rfc822Name(m) = n {
                emails.push(m.to_string());
            }
        }
    }
    if !emails.iter().any(|m| m == subject_email) {
        return Err(invalid(format!(
            "required email {subject_email} not found in the certificate (it has {emails:?})"
        )));
    }
    let spki = leaf
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| invalid(format!("the certificate's key: {e}")))?;
    let key = PublicKey::from_der(&spki).map_err(|e| invalid(format!("the certificate's key: {e}")))?;
    let p = verify_with_key(payload, annotations, &key)?;
    Ok((p, subject_email.to_owned()))
}

/// A sigstore signing key: ECDSA P-256, as cosign makes.
#[derive(Clone)]
pub struct PrivateKey(p256::ecdsa::SigningKey);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(P-256)")
    }
}

/// The PEM label cosign 2 and containers/image write.
pub const PRIVATE_KEY_PEM: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The label older cosign wrote; read as well.
pub const COSIGN_PRIVATE_KEY_PEM: &str = "ENCRYPTED COSIGN PRIVATE KEY";

// scrypt parameters cosign writes (N = 2^15, r = 8, p = 1), and the most
// img spends reading a key.
const SCRYPT_LOG_N: u8 = 15;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
const SCRYPT_MAX_LOG_N: u8 = 18;

fn scrypt_key(passphrase: &[u8], salt: &[u8], log_n: u8, r: u32, p: u32) -> Result<[u8; 32], SignatureError> {
    let params =
        scrypt::Params::new(log_n, r, p, 32).map_err(|e| SignatureError::Key(format!("bad scrypt parameters: {e}")))?;
    let mut out = [0u8; 32];
    scrypt::scrypt(passphrase, salt, &params, &mut out).map_err(|e| SignatureError::Key(format!("scrypt: {e}")))?;
    Ok(out)
}

impl PrivateKey {
    /// A new random key.
    pub fn generate() -> PrivateKey {
        PrivateKey(p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng))
    }

    /// Reads cosign's encrypted key file: a PEM block holding JSON with
    /// the scrypt parameters and salt and a NaCl secretbox over the key's
    /// PKCS#8 DER.
    pub fn from_encrypted_pem(bytes: &[u8], passphrase: &[u8]) -> Result<PrivateKey, SignatureError> {
        use crypto_secretbox::aead::{Aead, KeyInit};
        let key_err = |m: String| SignatureError::Key(m);
        let (label, body) = pem_decode(bytes, "the private key")?;
        if label != PRIVATE_KEY_PEM && label != COSIGN_PRIVATE_KEY_PEM {
            return Err(key_err(format!("PEM block {label:?} is not an encrypted sigstore private key; make one with `cosign generate-key-pair`")));
        }
        let doc = json::parse_bytes(&body, sigjson::MAX_DEPTH)
            .map_err(|e| key_err(format!("the encrypted key is not valid JSON: {} at byte {}", e.message, e.at)))?;
        let m = |e: json::ShapeError| key_err(format!("the encrypted key: {e}"));
        let [kdf, cipher, ciphertext] = doc.exact_fields("the key", ["kdf", "cipher", "ciphertext"]).map_err(m)?;
        let [kname, params, salt] = kdf.exact_fields("field \"kdf\"", ["name", "params", "salt"]).map_err(m)?;
        let [cname, nonce] = cipher.exact_fields("field \"cipher\"", ["name", "nonce"]).map_err(m)?;
        let [n, r, p] = params.exact_fields("field \"kdf.params\"", ["N", "r", "p"]).map_err(m)?;
        if kname.string("kdf.name").map_err(m)? != "scrypt"
            || cname.string("cipher.name").map_err(m)? != "nacl/secretbox"
        {
            return Err(key_err("the encrypted key uses a KDF or cipher other than scrypt and nacl/secretbox".into()));
        }
        let num = |v: &Node| match v.value.as_f64() {
            Some(x) if x >= 1.0 && x <= (1u64 << 53) as f64 && x.fract() == 0.0 => Ok(x as u64),
            _ => Err(key_err("the encrypted key's scrypt parameters are not positive integers".into())),
        };
        let (n, r, p) = (num(n)?, num(r)?, num(p)?);
        if !n.is_power_of_two() || n < 2 || n.trailing_zeros() as u8 > SCRYPT_MAX_LOG_N || r > 8 || p > 4 {
            return Err(key_err(format!("the encrypted key's scrypt parameters N={n} r={r} p={p} are out of range")));
        }
        let b64 = |v: &Node, what: &str| -> Result<Vec<u8>, SignatureError> {
            B64.decode(v.string(what).map_err(m)?)
                .map_err(|e| key_err(format!("the encrypted key's {what} is not base64: {e}")))
        };
        let (salt, nonce, ciphertext) =
            (b64(salt, "kdf.salt")?, b64(nonce, "cipher.nonce")?, b64(ciphertext, "ciphertext")?);
        if nonce.len() != 24 {
            return Err(key_err("the encrypted key's nonce is not 24 bytes".into()));
        }
        let k = scrypt_key(passphrase, &salt, n.trailing_zeros() as u8, r as u32, p as u32)?;
        let der = crypto_secretbox::XSalsa20Poly1305::new(&k.into())
            .decrypt(crypto_secretbox::Nonce::from_slice(&nonce), ciphertext.as_slice())
            .map_err(|_| key_err("cannot decrypt the private key: wrong passphrase, or a damaged key file".into()))?;
        use pkcs8::DecodePrivateKey;
        let sk = p256::ecdsa::SigningKey::from_pkcs8_der(&der).map_err(|e| {
            key_err(format!("the decrypted private key is not an ECDSA P-256 key (only those are supported): {e}"))
        })?;
        Ok(PrivateKey(sk))
    }

    /// Writes the key as cosign does (`ENCRYPTED SIGSTORE PRIVATE KEY`).
    pub fn to_encrypted_pem(&self, passphrase: &[u8]) -> String {
        self.to_encrypted_pem_labelled(passphrase, PRIVATE_KEY_PEM)
    }

    /// [`to_encrypted_pem`](Self::to_encrypted_pem) with another PEM label
    /// ([`COSIGN_PRIVATE_KEY_PEM`] for readers older than cosign 2).
    pub fn to_encrypted_pem_labelled(&self, passphrase: &[u8], label: &str) -> String {
        use crypto_secretbox::aead::{Aead, KeyInit};
        use pkcs8::EncodePrivateKey;
        use rand::RngCore;
        let der = self.0.to_pkcs8_der().map(|d| d.as_bytes().to_vec()).unwrap_or_default();
        let mut salt = [0u8; 32];
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let k = scrypt_key(passphrase, &salt, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P).unwrap_or([0; 32]);
        let ct = crypto_secretbox::XSalsa20Poly1305::new(&k.into())
            .encrypt(crypto_secretbox::Nonce::from_slice(&nonce), der.as_slice())
            .unwrap_or_default();
        let json = serde_json::json!({
            "kdf": {"name": "scrypt", "params": {"N": 1u64 << SCRYPT_LOG_N, "r": SCRYPT_R, "p": SCRYPT_P}, "salt": B64.encode(salt)},
            "cipher": {"name": "nacl/secretbox", "nonce": B64.encode(nonce)},
            "ciphertext": B64.encode(ct),
        });
        pkcs8::der::pem::encode_string(label, pkcs8::LineEnding::LF, &sigjson::go_json(&json)).unwrap_or_default()
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        use pkcs8::EncodePublicKey;
        let vk = *self.0.verifying_key();
        let der = vk.to_public_key_der().map(|d| d.as_bytes().to_vec()).unwrap_or_default();
        PublicKey { key: Key::P256(vk), der }
    }

    /// The public half as a `PUBLIC KEY` PEM, as `cosign.pub`.
    pub fn public_pem(&self) -> String {
        self.public_key().to_pem()
    }

    /// Signs `payload`: ECDSA P-256 over its SHA-256, DER, base64 (the
    /// value of [`SIGNATURE_ANNOTATION`]).
    pub fn sign(&self, payload: &[u8]) -> String {
        use p256::ecdsa::signature::Signer;
        let sig: p256::ecdsa::Signature = self.0.sign(payload);
        B64.encode(sig.to_der().as_bytes())
    }
}

/// Reads a signature as containers/image stores it (a `dir:` image's
/// `signature-N`): `\0sigstore-json\n` and JSON with `mimeType`,
/// `payload` (base64) and `annotations`. Returns payload and annotations.
pub fn parse_sigstore_file(bytes: &[u8]) -> Result<(Vec<u8>, BTreeMap<String, String>), SignatureError> {
    if bytes.len() as u64 > super::MAX_SIGNATURE_SIZE {
        return Err(SignatureError::TooLarge { size: bytes.len() as u64, max: super::MAX_SIGNATURE_SIZE });
    }
    let json = bytes
        .strip_prefix(FILE_PREFIX)
        .ok_or_else(|| invalid("not a sigstore signature file (no \\0sigstore-json prefix)"))?;
    let doc = parse_json(json, "the signature file")?;
    let mut mime = None;
    let mut payload = None;
    let mut annotations = BTreeMap::new();
    for (k, v) in doc.object("the signature file")? {
        match k.as_str() {
            "mimeType" => mime = Some(v.string("field \"mimeType\"")?),
            "payload" => {
                payload = Some(
                    B64.decode(v.string("field \"payload\"")?)
                        .map_err(|e| invalid(format!("field \"payload\" is not base64: {e}")))?,
                )
            }
            "annotations" if v.value != Value::Null => {
                for (ak, av) in v.object("field \"annotations\"")? {
                    annotations.insert(ak.clone(), av.string("an annotation")?.to_owned());
                }
            }
            _ => {}
        }
    }
    match mime {
        Some(PAYLOAD_MEDIA_TYPE) => {}
        Some(m) => return Err(invalid(format!("signature media type {m:?} is not {PAYLOAD_MEDIA_TYPE:?}"))),
        None => return Err(invalid("the signature file has no field \"mimeType\"")),
    }
    Ok((payload.unwrap_or_default(), annotations))
}

/// Writes a signature as containers/image stores it (see
/// [`parse_sigstore_file`]).
pub fn sigstore_file(payload: &[u8], annotations: &BTreeMap<String, String>) -> Vec<u8> {
    let ann = serde_json::Value::Object(annotations.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect());
    let mut out = FILE_PREFIX.to_vec();
    out.extend_from_slice(b"{\"mimeType\":");
    out.extend_from_slice(&sigjson::go_json(&PAYLOAD_MEDIA_TYPE.into()));
    out.extend_from_slice(b",\"payload\":");
    out.extend_from_slice(&sigjson::go_json(&B64.encode(payload).into()));
    out.extend_from_slice(b",\"annotations\":");
    out.extend_from_slice(&sigjson::go_json(&ann));
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::TestDir;
    use std::process::Command;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn digest() -> Digest {
        Digest::parse(D).unwrap()
    }

    fn signed(k: &PrivateKey, payload: &[u8]) -> BTreeMap<String, String> {
        BTreeMap::from([(SIGNATURE_ANNOTATION.to_owned(), k.sign(payload))])
    }

    #[test]
    fn payload_and_tag_are_as_containers_image_writes_them() {
        assert_eq!(
            attachment_tag(&digest()),
            "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.sig"
        );
        let p = payload("example.com/a:b", &digest());
        assert_eq!(
            String::from_utf8(p.clone()).unwrap(),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"example.com/a:b"}},"image":{{"docker-manifest-digest":"{D}"}},"type":"cosign container image signature"}},"optional":{{}}}}"#
            )
        );
        assert_eq!(
            parse_payload(&p).unwrap(),
            Payload { identity: "example.com/a:b".into(), manifest_digest: digest() }
        );
        // As cosign writes it.
        let cosign = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"example.com/a"}},"image":{{"docker-manifest-digest":"{D}"}},"type":"cosign container image signature"}},"optional":null}}"#
        );
        assert_eq!(parse_payload(cosign.as_bytes()).unwrap().identity, "example.com/a");
        assert!(parse_payload(&payload_with("x", &digest(), "c", 1)).is_ok());
        assert!(parse_payload(&crate::trust::simple::payload("x", &digest(), "c", 1))
            .unwrap_err()
            .to_string()
            .contains("unrecognized signature type"));
    }

    #[test]
    fn signs_and_verifies_with_keys() {
        let k = PrivateKey::generate();
        let public = PublicKey::parse_pem(k.public_pem().as_bytes()).unwrap();
        assert_eq!(public.id(), k.public_key().id());
        assert_eq!(public.id().len(), 64);
        let p = payload("example.com/a:b", &digest());
        let ann = signed(&k, &p);
        assert_eq!(verify_with_key(&p, &ann, &public).unwrap().identity, "example.com/a:b");

        let other = PrivateKey::generate().public_key();
        for (payload, ann, key, want) in [
            (p.clone(), ann.clone(), &other, "does not match"),
            (payload("example.com/a:c", &digest()), ann.clone(), &public, "does not match"),
            (p.clone(), BTreeMap::new(), &public, "missing dev.cosignproject.cosign/signature"),
            (p.clone(), BTreeMap::from([(SIGNATURE_ANNOTATION.to_owned(), "!!".to_owned())]), &public, "not base64"),
            (
                p.clone(),
                BTreeMap::from([(SIGNATURE_ANNOTATION.to_owned(), "AAAA".to_owned())]),
                &public,
                "does not match",
            ),
            (b"{}".to_vec(), signed(&k, b"{}"), &public, "no field \"critical\""),
        ] {
            let err = verify_with_key(&payload, &ann, key).unwrap_err().to_string();
            assert!(err.contains(want), "{err} (wanted {want})");
        }
    }

    #[test]
    fn reads_p384_and_ed25519_keys() {
        use p384::ecdsa::signature::hazmat::PrehashSigner;
        use pkcs8::EncodePublicKey;
        use sha2::Digest as _;
        let p = payload("example.com/a:b", &digest());
        // P-384, signing the SHA-256 as containers/image hard-codes.
        let sk = p384::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let der = sk.verifying_key().to_public_key_der();
        let der = match der {
            Ok(d) => d.as_bytes().to_vec(),
            Err(_) => return,
        };
        let key = PublicKey::from_der(&der).unwrap();
        let sig: p384::ecdsa::Signature = sk.sign_prehash(&sha2::Sha256::digest(&p)).unwrap();
        let ann = BTreeMap::from([(SIGNATURE_ANNOTATION.to_owned(), B64.encode(sig.to_der().as_bytes()))]);
        assert!(verify_with_key(&p, &ann, &key).is_ok());
        // Ed25519 over the payload.
        let ek = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let mut spki = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
        spki.extend_from_slice(ek.verifying_key().as_bytes());
        let pem = pkcs8::der::pem::encode_string("PUBLIC KEY", pkcs8::LineEnding::LF, &spki).unwrap();
        let key = PublicKey::parse_pem(pem.as_bytes()).unwrap();
        use ed25519_dalek::Signer;
        let ann = BTreeMap::from([(SIGNATURE_ANNOTATION.to_owned(), B64.encode(ek.sign(&p).to_bytes()))]);
        assert!(verify_with_key(&p, &ann, &key).is_ok());
    }

    #[test]
    fn public_key_refuses_what_is_not_one() {
        let k = PrivateKey::generate();
        for (input, want) in [
            ("".to_owned(), "not PEM"),
            ("hello".to_owned(), "not PEM"),
            ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_owned(), "not a valid public key"),
            (k.public_pem().replace("PUBLIC KEY", "CERTIFICATE"), "is not a \"PUBLIC KEY\""),
            (k.to_encrypted_pem(b"x"), "is not a \"PUBLIC KEY\""),
        ] {
            let err = PublicKey::parse_pem(input.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{err} (wanted {want})");
        }
        // Text around the block is ignored, as Go's pem.Decode does.
        assert!(PublicKey::parse_pem(format!("comment\n{}\n\n", k.public_pem()).as_bytes()).is_ok());
    }

    #[test]
    fn encrypted_private_keys_round_trip_and_refuse_a_wrong_passphrase() {
        let k = PrivateKey::generate();
        let pem = k.to_encrypted_pem(b"pass");
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let back = PrivateKey::from_encrypted_pem(pem.as_bytes(), b"pass").unwrap();
        assert_eq!(back.public_key().id(), k.public_key().id());
        let err = PrivateKey::from_encrypted_pem(pem.as_bytes(), b"wrong").unwrap_err().to_string();
        assert!(err.contains("wrong passphrase"), "{err}");
        let old = k.to_encrypted_pem_labelled(b"", COSIGN_PRIVATE_KEY_PEM);
        assert!(PrivateKey::from_encrypted_pem(old.as_bytes(), b"").is_ok());
        // Hostile parameters are refused before scrypt runs.
        let big = br#"{"kdf":{"name":"scrypt","params":{"N":1099511627776,"r":8,"p":1},"salt":""},"cipher":{"name":"nacl/secretbox","nonce":""},"ciphertext":""}"#;
        let pem = pkcs8::der::pem::encode_string(PRIVATE_KEY_PEM, pkcs8::LineEnding::LF, big).unwrap();
        let err = PrivateKey::from_encrypted_pem(pem.as_bytes(), b"").unwrap_err().to_string();
        assert!(err.contains("out of range"), "{err}");
    }

    #[test]
    fn sigstore_files_round_trip() {
        let ann = BTreeMap::from([("a".to_owned(), "<b>".to_owned())]);
        let f = sigstore_file(b"payload", &ann);
        assert_eq!(
            f,
            b"\x00sigstore-json\n{\"mimeType\":\"application/vnd.dev.cosign.simplesigning.v1+json\",\"payload\":\"cGF5bG9hZA==\",\"annotations\":{\"a\":\"\\u003cb\\u003e\"}}".to_vec()
        );
        assert_eq!(parse_sigstore_file(&f).unwrap(), (b"payload".to_vec(), ann));
        for bad in [
            &b""[..],
            b"{}",
            b"\x00sigstore-json\n{\"mimeType\":\"x\",\"payload\":\"\"}",
            b"\x00sigstore-json\n{\"payload\":\"!\"}",
            b"\x00sigstore-json\n[]",
        ] {
            assert!(parse_sigstore_file(bad).is_err());
        }
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = PublicKey::parse_pem(&data);
            let _ = PublicKey::from_der(&data);
            let _ = parse_sigstore_file(&data);
            let mut prefixed = FILE_PREFIX.to_vec();
            prefixed.extend_from_slice(&data);
            let _ = parse_sigstore_file(&prefixed);
            let _ = parse_payload(&data);
        }
    }

    #[test]
    fn verification_is_fast() {
        let k = PrivateKey::generate();
        let pem = k.public_pem();
        let p = payload("example.com/a:b", &digest());
        let ann = signed(&k, &p);
        let n = 50;
        let start = std::time::Instant::now();
        for _ in 0..n {
            let key = PublicKey::parse_pem(pem.as_bytes()).unwrap();
            verify_with_key(&p, &ann, &key).unwrap();
        }
        let each = start.elapsed() / n;
        eprintln!("sigstore signature verification (P-256, key parsed each time): {each:?} each");
        assert!(each < std::time::Duration::from_millis(10), "{each:?}");
    }

    mod pki {
        //! Certificates and Rekor bundles made in the test, as Fulcio and
        //! Rekor would.
        use super::super::*;
        use pkcs8::der::asn1::{BitString, Ia5String, OctetString};
        use pkcs8::der::{Encode, EncodePem};
        use pkcs8::EncodePublicKey;
        use std::str::FromStr;
        use x509_cert::ext::pkix::name::GeneralName;
        use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, SubjectAltName};
        use x509_cert::ext::Extension;
        use x509_cert::name::Name;
        use x509_cert::serial_number::SerialNumber;
        use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
        use x509_cert::time::{Time, Validity};

        pub struct Issued {
            pub key: p256::ecdsa::SigningKey,
            pub cert: x509_cert::Certificate,
        }

        impl Issued {
            pub fn pem(&self) -> String {
                self.cert.to_pem(pkcs8::LineEnding::LF).unwrap()
            }
        }

        fn ext(oid: &str, critical: bool, value: Vec<u8>) -> Extension {
            Extension { extn_id: oid.parse().unwrap(), critical, extn_value: OctetString::new(value).unwrap() }
        }

        fn time(t: i64) -> Time {
            Time::UtcTime(
                pkcs8::der::asn1::UtcTime::from_unix_duration(std::time::Duration::from_secs(t as u64)).unwrap(),
            )
        }

        pub enum Kind<'a> {
            Ca,
            Leaf { email: &'a str, issuer: &'a str, code_signing: bool },
        }

        /// A certificate for `subject`, valid from `from` to `to`, signed
        /// by `by` (or by itself).
        pub fn issue(subject: &str, kind: Kind<'_>, from: i64, to: i64, by: Option<&Issued>) -> Issued {
            let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
            let spki_der = key.verifying_key().to_public_key_der().unwrap();
            let spki = <SubjectPublicKeyInfoOwned as pkcs8::der::Decode>::from_der(spki_der.as_bytes()).unwrap();
            let alg = AlgorithmIdentifierOwned { oid: "1.2.840.10045.4.3.2".parse().unwrap(), parameters: None };
            let mut exts = Vec::new();
            match kind {
                Kind::Ca => exts.push(ext(
                    OID_BASIC_CONSTRAINTS,
                    true,
                    BasicConstraints { ca: true, path_len_constraint: None }.to_der().unwrap(),
                )),
                Kind::Leaf { email, issuer, code_signing } => {
                    let san = SubjectAltName(vec![GeneralName::Rfc822Name(Ia5String::new(email).unwrap())]);
                    exts.push(ext(OID_SAN, true, san.to_der().unwrap()));
                    let eku = if code_signing { OID_CODE_SIGNING } else { "1.3.6.1.5.5.7.3.1" };
                    exts.push(ext(
                        OID_EXT_KEY_USAGE,
                        false,
                        ExtendedKeyUsage(vec![eku.parse().unwrap()]).to_der().unwrap(),
                    ));
                    exts.push(ext(OID_FULCIO_ISSUER, false, issuer.as_bytes().to_vec()));
                }
            }
            let subject = Name::from_str(&format!("CN={subject}")).unwrap();
            let tbs = x509_cert::TbsCertificate {
                version: x509_cert::Version::V3,
                serial_number: SerialNumber::new(&[1, 2, 3]).unwrap(),
                signature: alg.clone(),
                issuer: by.map(|b| b.cert.tbs_certificate.subject.clone()).unwrap_or_else(|| subject.clone()),
                validity: Validity { not_before: time(from), not_after: time(to) },
                subject,
                subject_public_key_info: spki,
                issuer_unique_id: None,
                subject_unique_id: None,
                extensions: Some(exts),
            };
            let signer = by.map(|b| &b.key).unwrap_or(&key);
            let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(signer, &tbs.to_der().unwrap());
            let cert = x509_cert::Certificate {
                tbs_certificate: tbs,
                signature_algorithm: alg,
                signature: BitString::from_bytes(sig.to_der().as_bytes()).unwrap(),
            };
            Issued { key, cert }
        }

        /// A Rekor bundle for a hashedrekord entry of `sig` over `payload`
        /// by the key or certificate `pem`, logged at `t`.
        pub fn bundle(rekor: &PrivateKey, pem: &str, sig_b64: &str, payload: &[u8], t: i64) -> String {
            let body = serde_json::json!({
                "apiVersion": "0.0.1", "kind": "hashedrekord",
                "spec": {
                    "data": {"hash": {"algorithm": "sha256", "value": Digest::of_bytes(payload).hex()}},
                    "signature": {"content": sig_b64, "publicKey": {"content": B64.encode(pem)}},
                },
            });
            let entry = serde_json::json!({"body": B64.encode(body.to_string()), "integratedTime": t, "logIndex": 7, "logID": "c0ffee"});
            // serde_json's maps are sorted and these keys are ASCII: this is
            // the canonical form.
            let set = rekor.sign(entry.to_string().as_bytes());
            serde_json::json!({"SignedEntryTimestamp": set, "Payload": entry}).to_string()
        }
    }

    const NOW: i64 = 1_700_000_000;
    const ISSUER: &str = "https://accounts.example.com";
    const EMAIL: &str = "dev@example.com";

    struct Fulcio {
        root: pki::Issued,
        rekor: PrivateKey,
        payload: Vec<u8>,
        annotations: BTreeMap<String, String>,
    }

    fn fulcio_signature(leaf_kind: pki::Kind<'_>, leaf_from: i64, leaf_to: i64, logged_at: i64) -> Fulcio {
        let root = pki::issue("root", pki::Kind::Ca, NOW - 1000, NOW + 100_000, None);
        let mid = pki::issue("intermediate", pki::Kind::Ca, NOW - 1000, NOW + 100_000, Some(&root));
        let leaf = pki::issue("", leaf_kind, leaf_from, leaf_to, Some(&mid));
        let rekor = PrivateKey::generate();
        let signer = PrivateKey(leaf.key.clone());
        let payload = payload("example.com/a:b", &digest());
        let sig = signer.sign(&payload);
        let annotations = BTreeMap::from([
            (SIGNATURE_ANNOTATION.to_owned(), sig.clone()),
            (CERTIFICATE_ANNOTATION.to_owned(), leaf.pem()),
            (CHAIN_ANNOTATION.to_owned(), format!("{}{}", mid.pem(), root.pem())),
            (BUNDLE_ANNOTATION.to_owned(), pki::bundle(&rekor, &leaf.pem(), &sig, &payload, logged_at)),
        ]);
        Fulcio { root, rekor, payload, annotations }
    }

    fn good_leaf() -> pki::Kind<'static> {
        pki::Kind::Leaf { email: EMAIL, issuer: ISSUER, code_signing: true }
    }

    #[test]
    fn fulcio_signatures_are_checked_offline() {
        let f = fulcio_signature(good_leaf(), NOW - 60, NOW + 540, NOW);
        let check = |f: &Fulcio, ann: &BTreeMap<String, String>, ca: &str, issuer: &str, email: &str| {
            verify_with_fulcio(&f.payload, ann, ca.as_bytes(), issuer, email, &f.rekor.public_key())
                .map_err(|e| e.to_string())
        };
        let ca = f.root.pem();
        let (p, signer) = check(&f, &f.annotations, &ca, ISSUER, EMAIL).unwrap();
        assert_eq!((p.identity.as_str(), signer.as_str()), ("example.com/a:b", EMAIL));
        let timing = std::time::Instant::now();
        for _ in 0..20 {
            check(&f, &f.annotations, &ca, ISSUER, EMAIL).unwrap();
        }
        eprintln!("fulcio signature verification: {:?} each", timing.elapsed() / 20);

        let err = check(&f, &f.annotations, &ca, "https://other", EMAIL).unwrap_err();
        assert!(err.contains("unexpected Fulcio OIDC issuer"), "{err}");
        let err = check(&f, &f.annotations, &ca, ISSUER, "other@example.com").unwrap_err();
        assert!(err.contains("required email"), "{err}");
        let other_root = pki::issue("root", pki::Kind::Ca, NOW - 1000, NOW + 100_000, None);
        let err = check(&f, &f.annotations, &other_root.pem(), ISSUER, EMAIL).unwrap_err();
        assert!(err.contains("not issued by the trusted CA"), "{err}");
        let err = verify_with_fulcio(
            &f.payload,
            &f.annotations,
            ca.as_bytes(),
            ISSUER,
            EMAIL,
            &PrivateKey::generate().public_key(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not signed by the trusted Rekor key"), "{err}");
        // Without the chain, the leaf does not reach the root.
        let mut no_chain = f.annotations.clone();
        no_chain.remove(CHAIN_ANNOTATION);
        assert!(check(&f, &no_chain, &ca, ISSUER, EMAIL).unwrap_err().contains("not issued by the trusted CA"));
        for gone in [CERTIFICATE_ANNOTATION, BUNDLE_ANNOTATION, SIGNATURE_ANNOTATION] {
            let mut a = f.annotations.clone();
            a.remove(gone);
            assert!(check(&f, &a, &ca, ISSUER, EMAIL).unwrap_err().contains(gone));
        }
        // A bundle for another payload or signature does not match.
        let mut swapped = f.annotations.clone();
        let other_payload = payload("example.com/a:c", &digest());
        swapped.insert(
            BUNDLE_ANNOTATION.into(),
            pki::bundle(
                &f.rekor,
                &f.annotations[CERTIFICATE_ANNOTATION],
                &f.annotations[SIGNATURE_ANNOTATION],
                &other_payload,
                NOW,
            ),
        );
        assert!(check(&f, &swapped, &ca, ISSUER, EMAIL)
            .unwrap_err()
            .contains("payload in the Rekor entry does not match"));
        // A tampered bundle payload breaks the SignedEntryTimestamp.
        let mut tampered = f.annotations.clone();
        tampered.insert(
            BUNDLE_ANNOTATION.into(),
            f.annotations[BUNDLE_ANNOTATION].replace("\"logIndex\":7", "\"logIndex\":8"),
        );
        assert!(check(&f, &tampered, &ca, ISSUER, EMAIL).unwrap_err().contains("not signed by the trusted Rekor key"));
    }

    #[test]
    fn fulcio_certificates_must_be_valid_when_logged_and_allow_code_signing() {
        let f = fulcio_signature(good_leaf(), NOW - 60, NOW + 540, NOW + 600);
        let err = verify_with_fulcio(
            &f.payload,
            &f.annotations,
            f.root.pem().as_bytes(),
            ISSUER,
            EMAIL,
            &f.rekor.public_key(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not valid when the signature was logged"), "{err}");
        let f = fulcio_signature(
            pki::Kind::Leaf { email: EMAIL, issuer: ISSUER, code_signing: false },
            NOW - 60,
            NOW + 540,
            NOW,
        );
        let err = verify_with_fulcio(
            &f.payload,
            &f.annotations,
            f.root.pem().as_bytes(),
            ISSUER,
            EMAIL,
            &f.rekor.public_key(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("code signing"), "{err}");
    }

    #[test]
    fn keys_with_rekor_need_a_matching_bundle() {
        let k = PrivateKey::generate();
        let rekor = PrivateKey::generate();
        let p = payload("example.com/a:b", &digest());
        let sig = k.sign(&p);
        let mut ann = BTreeMap::from([(SIGNATURE_ANNOTATION.to_owned(), sig.clone())]);
        let err = verify_with_key_and_rekor(&p, &ann, &k.public_key(), &rekor.public_key()).unwrap_err().to_string();
        assert!(err.contains(BUNDLE_ANNOTATION), "{err}");
        ann.insert(BUNDLE_ANNOTATION.into(), pki::bundle(&rekor, &k.public_pem(), &sig, &p, NOW));
        assert!(verify_with_key_and_rekor(&p, &ann, &k.public_key(), &rekor.public_key()).is_ok());
        let other = PrivateKey::generate();
        ann.insert(BUNDLE_ANNOTATION.into(), pki::bundle(&rekor, &other.public_pem(), &sig, &p, NOW));
        let err = verify_with_key_and_rekor(&p, &ann, &k.public_key(), &rekor.public_key()).unwrap_err().to_string();
        assert!(err.contains("does not match the signature's"), "{err}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Damaged copies of a valid Fulcio signature (its payload, or any
        /// annotation): refused or accepted, never a panic.
        #[test]
        fn damaged_fulcio_signatures_never_panic(which in 0usize..5, edits in proptest::collection::vec((0usize..4096, 0x20u8..0x7f, 0u8..3), 1..6)) {
            static FIXTURE: std::sync::OnceLock<Fulcio> = std::sync::OnceLock::new();
            let f = FIXTURE.get_or_init(|| fulcio_signature(good_leaf(), NOW - 60, NOW + 540, NOW));
            let mut payload = f.payload.clone();
            let mut ann = f.annotations.clone();
            let key = [SIGNATURE_ANNOTATION, CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION, BUNDLE_ANNOTATION].get(which).copied();
            let mut d = match key {
                Some(k) => ann[k].clone().into_bytes(),
                None => payload.clone(),
            };
            for (at, byte, op) in &edits {
                let at = at % (d.len() + 1);
                match op {
                    0 if at < d.len() => d[at] = *byte,
                    1 => d.insert(at, *byte),
                    _ if at < d.len() => { d.remove(at); }
                    _ => {}
                }
            }
            match key {
                Some(k) => { ann.insert(k.to_owned(), String::from_utf8_lossy(&d).into_owned()); }
                None => payload = d,
            }
            let ca = f.root.pem();
            let _ = verify_with_fulcio(&payload, &ann, ca.as_bytes(), ISSUER, EMAIL, &f.rekor.public_key());
        }
    }

    #[test]
    fn canonical_json_sorts_and_escapes() {
        let v = json::parse(r#"{"b":[1,true,null],"a":"x\u0001\"/\u00e9","A":-5}"#).unwrap();
        let mut out = Vec::new();
        canonical_json(&v.value, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "{\"A\":-5,\"a\":\"x\\u0001\\\"/\u{e9}\",\"b\":[1,true,null]}");
        assert!(canonical_json(&json::parse("1.5").unwrap().value, &mut Vec::new()).is_err());
    }

    /// A one-image OCI layout with no layers, for skopeo to copy.
    fn oci_layout(dir: &std::path::Path) -> Digest {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |b: &[u8]| {
            let d = Digest::of_bytes(b);
            std::fs::write(blobs.join(d.hex()), b).unwrap();
            (d, b.len())
        };
        let (cd, cl) = put(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cl}}},"layers":[]}}"#
        );
        let (md, ml) = put(manifest.as_bytes());
        std::fs::write(
            dir.join("index.json"),
            format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{ml},"annotations":{{"org.opencontainers.image.ref.name":"latest"}}}}]}}"#),
        )
        .unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        md
    }

    #[test]
    fn interoperates_with_skopeo() {
        if Command::new("skopeo").arg("--version").output().is_err() {
            eprintln!("skopeo is not installed: skipping");
            return;
        }
        let dir = TestDir::new("sigstore-skopeo");
        let md = oci_layout(&dir.join("oci"));
        let k = PrivateKey::generate();
        std::fs::write(dir.join("pass"), "secret words").unwrap();
        let mut accepted = Vec::new();
        for label in [PRIVATE_KEY_PEM, COSIGN_PRIVATE_KEY_PEM] {
            let key = dir.join(format!("key-{}", label.split(' ').nth(1).unwrap()));
            std::fs::write(&key, k.to_encrypted_pem_labelled(b"secret words", label)).unwrap();
            let out_dir = dir.join(format!("out-{}", label.split(' ').nth(1).unwrap()));
            let out = Command::new("skopeo")
                .args(["copy", "--quiet", "--sign-identity", "example.com/ns/img:1", "--sign-by-sigstore-private-key"])
                .arg(&key)
                .arg("--sign-passphrase-file")
                .arg(dir.join("pass"))
                .arg(format!("oci:{}:latest", dir.join("oci").display()))
                .arg(format!("dir:{}", out_dir.display()))
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stderr).contains("sigstore disabled") {
                eprintln!("this skopeo is built without sigstore signing: skipping");
                return;
            }
            if !out.status.success() {
                eprintln!("skopeo refused a key labelled {label:?}: {}", String::from_utf8_lossy(&out.stderr));
                continue;
            }
            accepted.push(label);
            let names: Vec<String> = std::fs::read_dir(&out_dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            let file = names
                .iter()
                .find(|n| n.starts_with("signature"))
                .unwrap_or_else(|| panic!("no signature file in {names:?}"));
            let (payload, annotations) = parse_sigstore_file(&std::fs::read(out_dir.join(file)).unwrap()).unwrap();
            let got =
                verify_with_key(&payload, &annotations, &PublicKey::parse_pem(k.public_pem().as_bytes()).unwrap())
                    .unwrap();
            assert_eq!(got, Payload { identity: "example.com/ns/img:1".into(), manifest_digest: md.clone() });
            // And our writer reproduces what skopeo wrote, byte for byte.
            assert_eq!(sigstore_file(&payload, &annotations), std::fs::read(out_dir.join(file)).unwrap());
        }
        eprintln!("skopeo accepted keys labelled {accepted:?}");
        assert!(!accepted.is_empty());
    }
}
