//! Sigstore (cosign) signatures as containers/image reads and writes them:
//! the payload (`cosign container image signature`), public keys, cosign's
//! encrypted private keys, and the `\0sigstore-json\n` file format.

pub use super::sigjson::SignatureError;
use super::sigjson::{self, invalid, Json};
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

/// Checks a Fulcio-certified signature with its Rekor bundle, offline.
/// Not built yet: it refuses every signature, saying so.
pub fn verify_with_fulcio(
    _payload: &[u8],
    _annotations: &BTreeMap<String, String>,
    _ca_pem: &[u8],
    _oidc_issuer: &str,
    _subject_email: &str,
    _rekor_key: &PublicKey,
) -> Result<(Payload, String), SignatureError> {
    Err(SignatureError::Unsupported("checking Fulcio certificates and Rekor bundles".into()))
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
        let doc = Json::parse(&body).map_err(|e| key_err(format!("the encrypted key: {e}")))?;
        let m = |e: SignatureError| {
            key_err(format!("the encrypted key: {}", e.to_string().trim_start_matches("invalid signature: ")))
        };
        let [kdf, cipher, ciphertext] = doc.exact_fields("the key", ["kdf", "cipher", "ciphertext"]).map_err(m)?;
        let [kname, params, salt] = kdf.exact_fields("field \"kdf\"", ["name", "params", "salt"]).map_err(m)?;
        let [cname, nonce] = cipher.exact_fields("field \"cipher\"", ["name", "nonce"]).map_err(m)?;
        let [n, r, p] = params.exact_fields("field \"kdf.params\"", ["N", "r", "p"]).map_err(m)?;
        if kname.string("kdf.name").map_err(m)? != "scrypt"
            || cname.string("cipher.name").map_err(m)? != "nacl/secretbox"
        {
            return Err(key_err("the encrypted key uses a KDF or cipher other than scrypt and nacl/secretbox".into()));
        }
        let num = |v: &Json| match v {
            Json::Number(x) if *x >= 1.0 && *x <= (1u64 << 53) as f64 && x.fract() == 0.0 => Ok(*x as u64),
            _ => Err(key_err("the encrypted key's scrypt parameters are not positive integers".into())),
        };
        let (n, r, p) = (num(n)?, num(r)?, num(p)?);
        if !n.is_power_of_two() || n < 2 || n.trailing_zeros() as u8 > SCRYPT_MAX_LOG_N || r > 8 || p > 4 {
            return Err(key_err(format!("the encrypted key's scrypt parameters N={n} r={r} p={p} are out of range")));
        }
        let b64 = |v: &Json, what: &str| -> Result<Vec<u8>, SignatureError> {
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
    let doc = Json::parse(json)?;
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
            "annotations" => {
                if *v != Json::Null {
                    for (ak, av) in v.object("field \"annotations\"")? {
                        annotations.insert(ak.clone(), av.string("an annotation")?.to_owned());
                    }
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
