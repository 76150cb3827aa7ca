//! A synchronous S3 client for blob storage: path-style addressing (as
//! Garage and MinIO want), AWS Signature Version 4 (`sigv4.rs`), the XML
//! answers read by a small bounded parser (`xml.rs`), the `s3://` URL and
//! credentials (`config.rs`).
//!
//! Every request has timeouts (connect 5 s; 60 s without a byte read or
//! written). Idempotent requests are retried with backoff after a
//! connection error or a 5xx; a download's body, once it streams, is not.
//! Keys are relative to the configured prefix; the client adds it.

mod config;
pub mod sigv4;
mod xml;

#[cfg(test)]
mod live;

use std::io::Read;
use std::time::Duration;

pub use config::Config;

/// Tries of an idempotent request before its error is returned.
const MAX_ATTEMPTS: u32 = 4;
/// The largest XML answer read (a 1000-key list page is about 300 KiB).
const MAX_XML: u64 = 8 << 20;
/// The largest error body read.
const MAX_ERROR_BODY: u64 = 64 << 10;
/// The most entries one `list` gathers.
const MAX_LISTED: usize = 10_000_000;
/// The longest key S3 stores.
const MAX_KEY: usize = 1024;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The configuration is wrong (URL, credentials, TLS).
    #[error("{0}")]
    Config(String),
    /// The store answered with an error. `key` names the object (or the
    /// bucket) as `bucket/full-key`.
    #[error("s3 {key}: the store answered {status}{}{}{}", code_part(code), message_part(message), hint(*status, code))]
    Http { status: u16, code: String, message: String, key: String },
    /// The store could not be reached or the connection broke.
    #[error("{0}")]
    Transport(String),
}

fn code_part(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        format!(" {code}")
    }
}

fn message_part(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(" ({message})")
    }
}

fn hint(status: u16, code: &str) -> &'static str {
    match (status, code) {
        (_, "NoSuchBucket") => "; check the bucket name in the s3:// URL, or create the bucket",
        (_, "AuthorizationHeaderMalformed") => "; check region= in the s3:// URL",
        (_, "RequestTimeTooSkewed") => "; set this machine's clock right",
        (403, _) => "; check the access key, its secret and its rights on the bucket",
        (400, "InvalidRange") | (416, _) => "; the range is outside the object",
        (s, _) if s >= 500 => "; the store is failing, try again later",
        (429, _) | (_, "SlowDown") => "; the store asks to slow down, try again later",
        _ => "",
    }
}

impl S3Error {
    /// A 404: no such key, upload or bucket.
    pub fn is_not_found(&self) -> bool {
        matches!(self, S3Error::Http { status: 404, .. })
    }

    /// Worth trying again: the store is failing or busy (5xx, 503
    /// SlowDown, 429), or the connection failed.
    pub fn is_transient(&self) -> bool {
        match self {
            S3Error::Http { status, code, .. } => {
                *status >= 500 || *status == 429 || code == "SlowDown" || code == "RequestTimeout"
            }
            S3Error::Transport(_) => true,
            S3Error::Config(_) => false,
        }
    }
}

/// An object or a range of it, streaming.
pub struct Object {
    /// The whole object's size.
    pub size: u64,
    /// Where `reader` starts in the object.
    pub start: u64,
    /// How many bytes `reader` gives.
    pub len: u64,
    pub reader: Box<dyn Read + Send>,
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Object {{ size: {}, start: {}, len: {} }}", self.size, self.start, self.len)
    }
}

/// One key of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Relative to the configured prefix.
    pub key: String,
    pub size: u64,
    /// Seconds since the epoch.
    pub last_modified: i64,
}

/// A client for one bucket. Send + Sync: share it in an `Arc`.
pub struct Client {
    cfg: Config,
    agent: ureq::Agent,
    /// The endpoint's `host[:port]`, sent and signed as `Host`.
    host: String,
}

/// Gives exactly `remaining` bytes of `inner`: an end before that is an
/// error, bytes after it are not read.
struct Exact<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the object's body ended {} bytes early", self.remaining),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// A request before signing.
struct Req<'a> {
    method: &'static str,
    /// The full key (prefix included), or None for the bucket.
    key: Option<&'a str>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: &'a [u8],
    /// Whether sending it twice does no harm (retried after 5xx and
    /// connection errors; otherwise only when the connection was refused).
    idempotent: bool,
}

type Response = ureq::http::Response<ureq::Body>;

/// How long to wait before attempt `attempt + 1`: 0.2 s, 0.4 s, 0.8 s, ...
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 << attempt.saturating_sub(1).min(5))
}

fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `bytes START-END/SIZE` of a Content-Range.
fn content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, size) = rest.split_once('/')?;
    let (s, e) = range.split_once('-')?;
    let (s, e, size) = (s.parse::<u64>().ok()?, e.parse::<u64>().ok()?, size.parse::<u64>().ok()?);
    (s <= e && e < size).then_some((s, e, size))
}

impl Client {
    pub fn new(cfg: Config) -> Client {
        let host = cfg.endpoint.split_once("://").map(|(_, h)| h).unwrap_or(&cfg.endpoint).to_string();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("img/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(IO_TIMEOUT))
            .timeout_per_read(Some(IO_TIMEOUT))
            .timeout_per_write(Some(IO_TIMEOUT))
            .build();
        Client { agent: ureq::Agent::new_with_config(config), host, cfg }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The key as stored: the prefix, `/`, the key.
    fn full_key(&self, key: &str) -> Result<String, S3Error> {
        if key.is_empty() || key.chars().any(char::is_control) {
            return Err(S3Error::Config(format!("s3 key {key:?} is empty or has a control character")));
        }
        let full = if self.cfg.prefix.is_empty() { key.to_string() } else { format!("{}/{key}", self.cfg.prefix) };
        if full.len() > MAX_KEY {
            return Err(S3Error::Config(format!(
                "s3 key {full:?} is longer than {MAX_KEY} bytes; use a shorter prefix"
            )));
        }
        Ok(full)
    }

    fn path(&self, key: Option<&str>) -> String {
        match key {
            Some(k) => format!("/{}/{k}", self.cfg.bucket),
            None => format!("/{}", self.cfg.bucket),
        }
    }

    fn name(&self, key: Option<&str>) -> String {
        match key {
            Some(k) => format!("{}/{k}", self.cfg.bucket),
            None => format!("bucket {}", self.cfg.bucket),
        }
    }

    fn signer(&self) -> sigv4::Signer<'_> {
        sigv4::Signer { access_key: &self.cfg.access_key, secret_key: &self.cfg.secret_key, region: &self.cfg.region }
    }

    fn transport_error(&self, what: &str, e: ureq::Error) -> S3Error {
        let ep = &self.cfg.endpoint;
        match e {
            ureq::Error::Timeout(t) => S3Error::Transport(format!(
                "s3 {what}: {ep} timed out ({t}); check that the store is running and reachable"
            )),
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) => S3Error::Config(format!(
                "s3 {what}: TLS with {ep} failed ({e}); check the endpoint's scheme and certificate"
            )),
            ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
                S3Error::Config(format!("s3 {what}: the request could not be made ({e}); check the endpoint and key"))
            }
            e => S3Error::Transport(format!(
                "s3 {what}: {ep} could not be reached ({e}); check that the store is running and reachable"
            )),
        }
    }

    fn send_once(&self, r: &Req) -> Result<Response, ureq::Error> {
        let path = self.path(r.key);
        let payload_hash = sigv4::sha256_hex(r.body);
        let signed = sigv4::sign_headers(
            &self.signer(),
            &sigv4::Request {
                method: r.method,
                host: &self.host,
                path: &path,
                query: &r.query,
                headers: &r.headers,
                payload_hash: &payload_hash,
            },
            crate::timefmt::now(),
        );
        let mut url = format!("{}{}", self.cfg.endpoint, sigv4::uri_encode(&path, false));
        if !r.query.is_empty() {
            url.push('?');
            url.push_str(&sigv4::canonical_query(&r.query));
        }
        let mut req = ureq::http::Request::builder().method(r.method).uri(&url).header("host", &self.host);
        for (k, v) in r.headers.iter().chain(&signed) {
            req = req.header(k.as_str(), v.as_str());
        }
        // GET, HEAD and DELETE send no body (and no Content-Length)
        if r.body.is_empty() && !matches!(r.method, "PUT" | "POST") {
            self.agent.run(req.body(())?)
        } else {
            self.agent.run(req.body(r.body)?)
        }
    }

    /// Sends `r`, retrying as its kind allows; any status comes back.
    fn send(&self, r: &Req) -> Result<Response, S3Error> {
        let what = self.name(r.key);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= MAX_ATTEMPTS;
            match self.send_once(r) {
                Ok(resp)
                    if r.idempotent && !last && (resp.status().as_u16() >= 500 || resp.status().as_u16() == 429) =>
                {
                    std::thread::sleep(backoff(attempt));
                }
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    let refused = matches!(&e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused)
                        || matches!(e, ureq::Error::ConnectionFailed);
                    let err = self.transport_error(&what, e);
                    if last || !matches!(err, S3Error::Transport(_)) || !(r.idempotent || refused) {
                        return Err(err);
                    }
                    std::thread::sleep(backoff(attempt));
                }
            }
        }
    }

    /// The error of an answer that is not a success.
    fn error_of(&self, key: Option<&str>, resp: Response) -> S3Error {
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        let _ = resp.into_body().into_reader().take(MAX_ERROR_BODY).read_to_end(&mut body);
        let doc = xml::error_doc(&body);
        let (code, message) = match doc {
            Some(d) => (d.code, d.message),
            None => {
                let code = match status {
                    404 if key.is_some() => "NoSuchKey",
                    404 => "NoSuchBucket",
                    403 => "AccessDenied",
                    _ => "",
                };
                (code.to_string(), String::new())
            }
        };
        let message: String = message.chars().filter(|c| !c.is_control()).take(300).collect();
        let message = message.trim_end_matches('.').to_string();
        S3Error::Http { status, code, message, key: self.name(key) }
    }

    /// Reads a bounded XML answer of a success; an error document in it
    /// (CopyObject, CompleteMultipartUpload) is an error.
    fn success_xml(&self, key: Option<&str>, resp: Response) -> Result<Vec<u8>, S3Error> {
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(self.error_of(key, resp));
        }
        let mut body = Vec::new();
        resp.into_body()
            .into_reader()
            .take(MAX_XML + 1)
            .read_to_end(&mut body)
            .map_err(|e| S3Error::Transport(format!("s3 {}: reading the answer: {e}", self.name(key))))?;
        if body.len() as u64 > MAX_XML {
            return Err(self.bad_answer(key, &format!("an answer larger than {MAX_XML} bytes")));
        }
        if let Some(d) = xml::error_doc(&body) {
            return Err(S3Error::Http { status, code: d.code, message: d.message, key: self.name(key) });
        }
        Ok(body)
    }

    fn bad_answer(&self, key: Option<&str>, what: &str) -> S3Error {
        S3Error::Transport(format!(
            "s3 {}: {} gave {what}; is the endpoint an S3 store?",
            self.name(key),
            self.cfg.endpoint
        ))
    }

    fn expect_ok(&self, key: Option<&str>, resp: Response) -> Result<Response, S3Error> {
        if (200..300).contains(&resp.status().as_u16()) {
            Ok(resp)
        } else {
            Err(self.error_of(key, resp))
        }
    }

    pub fn put(&self, key: &str, body: &[u8]) -> Result<(), S3Error> {
        let full = self.full_key(key)?;
        let r = Req { method: "PUT", key: Some(&full), query: vec![], headers: vec![], body, idempotent: true };
        self.expect_ok(Some(&full), self.send(&r)?).map(|_| ())
    }

    /// The object, or the bytes `start..end` of it; None when there is no
    /// such key.
    pub fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<Option<Object>, S3Error> {
        let full = self.full_key(key)?;
        let mut headers = vec![];
        if let Some((s, e)) = range {
            if e <= s {
                return Err(S3Error::Config(format!("s3 {}: empty range {s}..{e}", self.name(Some(&full)))));
            }
            headers.push(("range".to_string(), format!("bytes={s}-{}", e - 1)));
        }
        let r = Req { method: "GET", key: Some(&full), query: vec![], headers, body: &[], idempotent: true };
        let resp = self.send(&r)?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        let resp = self.expect_ok(Some(&full), resp)?;
        let length = header(&resp, "content-length").and_then(|l| l.trim().parse::<u64>().ok());
        let name = self.name(Some(&full));
        let (size, start, len, skip) = match (status, range) {
            (206, Some((s, e))) => {
                let (rs, re, size) = header(&resp, "content-range")
                    .and_then(content_range)
                    .ok_or_else(|| self.bad_answer(Some(&full), "a partial answer without a valid Content-Range"))?;
                if rs != s || re >= e || length.is_some_and(|l| l != re - rs + 1) {
                    return Err(self.bad_answer(Some(&full), &format!("bytes {rs}-{re} for the range {s}..{e}")));
                }
                (size, rs, re - rs + 1, 0)
            }
            (200, range) => {
                let size = length.ok_or_else(|| self.bad_answer(Some(&full), "an answer without Content-Length"))?;
                match range {
                    // The store sent the whole object: the range is cut out here.
                    Some((s, e)) => {
                        if s >= size {
                            return Err(S3Error::Http {
                                status: 416,
                                code: "InvalidRange".into(),
                                message: format!("the object has {size} bytes"),
                                key: name,
                            });
                        }
                        (size, s, e.min(size) - s, s)
                    }
                    None => (size, 0, size, 0),
                }
            }
            _ => return Err(self.bad_answer(Some(&full), &format!("status {status} to a GET"))),
        };
        let mut reader = resp.into_body().into_reader();
        if skip > 0 {
            let skipped = std::io::copy(&mut (&mut reader).take(skip), &mut std::io::sink())
                .map_err(|e| S3Error::Transport(format!("s3 {name}: reading the object: {e}")))?;
            if skipped < skip {
                return Err(self.bad_answer(Some(&full), "an object shorter than its Content-Length"));
            }
        }
        Ok(Some(Object { size, start, len, reader: Box::new(Exact { inner: reader, remaining: len }) }))
    }

    /// The object's size; None when there is no such key.
    pub fn head(&self, key: &str) -> Result<Option<u64>, S3Error> {
        let full = self.full_key(key)?;
        let r = Req { method: "HEAD", key: Some(&full), query: vec![], headers: vec![], body: &[], idempotent: true };
        let resp = self.send(&r)?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        let resp = self.expect_ok(Some(&full), resp)?;
        let size = header(&resp, "content-length")
            .and_then(|l| l.trim().parse::<u64>().ok())
            .ok_or_else(|| self.bad_answer(Some(&full), "a HEAD answer without Content-Length"))?;
        Ok(Some(size))
    }

    /// Deletes the key; a key that is not there is fine.
    pub fn delete(&self, key: &str) -> Result<(), S3Error> {
        let full = self.full_key(key)?;
        let r = Req { method: "DELETE", key: Some(&full), query: vec![], headers: vec![], body: &[], idempotent: true };
        let resp = self.send(&r)?;
        if resp.status().as_u16() == 404 {
            return Ok(());
        }
        self.expect_ok(Some(&full), resp).map(|_| ())
    }

    /// Every key under `prefix` (relative to the configured prefix), all
    /// pages of ListObjectsV2.
    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>, S3Error> {
        let base = if self.cfg.prefix.is_empty() { String::new() } else { format!("{}/", self.cfg.prefix) };
        let full_prefix = format!("{base}{prefix}");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("list-type".to_string(), "2".to_string()),
                ("encoding-type".to_string(), "url".to_string()),
                ("prefix".to_string(), full_prefix.clone()),
            ];
            if let Some(t) = &token {
                query.push(("continuation-token".to_string(), t.clone()));
            }
            let r = Req { method: "GET", key: None, query, headers: vec![], body: &[], idempotent: true };
            let body = self.success_xml(None, self.send(&r)?)?;
            let page = xml::list_page(&body)
                .map_err(|e| self.bad_answer(None, &format!("a list that cannot be read: {e}")))?;
            for e in page.entries {
                let Some(rel) = e.key.strip_prefix(&full_prefix).map(|_| &e.key[base.len()..]) else {
                    return Err(self.bad_answer(None, &format!("key {:?} outside the prefix {full_prefix:?}", e.key)));
                };
                out.push(Listed { key: rel.to_string(), size: e.size, last_modified: e.last_modified });
            }
            if out.len() > MAX_LISTED {
                return Err(self.bad_answer(None, &format!("more than {MAX_LISTED} keys")));
            }
            match page.next {
                Some(t) if token.as_ref() == Some(&t) => {
                    return Err(self.bad_answer(None, "the same continuation token twice"))
                }
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// Copies `from` to `to` in the bucket (server-side).
    pub fn copy(&self, from: &str, to: &str) -> Result<(), S3Error> {
        let (full_from, full_to) = (self.full_key(from)?, self.full_key(to)?);
        let source = sigv4::uri_encode(&format!("/{}/{full_from}", self.cfg.bucket), false);
        let r = Req {
            method: "PUT",
            key: Some(&full_to),
            query: vec![],
            headers: vec![("x-amz-copy-source".to_string(), source)],
            body: &[],
            idempotent: true,
        };
        let resp = self.send(&r)?;
        if resp.status().as_u16() == 404 {
            // the source is the one missing (the error names it)
            return Err(self.error_of(Some(&full_from), resp));
        }
        self.success_xml(Some(&full_to), resp).map(|_| ())
    }

    /// Starts a multipart upload; returns its id.
    pub fn create_multipart(&self, key: &str) -> Result<String, S3Error> {
        let full = self.full_key(key)?;
        let r = Req {
            method: "POST",
            key: Some(&full),
            query: vec![("uploads".to_string(), String::new())],
            headers: vec![],
            body: &[],
            idempotent: false,
        };
        let body = self.success_xml(Some(&full), self.send(&r)?)?;
        xml::upload_id(&body).map_err(|e| self.bad_answer(Some(&full), &format!("an upload that cannot be read: {e}")))
    }

    /// Uploads part `part` (1 to 10000); returns its ETag.
    pub fn upload_part(&self, key: &str, upload_id: &str, part: u32, body: &[u8]) -> Result<String, S3Error> {
        let full = self.full_key(key)?;
        if !(1..=10_000).contains(&part) {
            return Err(S3Error::Config(format!(
                "s3 {}: part number {part} is not within 1 to 10000",
                self.name(Some(&full))
            )));
        }
        let r = Req {
            method: "PUT",
            key: Some(&full),
            query: vec![("partNumber".to_string(), part.to_string()), ("uploadId".to_string(), upload_id.to_string())],
            headers: vec![],
            body,
            idempotent: true,
        };
        let resp = self.expect_ok(Some(&full), self.send(&r)?)?;
        let etag = header(&resp, "etag").map(str::trim).filter(|e| !e.is_empty() && e.len() <= 1024);
        etag.map(str::to_string).ok_or_else(|| self.bad_answer(Some(&full), "a part answer without an ETag"))
    }

    /// Completes the upload from its parts (number, ETag), in order.
    pub fn complete_multipart(&self, key: &str, upload_id: &str, parts: &[(u32, String)]) -> Result<(), S3Error> {
        let full = self.full_key(key)?;
        let body = xml::complete_body(parts);
        let r = Req {
            method: "POST",
            key: Some(&full),
            query: vec![("uploadId".to_string(), upload_id.to_string())],
            headers: vec![("content-type".to_string(), "application/xml".to_string())],
            body: body.as_bytes(),
            idempotent: true,
        };
        self.success_xml(Some(&full), self.send(&r)?).map(|_| ())
    }

    /// Aborts the upload; one that is not there is fine.
    pub fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        let full = self.full_key(key)?;
        let r = Req {
            method: "DELETE",
            key: Some(&full),
            query: vec![("uploadId".to_string(), upload_id.to_string())],
            headers: vec![],
            body: &[],
            idempotent: true,
        };
        let resp = self.send(&r)?;
        if resp.status().as_u16() == 404 {
            return Ok(());
        }
        self.expect_ok(Some(&full), resp).map(|_| ())
    }

    /// A URL that GETs the key without credentials for `ttl` (at most 7
    /// days). Made locally: whether the key exists is not checked.
    pub fn presign_get(&self, key: &str, ttl: Duration) -> String {
        let full = if self.cfg.prefix.is_empty() { key.to_string() } else { format!("{}/{key}", self.cfg.prefix) };
        let path = self.path(Some(&full));
        let query = sigv4::presign_query(
            &self.signer(),
            &sigv4::Request {
                method: "GET",
                host: &self.host,
                path: &path,
                query: &[],
                headers: &[],
                payload_hash: sigv4::UNSIGNED_PAYLOAD,
            },
            crate::timefmt::now(),
            ttl.as_secs(),
        );
        format!("{}{}?{query}", self.cfg.endpoint, sigv4::uri_encode(&path, false))
    }

    /// Whether the bucket answers (HEAD on it) with these credentials.
    pub fn ping(&self) -> Result<(), S3Error> {
        let r = Req { method: "HEAD", key: None, query: vec![], headers: vec![], body: &[], idempotent: true };
        self.expect_ok(None, self.send(&r)?).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(prefix: &str) -> Client {
        Client::new(Config {
            endpoint: "http://127.0.0.1:9".into(),
            region: "garage".into(),
            bucket: "img".into(),
            prefix: prefix.into(),
            access_key: "GK1".into(),
            secret_key: "secret".into(),
            redirect: false,
        })
    }

    #[test]
    fn client_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Client>();
        check::<S3Error>();
    }

    #[test]
    fn keys_get_the_prefix() {
        assert_eq!(client("").full_key("a/b").unwrap(), "a/b");
        assert_eq!(client("p/q").full_key("a").unwrap(), "p/q/a");
        assert!(client("").full_key("").is_err());
        assert!(client("").full_key("a\nb").is_err());
        assert!(client("").full_key(&"x".repeat(MAX_KEY + 1)).is_err());
    }

    #[test]
    fn presigned_urls_are_path_style() {
        let u = client("p").presign_get("sha256/a b", Duration::from_secs(60));
        assert!(
            u.starts_with(
                "http://127.0.0.1:9/img/p/sha256/a%20b?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=GK1%2F"
            ),
            "{u}"
        );
        assert!(u.contains("&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature="), "{u}");
    }

    #[test]
    fn content_ranges() {
        assert_eq!(content_range("bytes 0-9/100"), Some((0, 9, 100)));
        assert_eq!(content_range("bytes 99-99/100"), Some((99, 99, 100)));
        for bad in ["bytes 5-4/100", "bytes 0-100/100", "bytes */100", "0-9/100", "bytes 0-9/*", "bytes -1-9/100"] {
            assert_eq!(content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn exact_reader_refuses_a_short_body_and_stops_at_its_length() {
        let mut r = Exact { inner: &b"abcdef"[..], remaining: 4 };
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "abcd");
        let mut r = Exact { inner: &b"ab"[..], remaining: 4 };
        assert_eq!(r.read_to_end(&mut Vec::new()).unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn errors_read_well_and_classify() {
        let e = S3Error::Http {
            status: 403,
            code: "AccessDenied".into(),
            message: "Forbidden".into(),
            key: "img/a".into(),
        };
        assert_eq!(
            e.to_string(),
            "s3 img/a: the store answered 403 AccessDenied (Forbidden); check the access key, its secret and its rights on the bucket"
        );
        assert!(!e.is_transient() && !e.is_not_found());
        let e = S3Error::Http { status: 503, code: "SlowDown".into(), message: String::new(), key: "img/a".into() };
        assert!(e.is_transient());
        let e = S3Error::Http { status: 404, code: "NoSuchKey".into(), message: String::new(), key: "img/a".into() };
        assert!(e.is_not_found() && !e.is_transient());
        assert_eq!(e.to_string(), "s3 img/a: the store answered 404 NoSuchKey");
        assert!(S3Error::Transport("x".into()).is_transient());
        assert!(!S3Error::Config("x".into()).is_transient());
    }

    /// A server on 127.0.0.1 that answers each connection with the next
    /// of `answers` (then closes it) and records the requests' heads.
    fn canned(answers: Vec<Vec<u8>>) -> (Client, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for answer in answers {
                let Ok((mut conn, _)) = listener.accept() else { return };
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
                    if conn.read(&mut b).unwrap_or(0) == 0 {
                        break;
                    }
                    head.push(b[0]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let len = text
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                let _ = std::io::copy(&mut (&mut conn).take(len), &mut std::io::sink());
                seen2.lock().unwrap().push(text);
                let _ = conn.write_all(&answer);
            }
        });
        let mut c = client("p");
        c.cfg.endpoint = format!("http://127.0.0.1:{port}");
        c.host = format!("127.0.0.1:{port}");
        (c, seen)
    }

    fn answer(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
        let mut a =
            format!("HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: {}\r\n{headers}\r\n", body.len())
                .into_bytes();
        a.extend_from_slice(body);
        a
    }

    #[test]
    fn requests_are_signed_path_style() {
        let (c, seen) = canned(vec![answer("200 OK", "", b"")]);
        c.put("a b", b"x").unwrap();
        let head = seen.lock().unwrap()[0].clone();
        assert!(head.starts_with("PUT /img/p/a%20b HTTP/1.1\r\n"), "{head}");
        let lower = head.to_ascii_lowercase();
        assert_eq!(lower.matches("\r\nhost: 127.0.0.1:").count(), 1, "{head}");
        assert!(lower.contains("signedheaders=host;x-amz-content-sha256;x-amz-date, signature="), "{head}");
        assert!(lower.contains(&format!("x-amz-content-sha256: {}", sigv4::sha256_hex(b"x"))), "{head}");
    }

    #[test]
    fn idempotent_requests_are_retried_after_a_5xx_and_others_are_not() {
        let slow =
            answer("503 Service Unavailable", "", b"<Error><Code>SlowDown</Code><Message>Slow down.</Message></Error>");
        let (c, seen) = canned(vec![slow.clone(), slow.clone(), answer("200 OK", "", b"hello")]);
        let o = c.get("k", None).unwrap().unwrap();
        assert_eq!(read_all(o), b"hello");
        assert_eq!(seen.lock().unwrap().len(), 3);

        let (c, seen) = canned(vec![slow.clone(), answer("200 OK", "", b"")]);
        let e = c.create_multipart("k").unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert_eq!(
            e.to_string(),
            "s3 img/p/k: the store answered 503 SlowDown (Slow down); the store is failing, try again later"
        );
        assert_eq!(seen.lock().unwrap().len(), 1, "a POST that creates is not sent twice");

        let (c, seen) = canned(vec![slow; MAX_ATTEMPTS as usize]);
        assert!(c.head("k").unwrap_err().is_transient());
        assert_eq!(seen.lock().unwrap().len(), MAX_ATTEMPTS as usize);
    }

    fn read_all(o: Object) -> Vec<u8> {
        let mut v = Vec::new();
        let mut r = o.reader;
        r.read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn hostile_answers_are_refused() {
        // a body shorter than promised
        let mut short = answer("200 OK", "", b"0123456789");
        short.truncate(short.len() - 5);
        let (c, _) = canned(vec![short]);
        let mut o = c.get("k", None).unwrap().unwrap();
        assert!(o.reader.read_to_end(&mut Vec::new()).is_err());
        // a range that is not the one asked for
        let (c, _) = canned(vec![answer("206 Partial Content", "content-range: bytes 0-4/100\r\n", b"01234")]);
        let e = c.get("k", Some((5, 10))).unwrap_err();
        assert!(e.to_string().contains("bytes 0-4 for the range 5..10"), "{e}");
        let (c, _) = canned(vec![answer("206 Partial Content", "", b"01234")]);
        assert!(c.get("k", Some((0, 5))).is_err());
        // a whole object for a range: the range is cut out
        let (c, _) = canned(vec![answer("200 OK", "", b"0123456789")]);
        let o = c.get("k", Some((2, 5))).unwrap().unwrap();
        assert_eq!((o.size, o.start, o.len), (10, 2, 3));
        assert_eq!(read_all(o), b"234");
        // a huge error body is read only so far
        let (c, _) = canned(vec![answer("403 Forbidden", "", &vec![b'x'; 1 << 20])]);
        let e = c.put("k", b"").unwrap_err();
        assert!(matches!(&e, S3Error::Http { status: 403, code, .. } if code == "AccessDenied"), "{e}");
        // an error inside a 200 to a copy
        let (c, _) =
            canned(vec![answer("200 OK", "", b"<Error><Code>InternalError</Code><Message>m</Message></Error>")]);
        let e = c.copy("a", "b").unwrap_err();
        assert!(matches!(&e, S3Error::Http { code, .. } if code == "InternalError"), "{e}");
        // a list that never ends
        let page = b"<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>t</NextContinuationToken></ListBucketResult>";
        let (c, _) = canned(vec![answer("200 OK", "", page), answer("200 OK", "", page)]);
        assert!(c.list("").unwrap_err().to_string().contains("same continuation token"));
        // keys outside the prefix
        let page = b"<ListBucketResult><Contents><Key>other/k</Key><Size>1</Size></Contents></ListBucketResult>";
        let (c, _) = canned(vec![answer("200 OK", "", page)]);
        assert!(c.list("").unwrap_err().to_string().contains("outside the prefix"));
        // an XML answer too large
        let big = [b"<ListBucketResult>".as_slice(), &vec![b' '; MAX_XML as usize], b"</ListBucketResult>"].concat();
        let (c, _) = canned(vec![answer("200 OK", "", &big)]);
        assert!(c.list("").unwrap_err().to_string().contains("larger than"));
    }

    #[test]
    fn listing_strips_the_prefix_and_follows_pages() {
        let p1 = b"<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated><NextContinuationToken>a+b/c</NextContinuationToken>\
            <Contents><Key>p/x%2Fy</Key><Size>3</Size><LastModified>2024-01-02T03:04:05Z</LastModified></Contents></ListBucketResult>";
        let p2 = b"<ListBucketResult><Contents><Key>p/z</Key><Size>1</Size></Contents></ListBucketResult>";
        let (c, seen) = canned(vec![answer("200 OK", "", p1), answer("200 OK", "", p2)]);
        let l = c.list("").unwrap();
        assert_eq!(
            l,
            vec![
                Listed { key: "x/y".into(), size: 3, last_modified: 1704164645 },
                Listed { key: "z".into(), size: 1, last_modified: 0 }
            ]
        );
        let seen = seen.lock().unwrap();
        assert!(seen[0].starts_with("GET /img?encoding-type=url&list-type=2&prefix=p%2F HTTP/1.1"), "{}", seen[0]);
        assert!(
            seen[1].starts_with("GET /img?continuation-token=a%2Bb%2Fc&encoding-type=url&list-type=2&prefix=p%2F "),
            "{}",
            seen[1]
        );
    }

    #[test]
    fn a_store_that_is_not_there_is_a_transient_error_after_retries() {
        // port 9 (discard) is closed on test machines: connection refused
        let t = std::time::Instant::now();
        let e = client("").head("a").unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert!(e.to_string().contains("could not be reached"), "{e}");
        assert!(t.elapsed() >= backoff(1) + backoff(2) + backoff(3), "retried with backoff");
    }
}
