//! OpenPGP "simple signing": an OpenPGP signed message whose literal data
//! is an `atomic container signature` JSON payload (containers/image's
//! `signature/simple.go`), made and checked with the `pgp` crate.

pub use super::sigjson::SignatureError;
use super::sigjson::{self, invalid};
use super::MAX_SIGNATURE_SIZE;
use crate::digest::Digest;
use pgp::composed::{Deserializable, Message, MessageBuilder, PublicOrSecret, SignedPublicKey, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::Signature as PgpSignature;
use pgp::types::{KeyDetails, Password, VerifyingKey};
use std::io::Read;

/// The `critical.type` of a simple signature payload.
pub const SIGNATURE_TYPE: &str = "atomic container signature";

/// One or more OpenPGP public keys (a `gpg --export` file).
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Reads public keys, ASCII-armored or binary, one or many. Secret keys
    /// are taken as their public halves. Bytes holding no key are refused.
    pub fn parse(bytes: &[u8]) -> Result<Keyring, SignatureError> {
        let bad = |e: pgp::errors::Error| {
            SignatureError::Key(format!(
                "not an OpenPGP public key file ({e}); export one with `gpg --export --armor FINGERPRINT`"
            ))
        };
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(SignatureError::Key(
                "the key file is empty; export a key with `gpg --export --armor FINGERPRINT`".into(),
            ));
        }
        // Concatenated armored files (`cat a.asc b.asc`) are read block
        // by block; a binary file is one packet stream.
        let mut pieces = Vec::new();
        if bytes.first().is_some_and(|b| b & 0x80 != 0) {
            pieces.push(bytes);
        } else {
            let marker = b"-----BEGIN PGP ";
            let starts: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i..].starts_with(marker)).collect();
            if starts.is_empty() {
                pieces.push(bytes);
            }
            for (n, &at) in starts.iter().enumerate() {
                pieces.push(&bytes[at..starts.get(n + 1).copied().unwrap_or(bytes.len())]);
            }
        }
        let mut keys = Vec::new();
        for piece in pieces {
            let (iter, _) = PublicOrSecret::from_reader_many_buf(piece).map_err(bad)?;
            for k in iter {
                match k.map_err(bad)? {
                    PublicOrSecret::Public(k) => keys.push(k),
                    PublicOrSecret::Secret(k) => keys.push(k.to_public_key()),
                }
            }
        }
        if keys.is_empty() {
            return Err(SignatureError::Key(
                "no OpenPGP public key found in the key file; export one with `gpg --export --armor FINGERPRINT`"
                    .into(),
            ));
        }
        Ok(Keyring { keys })
    }

    /// The fingerprints of the primary keys, upper-case hex.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(|k| format!("{:X}", k.primary_key.fingerprint())).collect()
    }

    /// Adds the keys of `other`.
    pub fn merge(&mut self, other: Keyring) {
        self.keys.extend(other.keys);
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// What a simple signature claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub identity: String,
    pub manifest_digest: Digest,
    pub creator: Option<String>,
    pub timestamp: Option<i64>,
}

/// The payload containers/image signs: `{"critical": {...}, "optional":
/// {"creator", "timestamp"}}`, keys sorted as Go writes them.
pub fn payload(identity: &str, digest: &Digest, creator: &str, timestamp: i64) -> Vec<u8> {
    sigjson::write_claims(SIGNATURE_TYPE, identity, digest, Some(creator), Some(timestamp))
}

/// Reads a payload strictly (containers/image's `strictUnmarshalJSON`).
pub fn parse_payload(bytes: &[u8]) -> Result<Payload, SignatureError> {
    let c = sigjson::parse_claims(bytes, SIGNATURE_TYPE, false)?;
    Ok(Payload { identity: c.identity, manifest_digest: c.manifest_digest, creator: c.creator, timestamp: c.timestamp })
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Key expiry from the newest self-signature that states one.
fn expired(created: i64, sigs: &[&PgpSignature], at: i64) -> bool {
    let newest = sigs
        .iter()
        .filter(|s| s.key_expiration_time().is_some())
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0));
    match newest.and_then(|s| s.key_expiration_time()) {
        Some(d) if d.as_secs() > 0 => created.saturating_add(d.as_secs() as i64) < at,
        _ => false,
    }
}

/// The keys of `k` that may have made a data signature: the primary key,
/// and each subkey whose binding signature is valid and allows signing.
/// Revoked and expired keys are left out.
fn signing_keys(k: &SignedPublicKey, at: i64) -> Vec<(&dyn VerifyingKey, String)> {
    let mut out: Vec<(&dyn VerifyingKey, String)> = Vec::new();
    if !k.details.revocation_signatures.is_empty() {
        return out;
    }
    let self_sigs: Vec<&PgpSignature> =
        k.details.users.iter().flat_map(|u| u.signatures.iter()).chain(k.details.direct_signatures.iter()).collect();
    if expired(k.primary_key.created_at().as_secs() as i64, &self_sigs, at) {
        return out;
    }
    out.push((&k.primary_key, format!("{:X}", k.primary_key.fingerprint())));
    for sk in &k.public_subkeys {
        let binds: Vec<&PgpSignature> =
            sk.signatures.iter().filter(|s| s.typ() == Some(pgp::packet::SignatureType::SubkeyBinding)).collect();
        let revoked = sk.signatures.iter().any(|s| s.typ() == Some(pgp::packet::SignatureType::SubkeyRevocation));
        if revoked || binds.is_empty() || !binds.iter().any(|s| s.key_flags().sign()) {
            continue;
        }
        if expired(sk.key.created_at().as_secs() as i64, &binds, at) || sk.verify_bindings(&k.primary_key).is_err() {
            continue;
        }
        out.push((&sk.key, format!("{:X}", sk.key.fingerprint())));
    }
    out
}

fn check_size(len: usize) -> Result<(), SignatureError> {
    if len as u64 > MAX_SIGNATURE_SIZE {
        return Err(SignatureError::TooLarge { size: len as u64, max: MAX_SIGNATURE_SIZE });
    }
    Ok(())
}

/// Checks an OpenPGP signed message (binary or armored, compressed or not)
/// against `keys` and returns its payload and the fingerprint of the key
/// that signed (a subkey's when a subkey signed). The identity and digest
/// the payload claims are not checked here.
pub fn verify(signature: &[u8], keys: &Keyring) -> Result<(Payload, String), SignatureError> {
    check_size(signature.len())?;
    let content = verified_content(signature, keys)?;
    let (content, fingerprint) = content;
    Ok((parse_payload(&content)?, fingerprint))
}

fn verified_content(signature: &[u8], keys: &Keyring) -> Result<(Vec<u8>, String), SignatureError> {
    // rPGP's parse errors can carry the input bytes (nom's Debug): only the
    // words before them are shown.
    let bad = |e: pgp::errors::Error| {
        let text = e.to_string();
        let cut = text.find(" Error(").or_else(|| text.find("input: [")).unwrap_or(text.len());
        let words: String = text[..cut].chars().take(160).collect();
        invalid(format!("not an OpenPGP signed message: {}", words.trim_end_matches([' ', ':'])))
    };
    let armored = signature.trim_ascii_start().starts_with(b"-----BEGIN PGP");
    let mut msg = if armored {
        Message::from_armor(signature).map_err(bad)?.0
    } else {
        Message::from_bytes(signature).map_err(bad)?
    };
    for _ in 0..4 {
        if !msg.is_compressed() {
            break;
        }
        msg = msg.decompress().map_err(bad)?;
    }
    if !msg.is_signed() {
        return Err(invalid("the OpenPGP message is not signed"));
    }
    let mut content = Vec::new();
    (&mut msg)
        .take(MAX_SIGNATURE_SIZE + 1)
        .read_to_end(&mut content)
        .map_err(|e| invalid(format!("reading the signed data: {e}")))?;
    check_size(content.len())?;
    let at = now();
    let mut tried = 0;
    for k in &keys.keys {
        for (key, fingerprint) in signing_keys(k, at) {
            tried += 1;
            let Ok(sig) = msg.verify(key) else { continue };
            if let (Some(created), Some(life)) = (sig.created(), sig.signature_expiration_time()) {
                if life.as_secs() > 0 && (created.as_secs() as i64).saturating_add(life.as_secs() as i64) < at {
                    return Err(invalid(format!("the signature by {fingerprint} has expired")));
                }
            }
            return Ok((content, fingerprint));
        }
    }
    if tried == 0 {
        return Err(invalid("no key of the keyring can sign (all are revoked or expired)"));
    }
    Err(invalid("the signature was not made by any key of the trusted keyring"))
}

/// Signs `payload` with an OpenPGP secret key (as `gpg --export-secret-keys`
/// writes, armored or binary): a binary, uncompressed one-pass signed
/// message as `gpg --sign` makes. The primary key signs when it may,
/// else the first signing subkey.
pub fn sign(payload: &[u8], secret_key: &[u8], passphrase: Option<&str>) -> Result<Vec<u8>, SignatureError> {
    let bad = |e: pgp::errors::Error| {
        SignatureError::Key(format!(
            "not an OpenPGP secret key ({e}); export one with `gpg --export-secret-keys FINGERPRINT`"
        ))
    };
    let (key, _) = SignedSecretKey::from_reader_single(secret_key).map_err(bad)?;
    let primary_signs = key
        .details
        .users
        .iter()
        .flat_map(|u| u.signatures.iter())
        .all(|s| s.key_flags().sign() || s.key_flags() == Default::default());
    let pw = || passphrase.map(Password::from).unwrap_or_else(Password::empty);
    let locked = |e: String| SignatureError::Sign(format!("cannot unlock the secret key ({e}); check the passphrase"));
    let signer: &dyn pgp::types::SigningKey = if primary_signs {
        key.primary_key
            .unlock(&pw(), |_, _| Ok(()))
            .map_err(|e| locked(e.to_string()))?
            .map_err(|e| locked(e.to_string()))?;
        &key.primary_key
    } else {
        match key.secret_subkeys.iter().find(|s| s.signatures.iter().any(|b| b.key_flags().sign())) {
            Some(s) => {
                s.key
                    .unlock(&pw(), |_, _| Ok(()))
                    .map_err(|e| locked(e.to_string()))?
                    .map_err(|e| locked(e.to_string()))?;
                &s.key
            }
            None => return Err(SignatureError::Key(
                "the secret key has no key that may sign; make one with `gpg --quick-add-key FINGERPRINT default sign`"
                    .into(),
            )),
        }
    };
    let mut builder = MessageBuilder::from_bytes("", payload.to_vec());
    builder.sign(signer, pw(), HashAlgorithm::Sha256);
    builder.to_vec(rand::thread_rng()).map_err(|e| SignatureError::Sign(e.to_string()))
}

/// A keyring of one fresh key, for the fuzz target.
#[doc(hidden)]
pub fn fuzz_keyring() -> Keyring {
    use pgp::composed::{KeyType, SecretKeyParamsBuilder};
    let key = SecretKeyParamsBuilder::default()
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id("Fuzz <fuzz@example.com>".into())
        .build()
        .ok()
        .and_then(|p| p.generate(rand::thread_rng()).ok())
        .expect("generating an Ed25519 key");
    Keyring { keys: vec![key.to_public_key()] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::TestDir;
    use crate::trust::gpg::tests::{have_gpg, make_key, stop_agent};
    use pgp::composed::{KeyType, SecretKeyParamsBuilder};
    use std::path::Path;
    use std::process::Command;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn digest() -> Digest {
        Digest::parse(D).unwrap()
    }

    /// A fresh Ed25519 secret key made by rPGP, binary.
    fn rpgp_key() -> (Vec<u8>, Keyring) {
        let params = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id("Test <t@example.com>".into())
            .build()
            .unwrap();
        let key = params.generate(rand::thread_rng()).unwrap();
        let secret = pgp::ser::Serialize::to_bytes(&key).unwrap();
        let public = pgp::ser::Serialize::to_bytes(&key.to_public_key()).unwrap();
        (secret, Keyring::parse(&public).unwrap())
    }

    #[test]
    fn invalid_armour_is_refused_without_dumping_its_bytes() {
        let ring = fuzz_keyring();
        let bad = b"-----BEGIN PGP MESSAGE-----\n\n!!!! not base64 !!!!\n-----END PGP MESSAGE-----\n";
        let e = verify(bad, &ring).unwrap_err().to_string();
        assert!(e.starts_with("invalid signature: not an OpenPGP signed message"), "{e}");
        assert!(!e.contains("input: [") && !e.contains("33, 33"), "{e}");
    }

    #[test]
    fn payload_is_written_as_containers_image_writes_it() {
        let p = payload("example.com/ns/img:1", &digest(), "img 1", 1700000000);
        assert_eq!(
            String::from_utf8(p.clone()).unwrap(),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"example.com/ns/img:1"}},"image":{{"docker-manifest-digest":"{D}"}},"type":"atomic container signature"}},"optional":{{"creator":"img 1","timestamp":1700000000}}}}"#
            )
        );
        let back = parse_payload(&p).unwrap();
        assert_eq!(
            back,
            Payload {
                identity: "example.com/ns/img:1".into(),
                manifest_digest: digest(),
                creator: Some("img 1".into()),
                timestamp: Some(1700000000)
            }
        );
        assert!(parse_payload(&p.clone().into_iter().map(|b| if b == b'a' { b'b' } else { b }).collect::<Vec<_>>())
            .is_err());
    }

    #[test]
    fn signs_and_verifies_and_refuses_tampering() {
        let (secret, keyring) = rpgp_key();
        let p = payload("example.com/a:b", &digest(), "img", 1);
        let sig = sign(&p, &secret, None).unwrap();
        let (got, fpr) = verify(&sig, &keyring).unwrap();
        assert_eq!(got.identity, "example.com/a:b");
        assert_eq!(fpr, keyring.fingerprints()[0]);

        // Another key does not verify it; merged into the keyring, the first still does.
        let (_, mut other) = rpgp_key();
        assert!(verify(&sig, &other).unwrap_err().to_string().contains("not made by any key"));
        other.merge(keyring.clone());
        assert_eq!(other.len(), 2);
        assert!(verify(&sig, &other).is_ok());

        // Any flipped byte is refused, never a panic.
        for i in 0..sig.len() {
            let mut bad = sig.clone();
            bad[i] ^= 0x01;
            if let Ok((p2, _)) = verify(&bad, &keyring) {
                // A flip in an unhashed field (e.g. the literal data's file
                // name or date) keeps the signature valid; the payload must
                // then be the same.
                assert_eq!(p2, got, "flip at {i} changed the payload");
            }
        }
        assert!(matches!(
            verify(&vec![0u8; (MAX_SIGNATURE_SIZE + 1) as usize], &keyring),
            Err(SignatureError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_compressed_message_is_read_only_up_to_the_bound() {
        let (secret, keyring) = rpgp_key();
        let (key, _) = SignedSecretKey::from_reader_single(&secret[..]).unwrap();
        let mut b = MessageBuilder::from_bytes("", vec![b' '; (MAX_SIGNATURE_SIZE + 100) as usize]);
        b.compression(pgp::types::CompressionAlgorithm::ZLIB);
        b.sign(&key.primary_key, Password::empty(), HashAlgorithm::Sha256);
        let bomb = b.to_vec(rand::thread_rng()).unwrap();
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let err = verify(&bomb, &keyring).unwrap_err();
        assert!(matches!(err, SignatureError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn keyrings_hold_many_keys_binary_or_armored() {
        let keys: Vec<SignedPublicKey> = (0..2).map(|_| rpgp_key().1.keys.remove(0)).collect();
        let binary: Vec<u8> = keys.iter().flat_map(|k| pgp::ser::Serialize::to_bytes(k).unwrap()).collect();
        let want: Vec<String> = keys.iter().map(|k| format!("{:X}", k.primary_key.fingerprint())).collect();
        assert_eq!(Keyring::parse(&binary).unwrap().fingerprints(), want);
        let armored: String =
            keys.iter().map(|k| k.to_armored_string(Default::default()).unwrap()).collect::<Vec<_>>().join("\n");
        assert_eq!(Keyring::parse(armored.as_bytes()).unwrap().fingerprints(), want);
    }

    #[test]
    fn keyring_refuses_what_is_not_a_key() {
        for (input, want) in [
            (&b""[..], "empty"),
            (b"hello world", "not an OpenPGP public key"),
            (b"-----BEGIN PGP MESSAGE-----\n\nAAAA\n-----END PGP MESSAGE-----\n", "not an OpenPGP public key"),
            (b"\x99\x00\x01\x04", ""),
            (b"\xff\xff\xff", ""),
        ] {
            let err = Keyring::parse(input).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn verify_refuses_garbage() {
        let (_, keyring) = rpgp_key();
        for input in [&b""[..], b"x", b"\xa3\x01", b"-----BEGIN PGP MESSAGE-----\n\n-----END PGP MESSAGE-----\n"] {
            assert!(verify(input, &keyring).is_err());
        }
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = Keyring::parse(&data);
            let _ = parse_payload(&data);
        }
    }

    #[test]
    fn verification_is_fast() {
        let (secret, keyring) = rpgp_key();
        let sig = sign(&payload("example.com/a:b", &digest(), "img", 1), &secret, None).unwrap();
        let n = 50;
        let start = std::time::Instant::now();
        for _ in 0..n {
            verify(&sig, &keyring).unwrap();
        }
        let each = start.elapsed() / n;
        eprintln!("simple signature verification (ed25519): {each:?} each");
        assert!(each < std::time::Duration::from_millis(10), "{each:?}");
    }

    fn gpg(home: &Path, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        use std::io::Write;
        let mut c = Command::new("gpg")
            .env("GNUPGHOME", home)
            .args(["--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut i = c.stdin.take().unwrap();
        i.write_all(stdin.unwrap_or_default()).unwrap();
        drop(i);
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "gpg {args:?}");
        out.stdout
    }

    #[test]
    fn interoperates_with_gpg() {
        if !have_gpg() {
            eprintln!("gpg is not installed: skipping");
            return;
        }
        for algo in ["ed25519", "rsa2048"] {
            let home = TestDir::new(&format!("simple-gpg-{algo}"));
            let fpr = make_key(&home, "", algo);
            let keyring = Keyring::parse(&gpg(&home, &["--export", "--armor", &fpr], None)).unwrap();
            assert_eq!(keyring.fingerprints(), vec![fpr.clone()]);
            let p = payload("example.com/a:b", &digest(), "img", 1);

            // gpg's own signed messages, compressed binary and armored.
            for extra in [&[][..], &["--armor"][..]] {
                let mut args = vec!["--sign", "--local-user", &fpr];
                args.extend_from_slice(extra);
                let sig = gpg(&home, &args, Some(&p));
                let (got, signer) = verify(&sig, &keyring).unwrap();
                assert_eq!(got.identity, "example.com/a:b");
                assert_eq!(signer, fpr);
            }

            // Ours, checked by gpg.
            let secret = crate::trust::gpg::export_secret_key_in(Some(&home), &fpr, None).unwrap();
            let sig = sign(&p, &secret, None).unwrap();
            let dir = TestDir::new(&format!("simple-gpg-sig-{algo}"));
            std::fs::write(dir.join("sig"), &sig).unwrap();
            let out = Command::new("gpg")
                .env("GNUPGHOME", &*home)
                .args(["--batch", "--status-fd", "1", "--decrypt"])
                .arg(dir.join("sig"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("VALIDSIG {fpr}")));
            stop_agent(&home);
        }
    }

    #[test]
    fn signs_with_a_passphrase_protected_gpg_key() {
        if !have_gpg() {
            eprintln!("gpg is not installed: skipping");
            return;
        }
        let home = TestDir::new("simple-gpg-pass");
        let fpr = make_key(&home, "pass words", "rsa2048");
        let keyring = Keyring::parse(&crate::trust::gpg::export_public_key_in(Some(&home), &fpr).unwrap()).unwrap();
        let secret = crate::trust::gpg::export_secret_key_in(Some(&home), &fpr, Some("pass words")).unwrap();
        let p = payload("example.com/a:b", &digest(), "img", 1);
        let sig = sign(&p, &secret, Some("pass words")).unwrap();
        assert_eq!(verify(&sig, &keyring).unwrap().1, fpr);
        let err = sign(&p, &secret, Some("wrong")).unwrap_err().to_string();
        assert!(err.contains("check the passphrase"), "{err}");
        let err = sign(&p, &secret, None).unwrap_err().to_string();
        assert!(err.contains("check the passphrase"), "{err}");
        stop_agent(&home);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Damaged copies of a real key and a real signature: the
        /// parsers' deeper paths, never a panic.
        #[test]
        fn damaged_keys_and_signatures_never_panic(edits in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY, 0u8..3), 1..8)) {
            static FIXTURE: std::sync::OnceLock<(Vec<u8>, Vec<u8>, Keyring)> = std::sync::OnceLock::new();
            let (public, sig, ring) = FIXTURE.get_or_init(|| {
                let (secret, ring) = rpgp_key();
                let (key, _) = SignedSecretKey::from_reader_single(&secret[..]).unwrap();
                let public = pgp::ser::Serialize::to_bytes(&key.to_public_key()).unwrap();
                let mut b = MessageBuilder::from_bytes("", payload("example.com/a:b", &digest(), "img", 1));
                b.compression(pgp::types::CompressionAlgorithm::ZLIB);
                b.sign(&key.primary_key, Password::empty(), HashAlgorithm::Sha256);
                (public, b.to_vec(rand::thread_rng()).unwrap(), ring)
            });
            for base in [public, sig] {
                let mut d = base.clone();
                for (at, byte, op) in &edits {
                    let at = at % (d.len() + 1);
                    match op {
                        0 if at < d.len() => d[at] = *byte,
                        1 => d.insert(at, *byte),
                        _ if at < d.len() => { d.remove(at); }
                        _ => {}
                    }
                }
                let _ = Keyring::parse(&d);
                let _ = verify(&d, ring);
            }
        }
    }

    #[test]
    fn accepts_signing_subkeys_and_refuses_expired_keys() {
        if !have_gpg() {
            eprintln!("gpg is not installed: skipping");
            return;
        }
        let home = TestDir::new("simple-gpg-subkey");
        std::fs::set_permissions(&*home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        gpg(&home, &["--quick-gen-key", "Sub <s@example.com>", "ed25519", "cert", "never"], None);
        let out = Command::new("gpg")
            .env("GNUPGHOME", &*home)
            .args(["--batch", "--with-colons", "--list-keys"])
            .output()
            .unwrap();
        let fpr = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .unwrap()
            .split(':')
            .nth(9)
            .unwrap()
            .to_string();
        gpg(&home, &["--quick-add-key", &fpr, "ed25519", "sign", "never"], None);
        let keyring = Keyring::parse(&gpg(&home, &["--export", &fpr], None)).unwrap();
        let p = payload("example.com/a:b", &digest(), "img", 1);
        let sig = gpg(&home, &["--sign", "--local-user", &fpr], Some(&p));
        let (_, signer) = verify(&sig, &keyring).unwrap();
        assert_ne!(signer, fpr, "the subkey signed");

        // Ours signs with the subkey too, and gpg accepts it.
        let secret = crate::trust::gpg::export_secret_key_in(Some(&home), &fpr, None).unwrap();
        let ours = sign(&p, &secret, None).unwrap();
        assert_eq!(verify(&ours, &keyring).unwrap().1, signer);

        // An expired key's signatures are refused.
        let old = TestDir::new("simple-gpg-expired");
        std::fs::set_permissions(&*old, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        gpg(
            &old,
            &[
                "--faked-system-time",
                "20200101T000000",
                "--quick-gen-key",
                "Old <o@example.com>",
                "ed25519",
                "sign",
                "1d",
            ],
            None,
        );
        let out = Command::new("gpg")
            .env("GNUPGHOME", &*old)
            .args(["--batch", "--with-colons", "--list-keys"])
            .output()
            .unwrap();
        let ofpr = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .unwrap()
            .split(':')
            .nth(9)
            .unwrap()
            .to_string();
        let okeys = Keyring::parse(&gpg(&old, &["--export", &ofpr], None)).unwrap();
        let osig = gpg(&old, &["--faked-system-time", "20200101T010000", "--sign", "--local-user", &ofpr], Some(&p));
        let err = verify(&osig, &okeys).unwrap_err().to_string();
        assert!(err.contains("revoked or expired"), "{err}");
        stop_agent(&home);
        stop_agent(&old);
    }

    #[test]
    fn interoperates_with_skopeo_standalone_sign_and_verify() {
        if !have_gpg() || Command::new("skopeo").arg("--version").output().is_err() {
            eprintln!("gpg or skopeo is not installed: skipping");
            return;
        }
        let home = TestDir::new("simple-skopeo");
        let fpr = make_key(&home, "", "ed25519");
        let keyring = Keyring::parse(&gpg(&home, &["--export", &fpr], None)).unwrap();
        let dir = TestDir::new("simple-skopeo-files");
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","size":2},"layers":[]}"#;
        std::fs::write(dir.join("manifest.json"), manifest).unwrap();
        let mdigest = Digest::of_bytes(manifest);

        // skopeo signs, we verify.
        let st = Command::new("skopeo")
            .env("GNUPGHOME", &*home)
            .args(["standalone-sign", "-o"])
            .arg(dir.join("theirs"))
            .arg(dir.join("manifest.json"))
            .args(["example.com/a:b", &fpr])
            .status()
            .unwrap();
        assert!(st.success());
        let (got, signer) = verify(&std::fs::read(dir.join("theirs")).unwrap(), &keyring).unwrap();
        assert_eq!(
            (got.identity.as_str(), &got.manifest_digest, signer.as_str()),
            ("example.com/a:b", &mdigest, fpr.as_str())
        );

        // We sign, skopeo verifies.
        let secret = crate::trust::gpg::export_secret_key_in(Some(&home), &fpr, None).unwrap();
        let sig = sign(&payload("example.com/a:b", &mdigest, "img", 1700000000), &secret, None).unwrap();
        std::fs::write(dir.join("ours"), &sig).unwrap();
        let out = Command::new("skopeo")
            .env("GNUPGHOME", &*home)
            .arg("standalone-verify")
            .arg(dir.join("manifest.json"))
            .args(["example.com/a:b", &fpr])
            .arg(dir.join("ours"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(said.contains("Signature verified") && said.contains(mdigest.as_str()), "{said}");
        stop_agent(&home);
    }
}
