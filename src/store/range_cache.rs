//! The range cache of lazy layers: the compressed bytes of a blob not
//! stored, as much of it as was fetched, kept under `lazy/` so that a
//! second read, a second mount and the pull that completes the image
//! fetch nothing again.

use super::StorePaths;
use crate::digest::Digest;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

/// The compressed bytes of a blob fetched so far: `lazy/<hex>` holds them
/// at their offsets (a sparse file), `lazy/<hex>.ranges` lists the ranges
/// written, 16 bytes each (start, length; little-endian), appended after
/// the bytes are written. Nothing read from here is trusted: every use
/// checks it against a digest.
pub struct RangeCache {
    data: File,
    log: Mutex<File>,
    have: Mutex<Vec<(u64, u64)>>,
}

impl RangeCache {
    /// The cache of blob `d` (`size` bytes) in the store `paths` lays out.
    pub fn open(paths: &StorePaths, d: &Digest, size: u64) -> io::Result<RangeCache> {
        let (data_path, log_path) = paths.lazy_cache(d);
        std::fs::create_dir_all(paths.lazy_dir())?;
        let data = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&data_path)?;
        if data.metadata()?.len() != size {
            data.set_len(size)?;
        }
        let mut log = OpenOptions::new().read(true).append(true).create(true).open(&log_path)?;
        let mut have = Vec::new();
        let mut bytes = Vec::new();
        log.read_to_end(&mut bytes)?;
        for rec in bytes.chunks_exact(16) {
            let start = u64::from_le_bytes(rec[..8].try_into().unwrap_or([0; 8]));
            let len = u64::from_le_bytes(rec[8..].try_into().unwrap_or([0; 8]));
            if let Some(end) = start.checked_add(len).filter(|&e| e <= size) {
                have.push((start, end));
            }
        }
        Ok(RangeCache { data, log: Mutex::new(log), have: Mutex::new(merge(have)) })
    }

    /// Ranges held, merged and sorted.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.have.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Bytes `start..end`, if all are held.
    pub fn get(&self, start: u64, end: u64) -> io::Result<Option<Vec<u8>>> {
        let held = self.have.lock().map(|h| covered(&h, start, end)).unwrap_or(false);
        if !held {
            return Ok(None);
        }
        let mut buf = vec![0u8; (end - start) as usize];
        self.data.read_exact_at(&mut buf, start)?;
        Ok(Some(buf))
    }

    /// Keeps `bytes` at `start`.
    pub fn put(&self, start: u64, bytes: &[u8]) -> io::Result<()> {
        self.data.write_all_at(bytes, start)?;
        let mut rec = [0u8; 16];
        rec[..8].copy_from_slice(&start.to_le_bytes());
        rec[8..].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
        if let Ok(mut log) = self.log.lock() {
            log.write_all(&rec)?;
        }
        if let Ok(mut h) = self.have.lock() {
            h.push((start, start + bytes.len() as u64));
            let merged = merge(std::mem::take(&mut *h));
            *h = merged;
        }
        Ok(())
    }

    /// Reads bytes `start..end` that are held into `buf`.
    pub fn read_held(&self, start: u64, buf: &mut [u8]) -> io::Result<()> {
        self.data.read_exact_at(buf, start)
    }
}

fn merge(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

fn covered(have: &[(u64, u64)], start: u64, end: u64) -> bool {
    let i = have.partition_point(|r| r.1 < end);
    have.get(i).is_some_and(|r| r.0 <= start && r.1 >= end)
}
