//! Layers without a table of contents (plain gzip, zstd, xz or none) of a
//! partial image, streamed from the registry while the image is mounted.
//!
//! Each such layer is fetched from its start in one request (made again
//! from where it broke off after an error) on a thread of its own, so the
//! network and the decompression overlap, every layer at once. The compressed bytes go to the layer's
//! `lazy/` cache, where a later `img pull` takes them instead of fetching
//! them again. They are decompressed as they come: the tar stream goes to
//! a spill file (unlinked at once: it goes with the process) and through
//! the tar scanner, whose entries grow the mount's tree (`img_fuse::Grow`).
//! A read waits until the stream has passed the bytes it asks for.
//!
//! Trust: the blob's digest and the DiffID are only known at the end, so
//! names and bytes are served before they are checked, as a pull that
//! unpacks while it downloads does. A layer whose digest or DiffID turns
//! out wrong fails every read of it and every call still waiting for the
//! tree; nothing read from it is stored (a later `img pull` checks the
//! cached bytes against the digest and fetches afresh what is wrong).
//!
//! While a call waits for a layer, the others' fetches yield to it (a read
//! far ahead promotes its layer). A fetch that fails is retried until it
//! works; a call that waits for bytes that do not come for the limit gets
//! EIO, and the mount goes on.

use super::lazy::Stats;
use super::scan;
use crate::digest::{Digest, Hasher};
use crate::store::{ChannelReader, Compression, RangeCache};
use img_fuse::Grow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The most bytes passed on at a time.
const PIECE: usize = 64 << 10;

/// Opens a blob's bytes from an offset to its end.
pub type OpenFrom = Arc<dyn Fn(u64) -> io::Result<Box<dyn Read + Send>> + Send + Sync>;

/// One streamed layer as the filesystem reads it.
pub struct StreamLayer {
    index: usize,
    label: String,
    spill: File,
    st: Mutex<Progress>,
    cv: Condvar,
    grow: Arc<Grow>,
    limit: Duration,
}

struct Progress {
    /// Bytes of the tar stream in the spill file.
    avail: u64,
    done: bool,
    failed: Option<String>,
    stamp: Instant,
}

impl StreamLayer {
    /// Layer number `index` (`label` names it), its tar kept in a spill
    /// file made in directory `dir`.
    pub fn new(index: usize, label: String, dir: &Path, grow: Arc<Grow>, limit: Duration) -> io::Result<StreamLayer> {
        std::fs::create_dir_all(dir)?;
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("tmp-stream-{}-{index}-{n}", std::process::id()));
        let spill = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(StreamLayer {
            index,
            label,
            spill,
            st: Mutex::new(Progress { avail: 0, done: false, failed: None, stamp: Instant::now() }),
            cv: Condvar::new(),
            grow,
            limit,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads bytes of the tar stream at `offset`, once they are in.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let want = offset.saturating_add(buf.len() as u64);
        let began = Instant::now();
        let mut st = self.lock();
        loop {
            if let Some(f) = &st.failed {
                return Err(io::Error::other(f.clone()));
            }
            if st.avail >= want || st.done {
                break;
            }
            self.grow.want(Some(self.index));
            // No progress for the limit, counted from when this read began
            // at the earliest.
            if st.stamp.max(began).elapsed() > self.limit {
                return Err(io::Error::other(format!(
                    "{}: no bytes came for {} s while streaming it (at {} of the tar, {} wanted)",
                    self.label,
                    self.limit.as_secs(),
                    st.avail,
                    want
                )));
            }
            st = self.cv.wait_timeout(st, Duration::from_millis(50)).unwrap_or_else(|p| p.into_inner()).0;
        }
        let avail = st.avail;
        drop(st);
        if offset >= avail {
            return Ok(0);
        }
        let n = ((avail - offset) as usize).min(buf.len());
        self.spill.read_exact_at(&mut buf[..n], offset)?;
        Ok(n)
    }

    fn advance(&self, bytes: &[u8]) -> io::Result<()> {
        let at = self.lock().avail;
        self.spill.write_all_at(bytes, at)?;
        let mut st = self.lock();
        st.avail = at + bytes.len() as u64;
        st.stamp = Instant::now();
        drop(st);
        self.cv.notify_all();
        Ok(())
    }

    fn end(&self, failed: Option<String>) {
        let mut st = self.lock();
        st.done = true;
        st.failed = failed;
        drop(st);
        self.cv.notify_all();
    }
}

/// What a layer's stream needs.
pub struct Job {
    pub layer: Arc<StreamLayer>,
    pub open: OpenFrom,
    pub cache: Option<Arc<RangeCache>>,
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
    pub stats: Arc<Stats>,
}

/// Streams the layer on a thread of its own.
pub fn start(job: Job) -> io::Result<()> {
    std::thread::Builder::new().name(format!("stream-{}", job.layer.index)).spawn(move || job.run())?;
    Ok(())
}

/// The tar stream as the scanner reads it: each byte also goes to the
/// spill file and the DiffID.
struct Tee<'a, R> {
    inner: R,
    job: &'a Job,
    diff: Hasher,
    since_stamp: u64,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.job.layer.advance(&buf[..n])?;
        self.diff.update(&buf[..n]);
        self.since_stamp += n as u64;
        if self.since_stamp > 256 << 10 {
            self.since_stamp = 0;
            self.job.layer.grow.progress(self.job.layer.index);
        }
        Ok(n)
    }
}

impl Job {
    fn run(self) {
        let r = self.stream();
        let i = self.layer.index;
        match r {
            Ok(()) => {
                self.layer.end(None);
                self.layer.grow.finish(i);
            }
            Err(e) => {
                let msg = format!("{}: {e}", self.layer.label);
                eprintln!("img mount: {msg}");
                self.layer.end(Some(msg.clone()));
                self.layer.grow.fail(i, &msg);
            }
        }
    }

    /// Fetches the blob from its start, in order, on a thread of its own:
    /// bytes the cache holds from there, the rest in one request to the
    /// end (made again from where it broke off after an error), kept in
    /// the cache as they come. Returns the blob's digest once every byte
    /// went through.
    fn fetcher(&self, tx: std::sync::mpsc::SyncSender<Vec<u8>>) -> std::thread::JoinHandle<Option<Digest>> {
        let (open, size, stats, grow, me) =
            (self.open.clone(), self.size, self.stats.clone(), self.layer.grow.clone(), self.layer.index);
        let cache = self.cache.clone();
        let label = self.layer.label.clone();
        std::thread::spawn(move || {
            let mut hash = Hasher::new();
            let mut pos = 0u64;
            let mut wait = Duration::from_millis(100);
            let mut warned = false;
            // A call waiting for another layer goes first (a second at most).
            let yield_to_others = || {
                for _ in 0..50 {
                    match grow.wanted() {
                        Some(w) if w != me => std::thread::sleep(Duration::from_millis(20)),
                        _ => break,
                    }
                }
            };
            while pos < size {
                yield_to_others();
                let held = cache.as_ref().and_then(|c| c.ranges().into_iter().find(|&(s, e)| s <= pos && pos < e));
                if let (Some(c), Some((_, e))) = (&cache, held) {
                    let end = e.min(pos + PIECE as u64 * 16).min(size);
                    let Ok(Some(b)) = c.get(pos, end) else { return None };
                    stats.cache_bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                    hash.update(&b);
                    pos = end;
                    if tx.send(b).is_err() {
                        return None;
                    }
                    continue;
                }
                let mut body = match open(pos) {
                    Ok(b) => b,
                    Err(e) => {
                        stats.failures.fetch_add(1, Ordering::Relaxed);
                        if !warned {
                            eprintln!("img mount: {label}: {e}; trying again");
                            warned = true;
                        }
                        std::thread::sleep(wait);
                        wait = (wait * 2).min(Duration::from_secs(1));
                        continue;
                    }
                };
                stats.requests.fetch_add(1, Ordering::Relaxed);
                let mut since_yield = 0usize;
                while pos < size {
                    let mut buf = vec![0u8; PIECE.min((size - pos) as usize)];
                    let n = match body.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            stats.failures.fetch_add(1, Ordering::Relaxed);
                            if !warned {
                                eprintln!("img mount: {label}: reading it at {pos}: {e}; trying again");
                                warned = true;
                            }
                            break;
                        }
                    };
                    buf.truncate(n);
                    wait = Duration::from_millis(100);
                    if let Some(c) = &cache {
                        let _ = c.put(pos, &buf);
                    }
                    stats.fetched_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    hash.update(&buf);
                    pos += n as u64;
                    if tx.send(buf).is_err() {
                        return None;
                    }
                    since_yield += n;
                    if since_yield >= 1 << 20 {
                        since_yield = 0;
                        yield_to_others();
                    }
                }
            }
            Some(hash.finish())
        })
    }

    fn stream(&self) -> Result<(), String> {
        let (tx, rx) = sync_channel::<Vec<u8>>(4);
        let fetched = self.fetcher(tx);
        let mut chan = ChannelReader::new(rx);
        let res = self.decode(&mut chan);
        // The rest of the blob (past what the decoder needed) goes through
        // the digest too; on an error, dropping the channel stops the fetches.
        if res.is_ok() {
            let _ = io::copy(&mut chan, &mut io::sink());
        }
        drop(chan);
        let digest = fetched.join().ok().flatten();
        res?;
        match digest {
            Some(d) if d == self.digest => Ok(()),
            Some(d) => Err(format!("its bytes have digest {d}, not {}; its files cannot be read", self.digest)),
            None => Err("its stream ended early".into()),
        }
    }

    fn decode(&self, chan: &mut ChannelReader) -> Result<(), String> {
        let mut head = BufReader::with_capacity(64 << 10, chan);
        let c = Compression::sniff(head.fill_buf().map_err(|e| e.to_string())?);
        let dec = c.decoder(head).map_err(|e| e.to_string())?;
        let mut tee = Tee { inner: dec, job: self, diff: Hasher::new(), since_stamp: 0 };
        let (grow, i) = (self.layer.grow.clone(), self.layer.index);
        let rest = scan::scan_with(&mut tee, i, &self.layer.label, &mut |part| {
            if !(part.entries.is_empty() && part.whiteouts.is_empty() && part.opaque.is_empty()) {
                grow.feed(i, std::mem::take(part));
            }
        })
        .map_err(|e| e.to_string())?;
        grow.feed(i, rest);
        // The end of the archive and what follows it count in the DiffID.
        io::copy(&mut tee, &mut io::sink()).map_err(|e| format!("decompressing it ({}): {e}", c.name()))?;
        let diff = tee.diff.finish();
        if diff != self.diff_id {
            return Err(format!(
                "its uncompressed stream has digest {diff}, but the image's config gives DiffID {}; its files cannot be read",
                self.diff_id
            ));
        }
        Ok(())
    }
}
