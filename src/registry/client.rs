//! A distribution-spec client: the only code that opens sockets.
//!
//! Auth follows the registry's `WWW-Authenticate` challenge: Basic with the
//! stored credentials, or the Bearer token flow (tokens cached per scope for
//! the process). Redirects are followed here, not by the HTTP library, so
//! that an `Authorization` header never reaches another host, and https is
//! never downgraded to http. Credentials go to a token realm on another host
//! only over https.

use super::authfile::{self, Credentials};
use super::challenge::{self, Challenge};
use super::tls::{self, TlsSettings};
use crate::ratelimit::{Direction, Paced, Rate, RateLimit};
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest token or error body read into memory.
const MAX_SMALL_BODY: u64 = 1 << 20;
const MAX_REDIRECTS: u32 = 10;
/// Attempts of an idempotent request (GET, HEAD) that meets a connection
/// error, a 5xx or a 429.
const MAX_ATTEMPTS: u32 = 4;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The response and per-read timeout: `IMG_REGISTRY_TIMEOUT` seconds, 60 by default.
pub fn io_timeout() -> Duration {
    env_seconds("IMG_REGISTRY_TIMEOUT", 60)
}

/// A duration of whole seconds (more than 0) from environment variable
/// `var`; `default` seconds when it is unset or not such a number.
pub fn env_seconds(var: &str, default: u64) -> Duration {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(default))
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{registry}: {msg}")]
    Http { registry: String, msg: String },
    #[error("{what}: {status} unauthorized; run img login {registry}")]
    Unauthorized { what: String, status: u16, registry: String },
    #[error("{what}: not found (404){detail}")]
    NotFound { what: String, detail: String },
    #[error("{what}: {msg}")]
    Refused { what: String, msg: String },
    #[error(transparent)]
    AuthFile(#[from] authfile::AuthFileError),
    #[error("{registry}: {msg}")]
    Tls { registry: String, msg: String },
    /// The registry stopped answering; not retried.
    #[error("{registry}: {msg}")]
    Timeout { registry: String, msg: String },
}

pub type Result<T> = std::result::Result<T, RegistryError>;

/// How to reach one registry.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Allow plain HTTP and unverified TLS (`--tls-verify=false`, or an
    /// insecure registry in the configuration).
    pub insecure: bool,
    /// Credentials from the command line; otherwise the auth files.
    pub creds: Option<Credentials>,
    pub authfile: Option<std::path::PathBuf>,
    /// Extra certificate directory (`--cert-dir`).
    pub cert_dir: Option<std::path::PathBuf>,
    /// A registry on a loopback address may answer in plain HTTP (docker's
    /// default; off when `--tls-verify` is given).
    pub loopback_plain_http: bool,
    /// The command's bandwidth cap, shared by every client it connects
    /// (`--limit-rate`; `ops::options::rate_limited` applies the store's).
    pub rate: Rate,
}

/// Whether a failed https ping reached a TLS server (whose certificate, say,
/// was refused): then it is no plain-HTTP registry to fall back to.
fn speaks_tls(e: &RegistryError) -> bool {
    matches!(e, RegistryError::Tls { msg, .. } if !msg.contains("does not speak TLS"))
}

/// Whether `host` (`name[:port]`) is this machine: `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { host }).unwrap_or(host)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Box<dyn Read + Send>,
}

impl From<ureq::http::Response<ureq::Body>> for Response {
    fn from(resp: ureq::http::Response<ureq::Body>) -> Response {
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        Response { status: resp.status().as_u16(), headers, body: Box::new(resp.into_body().into_reader()) }
    }
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// Reads at most `limit` bytes; more is an error.
    pub fn read_limited(mut self, limit: u64, what: &str) -> Result<Vec<u8>> {
        if let Some(len) = self.header("content-length").and_then(|l| l.trim().parse::<u64>().ok()) {
            if len > limit {
                return Err(RegistryError::Refused {
                    what: what.to_string(),
                    msg: format!("the answer is {len} bytes, larger than {limit}; refusing it"),
                });
            }
        }
        let mut buf = Vec::new();
        (&mut self.body)
            .take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| RegistryError::Refused { what: what.to_string(), msg: format!("reading the answer: {e}") })?;
        if buf.len() as u64 > limit {
            return Err(RegistryError::Refused {
                what: what.to_string(),
                msg: format!("the answer is larger than {limit} bytes; refusing it"),
            });
        }
        Ok(buf)
    }
}

/// A client for one registry host (`127.0.0.1:5000`, `docker.io`).
pub struct Client {
    /// The registry as users name it.
    pub registry: String,
    /// `https://host` or `http://host`.
    base: String,
    agent: ureq::Agent,
    creds: Option<Credentials>,
    /// Bearer tokens by scope.
    tokens: Mutex<HashMap<String, String>>,
    /// Set when the registry asked for Basic auth.
    basic: Mutex<bool>,
    /// Set when its `/v2/` answer carried `X-Registry-Supports-Signatures: 1`:
    /// simple signatures are read and written through its API extension.
    pub signature_extension: bool,
    /// Paces response bodies (down) and request bodies (up).
    rate: Option<Arc<RateLimit>>,
}

fn endpoint_host(registry: &str) -> &str {
    if registry == "docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    }
}

/// The authority (`host[:port]`) of an absolute URL.
pub fn authority(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(rest))
}

/// An agent for servers other than registries (lookaside signature
/// servers): the same timeouts and TLS rules.
pub(crate) fn plain_agent(settings: &TlsSettings) -> ureq::Agent {
    build_agent(settings)
}

fn build_agent(settings: &TlsSettings) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("img/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(30).min(io_timeout())))
        .timeout_recv_response(Some(io_timeout()))
        // A server that stops sending for this long is given up on; a slow
        // but moving download is not (no overall timeout).
        .timeout_per_read(Some(io_timeout()))
        .tls_config(settings.to_ureq())
        .build();
    ureq::Agent::new_with_config(config)
}

impl Client {
    /// Connects to `registry`, choosing https (or, when insecure, http if
    /// https does not answer) by pinging `/v2/`.
    pub fn connect(registry: &str, opts: &ClientOptions) -> Result<Client> {
        let host = endpoint_host(registry);
        // A registry on this machine may answer in plain HTTP (docker's
        // rule); its TLS, when it speaks TLS, is still verified.
        let plain_http_allowed = opts.loopback_plain_http && is_loopback_host(registry);
        let settings = tls::settings_for(registry, opts.insecure, opts.cert_dir.as_deref())
            .map_err(|msg| RegistryError::Tls { registry: registry.to_string(), msg })?;
        let agent = build_agent(&settings);
        let creds = match &opts.creds {
            Some(c) => Some(c.clone()),
            None => authfile::lookup(opts.authfile.as_deref(), registry)?,
        };
        let mut client = Client {
            registry: registry.to_string(),
            base: format!("https://{host}"),
            agent,
            creds,
            tokens: Mutex::new(HashMap::new()),
            basic: Mutex::new(false),
            signature_extension: false,
            rate: opts.rate.limit().cloned(),
        };
        match client.ping() {
            Ok(()) => Ok(client),
            Err(e) if opts.insecure || (plain_http_allowed && !speaks_tls(&e)) => {
                client.base = format!("http://{host}");
                client.ping().map_err(|e2| RegistryError::Http {
                    registry: registry.to_string(),
                    msg: format!("not reachable over https ({e}) or http ({e2})"),
                })?;
                Ok(client)
            }
            Err(e) => Err(e),
        }
    }

    fn ping(&mut self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let resp = self.agent.get(&url).call().map_err(|e| self.transport_err(&url, e))?;
        let status = resp.status().as_u16();
        if status == 200 || status == 401 {
            self.signature_extension =
                resp.headers().get("x-registry-supports-signatures").is_some_and(|v| v.as_bytes() == b"1");
            return Ok(());
        }
        Err(RegistryError::Http {
            registry: self.registry.clone(),
            msg: format!("{url} answered {status}; is this a container registry?"),
        })
    }

    fn transport_err(&self, url: &str, e: ureq::Error) -> RegistryError {
        let text = e.to_string();
        let tls = |msg: String| RegistryError::Tls { registry: self.registry.clone(), msg };
        let reg = &self.registry;
        if let Some(hint) = tls_hint(&text) {
            let hint = hint.replace("HOST", reg);
            return tls(format!("{url}: TLS handshake failed ({text}); {hint}"));
        }
        let msg = match &e {
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) => {
                return tls(format!("{url}: TLS error ({text}); if the registry uses a private CA put it in /etc/containers/certs.d/{reg}/ca.crt, or use --tls-verify=false for a registry you trust"))
            }
            ureq::Error::Io(_) if url.starts_with("https://") && text.contains("corrupt message") => return tls(format!(
                "{url}: the registry does not speak TLS; if it serves plain HTTP, use --tls-verify=false (or mark it insecure in registries.conf)"
            )),
            ureq::Error::Timeout(t) => {
                return RegistryError::Timeout {
                    registry: self.registry.clone(),
                    msg: format!(
                        "{url}: timed out ({t}) after {} s without an answer; check the registry, or raise IMG_REGISTRY_TIMEOUT",
                        io_timeout().as_secs()
                    ),
                }
            }
            _ => format!("{url}: {text}"),
        };
        RegistryError::Http { registry: self.registry.clone(), msg }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with auth for `scope`, following redirects and one
    /// auth challenge. `body` is sent for PUT/POST/PATCH. GET and HEAD are
    /// retried with backoff after connection errors, 5xx and 429 (honouring
    /// `Retry-After`); other methods are sent once.
    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        scope: &str,
        body: Option<&[u8]>,
    ) -> Result<Response> {
        let idempotent = method == "GET" || method == "HEAD";
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = !idempotent || attempt >= MAX_ATTEMPTS;
            match self.request_once(method, url, headers, scope, body) {
                Ok(resp) if !last && (resp.status == 429 || (500..600).contains(&resp.status)) => {
                    let wait = retry_after(resp.header("retry-after")).unwrap_or_else(|| backoff(attempt));
                    std::thread::sleep(wait);
                }
                Err(RegistryError::Http { .. }) if !last => {
                    std::thread::sleep(backoff(attempt));
                }
                other => return other,
            }
        }
    }

    fn request_once(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        scope: &str,
        body: Option<&[u8]>,
    ) -> Result<Response> {
        let mut url = url.to_string();
        let mut challenged = false;
        let mut redirects = 0;
        loop {
            let same_host = authority(&url) == authority(&self.base);
            let mut req = ureq::http::Request::builder().method(method).uri(&url);
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            let mut sent_auth = false;
            if same_host {
                if let Some(auth) = self.auth_header(scope) {
                    req = req.header("Authorization", auth);
                    sent_auth = true;
                }
            }
            let req = req.body(body.map(|b| b.to_vec()).unwrap_or_default()).map_err(|e| RegistryError::Http {
                registry: self.registry.clone(),
                msg: format!("bad request {url}: {e}"),
            })?;
            if let (Some(rate), Some(b)) = (&self.rate, body) {
                rate.take(Direction::Up, b.len() as u64);
            }
            let resp = self.paced(Response::from(self.agent.run(req).map_err(|e| self.transport_err(&url, e))?));
            let status = resp.status;
            if (300..400).contains(&status) && status != 304 {
                let Some(loc) = resp.header("location").map(str::to_string) else {
                    return Err(RegistryError::Http {
                        registry: self.registry.clone(),
                        msg: format!("{url} redirected ({status}) without a Location"),
                    });
                };
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(RegistryError::Refused {
                        what: url.clone(),
                        msg: format!("more than {MAX_REDIRECTS} redirects; giving up"),
                    });
                }
                let next = resolve_location(&url, &loc);
                if url.starts_with("https://") && next.starts_with("http://") {
                    return Err(RegistryError::Refused {
                        what: url.clone(),
                        msg: format!("redirected from https to plain http ({next}); refusing the downgrade"),
                    });
                }
                url = next;
                continue;
            }
            if status == 401 && same_host && !challenged {
                challenged = true;
                let header = resp.header("www-authenticate").unwrap_or_default();
                if self.answer_challenge(&challenge::parse(header), scope, sent_auth)? {
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    /// Sends `len` bytes from `body` once, with the auth already
    /// established for `scope` (an earlier request answered the challenge).
    /// A stream cannot be replayed, so a redirect or a new challenge is an
    /// error for the caller to retry from the start.
    pub fn send_stream(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        scope: &str,
        body: &mut dyn Read,
        len: u64,
    ) -> Result<Response> {
        if authority(url) != authority(&self.base) {
            return Err(RegistryError::Refused {
                what: url.to_string(),
                msg: format!(
                    "the registry sent an upload location on another host than {}; refusing it",
                    self.registry
                ),
            });
        }
        let mut req = ureq::http::Request::builder().method(method).uri(url).header("Content-Length", len.to_string());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(auth) = self.auth_header(scope) {
            req = req.header("Authorization", auth);
        }
        let mut limited = Paced::new(body.take(len), self.rate.as_ref(), Direction::Up);
        let req = req.body(ureq::SendBody::from_reader(&mut limited)).map_err(|e| RegistryError::Http {
            registry: self.registry.clone(),
            msg: format!("bad request {url}: {e}"),
        })?;
        Ok(self.paced(Response::from(self.agent.run(req).map_err(|e| self.transport_err(url, e))?)))
    }

    /// `resp` with its body paced by the command's cap, if there is one.
    fn paced(&self, mut resp: Response) -> Response {
        if let Some(rate) = &self.rate {
            resp.body = Box::new(Paced::new(resp.body, Some(rate), Direction::Down));
        }
        resp
    }

    fn auth_header(&self, scope: &str) -> Option<String> {
        if let Some(t) = self.tokens.lock().ok()?.get(scope) {
            return Some(format!("Bearer {t}"));
        }
        if *self.basic.lock().ok()? {
            if let Some(c) = &self.creds {
                return Some(format!(
                    "Basic {}",
                    authfile::base64_encode(format!("{}:{}", c.username, c.password).as_bytes())
                ));
            }
        }
        None
    }

    /// Returns whether a retry may succeed.
    /// `sent_auth`: the refused request carried credentials (else another
    /// request may have turned Basic on meanwhile, and this one goes again
    /// with them).
    fn answer_challenge(&self, challenges: &[Challenge], scope: &str, sent_auth: bool) -> Result<bool> {
        if let Some(b) = challenges.iter().find(|c| c.scheme == "bearer") {
            let token = self.fetch_token(b, scope)?;
            if let Ok(mut t) = self.tokens.lock() {
                t.insert(scope.to_string(), token);
            }
            return Ok(true);
        }
        if challenges.iter().any(|c| c.scheme == "basic") && self.creds.is_some() {
            if let Ok(mut b) = self.basic.lock() {
                if *b {
                    return Ok(!sent_auth);
                }
                *b = true;
            }
            return Ok(true);
        }
        Ok(false)
    }

    fn fetch_token(&self, ch: &Challenge, scope: &str) -> Result<String> {
        let realm = ch.param("realm").unwrap_or("").to_string();
        let what = format!("token realm {realm:?} of {}", self.registry);
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return Err(RegistryError::Refused { what, msg: "the realm is not an http(s) URL".into() });
        }
        if realm.contains('@') && authority(&realm).is_some_and(|a| a.contains('@')) {
            return Err(RegistryError::Refused { what, msg: "the realm URL carries user info; refusing it".into() });
        }
        let realm_host = authority(&realm).unwrap_or("");
        let registry_host = authority(&self.base).unwrap_or("");
        let same_host = realm_host == registry_host;
        if realm.starts_with("http://") && !same_host {
            return Err(RegistryError::Refused {
                what,
                msg: "the realm is plain http on another host; credentials and tokens are not sent there".into(),
            });
        }
        let mut url = realm.clone();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        if let Some(service) = ch.param("service") {
            url.push_str(&format!("{sep}service={}", urlencode(service)));
            sep = '&';
        }
        for one in scope.split(' ').filter(|s| !s.is_empty()) {
            url.push_str(&format!("{sep}scope={}", urlencode(one)));
            sep = '&';
        }
        let mut req = self.agent.get(&url);
        if let Some(c) = &self.creds {
            req = req.header(
                "Authorization",
                format!("Basic {}", authfile::base64_encode(format!("{}:{}", c.username, c.password).as_bytes())),
            );
        }
        let resp = req.call().map_err(|e| self.transport_err(&url, e))?;
        let status = resp.status().as_u16();
        let mut reader = resp.into_body().into_reader();
        let mut body = Vec::new();
        (&mut reader).take(MAX_SMALL_BODY + 1).read_to_end(&mut body).map_err(|e| RegistryError::Http {
            registry: self.registry.clone(),
            msg: format!("reading the token: {e}"),
        })?;
        if status == 401 || status == 403 {
            return Err(RegistryError::Unauthorized {
                what: if scope.is_empty() {
                    format!("getting a token from {realm}")
                } else {
                    format!("getting a token for {scope}")
                },
                status,
                registry: self.registry.clone(),
            });
        }
        if status != 200 || body.len() as u64 > MAX_SMALL_BODY {
            return Err(RegistryError::Http {
                registry: self.registry.clone(),
                msg: format!("the token service answered {status}"),
            });
        }
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| RegistryError::Http {
            registry: self.registry.clone(),
            msg: format!("the token service sent no JSON: {e}"),
        })?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .ok_or_else(|| RegistryError::Http {
                registry: self.registry.clone(),
                msg: "the token service sent no token".into(),
            })
    }

    /// An error for an unexpected status, with the registry's error text.
    pub fn status_error(&self, what: &str, resp: Response) -> RegistryError {
        let status = resp.status;
        let body = resp.read_limited(MAX_SMALL_BODY, what).unwrap_or_default();
        let detail = registry_error_text(&body);
        match status {
            401 | 403 => {
                RegistryError::Unauthorized { what: what.to_string(), status, registry: self.registry.clone() }
            }
            404 => RegistryError::NotFound {
                what: what.to_string(),
                detail: if detail.is_empty() { String::new() } else { format!(": {detail}") },
            },
            _ => RegistryError::Http {
                registry: self.registry.clone(),
                msg: format!(
                    "{what}: the registry answered {status}{}",
                    if detail.is_empty() { String::new() } else { format!(": {detail}") }
                ),
            },
        }
    }
}

/// What to do about a TLS failure, from rustls's description of it (ureq
/// reports handshake failures as I/O errors). `HOST` stands for the registry.
fn tls_hint(text: &str) -> Option<&'static str> {
    if text.contains("invalid peer certificate") {
        if text.contains("NotValidForName") {
            return Some("the registry's certificate is not issued for this host name; use the name it was issued for");
        }
        if text.contains("Expired") {
            return Some("the registry's certificate has expired");
        }
        return Some("the registry's certificate is not trusted: if it uses a private CA put the CA in /etc/containers/certs.d/HOST/ca.crt (or ~/.config/containers/certs.d/HOST/, or --cert-dir), or use --tls-verify=false for a registry you trust");
    }
    if text.contains("CertificateRequired") || text.contains("BadCertificate") {
        return Some("the registry wants a client certificate it accepts: put client.cert and client.key in /etc/containers/certs.d/HOST/ (or ~/.config/containers/certs.d/HOST/, or --cert-dir)");
    }
    if text.contains("UnknownCA") {
        return Some("the registry does not trust the client certificate's issuer; use a client certificate signed by a CA it trusts");
    }
    None
}

/// How long to wait before attempt `attempt + 1`: 0.25 s, 0.5 s, 1 s, ...
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250 << attempt.saturating_sub(1).min(5))
}

/// A `Retry-After` given in seconds, capped.
fn retry_after(v: Option<&str>) -> Option<Duration> {
    let secs: u64 = v?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// The text of a distribution-spec error body (`{"errors":[{"code","message"}]}`).
fn registry_error_text(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return String::new() };
    let Some(errs) = v.get("errors").and_then(|e| e.as_array()) else { return String::new() };
    errs.iter()
        .filter_map(|e| {
            let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
            let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
            (!code.is_empty() || !msg.is_empty()).then(|| format!("{code} {msg}").trim().to_lowercase())
        })
        .take(3)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Resolves a `Location` header against the request URL.
pub fn resolve_location(base: &str, loc: &str) -> String {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        return loc.to_string();
    }
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..].find('/').map(|i| i + scheme_end).unwrap_or(base.len());
    if let Some(rest) = loc.strip_prefix("//") {
        return format!("{}{rest}", &base[..scheme_end]);
    }
    if loc.starts_with('/') {
        return format!("{}{loc}", &base[..host_end]);
    }
    let dir_end = base.rfind('/').filter(|&i| i >= host_end).unwrap_or(base.len());
    format!("{}/{loc}", &base[..dir_end])
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_hosts_are_known() {
        for h in [
            "localhost",
            "localhost:5000",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.3.4.5:80",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["example.com", "localhost.example.com:5000", "10.0.0.1:5000", "128.0.0.1", "[::2]:1", "docker.io"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    use super::*;

    #[test]
    fn locations_resolve_like_browsers() {
        let base = "https://r.example:5000/v2/a/blobs/sha256:x";
        assert_eq!(resolve_location(base, "https://cdn/x"), "https://cdn/x");
        assert_eq!(resolve_location(base, "/v2/a/blobs/uploads/1"), "https://r.example:5000/v2/a/blobs/uploads/1");
        assert_eq!(resolve_location(base, "//cdn/y"), "https://cdn/y");
        assert_eq!(resolve_location(base, "z"), "https://r.example:5000/v2/a/blobs/z");
    }

    #[test]
    fn tls_failures_say_what_to_do() {
        let ca = tls_hint("io: invalid peer certificate: UnknownIssuer").unwrap();
        assert!(ca.contains("certs.d/HOST/ca.crt") && ca.contains("--tls-verify=false"));
        assert!(tls_hint("io: received fatal alert: BadCertificate").unwrap().contains("client.cert"));
        assert!(tls_hint("io: received fatal alert: CertificateRequired").unwrap().contains("client.key"));
        assert!(tls_hint("invalid peer certificate: NotValidForName").unwrap().contains("host name"));
        assert_eq!(tls_hint("io: connection refused"), None);
    }

    #[test]
    fn retry_after_is_seconds_and_capped() {
        assert_eq!(retry_after(Some("2")), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(Some(" 1 ")), Some(Duration::from_secs(1)));
        assert_eq!(retry_after(Some("99999")), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(None), None);
        assert!(backoff(1) < backoff(2) && backoff(9) == backoff(6));
    }

    #[test]
    fn authority_table() {
        assert_eq!(authority("https://a:5000/v2/"), Some("a:5000"));
        assert_eq!(authority("http://a?x"), Some("a"));
        assert_eq!(authority("ftp://a"), None);
    }

    #[test]
    fn registry_errors_are_summarised() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        assert_eq!(registry_error_text(body), "manifest_unknown manifest unknown");
    }
}
