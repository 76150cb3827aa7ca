//! Who is asking, and may they: credentials (Basic or a token) checked,
//! access to a repository decided, and the 401 or 403 answers.

use super::{error, now, own_origin, Api, AuthMode, Caller, Reply};
use crate::serve::auth::{self, Access, Credentials, Facts};
use crate::serve::http::{Request, Response};
use crate::serve::login::{self, Outcome};
use crate::serve::route::Name;

impl Api {
    /// The caller, from the request's credentials; a 401 for wrong ones.
    pub(super) fn caller(&self, req: &Request) -> Reply<Caller> {
        let c = self.caller_unlogged(req)?;
        if let Caller::User { name, .. } = &c {
            super::LOG_USER.with(|u| *u.borrow_mut() = Some(name.clone()));
        }
        Ok(c)
    }

    fn caller_unlogged(&self, req: &Request) -> Reply<Caller> {
        match auth::credentials(req.header("authorization")) {
            Credentials::Anonymous => Ok(Caller::Anonymous),
            Credentials::Malformed => Err(self.challenge(req, None, "the Authorization header cannot be read")),
            Credentials::Basic { user, password } => self.check_password(req, &user, &password),
            Credentials::Bearer(_) if self.settings.auth == AuthMode::Basic => {
                Err(self.challenge(req, None, "this server takes Basic credentials, not tokens"))
            }
            Credentials::Bearer(t) => match self.tokens.check("access", &t, now()) {
                Some((name, _)) if name.is_empty() => Ok(Caller::Anonymous),
                Some((name, gen)) => self.token_user(req, &name, &gen),
                None => Err(self.challenge(req, None, "the token is not valid or has expired; log in again")),
            },
        }
    }

    /// The user a token names, if their password is still the one it was
    /// issued under.
    pub(super) fn token_user(&self, req: &Request, name: &str, gen: &str) -> Reply<Caller> {
        match self.backend.user(name)? {
            Some(u) if auth::generation(&u.password) == gen => Ok(Caller::User { name: u.name, admin: u.admin }),
            Some(_) => Err(self.challenge(req, None, "the token's password was changed; log in again")),
            None => Err(self.challenge(req, None, "the token's user no longer exists")),
        }
    }

    pub(super) fn check_password(&self, req: &Request, user: &str, password: &str) -> Reply<Caller> {
        let found = self.backend.user(user)?;
        // A name that is no user is checked against a dummy hash: the time
        // does not tell which user names exist.
        let stored = found.as_ref().map(|u| u.password.as_str()).unwrap_or_else(|| login::dummy_hash());
        match (self.logins.check(req.peer.ip(), user, password, stored), found) {
            (Outcome::Right, Some(u)) => Ok(Caller::User { name: u.name, admin: u.admin }),
            (Outcome::Right | Outcome::Wrong, _) => Err(self.challenge(req, None, "wrong user name or password")),
            (Outcome::Busy(secs), _) => Err(error(
                429,
                "TOOMANYREQUESTS",
                format!("too many login attempts from {} or for {user}; retry in {secs} s", req.peer.ip()),
            )
            .header("Retry-After", secs.to_string())),
        }
    }

    /// Whether anyone may pull and push: `--open`, and the store has had
    /// no user since the server started.
    pub(super) fn open(&self) -> Reply<bool> {
        use std::sync::atomic::Ordering;
        if !self.settings.open || self.had_users.load(Ordering::SeqCst) {
            return Ok(false);
        }
        if self.backend.user_count()? > 0 {
            self.had_users.store(true, Ordering::SeqCst);
            return Ok(false);
        }
        Ok(true)
    }

    /// The caller's access to `name`. A repository that does not exist
    /// gives nothing to a caller who cannot push to it, so that a missing
    /// repository answers as a private one does.
    pub(super) fn access(&self, caller: &Caller, name: &Name) -> Reply<Access> {
        let open = self.open()?;
        if open || matches!(caller, Caller::User { admin: true, .. }) {
            return Ok(Access::Push);
        }
        let (user, admin) = match caller {
            Caller::Anonymous => (None, false),
            Caller::User { name, admin } => (Some(name.clone()), *admin),
        };
        let full = name.to_string();
        let grants: Vec<(String, String)> = match &user {
            Some(u) => self.backend.grants(Some(u))?.into_iter().map(|(_, s, a)| (s, a)).collect(),
            None => vec![],
        };
        let ns_public = self.backend.namespace(&name.namespace)?;
        let repo_public = self.backend.repository_visibility(&full)?;
        let facts = Facts { open, admin, grants: &grants, namespace_public: ns_public, repository_public: repo_public };
        let a = auth::access(&name.namespace, &name.repository, &facts);
        if a == Access::Pull && !self.backend.repository_exists(&full)? {
            return Ok(Access::None);
        }
        Ok(a)
    }

    /// Answers 401 (anonymous: log in) or 403 (logged in, not allowed),
    /// the same whether the repository exists or not.
    /// Whether the client may reach `name`'s namespace from where it is:
    /// from inside the internal networks (or when none are set), or into
    /// a namespace made reachable from outside.
    pub(super) fn reachable(&self, req: &Request, name: &Name) -> Reply<bool> {
        let nets = &self.settings.internal_networks;
        if nets.is_empty() || nets.iter().any(|n| n.contains(req.peer.ip())) {
            return Ok(true);
        }
        Ok(self.backend.namespace_external(&name.namespace)?)
    }

    pub(super) fn require(&self, req: &Request, caller: &Caller, name: &Name, want: Access) -> Reply<()> {
        if !self.reachable(req, name)? {
            return Err(error(
                403,
                "DENIED",
                format!(
                    "namespace {} is not reachable from {}, outside the internal networks; an admin allows it with img serve admin namespace add {} --external",
                    name.namespace,
                    req.peer.ip(),
                    name.namespace
                ),
            ));
        }
        if self.access(caller, name)? >= want {
            return Ok(());
        }
        let action = if want == Access::Push { "pull,push" } else { "pull" };
        match caller {
            Caller::Anonymous => {
                Err(self.challenge(req, Some(&format!("repository:{name}:{action}")), "authentication required"))
            }
            Caller::User { name: user, .. } => Err(error(
                403,
                "DENIED",
                format!(
                    "{user} may not {} {name}; an admin grants it with img serve admin grant {user} {name} {}",
                    want.name(),
                    want.name()
                ),
            )),
        }
    }

    /// A 401 with the challenge of the configured scheme.
    pub(super) fn challenge(&self, req: &Request, scope: Option<&str>, msg: &str) -> Response {
        let value = match self.settings.auth {
            AuthMode::Basic => "Basic realm=\"img serve\"".to_string(),
            AuthMode::Token => {
                let mut v = format!("Bearer realm=\"{}/token\",service=\"img-serve\"", own_origin(req));
                if let Some(s) = scope {
                    v.push_str(&format!(",scope=\"{s}\""));
                }
                v
            }
        };
        error(401, "UNAUTHORIZED", msg).header("WWW-Authenticate", value)
    }
}
