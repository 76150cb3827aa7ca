//! The lexer splits a template into text and the tokens of its actions.

use crate::fmt::{go_quote, is_print};

/// The kinds of token the lexer produces.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tk {
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
pub(crate) enum Kw {
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

    pub(crate) fn name(self) -> &'static str {
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
pub(crate) struct Token {
    pub(crate) tk: Tk,
    pub(crate) pos: usize,
    pub(crate) end: usize,
}

/// Splits a template into tokens; it stops after the first error.
pub(crate) struct Lexer<'s> {
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
    pub(crate) fn lex(src: &'s str) -> Vec<Token> {
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
