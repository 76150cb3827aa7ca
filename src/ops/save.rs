//! `img save` and `img export`: writing images and root filesystems out.
//! A file target is written through a temp file beside it and renamed into
//! place at the end, so a failure never leaves a truncated archive there.

use super::resolve_image;
use crate::archive::{layer, write};
use crate::digest::Digest;
use crate::store::index::ImageRecord;
use crate::store::{StagedBlob, Store};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

pub use crate::archive::write::Format;

/// Where output goes.
pub enum Output {
    File(PathBuf),
    Stdout,
}

/// Runs `f` on a buffered writer for `out`, committing a file atomically.
fn with_output<'s>(
    out: &Output,
    f: impl FnOnce(Box<dyn Write + 's>, &str) -> Result<Box<dyn Write + 's>>,
) -> Result<()> {
    match out {
        Output::Stdout => {
            let stdout = std::io::stdout().lock();
            let w = f(Box::new(BufWriter::with_capacity(256 * 1024, stdout)), "standard output")?;
            finish_writer(w, "standard output")
        }
        Output::File(p) => {
            let label = p.display().to_string();
            if let Ok(m) = std::fs::metadata(p) {
                if m.is_dir() {
                    bail!("{label} is a directory; give -o a file name");
                }
                if !m.is_file() {
                    // A device or a fifo (/dev/null, a pipe) is written as it
                    // is: a file renamed onto it would replace it.
                    let file =
                        std::fs::OpenOptions::new().write(true).open(p).with_context(|| format!("opening {label}"))?;
                    let w = f(Box::new(BufWriter::with_capacity(256 * 1024, file)), &label)?;
                    return finish_writer(w, &label);
                }
            }
            // A symlink stays; the file it names is what is replaced.
            let target;
            let p = if std::fs::symlink_metadata(p).map(|m| m.file_type().is_symlink()).unwrap_or(false) {
                target = std::fs::canonicalize(p)
                    .with_context(|| format!("{label} is a symlink to nothing; give -o a file name"))?;
                &target
            } else {
                p
            };
            let tmp = write::tmp_path(p);
            let res = (|| -> Result<()> {
                let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
                let w = f(Box::new(BufWriter::with_capacity(256 * 1024, file)), &label)?;
                finish_writer(w, &label)?;
                // Data reaches the disk before the name does.
                File::open(&tmp).and_then(|f| f.sync_all()).with_context(|| format!("syncing {label}"))?;
                std::fs::rename(&tmp, p).with_context(|| format!("renaming {} to {label}", tmp.display()))?;
                Ok(())
            })();
            if res.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            res
        }
    }
}

fn finish_writer(mut w: Box<dyn Write + '_>, label: &str) -> Result<()> {
    w.flush().with_context(|| format!("writing {label}"))
}

/// Resolves the names given to `save`: each image once, with the names
/// given for it (an ID or digest names none, as with podman and docker). Embedded
/// images are converted (see `convert_embedded`); their staged blobs are
/// added to `extra` and kept alive in `staged`.
pub fn items(
    store: &Store,
    names: &[String],
    extra: &mut HashMap<Digest, PathBuf>,
    staged: &mut Vec<StagedBlob>,
) -> Result<Vec<write::SaveItem>> {
    let mut out: Vec<write::SaveItem> = Vec::new();
    for n in names {
        let (img, tag) = super::resolve_name(store, n)?;
        super::require_complete(&img, n)?;
        // As podman: a name saves that name; an ID saves the image unnamed.
        let named: Vec<String> = tag.into_iter().collect();
        let (id, manifest_digest) = if img.kind == crate::store::index::ImageKind::Embedded {
            convert_embedded(store, &img, extra, staged).with_context(|| format!("saving embedded image {n}"))?
        } else {
            (img.id.clone(), img.manifest_digest.clone())
        };
        match out.iter_mut().find(|i| i.id == id) {
            Some(existing) => {
                for t in named {
                    if !existing.names.contains(&t) {
                        existing.names.push(t);
                    }
                }
            }
            None => out.push(write::SaveItem { id, manifest_digest, names: named }),
        }
    }
    Ok(out)
}

/// An iSulad embedded image as a regular image: each squashfs layer 1..n
/// becomes a tar layer placed at its `pathInContainer` (by `sqfs2tar`, from
/// squashfs-tools-ng); layer 0, the host's root or a block device, is not
/// part of what can be saved. Returns the new image's ID and manifest digest.
fn convert_embedded(
    store: &Store,
    img: &ImageRecord,
    extra: &mut HashMap<Digest, PathBuf>,
    staged: &mut Vec<StagedBlob>,
) -> Result<(Digest, Digest)> {
    use std::process::{Command, Stdio};
    let external = store.index().external_layers(&img.id)?;
    let copied: Vec<Digest> = layers_of(store, img)?;
    // (file, pathInContainer) for layers 1..n, from the store when --copy was used.
    let mut sources: Vec<(PathBuf, String, String)> = Vec::new();
    if copied.is_empty() {
        for l in external.iter().skip(1) {
            sources.push((PathBuf::from(&l.path_in_host), l.path_in_container.clone(), l.media_type.clone()));
        }
    } else {
        bail!("its layers were copied into the store without their paths; load it again without --copy to save it");
    }
    let mut diff_ids = Vec::new();
    let mut layers = Vec::new();
    for (file, in_container, mt) in &sources {
        if mt != crate::archive::embedded::LAYER_SQUASHFS {
            bail!("layer {} is a directory layer, which cannot be saved", file.display());
        }
        let root = in_container.trim_start_matches('/');
        let root = if root.is_empty() { "." } else { root };
        let mut child = Command::new("sqfs2tar")
            .args(["--root-becomes", root])
            .arg(file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running sqfs2tar to convert a squashfs layer; install squashfs-tools-ng")?;
        let mut w = store.blob_writer()?;
        let mut stdout = child.stdout.take().context("sqfs2tar output")?;
        w.copy_from(&mut stdout)?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "sqfs2tar could not read {}: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("failed")
            );
        }
        let blob = w.finish()?;
        diff_ids.push(blob.digest().clone());
        layers.push((blob.digest().clone(), blob.size()));
        extra.insert(blob.digest().clone(), blob.path().to_path_buf());
        staged.push(blob);
    }
    let raw = store.read_blob(&img.id, crate::image::MAX_CONFIG_SIZE)?;
    let mut config: serde_json::Value = serde_json::from_slice(&raw)?;
    config["rootfs"] =
        serde_json::json!({"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.as_str()).collect::<Vec<_>>()});
    let created = config.get("created").cloned().unwrap_or(serde_json::Value::Null);
    config["history"] = sources
        .iter()
        .map(|(f, p, _)| serde_json::json!({"created": created, "created_by": format!("squashfs layer {} at {p}", f.display())}))
        .collect();
    let config_bytes = serde_json::to_vec(&config)?;
    let config_digest = Digest::of_bytes(&config_bytes);
    let layer_descs: Vec<(&str, &Digest, u64)> =
        layers.iter().map(|(d, s)| (crate::image::DOCKER_LAYER, d, *s)).collect();
    let manifest = crate::image::build_manifest(
        crate::image::DOCKER_MANIFEST,
        (crate::image::DOCKER_CONFIG, &config_digest, config_bytes.len() as u64),
        &layer_descs,
    );
    let manifest_digest = Digest::of_bytes(&manifest);
    for data in [config_bytes, manifest] {
        let mut w = store.blob_writer()?;
        w.write_all(&data)?;
        let blob = w.finish()?;
        extra.insert(blob.digest().clone(), blob.path().to_path_buf());
        staged.push(blob);
    }
    Ok((config_digest, manifest_digest))
}

pub fn save(store: &Store, names: &[String], format: Format, out: &Output) -> Result<()> {
    save_as(store, names, None, format, out)
}

/// Like `save`, naming the images in the archive `rename` (when given)
/// instead of the names they were found by.
pub fn save_as(store: &Store, names: &[String], rename: Option<&[String]>, format: Format, out: &Output) -> Result<()> {
    let mut extra = HashMap::new();
    let mut staged = Vec::new();
    let mut items = items(store, names, &mut extra, &mut staged)?;
    if let Some(r) = rename {
        for i in &mut items {
            i.names = r.to_vec();
        }
    }
    let blobs = write::Overlay { store, extra };
    let res = match format {
        Format::OciDir => {
            let Output::File(dir) = out else { bail!("--format oci-dir needs -o DIR") };
            write::write_oci_dir(&blobs, &items, dir)?;
            Ok(())
        }
        Format::DockerArchive => {
            with_output(out, |w, label| Ok(write::write_docker_archive(&blobs, &items, w, label)?))
        }
        Format::OciArchive => with_output(out, |w, label| Ok(write::write_oci_archive(&blobs, &items, w, label)?)),
    };
    // The converted blobs were only for this archive; dropping them removes them.
    drop(staged);
    res
}

/// The layer digests of an image, bottom first.
/// The stored layers of a complete image, bottom first (a partial image is
/// refused: it lacks some).
pub fn layers_of(store: &Store, img: &ImageRecord) -> Result<Vec<crate::digest::Digest>> {
    let name = img.tags.first().cloned().unwrap_or_else(|| img.id.hex()[..12].to_string());
    super::require_complete(img, &name)?;
    Ok(store.index().image_blobs(&img.id)?.into_iter().filter(|(r, _)| r == "layer").map(|(_, d)| d).collect())
}

pub fn export(store: &Store, name: &str, out: &Output) -> Result<()> {
    let img = resolve_image(store, name)?;
    if img.kind == crate::store::index::ImageKind::Embedded {
        bail!("{name} is an iSulad embedded image; its root filesystem is a device or the host's /, which img does not export");
    }
    let layers = layers_of(store, &img)?;
    with_output(out, |w, label| Ok(layer::flatten(store, &layers, w, label)?))
}
