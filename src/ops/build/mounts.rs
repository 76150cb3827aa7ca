//! The mounts of a build: stored layers served through FUSE from this
//! process, overlayfs mounts of a stage's root, and the directories a step
//! copied up only for its own use, pruned after it.

use crate::digest::Digest;
use crate::store::Store;
use anyhow::{anyhow, bail, Context, Result};
use img_sys::Kernel;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An image served read-only through FUSE from this process, unmounted
/// when dropped.
pub(super) struct FuseMount<'k> {
    kernel: &'k dyn Kernel,
    pub(super) dir: PathBuf,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl<'k> FuseMount<'k> {
    pub(super) fn new(
        kernel: &'k dyn Kernel,
        store: &Store,
        layers: &[Digest],
        label: &str,
        dir: PathBuf,
    ) -> Result<Self> {
        crate::mount::ensure_layer_indexes(store, layers)?;
        let fs =
            Arc::new(crate::mount::layers_fs(store, layers, label)?.with_error_log(|m| eprintln!("img build: {m}")));
        std::fs::create_dir_all(&dir)?;
        let cfg = img_fuse::MountConfig { fs_name: "img-build".to_string(), allow_other: false, threads: 2 };
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.clone();
        let thread = std::thread::spawn(move || {
            img_fuse::serve(fs, &d, &cfg, || {
                let _ = tx.send(());
                Ok(())
            })
        });
        if rx.recv().is_err() {
            let res = thread.join().map_err(|_| anyhow!("the FUSE server of {label} panicked"))?;
            res.with_context(|| format!("mounting {label} for the build"))?;
            bail!("mounting {label} for the build: the server stopped");
        }
        Ok(FuseMount { kernel, dir, thread: Some(thread) })
    }
}

impl Drop for FuseMount<'_> {
    fn drop(&mut self) {
        let _ = self.kernel.unmount(&self.dir, img_sys::Unmount::Lazy);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A directory a step copied up only to make and remove files in it: once
/// the step is over, it goes from the upper directory if it is empty,
/// not opaque and has the mode and owner it had.
pub(super) struct Prune {
    pub(super) dir: String,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
}

impl Prune {
    pub(super) fn apply(&self, upper: &Path) {
        let p = upper.join(&self.dir);
        let Ok(md) = std::fs::symlink_metadata(&p) else { return };
        let empty = std::fs::read_dir(&p).map(|mut d| d.next().is_none()).unwrap_or(false);
        let opaque = ["trusted.overlay.opaque", "user.overlay.opaque"]
            .iter()
            .any(|n| img_sys::fs::xattr(&p, n).ok().flatten().is_some());
        if md.is_dir() && empty && !opaque && md.mode() == self.mode && md.uid() == self.uid && md.gid() == self.gid {
            let _ = std::fs::remove_dir(&p);
        }
    }
}

/// An overlayfs mount, unmounted when dropped.
pub(super) struct OverlayGuard<'k>(pub(super) &'k dyn Kernel, pub(super) PathBuf);

impl Drop for OverlayGuard<'_> {
    fn drop(&mut self) {
        if self.0.unmount(&self.1, img_sys::Unmount::Normal).is_err() {
            let _ = self.0.unmount(&self.1, img_sys::Unmount::Lazy);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use img_sys::RecordingKernel;

    #[test]
    fn a_stage_overlay_is_unmounted_when_dropped() {
        let k = RecordingKernel::default();
        drop(OverlayGuard(&k, PathBuf::from("/w/m1")));
        assert_eq!(k.calls(), ["unmount /w/m1 Normal"]);
    }

    #[test]
    fn a_busy_stage_overlay_is_detached_lazily() {
        let k = RecordingKernel::default();
        k.fail.lock().unwrap().push("unmount /w/m1 Normal".into());
        drop(OverlayGuard(&k, PathBuf::from("/w/m1")));
        assert_eq!(k.calls(), ["unmount /w/m1 Normal", "unmount /w/m1 Lazy"]);
    }
}
