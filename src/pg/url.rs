//! `postgres://USER@HOST[:PORT]/DB[?PARAMS]`, the part of libpq's URI
//! syntax this client speaks. Pure.

use super::error::PgError;
use std::path::PathBuf;
use std::time::Duration;

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A host name or address, connected to over TCP.
    Tcp(String),
    /// The directory of the server's Unix socket (`.s.PGSQL.PORT` in it).
    Unix(PathBuf),
}

/// A parsed connection URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub user: String,
    pub dbname: String,
    pub host: Host,
    pub port: u16,
    pub application_name: Option<String>,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
}

/// The socket directory libpq uses when the URL names no host.
pub const DEFAULT_SOCKET_DIR: &str = "/run/postgresql";
/// Connect and per-read or per-write timeout unless the URL says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Config {
    /// Where the connection goes, for messages: `127.0.0.1:5432` or the
    /// socket's path.
    pub fn target(&self) -> String {
        match &self.host {
            Host::Tcp(h) if h.contains(':') => format!("[{h}]:{}", self.port),
            Host::Tcp(h) => format!("{h}:{}", self.port),
            Host::Unix(d) => self.socket_path(d).display().to_string(),
        }
    }

    pub fn socket_path(&self, dir: &std::path::Path) -> PathBuf {
        dir.join(format!(".s.PGSQL.{}", self.port))
    }
}

fn bad(url_what: impl std::fmt::Display) -> PgError {
    PgError::config(format!("postgres url: {url_what}"))
}

/// Parses a connection URL. A password in it is refused: it would be seen
/// in the process's arguments and environment by anyone on the machine.
pub fn parse(url: &str) -> Result<Config, PgError> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(|| bad("it must start with postgres:// (postgres://USER@HOST:PORT/DB)"))?;
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    if main.contains('#') || query.is_some_and(|q| q.contains('#')) {
        return Err(bad("a fragment (#) has no meaning here: remove it"));
    }
    let (authority, path) = match main.find('/') {
        Some(i) => (&main[..i], &main[i + 1..]),
        None => (main, ""),
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let mut user = None;
    if let Some(ui) = userinfo {
        if ui.contains(':') {
            return Err(bad("a password in the url would be visible to other users of the machine: \
                 remove it and set PGPASSWORD or use a password file (~/.pgpass)"));
        }
        user = Some(decode(ui, "user")?);
    }
    let (mut host, mut port) = split_host_port(hostport)?;
    if path.contains('/') {
        return Err(bad(format!("database name {path:?} has a slash: write it as %2F")));
    }
    let mut dbname = if path.is_empty() { None } else { Some(decode(path, "database name")?) };
    let mut application_name = None;
    let mut connect_timeout = DEFAULT_TIMEOUT;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) =
            pair.split_once('=').ok_or_else(|| bad(format!("parameter {pair:?} has no value: write NAME=VALUE")))?;
        let v = decode(v, k)?;
        match k {
            "host" => host = Some(v),
            "port" => port = Some(parse_port(&v)?),
            "user" => user = Some(v),
            "dbname" => dbname = Some(v),
            "application_name" => application_name = Some(v),
            "connect_timeout" => {
                let s: u64 = v
                    .parse()
                    .ok()
                    .filter(|s| *s <= 3600)
                    .ok_or_else(|| bad(format!("connect_timeout {v:?} is not a number of seconds up to 3600")))?;
                // As libpq: 0 means no limit of its own; ours is the default.
                if s > 0 {
                    connect_timeout = Duration::from_secs(s.max(2));
                }
            }
            "sslmode" => match v.as_str() {
                "disable" | "allow" | "prefer" => {}
                _ => {
                    return Err(bad(format!(
                        "sslmode={v} is not supported: this client speaks to postgresql \
                         without tls, over loopback or a unix socket; use sslmode=disable, \
                         or reach a remote server through a local tunnel"
                    )))
                }
            },
            "password" => {
                return Err(bad("a password in the url would be visible to other users of the machine: \
                     remove it and set PGPASSWORD or use a password file (~/.pgpass)"))
            }
            _ => {
                return Err(bad(format!(
                    "unknown parameter {k:?}: the known ones are host, port, user, dbname, \
                     application_name, connect_timeout and sslmode"
                )))
            }
        }
    }
    let user = user.filter(|u| !u.is_empty()).ok_or_else(|| bad("no user: write postgres://USER@HOST:PORT/DB"))?;
    let dbname = dbname.filter(|d| !d.is_empty()).unwrap_or_else(|| user.clone());
    let host = match host.filter(|h| !h.is_empty()) {
        None => Host::Unix(PathBuf::from(DEFAULT_SOCKET_DIR)),
        Some(h) if h.starts_with('/') => Host::Unix(PathBuf::from(h)),
        Some(h) if h.contains(',') => return Err(bad(format!("several hosts ({h}) are not supported: name one"))),
        Some(h) => Host::Tcp(h),
    };
    for (what, s) in [("user", &user), ("database name", &dbname)] {
        if s.contains('\0') {
            return Err(bad(format!("the {what} has a NUL byte")));
        }
    }
    if application_name.as_ref().is_some_and(|a| a.contains('\0')) {
        return Err(bad("the application_name has a NUL byte"));
    }
    Ok(Config { user, dbname, host, port: port.unwrap_or(5432), application_name, connect_timeout })
}

fn split_host_port(hp: &str) -> Result<(Option<String>, Option<u16>), PgError> {
    if hp.is_empty() {
        return Ok((None, None));
    }
    if let Some(rest) = hp.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| bad(format!("host {hp:?} lacks its closing ]")))?;
        let port = match after {
            "" => None,
            p => Some(parse_port(
                p.strip_prefix(':')
                    .ok_or_else(|| bad(format!("unexpected {p:?} after the host [{h}]: write [ADDRESS]:PORT")))?,
            )?),
        };
        return Ok((Some(h.to_string()), port));
    }
    match hp.rsplit_once(':') {
        Some((h, p)) => Ok((Some(decode(h, "host")?), Some(parse_port(p)?))),
        None => Ok((Some(decode(hp, "host")?), None)),
    }
}

fn parse_port(p: &str) -> Result<u16, PgError> {
    p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad(format!("port {p:?} is not a number from 1 to 65535")))
}

/// Percent-decoding; the result must be UTF-8.
fn decode(s: &str, what: &str) -> Result<String, PgError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let v = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad(format!("{what} {s:?} has a % not followed by two hex digits")))?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(format!("{what} {s:?} is not UTF-8 once decoded")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(user: &str, host: &str, port: u16, db: &str) -> Config {
        Config {
            user: user.into(),
            dbname: db.into(),
            host: Host::Tcp(host.into()),
            port,
            application_name: None,
            connect_timeout: DEFAULT_TIMEOUT,
        }
    }

    #[test]
    fn good_urls() {
        let unix = |dir: &str, port: u16| Config { host: Host::Unix(dir.into()), port, ..tcp("img", "x", 5432, "img") };
        let cases: Vec<(&str, Config)> = vec![
            ("postgres://img@127.0.0.1:5433/img", tcp("img", "127.0.0.1", 5433, "img")),
            ("postgresql://img@localhost/reg", tcp("img", "localhost", 5432, "reg")),
            ("postgres://img@127.0.0.1", tcp("img", "127.0.0.1", 5432, "img")),
            ("postgres://img@[::1]:6000/img", tcp("img", "::1", 6000, "img")),
            ("postgres://img@[::1]/img", tcp("img", "::1", 5432, "img")),
            ("postgres://a%40b@h/d%2Fe", tcp("a@b", "h", 5432, "d/e")),
            ("postgres://img@/img", unix(DEFAULT_SOCKET_DIR, 5432)),
            ("postgres://img@/img?host=/tmp/pg&port=5444", unix("/tmp/pg", 5444)),
            ("postgres://img@x/img?host=%2Fvar%2Frun%2Fpostgresql", unix("/var/run/postgresql", 5432)),
            ("postgres://h/img?user=img", tcp("img", "h", 5432, "img")),
            ("postgres://img@h/x?dbname=img&sslmode=disable", tcp("img", "h", 5432, "img")),
            (
                "postgres://img@h:1/img?application_name=img%20serve",
                Config { application_name: Some("img serve".into()), ..tcp("img", "h", 1, "img") },
            ),
            (
                "postgres://img@h/img?connect_timeout=5",
                Config { connect_timeout: Duration::from_secs(5), ..tcp("img", "h", 5432, "img") },
            ),
            (
                "postgres://img@h/img?connect_timeout=1",
                Config { connect_timeout: Duration::from_secs(2), ..tcp("img", "h", 5432, "img") },
            ),
            ("postgres://img@h/img?connect_timeout=0", tcp("img", "h", 5432, "img")),
        ];
        for (url, want) in cases {
            assert_eq!(parse(url).unwrap_or_else(|e| panic!("{url}: {e}")), want, "{url}");
        }
    }

    #[test]
    fn bad_urls() {
        let cases = [
            ("mysql://img@h/img", "must start with postgres://"),
            ("postgres://img:secret@h/img", "password in the url"),
            ("postgres://img@h/img?password=x", "password in the url"),
            ("postgres://img@h/img?sslmode=require", "sslmode=require is not supported"),
            ("postgres://img@h/img?sslmode=verify-full", "without tls"),
            ("postgres://@h/img", "no user"),
            ("postgres://h/img", "no user"),
            ("postgres://img@h:0/img", "port \"0\""),
            ("postgres://img@h:99999/img", "port \"99999\""),
            ("postgres://img@h:x/img", "port \"x\""),
            ("postgres://img@[::1/img", "closing ]"),
            ("postgres://img@[::1]x/img", "after the host"),
            ("postgres://img@h/a/b", "has a slash"),
            ("postgres://img@h/img?frob=1", "unknown parameter \"frob\""),
            ("postgres://img@h/img?host", "has no value"),
            ("postgres://img@h/img?connect_timeout=-1", "connect_timeout"),
            ("postgres://img@h/img?connect_timeout=99999", "connect_timeout"),
            ("postgres://img@h/%zz", "two hex digits"),
            ("postgres://img@h/%", "two hex digits"),
            ("postgres://img@h/%ff", "not UTF-8"),
            ("postgres://img@h/a%00", "NUL"),
            ("postgres://img@h/img?host=a,b", "several hosts"),
            ("postgres://img@h/img#x", "fragment"),
        ];
        for (url, want) in cases {
            match parse(url) {
                Ok(c) => panic!("{url}: accepted as {c:?}"),
                Err(e) => assert!(e.to_string().contains(want), "{url}: {e}"),
            }
        }
    }

    #[test]
    fn targets() {
        assert_eq!(tcp("u", "::1", 5, "d").target(), "[::1]:5");
        assert_eq!(tcp("u", "127.0.0.1", 5, "d").target(), "127.0.0.1:5");
        let c = parse("postgres://u@/d?host=/tmp/x&port=7").unwrap();
        assert_eq!(c.target(), "/tmp/x/.s.PGSQL.7");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = parse(&s);
            let _ = parse(&format!("postgres://{s}"));
        }
    }
}
