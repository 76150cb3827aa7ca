//! A stage of a build: its layers, its root's directories and its config,
//! and the pure planning of stages (the Dockerfile split at FROM, FROM's
//! words, which stage `--target` names).

use super::config;
use crate::digest::Digest;
use crate::dockerfile::{Instruction, Keyword};
use serde_json::{Map, Value};
use std::ops::Range;
use std::path::PathBuf;

/// The PATH docker and buildah give a stage whose base image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A layer of a stage's image.
#[derive(Clone)]
pub(super) struct Layer {
    pub(super) media_type: String,
    pub(super) digest: Digest,
    pub(super) size: u64,
    pub(super) diff_id: Digest,
    /// Made by this build: its index in `Builder::staged`.
    pub(super) staged: Option<usize>,
}

/// A stage's state: its root (lower directories, top first), layers and config.
#[derive(Clone)]
pub(super) struct Stage {
    pub(super) name: Option<String>,
    pub(super) lowers: Vec<PathBuf>,
    pub(super) layers: Vec<Layer>,
    pub(super) config: Map<String, Value>,
    /// ARG values in scope (None: declared, no value).
    pub(super) args: Vec<(String, Option<String>)>,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    pub(super) cmd_set: bool,
    /// The cache key of the stage so far.
    pub(super) key: String,
    /// How many of `layers` `lowers` holds (the rest came from the cache
    /// or the base image and are mounted when a step needs the files).
    pub(super) mounted: usize,
    /// The time of the last history entry.
    pub(super) last_created: Option<String>,
    /// With --squash: the one upper directory all the stage's steps change.
    pub(super) squash_upper: Option<PathBuf>,
}

impl Stage {
    /// A stage starting from `config`, as FROM gives it: with docker's
    /// default PATH, after the base's variables, when the base sets no PATH
    /// (a scratch stage, an image made by `img import`), as docker and
    /// buildah add it; the built image keeps it.
    pub(super) fn new(config: Map<String, Value>, key: String) -> Stage {
        let mut s = Stage {
            name: None,
            lowers: Vec::new(),
            layers: Vec::new(),
            config,
            args: Vec::new(),
            cmd_set: false,
            key,
            mounted: 0,
            last_created: None,
            squash_upper: None,
        };
        if !s.env().iter().any(|(k, _)| k == "PATH") {
            s.set_env("PATH", DEFAULT_PATH);
        }
        s
    }

    pub(super) fn cfg(&mut self) -> &mut Map<String, Value> {
        config::inner(&mut self.config)
    }

    pub(super) fn env(&self) -> Vec<(String, String)> {
        config::env(&self.config)
    }

    pub(super) fn set_env(&mut self, k: &str, v: &str) {
        config::set_env(&mut self.config, k, v)
    }

    /// Looks a variable up as instructions see it: ENV first, then ARG.
    pub(super) fn lookup(&self) -> impl Fn(&str) -> Option<String> {
        config::lookup(&self.config, &self.args)
    }

    pub(super) fn workdir(&self) -> String {
        config::workdir(&self.config)
    }

    pub(super) fn user(&self) -> String {
        config::user(&self.config)
    }
}

/// The Dockerfile's instructions split at FROM: the range before the first
/// FROM (only ARG may be there), and each stage's range, its FROM first.
pub(super) fn split_stages(ins: &[Instruction]) -> (Range<usize>, Vec<Range<usize>>) {
    let first = ins.iter().position(|i| i.keyword == Keyword::From).unwrap_or(ins.len());
    let mut stages = Vec::new();
    let mut i = first;
    while i < ins.len() {
        let j = ins[i + 1..].iter().position(|x| x.keyword == Keyword::From).map_or(ins.len(), |n| i + 1 + n);
        stages.push(i..j);
        i = j;
    }
    (0..first, stages)
}

/// FROM's words, `IMAGE [AS NAME]`: the base and the stage's name
/// (lower-cased, as names are matched).
pub(super) fn from_words(w: &[String]) -> Option<(String, Option<String>)> {
    match w {
        [b] => Some((b.clone(), None)),
        [b, as_, n] if as_.eq_ignore_ascii_case("as") => Some((b.clone(), Some(n.to_ascii_lowercase()))),
        _ => None,
    }
}

/// Does `--target t` name stage `number`, called `name`?
pub(super) fn is_target(name: Option<&str>, number: usize, t: &str) -> bool {
    name.is_some_and(|n| n.eq_ignore_ascii_case(t)) || t.parse::<usize>() == Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile;
    use serde_json::json;

    fn split(text: &str) -> (Range<usize>, Vec<Range<usize>>) {
        split_stages(&dockerfile::parse(text.as_bytes()).expect("parses").instructions)
    }

    #[test]
    fn dockerfiles_split_at_from() {
        let table: &[(&str, Range<usize>, &[Range<usize>])] = &[
            ("FROM a\n", 0..0, &[0..1]),
            ("ARG V=1\nARG B\nFROM a:$V\nRUN x\n", 0..2, &[2..4]),
            ("FROM a AS one\nRUN x\nCOPY a b\nFROM one\nFROM b\nENV A=1\n", 0..0, &[0..3, 3..4, 4..6]),
            ("ARG A\n", 0..1, &[]),
            ("", 0..0, &[]),
            // What comes before the first FROM is the build's to refuse.
            ("RUN x\nFROM a\n", 0..1, &[1..2]),
        ];
        for (text, before, stages) in table {
            assert_eq!(split(text), (before.clone(), stages.to_vec()), "{text}");
        }
    }

    #[test]
    fn from_takes_image_and_an_optional_name() {
        let w = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        let table: &[(&str, Option<(&str, Option<&str>)>)] = &[
            ("busybox", Some(("busybox", None))),
            ("busybox AS Build", Some(("busybox", Some("build")))),
            ("busybox as b", Some(("busybox", Some("b")))),
            ("busybox b", None),
            ("busybox AS", None),
            ("busybox AS b c", None),
            ("", None),
        ];
        for (words, want) in table {
            let want = want.map(|(b, n)| (b.to_string(), n.map(str::to_string)));
            assert_eq!(from_words(&w(words)), want, "{words}");
        }
    }

    #[test]
    fn targets_are_names_or_numbers() {
        let table: &[(Option<&str>, usize, &str, bool)] = &[
            (Some("build"), 0, "build", true),
            (Some("build"), 0, "BUILD", true),
            (Some("build"), 0, "0", true),
            (None, 1, "1", true),
            (None, 1, "0", false),
            (Some("build"), 1, "test", false),
            (None, 0, "", false),
        ];
        for (name, number, t, want) in table {
            assert_eq!(is_target(*name, *number, t), *want, "{name:?} {number} {t}");
        }
    }

    fn env_of(config: Value) -> Vec<String> {
        let Value::Object(c) = config else { panic!("an object") };
        let s = Stage::new(c, String::new());
        s.env().into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    // An image built FROM a base without Env (made by img import, or
    // scratch) had no PATH, where docker and buildah give it theirs.
    #[test]
    fn a_base_without_path_gets_the_default_path() {
        let path = format!("PATH={DEFAULT_PATH}");
        assert_eq!(env_of(json!({})), vec![path.clone()]);
        assert_eq!(env_of(json!({"config": {}})), vec![path.clone()]);
        assert_eq!(env_of(json!({"config": {"Env": ["FOO=bar"]}})), vec!["FOO=bar".to_string(), path]);
        assert_eq!(env_of(json!({"config": {"Env": ["PATH=/x", "A=1"]}})), vec!["PATH=/x", "A=1"]);
        assert_eq!(env_of(json!({"config": {"Env": ["A=1", "PATH="]}})), vec!["A=1", "PATH="]);
    }
}
