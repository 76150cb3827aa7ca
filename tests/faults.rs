//! Network-fault tests: `img pull` against an in-process fake registry
//! (tests/support/fake_registry.rs) that resets, truncates, stalls,
//! trickles, lies about digests and sizes, redirects forever, and asks for
//! credentials in unsafe ways. Each test checks what img reports and that
//! the store is left as it should be: the image complete, or absent with
//! only resumable partial downloads in ingest/.

mod support;

use img::digest::Digest;
use serde_json::json;
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::fake_registry::{basic_header, Auth, FakeRegistry, Fault, Request};
use support::*;

/// Longest any img run may take before the test kills it and fails.
const WATCHDOG: Duration = Duration::from_secs(45);

const NAME: &str = "faults/app";

// ---- running img ---------------------------------------------------------------

/// Runs img in `s` with a clean environment (no proxies, no auth files,
/// no registry timeout unless `env` sets one) and a watchdog. Returns what
/// it did and how long it took.
fn img(s: &Store, args: &[&str], env: &[(&str, &str)]) -> (Out, Duration) {
    let mut c = s.command(args);
    for k in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
        "REGISTRY_AUTH_FILE",
        "DOCKER_CONFIG",
        "XDG_CONFIG_HOME",
        "IMG_REGISTRY_TIMEOUT",
    ] {
        c.env_remove(k);
    }
    c.env("HOME", s.work()).env("XDG_RUNTIME_DIR", s.work());
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = c.spawn().expect("starting img");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("waiting for img") {
            break st;
        }
        if start.elapsed() > WATCHDOG {
            let _ = child.kill();
            let _ = child.wait();
            let err = err_t.join().unwrap();
            panic!("img {} was still running after {WATCHDOG:?}; killed\n--- stderr ---\n{err}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    let out = Out { cmd: args.join(" "), status, stdout: out_t.join().unwrap(), stderr: err_t.join().unwrap() };
    (out, took)
}

/// `img pull --tls-verify=false -q [extra] REFERENCE`.
fn pull(s: &Store, reference: &str, extra: &[&str], env: &[(&str, &str)]) -> (Out, Duration) {
    let mut args = vec!["pull", "--tls-verify=false", "-q"];
    args.extend_from_slice(extra);
    args.push(reference);
    img(s, &args, env)
}

// ---- fixtures --------------------------------------------------------------------

/// A one-layer image with a small gzip layer.
fn small_image() -> Image {
    ImageSpec::new(&["app:1"]).layer(Layer::simple("faults", Comp::Gzip)).build()
}

/// A one-layer image whose gzip layer holds `size` random bytes (so the
/// blob is about that large).
fn big_image(seed: u64, size: usize) -> Image {
    let data = Rng::new(seed).bytes(size);
    let tar = TarBuilder::new().dir("data").file("data/random", data).build();
    ImageSpec::new(&["big:1"]).layer(Layer::new(tar, Comp::Gzip)).build()
}

/// A registry serving `image` as NAME:1.
fn registry_with(image: &Image) -> FakeRegistry {
    let r = FakeRegistry::start();
    r.serve_image(NAME, "1", image);
    r
}

fn layer_path(image: &Image) -> String {
    FakeRegistry::blob_path(NAME, &image.layers[0].digest())
}

fn tag_path() -> String {
    FakeRegistry::manifest_path(NAME, "1")
}

// ---- store checks ----------------------------------------------------------------

/// The pull succeeded, printed the image ID, and the image is stored whole
/// under its tag with nothing left in ingest/.
fn assert_pulled(s: &Store, o: &Out, image: &Image, reference: &str, reg: &FakeRegistry) {
    assert!(o.success(), "expected the pull to succeed\n{}\nrequests:\n{}", o.describe(), reg.describe());
    assert_eq!(o.out().trim(), image.hex(), "{}", o.describe());
    let images = s.images();
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0]["Id"], json!(image.hex()));
    assert_eq!(images[0]["RepoTags"], json!([reference]));
    assert!(s.has_blob(&image.id), "config blob missing");
    for l in &image.layers {
        assert!(s.has_blob(&l.digest()), "layer blob {} missing", l.digest());
    }
    s.assert_fsck_clean();
    s.assert_ingest_empty();
}

/// No image, no blob; fsck clean; ingest/ holds at most partial downloads
/// of the blobs in `resumable`.
fn assert_nothing_stored(s: &Store, resumable: &[Digest]) {
    let images = s.images();
    assert!(images.is_empty(), "a failed pull left images: {images:?}");
    let blobs = s.blob_files();
    assert!(blobs.is_empty(), "a failed pull left blobs: {blobs:?}");
    s.assert_fsck_clean();
    let allowed: Vec<String> = resumable.iter().map(|d| format!("partial-{}", d.hex())).collect();
    // Downloads that finished and were verified are kept for the next pull too.
    let verified = |f: &str| {
        f.strip_prefix("partial-").is_some_and(|hex| {
            std::fs::read(s.root().join("ingest").join(f)).is_ok_and(|b| Digest::of_bytes(&b).hex() == hex)
        })
    };
    let left: Vec<String> = s.ingest_files().into_iter().filter(|f| !allowed.contains(f) && !verified(f)).collect();
    assert!(left.is_empty(), "a failed pull left files in ingest/: {left:?}");
}

fn partial_size(s: &Store, d: &Digest) -> Option<u64> {
    std::fs::metadata(s.root().join("ingest").join(format!("partial-{}", d.hex()))).ok().map(|m| m.len())
}

fn body_bytes(reqs: &[Request]) -> u64 {
    reqs.iter().map(|r| r.body_sent).sum()
}

fn gets(reqs: Vec<Request>) -> Vec<Request> {
    reqs.into_iter().filter(|r| r.method == "GET").collect()
}

// ---- resets, truncation, wrong bytes ------------------------------------------

// Guards: a connection reset halfway through a 4 MiB layer is resumed with
// a Range request inside the same pull; almost nothing is sent twice.
#[test]
fn a_reset_mid_blob_is_resumed_with_range_and_little_is_resent() {
    let image = big_image(1, 4 << 20);
    let reg = registry_with(&image);
    let blob = &image.layers[0].blob;
    let half = blob.len() as u64 / 2;
    reg.fault_on(&layer_path(&image), 1, Fault::ResetAfter(half));
    let s = Store::new();
    let (o, _) = pull(&s, &reg.reference(NAME, "1"), &[], &[]);
    assert_pulled(&s, &o, &image, &reg.reference(NAME, "1"), &reg);
    let reqs = gets(reg.requests_to(&layer_path(&image)));
    assert!(reqs.len() >= 2, "expected a second request after the reset\n{}", reg.describe());
    assert_eq!(reqs[0].body_sent, half, "the fault did not happen as planned\n{}", reg.describe());
    assert!(
        reqs[1..].iter().any(|r| r.range_start().is_some_and(|n| n > 0)),
        "no Range request after the reset\n{}",
        reg.describe()
    );
    let resent = body_bytes(&reqs) - blob.len() as u64;
    assert!(resent < blob.len() as u64 / 10, "{resent} of {} bytes were sent twice\n{}", blob.len(), reg.describe());
}

// Guards: a body cut short (fewer bytes than Content-Length, then a close)
// on every attempt fails the pull after a bounded number of retries with an
// error naming the blob, stores nothing but the resumable partial; the next
// pull, with the registry healthy, continues from that partial with Range.
#[test]
fn a_body_truncated_every_time_fails_and_the_next_pull_resumes() {
    let image = big_image(2, 1 << 20);
    let reg = registry_with(&image);
    let layer = &image.layers[0];
    let cut = 64 * 1024;
    reg.fault_always(&layer_path(&image), Fault::CloseAfter(cut));
    let s = Store::new();
    let (o, _) = pull(&s, &reg.reference(NAME, "1"), &[], &[]);
    let err = o.one_error_line();
    assert!(err.contains(&layer.digest().hex()[..12]), "the error does not name the blob: {err}");
    let first = gets(reg.requests_to(&layer_path(&image)));
    assert!((2..=10).contains(&first.len()), "expected a few attempts, got {}\n{}", first.len(), reg.describe());
    assert_nothing_stored(&s, &[layer.digest()]);
    let have = partial_size(&s, &layer.digest()).expect("no partial download kept to resume");
    assert!(have > 0 && have < layer.blob.len() as u64, "partial of {have} bytes");
    assert_eq!(have, body_bytes(&first), "the partial holds every byte received");

    reg.clear_faults();
    let mark = reg.requests().len();
    let (o, _) = pull(&s, &reg.reference(NAME, "1"), &[], &[]);
    assert_pulled(&s, &o, &image, &reg.reference(NAME, "1"), &reg);
    let second: Vec<Request> = gets(reg.requests_to(&layer_path(&image))).into_iter().skip(first.len()).collect();
    assert!(reg.requests().len() > mark);
    assert_eq!(second.len(), 1, "{}", reg.describe());
    assert_eq!(second[0].range_start(), Some(have), "the second pull did not resume\n{}", reg.describe());
    assert_eq!(second[0].status, 206);
    assert_eq!(second[0].body_sent, layer.blob.len() as u64 - have);
}

// Guards: layer bytes whose sha256 is not the manifest's digest are refused
// with both digests in the message, and the download is discarded.
#[test]
fn a_blob_with_the_wrong_digest_is_refused_and_discarded() {
    let image = small_image();
    let reg = registry_with(&image);
    let layer = &image.layers[0];
    let mut wrong = layer.blob.clone();
    let mid = wrong.len() / 2;
    wrong[mid] ^= 0xff;
    let actual = Digest::of_bytes(&wrong);
    reg.fault_always(&layer_path(&image), Fault::Replace(wrong));
    let s = Store::new();
    let (o, _) = pull(&s, &reg.reference(NAME, "1"), &[], &[]);
    let err = o.one_error_line();
    assert!(err.contains(&layer.digest().to_string()), "expected digest missing: {err}");
    assert!(err.contains(&actual.to_string()), "actual digest missing: {err}");
    assert_nothing_stored(&s, &[]);
    assert_eq!(partial_size(&s, &layer.digest()), None, "the refused download was kept");
}

// Guards: a registry that sends more bytes than the manifest's size for a
// blob (Content-Length covering them) is refused with the size named, and
// the download is discarded.
#[test]
fn a_blob_longer_than_the_manifest_size_is_refused() {
    let image = small_image();
    let reg = registry_with(&image);
    let layer = &image.layers[0];
    reg.fault_always(&layer_path(&image), Fault::Append(vec![b'x'; 1000]));
    let s = Store::new();
    let (o, _) = pull(&s, &reg.reference(NAME, "1"), &[], &[]);
    let err = o.one_error_line();
    assert!(err.contains(&layer.digest().hex()[..12]), "the error does not name the blob: {err}");
    assert!(err.contains(&layer.blob.len().to_string()), "the error does not give the manifest's size: {err}");
    assert_nothing_stored(&s, &[]);
    assert_eq!(partial_size(&s, &layer.digest()), None, "the refused download was kept");
    assert_eq!(gets(reg.requests_to(&layer_path(&image))).len(), 1, "a refusal is not retried\n{}", reg.describe());
}

// ---- server errors and rate limits -----------------------------------------

// Guards: a 500 for the manifest is retried and the pull succeeds.
#[test]
fn a_500_for_the_manifest_is_retried() {
    let image = small_image();
    let reg = registry_with(&image);
    reg.fault_on(&tag_path(), 1, Fault::Status(500, vec![], b"{}".to_vec()));
    let s = Store::new();
    let (o, _) = pull(&s, &reg.reference(NAME, "1"), &[], &[]);
    assert_pulled(&s, &o, &image, &reg.reference(NAME, "1"), &reg);
    assert_eq!(gets(reg.requests_to(&tag_path())).len(), 2, "{}", reg.describe());
}

// Guards: a 500 for a layer is retried and the pull succeeds.
#[test]
fn a_500_for_a_blob_is_retried() {
    let image = small_image();
    let reg = registry_with(&image);
    reg.fault_on(&layer_path(&image), 1, Fault::Status(500, vec![], b"{}".to_vec()));
    let s = Store::new();
    let (o, _) = pull(&s, &reg.reference(NAME, "1"), &[], &[]);
    assert_pulled(&s, &o, &image, &reg.reference(NAME, "1"), &reg);
    assert_eq!(gets(reg.requests_to(&layer_path(&image))).len(), 2, "{}", reg.describe());
}

/// Asserts the requests to `path` were a 429 and then, at least about a
/// second later (Retry-After: 1), a successful retry.
fn assert_waited_after_429(reg: &FakeRegistry, path: &str) {
    let reqs = gets(reg.requests_to(path));
    assert_eq!(reqs.len(), 2, "{}", reg.describe());
    assert_eq!(reqs[0].status, 429);
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(gap >= Duration::from_millis(900), "retried {gap:?} after a 429 with Retry-After: 1\n{}", reg.describe());
}

fn too_many() -> Fault {
    Fault::Status(
        429,
        vec![("Retry-After".into(), "1".into())],
        br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#.to_vec(),
    )
}

// Guards: a 429 with Retry-After: 1 for the manifest is retried, no sooner
// than the registry asked.
#[test]
fn a_429_for_the_manifest_is_retried_after_retry_after() {
    let image = small_image();
    let reg = registry_with(&image);
    reg.fault_on(&tag_path(), 1, too_many());
    let s = Store::new();
    let (o, _) = pull(&s, &reg.reference(NAME, "1"), &[], &[]);
    assert_pulled(&s, &o, &image, &reg.reference(NAME, "1"), &reg);
    assert_waited_after_429(&reg, &tag_path());
}

// Guards: a 429 with Retry-After: 1 for a layer is retried, no sooner than
// the registry asked.
#[test]
fn a_429_for_a_blob_is_retried_after_retry_after() {
    let image = small_image();
    let reg = registry_with(&image);
    reg.fault_on(&layer_path(&image), 1, too_many());
    let s = Store::new();
    let (o, _) = pull(&s, &reg.reference(NAME, "1"), &[], &[]);
    assert_pulled(&s, &o, &image, &reg.reference(NAME, "1"), &reg);
    assert_waited_after_429(&reg, &layer_path(&image));
}

// ---- silence and slowness --------------------------------------------------------

// Guards: a server that accepts connections and never answers (neither the
// TLS probe nor plain HTTP) makes the pull fail, within IMG_REGISTRY_TIMEOUT
// multiples rather than minutes, with an error saying it timed out.
#[test]
fn a_registry_that_never_answers_times_out() {
    let reg = FakeRegistry::silent();
    let s = Store::new();
    let (o, took) = pull(&s, &reg.reference(NAME, "1"), &[], &[("IMG_REGISTRY_TIMEOUT", "2")]);
    let err = o.one_error_line();
    assert!(err.to_lowercase().contains("timed out"), "the error does not say it timed out: {err}");
    assert!(took < Duration::from_secs(30), "took {took:?} with IMG_REGISTRY_TIMEOUT=2\n{}", o.describe());
    assert!(reg.connections() >= 1);
    assert_nothing_stored(&s, &[]);
    s.assert_ingest_empty();
}

// Guards: a layer body that stops flowing halfway is given up on after
// IMG_REGISTRY_TIMEOUT and resumed with Range; the pull completes.
#[test]
fn a_blob_body_that_stalls_times_out_and_is_resumed() {
    let image = big_image(3, 256 * 1024);
    let reg = registry_with(&image);
    let half = image.layers[0].blob.len() as u64 / 2;
    reg.fault_on(&layer_path(&image), 1, Fault::StallAfter(half));
    let s = Store::new();
    let (o, took) = pull(&s, &reg.reference(NAME, "1"), &[], &[("IMG_REGISTRY_TIMEOUT", "2")]);
    assert_pulled(&s, &o, &image, &reg.reference(NAME, "1"), &reg);
    assert!(took < Duration::from_secs(20), "took {took:?} with IMG_REGISTRY_TIMEOUT=2");
    let reqs = gets(reg.requests_to(&layer_path(&image)));
    assert_eq!(reqs.len(), 2, "{}", reg.describe());
    assert_eq!(reqs[1].range_start(), Some(half), "{}", reg.describe());
}

// Guards: a blob trickling one byte every 100 ms is slow but moving: each
// read comes well within IMG_REGISTRY_TIMEOUT, so the pull completes even
// though the whole body takes longer than that timeout.
#[test]
fn a_slow_trickle_that_keeps_moving_completes() {
    // An empty tar, gzip'ed: a few dozen bytes.
    let layer = Layer::new(TarBuilder::new().build(), Comp::Gzip);
    let image = ImageSpec::new(&["slow:1"]).layer(layer).build();
    let every = Duration::from_millis(100);
    let timeout = Duration::from_secs(2);
    // The last byte is not followed by a pause.
    let total = every * (image.layers[0].blob.len() as u32 - 1);
    assert!(total > timeout, "the trickle ({total:?}) must outlast the timeout to mean anything");
    let reg = registry_with(&image);
    reg.fault_on(&layer_path(&image), 1, Fault::Trickle(every));
    let s = Store::new();
    let (o, took) = pull(&s, &reg.reference(NAME, "1"), &[], &[("IMG_REGISTRY_TIMEOUT", "2")]);
    assert_pulled(&s, &o, &image, &reg.reference(NAME, "1"), &reg);
    assert!(took >= total, "took {took:?}, less than the trickle itself");
    let reqs = gets(reg.requests_to(&layer_path(&image)));
    assert_eq!(reqs.len(), 1, "the trickle was abandoned\n{}", reg.describe());
    assert!(reqs[0].complete);
}

// ---- redirects and credentials ---------------------------------------------------

// Guards: a blob URL that redirects onward forever fails with an error
// about redirects, quickly and after a bounded number of requests.
#[test]
fn endless_redirects_fail_clearly_without_hanging() {
    let image = small_image();
    let reg = registry_with(&image);
    let path = layer_path(&image);
    reg.fault_always(&path, Fault::Redirect(format!("{path}?hop={{n}}")));
    let s = Store::new();
    let (o, took) = pull(&s, &reg.reference(NAME, "1"), &[], &[]);
    let err = o.one_error_line();
    assert!(err.contains("redirect"), "the error does not mention redirects: {err}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let hops = reg.requests_to(&path).len();
    assert!(hops < 100, "{hops} requests for a redirect loop");
    assert_nothing_stored(&s, &[image.layers[0].digest()]);
    assert_eq!(partial_size(&s, &image.layers[0].digest()).unwrap_or(0), 0);
}

const USER: &str = "alice";
const PASS: &str = "s3cret";

// Guards: with Basic auth on the registry, a layer redirected to another
// server (another port: another host) is fetched from there without the
// Authorization header, which only the registry receives.
#[test]
fn a_blob_redirected_to_another_host_gets_no_credentials() {
    let image = small_image();
    let reg = registry_with(&image);
    reg.set_auth(Auth::Basic { user: USER.into(), pass: PASS.into() });
    let cdn = FakeRegistry::start();
    let d = cdn.put_blob(NAME, &image.layers[0].blob);
    let path = layer_path(&image);
    reg.fault_always(&path, Fault::Redirect(format!("{}{}", cdn.url(), FakeRegistry::blob_path(NAME, &d))));
    let s = Store::new();
    let creds = format!("{USER}:{PASS}");
    let (o, _) = pull(&s, &reg.reference(NAME, "1"), &["--creds", &creds], &[]);
    assert_pulled(&s, &o, &image, &reg.reference(NAME, "1"), &reg);
    let basic = basic_header(USER, PASS);
    assert!(
        reg.requests_to(&path).iter().any(|r| r.header("authorization") == Some(basic.as_str()) && r.status == 307),
        "the registry never saw the credentials on the blob request\n{}",
        reg.describe()
    );
    let at_cdn = cdn.requests();
    assert!(!at_cdn.is_empty(), "nothing reached the other host\n{}", reg.describe());
    for r in &at_cdn {
        assert_eq!(r.header("authorization"), None, "credentials sent to another host:\n{}", cdn.describe());
    }
}

// Guards: hosts are compared by name, not address: a redirect to
// `localhost` on the registry's own port is another host, and gets no
// Authorization header (the URL is pre-signed, so it needs none).
#[test]
fn a_blob_redirected_to_another_host_name_gets_no_credentials() {
    let image = small_image();
    let reg = registry_with(&image);
    reg.set_auth(Auth::Basic { user: USER.into(), pass: PASS.into() });
    let path = layer_path(&image);
    reg.fault_on(&path, 1, Fault::Redirect(format!("http://localhost:{}{path}?signature=abc", reg.port())));
    let s = Store::new();
    let creds = format!("{USER}:{PASS}");
    let (o, _) = pull(&s, &reg.reference(NAME, "1"), &["--creds", &creds], &[]);
    assert_pulled(&s, &o, &image, &reg.reference(NAME, "1"), &reg);
    let via_name: Vec<Request> = reg
        .requests_to(&path)
        .into_iter()
        .filter(|r| r.header("host").is_some_and(|h| h.starts_with("localhost")))
        .collect();
    assert!(!via_name.is_empty(), "the redirect was not followed\n{}", reg.describe());
    for r in &via_name {
        assert_eq!(r.header("authorization"), None, "credentials sent to localhost:\n{}", reg.describe());
    }
}

// Guards: a Bearer challenge whose token realm is plain http on another
// host is refused: the realm receives nothing, so no credentials.
#[test]
fn a_token_realm_on_another_plain_http_host_is_refused() {
    let image = small_image();
    // A working token service: if img went there, it would get a token.
    let realm = FakeRegistry::start();
    let realm_url = format!("{}/token", realm.url());
    realm.set_auth(Auth::Bearer { realm: realm_url.clone(), service: "fake".into(), token: "tok".into() });
    let reg = registry_with(&image);
    reg.set_auth(Auth::Bearer { realm: realm_url, service: "fake".into(), token: "tok".into() });
    let s = Store::new();
    let creds = format!("{USER}:{PASS}");
    let (o, _) = pull(&s, &reg.reference(NAME, "1"), &["--creds", &creds], &[]);
    let asked = realm.requests();
    assert!(
        asked.iter().all(|r| r.header("authorization").is_none()),
        "credentials reached the realm:\n{}",
        realm.describe()
    );
    assert!(asked.is_empty(), "the realm was contacted:\n{}", realm.describe());
    let err = o.one_error_line();
    assert!(err.contains("realm"), "the error does not name the realm: {err}");
    assert!(err.contains("plain http"), "the error does not say why: {err}");
    assert_nothing_stored(&s, &[]);
    s.assert_ingest_empty();
}

// Guards (the control for the test above): a token realm on the registry
// itself is used: it gets the credentials, and requests carry the token.
#[test]
fn a_token_realm_on_the_registry_itself_is_used() {
    let image = small_image();
    let reg = registry_with(&image);
    reg.set_auth(Auth::Bearer { realm: format!("{}/token", reg.url()), service: "fake".into(), token: "tok".into() });
    let s = Store::new();
    let creds = format!("{USER}:{PASS}");
    let (o, _) = pull(&s, &reg.reference(NAME, "1"), &["--creds", &creds], &[]);
    assert_pulled(&s, &o, &image, &reg.reference(NAME, "1"), &reg);
    let token_reqs = reg.requests_to("/token");
    assert!(!token_reqs.is_empty(), "{}", reg.describe());
    assert_eq!(token_reqs[0].header("authorization"), Some(basic_header(USER, PASS).as_str()));
    assert!(token_reqs[0].target.contains("scope=repository%3Afaults%2Fapp%3Apull"), "{}", token_reqs[0].target);
    let served = reg.requests_to(&layer_path(&image));
    assert!(served.iter().any(|r| r.status == 200 && r.header("authorization") == Some("Bearer tok")));
}

// ---- hostile manifests -------------------------------------------------------------

// Guards: a manifest served with an index Content-Type but a manifest's
// body (`config`, `layers`) is refused, before any blob is fetched.
#[test]
fn a_manifest_whose_content_type_claims_an_index_is_refused() {
    let image = small_image();
    let reg = registry_with(&image);
    reg.put_manifest(NAME, "1", OCI_INDEX, &image.manifest);
    let s = Store::new();
    let (o, _) = pull(&s, &reg.reference(NAME, "1"), &[], &[]);
    let err = o.one_error_line();
    assert!(err.contains(OCI_INDEX), "the error does not name the claimed type: {err}");
    assert!(reg.requests().iter().all(|r| !r.path.contains("/blobs/")), "blobs were fetched\n{}", reg.describe());
    assert_nothing_stored(&s, &[]);
    s.assert_ingest_empty();
}

// Guards: a document whose mediaType says index but which has `layers`
// (CVE-2021-41190) is refused, whatever the Content-Type.
#[test]
fn a_manifest_whose_media_type_claims_an_index_is_refused() {
    let image = small_image();
    let reg = registry_with(&image);
    let mut m: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
    m["mediaType"] = json!(OCI_INDEX);
    reg.put_manifest(NAME, "1", OCI_MANIFEST, &serde_json::to_vec(&m).unwrap());
    let s = Store::new();
    let (o, _) = pull(&s, &reg.reference(NAME, "1"), &[], &[]);
    let err = o.one_error_line();
    assert!(err.contains(OCI_INDEX), "the error does not name the claimed type: {err}");
    assert!(reg.requests().iter().all(|r| !r.path.contains("/blobs/")), "blobs were fetched\n{}", reg.describe());
    assert_nothing_stored(&s, &[]);
    s.assert_ingest_empty();
}

// Guards: a 100 MB manifest is refused, and img stops reading it early:
// the server could not write more than a small part of it.
#[test]
fn a_100_mb_manifest_is_refused_without_reading_it_all() {
    let image = small_image();
    let reg = registry_with(&image);
    let len: u64 = 100_000_000;
    reg.fault_always(
        &tag_path(),
        Fault::Huge { content_type: OCI_MANIFEST.into(), prefix: br#"{"schemaVersion":2,"x":""#.to_vec(), len },
    );
    let s = Store::new();
    let (o, _) = pull(&s, &reg.reference(NAME, "1"), &[], &[]);
    let err = o.one_error_line();
    assert!(err.contains("larger than"), "the error does not say the manifest is too large: {err}");
    let reqs = gets(reg.requests_to(&tag_path()));
    assert!(!reqs.is_empty());
    for r in &reqs {
        assert!(!r.complete, "the whole 100 MB was sent\n{}", reg.describe());
        assert!(
            r.body_sent < 32 << 20,
            "{} bytes were sent before img stopped reading\n{}",
            r.body_sent,
            reg.describe()
        );
    }
    assert_nothing_stored(&s, &[]);
    s.assert_ingest_empty();
}

// Guards: a tag the registry does not have is a not-found error naming it,
// without retries.
#[test]
fn a_missing_tag_is_a_clear_not_found_error() {
    let image = small_image();
    let reg = registry_with(&image);
    let s = Store::new();
    let (o, _) = pull(&s, &reg.reference(NAME, "nosuchtag"), &[], &[]);
    let err = o.one_error_line();
    assert!(err.contains("not found"), "{err}");
    assert!(err.contains("nosuchtag"), "the error does not name the tag: {err}");
    let path = FakeRegistry::manifest_path(NAME, "nosuchtag");
    assert_eq!(reg.requests_to(&path).len(), 1, "a 404 was retried\n{}", reg.describe());
    assert!(reg.requests().iter().all(|r| !r.path.contains("/blobs/")));
    assert_nothing_stored(&s, &[]);
    s.assert_ingest_empty();
}

// ---- lazy mounts -------------------------------------------------------------------

/// Unmounts a directory when dropped (a failed test leaves no mount behind).
struct Unmount<'a>(&'a Store, std::path::PathBuf);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["umount", arg(&self.1)]);
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.1).stderr(Stdio::null()).status();
    }
}

// Guards: a lazy mount whose token the registry stops accepting (a 401 to
// the old one) fetches a new one and reads on; an unmount while a fetch
// hangs leaves a store that passes fsck, and img pull then completes the
// image. The image is made eStargz by img itself and served as it is.
#[test]
fn a_lazy_mount_renews_its_token_and_unmounts_with_a_fetch_in_flight() {
    if !need_root("this test mounts through FUSE") {
        return;
    }
    let src = Store::new();
    let mut rng = Rng::new(seed("lazy_token", 11));
    let files: Vec<Vec<u8>> = (0..3).map(|_| rng.bytes(300_000)).collect();
    let mut tar = TarBuilder::new().dir("etc").file("etc/os-release", "ID=lazy\n").dir("data");
    for (n, f) in files.iter().enumerate() {
        tar = tar.file(&format!("data/f{n}"), f);
    }
    let tar_path = src.write("root.tar", &tar.build());
    src.ok(&["import", arg(&tar_path), "localhost/lz:1"]);
    src.ok(&["convert", "-q", "--format", "estargz", "localhost/lz:1", "localhost/lz:esgz"]);
    let info = src.inspect("localhost/lz:esgz");
    let manifest_digest = Digest::parse(info["Digest"].as_str().unwrap()).unwrap();
    let manifest = std::fs::read(src.blob_path(&manifest_digest)).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let reg = FakeRegistry::start();
    let config = Digest::parse(m["config"]["digest"].as_str().unwrap()).unwrap();
    reg.put_blob(NAME, &std::fs::read(src.blob_path(&config)).unwrap());
    let layer = Digest::parse(m["layers"][0]["digest"].as_str().unwrap()).unwrap();
    reg.put_blob(NAME, &std::fs::read(src.blob_path(&layer)).unwrap());
    reg.put_manifest(NAME, "esgz", OCI_MANIFEST, &manifest);
    let bearer = |token: &str| Auth::Bearer {
        realm: format!("{}/token", reg.url()),
        service: "fake".into(),
        token: token.into(),
    };
    reg.set_auth(bearer("tok1"));
    let creds = format!("{USER}:{PASS}");
    let reference = reg.reference(NAME, "esgz");

    let s = Store::new();
    let dir = s.work().join("mnt");
    std::fs::create_dir_all(&dir).unwrap();
    let env = [("IMG_LAZY_TIMEOUT", "2")];
    let docker_ref = format!("docker://{reference}");
    let (o, _) = img(&s, &["mount", "--tls-verify=false", "--creds", &creds, &docker_ref, arg(&dir)], &env);
    assert!(o.success(), "{}", o.describe());
    let _guard = Unmount(&s, dir.clone());
    assert_eq!(std::fs::read(dir.join("etc/os-release")).unwrap(), b"ID=lazy\n");
    assert_eq!(s.inspect(&reference)["Partial"], json!(true));

    // The registry now wants another token.
    let tokens = reg.requests_to("/token").len();
    reg.set_auth(bearer("tok2"));
    assert_eq!(std::fs::read(dir.join("data/f0")).unwrap(), files[0], "{}", reg.describe());
    assert!(reg.requests_to("/token").len() > tokens, "no new token was asked for\n{}", reg.describe());
    let blob = FakeRegistry::blob_path(NAME, &layer);
    assert!(
        reg.requests_to(&blob)
            .iter()
            .any(|r| r.header("range").is_some() && r.header("authorization") == Some("Bearer tok2")),
        "no Range request with the new token\n{}",
        reg.describe()
    );

    // A fetch hangs; its reader is killed and the mount goes while the
    // serving process still waits on the registry.
    reg.fault_always(&blob, Fault::Hang);
    let before = reg.requests_to(&blob).len();
    let mut reader = std::process::Command::new("cat")
        .arg(dir.join("data/f1"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let waited = Instant::now();
    while reg.requests_to(&blob).len() == before && waited.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    reader.kill().unwrap();
    reader.wait().unwrap();
    let (o, _) = img(&s, &["umount", arg(&dir)], &[]);
    assert!(o.success(), "umount with a fetch in flight: {}", o.describe());
    s.assert_fsck_clean();
    s.assert_ingest_empty();

    // img pull completes it, from what was fetched and the rest.
    reg.clear_faults();
    let (o, _) = pull(&s, &reference, &["--creds", &creds], &[]);
    assert!(o.success(), "{}", o.describe());
    assert_eq!(s.inspect(&reference).get("Partial"), None);
    assert!(s.has_blob(&layer));
    s.assert_fsck_clean();
    let lazy = s.root().join("lazy");
    assert!(std::fs::read_dir(&lazy).map(|d| d.count() == 0).unwrap_or(true), "lazy/ was not emptied");
}

/// Mounts `docker_ref` lazily at `mnt` in `s`'s work directory: the
/// directory, and a guard that unmounts it.
fn lazy_mount<'a>(s: &'a Store, docker_ref: &str, env: &[(&str, &str)]) -> (std::path::PathBuf, Unmount<'a>) {
    let dir = s.work().join("mnt");
    std::fs::create_dir_all(&dir).unwrap();
    let (o, _) = img(s, &["mount", "--tls-verify=false", docker_ref, arg(&dir)], env);
    assert!(o.success(), "{}", o.describe());
    (dir.clone(), Unmount(s, dir))
}

// Guards: a plain gzip layer of a lazy mount is streamed; a connection
// reset halfway through it is resumed with a Range request from where it
// broke off, and the files read whole. A registry that serves a layer with
// other bytes (a changed gzip header: it still decompresses, only its
// digest is wrong) gets the layer refused once its stream ends: reads and
// lookups that still need it fail with EIO, the log names the digest, the
// store stays clean, and img pull later completes the image from the
// right bytes.
#[test]
fn a_streamed_layer_resumes_after_a_reset_and_a_lying_one_is_refused() {
    if !need_root("this test mounts through FUSE") {
        return;
    }
    let mut rng = Rng::new(seed("lazy_stream", 12));
    let (a, b) = (rng.bytes(2 << 20), rng.bytes(2 << 20));
    let tar = TarBuilder::new().dir("data").file("data/a", &a).file("data/b", &b).build();
    let image = ImageSpec::new(&["big:1"]).layer(Layer::new(tar, Comp::Gzip)).build();
    let reg = registry_with(&image);
    let blob = image.layers[0].blob.clone();
    let path = layer_path(&image);
    let half = blob.len() as u64 / 2;
    reg.fault_on(&path, 1, Fault::ResetAfter(half));
    let reference = reg.reference(NAME, "1");
    let docker_ref = format!("docker://{reference}");
    let env = [("IMG_LAZY_TIMEOUT", "3")];

    let s = Store::new();
    let (dir, guard) = lazy_mount(&s, &docker_ref, &env);
    assert_eq!(std::fs::read(dir.join("data/b")).unwrap(), b, "{}", reg.describe());
    assert_eq!(std::fs::read(dir.join("data/a")).unwrap(), a);
    let reqs = gets(reg.requests_to(&path));
    assert!(reqs.len() >= 2, "expected a second request after the reset\n{}", reg.describe());
    assert_eq!(reqs[0].body_sent, half, "the fault did not happen as planned\n{}", reg.describe());
    assert!(reqs[1].range_start().is_some_and(|n| n > 0), "no Range request after the reset\n{}", reg.describe());
    let resent = body_bytes(&reqs) - blob.len() as u64;
    assert!(resent < blob.len() as u64 / 10, "{resent} of {} bytes were sent twice\n{}", blob.len(), reg.describe());
    drop(guard);
    s.assert_fsck_clean();

    // Other bytes: the gzip header's time changed.
    let mut lie = blob.clone();
    lie[4] ^= 0xff;
    reg.clear_faults();
    reg.fault_always(&path, Fault::Replace(lie));
    let s = Store::new();
    let (dir, guard) = lazy_mount(&s, &docker_ref, &env);
    // A name not in the layer is known only at its end, which is refused.
    let e = std::fs::metadata(dir.join("data/nope")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    let e = std::fs::read(dir.join("data/b")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    let log = std::fs::read_dir(s.root().join("mounts"))
        .unwrap()
        .flatten()
        .filter(|f| f.path().extension().is_some_and(|x| x == "log"))
        .map(|f| std::fs::read_to_string(f.path()).unwrap())
        .collect::<String>();
    assert!(log.contains(&format!("not {}", image.layers[0].digest())), "the log does not name the digest: {log}");
    drop(guard);
    s.assert_fsck_clean();
    s.assert_ingest_empty();
    reg.clear_faults();
    let (o, _) = pull(&s, &reference, &[], &[]);
    assert!(o.success(), "{}", o.describe());
    assert_eq!(s.inspect(&reference).get("Partial"), None);
    assert!(s.has_blob(&image.layers[0].digest()));
    s.assert_fsck_clean();
}

// ---- what a pull records and shows ----------------------------------------------

// Guards: a pulled image's size is its layers' uncompressed size, the same
// as for the image loaded from an archive of plain layers (a pull showed
// the compressed 1.06 MB where a load of the same image showed 2 MB).
#[test]
fn pulled_image_size_is_uncompressed_like_a_loaded_one() {
    let big = |seed: &str| {
        TarBuilder::new().dir(seed).file(&format!("{seed}/data"), format!("{seed} ").repeat(20_000)).build()
    };
    let spec = |comp: Comp| {
        ImageSpec::new(&["app:1"]).layer(Layer::new(big("one"), comp)).layer(Layer::new(big("two"), Comp::Zstd)).build()
    };
    let (packed, plain) = (spec(Comp::Gzip), spec(Comp::None));
    let want: u64 = plain.layers.iter().map(|l| l.tar.len() as u64).sum();
    assert!(packed.layers.iter().map(|l| l.blob.len() as u64).sum::<u64>() < want / 4, "the layers compress");
    let reg = registry_with(&packed);
    let s = Store::new();
    let reference = reg.reference(NAME, "1");
    let (o, _) = pull(&s, &reference, &[], &[]);
    assert_pulled(&s, &o, &packed, &reference, &reg);
    assert_eq!(s.images()[0]["Size"], json!(want));
    assert_eq!(s.inspect(&reference)["Size"], json!(want));
    let loaded = Store::new();
    loaded.load("plain.tar", &Archive::docker(&[&plain]).tar());
    assert_eq!(loaded.images()[0]["Id"], json!(packed.hex()), "the same image");
    assert_eq!(loaded.images()[0]["Size"], json!(want));
}

// Guards: `img inspect --raw docker://REF` prints the manifest as served
// and ends with a newline (the shell prompt was glued to it).
#[test]
fn inspect_raw_ends_with_a_newline() {
    let image = small_image();
    assert!(!image.manifest.ends_with(b"\n"));
    let reg = registry_with(&image);
    let s = Store::new();
    let target = format!("docker://{}", reg.reference(NAME, "1"));
    let (o, _) = img(&s, &["inspect", "--raw", "--tls-verify=false", &target], &[]);
    assert!(o.success(), "{}", o.describe());
    let mut want = image.manifest.clone();
    want.push(b'\n');
    assert_eq!(o.stdout, want, "{}", o.describe());
}
