//! `--change` / `-c` instructions (`img import`, later `img commit`): the
//! Dockerfile subset docker accepts there, applied to a config's `config`
//! object. Pure.

use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("--change {0:?}: {1}")]
    Bad(String, String),
}

fn bad(src: &str, msg: &str) -> ChangeError {
    ChangeError::Bad(src.to_string(), msg.to_string())
}

/// Parses a JSON array of strings, or wraps shell form in `/bin/sh -c`.
fn command(src: &str, rest: &str) -> Result<Value, ChangeError> {
    let t = rest.trim();
    if t.starts_with('[') {
        let v: Vec<String> = serde_json::from_str(t).map_err(|_| bad(src, "expected a JSON array of strings"))?;
        return Ok(json!(v));
    }
    if t.is_empty() {
        return Err(bad(src, "needs an argument"));
    }
    Ok(json!(["/bin/sh", "-c", t]))
}

/// Splits `K=V K2="V 2"` (or the legacy `K V` form) into pairs.
fn pairs(src: &str, rest: &str) -> Result<Vec<(String, String)>, ChangeError> {
    let t = rest.trim();
    if t.is_empty() {
        return Err(bad(src, "needs an argument"));
    }
    let first_ws = t.find(char::is_whitespace);
    let first_eq = t.find('=');
    if first_eq.is_none() || first_ws.is_some_and(|w| first_eq.is_some_and(|e| w < e)) {
        // Legacy form: the first word is the key, the rest the value.
        let (k, v) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
        if first_eq.is_none() && v.is_empty() {
            return Err(bad(src, "expected KEY=VALUE"));
        }
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    let mut chars = t.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            match quote {
                Some(q) if c == q => {
                    quote = None;
                    chars.next();
                }
                Some(_) if c == '\\' => {
                    chars.next();
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                }
                Some(_) => {
                    word.push(c);
                    chars.next();
                }
                None if c == '"' || c == '\'' => {
                    quote = Some(c);
                    chars.next();
                }
                None if c.is_whitespace() => break,
                None => {
                    word.push(c);
                    chars.next();
                }
            }
        }
        if quote.is_some() {
            return Err(bad(src, "unterminated quote"));
        }
        let (k, v) = word.split_once('=').ok_or_else(|| bad(src, "expected KEY=VALUE"))?;
        if k.is_empty() {
            return Err(bad(src, "empty key"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

fn object<'a>(cfg: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = cfg.entry(key.to_string()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("just made an object")
}

/// Applies one instruction to `cfg` (the config's `config` object).
pub fn apply(cfg: &mut Map<String, Value>, src: &str) -> Result<(), ChangeError> {
    let t = src.trim();
    let (word, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
    match word.to_ascii_uppercase().as_str() {
        "CMD" => {
            cfg.insert("Cmd".into(), command(src, rest)?);
        }
        "ENTRYPOINT" => {
            cfg.insert("Entrypoint".into(), command(src, rest)?);
        }
        "ENV" => {
            for (k, v) in pairs(src, rest)? {
                let env = cfg.entry("Env").or_insert_with(|| json!([]));
                if !env.is_array() {
                    *env = json!([]);
                }
                let list = env.as_array_mut().expect("just made an array");
                list.retain(|e| e.as_str().is_none_or(|s| s.split_once('=').map(|x| x.0) != Some(k.as_str())));
                list.push(json!(format!("{k}={v}")));
            }
        }
        "LABEL" => {
            for (k, v) in pairs(src, rest)? {
                object(cfg, "Labels").insert(k, json!(v));
            }
        }
        "EXPOSE" => {
            let ports: Vec<&str> = rest.split_whitespace().collect();
            if ports.is_empty() {
                return Err(bad(src, "needs a port"));
            }
            for p in ports {
                let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                if num.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
                    return Err(bad(src, "expected PORT[/tcp|udp|sctp]"));
                }
                object(cfg, "ExposedPorts").insert(format!("{num}/{proto}"), json!({}));
            }
        }
        "VOLUME" => {
            let vols: Vec<String> = if rest.trim().starts_with('[') {
                serde_json::from_str(rest.trim()).map_err(|_| bad(src, "expected a JSON array of paths"))?
            } else {
                rest.split_whitespace().map(str::to_string).collect()
            };
            if vols.is_empty() {
                return Err(bad(src, "needs a path"));
            }
            for v in vols {
                object(cfg, "Volumes").insert(v, json!({}));
            }
        }
        "USER" | "WORKDIR" | "STOPSIGNAL" => {
            let v = rest.trim();
            if v.is_empty() {
                return Err(bad(src, "needs an argument"));
            }
            let key = match word.to_ascii_uppercase().as_str() {
                "USER" => "User",
                "WORKDIR" => "WorkingDir",
                _ => "StopSignal",
            };
            cfg.insert(key.into(), json!(v));
        }
        "ONBUILD" => {
            if rest.trim().is_empty() {
                return Err(bad(src, "needs an instruction"));
            }
            let list = cfg.entry("OnBuild").or_insert_with(|| json!([]));
            if let Some(a) = list.as_array_mut() {
                a.push(json!(rest.trim()));
            }
        }
        _ => {
            return Err(bad(
                src,
                "unsupported instruction; use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME or WORKDIR",
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(changes: &[&str], expected: Value) {
        let mut cfg = Map::new();
        for c in changes {
            apply(&mut cfg, c).unwrap();
        }
        assert_eq!(Value::Object(cfg), expected);
    }

    #[test]
    fn instructions_table() {
        check(&["CMD [\"/bin/sh\"]"], json!({"Cmd": ["/bin/sh"]}));
        check(&["CMD echo hi"], json!({"Cmd": ["/bin/sh", "-c", "echo hi"]}));
        check(&["ENTRYPOINT [\"/app\", \"-v\"]"], json!({"Entrypoint": ["/app", "-v"]}));
        check(&["ENV A=1 B=\"two words\"", "ENV A=3"], json!({"Env": ["B=two words", "A=3"]}));
        check(&["ENV PATH /usr/bin:/bin"], json!({"Env": ["PATH=/usr/bin:/bin"]}));
        check(&["LABEL a=b c=d"], json!({"Labels": {"a": "b", "c": "d"}}));
        check(&["EXPOSE 80 53/udp"], json!({"ExposedPorts": {"80/tcp": {}, "53/udp": {}}}));
        check(&["VOLUME /data /logs"], json!({"Volumes": {"/data": {}, "/logs": {}}}));
        check(
            &["USER 1000:1000", "WORKDIR /app", "STOPSIGNAL SIGTERM"],
            json!({"User": "1000:1000", "WorkingDir": "/app", "StopSignal": "SIGTERM"}),
        );
    }

    #[test]
    fn bad_instructions_are_refused() {
        for bad in ["RUN echo", "CMD", "CMD [1,2]", "EXPOSE http", "ENV", "LABEL \"a=b", "USER"] {
            let mut cfg = Map::new();
            assert!(apply(&mut cfg, bad).is_err(), "{bad}");
        }
    }
}
