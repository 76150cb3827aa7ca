//! Go's `text/template` and the verbs of Go's `fmt`, over JSON data: the one
//! job of this crate is to render a `--format` template as docker and podman
//! would.
//!
//! `img inspect -f`, `img images --format` and `img history --format` accept
//! Go templates, as docker and podman do. This crate parses such a template
//! once and applies it to JSON data as many times as needed. It does no IO.
//!
//! The work is split as Go splits it: `lex` turns the text into tokens,
//! `parse` builds the tree of actions, `exec` walks it over the data,
//! and `fmt` prints values and `printf` verbs as Go's `fmt` package does.
//!
//! What is supported:
//!
//! * Text, actions `{{ ... }}`, trim markers `{{- ` and ` -}}`, and comments
//!   `{{/* ... */}}`.
//! * Pipelines joined with `|`, where the piped value becomes the last
//!   argument of the next command, and parenthesised sub-pipelines.
//! * Variables: `$` (the root data), `{{$x := ...}}`, `{{$x = ...}}`, and
//!   `{{range $i, $e := ...}}`.
//! * `if`/`else if`/`else`, `range`/`else`, `with`/`else with`/`else`, `end`,
//!   and `break`/`continue` inside `range`.
//! * Literals: strings with Go escapes, raw strings, character constants,
//!   integers (decimal, hex, octal, binary), floats, `true`, `false`, `nil`.
//! * Functions: `json`, `index`, `len`, `join`, `split`, `lower`, `upper`,
//!   `title`, `truncate`, `printf`, `print`, `println`, `eq`, `ne`, `lt`,
//!   `le`, `gt`, `ge`, `and`, `or`, `not`.
//!
//! The data model is JSON. Objects behave like Go structs: `.Field` on an
//! object without that key is an error naming the field, so a typo such as
//! `.Confg` is reported rather than silently printing nothing. `null` behaves
//! like a nil map or slice: fields of it are `null`, it has length zero,
//! ranging over it runs the `else` branch, and indexing it yields an empty
//! string. `index` on an object with a missing key also yields an empty
//! string, as indexing a Go `map[string]string` does.
//!
//! A Go struct's nil slice, map or pointer prints as `[]`, `map[]` or
//! `<nil>`, where JSON has only `null`. Data may hold such a typed nil as
//! the object [`typed_nil`] makes: it prints as Go prints that nil, and is
//! `null` for everything else (`json` writes `null`, `len` is zero, it is
//! false, ranging over it runs `else`).
//!
//! Numbers follow JSON: integers print without a decimal point, floats print
//! as Go's `%v` does. Unlike Go, `printf` converts integers for the float
//! verbs and integral floats for `%d`, and comparisons accept an integer and
//! a float together, because JSON does not keep Go's distinction between the
//! two.
//!
//! Parsing refuses templates nested more than 100 levels deep, and execution
//! stops with an error once it has produced 16 MiB of output, run a million
//! range iterations in total, taken ten million steps, or spent its budget
//! for building and comparing strings, so that a hostile template can
//! exhaust neither the stack nor the memory nor the time.
#![forbid(unsafe_code)]

mod exec;
mod fmt;
mod lex;
mod parse;
#[cfg(test)]
mod tests;
mod value;

use serde_json::{Map, Value};

use crate::fmt::{print_top, Out};
use crate::parse::Node;

/// The deepest nesting of control structures and parentheses accepted.
const MAX_DEPTH: usize = 100;
/// The most output, and the longest intermediate string, one execution may build.
const MAX_OUTPUT: usize = 16 << 20;
/// The most range iterations, summed over all loops, in one execution.
const MAX_ITERATIONS: u64 = 1_000_000;
/// The most evaluation steps (nodes walked and commands run) in one execution.
const MAX_STEPS: u64 = 10_000_000;
/// The most work, in bytes built, copied or compared by functions, that one
/// execution may do.
const MAX_WORK: u64 = 128 << 20;
/// How much more than copying it costs to format a byte of output, in the
/// units of [`MAX_WORK`].
const FORMAT_COST: usize = 8;
/// The most elements that `split` may produce.
const MAX_ITEMS: usize = 1 << 20;
/// Widths and precisions in `printf` above this are refused, as Go does.
const MAX_FMT_NUM: usize = 1_000_000;

/// A failure to parse or to execute a template.
///
/// The messages follow the wording of Go's `text/template`, for example
/// `template: :1: function "nosuch" not defined` or
/// `template: :1:2: executing "" at <.Confg>: can't evaluate field Confg in type map`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template text is malformed.
    #[error("template: :{line}: {msg}")]
    Parse {
        /// The 1-based line on which the problem was found.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// The template failed while it was applied to data.
    #[error("template: :{line}:{col}: executing \"\" at <{context}>: {msg}")]
    Exec {
        /// The 1-based line of the failing part of the template.
        line: usize,
        /// The 0-based byte column of the failing part within its line.
        col: usize,
        /// The failing part of the template, shortened to 20 characters.
        context: String,
        /// What went wrong.
        msg: String,
    },
}

/// A parsed template, ready to be applied to data any number of times.
#[derive(Debug, Clone)]
pub struct Template {
    /// The source text, kept so that errors can quote it.
    src: String,
    /// The top-level list of nodes.
    root: Vec<Node>,
}

impl Template {
    /// Parses a template written in Go's `text/template` syntax.
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let root = parse::parse(src)?;
        Ok(Template { src: src.to_string(), root })
    }

    /// Applies the template to `data` and returns the text it produces.
    pub fn execute(&self, data: &Value) -> Result<String, TemplateError> {
        exec::execute(&self.src, &self.root, data)
    }
}

/// Parses `src` and applies it to `data` in one go.
pub fn render(src: &str, data: &Value) -> Result<String, TemplateError> {
    Template::parse(src)?.execute(data)
}

/// Prints a value the way Go prints it for `{{.}}`.
///
/// Strings print as they are, integers without a decimal point, floats as
/// Go's `%v` (`1.5`, `1e+21`), arrays as `[a b c]` and objects as
/// `map[k1:v1 k2:v2]` with sorted keys. A top-level `null` prints as
/// `<no value>`, while a `null` inside an array or object prints as `<nil>`.
pub fn go_print(v: &Value) -> String {
    let mut o = Out::new(usize::MAX);
    print_top(&mut o, v);
    o.s
}

/// The kinds of Go nil that print differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nil {
    /// A nil slice: `[]`.
    Slice,
    /// A nil map: `map[]`.
    Map,
    /// A nil pointer: `<nil>`.
    Pointer,
}

/// The key of the object that stands for a typed nil: a NUL byte cannot be
/// typed in a template's field name.
const NIL_KEY: &str = "\u{0}nil";

/// A typed nil for template data (see the crate's documentation).
pub fn typed_nil(kind: Nil) -> Value {
    let name = match kind {
        Nil::Slice => "slice",
        Nil::Map => "map",
        Nil::Pointer => "pointer",
    };
    let mut m = Map::new();
    m.insert(NIL_KEY.to_string(), Value::String(name.to_string()));
    Value::Object(m)
}

/// How Go prints the typed nil `v`, if it is one.
fn typed_nil_text(v: &Value) -> Option<&'static str> {
    let Value::Object(m) = v else { return None };
    if m.len() != 1 {
        return None;
    }
    match m.get(NIL_KEY)?.as_str()? {
        "slice" => Some("[]"),
        "map" => Some("map[]"),
        "pointer" => Some("<nil>"),
        _ => None,
    }
}

fn has_typed_nil(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.iter().any(has_typed_nil),
        Value::Object(m) => typed_nil_text(v).is_some() || m.values().any(has_typed_nil),
        _ => false,
    }
}

/// `v` with every typed nil made `null`: what it is as JSON.
pub fn without_typed_nils(v: &Value) -> std::borrow::Cow<'_, Value> {
    fn strip(v: &Value) -> Value {
        match v {
            _ if typed_nil_text(v).is_some() => Value::Null,
            Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
            Value::Object(m) => Value::Object(m.iter().map(|(k, e)| (k.clone(), strip(e))).collect()),
            other => other.clone(),
        }
    }
    if has_typed_nil(v) {
        std::borrow::Cow::Owned(strip(v))
    } else {
        std::borrow::Cow::Borrowed(v)
    }
}

/// Returns the 1-based line and the 0-based byte column of `pos` in `src`.
fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let before = &src.as_bytes()[..pos.min(src.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let col = match before.iter().rposition(|&b| b == b'\n') {
        Some(nl) => before.len() - nl - 1,
        None => before.len(),
    };
    (line, col)
}
