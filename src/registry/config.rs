//! Registry configuration: containers-registries.conf(5) (version 2, and the
//! version 1 tables) and iSulad's `daemon.json` (`registry-mirrors`,
//! `insecure-registries`). Parsing is pure; `load` reads the files.
//!
//! Files, as podman reads them: `$CONTAINERS_REGISTRIES_CONF` if set, else
//! `~/.config/containers/registries.conf` if it exists, else
//! `/etc/containers/registries.conf`, then the drop-ins in the matching
//! `registries.conf.d/` in name order. iSulad's file is
//! `$IMG_ISULAD_DAEMON_JSON` or `/etc/isulad/daemon.json`.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Largest configuration file read.
const MAX_FILE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {msg}; fix or remove the file")]
    Invalid { path: String, msg: String },
}

/// When a mirror is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullFrom {
    #[default]
    All,
    DigestOnly,
    TagOnly,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub location: String,
    pub insecure: bool,
    pub pull_from: PullFrom,
}

/// One `[[registry]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// What names it applies to: `host[:port][/path]`, or `*.domain`.
    pub prefix: String,
    /// Where those names are fetched from (the prefix is replaced by it).
    pub location: String,
    pub insecure: bool,
    pub blocked: bool,
    pub mirrors: Vec<Mirror>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Registries tried, in order, for a short name (`busybox`).
    pub search: Vec<String>,
    pub registries: Vec<Registry>,
}

/// One place to try for an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The registry host (`mirror.example:5000`).
    pub host: String,
    /// The repository path on that host.
    pub path: String,
    pub insecure: bool,
    pub mirror: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct RawFile {
    #[serde(default)]
    unqualified_search_registries: Option<Vec<String>>,
    #[serde(default)]
    registry: Vec<RawRegistry>,
    /// Version 1: `[registries.search]`, `[registries.insecure]`, `[registries.block]`.
    #[serde(default)]
    registries: Option<RawV1>,
    // Keys img does not use (aliases, short-name-mode, credential-helpers) are ignored.
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct RawRegistry {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror: Vec<RawMirror>,
    #[serde(default)]
    mirror_by_digest_only: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct RawMirror {
    location: String,
    #[serde(default)]
    insecure: bool,
    pull_from_mirror: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawV1 {
    #[serde(default)]
    search: RawList,
    #[serde(default)]
    insecure: RawList,
    #[serde(default)]
    block: RawList,
}

#[derive(Deserialize, Default)]
struct RawList {
    #[serde(default)]
    registries: Vec<String>,
}

fn invalid(path: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { path: path.to_string(), msg: msg.into() }
}

/// A registry name or prefix as the configuration may give it: no scheme,
/// no spaces, no trailing slash.
fn check_location(path: &str, what: &str, s: &str) -> Result<String, ConfigError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(invalid(path, format!("{what} is empty")));
    }
    if t.contains("://") {
        return Err(invalid(path, format!("{what} {t:?} must not have a scheme (write host[:port][/path])")));
    }
    if t.chars().any(|c| c.is_whitespace() || c.is_control()) || t.ends_with('/') {
        return Err(invalid(path, format!("{what} {t:?} is not a registry name")));
    }
    Ok(t.to_string())
}

/// Parses one registries.conf file into `into` (later files add to and
/// override earlier ones, as drop-ins do).
pub fn parse_registries_conf(path: &str, text: &str, into: &mut Config) -> Result<(), ConfigError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| invalid(path, format!("not valid TOML: {}", e.message())))?;
    if let Some(search) = raw.unqualified_search_registries {
        into.search = search
            .iter()
            .map(|s| check_location(path, "unqualified-search-registries entry", s))
            .collect::<Result<_, _>>()?;
    }
    if let Some(v1) = raw.registries {
        if !raw.registry.is_empty() {
            return Err(invalid(path, "mixes the version 1 [registries.*] tables with version 2 [[registry]] tables"));
        }
        into.search.extend(
            v1.search
                .registries
                .iter()
                .map(|s| check_location(path, "search entry", s))
                .collect::<Result<Vec<_>, _>>()?,
        );
        for (list, insecure, blocked) in [(&v1.insecure, true, false), (&v1.block, false, true)] {
            for r in &list.registries {
                let loc = check_location(path, "registry", r)?;
                upsert(
                    into,
                    Registry { prefix: loc.clone(), location: loc, insecure, blocked, mirrors: vec![] },
                    insecure,
                    blocked,
                );
            }
        }
        return Ok(());
    }
    for r in raw.registry {
        let location = match &r.location {
            Some(l) if !l.trim().is_empty() => check_location(path, "location", l)?,
            _ => String::new(),
        };
        let prefix = match &r.prefix {
            Some(p) => check_location(path, "prefix", p)?,
            None if !location.is_empty() => location.clone(),
            None => return Err(invalid(path, "a [[registry]] needs a location or a prefix")),
        };
        if prefix.starts_with("*.") && !location.is_empty() {
            return Err(invalid(path, format!("the wildcard prefix {prefix:?} cannot have a location")));
        }
        if prefix.contains('*') && !prefix.starts_with("*.") {
            return Err(invalid(path, format!("prefix {prefix:?}: a wildcard is allowed only as *.domain")));
        }
        let mut mirrors = Vec::new();
        for m in &r.mirror {
            let pull_from = match m.pull_from_mirror.as_deref() {
                None | Some("all") | Some("") => {
                    if r.mirror_by_digest_only {
                        PullFrom::DigestOnly
                    } else {
                        PullFrom::All
                    }
                }
                Some("digest-only") => PullFrom::DigestOnly,
                Some("tag-only") => PullFrom::TagOnly,
                Some(o) => {
                    return Err(invalid(path, format!("pull-from-mirror {o:?}: use all, digest-only or tag-only")))
                }
            };
            mirrors.push(Mirror {
                location: check_location(path, "mirror location", &m.location)?,
                insecure: m.insecure,
                pull_from,
            });
        }
        let location = if location.is_empty() { prefix.clone() } else { location };
        let entry = Registry { prefix, location, insecure: r.insecure, blocked: r.blocked, mirrors };
        into.registries.retain(|e| e.prefix != entry.prefix);
        into.registries.push(entry);
    }
    Ok(())
}

fn upsert(into: &mut Config, entry: Registry, insecure: bool, blocked: bool) {
    match into.registries.iter_mut().find(|e| e.prefix == entry.prefix) {
        Some(e) => {
            e.insecure |= insecure;
            e.blocked |= blocked;
        }
        None => into.registries.push(entry),
    }
}

/// Adds iSulad's `registry-mirrors` (searched for short names) and
/// `insecure-registries` from its daemon.json.
pub fn parse_isulad_daemon_json(path: &str, text: &str, into: &mut Config) -> Result<(), ConfigError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| invalid(path, format!("not valid JSON: {e}")))?;
    let list = |key: &str| -> Result<Vec<String>, ConfigError> {
        match v.get(key) {
            None | Some(serde_json::Value::Null) => Ok(vec![]),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|x| {
                    let s = x.as_str().ok_or_else(|| invalid(path, format!("{key} must list strings")))?;
                    let s = s.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
                    check_location(path, key, s)
                })
                .collect(),
            Some(_) => Err(invalid(path, format!("{key} must be a list"))),
        }
    };
    for m in list("registry-mirrors")? {
        if !into.search.contains(&m) {
            into.search.push(m);
        }
    }
    for r in list("insecure-registries")? {
        upsert(
            into,
            Registry { prefix: r.clone(), location: r, insecure: true, blocked: false, mirrors: vec![] },
            true,
            false,
        );
    }
    Ok(())
}

fn read_small(path: &Path) -> Result<Option<String>, ConfigError> {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(invalid(&path.display().to_string(), format!("cannot read it: {e}"))),
    };
    let mut s = String::new();
    f.take(MAX_FILE + 1)
        .read_to_string(&mut s)
        .map_err(|e| invalid(&path.display().to_string(), format!("cannot read it: {e}")))?;
    if s.len() as u64 > MAX_FILE {
        return Err(invalid(&path.display().to_string(), "larger than 1 MiB"));
    }
    Ok(Some(s))
}

fn main_conf_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CONTAINERS_REGISTRIES_CONF") {
        return PathBuf::from(p);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let user = PathBuf::from(home).join(".config/containers/registries.conf");
        if user.exists() {
            return user;
        }
    }
    PathBuf::from("/etc/containers/registries.conf")
}

/// The files of registries.conf's format that are read, in order: podman's
/// (with its drop-in directory), then isula-build's registries.toml.
fn registries_conf_files() -> Vec<PathBuf> {
    let main = main_conf_path();
    let mut out = vec![main.clone()];
    if let Ok(rd) = std::fs::read_dir(main.with_extension("conf.d")) {
        let mut files: Vec<PathBuf> =
            rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "conf")).collect();
        files.sort();
        out.extend(files);
    }
    out.push(
        std::env::var_os("IMG_ISULA_BUILD_REGISTRIES")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/etc/isula-build/registries.toml".into()),
    );
    out
}

fn isulad_daemon_json() -> PathBuf {
    std::env::var_os("IMG_ISULAD_DAEMON_JSON").map(PathBuf::from).unwrap_or_else(|| "/etc/isulad/daemon.json".into())
}

/// Reads the configuration from the files podman, isula-build and iSulad use.
pub fn load() -> Result<Config, ConfigError> {
    let mut c = Config::default();
    for f in registries_conf_files() {
        if let Some(text) = read_small(&f)? {
            parse_registries_conf(&f.display().to_string(), &text, &mut c)?;
        }
    }
    let isulad = isulad_daemon_json();
    if let Some(text) = read_small(&isulad)? {
        parse_isulad_daemon_json(&isulad.display().to_string(), &text, &mut c)?;
    }
    Ok(c)
}

/// The configuration files that exist and are read (`img info` lists them).
pub fn files_in_use() -> Vec<PathBuf> {
    let mut files = registries_conf_files();
    files.push(isulad_daemon_json());
    files.retain(|f| f.is_file());
    files
}

/// True if `name` (`host[:port]/path`) falls under `prefix`.
fn prefix_matches(prefix: &str, name: &str) -> bool {
    if let Some(domain) = prefix.strip_prefix("*.") {
        let host = name.split('/').next().unwrap_or(name);
        let host = host.split(':').next().unwrap_or(host);
        return host.ends_with(&format!(".{domain}"));
    }
    name == prefix
        || (name.starts_with(prefix)
            && matches!(name.as_bytes().get(prefix.len()), Some(b'/') | Some(b':') | Some(b'@')))
}

impl Config {
    /// The `[[registry]]` entry for `name` (`host/path`): the longest matching prefix.
    pub fn find(&self, name: &str) -> Option<&Registry> {
        self.registries.iter().filter(|r| prefix_matches(&r.prefix, name)).max_by_key(|r| {
            // An exact prefix beats a wildcard.
            if r.prefix.starts_with("*.") {
                0
            } else {
                r.prefix.len() + 1
            }
        })
    }

    /// True if the registry `host` is marked insecure.
    pub fn insecure(&self, host: &str) -> bool {
        self.find(host).is_some_and(|r| r.insecure)
    }

    /// Where to look for `host/path`, in order: its mirrors (those whose
    /// `pull-from-mirror` allows this kind of reference), then the location.
    /// Refuses a blocked registry.
    pub fn endpoints(&self, host: &str, path: &str, by_digest: bool) -> Result<Vec<Endpoint>, String> {
        let name = format!("{host}/{path}");
        let Some(r) = self.find(&name) else {
            return Ok(vec![Endpoint {
                host: host.to_string(),
                path: path.to_string(),
                insecure: false,
                mirror: false,
            }]);
        };
        if r.blocked {
            return Err(format!("{name} is blocked by the registries configuration (registry prefix {:?})", r.prefix));
        }
        let rewrite = |location: &str| -> (String, String) {
            let full = if r.prefix.starts_with("*.") {
                name.clone()
            } else {
                format!("{location}{}", &name[r.prefix.len().min(name.len())..])
            };
            match full.split_once('/') {
                Some((h, p)) => (h.to_string(), p.to_string()),
                None => (full.clone(), path.to_string()),
            }
        };
        let mut out = Vec::new();
        for m in &r.mirrors {
            let ok = match m.pull_from {
                PullFrom::All => true,
                PullFrom::DigestOnly => by_digest,
                PullFrom::TagOnly => !by_digest,
            };
            if ok {
                let (h, p) = rewrite(&m.location);
                out.push(Endpoint { host: h, path: p, insecure: m.insecure, mirror: true });
            }
        }
        let (h, p) = rewrite(&r.location);
        out.push(Endpoint { host: h, path: p, insecure: r.insecure, mirror: false });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> Config {
        let mut c = Config::default();
        parse_registries_conf("test.conf", text, &mut c).unwrap();
        c
    }

    #[test]
    fn version_2_with_mirrors_and_prefixes() {
        let c = conf(
            r#"
unqualified-search-registries = ["reg.example:5000", "docker.io"]
short-name-mode = "enforcing"
[[registry]]
prefix = "docker.io/library"
location = "internal.example/dockerhub"
[[registry.mirror]]
location = "mirror-a.example:5000/hub"
insecure = true
[[registry.mirror]]
location = "mirror-b.example"
pull-from-mirror = "digest-only"
[[registry]]
location = "plain.example:5000"
insecure = true
[[registry]]
location = "bad.example"
blocked = true
"#,
        );
        assert_eq!(c.search, vec!["reg.example:5000", "docker.io"]);
        let eps = c.endpoints("docker.io", "library/busybox", false).unwrap();
        assert_eq!(
            eps.iter().map(|e| (e.host.as_str(), e.path.as_str(), e.mirror, e.insecure)).collect::<Vec<_>>(),
            vec![
                ("mirror-a.example:5000", "hub/busybox", true, true),
                ("internal.example", "dockerhub/busybox", false, false)
            ]
        );
        assert_eq!(c.endpoints("docker.io", "library/busybox", true).unwrap().len(), 3);
        // Outside the prefix: as named.
        let eps = c.endpoints("docker.io", "other/x", false).unwrap();
        assert_eq!((eps[0].host.as_str(), eps[0].path.as_str(), eps.len()), ("docker.io", "other/x", 1));
        assert!(c.insecure("plain.example:5000"));
        assert!(!c.insecure("plain.example"));
        assert!(c.endpoints("bad.example", "x/y", false).unwrap_err().contains("blocked"));
    }

    #[test]
    fn prefixes_match_whole_components() {
        assert!(prefix_matches("example.com/foo", "example.com/foo/bar"));
        assert!(prefix_matches("example.com/foo", "example.com/foo"));
        assert!(!prefix_matches("example.com/foo", "example.com/foobar"));
        assert!(prefix_matches("*.example.com", "a.b.example.com/x"));
        assert!(!prefix_matches("*.example.com", "example.com/x"));
        assert!(!prefix_matches("example.com", "example.community/x"));
    }

    #[test]
    fn longest_prefix_wins() {
        let c = conf(
            r#"
[[registry]]
prefix = "r.example/a"
location = "one.example"
[[registry]]
prefix = "r.example/a/b"
location = "two.example"
"#,
        );
        assert_eq!(c.endpoints("r.example", "a/b/c", false).unwrap()[0].host, "two.example");
        assert_eq!(c.endpoints("r.example", "a/x", false).unwrap()[0].path, "x");
    }

    #[test]
    fn version_1_tables() {
        let c = conf(
            r#"
[registries.search]
registries = ["a.example"]
[registries.insecure]
registries = ["b.example:5000"]
[registries.block]
registries = ["c.example"]
"#,
        );
        assert_eq!(c.search, vec!["a.example"]);
        assert!(c.insecure("b.example:5000"));
        assert!(c.endpoints("c.example", "x", false).is_err());
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        for (text, want) in [
            ("[[registry]\nlocation=", "not valid TOML"),
            ("[[registry]]\nlocation = \"https://x\"", "scheme"),
            ("[[registry]]\ninsecure = true", "needs a location"),
            ("[[registry]]\nprefix = \"*.x\"\nlocation = \"y\"", "wildcard"),
            ("[[registry]]\nlocation = \"x\"\n[[registry.mirror]]\nlocation = \"m\"\npull-from-mirror = \"sometimes\"", "pull-from-mirror"),
            ("unqualified-search-registries = [\"\"]", "empty"),
            ("[registries.search]\nregistries=[\"a\"]\n[[registry]]\nlocation=\"b\"", "mixes"),
        ] {
            let mut c = Config::default();
            let e = parse_registries_conf("/etc/containers/registries.conf", text, &mut c).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("registries.conf"), "{text:?}: {e}");
        }
    }

    #[test]
    fn isulad_daemon_json() {
        let mut c = Config::default();
        parse_isulad_daemon_json(
            "daemon.json",
            r#"{"registry-mirrors": ["https://mirror.example:5000/", "docker.io"], "insecure-registries": ["rnd.example"], "engine": "lcr"}"#,
            &mut c,
        )
        .unwrap();
        assert_eq!(c.search, vec!["mirror.example:5000", "docker.io"]);
        assert!(c.insecure("rnd.example"));
        assert!(parse_isulad_daemon_json("d", r#"{"registry-mirrors": "x"}"#, &mut c).is_err());
        assert!(parse_isulad_daemon_json("d", "{", &mut c).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,300}") {
            let mut c = Config::default();
            let _ = parse_registries_conf("p", &text, &mut c);
            let _ = parse_isulad_daemon_json("p", &text, &mut c);
        }
    }
}
