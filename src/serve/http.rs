//! A small HTTP/1.1 server for `img serve`: a thread per connection (up
//! to a limit), keep-alive, request bodies by length or chunked, `Expect:
//! 100-continue`, responses from memory or from a file region, TLS through
//! rustls. Request heads are parsed with httparse and bounded in size and
//! time, so a client that trickles or sends nonsense ties up one thread
//! for a bounded time and is then dropped.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The largest request head (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
/// How long a connection may stay silent (between requests or within one).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a request head may take once its first byte is in (a client
/// that trickles its head is dropped after this).
const HEAD_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections served at once; more are answered 503 and closed.
const MAX_CONNECTIONS: usize = 1024;
/// Unread request body a handler leaves that is skipped to keep the
/// connection; more and the connection is closed instead.
const MAX_DRAIN: u64 = 1 << 20;

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What a response carries.
pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// `len` bytes of `file` from `offset`.
    File {
        file: std::fs::File,
        offset: u64,
        len: u64,
    },
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response { status, headers: Vec::new(), body: Body::Empty }
    }

    pub fn header(mut self, k: &str, v: impl Into<String>) -> Response {
        self.headers.push((k.to_string(), v.into()));
        self
    }

    pub fn bytes(mut self, content_type: &str, b: Vec<u8>) -> Response {
        self.headers.push(("Content-Type".into(), content_type.into()));
        self.body = Body::Bytes(b);
        self
    }

    pub fn json(self, v: &serde_json::Value) -> Response {
        self.bytes("application/json", serde_json::to_vec(v).unwrap_or_default())
    }

    fn body_len(&self) -> u64 {
        match &self.body {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
}

/// The reason phrase of a status.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// A request handler: the head and a reader of the body.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: &Request, body: &mut dyn Read) -> Response;
}

/// TLS for the listener.
pub type TlsConfig = Arc<rustls::ServerConfig>;

/// Serves `listener` until the process ends.
pub fn serve(listener: TcpListener, tls: Option<TlsConfig>, handler: Arc<dyn Handler>) -> io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::ConnectionAborted => {
                continue
            }
            Err(e) => {
                // Out of file descriptors and the like: wait and go on.
                eprintln!("img serve: accepting a connection: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            let mut s = stream;
            let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (tls, handler, active) = (tls.clone(), handler.clone(), active.clone());
        let spawned = std::thread::Builder::new().stack_size(256 * 1024).spawn(move || {
            let _ = connection(stream, tls, &*handler);
            active.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            // The thread was not made: the connection is dropped.
            eprintln!("img serve: could not start a thread for a connection");
        }
    }
    Ok(())
}

/// A connection's stream: plain TCP or TLS over it.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

fn connection(tcp: TcpStream, tls: Option<TlsConfig>, handler: &dyn Handler) -> io::Result<()> {
    let peer = tcp.peer_addr()?;
    // A second handle on the socket, to change its timeouts while the
    // stream is owned by the reader (and TLS).
    let ctl = tcp.try_clone()?;
    tcp.set_read_timeout(Some(IDLE_TIMEOUT))?;
    tcp.set_write_timeout(Some(IDLE_TIMEOUT))?;
    tcp.set_nodelay(true)?;
    let is_tls = tls.is_some();
    let stream: Box<dyn Stream> = match tls {
        Some(cfg) => {
            let conn = rustls::ServerConnection::new(cfg).map_err(io::Error::other)?;
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
        None => Box::new(tcp),
    };
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    if !is_tls {
        // A TLS handshake on the plain port (a client trying HTTPS first)
        // gets an HTTP answer at once, as Go's servers give, so that the
        // client falls back to HTTP instead of waiting for a handshake.
        if r.fill_buf().map(|b| b.first() == Some(&0x16)).unwrap_or(false) {
            let _ = r.get_mut().write_all(
                b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
            );
            return Ok(());
        }
    }
    loop {
        let started = std::cell::Cell::new(None::<std::time::Instant>);
        let on_bytes = || {
            let t0 = match started.get() {
                Some(t) => t,
                None => {
                    let now = std::time::Instant::now();
                    started.set(Some(now));
                    now
                }
            };
            let left = HEAD_TIMEOUT.saturating_sub(t0.elapsed());
            if left.is_zero() {
                return false;
            }
            let _ = ctl.set_read_timeout(Some(left));
            true
        };
        let head = read_head(&mut r, &on_bytes);
        let _ = ctl.set_read_timeout(Some(IDLE_TIMEOUT));
        let head = match head {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(()),
            Err(HeadError::Io(e)) => return Err(e),
            Err(HeadError::Bad(status, msg)) => {
                let resp = Response::new(status).bytes("text/plain", format!("{msg}\n").into_bytes());
                let _ = write_response(r.get_mut(), &resp, false, false);
                return Ok(());
            }
        };
        let req = match parse_head(&head, peer, is_tls) {
            Ok(r) => r,
            Err(msg) => {
                let resp = Response::new(400).bytes("text/plain", format!("{msg}\n").into_bytes());
                let _ = write_response(r.get_mut(), &resp, false, false);
                return Ok(());
            }
        };
        let http10 = find_version(&head) == Some(0);
        // HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 only
        // when asked to (ab -k, old proxies).
        let conn = req.header("connection").unwrap_or("");
        let mut keep_alive =
            if http10 { conn.eq_ignore_ascii_case("keep-alive") } else { !conn.eq_ignore_ascii_case("close") };
        let framing = match body_framing(&req) {
            Ok(f) => f,
            Err((status, msg)) => {
                let resp = Response::new(status).bytes("text/plain", format!("{msg}\n").into_bytes());
                let _ = write_response(r.get_mut(), &resp, false, false);
                return Ok(());
            }
        };
        if req.header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) && framing != Framing::None {
            r.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            r.get_mut().flush()?;
        }
        let mut body = BodyReader { inner: &mut r, framing, failed: false };
        let resp = handler.handle(&req, &mut body);
        // What the handler did not read is skipped, up to a limit.
        if body.failed || drain(&mut body).is_err() {
            keep_alive = false;
        }
        let head_only = req.method == "HEAD";
        let resp = if http10 && keep_alive { resp.header("Connection", "keep-alive") } else { resp };
        write_response(r.get_mut(), &resp, head_only, keep_alive)?;
        if !keep_alive {
            return Ok(());
        }
    }
}

fn find_version(head: &[u8]) -> Option<u8> {
    let line_end = head.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?.trim_end();
    let v = line.rsplit(' ').next()?;
    match v {
        "HTTP/1.0" => Some(0),
        "HTTP/1.1" => Some(1),
        _ => None,
    }
}

enum HeadError {
    Io(io::Error),
    Bad(u16, String),
}

/// Reads a request head (through the blank line); None at a clean end of
/// the connection between requests.
/// `on_bytes` is called whenever bytes of the head have arrived and more
/// are awaited; it returns false when the head has taken too long.
fn read_head(r: &mut impl BufRead, on_bytes: &dyn Fn() -> bool) -> Result<Option<Vec<u8>>, HeadError> {
    let mut head = Vec::with_capacity(1024);
    loop {
        if !head.is_empty() && !on_bytes() {
            return Err(HeadError::Bad(408, format!("the request head took over {} s", HEAD_TIMEOUT.as_secs())));
        }
        let n = {
            let buf = match r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if head.is_empty() && is_quiet_close(&e) => return Ok(None),
                Err(e) => return Err(HeadError::Io(e)),
            };
            if buf.is_empty() {
                return if head.is_empty() {
                    Ok(None)
                } else {
                    Err(HeadError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed in a request head",
                    )))
                };
            }
            // Up to and including the end of the head, if it is in this buffer.
            let start = head.len().saturating_sub(3);
            head.extend_from_slice(buf);
            match find_head_end(&head[start..]) {
                Some(end) => {
                    let total = start + end;
                    let used = buf.len() - (head.len() - total);
                    head.truncate(total);
                    used
                }
                None => buf.len(),
            }
        };
        r.consume(n);
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            // Leading blank lines between requests are allowed (RFC 9112 2.2).
            let trimmed = head.iter().position(|&b| b != b'\r' && b != b'\n');
            match trimmed {
                Some(0) => return Ok(Some(head)),
                Some(i) => {
                    head.drain(..i);
                    if find_head_end(&head).is_some() {
                        return Ok(Some(head));
                    }
                }
                None => head.clear(),
            }
        }
        if head.len() > MAX_HEAD {
            return Err(HeadError::Bad(431, format!("the request head is over {MAX_HEAD} bytes")));
        }
    }
}

fn is_quiet_close(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
            | io::ErrorKind::BrokenPipe
    )
}

/// The offset just past the blank line that ends a head.
fn find_head_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\n' {
            if b.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// Parses a request head.
pub fn parse_head(head: &[u8], peer: SocketAddr, tls: bool) -> Result<Request, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("the request head is incomplete".into()),
        Err(e) => return Err(format!("the request head is not HTTP/1.1: {e}")),
    }
    let method = req.method.unwrap_or("").to_string();
    let target = req.path.unwrap_or("");
    if !target.starts_with('/') {
        return Err(format!("the request target {target:?} is not a path"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut hs = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let v = std::str::from_utf8(h.value).map_err(|_| format!("header {} is not UTF-8", h.name))?;
        hs.push((h.name.to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok(Request { method, path: path.to_string(), query: query.to_string(), headers: hs, peer, tls })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    /// Chunked: the bytes left in the current chunk, or None before a
    /// chunk's size line; `done` after the last chunk and trailers.
    Chunked {
        left: Option<u64>,
        done: bool,
    },
}

fn body_framing(req: &Request) -> Result<Framing, (u16, String)> {
    if let Some(te) = req.header("transfer-encoding") {
        if !te.eq_ignore_ascii_case("chunked") {
            return Err((501, format!("transfer-encoding {te:?} is not supported (only chunked)")));
        }
        if req.header("content-length").is_some() {
            return Err((400, "both Transfer-Encoding and Content-Length".into()));
        }
        return Ok(Framing::Chunked { left: None, done: false });
    }
    let lengths: Vec<&str> =
        req.headers.iter().filter(|(k, _)| k == "content-length").map(|(_, v)| v.as_str()).collect();
    match lengths.as_slice() {
        [] => Ok(Framing::None),
        [l] => match l.parse::<u64>() {
            Ok(0) => Ok(Framing::None),
            Ok(n) => Ok(Framing::Length(n)),
            Err(_) => Err((400, format!("Content-Length {l:?} is not a number"))),
        },
        _ => Err((400, "more than one Content-Length".into())),
    }
}

/// A request body, by its framing.
struct BodyReader<'a, R: BufRead> {
    inner: &'a mut R,
    framing: Framing,
    /// The body broke off or was malformed: the connection cannot go on.
    failed: bool,
}

impl<R: BufRead> BodyReader<'_, R> {
    fn fail(&mut self, msg: &str) -> io::Error {
        self.failed = true;
        io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
    }

    /// Reads at most `left` bytes of body into `out`; the end of the
    /// stream before them is the error `early`.
    fn read_up_to(&mut self, out: &mut [u8], left: u64, early: &str) -> io::Result<usize> {
        let want = out.len().min(left.min(usize::MAX as u64) as usize);
        match self.inner.read(&mut out[..want]) {
            Ok(0) => Err(self.fail(early)),
            Ok(n) => Ok(n),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Err(self.fail("the request body ended in a chunk header"));
            }
            match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&buf[..=i]);
                    self.inner.consume(i + 1);
                    break;
                }
                None => {
                    let n = buf.len();
                    line.extend_from_slice(buf);
                    self.inner.consume(n);
                }
            }
            if line.len() > 4096 {
                return Err(self.fail("a chunk header is over 4096 bytes"));
            }
        }
        Ok(String::from_utf8_lossy(&line).trim_end().to_string())
    }
}

impl<R: BufRead> Read for BodyReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.framing {
                Framing::None => return Ok(0),
                Framing::Length(0) => {
                    self.framing = Framing::None;
                    return Ok(0);
                }
                Framing::Length(left) => {
                    let n = self.read_up_to(out, left, "the request body ended before its Content-Length")?;
                    self.framing = Framing::Length(left - n as u64);
                    return Ok(n);
                }
                Framing::Chunked { done: true, .. } => return Ok(0),
                Framing::Chunked { left: None, .. } => {
                    let line = self.read_line()?;
                    let size = line.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(size, 16).map_err(|_| self.fail("a chunk size is not hex"))?;
                    if size == 0 {
                        // Trailers, up to the blank line.
                        loop {
                            if self.read_line()?.is_empty() {
                                break;
                            }
                        }
                        self.framing = Framing::Chunked { left: None, done: true };
                        return Ok(0);
                    }
                    self.framing = Framing::Chunked { left: Some(size), done: false };
                }
                Framing::Chunked { left: Some(0), .. } => {
                    if !self.read_line()?.is_empty() {
                        return Err(self.fail("a chunk does not end with CRLF"));
                    }
                    self.framing = Framing::Chunked { left: None, done: false };
                }
                Framing::Chunked { left: Some(left), .. } => {
                    let n = self.read_up_to(out, left, "the request body ended in a chunk")?;
                    self.framing = Framing::Chunked { left: Some(left - n as u64), done: false };
                    return Ok(n);
                }
            }
        }
    }
}

fn drain<R: BufRead>(body: &mut BodyReader<R>) -> io::Result<()> {
    let n = io::copy(&mut body.take(MAX_DRAIN + 1), &mut io::sink())?;
    if n > MAX_DRAIN {
        return Err(io::Error::other("too much unread body"));
    }
    Ok(())
}

fn write_response(w: &mut dyn Write, resp: &Response, head_only: bool, keep_alive: bool) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    let mut has_length = false;
    for (k, v) in &resp.headers {
        if k.eq_ignore_ascii_case("content-length") {
            has_length = true;
        }
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    if !has_length && resp.status != 204 && resp.status >= 200 {
        head.push_str(&format!("Content-Length: {}\r\n", resp.body_len()));
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    if head_only {
        w.write_all(head.as_bytes())?;
        return w.flush();
    }
    match &resp.body {
        Body::Empty => w.write_all(head.as_bytes())?,
        Body::Bytes(b) => {
            // One write for small answers (a manifest with its head).
            if b.len() <= 64 * 1024 {
                let mut all = head.into_bytes();
                all.extend_from_slice(b);
                w.write_all(&all)?;
            } else {
                w.write_all(head.as_bytes())?;
                w.write_all(b)?;
            }
        }
        Body::File { file, offset, len } => {
            w.write_all(head.as_bytes())?;
            let mut buf = vec![0u8; 256 * 1024];
            let (mut pos, end) = (*offset, offset + len);
            while pos < end {
                let want = buf.len().min((end - pos) as usize);
                let n = std::os::unix::fs::FileExt::read_at(file, &mut buf[..want], pos)?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file is shorter than it was"));
                }
                w.write_all(&buf[..n])?;
                pos += n as u64;
            }
        }
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    fn body_of(head: &str, wire: &[u8]) -> io::Result<Vec<u8>> {
        let req = parse_head(head.as_bytes(), peer(), false).unwrap();
        let framing = body_framing(&req).map_err(|(_, m)| io::Error::other(m))?;
        let mut r = io::BufReader::new(wire);
        let mut b = BodyReader { inner: &mut r, framing, failed: false };
        let mut out = Vec::new();
        b.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn heads_parse_with_query_and_lower_case_names() {
        let r =
            parse_head(b"GET /v2/a/b/tags/list?n=2&last=x HTTP/1.1\r\nHost: h\r\nX-Thing:  v \r\n\r\n", peer(), false)
                .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/v2/a/b/tags/list");
        assert_eq!(r.query, "n=2&last=x");
        assert_eq!(r.header("x-thing"), Some("v"));
        assert_eq!(r.header("HOST"), Some("h"));
        assert!(parse_head(b"GET http://x/ HTTP/1.1\r\n\r\n", peer(), false).is_err());
        assert!(parse_head(b"GARBAGE\r\n\r\n", peer(), false).is_err());
    }

    #[test]
    fn bodies_by_length_and_chunked() {
        assert_eq!(body_of("PUT / HTTP/1.1\r\nContent-Length: 3\r\n\r\n", b"abcdef").unwrap(), b"abc");
        assert!(body_of("PUT / HTTP/1.1\r\nContent-Length: 9\r\n\r\n", b"abc").is_err());
        let chunked = b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        assert_eq!(body_of("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", chunked).unwrap(), b"abcde");
        assert!(body_of("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"zz\r\n").is_err());
        assert!(body_of("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"3\r\nabcX\r\n").is_err());
        assert!(body_of("PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", b"").is_err());
        assert!(body_of("PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", b"ab").is_err());
    }

    #[test]
    fn heads_are_read_through_the_blank_line_only() {
        let wire = b"\r\nGET / HTTP/1.1\r\nA: b\r\n\r\nGET /next HTTP/1.1\r\n\r\n";
        let mut r = io::BufReader::with_capacity(7, &wire[..]);
        let h = read_head(&mut r, &|| true).ok().flatten().unwrap();
        assert_eq!(h, b"GET / HTTP/1.1\r\nA: b\r\n\r\n");
        let h2 = read_head(&mut r, &|| true).ok().flatten().unwrap();
        assert_eq!(h2, b"GET /next HTTP/1.1\r\n\r\n");
        assert!(read_head(&mut r, &|| true).ok().unwrap().is_none());
    }

    proptest::proptest! {
        /// Any bytes as a head or a body: an answer or an error, never a
        /// panic or a body longer than what was sent.
        #[test]
        fn hostile_heads_and_bodies_never_panic(head in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
                                               wire in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_head(&head, peer(), false);
            let mut r = io::BufReader::with_capacity(16, &head[..]);
            let _ = read_head(&mut r, &|| true);
            for h in ["PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "PUT / HTTP/1.1\r\nContent-Length: 40\r\n\r\n"] {
                if let Ok(out) = body_of(h, &wire) {
                    proptest::prop_assert!(out.len() <= wire.len());
                }
            }
        }

        /// A body sent chunked in any split reads back whole.
        #[test]
        fn chunked_bodies_round_trip(data in proptest::collection::vec(proptest::num::u8::ANY, 0..2000),
                                     cuts in proptest::collection::vec(1usize..300, 1..20)) {
            let mut wire = Vec::new();
            let mut rest = &data[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                wire.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                wire.extend_from_slice(&rest[..n]);
                wire.extend_from_slice(b"\r\n");
                rest = &rest[n..];
                i += 1;
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            let out = body_of("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &wire).unwrap();
            proptest::prop_assert_eq!(out, data);
        }
    }

    #[test]
    fn endless_heads_are_refused() {
        let wire = vec![b'a'; MAX_HEAD + 10];
        let mut r = io::BufReader::new(&wire[..]);
        assert!(matches!(read_head(&mut r, &|| true), Err(HeadError::Bad(431, _))));
    }
}
