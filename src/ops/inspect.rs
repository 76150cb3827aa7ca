//! `img inspect` and `img history`: an image's metadata as podman shows it.

use crate::image::{self, Document};
use crate::store::index::ImageRecord;
use crate::store::Store;
use anyhow::{Context, Result};
use img_gotemplate::{typed_nil, without_typed_nils, Nil};
use serde_json::{json, Value};

/// A layer as a manifest lists it: media type, digest, size.
type LayerInfo = (String, crate::digest::Digest, u64);

fn config_of(store: &Store, img: &ImageRecord) -> Result<(Value, Vec<LayerInfo>)> {
    let config = store
        .read_blob(&img.id, image::MAX_CONFIG_SIZE)
        .with_context(|| format!("reading the config of {}", img.id))?;
    let config: Value = serde_json::from_slice(&config).with_context(|| format!("parsing the config of {}", img.id))?;
    let mut layers = Vec::new();
    if img.kind != crate::store::index::ImageKind::Embedded {
        let m = store.read_blob(&img.manifest_digest, image::MAX_MANIFEST_SIZE)?;
        if let Document::Manifest(m) = image::parse_document(&format!("manifest {}", img.manifest_digest), &m, None)? {
            layers = m.layers.into_iter().map(|l| (l.media_type, l.digest, l.size)).collect();
        }
    } else {
        for (role, d) in store.index().image_blobs(&img.id)? {
            if role == "layer" {
                let size = store.open_blob(&d)?.metadata().map(|m| m.len()).unwrap_or(0);
                layers.push((crate::archive::embedded::LAYER_SQUASHFS.to_string(), d, size));
            }
        }
    }
    Ok((config, layers))
}

/// The kind of a field of docker's `container.Config`, which decides its
/// zero value: `""`, `false`, or `null` (a nil slice, map or pointer).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bool,
    /// A `[]string`.
    Slice,
    /// A `strslice.StrSlice`, which also decodes from a single string.
    StrSlice,
    Map,
    Ptr,
}

impl Kind {
    /// The Go nil of a slice, map or pointer field, which templates print
    /// as `[]`, `map[]` or `<nil>` and JSON as `null`.
    fn nil(self) -> Value {
        match self {
            Kind::Str => json!(""),
            Kind::Bool => json!(false),
            Kind::Slice | Kind::StrSlice => typed_nil(Nil::Slice),
            Kind::Map => typed_nil(Nil::Map),
            Kind::Ptr => typed_nil(Nil::Pointer),
        }
    }
}

/// docker's `container.Config` (API 1.41, docker 20.10), in its order: each
/// field's name, kind, and whether it is `omitempty` (absent from docker's
/// JSON when empty).
const CONTAINER_CONFIG: &[(&str, Kind, bool)] = &[
    ("Hostname", Kind::Str, false),
    ("Domainname", Kind::Str, false),
    ("User", Kind::Str, false),
    ("AttachStdin", Kind::Bool, false),
    ("AttachStdout", Kind::Bool, false),
    ("AttachStderr", Kind::Bool, false),
    ("ExposedPorts", Kind::Map, true),
    ("Tty", Kind::Bool, false),
    ("OpenStdin", Kind::Bool, false),
    ("StdinOnce", Kind::Bool, false),
    ("Env", Kind::Slice, false),
    ("Cmd", Kind::StrSlice, false),
    ("Healthcheck", Kind::Ptr, true),
    ("ArgsEscaped", Kind::Bool, true),
    ("Image", Kind::Str, false),
    ("Volumes", Kind::Map, false),
    ("WorkingDir", Kind::Str, false),
    ("Entrypoint", Kind::StrSlice, false),
    ("NetworkDisabled", Kind::Bool, true),
    ("MacAddress", Kind::Str, true),
    ("OnBuild", Kind::Slice, false),
    ("Labels", Kind::Map, false),
    ("StopSignal", Kind::Str, true),
    ("StopTimeout", Kind::Ptr, true),
    ("Shell", Kind::StrSlice, true),
];

/// docker's zero time, which it prints for a time it does not know.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// An image config's `config` (or `container_config`) as docker decodes it
/// into a `container.Config`: every field, each absent or null one at its
/// zero value, names matched as Go matches them (exactly, else ignoring
/// case), a single string for `Cmd`, `Entrypoint` or `Shell` made a list of
/// one, and keys docker does not know left out.
pub fn container_config(raw: Option<&Value>) -> Value {
    let raw = raw.and_then(Value::as_object);
    let mut out = serde_json::Map::new();
    for &(name, kind, _) in CONTAINER_CONFIG {
        let v =
            raw.and_then(|m| m.get(name).or_else(|| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|e| e.1)));
        let v = match (v, kind) {
            (None | Some(Value::Null), _) => kind.nil(),
            (Some(Value::String(s)), Kind::StrSlice) => json!([s]),
            (Some(v), _) => v.clone(),
        };
        out.insert(name.to_string(), v);
    }
    Value::Object(out)
}

/// True if Go's `omitempty` leaves the value out: an empty string, false,
/// a nil pointer, and an empty slice or map (nil or not). A pointer to a
/// zero value is not empty.
fn is_empty(v: &Value, kind: Kind) -> bool {
    match v {
        Value::Null => true,
        _ if kind == Kind::Ptr => false,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Number(_) => false,
    }
}

/// Drops the empty `omitempty` fields of a `container.Config`.
fn omit_empty_config(v: &mut Value) {
    if let Value::Object(m) = v {
        for &(name, kind, omitempty) in CONTAINER_CONFIG {
            if omitempty && m.get(name).is_some_and(|v| is_empty(v, kind)) {
                m.remove(name);
            }
        }
    }
}

/// The inspect document as docker prints it as JSON: the `omitempty` fields
/// that are empty left out (`Variant`, `OsVersion`, `RootFS.Layers`,
/// `RootFS.BaseLayer`, and in `Config` and `ContainerConfig`
/// `ExposedPorts`, `Healthcheck`, `ArgsEscaped`, `NetworkDisabled`,
/// `MacAddress`, `StopSignal`, `StopTimeout` and `Shell`). Templates run on
/// the whole document, as docker's run on its Go struct, where those fields
/// are still there at their zero values.
pub fn as_printed(doc: &Value) -> Value {
    let mut d = without_typed_nils(doc).into_owned();
    if let Value::Object(m) = &mut d {
        for k in ["Variant", "OsVersion"] {
            if m.get(k).is_some_and(|v| is_empty(v, Kind::Str)) {
                m.remove(k);
            }
        }
        if let Some(Value::Object(r)) = m.get_mut("RootFS") {
            for (k, kind) in [("Layers", Kind::Slice), ("BaseLayer", Kind::Str)] {
                if r.get(k).is_some_and(|v| is_empty(v, kind)) {
                    r.remove(k);
                }
            }
        }
        for k in ["Config", "ContainerConfig"] {
            if let Some(c) = m.get_mut(k) {
                omit_empty_config(c);
            }
        }
    }
    d
}

/// The inspect document of one image: every field of docker's
/// `ImageInspect` (API 1.41, docker 20.10) at its zero value where the
/// image has nothing for it, so that templates written for docker work on
/// any image, and podman's fields besides (`Digest`, `Labels`,
/// `Annotations`, `ManifestType`, `User`, `History`, `Version`), with img's
/// own (`Layers`, and for partial and embedded images what they lack). `Id`
/// is the hex digest without its algorithm, as podman prints it.
pub fn inspect(store: &Store, img: &ImageRecord) -> Result<Value> {
    let (config, layers) = config_of(store, img)?;
    let repo_digests = super::images::repo_digests(img);
    let string_of = |key: &str| config.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let cfg = container_config(config.get("config"));
    let labels = cfg["Labels"].clone();
    let user = cfg["User"].clone();
    let diff_ids = config.pointer("/rootfs/diff_ids").filter(|v| v.is_array()).cloned().unwrap_or(Kind::Slice.nil());
    let mut doc = json!({
        "Id": img.id.hex(),
        "RepoTags": img.tags,
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": string_of("comment"),
        "Created": config.get("created").and_then(Value::as_str).unwrap_or(ZERO_TIME),
        "Container": string_of("container"),
        "ContainerConfig": container_config(config.get("container_config")),
        "DockerVersion": string_of("docker_version"),
        "Author": img.author,
        "Config": cfg,
        "Architecture": img.architecture,
        "Variant": img.variant,
        "Os": img.os,
        "OsVersion": string_of("os.version"),
        "Size": img.size,
        "VirtualSize": img.size,
        "GraphDriver": {"Data": Kind::Map.nil(), "Name": ""},
        "RootFS": {"Type": "layers", "Layers": diff_ids, "BaseLayer": ""},
        "Metadata": {"LastTagTime": ZERO_TIME},
        "Digest": img.manifest_digest.as_str(),
        "Version": string_of("docker_version"),
        "Layers": layers.iter().map(|(mt, d, s)| json!({"MediaType": mt, "Digest": d.as_str(), "Size": s})).collect::<Vec<_>>(),
        "Labels": labels,
        "Annotations": {},
        "ManifestType": img.manifest_media_type,
        "User": user,
        "History": config.get("history").cloned().unwrap_or(json!([])),
    });
    if img.kind == crate::store::index::ImageKind::Partial {
        // Layers still read from the registry by a lazy mount.
        let remote = store.index().remote_layers(&img.id)?;
        doc["Partial"] = json!(true);
        doc["RemoteLayers"] = remote
            .iter()
            .map(
                |r| json!({"Digest": r.digest.as_str(), "Size": r.size, "Source": r.source, "TocDigest": r.toc_digest}),
            )
            .collect();
    }
    if img.kind == crate::store::index::ImageKind::Embedded {
        let ext = store.index().external_layers(&img.id)?;
        doc["EmbeddedLayers"] = ext
            .iter()
            .map(|l| json!({"MediaType": l.media_type, "PathInHost": l.path_in_host, "PathInContainer": l.path_in_container, "Digest": l.digest, "Size": l.size}))
            .collect();
    }
    Ok(doc)
}

/// One line of `img history`.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// The image ID on the top entry; None shows as `<missing>`.
    pub id: Option<String>,
    pub created: Option<i64>,
    pub created_by: String,
    pub size: u64,
    pub comment: String,
    pub empty_layer: bool,
}

/// History entries, newest first, with each non-empty entry's layer size.
pub fn history(store: &Store, img: &ImageRecord) -> Result<Vec<HistoryEntry>> {
    let (config, layers) = config_of(store, img)?;
    let hist = config.get("history").and_then(|h| h.as_array()).cloned().unwrap_or_default();
    let mut out = Vec::new();
    let mut layer_idx = 0;
    for h in &hist {
        let empty = h.get("empty_layer").and_then(|e| e.as_bool()).unwrap_or(false);
        let size = if empty {
            0
        } else {
            let s = layers.get(layer_idx).map(|l| l.2).unwrap_or(0);
            layer_idx += 1;
            s
        };
        out.push(HistoryEntry {
            id: None,
            created: h.get("created").and_then(|c| c.as_str()).and_then(crate::timefmt::parse_rfc3339),
            created_by: h.get("created_by").and_then(|c| c.as_str()).unwrap_or("").to_string(),
            size,
            comment: h.get("comment").and_then(|c| c.as_str()).unwrap_or("").to_string(),
            empty_layer: empty,
        });
    }
    // Layers without history entries still show, as docker does.
    while layer_idx < layers.len() {
        out.push(HistoryEntry {
            id: None,
            created: img.created,
            created_by: String::new(),
            size: layers[layer_idx].2,
            comment: String::new(),
            empty_layer: false,
        });
        layer_idx += 1;
    }
    out.reverse();
    if let Some(first) = out.first_mut() {
        first.id = Some(img.id.hex().to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config with only Cmd and Env, as many images have.
    fn cmd_env() -> Value {
        json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]})
    }

    #[test]
    fn missing_config_fields_get_dockers_zero_values() {
        let c = container_config(Some(&cmd_env()));
        let m = c.as_object().unwrap();
        let names: Vec<&str> = CONTAINER_CONFIG.iter().map(|f| f.0).collect();
        assert_eq!(m.len(), names.len());
        for n in names {
            assert!(m.contains_key(n), "{n} missing");
        }
        assert_eq!(c["Entrypoint"], typed_nil(Nil::Slice));
        assert_eq!(c["User"], json!(""));
        assert_eq!(c["Hostname"], json!(""));
        assert_eq!(c["Tty"], json!(false));
        assert_eq!(c["Labels"], typed_nil(Nil::Map));
        assert_eq!(c["Healthcheck"], typed_nil(Nil::Pointer));
        assert_eq!(c["Cmd"], json!(["/bin/sh"]));
        assert_eq!(c["Env"], json!(["PATH=/bin"]));
        // No config at all: every field at its zero value.
        let z = container_config(None);
        assert_eq!(z["Env"], typed_nil(Nil::Slice));
        // Templates print the nils as Go does, json as null.
        let t = |src: &str| img_gotemplate::render(src, &z).unwrap();
        assert_eq!(t("{{.Env}} {{.Labels}} {{.Healthcheck}} {{json .Env}} {{len .Volumes}}"), "[] map[] <nil> null 0");
        assert_eq!(z["WorkingDir"], json!(""));
    }

    #[test]
    fn config_fields_decode_as_go_does() {
        let c = container_config(Some(&json!({
            "entrypoint": "/init", "User": null, "Shell": ["/bin/bash", "-c"], "Memory": 5, "StopTimeout": 0,
        })));
        assert_eq!(c["Entrypoint"], json!(["/init"]), "a single string is a list of one; case is ignored");
        assert_eq!(c["User"], json!(""));
        assert_eq!(c["Shell"], json!(["/bin/bash", "-c"]));
        assert_eq!(c["StopTimeout"], json!(0));
        assert!(c.get("Memory").is_none(), "keys docker does not know are left out");
    }

    #[test]
    fn printed_json_omits_empty_omitempty_fields_only() {
        let doc = json!({
            "Variant": "", "OsVersion": "", "Os": "linux",
            "RootFS": {"Type": "layers", "Layers": null, "BaseLayer": ""},
            "Config": container_config(Some(&json!({"StopTimeout": 0, "ExposedPorts": {}}))),
            "ContainerConfig": container_config(None),
        });
        let p = as_printed(&doc);
        assert!(p.get("Variant").is_none() && p.get("OsVersion").is_none());
        assert_eq!(p["RootFS"], json!({"Type": "layers"}));
        let c = p["Config"].as_object().unwrap();
        for gone in
            ["ExposedPorts", "Healthcheck", "ArgsEscaped", "NetworkDisabled", "MacAddress", "StopSignal", "Shell"]
        {
            assert!(!c.contains_key(gone), "{gone} is printed");
        }
        // A pointer to zero is not empty; nil slices and maps without omitempty stay, as null.
        assert_eq!(c["StopTimeout"], json!(0));
        assert_eq!(c["Entrypoint"], Value::Null);
        assert_eq!(c["Labels"], Value::Null);
        assert_eq!(c["Hostname"], json!(""));
        assert!(!p["ContainerConfig"].as_object().unwrap().contains_key("StopTimeout"));
        // Templates keep every field.
        assert_eq!(doc["Config"]["MacAddress"], json!(""));
    }
}
