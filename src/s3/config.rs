//! `s3://BUCKET[/PREFIX]?endpoint=URL&region=R[&credentials=FILE][&profile=P][&redirect=true]`
//! and the credentials it leads to: the environment's, else the shared
//! credentials file's.

use std::path::PathBuf;

/// The largest credentials file read.
const MAX_CREDENTIALS_FILE: u64 = 1 << 20;

/// Where and as whom to reach one bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// `http://host:port` or `https://host[:port]`, no trailing slash.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Put before every key (with a `/` between), without slashes around
    /// it; empty for none.
    pub prefix: String,
    pub access_key: String,
    pub secret_key: String,
    /// Whether blob downloads are answered with a redirect to a pre-signed
    /// URL rather than streamed through.
    pub redirect: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("access_key", &self.access_key)
            .field("secret_key", &"(hidden)")
            .field("redirect", &self.redirect)
            .finish()
    }
}

/// Decodes the `%XX` escapes of a URL part (not `+`).
fn percent_decode(s: &str, what: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let v = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(v.ok_or_else(|| format!("{what} has a bad %-escape"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{what} is not UTF-8 once decoded"))
}

/// S3's bucket naming rules (3 to 63 of `a-z0-9.-`, starting and ending
/// with a letter or digit).
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

/// `http(s)://host[:port][/]`, returned without the slash.
fn valid_endpoint(e: &str) -> Result<String, String> {
    let rest = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"))
        .ok_or_else(|| format!("endpoint {e:?} is not an http:// or https:// URL"))?;
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) || !host.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "endpoint {e:?} must be scheme://host[:port] with no path, query or user; \
             the bucket goes in the s3:// URL"
        ));
    }
    Ok(e.strip_suffix('/').unwrap_or(e).to_string())
}

/// The `[profile]` section's keys of an AWS shared credentials file.
pub(crate) fn read_credentials_file(text: &str, profile: &str) -> Option<(String, String)> {
    let mut in_profile = false;
    let (mut key, mut secret) = (None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            // config-file style `[profile x]` is accepted too
            let name = name.strip_prefix("profile ").map(str::trim).unwrap_or(name);
            in_profile = name == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "aws_access_key_id" => key = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                _ => {}
            }
        }
    }
    Some((key?, secret?)).filter(|(k, s)| !k.is_empty() && !s.is_empty())
}

/// The parts of the URL, before credentials are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
    pub credentials: Option<String>,
    pub profile: Option<String>,
    pub redirect: bool,
}

pub(crate) fn parse_url(url: &str) -> Result<Parsed, String> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| format!("{url:?} is not an s3:// URL"))?;
    if rest.contains('#') {
        return Err("an s3:// URL takes no #fragment".into());
    }
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.contains('@') {
        return Err("an access key or secret in the s3:// URL is refused (others on this machine can read a \
                    process's arguments); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or use a credentials file"
            .into());
    }
    if !valid_bucket(bucket) {
        return Err(format!(
            "bucket {bucket:?} is not a valid bucket name (3 to 63 of a-z, 0-9, '.' and '-'); write s3://BUCKET[/PREFIX]?endpoint=URL&region=R"
        ));
    }
    let prefix = percent_decode(prefix, "the prefix")?;
    let prefix = prefix.trim_matches('/').to_string();
    if prefix.split('/').any(|p| p.is_empty() || p == "." || p == "..") && !prefix.is_empty() {
        return Err(format!("prefix {prefix:?} has an empty, '.' or '..' part"));
    }
    if prefix.chars().any(char::is_control) || prefix.len() > 512 {
        return Err("the prefix has a control character or is longer than 512 bytes".into());
    }
    let (mut endpoint, mut region, mut credentials, mut profile, mut redirect) = (None, None, None, None, false);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v, &format!("parameter {k}"))?;
        let slot = match k {
            "endpoint" => &mut endpoint,
            "region" => &mut region,
            "credentials" => &mut credentials,
            "profile" => &mut profile,
            "redirect" => {
                redirect = match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(format!("redirect={v} is neither true nor false")),
                };
                continue;
            }
            "access_key"
            | "secret_key"
            | "access_key_id"
            | "secret_access_key"
            | "aws_access_key_id"
            | "aws_secret_access_key"
            | "key"
            | "secret"
            | "session_token"
            | "token" => {
                return Err(format!(
                    "parameter {k} is refused: a secret in the URL would be in the process's arguments; \
                     set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or use a credentials file"
                ))
            }
            _ => {
                return Err(format!(
                    "unknown parameter {k:?}; the s3:// URL takes endpoint, region, credentials, profile and redirect"
                ))
            }
        };
        if slot.is_some() {
            return Err(format!("parameter {k} is given twice"));
        }
        if v.is_empty() {
            return Err(format!("parameter {k} is empty"));
        }
        *slot = Some(v);
    }
    let endpoint = valid_endpoint(
        &endpoint.ok_or("the s3:// URL needs endpoint=URL (for example endpoint=http://127.0.0.1:3900)")?,
    )?;
    let region = region.ok_or("the s3:// URL needs region=R (the store's region, \"garage\" for Garage's default)")?;
    if !region.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') || region.len() > 64 {
        return Err(format!("region {region:?} has characters other than a-z, 0-9, '-' and '_'"));
    }
    if profile.as_deref().is_some_and(|p| p.contains(['[', ']', '\n'])) {
        return Err("the profile name has '[', ']' or a newline".into());
    }
    Ok(Parsed { endpoint, region, bucket: bucket.to_string(), prefix, credentials, profile, redirect })
}

/// The credentials for `p`: `env` is the environment (a parameter for
/// tests).
pub(crate) fn credentials(p: &Parsed, env: &dyn Fn(&str) -> Option<String>) -> Result<(String, String), String> {
    let key = env("AWS_ACCESS_KEY_ID").filter(|v| !v.is_empty());
    let secret = env("AWS_SECRET_ACCESS_KEY").filter(|v| !v.is_empty());
    match (key, secret) {
        (Some(k), Some(s)) => return Ok((k, s)),
        (Some(_), None) => {
            return Err("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not; set both or neither".into())
        }
        (None, Some(_)) => {
            return Err("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not; set both or neither".into())
        }
        (None, None) => {}
    }
    let file = match (&p.credentials, env("AWS_SHARED_CREDENTIALS_FILE").filter(|v| !v.is_empty()), env("HOME")) {
        (Some(f), _, _) => PathBuf::from(f),
        (None, Some(f), _) => PathBuf::from(f),
        (None, None, Some(h)) => PathBuf::from(h).join(".aws/credentials"),
        (None, None, None) => {
            return Err("no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or credentials=FILE".into())
        }
    };
    let profile =
        p.profile.clone().or_else(|| env("AWS_PROFILE").filter(|v| !v.is_empty())).unwrap_or("default".into());
    let text = read_bounded(&file).map_err(|e| {
        format!(
            "no credentials: AWS_ACCESS_KEY_ID is not set and credentials file {} cannot be read ({e}); set the variables or name a file with credentials=FILE",
            file.display()
        )
    })?;
    read_credentials_file(&text, &profile).ok_or_else(|| {
        format!(
            "credentials file {} has no profile [{profile}] with aws_access_key_id and aws_secret_access_key; add them or choose another with profile=P",
            file.display()
        )
    })
}

fn read_bounded(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?.take(MAX_CREDENTIALS_FILE).read_to_string(&mut text)?;
    Ok(text)
}

impl Config {
    /// `s3://BUCKET[/PREFIX]?endpoint=URL&region=R[&credentials=FILE][&profile=P][&redirect=true]`.
    /// Credentials: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY from the
    /// environment, else the shared credentials file (credentials=FILE,
    /// else AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials; profile
    /// from profile= or AWS_PROFILE or "default"). A key or secret in the
    /// URL itself is refused (it would be in the process's arguments).
    pub fn parse(url: &str) -> Result<Config, super::S3Error> {
        Self::parse_with_env(url, &|k| std::env::var(k).ok())
    }

    /// [`Config::parse`] with the environment given.
    pub fn parse_with_env(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, super::S3Error> {
        let p = parse_url(url).map_err(|e| super::S3Error::Config(format!("s3 URL: {e}")))?;
        let (access_key, secret_key) =
            credentials(&p, env).map_err(|e| super::S3Error::Config(format!("s3 bucket {}: {e}", p.bucket)))?;
        Ok(Config {
            endpoint: p.endpoint,
            region: p.region,
            bucket: p.bucket,
            prefix: p.prefix,
            access_key,
            secret_key,
            redirect: p.redirect,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parsed(endpoint: &str, bucket: &str, prefix: &str) -> Parsed {
        Parsed {
            endpoint: endpoint.into(),
            region: "garage".into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
            credentials: None,
            profile: None,
            redirect: false,
        }
    }

    #[test]
    fn url_table() {
        let e = "endpoint=http://127.0.0.1:3900&region=garage";
        let ok: Vec<(String, Parsed)> = vec![
            (format!("s3://img?{e}"), parsed("http://127.0.0.1:3900", "img", "")),
            (format!("s3://img/?{e}"), parsed("http://127.0.0.1:3900", "img", "")),
            (format!("s3://img/a/b/?{e}"), parsed("http://127.0.0.1:3900", "img", "a/b")),
            (format!("s3://img/a%20b?{e}"), parsed("http://127.0.0.1:3900", "img", "a b")),
            (
                "s3://my.bucket-1?region=garage&endpoint=https%3A%2F%2Fs3.example.com%2F".into(),
                parsed("https://s3.example.com", "my.bucket-1", ""),
            ),
            (
                format!("s3://img/p?{e}&credentials=/etc/img/s3&profile=blobs&redirect=true"),
                Parsed {
                    credentials: Some("/etc/img/s3".into()),
                    profile: Some("blobs".into()),
                    redirect: true,
                    ..parsed("http://127.0.0.1:3900", "img", "p")
                },
            ),
        ];
        for (url, want) in ok {
            assert_eq!(parse_url(&url).unwrap_or_else(|e| panic!("{url}: {e}")), want, "{url}");
        }
        let bad: &[(&str, &str)] = &[
            ("http://img?endpoint=http://h&region=r", "not an s3:// URL"),
            ("s3://AK:SECRET@img?endpoint=http://h&region=r", "refused"),
            ("s3://img?endpoint=http://h&region=r&secret_key=x", "refused"),
            ("s3://img?endpoint=http://h&region=r&access_key=x", "refused"),
            ("s3://img?region=r", "needs endpoint"),
            ("s3://img?endpoint=http://h", "needs region"),
            ("s3://img?endpoint=ftp://h&region=r", "not an http"),
            ("s3://img?endpoint=http://h/path&region=r", "no path"),
            ("s3://img?endpoint=http://u@h&region=r", "no path, query or user"),
            ("s3://img?endpoint=http://&region=r", "scheme://host"),
            ("s3://Img?endpoint=http://h&region=r", "not a valid bucket"),
            ("s3://ab?endpoint=http://h&region=r", "not a valid bucket"),
            ("s3://-ab?endpoint=http://h&region=r", "not a valid bucket"),
            ("s3://img/a//b?endpoint=http://h&region=r", "empty"),
            ("s3://img/a/../b?endpoint=http://h&region=r", "'..'"),
            ("s3://img/a%0a?endpoint=http://h&region=r", "control"),
            ("s3://img/a%zz?endpoint=http://h&region=r", "bad %-escape"),
            ("s3://img?endpoint=http://h&region=r&region=s", "twice"),
            ("s3://img?endpoint=http://h&region=", "empty"),
            ("s3://img?endpoint=http://h&region=a/b", "region"),
            ("s3://img?endpoint=http://h&region=r&redirect=yes", "neither"),
            ("s3://img?endpoint=http://h&region=r&bogus=1", "unknown parameter"),
            ("s3://img?endpoint=http://h&region=r#x", "fragment"),
            ("s3://img?endpoint=http://h&region=r&profile=a]", "profile"),
        ];
        for (url, want) in bad {
            let e = parse_url(url).unwrap_err();
            assert!(e.contains(want), "{url}: {e}");
        }
    }

    #[test]
    fn credentials_come_from_the_environment_then_the_file() {
        let dir = crate::testdir::TestDir::new("s3-creds");
        let file = dir.join("credentials");
        std::fs::write(
            &file,
            "# comment\n[default]\naws_access_key_id = DEF\naws_secret_access_key = defsecret\n\n\
             [profile blobs]\n AWS_ACCESS_KEY_ID=BLOB\naws_secret_access_key= blobsecret \naws_session_token=x\n[empty]\naws_access_key_id=\n",
        )
        .unwrap();
        let file_s = file.to_string_lossy().into_owned();
        let url = "s3://img?endpoint=http://127.0.0.1:3900&region=garage";
        let env_of = |pairs: Vec<(&'static str, String)>| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        };

        let both = env_of(vec![("AWS_ACCESS_KEY_ID", "ENV".into()), ("AWS_SECRET_ACCESS_KEY", "envsecret".into())]);
        let c = Config::parse_with_env(&format!("{url}&credentials={file_s}"), &both).unwrap();
        assert_eq!((c.access_key.as_str(), c.secret_key.as_str()), ("ENV", "envsecret"));

        let one = env_of(vec![("AWS_ACCESS_KEY_ID", "ENV".into())]);
        assert!(Config::parse_with_env(url, &one).unwrap_err().to_string().contains("AWS_SECRET_ACCESS_KEY is not"));

        let none = env_of(vec![]);
        let c = Config::parse_with_env(&format!("{url}&credentials={file_s}"), &none).unwrap();
        assert_eq!((c.access_key.as_str(), c.secret_key.as_str()), ("DEF", "defsecret"));
        let c = Config::parse_with_env(&format!("{url}&credentials={file_s}&profile=blobs"), &none).unwrap();
        assert_eq!((c.access_key.as_str(), c.secret_key.as_str()), ("BLOB", "blobsecret"));

        let shared = env_of(vec![("AWS_SHARED_CREDENTIALS_FILE", file_s.clone()), ("AWS_PROFILE", "blobs".into())]);
        assert_eq!(Config::parse_with_env(url, &shared).unwrap().access_key, "BLOB");
        let home = env_of(vec![("HOME", "/nonexistent-home".into())]);
        let e = Config::parse_with_env(url, &home).unwrap_err().to_string();
        assert!(e.contains("/nonexistent-home/.aws/credentials"), "{e}");
        let e = Config::parse_with_env(&format!("{url}&credentials={file_s}&profile=empty"), &none)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no profile [empty]"), "{e}");
        assert!(!format!("{c:?}").contains("blobsecret"));
    }

    proptest! {
        #[test]
        fn parse_url_never_panics(s in "s3://[a-z./%?&=:@#0-9A-F-]{0,80}") {
            let _ = parse_url(&s);
        }

        #[test]
        fn credentials_file_never_panics(s in "\\PC{0,200}", p in "[a-z]{0,6}") {
            let _ = read_credentials_file(&s, &p);
        }
    }
}
