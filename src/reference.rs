//! Docker image references: parsing, normalisation and name matching.
//!
//! This is a pure parser (no IO) of the grammar of
//! `github.com/distribution/reference`, with the normalisation of docker's
//! `reference.ParseNormalizedNamed`:
//!
//! ```text
//! reference := [domain[:port]/]path-component[/path-component...][:tag][@digest]
//! ```
//!
//! A name without a domain lives on `docker.io`, `index.docker.io` is the same
//! registry as `docker.io`, and a single-component name on `docker.io` is an
//! official image under `library/` (`busybox` is `docker.io/library/busybox`).
//!
//! The parser is stricter than docker in two places, both so that nothing it
//! accepts can turn into a path with `..` in it: a digest must be `sha256:`
//! with 64 or `sha512:` with 128 lower-case hex characters, and a tag must not
//! contain `..`.

use std::fmt;

/// The registry that names without a domain refer to.
const DEFAULT_DOMAIN: &str = "docker.io";
/// The old name of the default registry, normalised to `DEFAULT_DOMAIN`.
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The namespace of official images on the default registry.
const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The maximum length of `domain/path`.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// The maximum length of a tag.
const TAG_LENGTH_MAX: usize = 128;
/// Inputs longer than this many characters are shortened in error messages.
const ERROR_INPUT_MAX: usize = 256;

/// A parsed and normalised image reference such as
/// `docker.io/library/busybox:1.36`.
///
/// The domain is never empty (`docker.io` when the input named none), the
/// path is never empty, and a reference on `docker.io` always has at least two
/// path components.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The registry, e.g. `docker.io`, `127.0.0.1:5000`, `localhost` or `[::1]:5000`.
    domain: String,
    /// The repository path inside the registry, e.g. `library/busybox` or `ns/sub/app`.
    path: String,
    /// The tag, without the `:`.
    tag: Option<String>,
    /// The digest, `sha256:<64 hex>` or `sha512:<128 hex>`.
    digest: Option<String>,
}

/// Why a reference or a tag was refused.
///
/// Every variant carries the offending input; inputs longer than 256
/// characters are shortened (and end in `…`) in the error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The input was the empty string.
    #[error("invalid reference: empty string")]
    Empty,
    /// The input was exactly 64 lower-case hex characters, which docker
    /// reserves for image IDs.
    #[error("invalid reference {input:?}: cannot specify 64-byte hexadecimal strings")]
    HexadecimalName {
        /// The input.
        input: String,
    },
    /// The repository path contained an upper-case letter.
    #[error("invalid reference {input:?}: repository name must be lowercase")]
    Uppercase {
        /// The input.
        input: String,
    },
    /// The registry part (before the first `/`) was not a valid domain.
    #[error("invalid reference {input:?}: invalid domain {domain:?}: {reason}")]
    InvalidDomain {
        /// The input.
        input: String,
        /// The domain part of the input.
        domain: String,
        /// What is wrong with the domain.
        reason: String,
    },
    /// The repository path was missing or had an invalid component.
    #[error("invalid reference {input:?}: {reason}")]
    InvalidPath {
        /// The input.
        input: String,
        /// What is wrong with the path.
        reason: String,
    },
    /// The normalised `domain/path` was longer than 255 characters.
    #[error("invalid reference {input:?}: repository name must not be more than 255 characters (it has {len})")]
    NameTooLong {
        /// The input.
        input: String,
        /// The length of the normalised `domain/path`.
        len: usize,
    },
    /// The tag of a reference was invalid.
    #[error("invalid reference {input:?}: invalid tag {tag:?}: {reason}")]
    InvalidTag {
        /// The input.
        input: String,
        /// The tag part of the input.
        tag: String,
        /// What is wrong with the tag.
        reason: String,
    },
    /// The digest of a reference was invalid.
    #[error("invalid reference {input:?}: invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        /// The input.
        input: String,
        /// The digest part of the input.
        digest: String,
        /// What is wrong with the digest.
        reason: String,
    },
    /// A tag given on its own (to `validate_tag` or `Reference::with_tag`) was invalid.
    #[error("invalid tag {tag:?}: {reason}")]
    Tag {
        /// The tag.
        tag: String,
        /// What is wrong with the tag.
        reason: String,
    },
}

impl Reference {
    /// Parses and normalises a reference; it does not add a default tag.
    ///
    /// `busybox` becomes `docker.io/library/busybox`, `index.docker.io/x/y`
    /// becomes `docker.io/x/y`, and `localhost:5000/app:1` keeps its domain.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if is_lower_hex(input, 64) {
            return Err(ReferenceError::HexadecimalName { input: shorten(input) });
        }

        // Neither the name nor the tag can contain '@', so the first '@'
        // starts the digest.
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((left, right)) => (left, Some(right)),
            None => (input, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to a
        // port in the domain.
        let last_slash = name_and_tag.rfind('/');
        let (name, tag) = match name_and_tag.rfind(':') {
            Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
                (&name_and_tag[..colon], Some(&name_and_tag[colon + 1..]))
            }
            _ => (name_and_tag, None),
        };

        let (domain, path) = split_domain(name);
        if path.is_empty() {
            return Err(ReferenceError::InvalidPath {
                input: shorten(input),
                reason: "missing repository name after the domain".to_string(),
            });
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase { input: shorten(input) });
        }
        for component in path.split('/') {
            if let Err(reason) = check_path_component(component) {
                return Err(ReferenceError::InvalidPath { input: shorten(input), reason });
            }
        }
        if let Some(domain) = domain {
            if let Err(reason) = check_domain(domain) {
                return Err(ReferenceError::InvalidDomain { input: shorten(input), domain: shorten(domain), reason });
            }
        }

        let domain = match domain {
            None | Some(LEGACY_DEFAULT_DOMAIN) => DEFAULT_DOMAIN,
            Some(d) => d,
        };
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_REPO_PREFIX}{path}")
        } else {
            path.to_string()
        };
        let len = domain.len() + 1 + path.len();
        if len > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong { input: shorten(input), len });
        }

        if let Some(tag) = tag {
            if let Err(reason) = check_tag(tag) {
                return Err(ReferenceError::InvalidTag { input: shorten(input), tag: shorten(tag), reason });
            }
        }
        if let Some(digest) = digest {
            if let Err(reason) = check_digest(digest) {
                return Err(ReferenceError::InvalidDigest { input: shorten(input), digest: shorten(digest), reason });
            }
        }

        Ok(Reference {
            domain: domain.to_string(),
            path,
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
        })
    }

    /// Like `parse`, then adds the tag `latest` when there is neither a tag
    /// nor a digest.
    pub fn parse_with_default_tag(input: &str) -> Result<Reference, ReferenceError> {
        let mut r = Reference::parse(input)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some("latest".to_string());
        }
        Ok(r)
    }

    /// The registry, e.g. `docker.io` or `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:<hex>` or `sha512:<hex>`), if the reference has one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The fully qualified repository name, e.g. `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository and tag, e.g. `docker.io/library/busybox:1.36`, or
    /// `None` when the reference has no tag.
    pub fn tagged_name(&self) -> Option<String> {
        self.tag.as_ref().map(|tag| format!("{}:{tag}", self.repository()))
    }

    /// Returns a copy with the given tag and no digest; the tag is validated
    /// as `validate_tag` does.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        validate_tag(tag)?;
        Ok(Reference { domain: self.domain.clone(), path: self.path.clone(), tag: Some(tag.to_string()), digest: None })
    }

    /// Returns a copy without tag and digest.
    pub fn without_tag_or_digest(&self) -> Reference {
        Reference { domain: self.domain.clone(), path: self.path.clone(), tag: None, digest: None }
    }

    /// Docker's "familiar" short form, which drops `docker.io/` and
    /// `library/`: `busybox:latest`, `user/app:1`, `127.0.0.1:5000/app:1`.
    ///
    /// Unlike docker, it keeps what is needed for the short form to parse
    /// back into the same reference: `docker.io/` stays when the first path
    /// component would be taken for a domain (`docker.io/a.b/c`), and
    /// `library/` stays in front of a bare 64-character hex name.
    pub fn familiar(&self) -> String {
        let mut out = if self.domain == DEFAULT_DOMAIN {
            let bare = self.tag.is_none() && self.digest.is_none();
            // A nested path, and a bare hex name that parse would refuse,
            // keep their "library/".
            let keeps_library = |rest: &&str| rest.contains('/') || (bare && is_lower_hex(rest, 64));
            let official = self.path.strip_prefix(OFFICIAL_REPO_PREFIX).filter(|rest| !keeps_library(rest));
            match official {
                Some(rest) => rest.to_string(),
                None => {
                    let first = self.path.split('/').next().unwrap_or_default();
                    if looks_like_domain(first) {
                        self.repository()
                    } else {
                        self.path.clone()
                    }
                }
            }
        } else {
            self.repository()
        };
        self.push_tag_and_digest(&mut out);
        out
    }

    /// Appends `:tag` and `@digest` when present.
    fn push_tag_and_digest(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest);
        }
    }
}

impl fmt::Display for Reference {
    /// Writes the fully qualified form, `domain/path[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.repository();
        self.push_tag_and_digest(&mut out);
        f.write_str(&out)
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;

    /// Parses as `Reference::parse` does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// True if `s` is a plausible image ID or ID prefix: an optional `sha256:`
/// followed by 4 to 64 lower-case hex characters.
pub fn looks_like_id(s: &str) -> bool {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    (4..=64).contains(&hex.len()) && hex.bytes().all(is_lower_hex_byte)
}

/// Validates a tag on its own, for commands that take a tag separately.
///
/// A tag is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` without `..` in it.
pub fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    check_tag(tag).map_err(|reason| ReferenceError::Tag { tag: shorten(tag), reason })
}

/// Matches `text` against a glob `pattern` the way Go's `path.Match` does,
/// as docker's `reference=` filter and `img images PATTERN` need.
///
/// `*` matches any run of characters except `/`, `?` matches one character
/// except `/`, `[abc]`, `[a-z]` and `[^a-z]` are character classes, and `\`
/// makes the next character literal. A malformed pattern (an unclosed or
/// empty class, a trailing `\`) matches nothing.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let Some(tokens) = compile_glob(pattern) else {
        return false;
    };
    let text: Vec<char> = text.chars().collect();
    // next[j] says whether tokens[i + 1..] match text[j..]; row i is built
    // from it, from the end of the pattern to its start.
    let mut next = vec![false; text.len() + 1];
    next[text.len()] = true;
    for token in tokens.iter().rev() {
        let mut row = vec![false; text.len() + 1];
        for j in (0..=text.len()).rev() {
            row[j] = match token {
                GlobToken::Star => next[j] || (j < text.len() && text[j] != '/' && row[j + 1]),
                GlobToken::AnyOne => j < text.len() && text[j] != '/' && next[j + 1],
                GlobToken::Literal(c) => j < text.len() && text[j] == *c && next[j + 1],
                GlobToken::Class { negated, ranges } => {
                    j < text.len() && {
                        let c = text[j];
                        let hit = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                        hit != *negated && next[j + 1]
                    }
                }
            };
        }
        next = row;
    }
    next[0]
}

/// One element of a compiled glob pattern.
enum GlobToken {
    /// `*`: any run of characters except `/`.
    Star,
    /// `?`: one character except `/`.
    AnyOne,
    /// A character that must appear as is.
    Literal(char),
    /// `[...]`: one character in (or, negated, not in) the inclusive ranges.
    Class { negated: bool, ranges: Vec<(char, char)> },
}

/// Compiles a glob pattern, or returns `None` when it is malformed by the
/// rules of Go's `path.Match`.
fn compile_glob(pattern: &str) -> Option<Vec<GlobToken>> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                // Consecutive stars match the same as one.
                if !matches!(tokens.last(), Some(GlobToken::Star)) {
                    tokens.push(GlobToken::Star);
                }
                i += 1;
            }
            '?' => {
                tokens.push(GlobToken::AnyOne);
                i += 1;
            }
            '\\' => {
                tokens.push(GlobToken::Literal(*chars.get(i + 1)?));
                i += 2;
            }
            '[' => {
                i += 1;
                let negated = chars.get(i) == Some(&'^');
                if negated {
                    i += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    if chars.get(i) == Some(&']') && !ranges.is_empty() {
                        i += 1;
                        break;
                    }
                    let lo = class_char(&chars, &mut i)?;
                    let mut hi = lo;
                    if chars.get(i) == Some(&'-') {
                        i += 1;
                        hi = class_char(&chars, &mut i)?;
                    }
                    ranges.push((lo, hi));
                }
                tokens.push(GlobToken::Class { negated, ranges });
            }
            c => {
                tokens.push(GlobToken::Literal(c));
                i += 1;
            }
        }
    }
    Some(tokens)
}

/// Reads one (possibly escaped) character of a class at `chars[*i]`, like
/// Go's `getEsc`: it must not be `-` or `]`, and something must follow it.
fn class_char(chars: &[char], i: &mut usize) -> Option<char> {
    let mut c = *chars.get(*i)?;
    if c == '-' || c == ']' {
        return None;
    }
    if c == '\\' {
        *i += 1;
        c = *chars.get(*i)?;
    }
    *i += 1;
    if *i >= chars.len() {
        return None;
    }
    Some(c)
}

/// Splits a name (without tag or digest) into its domain, if the first
/// component is one by docker's rule, and its path.
fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest)) if looks_like_domain(first) => (Some(first), rest),
        _ => (None, name),
    }
}

/// Docker's rule for whether the first component of a name is a domain: it
/// contains `.` or `:`, is `localhost`, or has an upper-case letter (which
/// a path may not have).
fn looks_like_domain(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost" || first.bytes().any(|b| b.is_ascii_uppercase())
}

/// Checks `host[:port]`, where host is a DNS name or a bracketed IPv6
/// address.
fn check_domain(domain: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return Err("missing \"]\" after the IPv6 address".to_string());
        };
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err("an IPv6 address may only contain hex digits and \":\"".to_string());
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err("unexpected text after the IPv6 address".to_string()),
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        if host.is_empty() {
            return Err("empty host name".to_string());
        }
        for component in host.split('.') {
            check_domain_component(component)?;
        }
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err("the port must be decimal digits".to_string());
        }
    }
    Ok(())
}

/// Checks one dot-separated part of a host name:
/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn check_domain_component(component: &str) -> Result<(), String> {
    let bytes = component.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return Err("empty host name component".to_string());
    };
    if !bytes.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(format!("host name component {:?} may only contain letters, digits and \"-\"", shorten(component)));
    }
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err(format!("host name component {:?} must start and end with a letter or digit", shorten(component)));
    }
    Ok(())
}

/// Checks one path component: `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
fn check_path_component(component: &str) -> Result<(), String> {
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let is_separator = |b: u8| b == b'.' || b == b'_' || b == b'-';
    let bytes = component.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return Err("empty path component (\"//\", or a leading or trailing \"/\")".to_string());
    };
    if let Some(&b) = bytes.iter().find(|&&b| !is_alnum(b) && !is_separator(b)) {
        return Err(if b.is_ascii() {
            format!("path component {:?} contains invalid character {:?}", shorten(component), b as char)
        } else {
            format!("path component {:?} contains a non-ASCII character", shorten(component))
        });
    }
    if !is_alnum(first) || !is_alnum(last) {
        return Err(format!(
            "path component {:?} must start and end with a lower-case letter or digit",
            shorten(component)
        ));
    }
    // The separators between alphanumeric runs must each be ".", "_", "__"
    // or one or more "-".
    for run in component.split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        let ok = run.is_empty() || run == "." || run == "_" || run == "__" || run.bytes().all(|b| b == b'-');
        if !ok {
            return Err(format!(
                "path component {:?} has the invalid separator {run:?} (use \".\", \"_\", \"__\" or dashes)",
                shorten(component)
            ));
        }
    }
    Ok(())
}

/// Checks a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` without `..`.
fn check_tag(tag: &str) -> Result<(), String> {
    let Some(&first) = tag.as_bytes().first() else {
        return Err("empty tag".to_string());
    };
    if let Some(c) = tag.chars().find(|&c| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')) {
        return Err(format!("a tag may only contain letters, digits, \"_\", \".\" and \"-\", not {c:?}"));
    }
    if first == b'.' || first == b'-' {
        return Err("a tag must start with a letter, a digit or \"_\"".to_string());
    }
    if tag.len() > TAG_LENGTH_MAX {
        return Err(format!("a tag must not be more than {TAG_LENGTH_MAX} characters (it has {})", tag.len()));
    }
    if tag.contains("..") {
        return Err("a tag must not contain \"..\"".to_string());
    }
    Ok(())
}

/// Checks a digest: `sha256:` with 64 or `sha512:` with 128 lower-case hex
/// characters.
fn check_digest(digest: &str) -> Result<(), String> {
    if digest.is_empty() {
        return Err("empty digest after \"@\"".to_string());
    }
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err("missing \"algorithm:\" prefix (expected \"sha256:\" or \"sha512:\")".to_string());
    };
    let want = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "unsupported algorithm {:?} (only sha256 and sha512 are supported)",
                shorten(algorithm)
            ))
        }
    };
    if hex.is_empty() {
        return Err(format!("no hex characters after \"{algorithm}:\""));
    }
    if let Some(c) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("{c:?} is not a hex character"));
    }
    if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("hex characters must be lower-case".to_string());
    }
    if hex.len() != want {
        return Err(format!("a {algorithm} digest has {want} hex characters, not {}", hex.len()));
    }
    Ok(())
}

/// True if `b` is a lower-case hex character.
fn is_lower_hex_byte(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// True if `s` is exactly `len` lower-case hex characters.
fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(is_lower_hex_byte)
}

/// Copies `s` for an error message, shortened to `ERROR_INPUT_MAX`
/// characters: hostile input can be megabytes long.
fn shorten(s: &str) -> String {
    shorten_to(s, ERROR_INPUT_MAX)
}

/// `s` cut to at most `n` characters, an ellipsis marking the cut (for
/// messages that quote long or hostile input).
pub fn shorten_to(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse_ok(s: &str) -> Reference {
        match Reference::parse(s) {
            Ok(r) => r,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn parse_err(s: &str) -> ReferenceError {
        match Reference::parse(s) {
            Ok(r) => panic!("{s:?} should be refused, got {r}"),
            Err(e) => e,
        }
    }

    #[test]
    fn table() {
        let table = include_str!("../testdata/references.txt");
        let mut cases = 0;
        let mut failures = Vec::new();
        for (n, line) in table.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((input, expected)) = line.split_once('\t') else {
                panic!("line {}: no tab in {line:?}", n + 1);
            };
            let expected = expected.trim();
            cases += 1;
            let got = match Reference::parse(input) {
                Ok(r) => r.to_string(),
                Err(_) => "error".to_string(),
            };
            if got != expected {
                failures.push(format!("line {}: {input:?}: want {expected}, got {got}", n + 1));
            }
            // Every accepted reference round-trips through Display and familiar.
            if let Ok(r) = Reference::parse(input) {
                assert_eq!(Reference::parse(&r.to_string()).as_ref(), Ok(&r), "line {}", n + 1);
                assert_eq!(Reference::parse(&r.familiar()).as_ref(), Ok(&r), "line {}", n + 1);
            }
        }
        assert!(failures.is_empty(), "{} of {cases} cases failed:\n{}", failures.len(), failures.join("\n"));
        assert!(cases >= 80, "only {cases} cases in the table");
    }

    #[test]
    fn accessors() {
        let r = parse_ok(&format!("localhost:5000/ns/app:1.0@sha256:{HEX64}"));
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.path(), "ns/app");
        assert_eq!(r.tag(), Some("1.0"));
        assert_eq!(r.digest(), Some(format!("sha256:{HEX64}").as_str()));
        assert_eq!(r.repository(), "localhost:5000/ns/app");
        assert_eq!(r.tagged_name().as_deref(), Some("localhost:5000/ns/app:1.0"));
        assert_eq!(r.to_string(), format!("localhost:5000/ns/app:1.0@sha256:{HEX64}"));
        assert_eq!(r.familiar(), format!("localhost:5000/ns/app:1.0@sha256:{HEX64}"));

        let b = parse_ok("busybox");
        assert_eq!(b.domain(), "docker.io");
        assert_eq!(b.path(), "library/busybox");
        assert_eq!(b.tag(), None);
        assert_eq!(b.digest(), None);
        assert_eq!(b.tagged_name(), None);
        assert_eq!(b.familiar(), "busybox");
        assert_eq!("busybox".parse::<Reference>(), Ok(b));
    }

    #[test]
    fn default_tag() {
        let r = Reference::parse_with_default_tag("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        let r = Reference::parse_with_default_tag("busybox:1.36").unwrap();
        assert_eq!(r.tag(), Some("1.36"));
        let with_digest = format!("busybox@sha256:{HEX64}");
        let r = Reference::parse_with_default_tag(&with_digest).unwrap();
        assert_eq!(r.tag(), None);
        assert!(Reference::parse_with_default_tag("Busybox").is_err());
    }

    #[test]
    fn with_tag_and_without() {
        let r = parse_ok(&format!("user/app:1@sha256:{HEX64}"));
        let t = r.with_tag("2").unwrap();
        assert_eq!(t.to_string(), "docker.io/user/app:2");
        assert_eq!(t.digest(), None);
        assert!(matches!(r.with_tag(""), Err(ReferenceError::Tag { .. })));
        assert!(r.with_tag("-x").is_err());
        assert!(r.with_tag("a/b").is_err());
        let bare = r.without_tag_or_digest();
        assert_eq!(bare.to_string(), "docker.io/user/app");
        assert_eq!(bare.familiar(), "user/app");
    }

    #[test]
    fn familiar_forms() {
        assert_eq!(parse_ok("busybox:latest").familiar(), "busybox:latest");
        assert_eq!(parse_ok("docker.io/user/app:1").familiar(), "user/app:1");
        assert_eq!(parse_ok("index.docker.io/library/redis").familiar(), "redis");
        assert_eq!(parse_ok("127.0.0.1:5000/app:1").familiar(), "127.0.0.1:5000/app:1");
        assert_eq!(parse_ok("library/a/b").familiar(), "library/a/b");
        // These keep enough to parse back into the same reference.
        assert_eq!(parse_ok("docker.io/a.b/c").familiar(), "docker.io/a.b/c");
        assert_eq!(parse_ok("docker.io/localhost/c").familiar(), "docker.io/localhost/c");
        assert_eq!(parse_ok(&format!("library/{HEX64}")).familiar(), format!("library/{HEX64}"));
        assert_eq!(parse_ok(&format!("library/{HEX64}:1")).familiar(), format!("{HEX64}:1"));
    }

    #[test]
    fn error_messages() {
        assert_eq!(parse_err("Foo").to_string(), "invalid reference \"Foo\": repository name must be lowercase");
        assert_eq!(parse_err("").to_string(), "invalid reference: empty string");
        assert_eq!(
            parse_err(HEX64).to_string(),
            format!("invalid reference \"{HEX64}\": cannot specify 64-byte hexadecimal strings")
        );
        let e = parse_err("busybox@sha256:../x");
        assert!(matches!(e, ReferenceError::InvalidDigest { .. }), "{e:?}");
        assert!(e.to_string().contains("'.' is not a hex character"), "{e}");
        let e = parse_err(&format!("busybox@sha256:{}", HEX64.to_uppercase()));
        assert!(e.to_string().contains("lower-case"), "{e}");
        let e = parse_err("busybox@sha256:abc");
        assert!(e.to_string().contains("64 hex characters, not 3"), "{e}");
        let e = parse_err(&format!("busybox@md5:{HEX64}"));
        assert!(e.to_string().contains("unsupported algorithm \"md5\""), "{e}");
        let e = parse_err("busybox@");
        assert!(e.to_string().contains("empty digest"), "{e}");
        let e = parse_err("busybox:");
        assert!(matches!(e, ReferenceError::InvalidTag { .. }), "{e:?}");
        let e = parse_err("a..b");
        assert!(matches!(e, ReferenceError::InvalidPath { .. }), "{e:?}");
        let e = parse_err("exa_mple.com/app");
        assert!(matches!(e, ReferenceError::InvalidDomain { .. }), "{e:?}");
        let e = parse_err(&format!("example.com/{}", "a".repeat(300)));
        assert!(matches!(e, ReferenceError::NameTooLong { len: 312, .. }), "{e:?}");
        assert!(e.to_string().ends_with("(it has 312)"), "{e}");
        // Huge inputs are shortened in errors.
        let huge = "A".repeat(100_000);
        assert!(parse_err(&huge).to_string().len() < 400);
        // Messages are lower-case and have no trailing period.
        for e in [parse_err("a//b"), parse_err("foo:-x"), validate_tag("").unwrap_err()] {
            let msg = e.to_string();
            assert!(msg.starts_with("invalid "), "{msg}");
            assert!(!msg.ends_with('.'), "{msg}");
        }
    }

    #[test]
    fn tags() {
        assert_eq!(validate_tag("latest"), Ok(()));
        assert_eq!(validate_tag("_x.Y-1"), Ok(()));
        assert_eq!(validate_tag(&"a".repeat(128)), Ok(()));
        assert!(validate_tag(&"a".repeat(129)).is_err());
        for bad in ["", ".x", "-x", "a b", "a/b", "a:b", "a@b", "ä", "1..2"] {
            assert!(validate_tag(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids() {
        assert!(looks_like_id("abcd"));
        assert!(looks_like_id("0123456789ab"));
        assert!(looks_like_id(HEX64));
        assert!(looks_like_id(&format!("sha256:{HEX64}")));
        assert!(looks_like_id("sha256:abcd"));
        assert!(!looks_like_id("abc"));
        assert!(!looks_like_id("sha256:abc"));
        assert!(!looks_like_id(""));
        assert!(!looks_like_id("sha256:"));
        assert!(!looks_like_id("ABCD"));
        assert!(!looks_like_id("abcg"));
        assert!(!looks_like_id(&format!("{HEX64}0")));
        assert!(!looks_like_id("sha512:abcd"));
        assert!(!looks_like_id("busybox"));
    }

    #[test]
    fn globs() {
        let yes = [
            ("*", "busybox"),
            ("*", ""),
            ("busy*", "busybox"),
            ("*box", "busybox"),
            ("b*x", "busybox"),
            ("b?sybox", "busybox"),
            ("*/*", "user/app"),
            ("user/*", "user/app"),
            ("*:*", "busybox:latest"),
            ("busybox:1.*", "busybox:1.36"),
            ("[ab]usybox", "busybox"),
            ("[a-c]usybox", "busybox"),
            ("[^x]usybox", "busybox"),
            ("[^a-c]x", "dx"),
            ("\\*", "*"),
            ("a\\?", "a?"),
            ("[\\]]", "]"),
            ("[\\-]", "-"),
            ("*a*b*", "xxaxxbxx"),
            ("**", "abc"),
            ("ä?", "äö"),
            ("[/]", "/"),
            ("a*b*c*d", "abxbcxd"),
        ];
        for (p, t) in yes {
            assert!(glob_match(p, t), "{p:?} should match {t:?}");
        }
        let no = [
            ("*", "user/app"),
            ("?", "/"),
            ("busy", "busybox"),
            ("busybox", "busy"),
            ("b?x", "bx"),
            ("[^b]usybox", "busybox"),
            ("[c-z]usybox", "busybox"),
            ("user*", "user/app"),
            ("*/*", "docker.io/library/busybox"),
            ("\\*", "a"),
            ("a?", "a"),
            // Malformed patterns match nothing, not even themselves.
            ("[", "["),
            ("[]", "]"),
            ("[]a]", "a"),
            ("[a", "a"),
            ("[a-", "a"),
            ("[a-]", "a"),
            ("[-a]", "a"),
            ("a\\", "a"),
            ("a\\", "a\\"),
            ("[^]", "x"),
            ("*[", "x"),
            ("x[", "y"),
        ];
        for (p, t) in no {
            assert!(!glob_match(p, t), "{p:?} should not match {t:?}");
        }
    }

    /// A valid path component: alphanumeric runs joined by valid separators.
    fn path_component() -> impl Strategy<Value = String> {
        (
            "[a-z0-9]{1,6}",
            prop::collection::vec(
                (prop::sample::select(vec![".", "_", "__", "-", "--", "---"]), "[a-z0-9]{1,5}"),
                0..3,
            ),
        )
            .prop_map(|(head, rest)| {
                let mut s = head;
                for (sep, run) in rest {
                    s.push_str(sep);
                    s.push_str(&run);
                }
                s
            })
    }

    /// A valid domain, or none.
    fn domain() -> impl Strategy<Value = Option<String>> {
        let dns = prop::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", 2..4).prop_map(|c| c.join("."));
        let port = prop::option::of(0u32..70000).prop_map(|p| p.map(|p| format!(":{p}")).unwrap_or_default());
        prop_oneof![
            Just(None),
            Just(Some("docker.io".to_string())),
            Just(Some("index.docker.io".to_string())),
            Just(Some("localhost".to_string())),
            (dns, port.clone()).prop_map(|(d, p)| Some(format!("{d}{p}"))),
            ("[a-z0-9]{1,8}", 0u32..70000).prop_map(|(d, p)| Some(format!("{d}:{p}"))),
            ("[A-Z][a-zA-Z0-9]{0,6}").prop_map(Some),
            // Docker only takes a first component for a domain when it has a
            // "." or ":", which every real IPv6 address has.
            ("[0-9a-fA-F]{0,4}:[0-9a-fA-F:]{0,10}", port).prop_map(|(a, p)| Some(format!("[{a}]{p}"))),
        ]
    }

    /// A valid tag; docker would also take `..` in one, this parser does not.
    fn tag() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}".prop_map(|mut t| {
            while t.contains("..") {
                t = t.replace("..", "._");
            }
            t
        })
    }

    fn digest() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}")),
            "[0-9a-f]{128}".prop_map(|h| format!("sha512:{h}")),
        ]
    }

    /// The parts of a valid reference: domain, path components, tag, digest.
    type Parts = (Option<String>, Vec<String>, Option<String>, Option<String>);

    /// The parts of a valid reference, in any of the accepted spellings.
    fn reference_parts() -> impl Strategy<Value = Parts> {
        (domain(), prop::collection::vec(path_component(), 1..5), prop::option::of(tag()), prop::option::of(digest()))
            .prop_map(|(domain, mut path, tag, digest)| {
                // Without a domain, a first component with a dot would be
                // taken for one.
                if domain.is_none() && path.len() > 1 {
                    path[0] = path[0].replace('.', "-");
                }
                (domain, path, tag, digest)
            })
    }

    /// Spells out the parts of a reference.
    fn join_parts((domain, path, tag, digest): &Parts) -> String {
        let mut s = match domain {
            Some(d) => format!("{d}/"),
            None => String::new(),
        };
        s.push_str(&path.join("/"));
        if let Some(t) = tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// A valid reference as a string.
    fn reference_input() -> impl Strategy<Value = String> {
        reference_parts().prop_map(|p| join_parts(&p)).prop_filter("not a bare 64-hex name", |s| !is_lower_hex(s, 64))
    }

    /// Checks what must hold for every accepted reference.
    fn check_invariants(r: &Reference) -> Result<(), TestCaseError> {
        prop_assert!(!r.domain.is_empty());
        prop_assert!(!r.path.is_empty());
        prop_assert!(!r.path.chars().any(char::is_uppercase), "path {:?}", r.path);
        prop_assert!(r.repository().len() <= 255);
        if let Some(t) = &r.tag {
            prop_assert!(!t.is_empty() && t.len() <= 128, "tag {t:?}");
            prop_assert_eq!(validate_tag(t), Ok(()));
        }
        if let Some(d) = &r.digest {
            let ok = d.strip_prefix("sha256:").is_some_and(|h| is_lower_hex(h, 64))
                || d.strip_prefix("sha512:").is_some_and(|h| is_lower_hex(h, 128));
            prop_assert!(ok, "digest {d:?}");
        }
        let shown = r.to_string();
        prop_assert!(!shown.contains(".."), "{shown:?}");
        prop_assert_eq!(Reference::parse(&shown), Ok(r.clone()));
        prop_assert_eq!(Reference::parse(&r.familiar()), Ok(r.clone()));
        Ok(())
    }

    proptest! {
        #[test]
        fn valid_references_round_trip(parts in reference_parts()) {
            let input = join_parts(&parts);
            let (domain, path, tag, digest) = parts;
            // Only the length limit can refuse a generated reference.
            match Reference::parse(&input) {
                Err(ReferenceError::NameTooLong { .. }) => {}
                Err(e) => return Err(TestCaseError::fail(format!("{input:?}: {e}"))),
                Ok(r) => {
                    check_invariants(&r)?;
                    let want_domain = match domain.as_deref() {
                        None | Some("index.docker.io") => "docker.io",
                        Some(d) => d,
                    };
                    prop_assert_eq!(r.domain(), want_domain);
                    let mut want_path = path.join("/");
                    if want_domain == "docker.io" && path.len() == 1 {
                        want_path = format!("library/{want_path}");
                    }
                    prop_assert_eq!(r.path(), want_path);
                    prop_assert_eq!(r.tag(), tag.as_deref());
                    prop_assert_eq!(r.digest(), digest.as_deref());
                }
            }
        }

        #[test]
        fn parse_never_panics_on_unicode(input in any::<String>()) {
            if let Ok(r) = Reference::parse(&input) {
                check_invariants(&r)?;
            }
            let _ = glob_match(&input, "docker.io/library/busybox:latest");
            let _ = glob_match("*", &input);
            let _ = looks_like_id(&input);
            let _ = validate_tag(&input);
        }

        #[test]
        fn parse_never_panics_on_reference_like(input in "[a-zA-Z0-9:/@._\\-\\[\\] ]{0,40}") {
            if let Ok(r) = Reference::parse(&input) {
                check_invariants(&r)?;
            }
        }

        #[test]
        fn parse_never_panics_on_mutated(
            input in reference_input(),
            at in any::<prop::sample::Index>(),
            c in prop::sample::select(vec!['/', ':', '@', '.', '_', '-', 'A', ' ', '[', ']', 'é']),
        ) {
            let mut chars: Vec<char> = input.chars().collect();
            let i = at.index(chars.len() + 1);
            chars.insert(i, c);
            let mutated: String = chars.into_iter().collect();
            if let Ok(r) = Reference::parse(&mutated) {
                check_invariants(&r)?;
            }
        }

        #[test]
        fn glob_literal_matches_itself(text in "[a-z0-9/:._-]{0,30}") {
            prop_assert!(glob_match(&text, &text));
            prop_assert_eq!(glob_match("*", &text), !text.contains('/'));
        }

        #[test]
        fn glob_never_panics(pattern in "[a-z*?\\[\\]^\\\\/-]{0,12}", text in "[a-z/\\[\\]^-]{0,12}") {
            let _ = glob_match(&pattern, &text);
        }
    }
}
