//! Layers without a table of contents (plain gzip, zstd, xz or none) of a
//! partial image, streamed from the registry while the image is mounted.
//!
//! Each such layer is fetched from its start in one request (made again
//! from where it broke off after an error) on a thread of its own, so the
//! network and the decompression overlap, every layer at once. The compressed bytes go to the layer's
//! `lazy/` cache, where a later `img pull` takes them instead of fetching
//! them again. They are decompressed as they come and go through the tar
//! scanner, whose entries grow the mount's tree (`img_fuse::Grow`). A read
//! waits until the stream has passed the bytes it asks for.
//!
//! A gzip layer keeps no uncompressed copy: its checkpoint index is built
//! as it streams (`layerindex::gzip`, a checkpoint about every MiB, each
//! window written to a scratch file as it is made), the last `TAIL` bytes
//! of the stream are held in memory, and a read further back decodes from
//! the nearest checkpoint before it, from the compressed bytes in `lazy/`
//! (or fetched again with a Range request where those are missing), into
//! blocks of `BLOCK` bytes of which the process keeps the last `BLOCKS`.
//! The disk a streamed gzip layer takes is its compressed bytes and its
//! windows (at most 32 KiB a MiB, zstd-compressed); its memory, `TAIL`
//! while it streams and its share of the `BLOCKS` blocks. The other
//! compressions cannot be read from the middle, so their tar stream goes
//! to a spill file (unlinked at once: it goes with the process).
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

use super::super::scan;
use super::Stats;
use crate::digest::{Digest, Hasher};
use crate::layerindex::gzip::{self, GzipIndex, Point};
use crate::layerindex::RandomRead;
use crate::store::{ChannelReader, Compression, RangeCache};
use img_fuse::Grow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The end of a gzip layer's stream held in memory while it streams
/// (every layer of a mount streams at once).
pub const TAIL: usize = 256 << 10;
/// Bytes decoded at a time for a read behind the tail.
pub const BLOCK: u64 = 1 << 20;
/// Blocks kept, over every streamed layer of the process: with `TAIL`,
/// the uncompressed bytes a mount holds are 4 MiB and 256 KiB a layer
/// streaming.
pub const BLOCKS: usize = 4;

/// The most bytes passed on at a time.
const PIECE: usize = 64 << 10;

/// Opens a blob's bytes from an offset to its end.
pub type OpenFrom = Arc<dyn Fn(u64) -> io::Result<Box<dyn Read + Send>> + Send + Sync>;

/// One streamed layer as the filesystem reads it.
pub struct StreamLayer {
    index: usize,
    label: String,
    /// Where its scratch files are made.
    dir: PathBuf,
    /// Unique in the process: the blocks it decoded are known by it.
    id: u64,
    /// How its bytes are kept, once its compression is known.
    body: OnceLock<Body>,
    st: Mutex<Progress>,
    cv: Condvar,
    grow: Arc<Grow>,
    limit: Duration,
}

enum Body {
    /// The whole tar stream in an unlinked file.
    Spill(File),
    Gzip(GzipBody),
}

/// A gzip layer: its checkpoints so far, their windows, its compressed bytes.
struct GzipBody {
    points: Mutex<Vec<Point>>,
    windows: File,
    blob: LazyBlob,
}

struct Progress {
    /// Bytes of the tar stream passed.
    avail: u64,
    done: bool,
    failed: Option<String>,
    stamp: Instant,
    /// A gzip layer's last bytes: byte `u` at `u % TAIL`, the ones from
    /// `avail - TAIL` on (while it streams; empty after).
    tail: Vec<u8>,
}

impl StreamLayer {
    /// Layer number `index` (`label` names it), its tar kept in a spill
    /// file made in directory `dir`.
    pub fn new(index: usize, label: String, dir: &Path, grow: Arc<Grow>, limit: Duration) -> io::Result<StreamLayer> {
        std::fs::create_dir_all(dir)?;
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Ok(StreamLayer {
            index,
            label,
            dir: dir.to_path_buf(),
            id: N.fetch_add(1, Ordering::Relaxed),
            body: OnceLock::new(),
            st: Mutex::new(Progress { avail: 0, done: false, failed: None, stamp: Instant::now(), tail: Vec::new() }),
            cv: Condvar::new(),
            grow,
            limit,
        })
    }

    /// A scratch file of this layer, unlinked at once.
    fn scratch(&self, what: &str) -> io::Result<File> {
        let path = self.dir.join(format!("tmp-stream-{}-{}-{}-{what}", std::process::id(), self.index, self.id));
        let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(f)
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
        if offset >= avail {
            return Ok(0);
        }
        let n = ((avail - offset) as usize).min(buf.len());
        let buf = &mut buf[..n];
        match self.body.get() {
            None => Err(io::Error::other(format!("{}: read before its stream began", self.label))),
            Some(Body::Spill(f)) => {
                drop(st);
                f.read_exact_at(buf, offset)?;
                Ok(n)
            }
            Some(Body::Gzip(g)) => {
                if !st.tail.is_empty() && offset >= avail.saturating_sub(TAIL as u64) {
                    ring_read(&st.tail, offset, buf);
                    return Ok(n);
                }
                drop(st);
                g.read(self.id, offset, buf, avail).map_err(|e| io::Error::other(format!("{}: {e}", self.label)))?;
                Ok(n)
            }
        }
    }

    /// The tar stream's next bytes have passed.
    fn advance(&self, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.lock();
        let at = st.avail;
        match self.body.get() {
            Some(Body::Spill(f)) => {
                drop(st);
                f.write_all_at(bytes, at)?;
                st = self.lock();
            }
            Some(Body::Gzip(_)) => {
                if st.tail.is_empty() {
                    st.tail = vec![0; TAIL];
                }
                ring_write(&mut st.tail, at, bytes);
            }
            None => return Err(io::Error::other("a stream without a body")),
        }
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
        // Reads of a finished layer decode blocks.
        st.tail = Vec::new();
        drop(st);
        self.cv.notify_all();
    }
}

/// Copies the bytes at stream offset `at` out of ring `ring` into `buf`.
fn ring_read(ring: &[u8], at: u64, buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        let i = ((at + done as u64) % ring.len() as u64) as usize;
        let k = (ring.len() - i).min(buf.len() - done);
        buf[done..done + k].copy_from_slice(&ring[i..i + k]);
        done += k;
    }
}

/// Puts `bytes`, at stream offset `at`, into ring `ring`.
fn ring_write(ring: &mut [u8], at: u64, bytes: &[u8]) {
    // Only the last ring's worth of a long write stays.
    let skip = bytes.len().saturating_sub(ring.len());
    let (at, bytes) = (at + skip as u64, &bytes[skip..]);
    let mut done = 0;
    while done < bytes.len() {
        let i = ((at + done as u64) % ring.len() as u64) as usize;
        let k = (ring.len() - i).min(bytes.len() - done);
        ring[i..i + k].copy_from_slice(&bytes[done..done + k]);
        done += k;
    }
}

/// The blocks decoded last, of every streamed gzip layer of the process:
/// (layer id, block number, bytes), the most recently used last.
type Blocks = Vec<(u64, u64, Arc<Vec<u8>>)>;

fn blocks() -> &'static Mutex<Blocks> {
    static B: OnceLock<Mutex<Blocks>> = OnceLock::new();
    B.get_or_init(|| Mutex::new(Vec::new()))
}

impl GzipBody {
    /// Fills `buf` with the bytes at `offset`, all before `avail`.
    fn read(&self, id: u64, offset: u64, buf: &mut [u8], avail: u64) -> Result<(), gzip::IndexError> {
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let b = at / BLOCK;
            let block = self.block(id, b, avail)?;
            let from = (at - b * BLOCK) as usize;
            if from >= block.len() {
                return Err(gzip::IndexError::Truncated { offset: at });
            }
            let k = (block.len() - from).min(buf.len() - done);
            buf[done..done + k].copy_from_slice(&block[from..from + k]);
            done += k;
        }
        Ok(())
    }

    /// Block `b` of the stream, as far as `avail`: kept, or decoded from
    /// the last checkpoint before it.
    fn block(&self, id: u64, b: u64, avail: u64) -> Result<Arc<Vec<u8>>, gzip::IndexError> {
        let start = b * BLOCK;
        let end = (start + BLOCK).min(avail);
        {
            let mut kept = blocks().lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = kept.iter().position(|(l, n, v)| *l == id && *n == b && start + v.len() as u64 >= end) {
                let hit = kept.remove(i);
                let v = hit.2.clone();
                kept.push(hit);
                return Ok(v);
            }
        }
        let point = {
            let points = self.points.lock().unwrap_or_else(|p| p.into_inner());
            let i = points.partition_point(|p| p.u_off() <= start);
            *i.checked_sub(1).and_then(|i| points.get(i)).ok_or(gzip::IndexError::BadIndex("no checkpoint yet"))?
        };
        let w = point.window();
        let mut window = vec![0u8; (w.end - w.start) as usize];
        self.windows.read_exact_at(&mut window, w.start)?;
        // The least recently used block's buffer is reused (unless a read
        // still holds it): the blocks' memory is allocated once, not again
        // for every decode, which left allocators holding far more.
        let mut v = {
            let mut kept = blocks().lock().unwrap_or_else(|p| p.into_inner());
            let spare = if kept.len() >= BLOCKS { Some(kept.remove(0).2) } else { None };
            spare.and_then(|a| Arc::try_unwrap(a).ok()).unwrap_or_else(|| Vec::with_capacity(BLOCK as usize))
        };
        v.clear();
        v.resize((end - start) as usize, 0);
        let n = gzip::read_from_point(&point, &window, &self.blob, end, start, &mut v)?;
        v.truncate(n);
        let v = Arc::new(v);
        let mut kept = blocks().lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|(l, n, _)| !(*l == id && *n == b));
        kept.push((id, b, v.clone()));
        while kept.len() > BLOCKS {
            kept.remove(0);
        }
        Ok(v)
    }
}

/// A streamed layer's compressed bytes for reads behind the stream: from
/// `lazy/` where the stream put them, or fetched again.
struct LazyBlob {
    cache: Option<Arc<RangeCache>>,
    open: OpenFrom,
    size: u64,
    stats: Arc<Stats>,
}

impl RandomRead for LazyBlob {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        if off >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let want = (self.size - off).min(buf.len() as u64) as usize;
        let buf = &mut buf[..want];
        if let Some(c) = &self.cache {
            if let Some((_, e)) = c.ranges().into_iter().find(|&(s, e)| s <= off && off < e) {
                let n = ((e - off) as usize).min(buf.len());
                c.read_held(off, &mut buf[..n])?;
                self.stats.cache_bytes.fetch_add(n as u64, Ordering::Relaxed);
                return Ok(n);
            }
        }
        // Not kept (the cache could not take it): a Range request from here.
        let mut body = (self.open)(off)?;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let mut n = 0;
        while n < buf.len() {
            match body.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.stats.fetched_bytes.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(c) = &self.cache {
            let _ = c.put(off, &buf[..n]);
        }
        Ok(n)
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

    /// A gzip layer: decompressed while its checkpoints are made (on a
    /// thread of its own), the tar scanned here.
    fn decode_gzip(&self, head: BufReader<&mut ChannelReader>) -> Result<(), String> {
        let layer = &self.layer;
        let windows = layer.scratch("windows").map_err(|e| format!("making its index file: {e}"))?;
        let windows_out = windows.try_clone().map_err(|e| format!("making its index file: {e}"))?;
        let blob =
            LazyBlob { cache: self.cache.clone(), open: self.open.clone(), size: self.size, stats: self.stats.clone() };
        let _ = layer.body.set(Body::Gzip(GzipBody { points: Mutex::new(Vec::new()), windows, blob }));
        let Some(Body::Gzip(body)) = layer.body.get() else { return Err("its stream began twice".into()) };
        let (tx, rx) = sync_channel::<Vec<u8>>(2);
        let (diff, built) = std::thread::scope(|s| {
            let builder = s.spawn(move || {
                let mut diff = Hasher::new();
                let mut since_stamp = 0u64;
                let mut failed: Option<io::Error> = None;
                let mut sink = |b: &[u8]| {
                    if failed.is_some() {
                        return;
                    }
                    if let Err(e) = layer.advance(b) {
                        failed = Some(e);
                        return;
                    }
                    diff.update(b);
                    since_stamp += b.len() as u64;
                    if since_stamp > 256 << 10 {
                        since_stamp = 0;
                        layer.grow.progress(layer.index);
                    }
                    // The scanner stops listening at the tar's end.
                    let _ = tx.send(b.to_vec());
                };
                // Unbuffered: a window is in the file before its point is
                // handed out (one write a MiB of the stream).
                let mut out = &windows_out;
                let built = GzipIndex::build_streaming(head, gzip::DEFAULT_SPAN, &mut sink, &mut out, &mut |p| {
                    body.points.lock().unwrap_or_else(|p| p.into_inner()).push(p);
                });
                drop(tx);
                let built = match failed {
                    Some(e) => Err(format!("keeping its stream: {e}")),
                    None => built.map(|_| ()).map_err(|e| format!("decompressing it (gzip): {e}")),
                };
                (diff.finish(), built)
            });
            let (grow, i) = (layer.grow.clone(), layer.index);
            let scanned = scan::scan_with(ChannelReader::new(rx), i, &layer.label, &mut |part| {
                if !(part.entries.is_empty() && part.whiteouts.is_empty() && part.opaque.is_empty()) {
                    grow.feed(i, std::mem::take(part));
                }
            });
            // A refused tar: the rest still streams to the end (and is checked).
            let (diff, built) = builder.join().map_err(|_| "its decompression failed".to_string())?;
            let rest = scanned.map_err(|e| e.to_string())?;
            grow.feed(i, rest);
            Ok::<_, String>((diff, built))
        })?;
        built?;
        if diff != self.diff_id {
            return Err(format!(
                "its uncompressed stream has digest {diff}, but the image's config gives DiffID {}; its files cannot be read",
                self.diff_id
            ));
        }
        Ok(())
    }

    fn decode(&self, chan: &mut ChannelReader) -> Result<(), String> {
        let mut head = BufReader::with_capacity(64 << 10, chan);
        let c = Compression::sniff(head.fill_buf().map_err(|e| e.to_string())?);
        if c == Compression::Gzip {
            return self.decode_gzip(head);
        }
        let spill = self.layer.scratch("tar").map_err(|e| format!("making its spill file: {e}"))?;
        let _ = self.layer.body.set(Body::Spill(spill));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StorePaths;
    use std::io::Write;

    /// A layer of files of text and random bytes, 7 MB in all, as a tar.
    fn tar_layer() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..40u64 {
            let len = 100_000 + (n * 37_000) % 300_000;
            let data: Vec<u8> = (0..len)
                .map(|k| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if n % 3 == 0 {
                        x as u8
                    } else {
                        b"layer of text, "[(k % 15) as usize] ^ ((x % 5 == 0) as u8)
                    }
                })
                .collect();
            let mut h = tar::Header::new_gnu();
            h.set_size(len);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("d/f{n}"), &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    struct Fixture {
        tar: Vec<u8>,
        layer: Arc<StreamLayer>,
        stats: Arc<Stats>,
        _dir: crate::testdir::TestDir,
    }

    /// Streams the gzip of `tar` as a lazy mount does, from memory, with
    /// or without a range cache; returns at once, the stream running.
    fn streaming(name: &str, cached: bool) -> (Fixture, Job) {
        let tar = tar_layer();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(&tar).unwrap();
        let blob = Arc::new(e.finish().unwrap());
        let dir = crate::testdir::TestDir::new(name);
        let paths = StorePaths::new(&dir);
        let d = Digest::of_bytes(&blob);
        let grow = Arc::new(Grow::new(1, Duration::from_secs(20)));
        let layer = Arc::new(StreamLayer::new(0, "test layer".into(), &dir, grow, Duration::from_secs(20)).unwrap());
        let stats = Arc::new(Stats::default());
        let cache = cached.then(|| Arc::new(RangeCache::open(&paths, &d, blob.len() as u64).unwrap()));
        let b = blob.clone();
        let job = Job {
            layer: layer.clone(),
            open: Arc::new(move |at| Ok(Box::new(io::Cursor::new(b[at as usize..].to_vec())) as Box<dyn Read + Send>)),
            cache,
            digest: d,
            size: blob.len() as u64,
            diff_id: Digest::of_bytes(&tar),
            stats: stats.clone(),
        };
        (Fixture { tar, layer, stats, _dir: dir }, job)
    }

    /// Reads at `n` offsets of `seed`, each checked against the tar.
    fn check_reads(f: &Fixture, n: usize, seed: u64) {
        let mut x = seed | 1;
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let off = x % f.tar.len() as u64;
            let len = ((x >> 32) % 300_000) as usize;
            let mut buf = vec![0u8; len];
            let got = f.layer.read_at(off, &mut buf).unwrap();
            let hi = (off as usize + len).min(f.tar.len());
            assert_eq!(got, hi - off as usize, "read of {len} at {off}");
            assert!(buf[..got] == f.tar[off as usize..hi], "read of {len} at {off}: other bytes");
        }
    }

    #[test]
    fn gzip_reads_at_random_offsets_while_and_after_streaming_are_the_layers_bytes() {
        let (f, job) = streaming("stream-gzip", true);
        let runner = std::thread::spawn(move || job.run());
        // While it streams: reads wait for the stream, then come from the
        // tail or from checkpoints behind it.
        check_reads(&f, 60, 7);
        runner.join().unwrap();
        assert!(f.layer.lock().failed.is_none(), "{:?}", f.layer.lock().failed);
        assert!(f.layer.lock().tail.is_empty(), "a finished layer keeps no tail");
        let Some(Body::Gzip(g)) = f.layer.body.get() else { panic!("not streamed as gzip") };
        assert!(g.points.lock().unwrap().len() >= 5, "a checkpoint about every MiB");
        // After: every read decodes from a checkpoint, from the cache.
        check_reads(&f, 80, 11);
        assert_eq!(f.stats.requests.load(Ordering::Relaxed), 1, "the cache served every read behind the stream");
        let kept = blocks().lock().unwrap();
        assert!(kept.len() <= BLOCKS && kept.iter().all(|(_, _, v)| v.len() as u64 <= BLOCK));
    }

    #[test]
    fn without_the_compressed_bytes_reads_fetch_from_a_checkpoint_again() {
        let (f, job) = streaming("stream-gzip-nocache", false);
        job.run();
        assert!(f.layer.lock().failed.is_none(), "{:?}", f.layer.lock().failed);
        let before = f.stats.requests.load(Ordering::Relaxed);
        check_reads(&f, 30, 13);
        assert!(f.stats.requests.load(Ordering::Relaxed) > before, "reads behind the stream made Range requests");
    }

    #[test]
    fn the_tail_ring_keeps_the_last_bytes() {
        let mut ring = vec![0u8; 16];
        let data: Vec<u8> = (0..100u8).collect();
        let mut at = 0u64;
        for piece in [5usize, 11, 3, 40, 1, 16, 24] {
            ring_write(&mut ring, at, &data[at as usize..at as usize + piece]);
            at += piece as u64;
            let mut out = vec![0u8; 16.min(at as usize)];
            ring_read(&ring, at - out.len() as u64, &mut out);
            assert_eq!(out, data[(at as usize - out.len())..at as usize]);
        }
    }
}
