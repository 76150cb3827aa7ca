//! `img images`: listing with docker's filters, straight from the index.

use crate::reference::{self, Reference};
use crate::store::index::ImageRecord;
use crate::store::Store;
use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub pattern: Option<String>,
    pub filters: Vec<String>,
}

/// One row of the listing: an image under one of its names (or none).
#[derive(Debug, Clone)]
pub struct Row {
    pub image: std::rc::Rc<ImageRecord>,
    pub repository: Option<String>,
    pub tag: Option<String>,
}

enum Filter {
    Dangling(bool),
    Reference(String),
    Before(i64, String),
    Since(i64, String),
    Label(String, Option<String>),
}

fn created_key(img: &ImageRecord) -> (i64, i64) {
    (img.created.unwrap_or(0), img.added_at)
}

fn parse_filters(store: &Store, filters: &[String]) -> Result<Vec<Filter>> {
    let mut out = Vec::new();
    for f in filters {
        let (k, v) = f.split_once('=').with_context(|| format!("invalid filter {f:?}: expected KEY=VALUE"))?;
        out.push(match k {
            "dangling" => match v {
                "true" | "1" => Filter::Dangling(true),
                "false" | "0" => Filter::Dangling(false),
                _ => bail!("invalid filter {f:?}: dangling takes true or false"),
            },
            "reference" => Filter::Reference(v.to_string()),
            "before" | "since" => {
                let img = super::resolve_image(store, v).with_context(|| format!("filter {f:?}"))?;
                let (t, _) = created_key(&img);
                if k == "before" {
                    Filter::Before(t, img.id.to_string())
                } else {
                    Filter::Since(t, img.id.to_string())
                }
            }
            "label" => match v.split_once('=') {
                Some((lk, lv)) => Filter::Label(lk.to_string(), Some(lv.to_string())),
                None => Filter::Label(v.to_string(), None),
            },
            _ => bail!("invalid filter {k:?}: img images supports dangling, reference, before, since and label"),
        });
    }
    Ok(out)
}

/// True if a `repo:tag` name matches a user pattern (docker's rules: the
/// pattern matches the repository or repository:tag, short or full form).
fn name_matches(pattern: &str, repository: &str, tag: &str) -> bool {
    let has_glob = pattern.contains(['*', '?', '[']);
    if !has_glob {
        let Ok(r) = Reference::parse(pattern) else {
            return false;
        };
        let repo_ok = r.repository() == repository
            || super::is_short_name(pattern) && super::repository_matches_short(repository, &r);
        if !repo_ok {
            return false;
        }
        return r.tag().is_none_or(|t| t == tag);
    }
    let full = format!("{repository}:{tag}");
    let familiar_repo = Reference::parse(repository).map(|r| r.without_tag_or_digest().familiar()).unwrap_or_default();
    let familiar_full = format!("{familiar_repo}:{tag}");
    [repository, full.as_str(), familiar_repo.as_str(), familiar_full.as_str()]
        .iter()
        .any(|cand| reference::glob_match(pattern, cand))
}

/// The image's `repository@digest` names: one for each repository it has a
/// tag in (however many tags), in the order of its tags.
pub fn repo_digests(img: &ImageRecord) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in &img.tags {
        let d = format!("{}@{}", super::split_name(t).0, img.manifest_digest);
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

pub fn list(store: &Store, opts: &ListOptions) -> Result<Vec<Row>> {
    let filters = parse_filters(store, &opts.filters)?;
    let images = store.index().images_brief()?;
    let mut rows = Vec::new();
    let need_labels = filters.iter().any(|f| matches!(f, Filter::Label(..)));
    let ref_filters: Vec<&str> =
        filters.iter().filter_map(|f| if let Filter::Reference(p) = f { Some(p.as_str()) } else { None }).collect();
    for img in images {
        let img = std::rc::Rc::new(img);
        let (t, _) = created_key(&img);
        let labels: serde_json::Map<String, serde_json::Value> =
            if need_labels { serde_json::from_str(&img.labels).unwrap_or_default() } else { Default::default() };
        let mut keep = true;
        for f in &filters {
            keep &= match f {
                Filter::Dangling(d) => img.tags.is_empty() == *d,
                Filter::Before(bt, id) => t < *bt && img.id.as_str() != id,
                Filter::Since(st, id) => t > *st && img.id.as_str() != id,
                Filter::Label(k, v) => match (labels.get(k), v) {
                    (Some(_), None) => true,
                    (Some(have), Some(want)) => have.as_str() == Some(want.as_str()),
                    _ => false,
                },
                Filter::Reference(_) => true,
            };
        }
        if !keep {
            continue;
        }
        if img.tags.is_empty() {
            if opts.pattern.is_none() && ref_filters.is_empty() {
                rows.push(Row { image: img.clone(), repository: None, tag: None });
            }
            continue;
        }
        for name in &img.tags {
            let (repo, tag) = super::split_name(name);
            if let Some(p) = &opts.pattern {
                if !name_matches(p, repo, tag) {
                    continue;
                }
            }
            if !ref_filters.iter().all(|p| name_matches(p, repo, tag)) {
                continue;
            }
            rows.push(Row { image: img.clone(), repository: Some(repo.to_string()), tag: Some(tag.to_string()) });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::{name_matches, repo_digests};

    #[test]
    fn repo_digests_name_each_repository_once() {
        let d = crate::digest::Digest::of_bytes(b"manifest");
        let img = crate::store::index::ImageRecord {
            id: crate::digest::Digest::of_bytes(b"config"),
            manifest_digest: d.clone(),
            manifest_media_type: String::new(),
            created: None,
            size: 0,
            architecture: String::new(),
            os: String::new(),
            variant: String::new(),
            author: String::new(),
            labels: "{}".into(),
            added_at: 0,
            kind: crate::store::index::ImageKind::Oci,
            last_used: 0,
            pinned: false,
            tags: vec![
                "docker.io/library/app:1".into(),
                "docker.io/library/app:2".into(),
                "docker.io/library/web:1".into(),
                "docker.io/library/app:3".into(),
            ],
        };
        assert_eq!(
            repo_digests(&img),
            vec![format!("docker.io/library/app@{d}"), format!("docker.io/library/web@{d}")]
        );
    }

    #[test]
    fn patterns_match_like_docker() {
        assert!(name_matches("busybox", "docker.io/library/busybox", "latest"));
        assert!(name_matches("busybox:latest", "docker.io/library/busybox", "latest"));
        assert!(!name_matches("busybox:1", "docker.io/library/busybox", "latest"));
        assert!(name_matches("bus*", "docker.io/library/busybox", "latest"));
        assert!(name_matches("docker.io/library/bus*", "docker.io/library/busybox", "latest"));
        assert!(!name_matches("app*", "docker.io/library/busybox", "latest"));
        assert!(name_matches("localhost:5000/app*", "localhost:5000/app1", "v1"));
        assert!(name_matches("bb", "localhost/bb", "1"));
        assert!(name_matches("bb:1", "localhost/bb", "1"));
        assert!(!name_matches("b", "localhost/bb", "1"));
    }
}
