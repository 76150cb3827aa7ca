//! Listings: the catalog, a repository's tags (both paginated) and the
//! image center page, each showing only what the caller may pull.

use super::{error, Api, Caller, Reply};
use crate::serve::auth::Access;
use crate::serve::http::{Request, Response};
use crate::serve::route::{self, Name};

impl Api {
    pub(super) fn catalog(&self, req: &Request, caller: &Caller) -> Reply<Response> {
        let all = self.backend.repositories()?;
        let mut visible = Vec::new();
        for r in all {
            let Ok(name) = route::parse_name(&r) else { continue };
            if self.access(caller, &name)? >= Access::Pull {
                visible.push(r);
            }
        }
        let (page, next) = paginate(&visible, &req.query)?;
        let mut resp = Response::new(200).json(&serde_json::json!({ "repositories": page }));
        if let Some((n, last)) = next {
            resp = resp.header("Link", format!("</v2/_catalog?n={n}&last={last}>; rel=\"next\""));
        }
        Ok(resp)
    }

    pub(super) fn tags(&self, req: &Request, name: &Name) -> Reply<Response> {
        let repo = name.to_string();
        let tags = self.backend.tags(&repo)?;
        if tags.is_empty() && !self.backend.repositories()?.contains(&repo) {
            return Ok(error(404, "NAME_UNKNOWN", format!("repository {repo} is not known")));
        }
        let (page, next) = paginate(&tags, &req.query)?;
        let mut resp = Response::new(200).json(&serde_json::json!({ "name": repo, "tags": page }));
        if let Some((n, last)) = next {
            resp = resp.header("Link", format!("</v2/{repo}/tags/list?n={n}&last={last}>; rel=\"next\""));
        }
        Ok(resp)
    }
}

type Page<'a> = (&'a [String], Option<(usize, String)>);

fn paginate<'a>(items: &'a [String], query: &str) -> Reply<Page<'a>> {
    let q = route::query(query);
    let get = |k: &str| q.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
    let start = match get("last") {
        Some(l) => items.partition_point(|t| *t <= l),
        None => 0,
    };
    let rest = &items[start..];
    match get("n") {
        None => Ok((rest, None)),
        Some(n) => {
            let n: usize =
                n.parse().map_err(|_| error(400, "PAGINATION_NUMBER_INVALID", format!("n={n:?} is not a number")))?;
            if n >= rest.len() {
                Ok((rest, None))
            } else {
                let page = &rest[..n];
                let last = page.last().cloned().unwrap_or_default();
                Ok((page, if n == 0 { None } else { Some((n, last)) }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_n_and_last() {
        let items: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let (p, next) = paginate(&items, "n=2").ok().unwrap();
        assert_eq!(p, &items[..2]);
        assert_eq!(next, Some((2, "b".to_string())));
        let (p, next) = paginate(&items, "n=2&last=b").ok().unwrap();
        assert_eq!(p, &items[2..]);
        assert_eq!(next, None);
        let (p, _) = paginate(&items, "last=bb").ok().unwrap();
        assert_eq!(p, &items[2..]);
        assert!(paginate(&items, "n=x").is_err());
        let (p, next) = paginate(&items, "").ok().unwrap();
        assert_eq!((p.len(), next), (4, None));
    }
}
