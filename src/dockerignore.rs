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
            let parts = clean(p);
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
/// `name` matches, or an error for a malformed pattern.
fn glob(pat: &str, name: &str) -> Result<bool, ()> {
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_at(&p, &n)
}

fn glob_at(p: &[char], n: &[char]) -> Result<bool, ()> {
    let Some((&c, rest)) = p.split_first() else { return Ok(n.is_empty()) };
    match c {
        '*' => {
            // Check the rest of the pattern is well formed even when the
            // name runs out.
            for k in 0..=n.len() {
                if glob_at(rest, &n[k..])? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        '?' => match n.split_first() {
            Some((_, nrest)) => glob_at(rest, nrest),
            None => glob_at(rest, n).map(|_| false),
        },
        '[' => {
            let (matched, after) = class(rest, n.first().copied())?;
            match n.split_first() {
                Some((_, nrest)) if matched => glob_at(after, nrest),
                _ => glob_at(after, &[]).map(|_| false),
            }
        }
        '\\' => {
            let (&e, after) = rest.split_first().ok_or(())?;
            match n.split_first() {
                Some((&x, nrest)) if x == e => glob_at(after, nrest),
                _ => glob_at(after, &[]).map(|_| false),
            }
        }
        c => match n.split_first() {
            Some((&x, nrest)) if x == c => glob_at(rest, nrest),
            _ => glob_at(rest, &[]).map(|_| false),
        },
    }
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
