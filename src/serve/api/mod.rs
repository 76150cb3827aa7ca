//! The distribution API over the store: what each request does, who may
//! do it, and the answers (the spec's JSON errors, its headers).
//!
//! Everything kept is asked of a `Backend` (the store on this machine, or
//! PostgreSQL and S3 for a scaled-out registry). Each caller may have a
//! bounded number and size of uploads in progress. A manifest is accepted
//! only if every blob or manifest it names is in the repository, with the
//! size it says. A backend that does not answer makes requests fail with
//! 503 until it is back.
//!
//! Who may do what (the README says it for users): an admin everything,
//! a user what their grants give, an anonymous caller pull on public
//! namespaces and repositories. Without users nobody can log in, so the
//! server serves only what is public, read-only, unless it was started
//! with `--open` (loopback only, and only while the store has no users).
//! The admin API needs an admin's credentials, always; the first admin is
//! made on the machine with `img serve admin user add NAME --admin`.
//!
//! This file holds the `Api` type and dispatch; the endpoints are by
//! resource: `access` (who is asking, and may they), `token`, `catalog`
//! (catalog, tags, image center), `manifests`, `blobs`, `uploads`, `admin`
//! (the admin API) and `gc`.

use super::auth::{Access, Tokens};
use super::backend::{self, Backend};
use super::http::{Handler, Request, Response};
use super::route::{self, Route};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

mod access;
mod admin;
mod blobs;
mod catalog;
mod center;
mod gc;
mod manifests;
mod signatures;
#[cfg(test)]
mod tests;
mod token;
mod uploads;

/// How `img serve` asks clients for credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// `WWW-Authenticate: Bearer` with a token endpoint at `/token`
    /// (Basic credentials are taken too).
    Token,
    /// `WWW-Authenticate: Basic`.
    Basic,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub auth: AuthMode,
    /// Anyone may pull and push while the store has no users (`--open`).
    pub open: bool,
    /// Uploads one caller may have in progress.
    pub max_uploads_per_user: usize,
    /// Bytes one caller may have in uploads in progress.
    pub upload_bytes_per_user: u64,
    /// How long a token is valid.
    pub token_ttl: Duration,
    /// Uploads untouched for this long are dropped.
    pub upload_ttl: Duration,
    /// The internal networks: when given, clients outside them reach only
    /// namespaces made reachable from outside (`--external`).
    pub internal_networks: Vec<super::http::Cidr>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            auth: AuthMode::Token,
            open: false,
            max_uploads_per_user: 64,
            upload_bytes_per_user: 16 << 30,
            token_ttl: Duration::from_secs(300),
            upload_ttl: Duration::from_secs(3600),
            internal_networks: Vec::new(),
        }
    }
}

pub struct Api {
    backend: Arc<dyn Backend>,
    settings: Settings,
    tokens: Tokens,
    logins: super::login::Logins,
    /// The store has had a user while this server ran: `--open` is over.
    had_users: std::sync::atomic::AtomicBool,
}

/// Who is asking.
#[derive(Debug, Clone)]
enum Caller {
    Anonymous,
    User { name: String, admin: bool },
}

impl Caller {
    /// Who owns the uploads this caller starts.
    fn owner(&self, req: &Request) -> String {
        match self {
            Caller::Anonymous => format!("@{}", req.peer.ip()),
            Caller::User { name, .. } => name.clone(),
        }
    }
}

thread_local! {
    /// The user whose credentials this thread's request carried, for the
    /// access log (a request is answered on one thread).
    static LOG_USER: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// An answer that ends a request early.
type Reply<T> = Result<T, Response>;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The spec's error answer.
pub fn error(status: u16, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "errors": [{ "code": code, "message": message.into(), "detail": null }] });
    Response::new(status).json(&body)
}

/// What a backend that failed answers: 503 while it does not answer (the
/// client retries), 507 for a full disk, else 500.
impl From<backend::Error> for Response {
    fn from(e: backend::Error) -> Response {
        eprintln!("img serve: {e}");
        match e {
            backend::Error::Unavailable(m) => {
                error(503, "UNAVAILABLE", format!("{m}; retry shortly")).header("Retry-After", "1")
            }
            backend::Error::NoSpace(m) => error(507, "UNKNOWN", m),
            backend::Error::Failed(m) => error(500, "UNKNOWN", m),
        }
    }
}

impl Api {
    pub fn new(backend: Arc<dyn Backend>, settings: Settings) -> backend::Result<Api> {
        let key = backend.token_key()?;
        Ok(Api {
            backend,
            settings,
            tokens: Tokens::new(key),
            logins: super::login::Logins::new(2),
            had_users: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Checks the request's origin, finds its endpoint and the caller, and
    /// answers.
    fn dispatch(&self, req: &Request, body: &mut dyn Read) -> Reply<Response> {
        let admin = req.path.starts_with("/admin/");
        // A web page of another site may not change anything here, nor use
        // the admin API (with credentials a browser holds for this server).
        let safe = matches!(req.method.as_str(), "GET" | "HEAD");
        if let Some(origin) = req.header("origin") {
            if (admin || !safe) && !origin.eq_ignore_ascii_case(&own_origin(req)) {
                return Ok(error(
                    403,
                    "DENIED",
                    format!(
                        "requests from {origin:?} may not {} {}: cross-site requests are refused",
                        req.method, req.path
                    ),
                ));
            }
        }
        if req.path == "/token" {
            if self.settings.auth == AuthMode::Basic {
                return Ok(error(404, "UNSUPPORTED", "this server takes Basic credentials; it issues no tokens"));
            }
            return match req.method.as_str() {
                "GET" => self.token(req),
                "POST" => self.token_form(req, body),
                m => Ok(error(405, "UNSUPPORTED", format!("{m} is not supported on /token"))),
            };
        }
        // Probes for a supervisor or a load balancer: no credentials, no detail.
        if req.path == "/healthz" || req.path == "/readyz" {
            if !matches!(req.method.as_str(), "GET" | "HEAD") {
                return Ok(error(405, "UNSUPPORTED", format!("{} is not supported on {}", req.method, req.path)));
            }
            if req.path == "/healthz" {
                return Ok(Response::new(200).bytes("text/plain; charset=utf-8", b"ok\n".to_vec()));
            }
            // Ready: what it keeps things in answers.
            return Ok(match self.backend.ready() {
                Ok(()) => Response::new(200).bytes("text/plain; charset=utf-8", b"ready\n".to_vec()),
                Err(why) => {
                    Response::new(503).bytes("text/plain; charset=utf-8", format!("not ready: {why}\n").into_bytes())
                }
            });
        }
        if req.path == "/" || req.path == "/index.html" {
            let caller = self.caller(req)?;
            return self.image_center(req, &caller);
        }
        if req.path == "/login" {
            let caller = self.caller(req)?;
            return self.login_page(req, &caller);
        }
        if let Some(rest) = req.path.strip_prefix("/api/v1/") {
            let caller = self.caller(req)?;
            return self.user_api(req, &caller, rest, body);
        }
        if req.path == "/metrics" {
            // Also on --metrics-listen, without credentials; here for admins.
            return match self.caller(req)? {
                Caller::User { admin: true, .. } => {
                    Ok(Response::new(200).bytes(super::metrics::CONTENT_TYPE, super::metrics::render().into_bytes()))
                }
                Caller::Anonymous => Err(self.challenge(req, None, "the metrics need an admin's credentials")),
                Caller::User { name, .. } => Ok(error(403, "DENIED", format!("{name} is not an admin"))),
            };
        }
        if let Some(rest) = req.path.strip_prefix("/admin/v1/") {
            let caller = self.caller(req)?;
            return self.admin_api(req, &caller, rest, body);
        }
        let r = match route::parse(&req.path) {
            Ok(r) => r,
            // A manifest named by a reference that cannot exist is not
            // there (the conformance suite's "nonexistent manifest").
            Err(route::RouteError::TagInvalid(msg))
                if matches!(req.method.as_str(), "GET" | "HEAD") && req.path.contains("/manifests/") =>
            {
                return Ok(error(404, "MANIFEST_UNKNOWN", msg));
            }
            Err(e) => {
                let (code, status) = e.code();
                let code = if code == "NOT_FOUND" { "NAME_UNKNOWN" } else { code };
                return Ok(error(status, code, e.to_string()));
            }
        };
        let caller = self.caller(req)?;
        let m = req.method.as_str();
        match (r, m) {
            (Route::Base, "GET" | "HEAD") => {
                if matches!(caller, Caller::Anonymous) && !self.open()? {
                    return Err(self.challenge(req, None, "authentication required"));
                }
                Ok(Response::new(200).json(&serde_json::json!({})).header("X-Registry-Supports-Signatures", "1"))
            }
            (Route::Catalog, "GET") => self.catalog(req, &caller),
            (Route::Tags { name }, "GET") => {
                self.require(req, &caller, &name, Access::Pull)?;
                self.tags(req, &name)
            }
            (Route::Manifest { name, reference }, "GET" | "HEAD") => {
                self.require(req, &caller, &name, Access::Pull)?;
                self.get_manifest(&name, &reference)
            }
            (Route::Manifest { name, reference }, "PUT") => {
                self.require(req, &caller, &name, Access::Push)?;
                self.put_manifest(req, &caller, &name, &reference, body)
            }
            (Route::Manifest { name, reference }, "DELETE") => {
                self.require(req, &caller, &name, Access::Push)?;
                self.delete_manifest(&name, &reference)
            }
            (Route::Blob { name, digest }, "GET" | "HEAD") => {
                self.require(req, &caller, &name, Access::Pull)?;
                self.get_blob(req, &name, &digest)
            }
            (Route::Blob { name, digest }, "DELETE") => {
                self.require(req, &caller, &name, Access::Push)?;
                self.delete_blob(&name, &digest)
            }
            (Route::UploadStart { name }, "POST") => {
                self.require(req, &caller, &name, Access::Push)?;
                self.start_upload(req, &caller, &name, body)
            }
            (Route::Upload { name, id }, "PATCH") => {
                self.require(req, &caller, &name, Access::Push)?;
                self.patch_upload(req, &caller, &name, &id, body)
            }
            (Route::Upload { name, id }, "PUT") => {
                self.require(req, &caller, &name, Access::Push)?;
                self.finish_upload(req, &caller, &name, &id, body)
            }
            (Route::Upload { name, id }, "GET") => {
                self.require(req, &caller, &name, Access::Push)?;
                self.upload_progress(&name, &id)
            }
            (Route::Upload { name, id }, "DELETE") => {
                self.require(req, &caller, &name, Access::Push)?;
                self.cancel_upload(&name, &id)
            }
            (Route::Referrers { name, digest }, "GET") => {
                self.require(req, &caller, &name, Access::Pull)?;
                self.referrers(req, &name, &digest)
            }
            (Route::Signatures { name, digest }, "GET") => {
                self.require(req, &caller, &name, Access::Pull)?;
                self.get_signatures(&name, &digest)
            }
            (Route::Signatures { name, digest }, "PUT") => {
                self.require(req, &caller, &name, Access::Push)?;
                self.put_signature(&name, &digest, body)
            }
            (_, m) => Ok(error(405, "UNSUPPORTED", format!("{m} is not supported on {}", req.path))),
        }
    }
}

/// This server's origin as the client addressed it: the scheme and the
/// Host header when that is a plain `host[:port]`, else the address the
/// connection came to (a Host header is never echoed as it came).
fn own_origin(req: &Request) -> String {
    let scheme = if req.tls { "https" } else { "http" };
    let host =
        req.header("host").filter(|h| valid_host(h)).map(str::to_string).unwrap_or_else(|| req.local.to_string());
    format!("{scheme}://{host}")
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

impl Handler for Api {
    fn handle(&self, req: &Request, body: &mut dyn Read) -> Response {
        LOG_USER.with(|u| u.borrow_mut().take());
        let mut resp = self.dispatch(req, body).unwrap_or_else(|r| r);
        // Who the access log names: the caller whose credentials were checked.
        resp.log_user = LOG_USER.with(|u| u.borrow_mut().take());
        resp.header("Docker-Distribution-API-Version", "registry/2.0")
    }
}
