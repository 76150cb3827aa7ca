//! The password file (`~/.pgpass`, or `PGPASSFILE`), read as libpq reads
//! it: lines `host:port:database:user:password`, `*` matching anything,
//! `\` escaping `:` and `\`, `#` starting a comment line; a file that its
//! group or others may read is ignored.

use super::url::{Config, Host};
use std::path::{Path, PathBuf};

/// Files bigger than this are not password files.
const MAX_FILE: u64 = 1 << 20;

/// The password for a connection from the file's text, if a line matches.
pub fn lookup(text: &str, host: &str, port: &str, db: &str, user: &str) -> Option<String> {
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let mut rest = line;
        let mut ok = true;
        for want in [host, port, db, user] {
            match field_matches(rest, want) {
                Some(r) => rest = r,
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            continue;
        }
        // The password: up to an unescaped ':' or the end, unescaped.
        let mut pw = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                ':' => break,
                '\\' => match chars.next() {
                    Some(n) => pw.push(n),
                    None => pw.push('\\'),
                },
                c => pw.push(c),
            }
        }
        return Some(pw);
    }
    None
}

/// Whether the field at the start of `s` matches `want`; the rest of the
/// line after its ':' if so.
fn field_matches<'a>(s: &'a str, want: &str) -> Option<&'a str> {
    if let Some(rest) = s.strip_prefix("*:") {
        return Some(rest);
    }
    let mut want = want.chars();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        let c = match c {
            ':' => {
                return if want.next().is_none() { Some(&s[i + 1..]) } else { None };
            }
            '\\' => chars.next()?.1,
            c => c,
        };
        if want.next() != Some(c) {
            return None;
        }
    }
    None
}

/// The host as the file names it: the default socket directory is
/// `localhost`, as in libpq.
pub fn host_key(cfg: &Config) -> String {
    match &cfg.host {
        Host::Tcp(h) => h.clone(),
        Host::Unix(d) if d == Path::new("/run/postgresql") || d == Path::new("/var/run/postgresql") => {
            "localhost".into()
        }
        Host::Unix(d) => d.display().to_string(),
    }
}

/// The file to read: `PGPASSFILE`, else `~/.pgpass`.
pub fn path() -> Option<PathBuf> {
    match std::env::var_os("PGPASSFILE") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| Path::new(&h).join(".pgpass")),
    }
}

/// The password for `cfg` from the file at `path`. `Err` is a note for the
/// message given if the server then asks for a password (why the file was
/// not used); a missing file is no note.
pub fn read(path: &Path, cfg: &Config) -> Result<Option<String>, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("password file {} cannot be read ({e})", path.display())),
    };
    if !meta.is_file() {
        return Err(format!("password file {} is not a plain file", path.display()));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "password file {} was ignored because its group or others may read it: chmod 600 it",
            path.display()
        ));
    }
    if meta.len() > MAX_FILE {
        return Err(format!("password file {} is over 1 MiB and was ignored", path.display()));
    }
    let text = std::fs::read(path).map_err(|e| format!("password file {} cannot be read ({e})", path.display()))?;
    let text = String::from_utf8_lossy(&text);
    Ok(lookup(&text, &host_key(cfg), &cfg.port.to_string(), &cfg.dbname, &cfg.user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_match_as_in_libpq() {
        let file = "\
# comment:*:*:*:nope
db.example:5432:img:img:first
*:5433:*:img:second
127.0.0.1:*:img:*:third
localhost:5432:img:img:sock\\:et\\\\pw:ignored
h\\:x:1:d:u:escaped-host
*:*:*:*:last\r
";
        let cases = [
            (("db.example", "5432", "img", "img"), Some("first")),
            (("db.example", "5433", "img", "img"), Some("second")),
            (("other", "5433", "x", "img"), Some("second")),
            (("127.0.0.1", "5432", "img", "bob"), Some("third")),
            (("127.0.0.1", "5432", "other", "bob"), Some("last")),
            (("localhost", "5432", "img", "img"), Some("sock:et\\pw")),
            (("h:x", "1", "d", "u"), Some("escaped-host")),
            (("db.example", "5432", "img", "im"), Some("last")),
            (("db.exampl", "5432", "img", "img"), Some("last")),
        ];
        for ((h, p, d, u), want) in cases {
            assert_eq!(lookup(file, h, p, d, u).as_deref(), want, "{h}:{p}:{d}:{u}");
        }
        assert_eq!(lookup("h:1:d:u:pw", "h", "1", "d", "x"), None);
        assert_eq!(lookup("h:1:d:u", "h", "1", "d", "u"), None, "no password field");
        assert_eq!(lookup("h:1:d:u:", "h", "1", "d", "u").as_deref(), Some(""));
        assert_eq!(lookup("h:1:d:u:a\\", "h", "1", "d", "u").as_deref(), Some("a\\"));
        assert_eq!(lookup("", "h", "1", "d", "u"), None);
        assert_eq!(lookup("*", "h", "1", "d", "u"), None);
    }

    #[test]
    fn socket_hosts() {
        let mut c = super::super::url::parse("postgres://u@/d").unwrap();
        assert_eq!(host_key(&c), "localhost");
        c.host = Host::Unix("/tmp/pg".into());
        assert_eq!(host_key(&c), "/tmp/pg");
    }

    #[test]
    fn permissions_are_checked() {
        use std::os::unix::fs::PermissionsExt;
        let d = crate::testdir::TestDir::new("pgpass");
        let f = d.join("pgpass");
        let cfg = super::super::url::parse("postgres://img@127.0.0.1:5432/img").unwrap();
        assert_eq!(read(&f, &cfg), Ok(None));
        std::fs::write(&f, "127.0.0.1:5432:img:img:pw\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read(&f, &cfg).unwrap_err().contains("chmod 600"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read(&f, &cfg), Ok(Some("pw".into())));
        assert!(read(&d, &cfg).unwrap_err().contains("not a plain file"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,200}", h in "\\PC{0,8}") {
            let _ = lookup(&text, &h, "5432", "d", "u");
        }
    }
}
