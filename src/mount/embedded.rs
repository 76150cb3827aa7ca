//! Mounting an iSulad embedded image as iSulad assembles it: layer 0 (the
//! host's `/` bound read-only, or a squashfs block device) as the root, and
//! each squashfs layer read-only at its `pathInContainer` inside it. These
//! are kernel mounts: no process serves them.

use crate::store::index::ExternalLayer;
use anyhow::{bail, Context, Result};
use img_sys::{Kernel, Unmount};
use std::path::{Component, Path, PathBuf};

/// Where layer `l` goes under `dir`: its `pathInContainer`, which must be
/// an absolute path without `..` (checked at load; checked again here).
fn target(dir: &Path, l: &ExternalLayer) -> Result<PathBuf> {
    let p = Path::new(&l.path_in_container);
    let mut out = dir.to_path_buf();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            _ => bail!("layer {}: pathInContainer {:?} leaves the root", l.path_in_host, l.path_in_container),
        }
    }
    Ok(out)
}

/// Mounts the layers at `dir`; on failure, what was mounted is taken down.
pub fn mount(kernel: &dyn Kernel, layers: &[ExternalLayer], dir: &Path) -> Result<()> {
    let Some((root, rest)) = layers.split_first() else { bail!("the image has no layers") };
    if root.media_type == crate::archive::embedded::LAYER_DIR {
        kernel.bind_read_only(Path::new(&root.path_in_host), dir)?;
    } else {
        kernel.mount_squashfs(Path::new(&root.path_in_host), dir)?;
    }
    let res = (|| -> Result<()> {
        for l in rest {
            let t = target(dir, l)?;
            if !t.is_dir() {
                bail!(
                    "layer {}: its pathInContainer {} is not a directory in layer 0; iSulad needs it there too",
                    l.path_in_host,
                    l.path_in_container
                );
            }
            if l.media_type == crate::archive::embedded::LAYER_DIR {
                kernel.bind_read_only(Path::new(&l.path_in_host), &t)?;
            } else {
                kernel.mount_squashfs(Path::new(&l.path_in_host), &t)?;
            }
        }
        Ok(())
    })();
    if res.is_err() {
        // A lazy unmount of the root takes the layers under it too.
        let _ = kernel.unmount(dir, Unmount::Lazy);
    }
    res.with_context(|| format!("mounting at {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use img_sys::RecordingKernel;

    fn layer(mt: &str, host: &str, container: &str) -> ExternalLayer {
        ExternalLayer {
            media_type: mt.into(),
            path_in_host: host.into(),
            path_in_container: container.into(),
            digest: String::new(),
            size: 0,
        }
    }

    #[test]
    fn layer_0_is_the_root_and_the_others_go_at_their_paths() {
        let k = RecordingKernel::default();
        let dir_dir = crate::testdir::TestDir::new("embedded-test");
        let dir = dir_dir.to_path_buf();
        std::fs::create_dir_all(dir.join("opt/app")).unwrap();
        let layers = [
            layer(crate::archive::embedded::LAYER_DIR, "/", ""),
            layer(crate::archive::embedded::LAYER_SQUASHFS, "/data/app.sqfs", "/opt/app"),
        ];
        // The recording kernel mounts nothing, so the layer targets are
        // looked up in `dir` itself, made above.
        mount(&k, &layers, &dir).unwrap();
        assert_eq!(
            k.calls(),
            [format!("bind / {}", dir.display()), format!("squashfs /data/app.sqfs {}/opt/app", dir.display())]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_layer_takes_the_root_down_again() {
        let k = RecordingKernel::default();
        let dir_dir = crate::testdir::TestDir::new("embedded-fail");
        let dir = dir_dir.to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let layers = [
            layer(crate::archive::embedded::LAYER_SQUASHFS, "/dev/vdb", ""),
            layer(crate::archive::embedded::LAYER_SQUASHFS, "/data/app.sqfs", "/missing"),
        ];
        let e = format!("{:#}", mount(&k, &layers, &dir).unwrap_err());
        assert!(e.contains("/missing") && e.contains("not a directory in layer 0"), "{e}");
        assert_eq!(
            k.calls(),
            [format!("squashfs /dev/vdb {}", dir.display()), format!("unmount {} Lazy", dir.display())]
        );
        let escaping = [layer(crate::archive::embedded::LAYER_DIR, "/", ""), layer("x", "/a", "/../etc")];
        assert!(format!("{:#}", mount(&k, &escaping, &dir).unwrap_err()).contains("leaves the root"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
