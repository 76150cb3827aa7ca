//! `img copy SRC DST` between transports, as skopeo names them:
//! `docker://REF`, `oci:DIR[:REF]`, `oci-archive:FILE[:REF]`,
//! `docker-archive:FILE[:REF]` and `img:NAME` (the local store).
//!
//! Registry to registry streams each blob from one to the other without
//! touching the disk (a mount when both are the same registry). Every other
//! pair goes through a store: the local one when it is an end, otherwise a
//! temporary store under `ingest/` that is removed afterwards.

use super::options::{options_for, parse_platform};
use super::progress::Progress;
use super::pull::{self, fetch_manifest};
use super::{load, push, save};
use crate::archive::source::Input;
use crate::digest::{Digest, HashingReader};
use crate::image::{self, Document};
use crate::reference::Reference;
use crate::registry::{Client, ClientOptions, Repo, Upload};
use crate::store::Store;
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Docker(String),
    Store(String),
    Oci { dir: PathBuf, reference: Option<String> },
    OciArchive { file: PathBuf, reference: Option<String> },
    DockerArchive { file: PathBuf, reference: Option<String> },
}

impl Transport {
    pub fn parse(s: &str) -> Result<Transport> {
        let (kind, rest) = s.split_once(':').with_context(|| {
            format!("{s:?} names no transport: use docker://REF, img:NAME, oci:DIR[:REF], oci-archive:FILE[:REF] or docker-archive:FILE[:REF]")
        })?;
        let path_ref = |rest: &str| -> (PathBuf, Option<String>) {
            match rest.split_once(':') {
                Some((p, r)) if !r.is_empty() => (PathBuf::from(p), Some(r.to_string())),
                Some((p, _)) => (PathBuf::from(p), None),
                None => (PathBuf::from(rest), None),
            }
        };
        let t = match kind {
            "docker" => Transport::Docker(
                rest.strip_prefix("//")
                    .with_context(|| format!("{s:?}: write docker://REGISTRY/NAME:TAG"))?
                    .to_string(),
            ),
            "img" | "containers-storage" => Transport::Store(rest.to_string()),
            "oci" => {
                let (dir, reference) = path_ref(rest);
                Transport::Oci { dir, reference }
            }
            "oci-archive" => {
                let (file, reference) = path_ref(rest);
                Transport::OciArchive { file, reference }
            }
            "docker-archive" => {
                let (file, reference) = path_ref(rest);
                Transport::DockerArchive { file, reference }
            }
            _ => bail!("unknown transport {kind:?} in {s:?}: use docker, img, oci, oci-archive or docker-archive"),
        };
        if let Transport::Oci { dir, .. }
        | Transport::OciArchive { file: dir, .. }
        | Transport::DockerArchive { file: dir, .. } = &t
        {
            if dir.as_os_str().is_empty() {
                bail!("{s:?} names no path");
            }
        }
        Ok(t)
    }
}

#[derive(Clone)]
pub struct CopyOptions {
    /// The source's registry options; its `rate` caps the whole copy.
    pub src_client: ClientOptions,
    pub dst_client: ClientOptions,
    /// `os/arch[/variant]` to copy from an index; the host's by default.
    pub platform: Option<String>,
    /// Registry to registry: copy a whole index with every image in it.
    pub all: bool,
    pub jobs: usize,
    /// The signature policy the source obeys.
    pub trust: super::trust::TrustOptions,
    /// Signatures to make for the destination, and whether to drop the source's.
    pub sign: super::trust::SignOptions,
}

/// Copies `src` to `dst`; returns the destination manifest's digest when
/// the destination is a registry.
pub fn copy(
    store_root: &Path,
    src: &Transport,
    dst: &Transport,
    opts: &CopyOptions,
    progress: &dyn Progress,
) -> Result<Option<Digest>> {
    // One cap for the whole copy, each way: what it downloads and what it uploads.
    let mut opts = opts.clone();
    opts.src_client.rate = super::options::rate_for(store_root, &opts.src_client.rate)?;
    opts.dst_client.rate = opts.src_client.rate.clone();
    let opts = &opts;
    if opts.sign.signs() && !matches!(dst, Transport::Docker(_)) {
        bail!("signing needs a registry destination (docker://...); sign a stored image with img image sign");
    }
    if let (Transport::Docker(s), Transport::Docker(d)) = (src, dst) {
        return registry_to_registry(s, d, opts, progress).map(Some);
    }
    if opts.all {
        bail!("--all copies an index between registries only (docker:// to docker://)");
    }
    let mut local = Store::open(store_root)?;
    // Bring the source into a store: the local one when it is an end.
    let use_local = matches!(src, Transport::Store(_)) || matches!(dst, Transport::Store(_));
    // A temporary store lives in `ingest/` of the local one.
    let temp = if use_local { None } else { Some(local.temp_dir()?) };
    let mut temp_store = match &temp {
        Some(t) => Some(Store::open(t.path())?),
        None => None,
    };
    let store: &mut Store = temp_store.as_mut().unwrap_or(&mut local);
    let (id, name) = bring_in(store, src, opts, progress)?;
    // Then out to the destination.
    match dst {
        Transport::Store(n) => {
            if !n.is_empty() {
                super::tag(store, id.as_str(), std::slice::from_ref(n))?;
            }
            Ok(None)
        }
        Transport::Docker(d) => {
            let popts = push::PushOptions {
                source: id.to_string(),
                dest: Some(d.clone()),
                client: opts.dst_client.clone(),
                compression: None,
                chunk_size: None,
                jobs: opts.jobs,
                by_digest: false,
                sign: opts.sign.clone(),
                trust: opts.trust.clone(),
            };
            Ok(push::push(store, &popts, progress)?.manifest_digest)
        }
        Transport::Oci { dir: path, reference } | Transport::OciArchive { file: path, reference } => {
            // OCI layouts name images by the bare reference given.
            let names: Vec<String> = reference.iter().cloned().collect();
            let format =
                if matches!(dst, Transport::Oci { .. }) { save::Format::OciDir } else { save::Format::OciArchive };
            let out = save::Output::File(path.clone());
            save::save_as(store, &[id.to_string()], Some(&names), format, &out)?;
            Ok(None)
        }
        Transport::DockerArchive { file, reference } => {
            let names: Vec<String> = match reference {
                Some(r) => vec![Reference::parse_with_default_tag(r)
                    .with_context(|| format!("invalid name {r:?} for {}", file.display()))?
                    .to_string()],
                None => name.into_iter().collect(),
            };
            let out = save::Output::File(file.clone());
            save::save_as(store, &[id.to_string()], Some(&names), save::Format::DockerArchive, &out)?;
            Ok(None)
        }
    }
}

/// Puts the source image into `store`; returns its ID and its name, if any.
fn bring_in(
    store: &mut Store,
    src: &Transport,
    opts: &CopyOptions,
    progress: &dyn Progress,
) -> Result<(Digest, Option<String>)> {
    match src {
        Transport::Store(n) => {
            let (img, tag) = super::resolve_name(store, n)?;
            Ok((img.id, tag))
        }
        Transport::Docker(r) => {
            let popts = pull::PullOptions {
                reference: r.clone(),
                platform: opts.platform.clone(),
                client: opts.src_client.clone(),
                jobs: opts.jobs,
                lazy: false,
                trust: opts.trust.clone(),
            };
            let id = pull::pull(store, &popts, progress)?;
            let name = Reference::parse_with_default_tag(r).ok().filter(|r| r.tag().is_some()).map(|r| r.to_string());
            Ok((id, name))
        }
        Transport::Oci { dir: path, reference }
        | Transport::OciArchive { file: path, reference }
        | Transport::DockerArchive { file: path, reference } => {
            let loaded = load::load(store, &Input::Path(path.clone()), &opts.trust)?;
            let what = path.display();
            match reference {
                None => match loaded.as_slice() {
                    [one] => Ok((one.id.clone(), one.names.first().cloned())),
                    [] => bail!("{what} holds no image"),
                    _ => {
                        bail!("{what} holds {} images; name the one to copy after a colon ({what}:NAME)", loaded.len())
                    }
                },
                Some(want) => {
                    // A name the archive gives in full, or an OCI ref.name tag.
                    if let Ok(r) = Reference::parse_with_default_tag(want) {
                        if let Some(l) = loaded.iter().find(|l| l.names.contains(&r.to_string())) {
                            return Ok((l.id.clone(), Some(r.to_string())));
                        }
                    }
                    if matches!(src, Transport::Oci { .. } | Transport::OciArchive { .. }) {
                        if let Some(md) = oci_ref_manifest(path, matches!(src, Transport::Oci { .. }), want)? {
                            for l in &loaded {
                                if store.index().image(&l.id)?.is_some_and(|i| i.manifest_digest == md) {
                                    return Ok((l.id.clone(), None));
                                }
                            }
                        }
                    }
                    bail!("{what} has no image named {want:?}")
                }
            }
        }
    }
}

/// The manifest digest an OCI layout's index names `reference` (its
/// `org.opencontainers.image.ref.name`).
fn oci_ref_manifest(path: &Path, is_dir: bool, reference: &str) -> Result<Option<Digest>> {
    let bytes = if is_dir {
        let mut v = Vec::new();
        std::fs::File::open(path.join("index.json"))
            .with_context(|| format!("opening {}/index.json", path.display()))?
            .take(image::MAX_MANIFEST_SIZE + 1)
            .read_to_end(&mut v)?;
        v
    } else {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut ar = tar::Archive::new(f);
        let mut found = None;
        for e in ar.entries()? {
            let mut e = e?;
            let p = e.path()?.to_string_lossy().trim_start_matches("./").to_string();
            if p == "index.json" {
                let mut v = Vec::new();
                (&mut e).take(image::MAX_MANIFEST_SIZE + 1).read_to_end(&mut v)?;
                found = Some(v);
                break;
            }
        }
        found.with_context(|| format!("{} has no index.json", path.display()))?
    };
    let Document::Index(ix) = image::parse_document(&format!("index.json of {}", path.display()), &bytes, None)? else {
        return Ok(None);
    };
    Ok(ix
        .manifests
        .iter()
        .find(|d| d.annotation("org.opencontainers.image.ref.name") == Some(reference))
        .map(|d| d.digest.clone()))
}

fn connect(reference: &str, base: &ClientOptions) -> Result<(Reference, Client)> {
    let r = Reference::parse_with_default_tag(reference)
        .with_context(|| format!("invalid image reference {reference:?}"))?;
    let opts = options_for(r.domain(), base)?;
    let client = Client::connect(r.domain(), &opts).with_context(|| format!("connecting to {}", r.domain()))?;
    Ok((r, client))
}

/// Registry to registry, blob by blob, streamed.
/// Copies `src` to `dst` (registry references), both read and written
/// with `client`; returns the destination manifest's digest.
pub fn copy_by_digest(src: &str, dst: &str, client: &ClientOptions, progress: &dyn Progress) -> Result<Digest> {
    let opts = CopyOptions {
        src_client: client.clone(),
        dst_client: client.clone(),
        platform: None,
        all: false,
        jobs: 3,
        trust: Default::default(),
        sign: Default::default(),
    };
    registry_to_registry(src, dst, &opts, progress)
}

fn registry_to_registry(src: &str, dst: &str, opts: &CopyOptions, progress: &dyn Progress) -> Result<Digest> {
    let (sr, sclient) = connect(src, &opts.src_client)?;
    let (dr, dclient) = connect(dst, &opts.dst_client)?;
    let ctx = || format!("copying {sr} to {dr}");
    let srepo = Repo::new(&sclient, sr.path());
    let drepo = Repo::new(&dclient, dr.path());
    let same_registry = sr.domain() == dr.domain();
    let reference = sr.digest().or(sr.tag()).unwrap_or("latest").to_string();
    let dref = dr.digest().or(dr.tag()).unwrap_or("latest").to_string();
    let top = srepo.manifest(&reference).with_context(ctx)?;
    // The policy decides before anything is written to the destination.
    let trust = super::trust::Trust::load(&opts.trust)?;
    let found = super::trust::admit_remote(&trust, &srepo, &sr, &top, progress)?;
    let top_doc = image::parse_document(&format!("manifest of {sr}"), &top.bytes, top.content_type.as_deref())
        .with_context(ctx)?;
    let copy_image = |m: &image::Manifest| -> Result<()> {
        for d in std::iter::once(&m.config).chain(m.layers.iter()) {
            copy_blob(&srepo, &drepo, same_registry, &d.digest, d.size, progress).with_context(ctx)?;
        }
        Ok(())
    };
    match (&top_doc, opts.all) {
        (Document::Index(ix), true) => {
            for child in &ix.manifests {
                let fetched = srepo.manifest(child.digest.as_str()).with_context(ctx)?;
                let Document::Manifest(m) = image::parse_document(
                    &format!("manifest {}", child.digest),
                    &fetched.bytes,
                    Some(&child.media_type),
                )
                .with_context(ctx)?
                else {
                    bail!("copying {sr}: nested index {} is not supported", child.digest);
                };
                copy_image(&m)?;
                drepo.put_manifest(child.digest.as_str(), &child.media_type, &fetched.bytes).with_context(ctx)?;
            }
            let mt = top.content_type.clone().unwrap_or_else(|| ix.media_type.clone());
            progress.line("Writing manifest list to image destination");
            let d = drepo.put_manifest(&dref, &mt, &top.bytes).with_context(ctx)?;
            let sigs = super::trust::outgoing(&found, &d, &dr, &opts.sign, progress)?;
            super::trust::publish(&opts.trust, &drepo, &dr, &d, &sigs, progress)?;
            Ok(d)
        }
        _ => {
            let (os, arch, variant) = parse_platform(opts.platform.as_deref())?;
            let (_, chosen, m) =
                fetch_manifest(&srepo, &sr.to_string(), &reference, (&os, &arch, &variant)).with_context(ctx)?;
            copy_image(&m)?;
            progress.line("Writing manifest to image destination");
            let mt = chosen.content_type.clone().unwrap_or_else(|| m.media_type.clone());
            let d = drepo.put_manifest(&dref, &mt, &chosen.bytes).with_context(ctx)?;
            let sigs = super::trust::outgoing(&found, &d, &dr, &opts.sign, progress)?;
            super::trust::publish(&opts.trust, &drepo, &dr, &d, &sigs, progress)?;
            Ok(d)
        }
    }
}

fn copy_blob(
    src: &Repo,
    dst: &Repo,
    same_registry: bool,
    d: &Digest,
    size: u64,
    progress: &dyn Progress,
) -> Result<()> {
    if dst.has_blob(d, &dst.push_scope())? {
        progress.line(&format!("Copying blob {} skipped: already exists", d.short()));
        return Ok(());
    }
    let from = same_registry.then_some(src.name.as_str());
    let location = match dst.start_upload(from.map(|f| (d, f)))? {
        Upload::Mounted => {
            progress.line(&format!("Copying blob {} mounted", d.short()));
            return Ok(());
        }
        Upload::Location(l) => l,
    };
    progress.line(&format!("Copying blob {}", d.short()));
    let resp = src.blob_from(d, 0)?;
    let mut reader = HashingReader::new(resp.body);
    dst.put_blob(&location, d, &mut reader, size)?;
    let (got, n, _) = reader.finish();
    if &got != d || n != size {
        bail!("blob {d}: the source sent {n} bytes with digest {got}; the destination refused or must be checked");
    }
    Ok(())
}
