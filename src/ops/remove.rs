//! `img rmi` and `img prune`: untagging, deleting image rows, and then,
//! under the exclusive lock, deleting the blobs nothing references.

use super::{resolve_name, split_name};
use crate::digest::Digest;
use crate::store::Store;
use anyhow::{bail, Result};

/// What removing one argument did.
#[derive(Debug, Clone, Default)]
pub struct Removed {
    pub untagged: Vec<String>,
    pub deleted: Vec<Digest>,
}

/// Every image's ID, newest first: what `img rmi --all` removes.
pub fn all_image_ids(store: &Store) -> Result<Vec<Digest>> {
    Ok(store.index().images_brief()?.into_iter().map(|i| i.id).collect())
}

/// Removes one image or name with docker's rules.
pub fn rmi_one(kernel: &dyn img_sys::Kernel, store: &mut Store, name: &str, force: bool) -> Result<Removed> {
    let (img, by_tag) = resolve_name(store, name)?;
    // A name that found the image but is not among its tags any more was
    // untagged by another process meanwhile: that name is gone (found by
    // the concurrency battery: it was taken for the image's ID, and the
    // image's other tags made it a conflict).
    let names_a_tag = crate::reference::Reference::parse(name).is_ok_and(|r| r.digest().is_none());
    if by_tag.is_none() && names_a_tag && !img.id.hex().starts_with(name.trim_start_matches("sha256:")) {
        return Err(super::NotFound(name.to_string()).into());
    }
    let mut out = Removed::default();
    // A name that is one of the image's tags removes just that tag.
    if let Some(tag) = by_tag {
        if img.tags.len() > 1 {
            store.index_mut().untag(&tag)?;
            out.untagged.push(tag);
            return Ok(out);
        }
    } else if img.tags.len() > 1 && !force {
        let repos: Vec<&str> = img.tags.iter().map(|t| split_name(t).0).collect();
        let mut uniq = repos.clone();
        uniq.dedup();
        let why = if uniq.len() > 1 { "referenced in multiple repositories" } else { "tagged several times" };
        bail!(
            "conflict: unable to delete {} (must be forced) - image is {why}; remove its tags one by one or use img rmi -f",
            &img.id.hex()[..12]
        );
    }
    // Changes not committed are never thrown away here, -f or not: only
    // img umount --discard does that (found: rmi -f unmounted a writable
    // mount and lost its changes).
    let mine: Vec<crate::mount::MountState> =
        crate::mount::mounts(store)?.into_iter().filter(|m| m.record.image_id == img.id).collect();
    for m in &mine {
        crate::mount::refuse_uncommitted(&m.record)?;
    }
    if !force {
        if let Some(m) = mine.iter().find(|m| m.serving) {
            bail!(
                "image {} is mounted at {}; run img umount {} first, or img rmi -f",
                &img.id.hex()[..12],
                m.record.mountpoint,
                m.record.mountpoint
            );
        }
    }
    // As podman's rmi -f removes the containers using an image: the
    // image's mounts go first (and records of dead ones), so none is left
    // without its blobs.
    for m in &mine {
        crate::mount::unmount(kernel, store, m, false)?;
    }
    let del = store.index_mut().delete_image(&img.id)?;
    out.untagged.extend(del.untagged);
    if del.deleted {
        out.deleted.push(img.id.clone());
    }
    Ok(out)
}

/// Deletes the blobs that removals left unreferenced, if no other img
/// process is ingesting right now (otherwise the next prune does it).
pub fn collect_garbage_if_idle(store: &mut Store) -> Result<(u64, u64)> {
    if store.try_lock_exclusive()? {
        Ok(store.delete_unreferenced(None)?)
    } else {
        Ok((0, 0))
    }
}

#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    pub removed: Vec<Removed>,
    pub blobs: u64,
    pub bytes: u64,
}

/// Removes dangling images (with `all`, every image not mounted), then
/// every blob and stray file nothing references.
pub fn prune(store: &mut Store, all: bool, on_wait: impl FnOnce()) -> Result<PruneReport> {
    store.lock_exclusive(on_wait)?;
    let mut report = PruneReport::default();
    // Mounted images stay, and so do images whose writable mount (its
    // server gone) holds changes not committed: they are the base a commit
    // of the changes needs.
    let mut mounted: Vec<Digest> = Vec::new();
    for m in crate::mount::mounts(store)? {
        if m.serving || crate::mount::has_uncommitted_changes(&m.record)? {
            mounted.push(m.record.image_id);
        }
    }
    for img in store.index().images()? {
        if (all || img.tags.is_empty()) && !mounted.contains(&img.id) {
            let del = store.index_mut().delete_image(&img.id)?;
            if del.deleted {
                report.removed.push(Removed { untagged: del.untagged, deleted: vec![img.id.clone()] });
            }
        }
    }
    let (n, bytes) = store.delete_unreferenced(None)?;
    report.blobs += n;
    report.bytes += bytes;
    // Files in blobs/ the index does not know: left by a crash between an
    // index delete and the unlink. Nothing can refer to them.
    for (_, size) in store.remove_unindexed_files()? {
        report.blobs += 1;
        report.bytes += size;
    }
    Ok(report)
}
