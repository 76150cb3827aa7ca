//! Users, namespaces, repositories, visibility and grants of `img serve`,
//! changed in its backend (a running server sees a change at its next
//! request; every instance of a scaled-out one at once).

use super::auth::{self, Access};
use super::backend::{Backend, RepositoryInfo, ServeUser};
use super::route;
use anyhow::{bail, Result};

/// What `user_add` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserChange {
    Added,
    /// The user existed: their password was set, and their admin flag
    /// only if one was given.
    Changed,
}

/// Adds a user, or sets an existing one's password; `admin` None leaves an
/// existing user's admin flag as it is (a new user is not an admin).
/// Taking the last admin's rights away is refused.
pub fn user_add(b: &dyn Backend, name: &str, password: &str, admin: Option<bool>) -> Result<UserChange> {
    check_user_name(name)?;
    if password.is_empty() {
        bail!("user {name}: the password is empty");
    }
    let existing = b.user(name)?;
    let admin_now = match (&existing, admin) {
        (_, Some(a)) => a,
        (Some(u), None) => u.admin,
        (None, None) => false,
    };
    if existing.as_ref().is_some_and(|u| u.admin) && !admin_now && admin_count(b)? == 1 {
        bail!("{name} is the last admin; make another admin first (img serve admin user add NAME --admin)");
    }
    let hash = auth::hash_password(password).map_err(|e| anyhow::anyhow!("hashing the password of {name}: {e}"))?;
    let added = b.put_user(&ServeUser { name: name.into(), password: hash, admin: admin_now })?;
    Ok(if added { UserChange::Added } else { UserChange::Changed })
}

fn admin_count(b: &dyn Backend) -> Result<usize> {
    Ok(b.users()?.iter().filter(|u| u.admin).count())
}

/// Removes a user and their grants; the last admin cannot be removed.
pub fn user_rm(b: &dyn Backend, name: &str) -> Result<()> {
    match b.user(name)? {
        None => bail!("no user {name:?}; img serve admin list shows them"),
        Some(u) if u.admin && admin_count(b)? == 1 => {
            bail!("{name} is the last admin and cannot be removed; make another admin first (img serve admin user add NAME --admin)")
        }
        Some(_) => {}
    }
    if !b.remove_user(name)? {
        bail!("no user {name:?}; img serve admin list shows them");
    }
    Ok(())
}

/// User names: 2 to 64 letters, digits, `.`, `_` and `-` (never `:`, which
/// ends the name in Basic credentials).
pub fn check_user_name(name: &str) -> Result<()> {
    let ok = (2..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok {
        bail!("user name {name:?} is not valid: 2 to 64 letters, digits, '.', '_' and '-', starting with a letter or digit");
    }
    Ok(())
}

/// Makes a namespace (or changes its visibility); true if made.
pub fn namespace_add(b: &dyn Backend, name: &str, public: bool) -> Result<bool> {
    route::check_namespace(name).map_err(anyhow::Error::msg)?;
    Ok(b.put_namespace(name, public)?)
}

/// Lets clients outside the internal networks (`--internal-network`)
/// reach a namespace, or not (the default).
pub fn namespace_external(b: &dyn Backend, name: &str, external: bool) -> Result<()> {
    if !b.set_namespace_external(name, external)? {
        bail!("no namespace {name:?}; make it with img serve admin namespace add {name}");
    }
    Ok(())
}

/// Removes a namespace with its repositories and their images.
pub fn namespace_rm(b: &dyn Backend, name: &str) -> Result<()> {
    if !b.remove_namespace(name)? {
        bail!("no namespace {name:?}; img serve admin list shows them");
    }
    Ok(())
}

/// The most a summary and a description may hold.
pub const MAX_SUMMARY: usize = 200;
pub const MAX_DESCRIPTION: usize = 64 * 1024;

/// Makes a repository in a namespace that exists, or changes its summary
/// and description (None keeps what it says); true if made.
pub fn repository_add(b: &dyn Backend, name: &str, summary: Option<&str>, description: Option<&str>) -> Result<bool> {
    let n = route::parse_name(name).map_err(|e| anyhow::anyhow!("{e}"))?;
    if b.namespace(&n.namespace)?.is_none() {
        bail!("no namespace {:?}; make it with img serve admin namespace add {}", n.namespace, n.namespace);
    }
    if summary.is_some_and(|s| s.len() > MAX_SUMMARY || s.contains('\n')) {
        bail!("the summary of {name} is one line of at most {MAX_SUMMARY} bytes");
    }
    if description.is_some_and(|d| d.len() > MAX_DESCRIPTION) {
        bail!("the description of {name} is over {MAX_DESCRIPTION} bytes; shorten it");
    }
    let old = b.repository_info(name)?;
    let info = RepositoryInfo {
        name: name.to_string(),
        summary: summary.map(str::to_string).or_else(|| old.as_ref().map(|o| o.summary.clone())).unwrap_or_default(),
        description: description
            .map(str::to_string)
            .or_else(|| old.as_ref().map(|o| o.description.clone()))
            .unwrap_or_default(),
        created_at: old.map(|o| o.created_at).unwrap_or_else(super::backend::now),
    };
    Ok(b.put_repository_info(&info)?)
}

/// Removes a repository with its images (manifests, tags, signatures).
pub fn repository_rm(b: &dyn Backend, name: &str) -> Result<()> {
    route::parse_name(name).map_err(|e| anyhow::anyhow!("{e}"))?;
    if !b.remove_repository(name)? {
        bail!("no repository {name:?}; img serve admin list and the catalog show them");
    }
    Ok(())
}

/// Gives a repository its own visibility, or (None) its namespace's.
pub fn repository_visibility(b: &dyn Backend, name: &str, public: Option<bool>) -> Result<()> {
    let n = route::parse_name(name).map_err(|e| anyhow::anyhow!("{e}"))?;
    if b.namespace(&n.namespace)?.is_none() {
        bail!("no namespace {:?}; make it with img serve admin namespace add {}", n.namespace, n.namespace);
    }
    Ok(b.set_repository_visibility(name, public)?)
}

/// Checks a grant's scope: a namespace that exists, or a repository in one.
fn check_scope(b: &dyn Backend, scope: &str) -> Result<()> {
    let ns = match scope.split_once('/') {
        Some(_) => route::parse_name(scope).map_err(|e| anyhow::anyhow!("{e}"))?.namespace,
        None => {
            route::check_namespace(scope).map_err(anyhow::Error::msg)?;
            scope.to_string()
        }
    };
    if b.namespace(&ns)?.is_none() {
        bail!("no namespace {ns:?}; make it with img serve admin namespace add {ns}");
    }
    Ok(())
}

pub fn grant(b: &dyn Backend, user: &str, scope: &str, access: &str) -> Result<()> {
    let Some(a) = Access::parse(access).filter(|a| *a != Access::None) else {
        bail!("access {access:?} is not pull or push");
    };
    check_scope(b, scope)?;
    if !b.put_grant(user, scope, a.name())? {
        bail!("no user {user:?}; add one with img serve admin user add {user}");
    }
    Ok(())
}

pub fn revoke(b: &dyn Backend, user: &str, scope: &str) -> Result<()> {
    if !b.remove_grant(user, scope)? {
        bail!("{user} has no grant on {scope}; img serve admin list shows the grants");
    }
    Ok(())
}

/// Everything the admin commands manage.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listing {
    pub users: Vec<UserEntry>,
    pub namespaces: Vec<NamespaceEntry>,
    pub repositories: Vec<NamespaceEntry>,
    /// Repositories made explicitly, with their summary and description.
    pub repository_info: Vec<RepositoryInfo>,
    pub grants: Vec<GrantEntry>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct UserEntry {
    pub name: String,
    pub admin: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct NamespaceEntry {
    pub name: String,
    pub public: bool,
    /// For namespaces: reachable from outside the internal networks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<bool>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GrantEntry {
    pub user: String,
    pub scope: String,
    pub access: String,
}

pub fn list(b: &dyn Backend) -> Result<Listing> {
    Ok(Listing {
        users: b.users()?.into_iter().map(|u| UserEntry { name: u.name, admin: u.admin }).collect(),
        namespaces: b
            .namespaces()?
            .into_iter()
            .map(|(name, public)| {
                let external = b.namespace_external(&name).ok();
                NamespaceEntry { name, public, external }
            })
            .collect(),
        repositories: b
            .repository_visibilities()?
            .into_iter()
            .map(|(name, public)| NamespaceEntry { name, public, external: None })
            .collect(),
        repository_info: b.repository_infos()?,
        grants: b.grants(None)?.into_iter().map(|(user, scope, access)| GrantEntry { user, scope, access }).collect(),
    })
}
