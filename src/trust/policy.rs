//! `containers-policy.json(5)`: parsed strictly, scopes looked up, requirements evaluated.
//!
//! The rules are containers/image's (`signature/policy_config*.go`,
//! `policy_eval*.go` and each transport's `PolicyConfigurationIdentity` and
//! `PolicyConfigurationNamespaces`). Where img is stricter, it refuses at
//! parse time what containers/image would refuse only when evaluating:
//! `keyType`s other than `GPGKeys`, `signedBaseLayer`, and the sigstore
//! options img cannot check (`keyDatas`, `rekorPublicKeyDatas`, `pki`).

use super::identity::SignedIdentity;
use super::json::{self, Node, Value};
pub use super::scope::scope_candidates;
use super::{Accepted, Candidate, Refused, Signature, Transport, Verified, MAX_SIGNATURES};
use crate::digest::Digest;
use base64::Engine as _;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The largest policy file img reads.
pub const MAX_POLICY_SIZE: u64 = 4 << 20;

/// What `source` says when no policy file was found.
pub const BUILT_IN_SOURCE: &str = "built-in default (no policy.json found)";

/// Where key material comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Path(PathBuf),
    Paths(Vec<PathBuf>),
    Data(Vec<u8>),
}

/// Fulcio-issued certificates (`sigstoreSigned.fulcio`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fulcio {
    pub ca: KeySource,
    pub oidc_issuer: String,
    pub subject_email: String,
}

/// One policy requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    InsecureAcceptAnything,
    Reject,
    SignedBy {
        keys: KeySource,
        identity: SignedIdentity,
    },
    SigstoreSigned {
        key: Option<KeySource>,
        fulcio: Option<Fulcio>,
        rekor_public_key: Option<KeySource>,
        identity: SignedIdentity,
    },
}

impl Requirement {
    /// The kind of signature it reads (`simple`, `sigstore`), if any.
    pub fn signature_kind(&self) -> Option<&'static str> {
        match self {
            Requirement::SignedBy { .. } => Some("simple"),
            Requirement::SigstoreSigned { .. } => Some("sigstore"),
            _ => None,
        }
    }

    /// The `type` policy.json names it by.
    pub fn type_name(&self) -> &'static str {
        match self {
            Requirement::InsecureAcceptAnything => "insecureAcceptAnything",
            Requirement::Reject => "reject",
            Requirement::SignedBy { .. } => "signedBy",
            Requirement::SigstoreSigned { .. } => "sigstoreSigned",
        }
    }

    /// The identity rule of a signature requirement.
    pub fn identity(&self) -> Option<&SignedIdentity> {
        match self {
            Requirement::SignedBy { identity, .. } | Requirement::SigstoreSigned { identity, .. } => Some(identity),
            _ => None,
        }
    }

    /// The policy.json object, members in the order podman writes them.
    pub fn to_json(&self) -> Value {
        let mut m = vec![("type", Value::String(self.type_name().into()))];
        match self {
            Requirement::InsecureAcceptAnything | Requirement::Reject => {}
            Requirement::SignedBy { keys, identity } => {
                m.push(("keyType", Value::String("GPGKeys".into())));
                push_keys(&mut m, keys, "keyPath", "keyPaths", "keyData");
                push_identity(&mut m, identity);
            }
            Requirement::SigstoreSigned { key, fulcio, rekor_public_key, identity } => {
                if let Some(k) = key {
                    push_keys(&mut m, k, "keyPath", "keyPaths", "keyData");
                }
                if let Some(f) = fulcio {
                    let mut fm = Vec::new();
                    push_keys(&mut fm, &f.ca, "caPath", "caPaths", "caData");
                    fm.push(("oidcIssuer", Value::String(f.oidc_issuer.clone())));
                    fm.push(("subjectEmail", Value::String(f.subject_email.clone())));
                    m.push(("fulcio", json::object(fm)));
                }
                if let Some(k) = rekor_public_key {
                    push_keys(&mut m, k, "rekorPublicKeyPath", "rekorPublicKeyPaths", "rekorPublicKeyData");
                }
                push_identity(&mut m, identity);
            }
        }
        json::object(m)
    }

    /// What `img image trust show` prints in its ID column: the key files
    /// (or `inline key`), or the Fulcio identity.
    pub fn ids(&self) -> String {
        match self {
            Requirement::SignedBy { keys, .. } => keys.describe(),
            Requirement::SigstoreSigned { key: Some(k), .. } => k.describe(),
            Requirement::SigstoreSigned { fulcio: Some(f), .. } => {
                format!("fulcio: {} ({})", f.subject_email, f.oidc_issuer)
            }
            _ => String::new(),
        }
    }
}

fn push_keys(
    m: &mut Vec<(&'static str, Value)>,
    keys: &KeySource,
    path: &'static str,
    paths: &'static str,
    data: &'static str,
) {
    match keys {
        KeySource::Path(p) => m.push((path, Value::String(p.to_string_lossy().into_owned()))),
        KeySource::Paths(ps) => {
            m.push((paths, json::array(ps.iter().map(|p| Value::String(p.to_string_lossy().into_owned())).collect())))
        }
        KeySource::Data(d) => m.push((data, Value::String(base64::engine::general_purpose::STANDARD.encode(d)))),
    }
}

fn push_identity(m: &mut Vec<(&'static str, Value)>, identity: &SignedIdentity) {
    // The default is left out, as podman leaves it out.
    if *identity != SignedIdentity::MatchRepoDigestOrExact {
        m.push(("signedIdentity", identity.to_json()));
    }
}

impl KeySource {
    /// The key files, comma-separated, or `inline key`.
    pub fn describe(&self) -> String {
        match self {
            KeySource::Path(p) => p.display().to_string(),
            KeySource::Paths(ps) => ps.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
            KeySource::Data(_) => "inline key".into(),
        }
    }
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The file it came from (for messages), or [`BUILT_IN_SOURCE`].
    pub source: String,
    pub default: Vec<Requirement>,
    /// transport name → scope → requirements.
    pub transports: BTreeMap<String, BTreeMap<String, Vec<Requirement>>>,
}

/// Why a policy file was refused. `line` is 1-based; 0 when the error is
/// about the file as a whole (it cannot be read, it is too large).
#[derive(Debug, thiserror::Error)]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// One row of `img image trust show`, as `podman image trust show` prints
/// them: `all`/`default` for the default, `repository` for docker scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRow {
    pub transport: String,
    pub scope: String,
    /// `accept`, `reject`, `signed` or `sigstoreSigned`.
    pub kind: String,
    /// The key files (see [`Requirement::ids`]).
    pub ids: String,
    /// The lookaside, filled by `RegistriesD::fill_stores`; empty from
    /// [`Policy::describe`].
    pub store: String,
}

/// An error at a byte offset of the policy text.
type At = (usize, String);

/// transport name → scope → requirements.
type Transports = BTreeMap<String, BTreeMap<String, Vec<Requirement>>>;

impl Policy {
    /// The policy img applies when there is no policy file: accept anything.
    pub fn insecure_default() -> Policy {
        Policy {
            source: BUILT_IN_SOURCE.into(),
            default: vec![Requirement::InsecureAcceptAnything],
            transports: BTreeMap::new(),
        }
    }

    /// Parses a policy file's text, as strictly as containers/image.
    pub fn parse(file: &str, text: &str) -> Result<Policy, PolicyError> {
        let err = |(at, message): At| PolicyError { file: file.to_string(), line: json::line_of(text, at), message };
        let root = json::parse(text).map_err(|e| err((e.at, format!("invalid JSON: {}", e.message))))?;
        let (default, transports) = parse_root(&root).map_err(err)?;
        Ok(Policy { source: file.to_string(), default, transports })
    }

    /// The policy file img reads: `explicit`, else `$IMG_POLICY`, else the
    /// first that exists of `$XDG_CONFIG_HOME/containers/policy.json`,
    /// `~/.config/containers/policy.json` (podman's),
    /// `/etc/containers/policy.json` and `/etc/isula-build/policy.json`.
    pub fn find(explicit: Option<&Path>) -> Option<PathBuf> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let mut fallbacks = Vec::new();
        if let Some(x) = env("XDG_CONFIG_HOME").filter(|p| p.is_absolute()) {
            fallbacks.push(x.join("containers/policy.json"));
        }
        if let Some(h) = env("HOME") {
            fallbacks.push(h.join(".config/containers/policy.json"));
        }
        fallbacks.push("/etc/containers/policy.json".into());
        fallbacks.push("/etc/isula-build/policy.json".into());
        find_in(explicit, env("IMG_POLICY").as_deref(), &fallbacks)
    }

    /// Reads and parses the policy [`Policy::find`] names, or returns
    /// [`Policy::insecure_default`] when there is none. A named file that
    /// is missing is an error.
    pub fn load(explicit: Option<&Path>) -> Result<Policy, PolicyError> {
        match Policy::find(explicit) {
            Some(p) => Policy::load_file(&p),
            None => Ok(Policy::insecure_default()),
        }
    }

    /// Reads and parses one policy file (at most [`MAX_POLICY_SIZE`]).
    pub fn load_file(path: &Path) -> Result<Policy, PolicyError> {
        use std::io::Read;
        let name = path.display().to_string();
        let whole = |message: String| PolicyError { file: name.clone(), line: 0, message };
        let f = std::fs::File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                whole(
                    "no such policy file; create it (`img image trust set`) or name another with --signature-policy"
                        .into(),
                )
            } else {
                whole(format!("cannot read the policy file: {e}"))
            }
        })?;
        let mut bytes = Vec::new();
        f.take(MAX_POLICY_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| whole(format!("cannot read the policy file: {e}")))?;
        if bytes.len() as u64 > MAX_POLICY_SIZE {
            return Err(whole(
                "the policy file is larger than 4 MiB; a policy is a few kilobytes, check the file".into(),
            ));
        }
        let text = String::from_utf8(bytes).map_err(|_| whole("the policy file is not UTF-8 text".into()))?;
        Policy::parse(&name, &text)
    }

    /// The requirements for `scope` under `transport`: the most specific scope, else the transport's `""`, else the default.
    pub fn requirements_for(&self, transport: Transport, scope: &str) -> &[Requirement] {
        self.lookup(transport, scope).1
    }

    /// Like [`Policy::requirements_for`], also naming the scope that
    /// applied (`None` for the default).
    pub fn lookup(&self, transport: Transport, scope: &str) -> (Option<&str>, &[Requirement]) {
        if let Some(scopes) = self.transports.get(transport.name()) {
            for s in scope_candidates(transport, scope) {
                if let Some((k, reqs)) = scopes.get_key_value(s.as_str()) {
                    return (Some(k), reqs);
                }
            }
            if let Some((k, reqs)) = scopes.get_key_value("") {
                return (Some(k), reqs);
            }
        }
        (None, &self.default)
    }

    /// Where the requirements for `scope` come from, for messages:
    /// `FILE (transports.docker."example.com")` or `FILE (default)`.
    pub fn section(&self, transport: Transport, scope: &str) -> String {
        match self.lookup(transport, scope).0 {
            Some(s) => format!("{} (transports.{}.{s:?})", self.source, transport.name()),
            None => format!("{} (default)", self.source),
        }
    }

    /// Checks `image` against the requirements that apply to it, with
    /// `check` for signatures (`trust::verify::check`), naming the policy
    /// section in a refusal.
    pub fn evaluate_with(
        &self,
        image: &Candidate<'_>,
        sigs: &[Signature],
        check: &Check<'_>,
    ) -> Result<Accepted, Refused> {
        let reqs = self.requirements_for(image.transport, &image.scope);
        evaluate_in(reqs, image, sigs, check, &self.section(image.transport, &image.scope))
    }

    /// Sets the requirements of `scope` under `transport` (as `img image
    /// trust set` does); an empty list removes the scope. Check the scope
    /// first with [`check_scope`].
    pub fn set_scope(&mut self, transport: &str, scope: &str, reqs: Vec<Requirement>) {
        if reqs.is_empty() {
            if let Some(scopes) = self.transports.get_mut(transport) {
                scopes.remove(scope);
                if scopes.is_empty() {
                    self.transports.remove(transport);
                }
            }
            return;
        }
        self.transports.entry(transport.to_string()).or_default().insert(scope.to_string(), reqs);
    }

    /// Sets the default requirements. An empty list is ignored (a policy
    /// always has a default).
    pub fn set_default(&mut self, reqs: Vec<Requirement>) {
        if !reqs.is_empty() {
            self.default = reqs;
        }
    }

    /// The policy as podman writes policy.json (4-space indents, keys in
    /// podman's order, no final newline).
    pub fn to_json(&self) -> String {
        let reqs = |rs: &[Requirement]| json::array(rs.iter().map(Requirement::to_json).collect());
        let mut top = vec![("default", reqs(&self.default))];
        if !self.transports.is_empty() {
            let transports = self
                .transports
                .iter()
                .map(|(t, scopes)| {
                    let scopes = scopes.iter().map(|(s, rs)| (s.as_str(), reqs(rs))).collect();
                    (t.as_str(), json::object(scopes))
                })
                .collect();
            top.push(("transports", json::object(transports)));
        }
        json::to_pretty(&json::object(top))
    }

    /// The rows of `img image trust show`: the default, then every scope
    /// of every transport, one row per requirement.
    pub fn describe(&self) -> Vec<TrustRow> {
        let mut rows = Vec::new();
        let mut push = |transport: &str, scope: &str, reqs: &[Requirement]| {
            for r in reqs {
                let kind = match r {
                    Requirement::InsecureAcceptAnything => "accept",
                    Requirement::Reject => "reject",
                    Requirement::SignedBy { .. } => "signed",
                    Requirement::SigstoreSigned { .. } => "sigstoreSigned",
                };
                rows.push(TrustRow {
                    transport: transport.into(),
                    scope: scope.into(),
                    kind: kind.into(),
                    ids: r.ids(),
                    store: String::new(),
                });
            }
        };
        push("all", "default", &self.default);
        for (t, scopes) in &self.transports {
            let shown = if t == "docker" { "repository" } else { t.as_str() };
            for (s, reqs) in scopes {
                push(shown, if s.is_empty() { "default" } else { s }, reqs);
            }
        }
        rows
    }
}

/// The first existing of `fallbacks`, unless a file is named.
fn find_in(explicit: Option<&Path>, env: Option<&Path>, fallbacks: &[PathBuf]) -> Option<PathBuf> {
    if let Some(p) = explicit.or(env) {
        return Some(p.to_path_buf());
    }
    fallbacks.iter().find(|p| p.is_file()).cloned()
}

/// Whether `scope` may be a key under `transport`, as containers/image
/// checks (`ValidatePolicyConfigurationScope`); `""` always may. Scopes
/// of transports img does not use are not checked.
pub fn check_scope(transport: &str, scope: &str) -> Result<(), String> {
    if scope.is_empty() {
        return Ok(());
    }
    match transport {
        "oci" | "oci-archive" | "dir" => {
            if !scope.starts_with('/') {
                return Err(format!("scope {scope:?} of transport {transport:?} must be an absolute path"));
            }
            if scope == "/" {
                return Err(format!(
                    "scope \"/\" of transport {transport:?} is not allowed; use the transport's default scope \"\""
                ));
            }
            if scope.ends_with('/') || scope[1..].split('/').any(|c| c.is_empty() || c == "." || c == "..") {
                return Err(format!(
                    "scope {scope:?} of transport {transport:?} is not a clean path; write it without \"//\", \".\", \"..\" or a final \"/\""
                ));
            }
            Ok(())
        }
        "docker-archive" => Err(format!(
            "scope {scope:?} is not allowed for transport \"docker-archive\", which has only the default scope \"\""
        )),
        _ => Ok(()),
    }
}

/// A signature check: is `sig` good for the keys of the requirement.
pub type Check<'a> = dyn Fn(&Requirement, &Signature) -> Result<Verified, String> + 'a;

/// Checks `image` against `reqs` with the signatures found for it: every
/// requirement must accept (and an empty list accepts nothing). `check`
/// is the cryptographic half (`trust::verify::check`; tests pass fakes);
/// `trust::evaluate` joins the two, so this file need not name verify.
pub fn evaluate_with(
    reqs: &[Requirement],
    image: &Candidate<'_>,
    sigs: &[Signature],
    check: &Check<'_>,
) -> Result<Accepted, Refused> {
    evaluate_in(reqs, image, sigs, check, "the policy")
}

/// The longest reason kept per signature.
const MAX_REASON: usize = 200;

fn evaluate_in(
    reqs: &[Requirement],
    image: &Candidate<'_>,
    sigs: &[Signature],
    check: &Check<'_>,
    policy: &str,
) -> Result<Accepted, Refused> {
    if reqs.is_empty() {
        return Err(Refused::Policy(format!(
            "{}: {policy} has no requirements for it; fix the policy (every scope needs at least one)",
            image.scope
        )));
    }
    let mut accepted = Accepted::default();
    let mut manifest_digest: Option<Digest> = None;
    for req in reqs {
        let kind = match (req, req.signature_kind()) {
            (Requirement::InsecureAcceptAnything, _) => {
                accepted.reasons.push("insecureAcceptAnything: accepted without checks".into());
                continue;
            }
            (Requirement::Reject, _) => {
                return Err(Refused::Rejected { scope: image.scope.clone(), policy: policy.to_string() });
            }
            (_, Some(kind)) => kind,
            (_, None) => unreachable!("every other requirement reads signatures"),
        };
        let identity = req.identity().cloned().unwrap_or(SignedIdentity::MatchRepoDigestOrExact);
        let mine: Vec<&Signature> = sigs.iter().filter(|s| s.kind() == kind).take(MAX_SIGNATURES).collect();
        if mine.is_empty() {
            return Err(Refused::Unsigned { scope: image.scope.clone(), requirement: req.type_name().into() });
        }
        let want = manifest_digest.get_or_insert_with(|| Digest::of_bytes(image.manifest)).clone();
        let mut reasons = Vec::new();
        let mut good = None;
        for (i, sig) in mine.iter().enumerate() {
            let n = i + 1;
            match check(req, sig) {
                Err(e) => reasons.push(format!("signature {n}: {}", crate::reference::shorten_to(&e, MAX_REASON))),
                Ok(v) if v.manifest_digest != want => reasons
                    .push(format!("signature {n}: it signs manifest {}, not this image's {want}", v.manifest_digest)),
                Ok(v) => match identity.matches(image.reference, &v.identity) {
                    Err(e) => reasons.push(format!("signature {n}: {}", crate::reference::shorten_to(&e, MAX_REASON))),
                    Ok(()) => {
                        good = Some(v);
                        break;
                    }
                },
            }
        }
        match good {
            Some(v) => {
                accepted.reasons.push(format!("{}: signed by {} for {}", req.type_name(), v.signer, v.identity));
                accepted.verified.push(v);
            }
            None => {
                return Err(Refused::NoneValid {
                    scope: image.scope.clone(),
                    requirement: req.type_name().into(),
                    count: mine.len(),
                    reasons: reasons.join("; "),
                })
            }
        }
    }
    Ok(accepted)
}

// ---- parsing ----

fn kind_err(node: &Node, what: &str, want: &str) -> At {
    (node.at, format!("{what} must be {want}, not {}", node.value.kind()))
}

fn object<'a>(node: &'a Node, what: &str) -> Result<&'a [(String, Node)], At> {
    match &node.value {
        Value::Object(m) => Ok(m),
        _ => Err(kind_err(node, what, "an object")),
    }
}

fn string<'a>(node: &'a Node, what: &str) -> Result<&'a str, At> {
    match &node.value {
        Value::String(s) => Ok(s),
        _ => Err(kind_err(node, what, "a string")),
    }
}

fn path(node: &Node, what: &str) -> Result<PathBuf, At> {
    let s = string(node, what)?;
    if s.is_empty() {
        return Err((node.at, format!("{what} is empty; name a key file")));
    }
    Ok(PathBuf::from(s))
}

fn paths(node: &Node, what: &str) -> Result<Vec<PathBuf>, At> {
    let Value::Array(items) = &node.value else {
        return Err(kind_err(node, what, "an array of file names"));
    };
    if items.is_empty() {
        return Err((node.at, format!("{what} is empty; name at least one key file")));
    }
    items.iter().map(|i| path(i, what)).collect()
}

fn data(node: &Node, what: &str) -> Result<Vec<u8>, At> {
    let s = string(node, what)?;
    // As Go's encoding/json reads []byte: standard base64, line ends ignored.
    let clean: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|e| (node.at, format!("{what} is not valid base64 ({e}); encode the key with `base64 -w0`")))
}

fn parse_root(root: &Node) -> Result<(Vec<Requirement>, Transports), At> {
    let members = object(root, "the policy")?;
    let mut default = None;
    let mut transports = BTreeMap::new();
    for (k, v) in members {
        match k.as_str() {
            "default" => default = Some(parse_reqs(v, "default")?),
            "transports" => {
                for (t, scopes) in object(v, "\"transports\"")? {
                    let mut out = BTreeMap::new();
                    for (scope, reqs) in object(scopes, &format!("transport {t:?}"))? {
                        check_scope(t, scope).map_err(|m| (reqs.at, format!("{m}; fix or remove the scope")))?;
                        out.insert(scope.clone(), parse_reqs(reqs, &format!("scope {scope:?}"))?);
                    }
                    transports.insert(t.clone(), out);
                }
            }
            other => {
                return Err((
                    v.at,
                    format!("unknown key {other:?} in the policy; only \"default\" and \"transports\" are allowed"),
                ))
            }
        }
    }
    let default = default.ok_or_else(|| {
        (root.at, "the policy has no \"default\"; add one, e.g. \"default\": [{\"type\": \"reject\"}]".to_string())
    })?;
    Ok((default, transports))
}

fn parse_reqs(node: &Node, what: &str) -> Result<Vec<Requirement>, At> {
    let Value::Array(items) = &node.value else {
        return Err(kind_err(node, &format!("the requirements of {what}"), "an array"));
    };
    if items.is_empty() {
        return Err((
            node.at,
            format!("the requirements of {what} are an empty list; add one (e.g. {{\"type\": \"reject\"}})"),
        ));
    }
    items.iter().map(parse_req).collect()
}

/// The members of a requirement object, checked against the keys its
/// type allows.
fn fields<'a>(members: &'a [(String, Node)], ty: &str, allowed: &[&str]) -> Result<BTreeMap<&'a str, &'a Node>, At> {
    let mut out = BTreeMap::new();
    for (k, v) in members {
        if !allowed.contains(&k.as_str()) {
            return Err((v.at, format!("unknown key {k:?} in a {ty:?} requirement; allowed: {}", allowed.join(", "))));
        }
        out.insert(k.as_str(), v);
    }
    Ok(out)
}

/// Exactly one key source of `names` (path, paths, data).
fn key_source(f: &BTreeMap<&str, &Node>, at: usize, names: [&str; 3], what: &str) -> Result<Option<KeySource>, At> {
    let present: Vec<&str> = names.iter().copied().filter(|n| f.contains_key(n)).collect();
    match present.as_slice() {
        [] => Ok(None),
        [one] => {
            let n = f[one];
            Ok(Some(if *one == names[0] {
                KeySource::Path(path(n, one)?)
            } else if *one == names[1] {
                KeySource::Paths(paths(n, one)?)
            } else {
                KeySource::Data(data(n, one)?)
            }))
        }
        many => Err((at, format!("{what} has {}; keep exactly one", many.join(" and ")))),
    }
}

fn parse_identity(f: &BTreeMap<&str, &Node>) -> Result<SignedIdentity, At> {
    match f.get("signedIdentity") {
        None => Ok(SignedIdentity::MatchRepoDigestOrExact),
        Some(n) => SignedIdentity::from_json(n),
    }
}

fn parse_req(node: &Node) -> Result<Requirement, At> {
    let members = object(node, "a requirement")?;
    let Some((_, ty)) = members.iter().find(|(k, _)| k == "type") else {
        return Err((
            node.at,
            "a requirement has no \"type\"; add one (insecureAcceptAnything, reject, signedBy or sigstoreSigned)"
                .into(),
        ));
    };
    let ty_name = string(ty, "\"type\"")?;
    match ty_name {
        "insecureAcceptAnything" | "reject" => {
            fields(members, ty_name, &["type"])?;
            Ok(if ty_name == "reject" { Requirement::Reject } else { Requirement::InsecureAcceptAnything })
        }
        "signedBy" => {
            let f = fields(members, ty_name, &["type", "keyType", "keyPath", "keyPaths", "keyData", "signedIdentity"])?;
            match f.get("keyType") {
                None => return Err((node.at, "a \"signedBy\" requirement has no \"keyType\"; add \"keyType\": \"GPGKeys\"".into())),
                Some(n) => match string(n, "\"keyType\"")? {
                    "GPGKeys" => {}
                    t @ ("signedByGPGKeys" | "X509Certificates" | "signedByX509CAs") => {
                        return Err((n.at, format!("keyType {t:?} is not implemented (containers/image refuses every image with it too); use \"GPGKeys\"")))
                    }
                    t => return Err((n.at, format!("unknown keyType {t:?}; use \"GPGKeys\""))),
                },
            }
            let identity = parse_identity(&f)?;
            let keys = key_source(&f, node.at, ["keyPath", "keyPaths", "keyData"], "a \"signedBy\" requirement")?
                .ok_or_else(|| (node.at, "a \"signedBy\" requirement has no key; add one of keyPath, keyPaths or keyData".to_string()))?;
            Ok(Requirement::SignedBy { keys, identity })
        }
        "sigstoreSigned" => {
            let f = fields(
                members,
                ty_name,
                &[
                    "type",
                    "keyPath",
                    "keyPaths",
                    "keyData",
                    "keyDatas",
                    "fulcio",
                    "pki",
                    "rekorPublicKeyPath",
                    "rekorPublicKeyPaths",
                    "rekorPublicKeyData",
                    "rekorPublicKeyDatas",
                    "signedIdentity",
                ],
            )?;
            for unsupported in ["keyDatas", "pki", "rekorPublicKeyDatas"] {
                if let Some(n) = f.get(unsupported) {
                    return Err((n.at, format!("{unsupported:?} is not supported by img; use keyPath, keyPaths, keyData or fulcio")));
                }
            }
            let identity = parse_identity(&f)?;
            let key = key_source(&f, node.at, ["keyPath", "keyPaths", "keyData"], "a \"sigstoreSigned\" requirement")?;
            let fulcio = f.get("fulcio").map(|n| parse_fulcio(n)).transpose()?;
            if key.is_some() && fulcio.is_some() {
                return Err((node.at, "a \"sigstoreSigned\" requirement has both a key and \"fulcio\"; keep exactly one".into()));
            }
            if key.is_none() && fulcio.is_none() {
                return Err((node.at, "a \"sigstoreSigned\" requirement has no key; add one of keyPath, keyPaths, keyData or fulcio".into()));
            }
            let rekor = key_source(
                &f,
                node.at,
                ["rekorPublicKeyPath", "rekorPublicKeyPaths", "rekorPublicKeyData"],
                "a \"sigstoreSigned\" requirement",
            )?;
            if fulcio.is_some() && rekor.is_none() {
                return Err((node.at, "a \"sigstoreSigned\" requirement with \"fulcio\" needs a Rekor key; add rekorPublicKeyPath or rekorPublicKeyData".into()));
            }
            Ok(Requirement::SigstoreSigned { key, fulcio, rekor_public_key: rekor, identity })
        }
        "signedBaseLayer" => Err((
            ty.at,
            "\"signedBaseLayer\" is not implemented (containers/image refuses every image with it too); use signedBy, sigstoreSigned or reject".into(),
        )),
        other => Err((
            ty.at,
            format!("unknown requirement type {other:?}; use insecureAcceptAnything, reject, signedBy or sigstoreSigned"),
        )),
    }
}

fn parse_fulcio(node: &Node) -> Result<Fulcio, At> {
    let members = object(node, "\"fulcio\"")?;
    let mut f = BTreeMap::new();
    for (k, v) in members {
        if !["caPath", "caData", "oidcIssuer", "subjectEmail"].contains(&k.as_str()) {
            return Err((
                v.at,
                format!("unknown key {k:?} in \"fulcio\"; allowed: caPath, caData, oidcIssuer, subjectEmail"),
            ));
        }
        f.insert(k.as_str(), v);
    }
    let ca = match (f.get("caPath"), f.get("caData")) {
        (Some(_), Some(_)) => return Err((node.at, "\"fulcio\" has both caPath and caData; keep exactly one".into())),
        (Some(p), None) => KeySource::Path(path(p, "caPath")?),
        (None, Some(d)) => KeySource::Data(data(d, "caData")?),
        (None, None) => return Err((node.at, "\"fulcio\" has no CA; add caPath or caData".into())),
    };
    let non_empty = |k: &str| -> Result<String, At> {
        match f.get(k) {
            None => Err((node.at, format!("\"fulcio\" has no {k}; add it"))),
            Some(n) => match string(n, k)? {
                "" => Err((n.at, format!("{k} is empty; set it"))),
                s => Ok(s.to_string()),
            },
        }
    };
    Ok(Fulcio { ca, oidc_issuer: non_empty("oidcIssuer")?, subject_email: non_empty("subjectEmail")? })
}

#[cfg(test)]
mod tests;
