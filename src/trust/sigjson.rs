//! What simple and sigstore signatures share: their error type, how their
//! JSON is read (strictly, with [`super::json`]), the payload both formats
//! sign, and Go's way of writing JSON.

use super::json::{self, Node, Value};
use crate::digest::Digest;

/// Why a signature, or the key to check it with, was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("signature of {size} bytes is larger than the {max} bytes img reads; it is refused")]
    TooLarge { size: u64, max: u64 },
    #[error("invalid signature: {0}")]
    Invalid(String),
    #[error("invalid key: {0}")]
    Key(String),
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("{0} is not supported; use a public key (keyPath/keyData) instead")]
    Unsupported(String),
}

pub(crate) fn invalid(msg: impl Into<String>) -> SignatureError {
    SignatureError::Invalid(msg.into())
}

impl From<json::ShapeError> for SignatureError {
    fn from(e: json::ShapeError) -> SignatureError {
        SignatureError::Invalid(e.message)
    }
}

/// The deepest nesting a signature's JSON may have: far more than any
/// signature format needs (containers/image sets no limit; 127 is
/// serde_json's).
pub(crate) const MAX_DEPTH: usize = 127;

/// Reads JSON bytes of a signature with [`json::parse_bytes`]; `what`
/// names them in the error.
pub(crate) fn parse_json(bytes: &[u8], what: &str) -> Result<Node, SignatureError> {
    json::parse_bytes(bytes, MAX_DEPTH)
        .map_err(|e| invalid(format!("{what} is not valid JSON: {} at byte {}", e.message, e.at)))
}

/// The claims of a signature payload, both formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claims {
    pub identity: String,
    pub manifest_digest: Digest,
    pub creator: Option<String>,
    pub timestamp: Option<i64>,
}

/// Reads `{"critical": {"type", "image", "identity"}, "optional": {...}}`
/// as containers/image does: exact critical fields, `optional` an object
/// (or `null` when `optional_may_be_null`, as cosign writes), whose
/// `creator` must be a string and `timestamp` an integral number.
pub(crate) fn parse_claims(
    bytes: &[u8],
    want_type: &str,
    optional_may_be_null: bool,
) -> Result<Claims, SignatureError> {
    let doc = parse_json(bytes, "the payload")?;
    let [critical, optional] = doc.exact_fields("the payload", ["critical", "optional"])?;
    let mut creator = None;
    let mut timestamp = None;
    if !(optional_may_be_null && optional.value == Value::Null) {
        for (k, v) in optional.object("payload field \"optional\"")? {
            match k.as_str() {
                "creator" => creator = Some(v.string("payload field \"optional.creator\"")?.to_owned()),
                "timestamp" => timestamp = Some(integer(&v.value, "payload field \"optional.timestamp\"")?),
                _ => {}
            }
        }
    }
    let [typ, image, identity] = critical.exact_fields("payload field \"critical\"", ["type", "image", "identity"])?;
    let typ = typ.string("payload field \"critical.type\"")?;
    if typ != want_type {
        return Err(invalid(format!("unrecognized signature type {typ:?} (expected {want_type:?})")));
    }
    let [digest] = image.exact_fields("payload field \"critical.image\"", ["docker-manifest-digest"])?;
    let digest = digest.string("payload field \"critical.image.docker-manifest-digest\"")?;
    let manifest_digest = Digest::parse(digest)
        .map_err(|e| invalid(format!("payload field \"critical.image.docker-manifest-digest\": {e}")))?;
    let [reference] = identity.exact_fields("payload field \"critical.identity\"", ["docker-reference"])?;
    let identity = reference.string("payload field \"critical.identity.docker-reference\"")?.to_owned();
    Ok(Claims { identity, manifest_digest, creator, timestamp })
}

/// An integral number: one written as an integer is read exactly, as Go
/// reads an `int64`; one written with a fraction or exponent (`1e3`), which
/// Go refuses, is taken when its float64 value is a whole `i64`.
fn integer(v: &Value, what: &str) -> Result<i64, SignatureError> {
    if let Some(i) = v.as_i64() {
        return Ok(i);
    }
    let Some(n) = v.as_f64() else {
        return Err(invalid(format!("{what} is {}, not a number", v.kind())));
    };
    // 2^63 is exact in a float64; i64::MAX is not.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if n.fract() != 0.0 {
        return Err(invalid(format!("{what} is not an integer")));
    }
    if !(-LIMIT..LIMIT).contains(&n) {
        return Err(invalid(format!("{what} is out of the 64-bit integer range")));
    }
    Ok(n as i64)
}

/// Writes the payload as Go's `json.Marshal` of nested maps does: keys
/// sorted, no spaces, `<`, `>`, `&`, U+2028 and U+2029 escaped.
pub(crate) fn write_claims(
    typ: &str,
    identity: &str,
    digest: &Digest,
    creator: Option<&str>,
    timestamp: Option<i64>,
) -> Vec<u8> {
    let mut optional = serde_json::Map::new();
    if let Some(c) = creator {
        optional.insert("creator".into(), c.into());
    }
    if let Some(t) = timestamp {
        optional.insert("timestamp".into(), t.into());
    }
    let doc = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest.as_str()},
            "type": typ,
        },
        "optional": optional,
    });
    go_json(&doc)
}

/// `serde_json::to_vec` with Go's HTML-safe escapes (serde_json's maps
/// are sorted already, as Go's are).
pub(crate) fn go_json(v: &serde_json::Value) -> Vec<u8> {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const T: &str = "atomic container signature";

    fn doc(critical: &str, optional: &str) -> Vec<u8> {
        format!(r#"{{"critical":{critical},"optional":{optional}}}"#).into_bytes()
    }

    fn crit(extra: &str) -> String {
        format!(
            r#"{{"type":"{T}","image":{{"docker-manifest-digest":"{D}"}},"identity":{{"docker-reference":"example.com/a:b"}}{extra}}}"#
        )
    }

    #[test]
    fn accepts_valid_and_reads_optional_fields() {
        let c = parse_claims(&doc(&crit(""), r#"{"creator":"x","timestamp":1e3,"other":[1]}"#), T, false).unwrap();
        assert_eq!(c.identity, "example.com/a:b");
        assert_eq!(c.manifest_digest.as_str(), D);
        assert_eq!(c.creator.as_deref(), Some("x"));
        assert_eq!(c.timestamp, Some(1000));
    }

    #[test]
    fn refuses_what_containers_image_refuses() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "not valid JSON"),
            (b"[]".to_vec(), "not a JSON object"),
            (doc(&crit(""), "{}").into_iter().chain(b"x".iter().copied()).collect(), "not valid JSON"),
            (doc(&crit(r#","x":1"#), "{}"), "unknown field \"x\""),
            (doc(&crit(""), "null"), "not a JSON object"),
            (doc(&crit(""), r#"{"timestamp":1.5}"#), "not an integer"),
            (doc(&crit(""), r#"{"timestamp":"1"}"#), "not a number"),
            (doc(&crit(""), r#"{"creator":1}"#), "not a string"),
            (doc(&crit(""), r#"{"a":1,"a":2}"#), "duplicate key"),
            (format!(r#"{{"critical":{},"optional":{{}},"x":1}}"#, crit("")).into_bytes(), "unknown field"),
            (format!(r#"{{"critical":{}}}"#, crit("")).into_bytes(), "no field \"optional\""),
            (doc(&crit("").replace(T, "other"), "{}"), "unrecognized signature type"),
            (doc(&crit("").replace(D, "sha256:ABC"), "{}"), "docker-manifest-digest"),
            (doc(&crit("").replace("\"example.com/a:b\"", "1"), "{}"), "not a string"),
            (doc(&crit("").replace("}}", ",\"y\":1}}"), "{}"), "unknown field \"y\""),
        ];
        for (input, want) in cases {
            let err = parse_claims(&input, T, false).unwrap_err().to_string();
            assert!(err.contains(want), "{}: {err} (wanted {want})", String::from_utf8_lossy(&input));
        }
    }

    #[test]
    fn optional_null_only_where_allowed() {
        assert!(parse_claims(&doc(&crit(""), "null"), T, true).is_ok());
    }

    #[test]
    fn writes_go_json() {
        let d = Digest::parse(D).unwrap();
        let out = write_claims(T, "a<b", &d, Some("c"), Some(5));
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"a\u003cb"}},"image":{{"docker-manifest-digest":"{D}"}},"type":"{T}"}},"optional":{{"creator":"c","timestamp":5}}}}"#
            )
        );
        let c = parse_claims(&out, T, false).unwrap();
        assert_eq!(c.identity, "a<b");
    }

    #[test]
    fn timestamps_are_read_exactly() {
        let ts = |t: &str| parse_claims(&doc(&crit(""), &format!(r#"{{"timestamp":{t}}}"#)), T, false);
        assert_eq!(ts("9007199254740993").unwrap().timestamp, Some(9007199254740993));
        assert_eq!(ts("-9223372036854775808").unwrap().timestamp, Some(i64::MIN));
        assert_eq!(ts("-1.0").unwrap().timestamp, Some(-1));
        for (t, want) in [
            ("9223372036854775808", "out of the 64-bit integer range"),
            ("9.3e18", "out of the 64-bit integer range"),
            ("1e400", "not valid JSON: number out of range"),
            ("null", "is null, not a number"),
        ] {
            let err = ts(t).unwrap_err().to_string();
            assert!(err.contains(want), "{t}: {err}");
        }
    }

    #[test]
    fn reads_bytes_as_containers_image_and_serde_json_did() {
        let mut bad = doc(&crit(""), r#"{"creator":"é"}"#);
        let at = bad.iter().position(|&b| b == 0xc3).unwrap();
        bad[at] = 0xff;
        let err = parse_claims(&bad, T, false).unwrap_err().to_string();
        assert!(err.ends_with(&format!("the payload is not valid JSON: invalid UTF-8 at byte {at}")), "{err}");
        // Nesting up to serde_json's limit, which img used before.
        for n in [MAX_DEPTH - 3, MAX_DEPTH - 2, MAX_DEPTH - 1] {
            let input = doc(&crit(""), &format!(r#"{{"x":{}{}}}"#, "[".repeat(n), "]".repeat(n)));
            let theirs = serde_json::from_slice::<serde_json::Value>(&input).is_ok();
            assert_eq!(parse_claims(&input, T, false).is_ok(), theirs, "{n}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = parse_claims(&data, T, true);
        }

        #[test]
        fn round_trips(identity in "\\PC{0,40}", creator in proptest::option::of("\\PC{0,20}"), ts in proptest::option::of(-(1i64 << 52)..(1i64 << 52))) {
            let d = Digest::parse(D).unwrap();
            let c = parse_claims(&write_claims(T, &identity, &d, creator.as_deref(), ts), T, false).unwrap();
            proptest::prop_assert_eq!(c.identity, identity);
            proptest::prop_assert_eq!(c.creator, creator);
            proptest::prop_assert_eq!(c.timestamp, ts);
        }
    }
}
