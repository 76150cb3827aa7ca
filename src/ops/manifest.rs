//! `img manifest`: manifest lists (image indexes) made of images in the
//! store, kept in the index by name and pushed with their images.

use super::pull::Progress;
use crate::digest::Digest;
use crate::image;
use crate::index::ImageRecord;
use crate::registry::ClientOptions;
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
    if img.kind == "embedded" {
        bail!("{name} is an iSulad embedded image, which a manifest list cannot hold; save and load it first");
    }
    super::require_complete(&img, name)?;
    Ok(img)
}

/// `img manifest create LIST IMAGE...`: a new list of `images`.
pub fn create(store: &mut Store, list: &str, images: &[String], amend: bool) -> Result<Vec<u8>> {
    let key = list_key(list)?;
    if store.index().manifest_list(&key)?.is_some() && !amend {
        bail!("{list}: a manifest list of that name exists; add to it with img manifest add, or remove it with img manifest rm {list}");
    }
    if store.index().image_for_tag(&key)?.is_some() {
        bail!("{list}: an image has that name; give the list another");
    }
    let mut v = json!({"schemaVersion": 2, "manifests": []});
    for i in images {
        add_to(store, &mut v, i)?;
    }
    save(store, &key, v)
}

fn add_to(store: &Store, v: &mut Value, image: &str) -> Result<()> {
    let img = image_of(store, image)?;
    let e = entry(store, &img)?;
    let ms = v["manifests"].as_array_mut().context("the list has no manifests array")?;
    ms.retain(|m| m["digest"] != e["digest"]);
    ms.push(e);
    Ok(())
}

/// `img manifest add LIST IMAGE`.
pub fn add(store: &mut Store, list: &str, image: &str) -> Result<Vec<u8>> {
    let (key, mut v) = load(store, list)?;
    add_to(store, &mut v, image)?;
    save(store, &key, v)
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
pub fn annotate(store: &mut Store, list: &str, image: &str, a: &Annotation) -> Result<Vec<u8>> {
    let (key, mut v) = load(store, list)?;
    let i = find(store, &v, list, image)?;
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
    save(store, &key, v)
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
        for (i, m) in members.iter().enumerate() {
            let d = m["digest"].as_str().unwrap_or_default();
            let img = images.iter().find(|i| i.manifest_digest.as_str() == d).with_context(|| {
                format!("pushing {list}: its member {d} is not in the store; pull it, or img manifest rm {list} {d}")
            })?;
            progress.line(&format!("Pushing {d}"));
            let opts = super::push::PushOptions {
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
    progress.line("Writing manifest list to image destination");
    super::push::put_manifest(&r, &reference, &mt, &body, client).with_context(|| format!("pushing {list} to {dest}"))
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
