//! A subset of Go's `text/template` for `--format` flags.
//!
//! `img inspect -f`, `img images --format` and `img history --format` accept
//! Go templates, as docker and podman do. This module parses such a template
//! once and applies it to JSON data as many times as needed.
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

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::rc::Rc;

use serde_json::{Map, Number, Value};

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
        let toks = Lexer::lex(src);
        let mut parser = Parser {
            src,
            toks,
            i: 0,
            cur: 0,
            action_pos: 0,
            in_action: false,
            vars: vec!["$".to_string()],
            depth: 0,
            range_depth: 0,
        };
        let root = parser.parse_root()?;
        Ok(Template { src: src.to_string(), root })
    }

    /// Applies the template to `data` and returns the text it produces.
    pub fn execute(&self, data: &Value) -> Result<String, TemplateError> {
        let mut ex = Exec {
            src: &self.src,
            vars: vec![("$", Val::Ref(data))],
            out: String::new(),
            steps: 0,
            iterations: 0,
            work: 0,
        };
        ex.walk(&self.root, &Val::Ref(data))?;
        Ok(ex.out)
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

/// A typed nil for template data (see the module's documentation).
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

// The lexer splits a template into text and the tokens of its actions.

/// The kinds of token the lexer produces.
#[derive(Debug, Clone, PartialEq)]
enum Tk {
    /// Plain text outside actions, already trimmed.
    Text(String),
    LeftDelim,
    RightDelim,
    Space,
    Pipe,
    LeftParen,
    RightParen,
    Declare,
    Assign,
    /// Any other printable ASCII character, such as `,`.
    Char(char),
    /// A field name without its leading dot.
    Field(String),
    Dot,
    /// A variable name including its `$`.
    Variable(String),
    Ident(String),
    Keyword(Kw),
    Bool(bool),
    Nil,
    Number,
    CharConst,
    Str,
    RawStr,
    Error(String),
    Eof,
}

/// The keywords of the template language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    If,
    Else,
    End,
    Range,
    With,
    Break,
    Continue,
    Template,
    Define,
    Block,
}

impl Kw {
    fn from_word(w: &str) -> Option<Kw> {
        Some(match w {
            "if" => Kw::If,
            "else" => Kw::Else,
            "end" => Kw::End,
            "range" => Kw::Range,
            "with" => Kw::With,
            "break" => Kw::Break,
            "continue" => Kw::Continue,
            "template" => Kw::Template,
            "define" => Kw::Define,
            "block" => Kw::Block,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kw::If => "if",
            Kw::Else => "else",
            Kw::End => "end",
            Kw::Range => "range",
            Kw::With => "with",
            Kw::Break => "break",
            Kw::Continue => "continue",
            Kw::Template => "template",
            Kw::Define => "define",
            Kw::Block => "block",
        }
    }
}

/// A token with the byte range of the source it came from.
#[derive(Debug, Clone)]
struct Token {
    tk: Tk,
    pos: usize,
    end: usize,
}

/// Splits a template into tokens; it stops after the first error.
struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    toks: Vec<Token>,
}

/// Reports whether `b` is one of the spaces that trim markers remove.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Reports whether `c` may appear in identifiers, fields and variables.
fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}

/// Formats a character as Go's `%#U` does, e.g. `U+0040 '@'`.
fn fmt_rune(c: char) -> String {
    if is_print(c) {
        format!("U+{:04X} '{}'", c as u32, c)
    } else {
        format!("U+{:04X}", c as u32)
    }
}

impl<'s> Lexer<'s> {
    fn lex(src: &'s str) -> Vec<Token> {
        let mut lx = Lexer { src, pos: 0, toks: Vec::new() };
        lx.run();
        lx.toks
    }

    fn emit(&mut self, tk: Tk, pos: usize, end: usize) {
        self.toks.push(Token { tk, pos, end });
        self.pos = end;
    }

    fn fail(&mut self, msg: String, pos: usize) {
        self.toks.push(Token { tk: Tk::Error(msg), pos, end: pos });
    }

    /// Recognises a right delimiter at `p`, returning its length and whether
    /// it carries a trim marker.
    fn right_delim(&self, p: usize) -> Option<(usize, bool)> {
        let b = self.src.as_bytes();
        if b.len() >= p + 4 && is_space(b[p]) && b[p + 1] == b'-' && &b[p + 2..p + 4] == b"}}" {
            Some((4, true))
        } else if b.len() >= p + 2 && &b[p..p + 2] == b"}}" {
            Some((2, false))
        } else {
            None
        }
    }

    fn skip_spaces(&self, mut p: usize) -> usize {
        let b = self.src.as_bytes();
        while p < b.len() && is_space(b[p]) {
            p += 1;
        }
        p
    }

    /// Lexes text and actions until the end of input or the first error.
    fn run(&mut self) {
        loop {
            let start = self.pos;
            let rest = &self.src[start..];
            let Some(off) = rest.find("{{") else {
                if !rest.is_empty() {
                    self.emit(Tk::Text(rest.to_string()), start, self.src.len());
                }
                let n = self.src.len();
                self.emit(Tk::Eof, n, n);
                return;
            };
            let delim = start + off;
            let after = delim + 2;
            let b = self.src.as_bytes();
            let trim = b.len() >= after + 2 && b[after] == b'-' && is_space(b[after + 1]);
            let mut text = &self.src[start..delim];
            if trim {
                text = text.trim_end_matches([' ', '\t', '\r', '\n']);
            }
            if !text.is_empty() {
                self.emit(Tk::Text(text.to_string()), start, start + text.len());
            }
            let inner = if trim { after + 2 } else { after };
            if self.src[inner..].starts_with("/*") {
                let Some(x) = self.src[inner + 2..].find("*/") else {
                    self.fail("unclosed comment".to_string(), delim);
                    return;
                };
                let p = inner + 2 + x + 2;
                match self.right_delim(p) {
                    Some((len, trim_right)) => {
                        self.pos = p + len;
                        if trim_right {
                            self.pos = self.skip_spaces(self.pos);
                        }
                        continue;
                    }
                    None => {
                        self.fail("comment ends before closing delimiter".to_string(), p);
                        return;
                    }
                }
            }
            self.emit(Tk::LeftDelim, delim, inner);
            if !self.lex_action() {
                return;
            }
        }
    }

    /// Lexes the inside of one action, up to and including its right
    /// delimiter. Returns false after an error.
    fn lex_action(&mut self) -> bool {
        let mut depth = 0usize;
        loop {
            let p = self.pos;
            if let Some((len, trim)) = self.right_delim(p) {
                if depth > 0 {
                    self.fail("unclosed left paren".to_string(), p);
                    return false;
                }
                self.emit(Tk::RightDelim, p, p + len);
                if trim {
                    self.pos = self.skip_spaces(self.pos);
                }
                return true;
            }
            let Some(c) = self.src[p..].chars().next() else {
                self.fail("unclosed action".to_string(), p);
                return false;
            };
            let next = p + c.len_utf8();
            let ok = match c {
                ' ' | '\t' | '\r' | '\n' => {
                    let b = self.src.as_bytes();
                    let mut q = p;
                    // A space followed by "-}}" belongs to the right delimiter.
                    while q < b.len() && is_space(b[q]) && !matches!(self.right_delim(q), Some((_, true))) {
                        q += 1;
                    }
                    self.emit(Tk::Space, p, q.max(next));
                    true
                }
                '=' => {
                    self.emit(Tk::Assign, p, next);
                    true
                }
                ':' => {
                    if self.src[next..].starts_with('=') {
                        self.emit(Tk::Declare, p, next + 1);
                        true
                    } else {
                        self.fail("expected :=".to_string(), p);
                        false
                    }
                }
                '|' => {
                    self.emit(Tk::Pipe, p, next);
                    true
                }
                '"' => self.lex_quote(p, b'"', Tk::Str, "unterminated quoted string"),
                '\'' => self.lex_quote(p, b'\'', Tk::CharConst, "unterminated character constant"),
                '`' => match self.src[next..].find('`') {
                    Some(x) => {
                        self.emit(Tk::RawStr, p, next + x + 1);
                        true
                    }
                    None => {
                        self.fail("unterminated raw quoted string".to_string(), p);
                        false
                    }
                },
                '$' => self.lex_field_or_var(p, next, true),
                '.' if !self.src.as_bytes().get(next).is_some_and(u8::is_ascii_digit) => {
                    self.lex_field_or_var(p, next, false)
                }
                '.' | '+' | '-' | '0'..='9' => self.lex_number(p),
                '(' => {
                    depth += 1;
                    self.emit(Tk::LeftParen, p, next);
                    true
                }
                ')' => {
                    if depth == 0 {
                        self.fail("unexpected right paren".to_string(), p);
                        false
                    } else {
                        depth -= 1;
                        self.emit(Tk::RightParen, p, next);
                        true
                    }
                }
                c if is_alnum(c) => self.lex_identifier(p),
                '!'..='~' => {
                    self.emit(Tk::Char(c), p, next);
                    true
                }
                c => {
                    self.fail(format!("unrecognized character in action: {}", fmt_rune(c)), p);
                    false
                }
            };
            if !ok {
                return false;
            }
        }
    }

    /// Reports whether the token ending at `p` is properly terminated.
    fn at_terminator(&self, p: usize) -> bool {
        let rest = &self.src[p..];
        match rest.chars().next() {
            None => true,
            Some(c) => {
                // Like Go, accept the first character of the right delimiter,
                // so that "{{.X}" reports the stray "}" rather than the field.
                matches!(c, ' ' | '\t' | '\r' | '\n' | '.' | ',' | '|' | ':' | ')' | '(' | '}')
            }
        }
    }

    fn alnum_run(&self, mut p: usize) -> usize {
        for c in self.src[p..].chars() {
            if !is_alnum(c) {
                break;
            }
            p += c.len_utf8();
        }
        p
    }

    fn bad_terminator(&mut self, p: usize) -> bool {
        let c = self.src[p..].chars().next().unwrap_or(' ');
        self.fail(format!("bad character {}", fmt_rune(c)), p);
        false
    }

    fn lex_field_or_var(&mut self, start: usize, body: usize, var: bool) -> bool {
        let end = self.alnum_run(body);
        if !self.at_terminator(end) {
            return self.bad_terminator(end);
        }
        let tk = if var {
            Tk::Variable(self.src[start..end].to_string())
        } else if end == body {
            Tk::Dot
        } else {
            Tk::Field(self.src[body..end].to_string())
        };
        self.emit(tk, start, end);
        true
    }

    fn lex_identifier(&mut self, start: usize) -> bool {
        let end = self.alnum_run(start);
        if !self.at_terminator(end) {
            return self.bad_terminator(end);
        }
        let word = &self.src[start..end];
        let tk = match word {
            "true" => Tk::Bool(true),
            "false" => Tk::Bool(false),
            "nil" => Tk::Nil,
            w => Kw::from_word(w).map_or_else(|| Tk::Ident(w.to_string()), Tk::Keyword),
        };
        self.emit(tk, start, end);
        true
    }

    /// Scans a number the way Go's lexer does; the parser validates it.
    fn lex_number(&mut self, start: usize) -> bool {
        let b = self.src.as_bytes();
        let mut i = start;
        let accept = |i: &mut usize, set: &[u8]| -> bool {
            if *i < b.len() && set.contains(&b[*i]) {
                *i += 1;
                true
            } else {
                false
            }
        };
        let run = |i: &mut usize, set: &[u8]| {
            while *i < b.len() && set.contains(&b[*i]) {
                *i += 1;
            }
        };
        accept(&mut i, b"+-");
        let mut digits: &[u8] = b"0123456789_";
        if accept(&mut i, b"0") {
            if accept(&mut i, b"xX") {
                digits = b"0123456789abcdefABCDEF_";
            } else if accept(&mut i, b"oO") {
                digits = b"01234567_";
            } else if accept(&mut i, b"bB") {
                digits = b"01_";
            }
        }
        run(&mut i, digits);
        if accept(&mut i, b".") {
            run(&mut i, digits);
        }
        if digits.len() == 11 && accept(&mut i, b"eE") {
            accept(&mut i, b"+-");
            run(&mut i, b"0123456789_");
        }
        if digits.len() == 23 && accept(&mut i, b"pP") {
            accept(&mut i, b"+-");
            run(&mut i, b"0123456789_");
        }
        accept(&mut i, b"i");
        let ok = i > start && !b[start..i].iter().all(|&c| c == b'+' || c == b'-');
        match self.src[i..].chars().next() {
            Some(c) if is_alnum(c) || !ok => {
                let end = if is_alnum(c) { i + c.len_utf8() } else { i };
                let text = go_quote(&self.src[start..end]);
                self.fail(format!("bad number syntax: {text}"), start);
                false
            }
            None if !ok => {
                let text = go_quote(&self.src[start..i]);
                self.fail(format!("bad number syntax: {text}"), start);
                false
            }
            _ => {
                self.emit(Tk::Number, start, i);
                true
            }
        }
    }

    /// Lexes a double-quoted string or a character constant.
    fn lex_quote(&mut self, start: usize, quote: u8, tk: Tk, unterminated: &str) -> bool {
        let b = self.src.as_bytes();
        let mut i = start + 1;
        loop {
            if i >= b.len() || b[i] == b'\n' {
                self.fail(unterminated.to_string(), start);
                return false;
            }
            if b[i] == b'\\' {
                i += 1;
                if i >= b.len() || b[i] == b'\n' {
                    self.fail(unterminated.to_string(), start);
                    return false;
                }
                // Skip the escaped character whole, so that `i` stays on a
                // character boundary.
                let w = self.src[i..].chars().next().map_or(1, char::len_utf8);
                i += w;
                continue;
            }
            if b[i] == quote {
                self.emit(tk, start, i + 1);
                return true;
            }
            i += 1;
        }
    }
}

// The parse tree mirrors the nodes of Go's text/template/parse package.

/// A byte range of the source, used to point at the culprit in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    pos: usize,
    end: usize,
}

/// The built-in functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    And,
    Eq,
    Ge,
    Gt,
    Index,
    Join,
    Json,
    Le,
    Len,
    Lower,
    Lt,
    Ne,
    Not,
    Or,
    Print,
    Printf,
    Println,
    Split,
    Title,
    Truncate,
    Upper,
}

impl Func {
    const ALL: [Func; 21] = [
        Func::And,
        Func::Eq,
        Func::Ge,
        Func::Gt,
        Func::Index,
        Func::Join,
        Func::Json,
        Func::Le,
        Func::Len,
        Func::Lower,
        Func::Lt,
        Func::Ne,
        Func::Not,
        Func::Or,
        Func::Print,
        Func::Printf,
        Func::Println,
        Func::Split,
        Func::Title,
        Func::Truncate,
        Func::Upper,
    ];

    fn lookup(name: &str) -> Option<Func> {
        Self::ALL.iter().copied().find(|f| f.name() == name)
    }

    fn name(self) -> &'static str {
        match self {
            Func::And => "and",
            Func::Eq => "eq",
            Func::Ge => "ge",
            Func::Gt => "gt",
            Func::Index => "index",
            Func::Join => "join",
            Func::Json => "json",
            Func::Le => "le",
            Func::Len => "len",
            Func::Lower => "lower",
            Func::Lt => "lt",
            Func::Ne => "ne",
            Func::Not => "not",
            Func::Or => "or",
            Func::Print => "print",
            Func::Printf => "printf",
            Func::Println => "println",
            Func::Split => "split",
            Func::Title => "title",
            Func::Truncate => "truncate",
            Func::Upper => "upper",
        }
    }

    /// Returns the least number of arguments and, unless the function is
    /// variadic, the most.
    fn arity(self) -> (usize, Option<usize>) {
        match self {
            Func::Json | Func::Len | Func::Lower | Func::Upper | Func::Title | Func::Not => (1, Some(1)),
            Func::Join | Func::Split | Func::Truncate | Func::Ne | Func::Lt | Func::Le | Func::Gt | Func::Ge => {
                (2, Some(2))
            }
            Func::Index | Func::Printf | Func::Eq | Func::And | Func::Or => (1, None),
            Func::Print | Func::Println => (0, None),
        }
    }
}

/// One operand of a command.
#[derive(Debug, Clone)]
enum TermKind {
    Dot,
    Nil,
    /// A string, number or boolean literal.
    Lit(Value),
    /// `.A.B.C`, evaluated against dot.
    Field(Vec<String>),
    /// `$x.A.B`, a variable followed by optional fields.
    Var(String, Vec<String>),
    Func(Func),
    /// A parenthesised pipeline.
    Pipe(Box<Pipe>),
    /// `(pipeline).A.B`, fields of any other term.
    Chain(Box<Term>, Vec<String>),
}

#[derive(Debug, Clone)]
struct Term {
    kind: TermKind,
    span: Span,
}

/// A command: a function or value followed by its arguments.
#[derive(Debug, Clone)]
struct Cmd {
    args: Vec<Term>,
    span: Span,
}

/// A pipeline, with the variables it declares or assigns.
#[derive(Debug, Clone)]
struct Pipe {
    decl: Vec<String>,
    is_assign: bool,
    cmds: Vec<Cmd>,
    span: Span,
}

/// One `if`, `else if`, `with` or `else with` arm.
#[derive(Debug, Clone)]
struct Branch {
    pipe: Pipe,
    body: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String, Span),
    Action(Pipe),
    If(Vec<Branch>, Option<Vec<Node>>),
    With(Vec<Branch>, Option<Vec<Node>>),
    Range(Box<Branch>, Option<Vec<Node>>),
    Break,
    Continue,
}

// The parser is a recursive descent over the tokens, as in Go.

/// What an `{{else}}` is followed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ElseKind {
    Plain,
    If,
    With,
}

/// How a list of nodes ended.
enum ListEnd {
    Eof,
    End,
    Else(ElseKind),
}

/// What one action turned out to be.
enum Act {
    Node(Node),
    End,
    Else(ElseKind),
}

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Token>,
    /// The index of the next token.
    i: usize,
    /// The position of the token read last, for error lines.
    cur: usize,
    /// The position of the left delimiter of the current action.
    action_pos: usize,
    in_action: bool,
    /// The variables in scope, innermost last.
    vars: Vec<String>,
    depth: usize,
    range_depth: usize,
}

impl Parser<'_> {
    fn next(&mut self) -> Token {
        let k = self.i.min(self.toks.len().saturating_sub(1));
        self.i += 1;
        let n = self.src.len();
        let t = self.toks.get(k).cloned().unwrap_or(Token { tk: Tk::Eof, pos: n, end: n });
        self.cur = t.pos;
        t
    }

    fn backup(&mut self) {
        self.i = self.i.saturating_sub(1);
    }

    fn peek(&mut self) -> Token {
        let t = self.next();
        self.backup();
        t
    }

    fn next_non_space(&mut self) -> Token {
        loop {
            let t = self.next();
            if t.tk != Tk::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> Token {
        let t = self.next_non_space();
        self.backup();
        t
    }

    fn err(&self, msg: impl Into<String>) -> TemplateError {
        TemplateError::Parse { line: line_col(self.src, self.cur).0, msg: msg.into() }
    }

    /// Reports an error token from the lexer.
    fn lex_error(&self, t: &Token, msg: &str) -> TemplateError {
        let line = line_col(self.src, t.pos).0;
        let action_line = line_col(self.src, self.action_pos).0;
        let mut msg = msg.to_string();
        if self.in_action && action_line != line {
            if msg.ends_with(" action") {
                msg.push_str(&format!(" started at :{action_line}"));
            } else {
                msg.push_str(&format!(" in action started at :{action_line}"));
            }
        }
        TemplateError::Parse { line, msg }
    }

    fn unexpected(&self, t: &Token, context: &str) -> TemplateError {
        if let Tk::Error(msg) = &t.tk {
            return self.lex_error(t, msg);
        }
        self.err(format!("unexpected {} in {}", self.describe(t), context))
    }

    /// Describes a token the way Go's parser does in its errors.
    fn describe(&self, t: &Token) -> String {
        let val = match &t.tk {
            Tk::Eof => return "EOF".to_string(),
            Tk::Error(m) => return m.clone(),
            Tk::Keyword(k) => return format!("<{}>", k.name()),
            Tk::Nil => return "<nil>".to_string(),
            Tk::Dot => return "<.>".to_string(),
            Tk::Text(s) => s.as_str(),
            _ => self.src.get(t.pos..t.end).unwrap_or(""),
        };
        if val.chars().count() > 10 {
            format!("{}...", go_quote(&val.chars().take(10).collect::<String>()))
        } else {
            go_quote(val)
        }
    }

    fn expect_right_delim(&mut self, context: &str) -> Result<(), TemplateError> {
        let t = self.next_non_space();
        if t.tk == Tk::RightDelim {
            Ok(())
        } else {
            Err(self.unexpected(&t, context))
        }
    }

    fn enter(&mut self) -> Result<(), TemplateError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!("template nested too deeply: more than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn parse_root(&mut self) -> Result<Vec<Node>, TemplateError> {
        let (list, end) = self.item_list()?;
        match end {
            ListEnd::Eof => Ok(list),
            ListEnd::End => Err(self.err("unexpected {{end}}")),
            ListEnd::Else(_) => Err(self.err("unexpected {{else}}")),
        }
    }

    /// Parses text and actions up to the end of input, an `{{end}}` or an
    /// `{{else}}`.
    fn item_list(&mut self) -> Result<(Vec<Node>, ListEnd), TemplateError> {
        let mut list = Vec::new();
        loop {
            let t = self.next();
            match t.tk {
                Tk::Text(s) => list.push(Node::Text(s, Span { pos: t.pos, end: t.end })),
                Tk::LeftDelim => {
                    self.in_action = true;
                    self.action_pos = t.pos;
                    let act = self.action()?;
                    self.in_action = false;
                    match act {
                        Act::Node(n) => list.push(n),
                        Act::End => return Ok((list, ListEnd::End)),
                        Act::Else(k) => return Ok((list, ListEnd::Else(k))),
                    }
                }
                Tk::Eof => return Ok((list, ListEnd::Eof)),
                _ => return Err(self.unexpected(&t, "input")),
            }
        }
    }

    /// Parses one action; the left delimiter has been read.
    fn action(&mut self) -> Result<Act, TemplateError> {
        let t = self.next_non_space();
        match t.tk {
            Tk::Keyword(Kw::Else) => match self.peek_non_space().tk {
                Tk::Keyword(Kw::If) => {
                    self.next_non_space();
                    Ok(Act::Else(ElseKind::If))
                }
                Tk::Keyword(Kw::With) => {
                    self.next_non_space();
                    Ok(Act::Else(ElseKind::With))
                }
                _ => {
                    self.expect_right_delim("else")?;
                    Ok(Act::Else(ElseKind::Plain))
                }
            },
            Tk::Keyword(Kw::End) => {
                self.expect_right_delim("end")?;
                Ok(Act::End)
            }
            Tk::Keyword(k @ (Kw::If | Kw::Range | Kw::With)) => self.control(k).map(Act::Node),
            Tk::Keyword(k @ (Kw::Break | Kw::Continue)) => {
                if self.range_depth == 0 {
                    return Err(self.err(format!("{{{{{}}}}} outside {{{{range}}}}", k.name())));
                }
                self.expect_right_delim(&format!("{{{{{}}}}}", k.name()))?;
                Ok(Act::Node(if k == Kw::Break { Node::Break } else { Node::Continue }))
            }
            Tk::Keyword(k) => Err(self.err(format!("{{{{{}}}}} actions are not supported", k.name()))),
            _ => {
                self.backup();
                let (pipe, _) = self.pipeline("command", true)?;
                Ok(Act::Node(Node::Action(pipe)))
            }
        }
    }

    /// Parses `if`, `range` or `with` up to its `{{end}}`; the keyword has
    /// been read.
    fn control(&mut self, kind: Kw) -> Result<Node, TemplateError> {
        self.enter()?;
        let ctx = kind.name();
        let mark = self.vars.len();
        let mut branches = Vec::new();
        let mut pipe = self.pipeline(ctx, true)?.0;
        let else_list = loop {
            if kind == Kw::Range {
                self.range_depth += 1;
            }
            let body_mark = self.vars.len();
            let (body, end) = self.item_list()?;
            self.vars.truncate(body_mark);
            if kind == Kw::Range {
                self.range_depth -= 1;
            }
            branches.push(Branch { pipe, body });
            match end {
                ListEnd::Eof => return Err(self.err("unexpected EOF")),
                ListEnd::End => break None,
                ListEnd::Else(ElseKind::Plain) => {
                    let (list, end) = self.item_list()?;
                    match end {
                        ListEnd::End => break Some(list),
                        ListEnd::Eof => return Err(self.err("unexpected EOF")),
                        ListEnd::Else(_) => return Err(self.err("expected end; found {{else}}")),
                    }
                }
                ListEnd::Else(ElseKind::If) if kind == Kw::If => pipe = self.pipeline("if", true)?.0,
                ListEnd::Else(ElseKind::With) if kind == Kw::With => pipe = self.pipeline("with", true)?.0,
                ListEnd::Else(k) => {
                    let name = if k == ElseKind::If { "if" } else { "with" };
                    return Err(self.err(format!("unexpected <{name}> in else")));
                }
            }
        };
        self.vars.truncate(mark);
        self.depth -= 1;
        Ok(match kind {
            Kw::If => Node::If(branches, else_list),
            Kw::With => Node::With(branches, else_list),
            _ => match branches.pop() {
                Some(b) => Node::Range(Box::new(b), else_list),
                None => return Err(self.err("internal error: range without body")),
            },
        })
    }

    /// Parses a pipeline up to its closing delimiter (`}}` when `delim`,
    /// otherwise `)`), returning it and the end of the closing token.
    fn pipeline(&mut self, context: &str, delim: bool) -> Result<(Pipe, usize), TemplateError> {
        let start = self.peek_non_space().pos;
        let mut decl: Vec<String> = Vec::new();
        let mut is_assign = false;
        loop {
            let v = self.peek_non_space();
            let Tk::Variable(name) = v.tk else { break };
            let save = self.i;
            self.next_non_space();
            let nx = self.peek_non_space();
            match nx.tk {
                Tk::Declare | Tk::Assign => {
                    self.next_non_space();
                    is_assign = nx.tk == Tk::Assign;
                    decl.push(name);
                    break;
                }
                Tk::Char(',') => {
                    self.next_non_space();
                    decl.push(name);
                    if context == "range" && decl.len() < 2 {
                        match self.peek_non_space().tk {
                            Tk::Variable(_) | Tk::RightDelim | Tk::RightParen => continue,
                            _ => return Err(self.err("range can only initialize variables")),
                        }
                    }
                    return Err(self.err(format!("too many declarations in {context}")));
                }
                _ => {
                    self.i = save;
                    break;
                }
            }
        }
        if is_assign {
            if let Some(name) = decl.iter().find(|d| !self.vars.contains(d)) {
                return Err(self.err(format!("undefined variable {}", go_quote(name))));
            }
        }
        let mut cmds: Vec<Cmd> = Vec::new();
        let mut dangling = false;
        loop {
            let t = self.next_non_space();
            let is_end = if delim { t.tk == Tk::RightDelim } else { t.tk == Tk::RightParen };
            if is_end {
                if dangling {
                    return Err(self.err(format!("missing command after \"|\" in {context}")));
                }
                if cmds.is_empty() {
                    return Err(self.err(format!("missing value for {context}")));
                }
                for (i, c) in cmds.iter().enumerate().skip(1) {
                    if matches!(c.args.first().map(|a| &a.kind), Some(TermKind::Dot | TermKind::Nil | TermKind::Lit(_)))
                    {
                        return Err(self.err(format!("non executable command in pipeline stage {}", i + 1)));
                    }
                }
                if !is_assign {
                    self.vars.extend(decl.iter().cloned());
                }
                let span = Span { pos: start, end: t.pos };
                return Ok((Pipe { decl, is_assign, cmds, span }, t.end));
            }
            match t.tk {
                Tk::Bool(_)
                | Tk::CharConst
                | Tk::Dot
                | Tk::Field(_)
                | Tk::Ident(_)
                | Tk::Number
                | Tk::Nil
                | Tk::RawStr
                | Tk::Str
                | Tk::Variable(_)
                | Tk::LeftParen => {
                    self.backup();
                    let (cmd, piped) = self.command()?;
                    cmds.push(cmd);
                    dangling = piped;
                }
                _ => return Err(self.unexpected(&t, context)),
            }
        }
    }

    /// Parses one command, consuming a trailing `|` (reported as true) but
    /// leaving a closing delimiter in place.
    fn command(&mut self) -> Result<(Cmd, bool), TemplateError> {
        let mut args: Vec<Term> = Vec::new();
        let piped = loop {
            while self.peek().tk == Tk::Space {
                self.next();
            }
            if let Some(term) = self.operand()? {
                args.push(term);
            }
            let t = self.next();
            match t.tk {
                Tk::Space => continue,
                Tk::RightDelim | Tk::RightParen => {
                    self.backup();
                    break false;
                }
                Tk::Pipe => break true,
                _ => return Err(self.unexpected(&t, "operand")),
            }
        };
        let (Some(first), Some(last)) = (args.first(), args.last()) else {
            return Err(self.err("empty command"));
        };
        let span = Span { pos: first.span.pos, end: last.span.end };
        Ok((Cmd { args, span }, piped))
    }

    /// Parses a term followed by any number of `.Field`s.
    fn operand(&mut self) -> Result<Option<Term>, TemplateError> {
        let Some(term) = self.term()? else { return Ok(None) };
        if !matches!(self.peek().tk, Tk::Field(_)) {
            return Ok(Some(term));
        }
        let mut fields = Vec::new();
        let mut end = term.span.end;
        while let Tk::Field(name) = self.peek().tk {
            let t = self.next();
            fields.push(name);
            end = t.end;
        }
        let span = Span { pos: term.span.pos, end };
        let kind = match term.kind {
            TermKind::Field(mut names) => {
                names.extend(fields);
                TermKind::Field(names)
            }
            TermKind::Var(name, mut names) => {
                names.extend(fields);
                TermKind::Var(name, names)
            }
            TermKind::Lit(_) | TermKind::Dot | TermKind::Nil => {
                let text = self.src.get(term.span.pos..term.span.end).unwrap_or("");
                return Err(self.err(format!("unexpected . after term {}", go_quote(text))));
            }
            _ => TermKind::Chain(Box::new(term), fields),
        };
        Ok(Some(Term { kind, span }))
    }

    /// Parses a literal, `.`, a field, a variable, a function name or a
    /// parenthesised pipeline. Returns `None`, consuming nothing, when the
    /// next token is none of these.
    fn term(&mut self) -> Result<Option<Term>, TemplateError> {
        let t = self.next_non_space();
        let span = Span { pos: t.pos, end: t.end };
        let text = self.src.get(t.pos..t.end).unwrap_or("");
        let kind = match t.tk {
            Tk::Ident(name) => match Func::lookup(&name) {
                Some(f) => TermKind::Func(f),
                None => return Err(self.err(format!("function {} not defined", go_quote(&name)))),
            },
            Tk::Dot => TermKind::Dot,
            Tk::Nil => TermKind::Nil,
            Tk::Variable(name) => {
                if !self.vars.contains(&name) {
                    return Err(self.err(format!("undefined variable {}", go_quote(&name))));
                }
                TermKind::Var(name, Vec::new())
            }
            Tk::Field(name) => TermKind::Field(vec![name]),
            Tk::Bool(b) => TermKind::Lit(Value::Bool(b)),
            Tk::Number => match parse_number(text) {
                Some(v) => TermKind::Lit(v),
                None => return Err(self.err(format!("illegal number syntax: {}", go_quote(text)))),
            },
            Tk::CharConst => match parse_char_const(text) {
                Some(v) => TermKind::Lit(Value::from(v)),
                None => return Err(self.err(format!("malformed character constant: {text}"))),
            },
            Tk::Str => match unquote(text) {
                Some(s) => TermKind::Lit(Value::String(s)),
                None => return Err(self.err(format!("invalid syntax in string literal {text}"))),
            },
            Tk::RawStr => {
                let inner = text.get(1..text.len().saturating_sub(1)).unwrap_or("");
                TermKind::Lit(Value::String(inner.replace('\r', "")))
            }
            Tk::LeftParen => {
                self.enter()?;
                let (pipe, end) = self.pipeline("parenthesized pipeline", false)?;
                self.depth -= 1;
                return Ok(Some(Term { kind: TermKind::Pipe(Box::new(pipe)), span: Span { pos: t.pos, end } }));
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        };
        Ok(Some(Term { kind, span }))
    }
}

// Literals are decoded with the rules of Go's strconv package.

/// One decoded escape sequence.
enum Esc {
    Byte(u8),
    Char(char),
}

fn take_hex(it: &mut std::str::Chars<'_>, n: usize) -> Option<u32> {
    let mut v = 0u32;
    for _ in 0..n {
        v = v * 16 + it.next()?.to_digit(16)?;
    }
    Some(v)
}

/// Decodes the escape after a backslash, as Go's `strconv.Unquote` does.
fn parse_escape(it: &mut std::str::Chars<'_>, quote: char) -> Option<Esc> {
    let e = it.next()?;
    Some(match e {
        'a' => Esc::Byte(7),
        'b' => Esc::Byte(8),
        'f' => Esc::Byte(12),
        'n' => Esc::Byte(b'\n'),
        'r' => Esc::Byte(b'\r'),
        't' => Esc::Byte(b'\t'),
        'v' => Esc::Byte(11),
        '\\' => Esc::Byte(b'\\'),
        '\'' | '"' if e == quote => Esc::Byte(e as u8),
        'x' => Esc::Byte(u8::try_from(take_hex(it, 2)?).ok()?),
        'u' => Esc::Char(char::from_u32(take_hex(it, 4)?)?),
        'U' => Esc::Char(char::from_u32(take_hex(it, 8)?)?),
        '0'..='7' => {
            let mut v = e.to_digit(8)?;
            for _ in 0..2 {
                v = v * 8 + it.next()?.to_digit(8)?;
            }
            Esc::Byte(u8::try_from(v).ok()?)
        }
        _ => return None,
    })
}

/// Decodes a double-quoted Go string literal, quotes included.
fn unquote(raw: &str) -> Option<String> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut it = inner.chars();
    let mut buf = [0u8; 4];
    while let Some(c) = it.next() {
        match c {
            '\\' => match parse_escape(&mut it, '"')? {
                Esc::Byte(b) => out.push(b),
                Esc::Char(c) => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
            },
            '"' | '\n' => return None,
            c => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Decodes a character constant such as `'a'` or `'\n'` to its code.
fn parse_char_const(raw: &str) -> Option<i64> {
    let inner = raw.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut it = inner.chars();
    let v = match it.next()? {
        '\\' => match parse_escape(&mut it, '\'')? {
            Esc::Byte(b) => i64::from(b),
            Esc::Char(c) => i64::from(u32::from(c)),
        },
        '\'' | '\n' => return None,
        c => i64::from(u32::from(c)),
    };
    if it.next().is_some() {
        return None;
    }
    Some(v)
}

/// Parses digits in `radix`, refusing signs and empty input.
fn parse_radix(s: &str, radix: u32) -> Option<u64> {
    if s.is_empty() || !s.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(s, radix).ok()
}

/// Parses a number literal: integers become JSON integers, the rest floats.
fn parse_number(text: &str) -> Option<Value> {
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let clean: String = body.chars().filter(|&c| c != '_').collect::<String>().to_ascii_lowercase();
    let prefixed = clean.starts_with("0x") || clean.starts_with("0o") || clean.starts_with("0b");
    let int = if let Some(h) = clean.strip_prefix("0x") {
        parse_radix(h, 16)
    } else if let Some(o) = clean.strip_prefix("0o") {
        parse_radix(o, 8)
    } else if let Some(b) = clean.strip_prefix("0b") {
        parse_radix(b, 2)
    } else if clean.len() > 1 && clean.starts_with('0') {
        parse_radix(&clean[1..], 8)
    } else {
        parse_radix(&clean, 10)
    };
    if let Some(u) = int {
        if !neg {
            return Some(i64::try_from(u).map_or_else(|_| Value::from(u), Value::from));
        }
        if let Ok(i) = i64::try_from(-i128::from(u)) {
            return Some(Value::from(i));
        }
    }
    if prefixed || clean.contains('i') || clean.is_empty() {
        return None;
    }
    let f: f64 = clean.parse().ok()?;
    if !f.is_finite() {
        return None;
    }
    let f = if neg { -f } else { f };
    if !clean.contains(['.', 'e']) && f.fract() == 0.0 && f.abs() < 9.0e18 {
        // A decimal integer with a leading zero, such as 08, is not octal.
        return Some(Value::from(f as i64));
    }
    Number::from_f64(f).map(Value::Number)
}

// Execution walks the tree over borrowed data, within fixed limits.

/// The `null` that missing values evaluate to.
static NULL: Value = Value::Null;

/// A value during execution: borrowed from the data or the template, or
/// built by a function.
#[derive(Debug, Clone)]
enum Val<'a> {
    Ref(&'a Value),
    Own(Rc<Value>),
}

impl Val<'_> {
    /// The value, a typed nil being `null`.
    fn get(&self) -> &Value {
        let v = self.raw();
        if typed_nil_text(v).is_some() {
            &NULL
        } else {
            v
        }
    }

    /// The value as the data has it, for printing.
    fn raw(&self) -> &Value {
        match self {
            Val::Ref(v) => v,
            Val::Own(v) => v,
        }
    }

    fn own(v: Value) -> Self {
        Val::Own(Rc::new(v))
    }

    fn empty_string() -> Self {
        Val::own(Value::String(String::new()))
    }
}

/// How a list of nodes finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Normal,
    Break,
    Continue,
}

type ExecResult<T> = Result<T, TemplateError>;

/// The state of one execution.
struct Exec<'a> {
    src: &'a str,
    /// The variables in scope, innermost last; `$` comes first.
    vars: Vec<(&'a str, Val<'a>)>,
    out: String,
    steps: u64,
    iterations: u64,
    work: u64,
}

/// Estimates the cost of copying a value, without recursing.
fn value_cost(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 16,
        Value::Array(a) => {
            a.iter().map(|e| if let Value::String(s) = e { s.len() + 16 } else { 16 }).sum::<usize>() + 16
        }
        Value::Object(m) => m.len() * 64 + 16,
        _ => 16,
    }
}

/// Returns the entries of an object sorted by key, as Go prints maps.
fn sorted_entries(m: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut v: Vec<(&String, &Value)> = m.iter().collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

impl<'a> Exec<'a> {
    fn text(&self, span: Span) -> &'a str {
        self.src.get(span.pos..span.end).unwrap_or("").trim()
    }

    fn err(&self, span: Span, msg: impl Into<String>) -> TemplateError {
        let (line, col) = line_col(self.src, span.pos);
        let text = self.text(span);
        let context = if text.chars().count() > 20 {
            format!("{}...", text.chars().take(20).collect::<String>())
        } else {
            text.to_string()
        };
        TemplateError::Exec { line, col, context, msg: msg.into() }
    }

    fn step(&mut self, span: Span) -> ExecResult<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(self.err(span, format!("template execution exceeded the limit of {MAX_STEPS} steps")));
        }
        Ok(())
    }

    fn charge(&mut self, bytes: usize, span: Span) -> ExecResult<()> {
        self.work = self.work.saturating_add(bytes as u64);
        if self.work > MAX_WORK {
            return Err(self.err(span, format!("template execution exceeded the limit of {MAX_WORK} bytes of work")));
        }
        Ok(())
    }

    fn too_much_output(&self, span: Span) -> TemplateError {
        self.err(span, format!("output exceeds the limit of {MAX_OUTPUT} bytes"))
    }

    /// Turns a string built by a function into a value, enforcing limits;
    /// `cost` is the work charged per byte.
    fn string_result(&mut self, s: String, cost: usize, span: Span) -> ExecResult<Val<'a>> {
        if s.len() > MAX_OUTPUT {
            return Err(self.err(span, format!("result exceeds the limit of {MAX_OUTPUT} bytes")));
        }
        self.charge(s.len().saturating_mul(cost), span)?;
        Ok(Val::own(Value::String(s)))
    }

    /// Applies `f` to the value inside `v`, keeping borrowed values borrowed
    /// and copying parts of built ones.
    fn project(
        &mut self,
        v: &Val<'a>,
        f: impl for<'x> Fn(&'x Value) -> Option<&'x Value>,
        span: Span,
    ) -> ExecResult<Option<Val<'a>>> {
        match v {
            Val::Ref(r) => Ok(f(r).map(Val::Ref)),
            Val::Own(rc) => match f(rc) {
                Some(x) => {
                    self.charge(value_cost(x), span)?;
                    Ok(Some(Val::own(x.clone())))
                }
                None => Ok(None),
            },
        }
    }

    fn lookup(&self, name: &str, span: Span) -> ExecResult<Val<'a>> {
        match self.vars.iter().rev().find(|(n, _)| *n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => Err(self.err(span, format!("undefined variable: {name}"))),
        }
    }

    fn set_var(&mut self, name: &str, v: Val<'a>, span: Span) -> ExecResult<()> {
        match self.vars.iter_mut().rev().find(|(n, _)| *n == name) {
            Some(slot) => {
                slot.1 = v;
                Ok(())
            }
            None => Err(self.err(span, format!("undefined variable: {name}"))),
        }
    }

    fn walk(&mut self, list: &'a [Node], dot: &Val<'a>) -> ExecResult<Flow> {
        for node in list {
            let flow = match node {
                Node::Text(text, span) => {
                    self.step(*span)?;
                    if self.out.len() + text.len() > MAX_OUTPUT {
                        return Err(self.too_much_output(*span));
                    }
                    self.out.push_str(text);
                    Flow::Normal
                }
                Node::Action(pipe) => {
                    self.step(pipe.span)?;
                    let v = self.eval_pipeline(pipe, dot)?;
                    if pipe.decl.is_empty() {
                        let mut o = Out::new(MAX_OUTPUT - self.out.len());
                        print_top(&mut o, v.raw());
                        if o.over {
                            return Err(self.too_much_output(pipe.span));
                        }
                        self.out.push_str(&o.s);
                    }
                    Flow::Normal
                }
                Node::If(branches, else_list) => self.walk_branches(branches, else_list.as_deref(), dot, false)?,
                Node::With(branches, else_list) => self.walk_branches(branches, else_list.as_deref(), dot, true)?,
                Node::Range(branch, else_list) => self.walk_range(branch, else_list.as_deref(), dot)?,
                Node::Break => Flow::Break,
                Node::Continue => Flow::Continue,
            };
            if flow != Flow::Normal {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    /// Runs an `if` or `with` chain: the first arm whose pipeline is true
    /// wins, otherwise the `else` list runs.
    fn walk_branches(
        &mut self,
        branches: &'a [Branch],
        else_list: Option<&'a [Node]>,
        dot: &Val<'a>,
        with: bool,
    ) -> ExecResult<Flow> {
        let mark = self.vars.len();
        let mut flow = Flow::Normal;
        let mut taken = false;
        for b in branches {
            self.step(b.pipe.span)?;
            let v = self.eval_pipeline(&b.pipe, dot)?;
            if truth(v.get()) {
                flow = self.walk(&b.body, if with { &v } else { dot })?;
                taken = true;
                break;
            }
        }
        if !taken {
            if let Some(list) = else_list {
                flow = self.walk(list, dot)?;
            }
        }
        self.vars.truncate(mark);
        Ok(flow)
    }

    fn walk_range(&mut self, branch: &'a Branch, else_list: Option<&'a [Node]>, dot: &Val<'a>) -> ExecResult<Flow> {
        let pipe = &branch.pipe;
        self.step(pipe.span)?;
        let mark = self.vars.len();
        let val = self.eval_pipeline(pipe, dot)?;
        let base = self.vars.len();
        let (count, keys): (u64, Option<Vec<&str>>) = match val.get() {
            Value::Null => (0, None),
            Value::Array(a) => (a.len() as u64, None),
            Value::Object(m) => {
                // Sorting is paid for, so that re-entering a loop over a big
                // object many times cannot run for ever.
                self.charge(m.len() * 32, pipe.span)?;
                let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
                keys.sort_unstable();
                (keys.len() as u64, Some(keys))
            }
            Value::Number(n) if n.as_i64().is_some() || n.as_u64().is_some() => {
                if pipe.decl.len() > 1 {
                    let msg = format!("can't use {} to iterate over more than one variable", go_print(val.get()));
                    return Err(self.err(pipe.span, msg));
                }
                (n.as_u64().unwrap_or(0), None)
            }
            other => {
                return Err(self.err(pipe.span, format!("range can't iterate over {}", go_print(other))));
            }
        };
        let is_array = matches!(val.get(), Value::Array(_));
        for k in 0..count {
            let (key, elem) = if let Some(keys) = &keys {
                let name = keys.get(k as usize).copied().unwrap_or("");
                let elem = self.project(&val, |x| x.get(name), pipe.span)?.unwrap_or(Val::Ref(&NULL));
                (Val::own(Value::String(name.to_string())), elem)
            } else if is_array {
                let i = k as usize;
                let elem = self.project(&val, |x| x.get(i), pipe.span)?.unwrap_or(Val::Ref(&NULL));
                (Val::own(Value::from(k)), elem)
            } else {
                let v = Val::own(Value::from(k));
                (v.clone(), v)
            };
            let flow = self.iteration(branch, key, elem, base)?;
            if flow == Flow::Break {
                break;
            }
        }
        if count == 0 {
            if let Some(list) = else_list {
                let flow = self.walk(list, dot)?;
                self.vars.truncate(mark);
                return Ok(flow);
            }
        }
        self.vars.truncate(mark);
        Ok(Flow::Normal)
    }

    /// Runs one pass of a range body with the loop variables set.
    fn iteration(&mut self, branch: &'a Branch, key: Val<'a>, elem: Val<'a>, base: usize) -> ExecResult<Flow> {
        let pipe = &branch.pipe;
        self.iterations += 1;
        if self.iterations > MAX_ITERATIONS {
            let msg = format!("range iterations exceeded the limit of {MAX_ITERATIONS}");
            return Err(self.err(pipe.span, msg));
        }
        match (pipe.decl.as_slice(), pipe.is_assign) {
            ([], _) => {}
            ([e], true) => self.set_var(e, elem.clone(), pipe.span)?,
            ([k, e, ..], true) => {
                self.set_var(k, key, pipe.span)?;
                self.set_var(e, elem.clone(), pipe.span)?;
            }
            ([_], false) => {
                if let Some(slot) = base.checked_sub(1).and_then(|i| self.vars.get_mut(i)) {
                    slot.1 = elem.clone();
                }
            }
            ([_, _, ..], false) => {
                if let Some(slot) = base.checked_sub(2).and_then(|i| self.vars.get_mut(i)) {
                    slot.1 = key;
                }
                if let Some(slot) = base.checked_sub(1).and_then(|i| self.vars.get_mut(i)) {
                    slot.1 = elem.clone();
                }
            }
        }
        let flow = self.walk(&branch.body, &elem)?;
        self.vars.truncate(base);
        Ok(flow)
    }

    fn eval_pipeline(&mut self, pipe: &'a Pipe, dot: &Val<'a>) -> ExecResult<Val<'a>> {
        let mut value: Option<Val<'a>> = None;
        for cmd in &pipe.cmds {
            value = Some(self.eval_command(cmd, dot, value)?);
        }
        let v = value.unwrap_or(Val::Ref(&NULL));
        for name in &pipe.decl {
            if pipe.is_assign {
                self.set_var(name, v.clone(), pipe.span)?;
            } else {
                self.vars.push((name.as_str(), v.clone()));
            }
        }
        Ok(v)
    }

    fn eval_command(&mut self, cmd: &'a Cmd, dot: &Val<'a>, fin: Option<Val<'a>>) -> ExecResult<Val<'a>> {
        self.step(cmd.span)?;
        let Some((first, rest)) = cmd.args.split_first() else {
            return Err(self.err(cmd.span, "empty command"));
        };
        let has_args = !rest.is_empty() || fin.is_some();
        match &first.kind {
            TermKind::Func(f) => self.call(*f, cmd.span, rest, fin, dot),
            TermKind::Nil => Err(self.err(first.span, "nil is not a command")),
            TermKind::Field(names) if has_args => {
                let name = names.last().map_or("", String::as_str);
                Err(self.err(first.span, format!("{name} is not a method but has arguments")))
            }
            _ if has_args => {
                let msg = format!("can't give argument to non-function {}", self.text(first.span));
                Err(self.err(first.span, msg))
            }
            _ => self.eval_arg(first, dot),
        }
    }

    fn eval_arg(&mut self, t: &'a Term, dot: &Val<'a>) -> ExecResult<Val<'a>> {
        match &t.kind {
            TermKind::Dot => Ok(dot.clone()),
            TermKind::Nil => Ok(Val::Ref(&NULL)),
            TermKind::Lit(v) => Ok(Val::Ref(v)),
            TermKind::Field(names) => self.eval_fields(dot.clone(), names, t.span),
            TermKind::Var(name, fields) => {
                let v = self.lookup(name, t.span)?;
                self.eval_fields(v, fields, t.span)
            }
            TermKind::Func(f) => self.call(*f, t.span, &[], None, dot),
            TermKind::Pipe(p) => self.eval_pipeline(p, dot),
            TermKind::Chain(base, fields) => {
                let v = self.eval_arg(base, dot)?;
                self.eval_fields(v, fields, t.span)
            }
        }
    }

    /// Follows a chain of field names from `v`.
    fn eval_fields(&mut self, mut v: Val<'a>, names: &'a [String], span: Span) -> ExecResult<Val<'a>> {
        for name in names {
            let found = match v.get() {
                Value::Null => {
                    // A field of nil is nil, however the nil was typed.
                    v = Val::Ref(&NULL);
                    continue;
                }
                Value::Object(m) => m.contains_key(name),
                other => {
                    let msg = format!("can't evaluate field {name} in type {}", short_type(other));
                    return Err(self.err(span, msg));
                }
            };
            if !found {
                return Err(self.err(span, format!("can't evaluate field {name} in type map")));
            }
            v = self.project(&v, |x| x.get(name.as_str()), span)?.unwrap_or(Val::Ref(&NULL));
        }
        Ok(v)
    }

    /// Calls a function with the given argument terms and piped value.
    fn call(
        &mut self,
        f: Func,
        span: Span,
        arg_terms: &'a [Term],
        fin: Option<Val<'a>>,
        dot: &Val<'a>,
    ) -> ExecResult<Val<'a>> {
        if matches!(f, Func::And | Func::Or) {
            // These stop evaluating their arguments once the result is known.
            if arg_terms.is_empty() && fin.is_none() {
                let msg = format!("wrong number of args for {}: want at least 1 got 0", f.name());
                return Err(self.err(span, msg));
            }
            let mut last = Val::Ref(&NULL);
            for t in arg_terms {
                let v = self.eval_arg(t, dot)?;
                if truth(v.get()) == (f == Func::Or) {
                    return Ok(v);
                }
                last = v;
            }
            return Ok(fin.unwrap_or(last));
        }
        let mut args = Vec::with_capacity(arg_terms.len() + 1);
        for t in arg_terms {
            args.push(self.eval_arg(t, dot)?);
        }
        if let Some(v) = fin {
            args.push(v);
        }
        self.builtin(f, &args, span)
    }

    fn str_arg<'v>(&self, v: &'v Val<'a>, span: Span) -> ExecResult<&'v str> {
        match v.get() {
            Value::String(s) => Ok(s),
            other => Err(self.err(span, format!("wrong type for value; expected string; got {}", go_type(other)))),
        }
    }

    fn builtin(&mut self, f: Func, args: &[Val<'a>], span: Span) -> ExecResult<Val<'a>> {
        let n = args.len();
        let (min, max) = f.arity();
        if n < min || max.is_some_and(|m| n > m) {
            let msg = match max {
                Some(m) if m == min => format!("wrong number of args for {}: want {min} got {n}", f.name()),
                _ => format!("wrong number of args for {}: want at least {min} got {n}", f.name()),
            };
            return Err(self.err(span, msg));
        }
        let calling = |msg: &str| format!("error calling {}: {msg}", f.name());
        match f {
            Func::Json => {
                let s = serde_json::to_string(&without_typed_nils(args[0].get()))
                    .map_err(|e| self.err(span, calling(&e.to_string())))?;
                self.string_result(s, FORMAT_COST, span)
            }
            Func::Index => self.index(args, span),
            Func::Len => {
                let len = match args[0].get() {
                    Value::String(s) => s.len(),
                    Value::Array(a) => a.len(),
                    Value::Object(m) => m.len(),
                    Value::Null => 0,
                    other => return Err(self.err(span, calling(&format!("len of type {}", go_type(other))))),
                };
                Ok(Val::own(Value::from(len)))
            }
            Func::Join => {
                let sep = self.str_arg(&args[1], span)?;
                let mut o = Out::new(MAX_OUTPUT);
                match args[0].get() {
                    Value::Array(items) => {
                        for (i, e) in items.iter().enumerate() {
                            if i > 0 {
                                o.push_str(sep);
                            }
                            print_top(&mut o, e);
                            if o.over {
                                return Err(
                                    self.err(span, calling(&format!("result exceeds the limit of {MAX_OUTPUT} bytes")))
                                );
                            }
                        }
                    }
                    Value::Null => {}
                    other => {
                        let msg = format!("wrong type for value; expected []string; got {}", go_type(other));
                        return Err(self.err(span, msg));
                    }
                }
                self.string_result(o.s, FORMAT_COST, span)
            }
            Func::Split => {
                let s = self.str_arg(&args[0], span)?;
                let sep = self.str_arg(&args[1], span)?;
                let items: Vec<Value> = if sep.is_empty() {
                    s.chars().take(MAX_ITEMS + 1).map(|c| Value::String(c.to_string())).collect()
                } else {
                    s.split(sep).take(MAX_ITEMS + 1).map(|p| Value::String(p.to_string())).collect()
                };
                if items.len() > MAX_ITEMS {
                    return Err(self.err(span, calling(&format!("more than {MAX_ITEMS} elements"))));
                }
                self.charge(s.len() + items.len() * 64, span)?;
                Ok(Val::own(Value::Array(items)))
            }
            Func::Lower | Func::Upper | Func::Title => {
                let s = self.str_arg(&args[0], span)?;
                let r = match f {
                    Func::Lower => s.to_lowercase(),
                    Func::Upper => s.to_uppercase(),
                    _ => title(s),
                };
                self.string_result(r, 1, span)
            }
            Func::Truncate => {
                let s = self.str_arg(&args[0], span)?;
                let len = match args[1].get() {
                    Value::Number(num) if num.as_i64().is_some() => num.as_i64().unwrap_or(0),
                    other => {
                        let msg = format!("wrong type for value; expected int; got {}", go_type(other));
                        return Err(self.err(span, msg));
                    }
                };
                let Ok(len) = usize::try_from(len) else {
                    return Err(self.err(span, calling(&format!("negative length {len}"))));
                };
                let r = match s.char_indices().nth(len) {
                    Some((i, _)) => s[..i].to_string(),
                    None => s.to_string(),
                };
                self.string_result(r, 1, span)
            }
            Func::Printf => {
                let format = self.str_arg(&args[0], span)?;
                let vals: Vec<&Value> = args[1..].iter().map(Val::raw).collect();
                match sprintf(format, &vals, MAX_OUTPUT) {
                    Some(s) => self.string_result(s, FORMAT_COST, span),
                    None => Err(self.err(span, calling(&format!("result exceeds the limit of {MAX_OUTPUT} bytes")))),
                }
            }
            Func::Print | Func::Println => {
                let mut o = Out::new(MAX_OUTPUT);
                let mut prev_string = false;
                for (i, a) in args.iter().enumerate() {
                    let is_string = matches!(a.get(), Value::String(_));
                    if i > 0 && (f == Func::Println || (!is_string && !prev_string)) {
                        o.push(' ');
                    }
                    fmt_arg(&mut o, a.raw(), 'v', &Spec::default(), false);
                    prev_string = is_string;
                }
                if f == Func::Println {
                    o.push('\n');
                }
                if o.over {
                    return Err(self.err(span, calling(&format!("result exceeds the limit of {MAX_OUTPUT} bytes"))));
                }
                self.string_result(o.s, FORMAT_COST, span)
            }
            Func::Eq | Func::Ne => {
                if n < 2 {
                    return Err(self.err(span, calling("missing argument for comparison")));
                }
                let mut result = false;
                for b in &args[1..] {
                    self.charge(compare_cost(args[0].get(), b.get()), span)?;
                    match go_eq(args[0].get(), b.get()) {
                        Ok(true) => {
                            result = true;
                            break;
                        }
                        Ok(false) => {}
                        Err(e) => return Err(self.err(span, calling(&e))),
                    }
                }
                Ok(Val::own(Value::Bool(if f == Func::Eq { result } else { !result })))
            }
            Func::Lt | Func::Le | Func::Gt | Func::Ge => {
                let (a, b) = (args[0].get(), args[1].get());
                self.charge(compare_cost(a, b), span)?;
                let ord = go_order(a, b).map_err(|e| self.err(span, calling(&e)))?;
                let r = match f {
                    Func::Lt => ord == Some(Ordering::Less),
                    Func::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
                    Func::Gt => ord == Some(Ordering::Greater),
                    _ => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
                };
                Ok(Val::own(Value::Bool(r)))
            }
            Func::Not => Ok(Val::own(Value::Bool(!truth(args[0].get())))),
            Func::And | Func::Or => {
                let want = f == Func::Or;
                Ok(args.iter().find(|a| truth(a.get()) == want).or(args.last()).cloned().unwrap_or(Val::Ref(&NULL)))
            }
        }
    }

    /// Go's `index`: objects by string key, arrays and strings by integer.
    fn index(&mut self, args: &[Val<'a>], span: Span) -> ExecResult<Val<'a>> {
        let mut item = args[0].clone();
        for ix in &args[1..] {
            let next = match item.get() {
                // A null item is a nil map or slice; looking into it finds nothing.
                Value::Null => return Ok(Val::empty_string()),
                Value::Array(a) => {
                    let k = self.index_arg(ix.get(), a.len(), span)?;
                    self.project(&item, |x| x.get(k), span)?
                }
                Value::String(s) => {
                    let k = self.index_arg(ix.get(), s.len(), span)?;
                    s.as_bytes().get(k).map(|&b| Val::own(Value::from(b)))
                }
                Value::Object(_) => {
                    let Value::String(key) = ix.get() else {
                        let msg =
                            format!("error calling index: value has type {}; should be string", go_type(ix.get()));
                        return Err(self.err(span, msg));
                    };
                    // A missing key yields an empty string, like a Go map[string]string.
                    Some(self.project(&item, |x| x.get(key.as_str()), span)?.unwrap_or_else(Val::empty_string))
                }
                other => {
                    let msg = format!("error calling index: can't index item of type {}", go_type(other));
                    return Err(self.err(span, msg));
                }
            };
            item = next.unwrap_or(Val::Ref(&NULL));
        }
        Ok(item)
    }

    fn index_arg(&self, ix: &Value, len: usize, span: Span) -> ExecResult<usize> {
        let x = match ix {
            Value::Number(n) if int_of(n).is_some() => int_of(n).unwrap_or(-1),
            Value::Null => return Err(self.err(span, "error calling index: cannot index slice/array with nil")),
            other => {
                let msg = format!("error calling index: cannot index slice/array with type {}", go_type(other));
                return Err(self.err(span, msg));
            }
        };
        match usize::try_from(x) {
            Ok(k) if k < len => Ok(k),
            _ => Err(self.err(span, format!("error calling index: index out of range: {x}"))),
        }
    }
}

/// Go's notion of truth: false, zero, empty and nil are false.
fn truth(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => match int_of(n) {
            Some(i) => i != 0,
            None => n.as_f64().is_some_and(|f| f != 0.0),
        },
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// Returns a number as an integer when JSON holds it as one.
fn int_of(n: &Number) -> Option<i128> {
    n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
}

/// The Go type that a JSON value would have when decoded into `any`,
/// except that integers are `int` rather than `float64`.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.as_i64().is_some() => "int",
        Value::Number(n) if n.as_u64().is_some() => "uint64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// A short type name for field errors, e.g. `can't evaluate field X in type slice`.
fn short_type(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
        other => go_type(other),
    }
}

fn compare_cost(a: &Value, b: &Value) -> usize {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.len().min(y.len()),
        _ => 1,
    }
}

fn num_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    match (int_of(a), int_of(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// Go's `eq` for one pair of arguments.
fn go_eq(a: &Value, b: &Value) -> Result<bool, String> {
    match (a, b) {
        (Value::Null, Value::Null) => Ok(true),
        (Value::Null, _) | (_, Value::Null) => Ok(false),
        (Value::Bool(x), Value::Bool(y)) => Ok(x == y),
        (Value::Number(x), Value::Number(y)) => Ok(num_cmp(x, y) == Some(Ordering::Equal)),
        (Value::String(x), Value::String(y)) => Ok(x == y),
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => {
            Err(format!("non-comparable type {}", go_type(a)))
        }
        _ => Err("incompatible types for comparison".to_string()),
    }
}

/// Orders two values for `lt`, `le`, `gt` and `ge`.
fn go_order(a: &Value, b: &Value) -> Result<Option<Ordering>, String> {
    let basic = |v: &Value| matches!(v, Value::Bool(_) | Value::Number(_) | Value::String(_));
    if !basic(a) || !basic(b) {
        return Err("invalid type for comparison".to_string());
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Ok(num_cmp(x, y)),
        (Value::String(x), Value::String(y)) => Ok(Some(x.cmp(y))),
        (Value::Bool(_), Value::Bool(_)) => Err("invalid type for comparison".to_string()),
        _ => Err("incompatible types for comparison".to_string()),
    }
}

/// Go's `strings.Title`: upper-cases the first letter of every word.
fn title(s: &str) -> String {
    let is_separator = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else if c.is_alphabetic() || c.is_numeric() {
            false
        } else {
            c.is_whitespace()
        }
    };
    let mut out = String::with_capacity(s.len());
    let mut prev = ' ';
    for c in s.chars() {
        if is_separator(prev) {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev = c;
    }
    out
}

// Printing follows Go's fmt package for the types that JSON has.

/// A string buffer that stops growing, and remembers it, once it would pass
/// its limit.
struct Out {
    s: String,
    limit: usize,
    over: bool,
}

impl Out {
    fn new(limit: usize) -> Self {
        Out { s: String::new(), limit, over: false }
    }

    fn push_str(&mut self, t: &str) {
        if self.over {
            return;
        }
        if t.len() > self.limit - self.s.len() {
            self.over = true;
            return;
        }
        self.s.push_str(t);
    }

    fn push(&mut self, c: char) {
        let mut buf = [0u8; 4];
        self.push_str(c.encode_utf8(&mut buf));
    }

    /// Appends `n` copies of `c`.
    fn pad(&mut self, n: usize, c: char) {
        if self.over {
            return;
        }
        if n.saturating_mul(c.len_utf8()) > self.limit - self.s.len() {
            self.over = true;
            return;
        }
        self.s.extend(std::iter::repeat_n(c, n));
    }
}

/// Prints a value as an action shows it: `null` is `<no value>`.
fn print_top(o: &mut Out, v: &Value) {
    if let Some(t) = typed_nil_text(v) {
        o.push_str(t);
    } else if v.is_null() {
        o.push_str("<no value>");
    } else {
        fmt_arg(o, v, 'v', &Spec::default(), false);
    }
}

/// The flags, width and precision of one printf verb.
#[derive(Debug, Default, Clone, Copy)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// Pads `s` to the width in `sp`, on the left unless `-` was given.
fn pad_str(o: &mut Out, s: &str, sp: &Spec) {
    let w = sp.width.unwrap_or(0);
    let n = s.chars().count();
    if n >= w {
        o.push_str(s);
    } else if sp.minus {
        o.push_str(s);
        o.pad(w - n, ' ');
    } else {
        o.pad(w - n, if sp.zero { '0' } else { ' ' });
        o.push_str(s);
    }
}

/// Writes Go's complaint about a verb that does not suit its operand, such as
/// `%!d(string=abc)`.
fn bad_verb(o: &mut Out, v: &Value, verb: char) {
    o.push_str("%!");
    o.push(verb);
    o.push('(');
    if v.is_null() {
        o.push_str("<nil>");
    } else {
        o.push_str(go_type(v));
        o.push('=');
        fmt_arg(o, v, 'v', &Spec::default(), false);
    }
    o.push(')');
}

/// Formats one operand for one verb, as Go's `fmt` does. `nested` is true for
/// elements of arrays and objects.
fn fmt_arg(o: &mut Out, v: &Value, verb: char, sp: &Spec, nested: bool) {
    if o.over {
        return;
    }
    if verb == 'T' {
        pad_str(o, go_type(v), sp);
        return;
    }
    if let Some(t) = typed_nil_text(v) {
        pad_str(o, t, sp);
        return;
    }
    match v {
        Value::Null if nested => o.push_str("<nil>"),
        Value::Null if verb == 'v' => pad_str(o, "<nil>", sp),
        Value::Null => bad_verb(o, v, verb),
        Value::Bool(b) => match verb {
            't' | 'v' => pad_str(o, if *b { "true" } else { "false" }, sp),
            _ => bad_verb(o, v, verb),
        },
        Value::Number(n) => match int_of(n) {
            Some(i) => fmt_int(o, v, i, verb, sp),
            None => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                match verb {
                    'v' | 'e' | 'E' | 'f' | 'F' | 'g' | 'G' => fmt_float(o, f, verb, sp),
                    'd' if f.fract() == 0.0 && f.abs() < 1e30 => fmt_int(o, v, f as i128, verb, sp),
                    _ => bad_verb(o, v, verb),
                }
            }
        },
        Value::String(s) => fmt_string(o, s, verb, sp),
        Value::Array(a) => {
            o.push('[');
            for (i, e) in a.iter().enumerate() {
                if o.over {
                    return;
                }
                if i > 0 {
                    o.push(' ');
                }
                fmt_arg(o, e, verb, sp, true);
            }
            o.push(']');
        }
        Value::Object(m) => {
            o.push_str("map[");
            for (i, (k, e)) in sorted_entries(m).into_iter().enumerate() {
                if o.over {
                    return;
                }
                if i > 0 {
                    o.push(' ');
                }
                fmt_string(o, k, verb, sp);
                o.push(':');
                fmt_arg(o, e, verb, sp, true);
            }
            o.push(']');
        }
    }
}

fn fmt_string(o: &mut Out, s: &str, verb: char, sp: &Spec) {
    let clipped = match sp.prec.and_then(|p| s.char_indices().nth(p)) {
        Some((i, _)) => &s[..i],
        None => s,
    };
    match verb {
        'v' | 's' => pad_str(o, clipped, sp),
        'q' => {
            let q = if sp.sharp && can_backquote(clipped) {
                format!("`{clipped}`")
            } else {
                quote_with(clipped, '"', sp.plus)
            };
            pad_str(o, &q, sp);
        }
        'x' | 'X' => {
            let bytes = match sp.prec {
                Some(p) if p < s.len() => &s.as_bytes()[..p],
                _ => s.as_bytes(),
            };
            let mut h = String::with_capacity(bytes.len() * 2);
            for (i, b) in bytes.iter().enumerate() {
                if sp.space && i > 0 {
                    h.push(' ');
                }
                if sp.sharp && (sp.space || i == 0) {
                    h.push_str(if verb == 'x' { "0x" } else { "0X" });
                }
                if verb == 'x' {
                    let _ = write!(h, "{b:02x}");
                } else {
                    let _ = write!(h, "{b:02X}");
                }
            }
            pad_str(o, &h, sp);
        }
        _ => {
            o.push_str("%!");
            o.push(verb);
            o.push_str("(string=");
            o.push_str(s);
            o.push(')');
        }
    }
}

fn fmt_int(o: &mut Out, v: &Value, x: i128, verb: char, sp: &Spec) {
    match verb {
        'v' | 'd' => fmt_int_base(o, x, 10, verb, sp),
        'b' => fmt_int_base(o, x, 2, verb, sp),
        'o' | 'O' => fmt_int_base(o, x, 8, verb, sp),
        'x' | 'X' => fmt_int_base(o, x, 16, verb, sp),
        'c' => pad_str(o, &rune_of(x).to_string(), sp),
        'q' => pad_str(o, &quote_with(&rune_of(x).to_string(), '\'', sp.plus), sp),
        'U' => {
            let mut s = if x < 0 { format!("U+{:X}", x as i64 as u64) } else { format!("U+{x:04X}") };
            let c = rune_of(x);
            if sp.sharp && is_print(c) {
                let _ = write!(s, " '{c}'");
            }
            pad_str(o, &s, sp);
        }
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' => fmt_float(o, x as f64, verb, sp),
        _ => bad_verb(o, v, verb),
    }
}

fn rune_of(x: i128) -> char {
    u32::try_from(x).ok().and_then(char::from_u32).unwrap_or('\u{FFFD}')
}

/// Formats an integer in a base, with Go's handling of precision, zero
/// padding, signs and `#` prefixes.
fn fmt_int_base(o: &mut Out, x: i128, base: u32, verb: char, sp: &Spec) {
    let neg = x < 0;
    let mag = x.unsigned_abs();
    let mut digits = match base {
        2 => format!("{mag:b}"),
        8 => format!("{mag:o}"),
        16 if verb == 'X' => format!("{mag:X}"),
        16 => format!("{mag:x}"),
        _ => mag.to_string(),
    };
    let want = if let Some(p) = sp.prec {
        if p == 0 && mag == 0 {
            o.pad(sp.width.unwrap_or(0), ' ');
            return;
        }
        p
    } else if sp.zero && !sp.minus && sp.width.is_some() {
        let w = sp.width.unwrap_or(0);
        if neg || sp.plus || sp.space {
            w.saturating_sub(1)
        } else {
            w
        }
    } else {
        0
    };
    if digits.len() < want {
        let mut z = "0".repeat(want - digits.len());
        z.push_str(&digits);
        digits = z;
    }
    let mut s = String::with_capacity(digits.len() + 3);
    if neg {
        s.push('-');
    } else if sp.plus {
        s.push('+');
    } else if sp.space {
        s.push(' ');
    }
    if sp.sharp {
        match base {
            2 => s.push_str("0b"),
            8 if !digits.starts_with('0') => s.push('0'),
            16 => s.push_str(if verb == 'X' { "0X" } else { "0x" }),
            _ => {}
        }
    }
    if verb == 'O' {
        s.push_str("0o");
    }
    s.push_str(&digits);
    pad_str(o, &s, &Spec { zero: false, ..*sp });
}

/// Formats a float for `%v`, `%e`, `%f` and `%g` and their capitals.
fn fmt_float(o: &mut Out, f: f64, verb: char, sp: &Spec) {
    let upper = verb.is_ascii_uppercase();
    let body = if f.is_nan() {
        "NaN".to_string()
    } else if f.is_infinite() {
        "Inf".to_string()
    } else {
        let a = f.abs();
        match verb {
            'e' | 'E' => fmt_e(a, sp.prec.unwrap_or(6), upper),
            'f' | 'F' => fmt_fixed(a, sp.prec.unwrap_or(6)),
            _ => fmt_g(a, sp.prec, upper),
        }
    };
    let sign = if f.is_sign_negative() && !f.is_nan() {
        "-"
    } else if sp.plus || (f.is_infinite() && !sp.space) {
        "+"
    } else if sp.space {
        " "
    } else {
        ""
    };
    let w = sp.width.unwrap_or(0);
    let len = sign.len() + body.len();
    if sp.zero && !sp.minus && w > len && f.is_finite() {
        o.push_str(sign);
        o.pad(w - len, '0');
        o.push_str(&body);
    } else {
        pad_str(o, &format!("{sign}{body}"), &Spec { zero: false, ..*sp });
    }
}

/// Returns the significant decimal digits of a positive finite `a` and the
/// position of the decimal point, so that `a = 0.d1d2d3... * 10^dp`. With
/// `sig`, the digits are rounded to that many; trailing zeros are dropped.
fn float_digits(a: f64, sig: Option<usize>) -> (Vec<u8>, i64) {
    if a == 0.0 {
        return (Vec::new(), 0);
    }
    let s = match sig {
        None => format!("{a:e}"),
        Some(p) => format!("{:.*e}", p.saturating_sub(1).min(MAX_EXACT_DIGITS), a),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let mut d: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while d.len() > 1 && d.last() == Some(&b'0') {
        d.pop();
    }
    (d, exp + 1)
}

/// Formats digits in Go's `%e` layout with `decimals` digits after the point.
fn layout_e(d: &[u8], dp: i64, decimals: usize, upper: bool) -> String {
    let mut s = String::with_capacity(decimals + 8);
    s.push(char::from(d.first().copied().unwrap_or(b'0')));
    if decimals > 0 {
        s.push('.');
        for i in 1..=decimals {
            s.push(char::from(d.get(i).copied().unwrap_or(b'0')));
        }
    }
    let exp = if d.is_empty() { 0 } else { dp - 1 };
    s.push(if upper { 'E' } else { 'e' });
    s.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(s, "{:02}", exp.unsigned_abs());
    s
}

/// Formats digits in Go's `%f` layout with `decimals` digits after the point.
fn layout_f(d: &[u8], dp: i64, decimals: usize) -> String {
    let mut s = String::new();
    if dp > 0 {
        for i in 0..dp {
            s.push(char::from(usize::try_from(i).ok().and_then(|i| d.get(i)).copied().unwrap_or(b'0')));
        }
    } else {
        s.push('0');
    }
    if decimals > 0 {
        s.push('.');
        for i in 0..decimals {
            let j = dp + i as i64;
            let c = usize::try_from(j).ok().and_then(|j| d.get(j)).copied().unwrap_or(b'0');
            s.push(char::from(c));
        }
    }
    s
}

/// Digits past which an `f64` has only zeros: its exact decimal expansion
/// has at most 767 significant digits and ends within 1074 decimal places.
/// Rust's formatter refuses precisions above 65535, so larger ones are
/// produced by padding with zeros.
const MAX_EXACT_DIGITS: usize = 1100;

/// Go's `%f` with a precision, for a positive finite number.
fn fmt_fixed(a: f64, prec: usize) -> String {
    let p = prec.min(MAX_EXACT_DIGITS);
    let mut s = format!("{a:.p$}");
    s.extend(std::iter::repeat_n('0', prec - p));
    s
}

/// Go's `%e` with a precision, for a positive finite number.
fn fmt_e(a: f64, prec: usize, upper: bool) -> String {
    let p = prec.min(MAX_EXACT_DIGITS);
    let s = format!("{a:.p$e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let mut out = String::with_capacity(prec + 8);
    out.push_str(mant);
    out.extend(std::iter::repeat_n('0', prec - p));
    let _ =
        write!(out, "{}{}{:02}", if upper { 'E' } else { 'e' }, if exp < 0 { '-' } else { '+' }, exp.unsigned_abs());
    out
}

/// Go's `%g` (and so `%v`) for a positive finite number: the shortest
/// representation when `prec` is `None`, exponent form for large and small
/// magnitudes.
fn fmt_g(a: f64, prec: Option<usize>, upper: bool) -> String {
    let (d, dp) = float_digits(a, prec.map(|p| p.max(1)));
    let nd = d.len() as i64;
    let mut p = prec.map_or(nd, |p| p.max(1) as i64);
    let mut eprec = p;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if prec.is_none() {
        eprec = 6;
    }
    let exp = dp - 1;
    if exp < -4 || exp >= eprec {
        if p > nd {
            p = nd;
        }
        return layout_e(&d, dp, usize::try_from(p - 1).unwrap_or(0), upper);
    }
    if p > dp {
        p = nd;
    }
    layout_f(&d, dp, usize::try_from(p - dp).unwrap_or(0))
}

/// Go's `strconv.IsPrint`, approximated without Unicode tables.
fn is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(
        u32::from(c),
        0xAD | 0x600..=0x605
            | 0x61C
            | 0x6DD
            | 0x70F
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0xE000..=0xF8FF
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0xFFFE
            | 0xFFFF
            | 0xE0000..=0xE0FFF
            | 0xF0000..
    )
}

/// Quotes a string as Go's `strconv.Quote` does.
fn go_quote(s: &str) -> String {
    quote_with(s, '"', false)
}

/// Quotes `s` between `q` characters with Go escapes; `ascii` escapes every
/// non-ASCII character too.
fn quote_with(s: &str, q: char, ascii: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        if c == q || c == '\\' {
            out.push('\\');
            out.push(c);
            continue;
        }
        if is_print(c) && (!ascii || c.is_ascii()) {
            out.push(c);
            continue;
        }
        let _ = match c {
            '\x07' => write!(out, "\\a"),
            '\x08' => write!(out, "\\b"),
            '\x0c' => write!(out, "\\f"),
            '\n' => write!(out, "\\n"),
            '\r' => write!(out, "\\r"),
            '\t' => write!(out, "\\t"),
            '\x0b' => write!(out, "\\v"),
            c if u32::from(c) < 0x20 || c == '\x7f' => write!(out, "\\x{:02x}", u32::from(c)),
            c if u32::from(c) < 0x10000 => write!(out, "\\u{:04x}", u32::from(c)),
            c => write!(out, "\\U{:08x}", u32::from(c)),
        };
    }
    out.push(q);
    out
}

/// Go's `strconv.CanBackquote`.
fn can_backquote(s: &str) -> bool {
    s.chars().all(|c| c != '`' && c != '\u{7f}' && c != '\u{feff}' && (c >= ' ' || c == '\t'))
}

/// Parses a width or precision; Go gives up on absurdly large ones.
fn parse_num(b: &[u8], start: usize) -> (Option<usize>, usize) {
    let mut num = 0usize;
    let mut i = start;
    while i < b.len() && b[i].is_ascii_digit() {
        if num > MAX_FMT_NUM {
            return (None, b.len());
        }
        num = num * 10 + usize::from(b[i] - b'0');
        i += 1;
    }
    ((i > start).then_some(num), i)
}

/// Reads a `*` width or precision from the arguments.
fn star_arg(args: &[&Value], argn: &mut usize) -> Option<i64> {
    let v = args.get(*argn)?;
    *argn += 1;
    match v {
        Value::Number(n) => n.as_i64().filter(|x| x.unsigned_abs() <= MAX_FMT_NUM as u64),
        _ => None,
    }
}

/// Go's `fmt.Sprintf` over JSON values. Returns `None` when the result would
/// exceed `limit` bytes.
fn sprintf(format: &str, args: &[&Value], limit: usize) -> Option<String> {
    let b = format.as_bytes();
    let end = b.len();
    let mut o = Out::new(limit);
    let mut argn = 0usize;
    let mut i = 0usize;
    while i < end {
        let last = i;
        while i < end && b[i] != b'%' {
            i += 1;
        }
        if i > last {
            o.push_str(&format[last..i]);
        }
        if i >= end {
            break;
        }
        i += 1;
        let mut sp = Spec::default();
        while i < end {
            match b[i] {
                b'#' => sp.sharp = true,
                b'0' => sp.zero = !sp.minus,
                b'+' => sp.plus = true,
                b'-' => {
                    sp.minus = true;
                    sp.zero = false;
                }
                b' ' => sp.space = true,
                _ => break,
            }
            i += 1;
        }
        if i < end && b[i] == b'*' {
            i += 1;
            match star_arg(args, &mut argn) {
                Some(w) => {
                    if w < 0 {
                        sp.minus = true;
                        sp.zero = false;
                    }
                    sp.width = usize::try_from(w.unsigned_abs()).ok();
                }
                None => o.push_str("%!(BADWIDTH)"),
            }
        } else {
            let (w, ni) = parse_num(b, i);
            sp.width = w;
            i = ni;
        }
        if i + 1 < end && b[i] == b'.' {
            i += 1;
            if b[i] == b'*' {
                i += 1;
                match star_arg(args, &mut argn) {
                    Some(p) if p >= 0 => sp.prec = usize::try_from(p).ok(),
                    _ => o.push_str("%!(BADPREC)"),
                }
            } else {
                let (p, ni) = parse_num(b, i);
                sp.prec = Some(p.unwrap_or(0));
                i = ni;
            }
        }
        let Some(verb) = format.get(i..).and_then(|r| r.chars().next()) else {
            o.push_str("%!(NOVERB)");
            break;
        };
        i += verb.len_utf8();
        if verb == '%' {
            o.push('%');
        } else if let Some(v) = args.get(argn) {
            fmt_arg(&mut o, v, verb, &sp, false);
            argn += 1;
        } else {
            o.push_str("%!");
            o.push(verb);
            o.push_str("(MISSING)");
        }
        if o.over {
            return None;
        }
    }
    if argn < args.len() {
        o.push_str("%!(EXTRA ");
        for (k, v) in args[argn..].iter().enumerate() {
            if k > 0 {
                o.push_str(", ");
            }
            if v.is_null() {
                o.push_str("<nil>");
            } else {
                o.push_str(go_type(v));
                o.push('=');
                fmt_arg(&mut o, v, 'v', &Spec::default(), false);
            }
        }
        o.push(')');
    }
    (!o.over).then_some(o.s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Data shaped like the output of `img inspect`.
    const DATA: &str = r#"{
        "Id": "sha256:abc123",
        "RepoTags": ["alpine:3.19", "alpine:latest"],
        "RepoDigests": [],
        "Os": "linux",
        "Architecture": "amd64",
        "Size": 7340032,
        "Ratio": 1.5,
        "Big": 1e21,
        "Small": 0.00001,
        "Million": 1000000.0,
        "Neg": -3,
        "Zero": 0,
        "FZero": 0.0,
        "T": true,
        "F": false,
        "Nothing": null,
        "Empty": "",
        "EmptyMap": {},
        "Name": "héllo wörld",
        "Config": {
            "Env": ["PATH=/bin", "A=b"],
            "Cmd": null,
            "Labels": {"k": "v", "maintainer": "me", "a.b": "dotted"},
            "User": ""
        },
        "Nested": [[1, 2], [3]],
        "Mixed": [1, "a", null, true, {"x": 1}, 2.5],
        "Layers": [{"Digest": "d1", "Size": 10}, {"Digest": "d2", "Size": 20}],
        "Ports": {"80/tcp": [{"HostPort": "8080"}], "443/tcp": null}
    }"#;

    fn data(json: &str) -> Value {
        serde_json::from_str(json).expect("test JSON is valid")
    }

    /// Renders `tmpl` over `json` (the fixture when empty) and compares.
    fn check(tmpl: &str, json: &str, want: &str) {
        let d = data(if json.is_empty() { DATA } else { json });
        match render(tmpl, &d) {
            Ok(got) => assert_eq!(got, want, "template {tmpl:?}"),
            Err(e) => panic!("template {tmpl:?} failed: {e}"),
        }
    }

    /// Renders `tmpl` and expects an error whose message contains `needle`.
    fn check_err(tmpl: &str, json: &str, needle: &str) -> TemplateError {
        let d = data(if json.is_empty() { DATA } else { json });
        match render(tmpl, &d) {
            Ok(got) => panic!("template {tmpl:?} rendered {got:?}, want an error containing {needle:?}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(needle), "template {tmpl:?}: error {msg:?} lacks {needle:?}");
                assert!(msg.starts_with("template: "), "error {msg:?} is not in Go's style");
                assert!(!msg.ends_with('.'), "error {msg:?} ends with a period");
                e
            }
        }
    }

    #[test]
    fn fields_and_printing() {
        check("{{.Id}}", "", "sha256:abc123");
        check("id={{.Id}}!", "", "id=sha256:abc123!");
        check("{{.Config.Env}}", "", "[PATH=/bin A=b]");
        check("{{.RepoTags}}", "", "[alpine:3.19 alpine:latest]");
        check("{{.RepoDigests}}", "", "[]");
        check("{{.Size}}", "", "7340032");
        check("{{.Neg}}", "", "-3");
        check("{{.Ratio}}", "", "1.5");
        check("{{.Big}}", "", "1e+21");
        check("{{.Small}}", "", "1e-05");
        check("{{.Million}}", "", "1e+06");
        check("{{.FZero}}", "", "0");
        check("{{.T}} {{.F}}", "", "true false");
        check("{{.Nothing}}", "", "<no value>");
        check("{{.Config.Cmd}}", "", "<no value>");
        check("{{.Nothing.Deeper}}", "", "<no value>");
        check("{{.Config.Labels}}", "", "map[a.b:dotted k:v maintainer:me]");
        check("{{.EmptyMap}}", "", "map[]");
        check("{{.Nested}}", "", "[[1 2] [3]]");
        check("{{.Mixed}}", "", "[1 a <nil> true map[x:1] 2.5]");
        check("{{.Ports}}", "", "map[443/tcp:<nil> 80/tcp:[map[HostPort:8080]]]");
        check("{{.}}", r#""plain""#, "plain");
        check("{{.}}", "null", "<no value>");
        check("{{.Name}}", "", "héllo wörld");
        check("{{(.Config).Env}}", "", "[PATH=/bin A=b]");
        check("{{(index .Layers 1).Digest}}", "", "d2");
        check("{{$.Id}}", "", "sha256:abc123");
        check("{{$}}", r#"[1,2]"#, "[1 2]");
    }

    #[test]
    fn go_print_rules() {
        assert_eq!(go_print(&data("null")), "<no value>");
        assert_eq!(go_print(&data("[null]")), "[<nil>]");
        assert_eq!(go_print(&data("12")), "12");
        assert_eq!(go_print(&data("-12")), "-12");
        assert_eq!(go_print(&data("18446744073709551615")), "18446744073709551615");
        assert_eq!(go_print(&data("1.5")), "1.5");
        assert_eq!(go_print(&data("3.0")), "3");
        assert_eq!(go_print(&data("100000.0")), "100000");
        assert_eq!(go_print(&data("1234567.0")), "1.234567e+06");
        assert_eq!(go_print(&data("0.0001")), "0.0001");
        assert_eq!(go_print(&data("1e21")), "1e+21");
        assert_eq!(go_print(&data("-2.5e-7")), "-2.5e-07");
        assert_eq!(go_print(&data("1.5e300")), "1.5e+300");
        assert_eq!(go_print(&data("0.1")), "0.1");
        assert_eq!(go_print(&data(r#"{"b":[1,{"c":null}],"a":"x y"}"#)), "map[a:x y b:[1 map[c:<nil>]]]");
        assert_eq!(go_print(&data("[[],{}]")), "[[] map[]]");
        assert_eq!(go_print(&data("true")), "true");
    }

    #[test]
    fn json_function() {
        check(
            "{{json .Config}}",
            "",
            r#"{"Cmd":null,"Env":["PATH=/bin","A=b"],"Labels":{"a.b":"dotted","k":"v","maintainer":"me"},"User":""}"#,
        );
        check("{{json .RepoTags}}", "", r#"["alpine:3.19","alpine:latest"]"#);
        check("{{json .Id}}", "", r#""sha256:abc123""#);
        check("{{json .Nothing}}", "", "null");
        check("{{.RepoTags | json}}", "", r#"["alpine:3.19","alpine:latest"]"#);
        check("{{json .}}", r#"{"a":"<&>"}"#, r#"{"a":"<&>"}"#);
    }

    #[test]
    fn index_function() {
        check(r#"{{index .Config.Labels "k"}}"#, "", "v");
        check(r#"{{index .Config.Labels "a.b"}}"#, "", "dotted");
        check(r#"[{{index .Config.Labels "missing"}}]"#, "", "[]");
        check(r#"{{index .RepoTags 1}}"#, "", "alpine:latest");
        check(r#"{{index .Nested 0 1}}"#, "", "2");
        check(r#"{{index .Ports "80/tcp" 0 "HostPort"}}"#, "", "8080");
        check(r#"[{{index .Config.Cmd "x"}}]"#, "", "[]");
        check(r#"{{index .Id 0}}"#, "", "115");
        check(r#"{{len (index .Config.Labels "a")}}"#, "", "0");
        check(r#"{{with index .Config.Labels "k"}}got {{.}}{{end}}"#, "", "got v");
        check(r#"{{$l := .Config.Labels}}{{index $l "maintainer"}}"#, "", "me");
        let e = check_err("{{index .RepoTags 5}}", "", "index out of range: 5");
        assert!(e.to_string().contains("at <index .RepoTags 5>"), "{e}");
        check_err("{{index .RepoTags -1}}", "", "index out of range: -1");
        check_err(r#"{{index .RepoTags "a"}}"#, "", "cannot index slice/array with type string");
        check_err("{{index .Config.Labels 1}}", "", "value has type int; should be string");
        check_err("{{index .Size 1}}", "", "can't index item of type int");
    }

    #[test]
    fn range_and_variables() {
        check("{{range .RepoTags}}{{.}} {{end}}", "", "alpine:3.19 alpine:latest ");
        check("{{range $i, $t := .RepoTags}}{{$i}}={{$t}};{{end}}", "", "0=alpine:3.19;1=alpine:latest;");
        check("{{range $t := .RepoTags}}<{{$t}}>{{end}}", "", "<alpine:3.19><alpine:latest>");
        check("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}},{{end}}", "", "a.b=dotted,k=v,maintainer=me,");
        check("{{range .Config.Labels}}{{.}} {{end}}", "", "dotted v me ");
        check("{{range .RepoDigests}}x{{else}}none{{end}}", "", "none");
        check("{{range .Nothing}}x{{else}}nil{{end}}", "", "nil");
        check("{{range .EmptyMap}}x{{else}}empty{{end}}", "", "empty");
        check("{{range .Layers}}{{.Digest}}:{{.Size}} {{end}}", "", "d1:10 d2:20 ");
        check("{{range .Layers}}{{$.Id}}/{{.Digest}} {{end}}", "", "sha256:abc123/d1 sha256:abc123/d2 ");
        check(
            "{{range $l := .Layers}}{{range $.RepoTags}}{{$l.Digest}}@{{.}} {{end}}{{end}}",
            "",
            "d1@alpine:3.19 d1@alpine:latest d2@alpine:3.19 d2@alpine:latest ",
        );
        check("{{range .Nested}}[{{range .}}{{.}}{{end}}]{{end}}", "", "[12][3]");
        check("{{range $i, $e := .Nested}}{{range $j, $x := $e}}{{$i}}{{$j}}{{$x}} {{end}}{{end}}", "", "001 012 103 ");
        check("{{range 3}}{{.}}{{end}}", "", "012");
        check("{{range .RepoTags}}{{if eq . \"alpine:latest\"}}{{break}}{{end}}{{.}}{{end}}", "", "alpine:3.19");
        check("{{range .RepoTags}}{{if eq . \"alpine:3.19\"}}{{continue}}{{end}}{{.}}{{end}}", "", "alpine:latest");
        check("{{range .Nested}}{{range .}}{{if eq . 2}}{{break}}{{end}}{{.}}{{end}};{{end}}", "", "1;3;");
        check("{{$x := .Os}}{{$x}}", "", "linux");
        check("{{$x := 1}}{{$x = 2}}{{$x}}", "", "2");
        check("{{$x:=1}}{{$x}}", "", "1");
        check("{{$x := 0}}{{range .RepoTags}}{{$x = .}}{{end}}{{$x}}", "", "alpine:latest");
        check("{{$x := .Config}}{{$x.Env}} {{$x.Labels.k}}", "", "[PATH=/bin A=b] v");
        check("{{with $c := .Config}}{{$c.User}}|{{.Labels.k}}{{end}}", "", "|v");
        check("{{if $v := .Os}}{{$v}}{{end}}", "", "linux");
        check("{{range $i, $e := .RepoTags}}{{$x := $i}}{{$x}}{{end}}", "", "01");
    }

    #[test]
    fn conditionals() {
        check("{{if .Config.Labels}}yes{{else}}no{{end}}", "", "yes");
        check("{{if .EmptyMap}}yes{{else}}no{{end}}", "", "no");
        check("{{if .RepoDigests}}yes{{else}}no{{end}}", "", "no");
        check("{{if .Zero}}yes{{else}}no{{end}}", "", "no");
        check("{{if .FZero}}yes{{else}}no{{end}}", "", "no");
        check("{{if .Empty}}yes{{else}}no{{end}}", "", "no");
        check("{{if .Nothing}}yes{{else}}no{{end}}", "", "no");
        check("{{if .F}}yes{{else}}no{{end}}", "", "no");
        check("{{if .T}}yes{{end}}", "", "yes");
        check("{{if .Neg}}yes{{end}}", "", "yes");
        check("{{if .Ratio}}yes{{end}}", "", "yes");
        check(r#"{{if eq .Os "windows"}}w{{else if eq .Os "linux"}}l{{else}}o{{end}}"#, "", "l");
        check(r#"{{if eq .Os "x"}}1{{else if eq .Os "y"}}2{{else}}3{{end}}"#, "", "3");
        check(r#"{{if (eq .Os "linux")}}L{{end}}"#, "", "L");
        check("{{with .Config}}{{.User}}|{{.Labels.k}}{{end}}", "", "|v");
        check("{{with .Config.User}}u{{else}}no user{{end}}", "", "no user");
        check("{{with .Nothing}}x{{else with .Os}}{{.}}{{end}}", "", "linux");
        check("{{if not .F}}negated{{end}}", "", "negated");
        check("{{if and .T .Os}}both{{end}}", "", "both");
        check("{{if or .F .Zero}}x{{else}}neither{{end}}", "", "neither");
    }

    #[test]
    fn logic_functions() {
        check("{{and 1 0 2}}", "", "0");
        check("{{and 1 2}}", "", "2");
        check("{{or 0 \"\" \"x\"}}", "", "x");
        check("{{or 0 false}}", "", "false");
        check("{{not 0}} {{not 1}}", "", "true false");
        // Evaluation stops at the deciding argument, so the bad index is never reached.
        check("{{and .F (index .RepoTags 9)}}", "", "false");
        check("{{or .T (index .RepoTags 9)}}", "", "true");
        check("{{.F | and .T}}", "", "false");
    }

    #[test]
    fn comparisons() {
        check("{{eq .Os \"linux\"}}", "", "true");
        check("{{eq .Os \"a\" \"b\" \"linux\"}}", "", "true");
        check("{{eq .Os \"a\" \"b\"}}", "", "false");
        check("{{ne .Os \"linux\"}}", "", "false");
        check("{{eq .Size 7340032}}", "", "true");
        check("{{eq .Ratio 1.5}}", "", "true");
        check("{{eq 3 3.0}}", "", "true");
        check("{{eq .Nothing nil}}", "", "true");
        check("{{eq .Os nil}}", "", "false");
        check("{{lt 1 2}} {{le 2 2}} {{gt 1 2}} {{ge 2 3}}", "", "true true false false");
        check("{{lt \"a\" \"b\"}} {{gt \"b\" \"a\"}}", "", "true true");
        check("{{lt .Neg 0}}", "", "true");
        check("{{lt 1 1.5}}", "", "true");
        check("{{gt .Size 1000}}", "", "true");
        check("{{eq .T true}}", "", "true");
        check_err("{{eq .Os 1}}", "", "incompatible types for comparison");
        check_err("{{lt .T .F}}", "", "invalid type for comparison");
        check_err("{{lt .RepoTags 1}}", "", "invalid type for comparison");
        check_err("{{eq .RepoTags .RepoTags}}", "", "non-comparable type");
        check_err("{{eq .Os}}", "", "missing argument for comparison");
    }

    #[test]
    fn string_functions() {
        check("{{join .RepoTags \",\"}}", "", "alpine:3.19,alpine:latest");
        check("{{join .Config.Env \"\\n\"}}", "", "PATH=/bin\nA=b");
        check("{{join .Nested \"; \"}}", "", "[1 2]; [3]");
        check("{{join .RepoDigests \",\"}}", "", "");
        check("{{join (split \"a:b:c\" \":\") \"-\"}}", "", "a-b-c");
        check("{{split .Id \":\"}}", "", "[sha256 abc123]");
        check("{{len (split \"abc\" \"\")}}", "", "3");
        check("{{index (split .Id \":\") 1}}", "", "abc123");
        check("{{range split \"x,y\" \",\"}}<{{.}}>{{end}}", "", "<x><y>");
        check("{{lower \"HeLLo\"}} {{upper .Os}}", "", "hello LINUX");
        check("{{title \"hello wide-world foo_bar\"}}", "", "Hello Wide-World Foo_bar");
        check("{{truncate .Id 6}}", "", "sha256");
        check("{{truncate .Id 100}}", "", "sha256:abc123");
        check("{{truncate .Name 3}}", "", "hél");
        check("{{truncate .Id 6 | upper}}", "", "SHA256");
        check("{{len .Id}} {{len .RepoTags}} {{len .Config.Labels}} {{len .Nothing}}", "", "13 2 3 0");
        check("{{len .Name}}", "", "13");
        check_err("{{len .Size}}", "", "len of type int");
        check_err("{{lower .Size}}", "", "wrong type for value; expected string; got int");
        check_err("{{join .Os \",\"}}", "", "expected []string");
    }

    #[test]
    fn printf_and_print() {
        check(r#"{{printf "%s" .Os}}"#, "", "linux");
        check(r#"{{printf "%-10s|" .Os}}"#, "", "linux     |");
        check(r#"{{printf "%10s|" .Os}}"#, "", "     linux|");
        check(r#"{{printf "%-20s%s" .Os .Architecture}}"#, "", "linux               amd64");
        check(r#"{{printf "%5d|%-5d|%05d" 42 42 -42}}"#, "", "   42|42   |-0042");
        check(r#"{{printf "%d" .Size}}"#, "", "7340032");
        check(
            r#"{{printf "%v %v %v" .RepoTags .Config.Labels .Nothing}}"#,
            "",
            "[alpine:3.19 alpine:latest] map[a.b:dotted k:v maintainer:me] <nil>",
        );
        check(r#"{{printf "%q" .Os}}"#, "", r#""linux""#);
        check(r#"{{printf "%q" "a\"b\n"}}"#, "", r#""a\"b\n""#);
        check(r#"{{printf "%q" .RepoTags}}"#, "", r#"["alpine:3.19" "alpine:latest"]"#);
        check(r#"{{printf "%t %t" .T .F}}"#, "", "true false");
        check(r#"{{printf "%x %X %x" 255 255 "hi"}}"#, "", "ff FF 6869");
        check(r#"{{printf "%#x %o %b" 255 8 5}}"#, "", "0xff 10 101");
        check(r#"{{printf "%f %.2f %8.3f|" .Ratio .Ratio .Ratio}}"#, "", "1.500000 1.50    1.500|");
        check(r#"{{printf "%.1f" .Size}}"#, "", "7340032.0");
        check(r#"{{printf "%e %g %g" .Ratio .Big 0.000012345}}"#, "", "1.500000e+00 1e+21 1.2345e-05");
        check(r#"{{printf "%.3g %.3g" 1234.5678 1.0}}"#, "", "1.23e+03 1");
        check(r#"{{printf "%+d % d" 5 5}}"#, "", "+5  5");
        check(r#"{{len (printf "%.100000f|%.100000e|%.100000g" 1.5 1.5 1.5)}}"#, "", "200013");
        check(r#"{{printf "%.1200f" 0.1 | len}}"#, "", "1202");
        check(r#"{{printf "%%|%c|%U" 65 65}}"#, "", "%|A|U+0041");
        check(r#"{{printf "%.3s" .Id}}"#, "", "sha");
        check(r#"{{printf "%*d|%-*d|" 4 7 3 8}}"#, "", "   7|8  |");
        check(r#"{{printf "%d" .Os}}"#, "", "%!d(string=linux)");
        check(r#"{{printf "%s" .Size}}"#, "", "%!s(int=7340032)");
        check(r#"{{printf "%s %s" .Os}}"#, "", "linux %!s(MISSING)");
        check(r#"{{printf "%s" .Os .Size}}"#, "", "linux%!(EXTRA int=7340032)");
        check(r#"{{printf "%s" .Nothing}}"#, "", "%!s(<nil>)");
        check(r#"{{printf "%T %T %T %T" .Os .Size .Ratio .RepoTags}}"#, "", "string int float64 []interface {}");
        check(r#"{{printf "abc%"}}"#, "", "abc%!(NOVERB)");
        check(r#"{{.Os | printf "os=%s"}}"#, "", "os=linux");
        check(r#"{{.Os | printf "%s-%s" .Architecture}}"#, "", "amd64-linux");
        check(r#"{{print "a" "b" 1 2 "c"}}"#, "", "ab1 2c");
        check(r#"{{print .Nothing}}"#, "", "<nil>");
        check(r#"{{println "a" 1}}"#, "", "a 1\n");
        check(r#"{{print}}"#, "", "");
    }

    #[test]
    fn literals() {
        check(r#"{{"a\tb\x41\u00e9\101"}}"#, "", "a\tbAéA");
        check("{{`raw\\n{{x}}`}}", "", "raw\\n{{x}}");
        check("{{'a'}} {{'\\n'}}", "", "97 10");
        check("{{42}} {{-7}} {{+3}} {{0x1F}} {{0o17}} {{017}} {{0b101}} {{1_000}}", "", "42 -7 3 31 15 15 5 1000");
        check("{{1.5}} {{1e3}} {{1e6}} {{.5}}", "", "1.5 1000 1e+06 0.5");
        check("{{true}} {{false}}", "", "true false");
        check(r#"{{"}}"}}"#, "", "}}");
        check("a}}b", "", "a}}b");
        check("{{ .Id }}", "", "sha256:abc123");
    }

    #[test]
    fn trim_markers_and_comments() {
        check("a  {{- .Os -}}  b", "", "alinuxb");
        check("a \n\t{{- .Os}} b", "", "alinux b");
        check("a {{.Os -}} \n b", "", "a linuxb");
        check("{{range .RepoTags -}}\n  {{.}}\n{{- end}}", "", "alpine:3.19alpine:latest");
        check("x{{/* a comment with }} inside */}}y", "", "xy");
        check("x {{- /* trimmed */ -}} y", "", "xy");
        check("{{-3}}", "", "-3");
        check("a\n{{- \"b\" -}}\nc", "", "abc");
    }

    #[test]
    fn pipelines() {
        check("{{.Config.Env | len}}", "", "2");
        check("{{.Os | upper | printf \"%s!\"}}", "", "LINUX!");
        check("{{len (index .Layers 0).Digest}}", "", "2");
        check("{{(len .RepoTags)}}", "", "2");
        check("{{$n := len .RepoTags}}{{printf \"%d tags\" $n}}", "", "2 tags");
        check("{{if (and (eq .Os \"linux\") (gt .Size 0))}}ok{{end}}", "", "ok");
    }

    #[test]
    fn execution_errors_name_the_culprit() {
        let e = check_err("{{.Confg}}", "", "can't evaluate field Confg");
        assert_eq!(e.to_string(), "template: :1:2: executing \"\" at <.Confg>: can't evaluate field Confg in type map");
        check_err("{{.Config.Lables.k}}", "", "can't evaluate field Lables");
        check_err("x\n  {{.Config.Missing}}", "", "template: :2:4:");
        check_err("{{range .Layers}}{{.Digst}}{{end}}", "", "can't evaluate field Digst");
        check_err("{{.Id.Foo}}", "", "can't evaluate field Foo in type string");
        check_err("{{.RepoTags.Foo}}", "", "can't evaluate field Foo in type slice");
        check_err("{{$x := .Config}}{{$x.Nope}}", "", "can't evaluate field Nope");
        check_err("{{len 1 2}}", "", "wrong number of args for len: want 1 got 2");
        check_err("{{printf}}", "", "wrong number of args for printf: want at least 1 got 0");
        check_err("{{.Os 1}}", "", "Os is not a method but has arguments");
        check_err("{{.Os | .Id}}", "", "Id is not a method but has arguments");
        check_err("{{nil}}", "", "nil is not a command");
        check_err("{{range .Os}}{{end}}", "", "range can't iterate over linux");
        check_err("{{truncate .Id -1}}", "", "negative length");
        check_err("{{.Id | truncate 6}}", "", "expected string; got int");
    }

    #[test]
    fn parse_errors() {
        let e = check_err("{{.Id", "", "unclosed action");
        assert_eq!(e.to_string(), "template: :1: unclosed action");
        check_err("{{.Id\n", "", "template: :2: unclosed action started at :1");
        let e = check_err("{{.Id}", "", "unexpected \"}\" in operand");
        assert_eq!(e.to_string(), "template: :1: unexpected \"}\" in operand");
        let e = check_err("{{nosuch .Id}}", "", "function \"nosuch\" not defined");
        assert_eq!(e.to_string(), "template: :1: function \"nosuch\" not defined");
        check_err("{{table .Id}}", "", "function \"table\" not defined");
        check_err("{{if .Id}}x", "", "unexpected EOF");
        check_err("{{end}}", "", "unexpected {{end}}");
        check_err("{{else}}", "", "unexpected {{else}}");
        check_err("{{if 1}}{{else}}{{else}}{{end}}", "", "expected end; found {{else}}");
        check_err("{{$x}}", "", "undefined variable \"$x\"");
        check_err("{{$x = 1}}", "", "undefined variable \"$x\"");
        check_err("{{if 1}}{{$y := 1}}{{end}}{{$y}}", "", "undefined variable \"$y\"");
        check_err("{{break}}", "", "{{break}} outside {{range}}");
        check_err("{{continue}}", "", "{{continue}} outside {{range}}");
        check_err("{{range .X}}{{else}}{{break}}{{end}}", "", "{{break}} outside {{range}}");
        check_err("{{}}", "", "missing value for command");
        check_err("{{if}}{{end}}", "", "missing value for if");
        check_err("{{.Id | }}", "", "missing command after");
        check_err("{{.Id | \"x\"}}", "", "non executable command in pipeline stage 2");
        check_err("{{\"unterminated}}", "", "unterminated quoted string");
        check_err("{{`raw}}", "", "unterminated raw quoted string");
        check_err("{{\"bad \\q\"}}", "", "invalid syntax in string literal");
        check_err("{{1x}}", "", "bad number syntax: \"1x\"");
        check_err("{{(.Id}}", "", "unclosed left paren");
        check_err("{{.Id)}}", "", "unexpected right paren");
        check_err("{{/* open", "", "unclosed comment");
        check_err("{{/* c */ .Id}}", "", "comment ends before closing delimiter");
        check_err("{{.Id @}}", "", "unexpected \"@\" in operand");
        check_err("{{$x=1}}", "", "bad character U+003D '='");
        check_err("{{.Id€}}", "", "bad character");
        check_err("{{1 .Id}}", "", "can't give argument to non-function 1");
        check_err("{{\"a\".Foo}}", "", "unexpected . after term");
        check_err("{{template \"x\"}}", "", "{{template}} actions are not supported");
        check_err("{{range .RepoTags}}{{else if .X}}{{end}}", "", "unexpected <if> in else");
        check_err("{{$a, $b := .X}}", "", "too many declarations in command");
        check_err("{{if 1}}\n\n{{nosuch}}{{end}}", "", "template: :3: function");
    }

    #[test]
    fn nesting_is_limited() {
        let ok = format!("{}x{}", "{{if 1}}".repeat(MAX_DEPTH), "{{end}}".repeat(MAX_DEPTH));
        check(&ok, "{}", "x");
        let deep = format!("{}x{}", "{{if 1}}".repeat(10_000), "{{end}}".repeat(10_000));
        check_err(&deep, "{}", "nested too deeply");
        let parens = format!("{{{{{}1{}}}}}", "(".repeat(10_000), ")".repeat(10_000));
        check_err(&parens, "{}", "nested too deeply");
        let ranges = format!("{}{}", "{{range .}}".repeat(10_000), "{{end}}".repeat(10_000));
        check_err(&ranges, "[]", "nested too deeply");
        // A long flat else-if chain is not nesting.
        let chain = format!("{{{{if 0}}}}{}{{{{else}}}}z{{{{end}}}}", "{{else if 0}}".repeat(5_000));
        check(&chain, "{}", "z");
    }

    #[test]
    fn execution_is_bounded() {
        check_err("{{range 2000000}}{{end}}", "{}", "range iterations exceeded");
        check_err("{{range 1000}}{{range 1000}}{{range 1000}}{{end}}{{end}}{{end}}", "{}", "range iterations exceeded");
        let text = format!("{{{{range 100000}}}}{}{{{{end}}}}", "x".repeat(1000));
        check_err(&text, "{}", "output exceeds the limit");
        check_err(r#"{{range 100000}}{{printf "%1000d" 1}}{{end}}"#, "{}", "bytes of work");
        check_err(r#"{{$s := "ab"}}{{range 64}}{{$s = printf "%s%s" $s $s}}{{end}}"#, "{}", "limit");
        check_err(r#"{{printf "%10000000d%10000000d" 1 2}}"#, "{}", "result exceeds the limit");
        // Go refuses absurd widths rather than padding.
        check(r#"{{printf "%99999999999d" 1}}"#, "{}", "%!(NOVERB)%!(EXTRA int=1)");
    }

    #[test]
    fn steps_are_limited() {
        // Twenty thousand cheap actions, a thousand times over, pass the step
        // limit long before the iteration limit.
        let t = format!("{{{{range 1000}}}}{}{{{{end}}}}", "{{if 0}}{{end}}".repeat(20_000));
        check_err(&t, "{}", "exceeded the limit of 10000000 steps");
    }

    #[test]
    fn template_is_reusable() {
        let t = Template::parse("{{.Name}}={{.Size}}").expect("parses");
        assert_eq!(t.execute(&data(r#"{"Name":"a","Size":1}"#)).expect("runs"), "a=1");
        assert_eq!(t.execute(&data(r#"{"Name":"b","Size":2}"#)).expect("runs"), "b=2");
        assert!(t.execute(&data(r#"{"Name":"c"}"#)).is_err());
    }

    /// Fragments from which random templates are assembled.
    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("{{".to_string()),
            Just("}}".to_string()),
            Just("{{- ".to_string()),
            Just(" -}}".to_string()),
            Just("{{end}}".to_string()),
            Just("{{else}}".to_string()),
            Just("{{range .}}".to_string()),
            Just("{{if .A}}".to_string()),
            Just("{{with $x := .B}}".to_string()),
            Just("{{break}}".to_string()),
            Just(".A".to_string()),
            Just("$".to_string()),
            Just("$x".to_string()),
            Just(" | ".to_string()),
            Just("(".to_string()),
            Just(")".to_string()),
            Just("\"".to_string()),
            Just("`".to_string()),
            Just("'".to_string()),
            Just("/*".to_string()),
            Just("*/".to_string()),
            Just(" printf \"%-5d%q%v%".to_string()),
            Just(" index ".to_string()),
            Just(" 1 ".to_string()),
            Just("-".to_string()),
            Just(":=".to_string()),
            Just(" = ".to_string()),
            Just(", ".to_string()),
            prop::sample::select(vec![
                " len ",
                " json ",
                " split ",
                " join ",
                " truncate ",
                " eq ",
                " lt ",
                " ge ",
                " and ",
                " or ",
                " not ",
                " title ",
                " upper ",
                " print ",
                " println ",
                " index $.A ",
                " .B.c ",
                " $.C ",
                " nil ",
                " true ",
                " -1 ",
                " 99999999999999999999 ",
                " 1e400 ",
                " 0x1p3 ",
                " 2.5 ",
                " '\\x41' ",
                " \"\" ",
                " \"%*.*d%-08.3x%#q%[1]d%!\" ",
                " \"\\u12\" ",
                " `a\rb` ",
                "{{range $i, $e := .A}}",
                "{{else if .C}}",
                "{{continue}}",
                "{{$x := 3}}",
                "{{else with .B}}",
                "{{range 5}}",
            ])
            .prop_map(str::to_string),
            any::<String>(),
            "[ -~]{0,8}",
        ]
    }

    proptest! {
        #[test]
        fn render_never_panics(parts in prop::collection::vec(fragment(), 0..40)) {
            let d = data(r#"{"A":[1,"x",null,{"B":2.5}],"B":{"c":"d"},"C":""}"#);
            let _ = render(&parts.concat(), &d);
        }

        #[test]
        fn render_never_panics_on_any_string(s in any::<String>()) {
            let _ = render(&s, &data(DATA));
        }

        #[test]
        fn text_without_actions_is_unchanged(s in any::<String>().prop_filter("no action", |s| !s.contains("{{"))) {
            prop_assert_eq!(render(&s, &data(DATA)).expect("plain text renders"), s);
        }

        #[test]
        fn nesting_depth_is_checked(n in 0usize..300) {
            let t = format!("{}x{}", "{{with .}}".repeat(n), "{{end}}".repeat(n));
            let r = render(&t, &data("{}"));
            prop_assert_eq!(r.is_ok(), n <= MAX_DEPTH);
        }

        #[test]
        fn integers_print_exactly(i in any::<i64>()) {
            prop_assert_eq!(go_print(&Value::from(i)), i.to_string());
            prop_assert_eq!(render("{{printf \"%d\" .}}", &Value::from(i)).expect("renders"), i.to_string());
        }

        #[test]
        fn floats_print_round_trip(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let s = go_print(&Value::from(f));
            let back: f64 = s.parse().expect("Go's float output parses");
            prop_assert_eq!(back, f);
        }
    }

    #[test]
    fn typed_nils_print_as_go_prints_them() {
        let data = serde_json::json!({
            "S": typed_nil(Nil::Slice), "M": typed_nil(Nil::Map), "P": typed_nil(Nil::Pointer),
            "Nested": {"E": typed_nil(Nil::Slice), "X": 1},
        });
        let r = |src: &str| render(src, &data).unwrap();
        assert_eq!(r("{{.S}} {{.M}} {{.P}}"), "[] map[] <nil>");
        assert_eq!(r("{{json .S}} {{json .M}} {{json .P}} {{json .Nested}}"), r#"null null null {"E":null,"X":1}"#);
        assert_eq!(r("{{.Nested}}"), "map[E:[] X:1]");
        assert_eq!(
            r("{{len .S}} {{len .M}} {{if .S}}yes{{else}}no{{end}} {{range .S}}x{{else}}empty{{end}}"),
            "0 0 no empty"
        );
        assert_eq!(r("{{.M.Anything}}|{{index .M \"k\"}}|{{printf \"%v\" .S}}|{{print .M}}"), "<no value>||[]|map[]");
        assert_eq!(r("{{with .P}}set{{else}}nil{{end}} {{eq .S nil}}"), "nil true");
        assert_eq!(without_typed_nils(&data).into_owned()["Nested"], serde_json::json!({"E": null, "X": 1}));
        // Only the exact shape is a typed nil.
        let other = serde_json::json!({"\u{0}nil": "slice", "k": 1});
        assert_eq!(render("{{json .}}", &other).unwrap(), r#"{"\u0000nil":"slice","k":1}"#);
    }
}
