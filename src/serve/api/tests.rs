//! The API answered in-process: an `Api` over a store in a temporary
//! directory, called through its request handler as `serve::http` calls it.

use super::{Api, Settings};
use crate::digest::Digest;
use crate::image;
use crate::serve::admin;
use crate::serve::backend::Backend;
use crate::serve::http::{Body, Handler, Request, Response};
use crate::store::Store;
use crate::testdir::TestDir;
use base64::Engine;
use std::io::{Read, Seek, SeekFrom};

/// The server's address as the tests' requests reach it.
const LOCAL: &str = "127.0.0.1:5000";
const ADMIN: (&str, &str) = ("boss", "boss-password");
const USER: (&str, &str) = ("alice", "alice-password");

/// A store with an admin, a user without grants and a public namespace
/// `pub`, and an `Api` over it.
struct Server {
    api: Api,
    dir: TestDir,
}

/// An answer, its body read.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// The spec's error code of an error answer.
    fn code(&self) -> String {
        self.json().pointer("/errors/0/code").and_then(|c| c.as_str()).unwrap_or("").to_string()
    }

    fn message(&self) -> String {
        self.json().pointer("/errors/0/message").and_then(|c| c.as_str()).unwrap_or("").to_string()
    }
}

fn read_body(resp: Response) -> Answer {
    let body = match resp.body {
        Body::Empty => Vec::new(),
        Body::Bytes(b) => b,
        Body::File { mut file, offset, len } => {
            file.seek(SeekFrom::Start(offset)).unwrap();
            let mut b = Vec::new();
            file.take(len).read_to_end(&mut b).unwrap();
            b
        }
        Body::Reader { reader, len } => {
            let mut b = Vec::new();
            reader.into_inner().unwrap().take(len).read_to_end(&mut b).unwrap();
            b
        }
    };
    Answer { status: resp.status, headers: resp.headers, body }
}

fn basic((user, password): (&str, &str)) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

impl Server {
    fn new(name: &str, settings: Settings) -> Server {
        let dir = TestDir::new(&format!("serve-api-{name}"));
        {
            drop(Store::open(&dir).unwrap());
            let store = crate::serve::backend::local::Local::new(&dir).unwrap();
            admin::user_add(&store, ADMIN.0, ADMIN.1, Some(true)).unwrap();
            admin::user_add(&store, USER.0, USER.1, None).unwrap();
            admin::namespace_add(&store, "pub", true).unwrap();
        }
        let backend: std::sync::Arc<dyn crate::serve::backend::Backend> =
            std::sync::Arc::new(crate::serve::backend::local::Local::new(&dir).unwrap());
        let api = Api::new(backend, settings).unwrap();
        Server { api, dir }
    }

    /// Calls the handler with a request from `peer` (an address of the
    /// loopback network, port 40000).
    fn call_from(&self, peer: &str, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let req = Request {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            headers: headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect(),
            peer: format!("{peer}:40000").parse().unwrap(),
            local: LOCAL.parse().unwrap(),
            tls: false,
        };
        let mut body = body;
        read_body(self.api.handle(&req, &mut body))
    }

    fn call(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        self.call_from("127.0.0.1", method, target, headers, body)
    }

    /// Uploads `bytes` to `repo` in one request as the admin.
    fn push_blob(&self, repo: &str, bytes: &[u8]) -> (Digest, u64) {
        let d = Digest::of_bytes(bytes);
        let auth = basic(ADMIN);
        let a = self.call("POST", &format!("/v2/{repo}/blobs/uploads/?digest={d}"), &[("Authorization", &auth)], bytes);
        assert_eq!(a.status, 201, "{}", a.message());
        (d, bytes.len() as u64)
    }

    /// Pushes an artifact (a config and one layer) to `repo:tag` as the
    /// admin; gives the manifest's bytes and digest.
    fn push_artifact(&self, repo: &str, tag: &str) -> (Vec<u8>, Digest) {
        let config = self.push_blob(repo, b"{\"kind\":\"test\"}");
        let layer = self.push_blob(repo, format!("the layer of {repo}").as_bytes());
        let m = artifact(config, layer.clone(), layer.1);
        let auth = basic(ADMIN);
        let a = self.call(
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("Authorization", &auth), ("Content-Type", image::OCI_MANIFEST)],
            &m,
        );
        assert_eq!(a.status, 201, "{}", a.message());
        let d = Digest::of_bytes(&m);
        assert_eq!(a.header("Docker-Content-Digest"), Some(d.as_str()));
        (m, d)
    }
}

/// An artifact manifest whose layer descriptor says `layer_size`.
fn artifact(config: (Digest, u64), layer: (Digest, u64), layer_size: u64) -> Vec<u8> {
    image::build_manifest(
        image::OCI_MANIFEST,
        ("application/vnd.example.config.v1+json", &config.0, config.1),
        &[("application/vnd.example.layer.v1", &layer.0, layer_size)],
    )
}

#[test]
fn anonymous_callers_pull_a_public_repository() {
    let s = Server::new("anonymous-public", Settings::default());
    let (m, d) = s.push_artifact("pub/app", "1");
    let a = s.call("GET", "/v2/pub/app/manifests/1", &[], b"");
    assert_eq!((a.status, &a.body), (200, &m));
    assert_eq!(a.header("Docker-Content-Digest"), Some(d.as_str()));
    let a = s.call("GET", "/v2/pub/app/tags/list", &[], b"");
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["tags"], serde_json::json!(["1"]));
    let layer = Digest::of_bytes(b"the layer of pub/app");
    let a = s.call("GET", &format!("/v2/pub/app/blobs/{layer}"), &[], b"");
    assert_eq!((a.status, a.body.as_slice()), (200, b"the layer of pub/app".as_slice()));
    // Pulling is all: a push is asked to log in.
    let a = s.call("POST", "/v2/pub/app/blobs/uploads/", &[], b"");
    assert_eq!((a.status, a.code().as_str()), (401, "UNAUTHORIZED"));
}

#[test]
fn a_private_repository_answers_as_a_missing_one() {
    let s = Server::new("private-as-missing", Settings::default());
    s.push_artifact("team/app", "1");
    // A private repository in a public namespace, beside missing ones there.
    s.push_artifact("pub/secret", "1");
    admin::repository_visibility(&crate::serve::backend::local::Local::new(&s.dir).unwrap(), "pub/secret", Some(false))
        .unwrap();
    let user = basic(USER);
    for (private, missing) in [("team/app", "team/gone"), ("pub/secret", "pub/gone")] {
        let layer = Digest::of_bytes(format!("the layer of {private}").as_bytes());
        for (who, headers) in [("anonymous", vec![]), ("a user without grants", vec![("Authorization", user.as_str())])]
        {
            for path in ["manifests/1", &format!("blobs/{layer}"), "tags/list"] {
                let what = format!("{who} {private} {path}");
                let p = s.call("GET", &format!("/v2/{private}/{path}"), &headers, b"");
                let m = s.call("GET", &format!("/v2/{missing}/{path}"), &headers, b"");
                assert!(matches!(p.status, 401 | 403), "{what}: {}", p.status);
                assert_eq!(p.status, m.status, "{what}");
                assert_eq!(p.code(), m.code(), "{what}");
                assert_eq!(p.message().replace(private, missing), m.message(), "{what}");
                assert_eq!(
                    p.header("WWW-Authenticate").map(|h| h.replace(private, missing)),
                    m.header("WWW-Authenticate").map(str::to_string),
                    "{what}"
                );
            }
        }
    }
    // The admin sees it.
    let a = s.call("GET", "/v2/team/app/manifests/1", &[("Authorization", &basic(ADMIN))], b"");
    assert_eq!(a.status, 200);
}

#[test]
fn tokens_are_issued_for_right_credentials_and_refused_for_wrong_ones() {
    let s = Server::new("tokens", Settings::default());
    s.push_artifact("team/app", "1");
    let a = s.call(
        "GET",
        "/token?service=img-serve&scope=repository:team/app:pull",
        &[("Authorization", &basic(ADMIN))],
        b"",
    );
    assert_eq!(a.status, 200);
    let token = a.json()["token"].as_str().unwrap().to_string();
    assert_eq!(a.json()["access_token"].as_str(), Some(token.as_str()));
    let bearer = format!("Bearer {token}");
    let a = s.call("GET", "/v2/team/app/manifests/1", &[("Authorization", &bearer)], b"");
    assert_eq!(a.status, 200);

    let a = s.call("GET", "/token", &[("Authorization", &basic((ADMIN.0, "wrong")))], b"");
    assert_eq!((a.status, a.code().as_str()), (401, "UNAUTHORIZED"));
    let a = s.call("GET", "/v2/team/app/manifests/1", &[("Authorization", "Bearer not.a.token")], b"");
    assert_eq!((a.status, a.code().as_str()), (401, "UNAUTHORIZED"));

    // The OAuth2 form: a refresh token when asked, and it gives access tokens.
    let form = |body: &str| {
        s.call("POST", "/token", &[("Content-Type", "application/x-www-form-urlencoded")], body.as_bytes())
    };
    let a = form("grant_type=password&username=boss&password=wrong&service=img-serve");
    assert_eq!(a.status, 401);
    let a = form("grant_type=password&username=boss&password=boss-password&access_type=offline&scope=x");
    assert_eq!(a.status, 200);
    let refresh = a.json()["refresh_token"].as_str().unwrap().to_string();
    let a = form(&format!("grant_type=refresh_token&refresh_token={refresh}"));
    assert_eq!(a.status, 200);
    assert!(a.json()["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    let a = form("grant_type=refresh_token&refresh_token=forged");
    assert_eq!(a.status, 401);
    let a = form("grant_type=client_credentials");
    assert_eq!(a.status, 400);

    // An anonymous token pulls what anyone may, and nothing private.
    let a = s.call("GET", "/token", &[], b"");
    assert_eq!(a.status, 200);
    let anonymous = format!("Bearer {}", a.json()["token"].as_str().unwrap());
    let a = s.call("GET", "/v2/team/app/manifests/1", &[("Authorization", &anonymous)], b"");
    assert_eq!(a.status, 401);
}

#[test]
fn manifests_are_put_got_and_headed_and_a_descriptor_size_mismatch_is_refused() {
    let s = Server::new("manifests", Settings::default());
    let auth = basic(ADMIN);
    let (m, d) = s.push_artifact("team/app", "1");
    for (method, reference) in [("GET", "1"), ("GET", d.as_str()), ("HEAD", "1"), ("HEAD", d.as_str())] {
        let a = s.call(method, &format!("/v2/team/app/manifests/{reference}"), &[("Authorization", &auth)], b"");
        assert_eq!(a.status, 200, "{method} {reference}");
        assert_eq!(a.header("Docker-Content-Digest"), Some(d.as_str()));
        assert_eq!(a.header("Content-Type"), Some(image::OCI_MANIFEST));
        assert_eq!(a.body, m);
    }
    let a = s.call("GET", "/v2/team/app/manifests/2", &[("Authorization", &auth)], b"");
    assert_eq!((a.status, a.code().as_str()), (404, "MANIFEST_UNKNOWN"));

    let config = (Digest::of_bytes(b"{\"kind\":\"test\"}"), 15);
    let layer = (Digest::of_bytes(b"the layer of team/app"), 21);
    let put = |reference: &str, m: &[u8]| {
        s.call(
            "PUT",
            &format!("/v2/team/app/manifests/{reference}"),
            &[("Authorization", &auth), ("Content-Type", image::OCI_MANIFEST)],
            m,
        )
    };
    let a = put("big", &artifact(config.clone(), layer.clone(), 22));
    assert_eq!((a.status, a.code().as_str()), (400, "SIZE_INVALID"), "{}", a.message());
    let a = put("small", &artifact(config.clone(), layer.clone(), 20));
    assert_eq!((a.status, a.code().as_str()), (400, "SIZE_INVALID"));
    let unknown = (Digest::of_bytes(b"never pushed"), 12);
    let a = put("unknown", &artifact(config.clone(), unknown, 12));
    assert_eq!((a.status, a.code().as_str()), (400, "MANIFEST_BLOB_UNKNOWN"));
    let other = artifact(config.clone(), layer.clone(), 21);
    let a = put(d.as_str(), &[other.as_slice(), b" "].concat());
    assert_eq!((a.status, a.code().as_str()), (400, "DIGEST_INVALID"));
    for tag in ["big", "small", "unknown"] {
        let a = s.call("GET", &format!("/v2/team/app/manifests/{tag}"), &[("Authorization", &auth)], b"");
        assert_eq!(a.status, 404, "{tag}");
    }
}

#[test]
fn a_monolithic_upload_becomes_a_blob_and_a_wrong_digest_is_refused() {
    let s = Server::new("monolithic", Settings::default());
    let auth = basic(ADMIN);
    let (d, _) = s.push_blob("team/app", b"one request");
    let a = s.call("GET", &format!("/v2/team/app/blobs/{d}"), &[("Authorization", &auth)], b"");
    assert_eq!((a.status, a.body.as_slice()), (200, b"one request".as_slice()));

    let claimed = Digest::of_bytes(b"something else");
    let a = s.call(
        "POST",
        &format!("/v2/team/app/blobs/uploads/?digest={claimed}"),
        &[("Authorization", &auth)],
        b"one request, changed",
    );
    assert_eq!((a.status, a.code().as_str()), (400, "DIGEST_INVALID"));
    for digest in [claimed, Digest::of_bytes(b"one request, changed")] {
        let a = s.call("GET", &format!("/v2/team/app/blobs/{digest}"), &[("Authorization", &auth)], b"");
        assert_eq!(a.status, 404);
    }
}

#[test]
fn a_chunked_upload_becomes_a_blob_and_a_wrong_digest_is_refused() {
    let s = Server::new("chunked", Settings::default());
    let auth = basic(ADMIN);
    let start = || {
        let a = s.call("POST", "/v2/team/app/blobs/uploads/", &[("Authorization", &auth)], b"");
        assert_eq!(a.status, 202);
        a.header("Location").unwrap().to_string()
    };
    let at = start();
    let a = s.call("PATCH", &at, &[("Authorization", &auth), ("Content-Range", "0-5")], b"first ");
    assert_eq!((a.status, a.header("Range")), (202, Some("0-5")));
    // A chunk that does not start where the upload is.
    let a = s.call("PATCH", &at, &[("Authorization", &auth), ("Content-Range", "3-8")], b"again ");
    assert_eq!((a.status, a.header("Range")), (416, Some("0-5")));
    let a = s.call("PATCH", &at, &[("Authorization", &auth), ("Content-Range", "6-11")], b"second");
    assert_eq!(a.status, 202);
    let a = s.call("GET", &at, &[("Authorization", &auth)], b"");
    assert_eq!((a.status, a.header("Range")), (204, Some("0-11")));
    let d = Digest::of_bytes(b"first second, last");
    let a = s.call("PUT", &format!("{at}?digest={d}"), &[("Authorization", &auth)], b", last");
    assert_eq!(a.status, 201, "{}", a.message());
    let a = s.call("GET", &format!("/v2/team/app/blobs/{d}"), &[("Authorization", &auth)], b"");
    assert_eq!((a.status, a.body.as_slice()), (200, b"first second, last".as_slice()));

    let at = start();
    let a = s.call("PATCH", &at, &[("Authorization", &auth)], b"other bytes");
    assert_eq!(a.status, 202);
    let a = s.call("PUT", &format!("{at}?digest={d}"), &[("Authorization", &auth)], b"");
    assert_eq!((a.status, a.code().as_str()), (400, "DIGEST_INVALID"));
    let a = s.call("GET", &at, &[("Authorization", &auth)], b"");
    assert_eq!((a.status, a.code().as_str()), (404, "BLOB_UPLOAD_UNKNOWN"));
}

#[test]
fn uploads_in_progress_are_limited_per_caller() {
    let settings = Settings { max_uploads_per_user: 2, upload_bytes_per_user: 16, ..Settings::default() };
    let s = Server::new("upload-limits", settings);
    {
        let store = crate::serve::backend::local::Local::new(&s.dir).unwrap();
        admin::namespace_add(&store, "team", false).unwrap();
        admin::grant(&store, USER.0, "team/app", "push").unwrap();
    }
    let boss = basic(ADMIN);
    let alice = basic(USER);
    let start = |auth: &str| s.call("POST", "/v2/team/app/blobs/uploads/", &[("Authorization", auth)], b"");
    let first = start(&boss);
    assert_eq!(first.status, 202);
    assert_eq!(start(&boss).status, 202);
    let a = start(&boss);
    assert_eq!((a.status, a.code().as_str()), (429, "TOOMANYREQUESTS"));
    assert_eq!(a.header("Retry-After"), Some("60"));
    // Another caller has uploads of their own.
    assert_eq!(start(&alice).status, 202);
    // Bytes count too: over 16 in uploads in progress is refused.
    let at = first.header("Location").unwrap();
    let a = s.call("PATCH", at, &[("Authorization", &boss)], b"sixteen bytes ok");
    assert_eq!(a.status, 202);
    let a = s.call("PATCH", at, &[("Authorization", &boss)], b"!");
    assert_eq!((a.status, a.code().as_str()), (413, "SIZE_INVALID"));
    // That upload is dropped, which makes room for another.
    let a = s.call("GET", at, &[("Authorization", &boss)], b"");
    assert_eq!(a.status, 404);
    assert_eq!(start(&boss).status, 202);
}

#[test]
fn the_admin_api_refuses_callers_who_are_not_admins() {
    let s = Server::new("admin-api", Settings::default());
    let a = s.call("GET", "/admin/v1/list", &[], b"");
    assert_eq!((a.status, a.code().as_str()), (401, "UNAUTHORIZED"));
    let a = s.call("GET", "/admin/v1/list", &[("Authorization", &basic(USER))], b"");
    assert_eq!((a.status, a.code().as_str()), (403, "DENIED"));
    let json = [("Authorization", basic(USER)), ("Content-Type", "application/json".to_string())];
    let json: Vec<(&str, &str)> = json.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = s.call("POST", "/admin/v1/grants", &json, br#"{"user":"alice","scope":"team","access":"push"}"#);
    assert_eq!((a.status, a.code().as_str()), (403, "DENIED"));
    let a = s.call("GET", "/admin/v1/list", &[("Authorization", &basic(ADMIN))], b"");
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["grants"], serde_json::json!([]), "{}", a.json());
}

#[test]
fn a_write_from_a_foreign_origin_is_refused() {
    let s = Server::new("foreign-origin", Settings::default());
    let (m, _) = s.push_artifact("pub/app", "1");
    let auth = basic(ADMIN);
    let foreign = [("Authorization", auth.as_str()), ("Origin", "http://evil.example")];
    let a = s.call("POST", "/v2/pub/app/blobs/uploads/", &foreign, b"");
    assert_eq!((a.status, a.code().as_str()), (403, "DENIED"));
    let a = s.call(
        "PUT",
        "/v2/pub/app/manifests/2",
        &[foreign.as_slice(), &[("Content-Type", image::OCI_MANIFEST)]].concat(),
        &m,
    );
    assert_eq!((a.status, a.code().as_str()), (403, "DENIED"));
    let a = s.call("DELETE", "/v2/pub/app/manifests/1", &foreign, b"");
    assert_eq!(a.status, 403);
    // Nor the admin API, even to read.
    let a = s.call("GET", "/admin/v1/list", &foreign, b"");
    assert_eq!(a.status, 403);
    // Reads from another origin are fine, and writes from this one.
    let a = s.call("GET", "/v2/pub/app/manifests/1", &foreign, b"");
    assert_eq!(a.status, 200);
    let own = [("Authorization", auth.as_str()), ("Origin", "http://127.0.0.1:5000")];
    let a = s.call("POST", "/v2/pub/app/blobs/uploads/", &own, b"");
    assert_eq!(a.status, 202);
    let a = s.call("GET", "/v2/pub/app/manifests/2", &[], b"");
    assert_eq!(a.status, 404);
}

#[test]
fn signature_extension_keeps_signatures_of_known_manifests_within_limits() {
    let s = Server::new("sigext", Settings::default());
    let auth = basic(ADMIN);
    let (_, d) = s.push_artifact("team/app", "1");
    let a = s.call("GET", "/v2/", &[("Authorization", &auth)], b"");
    assert_eq!(a.header("X-Registry-Supports-Signatures"), Some("1"));
    let path = format!("/extensions/v2/team/app/signatures/{d}");
    let a = s.call("GET", &path, &[("Authorization", &auth)], b"");
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["signatures"], serde_json::json!([]));
    let record = |name: &str, content: &[u8]| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "name": name, "type": "atomic",
            "content": base64::engine::general_purpose::STANDARD.encode(content),
        }))
        .unwrap()
    };
    let a = s.call("PUT", &path, &[("Authorization", &auth)], &record(&format!("{d}@abc"), b"signature one"));
    assert_eq!(a.status, 201, "{}", a.message());
    // The same signature again is kept once.
    let a = s.call("PUT", &path, &[("Authorization", &auth)], &record(&format!("{d}@def"), b"signature one"));
    assert_eq!(a.status, 201, "{}", a.message());
    let a = s.call("GET", &path, &[("Authorization", &auth)], b"");
    let sigs = a.json()["signatures"].as_array().cloned().unwrap();
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0]["content"], base64::engine::general_purpose::STANDARD.encode(b"signature one"));
    // Refused: a name for another manifest, unknown fields, a manifest not
    // pushed, a body over the limit, and anyone without push access.
    let a = s.call("PUT", &path, &[("Authorization", &auth)], &record("sha256:00@x", b"two"));
    assert_eq!((a.status, a.code().as_str()), (400, "SIGNATURE_INVALID"));
    let a = s.call(
        "PUT",
        &path,
        &[("Authorization", &auth)],
        br#"{"schemaVersion":2,"name":"x","type":"atomic","content":"","more":1}"#,
    );
    assert_eq!(a.status, 400);
    let other = format!("/extensions/v2/team/app/signatures/{}", Digest::of_bytes(b"nothing"));
    let a = s.call(
        "PUT",
        &other,
        &[("Authorization", &auth)],
        &record(&format!("{}@x", Digest::of_bytes(b"nothing")), b"x"),
    );
    assert_eq!((a.status, a.code().as_str()), (404, "MANIFEST_UNKNOWN"));
    let huge = vec![b'a'; (crate::trust::MAX_SIGNATURE_SIZE * 2) as usize];
    let a = s.call("PUT", &path, &[("Authorization", &auth)], &huge);
    assert_eq!(a.status, 413);
    let a = s.call("PUT", &path, &[("Authorization", &basic(USER))], &record(&format!("{d}@u"), b"user's"));
    assert!(a.status == 401 || a.status == 403, "{}", a.status);
    // Deleting the manifest deletes its signatures.
    let a = s.call("DELETE", &format!("/v2/team/app/manifests/{d}"), &[("Authorization", &auth)], b"");
    assert_eq!(a.status, 202);
    let a = s.call("GET", &path, &[("Authorization", &auth)], b"");
    assert_eq!(a.status, 404);
}

#[test]
fn referrers_carry_the_annotations_of_the_referring_manifest() {
    let s = Server::new("refannot", Settings::default());
    let auth = basic(ADMIN);
    let (subject, d) = s.push_artifact("team/app", "1");
    let config = s.push_blob("team/app", b"{}");
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": image::OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config.0.as_str(), "size": config.1},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": config.0.as_str(), "size": config.1}],
        "subject": {"mediaType": image::OCI_MANIFEST, "digest": d.as_str(), "size": subject.len()},
        "annotations": {"org.example.signed-by": "alice"},
    }))
    .unwrap();
    let rd = Digest::of_bytes(&m);
    let a = s.call(
        "PUT",
        &format!("/v2/team/app/manifests/{rd}"),
        &[("Authorization", &auth), ("Content-Type", image::OCI_MANIFEST)],
        &m,
    );
    assert_eq!(a.status, 201, "{}", a.message());
    let a = s.call("GET", &format!("/v2/team/app/referrers/{d}"), &[("Authorization", &auth)], b"");
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["manifests"][0]["annotations"], serde_json::json!({"org.example.signed-by": "alice"}));
}

#[test]
fn a_manifest_name_that_cannot_exist_is_not_found() {
    let s = Server::new("badname", Settings::default());
    let auth = basic(ADMIN);
    s.push_artifact("team/app", "1");
    for method in ["GET", "HEAD"] {
        let a = s.call(method, "/v2/team/app/manifests/.INVALID_MANIFEST_NAME", &[("Authorization", &auth)], b"");
        assert_eq!((a.status, a.code().as_str()), (404, "MANIFEST_UNKNOWN"), "{method}");
    }
    let a = s.call(
        "PUT",
        "/v2/team/app/manifests/.INVALID_MANIFEST_NAME",
        &[("Authorization", &auth), ("Content-Type", image::OCI_MANIFEST)],
        b"{}",
    );
    assert_eq!((a.status, a.code().as_str()), (400, "TAG_INVALID"));
}

#[test]
fn health_and_readiness_answer_without_credentials() {
    let s = Server::new("probes", Settings::default());
    let a = s.call("GET", "/healthz", &[], b"");
    assert_eq!((a.status, a.body.as_slice()), (200, &b"ok\n"[..]));
    let a = s.call("GET", "/readyz", &[], b"");
    assert_eq!((a.status, a.body.as_slice()), (200, &b"ready\n"[..]));
    let a = s.call("POST", "/readyz", &[], b"");
    assert_eq!(a.status, 405);
    // Not ready when the blob directory is gone.
    let blobs = crate::store::StorePaths::new(&s.dir).blobs_dir();
    std::fs::rename(&blobs, blobs.with_extension("moved")).unwrap();
    let a = s.call("GET", "/readyz", &[], b"");
    assert_eq!(a.status, 503);
    assert!(String::from_utf8_lossy(&a.body).contains("blob directory"));
    std::fs::rename(blobs.with_extension("moved"), &blobs).unwrap();
    assert_eq!(s.call("HEAD", "/readyz", &[], b"").status, 200);
}

/// Found by review: a namespace removed and made again public served its
/// old private images to everyone. Now its repositories go with it.
#[test]
fn a_removed_namespace_takes_its_images_with_it() {
    let s = Server::new("namespace-removal", Settings::default());
    let b = crate::serve::backend::local::Local::new(&s.dir).unwrap();
    admin::namespace_add(&b, "team", false).unwrap();
    s.push_artifact("team/app", "1");
    admin::namespace_rm(&b, "team").unwrap();
    admin::namespace_add(&b, "team", true).unwrap();
    let a = s.call("GET", "/v2/team/app/manifests/1", &[], b"");
    assert_eq!(a.status, 401, "anonymous: {}", a.message());
    let a = s.call("GET", "/v2/team/app/manifests/1", &[("Authorization", &basic(ADMIN))], b"");
    assert_eq!((a.status, a.code().as_str()), (404, "MANIFEST_UNKNOWN"));
    let a = s.call("GET", "/v2/_catalog", &[("Authorization", &basic(ADMIN))], b"");
    assert_eq!(a.json()["repositories"], serde_json::json!([]));
}

/// A repository made explicitly shows its summary and description in the
/// user API and on the page; a user with push may change them, one with
/// pull may not; a removed repository goes with its images.
#[test]
fn repositories_made_explicitly_describe_themselves() {
    let s = Server::new("repository-info", Settings::default());
    let b = crate::serve::backend::local::Local::new(&s.dir).unwrap();
    admin::namespace_add(&b, "team", false).unwrap();
    assert!(admin::repository_add(&b, "team/app", Some("The <app>"), Some("Nightly.")).unwrap());
    assert!(admin::repository_add(&b, "team/app", Some("two\nlines"), None).is_err());
    assert!(admin::repository_add(&b, "nons/app", None, None).is_err());
    admin::grant(&b, USER.0, "team/app", "pull").unwrap();
    let alice = basic(USER);
    // Made, with no image yet: it exists for those who may pull it.
    let a = s.call("GET", "/api/v1/repositories/team/app", &[("Authorization", &alice)], b"");
    assert_eq!(a.status, 200, "{}", a.message());
    assert_eq!(a.json()["summary"], "The <app>");
    assert_eq!(a.json()["description"], "Nightly.");
    assert_eq!(a.json()["public"], false);
    let a = s.call("GET", "/v2/_catalog", &[("Authorization", &alice)], b"");
    assert_eq!(a.json()["repositories"], serde_json::json!(["team/app"]));
    let a = s.call(
        "PUT",
        "/api/v1/repositories/team/app",
        &[("Authorization", &alice), ("Content-Type", "application/json")],
        br#"{"summary":"mine"}"#,
    );
    assert_eq!(a.status, 403, "pull may not change the summary");
    admin::grant(&b, USER.0, "team/app", "push").unwrap();
    let a = s.call(
        "PUT",
        "/api/v1/repositories/team/app",
        &[("Authorization", &alice), ("Content-Type", "application/json")],
        br#"{"summary":"mine"}"#,
    );
    assert_eq!(a.status, 204, "{}", a.message());
    assert_eq!(b.repository_info("team/app").unwrap().unwrap().summary, "mine");
    assert_eq!(b.repository_info("team/app").unwrap().unwrap().description, "Nightly.");
    s.push_artifact("team/app", "1");
    let page = s.call("GET", "/login", &[("Authorization", &alice)], b"");
    let html = String::from_utf8(page.body).unwrap();
    assert!(html.contains("id=\"account\">alice"), "{html}");
    assert!(html.contains("team/app <span class=\"kind\">shared with you</span>"));
    assert!(html.contains("<p class=\"summary\">mine</p>"));
    let a = s.call("GET", "/api/v1/credentials", &[("Authorization", &alice)], b"");
    assert_eq!(a.json()["user"], "alice");
    assert_eq!(a.json()["login"], format!("img login {LOCAL} -u alice"));
    let a = s.call("GET", "/login", &[], b"");
    assert_eq!(a.status, 401);
    assert!(a.header("WWW-Authenticate").unwrap().starts_with("Basic"));
    admin::repository_rm(&b, "team/app").unwrap();
    let a = s.call("GET", "/v2/team/app/manifests/1", &[("Authorization", &basic(ADMIN))], b"");
    assert_eq!(a.status, 404);
    assert!(admin::repository_rm(&b, "team/app").is_err());
}

/// With internal networks set, a client outside them reaches only the
/// namespaces made reachable from outside, whoever it is.
#[test]
fn namespaces_are_closed_to_outside_networks_unless_opened() {
    let settings = Settings { internal_networks: vec!["10.0.0.0/8".parse().unwrap()], ..Settings::default() };
    let s = Server::new("internal-networks", settings);
    let b = crate::serve::backend::local::Local::new(&s.dir).unwrap();
    // Pushed from outside while the namespace was reachable, then closed.
    admin::namespace_external(&b, "pub", true).unwrap();
    s.push_artifact("pub/app", "1");
    admin::namespace_external(&b, "pub", false).unwrap();
    let boss = basic(ADMIN);
    let a = s.call_from("127.0.0.1", "GET", "/v2/pub/app/manifests/1", &[("Authorization", &boss)], b"");
    assert_eq!((a.status, a.code().as_str()), (403, "DENIED"), "an admin outside: {}", a.message());
    let a = s.call_from("10.1.2.3", "GET", "/v2/pub/app/manifests/1", &[], b"");
    assert_eq!(a.status, 200, "anonymous inside, public namespace");
    admin::namespace_external(&b, "pub", true).unwrap();
    let a = s.call_from("127.0.0.1", "GET", "/v2/pub/app/manifests/1", &[], b"");
    assert_eq!(a.status, 200, "anonymous outside, once the namespace is reachable: {}", a.message());
    assert!(admin::namespace_external(&b, "nope", true).is_err());
}

/// Found by review: the token key was made per process, so a token from one
/// server got 401 from another on the same store. It is kept in the store.
#[test]
fn a_token_from_one_server_is_valid_on_another_on_the_same_store() {
    let s = Server::new("token-shared", Settings::default());
    let a = s.call("GET", "/token?service=img-serve", &[("Authorization", &basic(USER))], b"");
    assert_eq!(a.status, 200, "{}", a.message());
    let token = a.json()["token"].as_str().unwrap().to_string();
    let other: std::sync::Arc<dyn Backend> =
        std::sync::Arc::new(crate::serve::backend::local::Local::new(&s.dir).unwrap());
    let second =
        Server { api: Api::new(other, Settings::default()).unwrap(), dir: TestDir::new("token-shared-unused") };
    let bearer = format!("Bearer {token}");
    let a = second.call("GET", "/v2/", &[("Authorization", &bearer)], b"");
    assert_eq!(a.status, 200, "the second server refused the first one's token: {}", a.message());
}
