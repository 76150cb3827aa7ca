//! Options every registry operation shares: the client options for a
//! registry host (registries.conf applied) and the platform asked for.

use crate::registry::{config, ClientOptions};
use anyhow::{bail, Result};

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
