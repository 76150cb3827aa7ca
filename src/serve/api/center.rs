//! The image center and what a user asks of it: the page (`/`), a login
//! prompt for browsers (`/login`), and a small JSON API (`/api/v1/`) with
//! the caller's access credentials and the repositories they may pull,
//! each with its summary, description, visibility and tags; a user who may
//! push to a repository may change its summary and description.

use super::{error, own_origin, Api, Caller, Reply};
use crate::serve::admin;
use crate::serve::auth::Access;
use crate::serve::http::{Request, Response};
use crate::serve::page::{self, Shown, Viewer};
use crate::serve::route::{self, Name};
use std::collections::HashMap;
use std::io::Read;

impl Api {
    /// The registry's address as the client named it.
    fn host(req: &Request) -> String {
        let origin = own_origin(req);
        origin.split_once("://").map(|(_, h)| h.to_string()).unwrap_or(origin)
    }

    /// Whether an anonymous caller may pull `name` (else it is shared).
    fn public(&self, name: &Name) -> Reply<bool> {
        Ok(self.access(&Caller::Anonymous, name)? >= Access::Pull)
    }

    pub(super) fn image_center(&self, req: &Request, caller: &Caller) -> Reply<Response> {
        let listing = self.backend.tag_listing()?;
        let infos: HashMap<String, (String, String)> =
            self.backend.repository_infos()?.into_iter().map(|i| (i.name, (i.summary, i.description))).collect();
        let mut visible = Vec::new();
        let mut public: HashMap<String, bool> = HashMap::new();
        for t in &listing {
            let Ok(name) = route::parse_name(&t.repository) else { continue };
            if self.access(caller, &name)? >= Access::Pull {
                if !public.contains_key(&t.repository) {
                    public.insert(t.repository.clone(), self.public(&name)?);
                }
                visible.push(t);
            }
        }
        let empty = (String::new(), String::new());
        let shown: Vec<Shown> = visible
            .into_iter()
            .map(|t| {
                let (summary, description) = infos.get(&t.repository).unwrap_or(&empty);
                Shown { tag: t, public: public[&t.repository], summary, description }
            })
            .collect();
        let viewer = match caller {
            Caller::Anonymous => Viewer { user: None, admin: false },
            Caller::User { name, admin } => Viewer { user: Some(name), admin: *admin },
        };
        let html = page::render(&Self::host(req), &viewer, &shown);
        Ok(Response::new(200).bytes("text/html; charset=utf-8", html.into_bytes()))
    }

    /// `/login`: asks a browser for Basic credentials, then shows the page
    /// as the user sees it (a browser sends the credentials again only
    /// where it was asked for them).
    pub(super) fn login_page(&self, req: &Request, caller: &Caller) -> Reply<Response> {
        match caller {
            Caller::Anonymous => Ok(error(401, "UNAUTHORIZED", "log in to see the images shared with you")
                .header("WWW-Authenticate", "Basic realm=\"img serve\"")),
            Caller::User { .. } => self.image_center(req, caller),
        }
    }

    /// `/api/v1/...`: `GET credentials`, `GET repositories`,
    /// `GET repositories/NS/REPO`, `PUT repositories/NS/REPO` {summary, description}.
    pub(super) fn user_api(&self, req: &Request, caller: &Caller, rest: &str, body: &mut dyn Read) -> Reply<Response> {
        let m = req.method.as_str();
        match (m, rest) {
            ("GET", "credentials") => {
                let host = Self::host(req);
                let v = match caller {
                    Caller::Anonymous => serde_json::json!({
                        "registry": host, "user": null, "admin": false,
                        "login": format!("img login {host} -u USER"),
                    }),
                    Caller::User { name, admin } => serde_json::json!({
                        "registry": host, "user": name, "admin": admin,
                        "login": format!("img login {host} -u {name}"),
                        "docker_login": format!("docker login {host} -u {name}"),
                        "grants": self.backend.grants(Some(name))?.into_iter()
                            .map(|(_, scope, access)| serde_json::json!({"scope": scope, "access": access}))
                            .collect::<Vec<_>>(),
                    }),
                };
                Ok(Response::new(200).json(&v))
            }
            ("GET", "repositories") => {
                let mut out = Vec::new();
                for r in self.backend.repositories()? {
                    let Ok(name) = route::parse_name(&r) else { continue };
                    if self.access(caller, &name)? >= Access::Pull {
                        out.push(self.repository_json(&name)?);
                    }
                }
                Ok(Response::new(200).json(&serde_json::json!({ "repositories": out })))
            }
            (_, r) if r.starts_with("repositories/") => {
                let n = &r["repositories/".len()..];
                let unknown = || error(404, "NAME_UNKNOWN", format!("repository {n} is not known"));
                let Ok(name) = route::parse_name(n) else { return Ok(unknown()) };
                let access = self.access(caller, &name)?;
                match m {
                    "GET" if access >= Access::Pull => Ok(Response::new(200).json(&self.repository_json(&name)?)),
                    "PUT" if access >= Access::Push => {
                        let mut bytes = Vec::new();
                        body.take(admin::MAX_DESCRIPTION as u64 + 4096)
                            .read_to_end(&mut bytes)
                            .map_err(|e| error(400, "UNSUPPORTED", format!("reading the request: {e}")))?;
                        let v: serde_json::Value = serde_json::from_slice(&bytes)
                            .map_err(|e| error(400, "UNSUPPORTED", format!("the request is not JSON: {e}")))?;
                        admin::repository_add(
                            &*self.backend,
                            n,
                            v.get("summary").and_then(|x| x.as_str()),
                            v.get("description").and_then(|x| x.as_str()),
                        )
                        .map_err(|e| error(400, "UNSUPPORTED", format!("{e:#}")))?;
                        Ok(Response::new(204))
                    }
                    "GET" | "PUT" if matches!(caller, Caller::Anonymous) => {
                        Err(self.challenge(req, None, "authentication required"))
                    }
                    "GET" => Ok(unknown()),
                    "PUT" => Ok(error(403, "DENIED", format!("changing {n} needs push access to it"))),
                    _ => Ok(error(405, "UNSUPPORTED", format!("{m} is not supported on {}", req.path))),
                }
            }
            _ => Ok(error(404, "UNSUPPORTED", format!("no endpoint {m} /api/v1/{rest}"))),
        }
    }

    fn repository_json(&self, name: &Name) -> Reply<serde_json::Value> {
        let repo = name.to_string();
        let info = self.backend.repository_info(&repo)?;
        Ok(serde_json::json!({
            "name": repo,
            "public": self.public(name)?,
            "summary": info.as_ref().map(|i| i.summary.as_str()).unwrap_or(""),
            "description": info.as_ref().map(|i| i.description.as_str()).unwrap_or(""),
            "tags": self.backend.tags(&repo)?,
        }))
    }
}
