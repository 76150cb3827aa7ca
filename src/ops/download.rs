//! One blob from a registry into `ingest/partial-<hex>`: hashed as it
//! arrives, resumed with a Range request after a reset or a kill, and
//! shared between processes that need it at once (a lock on the file).

use super::progress::Progress;
use crate::digest::{Digest, Hasher};
use crate::registry::{RegistryError, Repo};
use crate::store::{StagedBlob, StorePaths};
use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

/// Attempts per blob before giving up on a flaky connection.
const MAX_ATTEMPTS: u32 = 6;

/// Downloads one blob into `ingest/partial-<hex>`, resuming what is there,
/// and returns it staged and verified, not yet synced (its commit syncs it,
/// so the caller may sync it while the next one downloads). `tap` is handed
/// every byte of the blob in order as it arrives, but only for a download
/// that starts at the blob's first byte: one that resumes a partial file
/// or waits for another process passes it nothing.
pub fn download(
    store: &StorePaths,
    repo: &Repo,
    d: &Digest,
    size: u64,
    progress: &dyn Progress,
    quiet: bool,
    mut tap: Option<&mut dyn FnMut(&[u8])>,
) -> Result<StagedBlob> {
    let path = store.partial_download(d);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            progress.line(&format!("waiting for another img process downloading {}", d.short()));
            if let Some(done) = wait_for_other(store, &mut file, &path, d, size)? {
                return Ok(done);
            }
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
    }
    // Another process may have finished it while we waited.
    if store.blob_path(d).exists() {
        drop(file);
        let _ = std::fs::remove_file(&path);
        return Ok(StagedBlob::adopt_download(store.blob_path(d), d.clone(), size, None).already_stored());
    }
    let mut hasher = rehash(&mut file, &path)?;
    if hasher.len() > size {
        file.set_len(0)?;
        hasher = Hasher::new();
    }
    if hasher.len() > 0 {
        tap = None;
    }
    if !quiet {
        progress.line(&format!("Copying blob {}", d.short()));
        progress.blob_start(d, size, hasher.len());
    }
    // Errors in reaching the blob were already retried by the client; a
    // body that breaks off is resumed from where it stopped.
    let mut attempt = 0;
    let mut buf = vec![0u8; 256 * 1024];
    while hasher.len() < size {
        attempt += 1;
        let offset = hasher.len();
        let mut resp = match repo.blob_from(d, offset) {
            Ok(r) => r,
            Err(e) => {
                if matches!(e, RegistryError::Refused { .. }) {
                    drop(file);
                    let _ = std::fs::remove_file(&path);
                }
                return Err(e.into());
            }
        };
        let broke = loop {
            let n = match resp.body.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Some(e),
            };
            if hasher.len() + n as u64 > size {
                drop(file);
                let _ = std::fs::remove_file(&path);
                bail!("blob {d}: the registry sent more than the {size} bytes the manifest says; the download was discarded");
            }
            if let Err(e) = file.write_all(&buf[..n]) {
                let e = crate::store::io_err("writing", &path)(e);
                if matches!(e, crate::store::StoreError::NoSpace { .. }) {
                    // Give the space back: a resume would fail the same way.
                    drop(file);
                    let _ = std::fs::remove_file(&path);
                }
                return Err(e.into());
            }
            hasher.update(&buf[..n]);
            if let Some(t) = tap.as_mut() {
                t(&buf[..n]);
            }
            if !quiet {
                progress.blob_bytes(d, hasher.len());
            }
        };
        if hasher.len() == size {
            break;
        }
        // A body that stalls past the timeout is resumed like a reset one.
        let why = match &broke {
            Some(e) => e.to_string(),
            None => "connection closed".to_string(),
        };
        if attempt >= MAX_ATTEMPTS {
            bail!(
                "blob {d}: the download kept breaking off ({why}; {} of {size} bytes); run img pull again to resume",
                hasher.len()
            );
        }
        progress.line(&format!("blob {}: {why} at {} of {size} bytes; resuming", d.short(), hasher.len()));
        if hasher.len() == offset {
            std::thread::sleep(Duration::from_millis(250 << attempt.min(5)));
        }
    }
    let got = hasher.finish();
    if &got != d {
        drop(file);
        let _ = std::fs::remove_file(&path);
        bail!("blob {d}: digest mismatch: expected {d}, got {got}; the download was discarded");
    }
    if !quiet {
        progress.blob_end(d, true);
        progress.line(&format!("Copying blob {} done", d.short()));
    }
    Ok(StagedBlob::adopt_download(path, d.clone(), size, Some(file)))
}

/// Hashes what a partial file holds, so the download continues from there.
/// Waits until the process downloading `d` into `path` lets go of it
/// (then the caller holds the lock: Ok(None)), or until the blob is stored,
/// or until the download is complete and verified. A finished download
/// stays locked until its own image is stored, and two pulls can each hold
/// one the other needs: waiting for the lock alone would deadlock, so a
/// complete download is taken as it is, through a link of our own.
fn wait_for_other(
    store: &StorePaths,
    file: &mut File,
    path: &Path,
    d: &Digest,
    size: u64,
) -> Result<Option<StagedBlob>> {
    let mut checked_len = None;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(None),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        if store.blob_path(d).exists() {
            return Ok(Some(StagedBlob::adopt_download(store.blob_path(d), d.clone(), size, None).already_stored()));
        }
        let len = file.metadata().with_context(|| format!("reading {}", path.display()))?.len();
        if len == size && checked_len != Some(len) {
            checked_len = Some(len);
            let mine = store.download_link(d);
            let _ = std::fs::remove_file(&mine);
            if std::fs::hard_link(path, &mine).is_ok() {
                let mut f = File::open(&mine).with_context(|| format!("opening {}", mine.display()))?;
                let h = rehash(&mut f, &mine)?;
                if h.len() == size && h.finish() == *d {
                    return Ok(Some(StagedBlob::adopt_download(mine, d.clone(), size, None)));
                }
                let _ = std::fs::remove_file(&mine);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn rehash(file: &mut File, path: &Path) -> Result<Hasher> {
    file.seek(SeekFrom::Start(0))?;
    crate::digest::hash_reader(file).with_context(|| format!("reading {}", path.display()))
}
