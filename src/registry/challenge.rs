//! `WWW-Authenticate` challenges (RFC 7235): `Basic realm="x"`,
//! `Bearer realm="https://auth/token",service="reg",scope="repository:a:pull"`.
//! Pure; the input is hostile (a registry's answer).

/// One challenge: the scheme (lower-cased) and its parameters (names lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Longest header value parsed; a longer one is refused.
const MAX_LEN: usize = 16 * 1024;

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Parses every challenge in a header value. Malformed input yields the
/// challenges parsed before the fault (never a panic).
pub fn parse(header: &str) -> Vec<Challenge> {
    if header.len() > MAX_LEN {
        return Vec::new();
    }
    let s: Vec<char> = header.chars().collect();
    let mut i = 0;
    let mut out: Vec<Challenge> = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && (s[*i] == ' ' || s[*i] == '\t') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| -> String {
        let start = *i;
        while *i < s.len() && is_token_char(s[*i]) {
            *i += 1;
        }
        s[start..*i].iter().collect()
    };
    loop {
        skip_ws(&mut i);
        while i < s.len() && s[i] == ',' {
            i += 1;
            skip_ws(&mut i);
        }
        if i >= s.len() {
            break;
        }
        let scheme = token(&mut i);
        if scheme.is_empty() {
            break;
        }
        let mut ch = Challenge { scheme: scheme.to_ascii_lowercase(), params: Vec::new() };
        // Parameters: name=value or name="quoted", comma separated. A token
        // followed by a space (not '=') starts the next challenge.
        loop {
            skip_ws(&mut i);
            let save = i;
            let name = token(&mut i);
            skip_ws(&mut i);
            if name.is_empty() || i >= s.len() || s[i] != '=' {
                i = save;
                break;
            }
            i += 1;
            skip_ws(&mut i);
            let value = if i < s.len() && s[i] == '"' {
                i += 1;
                let mut v = String::new();
                let mut closed = false;
                while i < s.len() {
                    match s[i] {
                        '\\' if i + 1 < s.len() => {
                            v.push(s[i + 1]);
                            i += 2;
                        }
                        '"' => {
                            i += 1;
                            closed = true;
                            break;
                        }
                        c => {
                            v.push(c);
                            i += 1;
                        }
                    }
                }
                if !closed {
                    out.push(ch);
                    return out;
                }
                v
            } else {
                token(&mut i)
            };
            ch.params.push((name.to_ascii_lowercase(), value));
            skip_ws(&mut i);
            if i < s.len() && s[i] == ',' {
                i += 1;
            } else {
                break;
            }
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bearer_with_scope_containing_commas() {
        let c = parse(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example.com/token"));
        assert_eq!(c[0].param("service"), Some("registry.example.com"));
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull,push"));
    }

    #[test]
    fn basic_and_several_challenges() {
        let c = parse(r#"Basic realm="Registry Realm", Bearer realm="https://a/t",service=x"#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));
        assert_eq!(c[1].param("service"), Some("x"));
    }

    #[test]
    fn escapes_and_bad_input() {
        let c = parse(r#"Bearer realm="a\"b""#);
        assert_eq!(c[0].param("realm"), Some("a\"b"));
        assert_eq!(parse("").len(), 0);
        assert_eq!(parse("Bearer realm=\"unterminated").len(), 1);
        assert_eq!(parse(&"x".repeat(MAX_LEN + 1)).len(), 0);
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn round_trips_quoted_params(realm in "[ -~]{0,40}", service in "[a-z0-9.:-]{1,20}") {
            let quoted = realm.replace('\\', "\\\\").replace('"', "\\\"");
            let h = format!("Bearer realm=\"{quoted}\",service=\"{service}\"");
            let c = parse(&h);
            prop_assert_eq!(c.len(), 1);
            prop_assert_eq!(c[0].param("realm"), Some(realm.as_str()));
            prop_assert_eq!(c[0].param("service"), Some(service.as_str()));
        }
    }
}
