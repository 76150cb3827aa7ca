//! Dockerfiles parsed from bytes, as BuildKit's front end reads them.
//! Pure: no IO.
//!
//! [`parse`] gives the instructions with the line each starts on: parser
//! directives at the top (`# syntax=`, `# escape=`, `# check=`), comments,
//! line continuations (the escape character at the end of a line; comment
//! and empty lines inside a continuation are skipped), heredocs after RUN,
//! COPY and ADD (`<<EOF`, `<<-EOF` stripping leading tabs, a quoted
//! delimiter turning expansion off), `--flag=value` options, and the JSON
//! (exec) form where an instruction has one. A Dockerfile over 1 MiB, a
//! line that is no instruction, or an unknown instruction is refused with
//! an error naming the line.
//!
//! [`words`] and [`expand`] do the variable expansion of instruction
//! arguments: `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`,
//! `${VAR:+word}`, `${VAR+word}`, `${VAR:?message}`, with single quotes
//! (literal), double quotes and the escape character, as docker's shell
//! lexer treats them.

/// The most a Dockerfile may take.
pub const MAX_SIZE: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerfileError {
    #[error("the Dockerfile is {0} bytes, over the {MAX_SIZE}-byte limit")]
    TooLarge(usize),
    #[error("line {line}: {msg}")]
    Line { line: usize, msg: String },
}

fn err(line: usize, msg: impl Into<String>) -> DockerfileError {
    DockerfileError::Line { line, msg: msg.into() }
}

/// The instructions a Dockerfile may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    From,
    Arg,
    Env,
    Label,
    Run,
    Copy,
    Add,
    Workdir,
    User,
    Expose,
    Volume,
    Entrypoint,
    Cmd,
    Shell,
    Healthcheck,
    Stopsignal,
    Onbuild,
    Maintainer,
}

impl Keyword {
    pub fn parse(word: &str) -> Option<Keyword> {
        use Keyword::*;
        Some(match word.to_ascii_lowercase().as_str() {
            "from" => From,
            "arg" => Arg,
            "env" => Env,
            "label" => Label,
            "run" => Run,
            "copy" => Copy,
            "add" => Add,
            "workdir" => Workdir,
            "user" => User,
            "expose" => Expose,
            "volume" => Volume,
            "entrypoint" => Entrypoint,
            "cmd" => Cmd,
            "shell" => Shell,
            "healthcheck" => Healthcheck,
            "stopsignal" => Stopsignal,
            "onbuild" => Onbuild,
            "maintainer" => Maintainer,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        use Keyword::*;
        match self {
            From => "FROM",
            Arg => "ARG",
            Env => "ENV",
            Label => "LABEL",
            Run => "RUN",
            Copy => "COPY",
            Add => "ADD",
            Workdir => "WORKDIR",
            User => "USER",
            Expose => "EXPOSE",
            Volume => "VOLUME",
            Entrypoint => "ENTRYPOINT",
            Cmd => "CMD",
            Shell => "SHELL",
            Healthcheck => "HEALTHCHECK",
            Stopsignal => "STOPSIGNAL",
            Onbuild => "ONBUILD",
            Maintainer => "MAINTAINER",
        }
    }

    /// Instructions that take `--name[=value]` options before their
    /// arguments.
    fn takes_flags(self) -> bool {
        matches!(self, Keyword::From | Keyword::Run | Keyword::Copy | Keyword::Add | Keyword::Healthcheck)
    }

    /// Instructions whose arguments may be a JSON array (the exec form).
    fn has_json_form(self) -> bool {
        matches!(
            self,
            Keyword::Run
                | Keyword::Copy
                | Keyword::Add
                | Keyword::Volume
                | Keyword::Entrypoint
                | Keyword::Cmd
                | Keyword::Shell
        )
    }

    fn takes_heredocs(self) -> bool {
        matches!(self, Keyword::Run | Keyword::Copy | Keyword::Add)
    }
}

/// An instruction's arguments: a JSON array of strings, or the rest of the
/// line as written (continuations joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    Exec(Vec<String>),
    Shell(String),
}

/// A here-document: the lines after the instruction up to `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    /// The lines, each with its newline.
    pub content: String,
    /// False when the delimiter was quoted: no variable expansion.
    pub expand: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The line it starts on (1-based).
    pub line: usize,
    pub keyword: Keyword,
    /// `--name=value` options in order (`None` for a bare `--name`).
    pub flags: Vec<(String, Option<String>)>,
    pub args: Args,
    pub heredocs: Vec<Heredoc>,
    /// ONBUILD's instruction.
    pub onbuild: Option<Box<Instruction>>,
}

impl Instruction {
    /// The value of option `--name`, if given (the last one wins).
    pub fn flag(&self, name: &str) -> Option<Option<&str>> {
        self.flags.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// `# syntax=`, if given.
    pub syntax: Option<String>,
    /// `\` unless `# escape=` says `` ` ``.
    pub escape: char,
    pub instructions: Vec<Instruction>,
}

/// Parses a Dockerfile.
pub fn parse(bytes: &[u8]) -> Result<Dockerfile, DockerfileError> {
    if bytes.len() > MAX_SIZE {
        return Err(DockerfileError::TooLarge(bytes.len()));
    }
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        err(line, "the text is not UTF-8")
    })?;
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let mut out = Dockerfile { syntax: None, escape: '\\', instructions: Vec::new() };

    // Parser directives: only at the very top, before anything else.
    let mut i = 0;
    let mut seen: Vec<String> = Vec::new();
    while i < lines.len() {
        let Some((key, value)) = directive(lines[i]) else { break };
        if seen.contains(&key) {
            return Err(err(i + 1, format!("the parser directive {key:?} is given twice")));
        }
        match key.as_str() {
            "escape" => match value.as_str() {
                "\\" => out.escape = '\\',
                "`" => out.escape = '`',
                v => return Err(err(i + 1, format!("invalid escape character {v:?}: use \\ or `"))),
            },
            "syntax" => out.syntax = Some(value),
            _ => {}
        }
        seen.push(key);
        i += 1;
    }

    while i < lines.len() {
        let start = i;
        let first = lines[i];
        i += 1;
        let t = first.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        // The logical line: continuations joined, comment and empty lines
        // inside them skipped.
        let mut logical = String::new();
        let mut cur = first.to_string();
        loop {
            match strip_continuation(&cur, out.escape) {
                Some(head) => {
                    logical.push_str(head);
                    // The next line that is not a comment or empty.
                    let mut next = None;
                    while i < lines.len() {
                        let l = lines[i];
                        i += 1;
                        let lt = l.trim_start();
                        if lt.starts_with('#') || lt.is_empty() {
                            continue;
                        }
                        next = Some(l.to_string());
                        break;
                    }
                    match next {
                        Some(n) => cur = n,
                        None => break,
                    }
                }
                None => {
                    logical.push_str(&cur);
                    break;
                }
            }
        }
        let mut inst = instruction(&logical, start + 1)?;
        // Heredocs read the lines that follow.
        let target: &mut Instruction = match inst.onbuild {
            Some(ref mut inner) => inner,
            None => &mut inst,
        };
        if target.keyword.takes_heredocs() {
            if let Args::Shell(s) = &target.args {
                for (name, strip, expand) in heredoc_names(s) {
                    let mut content = String::new();
                    let mut closed = false;
                    while i < lines.len() {
                        let l = lines[i];
                        i += 1;
                        let l = if strip { l.trim_start_matches('\t') } else { l };
                        if l == name {
                            closed = true;
                            break;
                        }
                        content.push_str(l);
                        content.push('\n');
                    }
                    if !closed {
                        return Err(err(start + 1, format!("the here-document {name:?} is not closed")));
                    }
                    target.heredocs.push(Heredoc { name, content, expand });
                }
            }
        }
        out.instructions.push(inst);
    }
    Ok(out)
}

/// A parser directive line (`# key=value`), lower-cased key.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim_start().strip_prefix('#')?;
    let (k, v) = rest.split_once('=')?;
    let k = k.trim();
    if k.is_empty()
        || !k.chars().all(|c| c.is_ascii_alphanumeric())
        || !k.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        return None;
    }
    let k = k.to_ascii_lowercase();
    matches!(k.as_str(), "syntax" | "escape" | "check").then(|| (k, v.trim().to_string()))
}

/// The line without its continuation mark, if it ends with one (the escape
/// character, then only blanks).
fn strip_continuation(line: &str, escape: char) -> Option<&str> {
    line.trim_end_matches([' ', '\t']).strip_suffix(escape)
}

/// One instruction from its logical line.
fn instruction(logical: &str, line: usize) -> Result<Instruction, DockerfileError> {
    let t = logical.trim();
    let (word, rest) = match t.find(char::is_whitespace) {
        Some(n) => (&t[..n], t[n..].trim_start()),
        None => (t, ""),
    };
    let keyword = Keyword::parse(word)
        .ok_or_else(|| err(line, format!("unknown instruction {:?}", word.chars().take(64).collect::<String>())))?;
    if keyword == Keyword::Onbuild {
        if rest.is_empty() {
            return Err(err(line, "ONBUILD needs an instruction"));
        }
        let inner = instruction(rest, line)?;
        if matches!(inner.keyword, Keyword::Onbuild | Keyword::From | Keyword::Maintainer) {
            return Err(err(line, format!("{} is not allowed after ONBUILD", inner.keyword.name())));
        }
        return Ok(Instruction {
            line,
            keyword,
            flags: Vec::new(),
            args: Args::Shell(rest.to_string()),
            heredocs: Vec::new(),
            onbuild: Some(Box::new(inner)),
        });
    }
    let mut rest = rest;
    let mut flags = Vec::new();
    if keyword.takes_flags() {
        while let Some(f) = rest.strip_prefix("--") {
            let end = f.find(char::is_whitespace).unwrap_or(f.len());
            let tok = &f[..end];
            if tok.is_empty() {
                break;
            }
            let (n, v) = match tok.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (tok.to_string(), None),
            };
            if n.is_empty() {
                return Err(err(line, format!("{}: an option without a name", keyword.name())));
            }
            flags.push((n, v));
            rest = f[end..].trim_start();
        }
    }
    let args = if keyword.has_json_form() && rest.starts_with('[') {
        match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) => Args::Exec(v),
            // Not a JSON array of strings: the shell form, as docker does.
            Err(_) if keyword != Keyword::Shell => Args::Shell(rest.to_string()),
            Err(e) => return Err(err(line, format!("SHELL needs a JSON array of strings ({e})"))),
        }
    } else {
        if keyword == Keyword::Shell {
            return Err(err(line, "SHELL needs a JSON array of strings, like [\"/bin/sh\", \"-c\"]"));
        }
        Args::Shell(rest.to_string())
    };
    let needs_args = !matches!(keyword, Keyword::Healthcheck);
    if needs_args && matches!(&args, Args::Shell(s) if s.is_empty()) {
        return Err(err(line, format!("{} needs arguments", keyword.name())));
    }
    Ok(Instruction { line, keyword, flags, args, heredocs: Vec::new(), onbuild: None })
}

/// The here-documents a RUN, COPY or ADD line opens, in order: (delimiter,
/// strip leading tabs, expand variables).
fn heredoc_names(s: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'<' && b[i + 1] == b'<' && (i == 0 || b[i - 1] != b'<') {
            let mut j = i + 2;
            let strip = b.get(j) == Some(&b'-');
            if strip {
                j += 1;
            }
            let quote = match b.get(j) {
                Some(&q @ (b'"' | b'\'')) => {
                    j += 1;
                    Some(q)
                }
                _ => None,
            };
            let start = j;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            let name = &s[start..j];
            let closed = match quote {
                Some(q) => b.get(j) == Some(&q),
                None => true,
            };
            if !name.is_empty() && closed {
                out.push((name.to_string(), strip, quote.is_none()));
                i = j + usize::from(quote.is_some());
                continue;
            }
        }
        i += 1;
    }
    out
}

/// The words of `s` after expansion: split on blanks outside quotes,
/// quotes removed, variables expanded through `lookup`.
pub fn words(s: &str, escape: char, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>, String> {
    Lexer { chars: s.chars().collect(), pos: 0, escape, lookup, depth: 0 }.words(true)
}

/// `s` as one word after expansion (blanks kept), as ENV values, WORKDIR
/// and the like are processed.
pub fn expand(s: &str, escape: char, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    Ok(Lexer { chars: s.chars().collect(), pos: 0, escape, lookup, depth: 0 }.words(false)?.concat())
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    /// `${...}` open around the current position.
    depth: usize,
}

/// `${...}` nested deeper than this is refused (each level is a call).
const MAX_NESTING: usize = 100;

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn words(&mut self, split: bool) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut has = false;
        while let Some(c) = self.next() {
            if split && (c == ' ' || c == '\t') {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
                continue;
            }
            has = true;
            if c == self.escape {
                match self.next() {
                    Some(n) => cur.push(n),
                    None => cur.push(c),
                }
            } else if c == '\'' {
                loop {
                    match self.next() {
                        Some('\'') => break,
                        Some(n) => cur.push(n),
                        None => return Err("a single quote is not closed".into()),
                    }
                }
            } else if c == '"' {
                loop {
                    match self.next() {
                        Some('"') => break,
                        Some('$') => cur.push_str(&self.variable()?),
                        Some(n) if n == self.escape => match self.peek() {
                            Some(m @ ('"' | '$')) => {
                                self.pos += 1;
                                cur.push(m);
                            }
                            Some(m) if m == self.escape => {
                                self.pos += 1;
                                cur.push(m);
                            }
                            _ => cur.push(n),
                        },
                        Some(n) => cur.push(n),
                        None => return Err("a double quote is not closed".into()),
                    }
                }
            } else if c == '$' {
                // Unquoted, a value's blanks split words.
                let v = self.variable()?;
                if split {
                    let mut parts = v.split([' ', '\t']);
                    cur.push_str(parts.next().unwrap_or(""));
                    for p in parts {
                        if !cur.is_empty() {
                            out.push(std::mem::take(&mut cur));
                        }
                        cur.push_str(p);
                    }
                } else {
                    cur.push_str(&v);
                }
            } else {
                cur.push(c);
            }
        }
        if has {
            out.push(cur);
        }
        Ok(out)
    }

    /// After a `$`: the variable's expansion (a `$` alone stays as it is).
    fn variable(&mut self) -> Result<String, String> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                let name = self.name();
                if name.is_empty() {
                    return Err("a ${...} without a variable name".into());
                }
                let value = (self.lookup)(&name);
                match self.next() {
                    Some('}') => Ok(value.unwrap_or_default()),
                    Some(':') => {
                        let op = self.next().ok_or("a ${NAME: that is not closed")?;
                        let word = self.until_brace()?;
                        let set = value.as_deref().is_some_and(|v| !v.is_empty());
                        self.apply(op, set, value, &word, &name)
                    }
                    Some(op @ ('-' | '+' | '?')) => {
                        let word = self.until_brace()?;
                        let set = value.is_some();
                        self.apply(op, set, value, &word, &name)
                    }
                    Some(c) => Err(format!("{c:?} is not allowed in ${{{name}...}}")),
                    None => Err(format!("${{{name} is not closed")),
                }
            }
            Some(c) if c == '_' || c.is_ascii_alphabetic() => {
                let name = self.name();
                Ok((self.lookup)(&name).unwrap_or_default())
            }
            _ => Ok("$".into()),
        }
    }

    fn apply(&self, op: char, set: bool, value: Option<String>, word: &str, name: &str) -> Result<String, String> {
        match op {
            '-' => Ok(if set { value.unwrap_or_default() } else { word.to_string() }),
            '+' => Ok(if set { word.to_string() } else { String::new() }),
            '?' if set => Ok(value.unwrap_or_default()),
            '?' => Err(if word.is_empty() { format!("{name} is not set") } else { format!("{name}: {word}") }),
            c => Err(format!("${{{name}:{c}...}} is not supported: use :-, :+ or :?")),
        }
    }

    fn name(&mut self) -> String {
        let mut n = String::new();
        while let Some(c) = self.peek().filter(|c| *c == '_' || c.is_ascii_alphanumeric()) {
            n.push(c);
            self.pos += 1;
        }
        n
    }

    /// The word of a `${NAME:-word}`, expanded, up to its closing brace.
    fn until_brace(&mut self) -> Result<String, String> {
        if self.depth >= MAX_NESTING {
            return Err(format!("${{...}} nested more than {MAX_NESTING} deep"));
        }
        self.depth += 1;
        let w = self.until_brace_inner();
        self.depth -= 1;
        w
    }

    fn until_brace_inner(&mut self) -> Result<String, String> {
        let mut w = String::new();
        loop {
            match self.next() {
                Some('}') => return Ok(w),
                Some('$') => w.push_str(&self.variable()?),
                Some(c) if c == self.escape => {
                    if let Some(n) = self.next() {
                        w.push(n);
                    }
                }
                Some(c) => w.push(c),
                None => return Err("a ${...} is not closed".into()),
            }
        }
    }
}

/// `KEY=VALUE` pairs of ENV, LABEL and ARG (values expanded through
/// `lookup`); also the old `ENV KEY VALUE WITH BLANKS` form when `legacy`.
pub fn key_values(
    s: &str,
    escape: char,
    legacy: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, Option<String>)>, String> {
    let t = s.trim_start_matches([' ', '\t']);
    let end = t.find([' ', '\t']).unwrap_or(t.len());
    let first = &t[..end];
    if legacy && !first.contains('=') {
        let value = t[end..].trim_start_matches([' ', '\t']);
        if value.is_empty() {
            return Ok(vec![(first.to_string(), None)]);
        }
        return Ok(vec![(first.to_string(), Some(expand(value, escape, lookup)?))]);
    }
    let mut out = Vec::new();
    for w in raw_words(s, escape)? {
        match split_unquoted_eq(&w, escape) {
            Some((k, v)) => {
                // The name is processed as a word too: `"a.b"=c` names a.b.
                let k = words(k, escape, lookup)?.concat();
                if k.is_empty() {
                    return Err(format!("{w:?} has no name before its ="));
                }
                out.push((k, Some(words(v, escape, lookup)?.concat())))
            }
            None => out.push((words(&w, escape, lookup)?.concat(), None)),
        }
    }
    Ok(out)
}

/// `w` split at its first `=` outside quotes (and not escaped).
fn split_unquoted_eq(w: &str, escape: char) -> Option<(&str, &str)> {
    let mut quote: Option<char> = None;
    let mut skip = false;
    for (i, c) in w.char_indices() {
        if skip {
            skip = false;
            continue;
        }
        match quote {
            Some(q) if c == q => quote = None,
            Some('"') if c == escape => skip = true,
            Some(_) => {}
            None if c == escape => skip = true,
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '=' => return Some((&w[..i], &w[i + 1..])),
            None => {}
        }
    }
    None
}

/// The words of `s` split on blanks outside quotes, quotes and escapes
/// kept, for splitting `K=V` pairs before their values are processed.
fn raw_words(s: &str, escape: char) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == q {
                    quote = None;
                } else if c == escape && q == '"' {
                    if let Some(n) = it.next() {
                        cur.push(n);
                    }
                }
            }
            None if c == ' ' || c == '\t' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            None => {
                cur.push(c);
                if c == '"' || c == '\'' {
                    quote = Some(c);
                } else if c == escape {
                    if let Some(n) = it.next() {
                        cur.push(n);
                    }
                }
            }
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed".into());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/root".into()),
            "EMPTY" => Some(String::new()),
            "SP" => Some("a b".into()),
            _ => None,
        }
    }

    fn one(src: &str) -> Instruction {
        let d = parse(src.as_bytes()).unwrap();
        assert_eq!(d.instructions.len(), 1, "{src:?}: {:?}", d.instructions);
        d.instructions.into_iter().next().unwrap()
    }

    #[test]
    fn instructions_lines_and_forms() {
        let src = "# syntax=docker/dockerfile:1\n\
                   # a comment\n\
                   FROM --platform=linux/amd64 busybox AS base\n\
                   \n\
                   RUN echo a \\\n\
                   # inside\n\
                   \x20   && echo b\n\
                   CMD [\"sh\", \"-c\", \"echo hi\"]\n\
                   ENTRYPOINT [not json\n\
                   copy --from=base --chown=1:2 /a /b\n";
        let d = parse(src.as_bytes()).unwrap();
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
        let i = &d.instructions;
        assert_eq!(i.len(), 5);
        assert_eq!((i[0].line, i[0].keyword), (3, Keyword::From));
        assert_eq!(i[0].flag("platform"), Some(Some("linux/amd64")));
        assert_eq!(i[0].args, Args::Shell("busybox AS base".into()));
        assert_eq!((i[1].line, &i[1].args), (5, &Args::Shell("echo a     && echo b".into())));
        assert_eq!(i[2].args, Args::Exec(vec!["sh".into(), "-c".into(), "echo hi".into()]));
        assert_eq!(i[3].args, Args::Shell("[not json".into()));
        assert_eq!((i[4].line, i[4].keyword), (10, Keyword::Copy));
        assert_eq!(i[4].flags, vec![("from".into(), Some("base".into())), ("chown".into(), Some("1:2".into()))]);
    }

    #[test]
    fn the_escape_directive_and_crlf() {
        let d = parse(b"# escape=`\r\nFROM scratch\r\nRUN dir c:\\ `\r\n  /w\r\n").unwrap();
        assert_eq!(d.escape, '`');
        assert_eq!(d.instructions[1].args, Args::Shell("dir c:\\   /w".into()));
        // A directive after an instruction is a comment.
        let d = parse(b"FROM scratch\n# escape=`\nRUN a \\\n b\n").unwrap();
        assert_eq!(d.escape, '\\');
        assert_eq!(d.instructions[1].args, Args::Shell("a  b".into()));
    }

    #[test]
    fn heredocs_read_the_lines_after() {
        let i = one("RUN <<EOF\necho $HOME\n  ls\nEOF\n");
        assert_eq!(
            i.heredocs,
            vec![Heredoc { name: "EOF".into(), content: "echo $HOME\n  ls\n".into(), expand: true }]
        );
        let i = one("COPY <<-'A' <<B /dst/\n\tone\n\tA\ntwo\nB\n");
        assert_eq!(i.heredocs.len(), 2);
        assert_eq!((i.heredocs[0].content.as_str(), i.heredocs[0].expand), ("one\n", false));
        assert_eq!(i.heredocs[1].content, "two\n");
        let e = parse(b"FROM a\nRUN <<END\necho\n").unwrap_err();
        assert_eq!(e.to_string(), "line 2: the here-document \"END\" is not closed");
    }

    #[test]
    fn onbuild_holds_an_instruction() {
        let i = one("ONBUILD RUN <<X\nhi\nX\n");
        let inner = i.onbuild.unwrap();
        assert_eq!(inner.keyword, Keyword::Run);
        assert_eq!(inner.heredocs[0].content, "hi\n");
    }

    #[test]
    fn bad_dockerfiles_are_refused_naming_the_line() {
        for (src, want) in [
            (&b"FROM a\nFOO bar\n"[..], "line 2: unknown instruction \"FOO\""),
            (b"FROM a\nRUN\n", "line 2: RUN needs arguments"),
            (b"FROM a\nSHELL sh -c\n", "line 2: SHELL needs a JSON array"),
            (b"# escape=x\nFROM a\n", "line 1: invalid escape character"),
            (b"# escape=\\\n# escape=`\n", "line 2: the parser directive \"escape\" is given twice"),
            (b"FROM a\nONBUILD FROM b\n", "line 2: FROM is not allowed after ONBUILD"),
            (b"FROM a\nRUN \xff\n", "line 2: the text is not UTF-8"),
        ] {
            let e = parse(src).unwrap_err().to_string();
            assert!(e.starts_with(want), "{:?}: {e}", String::from_utf8_lossy(src));
        }
        let big = vec![b'#'; MAX_SIZE + 1];
        assert_eq!(parse(&big).unwrap_err(), DockerfileError::TooLarge(MAX_SIZE + 1));
    }

    #[test]
    fn expansion_as_docker_does_it() {
        for (src, want) in [
            ("$HOME/x", vec!["/root/x"]),
            ("${HOME}x", vec!["/rootx"]),
            ("'$HOME'", vec!["$HOME"]),
            ("\"$HOME $SP\"", vec!["/root a b"]),
            ("$SP", vec!["a", "b"]),
            ("x$SP", vec!["xa", "b"]),
            ("\\$HOME", vec!["$HOME"]),
            ("${NOPE:-def}", vec!["def"]),
            ("${EMPTY:-def}", vec!["def"]),
            ("${EMPTY-def}", vec![""]),
            ("${HOME:+set}", vec!["set"]),
            ("${NOPE:+set}", vec![]),
            ("${NOPE:-${HOME}}", vec!["/root"]),
            ("a  b\tc", vec!["a", "b", "c"]),
            ("$", vec!["$"]),
            ("$1x", vec!["$1x"]),
        ] {
            let got = words(src, '\\', &vars).unwrap();
            let got: Vec<String> = got.into_iter().filter(|w| !w.is_empty() || src.contains("EMPTY-")).collect();
            assert_eq!(got, want, "{src}");
        }
        assert_eq!(expand("a  $HOME", '\\', &vars).unwrap(), "a  /root");
        assert_eq!(words("${NOPE:?must be set}", '\\', &vars).unwrap_err(), "NOPE: must be set");
        assert!(words("'open", '\\', &vars).is_err());
        assert!(words("${HOME", '\\', &vars).is_err());
        assert!(words("${HOME:x}", '\\', &vars).is_err());
        // Found by a hostile Dockerfile: 170,000 nested ${X:-...} overflowed the stack.
        let deep = format!("{}v{}", "${X:-".repeat(170_000), "}".repeat(170_000));
        assert!(words(&deep, '\\', &vars).unwrap_err().contains("nested more than 100 deep"));
        let ok = format!("{}v{}", "${X:-".repeat(100), "}".repeat(100));
        assert_eq!(words(&ok, '\\', &vars).unwrap(), vec!["v".to_string()]);
    }

    #[test]
    fn key_values_of_env_and_label() {
        let kv = key_values("A=1 B=\"x y\" C=$HOME D='$HOME' E", '\\', true, &vars).unwrap();
        assert_eq!(
            kv,
            vec![
                ("A".into(), Some("1".into())),
                ("B".into(), Some("x y".into())),
                ("C".into(), Some("/root".into())),
                ("D".into(), Some("$HOME".into())),
                ("E".into(), None),
            ]
        );
        let kv = key_values("PATH /usr/bin:$HOME  with blanks", '\\', true, &vars).unwrap();
        assert_eq!(kv, vec![("PATH".into(), Some("/usr/bin:/root  with blanks".into()))]);
        assert!(key_values("=x", '\\', false, &vars).is_err());
        // Found by the property test below: a first word of several bytes
        // before a tab.
        assert_eq!(key_values("\u{a5}\tN", '`', true, &vars).unwrap(), vec![("\u{a5}".into(), Some("N".into()))]);
        assert!(key_values("A=\"open", '\\', false, &vars).is_err());
        // A quoted name loses its quotes (LABEL "com.example.vendor"=ACME).
        let kv = key_values("\"org.example.quoted\"=\"quoted key\" 'a=b'=c", '\\', false, &vars).unwrap();
        assert_eq!(
            kv,
            vec![("org.example.quoted".into(), Some("quoted key".into())), ("a=b".into(), Some("c".into()))]
        );
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_names_a_line(s in "(?s).{0,300}") {
            match parse(s.as_bytes()) {
                Ok(d) => {
                    for i in &d.instructions {
                        proptest::prop_assert!(i.line >= 1 && i.line <= s.split('\n').count());
                    }
                }
                Err(DockerfileError::Line { line, .. }) => proptest::prop_assert!(line >= 1 && line <= s.split('\n').count()),
                Err(e) => return Err(proptest::test_runner::TestCaseError::fail(e.to_string())),
            }
            let _ = words(&s, '\\', &vars);
            let _ = key_values(&s, '`', true, &vars);
        }
    }
}
