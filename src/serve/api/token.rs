//! The token endpoint: `GET /token` and the OAuth2 form `POST /token`,
//! which turn credentials into bearer tokens.

use super::{error, now, Api, Caller, Reply};
use crate::serve::auth::{self, Credentials};
use crate::serve::http::{Request, Response};
use crate::serve::route;
use std::io::Read;

impl Api {
    /// `GET /token?service=…&scope=…`: a bearer token for the caller.
    pub(super) fn token(&self, req: &Request) -> Reply<Response> {
        let caller = match auth::credentials(req.header("authorization")) {
            Credentials::Basic { user, password } => self.check_password(req, &user, &password)?,
            Credentials::Anonymous => Caller::Anonymous,
            _ => return Err(error(401, "UNAUTHORIZED", "the token endpoint takes Basic credentials or none")),
        };
        let (user, gen) = self.identity(&caller)?;
        Ok(Response::new(200).json(&self.access_token(&user, &gen, now())))
    }

    /// The answer of the token endpoint: an access token for `user` of
    /// password generation `gen`, issued at `issued`.
    pub(super) fn access_token(&self, user: &str, gen: &str, issued: i64) -> serde_json::Value {
        let ttl = self.settings.token_ttl.as_secs() as i64;
        let token = self.tokens.issue("access", user, gen, issued.saturating_add(ttl));
        serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": ttl,
            "issued_at": crate::timefmt::format_rfc3339(issued),
        })
    }

    /// A caller's name and password generation, for tokens.
    pub(super) fn identity(&self, caller: &Caller) -> Reply<(String, String)> {
        match caller {
            Caller::Anonymous => Ok((String::new(), String::new())),
            Caller::User { name, .. } => match self.backend.user(name)? {
                Some(u) => Ok((u.name, auth::generation(&u.password))),
                None => Err(error(401, "UNAUTHORIZED", format!("user {name} no longer exists"))),
            },
        }
    }

    /// `POST /token`, the OAuth2 form of the token spec that containerd
    /// uses: `grant_type=password` with `username` and `password`, or
    /// `grant_type=refresh_token` with `refresh_token`; a refresh token
    /// comes back when `access_type=offline`. Wrong credentials get 401.
    pub(super) fn token_form(&self, req: &Request, body: &mut dyn Read) -> Reply<Response> {
        let mut bytes = Vec::new();
        body.take(64 * 1024)
            .read_to_end(&mut bytes)
            .map_err(|e| error(400, "UNSUPPORTED", format!("reading the token request: {e}")))?;
        let form = route::query(&String::from_utf8_lossy(&bytes));
        let get = |k: &str| form.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let denied = |msg: &str| error(401, "UNAUTHORIZED", msg.to_string());
        let (user, gen) = match get("grant_type").as_str() {
            "password" => {
                let caller = self.check_password(req, &get("username"), &get("password")).map_err(|r| {
                    if r.status == 429 {
                        r
                    } else {
                        denied("wrong user name or password")
                    }
                })?;
                self.identity(&caller)?
            }
            "refresh_token" => {
                let Some((name, gen)) = self.tokens.check("refresh", &get("refresh_token"), now()) else {
                    return Err(denied("the refresh token is not valid or has expired; log in again"));
                };
                match self.backend.user(&name)? {
                    Some(u) if auth::generation(&u.password) == gen => (u.name, gen),
                    _ => return Err(denied("the refresh token's user or password changed; log in again")),
                }
            }
            other => {
                return Ok(error(
                    400,
                    "UNSUPPORTED",
                    format!("grant_type {other:?} is not supported: give password or refresh_token"),
                ))
            }
        };
        let issued = now();
        let mut answer = self.access_token(&user, &gen, issued);
        answer["scope"] = serde_json::Value::String(get("scope"));
        if get("access_type") == "offline" || get("grant_type") == "refresh_token" {
            answer["refresh_token"] = serde_json::Value::String(self.tokens.issue(
                "refresh",
                &user,
                &gen,
                issued.saturating_add(REFRESH_TTL),
            ));
        }
        Ok(Response::new(200).json(&answer))
    }
}

/// How long a refresh token (POST /token with access_type=offline) lives.
const REFRESH_TTL: i64 = 7 * 86_400;
