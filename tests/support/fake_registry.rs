//! An in-process fake registry for network-fault tests: plain HTTP/1.1 on
//! 127.0.0.1, parsed by hand, one thread per connection. It serves
//! manifests and blobs (with `Range: bytes=N-`), accepts pushes (uploads in
//! one PUT or in PATCH chunks, cross-repository mounts, manifests that are
//! refused while a blob they list is missing), can require Basic or Bearer
//! auth, records every request it parses, and misbehaves on purpose
//! following a per-path, per-attempt fault plan: the faults a real
//! registry does not produce on demand (resets, truncation, stalls, wrong
//! bytes, redirect loops, endless bodies).
//!
//! Dropping the registry stops it: every thread checks a stop flag at least
//! every 50 ms and is joined.
#![allow(dead_code)]

use super::Image;
use img::digest::Digest;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often blocked reads and writes look at the stop flag.
const POLL: Duration = Duration::from_millis(50);
/// Longest request head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// One request as the server parsed it, and what it answered.
#[derive(Clone, Debug)]
pub struct Request {
    /// Which connection (in accept order) carried it.
    pub conn: usize,
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// The path without the query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub at: Instant,
    /// The status answered; 0 if no answer was sent.
    pub status: u16,
    /// Request body bytes received (uploads).
    pub body_received: u64,
    /// Body bytes written to the socket (headers not counted).
    pub body_sent: u64,
    /// True once the whole body announced was written.
    pub complete: bool,
    /// The attempt number at this path among authorised requests (1-based);
    /// 0 for requests answered before counting (401, `/v2/`, the token).
    pub attempt: usize,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// N of a `Range: bytes=N-` header.
    pub fn range_start(&self) -> Option<u64> {
        parse_range(self.header("range")?)
    }
}

/// What a request is answered with instead of the resource.
#[derive(Clone, Debug)]
pub enum Fault {
    /// This status, extra headers and body.
    Status(u16, Vec<(String, String)>, Vec<u8>),
    /// Headers announcing the whole body, `n` body bytes, then a clean close (FIN).
    CloseAfter(u64),
    /// Headers, `n` body bytes, a wait until the client has them, then a
    /// reset (RST, via SO_LINGER 0).
    ResetAfter(u64),
    /// Read the request and never answer (until the client or the server goes away).
    Hang,
    /// Headers and `n` body bytes, then silence (until the client or the server goes away).
    StallAfter(u64),
    /// The whole body, one byte at a time, this far apart.
    Trickle(Duration),
    /// The whole body in pieces of `chunk` bytes, `every` apart (a slow
    /// but steady link).
    Paced { chunk: usize, every: Duration },
    /// These bytes instead of the resource (Content-Length and Range theirs).
    Replace(Vec<u8>),
    /// The resource followed by these bytes, Content-Length covering both.
    Append(Vec<u8>),
    /// A 200 with a body of `len` bytes made on the fly: `prefix`, then spaces.
    Huge { content_type: String, prefix: Vec<u8>, len: u64 },
    /// A 307 to this URL; `{n}` in it becomes the attempt number.
    Redirect(String),
}

/// Auth the registry requires.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Basic {
        user: String,
        pass: String,
    },
    /// Bearer tokens from `realm`. If the realm is this server's `/token`,
    /// it hands out `token` (to anyone: the test checks who asked how).
    Bearer {
        realm: String,
        service: String,
        token: String,
    },
}

#[derive(Clone)]
struct Resource {
    content_type: Option<String>,
    body: Arc<Vec<u8>>,
    /// Sent as Docker-Content-Digest.
    digest: Option<String>,
}

#[derive(Clone)]
struct Rule {
    path: String,
    /// None: every attempt.
    attempt: Option<usize>,
    fault: Fault,
}

struct State {
    stop: AtomicBool,
    /// Accept connections and never read or answer.
    silent: bool,
    port: u16,
    resources: Mutex<HashMap<String, Resource>>,
    rules: Mutex<Vec<Rule>>,
    auth: Mutex<Auth>,
    attempts: Mutex<HashMap<String, usize>>,
    log: Mutex<Vec<Request>>,
    /// Uploads in progress: id -> bytes received so far.
    uploads: Mutex<HashMap<String, Vec<u8>>>,
    upload_seq: AtomicUsize,
    /// Request bodies are read `chunk` bytes at a time, `every` apart.
    upload_pace: Mutex<Option<(usize, Duration)>>,
    connections: AtomicUsize,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl State {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn update(&self, idx: usize, f: impl FnOnce(&mut Request)) {
        if let Some(r) = self.log.lock().unwrap().get_mut(idx) {
            f(r);
        }
    }
}

/// A running fake registry; stopped and joined on drop.
pub struct FakeRegistry {
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl FakeRegistry {
    /// A registry that answers (no auth, nothing served yet).
    pub fn start() -> FakeRegistry {
        FakeRegistry::spawn(false)
    }

    /// A server that accepts connections and never reads or answers.
    pub fn silent() -> FakeRegistry {
        FakeRegistry::spawn(true)
    }

    fn spawn(silent: bool) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            stop: AtomicBool::new(false),
            silent,
            port,
            resources: Mutex::new(HashMap::new()),
            rules: Mutex::new(Vec::new()),
            auth: Mutex::new(Auth::None),
            attempts: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            uploads: Mutex::new(HashMap::new()),
            upload_seq: AtomicUsize::new(0),
            upload_pace: Mutex::new(None),
            connections: AtomicUsize::new(0),
            threads: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let accept = std::thread::spawn(move || accept_loop(listener, st));
        FakeRegistry { state, accept: Some(accept) }
    }

    pub fn port(&self) -> u16 {
        self.state.port
    }

    /// `127.0.0.1:PORT`, as a registry name.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// `127.0.0.1:PORT/NAME:TAG`.
    pub fn reference(&self, name: &str, tag: &str) -> String {
        format!("{}/{name}:{tag}", self.host())
    }

    pub fn manifest_path(name: &str, reference: &str) -> String {
        format!("/v2/{name}/manifests/{reference}")
    }

    pub fn blob_path(name: &str, d: &Digest) -> String {
        format!("/v2/{name}/blobs/{d}")
    }

    /// Serves `path` with these bytes.
    pub fn put(&self, path: &str, content_type: Option<&str>, body: Vec<u8>, digest: Option<String>) {
        self.state.resources.lock().unwrap().insert(
            path.to_string(),
            Resource { content_type: content_type.map(str::to_string), body: Arc::new(body), digest },
        );
    }

    /// Serves a manifest under `reference` (a tag or a digest).
    pub fn put_manifest(&self, name: &str, reference: &str, content_type: &str, body: &[u8]) {
        let d = Digest::of_bytes(body).to_string();
        self.put(&Self::manifest_path(name, reference), Some(content_type), body.to_vec(), Some(d));
    }

    /// Serves a blob; returns its digest.
    pub fn put_blob(&self, name: &str, body: &[u8]) -> Digest {
        let d = Digest::of_bytes(body);
        self.put(&Self::blob_path(name, &d), Some("application/octet-stream"), body.to_vec(), Some(d.to_string()));
        d
    }

    /// Serves an image: its OCI manifest under `tag` and its digest, the
    /// config and the layers.
    pub fn serve_image(&self, name: &str, tag: &str, image: &Image) {
        let mt = super::OCI_MANIFEST;
        self.put_manifest(name, tag, mt, &image.manifest);
        self.put_manifest(name, &image.manifest_digest.to_string(), mt, &image.manifest);
        self.put_blob(name, &image.config);
        for l in &image.layers {
            self.put_blob(name, &l.blob);
        }
    }

    /// Reads request bodies (uploads) `chunk` bytes at a time, `every`
    /// apart, with a small socket receive buffer so the client feels it.
    pub fn pace_uploads(&self, chunk: usize, every: Duration) {
        *self.state.upload_pace.lock().unwrap() = Some((chunk, every));
    }

    /// The bytes served at `path`, if any.
    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        self.state.resources.lock().unwrap().get(path).map(|r| r.body.to_vec())
    }

    /// The blob `d` of repository `name`, if pushed or served.
    pub fn blob(&self, name: &str, d: &Digest) -> Option<Vec<u8>> {
        self.get(&Self::blob_path(name, d))
    }

    /// The manifest `reference` (a tag or a digest) of repository `name`.
    pub fn manifest(&self, name: &str, reference: &str) -> Option<Vec<u8>> {
        self.get(&Self::manifest_path(name, reference))
    }

    /// Upload sessions started and not completed.
    pub fn open_uploads(&self) -> usize {
        self.state.uploads.lock().unwrap().len()
    }

    pub fn set_auth(&self, auth: Auth) {
        *self.state.auth.lock().unwrap() = auth;
    }

    /// Answers attempt `attempt` (1-based) at `path` with `fault`.
    pub fn fault_on(&self, path: &str, attempt: usize, fault: Fault) {
        self.state.rules.lock().unwrap().push(Rule { path: path.into(), attempt: Some(attempt), fault });
    }

    /// Answers every attempt at `path` with `fault`.
    pub fn fault_always(&self, path: &str, fault: Fault) {
        self.state.rules.lock().unwrap().push(Rule { path: path.into(), attempt: None, fault });
    }

    pub fn clear_faults(&self) {
        self.state.rules.lock().unwrap().clear();
    }

    /// Every request parsed so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.log.lock().unwrap().clone()
    }

    /// Requests for `path` (query ignored).
    pub fn requests_to(&self, path: &str) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }

    /// Connections accepted so far (including ones that never sent HTTP).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// The request log, one line per request, for failure messages.
    pub fn describe(&self) -> String {
        let log = self.requests();
        let t0 = log.first().map(|r| r.at);
        log.iter()
            .map(|r| {
                format!(
                    "  +{:>6}ms conn {} {} {} -> {} ({} body bytes{}){}{}\n",
                    t0.map(|t| r.at.duration_since(t).as_millis()).unwrap_or(0),
                    r.conn,
                    r.method,
                    r.target,
                    r.status,
                    r.body_sent,
                    if r.complete { "" } else { ", incomplete" },
                    r.header("range").map(|v| format!(" range {v}")).unwrap_or_default(),
                    r.header("authorization")
                        .map(|v| format!(" auth {}", v.split(' ').next().unwrap_or("")))
                        .unwrap_or_default(),
                )
            })
            .collect()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        let threads: Vec<_> = std::mem::take(&mut *self.state.threads.lock().unwrap());
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, state: Arc<State>) {
    while !state.stopped() {
        match listener.accept() {
            Ok((stream, _)) => {
                let id = state.connections.fetch_add(1, Ordering::SeqCst);
                let st = state.clone();
                let h = std::thread::spawn(move || {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(POLL));
                    let _ = stream.set_write_timeout(Some(POLL));
                    let _ = stream.set_nodelay(true);
                    if st.silent {
                        hold(&stream, &st, false);
                    } else {
                        connection(id, stream, &st);
                    }
                });
                let mut threads = state.threads.lock().unwrap();
                threads.retain(|t| !t.is_finished());
                threads.push(h);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Keeps a connection open without answering until the server stops or,
/// if `watch_peer`, the client closes it (what it sends is discarded).
fn hold(stream: &TcpStream, state: &State, watch_peer: bool) {
    let mut buf = [0u8; 4096];
    while !state.stopped() {
        if watch_peer {
            match (&*stream).read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(_) => return,
            }
        } else {
            std::thread::sleep(POLL);
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted)
}

fn connection(id: usize, mut stream: TcpStream, state: &State) {
    let pace = *state.upload_pace.lock().unwrap();
    if pace.is_some() {
        // A small receive window: the client's writes block as soon as the
        // server stops reading, so a paced upload is slow for the client too.
        let size: libc::c_int = 16 * 1024;
        // SAFETY: a valid socket descriptor and a correctly sized option value.
        unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some(head) = read_head(&mut stream, &mut buf, state) else { return };
        let Some((method, target, headers)) = parse_head(&head) else { return };
        // The request body (uploads), paced when asked.
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        let mut since_pause = 0;
        while buf.len() < len {
            if let Some((chunk, every)) = pace {
                if since_pause >= chunk {
                    if !pause(state, every) {
                        return;
                    }
                    since_pause = 0;
                }
            }
            let mut tmp = [0u8; 8192];
            let want =
                pace.map(|(chunk, _)| chunk.saturating_sub(since_pause).clamp(1, tmp.len())).unwrap_or(tmp.len());
            match stream.read(&mut tmp[..want]) {
                Ok(0) => return,
                Ok(n) => {
                    buf.extend_from_slice(&tmp[..n]);
                    since_pause += n;
                }
                Err(e) if is_timeout(&e) && !state.stopped() => {}
                Err(_) => return,
            }
        }
        let body: Vec<u8> = buf.drain(..len).collect();
        let close_requested =
            headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
        let keep = serve(id, &mut stream, state, method, target, headers, body);
        if !keep || close_requested || state.stopped() {
            // Dropping the socket closes it: a FIN, or a reset if `serve`
            // set SO_LINGER to 0.
            return;
        }
    }
}

/// Reads up to the end of a request head; None if the client went away, the
/// server stops, or the bytes are not HTTP (a TLS hello, say).
fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>, state: &State) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = buf[..end].to_vec();
            buf.drain(..end + 4);
            return Some(head);
        }
        if buf.first().is_some_and(|b| !b.is_ascii_alphabetic()) || buf.len() > MAX_HEAD {
            return None;
        }
        let mut tmp = [0u8; 8192];
        match stream.read(&mut tmp) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if is_timeout(&e) => {
                if state.stopped() {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
}

type Head = (String, String, Vec<(String, String)>);

fn parse_head(head: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    if !first.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let mut headers = Vec::new();
    for l in lines {
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Some((method, target, headers))
}

fn parse_range(v: &str) -> Option<u64> {
    v.trim().strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        206 => "Partial Content",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `Basic base64(user:pass)`.
pub fn basic_header(user: &str, pass: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()))
}

/// Writes all of `data`, retrying timeouts until the server stops; counts
/// the body bytes written into the request's log entry.
fn write_counted(stream: &mut TcpStream, state: &State, idx: Option<usize>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match stream.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                if let Some(i) = idx {
                    state.update(i, |r| r.body_sent += n as u64);
                }
                data = &data[n..];
            }
            Err(e) if is_timeout(&e) => {
                if state.stopped() {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_head(
    stream: &mut TcpStream,
    state: &State,
    idx: usize,
    status: u16,
    headers: &[(String, String)],
) -> io::Result<()> {
    state.update(idx, |r| r.status = status);
    let mut h = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    write_counted(stream, state, None, h.as_bytes())
}

/// Sleeps, waking early if the server stops; false if it stopped.
fn pause(state: &State, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if state.stopped() {
            return false;
        }
        std::thread::sleep(POLL.min(end.saturating_duration_since(Instant::now())));
    }
    !state.stopped()
}

/// A small complete answer. Returns whether the connection may be reused.
fn simple(
    stream: &mut TcpStream,
    state: &State,
    idx: usize,
    status: u16,
    mut headers: Vec<(String, String)>,
    body: &[u8],
    head_only: bool,
) -> bool {
    headers.push(("Content-Length".into(), body.len().to_string()));
    if write_head(stream, state, idx, status, &headers).is_err() {
        return false;
    }
    if !head_only && write_counted(stream, state, Some(idx), body).is_err() {
        return false;
    }
    state.update(idx, |r| r.complete = true);
    true
}

fn error_body(code: &str, msg: &str) -> Vec<u8> {
    format!(r#"{{"errors":[{{"code":"{code}","message":"{msg}","detail":null}}]}}"#).into_bytes()
}

/// Answers one request; returns whether the connection may be reused.
fn serve(
    conn: usize,
    stream: &mut TcpStream,
    state: &State,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> bool {
    let path = target.split('?').next().unwrap_or("").to_string();
    let query = target.split_once('?').map(|x| x.1.to_string()).unwrap_or_default();
    let idx = {
        let mut log = state.log.lock().unwrap();
        log.push(Request {
            conn,
            method: method.clone(),
            target: target.clone(),
            path: path.clone(),
            headers: headers.clone(),
            at: Instant::now(),
            status: 0,
            body_received: body.len() as u64,
            body_sent: 0,
            complete: false,
            attempt: 0,
        });
        log.len() - 1
    };
    let head_only = method == "HEAD";
    let hdr = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
    let json = || vec![("Content-Type".to_string(), "application/json".to_string())];

    // Auth. A pre-signed URL (a `signature=` query, as a CDN would hand out)
    // needs none.
    let auth = state.auth.lock().unwrap().clone();
    if let Auth::Bearer { realm, token, .. } = &auth {
        if path == "/token" && realm.starts_with(&format!("http://127.0.0.1:{}/token", state.port)) {
            let body = format!(r#"{{"token":"{token}","access_token":"{token}"}}"#);
            return simple(stream, state, idx, 200, json(), body.as_bytes(), head_only);
        }
    }
    let presigned = query.split('&').any(|p| p.starts_with("signature="));
    let challenge = match &auth {
        Auth::None => None,
        _ if presigned => None,
        Auth::Basic { user, pass } => (hdr("authorization").as_deref() != Some(basic_header(user, pass).as_str()))
            .then(|| r#"Basic realm="fake registry""#.to_string()),
        Auth::Bearer { realm, service, token } => {
            let scope = path
                .strip_prefix("/v2/")
                .and_then(|p| p.rsplit_once("/manifests/").or_else(|| p.rsplit_once("/blobs/")))
                .map(|(name, _)| format!(r#",scope="repository:{name}:pull""#))
                .unwrap_or_default();
            (hdr("authorization").as_deref() != Some(format!("Bearer {token}").as_str()))
                .then(|| format!(r#"Bearer realm="{realm}",service="{service}"{scope}"#))
        }
    };
    if let Some(ch) = challenge {
        let mut h = json();
        h.push(("WWW-Authenticate".into(), ch));
        return simple(stream, state, idx, 401, h, &error_body("UNAUTHORIZED", "authentication required"), head_only);
    }
    if path == "/v2/" || path == "/v2" {
        let mut h = json();
        h.push(("Docker-Distribution-API-Version".into(), "registry/2.0".into()));
        return simple(stream, state, idx, 200, h, b"{}", head_only);
    }

    let attempt = {
        let mut a = state.attempts.lock().unwrap();
        let n = a.entry(path.clone()).or_insert(0);
        *n += 1;
        *n
    };
    state.update(idx, |r| r.attempt = attempt);
    let fault = state
        .rules
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.path == path && r.attempt.is_none_or(|a| a == attempt))
        .map(|r| r.fault.clone());
    let resource = state.resources.lock().unwrap().get(&path).cloned();

    // Faults that do not need the resource.
    match &fault {
        Some(Fault::Status(status, extra, body)) => {
            let mut h = json();
            h.extend(extra.iter().cloned());
            return simple(stream, state, idx, *status, h, body, head_only);
        }
        Some(Fault::Hang) => {
            hold(stream, state, true);
            return false;
        }
        Some(Fault::Redirect(to)) => {
            let h = vec![("Location".to_string(), to.replace("{n}", &attempt.to_string()))];
            return simple(stream, state, idx, 307, h, b"", head_only);
        }
        Some(Fault::Huge { content_type, prefix, len }) => {
            let h = vec![
                ("Content-Type".to_string(), content_type.clone()),
                ("Content-Length".to_string(), len.to_string()),
            ];
            if write_head(stream, state, idx, 200, &h).is_err() || head_only {
                return false;
            }
            if write_counted(stream, state, Some(idx), prefix).is_err() {
                return false;
            }
            let chunk = vec![b' '; 64 * 1024];
            let mut left = len.saturating_sub(prefix.len() as u64);
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if write_counted(stream, state, Some(idx), &chunk[..n]).is_err() {
                    return false;
                }
                left -= n as u64;
            }
            state.update(idx, |r| r.complete = true);
            return true;
        }
        _ => {}
    }

    if matches!(method.as_str(), "POST" | "PATCH" | "PUT" | "DELETE") {
        let (status, h, answer) = receive(state, &method, &path, &query, &headers, body);
        return simple(stream, state, idx, status, h, &answer, false);
    }

    let Some(res) = resource else {
        let code = if path.contains("/manifests/") { "MANIFEST_UNKNOWN" } else { "BLOB_UNKNOWN" };
        return simple(stream, state, idx, 404, json(), &error_body(code, "unknown to the fake registry"), head_only);
    };
    let full: Arc<Vec<u8>> = match &fault {
        Some(Fault::Replace(b)) => Arc::new(b.clone()),
        Some(Fault::Append(extra)) => {
            let mut b = res.body.to_vec();
            b.extend_from_slice(extra);
            Arc::new(b)
        }
        _ => res.body.clone(),
    };
    let start = hdr("range").and_then(|v| parse_range(&v));
    let mut h = Vec::new();
    if let Some(ct) = &res.content_type {
        h.push(("Content-Type".to_string(), ct.clone()));
    }
    if let Some(d) = &res.digest {
        h.push(("Docker-Content-Digest".to_string(), d.clone()));
    }
    if path.contains("/blobs/") {
        h.push(("Accept-Ranges".to_string(), "bytes".to_string()));
    }
    let (status, body) = match start {
        Some(s) if s >= full.len() as u64 => {
            h.push(("Content-Range".to_string(), format!("bytes */{}", full.len())));
            return simple(stream, state, idx, 416, h, b"", head_only);
        }
        Some(s) => {
            h.push(("Content-Range".to_string(), format!("bytes {s}-{}/{}", full.len() - 1, full.len())));
            (206, &full[s as usize..])
        }
        None => (200, &full[..]),
    };
    h.push(("Content-Length".to_string(), body.len().to_string()));
    if write_head(stream, state, idx, status, &h).is_err() {
        return false;
    }
    if head_only {
        state.update(idx, |r| r.complete = true);
        return true;
    }
    let upto = |n: u64| &body[..(n as usize).min(body.len())];
    match &fault {
        Some(Fault::CloseAfter(n)) => {
            let _ = write_counted(stream, state, Some(idx), upto(*n));
            false
        }
        Some(Fault::ResetAfter(n)) => {
            if write_counted(stream, state, Some(idx), upto(*n)).is_ok() {
                // Let what was sent reach the client first: a reset drops
                // the data not yet acknowledged, and the test counts bytes.
                wait_acknowledged(stream, state);
            }
            reset(stream);
            false
        }
        Some(Fault::StallAfter(n)) => {
            if write_counted(stream, state, Some(idx), upto(*n)).is_ok() {
                hold(stream, state, true);
            }
            false
        }
        Some(Fault::Paced { chunk, every }) => {
            for (i, b) in body.chunks((*chunk).max(1)).enumerate() {
                if i > 0 && !pause(state, *every) || write_counted(stream, state, Some(idx), b).is_err() {
                    return false;
                }
            }
            state.update(idx, |r| r.complete = true);
            true
        }
        Some(Fault::Trickle(every)) => {
            for (i, b) in body.chunks(1).enumerate() {
                if i > 0 && !pause(state, *every) || write_counted(stream, state, Some(idx), b).is_err() {
                    return false;
                }
            }
            state.update(idx, |r| r.complete = true);
            true
        }
        _ => {
            if write_counted(stream, state, Some(idx), body).is_err() {
                return false;
            }
            state.update(idx, |r| r.complete = true);
            true
        }
    }
}

/// Waits (up to 10 s) until the peer has acknowledged every byte written
/// to `stream`: the send queue (SIOCOUTQ) is empty.
fn wait_acknowledged(stream: &TcpStream, state: &State) {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && !state.stopped() {
        let mut queued: libc::c_int = 0;
        // SAFETY: a valid socket descriptor and an int to write the count to.
        let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
        if rc != 0 || queued == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Makes the close of `stream` a reset (RST) rather than a FIN.
fn reset(stream: &TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket descriptor and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

// ---- pushes ------------------------------------------------------------------------

type Answer = (u16, Vec<(String, String)>, Vec<u8>);

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|p| p.strip_prefix(key)?.strip_prefix('=').map(percent_decode))
}

fn json_error(status: u16, code: &str, msg: &str) -> Answer {
    (status, vec![("Content-Type".into(), "application/json".into())], error_body(code, msg))
}

/// The digests a manifest (or index) refers to: (path kind, digest).
fn references(doc: &serde_json::Value) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(d) = doc.pointer("/config/digest").and_then(|d| d.as_str()) {
        out.push(("blobs", d.to_string()));
    }
    for l in doc.get("layers").and_then(|l| l.as_array()).into_iter().flatten() {
        if let Some(d) = l.get("digest").and_then(|d| d.as_str()) {
            out.push(("blobs", d.to_string()));
        }
    }
    for m in doc.get("manifests").and_then(|l| l.as_array()).into_iter().flatten() {
        if let Some(d) = m.get("digest").and_then(|d| d.as_str()) {
            out.push(("manifests", d.to_string()));
        }
    }
    out
}

/// Answers an upload request: starting one (or mounting), a chunk, its
/// completion, or a manifest. Blobs land where GET and HEAD serve them.
fn receive(
    state: &State,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Answer {
    let hdr = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
    let Some(rest) = path.strip_prefix("/v2/") else {
        return json_error(404, "NAME_UNKNOWN", "not a registry path");
    };
    let location = |l: String| ("Location".to_string(), l);
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        if method != "PUT" {
            return json_error(405, "UNSUPPORTED", "manifests are only read and PUT here");
        }
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return json_error(400, "MANIFEST_INVALID", "not JSON");
        };
        // As a real registry: a manifest whose blobs are not all in the
        // repository is refused, so a tag never points at missing blobs.
        let missing: Vec<String> = {
            let res = state.resources.lock().unwrap();
            references(&doc)
                .into_iter()
                .filter(|(kind, d)| !res.contains_key(&format!("/v2/{name}/{kind}/{d}")))
                .map(|(_, d)| d)
                .collect()
        };
        if !missing.is_empty() {
            return json_error(
                400,
                "MANIFEST_BLOB_UNKNOWN",
                &format!("blob unknown to registry: {}", missing.join(" ")),
            );
        }
        let digest = Digest::of_bytes(&body).to_string();
        let ct = hdr("content-type").or_else(|| doc.get("mediaType").and_then(|m| m.as_str()).map(str::to_string));
        let body = Arc::new(body);
        {
            let mut res = state.resources.lock().unwrap();
            for r in [reference, digest.as_str()] {
                res.insert(
                    format!("/v2/{name}/manifests/{r}"),
                    Resource { content_type: ct.clone(), body: body.clone(), digest: Some(digest.clone()) },
                );
            }
        }
        let h = vec![location(format!("/v2/{name}/manifests/{digest}")), ("Docker-Content-Digest".into(), digest)];
        return (201, h, Vec::new());
    }
    let Some((name, upload)) = rest.split_once("/blobs/uploads") else {
        return json_error(405, "UNSUPPORTED", "blobs are pushed through /blobs/uploads/");
    };
    let upload = upload.trim_start_matches('/');
    let blob_headers =
        |d: &str| vec![location(format!("/v2/{name}/blobs/{d}")), ("Docker-Content-Digest".to_string(), d.to_string())];
    match method {
        "POST" if upload.is_empty() => {
            if let (Some(d), Some(from)) = (query_param(query, "mount"), query_param(query, "from")) {
                let mut res = state.resources.lock().unwrap();
                if let Some(r) = res.get(&format!("/v2/{from}/blobs/{d}")).cloned() {
                    res.insert(format!("/v2/{name}/blobs/{d}"), r);
                    return (201, blob_headers(&d), Vec::new());
                }
            }
            let id = format!("u{}", state.upload_seq.fetch_add(1, Ordering::SeqCst));
            state.uploads.lock().unwrap().insert(id.clone(), body);
            let h = vec![
                location(format!("/v2/{name}/blobs/uploads/{id}")),
                ("Docker-Upload-UUID".into(), id),
                ("Range".into(), "0-0".into()),
            ];
            (202, h, Vec::new())
        }
        "PATCH" | "PUT" | "DELETE" if !upload.is_empty() => {
            let mut uploads = state.uploads.lock().unwrap();
            let Some(data) = uploads.get_mut(upload) else {
                return json_error(404, "BLOB_UPLOAD_UNKNOWN", "no such upload");
            };
            if method == "DELETE" {
                uploads.remove(upload);
                return (204, Vec::new(), Vec::new());
            }
            if let Some(cr) = hdr("content-range") {
                let start = cr.trim().split('-').next().and_then(|s| s.parse::<usize>().ok());
                if start != Some(data.len()) {
                    let h = vec![("Range".to_string(), format!("0-{}", data.len().saturating_sub(1)))];
                    return (416, h, error_body("BLOB_UPLOAD_INVALID", "chunk out of order"));
                }
            }
            data.extend_from_slice(&body);
            if method == "PATCH" {
                let h = vec![
                    location(format!("/v2/{name}/blobs/uploads/{upload}")),
                    ("Range".into(), format!("0-{}", data.len().saturating_sub(1))),
                    ("Docker-Upload-UUID".into(), upload.to_string()),
                ];
                return (202, h, Vec::new());
            }
            let Some(want) = query_param(query, "digest") else {
                return json_error(400, "DIGEST_INVALID", "no digest");
            };
            let got = Digest::of_bytes(data).to_string();
            let data = uploads.remove(upload).unwrap();
            if got != want {
                return json_error(400, "DIGEST_INVALID", &format!("digest is {got}"));
            }
            drop(uploads);
            state.resources.lock().unwrap().insert(
                format!("/v2/{name}/blobs/{got}"),
                Resource {
                    content_type: Some("application/octet-stream".into()),
                    body: Arc::new(data),
                    digest: Some(got.clone()),
                },
            );
            (201, blob_headers(&got), Vec::new())
        }
        _ => json_error(405, "UNSUPPORTED", "unexpected upload request"),
    }
}
