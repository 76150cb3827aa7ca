//! The cryptographic half of a signature requirement: is `sig` a valid
//! signature by a key (or certificate) the requirement trusts, and what
//! does its payload claim. The identity and digest checks are the
//! policy's (`policy::evaluate`).

use super::policy::{KeySource, Requirement};
use super::sigjson::SignatureError;
use super::sigstore::{self, PublicKey};
use super::simple::{self, Keyring};
use super::{Signature, Verified};
use std::io::Read;
use std::path::Path;

/// The largest key file img reads (a keyring of many keys stays under it).
pub const MAX_KEY_FILE_SIZE: u64 = 16 << 20;

/// Reads a key file, bounded; the error names the file.
fn read_key_file(path: &Path) -> Result<Vec<u8>, String> {
    let f = std::fs::File::open(path)
        .map_err(|e| format!("cannot read key file {}: {e}; check the policy's key paths", path.display()))?;
    let mut data = Vec::new();
    f.take(MAX_KEY_FILE_SIZE + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
    if data.len() as u64 > MAX_KEY_FILE_SIZE {
        return Err(format!("key file {} is larger than {} bytes; it is not a key", path.display(), MAX_KEY_FILE_SIZE));
    }
    Ok(data)
}

/// Each piece of key material of `src` with a name for messages.
fn key_material(src: &KeySource) -> Result<Vec<(String, Vec<u8>)>, String> {
    match src {
        KeySource::Path(p) => Ok(vec![(p.display().to_string(), read_key_file(p)?)]),
        KeySource::Paths(ps) => {
            if ps.is_empty() {
                return Err("the requirement's keyPaths is empty; name at least one key file".into());
            }
            ps.iter().map(|p| Ok((p.display().to_string(), read_key_file(p)?))).collect()
        }
        KeySource::Data(d) => Ok(vec![("the policy's keyData".to_owned(), d.clone())]),
    }
}

fn keyring(src: &KeySource) -> Result<Keyring, String> {
    let mut ring: Option<Keyring> = None;
    for (name, data) in key_material(src)? {
        let k = Keyring::parse(&data).map_err(|e| format!("key file {name}: {e}"))?;
        match &mut ring {
            Some(r) => r.merge(k),
            None => ring = Some(k),
        }
    }
    ring.ok_or_else(|| "the requirement names no keys".to_owned())
}

/// The public keys of `src`, one PEM key per file (keyPaths or
/// rekorPublicKeyPaths may name several).
fn public_keys(src: &KeySource, what: &str) -> Result<Vec<PublicKey>, String> {
    key_material(src)?
        .into_iter()
        .map(|(name, data)| PublicKey::parse_pem(&data).map_err(|e| format!("{what} {name}: {e}")))
        .collect()
}

/// The first success of `f` over every key of `a` paired with every key
/// of `b` (or with none when `b` is `None`), else the first error.
fn any_pair<T>(
    a: &[PublicKey],
    b: Option<&[PublicKey]>,
    mut f: impl FnMut(&PublicKey, Option<&PublicKey>) -> Result<T, SignatureError>,
) -> Result<(T, usize), String> {
    let mut first_err = None;
    for (i, x) in a.iter().enumerate() {
        let seconds: Vec<Option<&PublicKey>> = match b {
            Some(b) => b.iter().map(Some).collect(),
            None => vec![None],
        };
        for y in seconds {
            match f(x, y) {
                Ok(v) => return Ok((v, i)),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    Err(first_err.map(|e| e.to_string()).unwrap_or_else(|| "the requirement names no keys".into()))
}

/// Checks `sig` against the keys of `req` (`signedBy` for simple
/// signatures, `sigstoreSigned` for sigstore ones), reading the key files
/// it names; returns what the payload claims. A signature of the other
/// kind, or a requirement without keys, is an error naming why.
pub fn check(req: &Requirement, sig: &Signature) -> Result<Verified, String> {
    match (req, sig) {
        (Requirement::SignedBy { keys, .. }, Signature::Simple(bytes)) => {
            let ring = keyring(keys)?;
            let (p, signer) = simple::verify(bytes, &ring).map_err(|e| e.to_string())?;
            Ok(Verified { identity: p.identity, manifest_digest: p.manifest_digest, signer })
        }
        (
            Requirement::SigstoreSigned { key, fulcio, rekor_public_key, .. },
            Signature::Sigstore { payload, annotations },
        ) => {
            let rekor = match rekor_public_key {
                Some(r) => Some(public_keys(r, "Rekor public key file")?),
                None => None,
            };
            match (key, fulcio) {
                (Some(key), None) => {
                    let keys = public_keys(key, "public key file")?;
                    let (p, i) = any_pair(&keys, rekor.as_deref(), |k, r| match r {
                        Some(r) => sigstore::verify_with_key_and_rekor(payload, annotations, k, r),
                        None => sigstore::verify_with_key(payload, annotations, k),
                    })?;
                    Ok(Verified { identity: p.identity, manifest_digest: p.manifest_digest, signer: keys[i].id() })
                }
                (None, Some(f)) => {
                    let Some(rekor) = rekor else {
                        return Err("a fulcio requirement needs rekorPublicKeyPath or rekorPublicKeyData".into());
                    };
                    let ca = key_material(&f.ca)?.into_iter().flat_map(|(_, d)| d).collect::<Vec<u8>>();
                    let ((p, signer), _) = any_pair(&rekor, None, |r, _| {
                        sigstore::verify_with_fulcio(payload, annotations, &ca, &f.oidc_issuer, &f.subject_email, r)
                    })?;
                    Ok(Verified { identity: p.identity, manifest_digest: p.manifest_digest, signer })
                }
                (Some(_), Some(_)) => Err("a sigstoreSigned requirement has both a key and fulcio; give one".into()),
                (None, None) => Err("a sigstoreSigned requirement has neither a key nor fulcio; give one".into()),
            }
        }
        (Requirement::SignedBy { .. }, s) | (Requirement::SigstoreSigned { .. }, s) => Err(format!(
            "a {} signature does not satisfy a {} requirement",
            s.kind(),
            req.signature_kind().unwrap_or("signature")
        )),
        _ => Err("this requirement does not check signatures".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::testdir::TestDir;
    use crate::trust::identity::SignedIdentity;
    use std::collections::BTreeMap;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn sigstore_req(key: KeySource) -> Requirement {
        Requirement::SigstoreSigned {
            key: Some(key),
            fulcio: None,
            rekor_public_key: None,
            identity: SignedIdentity::MatchRepoDigestOrExact,
        }
    }

    #[test]
    fn checks_sigstore_signatures_with_key_files_and_data() {
        let dir = TestDir::new("verify-sigstore");
        let k = crate::trust::sigstore::PrivateKey::generate();
        std::fs::write(dir.join("cosign.pub"), k.public_pem()).unwrap();
        let payload = sigstore::payload("example.com/a:b", &Digest::parse(D).unwrap());
        let annotations = BTreeMap::from([(sigstore::SIGNATURE_ANNOTATION.to_owned(), k.sign(&payload))]);
        let sig = Signature::Sigstore { payload, annotations };
        let v = check(&sigstore_req(KeySource::Path(dir.join("cosign.pub"))), &sig).unwrap();
        assert_eq!(
            (v.identity.as_str(), v.manifest_digest.as_str(), v.signer.clone()),
            ("example.com/a:b", D, k.public_key().id())
        );
        assert_eq!(check(&sigstore_req(KeySource::Data(k.public_pem().into_bytes())), &sig).unwrap(), v);

        let other = crate::trust::sigstore::PrivateKey::generate();
        std::fs::write(dir.join("other.pub"), other.public_pem()).unwrap();
        let both =
            check(&sigstore_req(KeySource::Paths(vec![dir.join("other.pub"), dir.join("cosign.pub")])), &sig).unwrap();
        assert_eq!(both.signer, k.public_key().id());
        let err = check(&sigstore_req(KeySource::Data(other.public_pem().into_bytes())), &sig).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        let err = check(&sigstore_req(KeySource::Path(dir.join("missing.pub"))), &sig).unwrap_err();
        assert!(err.contains("missing.pub"), "{err}");
        std::fs::write(dir.join("bad.pub"), "hello").unwrap();
        let err = check(&sigstore_req(KeySource::Path(dir.join("bad.pub"))), &sig).unwrap_err();
        assert!(err.contains("bad.pub"), "{err}");
        let err = check(
            &Requirement::SignedBy { keys: KeySource::Data(vec![]), identity: SignedIdentity::MatchRepoDigestOrExact },
            &sig,
        )
        .unwrap_err();
        assert!(err.contains("a sigstore signature does not satisfy a simple requirement"), "{err}");
    }

    #[test]
    fn checks_simple_signatures_against_merged_key_paths() {
        use pgp::composed::{KeyType, SecretKeyParamsBuilder};
        let dir = TestDir::new("verify-simple");
        let mut paths = Vec::new();
        let mut secrets = Vec::new();
        for i in 0..2 {
            let key = SecretKeyParamsBuilder::default()
                .key_type(KeyType::Ed25519Legacy)
                .can_certify(true)
                .can_sign(true)
                .primary_user_id(format!("T{i} <t@example.com>"))
                .build()
                .unwrap()
                .generate(rand::thread_rng())
                .unwrap();
            let p = dir.join(format!("k{i}.gpg"));
            std::fs::write(&p, pgp::ser::Serialize::to_bytes(&key.to_public_key()).unwrap()).unwrap();
            paths.push(p);
            secrets.push(pgp::ser::Serialize::to_bytes(&key).unwrap());
        }
        let payload = simple::payload("example.com/a:b", &Digest::parse(D).unwrap(), "img", 1);
        let sig = Signature::Simple(simple::sign(&payload, &secrets[1], None).unwrap());
        let req = Requirement::SignedBy {
            keys: KeySource::Paths(paths.clone()),
            identity: SignedIdentity::MatchRepoDigestOrExact,
        };
        let v = check(&req, &sig).unwrap();
        assert_eq!(v.identity, "example.com/a:b");
        let only_first = Requirement::SignedBy {
            keys: KeySource::Path(paths[0].clone()),
            identity: SignedIdentity::MatchRepoDigestOrExact,
        };
        assert!(check(&only_first, &sig).is_err());
        let missing = Requirement::SignedBy {
            keys: KeySource::Paths(vec![paths[0].clone(), dir.join("gone.gpg")]),
            identity: SignedIdentity::MatchRepoDigestOrExact,
        };
        assert!(check(&missing, &sig).unwrap_err().contains("gone.gpg"));
    }
}
