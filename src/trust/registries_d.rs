//! `containers-registries.d(5)`: where a registry's signatures live
//! ("lookaside" storage) and whether sigstore attachments are used.
//!
//! The rules are containers/image's (`docker/registries_d.go`): every
//! `*.yaml` file of the directory is read; `default-docker` and each
//! `docker` namespace may be defined in one file only; the most specific
//! namespace that sets a value wins (`host/ns/repo:tag`, `host/ns/repo`,
//! `host/ns`, `host`, `*.domain`), then `default-docker`, then the built-in
//! default directory. img is stricter in three places: unknown keys are
//! refused (containers/image ignores them, so a misspelt `lookaside`
//! silently sends signatures elsewhere), YAML aliases are refused, and
//! files are bounded ([`MAX_FILE_SIZE`], [`MAX_FILES`]).

use super::policy::TrustRow;
use super::scope::scope_candidates;
use super::Transport;
use crate::digest::Digest;
use crate::reference::Reference;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// The largest registries.d file img reads.
pub const MAX_FILE_SIZE: u64 = 1 << 20;
/// The most `*.yaml` files img reads from one directory.
pub const MAX_FILES: usize = 1000;
/// The deepest YAML nesting accepted (a file needs four levels).
const MAX_DEPTH: usize = 32;

/// containers/image's default lookaside for root.
pub const ROOT_LOOKASIDE_DIR: &str = "/var/lib/containers/sigstore";
/// ... and for other users, under `$HOME`.
pub const USER_LOOKASIDE_DIR: &str = ".local/share/containers/sigstore";

/// What one namespace (or `default-docker`) sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace {
    /// `lookaside` (or its old name `sigstore`): where signatures are read,
    /// and written when there is no staging location.
    pub lookaside: Option<String>,
    /// `lookaside-staging` (or `sigstore-staging`): where signatures are written.
    pub lookaside_staging: Option<String>,
    pub use_sigstore_attachments: Option<bool>,
}

impl Namespace {
    /// The top-level URL for reading, or for writing when `write`.
    fn top_level(&self, write: bool) -> Option<&str> {
        let staging = if write { self.lookaside_staging.as_deref() } else { None };
        staging.or(self.lookaside.as_deref())
    }
}

/// One parsed file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileConfig {
    pub default_docker: Option<Namespace>,
    /// Namespaces in the order written.
    pub docker: Vec<(String, Namespace)>,
}

/// The merged configuration of a registries.d directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistriesD {
    /// The directory read, if any.
    pub dir: Option<PathBuf>,
    pub default_docker: Option<Namespace>,
    pub docker: BTreeMap<String, Namespace>,
    /// The lookaside used when nothing is configured (see
    /// [`builtin_default_lookaside`]); `None` when it cannot be known.
    pub builtin: Option<String>,
}

/// What registries.d says for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerSettings {
    /// The base URL signatures are read from: the configured lookaside, else
    /// the built-in default. `None` only when neither is known.
    pub lookaside: Option<String>,
    /// The base URL signatures are written to: `lookaside-staging`, else
    /// the lookaside for reading, else the built-in default.
    pub lookaside_staging: Option<String>,
    /// Whether sigstore signatures are read from and written to the
    /// registry as `sha256-<hex>.sig` attachments.
    pub use_sigstore_attachments: bool,
    /// True when `lookaside` is the built-in default, not configured.
    pub lookaside_is_default: bool,
}

/// Why registries.d was refused. `line` is 1-based, 0 when the error is
/// about a file or the directory as a whole.
#[derive(Debug, thiserror::Error)]
pub struct RegistriesDError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for RegistriesDError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

impl RegistriesD {
    /// The directory img reads: `dir`, else `$IMG_REGISTRIES_D`, else
    /// `~/.config/containers/registries.d` if it exists, else
    /// `/etc/containers/registries.d`.
    pub fn find(dir: Option<&Path>) -> PathBuf {
        if let Some(d) = dir {
            return d.to_path_buf();
        }
        if let Some(d) = std::env::var_os("IMG_REGISTRIES_D").filter(|v| !v.is_empty()) {
            return d.into();
        }
        if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            let user = PathBuf::from(h).join(".config/containers/registries.d");
            if user.exists() {
                return user;
            }
        }
        "/etc/containers/registries.d".into()
    }

    /// Reads every `*.yaml` file of the directory [`RegistriesD::find`]
    /// names (in name order). A missing directory is an empty
    /// configuration, as in containers/image.
    pub fn load(dir: Option<&Path>) -> Result<RegistriesD, RegistriesDError> {
        let dir = RegistriesD::find(dir);
        let mut out = RegistriesD::load_dir(&dir)?;
        out.builtin = builtin_default_lookaside(
            crate::user::effective_uid(),
            std::env::var_os("HOME").map(PathBuf::from).as_deref(),
        );
        Ok(out)
    }

    /// [`RegistriesD::load`] of one directory, without the built-in default.
    pub fn load_dir(dir: &Path) -> Result<RegistriesD, RegistriesDError> {
        let whole =
            |file: &Path, message: String| RegistriesDError { file: file.display().to_string(), line: 0, message };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RegistriesD { dir: Some(dir.to_path_buf()), ..Default::default() })
            }
            Err(e) => return Err(whole(dir, format!("cannot read the registries.d directory: {e}"))),
        };
        let mut names = Vec::new();
        for e in entries {
            let e = e.map_err(|e| whole(dir, format!("cannot read the registries.d directory: {e}")))?;
            let name = e.file_name();
            if name.to_str().is_some_and(|n| n.ends_with(".yaml")) {
                names.push(name);
                if names.len() > MAX_FILES {
                    return Err(whole(dir, format!("more than {MAX_FILES} *.yaml files; remove the ones not needed")));
                }
            }
        }
        names.sort();
        let mut files = Vec::new();
        for n in names {
            let path = dir.join(&n);
            match read_small(&path) {
                Ok(Some(text)) => files.push((path.display().to_string(), text)),
                // Removed since the listing: as containers/image, skip it.
                Ok(None) => {}
                Err(m) => return Err(whole(&path, m)),
            }
        }
        let mut out = RegistriesD::from_files(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))?;
        out.dir = Some(dir.to_path_buf());
        Ok(out)
    }

    /// Parses and merges files given as `(name, text)`; a `default-docker`
    /// or a namespace defined in two files is an error naming both.
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<RegistriesD, RegistriesDError> {
        let mut out = RegistriesD::default();
        let mut default_from: Option<String> = None;
        let mut ns_from: BTreeMap<String, String> = BTreeMap::new();
        for (name, text) in files {
            let f = parse_file(name, text)?;
            if let Some(d) = f.default_docker {
                if let Some(first) = &default_from {
                    return Err(RegistriesDError {
                        file: name.into(),
                        line: 0,
                        message: format!("\"default-docker\" is defined both in {first} and here; keep one"),
                    });
                }
                out.default_docker = Some(d);
                default_from = Some(name.into());
            }
            for (ns, cfg) in f.docker {
                if let Some(first) = ns_from.get(&ns) {
                    return Err(RegistriesDError {
                        file: name.into(),
                        line: 0,
                        message: format!("\"docker\" namespace {ns:?} is defined both in {first} and here; keep one"),
                    });
                }
                ns_from.insert(ns.clone(), name.into());
                out.docker.insert(ns, cfg);
            }
        }
        Ok(out)
    }

    /// The settings for an image: the most specific namespace that sets
    /// each value, then `default-docker`, then the built-in default.
    pub fn for_reference(&self, r: &Reference) -> DockerSettings {
        let candidates = scope_candidates(Transport::Docker, &docker_identity(r));
        let read = self.top_level(&candidates, false);
        let write = self.top_level(&candidates, true);
        let attachments = candidates
            .iter()
            .filter_map(|c| self.docker.get(c))
            .chain(self.default_docker.iter())
            .find_map(|ns| ns.use_sigstore_attachments)
            .unwrap_or(false);
        DockerSettings {
            lookaside_is_default: read.is_none(),
            lookaside: read.map(str::to_string).or_else(|| self.builtin.clone()),
            lookaside_staging: write.map(str::to_string).or_else(|| self.builtin.clone()),
            use_sigstore_attachments: attachments,
        }
    }

    fn top_level(&self, candidates: &[String], write: bool) -> Option<&str> {
        candidates
            .iter()
            .filter_map(|c| self.docker.get(c))
            .chain(self.default_docker.iter())
            .find_map(|ns| ns.top_level(write))
    }

    /// Fills the STORE column of `img image trust show` rows: the
    /// configured lookaside of each docker scope with a signature requirement.
    pub fn fill_stores(&self, rows: &mut [TrustRow]) {
        for r in rows {
            if r.transport == "repository" && (r.kind == "signed" || r.kind == "sigstoreSigned") {
                r.store = self.lookaside_for_scope(&r.scope).unwrap_or_default();
            }
        }
    }

    /// The configured lookaside for reading of a policy scope such as
    /// `docker.io/library` (for `img image trust show`); no built-in default.
    pub fn lookaside_for_scope(&self, scope: &str) -> Option<String> {
        self.top_level(&scope_candidates(Transport::Docker, scope), false).map(str::to_string)
    }
}

/// A docker reference as containers/image names its policy identity:
/// `host/path:tag`, else `host/path@digest`, else `host/path`.
pub fn docker_identity(r: &Reference) -> String {
    match (r.tag(), r.digest()) {
        (Some(t), _) => format!("{}:{t}", r.repository()),
        (None, Some(d)) => format!("{}@{d}", r.repository()),
        (None, None) => r.repository(),
    }
}

/// containers/image's built-in lookaside: `file:///var/lib/containers/sigstore`
/// for root (uid 0), else `file://$HOME/.local/share/containers/sigstore`.
pub fn builtin_default_lookaside(euid: Option<u32>, home: Option<&Path>) -> Option<String> {
    match euid {
        Some(0) => Some(format!("file://{ROOT_LOOKASIDE_DIR}")),
        _ => {
            let home = home?.to_str()?;
            let dir = Path::new(home).join(USER_LOOKASIDE_DIR);
            Some(format!("file://{}", escape_path(dir.to_str()?)))
        }
    }
}

/// A URL path escaped as Go's `url.URL.String` escapes a path.
fn escape_path(p: &str) -> String {
    let mut out = String::new();
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where the `index`-th (from 0) signature of the manifest `digest` of
/// `r` lives under the lookaside `base`:
/// `BASE/<repository path>@sha256=<hex>/signature-<index+1>`. The path
/// is the repository's without its registry host, as containers/image
/// builds it; a query or fragment of `base` stays at the end.
pub fn lookaside_url(base: &str, r: &Reference, digest: &Digest, index: usize) -> String {
    let cut = base.find(['?', '#']).unwrap_or(base.len());
    let (head, tail) = base.split_at(cut);
    format!("{head}/{}@sha256={}/signature-{}{tail}", r.path(), digest.hex(), index + 1)
}

/// Reads a file of at most [`MAX_FILE_SIZE`]; `None` if it is gone.
fn read_small(path: &Path) -> Result<Option<String>, String> {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    let mut bytes = Vec::new();
    f.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err("larger than 1 MiB; a registries.d file is a few lines, check it".into());
    }
    String::from_utf8(bytes).map(Some).map_err(|_| "not UTF-8 text".into())
}

// ---- YAML ----

/// A YAML node with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
enum Y {
    Scalar { value: String, plain: bool, line: usize },
    Seq { line: usize },
    Map { entries: Vec<(Y, Y)>, line: usize },
}

impl Y {
    fn line(&self) -> usize {
        match self {
            Y::Scalar { line, .. } | Y::Seq { line } | Y::Map { line, .. } => *line,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self, Y::Scalar { value, plain: true, .. } if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    fn kind(&self) -> &'static str {
        match self {
            Y::Scalar { .. } => "a scalar",
            Y::Seq { .. } => "a list",
            Y::Map { .. } => "a mapping",
        }
    }
}

/// A collection being built.
enum Open {
    Seq { line: usize },
    Map { entries: Vec<(Y, Y)>, key: Option<Y>, line: usize },
}

/// Reads one YAML document into a tree (sequences are read but not kept:
/// registries.d has none). `None` for an empty file.
fn parse_yaml(text: &str) -> Result<Option<Y>, (usize, String)> {
    let line = |m: &Marker| m.line();
    let mut p = Parser::new_from_str(text);
    let mut stack: Vec<Open> = Vec::new();
    let mut doc: Option<Y> = None;
    let mut docs = 0;
    loop {
        let (ev, mark) = p.next_token().map_err(|e| (e.marker().line(), format!("invalid YAML: {}", e.info())))?;
        let done = match ev {
            Event::StreamEnd => return Ok(doc),
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => continue,
            Event::DocumentStart => {
                docs += 1;
                if docs > 1 {
                    return Err((line(&mark), "more than one YAML document; keep one (no second \"---\")".into()));
                }
                continue;
            }
            Event::Alias(_) => {
                return Err((line(&mark), "YAML aliases (*name) are not supported here; write the value out".into()))
            }
            Event::Scalar(value, style, _, _) => {
                Some(Y::Scalar { value, plain: style == TScalarStyle::Plain, line: line(&mark) })
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err((line(&mark), format!("nested deeper than {MAX_DEPTH} levels")));
                }
                stack.push(if matches!(ev, Event::SequenceStart(..)) {
                    Open::Seq { line: line(&mark) }
                } else {
                    Open::Map { entries: Vec::new(), key: None, line: line(&mark) }
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Open::Seq { line }) => Some(Y::Seq { line }),
                Some(Open::Map { entries, line, .. }) => Some(Y::Map { entries, line }),
                None => return Err((line(&mark), "invalid YAML: unbalanced collection".into())),
            },
        };
        let Some(node) = done else { continue };
        match stack.last_mut() {
            None => doc = Some(node),
            Some(Open::Seq { .. }) => {}
            Some(Open::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

type At = (usize, String);

/// A mapping's entries with string keys (and the line of each key),
/// duplicates refused.
fn mapping<'a>(node: &'a Y, what: &str) -> Result<Vec<(&'a str, usize, &'a Y)>, At> {
    let Y::Map { entries, .. } = node else {
        return Err((node.line(), format!("{what} must be a mapping, not {}", node.kind())));
    };
    let mut out: Vec<(&str, usize, &Y)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (k, v) in entries {
        let Y::Scalar { value, .. } = k else {
            return Err((k.line(), format!("a key of {what} must be a string, not {}", k.kind())));
        };
        if !seen.insert(value.as_str()) {
            return Err((k.line(), format!("key {value:?} of {what} is defined twice; keep one")));
        }
        out.push((value, k.line(), v));
    }
    Ok(out)
}

fn opt_string(node: &Y, what: &str) -> Result<Option<String>, At> {
    if node.is_null() {
        return Ok(None);
    }
    match node {
        Y::Scalar { value, .. } if value.is_empty() => Ok(None),
        Y::Scalar { value, .. } => Ok(Some(value.clone())),
        _ => Err((node.line(), format!("{what} must be a URL string, not {}", node.kind()))),
    }
}

fn opt_bool(node: &Y, what: &str) -> Result<Option<bool>, At> {
    if node.is_null() {
        return Ok(None);
    }
    if let Y::Scalar { value, plain: true, .. } = node {
        // YAML 1.2's booleans, and the YAML 1.1 ones go-yaml v3 accepts for a bool.
        match value.as_str() {
            "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => return Ok(Some(true)),
            "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => return Ok(Some(false)),
            _ => {}
        }
    }
    Err((node.line(), format!("{what} must be true or false")))
}

fn namespace(node: &Y, what: &str) -> Result<Namespace, At> {
    if node.is_null() {
        return Ok(Namespace::default());
    }
    let mut ns = Namespace::default();
    let (mut old, mut old_staging) = (None, None);
    for (k, at, v) in mapping(node, what)? {
        match k {
            "lookaside" => ns.lookaside = opt_string(v, k)?,
            "lookaside-staging" => ns.lookaside_staging = opt_string(v, k)?,
            "sigstore" => old = opt_string(v, k)?,
            "sigstore-staging" => old_staging = opt_string(v, k)?,
            "use-sigstore-attachments" => ns.use_sigstore_attachments = opt_bool(v, k)?,
            other => {
                return Err((
                    at,
                    format!(
                        "unknown key {other:?} in {what}; allowed: lookaside, lookaside-staging, use-sigstore-attachments (and the old sigstore, sigstore-staging)"
                    ),
                ))
            }
        }
    }
    // The new names win over the old, as in containers/image.
    ns.lookaside = ns.lookaside.or(old);
    ns.lookaside_staging = ns.lookaside_staging.or(old_staging);
    Ok(ns)
}

/// Parses one registries.d file.
pub fn parse_file(file: &str, text: &str) -> Result<FileConfig, RegistriesDError> {
    parse_file_inner(text).map_err(|(line, message)| RegistriesDError { file: file.into(), line, message })
}

fn parse_file_inner(text: &str) -> Result<FileConfig, At> {
    let mut out = FileConfig::default();
    let Some(root) = parse_yaml(text)? else { return Ok(out) };
    if root.is_null() {
        return Ok(out);
    }
    for (k, at, v) in mapping(&root, "the file")? {
        match k {
            "default-docker" => {
                if !v.is_null() {
                    out.default_docker = Some(namespace(v, "\"default-docker\"")?);
                }
            }
            "docker" => {
                if v.is_null() {
                    continue;
                }
                for (ns, ns_at, cfg) in mapping(v, "\"docker\"")? {
                    if ns.is_empty() {
                        return Err((ns_at, "an empty \"docker\" namespace; name a registry or repository".into()));
                    }
                    out.docker.push((ns.to_string(), namespace(cfg, &format!("namespace {ns:?}"))?));
                }
            }
            other => {
                return Err((at, format!("unknown key {other:?}; allowed: default-docker, docker")));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DEBIAN_DEFAULT: &str = "# This is a default registries.d configuration file.  You may
# add to this file or create additional files in registries.d/.
#
# lookaside: for reading/writing simple signing signatures
# lookaside-staging: for writing simple signing signatures, preferred over lookaside
#
# lookaside and lookaside-staging take a value of the following:
#   lookaside:  {schema}://location
#
# For reading signatures, schema may be http, https, or file.
# For writing signatures, schema may only be file.

# The default locations are built-in, for both reading and writing:
# /var/lib/containers/sigstore for root, or
# ~/.local/share/containers/sigstore for non-root users.
default-docker:
#  lookaside: https://…
#  lookaside-staging: file:///…

# The 'docker' indicator here is the start of the configuration
# for docker registries.
#
# docker:
#
#   privateregistry.com:
#    lookaside: https://privateregistry.com/sigstore/
#    lookaside-staging: /mnt/nfs/privateregistry/sigstore
";

    fn d(hex_char: char) -> Digest {
        Digest::from_hex(&hex_char.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn lookaside_url_as_containers_image() {
        let r = Reference::parse("example.com:5000/ns/app:1").unwrap();
        assert_eq!(
            lookaside_url("file:///var/lib/containers/sigstore", &r, &d('a'), 0),
            format!("file:///var/lib/containers/sigstore/ns/app@sha256={}/signature-1", "a".repeat(64))
        );
        let busybox = Reference::parse("busybox").unwrap();
        assert_eq!(
            lookaside_url("https://sigs.example/store/", &busybox, &d('b'), 2),
            format!("https://sigs.example/store//library/busybox@sha256={}/signature-3", "b".repeat(64))
        );
        assert_eq!(
            lookaside_url("https://s.example/x?token=1", &busybox, &d('c'), 0),
            format!("https://s.example/x/library/busybox@sha256={}/signature-1?token=1", "c".repeat(64))
        );
    }

    /// Where skopeo 1.9.3 wrote a signature, with this registries.d, for
    /// `skopeo --registries.d D copy --sign-by FPR
    /// oci:testdata/gen/layered.oci:1 docker://127.0.0.1:PORT/ns/sub/app:1`:
    /// `/tmp/pol-reg/sigs/ns/sub/app@sha256=ec86…/signature-1`.
    #[test]
    fn signature_path_as_skopeo_writes_it() {
        let r = reg(&[(
            "test.yaml",
            "docker:\n  127.0.0.1:5000/ns:\n    lookaside-staging: file:///tmp/pol-reg/sigs\n    lookaside: file:///tmp/pol-reg/sigs\n",
        )]);
        let image = Reference::parse("127.0.0.1:5000/ns/sub/app:1").unwrap();
        let digest = Digest::parse("sha256:ec86403cb259c74d393c62846ba822b0c4b6f287e9f201b520d5d7af5d17bee6").unwrap();
        let base = r.for_reference(&image).lookaside_staging.unwrap();
        assert_eq!(
            lookaside_url(&base, &image, &digest, 0),
            "file:///tmp/pol-reg/sigs/ns/sub/app@sha256=ec86403cb259c74d393c62846ba822b0c4b6f287e9f201b520d5d7af5d17bee6/signature-1"
        );
    }

    #[test]
    fn builtin_default() {
        assert_eq!(builtin_default_lookaside(Some(0), None).as_deref(), Some("file:///var/lib/containers/sigstore"));
        assert_eq!(
            builtin_default_lookaside(Some(1000), Some(Path::new("/home/u v"))).as_deref(),
            Some("file:///home/u%20v/.local/share/containers/sigstore")
        );
        assert_eq!(builtin_default_lookaside(Some(1000), None), None);
    }

    #[test]
    fn reads_debian_default() {
        let f = parse_file("default.yaml", DEBIAN_DEFAULT).unwrap();
        assert_eq!(f, FileConfig::default());
        let path = Path::new("/etc/containers/registries.d/default.yaml");
        if path.exists() {
            RegistriesD::load_dir(path.parent().unwrap()).unwrap();
        }
    }

    fn reg(files: &[(&str, &str)]) -> RegistriesD {
        let mut r = RegistriesD::from_files(files.iter().copied()).unwrap();
        r.builtin = Some("file:///builtin".into());
        r
    }

    #[test]
    fn most_specific_namespace_wins() {
        let r = reg(&[
            (
                "a.yaml",
                "docker:
  example.com:
    lookaside: https://host/sigs
    use-sigstore-attachments: true
  example.com/ns:
    lookaside-staging: file:///staging
  example.com/ns/app:
    sigstore: https://old/app
  '*.example.org':
    lookaside: https://wild
",
            ),
            ("b.yaml", "default-docker:\n  lookaside: https://default\n  use-sigstore-attachments: false\n"),
        ]);
        let s = |x: &str| r.for_reference(&Reference::parse(x).unwrap());
        let app = s("example.com/ns/app:1");
        assert_eq!(app.lookaside.as_deref(), Some("https://old/app"));
        assert_eq!(app.lookaside_staging.as_deref(), Some("https://old/app"));
        assert!(app.use_sigstore_attachments);
        assert!(!app.lookaside_is_default);
        // A namespace with only a staging location is skipped for reading.
        let other = s("example.com/ns/other:1");
        assert_eq!(other.lookaside.as_deref(), Some("https://host/sigs"));
        assert_eq!(other.lookaside_staging.as_deref(), Some("file:///staging"));
        assert_eq!(s("a.b.example.org/x:1").lookaside.as_deref(), Some("https://wild"));
        let none = s("quay.io/x:1");
        assert_eq!(none.lookaside.as_deref(), Some("https://default"));
        assert!(!none.use_sigstore_attachments);
        assert_eq!(r.lookaside_for_scope("example.com/ns"), Some("https://host/sigs".into()));
        assert_eq!(r.lookaside_for_scope("example.com"), Some("https://host/sigs".into()));
        let policy = crate::trust::policy::Policy::parse(
            "p.json",
            r#"{"default":[{"type":"reject"}],"transports":{"docker":{
                "example.com/ns":[{"type":"sigstoreSigned","keyPath":"/k.pub"}],
                "quay.io":[{"type":"insecureAcceptAnything"}]}}}"#,
        )
        .unwrap();
        let mut rows = policy.describe();
        r.fill_stores(&mut rows);
        let stores: Vec<&str> = rows.iter().map(|r| r.store.as_str()).collect();
        assert_eq!(stores, ["", "https://host/sigs", ""]);

        let empty = reg(&[]);
        let b = empty.for_reference(&Reference::parse("busybox").unwrap());
        assert_eq!(b.lookaside.as_deref(), Some("file:///builtin"));
        assert_eq!(b.lookaside_staging.as_deref(), Some("file:///builtin"));
        assert!(b.lookaside_is_default);
        assert!(!b.use_sigstore_attachments);
        assert_eq!(empty.lookaside_for_scope("docker.io"), None);
    }

    #[test]
    fn new_names_win_over_old() {
        let f =
            parse_file("x.yaml", "default-docker:\n  sigstore: a\n  lookaside: b\n  sigstore-staging: c\n").unwrap();
        let ns = f.default_docker.unwrap();
        assert_eq!(ns.lookaside.as_deref(), Some("b"));
        assert_eq!(ns.lookaside_staging.as_deref(), Some("c"));
    }

    #[test]
    fn duplicates_across_files_name_both() {
        let e = RegistriesD::from_files([
            ("/d/a.yaml", "default-docker:\n  lookaside: x\n"),
            ("/d/b.yaml", "default-docker: {}\n"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("/d/a.yaml") && e.to_string().starts_with("/d/b.yaml: "), "{e}");
        let e = RegistriesD::from_files([
            ("/d/a.yaml", "docker:\n  example.com:\n    lookaside: x\n"),
            ("/d/b.yaml", "docker:\n  example.com: {}\n"),
        ])
        .unwrap_err();
        assert!(e.message.contains("\"example.com\" is defined both in /d/a.yaml"), "{e}");
        // A null default-docker defines nothing.
        assert!(
            RegistriesD::from_files([("a", "default-docker:\n"), ("b", "default-docker:\n  lookaside: x\n")]).is_ok()
        );
    }

    #[test]
    fn refuses_with_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("docker:\n  a.com:\n    lookasid: x\n", 3, "unknown key \"lookasid\""),
            ("dokcer: {}\n", 1, "unknown key \"dokcer\""),
            ("- a\n", 1, "must be a mapping"),
            ("docker:\n  a.com:\n    lookaside: x\n  a.com: {}\n", 4, "defined twice"),
            ("docker:\n  a.com:\n    use-sigstore-attachments: maybe\n", 3, "true or false"),
            ("docker:\n  a.com:\n    use-sigstore-attachments: \"true\"\n", 3, "true or false"),
            ("docker:\n  a.com:\n    lookaside: [x]\n", 3, "URL string"),
            ("x: &a 1\ndocker: *a\n", 2, "aliases"),
            ("a: 1\n---\nb: 2\n", 2, "more than one YAML document"),
            ("docker:\n  a.com:\n   lookaside: \"unterminated\n", 3, "invalid YAML"),
            ("docker:\n  '':\n    lookaside: x\n", 2, "empty"),
        ];
        for (text, line, fragment) in cases {
            let e = parse_file("f.yaml", text).unwrap_err();
            assert!(e.message.contains(fragment), "{text:?}: {e}");
            assert_eq!(e.line, *line, "{text:?}: {e}");
        }
        let deep = "a: ".to_string() + &"[".repeat(MAX_DEPTH + 5) + &"]".repeat(MAX_DEPTH + 5);
        assert!(parse_file("f.yaml", &deep).unwrap_err().message.contains("deeper"));
        // Many keys: checked for duplicates in linear time.
        let many: String = (0..50_000).map(|i| format!("  h{i}.com: {{}}\n")).collect();
        let t = std::time::Instant::now();
        assert_eq!(parse_file("f.yaml", &format!("docker:\n{many}")).unwrap().docker.len(), 50_000);
        assert!(t.elapsed() < std::time::Duration::from_secs(20));
        // Deep enough to overflow a recursive reader's stack.
        let deeper = "[".repeat(200_000);
        assert!(parse_file("f.yaml", &deeper).is_err());
    }

    #[test]
    fn accepts_values() {
        let f = parse_file(
            "f.yaml",
            "docker:\n  a.com:\n    use-sigstore-attachments: yes\n    lookaside: ~\n  b.com:\n  c.com:\n    lookaside: \"\"\n",
        )
        .unwrap();
        assert_eq!(f.docker.len(), 3);
        assert_eq!(f.docker[0].1, Namespace { use_sigstore_attachments: Some(true), ..Default::default() });
        assert_eq!(f.docker[1].1, Namespace::default());
        assert_eq!(f.docker[2].1, Namespace::default());
        assert_eq!(parse_file("f.yaml", "").unwrap(), FileConfig::default());
        assert_eq!(parse_file("f.yaml", "# only a comment\n").unwrap(), FileConfig::default());
    }

    #[test]
    fn loads_a_directory() {
        let dir = crate::testdir::TestDir::new("registries-d");
        std::fs::write(dir.join("a.yaml"), "docker:\n  example.com:\n    lookaside: https://a\n").unwrap();
        std::fs::write(dir.join("b.yml"), "not: read\n").unwrap();
        std::fs::write(dir.join("c.yaml"), "default-docker:\n  lookaside: https://c\n").unwrap();
        let r = RegistriesD::load_dir(&dir).unwrap();
        assert_eq!(r.docker.len(), 1);
        assert!(r.default_docker.is_some());
        let r = RegistriesD::load(Some(&dir)).unwrap();
        assert!(r.builtin.is_some() || std::env::var_os("HOME").is_none());
        std::fs::write(dir.join("d.yaml"), vec![b'#'; (MAX_FILE_SIZE + 1) as usize]).unwrap();
        assert!(RegistriesD::load_dir(&dir).unwrap_err().message.contains("larger than 1 MiB"));
        let missing = RegistriesD::load_dir(&dir.join("missing")).unwrap();
        assert!(missing.docker.is_empty() && missing.default_docker.is_none());
    }

    /// containers/image's docker/fixtures/registries.d, merged.
    #[test]
    fn containers_image_fixtures() {
        let internal = "docker:
    example.com:
        lookaside: https://lookaside.example.com
    registry.test.example.com:
        lookaside: http://registry.test.example.com/lookaside
    registry.test.example.com:8888:
        lookaside: http://registry.test.example.com:8889/lookaside
        lookaside-staging: https://registry.test.example.com:8889/lookaside/specialAPIserverWhichDoesNotExist
    localhost:
        lookaside: file:///home/mitr/mydevelopment1
    localhost:8080:
        lookaside: file:///home/mitr/mydevelopment2
    localhost/invalid/url/test:
        lookaside: \":emptyscheme\"
    localhost/file/path/test:
        lookaside: \"/no/scheme/just/a/path\"
    localhost/relative/path/test:
        lookaside: \"no/scheme/relative/path\"
";
        let user = "default-docker:
    lookaside: file:///mnt/companywide/signatures/for/other/repositories
docker:
    docker.io/contoso:
        lookaside: https://lookaside.contoso.com/fordocker
    docker.io/centos:
        lookaside: https://lookaside.centos.org/
    docker.io/centos/mybetaproduct:
        lookaside: http://localhost:9999/mybetaWIP/lookaside
        lookaside-staging: file:///srv/mybetaWIP/lookaside
    docker.io/centos/mybetaproduct:latest:
        lookaside: https://lookaside.centos.org/
";
        let r =
            reg(&[("emptyConfig.yaml", "{}"), ("internal-example.com.yaml", internal), ("internet-user.yaml", user)]);
        assert_eq!(r.docker.len(), 12);
        let ns = |k: &str| r.docker.get(k).cloned().unwrap();
        assert_eq!(
            ns("registry.test.example.com:8888").lookaside_staging.as_deref(),
            Some("https://registry.test.example.com:8889/lookaside/specialAPIserverWhichDoesNotExist")
        );
        assert_eq!(ns("localhost/invalid/url/test").lookaside.as_deref(), Some(":emptyscheme"));
        let get = |x: &str| r.for_reference(&Reference::parse(x).unwrap());
        assert_eq!(
            get("docker.io/centos/mybetaproduct:latest").lookaside.as_deref(),
            Some("https://lookaside.centos.org/")
        );
        let beta = get("docker.io/centos/mybetaproduct:2");
        assert_eq!(beta.lookaside.as_deref(), Some("http://localhost:9999/mybetaWIP/lookaside"));
        assert_eq!(beta.lookaside_staging.as_deref(), Some("file:///srv/mybetaWIP/lookaside"));
        assert_eq!(
            get("quay.io/x:1").lookaside.as_deref(),
            Some("file:///mnt/companywide/signatures/for/other/repositories")
        );
    }

    /// containers/image's TestRegistryConfigurationSignatureTopLevel.
    #[test]
    fn top_level_walk() {
        let mut text =
            String::from("default-docker:\n  lookaside: =default\n  lookaside-staging: =default+w\ndocker:\n");
        for ns in [
            "localhost",
            "localhost:5000",
            "example.com",
            "example.com/ns1",
            "example.com/ns1/ns2",
            "example.com/ns1/ns2/repo",
            "example.com/ns1/ns2/repo:notlatest",
        ] {
            text.push_str(&format!("  {ns}:\n    lookaside: {ns}\n    lookaside-staging: {ns}+w\n"));
        }
        let r = reg(&[("a.yaml", &text)]);
        for (input, want) in [
            ("example.com/ns1/ns2/repo:notlatest", "example.com/ns1/ns2/repo:notlatest"),
            ("example.com/ns1/ns2/repo:unmatched", "example.com/ns1/ns2/repo"),
            ("example.com/ns1/ns2/notrepo:notlatest", "example.com/ns1/ns2"),
            ("example.com/ns1/notns2/repo:notlatest", "example.com/ns1"),
            ("example.com/notns1/ns2/repo:notlatest", "example.com"),
            ("unknown.example.com/busybox", "=default"),
            ("localhost:5000/busybox", "localhost:5000"),
            ("localhost/busybox", "localhost"),
            ("localhost:9999/busybox", "=default"),
        ] {
            let s = r.for_reference(&Reference::parse(input).unwrap());
            assert_eq!(s.lookaside.as_deref(), Some(want), "{input}");
            assert_eq!(s.lookaside_staging, Some(format!("{want}+w")), "{input}");
        }
        let r = reg(&[("a.yaml", "docker:\n  unmatched:\n    lookaside: a\n    lookaside-staging: b\n")]);
        let s = r.for_reference(&Reference::parse("thisisnotmatched").unwrap());
        assert!(s.lookaside_is_default);
        assert_eq!(s.lookaside.as_deref(), Some("file:///builtin"));
    }

    /// containers/image's TestRegistryNamespaceSignatureTopLevel.
    #[test]
    fn namespace_top_level() {
        let cases: &[(&str, bool, Option<&str>)] = &[
            ("lookaside-staging: a\nlookaside: b", true, Some("a")),
            ("lookaside-staging: a\nlookaside: b", false, Some("b")),
            ("lookaside: b", true, Some("b")),
            ("lookaside: b", false, Some("b")),
            ("lookaside-staging: a", true, Some("a")),
            ("lookaside-staging: a", false, None),
            ("{}", true, None),
            ("{}", false, None),
            ("lookaside-staging: a\nlookaside: b\nsigstore-staging: c\nsigstore: d", true, Some("a")),
            ("lookaside: b\nsigstore-staging: c\nsigstore: d", true, Some("c")),
            ("lookaside: b\nsigstore: d", true, Some("b")),
            ("sigstore: d", true, Some("d")),
            ("lookaside-staging: a\nlookaside: b\nsigstore-staging: c\nsigstore: d", false, Some("b")),
            ("lookaside: b\nsigstore-staging: c\nsigstore: d", false, Some("b")),
            ("lookaside: b\nsigstore: d", false, Some("b")),
            ("sigstore: d", false, Some("d")),
        ];
        for (body, write, want) in cases {
            let root = parse_yaml(body).unwrap().unwrap();
            let ns = namespace(&root, "test").unwrap();
            assert_eq!(ns.top_level(*write), *want, "{body:?} write={write}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = parse_file("f.yaml", &s);
        }

        #[test]
        fn yaml_like_never_panics(s in "[a-z:\\- \\n'\"\\[\\]{}&*!#|>~.]{0,200}") {
            let _ = parse_file("f.yaml", &s);
        }

        #[test]
        fn written_namespaces_read_back(
            nss in proptest::collection::btree_map("[a-z]{1,6}\\.[a-z]{2,3}(/[a-z]{1,5})?", ("(https|file)://[a-z/]{1,10}", proptest::option::of(any::<bool>())), 0..5),
        ) {
            let mut text = String::from("docker:\n");
            for (ns, (url, att)) in &nss {
                text.push_str(&format!("  {ns}:\n    lookaside: {url}\n"));
                if let Some(b) = att {
                    text.push_str(&format!("    use-sigstore-attachments: {b}\n"));
                }
            }
            let f = parse_file("f.yaml", &text).unwrap();
            prop_assert_eq!(f.docker.len(), nss.len());
            for ((ns, cfg), (want_ns, (url, att))) in f.docker.iter().zip(&nss) {
                prop_assert_eq!(ns, want_ns);
                prop_assert_eq!(cfg.lookaside.as_deref(), Some(url.as_str()));
                prop_assert_eq!(cfg.use_sigstore_attachments, *att);
            }
        }
    }
}
