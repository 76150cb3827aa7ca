//! The URLs of the OCI distribution API, parsed from bytes into what they
//! ask for, and the names `img serve` accepts: a namespace (2 to 30
//! letters, digits, `-` and `_`, no connector at either end) holding
//! repositories (2 to 64 lower-case letters, digits, `_`, `-` and `.`, no
//! separator at either end), as the hosted registry of seed 004 lays them
//! out. Pure: no IO.

use crate::digest::Digest;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`: the API version check.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/NAME/tags/list`.
    Tags { name: Name },
    /// `/v2/NAME/manifests/REFERENCE`.
    Manifest { name: Name, reference: Reference },
    /// `/v2/NAME/blobs/DIGEST`.
    Blob { name: Name, digest: Digest },
    /// `/v2/NAME/blobs/uploads/`: a new upload.
    UploadStart { name: Name },
    /// `/v2/NAME/blobs/uploads/ID`: an upload in progress.
    Upload { name: Name, id: String },
    /// `/v2/NAME/referrers/DIGEST`.
    Referrers { name: Name, digest: Digest },
    /// `/extensions/v2/NAME/signatures/DIGEST`: simple signatures of a manifest.
    Signatures { name: Name, digest: Digest },
}

/// A repository's full name: `NAMESPACE/REPOSITORY`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name {
    pub namespace: String,
    pub repository: String,
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.repository)
    }
}

/// A manifest's reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

/// Why a URL was refused, as the distribution spec's error codes name it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No such endpoint.
    #[error("no such endpoint: {0}")]
    NotFound(String),
    #[error("{0}")]
    NameInvalid(String),
    #[error("{0}")]
    DigestInvalid(String),
    #[error("{0}")]
    TagInvalid(String),
}

impl RouteError {
    /// The spec's error code and the HTTP status.
    pub fn code(&self) -> (&'static str, u16) {
        match self {
            RouteError::NotFound(_) => ("NOT_FOUND", 404),
            RouteError::NameInvalid(_) => ("NAME_INVALID", 400),
            RouteError::DigestInvalid(_) => ("DIGEST_INVALID", 400),
            RouteError::TagInvalid(_) => ("TAG_INVALID", 400),
        }
    }
}

/// Checks a namespace name: 2 to 30 ASCII letters, digits, `-` and `_`,
/// starting and ending with a letter or digit. Registry names are lower
/// case, so upper-case letters are refused with a hint.
pub fn check_namespace(s: &str) -> Result<(), String> {
    let len = s.chars().count();
    if !(2..=30).contains(&len) {
        return Err(format!("namespace {s:?} must be 2 to 30 characters long"));
    }
    if s.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("namespace {s:?}: use lower-case letters ({})", s.to_ascii_lowercase()));
    }
    if !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
        return Err(format!("namespace {s:?} may hold only letters, digits, - and _"));
    }
    let edge = |c: Option<char>| c.is_some_and(|c| c == '-' || c == '_');
    if edge(s.chars().next()) || edge(s.chars().last()) {
        return Err(format!("namespace {s:?} may not start or end with - or _"));
    }
    Ok(())
}

/// Checks a repository name: 2 to 64 lower-case letters, digits and the
/// separators `_`, `-` and `.`, starting and ending with a letter or digit
/// (and, as the distribution spec's grammar wants, no two `.` in a row).
pub fn check_repository(s: &str) -> Result<(), String> {
    let len = s.chars().count();
    if !(2..=64).contains(&len) {
        return Err(format!("repository {s:?} must be 2 to 64 characters long"));
    }
    if !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.') {
        return Err(format!("repository {s:?} may hold only lower-case letters, digits, _, - and ."));
    }
    let sep = |c: Option<char>| c.is_some_and(|c| c == '-' || c == '_' || c == '.');
    if sep(s.chars().next()) || sep(s.chars().last()) {
        return Err(format!("repository {s:?} may not start or end with a separator"));
    }
    if s.contains("..")
        || s.contains("._")
        || s.contains("_.")
        || s.contains(".-")
        || s.contains("-.")
        || s.contains("___")
    {
        return Err(format!("repository {s:?} has separators that do not go together"));
    }
    Ok(())
}

/// `NAMESPACE/REPOSITORY`, both checked.
pub fn parse_name(s: &str) -> Result<Name, RouteError> {
    let Some((ns, repo)) = s.split_once('/') else {
        return Err(RouteError::NameInvalid(format!("{s:?}: a repository is named NAMESPACE/REPOSITORY")));
    };
    if repo.contains('/') {
        return Err(RouteError::NameInvalid(format!("{s:?}: a repository is named NAMESPACE/REPOSITORY (one /)")));
    }
    check_namespace(ns).map_err(RouteError::NameInvalid)?;
    check_repository(repo).map_err(RouteError::NameInvalid)?;
    Ok(Name { namespace: ns.to_string(), repository: repo.to_string() })
}

/// A tag, as the distribution spec's grammar allows it.
pub fn check_tag(t: &str) -> Result<(), String> {
    let mut cs = t.chars();
    let first_ok = cs.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok || t.len() > 128 || !cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-') {
        return Err(format!("tag {t:?} is not valid: up to 128 letters, digits, _, . and -, not starting with . or -"));
    }
    Ok(())
}

fn digest(s: &str) -> Result<Digest, RouteError> {
    Digest::parse(s).map_err(|e| RouteError::DigestInvalid(format!("{s:?}: {e}")))
}

/// Parses a request path (without the query).
pub fn parse(path: &str) -> Result<Route, RouteError> {
    let not_found = || RouteError::NotFound(path.to_string());
    if let Some(rest) = path.strip_prefix("/extensions/v2/") {
        let (name, d) = rest.rsplit_once("/signatures/").ok_or_else(not_found)?;
        return Ok(Route::Signatures { name: parse_name(name)?, digest: digest(d)? });
    }
    let rest = path.strip_prefix("/v2").ok_or_else(not_found)?;
    if rest.is_empty() || rest == "/" {
        return Ok(Route::Base);
    }
    let rest = rest.strip_prefix('/').ok_or_else(not_found)?;
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Ok(Route::Tags { name: parse_name(name)? });
    }
    if let Some((name, r)) = rest.rsplit_once("/manifests/") {
        let name = parse_name(name)?;
        let reference = if r.contains(':') {
            Reference::Digest(digest(r)?)
        } else {
            check_tag(r).map_err(RouteError::TagInvalid)?;
            Reference::Tag(r.to_string())
        };
        return Ok(Route::Manifest { name, reference });
    }
    if let Some((name, id)) = rest.rsplit_once("/blobs/uploads/") {
        let name = parse_name(name)?;
        if id.is_empty() {
            return Ok(Route::UploadStart { name });
        }
        let ok = id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(RouteError::NotFound(format!("upload {id:?}")));
        }
        return Ok(Route::Upload { name, id: id.to_string() });
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads") {
        return Ok(Route::UploadStart { name: parse_name(name)? });
    }
    if let Some((name, d)) = rest.rsplit_once("/blobs/") {
        return Ok(Route::Blob { name: parse_name(name)?, digest: digest(d)? });
    }
    if let Some((name, d)) = rest.rsplit_once("/referrers/") {
        return Ok(Route::Referrers { name: parse_name(name)?, digest: digest(d)? });
    }
    Err(not_found())
}

/// The pairs of a query string, percent-decoded (`+` is a space).
pub fn query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `Range: bytes=START-[END]` of a blob of `size` bytes: the bytes to send
/// (end exclusive), or None when the range cannot be satisfied.
pub fn byte_range(header: &str, size: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", "") => return None,
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.saturating_sub(n), size)
        }
        (s, "") => (s.parse().ok()?, size),
        (s, e) => {
            let (s, e): (u64, u64) = (s.parse().ok()?, e.parse().ok()?);
            if e < s {
                return None;
            }
            (s, e.saturating_add(1).min(size))
        }
    };
    (start < size && start < end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn name(s: &str) -> Name {
        parse_name(s).unwrap()
    }

    #[test]
    fn every_endpoint_parses() {
        assert_eq!(parse("/v2/").unwrap(), Route::Base);
        assert_eq!(parse("/v2").unwrap(), Route::Base);
        assert_eq!(parse("/v2/_catalog").unwrap(), Route::Catalog);
        assert_eq!(parse("/v2/team/app/tags/list").unwrap(), Route::Tags { name: name("team/app") });
        assert_eq!(
            parse("/v2/team/app/manifests/1.0").unwrap(),
            Route::Manifest { name: name("team/app"), reference: Reference::Tag("1.0".into()) }
        );
        assert_eq!(
            parse(&format!("/v2/team/app/manifests/{D}")).unwrap(),
            Route::Manifest { name: name("team/app"), reference: Reference::Digest(Digest::parse(D).unwrap()) }
        );
        assert_eq!(
            parse(&format!("/v2/team/app/blobs/{D}")).unwrap(),
            Route::Blob { name: name("team/app"), digest: Digest::parse(D).unwrap() }
        );
        assert_eq!(parse("/v2/team/app/blobs/uploads/").unwrap(), Route::UploadStart { name: name("team/app") });
        assert_eq!(parse("/v2/team/app/blobs/uploads").unwrap(), Route::UploadStart { name: name("team/app") });
        assert_eq!(
            parse("/v2/team/app/blobs/uploads/3f2a-11").unwrap(),
            Route::Upload { name: name("team/app"), id: "3f2a-11".into() }
        );
        assert_eq!(
            parse(&format!("/v2/team/app/referrers/{D}")).unwrap(),
            Route::Referrers { name: name("team/app"), digest: Digest::parse(D).unwrap() }
        );
    }

    #[test]
    fn bad_urls_get_the_specs_codes() {
        assert_eq!(parse("/v1/x").unwrap_err().code(), ("NOT_FOUND", 404));
        assert_eq!(parse("/v2/team/app/nothing").unwrap_err().code(), ("NOT_FOUND", 404));
        assert_eq!(parse("/v2/app/manifests/1").unwrap_err().code(), ("NAME_INVALID", 400));
        assert_eq!(parse("/v2/a/b/c/manifests/1").unwrap_err().code(), ("NAME_INVALID", 400));
        assert_eq!(parse("/v2/team/app/manifests/-x").unwrap_err().code(), ("TAG_INVALID", 400));
        assert_eq!(parse("/v2/team/app/blobs/sha256:../x").unwrap_err().code(), ("DIGEST_INVALID", 400));
        assert_eq!(parse("/v2/team/app/blobs/uploads/../../x").unwrap_err().code(), ("NOT_FOUND", 404));
        assert_eq!(parse("/v2/team/app/blobs/uploads/a%2Fb").unwrap_err().code(), ("NOT_FOUND", 404));
    }

    #[test]
    fn names_follow_the_hosted_registrys_rules() {
        for ok in ["ab", "team-1", "a_b", "x0123456789012345678901234567"] {
            assert!(check_namespace(ok).is_ok(), "{ok}");
        }
        for bad in ["a", "-ab", "ab_", "a.b", "Team", "a b", &"x".repeat(31)] {
            assert!(check_namespace(bad).is_err(), "{bad}");
        }
        assert!(check_namespace("Team").unwrap_err().contains("team"));
        for ok in ["ab", "web.app", "web-app_2", &"r".repeat(64)] {
            assert!(check_repository(ok).is_ok(), "{ok}");
        }
        for bad in ["a", ".ab", "ab-", "Web", "a..b", "a/b", &"r".repeat(65)] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queries_and_ranges() {
        assert_eq!(
            query("n=2&last=team%2Fapp&digest=sha256%3Aab+c"),
            vec![("n".into(), "2".into()), ("last".into(), "team/app".into()), ("digest".into(), "sha256:ab c".into())]
        );
        assert_eq!(query("bad=%zz&x"), vec![("bad".into(), "%zz".into()), ("x".into(), "".into())]);
        assert_eq!(byte_range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(byte_range("bytes=90-", 100), Some((90, 100)));
        assert_eq!(byte_range("bytes=-10", 100), Some((90, 100)));
        assert_eq!(byte_range("bytes=95-200", 100), Some((95, 100)));
        assert_eq!(byte_range("bytes=100-", 100), None);
        assert_eq!(byte_range("bytes=5-1", 100), None);
        assert_eq!(byte_range("bytes=0-1,5-6", 100), None);
        assert_eq!(byte_range("items=0-1", 100), None);
    }

    proptest::proptest! {
        #[test]
        fn any_path_and_query_is_a_route_or_an_error(p in "(?s).{0,200}", q in "(?s).{0,200}") {
            let _ = parse(&p);
            let _ = parse(&format!("/v2/{p}"));
            let _ = query(&q);
            let _ = byte_range(&q, 1000);
        }
    }
}
