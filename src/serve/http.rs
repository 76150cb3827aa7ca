//! A small HTTP/1.1 server for `img serve`: a thread per connection (up
//! to a limit in all and a smaller one per client address), keep-alive,
//! request bodies by length or chunked, `Expect: 100-continue`, responses
//! from memory or from a file region, TLS through rustls. Request heads are
//! parsed strictly (RFC 9112) with httparse and bounded in size and time;
//! bodies and responses must move at a least rate; so a client that
//! trickles, stalls or sends nonsense ties up one thread for a bounded time
//! and is then dropped.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest request head (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
/// Unread request body a handler leaves that is skipped to keep the
/// connection; more and the connection is closed instead.
const MAX_DRAIN: u64 = 1 << 20;
/// The least rate a request body or a response must move at, after a grace
/// period: a client below it is dropped (one that trickles a byte every
/// 40 s is gone after the grace period).
const MIN_RATE: u64 = 1024;
const RATE_GRACE: Duration = Duration::from_secs(20);

/// What one client, and all of them, may hold of the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Connections served at once from one client address.
    pub max_per_address: usize,
    /// How long a connection may stay silent between requests.
    pub idle: Duration,
    /// How long a request head may take, from the connection's start for
    /// its first request and from its first byte for the next ones.
    pub head: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_per_address: 64,
            idle: Duration::from_secs(60),
            head: Duration::from_secs(15),
        }
    }
}

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
    /// The server's own address on this connection.
    pub local: SocketAddr,
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
    /// `len` bytes read from a stream (an object store's answer).
    Reader {
        reader: Mutex<Box<dyn Read + Send>>,
        len: u64,
    },
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// Who the caller was, for the access log (never sent); "-" when None.
    pub log_user: Option<String>,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response { status, headers: Vec::new(), body: Body::Empty, log_user: None }
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
            Body::File { len, .. } | Body::Reader { len, .. } => *len,
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

/// Connections held, in all and per client address.
#[derive(Default)]
struct Held {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// A connection's place in `Held`, given back when it ends.
struct Slot {
    held: Arc<Mutex<Held>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
        h.total = h.total.saturating_sub(1);
        if let Some(n) = h.by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                h.by_address.remove(&self.ip);
            }
        }
    }
}

/// Takes a place for a connection from `ip`, or says why there is none.
/// `proxy`: the address is a trusted proxy's, which carries many clients
/// and has no limit of its own.
fn take_slot(held: &Arc<Mutex<Held>>, ip: IpAddr, limits: &Limits, proxy: bool) -> Result<Slot, &'static str> {
    let mut h = held.lock().unwrap_or_else(|e| e.into_inner());
    if h.total >= limits.max_connections {
        return Err("the server is serving as many connections as it may");
    }
    let n = h.by_address.entry(ip).or_insert(0);
    if *n >= limits.max_per_address && !proxy {
        return Err("this address has as many connections open as it may");
    }
    *n += 1;
    h.total += 1;
    Ok(Slot { held: held.clone(), ip })
}

/// How requests are logged on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLog {
    #[default]
    Off,
    /// A line of text per request.
    Text,
    /// A JSON object per line.
    Json,
}

/// What the server does beside its limits: logging, the networks it
/// serves, the proxies it believes, and how it stops.
#[derive(Debug, Clone)]
pub struct Options {
    pub access_log: AccessLog,
    /// The client addresses served; empty: every address. Others are closed
    /// at accept (or answered 403, for a client behind a trusted proxy).
    pub allow_from: Vec<Cidr>,
    /// Peers whose `X-Forwarded-For` (its last hop) names the client.
    pub trusted_proxies: Vec<Cidr>,
    /// How long requests in flight may take to finish once the server is
    /// told to stop.
    pub shutdown_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            access_log: AccessLog::Off,
            allow_from: Vec::new(),
            trusted_proxies: Vec::new(),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// An IPv4 or IPv6 network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not an address or a network; give one like 10.0.0.0/8, 127.0.0.1 or fd00::/8")]
    Syntax(String),
    #[error("{text:?}: a prefix length of {prefix} is over {max}")]
    Prefix { text: String, prefix: u32, max: u32 },
    #[error("{text:?} has address bits set past its prefix; the network is {net}")]
    HostBits { text: String, net: String },
}

impl Cidr {
    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => u32::from(a) & mask4(self.prefix) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a) & mask6(self.prefix) == u128::from(n),
            _ => false,
        }
    }
}

fn mask4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0)
}

fn mask6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0)
}

impl std::str::FromStr for Cidr {
    type Err = CidrError;

    /// `ADDRESS/PREFIX`, or an address alone (a network of one). The
    /// prefix is decimal digits without a sign or leading zeros; bits set
    /// past it are refused (`10.0.0.1/8` is a mistake for `10.0.0.0/8`).
    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let syntax = || CidrError::Syntax(text.chars().take(64).collect());
        if text.len() > 64 {
            return Err(syntax());
        }
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| syntax())?;
        let max: u32 = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                if p.is_empty()
                    || p.len() > 3
                    || !p.bytes().all(|b| b.is_ascii_digit())
                    || (p.len() > 1 && p.starts_with('0'))
                {
                    return Err(syntax());
                }
                let n: u32 = p.parse().map_err(|_| syntax())?;
                if n > max {
                    return Err(CidrError::Prefix { text: text.to_string(), prefix: n, max });
                }
                n
            }
        };
        let prefix = prefix as u8;
        let masked = match net {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask4(prefix)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask6(prefix)).into()),
        };
        if masked != net {
            return Err(CidrError::HostBits { text: text.to_string(), net: format!("{masked}/{prefix}") });
        }
        Ok(Cidr { net, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

fn in_any(nets: &[Cidr], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

/// The client an `X-Forwarded-For` names: the last hop of its last line
/// (what the trusted proxy in front saw); None without the header.
fn forwarded_client(req: &Request) -> Result<Option<IpAddr>, String> {
    let Some(last) = req.headers.iter().rev().find(|(k, _)| k == "x-forwarded-for").map(|(_, v)| v) else {
        return Ok(None);
    };
    let hop = last.rsplit(',').next().unwrap_or("").trim();
    let ip: IpAddr = hop
        .parse()
        .map_err(|_| format!("X-Forwarded-For names {:?}, not an address", hop.chars().take(64).collect::<String>()))?;
    Ok(Some(ip.to_canonical()))
}

/// The request's id: the client's `X-Request-Id` when it is a short token
/// (1 to 64 letters, digits, `-`, `_` and `.`), else a new random one.
fn request_id(req: &Request) -> String {
    if let Some(id) = req.header("x-request-id") {
        if (1..=64).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return id.to_string();
        }
    }
    format!("{:032x}", rand::random::<u128>())
}

/// What is logged of one request. Never its query (tokens travel there),
/// its credentials or its body.
struct LogEntry<'a> {
    /// Seconds and milliseconds since the epoch.
    time: (i64, u32),
    remote: IpAddr,
    /// The trusted proxy the request came through.
    via: Option<IpAddr>,
    method: &'a str,
    path: &'a str,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    took: Duration,
    /// The scheme of the Authorization header, never its value.
    auth: &'a str,
    user: Option<&'a str>,
    user_agent: Option<&'a str>,
    request_id: &'a str,
}

/// Printable text for a text log line: no spaces or control characters.
fn plain(s: &str, max: usize) -> String {
    s.chars().take(max).map(|c| if c.is_control() || c.is_whitespace() { '?' } else { c }).collect()
}

fn log_line(format: AccessLog, e: &LogEntry) -> Option<String> {
    let ms = e.took.as_secs_f64() * 1000.0;
    match format {
        AccessLog::Off => None,
        AccessLog::Text => Some(format!(
            "{} {} {} {} auth={} user={} in={} out={} ms={ms:.1} id={}",
            e.remote,
            plain(e.method, 32),
            plain(e.path, 2048),
            e.status,
            plain(e.auth, 32),
            plain(e.user.unwrap_or("-"), 128),
            e.bytes_in,
            e.bytes_out,
            e.request_id
        )),
        AccessLog::Json => {
            let time = crate::timefmt::format_rfc3339(e.time.0);
            let time = format!("{}.{:03}Z", time.trim_end_matches('Z'), e.time.1);
            let mut v = serde_json::json!({
                "time": time,
                "remote": e.remote.to_string(),
                "method": e.method,
                "path": e.path,
                "status": e.status,
                "bytes_in": e.bytes_in,
                "bytes_out": e.bytes_out,
                "duration_ms": (ms * 1000.0).round() / 1000.0,
                "user": e.user.unwrap_or("-"),
                "user_agent": e.user_agent.map(|u| u.chars().take(256).collect::<String>()),
                "request_id": e.request_id,
            });
            if let Some(via) = e.via {
                v["via"] = via.to_string().into();
            }
            Some(v.to_string())
        }
    }
}

fn now_parts() -> (i64, u32) {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (d.as_secs() as i64, d.subsec_millis())
}

/// Writes a log line on standard error in one write; a standard error
/// that cannot be written to loses it.
fn emit(line: &str) {
    let mut err = io::stderr().lock();
    let _ = err.write_all(format!("{line}\n").as_bytes());
}

/// What tells a server to stop: a descriptor that becomes readable, and
/// how many stop requests came since the last look.
pub trait Stop: AsFd + Send + Sync {
    fn take(&self) -> usize;
}

impl Stop for img_sys::signal::Termination {
    fn take(&self) -> usize {
        img_sys::signal::Termination::take(self)
    }
}

/// How a server ended after it was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Requests in flight when it was told.
    pub in_flight: usize,
    /// Of those, the ones still unfinished at the timeout, whose
    /// connections were closed.
    pub cut: usize,
}

/// A connection's state, for stopping.
struct Tracked {
    /// A handle on its socket, to shut it down.
    sock: TcpStream,
    /// Between a request head and the end of its answer.
    busy: bool,
    /// Its reading side was shut down by a stop.
    closed: bool,
}

#[derive(Default)]
struct Conns {
    map: HashMap<u64, Tracked>,
    next: u64,
    stopping: bool,
}

/// The connections being served, so that a stop can close the idle ones
/// at once, let the busy ones finish, and close what is left at the end.
#[derive(Default)]
struct Tracker(Mutex<Conns>);

/// What a connection that read a request head may do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    /// Answer it (and close afterwards if the server is stopping).
    Go,
    /// The server is stopping and this connection's reading side is shut:
    /// a request without a body may be answered, one with a body not.
    ReadShut,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Conns> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a connection; None when the server is stopping.
    fn register(&self, sock: TcpStream) -> Option<u64> {
        let mut c = self.lock();
        if c.stopping {
            return None;
        }
        c.next += 1;
        let id = c.next;
        c.map.insert(id, Tracked { sock, busy: false, closed: false });
        Some(id)
    }

    fn unregister(&self, id: u64) {
        self.lock().map.remove(&id);
    }

    /// The connection waits for its next request; false when it is to
    /// close instead (the server is stopping).
    fn idle(&self, id: u64) -> bool {
        let mut c = self.lock();
        if c.stopping {
            return false;
        }
        if let Some(t) = c.map.get_mut(&id) {
            t.busy = false;
        }
        true
    }

    /// A request head arrived on the connection.
    fn busy(&self, id: u64) -> Busy {
        let mut c = self.lock();
        match c.map.get_mut(&id) {
            Some(t) => {
                t.busy = true;
                if t.closed {
                    Busy::ReadShut
                } else {
                    Busy::Go
                }
            }
            None => Busy::ReadShut,
        }
    }

    fn stopping(&self) -> bool {
        self.lock().stopping
    }

    /// Stops: no connection is added from now on; idle ones have their
    /// reading side shut (their wait for a request ends); says how many
    /// are busy.
    fn stop(&self) -> usize {
        let mut c = self.lock();
        c.stopping = true;
        let mut busy = 0;
        for t in c.map.values_mut() {
            if t.busy {
                busy += 1;
            } else {
                t.closed = true;
                let _ = t.sock.shutdown(std::net::Shutdown::Read);
            }
        }
        busy
    }

    fn busy_count(&self) -> usize {
        self.lock().map.values().filter(|t| t.busy).count()
    }

    /// Closes every connection left; says how many were busy.
    fn cut(&self) -> usize {
        let c = self.lock();
        for t in c.map.values() {
            let _ = t.sock.shutdown(std::net::Shutdown::Both);
        }
        c.map.values().filter(|t| t.busy).count()
    }
}

/// A connection's place in the tracker, given back when it ends.
struct TrackSlot<'a> {
    tracker: &'a Tracker,
    id: u64,
}

impl Drop for TrackSlot<'_> {
    fn drop(&mut self) {
        self.tracker.unregister(self.id);
    }
}

/// What every connection of a server shares.
struct Shared {
    handler: Arc<dyn Handler>,
    limits: Limits,
    opts: Options,
    tracker: Tracker,
    held: Arc<Mutex<Held>>,
}

/// Serves `listener` until the process ends.
pub fn serve(
    listener: TcpListener,
    tls: Option<TlsConfig>,
    handler: Arc<dyn Handler>,
    limits: Limits,
) -> io::Result<()> {
    serve_with(listener, tls, handler, limits, Options::default(), None).map(|_| ())
}

/// Serves `listener` until `stop` says to stop (or, without one, until
/// the process ends). Then the listener is closed, idle connections are
/// closed, requests in flight are answered with `Connection: close` for up
/// to `opts.shutdown_timeout` (a second stop ends the wait), and the
/// connections left are closed.
pub fn serve_with(
    listener: TcpListener,
    tls: Option<TlsConfig>,
    handler: Arc<dyn Handler>,
    limits: Limits,
    opts: Options,
    stop: Option<&dyn Stop>,
) -> io::Result<Stopped> {
    use img_sys::signal::wait_readable;
    listener.set_nonblocking(true)?;
    let timeout = opts.shutdown_timeout;
    let shared = Arc::new(Shared {
        handler,
        limits,
        opts,
        tracker: Tracker::default(),
        held: Arc::new(Mutex::new(Held::default())),
    });
    loop {
        let ready = match stop {
            Some(s) => wait_readable(&[listener.as_fd(), s.as_fd()], None)?,
            None => wait_readable(&[listener.as_fd()], None)?,
        };
        if let Some(s) = stop {
            if ready[1] && s.take() > 0 {
                break;
            }
        }
        if !ready[0] {
            continue;
        }
        // Every connection waiting, then back to waiting.
        loop {
            match listener.accept() {
                Ok((stream, peer)) => accept(stream, peer, &tls, &shared),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // Out of file descriptors and the like: wait and go on.
                    eprintln!("img serve: accepting a connection: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    break;
                }
            }
        }
    }
    // New connections are refused from now on.
    drop(listener);
    let in_flight = shared.tracker.stop();
    eprintln!(
        "img serve: stopping: {in_flight} request(s) in flight, waiting up to {} s for them (a second signal stops at once)",
        timeout.as_secs()
    );
    let deadline = Instant::now() + timeout;
    loop {
        if shared.tracker.busy_count() == 0 {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let wait = left.min(Duration::from_millis(50));
        match stop {
            Some(s) => {
                if wait_readable(&[s.as_fd()], Some(wait))?[0] && s.take() > 0 {
                    break;
                }
            }
            None => std::thread::sleep(wait),
        }
    }
    let cut = shared.tracker.cut();
    eprintln!("img serve: stopped; {cut} request(s) cut off unfinished");
    Ok(Stopped { in_flight, cut })
}

/// Takes a connection on, or closes it at once: a client not allowed gets
/// a plain 403, one over a limit a 503; neither has a request read.
fn accept(stream: TcpStream, peer: SocketAddr, tls: &Option<TlsConfig>, shared: &Arc<Shared>) {
    let ip = peer.ip().to_canonical();
    let proxy = in_any(&shared.opts.trusted_proxies, ip);
    let refuse = |stream: TcpStream, status: &str, extra: &str, why: &str| {
        // Never wait on a client that is refused.
        let _ = stream.set_nonblocking(true);
        let msg = format!(
            "HTTP/1.1 {status}\r\n{extra}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{why}\n",
            why.len() + 1
        );
        let mut s = stream;
        let _ = s.write_all(msg.as_bytes());
        // What the client sent already is dropped unread (closing with it
        // unread would reset the connection before the answer is read).
        let mut sink = [0u8; 16 * 1024];
        for _ in 0..4 {
            if !matches!(s.read(&mut sink), Ok(n) if n > 0) {
                break;
            }
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
    };
    if !proxy && !shared.opts.allow_from.is_empty() && !in_any(&shared.opts.allow_from, ip) {
        crate::serve::metrics::connection_refused("not_allowed");
        refuse(stream, "403 Forbidden", "", "this server does not serve your address");
        return;
    }
    // A trusted proxy carries many clients: the limit per address is not its.
    let slot = match take_slot(&shared.held, ip, &shared.limits, proxy) {
        Ok(s) => s,
        Err(why) => {
            crate::serve::metrics::connection_refused("over_limit");
            refuse(stream, "503 Service Unavailable", "Retry-After: 1\r\n", why);
            return;
        }
    };
    let _ = stream.set_nonblocking(false);
    let Ok(handle) = stream.try_clone() else { return };
    let Some(id) = shared.tracker.register(handle) else { return };
    let (tls, ours) = (tls.clone(), shared.clone());
    let spawned = std::thread::Builder::new().stack_size(256 * 1024).spawn(move || {
        // A stop signal is for the accepting thread; it must not make this
        // one's reads fail.
        let _ = img_sys::signal::block_termination_in_this_thread();
        let _gauge = crate::serve::metrics::connection_opened();
        let _tracked = TrackSlot { tracker: &ours.tracker, id };
        let _ = connection(stream, tls, &ours, id, proxy);
        drop(slot);
    });
    if spawned.is_err() {
        // The thread was not made: the connection is dropped.
        shared.tracker.unregister(id);
        eprintln!("img serve: could not start a thread for a connection");
    }
}

/// Why the metrics listener could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum MetricsListenError {
    #[error("--metrics-listen {addr}: {source}; is another server there?")]
    Bind { addr: String, source: std::io::Error },
    #[error(
        "--metrics-listen {addr}: metrics are served on a loopback address only; add --metrics-public to serve them to other machines"
    )]
    NotLoopback { addr: String },
}

/// Binds the metrics listener at `addr`: a loopback address, or any with
/// `public`.
pub fn bind_metrics(addr: &str, public: bool) -> Result<TcpListener, MetricsListenError> {
    let l = TcpListener::bind(addr).map_err(|source| MetricsListenError::Bind { addr: addr.to_string(), source })?;
    let local = l.local_addr().map_err(|source| MetricsListenError::Bind { addr: addr.to_string(), source })?;
    if !public && !local.ip().to_canonical().is_loopback() {
        return Err(MetricsListenError::NotLoopback { addr: local.to_string() });
    }
    Ok(l)
}

/// The metrics listener's handler: `GET /metrics` (the text of
/// `crate::serve::metrics::render`) and nothing else.
pub struct MetricsHandler;

impl Handler for MetricsHandler {
    fn handle(&self, req: &Request, _body: &mut dyn Read) -> Response {
        if req.path != "/metrics" {
            return Response::new(404).bytes("text/plain", b"not found; the metrics are at /metrics\n".to_vec());
        }
        if !matches!(req.method.as_str(), "GET" | "HEAD") {
            return Response::new(405)
                .header("Allow", "GET, HEAD")
                .bytes("text/plain", b"GET /metrics only\n".to_vec());
        }
        Response::new(200).bytes(crate::serve::metrics::CONTENT_TYPE, crate::serve::metrics::render().into_bytes())
    }
}

/// Serves the metrics on `listener` (plain HTTP) from a thread of its own,
/// for as long as the process runs.
pub fn serve_metrics(listener: TcpListener) -> io::Result<()> {
    let limits = Limits {
        max_connections: 32,
        max_per_address: 8,
        idle: Duration::from_secs(30),
        head: Duration::from_secs(10),
    };
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        let _ = img_sys::signal::block_termination_in_this_thread();
        if let Err(e) = serve(listener, None, Arc::new(MetricsHandler), limits) {
            eprintln!("img serve: the metrics listener stopped: {e}");
        }
    })?;
    Ok(())
}

/// A connection's stream: plain TCP or TLS over it.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// Answers a request that could not be read (a bad or slow head) and
/// records it; the connection closes after it.
fn refuse_request(
    w: &mut dyn Write,
    ctl: &TcpStream,
    shared: &Shared,
    peer: SocketAddr,
    status: u16,
    msg: &str,
    t0: Instant,
) {
    let resp = Response::new(status).bytes("text/plain", format!("{msg}\n").into_bytes());
    let mut sent = 0;
    let _ = write_response(&mut Paced::new(w, Some(ctl)), &resp, false, false, &mut sent);
    crate::serve::metrics::bytes_sent(sent);
    crate::serve::metrics::request_done("-", "other", status, t0.elapsed());
    let entry = LogEntry {
        time: now_parts(),
        remote: peer.ip().to_canonical(),
        via: None,
        method: "-",
        path: "-",
        status,
        bytes_in: 0,
        bytes_out: sent,
        took: t0.elapsed(),
        auth: "-",
        user: None,
        user_agent: None,
        request_id: "-",
    };
    if let Some(line) = log_line(shared.opts.access_log, &entry) {
        emit(&line);
    }
}

fn connection(tcp: TcpStream, tls: Option<TlsConfig>, shared: &Shared, id: u64, proxy: bool) -> io::Result<()> {
    let limits = &shared.limits;
    let accepted = Instant::now();
    let peer = tcp.peer_addr()?;
    let local = tcp.local_addr()?;
    // A second handle on the socket, to change its timeouts while the
    // stream is owned by the reader (and TLS).
    let ctl = tcp.try_clone()?;
    // The first request head (and a TLS handshake before it) must be in
    // within the head time of the connection's start.
    tcp.set_read_timeout(Some(limits.head))?;
    tcp.set_write_timeout(Some(limits.idle))?;
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
        match r.fill_buf() {
            Ok([0x16, ..]) => {
                let _ = r.get_mut().write_all(
                    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
                );
                return Ok(());
            }
            Ok([]) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
    let mut first = true;
    loop {
        if !shared.tracker.idle(id) {
            // Stopping: no new request on this connection.
            return Ok(());
        }
        // The first head is timed from the connection's start; a later one
        // may wait the idle time for its first byte, then the head time.
        let started = std::cell::Cell::new(first.then_some(accepted));
        let wait = if first { limits.head.saturating_sub(accepted.elapsed()) } else { limits.idle };
        if wait.is_zero() {
            return Ok(());
        }
        let _ = ctl.set_read_timeout(Some(wait));
        first = false;
        let on_bytes = || {
            let t0 = match started.get() {
                Some(t) => t,
                None => {
                    let now = Instant::now();
                    started.set(Some(now));
                    now
                }
            };
            let left = limits.head.saturating_sub(t0.elapsed());
            if left.is_zero() {
                return false;
            }
            let _ = ctl.set_read_timeout(Some(left));
            true
        };
        let head = read_head(&mut r, &on_bytes, limits.head);
        // A request's time runs from its head's first byte.
        let t0 = started.get().unwrap_or_else(Instant::now);
        let head = match head {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(()),
            Err(HeadError::Io(e)) => return Err(e),
            Err(HeadError::Bad(status, msg)) => {
                refuse_request(r.get_mut(), &ctl, shared, peer, status, &msg, t0);
                return Ok(());
            }
        };
        let busy = shared.tracker.busy(id);
        let _in_flight = crate::serve::metrics::request_started();
        let mut req = match parse_head(&head, peer, local, is_tls) {
            Ok(r) => r,
            Err(msg) => {
                refuse_request(r.get_mut(), &ctl, shared, peer, 400, &msg, t0);
                return Ok(());
            }
        };
        let request_id = request_id(&req);
        req.headers.retain(|(k, _)| k != "x-request-id");
        req.headers.push(("x-request-id".into(), request_id.clone()));
        // Behind a trusted proxy, the client is the one it names.
        let mut via = None;
        let mut early: Option<Response> = None;
        if proxy {
            match forwarded_client(&req) {
                Ok(Some(ip)) => {
                    via = Some(peer.ip().to_canonical());
                    req.peer = SocketAddr::new(ip, 0);
                }
                Ok(None) => {}
                Err(msg) => early = Some(Response::new(400).bytes("text/plain", format!("{msg}\n").into_bytes())),
            }
            if early.is_none()
                && via.is_some()
                && !shared.opts.allow_from.is_empty()
                && !in_any(&shared.opts.allow_from, req.peer.ip())
            {
                early =
                    Some(Response::new(403).bytes("text/plain", b"this server does not serve your address\n".to_vec()));
            }
        }
        let http10 = find_version(&head) == Some(0);
        // HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 only
        // when asked to (ab -k, old proxies).
        let conn = req.header("connection").unwrap_or("");
        let mut keep_alive =
            if http10 { conn.eq_ignore_ascii_case("keep-alive") } else { !conn.eq_ignore_ascii_case("close") };
        let framing = match body_framing(&req) {
            Ok(f) => f,
            Err((status, msg)) => {
                early = Some(Response::new(status).bytes("text/plain", format!("{msg}\n").into_bytes()));
                keep_alive = false;
                Framing::None
            }
        };
        if busy == Busy::ReadShut && framing != Framing::None && early.is_none() {
            // Its body can no longer be read.
            early = Some(
                Response::new(503).header("Retry-After", "1").bytes("text/plain", b"the server is stopping\n".to_vec()),
            );
            keep_alive = false;
        }
        // `100 Continue` is sent when the handler first reads the body, so
        // that a request it refuses (before authentication) gets none.
        let expect = req.header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
        let mut body = BodyReader::new(&mut r, framing, Some(&ctl), expect && framing != Framing::None);
        let mut resp = match early {
            Some(resp) => resp,
            None => shared.handler.handle(&req, &mut body),
        };
        if body.continue_pending {
            // The client still holds its body back: close rather than wait.
            keep_alive = false;
        } else if body.failed || drain(&mut body).is_err() {
            // What the handler did not read is skipped, up to a limit.
            keep_alive = false;
        }
        let bytes_in = body.received;
        if shared.tracker.stopping() {
            keep_alive = false;
        }
        let head_only = req.method == "HEAD";
        resp.headers.push(("X-Request-Id".into(), request_id.clone()));
        if http10 && keep_alive {
            resp.headers.push(("Connection".into(), "keep-alive".into()));
        }
        let mut bytes_out = 0;
        let written =
            write_response(&mut Paced::new(r.get_mut(), Some(&ctl)), &resp, head_only, keep_alive, &mut bytes_out);
        let took = t0.elapsed();
        crate::serve::metrics::bytes_received(bytes_in);
        crate::serve::metrics::bytes_sent(bytes_out);
        crate::serve::metrics::request_done(&req.method, crate::serve::metrics::route_of(&req.path), resp.status, took);
        if shared.opts.access_log != AccessLog::Off {
            let entry = LogEntry {
                time: now_parts(),
                remote: req.peer.ip().to_canonical(),
                via,
                method: &req.method,
                path: &req.path,
                status: resp.status,
                bytes_in,
                bytes_out,
                took,
                auth: req.header("authorization").map(|a| a.split(' ').next().unwrap_or("")).unwrap_or("-"),
                user: resp.log_user.as_deref(),
                user_agent: req.header("user-agent"),
                request_id: &request_id,
            };
            if let Some(line) = log_line(shared.opts.access_log, &entry) {
                emit(&line);
            }
        }
        written?;
        if !keep_alive {
            return Ok(());
        }
    }
}

/// A response writer that gives up when the client reads slower than
/// `MIN_RATE` after the grace period.
struct Paced<'a> {
    inner: &'a mut dyn Write,
    clock: Option<&'a TcpStream>,
    started: Instant,
    sent: u64,
}

impl<'a> Paced<'a> {
    fn new(inner: &'a mut dyn Write, clock: Option<&'a TcpStream>) -> Paced<'a> {
        Paced { inner, clock, started: Instant::now(), sent: 0 }
    }
}

/// What is left of the time a transfer of `done` bytes may have taken.
fn time_left(started: Instant, done: u64) -> Duration {
    (RATE_GRACE + Duration::from_secs(done / MIN_RATE)).saturating_sub(started.elapsed())
}

impl Write for Paced<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if let Some(ctl) = self.clock {
            let left = time_left(self.started, self.sent);
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "the client reads slower than 1 KiB/s"));
            }
            ctl.set_write_timeout(Some(left))?;
        }
        let n = self.inner.write(b)?;
        self.sent += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(ctl) = self.clock {
            let left = time_left(self.started, self.sent).max(Duration::from_millis(1));
            ctl.set_write_timeout(Some(left))?;
        }
        self.inner.flush()
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
fn read_head(r: &mut impl BufRead, on_bytes: &dyn Fn() -> bool, limit: Duration) -> Result<Option<Vec<u8>>, HeadError> {
    let mut head = Vec::with_capacity(1024);
    loop {
        if !head.is_empty() && !on_bytes() {
            return Err(HeadError::Bad(408, format!("the request head took over {} s", limit.as_secs())));
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
                Some(i) => {
                    head.drain(..i);
                    if find_head_end(&head).is_some() {
                        if head.len() > MAX_HEAD {
                            return Err(HeadError::Bad(431, format!("the request head is over {MAX_HEAD} bytes")));
                        }
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
pub fn parse_head(head: &[u8], peer: SocketAddr, local: SocketAddr, tls: bool) -> Result<Request, String> {
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
    Ok(Request { method, path: path.to_string(), query: query.to_string(), headers: hs, peer, local, tls })
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
    let encodings: Vec<&str> =
        req.headers.iter().filter(|(k, _)| k == "transfer-encoding").map(|(_, v)| v.as_str()).collect();
    let lengths: Vec<&str> =
        req.headers.iter().filter(|(k, _)| k == "content-length").map(|(_, v)| v.as_str()).collect();
    match encodings.as_slice() {
        [] => {}
        [te] => {
            if !te.eq_ignore_ascii_case("chunked") {
                return Err((501, format!("transfer-encoding {te:?} is not supported (only chunked)")));
            }
            if !lengths.is_empty() {
                return Err((400, "both Transfer-Encoding and Content-Length".into()));
            }
            return Ok(Framing::Chunked { left: None, done: false });
        }
        _ => return Err((400, "more than one Transfer-Encoding header".into())),
    }
    match lengths.as_slice() {
        [] => Ok(Framing::None),
        [l] => match parse_length(l) {
            Some(0) => Ok(Framing::None),
            Some(n) => Ok(Framing::Length(n)),
            None => Err((400, format!("Content-Length {l:?} is not a number of bytes"))),
        },
        _ => Err((400, "more than one Content-Length".into())),
    }
}

/// A Content-Length value: 1 to 19 ASCII digits, nothing else (no sign,
/// no space, no list).
fn parse_length(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The reader a body comes from: it can also tell the client to go on.
trait Conn: BufRead {
    fn send_continue(&mut self) -> io::Result<()>;
}

impl Conn for BufReader<Box<dyn Stream>> {
    fn send_continue(&mut self) -> io::Result<()> {
        let w = self.get_mut();
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        w.flush()
    }
}

impl Conn for BufReader<&[u8]> {
    fn send_continue(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A request body, by its framing.
struct BodyReader<'a, R: Conn> {
    inner: &'a mut R,
    framing: Framing,
    /// The body broke off or was malformed: the connection cannot go on.
    failed: bool,
    /// The socket, to time reads by (none in unit tests).
    clock: Option<&'a TcpStream>,
    started: Instant,
    received: u64,
    /// The client waits for `100 Continue` before it sends the body.
    continue_pending: bool,
}

impl<'a, R: Conn> BodyReader<'a, R> {
    fn new(inner: &'a mut R, framing: Framing, clock: Option<&'a TcpStream>, expect_continue: bool) -> Self {
        BodyReader {
            inner,
            framing,
            failed: false,
            clock,
            started: Instant::now(),
            received: 0,
            continue_pending: expect_continue,
        }
    }

    fn fail(&mut self, msg: &str) -> io::Error {
        self.failed = true;
        io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
    }

    /// Before each read: the body must have come at `MIN_RATE` since the
    /// grace period; the socket waits no longer than that allows.
    fn pace(&mut self) -> io::Result<()> {
        if self.continue_pending {
            self.continue_pending = false;
            self.started = Instant::now();
            if let Err(e) = self.inner.send_continue() {
                self.failed = true;
                return Err(e);
            }
        }
        let Some(ctl) = self.clock else { return Ok(()) };
        let left = time_left(self.started, self.received);
        if left.is_zero() {
            self.failed = true;
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the request body came slower than 1 KiB/s"));
        }
        let _ = ctl.set_read_timeout(Some(left));
        Ok(())
    }

    /// Reads at most `left` bytes of body into `out`; the end of the
    /// stream before them is the error `early`.
    fn read_up_to(&mut self, out: &mut [u8], left: u64, early: &str) -> io::Result<usize> {
        self.pace()?;
        let want = out.len().min(left.min(usize::MAX as u64) as usize);
        match self.inner.read(&mut out[..want]) {
            Ok(0) => Err(self.fail(early)),
            Ok(n) => {
                self.received += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// One line of chunk framing, with its CRLF.
    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            self.pace()?;
            let buf = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            };
            if buf.is_empty() {
                return Err(self.fail("the request body ended in a chunk header"));
            }
            let (n, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            line.extend_from_slice(&buf[..n]);
            self.inner.consume(n);
            self.received += n as u64;
            if done {
                break;
            }
            if line.len() > 4096 {
                return Err(self.fail("a chunk header is over 4096 bytes"));
            }
        }
        Ok(line)
    }
}

impl<R: Conn> Read for BodyReader<'_, R> {
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
                    let size = match httparse::parse_chunk_size(&line) {
                        Ok(httparse::Status::Complete((used, size)))
                            if used == line.len() && line.first().is_some_and(u8::is_ascii_hexdigit) =>
                        {
                            size
                        }
                        _ => return Err(self.fail("a chunk size is not hex digits ending with CRLF")),
                    };
                    if size == 0 {
                        // Trailers, up to the blank line.
                        loop {
                            let l = self.read_line()?;
                            if l == b"\r\n" {
                                break;
                            }
                            if !l.ends_with(b"\r\n") {
                                return Err(self.fail("a trailer does not end with CRLF"));
                            }
                        }
                        self.framing = Framing::Chunked { left: None, done: true };
                        return Ok(0);
                    }
                    self.framing = Framing::Chunked { left: Some(size), done: false };
                }
                Framing::Chunked { left: Some(0), .. } => {
                    if self.read_line()? != b"\r\n" {
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

fn drain<R: Conn>(body: &mut BodyReader<R>) -> io::Result<()> {
    let n = io::copy(&mut body.take(MAX_DRAIN + 1), &mut io::sink())?;
    if n > MAX_DRAIN {
        return Err(io::Error::other("too much unread body"));
    }
    Ok(())
}

/// Writes `resp`; `sent` counts the body bytes written, as they go.
fn write_response(
    w: &mut dyn Write,
    resp: &Response,
    head_only: bool,
    keep_alive: bool,
    sent: &mut u64,
) -> io::Result<()> {
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
                for part in b.chunks(256 * 1024) {
                    w.write_all(part)?;
                    *sent += part.len() as u64;
                }
                return w.flush();
            }
            *sent += b.len() as u64;
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
                *sent += n as u64;
                pos += n as u64;
            }
        }
        Body::Reader { reader, len } => {
            w.write_all(head.as_bytes())?;
            let mut reader = reader.lock().unwrap_or_else(|e| e.into_inner());
            let mut buf = vec![0u8; 256 * 1024];
            let mut left = *len;
            while left > 0 {
                let want = buf.len().min(left as usize);
                let n = match reader.read(&mut buf[..want]) {
                    Ok(0) => {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the stream ended before its length"))
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                w.write_all(&buf[..n])?;
                left -= n as u64;
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

    fn parse(head: &[u8]) -> Result<Request, String> {
        parse_head(head, peer(), peer(), false)
    }

    fn body_of(head: &str, wire: &[u8]) -> io::Result<Vec<u8>> {
        let req = parse(head.as_bytes()).unwrap();
        let framing = body_framing(&req).map_err(|(_, m)| io::Error::other(m))?;
        let mut r = io::BufReader::new(wire);
        let mut b = BodyReader::new(&mut r, framing, None, false);
        let mut out = Vec::new();
        b.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn heads_parse_with_query_and_lower_case_names() {
        let r = parse(b"GET /v2/a/b/tags/list?n=2&last=x HTTP/1.1\r\nHost: h\r\nX-Thing:  v \r\n\r\n").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/v2/a/b/tags/list");
        assert_eq!(r.query, "n=2&last=x");
        assert_eq!(r.header("x-thing"), Some("v"));
        assert_eq!(r.header("HOST"), Some("h"));
        assert!(parse(b"GET http://x/ HTTP/1.1\r\n\r\n").is_err());
        assert!(parse(b"GARBAGE\r\n\r\n").is_err());
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
        let h = read_head(&mut r, &|| true, Duration::from_secs(1)).ok().flatten().unwrap();
        assert_eq!(h, b"GET / HTTP/1.1\r\nA: b\r\n\r\n");
        let h2 = read_head(&mut r, &|| true, Duration::from_secs(1)).ok().flatten().unwrap();
        assert_eq!(h2, b"GET /next HTTP/1.1\r\n\r\n");
        assert!(read_head(&mut r, &|| true, Duration::from_secs(1)).ok().unwrap().is_none());
    }

    proptest::proptest! {
        /// Any bytes as a head or a body: an answer or an error, never a
        /// panic or a body longer than what was sent.
        #[test]
        fn hostile_heads_and_bodies_never_panic(head in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
                                               wire in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse(&head);
            let mut r = io::BufReader::with_capacity(16, &head[..]);
            let _ = read_head(&mut r, &|| true, Duration::from_secs(1));
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
        assert!(matches!(read_head(&mut r, &|| true, Duration::from_secs(1)), Err(HeadError::Bad(431, _))));
    }

    /// A head over the limit is refused even when its end arrives in the
    /// same read (found: a 131,000-byte head was taken).
    #[test]
    fn head_over_64k_in_one_read_is_refused() {
        let mut wire = b"GET / HTTP/1.1\r\nX: ".to_vec();
        wire.extend(std::iter::repeat_n(b'a', 131_000));
        wire.extend_from_slice(b"\r\n\r\n");
        let mut r = io::BufReader::with_capacity(256 * 1024, &wire[..]);
        assert!(matches!(read_head(&mut r, &|| true, Duration::from_secs(1)), Err(HeadError::Bad(431, _))));
    }

    /// Content-Length is digits only (found: `+38` was taken, and the
    /// request hidden in such a body was never answered).
    #[test]
    fn content_length_with_a_sign_is_refused() {
        for bad in ["+38", "-1", "3 3", "3,3", "0x10", "", "99999999999999999999"] {
            let head = format!("PUT / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
            if let Ok(req) = parse(head.as_bytes()) {
                assert!(body_framing(&req).is_err(), "Content-Length {bad:?} was taken");
            }
        }
        assert_eq!(body_of("PUT / HTTP/1.1\r\nContent-Length: 003\r\n\r\n", b"abc").unwrap(), b"abc");
    }

    /// A chunk size is hex digits and CRLF (found: `+0` was taken, as
    /// `from_str_radix` takes a sign).
    #[test]
    fn chunk_size_with_a_sign_is_refused() {
        let h = "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for bad in [
            &b"+0\r\n\r\n"[..],
            b"+3\r\nabc\r\n0\r\n\r\n",
            b"\r\n\r\n",
            b" 3\r\nabc\r\n0\r\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"3\r\nabc \r\n0\r\n\r\n",
            b"0\r\n\n",
        ] {
            assert!(body_of(h, bad).is_err(), "{:?} was taken", String::from_utf8_lossy(bad));
        }
        assert_eq!(body_of(h, b"3\r\nabc\r\n0\r\n\r\n").unwrap(), b"abc");
    }

    /// Two Transfer-Encoding headers are refused, not read as chunked.
    #[test]
    fn two_transfer_encoding_headers_are_refused() {
        let req = parse(b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(body_framing(&req).err().map(|e| e.0), Some(400));
        let req = parse(b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n").unwrap();
        assert!(body_framing(&req).is_err());
        let req = parse(b"PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert!(body_framing(&req).is_err());
    }

    struct Recorder<'a> {
        inner: io::BufReader<&'a [u8]>,
        continues: usize,
    }

    impl Read for Recorder<'_> {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.inner.read(b)
        }
    }

    impl BufRead for Recorder<'_> {
        fn fill_buf(&mut self) -> io::Result<&[u8]> {
            self.inner.fill_buf()
        }
        fn consume(&mut self, n: usize) {
            self.inner.consume(n)
        }
    }

    impl Conn for Recorder<'_> {
        fn send_continue(&mut self) -> io::Result<()> {
            self.continues += 1;
            Ok(())
        }
    }

    /// `100 Continue` goes out only when the handler reads the body (found:
    /// it was sent before authentication).
    #[test]
    fn continue_is_sent_before_authentication_no_more() {
        let mut r = Recorder { inner: io::BufReader::new(&b"abc"[..]), continues: 0 };
        {
            let b = BodyReader::new(&mut r, Framing::Length(3), None, true);
            assert!(b.continue_pending);
        }
        assert_eq!(r.continues, 0, "a body not read asks for nothing");
        let mut b = BodyReader::new(&mut r, Framing::Length(3), None, true);
        let mut out = Vec::new();
        b.read_to_end(&mut out).unwrap();
        assert!(!b.continue_pending);
        assert_eq!(out, b"abc");
        assert_eq!(r.continues, 1);
    }

    #[test]
    fn transfers_have_a_least_rate() {
        let t0 = Instant::now();
        assert!(time_left(t0, 0) > Duration::from_secs(19));
        assert!(time_left(t0 - RATE_GRACE, 0).is_zero(), "nothing in the grace period");
        assert!(!time_left(t0 - RATE_GRACE, 10 * MIN_RATE).is_zero());
        assert!(time_left(t0 - RATE_GRACE - Duration::from_secs(40), 1).is_zero(), "a byte every 40 s");
    }

    #[test]
    fn connections_are_capped_per_address() {
        let held = Arc::new(Mutex::new(Held::default()));
        let limits = Limits { max_connections: 5, max_per_address: 2, ..Limits::default() };
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.1".parse().unwrap();
        let s1 = take_slot(&held, a, &limits, false).unwrap();
        let _s2 = take_slot(&held, a, &limits, false).unwrap();
        assert!(take_slot(&held, a, &limits, false).is_err(), "a third from one address");
        let _s3 = take_slot(&held, b, &limits, false).unwrap();
        drop(s1);
        let _s4 = take_slot(&held, a, &limits, false).unwrap();
        let c: IpAddr = "127.0.0.3".parse().unwrap();
        let _s5 = take_slot(&held, c, &limits, false).unwrap();
        let _s6 = take_slot(&held, c, &limits, false).unwrap();
        assert!(take_slot(&held, "127.0.0.4".parse().unwrap(), &limits, false).is_err(), "over the total");
    }

    #[test]
    fn networks_parse_as_written() {
        let ok = [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("127.0.0.1", "127.0.0.1/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("192.168.1.128/25", "192.168.1.128/25"),
            ("fd00::/8", "fd00::/8"),
            ("::1", "::1/128"),
            ("::/0", "::/0"),
            ("2001:db8::/32", "2001:db8::/32"),
        ];
        for (text, shown) in ok {
            let c: Cidr = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(c.to_string(), shown);
        }
        let bad = [
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.1/8",
            "10.0.0.0/08",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/8/8",
            "10.0.0.0 /8",
            " 10.0.0.0/8",
            "10.0.0/8",
            "010.0.0.0/8",
            "256.0.0.0/8",
            "fd00::/129",
            "fd00::1/8",
            "fe80::1%eth0/64",
            "[::1]/128",
            "localhost",
            "10.0.0.0/0008",
        ];
        for text in bad {
            assert!(text.parse::<Cidr>().is_err(), "{text:?} was taken");
        }
        assert_eq!(
            "10.0.0.1/8".parse::<Cidr>().unwrap_err().to_string(),
            "\"10.0.0.1/8\" has address bits set past its prefix; the network is 10.0.0.0/8"
        );
    }

    #[test]
    fn networks_hold_their_addresses() {
        let net = |s: &str| s.parse::<Cidr>().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(net("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.0")));
        assert!(net("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")), "an IPv4-mapped address is its IPv4 address");
        assert!(!net("::/0").contains(ip("127.0.0.1")));
        assert!(net("0.0.0.0/0").contains(ip("1.2.3.4")));
        assert!(net("fd00::/8").contains(ip("fd12::1")));
        assert!(!net("fd00::/8").contains(ip("fe80::1")));
        assert!(net("::1").contains(ip("::1")));
        assert!(!net("192.168.1.128/25").contains(ip("192.168.1.127")));
    }

    proptest::proptest! {
        /// A network made from any address and prefix parses back, holds
        /// its address and nothing outside its mask.
        #[test]
        fn networks_round_trip(a in proptest::num::u32::ANY, b in proptest::num::u32::ANY, p in 0u8..=32,
                               a6 in proptest::num::u128::ANY, p6 in 0u8..=128) {
            let net = std::net::Ipv4Addr::from(a & mask4(p));
            let c: Cidr = format!("{net}/{p}").parse().unwrap();
            proptest::prop_assert!(c.contains(IpAddr::V4(a.into())));
            proptest::prop_assert_eq!(c.contains(IpAddr::V4(b.into())), (a ^ b) & mask4(p) == 0);
            let net6 = std::net::Ipv6Addr::from(a6 & mask6(p6));
            let c6: Cidr = format!("{net6}/{p6}").parse().unwrap();
            proptest::prop_assert!(c6.contains(IpAddr::V6(a6.into())));
            proptest::prop_assert_eq!(c6.to_string().parse::<Cidr>().unwrap(), c6);
        }

        /// Any text: a network or an error, never a panic.
        #[test]
        fn any_text_as_a_network_never_panics(s in "\\PC{0,70}", t in "[0-9a-f:./%]{0,45}") {
            let _ = s.parse::<Cidr>();
            let _ = t.parse::<Cidr>();
        }
    }

    #[test]
    fn the_client_behind_a_proxy_is_the_last_hop() {
        let with = |hs: &str| parse(format!("GET / HTTP/1.1\r\n{hs}\r\n").as_bytes()).unwrap();
        assert_eq!(forwarded_client(&with("")), Ok(None));
        assert_eq!(forwarded_client(&with("X-Forwarded-For: 10.1.2.3\r\n")), Ok(Some("10.1.2.3".parse().unwrap())));
        assert_eq!(
            forwarded_client(&with("X-Forwarded-For: 6.6.6.6, 10.1.2.3\r\n")),
            Ok(Some("10.1.2.3".parse().unwrap())),
            "a client's own X-Forwarded-For comes first and is not believed"
        );
        assert_eq!(
            forwarded_client(&with("X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 2001:db8::7\r\n")),
            Ok(Some("2001:db8::7".parse().unwrap()))
        );
        assert!(forwarded_client(&with("X-Forwarded-For: 10.1.2.3, evil\r\n")).is_err());
        assert!(forwarded_client(&with("X-Forwarded-For: \r\n")).is_err());
    }

    #[test]
    fn request_ids_are_short_tokens_or_new() {
        let with = |hs: &str| parse(format!("GET / HTTP/1.1\r\n{hs}\r\n").as_bytes()).unwrap();
        assert_eq!(request_id(&with("X-Request-Id: abc-123_x.y\r\n")), "abc-123_x.y");
        for bad in
            ["X-Request-Id: a b\r\n", "X-Request-Id: a\"b\r\n", &format!("X-Request-Id: {}\r\n", "a".repeat(65)), ""]
        {
            let id = request_id(&with(bad));
            assert_eq!(id.len(), 32, "{bad:?}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_ne!(request_id(&with("")), request_id(&with("")));
    }

    #[test]
    fn log_lines_hold_no_credentials() {
        let e = LogEntry {
            time: (1_700_000_000, 7),
            remote: "10.0.0.9".parse().unwrap(),
            via: Some("127.0.0.1".parse().unwrap()),
            method: "GET",
            path: "/v2/team/app/manifests/1",
            status: 200,
            bytes_in: 0,
            bytes_out: 512,
            took: Duration::from_micros(1500),
            auth: "Bearer",
            user: Some("alice"),
            user_agent: Some("curl/8 \"quoted\"\n"),
            request_id: "r1",
        };
        let j: serde_json::Value = serde_json::from_str(&log_line(AccessLog::Json, &e).unwrap()).unwrap();
        assert_eq!(j["time"], "2023-11-14T22:13:20.007Z");
        assert_eq!(j["remote"], "10.0.0.9");
        assert_eq!(j["via"], "127.0.0.1");
        assert_eq!(j["status"], 200);
        assert_eq!(j["bytes_out"], 512);
        assert_eq!(j["duration_ms"], 1.5);
        assert_eq!(j["user"], "alice");
        assert_eq!(j["user_agent"], "curl/8 \"quoted\"\n");
        assert_eq!(j["request_id"], "r1");
        assert!(j.get("query").is_none() && j.get("authorization").is_none());
        let t = log_line(AccessLog::Text, &LogEntry { user: None, ..e }).unwrap();
        assert_eq!(t, "10.0.0.9 GET /v2/team/app/manifests/1 200 auth=Bearer user=- in=0 out=512 ms=1.5 id=r1");
        assert!(log_line(AccessLog::Off, &LogEntry { user: None, ..e }).is_none());
    }

    /// A stop for tests: a socket pair; a byte written to one end stops.
    struct TestStop(std::os::unix::net::UnixStream, std::os::unix::net::UnixStream);

    impl TestStop {
        fn new() -> TestStop {
            let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            b.set_nonblocking(true).unwrap();
            TestStop(a, b)
        }
        fn trigger(&self) {
            (&self.0).write_all(b"x").unwrap();
        }
    }

    impl AsFd for TestStop {
        fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
            self.1.as_fd()
        }
    }

    impl Stop for TestStop {
        fn take(&self) -> usize {
            let mut b = [0u8; 16];
            (&self.1).read(&mut b).unwrap_or(0)
        }
    }

    /// Answers after `ms` milliseconds from the path `/sleep/MS`.
    struct Sleeper;

    impl Handler for Sleeper {
        fn handle(&self, req: &Request, _body: &mut dyn Read) -> Response {
            let ms: u64 = req.path.strip_prefix("/sleep/").and_then(|m| m.parse().ok()).unwrap_or(0);
            std::thread::sleep(Duration::from_millis(ms));
            Response::new(200).bytes("text/plain", b"done\n".to_vec())
        }
    }

    fn start(opts: Options) -> (SocketAddr, Arc<TestStop>, std::thread::JoinHandle<io::Result<Stopped>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(TestStop::new());
        let s2 = stop.clone();
        let t = std::thread::spawn(move || serve_with(l, None, Arc::new(Sleeper), Limits::default(), opts, Some(&*s2)));
        (addr, stop, t)
    }

    fn get(s: &mut TcpStream, path: &str) -> String {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
        let mut out = Vec::new();
        let mut b = [0u8; 4096];
        while !String::from_utf8_lossy(&out).contains("done\n") {
            match s.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&b[..n]),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn a_stop_lets_requests_in_flight_finish_and_closes_the_rest() {
        let (addr, stop, server) = start(Options::default());
        let mut idle = TcpStream::connect(addr).unwrap();
        assert!(get(&mut idle, "/sleep/0").contains("200 OK"));
        let mut slow = TcpStream::connect(addr).unwrap();
        let waiter = std::thread::spawn(move || get(&mut slow, "/sleep/700"));
        std::thread::sleep(Duration::from_millis(200));
        stop.trigger();
        let answer = waiter.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.contains("Connection: close\r\n"), "{answer}");
        assert!(answer.contains("X-Request-Id: "), "{answer}");
        let stopped = server.join().unwrap().unwrap();
        assert_eq!(stopped, Stopped { in_flight: 1, cut: 0 });
        assert!(TcpStream::connect(addr).is_err(), "a new connection was taken after the stop");
        // The idle connection was closed, not left waiting.
        idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(matches!(idle.read(&mut [0u8; 16]), Ok(0) | Err(_)));
    }

    #[test]
    fn a_stop_cuts_what_is_unfinished_at_the_timeout() {
        let (addr, stop, server) =
            start(Options { shutdown_timeout: Duration::from_millis(100), ..Options::default() });
        let mut slow = TcpStream::connect(addr).unwrap();
        let waiter = std::thread::spawn(move || get(&mut slow, "/sleep/3000"));
        std::thread::sleep(Duration::from_millis(200));
        let t0 = Instant::now();
        stop.trigger();
        let stopped = server.join().unwrap().unwrap();
        assert_eq!(stopped, Stopped { in_flight: 1, cut: 1 });
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert!(!waiter.join().unwrap().contains("200 OK"));
    }

    #[test]
    fn addresses_not_allowed_are_closed_at_accept() {
        let opts = Options { allow_from: vec!["10.0.0.0/8".parse().unwrap()], ..Options::default() };
        let (addr, stop, server) = start(opts);
        let mut s = TcpStream::connect(addr).unwrap();
        let answer = get(&mut s, "/sleep/0");
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 403"), "{answer}");
        stop.trigger();
        server.join().unwrap().unwrap();
        let opts = Options { allow_from: vec!["127.0.0.0/8".parse().unwrap()], ..Options::default() };
        let (addr, stop, server) = start(opts);
        assert!(get(&mut TcpStream::connect(addr).unwrap(), "/sleep/0").contains("200 OK"));
        stop.trigger();
        server.join().unwrap().unwrap();
    }

    #[test]
    fn the_listener_answers_metrics_only_and_stays_on_loopback() {
        let l = bind_metrics("127.0.0.1:0", false).unwrap();
        let addr = l.local_addr().unwrap();
        serve_metrics(l).unwrap();
        let ask = |line: &str| {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(format!("{line}\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let ok = ask("GET /metrics HTTP/1.1");
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("version=0.0.4") && ok.contains("# TYPE img_serve_requests_total counter"), "{ok}");
        assert!(ask("GET /v2/ HTTP/1.1").starts_with("HTTP/1.1 404"));
        assert!(ask("POST /metrics HTTP/1.1").starts_with("HTTP/1.1 405"));
        assert!(matches!(bind_metrics("0.0.0.0:0", false), Err(MetricsListenError::NotLoopback { .. })));
        assert!(bind_metrics("0.0.0.0:0", true).is_ok());
    }
}
