//! Registry credentials in docker's format: `{"auths": {"HOST": {"auth":
//! base64("user:pass")}}}`, plus `credHelpers` / `credsStore`, which run
//! `docker-credential-NAME` as docker does.
//!
//! img writes podman's file (`${XDG_RUNTIME_DIR}/containers/auth.json`, or
//! `--authfile`), created with mode 0600 through a temp file and a rename so
//! it is never readable by others, not even for a moment. It reads that
//! file, `~/.config/containers/auth.json` and `~/.docker/config.json`.

use serde_json::{json, Map, Value};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("{path} is not a valid auth file: {msg}; fix or remove it")]
    Invalid { path: PathBuf, msg: String },
    #[error("credential helper docker-credential-{helper}: {msg}")]
    Helper { helper: String, msg: String },
}

pub type Result<T> = std::result::Result<T, AuthFileError>;

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password, even in debug output.
        write!(f, "Credentials {{ username: {:?}, password: <redacted> }}", self.username)
    }
}

/// The file `img login` writes by default (podman's).
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        Some(d) => PathBuf::from(d).join("containers/auth.json"),
        None => PathBuf::from(format!("/run/containers/{}/auth.json", crate::user::effective_uid().unwrap_or(0))),
    }
}

/// Files searched for credentials, in order.
pub fn search_paths(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    let mut v = vec![default_path()];
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        let xdg_config = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".config"));
        v.push(xdg_config.join("containers/auth.json"));
        let docker = std::env::var_os("DOCKER_CONFIG").map(PathBuf::from).unwrap_or_else(|| home.join(".docker"));
        v.push(docker.join("config.json"));
    }
    v
}

/// The keys a registry host may be stored under.
fn keys_for(host: &str) -> Vec<String> {
    let mut v = vec![host.to_string(), format!("https://{host}"), format!("http://{host}")];
    if host == "docker.io" {
        v.extend(["index.docker.io".into(), "https://index.docker.io/v1/".into(), "registry-1.docker.io".into()]);
    }
    v
}

fn read_json(path: &Path) -> Result<Option<Map<String, Value>>> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AuthFileError::Io { action: "reading", path: path.to_path_buf(), source: e }),
    };
    if data.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Some(Map::new()));
    }
    match serde_json::from_slice::<Value>(&data) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(AuthFileError::Invalid { path: path.to_path_buf(), msg: "not a JSON object".into() }),
        Err(e) => Err(AuthFileError::Invalid { path: path.to_path_buf(), msg: e.to_string() }),
    }
}

fn decode_auth(path: &Path, s: &str) -> Result<Credentials> {
    let raw = base64_decode(s).ok_or_else(|| AuthFileError::Invalid {
        path: path.to_path_buf(),
        msg: "an auth entry is not base64".into(),
    })?;
    let text = String::from_utf8(raw)
        .map_err(|_| AuthFileError::Invalid { path: path.to_path_buf(), msg: "an auth entry is not UTF-8".into() })?;
    let (u, p) = text.split_once(':').ok_or_else(|| AuthFileError::Invalid {
        path: path.to_path_buf(),
        msg: "an auth entry is not user:password".into(),
    })?;
    Ok(Credentials { username: u.to_string(), password: p.to_string() })
}

/// Runs `docker-credential-NAME get` for `host`.
fn from_helper(helper: &str, host: &str) -> Result<Option<Credentials>> {
    use std::process::{Command, Stdio};
    if !helper.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
        return Err(AuthFileError::Helper { helper: helper.into(), msg: "invalid helper name".into() });
    }
    let prog = format!("docker-credential-{helper}");
    let mut child = Command::new(&prog)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| AuthFileError::Helper { helper: helper.into(), msg: format!("cannot run {prog}: {e}") })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(host.as_bytes());
    }
    let out =
        child.wait_with_output().map_err(|e| AuthFileError::Helper { helper: helper.into(), msg: e.to_string() })?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout);
        if msg.contains("credentials not found") {
            return Ok(None);
        }
        return Err(AuthFileError::Helper { helper: helper.into(), msg: format!("exited with {}", out.status) });
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| AuthFileError::Helper { helper: helper.into(), msg: format!("bad answer: {e}") })?;
    let user = v.get("Username").and_then(|u| u.as_str()).unwrap_or("").to_string();
    let secret = v.get("Secret").and_then(|u| u.as_str()).unwrap_or("").to_string();
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials { username: user, password: secret }))
}

/// Looks up credentials for a registry host (`127.0.0.1:5000`, `docker.io`).
pub fn lookup(explicit: Option<&Path>, host: &str) -> Result<Option<Credentials>> {
    for path in search_paths(explicit) {
        let Some(doc) = read_json(&path)? else { continue };
        if let Some(helper) = doc
            .get("credHelpers")
            .and_then(|h| h.as_object())
            .and_then(|h| keys_for(host).iter().find_map(|k| h.get(k)).and_then(|v| v.as_str()).map(str::to_string))
        {
            if let Some(c) = from_helper(&helper, host)? {
                return Ok(Some(c));
            }
        }
        if let Some(auths) = doc.get("auths").and_then(|a| a.as_object()) {
            for k in keys_for(host) {
                if let Some(auth) = auths.get(&k).and_then(|e| e.get("auth")).and_then(|a| a.as_str()) {
                    if !auth.is_empty() {
                        return Ok(Some(decode_auth(&path, auth)?));
                    }
                }
            }
        }
        if let Some(store) = doc.get("credsStore").and_then(|s| s.as_str()) {
            if let Some(c) = from_helper(store, host)? {
                return Ok(Some(c));
            }
        }
    }
    Ok(None)
}

/// Writes `doc` to `path` with mode 0600 (directory 0700), atomically.
fn write_private(path: &Path, doc: &Map<String, Value>) -> Result<()> {
    let io_err = |action, source| AuthFileError::Io { action, path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_err("creating the directory of", e))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let res = (|| -> io::Result<()> {
        // Created 0600: the file is never readable by others, not even
        // between creation and a chmod.
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&Value::Object(doc.clone())).map_err(io::Error::other)?)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map_err(|e| io_err("writing", e))
}

/// Stores credentials for `host` in `path`.
pub fn store(path: &Path, host: &str, creds: &Credentials) -> Result<()> {
    let mut doc = read_json(path)?.unwrap_or_default();
    let auths = doc.entry("auths").or_insert_with(|| json!({}));
    if !auths.is_object() {
        *auths = json!({});
    }
    let auths = auths.as_object_mut().expect("just made an object");
    for k in keys_for(host).iter().skip(1) {
        auths.remove(k);
    }
    auths.insert(
        host.to_string(),
        json!({ "auth": base64_encode(format!("{}:{}", creds.username, creds.password).as_bytes()) }),
    );
    write_private(path, &doc)
}

/// Removes credentials for `host` (all hosts when `None`); returns whether any were there.
pub fn remove(path: &Path, host: Option<&str>) -> Result<bool> {
    let Some(mut doc) = read_json(path)? else { return Ok(false) };
    let Some(auths) = doc.get_mut("auths").and_then(|a| a.as_object_mut()) else { return Ok(false) };
    let removed = match host {
        None => {
            let had = !auths.is_empty();
            auths.clear();
            had
        }
        Some(h) => {
            let mut had = false;
            for k in keys_for(h) {
                had |= auths.remove(&k).is_some();
            }
            had
        }
    };
    if removed {
        write_private(path, &doc)?;
    }
    Ok(removed)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B64.iter().position(|&x| x == c).or(match c {
            b'-' => Some(62),
            b'_' => Some(63),
            _ => None,
        })? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn store_lookup_remove_round_trip_with_private_mode() {
        let dir = std::env::temp_dir().join(format!("img-auth-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let p = dir.join("sub/auth.json");
        let c = Credentials { username: "u".into(), password: "p:w".into() };
        store(&p, "127.0.0.1:5000", &c).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(p.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(lookup(Some(&p), "127.0.0.1:5000").unwrap(), Some(c.clone()));
        assert_eq!(lookup(Some(&p), "other:5000").unwrap(), None);
        assert!(remove(&p, Some("127.0.0.1:5000")).unwrap());
        assert_eq!(lookup(Some(&p), "127.0.0.1:5000").unwrap(), None);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn debug_output_hides_the_password() {
        let c = Credentials { username: "u".into(), password: "s3cret".into() };
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn base64_known_values() {
        assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_encode(b"a"), "YQ==");
        assert!(base64_decode("!!").is_none());
    }

    proptest! {
        #[test]
        fn base64_round_trips(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
        }
    }
}
