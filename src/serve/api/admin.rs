//! The admin API (`/admin/v1/`): users, namespaces, visibility and grants
//! over HTTP, for admins only, through `serve::admin`.

use super::{error, Api, Caller, Reply};
use crate::serve::admin;
use crate::serve::http::{Request, Response};
use std::io::Read;

impl Api {
    /// The admin API, for admins only, always (the first admin is made on
    /// the machine with `img serve admin user add NAME --admin`); bodies
    /// are `application/json`:
    /// `GET list`; `POST users` {name, password, admin}; `DELETE users/NAME`;
    /// `POST namespaces` {name, public, external}; `DELETE namespaces/NAME`;
    /// `POST repositories` {name, summary, description, public};
    /// `PUT repositories/NS/REPO` {public: true|false|null, summary, description};
    /// `DELETE repositories/NS/REPO` (with its images);
    /// `POST grants` {user, scope, access}; `DELETE grants/USER/SCOPE`.
    pub(super) fn admin_api(&self, req: &Request, caller: &Caller, rest: &str, body: &mut dyn Read) -> Reply<Response> {
        match caller {
            Caller::User { admin: true, .. } => {}
            Caller::Anonymous => {
                return Err(self.challenge(
                    req,
                    None,
                    "the admin API needs an admin's credentials (the first admin is made with img serve admin user add NAME --admin)",
                ))
            }
            Caller::User { name, .. } => return Err(error(403, "DENIED", format!("{name} is not an admin"))),
        }
        if matches!(req.method.as_str(), "POST" | "PUT" | "PATCH") {
            let ct = req.header("content-type").map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
            if ct.as_deref() != Some("application/json") {
                return Ok(error(
                    415,
                    "UNSUPPORTED",
                    format!(
                        "the admin API takes Content-Type application/json, not {}",
                        ct.as_deref().unwrap_or("none")
                    ),
                ));
            }
        }
        let mut bytes = Vec::new();
        body.take(64 * 1024)
            .read_to_end(&mut bytes)
            .map_err(|e| error(400, "UNSUPPORTED", format!("reading the request: {e}")))?;
        let v: serde_json::Value = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| error(400, "UNSUPPORTED", format!("the request is not JSON: {e}")))?
        };
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        let b = &*self.backend;
        let bad = |e: anyhow::Error| error(400, "UNSUPPORTED", format!("{e:#}"));
        let m = req.method.as_str();
        let parts: Vec<&str> = rest.splitn(2, '/').collect();
        match (m, parts.as_slice()) {
            ("GET", ["list"]) => {
                let l = admin::list(b).map_err(bad)?;
                Ok(Response::new(200).json(&serde_json::to_value(l).unwrap_or_default()))
            }
            ("POST", ["users"]) => {
                let admin = v.get("admin").and_then(|a| a.as_bool());
                let added = admin::user_add(b, &s("name"), &s("password"), admin).map_err(bad)?;
                self.logins.forget_verified();
                Ok(Response::new(if added == admin::UserChange::Added { 201 } else { 200 }))
            }
            ("DELETE", ["users", name]) => {
                admin::user_rm(b, name).map_err(|e| {
                    let status = if format!("{e:#}").starts_with("no user") { 404 } else { 409 };
                    error(status, if status == 404 { "NAME_UNKNOWN" } else { "DENIED" }, format!("{e:#}"))
                })?;
                self.logins.forget_verified();
                Ok(Response::new(204))
            }
            ("POST", ["namespaces"]) => {
                let public = v.get("public").and_then(|a| a.as_bool()).unwrap_or(false);
                let made = admin::namespace_add(b, &s("name"), public).map_err(bad)?;
                if let Some(e) = v.get("external").and_then(|a| a.as_bool()) {
                    admin::namespace_external(b, &s("name"), e).map_err(bad)?;
                }
                Ok(Response::new(if made { 201 } else { 200 }))
            }
            ("DELETE", ["namespaces", name]) => {
                admin::namespace_rm(b, name).map_err(|e| error(404, "NAME_UNKNOWN", format!("{e:#}")))?;
                Ok(Response::new(204))
            }
            ("PUT", ["repositories", name]) => {
                if v.get("public").is_some() {
                    let public = v.get("public").and_then(|a| a.as_bool());
                    admin::repository_visibility(b, name, public).map_err(bad)?;
                }
                let (summary, description) =
                    (v.get("summary").and_then(|x| x.as_str()), v.get("description").and_then(|x| x.as_str()));
                if summary.is_some() || description.is_some() {
                    admin::repository_add(b, name, summary, description).map_err(bad)?;
                }
                Ok(Response::new(204))
            }
            ("POST", ["repositories"]) => {
                let name = s("name");
                let made = admin::repository_add(
                    b,
                    &name,
                    v.get("summary").and_then(|x| x.as_str()),
                    v.get("description").and_then(|x| x.as_str()),
                )
                .map_err(bad)?;
                if let Some(p) = v.get("public").and_then(|a| a.as_bool()) {
                    admin::repository_visibility(b, &name, Some(p)).map_err(bad)?;
                }
                Ok(Response::new(if made { 201 } else { 200 }))
            }
            ("DELETE", ["repositories", name]) => {
                admin::repository_rm(b, name).map_err(|e| error(404, "NAME_UNKNOWN", format!("{e:#}")))?;
                Ok(Response::new(204))
            }
            ("POST", ["grants"]) => {
                admin::grant(b, &s("user"), &s("scope"), &s("access")).map_err(bad)?;
                Ok(Response::new(204))
            }
            ("DELETE", ["grants", rest]) => {
                let (user, scope) = rest.split_once('/').unwrap_or((rest, ""));
                admin::revoke(b, user, scope).map_err(|e| error(404, "NAME_UNKNOWN", format!("{e:#}")))?;
                Ok(Response::new(204))
            }
            _ => Ok(error(404, "UNSUPPORTED", format!("no admin endpoint {m} /admin/v1/{rest}"))),
        }
    }
}
