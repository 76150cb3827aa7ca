//! `img login`: credentials are checked against the registry's `/v2/`
//! and saved in the auth file only once it accepts them.

use crate::registry::authfile::{self, Credentials};
use crate::registry::{Client, ClientOptions, RegistryError};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Credentials the registry accepted, and where they were saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedIn {
    pub host: String,
    pub username: String,
    pub authfile: PathBuf,
}

/// Logs in to `host` (a registry's host name, as the auth file keys it)
/// with `creds` over a client made from `client`, then saves them in
/// `authfile`. Refused credentials are not saved.
pub fn login(host: &str, creds: &Credentials, client: &ClientOptions, authfile: &Path) -> Result<LoggedIn> {
    let mut opts = super::options::options_for(host, client)?;
    opts.creds = Some(creds.clone());
    // Verify against the registry before saving: /v2/ with the credentials.
    let client = Client::connect(host, &opts).with_context(|| format!("logging in to {host}"))?;
    let url = client.url("/v2/");
    // A refusal of these credentials says so, not "run img login" (found:
    // the advice was the command that had just failed).
    let refused = |status: u16| {
        anyhow::anyhow!(
            "logging in to {host}: the registry refused the user name or password of {} ({status}); check them and try again; the credentials were not saved",
            creds.username
        )
    };
    let resp = match client.request("GET", &url, &[], "", None) {
        Err(RegistryError::Unauthorized { status, .. }) => return Err(refused(status)),
        r => r.with_context(|| format!("logging in to {host}"))?,
    };
    if resp.status == 401 || resp.status == 403 {
        return Err(refused(resp.status));
    }
    if resp.status != 200 {
        return Err(client.status_error(&format!("logging in to {host}"), resp))
            .context("the credentials were not saved");
    }
    authfile::store(authfile, host, creds)?;
    Ok(LoggedIn { host: host.to_string(), username: creds.username.clone(), authfile: authfile.to_path_buf() })
}

/// The user name saved in `authfile` for `host`, if any (`img login
/// --get-login`).
pub fn saved_username(authfile: &Path, host: &str) -> Result<Option<String>> {
    Ok(authfile::lookup(Some(authfile), host)?.map(|c| c.username))
}
