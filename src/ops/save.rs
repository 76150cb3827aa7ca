//! `img save` and `img export`: writing images and root filesystems out.
//! A file target is written through a temp file beside it and renamed into
//! place at the end, so a failure never leaves a truncated archive there.

use super::resolve_image;
use crate::archive::{layer, write};
use crate::index::ImageRecord;
use crate::store::Store;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub use crate::archive::write::Format;

/// Where output goes.
pub enum Output {
    File(PathBuf),
    Stdout,
}

fn temp_beside(p: &Path) -> PathBuf {
    let mut name = p.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".img-tmp-{}", std::process::id()));
    p.with_file_name(name)
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
            let tmp = temp_beside(p);
            let label = p.display().to_string();
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

/// Resolves the names given to `save`: each image once, with every tag
/// named (a bare ID saves all the image's tags, as docker does).
pub fn items(store: &Store, names: &[String]) -> Result<Vec<write::SaveItem>> {
    let mut out: Vec<write::SaveItem> = Vec::new();
    for n in names {
        let (img, tag) = super::resolve_name(store, n)?;
        if img.kind == "embedded" && store.index().external_layers(&img.id)?.len() > 1 {
            bail!("{n} is an iSulad embedded image whose layers are squashfs files outside the store; it cannot be written as a docker or OCI archive");
        }
        let named: Vec<String> = match tag {
            Some(t) => vec![t],
            None => img.tags.clone(),
        };
        match out.iter_mut().find(|i| i.id == img.id) {
            Some(existing) => {
                for t in named {
                    if !existing.names.contains(&t) {
                        existing.names.push(t);
                    }
                }
            }
            None => out.push(write::SaveItem {
                id: img.id.clone(),
                manifest_digest: img.manifest_digest.clone(),
                names: named,
            }),
        }
    }
    Ok(out)
}

pub fn save(store: &Store, names: &[String], format: Format, out: &Output) -> Result<()> {
    let items = items(store, names)?;
    match format {
        Format::OciDir => {
            let Output::File(dir) = out else { bail!("--format oci-dir needs -o DIR") };
            write::write_oci_dir(store, &items, dir)?;
            Ok(())
        }
        Format::DockerArchive => with_output(out, |w, label| Ok(write::write_docker_archive(store, &items, w, label)?)),
        Format::OciArchive => with_output(out, |w, label| Ok(write::write_oci_archive(store, &items, w, label)?)),
    }
}

/// The layer digests of an image, bottom first.
pub fn layers_of(store: &Store, img: &ImageRecord) -> Result<Vec<crate::digest::Digest>> {
    Ok(store.index().image_blobs(&img.id)?.into_iter().filter(|(r, _)| r == "layer").map(|(_, d)| d).collect())
}

pub fn export(store: &Store, name: &str, out: &Output) -> Result<()> {
    let img = resolve_image(store, name)?;
    if img.kind == "embedded" {
        bail!("{name} is an iSulad embedded image; its root filesystem is a device or the host's /, which img does not export");
    }
    let layers = layers_of(store, &img)?;
    with_output(out, |w, label| Ok(layer::flatten(store, &layers, w, label)?))
}
