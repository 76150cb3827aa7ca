//! The pure parts of instructions: arguments as text, ONBUILD triggers
//! written back, heredoc scripts, Go durations, signal names, platforms and
//! `--build-static`'s options.

use crate::dockerfile::{self, Args, Instruction};
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;

/// `--build-static`'s options (`build-time=YYYY-MM-DD HH:MM:SS`, UTC, as
/// isula-build takes them, or RFC 3339): the time to stamp.
pub fn parse_build_static(opts: &str) -> Result<u64> {
    let mut time = super::STATIC_TIME;
    for kv in opts.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--build-static {kv:?}: write KEY=VALUE, as build-time='2020-05-23 10:55:33'");
        };
        match k.trim() {
            "build-time" => {
                let v = v.trim();
                // isula-build's manual writes the time both as HH:MM:SS and as HH-MM-SS.
                let v = match v.split_once(' ') {
                    Some((date, time)) if !v.contains('T') => format!("{date} {}", time.replace('-', ":")),
                    _ => v.to_string(),
                };
                let v = v.as_str();
                let rfc = if v.contains('T') { v.to_string() } else { format!("{}Z", v.replacen(' ', "T", 1)) };
                let t = crate::timefmt::parse_rfc3339(&rfc)
                    .filter(|t| *t >= 0)
                    .ok_or_else(|| anyhow!("--build-static build-time={v}: write the time as YYYY-MM-DD HH:MM:SS"))?;
                time = t as u64;
            }
            other => bail!("--build-static: unknown option {other:?} (build-time is known)"),
        }
    }
    Ok(time)
}

pub fn default_shell() -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into()]
}

pub fn lookup_in(vars: &[(String, Option<String>)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = vars.iter().filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))).collect();
    move |k: &str| m.get(k).cloned()
}

/// `os/arch[/variant]`; the host's for "".
pub fn split_platform(p: &str) -> Result<(String, String, Option<String>)> {
    if p.is_empty() {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            a => a,
        };
        return Ok(("linux".into(), arch.into(), None));
    }
    let parts: Vec<&str> = p.split('/').collect();
    match parts.as_slice() {
        [os, arch] if !os.is_empty() && !arch.is_empty() => Ok((os.to_string(), arch.to_string(), None)),
        [os, arch, v] if !os.is_empty() && !arch.is_empty() => {
            Ok((os.to_string(), arch.to_string(), Some(v.to_string())))
        }
        _ => bail!("platform {p:?}: write OS/ARCH[/VARIANT], as linux/amd64"),
    }
}

/// An instruction's arguments as written.
pub fn args_text(a: &Args) -> String {
    match a {
        Args::Exec(v) => serde_json::to_string(v).unwrap_or_default(),
        Args::Shell(s) => s.clone(),
    }
}

/// An instruction as a Dockerfile line (for ONBUILD triggers).
pub fn instruction_text(i: &Instruction) -> String {
    let mut t = i.keyword.name().to_string();
    for (f, v) in &i.flags {
        match v {
            Some(v) => t.push_str(&format!(" --{f}={v}")),
            None => t.push_str(&format!(" --{f}")),
        }
    }
    t.push(' ');
    t.push_str(&args_text(&i.args));
    t
}

/// The script a shell-form RUN hands its shell: the line, and its
/// here-documents after it as the shell reads them; a RUN that is only a
/// here-document runs its content.
pub fn heredoc_script(line: &str, docs: &[dockerfile::Heredoc]) -> String {
    if docs.is_empty() {
        return line.to_string();
    }
    let t = line.trim();
    if docs.len() == 1 && t.starts_with("<<") {
        let name = t.trim_start_matches("<<").trim_start_matches('-').trim_matches(['"', '\'']);
        if name == docs[0].name {
            return docs[0].content.clone();
        }
    }
    let mut s = line.to_string();
    s.push('\n');
    for d in docs {
        s.push_str(&d.content);
        s.push_str(&d.name);
        s.push('\n');
    }
    s
}

/// What a COPY or ADD copies, as docker names it in the history:
/// `file:HASH` for one file, `dir:HASH` for one directory, and for several
/// sources (after globs) `multi:` and the sha256 of their `KIND:HASH`
/// joined by commas. `sources` are each one's kind ("file" or "dir") and
/// hex digest.
pub fn copy_summary(sources: &[(&str, String)]) -> String {
    match sources {
        [(kind, hex)] => format!("{kind}:{hex}"),
        _ => {
            use sha2::{Digest as _, Sha256};
            let all: Vec<String> = sources.iter().map(|(k, h)| format!("{k}:{h}")).collect();
            format!("multi:{}", crate::digest::hex_encode(&Sha256::digest(all.join(",").as_bytes())))
        }
    }
}

/// The history entry of a COPY or ADD, as docker writes it: the summary
/// of what is copied (`--chown=` before it, with no blank, as docker has
/// it), then the destination as the instruction gives it.
pub fn copy_created_by(what: &str, chown: Option<&str>, summary: &str, dest: &str) -> String {
    let chown = chown.map(|c| format!("--chown={c}")).unwrap_or_default();
    format!("/bin/sh -c #(nop) {what} {chown}{summary} in {dest} ")
}

/// A Go duration ("1m30s", "500ms", "2h") in nanoseconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    if s == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if n_end == 0 {
            return None;
        }
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[u_end..];
        total += n * unit;
    }
    Some(total as u64)
}

pub fn valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    const NAMES: [&str; 33] = [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL", "PIPE", "POLL",
        "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1",
        "USR2", "VTALRM", "WINCH", "XCPU",
    ];
    NAMES.contains(&name) || name == "XFSZ" || name.starts_with("RTMIN") || name.starts_with("RTMAX")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::Keyword;
    use sha2::Digest as _;

    #[test]
    fn build_static_takes_isula_builds_build_time() {
        assert_eq!(parse_build_static("").unwrap(), 0);
        assert_eq!(parse_build_static("build-time=2020-05-23 10:55:33").unwrap(), 1_590_231_333);
        assert_eq!(parse_build_static("build-time=2020-05-23T10:55:33Z").unwrap(), 1_590_231_333);
        // the form isula-build's manual gives for the flag (HH-MM-SS)
        assert_eq!(parse_build_static("build-time=2020-05-23 10-55-33").unwrap(), 1_590_231_333);
        assert!(parse_build_static("build-time=yesterday").unwrap_err().to_string().contains("YYYY-MM-DD"));
        assert!(parse_build_static("color=red").unwrap_err().to_string().contains("unknown option"));
    }

    #[test]
    fn long_commands_are_shortened_in_messages() {
        use crate::reference::shorten_to;
        assert_eq!(shorten_to("echo hi", 200), "echo hi");
        assert_eq!(shorten_to(&"é".repeat(300), 3), "ééé…");
    }

    // A multi-source COPY's history said dir:HASH in /dir where docker and
    // buildah write multi:HASH in /dir/.
    #[test]
    fn copy_history_is_dockers() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        assert_eq!(copy_summary(&[("file", a.clone())]), format!("file:{a}"));
        assert_eq!(copy_summary(&[("dir", b.clone())]), format!("dir:{b}"));
        // sha256("file:aaa…,dir:bbb…")
        let multi = copy_summary(&[("file", a.clone()), ("dir", b.clone())]);
        let want = crate::digest::hex_encode(&sha2::Sha256::digest(format!("file:{a},dir:{b}").as_bytes()));
        assert_eq!(multi, format!("multi:{want}"));
        assert_ne!(multi, copy_summary(&[("dir", b.clone()), ("file", a.clone())]));
        assert_eq!(
            copy_created_by("COPY", None, &multi, "/dir/"),
            format!("/bin/sh -c #(nop) COPY multi:{want} in /dir/ ")
        );
        assert_eq!(
            copy_created_by("ADD", Some("1000:1000"), &format!("file:{a}"), "rel"),
            format!("/bin/sh -c #(nop) ADD --chown=1000:1000file:{a} in rel ")
        );
    }

    #[test]
    fn go_durations_become_nanoseconds() {
        assert_eq!(parse_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("0"), Some(0));
        for bad in ["", "10", "s", "1x", "-1s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn heredoc_runs_give_their_shell_a_script() {
        let d = |name: &str, content: &str| dockerfile::Heredoc {
            name: name.into(),
            content: content.into(),
            expand: true,
        };
        assert_eq!(heredoc_script("echo hi", &[]), "echo hi");
        assert_eq!(heredoc_script("<<EOF", &[d("EOF", "echo a\necho b\n")]), "echo a\necho b\n");
        assert_eq!(heredoc_script("cat <<EOF > /f", &[d("EOF", "x\n")]), "cat <<EOF > /f\nx\nEOF\n");
    }

    #[test]
    fn platforms_split_and_default_to_the_host() {
        assert_eq!(split_platform("linux/arm64/v8").unwrap(), ("linux".into(), "arm64".into(), Some("v8".into())));
        assert_eq!(split_platform("").unwrap().0, "linux");
        assert!(split_platform("linux").is_err());
    }

    #[test]
    fn signals_are_names_or_numbers() {
        for ok in ["SIGTERM", "TERM", "9", "SIGRTMIN+3", "SIGKILL"] {
            assert!(valid_signal(ok), "{ok}");
        }
        for bad in ["SIGFOO", "0", "65", ""] {
            assert!(!valid_signal(bad), "{bad}");
        }
    }

    #[test]
    fn onbuild_triggers_are_written_back_as_lines() {
        let df = dockerfile::parse(b"FROM x\nONBUILD COPY --chown=1:2 a /b\n").unwrap();
        let t = instruction_text(df.instructions[1].onbuild.as_ref().unwrap());
        assert_eq!(t, "COPY --chown=1:2 a /b");
        let again = dockerfile::parse(t.as_bytes()).unwrap();
        assert_eq!(again.instructions[0].keyword, Keyword::Copy);
    }
}
