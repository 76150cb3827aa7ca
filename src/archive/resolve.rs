//! Finding the images in a staged archive and checking every byte of them:
//! docker-archive `manifest.json` (configs identified by their sha256,
//! layers checked against the config's DiffIDs) and OCI `index.json`
//! (every blob checked against its descriptor's digest and size).

use super::source::{SourceError, Staged};
use crate::compression::Compression;
use crate::digest::Digest;
use crate::image::{self, Config, Document};
use crate::reference::Reference;
use crate::store::Store;

type Result<T> = std::result::Result<T, SourceError>;

fn bad(file: &str, msg: impl Into<String>) -> SourceError {
    SourceError::Bad { file: file.to_string(), msg: msg.into() }
}

/// An image found in an archive, verified, with its blobs still staged.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub id: Digest,
    pub manifest_key: String,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub config_key: String,
    pub layer_keys: Vec<String>,
    pub layer_digests: Vec<Digest>,
    pub config: Config,
    /// Bytes of manifest, config and layers.
    pub size: u64,
    /// Each layer's uncompressed size (measured while its DiffID was checked).
    pub layer_diff_sizes: Vec<(Digest, u64)>,
    pub names: Vec<Reference>,
}

#[derive(serde::Deserialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Finds and verifies every image in the archive.
pub fn resolve(store: &Store, staged: &mut Staged) -> Result<Vec<Prepared>> {
    // An archive that is both an OCI layout and a docker-archive (ctr images
    // export, docker save from 25 on) is read as OCI: its index names the
    // images' own manifests, so their digests are kept, where manifest.json
    // would make new manifests with other digests.
    let both = staged.meta("oci-layout").is_some() && staged.meta("manifest.json").is_some();
    if let Some(ix) = staged.meta("index.json").filter(|_| both).map(|m| m.to_vec()) {
        resolve_oci(store, staged, &ix)
    } else if let Some(m) = staged.meta("manifest.json").map(|m| m.to_vec()) {
        resolve_docker(store, staged, &m)
    } else if let Some(ix) = staged.meta("index.json").map(|m| m.to_vec()) {
        resolve_oci(store, staged, &ix)
    } else {
        Err(bad(&staged.label, "not an image archive: no manifest.json or index.json"))
    }
}

fn read_config(store: &Store, staged: &mut Staged, key: &str) -> Result<(Config, Digest, u64)> {
    let label = staged.label.clone();
    let blob = staged.get(store, key)?;
    let bytes = blob.read_all(image::MAX_CONFIG_SIZE).map_err(|e| bad(&label, format!("config {key}: {e}")))?;
    let config = image::parse_config(&format!("config {key}"), &bytes).map_err(|e| bad(&label, e.to_string()))?;
    Ok((config, blob.digest().clone(), blob.size()))
}

fn check_layers(
    store: &Store,
    staged: &mut Staged,
    config: &Config,
    layers: &[(String, Option<(Digest, u64)>)],
) -> Result<Vec<(Digest, u64, Compression, u64)>> {
    let label = staged.label.clone();
    if layers.len() != config.diff_ids.len() {
        return Err(bad(
            &label,
            format!(
                "the image lists {} layers but its config lists {} (rootfs.diff_ids); the archive is inconsistent",
                layers.len(),
                config.diff_ids.len()
            ),
        ));
    }
    let mut out = Vec::new();
    for (i, ((key, expected), diff_id)) in layers.iter().zip(&config.diff_ids).enumerate() {
        let blob = staged.get(store, key)?;
        if let Some((digest, size)) = expected {
            blob.verify(&format!("layer {i} ({key})"), digest, Some(*size)).map_err(|e| bad(&label, e.to_string()))?;
        }
        match blob.diff_id() {
            Some(Ok(d)) if d == diff_id => {}
            Some(Ok(d)) => {
                return Err(bad(
                    &label,
                    format!("layer {i} ({key}): content digest {d} does not match the config's diff_id {diff_id}"),
                ))
            }
            Some(Err(e)) => return Err(bad(&label, format!("layer {i} ({key}) does not decompress: {e}"))),
            None => {
                return Err(bad(
                    &label,
                    format!("layer {i} ({key}) is {}-compressed, which img cannot verify", blob.compression().name()),
                ))
            }
        }
        out.push((blob.digest().clone(), blob.size(), blob.compression(), blob.uncompressed_size()));
    }
    Ok(out)
}

/// A docker-archive `manifest.json`, parsed from untrusted bytes: each
/// image's config and layer names (as written: they are resolved against
/// the archive's own entries later) and its RepoTags as references. The
/// error says what is wrong, for the caller to name the archive.
fn parse_docker_manifest(
    manifest_json: &[u8],
) -> std::result::Result<Vec<(DockerManifestEntry, Vec<Reference>)>, String> {
    image::check_duplicate_keys("manifest.json", manifest_json).map_err(|e| e.to_string())?;
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(manifest_json)
        .map_err(|e| format!("manifest.json is not a docker-archive manifest: {e}"))?;
    if entries.is_empty() {
        return Err("manifest.json lists no images".into());
    }
    let mut out = Vec::new();
    for (n, e) in entries.into_iter().enumerate() {
        let mut names = Vec::new();
        for t in e.repo_tags.iter().flatten() {
            let r = Reference::parse_with_default_tag(t)
                .map_err(|err| format!("manifest.json image {n}: bad RepoTag {t:?}: {err}"))?;
            names.push(r);
        }
        out.push((e, names));
    }
    Ok(out)
}

fn resolve_docker(store: &Store, staged: &mut Staged, manifest_json: &[u8]) -> Result<Vec<Prepared>> {
    let label = staged.label.clone();
    let entries = parse_docker_manifest(manifest_json).map_err(|e| bad(&label, e))?;
    let mut out = Vec::new();
    for (n, (e, names)) in entries.into_iter().enumerate() {
        let config_key = staged.key_of(&e.config).ok_or_else(|| {
            bad(&label, format!("manifest.json image {n}: config {:?} is not in the archive", e.config))
        })?;
        let (config, config_digest, config_size) = read_config(store, staged, &config_key)?;
        let mut layer_keys = Vec::new();
        for l in &e.layers {
            let key = staged
                .key_of(l)
                .ok_or_else(|| bad(&label, format!("manifest.json image {n}: layer {l:?} is not in the archive")))?;
            layer_keys.push(key);
        }
        let specs: Vec<(String, Option<(Digest, u64)>)> = layer_keys.iter().map(|k| (k.clone(), None)).collect();
        let layers = check_layers(store, staged, &config, &specs)?;
        // Docker's media types when they fit, OCI's for zstd layers.
        let docker = layers.iter().all(|(_, _, c, _)| matches!(c, Compression::None | Compression::Gzip));
        let mut layer_descs = Vec::new();
        for (i, (d, s, c, _)) in layers.iter().enumerate() {
            let mt = image::layer_media_type(docker, *c).ok_or_else(|| {
                bad(
                    &label,
                    format!(
                        "layer {i} ({}) is {}-compressed; image layers must be tar, gzip or zstd",
                        layer_keys[i],
                        c.name()
                    ),
                )
            })?;
            layer_descs.push((mt, d, *s));
        }
        let (mt, cfg_mt) = if docker {
            (image::DOCKER_MANIFEST, image::DOCKER_CONFIG)
        } else {
            (image::OCI_MANIFEST, image::OCI_CONFIG)
        };
        let manifest = image::build_manifest(mt, (cfg_mt, &config_digest, config_size), &layer_descs);
        let manifest_key = format!("\0manifest-{n}");
        staged.add_bytes(store, &manifest_key, &manifest)?;
        let size = manifest.len() as u64 + config_size + layers.iter().map(|(_, s, _, _)| s).sum::<u64>();
        out.push(Prepared {
            id: config_digest,
            manifest_key,
            manifest_digest: Digest::of_bytes(&manifest),
            manifest_media_type: mt.to_string(),
            config_key,
            layer_keys,
            layer_diff_sizes: layers.iter().map(|(d, _, _, n)| (d.clone(), *n)).collect(),
            layer_digests: layers.into_iter().map(|(d, _, _, _)| d).collect(),
            config,
            size,
            names,
        });
    }
    Ok(out)
}

fn blob_key(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// The platform this img runs on, in OCI terms.
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "arm" => "arm",
        other => other,
    };
    ("linux", arch)
}

fn resolve_oci(store: &Store, staged: &mut Staged, index_json: &[u8]) -> Result<Vec<Prepared>> {
    let label = staged.label.clone();
    if let Some(layout) = staged.meta("oci-layout") {
        let v: serde_json::Value =
            serde_json::from_slice(layout).map_err(|e| bad(&label, format!("oci-layout is not JSON: {e}")))?;
        let version = v.get("imageLayoutVersion").and_then(|s| s.as_str()).unwrap_or("");
        if version != "1.0.0" {
            return Err(bad(&label, format!("oci-layout has imageLayoutVersion {version:?}; img reads 1.0.0")));
        }
    }
    let doc = image::parse_document("index.json", index_json, None).map_err(|e| bad(&label, e.to_string()))?;
    let Document::Index(index) = doc else {
        return Err(bad(&label, "index.json is a manifest, not an index"));
    };
    if index.manifests.is_empty() {
        return Err(bad(&label, "index.json lists no images"));
    }
    let mut out = Vec::new();
    for (n, desc) in index.manifests.iter().enumerate() {
        let names = oci_names(desc);
        let mut current = desc.clone();
        // Follow nested indexes to the manifest for this host.
        let mut depth = 0;
        let (manifest, manifest_desc) = loop {
            depth += 1;
            if depth > 8 {
                return Err(bad(&label, format!("index.json entry {n}: indexes nested more than 8 deep")));
            }
            let key = blob_key(&current.digest);
            let blob = staged.get(store, &key)?;
            blob.verify(&format!("index.json entry {n} ({key})"), &current.digest, Some(current.size))
                .map_err(|e| bad(&label, e.to_string()))?;
            let bytes = blob.read_all(image::MAX_MANIFEST_SIZE).map_err(|e| bad(&label, e.to_string()))?;
            let doc = image::parse_document(&format!("manifest {}", current.digest), &bytes, Some(&current.media_type))
                .map_err(|e| bad(&label, e.to_string()))?;
            match doc {
                Document::Manifest(m) => break (m, current),
                Document::Index(ix) => {
                    let (os, arch) = host_platform();
                    let pick = ix
                        .manifests
                        .iter()
                        .find(|d| d.platform.as_ref().is_some_and(|p| p.os == os && p.architecture == arch))
                        .or_else(|| ix.manifests.first())
                        .cloned()
                        .ok_or_else(|| bad(&label, format!("index {} lists no manifests", current.digest)))?;
                    current = pick;
                }
            }
        };
        let config_key = blob_key(&manifest.config.digest);
        {
            let blob = staged.get(store, &config_key)?;
            blob.verify(&format!("config {config_key}"), &manifest.config.digest, Some(manifest.config.size))
                .map_err(|e| bad(&label, e.to_string()))?;
        }
        let (config, config_digest, config_size) = read_config(store, staged, &config_key)?;
        let specs: Vec<(String, Option<(Digest, u64)>)> =
            manifest.layers.iter().map(|l| (blob_key(&l.digest), Some((l.digest.clone(), l.size)))).collect();
        for (i, l) in manifest.layers.iter().enumerate() {
            if !image::is_tar_layer(&l.media_type) {
                return Err(bad(
                    &label,
                    format!(
                        "manifest {} layer {i} has media type {:?}, which img does not store",
                        manifest_desc.digest, l.media_type
                    ),
                ));
            }
        }
        let layers = check_layers(store, staged, &config, &specs)?;
        let manifest_key = blob_key(&manifest_desc.digest);
        let size = manifest_desc.size + config_size + layers.iter().map(|(_, s, _, _)| s).sum::<u64>();
        out.push(Prepared {
            id: config_digest,
            manifest_key,
            manifest_digest: manifest_desc.digest.clone(),
            manifest_media_type: manifest.media_type.clone(),
            config_key,
            layer_keys: specs.into_iter().map(|(k, _)| k).collect(),
            layer_diff_sizes: layers.iter().map(|(d, _, _, n)| (d.clone(), *n)).collect(),
            layer_digests: layers.into_iter().map(|(d, _, _, _)| d).collect(),
            config,
            size,
            names,
        });
    }
    Ok(out)
}

/// Names an OCI index entry carries: containerd's full name annotation, or
/// a `ref.name` that is a full reference, or a bare name, which becomes
/// `localhost/NAME:latest` as podman loads it (found: such an image was
/// loaded without a name).
fn oci_names(desc: &image::Descriptor) -> Vec<Reference> {
    if let Some(full) = desc.annotation("io.containerd.image.name") {
        if let Ok(r) = Reference::parse_with_default_tag(full) {
            return vec![r];
        }
    }
    if let Some(name) = desc.annotation("org.opencontainers.image.ref.name") {
        if name.contains('/') || name.contains(':') {
            if let Ok(r) = Reference::parse_with_default_tag(name) {
                return vec![r];
            }
        } else if let Ok(r) = Reference::parse_with_default_tag(&format!("localhost/{name}")) {
            return vec![r];
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn oci_layout_with_bare_name_is_named_as_podman_names_it() {
        let d = |k: &str, v: &str| image::Descriptor {
            media_type: image::OCI_MANIFEST.into(),
            digest: crate::digest::Digest::of_bytes(b""),
            size: 0,
            annotations: vec![(k.to_string(), v.to_string())],
            platform: None,
        };
        let names = |desc| oci_names(&desc).iter().map(|r| r.to_string()).collect::<Vec<_>>();
        assert_eq!(names(d("org.opencontainers.image.ref.name", "myapp")), ["localhost/myapp:latest"]);
        assert_eq!(names(d("org.opencontainers.image.ref.name", "team/app:2")), ["docker.io/team/app:2"]);
        assert_eq!(names(d("org.opencontainers.image.ref.name", "Not A Name")), Vec::<String>::new());
        assert_eq!(names(d("io.containerd.image.name", "docker.io/library/x:1")), ["docker.io/library/x:1"]);
    }

    #[test]
    fn docker_manifests_parse_or_say_what_is_wrong() {
        let ok = br#"[{"Config":"c.json","RepoTags":["app:1","base"],"Layers":["l1/layer.tar","l2/layer.tar"]}]"#;
        let got = parse_docker_manifest(ok).unwrap();
        assert_eq!(got[0].0.config, "c.json");
        assert_eq!(got[0].0.layers, ["l1/layer.tar", "l2/layer.tar"]);
        let names: Vec<String> = got[0].1.iter().map(|r| r.to_string()).collect();
        assert_eq!(names, ["docker.io/library/app:1", "docker.io/library/base:latest"]);
        let bad: [(&[u8], &str); 6] = [
            (b"[]", "lists no images"),
            (b"{}", "not a docker-archive manifest"),
            (b"\xff", "manifest.json"),
            (br#"[{"Config":"a","Layers":[],"Config":"b"}]"#, "Config"),
            (br#"[{"Config":"a","Layers":[],"RepoTags":["App:1"]}]"#, "bad RepoTag"),
            (br#"[{"Config":"a"}]"#, "Layers"),
        ];
        for (b, want) in bad {
            let e = parse_docker_manifest(b).unwrap_err();
            assert!(e.contains(want), "{:?}: {e}", String::from_utf8_lossy(b));
        }
    }

    type Spec = (String, Vec<String>, Option<Vec<String>>);

    fn arb_entries() -> impl Strategy<Value = Vec<Spec>> {
        let names = proptest::collection::vec("[a-z]{1,8}(:[a-z0-9]{1,5})?", 0..3);
        let entry = (".{0,20}", proptest::collection::vec(".{0,20}", 0..4), proptest::option::of(names));
        proptest::collection::vec(entry, 1..4)
    }

    proptest! {
        /// Any bytes are an error or entries, never a panic.
        #[test]
        fn any_bytes_are_an_error_or_entries(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_docker_manifest(&b);
        }

        /// Any well-formed manifest.json gives back its names as written.
        #[test]
        fn written_entries_read_back(entries in arb_entries()) {
            let json: Vec<serde_json::Value> = entries
                .iter()
                .map(|(c, l, t)| {
                    let mut m = serde_json::json!({"Config": c, "Layers": l});
                    if let Some(t) = t {
                        m["RepoTags"] = serde_json::json!(t);
                    }
                    m
                })
                .collect();
            let got = parse_docker_manifest(&serde_json::to_vec(&json).unwrap()).unwrap();
            prop_assert_eq!(got.len(), entries.len());
            for ((e, names), (c, l, t)) in got.iter().zip(&entries) {
                prop_assert_eq!(&e.config, c);
                prop_assert_eq!(&e.layers, l);
                prop_assert_eq!(names.len(), t.as_ref().map_or(0, Vec::len));
            }
        }
    }
}
