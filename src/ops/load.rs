//! `img load`: every image of an archive, verified, then made visible in
//! one index transaction per image.

use super::tag_name;
use crate::archive::embedded;
use crate::archive::resolve::{self, Prepared};
use crate::archive::source::{Input, Staged};
use crate::digest::Digest;
use crate::store::index::NewImage;
use crate::store::{StagedBlob, Store};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// One image an archive held.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub id: Digest,
    /// Fully qualified `repo:tag` names now pointing at it.
    pub names: Vec<String>,
}

/// Whether `p` looks like an iSulad embedded image manifest (JSON naming
/// its media type), so that a load without --type embedded can say so.
pub fn is_embedded_manifest(p: &std::path::Path) -> bool {
    use std::io::Read;
    let mut head = Vec::new();
    let read = std::fs::File::open(p).and_then(|f| f.take(4096).read_to_end(&mut head));
    read.is_ok()
        && head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && String::from_utf8_lossy(&head).contains("application/embedded.manifest+json")
}

/// Loads every image in `input`, each admitted by the signature policy
/// first (an archive carries no signatures img reads, so a policy that
/// requires them for its path refuses it, and nothing is stored).
pub fn load(store: &mut Store, input: &Input, trust: &super::trust::TrustOptions) -> Result<Vec<Loaded>> {
    // A store with a max-size makes room for the archive (or refuses)
    // before staging it.
    if let Input::Path(path) = input {
        let size = super::evict::usage_of_path(path);
        let what = format!("loading {}", path.display());
        super::evict::make_room(store, super::evict::incoming_bytes(&[size]), &what, &[], &|_: &str| {})?;
    }
    // From a pipe the size is not known before reading: staging stops
    // before it would take more than the store can make room for, and
    // room is made for what was staged before anything is committed.
    let cap = match input {
        Input::Stdin => super::evict::room_for_stream(store, &[])?,
        Input::Path(_) => None,
    };
    let mut staged = match Staged::read(store, input, cap) {
        Err(crate::archive::source::SourceError::OverCap { cap, .. }) => {
            return Err(super::evict::no_room_for_stream(store, "loading standard input", cap)?.into());
        }
        other => other?,
    };
    if matches!(input, Input::Stdin) {
        let sizes = staged.staged_sizes();
        super::evict::make_room_for_staged(store, &sizes, "loading standard input", &[], &|_: &str| {})?;
    }
    let prepared = resolve::resolve(store, &mut staged)?;
    if let Input::Path(path) = input {
        let t = super::trust::Trust::load(trust)?;
        let transport = if path.is_dir() {
            crate::trust::Transport::Oci
        } else if staged.meta("index.json").is_some() {
            crate::trust::Transport::OciArchive
        } else {
            crate::trust::Transport::DockerArchive
        };
        for p in &prepared {
            // The manifest as staged (for a docker-archive, the one made for it).
            let manifest = match staged.get_many(std::slice::from_ref(&p.manifest_key)).first() {
                Some(b) => b.read_all(crate::image::MAX_MANIFEST_SIZE)?,
                None => anyhow::bail!("{}: the manifest of image {} was not staged", path.display(), p.id),
            };
            let name = p.names.first();
            super::trust::admit_file(&t, transport, path, None, name, &manifest)?;
        }
    }
    let mut out = Vec::new();
    for p in &prepared {
        out.push(commit_prepared(store, &mut staged, p)?);
    }
    super::evict::release_room(store);
    Ok(out)
}

fn commit_prepared(store: &mut Store, staged: &mut Staged, p: &Prepared) -> Result<Loaded> {
    let tags: Vec<_> = p.names.iter().map(tag_name).collect();
    // Already stored: only the names are new. Decided in one transaction,
    // so that an rmi racing this load cannot leave it half done.
    if store.index().image(&p.id)?.is_some() && store.index_mut().tag_existing(&tags, &p.id)? {
        return Ok(Loaded { id: p.id.clone(), names: tags.into_iter().map(|t| t.name).collect() });
    }
    let mut keys = vec![p.manifest_key.clone(), p.config_key.clone()];
    keys.extend(p.layer_keys.iter().cloned());
    let mut parts: Vec<&mut StagedBlob> = staged.get_many(&keys);
    let blobs = store.commit_blobs(&mut parts)?;
    let new = NewImage {
        id: p.id.clone(),
        manifest_digest: p.manifest_digest.clone(),
        manifest_media_type: p.manifest_media_type.clone(),
        created: p.config.created,
        size: p.size,
        architecture: p.config.architecture(),
        os: p.config.os(),
        variant: p.config.variant(),
        author: p.config.author(),
        labels: p.config.labels_json(),
        kind: crate::store::index::ImageKind::Oci,
        config_digest: p.id.clone(),
        layer_digests: p.layer_digests.clone(),
        external_layers: vec![],
        remote_layers: vec![],
        layer_diff_sizes: p.layer_diff_sizes.clone(),
    };
    crate::crashpoint("before_index_commit");
    store.index_mut().insert_image(&new, &blobs, &tags).context("recording the image in the index")?;
    Ok(Loaded { id: p.id.clone(), names: tags.into_iter().map(|t| t.name).collect() })
}

/// `img load --type embedded -i X.manifest [--copy]`.
pub fn load_embedded(store: &mut Store, manifest: &Path, copy: bool) -> Result<Loaded> {
    let e = embedded::read(manifest)?;
    let tag = tag_name(&e.name);
    let mut w = store.blob_writer()?;
    w.write_all(&e.config).context("writing the image config")?;
    let mut config_blob = w.finish()?;
    let config_digest = config_blob.digest().clone();
    let mut layer_blobs = Vec::new();
    let mut external = e.layers.clone();
    if copy {
        for f in &e.layer_files {
            let mut w = store.blob_writer()?;
            let mut src = std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?;
            w.copy_from(&mut src)?;
            layer_blobs.push(w.finish()?);
        }
        external.truncate(1);
    }
    let layer_digests: Vec<Digest> = layer_blobs.iter().map(|b| b.digest().clone()).collect();
    let mut parts: Vec<&mut StagedBlob> = vec![&mut config_blob];
    parts.extend(layer_blobs.iter_mut());
    let blobs = store.commit_blobs(&mut parts)?;
    let new = NewImage {
        id: config_digest.clone(),
        manifest_digest: e.manifest_digest.clone(),
        manifest_media_type: embedded::MEDIA_TYPE.into(),
        created: e.created,
        size: e.size,
        architecture: resolve::host_platform().1.into(),
        os: "linux".into(),
        variant: String::new(),
        author: String::new(),
        labels: "{}".into(),
        kind: crate::store::index::ImageKind::Embedded,
        config_digest: config_digest.clone(),
        layer_digests,
        external_layers: external,
        remote_layers: vec![],
        layer_diff_sizes: vec![],
    };
    store.index_mut().insert_image(&new, &blobs, std::slice::from_ref(&tag))?;
    Ok(Loaded { id: config_digest, names: vec![tag.name] })
}
