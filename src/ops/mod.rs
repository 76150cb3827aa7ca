//! Operations: what each command does, as functions that take plain options
//! and return values. No clap types and no printing here (the `cli` module
//! renders results); progress goes through the `Progress` callback.

/// What operations that mount or unshare are given to make their system
/// calls: the real kernel from `main`, a recording one in tests.
pub use img_sys::Kernel;

pub mod build;
pub mod commit;
pub mod convert;
pub mod copy;
pub mod df;
pub mod download;
pub mod evict;
pub mod fsck;
pub mod images;
pub mod import;
pub mod inspect;
pub mod lazy;
pub mod load;
pub mod login;
pub mod manifest;
pub mod mount;
pub mod options;
pub mod progress;
pub mod pull;
pub mod push;
pub mod remote;
pub mod remove;
pub mod save;
pub mod trust;

use crate::digest::Digest;
use crate::reference::{self, Reference};
use crate::store::index::{ImageRecord, TagName};
use crate::store::Store;
use anyhow::{bail, Context, Result};

/// An image made here (import, commit, convert), ready to be stored.
pub(crate) struct MadeImage<'a> {
    pub manifest_media_type: &'a str,
    pub manifest: &'a [u8],
    pub config: &'a [u8],
    /// `config`, parsed.
    pub parsed: &'a crate::image::Config,
    /// Every layer's digest and size, in order.
    pub layers: &'a [(Digest, u64)],
}

/// Stores `img`: its config and manifest are staged and committed with the
/// layer blobs staged for it (`new_layers`; the other layers are stored
/// already), and the image is recorded under `tags`. Returns the image ID.
pub(crate) fn store_made_image(
    store: &mut Store,
    img: &MadeImage,
    new_layers: &mut [&mut crate::store::StagedBlob],
    tags: &[TagName],
) -> Result<Digest> {
    use std::io::Write;
    let stage = |data: &[u8]| -> Result<crate::store::StagedBlob> {
        let mut w = store.blob_writer()?;
        w.write_all(data)?;
        Ok(w.finish()?)
    };
    let mut config_blob = stage(img.config)?;
    let mut manifest_blob = stage(img.manifest)?;
    let config_digest = config_blob.digest().clone();
    let size = img.layers.iter().map(|(_, s)| s).sum::<u64>() + img.config.len() as u64 + img.manifest.len() as u64;
    let mut all: Vec<&mut crate::store::StagedBlob> = vec![&mut manifest_blob, &mut config_blob];
    all.extend(new_layers.iter_mut().map(|b| &mut **b));
    let blobs = store.commit_blobs(&mut all)?;
    let mut new = stored_image(
        img.parsed,
        &config_digest,
        manifest_blob.digest(),
        img.manifest_media_type,
        size,
        img.layers.iter().map(|(d, _)| d.clone()).collect(),
    );
    new.layer_diff_sizes = measure_layers(store, &new.layer_digests)?;
    store.index_mut().insert_image(&new, &blobs, tags)?;
    Ok(config_digest)
}

/// The index record of an image whose blobs are all in the store: its ID
/// is its config's digest, and the rest comes from the parsed config.
pub(crate) fn stored_image(
    parsed: &crate::image::Config,
    config_digest: &Digest,
    manifest_digest: &Digest,
    manifest_media_type: &str,
    size: u64,
    layer_digests: Vec<Digest>,
) -> crate::store::index::NewImage {
    crate::store::index::NewImage {
        id: config_digest.clone(),
        manifest_digest: manifest_digest.clone(),
        manifest_media_type: manifest_media_type.into(),
        created: parsed.created,
        size,
        architecture: parsed.architecture(),
        os: parsed.os(),
        variant: parsed.variant(),
        author: parsed.author(),
        labels: parsed.labels_json(),
        kind: crate::store::index::ImageKind::Oci,
        config_digest: config_digest.clone(),
        layer_digests,
        external_layers: vec![],
        remote_layers: vec![],
        layer_diff_sizes: vec![],
    }
}

/// The uncompressed sizes of the stored layer blobs `layers` that the index
/// does not know yet, measured by decompressing them (nothing is kept); a
/// layer that is not stored or does not decompress is left out, and its
/// stored size stands for it.
pub(crate) fn measure_layers(store: &Store, layers: &[Digest]) -> Result<Vec<(Digest, u64)>> {
    let mut out: Vec<(Digest, u64)> = Vec::new();
    for d in layers {
        if out.iter().any(|(x, _)| x == d) || store.index().diff_size(d)?.is_some() {
            continue;
        }
        if let Ok(n) = crate::store::uncompressed_size(&store.blob_path(d)) {
            out.push((d.clone(), n));
        }
    }
    Ok(out)
}

/// An error that means "no such image" (exit status and wording as docker).
#[derive(Debug, thiserror::Error)]
#[error("{0}: image not known")]
pub struct NotFound(pub String);

/// Refuses a partial image (made by a lazy pull, some layers not stored)
/// for an operation that needs every layer.
pub fn require_complete(img: &ImageRecord, name: &str) -> Result<()> {
    if img.kind == crate::store::index::ImageKind::Partial {
        bail!("{name} is only partly pulled (it was pulled lazily for a mount); run img pull {name} to complete it");
    }
    Ok(())
}

/// Finds an image by full ID, unique ID prefix (4+ hex), or name.
pub fn resolve_image(store: &Store, name: &str) -> Result<ImageRecord> {
    Ok(resolve_name(store, name)?.0)
}

/// Like `resolve_image`, also returning the tag the name matched, if it
/// matched one (not an ID or digest).
pub fn resolve_name(store: &Store, name: &str) -> Result<(ImageRecord, Option<String>)> {
    let img = resolve_any(store, name)?;
    evict::note_use(store, &img.id);
    let tag = matching_tag(name, &img)?;
    Ok((img, tag))
}

fn matching_tag(name: &str, img: &ImageRecord) -> Result<Option<String>> {
    let id_str = name.strip_prefix("sha256:").unwrap_or(name);
    if crate::digest::is_lower_hex(id_str, 64) {
        return Ok(None);
    }
    let Ok(r) = Reference::parse(name) else {
        return Ok(None);
    };
    if r.digest().is_some() {
        return Ok(None);
    }
    let tagged = r.with_tag(r.tag().unwrap_or("latest"))?;
    if let Some(n) = tagged.tagged_name() {
        if img.tags.contains(&n) {
            return Ok(Some(n));
        }
    }
    if is_short_name(name) {
        for t in &img.tags {
            if short_name_matches(t, &r) {
                return Ok(Some(t.clone()));
            }
        }
    }
    Ok(None)
}

fn resolve_any(store: &Store, name: &str) -> Result<ImageRecord> {
    let ix = store.index();
    let id_str = name.strip_prefix("sha256:").unwrap_or(name);
    if crate::digest::is_lower_hex(id_str, 64) {
        let d = Digest::from_hex(id_str)?;
        return ix.image(&d)?.ok_or_else(|| NotFound(name.to_string()).into());
    }
    if let Ok(r) = Reference::parse(name) {
        if let Some(digest) = r.digest() {
            // name@digest: the image whose manifest has that digest and that
            // carries a tag in the repository.
            let repo = r.repository();
            for img in ix.images()? {
                if img.manifest_digest.as_str() == digest
                    && (img.tags.is_empty() || img.tags.iter().any(|t| t.starts_with(&format!("{repo}:"))))
                {
                    return Ok(img);
                }
            }
        } else {
            let tagged = r.with_tag(r.tag().unwrap_or("latest"))?;
            if let Some(n) = tagged.tagged_name() {
                if let Some(id) = ix.image_for_tag(&n)? {
                    if let Some(img) = ix.image(&id)? {
                        return Ok(img);
                    }
                }
            }
        }
    }
    if let Some(img) = resolve_short_name(store, name)? {
        return Ok(img);
    }
    if reference::looks_like_id(name) {
        let ids = ix.ids_with_prefix(id_str)?;
        match ids.len() {
            0 => {}
            1 => return ix.image(&ids[0])?.ok_or_else(|| NotFound(name.to_string()).into()),
            _ => bail!("{name}: ambiguous image ID prefix, it matches several images; give more characters"),
        }
    }
    if let Err(e) = Reference::parse(name) {
        if !reference::looks_like_id(name) {
            return Err(e).with_context(|| format!("{name}: not an image ID or a valid image name"));
        }
    }
    Err(NotFound(name.to_string()).into())
}

/// True if `name` names no registry (`app:1`, `library/app`), so that
/// it may match an image from any registry, as podman's short names do.
pub fn is_short_name(name: &str) -> bool {
    match name.split_once('/') {
        None => true,
        Some((first, _)) => {
            !(first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()))
        }
    }
}

/// The repository path a short name stands for, without docker's `library/`.
fn short_path(r: &Reference) -> &str {
    r.path().strip_prefix("library/").unwrap_or(r.path())
}

/// True if a stored repository matches a short name's path on any registry.
pub fn repository_matches_short(repository: &str, r: &Reference) -> bool {
    let path = short_path(r);
    match repository.split_once('/') {
        Some((_, rest)) => rest == path || rest.strip_prefix("library/") == Some(path),
        None => false,
    }
}

/// True if a stored `repo:tag` name is what short name `r` means on some
/// registry (its tag, `latest` by default, and its path).
fn short_name_matches(stored: &str, r: &Reference) -> bool {
    let (repo, tag) = split_name(stored);
    tag == r.tag().unwrap_or("latest") && repository_matches_short(repo, r)
}

/// Looks a short name up across registries (`bb:1` finds `localhost/bb:1`).
fn resolve_short_name(store: &Store, name: &str) -> Result<Option<ImageRecord>> {
    if !is_short_name(name) {
        return Ok(None);
    }
    let Ok(r) = Reference::parse(name) else {
        return Ok(None);
    };
    if r.digest().is_some() {
        return Ok(None);
    }
    let mut found: Vec<ImageRecord> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for img in store.index().images()? {
        for t in &img.tags {
            if short_name_matches(t, &r) {
                names.push(t.clone());
                if !found.iter().any(|f| f.id == img.id) {
                    found.push(img.clone());
                }
            }
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => bail!("{name} is ambiguous: it matches {}; give the full name", names.join(", ")),
    }
}

/// Parses a name given to tag/import/commit: normalised, `latest` by default.
pub fn parse_target_name(name: &str) -> Result<TagName> {
    let r = Reference::parse_with_default_tag(name).with_context(|| format!("invalid image name {name:?}"))?;
    if r.digest().is_some() {
        bail!("{name}: a tag target cannot contain a digest; use NAME:TAG");
    }
    Ok(tag_name(&r))
}

pub fn tag_name(r: &Reference) -> TagName {
    let tag = r.tag().unwrap_or("latest").to_string();
    let repository = r.repository();
    TagName { name: format!("{repository}:{tag}"), repository, tag }
}

/// `img tag SRC DST...`: returns the names now pointing at the image.
pub fn tag(store: &mut Store, src: &str, targets: &[String]) -> Result<Vec<String>> {
    let img = resolve_image(store, src)?;
    let names: Vec<TagName> = targets.iter().map(|t| parse_target_name(t)).collect::<Result<_>>()?;
    let mut out = Vec::new();
    for n in &names {
        match store.index_mut().tag(n, &img.id) {
            Ok(_) => {}
            // Removed by another process since we looked it up.
            Err(crate::store::index::IndexError::ImageGone(_)) => return Err(NotFound(src.to_string()).into()),
            Err(e) => return Err(e).with_context(|| format!("tagging {} as {}", src, n.name)),
        }
        out.push(n.name.clone());
    }
    Ok(out)
}

/// Splits a fully qualified `repo:tag` name into (repository, tag).
pub fn split_name(name: &str) -> (&str, &str) {
    match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (name, ""),
    }
}
