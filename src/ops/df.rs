//! What the store holds and the disk it takes: the numbers behind
//! `img system df` and `img info`, computed in a few queries.

use crate::digest::Digest;
use crate::store::Store;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// `img system df`: the images and the blob bytes they use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskUsage {
    /// Every image.
    pub images: usize,
    /// Images with at least one tag.
    pub active: usize,
    /// The bytes of every stored blob.
    pub size: u64,
    /// What `img prune` would free: blobs no image references, and blobs
    /// only one untagged image references.
    pub reclaimable: u64,
    /// Each image, newest first (as `img images` lists them).
    pub per_image: Vec<ImageUsage>,
}

/// One image's share of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUsage {
    pub id: Digest,
    /// Its first name (sorted), if it has one.
    pub name: Option<String>,
    /// Its size as `img images` shows it.
    pub size: u64,
    /// Stored bytes of its blobs that other images use too.
    pub shared: u64,
    /// Stored bytes of its blobs that only it uses.
    pub unique: u64,
}

pub fn df(store: &Store) -> Result<DiskUsage> {
    let images = store.index().images()?;
    let blobs = store.index().blob_usage()?;
    let mut shares = store.index().image_blob_shares()?;
    let active = images.iter().filter(|i| !i.tags.is_empty()).count();
    let per_image = images
        .into_iter()
        .map(|img| {
            let (shared, unique) = shares.remove(&img.id).unwrap_or((0, 0));
            ImageUsage { name: img.tags.into_iter().next(), id: img.id, size: img.size, shared, unique }
        })
        .collect::<Vec<_>>();
    Ok(DiskUsage {
        images: per_image.len(),
        active,
        size: blobs.total,
        reclaimable: blobs.unreferenced + blobs.only_untagged,
        per_image,
    })
}

/// `img info`'s facts about the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInfo {
    pub root: PathBuf,
    pub index_path: PathBuf,
    pub schema_version: u32,
    pub images: u64,
    pub tags: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    /// `img.db` and its write-ahead log.
    pub index_bytes: u64,
    /// Temp files of ingests in progress (or left by killed ones).
    pub ingest_bytes: u64,
}

pub fn info(store: &Store) -> Result<StoreInfo> {
    let (images, tags, blobs, blob_bytes) = store.index().counts()?;
    let index_bytes: u64 = ["img.db", "img.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(store.root().join(f)).ok())
        .map(|m| m.len())
        .sum();
    Ok(StoreInfo {
        root: store.root().to_path_buf(),
        index_path: store.index().path().to_path_buf(),
        schema_version: store.index().schema_version()?,
        images,
        tags,
        blobs,
        blob_bytes,
        index_bytes,
        ingest_bytes: dir_size(&store.ingest_dir()),
    })
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if let Ok(m) = e.metadata() {
                total += if m.is_dir() { dir_size(&e.path()) } else { m.len() };
            }
        }
    }
    total
}
