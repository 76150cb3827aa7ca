//! The metrics of `img serve`, in Prometheus' text exposition format
//! (version 0.0.4): one registry per process, of atomics and one small map,
//! so that recording a request costs a few atomic adds and a lock.
//!
//! The HTTP layer records requests, their durations, body bytes and
//! connections, and serves [`render`] on the metrics listener; the API
//! records uploads in flight and backend errors.
//! Every label takes values from a small fixed set (methods, routes,
//! status codes, backends), so a client cannot grow the registry.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// The routes requests are counted under.
pub const ROUTES: [&str; 14] = [
    "base",
    "token",
    "catalog",
    "tags",
    "manifest",
    "blob",
    "upload",
    "referrers",
    "signatures",
    "admin",
    "page",
    "probe",
    "metrics",
    "other",
];

/// The methods requests are counted under; any other is `other`.
const METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"];

/// The backends whose errors are counted; any other name is `other`.
const BACKENDS: [&str; 4] = ["s3", "database", "store", "other"];

/// Why a connection was closed at accept.
const REFUSALS: [&str; 2] = ["not_allowed", "over_limit"];

/// The duration histogram's upper bounds, in microseconds (and as written).
const BUCKETS: [(u64, &str); 14] = [
    (5_000, "0.005"),
    (10_000, "0.01"),
    (25_000, "0.025"),
    (50_000, "0.05"),
    (100_000, "0.1"),
    (250_000, "0.25"),
    (500_000, "0.5"),
    (1_000_000, "1"),
    (2_500_000, "2.5"),
    (5_000_000, "5"),
    (10_000_000, "10"),
    (30_000_000, "30"),
    (60_000_000, "60"),
    (300_000_000, "300"),
];

/// One route's durations: a count per bucket (not cumulative; the last is
/// over every bound) and their sum.
struct Histogram {
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    const fn new() -> Histogram {
        Histogram { counts: [const { AtomicU64::new(0) }; BUCKETS.len() + 1], sum_us: AtomicU64::new(0) }
    }

    fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS.iter().position(|(le, _)| us <= *le).unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }
}

/// Requests by (method, route, status code), as indexes into the tables.
static REQUESTS: Mutex<BTreeMap<(u8, u8, u16), u64>> = Mutex::new(BTreeMap::new());
static DURATIONS: [Histogram; ROUTES.len()] = [const { Histogram::new() }; ROUTES.len()];
static BYTES_RECEIVED: AtomicU64 = AtomicU64::new(0);
static BYTES_SENT: AtomicU64 = AtomicU64::new(0);
static CONNECTIONS: AtomicI64 = AtomicI64::new(0);
static CONNECTIONS_ACCEPTED: AtomicU64 = AtomicU64::new(0);
static CONNECTIONS_REFUSED: [AtomicU64; REFUSALS.len()] = [const { AtomicU64::new(0) }; REFUSALS.len()];
static REQUESTS_IN_FLIGHT: AtomicI64 = AtomicI64::new(0);
static UPLOADS_IN_FLIGHT: AtomicI64 = AtomicI64::new(0);
static BACKEND_ERRORS: [AtomicU64; BACKENDS.len()] = [const { AtomicU64::new(0) }; BACKENDS.len()];

/// The route a request path is counted under.
pub fn route_of(path: &str) -> &'static str {
    match path {
        "/v2" | "/v2/" => return "base",
        "/v2/_catalog" => return "catalog",
        "/token" => return "token",
        "/healthz" | "/readyz" => return "probe",
        "/metrics" => return "metrics",
        "/" | "/index.html" => return "page",
        _ => {}
    }
    if path == "/admin" || path.starts_with("/admin/") {
        return "admin";
    }
    // A repository's endpoints, named by the segments after its name; read
    // from the end, so that a repository called `blobs` or `manifests` is
    // not taken for one.
    let (rest, signatures) = match (path.strip_prefix("/v2/"), path.strip_prefix("/extensions/v2/")) {
        (Some(r), _) => (r, false),
        (_, Some(r)) => (r, true),
        _ => return "other",
    };
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    // NAME is at least two segments.
    let tail = |n: usize| parts.len() >= n + 2;
    let at = |i_from_end: usize| parts[parts.len() - i_from_end];
    if signatures {
        return if tail(2) && at(2) == "signatures" { "signatures" } else { "other" };
    }
    if tail(2) && at(2) == "blobs" && at(1) == "uploads" || tail(3) && at(3) == "blobs" && at(2) == "uploads" {
        return "upload";
    }
    if tail(2) {
        match (at(2), at(1)) {
            ("tags", "list") => return "tags",
            ("manifests", _) => return "manifest",
            ("blobs", _) => return "blob",
            ("referrers", _) => return "referrers",
            _ => {}
        }
    }
    "other"
}

fn index_of(table: &[&str], v: &str) -> usize {
    table.iter().position(|t| *t == v).unwrap_or(table.len() - 1)
}

/// A request answered: its method, route, status and how long it took.
pub fn request_done(method: &str, route: &str, status: u16, took: Duration) {
    let m = index_of(&METHODS, method) as u8;
    let r = index_of(&ROUTES, route);
    {
        let mut map = REQUESTS.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((m, r as u8, status)).or_insert(0) += 1;
    }
    DURATIONS[r].observe(took);
}

/// Request body bytes read.
pub fn bytes_received(n: u64) {
    BYTES_RECEIVED.fetch_add(n, Relaxed);
}

/// Response bytes written (bodies, files included).
pub fn bytes_sent(n: u64) {
    BYTES_SENT.fetch_add(n, Relaxed);
}

/// A connection being served; the gauge goes down when it is dropped.
pub struct Connection(());

impl Drop for Connection {
    fn drop(&mut self) {
        CONNECTIONS.fetch_sub(1, Relaxed);
    }
}

/// A connection accepted and served from now on.
pub fn connection_opened() -> Connection {
    CONNECTIONS_ACCEPTED.fetch_add(1, Relaxed);
    CONNECTIONS.fetch_add(1, Relaxed);
    Connection(())
}

/// A connection closed at accept: `not_allowed` (its address is not in
/// `--allow-from`) or `over_limit` (too many connections).
pub fn connection_refused(reason: &'static str) {
    CONNECTIONS_REFUSED[index_of(&REFUSALS, reason).min(REFUSALS.len() - 1)].fetch_add(1, Relaxed);
}

/// A request being answered; the gauge goes down when it is dropped.
pub struct InFlight(());

impl Drop for InFlight {
    fn drop(&mut self) {
        REQUESTS_IN_FLIGHT.fetch_sub(1, Relaxed);
    }
}

pub fn request_started() -> InFlight {
    REQUESTS_IN_FLIGHT.fetch_add(1, Relaxed);
    InFlight(())
}

/// An upload session began (`POST .../blobs/uploads/` that was not a
/// monolithic upload).
pub fn upload_started() {
    UPLOADS_IN_FLIGHT.fetch_add(1, Relaxed);
}

/// An upload session ended: finished, cancelled or expired.
pub fn upload_ended() {
    UPLOADS_IN_FLIGHT.fetch_sub(1, Relaxed);
}

/// An error from a backend: `s3`, `database` or `store`.
pub fn backend_error(backend: &'static str) {
    BACKEND_ERRORS[index_of(&BACKENDS, backend)].fetch_add(1, Relaxed);
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help text as the text format wants it: `\` and newlines escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `{a="x",b="y"}` from label pairs.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
    format!("{{{}}}", inner.join(","))
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Seconds from microseconds, as the text format writes a float.
fn seconds(us: u64) -> String {
    format!("{}", us as f64 / 1e6)
}

/// Every metric, in the text exposition format 0.0.4 (served as
/// `text/plain; version=0.0.4`).
pub fn render() -> String {
    let mut out = String::with_capacity(4096);
    family(&mut out, "img_serve_requests_total", "counter", "Requests answered, by method, route and status code.");
    let requests: Vec<((u8, u8, u16), u64)> =
        REQUESTS.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (*k, *v)).collect();
    for ((m, r, code), n) in requests {
        let code = code.to_string();
        let l = labels(&[("method", METHODS[m as usize]), ("route", ROUTES[r as usize]), ("code", &code)]);
        let _ = writeln!(out, "img_serve_requests_total{l} {n}");
    }
    family(
        &mut out,
        "img_serve_request_duration_seconds",
        "histogram",
        "Time from a request's head to its answer's end, by route.",
    );
    for (route, h) in ROUTES.iter().zip(&DURATIONS) {
        let counts: Vec<u64> = h.counts.iter().map(|c| c.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            continue;
        }
        let mut cumulative = 0;
        for ((_, le), n) in BUCKETS.iter().zip(&counts) {
            cumulative += n;
            let l = labels(&[("route", route), ("le", le)]);
            let _ = writeln!(out, "img_serve_request_duration_seconds_bucket{l} {cumulative}");
        }
        let l = labels(&[("route", route), ("le", "+Inf")]);
        let _ = writeln!(out, "img_serve_request_duration_seconds_bucket{l} {total}");
        let l = labels(&[("route", route)]);
        let _ = writeln!(out, "img_serve_request_duration_seconds_sum{l} {}", seconds(h.sum_us.load(Relaxed)));
        let _ = writeln!(out, "img_serve_request_duration_seconds_count{l} {total}");
    }
    let plain: [(&str, &str, &str, i128); 6] = [
        ("img_serve_bytes_received_total", "counter", "Request body bytes read.", BYTES_RECEIVED.load(Relaxed).into()),
        ("img_serve_bytes_sent_total", "counter", "Response body bytes written.", BYTES_SENT.load(Relaxed).into()),
        ("img_serve_connections", "gauge", "Connections being served.", CONNECTIONS.load(Relaxed).into()),
        (
            "img_serve_connections_accepted_total",
            "counter",
            "Connections accepted and served.",
            CONNECTIONS_ACCEPTED.load(Relaxed).into(),
        ),
        ("img_serve_requests_in_flight", "gauge", "Requests being answered.", REQUESTS_IN_FLIGHT.load(Relaxed).into()),
        (
            "img_serve_uploads_in_flight",
            "gauge",
            "Blob upload sessions begun and not yet ended.",
            UPLOADS_IN_FLIGHT.load(Relaxed).into(),
        ),
    ];
    for (name, kind, help, v) in plain {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    }
    family(
        &mut out,
        "img_serve_connections_refused_total",
        "counter",
        "Connections closed at accept, by reason: not_allowed (--allow-from) or over_limit.",
    );
    for (reason, n) in REFUSALS.iter().zip(&CONNECTIONS_REFUSED) {
        let _ =
            writeln!(out, "img_serve_connections_refused_total{} {}", labels(&[("reason", reason)]), n.load(Relaxed));
    }
    family(&mut out, "img_serve_backend_errors_total", "counter", "Errors from the storage backends, by backend.");
    for (backend, n) in BACKENDS.iter().zip(&BACKEND_ERRORS) {
        let n = n.load(Relaxed);
        if *backend == "other" && n == 0 {
            continue;
        }
        let _ = writeln!(out, "img_serve_backend_errors_total{} {n}", labels(&[("backend", backend)]));
    }
    out
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A sample: name, labels, value.
    type Sample = (String, Vec<(String, String)>, f64);

    /// Reads the text format strictly enough to catch what Prometheus
    /// refuses: HELP and TYPE before a family's samples, one TYPE per
    /// family, names and label names of the allowed characters, label
    /// values with only the three escapes, values that are floats.
    fn check_format(text: &str) -> Result<Vec<Sample>, String> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && !s.starts_with(|c: char| c.is_ascii_digit())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        };
        let mut types: HashMap<String, String> = HashMap::new();
        let mut helped = std::collections::HashSet::new();
        let mut out = Vec::new();
        if !text.ends_with('\n') {
            return Err("no newline at the end".into());
        }
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# ") {
                let mut it = rest.splitn(3, ' ');
                let (kw, name, tail) = (it.next().unwrap_or(""), it.next().unwrap_or(""), it.next().unwrap_or(""));
                if !name_ok(name) {
                    return Err(format!("bad name in {line:?}"));
                }
                match kw {
                    "HELP" => {
                        if !helped.insert(name.to_string()) {
                            return Err(format!("second HELP: {line:?}"));
                        }
                        let mut chars = tail.chars();
                        while let Some(c) = chars.next() {
                            if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                                return Err(format!("bad escape in {line:?}"));
                            }
                        }
                    }
                    "TYPE" => {
                        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&tail) {
                            return Err(format!("bad type in {line:?}"));
                        }
                        if types.insert(name.to_string(), tail.to_string()).is_some() {
                            return Err(format!("second TYPE: {line:?}"));
                        }
                    }
                    _ => return Err(format!("unknown comment {line:?}")),
                }
                continue;
            }
            let name_end = line.find(['{', ' ']).ok_or(format!("no value: {line:?}"))?;
            let name = &line[..name_end];
            if !name_ok(name) {
                return Err(format!("bad name in {line:?}"));
            }
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| types.get(*b).map(String::as_str) == Some("histogram")))
                .unwrap_or(name);
            if !types.contains_key(base) {
                return Err(format!("a sample before its TYPE: {line:?}"));
            }
            let mut rest = &line[name_end..];
            let mut ls = Vec::new();
            if let Some(r) = rest.strip_prefix('{') {
                let mut r = r;
                loop {
                    if let Some(after) = r.strip_prefix('}') {
                        r = after;
                        break;
                    }
                    let eq = r.find('=').ok_or(format!("bad labels: {line:?}"))?;
                    let lname = &r[..eq];
                    if !name_ok(lname) || lname.contains(':') {
                        return Err(format!("bad label name in {line:?}"));
                    }
                    r = r[eq + 1..].strip_prefix('"').ok_or(format!("unquoted value: {line:?}"))?;
                    let mut value = String::new();
                    let mut chars = r.char_indices();
                    let end = loop {
                        match chars.next() {
                            None => return Err(format!("unterminated value: {line:?}")),
                            Some((i, '"')) => break i,
                            Some((_, '\\')) => match chars.next() {
                                Some((_, '\\')) => value.push('\\'),
                                Some((_, '"')) => value.push('"'),
                                Some((_, 'n')) => value.push('\n'),
                                _ => return Err(format!("bad escape: {line:?}")),
                            },
                            Some((_, c)) => value.push(c),
                        }
                    };
                    ls.push((lname.to_string(), value));
                    r = &r[end + 1..];
                    r = r.strip_prefix(',').unwrap_or(r);
                }
                rest = r;
            }
            let value = rest.strip_prefix(' ').ok_or(format!("no space before the value: {line:?}"))?;
            let v: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => v.parse().map_err(|_| format!("bad value in {line:?}"))?,
            };
            out.push((name.to_string(), ls, v));
        }
        Ok(out)
    }

    fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
        samples
            .iter()
            .filter(|(n, ls, _)| n == name && want.iter().all(|(k, v)| ls.iter().any(|(a, b)| a == k && b == v)))
            .map(|s| s.2)
            .sum()
    }

    #[test]
    fn the_text_format_parses_and_counters_move() {
        let before = check_format(&render()).unwrap();
        request_done("GET", "manifest", 200, Duration::from_millis(3));
        request_done("GET", "manifest", 200, Duration::from_millis(700));
        request_done("BREW", "other", 418, Duration::from_secs(1000));
        bytes_received(10);
        bytes_sent(20);
        upload_started();
        backend_error("s3");
        backend_error("nonsense");
        connection_refused("not_allowed");
        let c = connection_opened();
        let after = check_format(&render()).unwrap();
        let moved = |name: &str, ls: &[(&str, &str)]| value(&after, name, ls) - value(&before, name, ls);
        let get = [("method", "GET"), ("route", "manifest"), ("code", "200")];
        assert_eq!(moved("img_serve_requests_total", &get), 2.0);
        assert_eq!(moved("img_serve_requests_total", &[("method", "other"), ("code", "418")]), 1.0);
        let le = |b: &'static str| [("route", "manifest"), ("le", b)];
        assert!(moved("img_serve_request_duration_seconds_bucket", &le("0.005")) >= 1.0);
        assert!(moved("img_serve_request_duration_seconds_bucket", &le("1")) >= 2.0);
        assert!(moved("img_serve_request_duration_seconds_count", &[("route", "manifest")]) >= 2.0);
        assert_eq!(moved("img_serve_request_duration_seconds_bucket", &[("route", "other"), ("le", "300")]), 0.0);
        assert!(moved("img_serve_request_duration_seconds_bucket", &[("route", "other"), ("le", "+Inf")]) >= 1.0);
        assert!(moved("img_serve_bytes_received_total", &[]) >= 10.0);
        assert!(moved("img_serve_bytes_sent_total", &[]) >= 20.0);
        assert!(moved("img_serve_backend_errors_total", &[("backend", "s3")]) >= 1.0);
        assert!(moved("img_serve_backend_errors_total", &[("backend", "other")]) >= 1.0);
        assert!(moved("img_serve_connections_refused_total", &[("reason", "not_allowed")]) >= 1.0);
        assert!(value(&after, "img_serve_connections", &[]) >= 1.0);
        drop(c);
        upload_ended();
        // Cumulative buckets never go down along a histogram.
        let mut last = 0.0;
        for (n, ls, v) in &after {
            if n == "img_serve_request_duration_seconds_bucket"
                && ls.iter().any(|(k, v)| k == "route" && v == "manifest")
            {
                assert!(*v >= last, "buckets go down: {ls:?}");
                last = *v;
            }
        }
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(labels(&[("a", "\"\n\\")]), r#"{a="\"\n\\"}"#);
        let mut out = String::new();
        family(&mut out, "x_total", "counter", "a\\b\nc");
        out.push_str(&format!("x_total{} 1\n", labels(&[("l", "q\"uo\nte\\")])));
        let s = check_format(&out).unwrap();
        assert_eq!(s[0].1, vec![("l".to_string(), "q\"uo\nte\\".to_string())]);
        assert!(check_format("# TYPE y counter\ny{l=\"a\\x\"} 1\n").is_err(), "the checker refuses a bad escape");
        assert!(check_format("z 1\n").is_err(), "the checker refuses a sample without TYPE");
    }

    #[test]
    fn routes_come_from_the_path() {
        for (path, route) in [
            ("/v2/", "base"),
            ("/v2", "base"),
            ("/token", "token"),
            ("/v2/_catalog", "catalog"),
            ("/v2/team/app/tags/list", "tags"),
            ("/v2/team/app/manifests/1", "manifest"),
            ("/v2/team/blobs/manifests/1", "manifest"),
            ("/v2/team/app/blobs/sha256:abc", "blob"),
            ("/v2/team/app/blobs/uploads/", "upload"),
            ("/v2/team/app/blobs/uploads/0123", "upload"),
            ("/v2/team/uploads/blobs/sha256:abc", "blob"),
            ("/v2/team/app/referrers/sha256:abc", "referrers"),
            ("/extensions/v2/team/app/signatures/sha256:abc", "signatures"),
            ("/admin/v1/users", "admin"),
            ("/", "page"),
            ("/index.html", "page"),
            ("/healthz", "probe"),
            ("/readyz", "probe"),
            ("/metrics", "metrics"),
            ("/v2/manifests/1", "other"),
            ("/v2/team/app/nothing", "other"),
            ("/etc/passwd", "other"),
            ("", "other"),
        ] {
            assert_eq!(route_of(path), route, "{path}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_path_has_a_route(path in "\\PC{0,80}") {
            proptest::prop_assert!(ROUTES.contains(&route_of(&path)));
        }
    }
}
