//! `--change` / `-c` instructions (`img commit`, `img import`): the
//! Dockerfile instructions docker takes there, parsed as a Dockerfile's and
//! applied to a config's `config` object by the build's rules
//! (`build::config`), so that both read them alike. Pure.

use super::config::{self, Scope};
use crate::dockerfile::{self, DockerfileError, Keyword};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("--change {0:?}: {1}")]
    Bad(String, String),
}

/// The instructions docker's `commit --change` and `import --change` take.
const CHANGES: [Keyword; 11] = [
    Keyword::Cmd,
    Keyword::Entrypoint,
    Keyword::Env,
    Keyword::Expose,
    Keyword::Healthcheck,
    Keyword::Label,
    Keyword::Onbuild,
    Keyword::Stopsignal,
    Keyword::User,
    Keyword::Volume,
    Keyword::Workdir,
];

/// Applies `changes` in order to `cfg` (the config's `config` object), as
/// one Dockerfile's instructions: a CMD among them is kept by an
/// ENTRYPOINT after it, which resets the image's CMD otherwise.
pub fn apply(cfg: &mut Map<String, Value>, changes: &[String]) -> Result<(), ChangeError> {
    let mut whole = Map::new();
    whole.insert("config".into(), Value::Object(std::mem::take(cfg)));
    let mut scope = Scope::change();
    let res = changes.iter().try_for_each(|src| apply_one(&mut whole, src, &mut scope));
    if let Some(Value::Object(c)) = whole.remove("config") {
        *cfg = c;
    }
    res
}

fn apply_one(whole: &mut Map<String, Value>, src: &str, scope: &mut Scope) -> Result<(), ChangeError> {
    let bad = |msg: String| ChangeError::Bad(src.to_string(), msg);
    let df = dockerfile::parse(src.as_bytes()).map_err(|e| match e {
        DockerfileError::Line { msg, .. } => bad(msg),
        e => bad(e.to_string()),
    })?;
    if df.instructions.is_empty() {
        return Err(bad("no instruction; write one, as CMD [\"/bin/sh\"]".into()));
    }
    for ins in &df.instructions {
        if !CHANGES.contains(&ins.keyword) {
            return Err(bad(
                "unsupported instruction; use CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME or WORKDIR".into(),
            ));
        }
        config::apply(whole, ins, scope).map_err(|e| bad(e.msg))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn changed(start: Value, changes: &[&str]) -> Result<Value, ChangeError> {
        let Value::Object(mut cfg) = start else { panic!("an object") };
        let changes: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        apply(&mut cfg, &changes)?;
        Ok(Value::Object(cfg))
    }

    fn check(changes: &[&str], expected: Value) {
        assert_eq!(changed(json!({}), changes).unwrap(), expected, "{changes:?}");
    }

    #[test]
    fn instructions_table() {
        check(&["CMD [\"/bin/sh\"]"], json!({"Cmd": ["/bin/sh"]}));
        check(&["CMD echo hi"], json!({"Cmd": ["/bin/sh", "-c", "echo hi"]}));
        check(&["ENTRYPOINT [\"/app\", \"-v\"]"], json!({"Entrypoint": ["/app", "-v"], "Cmd": null}));
        // A variable keeps its place when set again, as docker keeps it.
        check(&["ENV A=1 B=\"two words\"", "ENV A=3"], json!({"Env": ["A=3", "B=two words"]}));
        check(&["ENV PATH /usr/bin:/bin"], json!({"Env": ["PATH=/usr/bin:/bin"]}));
        check(&["ENV A=1", "ENV B=${A}2"], json!({"Env": ["A=1", "B=12"]}));
        check(&["LABEL a=b c=d"], json!({"Labels": {"a": "b", "c": "d"}}));
        check(&["EXPOSE 80 53/udp"], json!({"ExposedPorts": {"80/tcp": {}, "53/udp": {}}}));
        check(&["VOLUME /data /logs"], json!({"Volumes": {"/data": {}, "/logs": {}}}));
        check(&["VOLUME [\"/data\"]"], json!({"Volumes": {"/data": {}}}));
        check(
            &["USER 1000:1000", "WORKDIR /app", "STOPSIGNAL SIGTERM"],
            json!({"User": "1000:1000", "WorkingDir": "/app", "StopSignal": "SIGTERM"}),
        );
        check(&["WORKDIR /app", "WORKDIR sub/.."], json!({"WorkingDir": "/app"}));
        check(&["ONBUILD run echo hi"], json!({"OnBuild": ["RUN echo hi"]}));
        check(
            &["HEALTHCHECK --retries=2 CMD true"],
            json!({"Healthcheck": {"Test": ["CMD-SHELL", "true"], "Retries": 2}}),
        );
        // A JSON array that is not one of strings is the shell form, as in a Dockerfile.
        check(&["CMD [1, 2]"], json!({"Cmd": ["/bin/sh", "-c", "[1, 2]"]}));
    }

    // `commit -c 'EXPOSE 8000-8010'` was refused where a Dockerfile took it.
    #[test]
    fn commit_change_accepts_expose_port_range() {
        let c = changed(json!({}), &["EXPOSE 8000-8002"]).unwrap();
        assert_eq!(c, json!({"ExposedPorts": {"8000/tcp": {}, "8001/tcp": {}, "8002/tcp": {}}}));
        let c = changed(json!({}), &["EXPOSE 7-8/udp"]).unwrap();
        assert_eq!(c, json!({"ExposedPorts": {"7/udp": {}, "8/udp": {}}}));
    }

    // `commit -c 'EXPOSE 80/TCP'` was refused where a Dockerfile took it.
    #[test]
    fn commit_change_accepts_upper_case_protocol() {
        let c = changed(json!({}), &["EXPOSE 80/TCP 53/Udp"]).unwrap();
        assert_eq!(c, json!({"ExposedPorts": {"80/tcp": {}, "53/udp": {}}}));
    }

    #[test]
    fn entrypoint_resets_the_images_cmd_but_not_one_set_before_it() {
        let base = json!({"Cmd": ["old"], "Env": ["A=1"]});
        let c = changed(base.clone(), &["ENTRYPOINT [\"/app\"]"]).unwrap();
        assert_eq!(c, json!({"Cmd": null, "Env": ["A=1"], "Entrypoint": ["/app"]}));
        let c = changed(base, &["CMD [\"new\"]", "ENTRYPOINT [\"/app\"]"]).unwrap();
        assert_eq!(c, json!({"Cmd": ["new"], "Env": ["A=1"], "Entrypoint": ["/app"]}));
    }

    #[test]
    fn changes_see_the_images_variables_and_shell() {
        let base = json!({"Env": ["P=/bin"], "Shell": ["/bin/bash", "-c"], "WorkingDir": "/srv"});
        let c = changed(base, &["ENV PATH=$P:/x", "CMD run", "WORKDIR app"]).unwrap();
        assert_eq!(c["Env"], json!(["P=/bin", "PATH=/bin:/x"]));
        assert_eq!(c["Cmd"], json!(["/bin/bash", "-c", "run"]));
        assert_eq!(c["WorkingDir"], json!("/srv/app"));
    }

    #[test]
    fn bad_instructions_are_refused() {
        for bad in [
            "RUN echo",
            "FROM x",
            "MAINTAINER me",
            "SHELL [\"/bin/sh\"]",
            "ARG A=1",
            "NOPE x",
            "",
            "CMD",
            "EXPOSE http",
            "EXPOSE 8010-8000",
            "EXPOSE 80/ip",
            "ENV",
            "ENV A",
            "LABEL \"a=b",
            "USER",
            "STOPSIGNAL SIGNOPE",
            "HEALTHCHECK --every=5s CMD true",
        ] {
            let err = changed(json!({}), &[bad]).unwrap_err();
            assert!(err.to_string().starts_with(&format!("--change {bad:?}: ")), "{err}");
        }
    }
}
