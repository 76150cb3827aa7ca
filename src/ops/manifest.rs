//! `img manifest`: manifest lists (image indexes) made of images in the
//! store, kept in the index by name and pushed with their images.

use super::progress::Progress;
use crate::digest::Digest;
use crate::image;
use crate::registry::ClientOptions;
use crate::store::index::ImageRecord;
use crate::store::Store;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// A list's name as stored: normalised as an image name is.
fn list_key(name: &str) -> Result<String> {
    Ok(super::parse_target_name(name).with_context(|| format!("{name:?} is not a valid list name"))?.name)
}

fn load(store: &Store, name: &str) -> Result<(String, Value)> {
    let key = list_key(name)?;
    let (_, body) = store
        .index()
        .manifest_list(&key)?
        .with_context(|| format!("{name}: no such manifest list; make it with img manifest create {name} IMAGE..."))?;
    let v: Value =
        serde_json::from_slice(&body).with_context(|| format!("the stored manifest list {name} is not JSON"))?;
    Ok((key, v))
}

/// The list's media type: Docker's when every member is a Docker manifest.
fn save(store: &mut Store, key: &str, mut v: Value) -> Result<Vec<u8>> {
    let members = v["manifests"].as_array().cloned().unwrap_or_default();
    let docker = !members.is_empty() && members.iter().all(|m| m["mediaType"] == image::DOCKER_MANIFEST);
    let mt = if docker { image::DOCKER_LIST } else { image::OCI_INDEX };
    v["schemaVersion"] = json!(2);
    v["mediaType"] = json!(mt);
    let body = serde_json::to_vec_pretty(&v)?;
    // What is stored must read back as a valid index.
    image::parse_document("the manifest list", &body, Some(mt))?;
    store.index_mut().put_manifest_list(key, mt, &body)?;
    Ok(body)
}

/// The list entry of a stored image: its manifest and platform.
fn entry(store: &Store, img: &ImageRecord) -> Result<Value> {
    let size = store.read_blob(&img.manifest_digest, image::MAX_MANIFEST_SIZE)?.len();
    let config = store.read_blob(&img.id, image::MAX_CONFIG_SIZE)?;
    let c: Value = serde_json::from_slice(&config).with_context(|| format!("the config of {} is not JSON", img.id))?;
    let mut platform = json!({"architecture": img.architecture, "os": img.os});
    if !img.variant.is_empty() {
        platform["variant"] = json!(img.variant);
    }
    if let Some(f) = c.get("os.features").filter(|f| f.as_array().is_some_and(|a| !a.is_empty())) {
        platform["os.features"] = f.clone();
    }
    Ok(json!({
        "mediaType": img.manifest_media_type,
        "digest": img.manifest_digest.as_str(),
        "size": size,
        "platform": platform,
    }))
}

fn image_of(store: &Store, name: &str) -> Result<ImageRecord> {
    let img = super::resolve_image(store, name)?;
    if img.kind == crate::store::index::ImageKind::Embedded {
        bail!("{name} is an iSulad embedded image, which a manifest list cannot hold; save and load it first");
    }
    super::require_complete(&img, name)?;
    Ok(img)
}

/// `img manifest create LIST IMAGE...`: a new list of `images` (none: an
/// empty list).
pub fn create(
    store: &mut Store,
    list: &str,
    images: &[String],
    amend: bool,
    client: &ClientOptions,
) -> Result<Vec<u8>> {
    let key = list_key(list)?;
    if store.index().manifest_list(&key)?.is_some() && !amend {
        bail!("{list}: a manifest list of that name exists; add to it with img manifest add, or remove it with img manifest rm {list}");
    }
    if store.index().image_for_tag(&key)?.is_some() {
        bail!("{list}: an image has that name; give the list another");
    }
    let mut v = json!({"schemaVersion": 2, "manifests": []});
    let mut sources = Vec::new();
    for i in images {
        sources.extend(add_to(store, &mut v, i, client)?);
    }
    let body = save(store, &key, v)?;
    record_sources(store, &key, &sources)?;
    Ok(body)
}

/// Records where members from a registry came from (for manifest push).
fn record_sources(store: &mut Store, key: &str, sources: &[(String, String)]) -> Result<()> {
    for (digest, repo) in sources {
        store.index_mut().add_manifest_list_source(key, digest, repo)?;
    }
    Ok(())
}

/// The list entry of `image`: an image of the store, or else one in a
/// registry (its manifest and config read from there).
/// With the entry, the `REGISTRY/REPOSITORY` an image from a registry came from.
fn entry_of(store: &Store, image: &str, client: &ClientOptions) -> Result<(Value, Option<String>)> {
    match image_of(store, image) {
        Ok(img) => Ok((entry(store, &img)?, None)),
        Err(e) if e.downcast_ref::<super::NotFound>().is_some() && !super::is_short_name(image) => {
            let v = remote_entry(image, client)
                .with_context(|| format!("{image} is not in the store, and reading it from its registry failed"))?;
            let r =
                crate::reference::Reference::parse_with_default_tag(image.strip_prefix("docker://").unwrap_or(image))?;
            Ok((v, Some(format!("{}/{}", r.domain(), r.path()))))
        }
        Err(e) => Err(e),
    }
}

fn remote_entry(image: &str, client: &ClientOptions) -> Result<Value> {
    use super::remote::{inspect, InspectWhat, RemoteInspect};
    let RemoteInspect::Raw(raw) = inspect(image, None, InspectWhat::Raw, client)? else { bail!("no manifest") };
    let image::Document::Manifest(m) = image::parse_document(&format!("the manifest of {image}"), &raw, None)? else {
        bail!("{image} is a manifest list itself; name one platform's image (by digest)");
    };
    let reference =
        crate::reference::Reference::parse_with_default_tag(image.strip_prefix("docker://").unwrap_or(image))?;
    let by_digest = format!("{}/{}@{}", reference.domain(), reference.path(), Digest::of_bytes(&raw));
    let RemoteInspect::Config(c) = inspect(&by_digest, None, InspectWhat::Config, client)? else { bail!("no config") };
    let mut platform = json!({
        "architecture": c.get("architecture").cloned().unwrap_or(json!("")),
        "os": c.get("os").cloned().unwrap_or(json!("")),
    });
    if let Some(v) = c.get("variant").filter(|v| v.as_str().is_some_and(|s| !s.is_empty())) {
        platform["variant"] = v.clone();
    }
    if let Some(f) = c.get("os.features").filter(|f| f.as_array().is_some_and(|a| !a.is_empty())) {
        platform["os.features"] = f.clone();
    }
    Ok(json!({
        "mediaType": m.media_type,
        "digest": Digest::of_bytes(&raw).as_str(),
        "size": raw.len(),
        "platform": platform,
    }))
}

/// Adds `image`'s entry; returns (digest, source) for an image from a registry.
fn add_to(store: &Store, v: &mut Value, image: &str, client: &ClientOptions) -> Result<Option<(String, String)>> {
    let (e, source) = entry_of(store, image, client)?;
    let digest = e["digest"].as_str().unwrap_or_default().to_string();
    let ms = v["manifests"].as_array_mut().context("the list has no manifests array")?;
    ms.retain(|m| m["digest"] != e["digest"]);
    ms.push(e);
    Ok(source.map(|s| (digest, s)))
}

/// `img manifest add LIST IMAGE`.
pub fn add(store: &mut Store, list: &str, image: &str, client: &ClientOptions) -> Result<Vec<u8>> {
    let (key, mut v) = load(store, list)?;
    let source = add_to(store, &mut v, image, client)?;
    let body = save(store, &key, v)?;
    record_sources(store, &key, &source.into_iter().collect::<Vec<_>>())?;
    Ok(body)
}

/// Platform fields `img manifest annotate` sets.
#[derive(Debug, Default)]
pub struct Annotation {
    pub arch: Option<String>,
    pub os: Option<String>,
    pub os_features: Vec<String>,
    pub variant: Option<String>,
}

/// The index in the list of `image`'s entry.
fn find(store: &Store, v: &Value, list: &str, image: &str) -> Result<usize> {
    let digest = match Digest::parse(image) {
        Ok(d) => d,
        Err(_) => image_of(store, image)?.manifest_digest,
    };
    v["manifests"]
        .as_array()
        .and_then(|ms| ms.iter().position(|m| m["digest"] == digest.as_str()))
        .with_context(|| format!("{list} has no entry for {image} ({digest}); see img manifest inspect {list}"))
}

/// `img manifest annotate`.
/// An image not in the list yet is added first, as isula-build does.
pub fn annotate(store: &mut Store, list: &str, image: &str, a: &Annotation, client: &ClientOptions) -> Result<Vec<u8>> {
    let (key, mut v) = load(store, list)?;
    let mut sources = Vec::new();
    let i = match find(store, &v, list, image) {
        Ok(i) => i,
        Err(_) => {
            sources.extend(add_to(store, &mut v, image, client)?);
            v["manifests"].as_array().map(|m| m.len() - 1).unwrap_or(0)
        }
    };
    let p = &mut v["manifests"][i]["platform"];
    if !p.is_object() {
        *p = json!({});
    }
    if let Some(x) = &a.arch {
        p["architecture"] = json!(x);
    }
    if let Some(x) = &a.os {
        p["os"] = json!(x);
    }
    if let Some(x) = &a.variant {
        p["variant"] = json!(x);
    }
    if !a.os_features.is_empty() {
        p["os.features"] = json!(a.os_features);
    }
    let body = save(store, &key, v)?;
    record_sources(store, &key, &sources)?;
    Ok(body)
}

/// `img manifest rm LIST [IMAGE]`: an entry, or the whole list.
pub fn remove(store: &mut Store, list: &str, image: Option<&str>) -> Result<()> {
    let (key, mut v) = load(store, list)?;
    match image {
        None => {
            store.index_mut().remove_manifest_list(&key)?;
        }
        Some(image) => {
            let i = find(store, &v, list, image)?;
            v["manifests"].as_array_mut().expect("found in it").remove(i);
            save(store, &key, v)?;
        }
    }
    Ok(())
}

/// `img manifest inspect LIST`: the list's JSON.
pub fn inspect(store: &Store, list: &str) -> Result<Vec<u8>> {
    let key = list_key(list)?;
    let (_, body) = store
        .index()
        .manifest_list(&key)?
        .with_context(|| format!("{list}: no such manifest list; make it with img manifest create {list} IMAGE..."))?;
    Ok(body)
}

/// `img manifest push [--all] LIST DEST`: the member images (with `all`),
/// each by digest to DEST's repository, then the list to DEST. Returns the
/// list's digest.
pub fn push(
    store: &Store,
    list: &str,
    dest: &str,
    all: bool,
    client: &ClientOptions,
    progress: &dyn Progress,
) -> Result<Digest> {
    let (key, v) = load(store, list)?;
    let (mt, body) = store.index().manifest_list(&key)?.context("the list went away")?;
    let dest = dest.strip_prefix("docker://").unwrap_or(dest);
    let r = crate::reference::Reference::parse_with_default_tag(dest)
        .with_context(|| format!("invalid destination {dest:?}"))?;
    let repo_name = format!("{}/{}", r.domain(), r.path());
    let members = v["manifests"].as_array().cloned().unwrap_or_default();
    if members.is_empty() {
        bail!("{list} is empty; add images with img manifest add {list} IMAGE");
    }
    let mut v = v;
    if all {
        let images = store.index().images()?;
        let sources = store.index().manifest_list_sources(&key)?;
        for (i, m) in members.iter().enumerate() {
            let d = m["digest"].as_str().unwrap_or_default();
            let Some(img) = images.iter().find(|i| i.manifest_digest.as_str() == d) else {
                // Added from a registry: copied from there to the
                // destination's repository, by digest (as podman does).
                match sources.get(d) {
                    Some(src) if *src != repo_name => {
                        progress.line(&format!("Copying {d} from {src}"));
                        super::copy::copy_by_digest(
                            &format!("{src}@{d}"),
                            &format!("{repo_name}@{d}"),
                            client,
                            progress,
                        )
                        .with_context(|| format!("copying {list}'s member {d} from {src} to {repo_name}"))?;
                    }
                    Some(_) => {}
                    None => progress.line(&format!("{d} is not in the store: not pushed (the registry must have it)")),
                }
                continue;
            };
            progress.line(&format!("Pushing {d}"));
            let opts = super::push::PushOptions {
                sign: Default::default(),
                trust: Default::default(),
                source: img.id.as_str().to_string(),
                dest: Some(format!("{repo_name}:pushing")),
                client: client.clone(),
                compression: None,
                chunk_size: None,
                jobs: 3,
                by_digest: true,
            };
            let p =
                super::push::push(store, &opts, progress).with_context(|| format!("pushing {list}'s member {d}"))?;
            // Uncompressed layers are gzipped on the way: the manifest the
            // registry holds is then another, and the list names that one.
            let pd = p.manifest_digest.context("no manifest was pushed")?;
            v["manifests"][i]["digest"] = json!(pd.as_str());
            v["manifests"][i]["size"] = json!(p.manifest_size);
            v["manifests"][i]["mediaType"] = json!(p.manifest_media_type);
        }
    }
    // The list as pushed: the stored one, or with the members as pushed.
    let (mt, body) = if all {
        let docker =
            v["manifests"].as_array().is_some_and(|ms| ms.iter().all(|m| m["mediaType"] == image::DOCKER_MANIFEST));
        let mt = if docker { image::DOCKER_LIST } else { image::OCI_INDEX };
        v["mediaType"] = json!(mt);
        (mt.to_string(), serde_json::to_vec_pretty(&v)?)
    } else {
        (mt, body)
    };
    let reference = r.digest().or(r.tag()).unwrap_or("latest").to_string();
    let d = super::push::put_manifest(&r, &reference, &mt, &body, client).with_context(|| {
        if all {
            format!("pushing {list} to {dest}")
        } else {
            // Members of the store are pushed with their layers gzipped,
            // which gives them other digests than the list names.
            format!("pushing {list} to {dest} (with --all=false, the registry must hold every member as listed; push without it to send the images too)")
        }
    })?;
    // Said once it is so (found: it was said before a push that then failed).
    progress.line("Wrote the manifest list to the destination");
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_names_are_normalised_as_image_names() {
        assert_eq!(list_key("app:1").unwrap(), "docker.io/library/app:1");
        assert_eq!(list_key("127.0.0.1:5000/a/list").unwrap(), "127.0.0.1:5000/a/list:latest");
        assert!(list_key("UPPER:1").is_err());
    }
}
