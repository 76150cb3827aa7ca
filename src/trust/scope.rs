//! The policy scopes an image's scope string falls under, most specific
//! first, shared by policy.json and registries.d lookups.

use super::Transport;

/// The scopes that may hold `scope`'s requirements, most specific first
/// (containers/image's `PolicyConfigurationIdentity` then
/// `PolicyConfigurationNamespaces`); the transport's `""` comes after.
///
/// For `docker`, `host/ns/repo:tag` (or `@digest`), `host/ns/repo`,
/// `host/ns`, `host`, then `*.domain` for each parent domain of the host
/// (without its port). For `oci` and `oci-archive`, the path (any `:ref`
/// is not part of the identity, as in containers/image), then each parent
/// directory but `/`. For `docker-archive`, none: only `""` applies.
pub fn scope_candidates(transport: Transport, scope: &str) -> Vec<String> {
    let mut out = Vec::new();
    match transport {
        Transport::Docker => {
            out.push(scope.to_string());
            let mut name = scope.split('@').next().unwrap_or_default();
            let last = name.rfind('/').map(|i| i + 1).unwrap_or(0);
            if let Some(colon) = name[last..].find(':') {
                if name.contains('/') {
                    name = &name[..last + colon];
                }
            }
            loop {
                if out.last().map(String::as_str) != Some(name) {
                    out.push(name.to_string());
                }
                match name.rfind('/') {
                    Some(i) => name = &name[..i],
                    None => break,
                }
            }
            let mut host = name.split(':').next().unwrap_or_default();
            while let Some(dot) = host.find('.') {
                host = &host[dot + 1..];
                out.push(format!("*.{host}"));
            }
        }
        Transport::Oci | Transport::OciArchive => {
            let mut path = scope.split(':').next().unwrap_or_default();
            while path != "/" {
                let Some(i) = path.rfind('/') else { break };
                out.push(path.to_string());
                path = if i == 0 { "/" } else { &path[..i] };
            }
        }
        Transport::DockerArchive => {}
    }
    out
}
