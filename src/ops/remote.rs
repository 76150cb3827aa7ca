//! Reading a registry without pulling: `img search` (the catalog API),
//! `img tags` and `img inspect docker://REF` (manifest and config only).

use super::options::{options_for, parse_platform};
use super::pull::fetch_manifest;
use crate::image;
use crate::reference::Reference;
use crate::registry::{self, Client, ClientOptions, Repo};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// One search hit, in the shape podman's `search --format` knows.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SearchResult {
    pub index: String,
    pub name: String,
    pub description: String,
    pub stars: u64,
    pub official: String,
    pub automated: String,
    pub tag: String,
}

/// docker search's filters: `is-official=BOOL`, `is-automated=BOOL`, `stars=N`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SearchFilter {
    official: Option<bool>,
    automated: Option<bool>,
    stars: u64,
}

impl SearchFilter {
    pub fn parse(filters: &[String]) -> Result<SearchFilter> {
        let mut f = SearchFilter::default();
        for kv in filters {
            let (k, v) = kv.split_once('=').with_context(|| format!("--filter {kv:?}: write KEY=VALUE"))?;
            let boolean = || match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => bail!("--filter {kv:?}: {k} is true or false"),
            };
            match k {
                "is-official" => f.official = Some(boolean()?),
                "is-automated" => f.automated = Some(boolean()?),
                "stars" => {
                    f.stars = v.parse().with_context(|| format!("--filter {kv:?}: stars is a number"))?;
                }
                _ => bail!("--filter {kv:?}: unknown filter {k}; use is-official, is-automated or stars"),
            }
        }
        Ok(f)
    }

    /// Whether `r` passes (a registry's catalog gives no stars, and nothing
    /// in it is official or automated, so those filters leave nothing).
    pub fn keeps(&self, r: &SearchResult) -> bool {
        let yes = |s: &str| !s.is_empty();
        self.official.is_none_or(|o| o == yes(&r.official))
            && self.automated.is_none_or(|a| a == yes(&r.automated))
            && r.stars >= self.stars
    }
}

/// The tags of `repository` (`REGISTRY/NAME`, `docker://` or not), as the
/// registry lists them (`img tags`).
pub fn tags(repository: &str, opts: &ClientOptions) -> Result<Vec<String>> {
    let r = Reference::parse(repository.strip_prefix("docker://").unwrap_or(repository))?;
    let client = Client::connect(r.domain(), &options_for(r.domain(), opts)?)?;
    Ok(Repo::new(&client, r.path()).tags()?)
}

/// Splits `REGISTRY/TERM` (the first part is a registry when it has a dot,
/// a colon or is `localhost`) and searches that registry's catalog for
/// repositories whose name contains TERM (case-insensitive).
pub fn search(query: &str, limit: usize, opts: &ClientOptions) -> Result<Vec<SearchResult>> {
    let q = query.strip_prefix("docker://").unwrap_or(query);
    let (registry, term) = match q.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
        _ if q.contains(['.', ':']) && !q.contains('/') => (q, ""),
        _ => ("docker.io", q),
    };
    let what = format!("searching {registry} for {term:?}");
    let opts = options_for(registry, opts)?;
    let client = Client::connect(registry, &opts).with_context(|| what.clone())?;
    let repos = registry::catalog(&client, 1_000_000).with_context(|| what.clone())?;
    let term = term.to_lowercase();
    Ok(repos
        .into_iter()
        .filter(|r| r.to_lowercase().contains(&term))
        .take(limit)
        .map(|r| SearchResult {
            index: registry.to_string(),
            name: format!("{registry}/{r}"),
            description: String::new(),
            stars: 0,
            official: String::new(),
            automated: String::new(),
            tag: String::new(),
        })
        .collect())
}

/// What `inspect docker://REF` shows.
pub enum RemoteInspect {
    /// The manifest (or index) as the registry serves it.
    Raw(Vec<u8>),
    /// The image config, as JSON.
    Config(Value),
    /// A summary in skopeo's shape.
    Summary(Value),
}

pub enum InspectWhat {
    Raw,
    Config,
    Summary,
}

pub fn inspect(
    reference: &str,
    platform: Option<&str>,
    what: InspectWhat,
    opts: &ClientOptions,
) -> Result<RemoteInspect> {
    let refstr = reference.strip_prefix("docker://").unwrap_or(reference);
    let r = Reference::parse_with_default_tag(refstr).with_context(|| format!("invalid image reference {refstr:?}"))?;
    let name = r.to_string();
    let ctx = || format!("inspecting {name}");
    let opts = options_for(r.domain(), opts)?;
    let client = Client::connect(r.domain(), &opts).with_context(ctx)?;
    let repo = Repo::new(&client, r.path());
    let reference = r.digest().or(r.tag()).unwrap_or("latest").to_string();
    if let InspectWhat::Raw = what {
        let top = repo.manifest(&reference).with_context(ctx)?;
        // Parsed only to refuse what pull would refuse.
        image::parse_document(&format!("manifest of {name}"), &top.bytes, None).with_context(ctx)?;
        return Ok(RemoteInspect::Raw(top.bytes));
    }
    let (os, arch, variant) = parse_platform(platform)?;
    let (top, _, manifest) = fetch_manifest(&repo, &name, &reference, (&os, &arch, &variant)).with_context(ctx)?;
    let config_bytes = repo.blob_bytes(&manifest.config.digest, image::MAX_CONFIG_SIZE).with_context(ctx)?;
    let config = image::parse_config(&format!("config of {name}"), &config_bytes).with_context(ctx)?;
    if let InspectWhat::Config = what {
        return Ok(RemoteInspect::Config(config.raw.clone()));
    }
    let tags = repo.tags().unwrap_or_default();
    let raw = &config.raw;
    let layers: Vec<Value> = manifest.layers.iter().map(|l| json!(l.digest.as_str())).collect();
    let layers_data: Vec<Value> = manifest
        .layers
        .iter()
        .map(|l| {
            let ann: serde_json::Map<String, Value> =
                l.annotations.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            json!({"MIMEType": l.media_type, "Digest": l.digest.as_str(), "Size": l.size,
                   "Annotations": if ann.is_empty() { Value::Null } else { Value::Object(ann) }})
        })
        .collect();
    let cfg = raw.get("config").cloned().unwrap_or(Value::Null);
    Ok(RemoteInspect::Summary(json!({
        "Name": format!("{}/{}", r.domain(), r.path()),
        "Digest": top.digest.as_str(),
        "RepoTags": tags,
        "Created": raw.get("created").cloned().unwrap_or(Value::Null),
        "DockerVersion": raw.get("docker_version").cloned().unwrap_or(json!("")),
        "Labels": cfg.get("Labels").cloned().unwrap_or(Value::Null),
        "Architecture": raw.get("architecture").cloned().unwrap_or(json!("")),
        "Os": raw.get("os").cloned().unwrap_or(json!("")),
        "Layers": layers,
        "LayersData": layers_data,
        "Env": cfg.get("Env").cloned().unwrap_or(Value::Null),
    })))
}

#[cfg(test)]
mod search_filter_tests {
    use super::*;

    fn r(stars: u64, official: &str) -> SearchResult {
        SearchResult {
            index: "x".into(),
            name: "x/app".into(),
            description: String::new(),
            stars,
            official: official.into(),
            automated: String::new(),
            tag: String::new(),
        }
    }

    #[test]
    fn search_filters_are_docker_s() {
        let f = |v: &[&str]| SearchFilter::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(f(&["is-official=true"]).unwrap().keeps(&r(0, "[OK]")));
        assert!(!f(&["is-official=true"]).unwrap().keeps(&r(0, "")));
        assert!(f(&["is-official=false"]).unwrap().keeps(&r(0, "")));
        assert!(!f(&["stars=10"]).unwrap().keeps(&r(3, "")));
        assert!(f(&["stars=10"]).unwrap().keeps(&r(10, "")));
        assert!(f(&[]).unwrap().keeps(&r(0, "")));
        assert!(f(&["stars=x"]).is_err());
        assert!(f(&["color=red"]).unwrap_err().to_string().contains("unknown filter"));
        assert!(f(&["is-official=yes"]).is_err());
    }
}
