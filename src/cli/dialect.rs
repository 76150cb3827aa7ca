//! isula-build's and isula's spellings of img's commands.
//!
//! Called `isula-build` (a link to the binary, as busybox and podman-docker
//! are used), or as `img ctr-img ...`, img takes isula-build's command lines
//! (`ctr-img build|images|import|load|rm|save|tag|pull|push`, `login`,
//! `logout`, `info`, `version`, `manifest`, `completion`) with isula-build's
//! flags where they differ from docker's. Called `isula`, or as
//! `img isula ...`, it takes isula's image commands. `translate` rewrites
//! such a command line into img's (a pure function); the commands then
//! print the dialect's messages (`current`).

use serde_json::{json, Value};
use std::ffi::OsString;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    #[default]
    Img,
    IsulaBuild,
    Isula,
}

static CURRENT: OnceLock<Dialect> = OnceLock::new();

/// The dialect of this command line.
pub fn current() -> Dialect {
    CURRENT.get().copied().unwrap_or_default()
}

pub fn set(d: Dialect) {
    let _ = CURRENT.set(d);
}

/// What a command line becomes.
#[derive(Debug, PartialEq, Eq)]
pub enum Translation {
    /// img's arguments (the program name first).
    Args(Dialect, Vec<OsString>),
    /// A command img does not have in this dialect: the message says so.
    Refused(String),
}

/// docker's and podman's container commands: img says plainly that it
/// has none (clap would suggest a command with a similar name).
const CONTAINER_COMMANDS: &[&str] = &[
    "run",
    "ps",
    "exec",
    "start",
    "stop",
    "create",
    "kill",
    "logs",
    "attach",
    "restart",
    "pause",
    "unpause",
    "top",
    "port",
    "container",
    "cp",
    "diff",
    "wait",
    "stats",
    "update",
    "rename",
];

/// isula's commands that img has (images only).
const ISULA_COMMANDS: &[&str] =
    &["login", "logout", "pull", "rmi", "load", "images", "inspect", "tag", "import", "export", "version", "info"];

/// Rewrites `argv` (the program name first) into img's command line.
pub fn translate(argv: Vec<OsString>) -> Translation {
    let prog = argv
        .first()
        .and_then(|p| std::path::Path::new(p).file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let img: OsString = argv.first().cloned().unwrap_or_else(|| "img".into());
    let mut rest: Vec<OsString> = argv.into_iter().skip(1).collect();
    // img's own global options may come first (`img --root DIR ctr-img ...`).
    let mut globals: Vec<OsString> = Vec::new();
    while let Some(a) = rest.first().and_then(|a| a.to_str()).map(str::to_string) {
        if a == "--root" && rest.len() > 1 {
            globals.extend(rest.drain(..2));
        } else if a.starts_with("--root=") {
            globals.push(rest.remove(0));
        } else {
            break;
        }
    }
    let dialect = match prog.as_str() {
        "isula-build" => Dialect::IsulaBuild,
        "isula" => Dialect::Isula,
        _ => match rest.first().and_then(|a| a.to_str()) {
            Some("ctr-img") => Dialect::IsulaBuild,
            Some("isula-build") => {
                rest.remove(0);
                Dialect::IsulaBuild
            }
            Some("isula") => {
                rest.remove(0);
                Dialect::Isula
            }
            Some(c) if CONTAINER_COMMANDS.contains(&c) => {
                return Translation::Refused(format!(
                    "img {c}: img handles images, not containers; to run an image, make it a runtime bundle with img mount --bundle DIR IMAGE and start it with runc run -b DIR NAME"
                ))
            }
            _ => {
                let mut all = vec![img];
                all.extend(globals);
                all.extend(rest);
                return Translation::Args(Dialect::Img, all);
            }
        },
    };
    let words: Vec<String> = rest.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let translated = match dialect {
        Dialect::IsulaBuild => isula_build(&words),
        Dialect::Isula => isula(&words),
        Dialect::Img => unreachable!("handled above"),
    };
    match translated {
        Ok(args) => {
            let mut all = vec![img];
            all.extend(globals);
            // Arguments not rewritten keep their bytes (paths need not be UTF-8).
            all.extend(args.into_iter().map(|a| match a {
                Arg::Word(w) => OsString::from(w),
                Arg::Kept(i) => rest[i].clone(),
            }));
            Translation::Args(dialect, all)
        }
        Err(msg) => Translation::Refused(msg),
    }
}

/// An argument of the translated command line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Arg {
    Word(String),
    /// The argument at this index of the original, as it was.
    Kept(usize),
}

fn w(s: &str) -> Arg {
    Arg::Word(s.to_string())
}

/// Drops isula-build's and isula's client options that img has no use
/// for (the daemon's socket, debug output, timeouts).
fn drop_client_options(words: &[String], from: usize, dialect: Dialect) -> Vec<usize> {
    let mut keep = Vec::new();
    let mut i = from;
    while i < words.len() {
        let a = words[i].as_str();
        let (valued, flag): (&[&str], &[&str]) = match dialect {
            Dialect::IsulaBuild => (&["--log-level", "--timeout"], &["-D", "--debug"]),
            _ => {
                (&["-H", "--host", "--tlscacert", "--tlscert", "--tlskey"], &["-D", "--debug", "--tls", "--tlsverify"])
            }
        };
        if valued.contains(&a) {
            i += 2;
            continue;
        }
        if flag.contains(&a) || valued.iter().any(|v| a.starts_with(&format!("{v}="))) {
            i += 1;
            continue;
        }
        keep.push(i);
        i += 1;
    }
    keep
}

fn isula_build(words: &[String]) -> Result<Vec<Arg>, String> {
    let idx = drop_client_options(words, 0, Dialect::IsulaBuild);
    let word = |n: usize| idx.get(n).map(|&i| words[i].as_str());
    let after = |n: usize| idx.iter().skip(n).copied().collect::<Vec<usize>>();
    let usage = "isula-build ctr-img build|images|import|load|rm|save|tag|pull|push, or isula-build login|logout|info|version|manifest|completion";
    match word(0) {
        Some("ctr-img") => {
            let rest = after(2);
            let cmd = word(1).ok_or_else(|| format!("isula-build ctr-img needs a command: {usage}"))?;
            let mut out = Vec::new();
            match cmd {
                "build" => {
                    out.push(w("build"));
                    let mut i = 0;
                    while i < rest.len() {
                        let a = words[rest[i]].as_str();
                        if a == "--filename" {
                            out.push(w("-f"));
                        } else if let Some(v) = a.strip_prefix("--filename=") {
                            out.push(w(&format!("--file={v}")));
                        } else {
                            out.push(Arg::Kept(rest[i]));
                        }
                        i += 1;
                    }
                }
                "images" | "image" => {
                    out.push(w("images"));
                    out.extend(rest.iter().map(|&i| Arg::Kept(i)));
                }
                "rm" => {
                    let prune = rest.iter().any(|&i| matches!(words[i].as_str(), "-p" | "--prune"));
                    if prune {
                        out.extend([w("prune"), w("-f")]);
                    } else {
                        out.push(w("rmi"));
                        out.extend(rest.iter().map(|&i| Arg::Kept(i)));
                    }
                }
                "save" => {
                    out.push(w("save"));
                    let mut i = 0;
                    while i < rest.len() {
                        let a = words[rest[i]].as_str();
                        let format = if a == "-f" || a == "--format" {
                            i += 1;
                            Some(rest.get(i).map(|&j| words[j].as_str()).unwrap_or(""))
                        } else {
                            a.strip_prefix("--format=").or_else(|| a.strip_prefix("-f="))
                        };
                        match format {
                            Some("docker") | Some("docker-archive") => out.push(w("--format=docker-archive")),
                            Some("oci") | Some("oci-archive") => out.push(w("--format=oci-archive")),
                            Some(other) => {
                                return Err(format!("isula-build ctr-img save: format {other:?} is not docker or oci"))
                            }
                            None => out.push(Arg::Kept(rest[i])),
                        }
                        i += 1;
                    }
                }
                "import" | "load" | "tag" | "pull" | "push" => {
                    out.push(w(cmd));
                    out.extend(rest.iter().map(|&i| Arg::Kept(i)));
                }
                other => {
                    return Err(format!("isula-build ctr-img: unknown command {other:?}; the commands are {usage}"))
                }
            }
            Ok(out)
        }
        Some("login") => {
            // isula-build's -p is --password-stdin (docker's is a password).
            let mut out = vec![w("login")];
            for i in after(1) {
                match words[i].as_str() {
                    "-p" | "--password-stdin" => out.push(w("--password-stdin")),
                    _ => out.push(Arg::Kept(i)),
                }
            }
            Ok(out)
        }
        Some("info") => {
            let mut out = vec![w("info")];
            for i in after(1) {
                match words[i].as_str() {
                    "-H" | "--human-readable" | "-V" | "--verbose" | "-HV" | "-VH" => {}
                    _ => out.push(Arg::Kept(i)),
                }
            }
            Ok(out)
        }
        Some(cmd @ ("logout" | "version" | "manifest" | "completion")) => {
            let mut out = vec![w(cmd)];
            out.extend(after(1).into_iter().map(Arg::Kept));
            Ok(out)
        }
        Some(a @ ("-h" | "--help" | "help")) => Ok(vec![w(a)]),
        Some(a @ ("-v" | "--version")) => Ok(vec![w(if a == "-v" { "--version" } else { a })]),
        Some(other) => Err(format!("isula-build: unknown command {other:?}; the commands are {usage}")),
        None => Err(format!("isula-build needs a command: {usage}")),
    }
}

fn isula(words: &[String]) -> Result<Vec<Arg>, String> {
    let idx = drop_client_options(words, 0, Dialect::Isula);
    let Some(&first) = idx.first() else {
        return Err(format!("isula needs a command; img has isula's image commands: {}", ISULA_COMMANDS.join(", ")));
    };
    let cmd = words[first].as_str();
    if matches!(cmd, "-h" | "--help" | "help" | "--version") {
        return Ok(vec![w(cmd)]);
    }
    if !ISULA_COMMANDS.contains(&cmd) {
        return Err(format!(
            "isula {cmd}: img handles images only ({}); to run an image, make it a runtime bundle with img mount --bundle DIR IMAGE and start it with runc run -b DIR NAME",
            ISULA_COMMANDS.join(", ")
        ));
    }
    let mut out = vec![w(cmd)];
    out.extend(idx.iter().skip(1).map(|&i| Arg::Kept(i)));
    Ok(out)
}

// ---- what the dialects print ------------------------------------------------

/// A repository as docker's familiar form writes it (`docker.io/library/x` is `x`).
pub fn familiar(repo: &str) -> String {
    repo.strip_prefix("docker.io/library/").or_else(|| repo.strip_prefix("docker.io/")).unwrap_or(repo).to_string()
}

/// A size as isula prints it: decimal units, three decimals for MB
/// (`1.376 MB`).
pub fn isula_size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.3} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.3} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.3} KB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// A size as isula-build prints it (`5.85 MB`, `210 MB`: three significant digits).
pub fn isula_build_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    let s = if v >= 100.0 || u == 0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    format!("{s} {}", units[u])
}

/// A time as isula and isula-build print it in tables (`2019-06-15 08:19:54`, UTC).
pub fn table_time(secs: Option<i64>) -> String {
    match secs {
        Some(s) => crate::timefmt::format_rfc3339(s).replace('T', " ").trim_end_matches('Z').to_string(),
        None => String::new(),
    }
}

/// isula-build's table: dashed rules above and below the header and at the end.
pub fn dashed_table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let rule = widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("  ");
    let line = |r: &Vec<String>| {
        r.iter()
            .enumerate()
            .map(|(i, c)| format!(" {c}{} ", " ".repeat(widths[i] - c.chars().count())))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = String::new();
    out.push_str(&rule);
    out.push('\n');
    if let Some(h) = rows.first() {
        out.push_str(&line(h));
        out.push('\n');
        out.push_str(&rule);
        out.push('\n');
    }
    for r in rows.iter().skip(1) {
        out.push_str(&line(r));
        out.push('\n');
    }
    out.push_str(&rule);
    out.push('\n');
    out
}

/// isula's inspect document of an image, from img's (docker's) document:
/// the fields under `image` as iSulad prints them, and the same at the top
/// level, as older iSulad printed them (`{{json .image.id}}` and
/// `{{json .created}}` both work, as seed examples use both).
pub fn isula_inspect(doc: &Value) -> Value {
    let get = |k: &str| doc.get(k).cloned().unwrap_or(Value::Null);
    let id = doc.get("Id").and_then(Value::as_str).unwrap_or("").trim_start_matches("sha256:").to_string();
    let config = get("Config");
    let image = json!({
        "id": id,
        "repo_tags": get("RepoTags"),
        "repo_digests": get("RepoDigests"),
        "size": get("Size"),
        "created": get("Created"),
        "loaded": get("Created"),
        "username": config.get("User").cloned().unwrap_or(Value::String(String::new())),
        "healthcheck": config.get("Healthcheck").cloned().unwrap_or(Value::Null),
        "Spec": {
            "created": get("Created"),
            "author": get("Author"),
            "architecture": get("Architecture"),
            "os": get("Os"),
            "config": config,
            "rootfs": get("RootFS"),
            "history": get("History"),
        },
    });
    let mut top = image.as_object().cloned().unwrap_or_default();
    top.insert("image".into(), image);
    Value::Object(top)
}

// ---- the commands' output in a dialect -------------------------------------

/// Prints the image list as isula or isula-build does; false in img's own
/// dialect (the caller prints its table).
pub fn print_images(out: &mut impl std::io::Write, rows: &[crate::ops::images::Row]) -> std::io::Result<bool> {
    // As isula and isula-build show them: docker.io/library/ left out.
    let name = |r: &crate::ops::images::Row| {
        let repo = r.repository.clone().unwrap_or_else(|| "<none>".into());
        (familiar(&repo), r.tag.clone().unwrap_or_else(|| "<none>".into()))
    };
    match current() {
        Dialect::Img => Ok(false),
        Dialect::Isula => {
            let mut table = vec![vec!["REF".to_string(), "IMAGE ID".into(), "CREATED".into(), "SIZE".into()]];
            for r in rows {
                let (repo, tag) = name(r);
                let reference = if r.repository.is_some() { format!("{repo}:{tag}") } else { "<none>:<none>".into() };
                table.push(vec![
                    reference,
                    r.image.id.hex()[..12].to_string(),
                    table_time(r.image.created),
                    isula_size(r.image.size),
                ]);
            }
            super::print_table(out, &table)?;
            Ok(true)
        }
        Dialect::IsulaBuild => {
            let mut table =
                vec![vec!["REPOSITORY".to_string(), "TAG".into(), "IMAGE ID".into(), "CREATED".into(), "SIZE".into()]];
            for r in rows {
                let (repo, tag) = name(r);
                table.push(vec![
                    repo,
                    tag,
                    r.image.id.hex()[..12].to_string(),
                    table_time(r.image.created),
                    isula_build_size(r.image.size),
                ]);
            }
            out.write_all(dashed_table(&table).as_bytes())?;
            Ok(true)
        }
    }
}

/// The line a dialect prints when a command succeeded, if it has one.
#[cfg_attr(not(feature = "build"), allow(dead_code))] // Built
pub enum Done<'a> {
    Loaded { input: Option<&'a std::path::Path>, ids: Vec<String> },
    Imported(String),
    Saved(&'a [String]),
    Pulling(&'a str),
    Pulled { reference: &'a str, digest: Option<String> },
    Pushed(&'a str),
    Removed(&'a str),
    Built(String),
    LoggedIn,
    LoggedOut { all: bool },
}

/// Prints the lines `done` has in this dialect; false when it has none
/// (the caller prints img's own).
pub fn print_done(out: &mut impl std::io::Write, done: &Done) -> std::io::Result<bool> {
    let Some(lines) = done_lines(done) else { return Ok(false) };
    for l in lines {
        writeln!(out, "{l}")?;
    }
    Ok(true)
}

/// The lines `done` prints in this dialect (none: print img's own).
fn done_lines(done: &Done) -> Option<Vec<String>> {
    let d = current();
    let lines = match (d, done) {
        (Dialect::Img, _) => return None,
        (Dialect::Isula, Done::Loaded { input, .. }) => {
            let p = input.map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
            vec![format!(
                "Load image from {:?} success",
                p.map(|p| p.display().to_string()).unwrap_or_else(|| "-".into())
            )]
        }
        (Dialect::IsulaBuild, Done::Loaded { ids, .. }) => ids.iter().map(|i| format!("Loaded image as {i}")).collect(),
        (Dialect::IsulaBuild, Done::Imported(id)) => vec![format!("Import success with image id: {id:?}")],
        (Dialect::IsulaBuild, Done::Saved(names)) => vec![if names.len() == 1 {
            format!("Save success with image: {}", names[0])
        } else {
            format!("Save success with image: [{}]", names.join(" "))
        }],
        (Dialect::Isula, Done::Pulling(r)) => vec![format!("Image {r:?} pulling")],
        (Dialect::Isula, Done::Pulled { reference, digest }) => {
            let base = reference.split('@').next().unwrap_or(reference);
            let base = match base.rsplit_once(':') {
                Some((b, t)) if !t.contains('/') => b,
                _ => base,
            };
            vec![match digest {
                Some(dg) => format!("Image \"{base}@{dg}\" pulled"),
                None => format!("Image {reference:?} pulled"),
            }]
        }
        (Dialect::IsulaBuild, Done::Pulled { reference, .. }) => vec![format!("Pull success with image: {reference}")],
        (Dialect::IsulaBuild, Done::Pushed(r)) => vec![format!("Push success with image: {r}")],
        (Dialect::Isula, Done::Removed(n)) => vec![format!("Image {n:?} removed")],
        (Dialect::IsulaBuild, Done::Built(id)) => vec![format!("Build success with image id: {id}")],
        (_, Done::LoggedIn) => vec!["Login Succeeded".into()],
        (Dialect::Isula, Done::LoggedOut { .. }) => vec!["Logout Succeeded".into()],
        (Dialect::IsulaBuild, Done::LoggedOut { all: true }) => vec!["Removed authentications".into()],
        (Dialect::IsulaBuild, Done::LoggedOut { all: false }) => vec!["Removed authentication".into()],
        _ => return None,
    };
    Some(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(args: &[&str]) -> Translation {
        translate(args.iter().map(OsString::from).collect())
    }

    fn args(d: Dialect, a: &[&str]) -> Translation {
        Translation::Args(d, a.iter().map(OsString::from).collect())
    }

    #[test]
    fn container_commands_are_refused_plainly() {
        for c in ["run", "ps", "exec"] {
            match t(&["img", c, "x"]) {
                Translation::Refused(m) => {
                    assert!(m.contains("images, not containers") && m.contains("img mount"), "{m}")
                }
                other => panic!("img {c}: {other:?}"),
            }
        }
        assert_eq!(t(&["img", "rm", "x"]), args(Dialect::Img, &["img", "rm", "x"]), "rm is rmi in img");
    }

    #[test]
    fn img_command_lines_are_kept() {
        assert_eq!(t(&["img", "images"]), args(Dialect::Img, &["img", "images"]));
        assert_eq!(
            t(&["/usr/bin/img", "--root", "/s", "pull", "x"]),
            args(Dialect::Img, &["/usr/bin/img", "--root", "/s", "pull", "x"])
        );
    }

    #[test]
    fn isula_build_spellings_become_img_s() {
        let ib = Dialect::IsulaBuild;
        assert_eq!(t(&["img", "ctr-img", "images"]), args(ib, &["img", "images"]));
        assert_eq!(t(&["/x/isula-build", "ctr-img", "images"]), args(ib, &["/x/isula-build", "images"]));
        assert_eq!(
            t(&["img", "--root", "/s", "ctr-img", "rm", "-p"]),
            args(ib, &["img", "--root", "/s", "prune", "-f"])
        );
        assert_eq!(t(&["isula-build", "ctr-img", "rm", "a:1", "b:2"]), args(ib, &["isula-build", "rmi", "a:1", "b:2"]));
        assert_eq!(
            t(&["isula-build", "ctr-img", "build", "--filename", "Df", "--build-arg", "foo=bar"]),
            args(ib, &["isula-build", "build", "-f", "Df", "--build-arg", "foo=bar"])
        );
        assert_eq!(
            t(&["isula-build", "ctr-img", "save", "-f", "oci", "busybox:latest", "-o", "x.tar"]),
            args(ib, &["isula-build", "save", "--format=oci-archive", "busybox:latest", "-o", "x.tar"])
        );
        assert!(matches!(t(&["isula-build", "ctr-img", "save", "-f", "zip", "a"]), Translation::Refused(_)));
        assert_eq!(
            t(&["isula-build", "login", "-u", "cooper", "-p", "mydockerhub.io"]),
            args(ib, &["isula-build", "login", "-u", "cooper", "--password-stdin", "mydockerhub.io"])
        );
        assert_eq!(t(&["isula-build", "info", "-HV"]), args(ib, &["isula-build", "info"]));
        assert_eq!(t(&["isula-build", "-D", "version"]), args(ib, &["isula-build", "version"]));
        assert_eq!(t(&["isula-build", "logout", "-a"]), args(ib, &["isula-build", "logout", "-a"]));
        assert!(
            matches!(t(&["isula-build", "ctr-img", "frobnicate"]), Translation::Refused(m) if m.contains("frobnicate"))
        );
        assert!(matches!(t(&["isula-build"]), Translation::Refused(_)));
    }

    #[test]
    fn isula_image_commands_and_nothing_else() {
        let i = Dialect::Isula;
        assert_eq!(t(&["isula", "images"]), args(i, &["isula", "images"]));
        assert_eq!(t(&["img", "isula", "rmi", "test:v1"]), args(i, &["img", "rmi", "test:v1"]));
        assert_eq!(
            t(&["isula", "load", "-i", "test.manifest", "--type", "embedded"]),
            args(i, &["isula", "load", "-i", "test.manifest", "--type", "embedded"])
        );
        assert_eq!(t(&["isula", "-H", "unix:///x.sock", "images"]), args(i, &["isula", "images"]));
        for c in ["run", "ps", "exec", "create", "start"] {
            match t(&["isula", c, "busybox"]) {
                Translation::Refused(m) => assert!(m.contains("images only"), "{m}"),
                other => panic!("isula {c}: {other:?}"),
            }
        }
    }

    #[test]
    fn sizes_and_tables_look_like_the_tools() {
        assert_eq!(isula_size(1_376_000), "1.376 MB");
        assert_eq!(isula_build_size(5_850_000), "5.85 MB");
        assert_eq!(isula_build_size(210_000_000), "210 MB");
        assert_eq!(isula_build_size(1_450_000), "1.45 MB");
        assert_eq!(table_time(Some(1_560_586_794)), "2019-06-15 08:19:54");
        let t = dashed_table(&[vec!["REPOSITORY".into(), "TAG".into()], vec!["alpine".into(), "latest".into()]]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[0].starts_with("----") && lines[2] == lines[0] && lines[4] == lines[0]);
        assert!(lines[1].contains("REPOSITORY") && lines[3].contains("alpine"));
    }

    #[test]
    fn isula_inspect_has_both_shapes() {
        let d =
            json!({"Id": "abc", "Created": "2018-03-01T15:55:44Z", "RepoTags": ["test:v1"], "Config": {"Env": null}});
        let v = isula_inspect(&d);
        assert_eq!(v["image"]["id"], "abc");
        assert_eq!(v["created"], "2018-03-01T15:55:44Z");
        assert_eq!(v["image"]["Spec"]["config"], json!({"Env": null}));
    }
}
