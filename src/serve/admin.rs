//! Users, namespaces, visibility and grants of `img serve`, changed in the
//! store's index (a running server sees a change at its next request).

use super::auth::{self, Access};
use super::route;
use crate::store::index::ServeUser;
use crate::store::Store;
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
pub fn user_add(store: &mut Store, name: &str, password: &str, admin: Option<bool>) -> Result<UserChange> {
    check_user_name(name)?;
    if password.is_empty() {
        bail!("user {name}: the password is empty");
    }
    let existing = store.index().serve_user(name)?;
    let admin_now = match (&existing, admin) {
        (_, Some(a)) => a,
        (Some(u), None) => u.admin,
        (None, None) => false,
    };
    if existing.as_ref().is_some_and(|u| u.admin) && !admin_now && admin_count(store)? == 1 {
        bail!("{name} is the last admin; make another admin first (img serve admin user add NAME --admin)");
    }
    let hash = auth::hash_password(password).map_err(|e| anyhow::anyhow!("hashing the password of {name}: {e}"))?;
    let added = store.index_mut().put_serve_user(&ServeUser { name: name.into(), password: hash, admin: admin_now })?;
    Ok(if added { UserChange::Added } else { UserChange::Changed })
}

fn admin_count(store: &Store) -> Result<usize> {
    Ok(store.index().serve_users()?.iter().filter(|u| u.admin).count())
}

/// Removes a user and their grants; the last admin cannot be removed.
pub fn user_rm(store: &mut Store, name: &str) -> Result<()> {
    match store.index().serve_user(name)? {
        None => bail!("no user {name:?}; img serve admin list shows them"),
        Some(u) if u.admin && admin_count(store)? == 1 => {
            bail!("{name} is the last admin and cannot be removed; make another admin first (img serve admin user add NAME --admin)")
        }
        Some(_) => {}
    }
    if !store.index_mut().remove_serve_user(name)? {
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
pub fn namespace_add(store: &mut Store, name: &str, public: bool) -> Result<bool> {
    route::check_namespace(name).map_err(anyhow::Error::msg)?;
    Ok(store.index_mut().put_serve_namespace(name, public)?)
}

pub fn namespace_rm(store: &mut Store, name: &str) -> Result<()> {
    if !store.index_mut().remove_serve_namespace(name)? {
        bail!("no namespace {name:?}; img serve admin list shows them");
    }
    Ok(())
}

/// Gives a repository its own visibility, or (None) its namespace's.
pub fn repository_visibility(store: &mut Store, name: &str, public: Option<bool>) -> Result<()> {
    let n = route::parse_name(name).map_err(|e| anyhow::anyhow!("{e}"))?;
    if store.index().serve_namespace(&n.namespace)?.is_none() {
        bail!("no namespace {:?}; make it with img serve admin namespace add {}", n.namespace, n.namespace);
    }
    Ok(store.index_mut().set_serve_repository_visibility(name, public)?)
}

/// Checks a grant's scope: a namespace that exists, or a repository in one.
fn check_scope(store: &Store, scope: &str) -> Result<()> {
    let ns = match scope.split_once('/') {
        Some(_) => route::parse_name(scope).map_err(|e| anyhow::anyhow!("{e}"))?.namespace,
        None => {
            route::check_namespace(scope).map_err(anyhow::Error::msg)?;
            scope.to_string()
        }
    };
    if store.index().serve_namespace(&ns)?.is_none() {
        bail!("no namespace {ns:?}; make it with img serve admin namespace add {ns}");
    }
    Ok(())
}

pub fn grant(store: &mut Store, user: &str, scope: &str, access: &str) -> Result<()> {
    let Some(a) = Access::parse(access).filter(|a| *a != Access::None) else {
        bail!("access {access:?} is not pull or push");
    };
    check_scope(store, scope)?;
    if !store.index_mut().put_serve_grant(user, scope, a.name())? {
        bail!("no user {user:?}; add one with img serve admin user add {user}");
    }
    Ok(())
}

pub fn revoke(store: &mut Store, user: &str, scope: &str) -> Result<()> {
    if !store.index_mut().remove_serve_grant(user, scope)? {
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
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GrantEntry {
    pub user: String,
    pub scope: String,
    pub access: String,
}

pub fn list(store: &Store) -> Result<Listing> {
    let ix = store.index();
    Ok(Listing {
        users: ix.serve_users()?.into_iter().map(|u| UserEntry { name: u.name, admin: u.admin }).collect(),
        namespaces: ix.serve_namespaces()?.into_iter().map(|(name, public)| NamespaceEntry { name, public }).collect(),
        repositories: ix
            .serve_repository_visibilities()?
            .into_iter()
            .map(|(name, public)| NamespaceEntry { name, public })
            .collect(),
        grants: ix
            .serve_grants(None)?
            .into_iter()
            .map(|(user, scope, access)| GrantEntry { user, scope, access })
            .collect(),
    })
}
