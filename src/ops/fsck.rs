//! `img fsck`: every blob's digest and size, every index reference, the
//! SQLite integrity checks, and leftovers of interrupted commands.

use crate::digest::Digest;
use crate::image::{self, Document};
use crate::store::Store;
use anyhow::Result;

#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Problems that make the store unclean.
    pub problems: Vec<String>,
    /// Facts worth knowing that are not problems.
    pub notes: Vec<String>,
    /// What --repair did.
    pub repaired: Vec<String>,
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    pub images_checked: u64,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

fn hash_file(store: &Store, d: &Digest) -> std::io::Result<(Digest, u64)> {
    let h = crate::digest::hash_reader(&mut std::fs::File::open(store.blob_path(d))?)?;
    let n = h.len();
    Ok((h.finish(), n))
}

pub fn fsck(store: &mut Store, repair: bool, on_wait: impl FnOnce()) -> Result<Report> {
    let mut r = Report::default();
    let rec = store.recovery().clone();
    if rec.temp_files > 0 || rec.recovered_blobs > 0 {
        r.notes.push(format!(
            "cleaned up after interrupted commands: {} temporary files removed, {} completed blobs indexed",
            rec.temp_files, rec.recovered_blobs
        ));
    }
    if repair {
        store.lock_exclusive(on_wait)?;
    }
    for p in store.index().integrity_problems()? {
        r.problems.push(format!("index: {p}"));
    }
    let mut corrupt: Vec<Digest> = Vec::new();
    for (d, size) in store.index().blobs()? {
        r.blobs_checked += 1;
        match hash_file(store, &d) {
            Ok((got, n)) => {
                r.bytes_checked += n;
                if got != d {
                    r.problems.push(format!("blob {d} is corrupt: its content hashes to {got}"));
                    corrupt.push(d);
                } else if n != size {
                    r.problems.push(format!("blob {d} is {n} bytes, the index says {size}"));
                    corrupt.push(d);
                }
            }
            Err(e) => {
                r.problems.push(format!("blob {d} is missing or unreadable: {e}"));
                corrupt.push(d);
            }
        }
    }
    for (image, role, d) in store.index().dangling_references()? {
        r.problems.push(format!("image {image} refers to {role} {d}, which the index does not hold"));
    }
    let mut damaged: Vec<Digest> = Vec::new();
    for img in store.index().images()? {
        r.images_checked += 1;
        let blobs = store.index().image_blobs(&img.id)?;
        if blobs.iter().any(|(_, d)| corrupt.contains(d)) {
            damaged.push(img.id.clone());
            r.problems.push(format!("image {} ({}) needs a damaged blob", img.id, img.tags.join(", ")));
            continue;
        }
        if img.kind == crate::store::index::ImageKind::Embedded {
            for l in store.index().external_layers(&img.id)?.iter().skip(1) {
                if std::fs::metadata(&l.path_in_host).is_err() {
                    r.problems.push(format!("embedded image {}: layer file {} is missing", img.id, l.path_in_host));
                }
            }
            continue;
        }
        let check = || -> std::result::Result<(), String> {
            let m = store.read_blob(&img.manifest_digest, image::MAX_MANIFEST_SIZE).map_err(|e| e.to_string())?;
            let Document::Manifest(m) = image::parse_document("manifest", &m, None).map_err(|e| e.to_string())? else {
                return Err("its manifest is an index".into());
            };
            if m.config.digest != img.id {
                return Err(format!("its manifest names config {}, not the image ID", m.config.digest));
            }
            // A partial image's layers not stored yet are read from their registry.
            let remote = store.index().remote_layers(&img.id).map_err(|e| e.to_string())?;
            let mut stored = blobs.iter().filter(|(r, _)| r == "layer").map(|(_, d)| d);
            let mut layers: Vec<&Digest> = Vec::new();
            for i in 0..m.layers.len() {
                match remote.iter().find(|r| r.position == i) {
                    Some(r) => layers.push(&r.digest),
                    None => layers.extend(stored.next()),
                }
            }
            layers.extend(stored);
            let listed: Vec<&Digest> = m.layers.iter().map(|l| &l.digest).collect();
            if layers != listed {
                return Err("its index rows do not match its manifest's layers".into());
            }
            let c = store.read_blob(&img.id, image::MAX_CONFIG_SIZE).map_err(|e| e.to_string())?;
            let c = image::parse_config("config", &c).map_err(|e| e.to_string())?;
            if c.diff_ids.len() != listed.len() {
                return Err("its config and manifest disagree on the number of layers".into());
            }
            Ok(())
        };
        if let Err(e) = check() {
            r.problems.push(format!("image {} ({}): {e}", img.id, img.tags.join(", ")));
            damaged.push(img.id.clone());
        }
    }
    let orphans = store.unindexed_blob_files()?;
    for (name, size) in &orphans {
        r.problems.push(format!("orphan file blobs/sha256/{name} ({size} bytes) is not in the index"));
    }
    let unref = store.index().unreferenced_blobs()?;
    if !unref.is_empty() {
        let bytes: u64 = unref.iter().map(|(_, s)| s).sum();
        r.notes.push(format!(
            "{} blobs ({bytes} bytes) are complete but no image uses them (kept to resume interrupted loads); img prune removes them",
            unref.len()
        ));
    }
    // Layers stored by an img that did not measure them count at their
    // stored (compressed) size in img images until they are measured.
    let unmeasured: Vec<Digest> =
        store.index().unmeasured_layers()?.into_iter().filter(|d| !corrupt.contains(d)).collect();
    if !unmeasured.is_empty() {
        if repair {
            let sizes = super::measure_layers(store, &unmeasured)?;
            store.index_mut().set_diff_sizes(&sizes)?;
            r.notes.push(format!("measured the uncompressed size of {} layers stored by an older img", sizes.len()));
        } else {
            r.notes.push(format!(
                "{} layers stored by an older img have no uncompressed size recorded, so images count them at their stored size; img fsck --repair measures them",
                unmeasured.len()
            ));
        }
    }
    let pending = store.index().pending()?;
    if !pending.is_empty() {
        r.notes.push(format!("{} blobs are being ingested by another img process", pending.len()));
    }
    if repair {
        for id in &damaged {
            store.index_mut().delete_image(id)?;
            r.repaired.push(format!("removed damaged image {id}; load or pull it again"));
        }
        // Corrupt blobs lose their rows (none refers to them any more) and files.
        store.remove_damaged_blobs(&corrupt)?;
        for d in &corrupt {
            r.repaired.push(format!("removed damaged blob {d}"));
        }
        for (name, _) in store.remove_unindexed_files()? {
            r.repaired.push(format!("removed orphan file blobs/sha256/{name}"));
        }
        let (n, bytes) = store.delete_unreferenced(None)?;
        if n > 0 {
            r.repaired.push(format!("removed {n} unreferenced blobs ({bytes} bytes)"));
        }
        r.problems.clear();
        // Check again what repair could not fix.
        for p in store.index().integrity_problems()? {
            r.problems.push(format!("index: {p}"));
        }
    }
    Ok(r)
}
