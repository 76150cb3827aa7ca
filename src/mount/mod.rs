//! `img mount`: an image's merged root filesystem served through FUSE
//! straight from the layer blobs in the store. `scan` reads each layer's
//! entries (with the offsets of their data in the uncompressed stream),
//! `img_fuse::Tree` merges them, and `source` reads the bytes on demand.
//! One background process serves each mount, recorded in the index.

pub mod index_file;
pub mod scan;
pub mod source;

use crate::digest::Digest;
use crate::index::{ImageRecord, MountRecord};
use crate::store::{Compression, Store};
use anyhow::{bail, Context, Result};
use img_fuse::{ImageFs, Tree};
use source::StoreSource;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The filesystem of image `img`, ready to serve.
pub fn image_fs(store: &Store, img: &ImageRecord) -> Result<ImageFs<StoreSource>> {
    if img.kind == "embedded" {
        bail!("mounting {}: iSulad embedded images cannot be mounted yet; img save it and load the archive", img.id);
    }
    let layers: Vec<Digest> = crate::ops::save::layers_of(store, img)?;
    let mut scanned = Vec::new();
    let mut sources = Vec::new();
    for (i, d) in layers.iter().enumerate() {
        let (ix, compression) = layer_entries(store, d, i)?;
        scanned.push(ix.layer);
        sources.push(source::LayerSpec { path: store.blob_path(d), compression, chunks: ix.chunks, gzip: ix.gzip });
    }
    let tree = Tree::build(&scanned).with_context(|| format!("mounting {}", img.id))?;
    let source = StoreSource::open(sources).context("opening the layer blobs")?;
    Ok(ImageFs::new(tree, source))
}

/// The index of layer `d` (number `i` in its image) and its compression:
/// from its index file, or scanned from the blob (and the index file
/// written for next time).
pub fn layer_entries(store: &Store, d: &Digest, i: usize) -> Result<(index_file::LayerIndex, Compression)> {
    let mut f = BufReader::with_capacity(256 * 1024, store.open_blob(d)?);
    let c = Compression::sniff(f.fill_buf().with_context(|| format!("reading layer {d}"))?);
    if let Ok(bytes) = std::fs::read(store.layer_index_path(d)) {
        if let Ok(ix) = index_file::decode(&bytes, d, i) {
            return Ok((ix, c));
        }
    }
    let (layer, chunks, gzip) = if c == Compression::Gzip {
        // One pass: the gzip index is built on another thread while the
        // decompressed stream it hands on is scanned here.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        let builder = std::thread::spawn(move || {
            let mut hasher = source::ChunkHasher::new(f);
            let ix = {
                let mut sink = |b: &[u8]| {
                    // A scan that ended (the tar's end) stops listening; the
                    // index is finished all the same.
                    let _ = tx.send(b.to_vec());
                };
                crate::layerindex::gzip::GzipIndex::build(&mut hasher, crate::layerindex::gzip::DEFAULT_SPAN, &mut sink)
            };
            drop(tx);
            std::io::copy(&mut hasher, &mut std::io::sink()).map(|_| ()).ok();
            (ix, hasher.finish())
        });
        let scanned = scan::scan(source::ChannelReader::new(rx), i, d.as_str());
        let (gz, chunks) = builder.join().map_err(|_| anyhow::anyhow!("indexing layer {d}: the indexer failed"))?;
        let gz = gz.with_context(|| format!("reading layer {d}"))?;
        (scanned?, chunks, gz.to_bytes())
    } else {
        let mut hasher = source::ChunkHasher::new(f);
        let layer = {
            let dec = c.decoder(&mut hasher).with_context(|| format!("reading layer {d}"))?;
            scan::scan(dec, i, d.as_str())?
        };
        // The rest of the blob (padding after the tar's end) is hashed too.
        std::io::copy(&mut hasher, &mut std::io::sink()).with_context(|| format!("reading layer {d}"))?;
        (layer, hasher.finish(), Vec::new())
    };
    let ix = index_file::LayerIndex { layer, chunks, gzip };
    if let Err(e) = store.write_layer_index(d, &index_file::encode(d, &ix)) {
        eprintln!("warning: keeping the index of layer {d}: {e}");
    }
    Ok((ix, c))
}

/// Where a mount goes when no directory is given: under the store.
pub fn default_mountpoint(store: &Store, img: &ImageRecord) -> PathBuf {
    store.root().join("mounts").join(&img.id.hex()[..12])
}

/// Every mountpoint now (from /proc/self/mountinfo).
fn mountpoints() -> Vec<String> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    info.lines().filter_map(|l| l.split(' ').nth(4)).map(unescape_mountinfo).collect()
}

/// Is `dir` a mountpoint now?
pub fn is_mounted(dir: &Path) -> bool {
    let want = dir.to_string_lossy();
    mountpoints().iter().any(|m| *m == want)
}

fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v as char);
            i += 4;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Is process `pid` alive?
pub fn pid_alive(pid: i64) -> bool {
    pid > 0
        && Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
            .unwrap_or(false)
}

/// A recorded mount and what is true of it now.
#[derive(Debug, Clone)]
pub struct MountState {
    pub record: MountRecord,
    /// The serving process is alive.
    pub serving: bool,
    /// The directory is a mountpoint.
    pub mounted: bool,
}

pub fn mounts(store: &Store) -> Result<Vec<MountState>> {
    let records = store.index().mounts()?;
    let now = if records.is_empty() { Vec::new() } else { mountpoints() };
    Ok(records
        .into_iter()
        .map(|record| {
            let serving = pid_alive(record.pid);
            let mounted = now.contains(&record.mountpoint);
            MountState { record, serving, mounted }
        })
        .collect())
}

/// Unmounts a recorded mount if it is still mounted (lazily when its
/// server is dead) and forgets it. The server forgets a mount when it ends;
/// this covers a server that died.
pub fn unmount(store: &mut Store, m: &MountState) -> Result<()> {
    if m.mounted {
        unmount_dir(Path::new(&m.record.mountpoint), !m.serving)?;
    }
    store.index_mut().remove_mount(&m.record.mountpoint)?;
    Ok(())
}

/// Unmounts `dir` (lazily when its server is dead) with fusermount3 or,
/// without it, umount.
pub fn unmount_dir(dir: &Path, lazy: bool) -> Result<()> {
    let try_run = |prog: &str, args: &[&str]| -> Option<std::process::Output> {
        std::process::Command::new(prog).args(args).arg(dir).output().ok()
    };
    let fuse_args: &[&str] = if lazy { &["-u", "-z"] } else { &["-u"] };
    let out = match try_run("fusermount3", fuse_args) {
        Some(o) => o,
        None => try_run("umount", if lazy { &["-l"] } else { &[] })
            .context("neither fusermount3 nor umount could be run; install fuse3")?,
    };
    if !out.status.success() {
        bail!("unmounting {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
