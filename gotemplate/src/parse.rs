//! The parse tree, which mirrors the nodes of Go's text/template/parse
//! package, and the recursive-descent parser that builds it from tokens,
//! with literals decoded by the rules of Go's strconv package.

use serde_json::{Number, Value};

use crate::fmt::go_quote;
use crate::lex::{Kw, Lexer, Tk, Token};
use crate::{line_col, TemplateError, MAX_DEPTH};

/// A byte range of the source, used to point at the culprit in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) pos: usize,
    pub(crate) end: usize,
}

/// The built-in functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
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

    pub(crate) fn name(self) -> &'static str {
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
    pub(crate) fn arity(self) -> (usize, Option<usize>) {
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
pub(crate) enum TermKind {
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
pub(crate) struct Term {
    pub(crate) kind: TermKind,
    pub(crate) span: Span,
}

/// A command: a function or value followed by its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    pub(crate) args: Vec<Term>,
    pub(crate) span: Span,
}

/// A pipeline, with the variables it declares or assigns.
#[derive(Debug, Clone)]
pub(crate) struct Pipe {
    pub(crate) decl: Vec<String>,
    pub(crate) is_assign: bool,
    pub(crate) cmds: Vec<Cmd>,
    pub(crate) span: Span,
}

/// One `if`, `else if`, `with` or `else with` arm.
#[derive(Debug, Clone)]
pub(crate) struct Branch {
    pub(crate) pipe: Pipe,
    pub(crate) body: Vec<Node>,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
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

/// Parses `src` into the top-level list of nodes.
pub(crate) fn parse(src: &str) -> Result<Vec<Node>, TemplateError> {
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
    parser.parse_root()
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
