//! Image metadata: manifests, indexes and configs (OCI and Docker schema 2),
//! parsed from bytes and checked before anything trusts them. Pure: no IO.
//!
//! Checks made here (each one a known attack, see ARCHITECTURE.md):
//! size limits (CVE-2020-1702), duplicate JSON keys at any depth
//! (CVE-2014-8179), manifest/index ambiguity (CVE-2021-41190), digest syntax
//! before any path or URL is built from it (CVE-2024-3727).

use crate::digest::{Digest, DigestError};
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Largest manifest or index read into memory (containers/image's limit).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Largest image config read into memory.
pub const MAX_CONFIG_SIZE: u64 = 4 << 20;
/// Largest number of layers accepted in one image.
pub const MAX_LAYERS: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("{what} is {size} bytes, over the {limit}-byte limit")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("{what} is not valid JSON: {msg}")]
    Json { what: String, msg: String },
    #[error("{what} has the key {key:?} twice; refusing an ambiguous document")]
    DuplicateKey { what: String, key: String },
    #[error("{what} is ambiguous: it has both {a:?} and {b:?} fields (CVE-2021-41190)")]
    Ambiguous { what: String, a: &'static str, b: &'static str },
    #[error("{what} declares media type {declared:?} but its content is a {actual}")]
    MediaTypeMismatch { what: String, declared: String, actual: String },
    #[error("{what}: {source}")]
    Digest { what: String, source: DigestError },
    #[error("{what} is a Docker schema 1 manifest, which is not supported; push the image again with a current docker or podman")]
    Schema1 { what: String },
    #[error("{what}: unsupported schemaVersion {version}")]
    SchemaVersion { what: String, version: u64 },
    #[error("{what} has {n} layers, over the limit of {limit}")]
    TooManyLayers { what: String, n: usize, limit: usize },
    #[error("{what}: {msg}")]
    Invalid { what: String, msg: String },
}

pub type Result<T> = std::result::Result<T, ImageError>;

/// A validated content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub annotations: Vec<(String, String)>,
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: String,
}

impl Descriptor {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A single-image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// A multi-image index (OCI index or Docker manifest list).
#[derive(Debug, Clone)]
pub struct Index {
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// What a manifest-like document turned out to be.
#[derive(Debug, Clone)]
pub enum Document {
    Manifest(Manifest),
    Index(Index),
}

fn check_size(what: &str, bytes: &[u8], limit: u64) -> Result<()> {
    if bytes.len() as u64 > limit {
        return Err(ImageError::TooLarge { what: what.to_string(), size: bytes.len() as u64, limit });
    }
    Ok(())
}

/// Refuses JSON with a duplicate object key at any depth: serde_json keeps
/// the last value silently, another parser may keep the first.
pub fn check_duplicate_keys(what: &str, bytes: &[u8]) -> Result<()> {
    struct V(Option<String>);
    impl<'de> Visitor<'de> for &mut V {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
            while seq.next_element_seed(&mut *self)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
            let mut seen = HashSet::new();
            while let Some(k) = map.next_key::<String>()? {
                if !seen.insert(k.clone()) && self.0.is_none() {
                    self.0 = Some(k);
                }
                map.next_value_seed(&mut *self)?;
            }
            Ok(())
        }
    }
    impl<'de> serde::de::DeserializeSeed<'de> for &mut V {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    let mut v = V(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde::de::DeserializeSeed::deserialize(&mut v, &mut de)
        .and_then(|_| de.end())
        .map_err(|e| ImageError::Json { what: what.to_string(), msg: e.to_string() })?;
    if let Some(key) = v.0 {
        return Err(ImageError::DuplicateKey { what: what.to_string(), key });
    }
    Ok(())
}

fn to_descriptor(what: &str, d: &oci_spec::image::Descriptor) -> Result<Descriptor> {
    let digest =
        Digest::parse(d.digest().as_ref()).map_err(|source| ImageError::Digest { what: what.to_string(), source })?;
    let annotations = d
        .annotations()
        .as_ref()
        .map(|a| {
            let mut v: Vec<_> = a.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    let platform = d.platform().as_ref().map(|p| Platform {
        os: p.os().to_string(),
        architecture: p.architecture().to_string(),
        variant: p.variant().clone().unwrap_or_default(),
    });
    Ok(Descriptor { media_type: d.media_type().to_string(), digest, size: d.size(), annotations, platform })
}

/// Parses a manifest or index. `declared` is the media type the referrer
/// (a descriptor, a registry's Content-Type) claims, if any.
pub fn parse_document(what: &str, bytes: &[u8], declared: Option<&str>) -> Result<Document> {
    check_size(what, bytes, MAX_MANIFEST_SIZE)?;
    check_duplicate_keys(what, bytes)?;
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ImageError::Json { what: what.to_string(), msg: e.to_string() })?;
    let obj =
        v.as_object().ok_or_else(|| ImageError::Invalid { what: what.to_string(), msg: "not a JSON object".into() })?;
    let schema = obj.get("schemaVersion").and_then(|s| s.as_u64()).unwrap_or(0);
    let inner_mt = obj.get("mediaType").and_then(|m| m.as_str()).map(str::to_string);
    if schema == 1
        || matches!(inner_mt.as_deref(), Some(DOCKER_SCHEMA1) | Some(DOCKER_SCHEMA1_SIGNED))
        || matches!(declared, Some(DOCKER_SCHEMA1) | Some(DOCKER_SCHEMA1_SIGNED))
    {
        return Err(ImageError::Schema1 { what: what.to_string() });
    }
    if schema != 2 {
        return Err(ImageError::SchemaVersion { what: what.to_string(), version: schema });
    }
    let has = |k: &str| obj.contains_key(k);
    let is_index = has("manifests");
    if is_index && (has("layers") || has("config")) {
        return Err(ImageError::Ambiguous {
            what: what.to_string(),
            a: "manifests",
            b: if has("layers") { "layers" } else { "config" },
        });
    }
    if has("fsLayers") || has("history") && !has("config") {
        return Err(ImageError::Schema1 { what: what.to_string() });
    }
    // Digests are checked here, before the typed parse, so that a bad one
    // is named in the error (and never reaches a path or a URL).
    let check_digest = |what_d: String, d: &serde_json::Value| -> Result<()> {
        let s = d.as_str().unwrap_or("");
        Digest::parse(s).map(|_| ()).map_err(|source| ImageError::Digest { what: what_d, source })
    };
    for key in ["manifests", "layers"] {
        if let Some(list) = obj.get(key).and_then(|l| l.as_array()) {
            for (i, d) in list.iter().enumerate() {
                check_digest(
                    format!("{what} {} {i}", key.trim_end_matches('s')),
                    d.get("digest").unwrap_or(&serde_json::Value::Null),
                )?;
            }
        }
    }
    if let Some(c) = obj.get("config") {
        check_digest(format!("{what} config"), c.get("digest").unwrap_or(&serde_json::Value::Null))?;
    }
    let actual_kind = if is_index { "index" } else { "manifest" };
    for claimed in [inner_mt.as_deref(), declared].into_iter().flatten() {
        let claimed_kind = match claimed {
            OCI_INDEX | DOCKER_LIST => Some("index"),
            OCI_MANIFEST | DOCKER_MANIFEST => Some("manifest"),
            _ => None,
        };
        if let Some(k) = claimed_kind {
            if k != actual_kind {
                return Err(ImageError::MediaTypeMismatch {
                    what: what.to_string(),
                    declared: claimed.to_string(),
                    actual: actual_kind.to_string(),
                });
            }
        }
    }
    if let (Some(inner), Some(decl)) = (inner_mt.as_deref(), declared) {
        if inner != decl {
            return Err(ImageError::MediaTypeMismatch {
                what: what.to_string(),
                declared: decl.to_string(),
                actual: inner.to_string(),
            });
        }
    }
    if is_index {
        let idx = ImageIndex::from_reader(bytes)
            .map_err(|e| ImageError::Invalid { what: what.to_string(), msg: e.to_string() })?;
        let manifests = idx
            .manifests()
            .iter()
            .enumerate()
            .map(|(i, d)| to_descriptor(&format!("{what} manifest {i}"), d))
            .collect::<Result<Vec<_>>>()?;
        let media_type = inner_mt.or(declared.map(str::to_string)).unwrap_or_else(|| OCI_INDEX.to_string());
        Ok(Document::Index(Index { media_type, manifests }))
    } else {
        let m = ImageManifest::from_reader(bytes)
            .map_err(|e| ImageError::Invalid { what: what.to_string(), msg: e.to_string() })?;
        if m.layers().len() > MAX_LAYERS {
            return Err(ImageError::TooManyLayers { what: what.to_string(), n: m.layers().len(), limit: MAX_LAYERS });
        }
        let config = to_descriptor(&format!("{what} config"), m.config())?;
        let layers = m
            .layers()
            .iter()
            .enumerate()
            .map(|(i, d)| to_descriptor(&format!("{what} layer {i}"), d))
            .collect::<Result<Vec<_>>>()?;
        let media_type = inner_mt.or(declared.map(str::to_string)).unwrap_or_else(|| OCI_MANIFEST.to_string());
        Ok(Document::Manifest(Manifest { media_type, config, layers }))
    }
}

/// A parsed image config: the typed view plus the raw JSON for display.
#[derive(Debug, Clone)]
pub struct Config {
    pub typed: ImageConfiguration,
    pub raw: serde_json::Value,
    pub diff_ids: Vec<Digest>,
    pub created: Option<i64>,
}

impl Config {
    pub fn labels_json(&self) -> String {
        let labels = self.raw.get("config").and_then(|c| c.get("Labels")).cloned();
        match labels {
            Some(v @ serde_json::Value::Object(_)) => v.to_string(),
            _ => "{}".into(),
        }
    }
    pub fn architecture(&self) -> String {
        self.typed.architecture().to_string()
    }
    pub fn os(&self) -> String {
        self.typed.os().to_string()
    }
    pub fn variant(&self) -> String {
        self.typed.variant().clone().unwrap_or_default()
    }
    pub fn author(&self) -> String {
        self.typed.author().clone().unwrap_or_default()
    }
}

/// Parses and checks an image config.
pub fn parse_config(what: &str, bytes: &[u8]) -> Result<Config> {
    check_size(what, bytes, MAX_CONFIG_SIZE)?;
    check_duplicate_keys(what, bytes)?;
    let raw: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ImageError::Json { what: what.to_string(), msg: e.to_string() })?;
    if !raw.is_object() {
        return Err(ImageError::Invalid { what: what.to_string(), msg: "not a JSON object".into() });
    }
    let typed: ImageConfiguration = serde_json::from_value(raw.clone())
        .map_err(|e| ImageError::Invalid { what: what.to_string(), msg: format!("not an image config: {e}") })?;
    if typed.rootfs().typ() != "layers" {
        return Err(ImageError::Invalid {
            what: what.to_string(),
            msg: format!("rootfs.type is {:?}, expected \"layers\"", typed.rootfs().typ()),
        });
    }
    if typed.rootfs().diff_ids().len() > MAX_LAYERS {
        return Err(ImageError::TooManyLayers {
            what: what.to_string(),
            n: typed.rootfs().diff_ids().len(),
            limit: MAX_LAYERS,
        });
    }
    let diff_ids = typed
        .rootfs()
        .diff_ids()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Digest::parse(d).map_err(|source| ImageError::Digest { what: format!("{what} diff_id {i}"), source })
        })
        .collect::<Result<Vec<_>>>()?;
    let created = typed.created().as_deref().and_then(crate::timefmt::parse_rfc3339);
    Ok(Config { typed, raw, diff_ids, created })
}

/// The layer media type for a compression, in the OCI or Docker family.
pub fn layer_media_type(docker: bool, c: crate::compression::Compression) -> Option<&'static str> {
    use crate::compression::Compression as C;
    Some(match (docker, c) {
        (true, C::None) => DOCKER_LAYER,
        (true, C::Gzip) => DOCKER_LAYER_GZIP,
        (false, C::None) => OCI_LAYER,
        (false, C::Gzip) => OCI_LAYER_GZIP,
        (false, C::Zstd) => OCI_LAYER_ZSTD,
        _ => return None,
    })
}

/// True if `mt` names a layer img can read as a tar (possibly compressed).
pub fn is_tar_layer(mt: &str) -> bool {
    matches!(
        mt,
        OCI_LAYER
            | OCI_LAYER_GZIP
            | OCI_LAYER_ZSTD
            | DOCKER_LAYER
            | DOCKER_LAYER_GZIP
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    )
}

/// Builds a manifest's JSON bytes (deterministic: fixed key order, no spaces).
pub fn build_manifest(media_type: &str, config: (&str, &Digest, u64), layers: &[(&str, &Digest, u64)]) -> Vec<u8> {
    let desc =
        |mt: &str, d: &Digest, size: u64| serde_json::json!({"mediaType": mt, "digest": d.as_str(), "size": size});
    let v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": desc(config.0, config.1, config.2),
        "layers": layers.iter().map(|(mt, d, s)| desc(mt, d, *s)).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&v).expect("a JSON value always serialises")
}

/// A layer descriptor: media type, digest, size and annotations.
pub type AnnotatedLayer<'a> = (&'a str, &'a Digest, u64, &'a [(String, String)]);

/// A manifest's JSON bytes whose layer descriptors carry annotations
/// (none when a layer's list is empty).
pub fn build_manifest_annotated(media_type: &str, config: (&str, &Digest, u64), layers: &[AnnotatedLayer]) -> Vec<u8> {
    let desc = |mt: &str, d: &Digest, size: u64, a: &[(String, String)]| {
        let mut v = serde_json::json!({"mediaType": mt, "digest": d.as_str(), "size": size});
        if !a.is_empty() {
            let map: serde_json::Map<String, serde_json::Value> =
                a.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
            v["annotations"] = serde_json::Value::Object(map);
        }
        v
    };
    let v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": desc(config.0, config.1, config.2, &[]),
        "layers": layers.iter().map(|(mt, d, s, a)| desc(mt, d, *s, a)).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&v).expect("a JSON value always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7";
    const L1: &str = "sha256:9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0";

    fn manifest(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{CFG}","size":7}},"layers":[{{"mediaType":"{OCI_LAYER_GZIP}","digest":"{L1}","size":3}}]{extra}}}"#
        )
    }

    #[test]
    fn a_plain_manifest_parses() {
        let Document::Manifest(m) = parse_document("m", manifest("").as_bytes(), Some(OCI_MANIFEST)).unwrap() else {
            panic!("expected a manifest")
        };
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.config.digest.as_str(), CFG);
    }

    #[test]
    fn ambiguous_manifest_with_manifests_is_refused() {
        let err = parse_document("m", manifest(r#","manifests":[]"#).as_bytes(), None).unwrap_err();
        assert!(matches!(err, ImageError::Ambiguous { .. }), "{err}");
    }

    #[test]
    fn declared_index_type_on_a_manifest_is_refused() {
        let err = parse_document("m", manifest("").as_bytes(), Some(OCI_INDEX)).unwrap_err();
        assert!(matches!(err, ImageError::MediaTypeMismatch { .. }), "{err}");
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let doc = manifest("").replace(r#""size":3"#, r#""size":3,"size":4"#);
        let err = parse_document("m", doc.as_bytes(), None).unwrap_err();
        assert!(matches!(err, ImageError::DuplicateKey { .. }), "{err}");
        assert!(check_duplicate_keys("x", br#"{"a":1,"a":2}"#).is_err());
        assert!(check_duplicate_keys("x", br#"{"a":{"b":1},"c":{"b":2}}"#).is_ok());
    }

    #[test]
    fn bad_digests_are_refused() {
        for bad in ["sha256:../../etc/passwd", "sha512:abcd", "SHA256:AB"] {
            let doc = manifest("").replace(L1, bad);
            assert!(parse_document("m", doc.as_bytes(), None).is_err(), "{bad}");
        }
    }

    #[test]
    fn schema1_is_refused_with_advice() {
        let err = parse_document("m", br#"{"schemaVersion":1,"fsLayers":[]}"#, None).unwrap_err();
        assert!(err.to_string().contains("schema 1"), "{err}");
    }

    #[test]
    fn oversized_manifest_is_refused_before_parsing() {
        let big = vec![b' '; (MAX_MANIFEST_SIZE + 1) as usize];
        assert!(matches!(parse_document("m", &big, None).unwrap_err(), ImageError::TooLarge { .. }));
    }

    #[test]
    fn config_parses_and_validates_diff_ids() {
        let cfg = format!(
            r#"{{"architecture":"amd64","os":"linux","created":"2024-01-02T03:04:05Z","config":{{"Labels":{{"a":"b"}}}},"rootfs":{{"type":"layers","diff_ids":["{L1}"]}}}}"#
        );
        let c = parse_config("c", cfg.as_bytes()).unwrap();
        assert_eq!(c.diff_ids.len(), 1);
        assert_eq!(c.created, Some(1704164645));
        assert_eq!(c.labels_json(), r#"{"a":"b"}"#);
        let bad = cfg.replace(L1, "sha256:zz");
        assert!(parse_config("c", bad.as_bytes()).is_err());
    }

    mod attacked {
        use super::super::*;
        use super::{manifest, OCI_INDEX};
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            // Any bytes: never a panic, and anything accepted is consistent.
            #[test]
            fn parse_document_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
                if let Ok(Document::Manifest(m)) = parse_document("m", &data, None) {
                    prop_assert!(m.layers.len() <= MAX_LAYERS);
                }
            }

            // A valid manifest mutated at one byte: never a panic; if still
            // accepted, every digest in it is still well formed.
            #[test]
            fn mutated_manifests_are_refused_or_still_valid(pos in 0usize..400, byte in any::<u8>()) {
                let mut doc = manifest("").into_bytes();
                let i = pos % doc.len();
                doc[i] = byte;
                match parse_document("m", &doc, None) {
                    Ok(Document::Manifest(m)) => {
                        prop_assert_eq!(m.config.digest.hex().len(), 64);
                        for l in &m.layers {
                            prop_assert!(crate::digest::is_lower_hex(l.digest.hex(), 64));
                        }
                    }
                    Ok(Document::Index(_)) => prop_assert!(false, "a manifest mutated into an index"),
                    Err(_) => {}
                }
            }

            #[test]
            fn parse_config_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = parse_config("c", &data);
            }

            #[test]
            fn declared_type_must_agree(declared in prop_oneof![Just(OCI_INDEX), Just(DOCKER_LIST), Just(OCI_MANIFEST), Just(DOCKER_MANIFEST)]) {
                let r = parse_document("m", manifest("").as_bytes(), Some(declared));
                prop_assert_eq!(r.is_ok(), declared == OCI_MANIFEST);
            }
        }

        #[test]
        fn deeply_nested_json_is_refused_without_overflow() {
            let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
            assert!(parse_document("m", deep.as_bytes(), None).is_err());
            assert!(check_duplicate_keys("m", deep.as_bytes()).is_err());
        }
    }
}
