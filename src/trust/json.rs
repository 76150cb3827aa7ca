//! A strict JSON reader that remembers where each value starts, so policy
//! errors can name the line to fix.
//!
//! It refuses what `encoding/json` with containers/image's paranoid object
//! reader refuses (duplicate keys, trailing data, numbers too large for a
//! float64) and a little more: lone UTF-16 surrogates and nesting deeper
//! than [`MAX_DEPTH`] (or the depth given to [`parse_bytes`]).
//!
//! Both policy files and signatures (payloads, Rekor bundles, cosign's
//! key files) are read with it; [`Node::object`], [`Node::string`] and
//! [`Node::exact_fields`] check a value's shape and name it in the error.

/// The deepest nesting [`parse`] accepts; a policy needs five levels.
pub const MAX_DEPTH: usize = 64;

/// A JSON value and the byte offset it starts at.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub at: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// The number as written.
    Number(String),
    String(String),
    Array(Vec<Node>),
    /// Members in the order written; keys are unique.
    Object(Vec<(String, Node)>),
}

impl Value {
    /// What a message calls it.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&[(String, Node)]> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Node]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The member `key` of an object; `None` when this is no object or
    /// has no such member (a lax read, as Go's structs read unknown JSON).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_object()?.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The number as the nearest float64 (as Go reads it into a
    /// `float64`); always finite, as [`parse`] refuses larger numbers.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => n.parse().ok(),
            _ => None,
        }
    }

    /// The number when it is written as an integer that fits an `i64`
    /// (as Go reads it into an `int64`: `1.0` and `1e3` are not).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => n.parse().ok(),
            _ => None,
        }
    }
}

/// A value of another kind or shape than its reader wants, at its offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ShapeError {
    pub at: usize,
    pub message: String,
}

impl Node {
    fn shape_err(&self, message: String) -> ShapeError {
        ShapeError { at: self.at, message }
    }

    /// The members of an object; `what` names the value in the error.
    pub fn object(&self, what: &str) -> Result<&[(String, Node)], ShapeError> {
        self.value
            .as_object()
            .ok_or_else(|| self.shape_err(format!("{what} is {}, not a JSON object", self.value.kind())))
    }

    /// The text of a string; `what` names the value in the error.
    pub fn string(&self, what: &str) -> Result<&str, ShapeError> {
        self.value.as_str().ok_or_else(|| self.shape_err(format!("{what} is {}, not a string", self.value.kind())))
    }

    /// The members of an object whose keys must be exactly `names` (all
    /// present, no others), in the order of `names`.
    pub fn exact_fields<'a, const N: usize>(
        &'a self,
        what: &str,
        names: [&str; N],
    ) -> Result<[&'a Node; N], ShapeError> {
        let members = self.object(what)?;
        if let Some((k, v)) = members.iter().find(|(k, _)| !names.contains(&k.as_str())) {
            return Err(v.shape_err(format!("{what} has an unknown field {k:?}")));
        }
        let mut out = [self; N];
        for (slot, name) in out.iter_mut().zip(names) {
            *slot = self.value.get(name).ok_or_else(|| self.shape_err(format!("{what} has no field {name:?}")))?;
        }
        Ok(out)
    }
}

/// A syntax error at a byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub at: usize,
    pub message: String,
}

/// The 1-based line of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Parses one JSON document (whitespace around it allowed, nothing else).
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    parse_nested(text, MAX_DEPTH)
}

/// Parses one JSON document given as bytes, as signatures come: bytes
/// that are not UTF-8 are refused first (naming the offset of the first
/// bad byte), and nesting may be `max_depth` levels deep.
pub fn parse_bytes(bytes: &[u8], max_depth: usize) -> Result<Node, SyntaxError> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| SyntaxError { at: e.valid_up_to(), message: "invalid UTF-8".into() })?;
    parse_nested(text, max_depth)
}

fn parse_nested(text: &str, max_depth: usize) -> Result<Node, SyntaxError> {
    let mut p = Parser { s: text.as_bytes(), text, i: 0, max_depth };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("unexpected data after the JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
    max_depth: usize,
}

impl Parser<'_> {
    fn err(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError { at: self.i, message: message.into() }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, b: u8) -> Result<(), SyntaxError> {
        if self.peek() == Some(b) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected {:?}", b as char)))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        let at = self.i;
        let value = match self.peek() {
            None => return Err(self.err("unexpected end of input")),
            Some(b'{') => {
                if depth >= self.max_depth {
                    return Err(self.err(format!("nested deeper than {} levels", self.max_depth)));
                }
                self.i += 1;
                let mut members: Vec<(String, Node)> = Vec::new();
                // A set, not a scan of `members`: a hostile object may have
                // hundreds of thousands of keys.
                let mut seen = std::collections::HashSet::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        if self.peek() != Some(b'"') {
                            return Err(self.err("expected a string key"));
                        }
                        let key_at = self.i;
                        let key = self.string()?;
                        if !seen.insert(key.clone()) {
                            return Err(SyntaxError { at: key_at, message: format!("duplicate key {key:?}") });
                        }
                        self.ws();
                        self.expect(b':')?;
                        self.ws();
                        let v = self.value(depth + 1)?;
                        members.push((key, v));
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(self.err("expected ',' or '}'")),
                        }
                    }
                }
                Value::Object(members)
            }
            Some(b'[') => {
                if depth >= self.max_depth {
                    return Err(self.err(format!("nested deeper than {} levels", self.max_depth)));
                }
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        items.push(self.value(depth + 1)?);
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(self.err("expected ',' or ']'")),
                        }
                    }
                }
                Value::Array(items)
            }
            Some(b'"') => Value::String(self.string()?),
            Some(b't') => self.literal("true", Value::Bool(true))?,
            Some(b'f') => self.literal("false", Value::Bool(false))?,
            Some(b'n') => self.literal("null", Value::Null)?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(_) => return Err(self.err("expected a JSON value")),
        };
        Ok(Node { at, value })
    }

    fn literal(&mut self, word: &str, v: Value) -> Result<Value, SyntaxError> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("expected a JSON value"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        let n = &self.text[start..self.i];
        // As Go (and serde_json) refuse: a number must fit a float64.
        if !n.parse::<f64>().is_ok_and(f64::is_finite) {
            return Err(SyntaxError { at: start, message: "number out of range".into() });
        }
        Ok(Value::Number(n.to_string()))
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let h = self.s.get(self.i..self.i + 4).ok_or_else(|| self.err("truncated \\u escape"))?;
        let h = std::str::from_utf8(h).map_err(|_| self.err("invalid \\u escape"))?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.err("invalid \\u escape"));
        }
        let v = u32::from_str_radix(h, 16).map_err(|_| self.err("invalid \\u escape"))?;
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let start = self.i;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.i += 1;
            }
            // Whole UTF-8 characters: the loop stops only at ASCII bytes.
            out.push_str(&self.text[start..self.i]);
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let e = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let c = if (0xd800..0xdc00).contains(&hi) {
                                if !self.s[self.i..].starts_with(b"\\u") {
                                    return Err(self.err("lone UTF-16 surrogate in \\u escape"));
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return Err(self.err("lone UTF-16 surrogate in \\u escape"));
                                }
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            } else {
                                hi
                            };
                            out.push(char::from_u32(c).ok_or_else(|| self.err("lone UTF-16 surrogate in \\u escape"))?);
                        }
                        _ => return Err(self.err("invalid escape in string")),
                    }
                }
                Some(_) => return Err(self.err("control character in string")),
            }
        }
    }
}

/// Builds an object node from members (offsets are 0: for writing only).
pub fn object(members: Vec<(&str, Value)>) -> Value {
    Value::Object(members.into_iter().map(|(k, v)| (k.to_string(), Node { at: 0, value: v })).collect())
}

/// Builds an array node (offsets are 0: for writing only).
pub fn array(items: Vec<Value>) -> Value {
    Value::Array(items.into_iter().map(|v| Node { at: 0, value: v }).collect())
}

/// Writes `v` as Go's `json.MarshalIndent(v, "", "    ")` does (what
/// podman writes policy.json with): members in order, 4-space indents,
/// `<`, `>`, `&`, U+2028 and U+2029 escaped, no final newline.
pub fn to_pretty(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v, 0);
    out
}

fn indent(out: &mut String, level: usize) {
    out.push('\n');
    for _ in 0..level {
        out.push_str("    ");
    }
}

fn write_value(out: &mut String, v: &Value, level: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, level + 1);
                write_value(out, &item.value, level + 1);
            }
            indent(out, level);
            out.push(']');
        }
        Value::Object(members) if members.is_empty() => out.push_str("{}"),
        Value::Object(members) => {
            out.push('{');
            for (i, (k, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, level + 1);
                write_string(out, k);
                out.push_str(": ");
                write_value(out, &item.value, level + 1);
            }
            indent(out, level);
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table() {
        let ok = [
            ("{}", Value::Object(vec![])),
            (" [1, -2.5e3, true, null] ", Value::Array(vec![])),
            (r#""a\u00e9\ud83d\ude00\n""#, Value::String("aé😀\n".into())),
        ];
        for (text, want) in ok {
            let got = parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            if let Value::String(_) = want {
                assert_eq!(got.value, want);
            }
        }
        let bad = [
            "",
            "{",
            r#"{"a":1,"a":2}"#,
            "{} x",
            "[1,]",
            "01",
            "1.",
            r#""\ud800""#,
            r#""\x""#,
            "\"a\u{1}\"",
            "tru",
            "{\"a\" 1}",
            "[\"a\"",
        ];
        for text in bad {
            assert!(parse(text).is_err(), "{text:?} should be refused");
        }
        // Many keys: checked for duplicates in linear time.
        let many: String = (0..200_000).map(|i| format!("\"k{i}\":0,")).collect();
        let many = format!("{{{}\"end\":0}}", many);
        let t = std::time::Instant::now();
        assert!(parse(&many).is_ok());
        assert!(t.elapsed() < std::time::Duration::from_secs(20));
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep).is_err());
        let ok_deep = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok_deep).is_ok());
    }

    #[test]
    fn offsets_and_lines() {
        let text = "{\n  \"a\": [\n    \"x\"\n  ]\n}";
        let n = parse(text).unwrap();
        let Value::Object(m) = &n.value else { panic!() };
        let Value::Array(items) = &m[0].1.value else { panic!() };
        assert_eq!(line_of(text, items[0].at), 3);
        assert_eq!(line_of(text, m[0].1.at), 2);
        let e = parse("{\n\"a\": 1,\n\"a\": 2}").unwrap_err();
        assert_eq!(line_of("{\n\"a\": 1,\n\"a\": 2}", e.at), 3);
    }

    #[test]
    fn writes_as_go_does() {
        let v = object(vec![
            ("default", array(vec![object(vec![("type", Value::String("reject".into()))])])),
            ("e", object(vec![])),
            ("s", Value::String("a<b>&\"\\\n\u{1}é".into())),
        ]);
        let want = "{\n    \"default\": [\n        {\n            \"type\": \"reject\"\n        }\n    ],\n    \"e\": {},\n    \"s\": \"a\\u003cb\\u003e\\u0026\\\"\\\\\\n\\u0001é\"\n}";
        assert_eq!(to_pretty(&v), want);
        assert_eq!(to_pretty(&parse(&to_pretty(&v)).unwrap().value), want);
    }

    #[test]
    fn bytes_numbers_and_depth() {
        let e = parse_bytes(b"[\"a\", \"\xff\"]", MAX_DEPTH).unwrap_err();
        assert_eq!((e.at, e.message.as_str()), (7, "invalid UTF-8"));
        assert!(parse_bytes("[\"é\"]".as_bytes(), MAX_DEPTH).is_ok());
        let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
        assert!(parse_bytes(deep(100).as_bytes(), 100).is_ok());
        assert!(parse_bytes(deep(101).as_bytes(), 100).is_err());
        for big in ["1e400", "-1e309", &"9".repeat(400)] {
            assert_eq!(parse(big).unwrap_err().message, "number out of range", "{big}");
        }
        let n = |t: &str| parse(t).unwrap().value;
        assert_eq!(n("1e-400").as_f64(), Some(0.0));
        assert_eq!(n("9007199254740993").as_i64(), Some(9007199254740993));
        assert_eq!(n("-9223372036854775808").as_i64(), Some(i64::MIN));
        for not_i64 in ["9223372036854775808", "1.0", "1e3", "\"1\""] {
            assert_eq!(n(not_i64).as_i64(), None, "{not_i64}");
        }
        assert_eq!(n("1e3").as_f64(), Some(1000.0));
        assert_eq!(n("\"1\"").as_f64(), None);
    }

    #[test]
    fn shape_checks_name_the_value() {
        let text = r#"{"a": "x", "b": [1], "c": {"d": null}}"#;
        let doc = parse(text).unwrap();
        let e = doc.exact_fields("the doc", ["a", "b"]).unwrap_err();
        assert_eq!((e.at, e.message.as_str()), (text.find("{\"d").unwrap(), "the doc has an unknown field \"c\""));
        let [c, b, a] = doc.exact_fields("the doc", ["c", "b", "a"]).unwrap();
        assert_eq!((a.string("a").unwrap(), b.value.as_array().map(<[Node]>::len)), ("x", Some(1)));
        assert_eq!(c.value.get("d").map(|d| &d.value), Some(&Value::Null));
        assert_eq!(c.object("c").unwrap().len(), 1);
        let e = doc.exact_fields("the doc", ["a", "b", "c", "e"]).unwrap_err();
        assert_eq!((e.at, e.to_string().as_str()), (0, "the doc has no field \"e\""));
        assert_eq!(b.string("field b").unwrap_err().to_string(), "field b is an array, not a string");
        assert_eq!(a.object("field a").unwrap_err().to_string(), "field a is a string, not a JSON object");
        assert_eq!(a.value.get("x"), None);
        assert_eq!(b.value.as_object(), None);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn agrees_with_serde_json(s in "[\\[\\]{}\",:0-9a-z \\\\-]{0,40}") {
            let theirs = serde_json::from_str::<serde_json::Value>(&s);
            match parse(&s) {
                Ok(_) => prop_assert!(theirs.is_ok(), "{}", s),
                // Only a duplicate key makes us refuse what serde_json takes.
                Err(e) => prop_assert!(theirs.is_err() || e.message.contains("duplicate"), "{}: {:?}", s, e),
            }
        }

        #[test]
        fn bytes_agree_with_serde_json(b in proptest::collection::vec(proptest::sample::select(b"[]{}\",:019e.-a \\u\xff\xc3\xa9".to_vec()), 0..40)) {
            let theirs = serde_json::from_slice::<serde_json::Value>(&b);
            match parse_bytes(&b, 127) {
                Ok(_) => prop_assert!(theirs.is_ok(), "{:?}", b),
                Err(e) => prop_assert!(theirs.is_err() || e.message.contains("duplicate"), "{:?}: {:?}", b, e),
            }
        }
    }
}
