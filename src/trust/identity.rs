//! `signedIdentity`: how the identity a signature claims must relate to the image's name.
//!
//! The rules are containers/image's (`signature/policy_reference_match.go`);
//! references are compared in their normalised form (`busybox` is
//! `docker.io/library/busybox`).

use super::json::{self, Node, Value};
use crate::reference::Reference;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedIdentity {
    /// The default: the signed reference equals the image's when the image
    /// is named by tag; only the repository must match when it is named by
    /// digest (the digest itself is checked against the signature).
    MatchRepoDigestOrExact,
    /// Same repository, any tag or digest.
    MatchRepository,
    /// The same reference, tag and digest included.
    MatchExact,
    /// The signature claims exactly this reference (which has a tag or a digest).
    ExactReference(Reference),
    /// The signature claims this repository.
    ExactRepository(Reference),
    /// The image's name with `prefix` replaced by `signed_prefix` must match
    /// as `MatchRepoDigestOrExact` (for mirrors).
    RemapIdentity { prefix: String, signed_prefix: String },
}

impl SignedIdentity {
    /// The `type` policy.json names it by.
    pub fn type_name(&self) -> &'static str {
        match self {
            SignedIdentity::MatchRepoDigestOrExact => "matchRepoDigestOrExact",
            SignedIdentity::MatchRepository => "matchRepository",
            SignedIdentity::MatchExact => "matchExact",
            SignedIdentity::ExactReference(_) => "exactReference",
            SignedIdentity::ExactRepository(_) => "exactRepository",
            SignedIdentity::RemapIdentity { .. } => "remapIdentity",
        }
    }

    /// Whether a signature claiming `signed` (its `docker-reference`) is
    /// acceptable for an image named `image`; the error says why not.
    pub fn matches(&self, image: Option<&Reference>, signed: &str) -> Result<(), String> {
        let sig = Reference::parse(signed).map_err(|e| format!("the signature claims an invalid identity: {e}"))?;
        let ok = match self {
            SignedIdentity::ExactReference(want) => {
                is_exact(want) && is_exact(&sig) && want.to_string() == sig.to_string()
            }
            SignedIdentity::ExactRepository(want) => want.repository() == sig.repository(),
            _ => {
                let Some(image) = image else {
                    return Err(format!(
                        "signedIdentity {} needs the image's name and this image has none; use exactReference or exactRepository",
                        self.type_name()
                    ));
                };
                match self {
                    SignedIdentity::MatchExact => {
                        is_exact(image) && is_exact(&sig) && image.to_string() == sig.to_string()
                    }
                    SignedIdentity::MatchRepository => image.repository() == sig.repository(),
                    SignedIdentity::MatchRepoDigestOrExact => repo_digest_or_exact(image, &sig),
                    SignedIdentity::RemapIdentity { prefix, signed_prefix } => {
                        let remapped = remap(prefix, signed_prefix, image)?;
                        repo_digest_or_exact(&remapped, &sig)
                    }
                    SignedIdentity::ExactReference(_) | SignedIdentity::ExactRepository(_) => unreachable!(),
                }
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!("signed for {sig}, which does not match {}", self.describe(image)))
        }
    }

    /// What the rule expects, for messages.
    pub fn describe(&self, image: Option<&Reference>) -> String {
        let name = image.map(|r| r.to_string()).unwrap_or_else(|| "an unnamed image".into());
        match self {
            SignedIdentity::MatchRepoDigestOrExact => format!("{name} (matchRepoDigestOrExact)"),
            SignedIdentity::MatchRepository => format!("{name} (matchRepository)"),
            SignedIdentity::MatchExact => format!("{name} (matchExact)"),
            SignedIdentity::ExactReference(r) => format!("{r} (exactReference)"),
            SignedIdentity::ExactRepository(r) => format!("{} (exactRepository)", r.repository()),
            SignedIdentity::RemapIdentity { prefix, signed_prefix } => {
                format!("{name} with {prefix} read as {signed_prefix} (remapIdentity)")
            }
        }
    }

    /// The policy.json object, members in podman's order.
    pub fn to_json(&self) -> Value {
        let mut m = vec![("type", Value::String(self.type_name().into()))];
        match self {
            SignedIdentity::ExactReference(r) => m.push(("dockerReference", Value::String(r.to_string()))),
            SignedIdentity::ExactRepository(r) => m.push(("dockerRepository", Value::String(r.repository()))),
            SignedIdentity::RemapIdentity { prefix, signed_prefix } => {
                m.push(("prefix", Value::String(prefix.clone())));
                m.push(("signedPrefix", Value::String(signed_prefix.clone())));
            }
            _ => {}
        }
        json::object(m)
    }

    /// Reads a `signedIdentity` object; the error carries the offset of
    /// the offending value.
    pub(crate) fn from_json(node: &Node) -> Result<SignedIdentity, (usize, String)> {
        let Value::Object(members) = &node.value else {
            return Err((node.at, format!("signedIdentity must be an object, not {}", node.value.kind())));
        };
        let ty = members.iter().find(|(k, _)| k == "type").map(|(_, v)| v);
        let Some(ty) = ty else {
            return Err((node.at, "signedIdentity has no \"type\"; add one such as \"matchRepoDigestOrExact\"".into()));
        };
        let Value::String(ty_name) = &ty.value else {
            return Err((ty.at, format!("signedIdentity \"type\" must be a string, not {}", ty.value.kind())));
        };
        let fields: &[&str] = match ty_name.as_str() {
            "matchRepoDigestOrExact" | "matchRepository" | "matchExact" => &["type"],
            "exactReference" => &["type", "dockerReference"],
            "exactRepository" => &["type", "dockerRepository"],
            "remapIdentity" => &["type", "prefix", "signedPrefix"],
            other => {
                return Err((
                    ty.at,
                    format!(
                        "unknown signedIdentity type {other:?}; use matchRepoDigestOrExact, matchRepository, matchExact, exactReference, exactRepository or remapIdentity"
                    ),
                ))
            }
        };
        for (k, v) in members {
            if !fields.contains(&k.as_str()) {
                return Err((v.at, format!("unknown key {k:?} in signedIdentity {ty_name:?}; remove it")));
            }
        }
        let get = |key: &str| -> Result<(String, usize), (usize, String)> {
            let Some((_, v)) = members.iter().find(|(k, _)| k == key) else {
                return Err((node.at, format!("signedIdentity {ty_name:?} needs {key:?}")));
            };
            match &v.value {
                Value::String(s) => Ok((s.clone(), v.at)),
                other => Err((v.at, format!("{key:?} must be a string, not {}", other.kind()))),
            }
        };
        Ok(match ty_name.as_str() {
            "matchRepoDigestOrExact" => SignedIdentity::MatchRepoDigestOrExact,
            "matchRepository" => SignedIdentity::MatchRepository,
            "matchExact" => SignedIdentity::MatchExact,
            "exactReference" => {
                let (s, at) = get("dockerReference")?;
                let r = Reference::parse(&s).map_err(|e| (at, format!("dockerReference {s:?} is not valid: {e}")))?;
                if !is_exact(&r) {
                    return Err((at, format!("dockerReference {s:?} has neither a tag nor a digest; add one")));
                }
                SignedIdentity::ExactReference(r)
            }
            "exactRepository" => {
                let (s, at) = get("dockerRepository")?;
                let r = Reference::parse(&s).map_err(|e| (at, format!("dockerRepository {s:?} is not valid: {e}")))?;
                SignedIdentity::ExactRepository(r)
            }
            _ => {
                let (prefix, at) = get("prefix")?;
                check_prefix(&prefix).map_err(|m| (at, m))?;
                let (signed_prefix, at) = get("signedPrefix")?;
                check_prefix(&signed_prefix).map_err(|m| (at, m))?;
                SignedIdentity::RemapIdentity { prefix, signed_prefix }
            }
        })
    }
}

/// A reference with a tag or a digest (not "name only").
fn is_exact(r: &Reference) -> bool {
    r.tag().is_some() || r.digest().is_some()
}

/// containers/image's `matchRepoDigestOrExactReferenceValues`.
fn repo_digest_or_exact(image: &Reference, sig: &Reference) -> bool {
    if !is_exact(sig) {
        return false;
    }
    if image.tag().is_some() {
        // Tagged (with or without a digest): the same reference.
        sig.to_string() == image.to_string()
    } else if image.digest().is_some() {
        // By digest: the digest is compared with the manifest elsewhere.
        sig.repository() == image.repository()
    } else {
        false
    }
}

/// Whether `image`'s name is `prefix` or under it (only at a `/`).
fn matches_prefix(prefix: &str, image: &Reference) -> bool {
    let name = image.repository();
    match name.strip_prefix(prefix) {
        Some("") => true,
        Some(rest) => rest.starts_with('/'),
        None => false,
    }
}

/// The image's reference with `prefix` replaced by `signed_prefix`, as a
/// canonical reference; unchanged when the prefix does not apply.
fn remap(prefix: &str, signed_prefix: &str, image: &Reference) -> Result<Reference, String> {
    if !matches_prefix(prefix, image) {
        return Ok(image.clone());
    }
    let s = image.to_string();
    let new = format!("{signed_prefix}{}", &s[prefix.len()..]);
    match Reference::parse(&new) {
        // Like reference.ParseNamed: the rewritten string must already be
        // in its normalised form.
        Ok(r) if r.to_string() == new => Ok(r),
        Ok(_) | Err(_) => Err(format!(
            "remapIdentity turns {s} into {new:?}, which is not a valid fully qualified reference; fix signedPrefix"
        )),
    }
}

/// Whether `s` is a domain as docker's reference grammar has it:
/// dot-separated alphanumeric components (or a bracketed IPv6 address)
/// with an optional `:port`.
fn is_domain(s: &str) -> bool {
    let (host, port) = if s.starts_with('[') {
        match s.find(']') {
            Some(end) => {
                let inner = &s[1..end];
                if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                    return false;
                }
                let rest = &s[end + 1..];
                match rest.strip_prefix(':') {
                    Some(p) => ("[v6]", Some(p)),
                    None if rest.is_empty() => ("[v6]", None),
                    None => return false,
                }
            }
            None => return false,
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if host == "[v6]" {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        })
}

/// containers/image's `validateIdentityRemappingPrefix`: a domain, or a
/// name that starts with a domain.
fn check_prefix(s: &str) -> Result<(), String> {
    if is_domain(s) {
        return Ok(());
    }
    if let Some((first, _)) = s.split_once('/') {
        if is_domain(first) && !s.contains('@') {
            if let Ok(r) = Reference::parse(s) {
                if r.tag().is_none() && r.digest().is_none() {
                    return Ok(());
                }
            }
        }
    }
    Err(format!("prefix {s:?} is not valid; use a registry host (\"example.com\") or a repository name under one (\"example.com/ns\")"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RHEL: &str = "registry.access.redhat.com/rhel7/rhel:7.2.3";
    const RHEL_UNTAGGED: &str = "registry.access.redhat.com/rhel7/rhel";
    const D1: &str = "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const D2: &str = "@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn cat(a: &str, b: &str) -> String {
        format!("{a}{b}")
    }

    /// containers/image's prmExactMatchTestTable (symmetric).
    fn exact_table() -> Vec<(String, String, bool)> {
        vec![
            ("busybox:latest".into(), "busybox:latest".into(), true),
            (RHEL.into(), RHEL.into(), true),
            (cat("busybox", D1), cat("busybox", D1), true),
            ("library/busybox:latest".into(), "busybox:latest".into(), true),
            ("docker.io/library/busybox:latest".into(), "busybox:latest".into(), true),
            (cat("library/busybox", D1), cat("busybox", D1), true),
            ("busybox:latest".into(), "busybox:notlatest".into(), false),
            ("busybox:latest".into(), "notbusybox:latest".into(), false),
            ("busybox:latest".into(), "hostname/library/busybox:notlatest".into(), false),
            ("hostname/library/busybox:latest".into(), "busybox:notlatest".into(), false),
            ("busybox:latest".into(), RHEL.into(), false),
            (cat("busybox", D1), cat("notbusybox", D1), false),
            ("busybox:latest".into(), cat("busybox", D1), false),
            (cat("busybox", D1), cat("busybox", D2), false),
            ("busybox".into(), "busybox:latest".into(), false),
            ("busybox".into(), cat("busybox", D1), false),
            ("busybox".into(), "busybox".into(), false),
            (cat("busybox:latest", D1), cat("busybox:latest", D1), true),
            (cat("busybox:latest", D1), cat("busybox:latest", D2), false),
            (cat("busybox:latest", D1), cat("busybox:notlatest", D1), false),
            (cat("busybox:latest", D1), cat("busybox", D1), false),
            (cat("busybox:latest", D1), "busybox:latest".into(), false),
            ("UPPERCASE_IS_INVALID_IN_DOCKER_REFERENCES".into(), "busybox:latest".into(), false),
            ("".into(), "UPPERCASE_IS_INVALID_IN_DOCKER_REFERENCES".into(), false),
            ("INVALID".into(), "INVALID".into(), false),
        ]
    }

    /// containers/image's prmRepositoryMatchTestTable (symmetric).
    fn repository_table() -> Vec<(String, String, bool)> {
        vec![
            ("busybox:latest".into(), "busybox:latest".into(), true),
            (RHEL.into(), RHEL.into(), true),
            (cat("busybox", D1), cat("busybox", D1), true),
            ("library/busybox:latest".into(), "busybox:latest".into(), true),
            ("docker.io/library/busybox:latest".into(), "busybox:latest".into(), true),
            (cat("library/busybox", D1), cat("busybox", D1), true),
            ("busybox:latest".into(), "busybox:notlatest".into(), true),
            (cat(RHEL, "tagsuffix"), RHEL.into(), true),
            ("library/busybox:latest".into(), "busybox:notlatest".into(), true),
            ("busybox:latest".into(), "library/busybox:notlatest".into(), true),
            ("docker.io/library/busybox:notlatest".into(), "busybox:latest".into(), true),
            ("busybox:notlatest".into(), "docker.io/library/busybox:latest".into(), true),
            ("busybox:latest".into(), cat("busybox", D1), true),
            (cat("busybox", D1), cat("busybox", D2), true),
            ("busybox".into(), "busybox:notlatest".into(), true),
            (RHEL.into(), RHEL_UNTAGGED.into(), true),
            ("busybox".into(), cat("busybox", D1), true),
            ("library/busybox".into(), "busybox".into(), true),
            ("docker.io/library/busybox".into(), "busybox".into(), true),
            ("busybox:latest".into(), "notbusybox:latest".into(), false),
            ("hostname/library/busybox:latest".into(), "busybox:notlatest".into(), false),
            ("busybox:latest".into(), RHEL.into(), false),
            (cat("busybox", D1), cat("notbusybox", D1), false),
            (cat("busybox:latest", D1), cat("busybox:latest", D1), true),
            (cat("busybox:latest", D1), cat("busybox:latest", D2), true),
            (cat("busybox:latest", D1), cat("busybox:notlatest", D1), true),
            (cat("busybox:latest", D1), cat("busybox", D1), true),
            (cat("busybox:latest", D1), "busybox:latest".into(), true),
            ("UPPERCASE_IS_INVALID_IN_DOCKER_REFERENCES".into(), "busybox:latest".into(), false),
            ("".into(), "UPPERCASE_IS_INVALID_IN_DOCKER_REFERENCES".into(), false),
            ("INVALID".into(), "INVALID".into(), false),
        ]
    }

    /// containers/image's matchRepoDigestOrExactTestTable (image, signature).
    fn repo_digest_table() -> Vec<(String, String, bool)> {
        vec![
            ("busybox:latest".into(), "busybox:notlatest".into(), false),
            (cat(RHEL, "tagsuffix"), RHEL.into(), false),
            ("library/busybox:latest".into(), "busybox:notlatest".into(), false),
            ("busybox:latest".into(), "library/busybox:notlatest".into(), false),
            ("docker.io/library/busybox:notlatest".into(), "busybox:latest".into(), false),
            ("busybox:notlatest".into(), "docker.io/library/busybox:latest".into(), false),
            ("busybox".into(), "busybox:latest".into(), false),
            ("busybox:latest".into(), "busybox".into(), false),
            ("busybox".into(), cat("busybox", D1), false),
            (cat("busybox", D1), "busybox".into(), false),
            (RHEL.into(), RHEL_UNTAGGED.into(), false),
            ("busybox".into(), "busybox".into(), false),
            ("busybox:latest".into(), cat("busybox", D1), false),
            (cat("busybox", D1), "busybox:latest".into(), true),
            (cat("busybox", D1), cat("busybox", D2), true),
            (cat("busybox:latest", D1), "busybox:latest".into(), false),
            (cat("busybox:latest", D1), "busybox:notlatest".into(), false),
            ("busybox:latest".into(), cat("busybox:latest", D1), false),
            (cat("busybox:latest", D1), cat("busybox:latest", D2), false),
            (cat("busybox:latest", D1), cat("busybox:notlatest", D2), false),
        ]
    }

    fn check(id: &SignedIdentity, image: &str, sig: &str, want: bool) {
        let Ok(img) = Reference::parse(image) else { return };
        let got = id.matches(Some(&img), sig);
        assert_eq!(got.is_ok(), want, "{id:?}: image {image} vs signature {sig}: {got:?}");
    }

    #[test]
    fn match_exact() {
        let id = SignedIdentity::MatchExact;
        for (a, b, want) in exact_table() {
            check(&id, &a, &b, want);
            check(&id, &b, &a, want);
        }
        assert!(id.matches(None, "busybox:latest").is_err());
    }

    #[test]
    fn match_repo_digest_or_exact() {
        let id = SignedIdentity::MatchRepoDigestOrExact;
        for (a, b, want) in exact_table().into_iter().filter(|t| t.2) {
            check(&id, &a, &b, want);
            check(&id, &b, &a, want);
        }
        for (a, b, want) in repository_table().into_iter().filter(|t| !t.2) {
            check(&id, &a, &b, want);
            check(&id, &b, &a, want);
        }
        for (a, b, want) in repo_digest_table() {
            assert!(Reference::parse(&a).is_ok());
            check(&id, &a, &b, want);
        }
    }

    #[test]
    fn match_repository() {
        let id = SignedIdentity::MatchRepository;
        for (a, b, want) in repository_table() {
            check(&id, &a, &b, want);
            check(&id, &b, &a, want);
        }
        assert!(id.matches(None, "busybox").is_err());
    }

    #[test]
    fn exact_reference_and_repository() {
        for (a, b, want) in exact_table() {
            for (x, y) in [(&a, &b), (&b, &a)] {
                // A rule that could not be parsed never matches.
                let Ok(r) = Reference::parse(x) else { continue };
                let got = SignedIdentity::ExactReference(r).matches(None, y);
                assert_eq!(got.is_ok(), want, "exactReference {x} vs {y}");
            }
        }
        for (a, b, want) in repository_table() {
            for (x, y) in [(&a, &b), (&b, &a)] {
                let Ok(r) = Reference::parse(x) else { continue };
                let got = SignedIdentity::ExactRepository(r).matches(None, y);
                assert_eq!(got.is_ok(), want, "exactRepository {x} vs {y}");
            }
        }
    }

    #[test]
    fn remap_prefix_matching() {
        let cases = [
            ("docker.io/image", "docker.io", true),
            ("docker.io/image", "example.com", false),
            ("example.com:5000/image", "example.com:5000", true),
            ("example.com:50000/image", "example.com:5000", false),
            ("example.com:5000/image", "example.com", false),
            ("example.com/foo", "example.com", true),
            ("example.com/foo/bar", "example.com", true),
            ("example.com/foo/bar:baz", "example.com", true),
            (&cat("example.com/foo/bar", D1), "example.com", true),
            ("docker.io/ns/image", "docker.io/library", false),
            ("example.com/library", "docker.io/library", false),
            ("docker.io/libraryy/image", "docker.io/library", false),
            ("docker.io/library/busybox", "docker.io/library", true),
            ("example.com/ns/image", "example.com/ns", true),
            ("example.com/ns2/image", "example.com/ns", false),
            ("example.com/n2/image", "example.com/ns", false),
            ("example.com", "example.com/library/busybox", false),
            ("example.com:5000/ns/image", "example.com/ns", false),
            ("example.com/ns/image", "example.com:5000/ns", false),
            ("docker.io/library/busybox", "docker.io/library/busybox", true),
            ("example.com/library/busybox", "docker.io/library/busybox", false),
            ("docker.io/library/busybox2", "docker.io/library/busybox", false),
            ("example.com/ns/image", "example.com/ns/image", true),
            ("example.com/ns/imag2", "example.com/ns/image", false),
            ("example.com/ns/imagee", "example.com/ns/image", false),
            ("example.com:5000/ns/image", "example.com/ns/image", false),
            ("example.com/ns/image", "example.com:5000/ns/image", false),
            ("example.com/ns/image:tag", "example.com/ns/image", true),
            (&cat("example.com/ns/image", D1), "example.com/ns/image", true),
            (&cat("example.com/ns/image:tag", D1), "example.com/ns/image", true),
        ];
        for (r, prefix, want) in cases {
            check_prefix(prefix).unwrap();
            let r = Reference::parse(r).unwrap();
            assert_eq!(matches_prefix(prefix, &r), want, "{r} vs {prefix}");
        }
    }

    #[test]
    fn remap_rewrites() {
        let cases = [
            ("mirror.example", "vendor.example", "mirror.example/ns/image:tag", "vendor.example/ns/image:tag"),
            ("mirror.example", "vendor.example", "different.com/ns/image:tag", "different.com/ns/image:tag"),
            (
                "mirror.example/ns",
                "vendor.example/vendor-ns",
                "mirror.example/different-ns/image:tag",
                "mirror.example/different-ns/image:tag",
            ),
            ("docker.io", "not-docker-signed.example/ns", "busybox", "not-docker-signed.example/ns/library/busybox"),
            (
                "example.com/mirror",
                "example.com/vendor",
                "example.com/mirror/image:tag",
                "example.com/vendor/image:tag",
            ),
            (
                "example.com/ns/mirror",
                "example.com/ns/vendor",
                "example.com/ns/mirror:tag",
                "example.com/ns/vendor:tag",
            ),
            (
                "mirror.example",
                "vendor.example",
                "prefixmirror.example/ns/image:tag",
                "prefixmirror.example/ns/image:tag",
            ),
            ("docker.io", "not-docker-signed.example", "busybox", "not-docker-signed.example/library/busybox"),
            ("docker.io/library", "not-docker-signed.example/ns", "busybox", "not-docker-signed.example/ns/busybox"),
            (
                "docker.io/library/busybox",
                "not-docker-signed.example/ns/notbusybox",
                "busybox",
                "not-docker-signed.example/ns/notbusybox",
            ),
            ("mirror.example", "vendor.example", "mirror.example/image", "vendor.example/image"),
            ("mirror.example", "vendor.example", "mirror.example/image:tag", "vendor.example/image:tag"),
            ("mirror.example", "vendor.example", &cat("mirror.example/image", D1), &cat("vendor.example/image", D1)),
            (
                "mirror.example",
                "vendor.example",
                &cat("mirror.example/image:tag", D1),
                &cat("vendor.example/image:tag", D1),
            ),
            ("mirror.example/ns/image", "vendor.example:5000", "mirror.example/ns/image:tag", ""),
            ("mirror.example/ns/image", "vendor.example:5000", &cat("mirror.example/ns/image", D1), ""),
            ("mirror.example/ns/image", "notlocalhost", "mirror.example/ns/image:tag", ""),
        ];
        for (prefix, signed, r, want) in cases {
            check_prefix(prefix).unwrap();
            check_prefix(signed).unwrap();
            let r = Reference::parse(r).unwrap();
            let got = remap(prefix, signed, &r);
            if want.is_empty() {
                assert!(got.is_err(), "{prefix} {signed} {r}: {got:?}");
            } else {
                assert_eq!(got.unwrap().to_string(), Reference::parse(want).unwrap().to_string());
            }
        }
    }

    #[test]
    fn remap_matches() {
        let cases = [
            ("does-not-match.com", "does-not-match.rewritten", "busybox:latest", "busybox:latest", true),
            ("does-not-match.com", "does-not-match.rewritten", "busybox:latest", "notbusybox:latest", false),
            ("mirror.example", "public.com", "mirror.example/busybox:1", "public.com/busybox:1", true),
            ("mirror.example", "public.com", "mirror.example/busybox:1", "public.com/busybox:not1", false),
            ("mirror.example", "docker.io/library", "mirror.example/busybox:latest", "busybox:latest", true),
            ("mirror.example", "docker.io/library", "mirror.example/alpine:latest", "busybox:latest", false),
            ("docker.io/library", "original.com", "copied:latest", "original.com/copied:latest", true),
            ("docker.io/library", "original.com", "copied:latest", "original.com/ns/copied:latest", false),
            ("busybox", "example.com/busybox", "busybox:latest", "example.com/busybox:latest", false),
            ("docker.io/library/busybox", "busybox", "docker.io/library/busybox:latest", "busybox:latest", false),
            ("UPPERCASE", "example.com", "example.com/foo:latest", "example.com/foo:latest", true),
            // containers/image's copy of docker/reference reads "UPPERCASE/foo"
            // as docker.io/UPPERCASE/foo and refuses it (false there); img's
            // follows current docker, where an upper-case first component is
            // a registry, so both sides are the same reference.
            ("example.com", "UPPERCASE", "example.com/foo:latest", "UPPERCASE/foo:latest", true),
        ];
        for (prefix, signed_prefix, image, sig, want) in cases {
            let id = SignedIdentity::RemapIdentity { prefix: prefix.into(), signed_prefix: signed_prefix.into() };
            check(&id, image, sig, want);
        }
        // A remap that never applies behaves as matchRepoDigestOrExact.
        let id = SignedIdentity::RemapIdentity {
            prefix: "never-causes-a-rewrite.example".into(),
            signed_prefix: "never-causes-a-rewrite.example".into(),
        };
        for (a, b, want) in repo_digest_table() {
            check(&id, &a, &b, want);
        }
        assert!(id.matches(None, "busybox:latest").is_err());
    }

    #[test]
    fn prefixes() {
        for ok in
            ["example.com", "example.com:5000", "docker.io/library", "[::1]:5000", "localhost", "ns/repo", "a-b.c/d"]
        {
            assert!(check_prefix(ok).is_ok(), "{ok}");
        }
        for bad in ["", "example.com/", "-a.com", "a.com:", "a.com:x", "example.com/ns:tag", "a.com/x@sha256:00", "/x"]
        {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_round_trip() {
        let cases = [
            r#"{"type":"matchRepoDigestOrExact"}"#,
            r#"{"type":"matchRepository"}"#,
            r#"{"type":"matchExact"}"#,
            r#"{"type":"exactReference","dockerReference":"docker.io/library/busybox:1"}"#,
            r#"{"type":"exactRepository","dockerRepository":"example.com/ns/app"}"#,
            r#"{"type":"remapIdentity","prefix":"mirror.example","signedPrefix":"vendor.example/ns"}"#,
        ];
        for c in cases {
            let node = crate::trust::json::parse(c).unwrap();
            let id = SignedIdentity::from_json(&node).unwrap_or_else(|e| panic!("{c}: {e:?}"));
            let back = json::to_pretty(&id.to_json());
            assert_eq!(back, json::to_pretty(&node.value), "{c}");
        }
        let bad = [
            r#"{}"#,
            r#"[]"#,
            r#"{"type":1}"#,
            r#"{"type":"nope"}"#,
            r#"{"type":"matchExact","extra":1}"#,
            r#"{"type":"exactReference","dockerReference":"busybox"}"#,
            r#"{"type":"exactReference","dockerReference":"UPPER"}"#,
            r#"{"type":"exactReference"}"#,
            r#"{"type":"exactRepository","dockerRepository":""}"#,
            r#"{"type":"remapIdentity","prefix":"x.com"}"#,
            r#"{"type":"remapIdentity","prefix":"x.com/a:b","signedPrefix":"y.com"}"#,
            r#"{"type":"remapIdentity","prefix":"x.com","signedPrefix":3}"#,
        ];
        for c in bad {
            let node = crate::trust::json::parse(c).unwrap();
            assert!(SignedIdentity::from_json(&node).is_err(), "{c}");
        }
    }
}
