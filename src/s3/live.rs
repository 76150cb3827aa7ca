//! The client against a real S3 store: a Garage cluster started by
//! `tests/s3_garage.sh` (tests/support/garage.sh), which exports
//! GARAGE_S3_ENDPOINTS, GARAGE_BUCKET, GARAGE_DIR, AWS_REGION,
//! AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. Ignored unless asked for:
//! `tests/s3_garage.sh` runs them (one at a time: one stops a node).

use super::*;
use std::io::Read;
use std::process::Command;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set; run tests/s3_garage.sh"))
}

/// A client on node `node` (0-based) of the cluster, under a prefix of
/// this test's own.
fn client(node: usize, prefix: &str) -> Client {
    let endpoints = env("GARAGE_S3_ENDPOINTS");
    let endpoint = endpoints.split_whitespace().nth(node).expect("no such node in GARAGE_S3_ENDPOINTS");
    let url = format!(
        "s3://{}/{prefix}-{}?endpoint={endpoint}&region={}",
        env("GARAGE_BUCKET"),
        std::process::id(),
        env("AWS_REGION")
    );
    let c = Client::new(Config::parse(&url).unwrap());
    assert!(c.config().prefix.starts_with(prefix));
    c
}

fn read_all(o: Object) -> Vec<u8> {
    let mut v = Vec::new();
    let mut r = o.reader;
    r.read_to_end(&mut v).unwrap();
    assert_eq!(v.len() as u64, o.len);
    v
}

/// Bytes that differ from place to place.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[3] ^ seed).collect()
}

fn garage(action: &str, node: usize) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/garage.sh");
    let ok =
        Command::new("bash").arg("-c").arg(format!("source {script} && {action} {node}")).status().unwrap().success();
    assert!(ok, "{action} {node} failed");
}

#[test]
#[ignore = "needs a Garage cluster: tests/s3_garage.sh"]
fn every_operation() {
    let c = client(0, "ops");
    c.ping().unwrap();

    // put, get, head
    c.put("a/one", b"hello, world").unwrap();
    let o = c.get("a/one", None).unwrap().unwrap();
    assert_eq!((o.size, o.start, o.len), (12, 0, 12));
    assert_eq!(read_all(o), b"hello, world");
    assert_eq!(c.head("a/one").unwrap(), Some(12));
    assert_eq!(c.head("a/none").unwrap(), None);
    assert!(c.get("a/none", None).unwrap().is_none());
    c.put("a/empty", b"").unwrap();
    assert_eq!(read_all(c.get("a/empty", None).unwrap().unwrap()), b"");

    // ranges
    let o = c.get("a/one", Some((7, 12))).unwrap().unwrap();
    assert_eq!((o.size, o.start, o.len), (12, 7, 5));
    assert_eq!(read_all(o), b"world");
    let o = c.get("a/one", Some((0, 1))).unwrap().unwrap();
    assert_eq!(read_all(o), b"h");
    let o = c.get("a/one", Some((5, 100))).unwrap().unwrap();
    assert_eq!((o.start, o.len), (5, 7));
    let e = c.get("a/one", Some((12, 20))).unwrap_err();
    assert!(matches!(e, S3Error::Http { status: 416, .. }), "{e}");

    // keys with characters to encode
    let odd = "a/with space+plus&amp=eq%pct~ü";
    c.put(odd, b"odd").unwrap();
    assert_eq!(read_all(c.get(odd, None).unwrap().unwrap()), b"odd");

    // copy, list
    c.copy("a/one", "b/copy").unwrap();
    assert_eq!(read_all(c.get("b/copy", None).unwrap().unwrap()), b"hello, world");
    let e = c.copy("a/none", "b/x").unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let mut keys: Vec<(String, u64)> = c.list("").unwrap().into_iter().map(|l| (l.key, l.size)).collect();
    keys.sort();
    assert_eq!(keys, vec![("a/empty".into(), 0), ("a/one".into(), 12), (odd.into(), 3), ("b/copy".into(), 12)]);
    let listed = c.list("b/").unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, "b/copy");
    assert!((crate::timefmt::now() - listed[0].last_modified).abs() < 300, "{listed:?}");
    assert!(c.list("zzz/").unwrap().is_empty());

    // a list longer than a page (Garage's pages hold 1000 keys)
    for i in 0..1005 {
        c.put(&format!("many/{i:05}"), b"").unwrap();
    }
    let many = c.list("many/").unwrap();
    assert_eq!(many.len(), 1005);
    assert_eq!(many[1004].key, "many/01004");

    // presigned GET with curl (no credentials)
    let url = c.presign_get("a/one", Duration::from_secs(300));
    let out = Command::new("curl").args(["-sSf", &url]).output().unwrap();
    assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"hello, world");
    let tampered = url.replace("X-Amz-Expires=300", "X-Amz-Expires=301");
    let out = Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &tampered]).output().unwrap();
    assert_eq!(out.stdout, b"403", "a changed pre-signed URL is refused");

    // multipart: 3 parts of 5 MiB and a small last one
    let parts: Vec<Vec<u8>> = (0..4u8).map(|i| pattern(if i < 3 { 5 << 20 } else { 1234 }, i)).collect();
    let id = c.create_multipart("big").unwrap();
    let mut etags = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as u32 + 1;
        etags.push((n, c.upload_part("big", &id, n, p).unwrap()));
    }
    c.complete_multipart("big", &id, &etags).unwrap();
    let whole: Vec<u8> = parts.concat();
    assert_eq!(c.head("big").unwrap(), Some(whole.len() as u64));
    assert!(read_all(c.get("big", None).unwrap().unwrap()) == whole, "multipart object differs");
    let (s, e) = ((5 << 20) - 10, (10 << 20) + 10);
    let o = c.get("big", Some((s, e))).unwrap().unwrap();
    assert_eq!(o.size, whole.len() as u64);
    assert!(read_all(o) == whole[s as usize..e as usize], "range across parts differs");

    // abort
    let id = c.create_multipart("aborted").unwrap();
    c.upload_part("aborted", &id, 1, &parts[3]).unwrap();
    c.abort_multipart("aborted", &id).unwrap();
    c.abort_multipart("aborted", &id).unwrap();
    assert_eq!(c.head("aborted").unwrap(), None);
    let e = c.complete_multipart("aborted", &id, &[(1, "\"x\"".into())]).unwrap_err();
    assert!(matches!(e, S3Error::Http { status: 404 | 400, .. }), "{e}");

    // delete (absent is fine), and leave nothing behind
    c.delete("a/one").unwrap();
    c.delete("a/one").unwrap();
    assert_eq!(c.head("a/one").unwrap(), None);
    for l in c.list("").unwrap() {
        c.delete(&l.key).unwrap();
    }
    assert!(c.list("").unwrap().is_empty());

    // wrong credentials and a missing bucket are named errors
    let mut cfg = c.config().clone();
    cfg.secret_key = "wrong".repeat(8);
    let e = Client::new(cfg).head("x").unwrap_err();
    assert!(matches!(e, S3Error::Http { status: 403, .. }), "{e}");
    let mut cfg = c.config().clone();
    cfg.bucket = "no-such-bucket".into();
    let e = Client::new(cfg).ping().unwrap_err();
    assert!(!e.is_transient(), "{e}");
}

/// Starts node `.0` (from 1) again when dropped (a failed assertion included).
struct Restart(usize);
impl Drop for Restart {
    fn drop(&mut self) {
        garage("garage_start_node", self.0);
    }
}

#[test]
#[ignore = "needs a Garage cluster of 3 nodes: tests/s3_garage.sh"]
fn one_node_down_still_serves() {
    let c = client(0, "down");
    let before = pattern(100_000, 7);
    c.put("before", &before).unwrap();
    // nodes are numbered from 1 in garage.sh, from 0 in the endpoint list
    let down = env("GARAGE_S3_ENDPOINTS").split_whitespace().count();
    garage("garage_stop_node", down);
    let restart = Restart(down);

    assert!(read_all(c.get("before", None).unwrap().unwrap()) == before);
    let after = pattern(200_000, 9);
    c.put("after", &after).unwrap();
    assert!(read_all(c.get("after", None).unwrap().unwrap()) == after);
    // the other live node sees it too
    let other = client(1, "down");
    assert_eq!(other.config().prefix, c.config().prefix);
    assert!(read_all(other.get("after", None).unwrap().unwrap()) == after);
    assert_eq!(c.list("").unwrap().len(), 2);
    // the stopped node's endpoint is a transient error
    let dead = client(down - 1, "down");
    let e = dead.head("after").unwrap_err();
    assert!(e.is_transient(), "{e}");

    drop(restart);
    c.delete("before").unwrap();
    c.delete("after").unwrap();
}
