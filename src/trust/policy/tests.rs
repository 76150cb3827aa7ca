use super::*;
use crate::reference::Reference;
use proptest::prelude::*;

const PODMAN_POLICY: &str = include_str!("../../../testdata/trust/podman-policy.json");
const PODMAN_SHOW: &str = include_str!("../../../testdata/trust/podman-trust-show.txt");

fn parse(text: &str) -> Result<Policy, PolicyError> {
    Policy::parse("policy.json", text)
}

#[test]
fn reads_what_podman_wrote() {
    let p = parse(PODMAN_POLICY).unwrap();
    assert_eq!(p.default, vec![Requirement::Reject]);
    let signed = |k: &str| Requirement::SignedBy {
        keys: KeySource::Path(PathBuf::from(k)),
        identity: SignedIdentity::MatchRepoDigestOrExact,
    };
    assert_eq!(p.requirements_for(Transport::Docker, "127.0.0.1:5000/x:latest"), &[signed("/keys/test.gpg")]);
    assert_eq!(p.requirements_for(Transport::Docker, "127.0.0.1:5000/x@sha256:0123"), &[signed("/keys/test.gpg")]);
    assert_eq!(p.requirements_for(Transport::Docker, "127.0.0.1:5000/y:1"), &[Requirement::Reject]);
    assert_eq!(
        p.requirements_for(Transport::Docker, "registry.example/ns/app:1"),
        &[signed("/keys/test.gpg"), signed("/keys/test2.gpg")]
    );
    assert_eq!(
        p.requirements_for(Transport::Docker, "docker.io/library/busybox:latest"),
        &[Requirement::InsecureAcceptAnything]
    );
    assert_eq!(p.requirements_for(Transport::Oci, "/tmp/x"), &[Requirement::Reject]);
    assert_eq!(
        p.section(Transport::Docker, "docker.io/library/busybox:1"),
        "policy.json (transports.docker.\"docker.io\")"
    );
    assert_eq!(p.section(Transport::Oci, "/x"), "policy.json (default)");
    // Written back byte for byte as podman wrote it.
    assert_eq!(p.to_json(), PODMAN_POLICY);
}

#[test]
fn describes_as_podman_shows() {
    let p = parse(PODMAN_POLICY).unwrap();
    let rows = p.describe();
    let podman: Vec<Vec<&str>> =
        PODMAN_SHOW.lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>()).collect();
    assert_eq!(rows.len(), podman.len());
    for (r, want) in rows.iter().zip(&podman) {
        assert_eq!([r.transport.as_str(), r.scope.as_str(), r.kind.as_str()], want[..3], "{r:?}");
    }
    assert_eq!(rows[1].ids, "/keys/test.gpg");
}

#[test]
fn reads_the_system_policy() {
    let path = Path::new("/etc/containers/policy.json");
    if path.exists() {
        let p = Policy::load_file(path).unwrap();
        assert!(!p.default.is_empty());
    }
}

#[test]
fn insecure_default_and_find() {
    let p = Policy::insecure_default();
    assert_eq!(p.source, BUILT_IN_SOURCE);
    assert_eq!(p.requirements_for(Transport::Docker, "a.com/b:c"), &[Requirement::InsecureAcceptAnything]);
    let dir = crate::testdir::TestDir::new("policy-find");
    let a = dir.join("a.json");
    let b = dir.join("b.json");
    std::fs::write(&b, "{}").unwrap();
    let fallbacks = [a.clone(), b.clone()];
    assert_eq!(find_in(None, None, &fallbacks), Some(b.clone()));
    assert_eq!(find_in(Some(&a), None, &fallbacks), Some(a.clone()));
    assert_eq!(find_in(None, Some(&a), &fallbacks), Some(a.clone()));
    assert_eq!(find_in(None, None, &fallbacks[..1]), None);
    // A named file that is missing is an error naming it.
    let e = Policy::load(Some(&a)).unwrap_err();
    assert_eq!(e.line, 0);
    assert!(e.to_string().starts_with(&format!("{}: no such policy file", a.display())), "{e}");
    // So is one over 4 MiB.
    std::fs::write(&a, vec![b' '; (MAX_POLICY_SIZE + 1) as usize]).unwrap();
    assert!(Policy::load(Some(&a)).unwrap_err().message.contains("larger than 4 MiB"));
    std::fs::write(&a, r#"{"default":[{"type":"reject"}]}"#).unwrap();
    let p = Policy::load(Some(&a)).unwrap();
    assert_eq!(p.source, a.display().to_string());
    assert_eq!(p.default, vec![Requirement::Reject]);
}

#[test]
fn full_policy() {
    let text = r#"{
    "default": [{"type": "reject"}],
    "transports": {
        "docker": {
            "example.com/signed": [{
                "type": "signedBy", "keyType": "GPGKeys", "keyPaths": ["/k1", "/k2"],
                "signedIdentity": {"type": "matchRepository"}
            }],
            "example.com/data": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "aGVsbG8="}],
            "quay.io": [{"type": "sigstoreSigned", "keyPath": "/cosign.pub"}],
            "ghcr.io": [{
                "type": "sigstoreSigned",
                "fulcio": {"caPath": "/ca.pem", "oidcIssuer": "https://oauth2.sigstore.dev/auth", "subjectEmail": "a@b.c"},
                "rekorPublicKeyPath": "/rekor.pub",
                "signedIdentity": {"type": "remapIdentity", "prefix": "ghcr.io", "signedPrefix": "mirror.example"}
            }],
            "*.example.org": [{"type": "insecureAcceptAnything"}],
            "": [{"type": "insecureAcceptAnything"}]
        },
        "oci": {"/srv/images": [{"type": "reject"}], "": [{"type": "insecureAcceptAnything"}]},
        "oci-archive": {"/srv": [{"type": "insecureAcceptAnything"}]},
        "docker-archive": {"": [{"type": "reject"}]},
        "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]},
        "atomic": {"whatever": [{"type": "reject"}]}
    }
}"#;
    let p = parse(text).unwrap();
    assert_eq!(
        p.requirements_for(Transport::Docker, "example.com/signed:1"),
        &[Requirement::SignedBy {
            keys: KeySource::Paths(vec!["/k1".into(), "/k2".into()]),
            identity: SignedIdentity::MatchRepository
        }]
    );
    assert_eq!(
        p.requirements_for(Transport::Docker, "example.com/data:1"),
        &[Requirement::SignedBy {
            keys: KeySource::Data(b"hello".to_vec()),
            identity: SignedIdentity::MatchRepoDigestOrExact
        }]
    );
    let Requirement::SigstoreSigned { fulcio: Some(f), rekor_public_key: Some(r), identity, key: None } =
        &p.requirements_for(Transport::Docker, "ghcr.io/a/b:1")[0]
    else {
        panic!()
    };
    assert_eq!(f.subject_email, "a@b.c");
    assert_eq!(*r, KeySource::Path("/rekor.pub".into()));
    assert_eq!(identity.type_name(), "remapIdentity");
    assert_eq!(p.requirements_for(Transport::Docker, "a.b.example.org/x:1"), &[Requirement::InsecureAcceptAnything]);
    assert_eq!(p.requirements_for(Transport::Docker, "other.io/x:1"), &[Requirement::InsecureAcceptAnything]);
    assert_eq!(p.requirements_for(Transport::Oci, "/srv/images/app:1"), &[Requirement::Reject]);
    assert_eq!(p.requirements_for(Transport::Oci, "/srv/imagesx"), &[Requirement::InsecureAcceptAnything]);
    assert_eq!(p.requirements_for(Transport::OciArchive, "/srv/a/b.tar"), &[Requirement::InsecureAcceptAnything]);
    assert_eq!(p.requirements_for(Transport::OciArchive, "/other.tar"), &[Requirement::Reject]);
    assert_eq!(p.requirements_for(Transport::DockerArchive, "/x.tar"), &[Requirement::Reject]);
    assert!(p.transports.contains_key("atomic"));
    // Everything survives writing and reading back.
    let again = parse(&p.to_json()).unwrap();
    assert_eq!(again.default, p.default);
    assert_eq!(again.transports, p.transports);
}

#[test]
fn scope_candidates_as_containers_image() {
    let d = |s: &str| scope_candidates(Transport::Docker, s);
    assert_eq!(
        d("example.com:8443/ns/repo:tag"),
        [
            "example.com:8443/ns/repo:tag",
            "example.com:8443/ns/repo",
            "example.com:8443/ns",
            "example.com:8443",
            "*.com"
        ]
    );
    assert_eq!(
        d("docker.io/library/busybox@sha256:abc"),
        ["docker.io/library/busybox@sha256:abc", "docker.io/library/busybox", "docker.io/library", "docker.io", "*.io"]
    );
    assert_eq!(
        d("a.b.c.example.com/x"),
        ["a.b.c.example.com/x", "a.b.c.example.com", "*.b.c.example.com", "*.c.example.com", "*.example.com", "*.com"]
    );
    assert_eq!(d("localhost:5000/x:1"), ["localhost:5000/x:1", "localhost:5000/x", "localhost:5000"]);
    let o = |s: &str| scope_candidates(Transport::Oci, s);
    assert_eq!(o("/a/b/c:tag"), ["/a/b/c", "/a/b", "/a"]);
    assert_eq!(o("/a"), ["/a"]);
    assert!(o("/").is_empty());
    assert!(o("relative").is_empty());
    assert!(scope_candidates(Transport::DockerArchive, "/a/b.tar").is_empty());
}

#[test]
fn most_specific_scope_wins() {
    let text = r#"{"default":[{"type":"reject"}],"transports":{"docker":{
        "h.example.com/ns/repo:tag":[{"type":"insecureAcceptAnything"}],
        "h.example.com/ns/repo":[{"type":"reject"}],
        "h.example.com/ns":[{"type":"insecureAcceptAnything"}],
        "h.example.com":[{"type":"reject"}],
        "*.example.com":[{"type":"insecureAcceptAnything"}],
        "*.com":[{"type":"reject"}]
    }}}"#;
    let p = parse(text).unwrap();
    let at = |s: &str| p.lookup(Transport::Docker, s).0.map(str::to_string);
    assert_eq!(at("h.example.com/ns/repo:tag").as_deref(), Some("h.example.com/ns/repo:tag"));
    assert_eq!(at("h.example.com/ns/repo:other").as_deref(), Some("h.example.com/ns/repo"));
    assert_eq!(at("h.example.com/ns/other:1").as_deref(), Some("h.example.com/ns"));
    assert_eq!(at("h.example.com/other:1").as_deref(), Some("h.example.com"));
    assert_eq!(at("g.example.com/x:1").as_deref(), Some("*.example.com"));
    assert_eq!(at("x.com/x:1").as_deref(), Some("*.com"));
    assert_eq!(at("x.org/x:1"), None);
}

/// Each bad policy, the line of the error and a part of its message.
#[test]
fn refuses_with_line_and_fix() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 1, "invalid JSON"),
        ("[]", 1, "must be an object"),
        ("{}", 1, "no \"default\""),
        ("{\"default\": []}", 1, "empty list"),
        ("{\n\"default\": [{\"type\": \"reject\"}],\n\"default\": []}", 3, "duplicate key"),
        ("{\"default\": [{\"type\": \"reject\"}],\n \"x\": 1}", 2, "unknown key \"x\""),
        ("{\"default\": [\n{\"type\": \"nope\"}]}", 2, "unknown requirement type \"nope\""),
        ("{\"default\": [\n{\"type\": \"reject\", \"keyPath\": \"/k\"}]}", 2, "unknown key \"keyPath\""),
        ("{\"default\": [{}]}", 1, "no \"type\""),
        ("{\"default\": [{\"type\": 1}]}", 1, "must be a string"),
        ("{\"default\": [{\"type\": \"signedBy\", \"keyPath\": \"/k\"}]}", 1, "no \"keyType\""),
        ("{\"default\": [{\"type\": \"signedBy\",\n \"keyType\": \"X509Certificates\", \"keyPath\": \"/k\"}]}", 2, "not implemented"),
        ("{\"default\": [{\"type\": \"signedBy\", \"keyType\": \"GPG\", \"keyPath\": \"/k\"}]}", 1, "unknown keyType"),
        ("{\"default\": [{\"type\": \"signedBy\", \"keyType\": \"GPGKeys\"}]}", 1, "no key"),
        ("{\"default\": [{\"type\": \"signedBy\", \"keyType\": \"GPGKeys\", \"keyPath\": \"/k\", \"keyData\": \"\"}]}", 1, "keep exactly one"),
        ("{\"default\": [{\"type\": \"signedBy\", \"keyType\": \"GPGKeys\", \"keyPaths\": []}]}", 1, "keyPaths is empty"),
        ("{\"default\": [{\"type\": \"signedBy\", \"keyType\": \"GPGKeys\", \"keyPath\": \"\"}]}", 1, "keyPath is empty"),
        ("{\"default\": [{\"type\": \"signedBy\", \"keyType\": \"GPGKeys\", \"keyData\": \"!!\"}]}", 1, "not valid base64"),
        ("{\"default\": [{\"type\": \"signedBy\", \"keyType\": \"GPGKeys\", \"keyPath\": \"/k\",\n\"signedIdentity\": {\"type\": \"x\"}}]}", 2, "unknown signedIdentity type"),
        ("{\"default\": [{\"type\": \"signedBy\", \"keyType\": \"GPGKeys\", \"keyPath\": \"/k\",\n\"signedIdentity\": {\"type\": \"exactReference\", \"dockerReference\": \"busybox\"}}]}", 2, "neither a tag nor a digest"),
        ("{\"default\": [{\"type\": \"signedBy\", \"keyType\": \"GPGKeys\", \"keyPath\": \"/k\",\n\"signedIdentity\": {\"type\": \"exactRepository\", \"dockerRepository\": \"A B\"}}]}", 2, "not valid"),
        ("{\"default\": [{\"type\": \"sigstoreSigned\"}]}", 1, "no key"),
        ("{\"default\": [{\"type\": \"sigstoreSigned\", \"keyPath\": \"/k\", \"keyData\": \"\"}]}", 1, "keep exactly one"),
        ("{\"default\": [{\"type\": \"sigstoreSigned\", \"keyPath\": \"/k\", \"fulcio\": {\"caPath\": \"/c\", \"oidcIssuer\": \"i\", \"subjectEmail\": \"e\"}, \"rekorPublicKeyPath\": \"/r\"}]}", 1, "both a key and \"fulcio\""),
        ("{\"default\": [{\"type\": \"sigstoreSigned\", \"fulcio\": {\"caPath\": \"/c\", \"oidcIssuer\": \"i\", \"subjectEmail\": \"e\"}}]}", 1, "needs a Rekor key"),
        ("{\"default\": [{\"type\": \"sigstoreSigned\", \"fulcio\": {\"oidcIssuer\": \"i\", \"subjectEmail\": \"e\"}, \"rekorPublicKeyPath\": \"/r\"}]}", 1, "no CA"),
        ("{\"default\": [{\"type\": \"sigstoreSigned\", \"fulcio\": {\"caPath\": \"/c\", \"subjectEmail\": \"e\"}, \"rekorPublicKeyPath\": \"/r\"}]}", 1, "no oidcIssuer"),
        ("{\"default\": [{\"type\": \"sigstoreSigned\", \"fulcio\": {\"caPath\": \"/c\", \"oidcIssuer\": \"i\", \"subjectEmail\": \"\"}, \"rekorPublicKeyPath\": \"/r\"}]}", 1, "subjectEmail is empty"),
        ("{\"default\": [{\"type\": \"sigstoreSigned\", \"fulcio\": {\"caPath\": \"/c\", \"oidcIssuer\": \"i\", \"subjectEmail\": \"e\", \"x\": 1}, \"rekorPublicKeyPath\": \"/r\"}]}", 1, "unknown key \"x\" in \"fulcio\""),
        ("{\"default\": [{\"type\": \"sigstoreSigned\", \"keyPath\": \"/k\", \"rekorPublicKeyPath\": \"/r\", \"rekorPublicKeyData\": \"\"}]}", 1, "keep exactly one"),
        ("{\"default\": [{\"type\": \"sigstoreSigned\",\n \"keyDatas\": []}]}", 2, "not supported"),
        ("{\"default\": [{\"type\": \"signedBaseLayer\", \"baseLayerIdentity\": {}}]}", 1, "not implemented"),
        ("{\"default\": [{\"type\": \"reject\"}], \"transports\": {\"oci\": {\n\"relative\": [{\"type\": \"reject\"}]}}}", 2, "absolute path"),
        ("{\"default\": [{\"type\": \"reject\"}], \"transports\": {\"oci\": {\"/\": [{\"type\": \"reject\"}]}}}", 1, "not allowed"),
        ("{\"default\": [{\"type\": \"reject\"}], \"transports\": {\"oci-archive\": {\"/a/../b\": [{\"type\": \"reject\"}]}}}", 1, "not a clean path"),
        ("{\"default\": [{\"type\": \"reject\"}], \"transports\": {\"oci\": {\"/a/\": [{\"type\": \"reject\"}]}}}", 1, "not a clean path"),
        ("{\"default\": [{\"type\": \"reject\"}], \"transports\": {\"docker-archive\": {\"/a\": [{\"type\": \"reject\"}]}}}", 1, "only the default scope"),
        ("{\"default\": [{\"type\": \"reject\"}], \"transports\": {\"docker\": {\"a\": []}}}", 1, "empty list"),
        ("{\"default\": [{\"type\": \"reject\"}], \"transports\": {\"docker\": []}}", 1, "must be an object"),
        ("{\"default\": [{\"type\": \"reject\"}], \"transports\": {\"docker\": {\"a\": [{\"type\": \"reject\"}],\n\"a\": [{\"type\": \"reject\"}]}}}", 2, "duplicate key \"a\""),
        ("{\"default\": {\"type\": \"reject\"}}", 1, "must be an array"),
        ("{\"default\": [{\"type\": \"reject\"}]} {}", 1, "unexpected data"),
    ];
    for (text, line, fragment) in cases {
        let e = parse(text).map(|_| ()).unwrap_err();
        assert_eq!(e.file, "policy.json");
        assert!(e.message.contains(fragment), "{text}: {e}");
        assert_eq!(e.line, *line, "{text}: {e}");
        assert!(e.to_string().starts_with(&format!("policy.json:{line}: ")), "{e}");
    }
}

#[test]
fn edits_and_writes_back() {
    let mut p = Policy::insecure_default();
    p.set_default(vec![Requirement::Reject]);
    p.set_default(vec![]);
    assert_eq!(p.default, vec![Requirement::Reject]);
    let signed = Requirement::SignedBy {
        keys: KeySource::Path("/etc/pki/key.gpg".into()),
        identity: SignedIdentity::MatchRepoDigestOrExact,
    };
    p.set_scope("docker", "127.0.0.1:5000/x", vec![signed.clone()]);
    p.set_scope("docker", "docker.io", vec![Requirement::InsecureAcceptAnything]);
    let want = "{\n    \"default\": [\n        {\n            \"type\": \"reject\"\n        }\n    ],\n    \"transports\": {\n        \"docker\": {\n            \"127.0.0.1:5000/x\": [\n                {\n                    \"type\": \"signedBy\",\n                    \"keyType\": \"GPGKeys\",\n                    \"keyPath\": \"/etc/pki/key.gpg\"\n                }\n            ],\n            \"docker.io\": [\n                {\n                    \"type\": \"insecureAcceptAnything\"\n                }\n            ]\n        }\n    }\n}";
    assert_eq!(p.to_json(), want);
    p.set_scope("docker", "docker.io", vec![]);
    p.set_scope("docker", "127.0.0.1:5000/x", vec![]);
    assert!(p.transports.is_empty());
    assert_eq!(p.to_json(), "{\n    \"default\": [\n        {\n            \"type\": \"reject\"\n        }\n    ]\n}");
    let data = Requirement::SigstoreSigned {
        key: Some(KeySource::Data(vec![0, 1, 2, 255])),
        fulcio: None,
        rekor_public_key: Some(KeySource::Paths(vec!["/r1".into()])),
        identity: SignedIdentity::MatchRepository,
    };
    p.set_scope("docker", "quay.io", vec![data.clone()]);
    let again = parse(&p.to_json()).unwrap();
    assert_eq!(again.requirements_for(Transport::Docker, "quay.io/a:b"), &[data]);
    assert!(check_scope("oci", "/ok/path").is_ok());
    assert!(check_scope("oci", "").is_ok());
    assert!(check_scope("docker-archive", "/x").is_err());
}

// ---- evaluation ----

const MANIFEST: &[u8] = br#"{"schemaVersion":2}"#;

fn verified(identity: &str, manifest: &[u8], signer: &str) -> Verified {
    Verified { identity: identity.into(), manifest_digest: Digest::of_bytes(manifest), signer: signer.into() }
}

fn simple(tag: &[u8]) -> Signature {
    Signature::Simple(tag.to_vec())
}

fn signed_by() -> Requirement {
    Requirement::SignedBy { keys: KeySource::Path("/k".into()), identity: SignedIdentity::MatchRepoDigestOrExact }
}

fn sigstore() -> Requirement {
    Requirement::SigstoreSigned {
        key: Some(KeySource::Path("/cosign.pub".into())),
        fulcio: None,
        rekor_public_key: None,
        identity: SignedIdentity::MatchRepository,
    }
}

/// A fake check: a simple signature's bytes say what it claims
/// (`good:IDENTITY`, `other-digest:IDENTITY`, anything else is bad).
fn fake(_req: &Requirement, sig: &Signature) -> Result<Verified, String> {
    let bytes = match sig {
        Signature::Simple(b) => b.clone(),
        Signature::Sigstore { payload, .. } => payload.clone(),
    };
    let s = String::from_utf8(bytes).unwrap();
    if let Some(id) = s.strip_prefix("good:") {
        Ok(verified(id, MANIFEST, "FINGERPRINT"))
    } else if let Some(id) = s.strip_prefix("other-digest:") {
        Ok(verified(id, b"another manifest", "FINGERPRINT"))
    } else {
        Err(format!("bad signature {s:?}"))
    }
}

fn candidate<'a>(r: &'a Reference) -> Candidate<'a> {
    Candidate { transport: Transport::Docker, scope: r.to_string(), reference: Some(r), manifest: MANIFEST }
}

#[test]
fn evaluate_accepts_and_refuses() {
    let r = Reference::parse("example.com/app:1").unwrap();
    let img = candidate(&r);
    let good = simple(b"good:example.com/app:1");

    let a = evaluate_with(&[Requirement::InsecureAcceptAnything], &img, &[], &fake).unwrap();
    assert_eq!(a.reasons, ["insecureAcceptAnything: accepted without checks"]);
    assert!(a.verified.is_empty());

    assert!(matches!(evaluate_with(&[], &img, &[], &fake), Err(Refused::Policy(_))));
    assert!(matches!(
        evaluate_with(
            &[Requirement::InsecureAcceptAnything, Requirement::Reject],
            &img,
            std::slice::from_ref(&good),
            &fake
        ),
        Err(Refused::Rejected { .. })
    ));
    assert!(matches!(evaluate_with(&[signed_by()], &img, &[], &fake), Err(Refused::Unsigned { .. })));
    // A sigstore signature does not count for signedBy.
    let sig_only = Signature::Sigstore { payload: b"good:example.com/app:1".to_vec(), annotations: Default::default() };
    assert!(matches!(
        evaluate_with(&[signed_by()], &img, std::slice::from_ref(&sig_only), &fake),
        Err(Refused::Unsigned { .. })
    ));

    let a = evaluate_with(&[signed_by()], &img, &[simple(b"junk"), good.clone()], &fake).unwrap();
    assert_eq!(a.reasons, ["signedBy: signed by FINGERPRINT for example.com/app:1"]);
    assert_eq!(a.verified, vec![verified("example.com/app:1", MANIFEST, "FINGERPRINT")]);

    // Both kinds required: each needs its own.
    let both = [signed_by(), sigstore()];
    let a = evaluate_with(&both, &img, &[good.clone(), sig_only.clone()], &fake).unwrap();
    assert_eq!(a.reasons.len(), 2);
    assert!(
        matches!(evaluate_with(&both, &img, std::slice::from_ref(&good), &fake), Err(Refused::Unsigned { requirement, .. }) if requirement == "sigstoreSigned")
    );

    // Wrong digest, wrong identity, bad signature: none valid, each said.
    let sigs = [simple(b"other-digest:example.com/app:1"), simple(b"good:example.com/app:2"), simple(b"junk")];
    match evaluate_with(&[signed_by()], &img, &sigs, &fake) {
        Err(Refused::NoneValid { count, reasons, requirement, scope }) => {
            assert_eq!(count, 3);
            assert_eq!(requirement, "signedBy");
            assert_eq!(scope, "example.com/app:1");
            assert!(reasons.contains("signature 1: it signs manifest sha256:"), "{reasons}");
            assert!(reasons.contains("signature 2: signed for example.com/app:2, which does not match"), "{reasons}");
            assert!(reasons.contains("signature 3: bad signature"), "{reasons}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn evaluate_bounds_signatures_and_reasons() {
    let r = Reference::parse("example.com/app:1").unwrap();
    let img = candidate(&r);
    let long = "x".repeat(10_000);
    let mut sigs = vec![simple(long.as_bytes()); MAX_SIGNATURES + 10];
    sigs.push(simple(b"good:example.com/app:1"));
    match evaluate_with(&[signed_by()], &img, &sigs, &fake) {
        Err(Refused::NoneValid { count, reasons, .. }) => {
            assert_eq!(count, MAX_SIGNATURES);
            assert!(reasons.len() < MAX_SIGNATURES * (MAX_REASON + 40), "{}", reasons.len());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn evaluate_by_digest_and_unnamed() {
    let digest = Digest::of_bytes(MANIFEST);
    let r = Reference::parse(&format!("example.com/app@{digest}")).unwrap();
    let img = candidate(&r);
    // By digest, any tag of the repository signs it.
    assert!(evaluate_with(&[signed_by()], &img, &[simple(b"good:example.com/app:v1")], &fake).is_ok());
    assert!(evaluate_with(&[signed_by()], &img, &[simple(b"good:example.com/other:v1")], &fake).is_err());
    // An image without a name needs an exact rule.
    let unnamed = Candidate { transport: Transport::Oci, scope: "/srv/x".into(), reference: None, manifest: MANIFEST };
    assert!(evaluate_with(&[signed_by()], &unnamed, &[simple(b"good:example.com/app:1")], &fake).is_err());
    let exact = Requirement::SignedBy {
        keys: KeySource::Path("/k".into()),
        identity: SignedIdentity::ExactReference(Reference::parse("example.com/app:1").unwrap()),
    };
    assert!(evaluate_with(&[exact], &unnamed, &[simple(b"good:example.com/app:1")], &fake).is_ok());
}

#[test]
fn policy_evaluate_names_the_section() {
    let p = parse(PODMAN_POLICY).unwrap();
    let r = Reference::parse("quay.io/a/b:1").unwrap();
    match p.evaluate_with(&candidate(&r), &[], &fake) {
        Err(e @ Refused::Rejected { .. }) => {
            assert!(e.to_string().contains("in policy.json (default)"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

// ---- properties ----

fn arb_identity() -> impl Strategy<Value = SignedIdentity> {
    prop_oneof![
        Just(SignedIdentity::MatchRepoDigestOrExact),
        Just(SignedIdentity::MatchRepository),
        Just(SignedIdentity::MatchExact),
        "[a-z]{1,8}(\\.[a-z]{2,3})?/[a-z]{1,8}:[a-z0-9]{1,5}"
            .prop_map(|s| SignedIdentity::ExactReference(Reference::parse(&s).unwrap())),
        "[a-z]{1,8}\\.[a-z]{2,3}/[a-z]{1,8}"
            .prop_map(|s| SignedIdentity::ExactRepository(Reference::parse(&s).unwrap())),
        ("[a-z]{1,8}\\.[a-z]{2,3}", "[a-z]{1,8}\\.com(/[a-z]{1,4})?")
            .prop_map(|(prefix, signed_prefix)| SignedIdentity::RemapIdentity { prefix, signed_prefix }),
    ]
}

fn arb_keys() -> impl Strategy<Value = KeySource> {
    prop_oneof![
        "/[a-z<>&\" é]{1,10}".prop_map(|s| KeySource::Path(s.into())),
        proptest::collection::vec("/[a-z]{1,10}", 1..4)
            .prop_map(|v| KeySource::Paths(v.into_iter().map(PathBuf::from).collect())),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(KeySource::Data),
    ]
}

fn arb_req() -> impl Strategy<Value = Requirement> {
    prop_oneof![
        Just(Requirement::InsecureAcceptAnything),
        Just(Requirement::Reject),
        (arb_keys(), arb_identity()).prop_map(|(keys, identity)| Requirement::SignedBy { keys, identity }),
        (arb_keys(), proptest::option::of(arb_keys()), arb_identity()).prop_map(|(k, rekor, identity)| {
            Requirement::SigstoreSigned { key: Some(k), fulcio: None, rekor_public_key: rekor, identity }
        }),
        (arb_keys().prop_filter("no paths", |k| !matches!(k, KeySource::Paths(_))), arb_keys(), "[a-z@.]{1,10}")
            .prop_map(|(ca, rekor, email)| Requirement::SigstoreSigned {
                key: None,
                fulcio: Some(Fulcio { ca, oidc_issuer: "https://issuer".into(), subject_email: email }),
                rekor_public_key: Some(rekor),
                identity: SignedIdentity::MatchRepoDigestOrExact,
            }),
    ]
}

proptest! {
    #[test]
    fn written_policies_read_back(
        default in proptest::collection::vec(arb_req(), 1..3),
        docker in proptest::collection::btree_map("[a-z.*:0-9/]{0,12}", proptest::collection::vec(arb_req(), 1..3), 0..4),
        oci in proptest::collection::btree_map("(/[a-z]{1,5}){1,3}", proptest::collection::vec(arb_req(), 1..2), 0..3),
    ) {
        let mut p = Policy::insecure_default();
        p.source = "policy.json".into();
        p.set_default(default);
        for (s, r) in docker { p.set_scope("docker", &s, r); }
        for (s, r) in oci { p.set_scope("oci", &s, r); }
        let text = p.to_json();
        let again = parse(&text).unwrap();
        prop_assert_eq!(&again, &p);
        prop_assert_eq!(again.to_json(), text);
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,300}") {
        let _ = parse(&s);
    }

    #[test]
    fn mutated_policies_never_panic(cut in 0usize..2000, byte in any::<u8>()) {
        let mut b = PODMAN_POLICY.as_bytes().to_vec();
        let i = cut % b.len();
        b[i] = byte;
        let text = String::from_utf8_lossy(&b);
        if let Err(e) = parse(&text) {
            prop_assert!(e.line >= 1 && e.line <= text.lines().count().max(1));
        }
    }

    #[test]
    fn docker_candidates_are_prefixes(host in "[a-z]{1,5}(\\.[a-z]{1,3}){0,3}(:[0-9]{1,4})?", path in "[a-z]{1,4}(/[a-z]{1,4}){0,3}", tag in "(:[a-z0-9]{1,4})?") {
        let scope = format!("{host}/{path}{tag}");
        let c = scope_candidates(Transport::Docker, &scope);
        prop_assert_eq!(&c[0], &scope);
        for s in c.iter().filter(|s| !s.starts_with("*.")) {
            prop_assert!(scope.starts_with(s.as_str()));
        }
        prop_assert!(c.contains(&host));
    }
}

/// Decisions skopeo 1.9.3 made for `skopeo --policy P copy
/// oci:/tmp/pol-x/a/b/img:1 dir:...` (and a docker-archive source): the
/// same scope is chosen here, and the same policies are refused.
#[test]
fn scopes_as_skopeo_decides() {
    let a = r#"[{"type":"insecureAcceptAnything"}]"#;
    let r = r#"[{"type":"reject"}]"#;
    let img = "/tmp/pol-x/a/b/img:1";
    let cases: &[(String, Transport, &str, Option<bool>)] = &[
        (
            format!(r#"{{"default":{r},"transports":{{"oci":{{"/tmp/pol-x/a":{a}}}}}}}"#),
            Transport::Oci,
            img,
            Some(true),
        ),
        (
            format!(r#"{{"default":{r},"transports":{{"oci":{{"/tmp/pol-x/a/b/img:1":{a}}}}}}}"#),
            Transport::Oci,
            img,
            Some(false),
        ),
        (
            format!(r#"{{"default":{r},"transports":{{"oci":{{"/tmp/pol-x/a/b/img":{a}}}}}}}"#),
            Transport::Oci,
            img,
            Some(true),
        ),
        (
            format!(r#"{{"default":{a},"transports":{{"oci":{{"/tmp/pol-x/a/b/img":{r},"/tmp/pol-x":{a}}}}}}}"#),
            Transport::Oci,
            img,
            Some(false),
        ),
        (
            format!(r#"{{"default":{a},"transports":{{"docker-archive":{{"":{r}}}}}}}"#),
            Transport::DockerArchive,
            "/x.tar",
            Some(false),
        ),
        (
            format!(r#"{{"default":{a},"transports":{{"docker-archive":{{"/work":{r}}}}}}}"#),
            Transport::DockerArchive,
            "/x.tar",
            None,
        ),
        (format!(r#"{{"default":{a},"transports":{{"oci":{{"/":{r}}}}}}}"#), Transport::Oci, img, None),
        (format!(r#"{{"default":{a},"transports":{{"oci":{{"/tmp/pol-x/a/":{r}}}}}}}"#), Transport::Oci, img, None),
        (format!(r#"{{"default":{a},"transports":{{"bogus":{{"x":{r}}}}}}}"#), Transport::Oci, img, Some(true)),
    ];
    for (text, t, scope, want) in cases {
        match (parse(text), want) {
            (Ok(p), Some(accept)) => {
                let reqs = p.requirements_for(*t, scope);
                assert_eq!(reqs == [Requirement::InsecureAcceptAnything], *accept, "{text}");
            }
            (Err(_), None) => {}
            (got, want) => panic!("{text}: {got:?}, want {want:?}"),
        }
    }
}
