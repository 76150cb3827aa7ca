//! Where a built image goes besides the store (`img build -o`): an
//! archive, a registry, or docker's or iSulad's daemon.

use crate::digest::Digest;
use crate::ops::progress::Progress;
use crate::ops::{push, save};
use crate::registry::ClientOptions;
use crate::store::Store;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// Where a build's image goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// The store only, under this name too.
    Store(Option<String>),
    /// An archive of this format at this path, the image named so in it.
    Archive(save::Format, PathBuf, Option<String>),
    /// A registry: REGISTRY/REPO:TAG.
    Registry(String),
    /// `TOOL load` (docker or isula) of a docker archive, the image named so.
    Load(&'static str, String),
}

/// Delivers the stored image `id` to `output`; `name` is the image's name
/// there (for an archive or a daemon).
pub fn deliver(
    store: &Store,
    id: &Digest,
    output: &Output,
    name: Option<&str>,
    client: ClientOptions,
    sign: &crate::ops::trust::SignOptions,
    trust: &crate::ops::trust::TrustOptions,
    progress: &dyn Progress,
) -> Result<()> {
    if sign.signs() && !matches!(output, Output::Registry(_)) {
        bail!("--sign-by and --sign-by-sigstore-private-key sign an image pushed with -o docker://...; sign a stored image with img image sign");
    }
    let rename = name.map(|n| vec![n.to_string()]);
    match output {
        Output::Store(_) => {}
        Output::Archive(format, path, _) => {
            save::save_as(
                store,
                &[id.as_str().to_string()],
                rename.as_deref(),
                *format,
                &save::Output::File(path.clone()),
            )
            .with_context(|| format!("writing the image to {}", path.display()))?;
        }
        Output::Registry(dest) => {
            let opts = push::PushOptions {
                source: id.as_str().to_string(),
                dest: Some(dest.clone()),
                client,
                compression: None,
                chunk_size: None,
                jobs: 3,
                by_digest: false,
                sign: sign.clone(),
                trust: trust.clone(),
            };
            push::push(store, &opts, progress).with_context(|| format!("pushing the image to {dest}"))?;
        }
        Output::Load(tool, typed) => {
            let dir = store.temp_dir()?;
            let tar = dir.path().join("image.tar");
            save::save_as(
                store,
                &[id.as_str().to_string()],
                rename.as_deref(),
                save::Format::DockerArchive,
                &save::Output::File(tar.clone()),
            )?;
            let short = &id.hex()[..12];
            let st = std::process::Command::new(tool).arg("load").arg("-i").arg(&tar).status();
            match st {
                Ok(s) if s.success() => {}
                Ok(s) => bail!("{tool} load of {typed} failed ({s}); the image is in img's store as {short}"),
                Err(e) => bail!(
                    "cannot run {tool} ({e}): -o {} needs {tool} installed; the image is in img's store as {short}",
                    if *tool == "docker" { "docker-daemon:NAME" } else { "isulad:NAME" }
                ),
            }
        }
    }
    Ok(())
}
