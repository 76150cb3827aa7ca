//! Options every registry operation shares: the client options for a
//! registry host (registries.conf applied), the bandwidth cap (the store's
//! `limit-rate` unless the command gave one) and the platform asked for.

use crate::ratelimit::Rate;
use crate::registry::{config, ClientOptions};
use crate::store::{StoreConfig, StorePaths};
use anyhow::{bail, Result};
use std::path::Path;

/// `base` with the registries configuration applied for `host`: insecure
/// when configured so; an error when the registry is blocked.
pub fn options_for(host: &str, base: &ClientOptions) -> Result<ClientOptions> {
    let conf = config::load()?;
    if let Some(r) = conf.find(host).filter(|r| r.blocked) {
        bail!("{host} is blocked by the registries configuration (registry prefix {:?})", r.prefix);
    }
    let mut o = base.clone();
    o.insecure |= conf.insecure(host);
    Ok(o)
}

/// The cap a command moves bytes under: the one it asked for
/// (`--limit-rate`, 0 for none), else the `limit-rate` of the store at
/// `root`, else none. A rate already decided is kept, so that every part of
/// one command shares one cap.
pub fn rate_for(root: &Path, asked: &Rate) -> Result<Rate> {
    if !asked.is_unset() {
        return Ok(asked.clone());
    }
    let config = StoreConfig::load(&StorePaths::new(root).config())?;
    Ok(config.limit_rate.map(Rate::bytes_per_second).unwrap_or(Rate::Unlimited))
}

/// `base` with its cap decided by [`rate_for`].
pub fn rate_limited(root: &Path, base: &ClientOptions) -> Result<ClientOptions> {
    Ok(ClientOptions { rate: rate_for(root, &base.rate)?, ..base.clone() })
}

/// `--platform OS/ARCH[/VARIANT]` as (os, arch, variant); the host's when
/// none is given.
pub fn parse_platform(p: Option<&str>) -> Result<(String, String, String)> {
    let (os, arch) = crate::archive::resolve::host_platform();
    let Some(p) = p else { return Ok((os.into(), arch.into(), String::new())) };
    let parts: Vec<&str> = p.split('/').collect();
    match parts.as_slice() {
        [os, arch] => Ok((os.to_string(), arch.to_string(), String::new())),
        [os, arch, variant] => Ok((os.to_string(), arch.to_string(), variant.to_string())),
        _ => bail!("invalid --platform {p:?}: expected OS/ARCH[/VARIANT], like linux/arm64/v8"),
    }
}
