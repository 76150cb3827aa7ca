//! What simple and sigstore signatures share: their error type, the strict
//! JSON reading containers/image applies to signature payloads (exact
//! fields, no duplicate keys), and the payload both formats sign.

use crate::digest::Digest;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::BTreeSet;
use std::fmt;

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

/// A JSON value read with duplicate object keys refused; objects keep their
/// order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    pub(crate) fn parse(bytes: &[u8]) -> Result<Json, SignatureError> {
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("payload is not valid JSON: {e}")))
    }

    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    /// The object's fields, which must be exactly `names` (all present).
    pub(crate) fn exact_fields<'a, const N: usize>(
        &'a self,
        what: &str,
        names: [&str; N],
    ) -> Result<[&'a Json; N], SignatureError> {
        let Json::Object(fields) = self else {
            return Err(invalid(format!("{what} is {}, not a JSON object", self.kind())));
        };
        for (k, _) in fields {
            if !names.contains(&k.as_str()) {
                return Err(invalid(format!("{what} has an unknown field {k:?}")));
            }
        }
        let mut out = [&Json::Null; N];
        for (i, name) in names.iter().enumerate() {
            match fields.iter().find(|(k, _)| k == name) {
                Some((_, v)) => out[i] = v,
                None => return Err(invalid(format!("{what} has no field {name:?}"))),
            }
        }
        Ok(out)
    }

    pub(crate) fn object(&self, what: &str) -> Result<&[(String, Json)], SignatureError> {
        match self {
            Json::Object(f) => Ok(f),
            _ => Err(invalid(format!("{what} is {}, not a JSON object", self.kind()))),
        }
    }

    pub(crate) fn string(&self, what: &str) -> Result<&str, SignatureError> {
        match self {
            Json::String(s) => Ok(s),
            _ => Err(invalid(format!("{what} is {}, not a string", self.kind()))),
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
                Ok(Json::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Json, E> {
                Ok(Json::Number(n as f64))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Json, E> {
                Ok(Json::Number(n as f64))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Json, E> {
                Ok(Json::Number(n))
            }
            fn visit_str<E>(self, s: &str) -> Result<Json, E> {
                Ok(Json::String(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Json, E> {
                Ok(Json::String(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = seq.next_element()? {
                    v.push(x);
                }
                Ok(Json::Array(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut seen = BTreeSet::new();
                let mut v = Vec::new();
                while let Some((k, x)) = map.next_entry::<String, Json>()? {
                    if !seen.insert(k.clone()) {
                        return Err(de::Error::custom(format!("duplicate key {k:?}")));
                    }
                    v.push((k, x));
                }
                Ok(Json::Object(v))
            }
        }
        d.deserialize_any(V)
    }
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
    let doc = Json::parse(bytes)?;
    let [critical, optional] = doc.exact_fields("the payload", ["critical", "optional"])?;
    let mut creator = None;
    let mut timestamp = None;
    if !(optional_may_be_null && *optional == Json::Null) {
        for (k, v) in optional.object("payload field \"optional\"")? {
            match k.as_str() {
                "creator" => creator = Some(v.string("payload field \"optional.creator\"")?.to_owned()),
                "timestamp" => {
                    let Json::Number(n) = v else {
                        return Err(invalid(format!(
                            "payload field \"optional.timestamp\" is {}, not a number",
                            v.kind()
                        )));
                    };
                    let i = *n as i64;
                    if i as f64 != *n {
                        return Err(invalid("payload field \"optional.timestamp\" is not an integer"));
                    }
                    timestamp = Some(i);
                }
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
