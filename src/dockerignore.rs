//! `.dockerignore`: which paths of a build context are left out, as
//! docker's pattern matcher decides. Pure: no IO.
//!
//! One pattern a line; blank lines and lines starting with `#` are skipped;
//! a leading `!` makes an exception (the path is kept); patterns are
//! cleaned as paths (`/x`, `./x` and `x/` are `x`). A pattern matches a
//! path when it matches the path or one of the directories above it, so
//! `build` leaves out everything under `build/`. `*` matches any run of
//! characters but `/`, `?` one character but `/`, `[a-z]` and `[^a-z]` a
//! class, `\` escapes the next character, and a `**` component any number
//! of directories. The last pattern that matches decides.

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    parts: Vec<String>,
    exception: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    patterns: Vec<Pattern>,
}

impl Matcher {
    /// The patterns of a `.dockerignore` file. A pattern that is no valid
    /// glob (an unclosed `[`, a trailing `\`) is an error naming its line.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let mut p = line.trim();
            if p.is_empty() || p.starts_with('#') {
                continue;
            }
            let exception = p.starts_with('!');
            if exception {
                p = p[1..].trim();
            }
            let mut parts = clean(p);
            // `**/**` is `**`; kept apart, each would try every depth again.
            parts.dedup_by(|a, b| a == "**" && b == "**");
            for part in &parts {
                if glob(part, "").is_err() {
                    return Err(format!(".dockerignore line {}: {p:?} is not a valid pattern", n + 1));
                }
            }
            if parts.is_empty() && !exception {
                // "." or "/": the whole context, which docker keeps.
                continue;
            }
            patterns.push(Pattern { parts, exception });
        }
        Ok(Matcher { patterns })
    }

    /// Is `path` (relative to the context, `/`-separated) left out?
    pub fn excluded(&self, path: &str) -> bool {
        let parts = clean(path);
        let mut out = false;
        for p in &self.patterns {
            // The path, or a directory above it.
            let hit = (1..=parts.len()).any(|k| matches(&p.parts, &parts[..k]));
            if hit {
                out = !p.exception;
            }
        }
        out
    }

    /// Whether any pattern is an exception: then a walk of the context must
    /// look inside directories that are left out, for paths kept again.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }
}

/// Does the `/`-separated `path` match `pattern` (Go's `filepath.Match`
/// component by component, as COPY's source globs are matched)? A
/// malformed pattern is an error.
pub fn path_matches(pattern: &str, path: &str) -> Result<bool, String> {
    let (p, n) = (clean(pattern), clean(path));
    for part in &p {
        glob(part, "").map_err(|_| format!("{pattern:?} is not a valid pattern"))?;
    }
    if p.len() != n.len() {
        return Ok(false);
    }
    Ok(p.iter().zip(&n).all(|(a, b)| glob(a, b) == Ok(true)))
}

/// Does `s` contain glob characters?
pub fn is_pattern(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// A path or pattern as components, cleaned as Go's `filepath.Clean` does
/// (`.` dropped, `..` taking the component before, leading `/` dropped).
fn clean(p: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
    out
}

/// Do the pattern's components match the path's, all of them?
fn matches(pat: &[String], path: &[String]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => (0..=path.len()).any(|k| matches(rest, &path[k..])),
        Some((first, rest)) => match path.split_first() {
            Some((c, prest)) => glob(first, c) == Ok(true) && matches(rest, prest),
            None => false,
        },
    }
}

/// Go's `filepath.Match` for one component (no `/` in either): whether
/// `name` matches, or an error for a malformed pattern. Iterative, as Go's
/// is (chunks between stars, each star tried at every later position), so
/// a long pattern costs no stack and a pattern of many stars no
/// exponential time (found by fuzzing: a 1 MiB pattern overflowed the
/// stack of the recursive matcher).
fn glob(pat: &str, name: &str) -> Result<bool, ()> {
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pat, mut name): (&[char], &[char]) = (&p, &n);
    'pattern: while !pat.is_empty() {
        let (star, chunk, rest) = scan_chunk(pat);
        pat = rest;
        if star && chunk.is_empty() {
            // A trailing star matches what is left.
            return Ok(true);
        }
        let here = match_chunk(chunk, name)?;
        if let Some(t) = here {
            if t.is_empty() || !pat.is_empty() {
                name = t;
                continue;
            }
        }
        if star {
            for i in 0..name.len() {
                if let Some(t) = match_chunk(chunk, &name[i + 1..])? {
                    if pat.is_empty() && !t.is_empty() {
                        continue;
                    }
                    name = t;
                    continue 'pattern;
                }
            }
        }
        // No match; the rest of the pattern must still be well formed.
        while !pat.is_empty() {
            let (_, chunk, rest) = scan_chunk(pat);
            pat = rest;
            match_chunk(chunk, &[])?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Leading stars, the chunk up to the next star outside a class, and what
/// follows.
fn scan_chunk(mut p: &[char]) -> (bool, &[char], &[char]) {
    let mut star = false;
    while p.first() == Some(&'*') {
        p = &p[1..];
        star = true;
    }
    let mut in_class = false;
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' if i + 1 < p.len() => i += 1,
            '[' => in_class = true,
            ']' => in_class = false,
            '*' if !in_class => break,
            _ => {}
        }
        i += 1;
    }
    (star, &p[..i], &p[i..])
}

/// Matches a chunk (no star) at the start of `s`: what is left of `s`, or
/// None; an error for a malformed chunk (checked to its end either way).
fn match_chunk<'a>(chunk: &[char], s: &'a [char]) -> Result<Option<&'a [char]>, ()> {
    let mut failed = false;
    let mut s = s;
    let mut c = chunk;
    while let Some((&first, rest)) = c.split_first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        // Whether this element matches the next character (ignored once
        // the match has failed), and the rest of the chunk.
        let (matched, after) = match first {
            '[' => class(rest, if failed { None } else { s.first().copied() })?,
            '?' => (true, rest),
            '\\' => {
                let (&e, after) = rest.split_first().ok_or(())?;
                (!failed && s[0] == e, after)
            }
            lit => (!failed && s[0] == lit, rest),
        };
        if !failed {
            if matched {
                s = &s[1..];
            } else {
                failed = true;
            }
        }
        c = after;
    }
    Ok(if failed { None } else { Some(s) })
}

/// A `[...]` class after its `[`: whether `ch` is in it, and the pattern
/// after its `]`. As in Go, `-` and `]` must be escaped inside a class.
fn class(p: &[char], ch: Option<char>) -> Result<(bool, &[char]), ()> {
    let mut i = 0;
    let negate = p.first() == Some(&'^');
    if negate {
        i += 1;
    }
    // One character of the class, escapes taken.
    let esc = |i: &mut usize| -> Result<char, ()> {
        let c = *p.get(*i).ok_or(())?;
        *i += 1;
        match c {
            '-' | ']' => Err(()),
            '\\' => {
                let e = *p.get(*i).ok_or(())?;
                *i += 1;
                Ok(e)
            }
            c => Ok(c),
        }
    };
    let mut hit = false;
    let mut ranges = 0;
    loop {
        if p.get(i) == Some(&']') && ranges > 0 {
            i += 1;
            break;
        }
        let lo = esc(&mut i)?;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            i += 1;
            hi = esc(&mut i)?;
        }
        ranges += 1;
        if ch.is_some_and(|x| lo <= x && x <= hi) {
            hit = true;
        }
    }
    Ok((hit != negate && ch.is_some(), &p[i..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_cases() {
        let m = Matcher::parse(
            "# comment\n\n*.md\n!README.md\nbuild\n/tmp/*\n**/*.o\nsecret?.txt\ndocs/[a-c]*\n!docs/b-keep\n",
        )
        .unwrap();
        for (path, out) in [
            ("notes.md", true),
            ("README.md", false),
            ("sub/notes.md", false),
            ("build", true),
            ("build/x/y", true),
            ("rebuild", false),
            ("tmp/a", true),
            ("tmp/a/b", true),
            ("x/tmp/a", false),
            ("a.o", true),
            ("x/y/z.o", true),
            ("secret1.txt", true),
            ("secret12.txt", false),
            ("docs/alpha", true),
            ("docs/b-keep", false),
            ("docs/zeta", false),
            ("src/main.rs", false),
        ] {
            assert_eq!(m.excluded(path), out, "{path}");
        }
        assert!(m.has_exceptions());
    }

    #[test]
    fn globs_as_go_matches_them() {
        for (pat, name, want) in [
            ("a*", "abc", true),
            ("a*c", "abc", true),
            ("a*d", "abc", false),
            ("*", "", true),
            ("?", "", false),
            ("[^a]x", "bx", true),
            ("[^a]x", "ax", false),
            ("[\\-]x", "-x", true),
            ("[a-c]", "b", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
        ] {
            assert_eq!(glob(pat, name), Ok(want), "{pat} {name}");
        }
        for bad in ["[", "[a", "a\\", "[a-", "[]a]", "[a-]", "[-a]"] {
            assert_eq!(glob(bad, "a"), Err(()), "{bad}");
            assert!(Matcher::parse(bad).unwrap_err().contains("line 1"), "{bad}");
        }
    }

    /// Found by fuzzing: a 1 MiB pattern overflowed the stack of the
    /// recursive matcher.
    #[test]
    fn long_patterns_cost_no_stack() {
        let long = "a".repeat(1 << 20);
        assert_eq!(glob(&long, "c.txt"), Ok(false));
        assert_eq!(glob(&long, &long), Ok(true));
        let m = Matcher::parse(&long).unwrap();
        assert!(!m.excluded("a/b/c.txt"));
    }

    /// Many stars against a long name take linear time, not exponential.
    #[test]
    fn many_stars_match_in_linear_time() {
        let pat = "*a".repeat(40) + "b";
        let name = "a".repeat(200);
        let t0 = std::time::Instant::now();
        assert_eq!(glob(&pat, &name), Ok(false));
        assert_eq!(glob(&pat, &(name.clone() + "b")), Ok(true));
        let m = Matcher::parse("**/".repeat(500).trim_end_matches('/')).unwrap();
        let deep = vec!["d"; 30].join("/");
        let _ = m.excluded(&deep);
        assert!(t0.elapsed() < std::time::Duration::from_secs(2), "took {:?}", t0.elapsed());
    }

    #[test]
    fn patterns_are_cleaned_and_the_last_one_wins() {
        let m = Matcher::parse("./a/../b/\n!b/keep\nb/keep/no\n.\n").unwrap();
        assert!(m.excluded("b/x"));
        assert!(!m.excluded("b/keep/y"));
        assert!(m.excluded("b/keep/no"));
        assert!(!m.excluded("a"));
        assert!(m.excluded("./b"));
    }

    proptest::proptest! {
        #[test]
        fn any_pattern_and_path_give_an_answer(pat in "[a-c*?\\[\\]^!/\\\\.-]{0,12}", path in "[a-c/.]{0,12}") {
            if let Ok(m) = Matcher::parse(&pat) {
                let _ = m.excluded(&path);
            }
        }
    }
}
