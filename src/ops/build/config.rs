//! What a Dockerfile instruction does to an image's config, as docker
//! applies it: one set of rules for `img build` and for `--change`
//! (`img commit -c`, `img import -c`). Pure.

use super::fsops::clean_abs;
use super::text::{default_shell, instruction_text, parse_duration, valid_signal};
use crate::dockerfile::{self, Args, Instruction, Keyword};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// An instruction the config refuses, with the line it is on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {msg}")]
pub struct ConfigError {
    pub line: usize,
    pub msg: String,
}

/// What an instruction sees besides the config.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    /// The Dockerfile's escape character.
    pub escape: char,
    /// ARG values in scope (None: declared, no value), looked up after ENV.
    pub args: &'a [(String, Option<String>)],
    /// CMD was set in this stage (or by an earlier change): ENTRYPOINT
    /// then keeps it, and resets it otherwise.
    pub cmd_set: bool,
}

impl Scope<'_> {
    /// The scope of `--change`: no ARG, `\` the escape character.
    pub fn change() -> Scope<'static> {
        Scope { escape: '\\', args: &[], cmd_set: false }
    }
}

/// The instructions that change only the config (WORKDIR makes its
/// directory too; the build does that after `apply`).
pub fn changes_config(k: Keyword) -> bool {
    !matches!(k, Keyword::From | Keyword::Arg | Keyword::Run | Keyword::Copy | Keyword::Add)
}

/// The options each instruction takes.
pub fn known_flags(k: Keyword) -> &'static [&'static str] {
    match k {
        Keyword::Copy => &["from", "chown", "chmod", "link"],
        Keyword::Add => &["chown", "chmod", "link"],
        Keyword::Run => &["network"],
        Keyword::Healthcheck => &["interval", "timeout", "start-period", "start-interval", "retries"],
        _ => &[],
    }
}

/// The `config` object of an image config (made if missing or not an object).
pub fn inner(config: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let c = config.entry("config").or_insert_with(|| json!({}));
    if !c.is_object() {
        *c = json!({});
    }
    c.as_object_mut().expect("made an object above")
}

/// `config.Env` as pairs, in order.
pub fn env(config: &Map<String, Value>) -> Vec<(String, String)> {
    let env = config.get("config").and_then(|c| c.get("Env")).and_then(Value::as_array);
    env.map(|e| {
        e.iter()
            .filter_map(Value::as_str)
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    })
    .unwrap_or_default()
}

/// Sets variable `k`: in its place if it is there, else at the end.
pub fn set_env(config: &mut Map<String, Value>, k: &str, v: &str) {
    let mut env = env(config);
    match env.iter_mut().find(|(n, _)| n == k) {
        Some(e) => e.1 = v.to_string(),
        None => env.push((k.to_string(), v.to_string())),
    }
    let list: Vec<Value> = env.iter().map(|(k, v)| json!(format!("{k}={v}"))).collect();
    inner(config).insert("Env".into(), json!(list));
}

/// Looks a variable up as instructions see it: ENV first, then ARG.
pub fn lookup(config: &Map<String, Value>, args: &[(String, Option<String>)]) -> impl Fn(&str) -> Option<String> {
    let env: HashMap<String, String> = env(config).into_iter().collect();
    let args: HashMap<String, String> = args.iter().filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))).collect();
    move |k: &str| env.get(k).or_else(|| args.get(k)).cloned()
}

/// `config.WorkingDir`, `/` when unset.
pub fn workdir(config: &Map<String, Value>) -> String {
    let w = config.get("config").and_then(|c| c.get("WorkingDir")).and_then(Value::as_str);
    match w {
        Some(w) if !w.is_empty() => w.to_string(),
        _ => "/".to_string(),
    }
}

/// `config.User`, empty when unset.
pub fn user(config: &Map<String, Value>) -> String {
    let u = config.get("config").and_then(|c| c.get("User")).and_then(Value::as_str);
    u.unwrap_or("").to_string()
}

/// `config.Shell`, docker's `/bin/sh -c` when unset or empty.
pub fn shell(config: &Map<String, Value>) -> Vec<String> {
    config
        .get("config")
        .and_then(|c| c.get("Shell"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(default_shell)
}

/// The ports `EXPOSE p` exposes, as docker reads them: PORT or START-END,
/// with /tcp, /udp or /sctp in any case (written lower-case; tcp when none
/// is given), each port of a range on its own.
pub fn exposed_ports(p: &str) -> Option<Vec<String>> {
    let (ports, proto) = p.split_once('/').unwrap_or((p, ""));
    let proto = if proto.is_empty() { "tcp".to_string() } else { proto.to_ascii_lowercase() };
    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return None;
    }
    let (start, end) = ports.split_once('-').unwrap_or((ports, ports));
    let (start, end) = (start.parse::<u16>().ok()?, end.parse::<u16>().ok()?);
    if start > end {
        return None;
    }
    Some((start..=end).map(|n| format!("{n}/{proto}")).collect())
}

/// Applies instruction `ins` to the image config `config` (the whole
/// object: `config`, `author`, ...), as docker does. Instructions that do
/// not change the config (FROM, ARG, RUN, COPY, ADD) are refused.
pub fn apply(config: &mut Map<String, Value>, ins: &Instruction, scope: &mut Scope) -> Result<(), ConfigError> {
    let line = ins.line;
    let fail = |msg: String| ConfigError { line, msg };
    let lookup = lookup(config, scope.args);
    let escape = scope.escape;
    let expand = |s: &str| dockerfile::expand(s, escape, &lookup).map_err(fail);
    let key_values = |legacy: bool| -> Result<Vec<(String, Option<String>)>, ConfigError> {
        let Args::Shell(s) = &ins.args else {
            return Err(fail(format!("{} takes KEY=VALUE pairs, not a JSON array", ins.keyword.name())));
        };
        dockerfile::key_values(s, escape, legacy, &lookup).map_err(fail)
    };
    // The words of EXPOSE and VOLUME: a JSON array or blank-separated.
    let list = || -> Result<Vec<String>, ConfigError> {
        match &ins.args {
            Args::Exec(v) => v.iter().map(|w| expand(w)).collect(),
            Args::Shell(s) => dockerfile::words(s, escape, &lookup).map_err(fail),
        }
    };
    for (f, _) in &ins.flags {
        if !known_flags(ins.keyword).contains(&f.as_str()) {
            return Err(fail(format!("{} has no option --{f}", ins.keyword.name())));
        }
    }
    let text = super::text::args_text(&ins.args);
    match ins.keyword {
        Keyword::From | Keyword::Arg | Keyword::Run | Keyword::Copy | Keyword::Add => {
            return Err(fail(format!("{} does not change the image config", ins.keyword.name())));
        }
        Keyword::Env => {
            for (k, v) in key_values(true)? {
                let Some(v) = v else { return Err(fail(format!("ENV {k} has no value; write ENV {k}=VALUE"))) };
                set_env(config, &k, &v);
            }
        }
        Keyword::Label => {
            for (k, v) in key_values(true)? {
                let Some(v) = v else { return Err(fail(format!("LABEL {k} has no value; write LABEL {k}=VALUE"))) };
                let labels = inner(config).entry("Labels").or_insert_with(|| json!({}));
                if !labels.is_object() {
                    *labels = json!({});
                }
                labels[k] = json!(v);
            }
        }
        Keyword::Maintainer => {
            config.insert("author".into(), json!(text));
        }
        Keyword::Expose => {
            for p in list()? {
                let ports = exposed_ports(&p).ok_or_else(|| {
                    fail(format!("EXPOSE {p}: not a port (PORT, START-END, then /tcp, /udp or /sctp if not tcp)"))
                })?;
                let e = inner(config).entry("ExposedPorts").or_insert_with(|| json!({}));
                if !e.is_object() {
                    *e = json!({});
                }
                for port in ports {
                    e[port] = json!({});
                }
            }
        }
        Keyword::Volume => {
            for v in list()? {
                if v.is_empty() {
                    return Err(fail("VOLUME with an empty path".into()));
                }
                let e = inner(config).entry("Volumes").or_insert_with(|| json!({}));
                if !e.is_object() {
                    *e = json!({});
                }
                e[v] = json!({});
            }
        }
        Keyword::User => {
            let u = expand(text.trim())?;
            if u.is_empty() {
                return Err(fail("USER needs a user".into()));
            }
            inner(config).insert("User".into(), json!(u));
        }
        Keyword::Stopsignal => {
            let s = expand(text.trim())?;
            if !valid_signal(&s) {
                return Err(fail(format!("STOPSIGNAL {s}: not a signal (a name like SIGTERM or a number)")));
            }
            inner(config).insert("StopSignal".into(), json!(s));
        }
        Keyword::Shell => {
            let Args::Exec(v) = &ins.args else {
                return Err(fail("SHELL takes a JSON array, as SHELL [\"/bin/sh\", \"-c\"]".into()));
            };
            if v.is_empty() {
                return Err(fail("SHELL needs at least one word".into()));
            }
            inner(config).insert("Shell".into(), json!(v));
        }
        Keyword::Cmd | Keyword::Entrypoint => {
            let v = match &ins.args {
                Args::Exec(v) => v.clone(),
                Args::Shell(s) => {
                    let mut v = shell(config);
                    v.push(s.clone());
                    v
                }
            };
            if ins.keyword == Keyword::Cmd {
                inner(config).insert("Cmd".into(), json!(v));
                scope.cmd_set = true;
            } else {
                inner(config).insert("Entrypoint".into(), json!(v));
                if !scope.cmd_set {
                    inner(config).insert("Cmd".into(), Value::Null);
                }
            }
        }
        Keyword::Healthcheck => {
            let hc = healthcheck(ins).map_err(fail)?;
            inner(config).insert("Healthcheck".into(), hc);
        }
        Keyword::Onbuild => {
            let inner_ins = ins.onbuild.as_ref().ok_or_else(|| fail("ONBUILD needs an instruction".into()))?;
            let t = instruction_text(inner_ins);
            let e = inner(config).entry("OnBuild").or_insert_with(|| json!([]));
            match e.as_array_mut() {
                Some(a) => a.push(json!(t)),
                None => *e = json!([t]),
            }
        }
        Keyword::Workdir => {
            let w = expand(text.trim())?;
            if w.is_empty() {
                return Err(fail("WORKDIR needs a directory".into()));
            }
            let abs = if w.starts_with('/') { w } else { format!("{}/{w}", workdir(config)) };
            inner(config).insert("WorkingDir".into(), json!(clean_abs(&abs)));
        }
    }
    Ok(())
}

/// HEALTHCHECK's config: `NONE`, or `CMD` in shell or exec form with its
/// options.
fn healthcheck(ins: &Instruction) -> Result<Value, String> {
    let test = match &ins.args {
        Args::Shell(s) if s.trim().eq_ignore_ascii_case("none") => {
            if !ins.flags.is_empty() {
                return Err("HEALTHCHECK NONE takes no options".into());
            }
            return Ok(json!({"Test": ["NONE"]}));
        }
        Args::Shell(s) => {
            let rest = s.trim_start();
            // CMD as a word of its own (not the start of CMDX).
            let Some(cmd) = rest
                .get(..3)
                .filter(|c| c.eq_ignore_ascii_case("cmd"))
                .filter(|_| rest[3..].starts_with([' ', '\t', '[']))
                .map(|_| rest[3..].trim_start())
            else {
                return Err("HEALTHCHECK takes CMD COMMAND or NONE".into());
            };
            if cmd.starts_with('[') {
                let v: Vec<String> =
                    serde_json::from_str(cmd).map_err(|e| format!("HEALTHCHECK CMD's JSON array: {e}"))?;
                let mut t = vec!["CMD".to_string()];
                t.extend(v);
                t
            } else {
                if cmd.is_empty() {
                    return Err("HEALTHCHECK CMD needs a command".into());
                }
                vec!["CMD-SHELL".to_string(), cmd.to_string()]
            }
        }
        Args::Exec(_) => return Err("HEALTHCHECK takes CMD COMMAND or NONE".into()),
    };
    let mut hc = json!({"Test": test});
    for (flag, key) in [
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
        ("start-interval", "StartInterval"),
    ] {
        if let Some(v) = ins.flag(flag) {
            let v = v.unwrap_or("");
            let ns = parse_duration(v)
                .ok_or_else(|| format!("HEALTHCHECK --{flag}={v}: not a duration (like 30s or 1m30s)"))?;
            hc[key] = json!(ns);
        }
    }
    if let Some(v) = ins.flag("retries") {
        let n: u64 = v.unwrap_or("").parse().map_err(|_| "HEALTHCHECK --retries takes a number".to_string())?;
        hc["Retries"] = json!(n);
    }
    Ok(hc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `config` after the instructions of `lines` (a Dockerfile without
    /// FROM), with ARG values `args`, or the first error.
    fn after(config: Value, lines: &str, args: &[(&str, &str)]) -> Result<Value, ConfigError> {
        let Value::Object(mut config) = config else { panic!("an object") };
        let args: Vec<(String, Option<String>)> =
            args.iter().map(|(k, v)| (k.to_string(), Some(v.to_string()))).collect();
        let mut scope = Scope { escape: '\\', args: &args, cmd_set: false };
        for ins in dockerfile::parse(lines.as_bytes()).expect("parses").instructions {
            apply(&mut config, &ins, &mut scope)?;
        }
        Ok(Value::Object(config))
    }

    /// The `config` object after `lines`, from an empty config.
    fn inner_after(lines: &str) -> Value {
        after(json!({}), lines, &[]).unwrap_or_else(|e| panic!("{lines}: {e}"))["config"].clone()
    }

    #[test]
    fn every_config_instruction() {
        let table: &[(&str, Value)] = &[
            ("ENV A=1 B=\"two words\"", json!({"Env": ["A=1", "B=two words"]})),
            ("ENV C three words form", json!({"Env": ["C=three words form"]})),
            ("ENV A=1\nENV B=2\nENV A=3", json!({"Env": ["A=3", "B=2"]})),
            ("ENV A=1\nENV B=$A-${A}", json!({"Env": ["A=1", "B=1-1"]})),
            ("ENV A=x B=$A", json!({"Env": ["A=x", "B="]})),
            ("LABEL a=b \"c.d\"=\"e f\"", json!({"Labels": {"a": "b", "c.d": "e f"}})),
            ("LABEL old form", json!({"Labels": {"old": "form"}})),
            ("EXPOSE 80 443/tcp 53/udp 9/sctp", json!({"ExposedPorts": {"80/tcp": {}, "443/tcp": {}, "53/udp": {}, "9/sctp": {}}})),
            ("EXPOSE 80/TCP", json!({"ExposedPorts": {"80/tcp": {}}})),
            ("EXPOSE 8000-8002", json!({"ExposedPorts": {"8000/tcp": {}, "8001/tcp": {}, "8002/tcp": {}}})),
            ("EXPOSE 5-5/UDP", json!({"ExposedPorts": {"5/udp": {}}})),
            ("EXPOSE 80/", json!({"ExposedPorts": {"80/tcp": {}}})),
            ("VOLUME /data /logs", json!({"Volumes": {"/data": {}, "/logs": {}}})),
            ("VOLUME [\"/a b\"]", json!({"Volumes": {"/a b": {}}})),
            ("WORKDIR /app", json!({"WorkingDir": "/app"})),
            ("WORKDIR /app\nWORKDIR sub", json!({"WorkingDir": "/app/sub"})),
            ("WORKDIR rel", json!({"WorkingDir": "/rel"})),
            ("WORKDIR /a/b/../c/./", json!({"WorkingDir": "/a/c"})),
            ("ENV D=/srv\nWORKDIR $D/x", json!({"Env": ["D=/srv"], "WorkingDir": "/srv/x"})),
            ("USER 1000:1000", json!({"User": "1000:1000"})),
            ("ENV U=app\nUSER $U", json!({"Env": ["U=app"], "User": "app"})),
            ("CMD [\"a\", \"b\"]", json!({"Cmd": ["a", "b"]})),
            ("CMD echo $HOME", json!({"Cmd": ["/bin/sh", "-c", "echo $HOME"]})),
            ("ENTRYPOINT [\"/app\"]", json!({"Entrypoint": ["/app"], "Cmd": null})),
            ("ENTRYPOINT /app -v", json!({"Entrypoint": ["/bin/sh", "-c", "/app -v"], "Cmd": null})),
            ("CMD [\"x\"]\nENTRYPOINT [\"/app\"]", json!({"Cmd": ["x"], "Entrypoint": ["/app"]})),
            ("ENTRYPOINT [\"/app\"]\nCMD [\"x\"]", json!({"Cmd": ["x"], "Entrypoint": ["/app"]})),
            ("SHELL [\"/bin/bash\", \"-ec\"]\nCMD run", json!({"Shell": ["/bin/bash", "-ec"], "Cmd": ["/bin/bash", "-ec", "run"]})),
            ("STOPSIGNAL SIGKILL", json!({"StopSignal": "SIGKILL"})),
            ("STOPSIGNAL 9", json!({"StopSignal": "9"})),
            ("ONBUILD run echo hi", json!({"OnBuild": ["RUN echo hi"]})),
            ("ONBUILD COPY --chown=1:2 a /b\nONBUILD ENV A=1", json!({"OnBuild": ["COPY --chown=1:2 a /b", "ENV A=1"]})),
            ("HEALTHCHECK NONE", json!({"Healthcheck": {"Test": ["NONE"]}})),
            ("HEALTHCHECK CMD curl -f http://x/", json!({"Healthcheck": {"Test": ["CMD-SHELL", "curl -f http://x/"]}})),
            (
                "HEALTHCHECK --interval=30s --timeout=5s --start-period=2s --start-interval=1s --retries=2 CMD [\"/bin/true\"]",
                json!({"Healthcheck": {"Test": ["CMD", "/bin/true"], "Interval": 30_000_000_000u64, "Timeout": 5_000_000_000u64, "StartPeriod": 2_000_000_000u64, "StartInterval": 1_000_000_000u64, "Retries": 2}}),
            ),
        ];
        for (lines, want) in table {
            assert_eq!(&inner_after(lines), want, "{lines}");
        }
    }

    #[test]
    fn maintainer_is_the_author() {
        let c = after(json!({"config": {}}), "MAINTAINER Img Tester <img@example.com>", &[]).unwrap();
        assert_eq!(c, json!({"config": {}, "author": "Img Tester <img@example.com>"}));
    }

    #[test]
    fn env_comes_before_arg_in_lookups() {
        let c = after(json!({}), "ENV A=env\nLABEL a=$A b=$B", &[("A", "arg"), ("B", "arg")]).unwrap();
        assert_eq!(c["config"]["Labels"], json!({"a": "env", "b": "arg"}));
    }

    // A stage from an image keeps the image's CMD only until an ENTRYPOINT,
    // unless the stage set CMD itself (docker's rule).
    #[test]
    fn entrypoint_resets_cmd_unless_the_stage_set_it() {
        let base = json!({"config": {"Cmd": ["base"]}});
        let c = after(base.clone(), "ENTRYPOINT [\"/e\"]", &[]).unwrap();
        assert_eq!(c["config"], json!({"Cmd": null, "Entrypoint": ["/e"]}));
        let c = after(base, "CMD [\"mine\"]\nENTRYPOINT [\"/e\"]", &[]).unwrap();
        assert_eq!(c["config"], json!({"Cmd": ["mine"], "Entrypoint": ["/e"]}));
    }

    #[test]
    fn bad_instructions_are_refused_naming_the_line() {
        let table: &[(&str, &str)] = &[
            ("ENV A", "ENV A has no value"),
            ("LABEL a", "LABEL a has no value"),
            ("EXPOSE http", "EXPOSE http: not a port"),
            ("EXPOSE 80/ip", "EXPOSE 80/ip: not a port"),
            ("EXPOSE 8010-8000", "EXPOSE 8010-8000: not a port"),
            ("EXPOSE 70000", "EXPOSE 70000: not a port"),
            ("EXPOSE 1-2-3", "EXPOSE 1-2-3: not a port"),
            ("VOLUME [\"\"]", "VOLUME with an empty path"),
            ("USER $NOTSET", "USER needs a user"),
            ("WORKDIR $NOTSET", "WORKDIR needs a directory"),
            ("STOPSIGNAL SIGNOPE", "STOPSIGNAL SIGNOPE: not a signal"),
            ("SHELL []", "SHELL needs at least one word"),
            ("HEALTHCHECK", "HEALTHCHECK takes CMD COMMAND or NONE"),
            ("HEALTHCHECK CMDX", "HEALTHCHECK takes CMD COMMAND or NONE"),
            ("HEALTHCHECK --retries=1 NONE", "HEALTHCHECK NONE takes no options"),
            ("HEALTHCHECK --interval=soon CMD true", "HEALTHCHECK --interval=soon: not a duration"),
            ("HEALTHCHECK --retries=x CMD true", "HEALTHCHECK --retries takes a number"),
            ("HEALTHCHECK --every=1s CMD true", "HEALTHCHECK has no option --every"),
            ("RUN true", "RUN does not change the image config"),
            ("COPY a b", "COPY does not change the image config"),
            ("ARG A", "ARG does not change the image config"),
        ];
        for (lines, want) in table {
            let e = after(json!({}), &format!("ENV X=1\n{lines}"), &[]).unwrap_err();
            assert_eq!(e.line, 2, "{lines}");
            assert!(e.to_string().starts_with(&format!("line 2: {want}")), "{lines}: {e}");
        }
    }

    #[test]
    fn exposed_ports_are_dockers() {
        let table: &[(&str, Option<&[&str]>)] = &[
            ("80", Some(&["80/tcp"])),
            ("0", Some(&["0/tcp"])),
            ("65535/udp", Some(&["65535/udp"])),
            ("80/TCP", Some(&["80/tcp"])),
            ("80/Sctp", Some(&["80/sctp"])),
            ("1-3/udp", Some(&["1/udp", "2/udp", "3/udp"])),
            ("", None),
            ("-1", None),
            ("1-", None),
            ("3-1", None),
            ("65536", None),
            ("80/http", None),
            ("eighty", None),
        ];
        for (p, want) in table {
            let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(exposed_ports(p), want, "{p}");
        }
    }

    #[test]
    fn only_config_instructions_change_config() {
        for k in [Keyword::From, Keyword::Arg, Keyword::Run, Keyword::Copy, Keyword::Add] {
            assert!(!changes_config(k), "{k:?}");
        }
        for k in [Keyword::Env, Keyword::Workdir, Keyword::Cmd, Keyword::Maintainer, Keyword::Onbuild] {
            assert!(changes_config(k), "{k:?}");
        }
    }
}
