//! Random access into gzip streams (RFC 1952), the zran way.
//!
//! A deflate stream can only be decoded from its start, but the decoder's
//! whole state between two deflate blocks is small: the few bits of the last
//! input byte not yet used, and the last 32 KiB of output (the most a match can
//! reach back). [`GzipIndex::build`] decompresses a stream once and records such
//! a checkpoint at the first block boundary after every `span` bytes of output,
//! and one at the start of every gzip member (where nothing earlier is needed).
//! [`GzipIndex::read_at`] then starts at the last checkpoint at or before the
//! wanted offset, so a read decompresses at most about `span` bytes (plus the
//! rest of one deflate block) that it throws away.
//!
//! Streams accepted by `build`:
//! - one or more gzip members back to back (pigz, eStargz and `cat a.gz b.gz`
//!   produce several); each member's CRC32 and ISIZE are checked, and its
//!   header CRC16 when FHCRC is set;
//! - followed by nothing, or by zero bytes only (tar-style padding after the
//!   last member, seen in docker layers). Anything else after a complete member
//!   that is not the start of another member is refused as trailing garbage,
//!   and so is a partial member.
//!
//! Memory: `build` holds one 128 KiB output ring, one 128 KiB input buffer and
//! the index itself, whose windows are kept zstd-compressed in memory as well
//! as on disk. [`GzipIndex::build_streaming`] writes each window out as soon
//! as the next checkpoint is made, so it holds the ring, the input buffer,
//! one window and the checkpoint table (about 20 bytes a checkpoint), whatever
//! the stream's size, and hands each checkpoint out as a [`Point`] that
//! [`read_from_point`] reads from while the stream is still coming. A read
//! holds one ring, one input buffer and one window. A
//! loaded index refers to its windows where they lie in the bytes it was
//! loaded from (a mapped file), and checks each one's CRC32 when a read
//! first needs it, so loading costs the checkpoint table alone.
//!
//! Serialized format (`to_bytes`), little-endian, version 2:
//!
//! ```text
//! "imgGZIX\0"  u32 version  u64 span  u64 uncompressed_size  u64 compressed_size
//! u32 table length  u32 CRC32 of the table
//! table: varint checkpoint count, then for each checkpoint:
//!   varint u_off delta  varint c_off delta  u8 bits|kind<<3  u8 bit_buf
//!   if kind != 0: varint window length  varint stored length  u32 CRC32 of the stored bytes
//!     (kind 1: window stored as is; kind 2: zstd frame; kind 0: no window)
//! the windows' stored bytes, in checkpoint order, and nothing after them
//! ```

use super::{RandomRead, SharedBytes};
use flate2::Crc;
use miniz_oxide::inflate::core::inflate_flags::{TINFL_FLAG_HAS_MORE_INPUT, TINFL_FLAG_STOP_ON_BLOCK_BOUNDARY};
use miniz_oxide::inflate::core::{decompress_with_limit, BlockBoundaryState, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;
use std::fmt;
use std::io::{self, Read};

/// Uncompressed bytes between checkpoints unless the caller says otherwise:
/// a read then throws away 0.5 MiB on average, a few milliseconds of inflate,
/// and the index costs at most 32 KiB (before compression) per MiB of layer.
pub const DEFAULT_SPAN: u64 = 1 << 20;

/// The deflate window: the farthest a match can reach back.
const WINDOW: usize = 32 * 1024;
/// The output ring the decompressor writes into; a power of two, >= WINDOW.
const OUT_BUF: usize = 128 * 1024;
const OUT_MASK: usize = OUT_BUF - 1;
/// Bytes read from the compressed stream at a time.
const IN_BUF: usize = 128 * 1024;
/// zstd level for the windows. Higher levels shrink text windows by a few
/// percent and cost a quarter of the build time (level 9) or more.
const WINDOW_ZSTD_LEVEL: i32 = 3;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xe0;

const INDEX_MAGIC: &[u8; 8] = b"imgGZIX\0";
const INDEX_VERSION: u32 = 2;
/// Magic, version, span, the two sizes, the table's length and CRC32.
const INDEX_HEADER: usize = 8 + 4 + 8 + 8 + 8 + 4 + 4;

/// Why a gzip stream could not be indexed or read, or an index not loaded.
/// Offsets are byte offsets in the compressed stream.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("reading the compressed stream: {0}")]
    Io(#[from] io::Error),
    #[error("not a gzip stream (no gzip header at byte {offset})")]
    NotGzip { offset: u64 },
    #[error("unsupported gzip member at byte {offset}: {what}")]
    Unsupported { offset: u64, what: &'static str },
    #[error("gzip stream truncated at byte {offset}")]
    Truncated { offset: u64 },
    #[error("corrupt gzip stream near byte {offset}: {what}")]
    Corrupt { offset: u64, what: &'static str },
    #[error("gzip member at byte {offset}: CRC32 of the data is {actual:08x}, the trailer says {expected:08x}")]
    CrcMismatch { offset: u64, expected: u32, actual: u32 },
    #[error("gzip member at byte {offset}: data size mod 2^32 is {actual}, the trailer says {expected}")]
    SizeMismatch { offset: u64, expected: u32, actual: u32 },
    #[error("trailing garbage after the last gzip member at byte {offset}")]
    TrailingGarbage { offset: u64 },
    #[error("invalid gzip index: {0}")]
    BadIndex(&'static str),
    #[error("gzip index format version {0} is not supported")]
    UnsupportedVersion(u32),
}

impl From<IndexError> for io::Error {
    fn from(e: IndexError) -> io::Error {
        match e {
            IndexError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// Random-access index of a gzip stream: see the module documentation.
#[derive(Clone)]
pub struct GzipIndex {
    /// Strictly increasing `u_off`, the first at 0.
    checkpoints: Vec<Checkpoint>,
    /// Where the checkpoints' windows are stored.
    windows: SharedBytes,
    uncompressed_size: u64,
    compressed_size: u64,
    span: u64,
}

/// A point between two deflate blocks (or at the start of a member's deflate
/// data) where decompression can start.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Checkpoint {
    /// Offset in the uncompressed stream.
    u_off: u64,
    /// Offset of the first compressed byte not fully consumed.
    c_off: u64,
    /// How many high bits of the byte before `c_off` are still to be decoded
    /// (0..=7); they are in the low bits of `bit_buf`.
    bits: u8,
    bit_buf: u8,
    /// Up to 32 KiB of the output before `u_off`, empty at a member start.
    window: Window,
}

/// A checkpoint's window, zstd-compressed unless that did not make it smaller.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Window {
    /// Uncompressed length, at most `WINDOW`.
    len: u32,
    zstd: bool,
    /// Where the stored bytes are in the index's window store, how many
    /// there are and their CRC32.
    at: usize,
    stored: u32,
    crc: u32,
}

fn crc32(b: &[u8]) -> u32 {
    let mut c = Crc::new();
    c.update(b);
    c.sum()
}

impl Window {
    /// The `len` bytes before `end` in the output ring, and their stored
    /// form (placed by the caller: `at` is 0 here).
    fn capture(
        ring: &[u8],
        end: usize,
        len: usize,
        zc: &mut zstd::bulk::Compressor<'_>,
    ) -> io::Result<(Window, Vec<u8>)> {
        let mut raw = Vec::with_capacity(len);
        if end >= len {
            raw.extend_from_slice(&ring[end - len..end]);
        } else {
            raw.extend_from_slice(&ring[ring.len() - (len - end)..]);
            raw.extend_from_slice(&ring[..end]);
        }
        let z = zc.compress(&raw)?;
        let (zstd, data) = if z.len() < raw.len() { (true, z) } else { (false, raw) };
        let w = Window { len: len as u32, zstd, at: 0, stored: data.len() as u32, crc: crc32(&data) };
        Ok((w, data))
    }

    /// The stored bytes, checked against their CRC32.
    fn data<'a>(&self, store: &'a [u8]) -> Result<&'a [u8], IndexError> {
        let data = self
            .at
            .checked_add(self.stored as usize)
            .and_then(|end| store.get(self.at..end))
            .ok_or(IndexError::BadIndex("window outside the index"))?;
        if crc32(data) != self.crc {
            return Err(IndexError::BadIndex("window checksum mismatch"));
        }
        Ok(data)
    }

    /// Writes the window at the start of `dst` and returns its length.
    fn restore(&self, store: &[u8], dst: &mut [u8]) -> Result<usize, IndexError> {
        let n = self.len as usize;
        let Some(dst) = dst.get_mut(..n) else {
            return Err(IndexError::BadIndex("window too large"));
        };
        if n == 0 {
            return Ok(0);
        }
        let data = self.data(store)?;
        if self.zstd {
            let got = zstd::bulk::decompress_to_buffer(data, dst)
                .map_err(|_| IndexError::BadIndex("window does not decompress"))?;
            if got != n {
                return Err(IndexError::BadIndex("window has the wrong length"));
            }
        } else if data.len() == n {
            dst.copy_from_slice(data);
        } else {
            return Err(IndexError::BadIndex("window has the wrong length"));
        }
        Ok(n)
    }

    fn kind(&self) -> u8 {
        match (self.len, self.zstd) {
            (0, _) => 0,
            (_, false) => 1,
            (_, true) => 2,
        }
    }
}

/// Two indexes are equal when their checkpoints and window contents are,
/// wherever the windows are stored.
impl PartialEq for GzipIndex {
    fn eq(&self, other: &GzipIndex) -> bool {
        let same = |a: &Checkpoint, b: &Checkpoint| {
            let wa = a.window.data(&self.windows).ok();
            let wb = b.window.data(&other.windows).ok();
            (a.u_off, a.c_off, a.bits, a.bit_buf, a.window.len, a.window.zstd)
                == (b.u_off, b.c_off, b.bits, b.bit_buf, b.window.len, b.window.zstd)
                && (a.window.len == 0 || (wa.is_some() && wa == wb))
        };
        (self.uncompressed_size, self.compressed_size, self.span, self.checkpoints.len())
            == (other.uncompressed_size, other.compressed_size, other.span, other.checkpoints.len())
            && self.checkpoints.iter().zip(&other.checkpoints).all(|(a, b)| same(a, b))
    }
}

impl Eq for GzipIndex {}

impl fmt::Debug for GzipIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GzipIndex")
            .field("checkpoints", &self.checkpoints.len())
            .field("uncompressed_size", &self.uncompressed_size)
            .field("compressed_size", &self.compressed_size)
            .field("span", &self.span)
            .finish()
    }
}

impl GzipIndex {
    /// Decompresses `reader` from start to end in one pass, handing every
    /// decompressed chunk to `sink` in order, checks it (see the module
    /// documentation for what is accepted) and returns its index.
    ///
    /// A checkpoint is recorded at the first deflate block boundary after every
    /// `span` bytes of output (a `span` of 0 counts as 1) and at the start of
    /// every member. `sink` has seen every byte even when an error is
    /// returned for a later part of the stream, so the caller must discard
    /// what it computed from them then.
    pub fn build<R: Read>(reader: R, span: u64, sink: &mut dyn FnMut(&[u8])) -> Result<GzipIndex, IndexError> {
        let mut store: Vec<u8> = Vec::new();
        let mut ignore = |_| {};
        let mut table = Table::new(&mut store, &mut ignore);
        let (uncompressed_size, compressed_size) = build_into(reader, span, sink, &mut table)?;
        let checkpoints = table.finish()?;
        Ok(GzipIndex {
            checkpoints,
            windows: SharedBytes::from_vec(store),
            uncompressed_size,
            compressed_size,
            span: span.max(1),
        })
    }

    /// `build` with bounded memory, whatever the stream's size: each
    /// checkpoint's window goes to `windows` as soon as the next checkpoint
    /// shows it is kept (so at most one window is held back), and the
    /// checkpoint is then handed to `on_point`, with its window's place in
    /// what `windows` was given (one without a window, at a member start,
    /// at once). A checkpoint handed out may yet be replaced in the index by
    /// a later one at the same uncompressed offset, which is handed out too;
    /// either is a sound place to start reading. Only the checkpoint table stays in memory
    /// (about 20 bytes a checkpoint). The index is [`StreamedIndex::head`]
    /// followed by the bytes written to `windows`: the same bytes `to_bytes`
    /// gives for the index `build` makes of the same stream.
    pub fn build_streaming<R: Read>(
        reader: R,
        span: u64,
        sink: &mut dyn FnMut(&[u8]),
        windows: &mut dyn io::Write,
        on_point: &mut dyn FnMut(Point),
    ) -> Result<StreamedIndex, IndexError> {
        let mut table = Table::new(windows, on_point);
        let (uncompressed_size, compressed_size) = build_into(reader, span, sink, &mut table)?;
        let (written, held_peak) = (table.written, table.held_peak);
        let checkpoints = table.finish()?;
        let head = head_bytes(&checkpoints, span.max(1), uncompressed_size, compressed_size, |c| {
            (c.window.at, c.window.stored)
        });
        Ok(StreamedIndex {
            head,
            windows_len: written + checkpoints.last().map_or(0, |c| u64::from(c.window.stored)),
            checkpoints: checkpoints.len(),
            uncompressed_size,
            held_peak,
        })
    }

    /// Size of the decompressed stream.
    pub fn uncompressed_size(&self) -> u64 {
        self.uncompressed_size
    }

    /// Size of the compressed stream, trailing zero bytes included.
    pub fn compressed_size(&self) -> u64 {
        self.compressed_size
    }

    /// The span the index was built with.
    pub fn span(&self) -> u64 {
        self.span
    }

    /// Number of checkpoints.
    pub fn checkpoint_count(&self) -> usize {
        self.checkpoints.len()
    }

    /// The uncompressed offsets of the checkpoints, in order: where a
    /// reader can start without decoding anything it throws away.
    pub fn checkpoint_offsets(&self) -> impl Iterator<Item = u64> + '_ {
        self.checkpoints.iter().map(|c| c.u_off)
    }

    /// Reads up to `buf.len()` bytes of the decompressed stream starting at
    /// `u_off` from `blob`, the compressed stream the index was built from.
    /// Returns fewer bytes only at the end of the stream, and 0 at or after it.
    ///
    /// The compressed data is not checked against the member CRCs (a read
    /// rarely decodes a whole member): the blob is trusted to be the one that
    /// was indexed, which its digest shows.
    pub fn read_at<R: RandomRead + ?Sized>(&self, blob: &R, u_off: u64, buf: &mut [u8]) -> Result<usize, IndexError> {
        if u_off >= self.uncompressed_size || buf.is_empty() {
            return Ok(0);
        }
        let want = (self.uncompressed_size - u_off).min(buf.len() as u64) as usize;
        let mut r = self.reader_at(blob, u_off)?;
        r.read_inner(&mut buf[..want], true)
    }

    /// A reader of the decompressed stream from `u_off` on, for reading a
    /// long stretch sequentially (a whole file of the layer) without going
    /// back to a checkpoint for every buffer.
    pub fn reader_at<'a, R: RandomRead + ?Sized>(
        &'a self,
        blob: &'a R,
        u_off: u64,
    ) -> Result<GzipReader<'a, R>, IndexError> {
        let i = self.checkpoints.partition_point(|c| c.u_off <= u_off);
        let Some(cp) = i.checked_sub(1).and_then(|i| self.checkpoints.get(i)) else {
            return Err(IndexError::BadIndex("no checkpoint at offset 0"));
        };
        let mut r = reader_from(cp, &self.windows, blob, self.uncompressed_size)?;
        r.skip_to(u_off)?;
        Ok(r)
    }

    /// The index in the format described in the module documentation.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = head_bytes(&self.checkpoints, self.span, self.uncompressed_size, self.compressed_size, |c| {
            (c.window.at, c.window.stored)
        });
        for c in self.checkpoints.iter().filter(|c| c.window.kind() != 0) {
            // A window is always within the store it was built in.
            v.extend_from_slice(&self.windows[c.window.at..c.window.at + c.window.stored as usize]);
        }
        v
    }

    /// Loads an index written by `to_bytes`, copying it.
    pub fn from_bytes(b: &[u8]) -> Result<GzipIndex, IndexError> {
        GzipIndex::from_shared(SharedBytes::from_vec(b.to_vec()))
    }

    /// Loads an index written by `to_bytes`, referring to its windows in
    /// `b` without copying them. The bytes are untrusted: every field of the
    /// table is checked for consistency, nothing is allocated beyond what the
    /// input's length allows, and unknown versions are refused. A window is
    /// checked against its CRC32 and decompressed only when a read needs it;
    /// a bad one fails that read.
    pub fn from_shared(b: SharedBytes) -> Result<GzipIndex, IndexError> {
        let bad = IndexError::BadIndex;
        if b.len() < 12 || &b[..8] != INDEX_MAGIC {
            return Err(bad("not a gzip index"));
        }
        let version = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        if version != INDEX_VERSION {
            return Err(IndexError::UnsupportedVersion(version));
        }
        if b.len() < INDEX_HEADER + 1 {
            return Err(bad("truncated"));
        }
        let mut r = Bytes(&b[12..INDEX_HEADER]);
        let span = r.u64()?;
        let uncompressed_size = r.u64()?;
        let compressed_size = r.u64()?;
        let table_len = r.u32()? as usize;
        let table_crc = r.u32()?;
        let table = b.get(INDEX_HEADER..INDEX_HEADER + table_len).ok_or(bad("truncated"))?;
        if crc32(table) != table_crc {
            return Err(bad("checksum mismatch"));
        }
        if span == 0 {
            return Err(bad("span is 0"));
        }
        let windows = b.slice(INDEX_HEADER + table_len..b.len()).ok_or(bad("truncated"))?;
        let mut r = Bytes(table);
        let count = r.varint()?;
        // A checkpoint takes at least 4 bytes.
        if count == 0 || count > (r.0.len() / 4) as u64 {
            return Err(bad("impossible checkpoint count"));
        }
        let mut checkpoints = Vec::with_capacity(count as usize);
        let (mut pu, mut pc) = (0u64, 0u64);
        let mut at = 0usize;
        for i in 0..count {
            let du = r.varint()?;
            let dc = r.varint()?;
            if (i == 0) != (du == 0) {
                return Err(bad("checkpoint offsets out of order"));
            }
            let u_off = pu.checked_add(du).ok_or(bad("checkpoint offset overflows"))?;
            let c_off = pc.checked_add(dc).ok_or(bad("checkpoint offset overflows"))?;
            if u_off > uncompressed_size || c_off > compressed_size {
                return Err(bad("checkpoint beyond the end of the stream"));
            }
            (pu, pc) = (u_off, c_off);
            let flags = r.u8()?;
            let bit_buf = r.u8()?;
            let bits = flags & 7;
            let kind = flags >> 3;
            if u16::from(bit_buf) >> bits != 0 {
                return Err(bad("checkpoint bit buffer has stray bits"));
            }
            let window = match kind {
                0 => Window::default(),
                1 | 2 => {
                    let len = r.varint()?;
                    let stored = r.varint()?;
                    let crc = r.u32()?;
                    if len == 0 || len > WINDOW as u64 || len > u_off {
                        return Err(bad("window length out of range"));
                    }
                    let ok = if kind == 1 { stored == len } else { stored > 0 && stored < len };
                    if !ok {
                        return Err(bad("stored window length out of range"));
                    }
                    let w = Window { len: len as u32, zstd: kind == 2, at, stored: stored as u32, crc };
                    at += stored as usize;
                    if at > windows.len() {
                        return Err(bad("truncated"));
                    }
                    w
                }
                _ => return Err(bad("unknown window kind")),
            };
            checkpoints.push(Checkpoint { u_off, c_off, bits, bit_buf, window });
        }
        if !r.0.is_empty() {
            return Err(bad("bytes after the last checkpoint"));
        }
        if at != windows.len() {
            return Err(bad("bytes after the last window"));
        }
        Ok(GzipIndex { checkpoints, windows, uncompressed_size, compressed_size, span })
    }
}

/// Decompresses `reader` (see `GzipIndex::build`), handing its output to
/// `sink` and its checkpoints to `table`; returns the uncompressed and
/// compressed sizes.
fn build_into<R: Read>(
    reader: R,
    span: u64,
    sink: &mut dyn FnMut(&[u8]),
    table: &mut Table<'_>,
) -> Result<(u64, u64), IndexError> {
    let span = span.max(1);
    let mut inp = Input::new(Sequential(reader), 0, IN_BUF);
    let mut out = vec![0u8; OUT_BUF];
    let mut out_pos = 0usize;
    let mut d = Box::<DecompressorOxide>::default();
    let mut zc = zstd::bulk::Compressor::new(WINDOW_ZSTD_LEVEL)?;
    let mut total: u64 = 0;

    if !inp.need(2)? || inp.avail()[..2] != GZIP_MAGIC {
        if inp.avail() == &GZIP_MAGIC[..1] {
            return Err(IndexError::Truncated { offset: 1 });
        }
        return Err(IndexError::NotGzip { offset: 0 });
    }
    loop {
        let member_at = inp.offset();
        read_header(&mut inp)?;
        let member_start = total;
        table.push(
            Checkpoint { u_off: total, c_off: inp.offset(), bits: 0, bit_buf: 0, window: Window::default() },
            Vec::new(),
        )?;
        d.init();
        let mut crc = Crc::new();
        let mut next_cp = total.saturating_add(span);
        loop {
            let mut flags = 0;
            if !inp.eof {
                flags |= TINFL_FLAG_HAS_MORE_INPUT;
            }
            // Stop at block boundaries only once a checkpoint is due, and
            // stop decoding exactly where it becomes due.
            let limit = if total >= next_cp {
                flags |= TINFL_FLAG_STOP_ON_BLOCK_BOUNDARY;
                usize::MAX
            } else {
                (next_cp - total).min(OUT_BUF as u64) as usize
            };
            let (status, nin, nout) = decompress_with_limit(&mut d, inp.avail(), &mut out, out_pos, limit, flags);
            inp.consume(nin);
            if nout > 0 {
                let chunk = &out[out_pos..out_pos + nout];
                crc.update(chunk);
                sink(chunk);
                total += nout as u64;
                out_pos = (out_pos + nout) & OUT_MASK;
            }
            match status {
                TINFLStatus::Done => break,
                TINFLStatus::BlockBoundary => {
                    if total >= next_cp {
                        let st = d.block_boundary_state().ok_or(IndexError::Corrupt {
                            offset: inp.offset(),
                            what: "no decoder state at a block boundary",
                        })?;
                        let len = (total - member_start).min(WINDOW as u64) as usize;
                        let (window, stored) = Window::capture(&out, out_pos, len, &mut zc)?;
                        table.push(
                            Checkpoint {
                                u_off: total,
                                c_off: inp.offset(),
                                bits: st.num_bits,
                                bit_buf: st.bit_buf,
                                window,
                            },
                            stored,
                        )?;
                        next_cp = total.saturating_add(span);
                    }
                }
                // At the end of the input the next call goes without
                // TINFL_FLAG_HAS_MORE_INPUT and fails if it needs more.
                TINFLStatus::NeedsMoreInput => {
                    inp.fill()?;
                }
                TINFLStatus::HasMoreOutput => {
                    if nin == 0 && nout == 0 {
                        return Err(IndexError::Corrupt { offset: inp.offset(), what: "the decoder made no progress" });
                    }
                }
                TINFLStatus::FailedCannotMakeProgress => return Err(IndexError::Truncated { offset: inp.offset() }),
                _ => return Err(IndexError::Corrupt { offset: inp.offset(), what: "invalid deflate data" }),
            }
        }
        let (want_crc, want_size) = read_trailer(&mut inp)?;
        if crc.sum() != want_crc {
            return Err(IndexError::CrcMismatch { offset: member_at, expected: want_crc, actual: crc.sum() });
        }
        let size = (total - member_start) as u32;
        if size != want_size {
            return Err(IndexError::SizeMismatch { offset: member_at, expected: want_size, actual: size });
        }
        if !next_member(&mut inp)? {
            break;
        }
    }
    Ok((total, inp.offset()))
}

/// The checkpoints of an index being built, and where their windows go.
/// A checkpoint at the same uncompressed offset as the last (a member start
/// after an empty member or after a block boundary checkpoint) replaces it,
/// being later in the compressed stream and needing no window; so the last
/// checkpoint's window is held back until the next checkpoint is known.
struct Table<'a> {
    checkpoints: Vec<Checkpoint>,
    /// The stored window of the last checkpoint, not written yet.
    held: Vec<u8>,
    out: &'a mut dyn io::Write,
    on_point: &'a mut dyn FnMut(Point),
    /// Window bytes written to `out`.
    written: u64,
    /// The most window bytes held back at once.
    held_peak: usize,
    /// The last checkpoint was handed out already (it has no window).
    reported: bool,
}

impl<'a> Table<'a> {
    fn new(out: &'a mut dyn io::Write, on_point: &'a mut dyn FnMut(Point)) -> Table<'a> {
        Table { checkpoints: Vec::new(), held: Vec::new(), out, on_point, written: 0, held_peak: 0, reported: false }
    }

    fn push(&mut self, mut cp: Checkpoint, stored: Vec<u8>) -> io::Result<()> {
        match self.checkpoints.last() {
            Some(last) if last.u_off == cp.u_off => {
                self.checkpoints.pop();
            }
            Some(_) => self.flush()?,
            None => {}
        }
        cp.window.at = usize::try_from(self.written).map_err(|_| io::Error::other("gzip index too large"))?;
        self.held = stored;
        self.held_peak = self.held_peak.max(self.held.len());
        self.checkpoints.push(cp);
        // One without a window (a member start) can be read from at once.
        self.reported = self.held.is_empty();
        if self.reported {
            (self.on_point)(Point(cp));
        }
        Ok(())
    }

    /// Writes the last checkpoint's window and hands the checkpoint on.
    fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.held)?;
        self.written += self.held.len() as u64;
        self.held.clear();
        match self.checkpoints.last() {
            Some(last) if !self.reported => (self.on_point)(Point(*last)),
            _ => {}
        }
        self.reported = true;
        Ok(())
    }

    fn finish(mut self) -> io::Result<Vec<Checkpoint>> {
        self.flush()?;
        self.out.flush()?;
        Ok(self.checkpoints)
    }
}

/// A checkpoint of an index being streamed: where decoding can start
/// (see [`read_from_point`]) and where its window lies in the windows
/// written so far.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Point(Checkpoint);

impl Point {
    /// Its offset in the uncompressed stream.
    pub fn u_off(&self) -> u64 {
        self.0.u_off
    }

    /// Its offset in the compressed stream.
    pub fn c_off(&self) -> u64 {
        self.0.c_off
    }

    /// Where its stored window is in the windows written (empty for a
    /// member start).
    pub fn window(&self) -> std::ops::Range<u64> {
        let at = self.0.window.at as u64;
        at..at + u64::from(self.0.window.stored)
    }
}

impl fmt::Debug for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Point(u {}, c {}, window {:?})", self.0.u_off, self.0.c_off, self.window())
    }
}

/// What `build_streaming` made besides the windows it wrote.
#[derive(Debug, Clone)]
pub struct StreamedIndex {
    head: Vec<u8>,
    windows_len: u64,
    checkpoints: usize,
    uncompressed_size: u64,
    held_peak: usize,
}

impl StreamedIndex {
    /// The start of the index: header and checkpoint table; the windows
    /// written follow it.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// How many window bytes were written.
    pub fn windows_len(&self) -> u64 {
        self.windows_len
    }

    pub fn checkpoint_count(&self) -> usize {
        self.checkpoints
    }

    pub fn uncompressed_size(&self) -> u64 {
        self.uncompressed_size
    }

    /// The most window bytes held back in memory at once (at most one
    /// window).
    pub fn held_peak(&self) -> usize {
        self.held_peak
    }
}

/// Reads up to `buf.len()` bytes of the decompressed stream from `u_off`
/// (at or after `point`), decoding from `point` with its stored window
/// `window` (the bytes at [`Point::window`] of what was written) over the
/// compressed `blob`, and never past uncompressed offset `limit` (how far
/// the stream is known to go). For reading a stream whose index is still
/// being built.
pub fn read_from_point<R: RandomRead + ?Sized>(
    point: &Point,
    window: &[u8],
    blob: &R,
    limit: u64,
    u_off: u64,
    buf: &mut [u8],
) -> Result<usize, IndexError> {
    if u_off < point.0.u_off {
        return Err(IndexError::BadIndex("a read before its checkpoint"));
    }
    if u_off >= limit || buf.is_empty() {
        return Ok(0);
    }
    let mut cp = point.0;
    cp.window.at = 0;
    let mut r = reader_from(&cp, window, blob, limit)?;
    r.skip_to(u_off)?;
    let want = (limit - u_off).min(buf.len() as u64) as usize;
    r.read_inner(&mut buf[..want], true)
}

/// A reader of the stream from checkpoint `cp` (its window in `store`),
/// handing out no more than `size` bytes of output in all.
fn reader_from<'a, R: RandomRead + ?Sized>(
    cp: &Checkpoint,
    store: &[u8],
    blob: &'a R,
    size: u64,
) -> Result<GzipReader<'a, R>, IndexError> {
    let mut out = vec![0u8; OUT_BUF];
    let wlen = cp.window.restore(store, &mut out[..WINDOW])?;
    let st = BlockBoundaryState { num_bits: cp.bits, bit_buf: cp.bit_buf, ..BlockBoundaryState::default() };
    Ok(GzipReader {
        size,
        inp: Input::new(Positioned(blob), cp.c_off, IN_BUF),
        d: Box::new(DecompressorOxide::from_block_boundary_state(&st)),
        out,
        out_pos: wlen & OUT_MASK,
        ready_at: 0,
        ready_len: 0,
        pos: cp.u_off,
        finished: false,
    })
}

/// The index's header and checkpoint table (the format in the module
/// documentation); `stored` gives each checkpoint's window place.
fn head_bytes(
    checkpoints: &[Checkpoint],
    span: u64,
    uncompressed_size: u64,
    compressed_size: u64,
    stored: impl Fn(&Checkpoint) -> (usize, u32),
) -> Vec<u8> {
    let mut table = Vec::with_capacity(16 * checkpoints.len());
    put_varint(&mut table, checkpoints.len() as u64);
    let (mut pu, mut pc) = (0u64, 0u64);
    for c in checkpoints {
        put_varint(&mut table, c.u_off - pu);
        put_varint(&mut table, c.c_off - pc);
        (pu, pc) = (c.u_off, c.c_off);
        let kind = c.window.kind();
        table.push(c.bits | kind << 3);
        table.push(c.bit_buf);
        if kind != 0 {
            let (_, n) = stored(c);
            put_varint(&mut table, u64::from(c.window.len));
            put_varint(&mut table, u64::from(n));
            table.extend_from_slice(&c.window.crc.to_le_bytes());
        }
    }
    let mut v = Vec::with_capacity(INDEX_HEADER + table.len());
    v.extend_from_slice(INDEX_MAGIC);
    v.extend_from_slice(&INDEX_VERSION.to_le_bytes());
    v.extend_from_slice(&span.to_le_bytes());
    v.extend_from_slice(&uncompressed_size.to_le_bytes());
    v.extend_from_slice(&compressed_size.to_le_bytes());
    v.extend_from_slice(&(table.len() as u32).to_le_bytes());
    v.extend_from_slice(&crc32(&table).to_le_bytes());
    v.extend_from_slice(&table);
    v
}

/// Sequential reader of the decompressed stream from a checkpoint on, made by
/// [`GzipIndex::reader_at`].
pub struct GzipReader<'a, R: RandomRead + ?Sized> {
    size: u64,
    inp: Input<Positioned<'a, R>>,
    d: Box<DecompressorOxide>,
    /// Output ring; the 32 KiB before `out_pos` is the decoder's window.
    out: Vec<u8>,
    out_pos: usize,
    /// Decoded bytes not handed out yet: `out[ready_at..ready_at + ready_len]`.
    ready_at: usize,
    ready_len: usize,
    /// Uncompressed offset of the next byte to hand out.
    pos: u64,
    finished: bool,
}

impl<R: RandomRead + ?Sized> GzipReader<'_, R> {
    /// Uncompressed offset of the next byte `read` returns.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Decodes more output into the ready part of the ring, at most `limit`
    /// bytes; false at the end of the stream.
    fn fill_ready(&mut self, limit: usize) -> Result<bool, IndexError> {
        debug_assert_eq!(self.ready_len, 0);
        loop {
            if self.finished || self.pos >= self.size {
                return Ok(false);
            }
            let flags = if self.inp.eof { 0 } else { TINFL_FLAG_HAS_MORE_INPUT };
            let (status, nin, nout) =
                decompress_with_limit(&mut self.d, self.inp.avail(), &mut self.out, self.out_pos, limit.max(1), flags);
            self.inp.consume(nin);
            if nout > 0 {
                self.ready_at = self.out_pos;
                // Never hand out more than the index says there is, whatever
                // the blob holds.
                self.ready_len = (nout as u64).min(self.size - self.pos) as usize;
                self.out_pos = (self.out_pos + nout) & OUT_MASK;
            }
            match status {
                TINFLStatus::Done => {
                    if self.pos + self.ready_len as u64 >= self.size {
                        self.finished = true;
                    } else {
                        read_trailer(&mut self.inp)?;
                        if !next_member(&mut self.inp)? {
                            return Err(IndexError::Truncated { offset: self.inp.offset() });
                        }
                        read_header(&mut self.inp)?;
                        self.d.init();
                    }
                }
                TINFLStatus::NeedsMoreInput => {
                    self.inp.fill()?;
                }
                TINFLStatus::HasMoreOutput | TINFLStatus::BlockBoundary => {
                    if nin == 0 && nout == 0 {
                        return Err(IndexError::Corrupt {
                            offset: self.inp.offset(),
                            what: "the decoder made no progress",
                        });
                    }
                }
                TINFLStatus::FailedCannotMakeProgress => {
                    return Err(IndexError::Truncated { offset: self.inp.offset() })
                }
                _ => return Err(IndexError::Corrupt { offset: self.inp.offset(), what: "invalid deflate data" }),
            }
            if self.ready_len > 0 {
                return Ok(true);
            }
        }
    }

    /// Decodes and drops output up to uncompressed offset `target`.
    fn skip_to(&mut self, target: u64) -> Result<(), IndexError> {
        while self.pos < target {
            if self.ready_len == 0 {
                let limit = (target - self.pos).min(OUT_BUF as u64) as usize;
                if !self.fill_ready(limit)? {
                    break;
                }
            }
            let k = (target - self.pos).min(self.ready_len as u64) as usize;
            self.ready_at += k;
            self.ready_len -= k;
            self.pos += k as u64;
        }
        Ok(())
    }

    /// Fills `buf` as far as the stream goes. `exact`: decode no more than
    /// `buf` needs (for a one-off read; a sequential reader decodes ahead).
    fn read_inner(&mut self, buf: &mut [u8], exact: bool) -> Result<usize, IndexError> {
        let mut n = 0;
        while n < buf.len() {
            let limit = if exact { buf.len() - n } else { usize::MAX };
            if self.ready_len == 0 && !self.fill_ready(limit)? {
                break;
            }
            let k = self.ready_len.min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&self.out[self.ready_at..self.ready_at + k]);
            self.ready_at += k;
            self.ready_len -= k;
            self.pos += k as u64;
            n += k;
        }
        Ok(n)
    }
}

impl<R: RandomRead + ?Sized> Read for GzipReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.read_inner(buf, false)?)
    }
}

/// Where compressed bytes come from: a stream read once (`build`) or a blob
/// read at offsets (reads).
trait Fetch {
    fn fetch(&mut self, off: u64, buf: &mut [u8]) -> io::Result<usize>;
}

struct Sequential<R>(R);

impl<R: Read> Fetch for Sequential<R> {
    fn fetch(&mut self, _off: u64, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
}

struct Positioned<'a, R: ?Sized>(&'a R);

impl<R: RandomRead + ?Sized> Fetch for Positioned<'_, R> {
    fn fetch(&mut self, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read_at(off, buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
}

/// A buffer over the compressed stream that knows the stream offset of every
/// byte in it.
struct Input<F> {
    src: F,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    eof: bool,
}

impl<F: Fetch> Input<F> {
    fn new(src: F, at: u64, cap: usize) -> Input<F> {
        Input { src, buf: vec![0; cap], start: 0, end: 0, base: at, eof: false }
    }

    /// Stream offset of the next unconsumed byte.
    fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start);
        self.start += n;
    }

    /// Reads more of the stream after what is buffered; false at its end.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let n = self.buf.len().max(1024);
            self.buf.resize(n * 2, 0);
        }
        let n = self.src.fetch(self.base + self.end as u64, &mut self.buf[self.end..])?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.end += n;
        Ok(true)
    }

    /// Makes at least `n` bytes available; false if the stream ends first.
    fn need(&mut self, n: usize) -> io::Result<bool> {
        while self.end - self.start < n {
            if !self.fill()? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn truncated(&self) -> IndexError {
        IndexError::Truncated { offset: self.base + self.end as u64 }
    }

    /// Consumes `n` bytes, adding them to `crc`.
    fn skip(&mut self, mut n: usize, crc: &mut Crc) -> Result<(), IndexError> {
        while n > 0 {
            if self.avail().is_empty() && !self.fill()? {
                return Err(self.truncated());
            }
            let k = n.min(self.avail().len());
            crc.update(&self.avail()[..k]);
            self.consume(k);
            n -= k;
        }
        Ok(())
    }

    /// Consumes a zero-terminated string, adding it to `crc`.
    fn skip_cstring(&mut self, crc: &mut Crc) -> Result<(), IndexError> {
        loop {
            if self.avail().is_empty() && !self.fill()? {
                return Err(self.truncated());
            }
            let a = self.avail();
            match a.iter().position(|&b| b == 0) {
                Some(p) => {
                    crc.update(&a[..=p]);
                    self.consume(p + 1);
                    return Ok(());
                }
                None => {
                    let n = a.len();
                    crc.update(a);
                    self.consume(n);
                }
            }
        }
    }
}

/// Consumes a gzip member header (RFC 1952 section 2.3).
fn read_header<F: Fetch>(inp: &mut Input<F>) -> Result<(), IndexError> {
    let at = inp.offset();
    if !inp.need(10)? {
        return Err(inp.truncated());
    }
    let mut h = [0u8; 10];
    h.copy_from_slice(&inp.avail()[..10]);
    if h[..2] != GZIP_MAGIC {
        return Err(IndexError::NotGzip { offset: at });
    }
    if h[2] != 8 {
        return Err(IndexError::Unsupported { offset: at, what: "compression method is not deflate" });
    }
    let flg = h[3];
    if flg & FRESERVED != 0 {
        return Err(IndexError::Unsupported { offset: at, what: "reserved header flags are set" });
    }
    let mut crc = Crc::new();
    crc.update(&h);
    inp.consume(10);
    if flg & FEXTRA != 0 {
        if !inp.need(2)? {
            return Err(inp.truncated());
        }
        let x = [inp.avail()[0], inp.avail()[1]];
        crc.update(&x);
        inp.consume(2);
        inp.skip(usize::from(u16::from_le_bytes(x)), &mut crc)?;
    }
    if flg & FNAME != 0 {
        inp.skip_cstring(&mut crc)?;
    }
    if flg & FCOMMENT != 0 {
        inp.skip_cstring(&mut crc)?;
    }
    if flg & FHCRC != 0 {
        if !inp.need(2)? {
            return Err(inp.truncated());
        }
        let want = u16::from_le_bytes([inp.avail()[0], inp.avail()[1]]);
        if crc.sum() as u16 != want {
            return Err(IndexError::Corrupt { offset: at, what: "header CRC16 mismatch" });
        }
        inp.consume(2);
    }
    Ok(())
}

/// Consumes a member trailer: CRC32 and ISIZE.
fn read_trailer<F: Fetch>(inp: &mut Input<F>) -> Result<(u32, u32), IndexError> {
    if !inp.need(8)? {
        return Err(inp.truncated());
    }
    let t = inp.avail();
    let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
    let size = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
    inp.consume(8);
    Ok((crc, size))
}

/// After a member: true if another member starts here, false if the stream
/// ends (possibly after zero bytes, which are consumed).
fn next_member<F: Fetch>(inp: &mut Input<F>) -> Result<bool, IndexError> {
    if inp.need(2)? && inp.avail()[..2] == GZIP_MAGIC {
        return Ok(true);
    }
    if inp.avail() == &GZIP_MAGIC[..1] {
        return Err(inp.truncated());
    }
    loop {
        let a = inp.avail();
        if let Some(p) = a.iter().position(|&b| b != 0) {
            return Err(IndexError::TrailingGarbage { offset: inp.offset() + p as u64 });
        }
        let n = a.len();
        inp.consume(n);
        if !inp.fill()? {
            return Ok(false);
        }
    }
}

fn put_varint(v: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        v.push(x as u8 | 0x80);
        x >>= 7;
    }
    v.push(x as u8);
}

/// A cursor over untrusted bytes.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], IndexError> {
        if n > self.0.len() {
            return Err(IndexError::BadIndex("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, IndexError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, IndexError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }

    fn u64(&mut self) -> Result<u64, IndexError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn varint(&mut self) -> Result<u64, IndexError> {
        let mut x = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return Err(IndexError::BadIndex("varint overflows"));
            }
            x |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(x);
            }
        }
        Err(IndexError::BadIndex("varint overflows"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::MultiGzDecoder;
    use flate2::write::{DeflateEncoder, GzEncoder};
    use flate2::Compression;
    use proptest::prelude::*;
    use std::io::Write;
    use std::sync::OnceLock;

    /// xorshift64*: deterministic test data without a dependency.
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Rng {
            Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
        }

        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    pub(super) fn random(n: usize, seed: u64) -> Vec<u8> {
        let mut r = Rng::new(seed);
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&r.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }

    /// Words, numbers and line breaks: compresses about 3:1 like source code.
    pub(super) fn text(n: usize, seed: u64) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "the",
            "layer",
            "image",
            "container",
            "file",
            "of",
            "and",
            "to",
            "a",
            "in",
            "is",
            "for",
            "that",
            "with",
            "registry",
            "manifest",
            "config",
            "blob",
            "digest",
            "sha256",
            "usr",
            "lib",
            "bin",
            "etc",
            "share",
            "doc",
            "python3",
            "return",
            "if",
            "else",
            "fn",
            "let",
            "mut",
            "struct",
            "impl",
            "pub",
            "use",
            "self",
            "error",
            "result",
            "option",
            "vector",
            "string",
            "buffer",
            "read",
            "write",
            "offset",
            "length",
            "window",
            "block",
            "stream",
            "member",
            "index",
        ];
        let mut r = Rng::new(seed);
        let mut v = Vec::with_capacity(n + 64);
        while v.len() < n {
            match r.below(16) {
                0 => v.push(b'\n'),
                1 => v.extend_from_slice(r.below(100_000).to_string().as_bytes()),
                _ => v.extend_from_slice(WORDS[r.below(WORDS.len() as u64) as usize].as_bytes()),
            }
            v.push(if r.below(12) == 0 { b'\n' } else { b' ' });
        }
        v.truncate(n);
        v
    }

    pub(super) fn gz(data: &[u8], level: u32) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::new(level));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Layers of each kind the index must handle: (name, blob, span).
    fn golden_cases() -> Vec<(&'static str, Vec<u8>, u64)> {
        let mut mixed = text(1 << 20, 201);
        mixed.extend_from_slice(&random(400_000, 202));
        mixed.extend_from_slice(&vec![0u8; 3 << 20]);
        mixed.extend_from_slice(&text(300_000, 203));
        let mut multi = gz(&text(900_000, 204), 6);
        multi.extend_from_slice(&gz(b"", 6));
        multi.extend_from_slice(&gz(&random(300_000, 205), 1));
        multi.extend_from_slice(&gz(&text(700_000, 206), 9));
        let mut padded = gz(&text(500_000, 207), 6);
        padded.extend_from_slice(&[0; 1000]);
        vec![
            ("text level 6", gz(&text(3 << 20, 200), 6), 256 << 10),
            ("text level 9 default span", gz(&text(3 << 20, 200), 9), DEFAULT_SPAN),
            ("random level 6", gz(&random(2 << 20, 208), 6), 256 << 10),
            ("stored", gz(&random(1 << 20, 209), 0), 100_000),
            ("mixed with zeros", gz(&mixed, 6), 512 << 10),
            ("multi-member", multi, 200_000),
            ("padded", padded, 64 << 10),
            ("empty", gz(b"", 6), DEFAULT_SPAN),
        ]
    }

    /// The sha256 of `to_bytes` of each of `golden_cases`, as the builder
    /// that held every window in memory until the end made them: the
    /// streamed index, and the one built in memory, must still be these
    /// files byte for byte.
    const GOLDEN: &[(&str, &str)] = &[
        ("text level 6", "805e3b0e63100043a5101f2b9f5a8b256847d164c2d239523a9f8b8bbb3cb843"),
        ("text level 9 default span", "327ccbf400d86428e978c764eb5c24cfec224ece21e8ed17d27393f82b7f0a91"),
        ("random level 6", "5bd9dceaea1482510d70c867b6d308aef66bbf16f14e29c239b94ef0698c048c"),
        ("stored", "ac1a2e52e7e9c45da801b78e5be5e2fcda19e3f7f0bde85ee438e43cd94b9207"),
        ("mixed with zeros", "6552e7c1ccaee2271eac3f983f2d29f8b78082f48b151f75bc1ddb6ab92d1796"),
        ("multi-member", "59ef30945f603d45eb849604828c9542f6e940690f34380c157636f21e86985f"),
        ("padded", "399d0da8cf6dcdfb1d068ce2250cee0f0535aa1a42d698dcc3fa8738d4f9987a"),
        ("empty", "539b435b18e13418a9742dfe4764b347d92ecd85b691a4dce264403e22a4ef04"),
    ];

    /// What `build_streaming` writes for `blob`: the index file, the
    /// decompressed bytes, and the points handed out, each checked when it
    /// came (its window already written, whole).
    fn streamed(blob: &[u8], span: u64) -> Result<(Vec<u8>, Vec<u8>, Vec<Point>, StreamedIndex), IndexError> {
        let mut out = Vec::new();
        let windows = std::cell::RefCell::new(Vec::new());
        let mut points = Vec::new();
        struct W<'a>(&'a std::cell::RefCell<Vec<u8>>);
        impl io::Write for W<'_> {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.borrow_mut().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let s =
            GzipIndex::build_streaming(blob, span, &mut |c| out.extend_from_slice(c), &mut W(&windows), &mut |p| {
                assert!(p.window().end <= windows.borrow().len() as u64, "{p:?} handed out before its window");
                points.push(p);
            })?;
        let mut file = s.head().to_vec();
        file.extend_from_slice(&windows.borrow());
        assert_eq!(s.windows_len(), windows.borrow().len() as u64);
        Ok((file, out, points, s))
    }

    /// The offsets of the points handed out, the last of each offset kept
    /// (as the index keeps them), in order.
    fn kept(points: &[Point]) -> Vec<u64> {
        let mut v: Vec<u64> = points.iter().map(|p| p.u_off()).collect();
        assert!(v.windows(2).all(|w| w[0] <= w[1]), "points out of order");
        v.dedup();
        v
    }

    #[test]
    fn streamed_and_in_memory_indexes_are_the_files_the_old_builder_wrote() {
        use sha2::{Digest as _, Sha256};
        let cases = golden_cases();
        assert_eq!(cases.len(), GOLDEN.len());
        for ((name, blob, span), (gname, want)) in cases.iter().zip(GOLDEN) {
            assert_eq!(name, gname);
            let (idx, data) = build(blob, *span).unwrap();
            assert_eq!(format!("{:x}", Sha256::digest(idx.to_bytes())), *want, "{name}: built in memory");
            let (file, out, points, s) = streamed(blob, *span).unwrap();
            assert_eq!(format!("{:x}", Sha256::digest(&file)), *want, "{name}: streamed");
            assert!(out == data, "{name}: the sink saw other bytes");
            assert_eq!(kept(&points), idx.checkpoint_offsets().collect::<Vec<_>>(), "{name}");
            assert_eq!(s.checkpoint_count(), idx.checkpoint_count(), "{name}");
            assert!(s.held_peak() <= WINDOW, "{name}: {} window bytes held", s.held_peak());
        }
    }

    #[test]
    fn reads_from_points_match_while_the_index_grows() {
        let mut data = text(2 << 20, 300);
        data.extend_from_slice(&random(500_000, 301));
        let mut blob = gz(&data[..1_500_000], 6);
        blob.extend_from_slice(&gz(&data[1_500_000..], 9));
        let (file, _, points, _) = streamed(&blob, 200_000).unwrap();
        let windows =
            &file[file.len() - points.iter().map(|p| p.window().end - p.window().start).sum::<u64>() as usize..];
        assert!(points.len() > 5);
        let mut r = Rng::new(302);
        for _ in 0..60 {
            let p = &points[r.below(points.len() as u64) as usize];
            // As far as the stream has come: past the point, not to the end.
            let limit = p.u_off() + r.below(data.len() as u64 - p.u_off() + 1);
            let off = p.u_off() + r.below(limit - p.u_off() + 1);
            let mut buf = vec![0u8; r.below(400_000) as usize];
            let w = &windows[p.window().start as usize..p.window().end as usize];
            let n = read_from_point(p, w, &blob[..], limit, off, &mut buf).unwrap();
            let hi = (off + buf.len() as u64).min(limit) as usize;
            assert_eq!(n, hi - off as usize, "{p:?} from {off} to {limit}");
            assert!(buf[..n] == data[off as usize..hi], "{p:?} from {off}");
        }
        // A read before the point is refused, not decoded wrong.
        let p = points.last().unwrap();
        let w = &windows[p.window().start as usize..p.window().end as usize];
        assert!(read_from_point(p, w, &blob[..], data.len() as u64, p.u_off() - 1, &mut [0; 4]).is_err());
        // A damaged window fails the read.
        if p.window().end > p.window().start {
            let mut bad = w.to_vec();
            bad[0] ^= 1;
            assert!(read_from_point(p, &bad, &blob[..], data.len() as u64, p.u_off(), &mut [0; 4]).is_err());
        }
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        MultiGzDecoder::new(gz).read_to_end(&mut out).unwrap();
        out
    }

    fn build(gz: &[u8], span: u64) -> Result<(GzipIndex, Vec<u8>), IndexError> {
        let mut out = Vec::new();
        let idx = GzipIndex::build(gz, span, &mut |c| out.extend_from_slice(c))?;
        Ok((idx, out))
    }

    /// One member with the given optional header fields.
    fn member(extra: Option<&[u8]>, name: Option<&[u8]>, comment: Option<&[u8]>, hcrc: bool, data: &[u8]) -> Vec<u8> {
        let flg = extra.map_or(0, |_| FEXTRA)
            | name.map_or(0, |_| FNAME)
            | comment.map_or(0, |_| FCOMMENT)
            | if hcrc { FHCRC } else { 0 };
        let mut h = vec![0x1f, 0x8b, 8, flg, 1, 2, 3, 4, 0, 3];
        if let Some(x) = extra {
            h.extend_from_slice(&(x.len() as u16).to_le_bytes());
            h.extend_from_slice(x);
        }
        for s in [name, comment].into_iter().flatten() {
            h.extend_from_slice(s);
            h.push(0);
        }
        if hcrc {
            let mut c = Crc::new();
            c.update(&h);
            h.extend_from_slice(&(c.sum() as u16).to_le_bytes());
        }
        let mut e = DeflateEncoder::new(h, Compression::new(6));
        e.write_all(data).unwrap();
        let mut v = e.finish().unwrap();
        let mut c = Crc::new();
        c.update(data);
        v.extend_from_slice(&c.sum().to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v
    }

    /// Reads that must match `data`: the start, the end, around every
    /// checkpoint and every given boundary, and random ranges.
    fn check_reads(idx: &GzipIndex, blob: &[u8], data: &[u8], boundaries: &[u64], seed: u64) {
        let len = data.len() as u64;
        let mut ranges: Vec<(u64, usize)> = vec![(0, 1), (0, 100_000), (len.saturating_sub(1), 10)];
        for c in &idx.checkpoints {
            ranges.push((c.u_off, 1));
            ranges.push((c.u_off.saturating_sub(1000), 2000));
            ranges.push((c.u_off.saturating_sub(1), 2));
        }
        for &b in boundaries {
            ranges.push((b.saturating_sub(300), 600));
            ranges.push((b, 70_000));
        }
        let mut r = Rng::new(seed);
        for _ in 0..40 {
            ranges.push((r.below(len + 1), r.below(300_000) as usize));
        }
        for (off, n) in ranges {
            let mut buf = vec![0xaa; n];
            let got = idx.read_at(blob, off, &mut buf).unwrap();
            let lo = off.min(len) as usize;
            let hi = (off + n as u64).min(len) as usize;
            assert_eq!(got, hi - lo, "read_at({off}, {n})");
            assert!(buf[..got] == data[lo..hi], "read_at({off}, {n}) returned other bytes");
        }
        assert_eq!(idx.read_at(blob, len, &mut [0; 10]).unwrap(), 0);
        assert_eq!(idx.read_at(blob, len + 5, &mut [0; 10]).unwrap(), 0);
        assert_eq!(idx.read_at(blob, 0, &mut []).unwrap(), 0);
    }

    /// Builds, checks the sink output, the sizes, the reads and the
    /// serialization round trip.
    fn check(blob: &[u8], data: &[u8], span: u64, boundaries: &[u64]) -> GzipIndex {
        let (idx, out) = build(blob, span).unwrap();
        assert!(out == data, "sink saw other bytes");
        assert_eq!(idx.uncompressed_size(), data.len() as u64);
        assert_eq!(idx.compressed_size(), blob.len() as u64);
        assert_eq!(idx.checkpoints[0].u_off, 0);
        assert!(idx.checkpoints.windows(2).all(|w| w[0].u_off < w[1].u_off && w[0].c_off <= w[1].c_off));
        check_reads(&idx, blob, data, boundaries, span);
        let bytes = idx.to_bytes();
        let back = GzipIndex::from_bytes(&bytes).unwrap();
        assert_eq!(back, idx);
        check_reads(&back, blob, data, &[], span ^ 1);
        idx
    }

    #[test]
    fn single_members_at_several_levels_and_spans() {
        let t = text(3 << 20, 1);
        let r = random(3 << 20, 2);
        let mut mixed = text(1 << 20, 3);
        mixed.extend_from_slice(&random(500_000, 4));
        mixed.extend_from_slice(&text(1 << 20, 5));
        mixed.extend_from_slice(&vec![0u8; 5 << 20]);
        mixed.extend_from_slice(&text(100_000, 6));
        // The last column is the fewest checkpoints expected: one is taken at
        // the first block boundary after every `span` bytes, and these blocks
        // hold ~100 KB of text, 32 KiB stored, up to 4 MB of zeros. zlib-rs,
        // like zlib-ng, writes a level 1 stream as one block (GNU gzip -1
        // does not), so there is nowhere to put a checkpoint.
        let cases: &[(&str, &[u8], u32, u64, usize)] = &[
            ("text level 1", &t, 1, 256 << 10, 1),
            ("text level 6", &t, 6, 256 << 10, 8),
            ("text level 9", &t, 9, 256 << 10, 8),
            ("text level 6 default span", &t, 6, DEFAULT_SPAN, 2),
            ("text level 6 span 1", &t[..300_000], 6, 1, 3),
            ("text stored", &t[..1 << 20], 0, 100_000, 9),
            ("random level 6", &r, 6, 256 << 10, 10),
            ("random level 1", &r, 1, DEFAULT_SPAN, 1),
            ("random stored", &r[..1 << 20], 0, 200_000, 5),
            ("mixed with zeros level 6", &mixed, 6, 512 << 10, 5),
            ("mixed with zeros level 9", &mixed, 9, DEFAULT_SPAN, 3),
            ("small", b"hello, world\n", 6, DEFAULT_SPAN, 1),
            ("empty", b"", 6, DEFAULT_SPAN, 1),
        ];
        for &(name, data, level, span, min_checkpoints) in cases {
            let blob = gz(data, level);
            let idx = check(&blob, data, span, &[]);
            assert!(idx.checkpoint_count() >= min_checkpoints, "{name}: only {} checkpoints", idx.checkpoint_count());
            eprintln!(
                "{name}: {} -> {} bytes, {} checkpoints, index {} bytes",
                data.len(),
                blob.len(),
                idx.checkpoint_count(),
                idx.to_bytes().len()
            );
        }
    }

    #[test]
    fn windows_reach_back_the_full_32k() {
        // A block boundary checkpoint must carry 32 KiB of history: text
        // repeated at a distance just under 32 KiB only decodes with all of it.
        let unit = text(32_000, 7);
        let mut data = Vec::new();
        for i in 0..100u8 {
            data.extend_from_slice(&unit);
            data.push(i);
        }
        let blob = gz(&data, 9);
        let idx = check(&blob, &data, 64 << 10, &[]);
        assert!(idx.checkpoints.iter().skip(1).all(|c| c.window.len as usize == WINDOW));
    }

    #[test]
    fn multi_member_streams() {
        let a = text(1_500_000, 10);
        let b = random(700_000, 11);
        let c = text(2_000_000, 12);
        let mut blob = gz(&a, 6);
        blob.extend_from_slice(&gz(b"", 6));
        blob.extend_from_slice(&gz(&b, 1));
        blob.extend_from_slice(&gz(&c, 9));
        blob.extend_from_slice(&gz(b"", 6));
        blob.extend_from_slice(&member(Some(b"AB\x02\x00hi"), Some(b"name"), Some(b"comment"), true, &a[..1000]));
        blob.extend_from_slice(&gz(b"", 6));
        let mut data = a.clone();
        data.extend_from_slice(&b);
        data.extend_from_slice(&c);
        data.extend_from_slice(&a[..1000]);
        assert_eq!(gunzip(&blob), data);
        let bounds = [a.len() as u64, (a.len() + b.len()) as u64, (a.len() + b.len() + c.len()) as u64];
        for span in [1u64 << 18, DEFAULT_SPAN, 1 << 40] {
            let idx = check(&blob, &data, span, &bounds);
            // A checkpoint at every non-empty member start, the last empty
            // member's included.
            for bnd in bounds {
                assert!(idx.checkpoints.iter().any(|c| c.u_off == bnd && c.window.len == 0));
            }
        }
        // Only member starts: reads cross member ends from far away.
        let idx = check(&blob, &data, 1 << 40, &bounds);
        assert_eq!(idx.checkpoint_count(), 5);
    }

    #[test]
    fn streams_from_gnu_gzip() {
        // Classic zlib cuts blocks differently from zlib-rs, and gzip stores
        // the file name (FNAME) when it compresses a file.
        let dir_dir = crate::testdir::TestDir::new("layerindex");
        let dir = dir_dir.to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let mut data = text(1_500_000, 110);
        data.extend_from_slice(&random(300_000, 111));
        data.extend_from_slice(&text(500_000, 112));
        let file = dir.join("layer.tar");
        std::fs::write(&file, &data).unwrap();
        for level in ["-1", "-6", "-9"] {
            let out = match std::process::Command::new("gzip").arg(level).arg("-c").arg(&file).output() {
                Ok(o) if o.status.success() => o.stdout,
                _ => {
                    eprintln!("no usable gzip command; skipped");
                    break;
                }
            };
            assert_eq!(out[3] & FNAME, FNAME);
            let mut two = out.clone();
            two.extend_from_slice(&out);
            let mut twice = data.clone();
            twice.extend_from_slice(&data);
            let idx = check(&two, &twice, 200_000, &[data.len() as u64]);
            assert!(idx.checkpoint_count() >= 10, "gzip {level}: {} checkpoints", idx.checkpoint_count());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn empty_members_only() {
        let mut blob = gz(b"", 6);
        blob.extend_from_slice(&gz(b"", 1));
        let idx = check(&blob, b"", DEFAULT_SPAN, &[]);
        assert_eq!(idx.uncompressed_size(), 0);
        assert_eq!(idx.checkpoint_count(), 1);
        assert_eq!(idx.read_at(&blob, 0, &mut [0; 4]).unwrap(), 0);
    }

    #[test]
    fn header_fields_are_skipped_and_checked() {
        let data = text(100_000, 20);
        for (extra, name, comment, hcrc) in [
            (None, None, None, false),
            (Some(&b""[..]), None, None, true),
            (Some(&[7u8; 70_000][..65_535]), Some(&b"f.tar"[..]), Some(&b"c"[..]), true),
            (None, Some(&b""[..]), Some(&b""[..]), false),
            (None, Some(&[b'x'; 300_000][..]), None, true),
        ] {
            let blob = member(extra, name, comment, hcrc, &data);
            // flate2 refuses header fields over 64 KiB; RFC 1952 sets no limit.
            if name.is_none_or(|n| n.len() < 65_536) {
                assert_eq!(gunzip(&blob), data);
            }
            check(&blob, &data, 30_000, &[]);
        }
        let mut blob = member(None, Some(b"name"), None, true, &data);
        blob[12] ^= 1; // a byte of the name, under the header CRC
        assert!(matches!(build(&blob, DEFAULT_SPAN), Err(IndexError::Corrupt { offset: 0, .. })));
    }

    #[test]
    fn trailing_zeros_are_accepted_and_garbage_refused() {
        let data = text(200_000, 30);
        let good = gz(&data, 6);
        let mut blob = good.clone();
        blob.extend_from_slice(&[0; 10_000]);
        let idx = check(&blob, &data, 50_000, &[]);
        assert_eq!(idx.compressed_size(), blob.len() as u64);

        for tail in [&b"x"[..], b"\x1f\x8c", b"\x1f\0", b"\0\0\0\x01", b"\n"] {
            let mut blob = good.clone();
            blob.extend_from_slice(tail);
            let at = good.len() as u64 + tail.iter().position(|&b| b != 0).unwrap() as u64;
            match build(&blob, DEFAULT_SPAN) {
                Err(IndexError::TrailingGarbage { offset }) => assert_eq!(offset, at),
                other => panic!("{tail:?}: {other:?}"),
            }
        }
        // The start of another member that is cut short is truncation.
        let mut blob = good.clone();
        blob.extend_from_slice(&good[..5]);
        assert!(matches!(build(&blob, DEFAULT_SPAN), Err(IndexError::Truncated { .. })));
    }

    #[test]
    fn not_gzip_and_unsupported_headers() {
        assert!(matches!(build(b"", 1), Err(IndexError::NotGzip { offset: 0 })));
        assert!(matches!(build(b"hello world", 1), Err(IndexError::NotGzip { offset: 0 })));
        assert!(matches!(build(b"\x1f", 1), Err(IndexError::Truncated { offset: 1 })));
        assert!(matches!(build(&[0; 100], 1), Err(IndexError::NotGzip { offset: 0 })));
        let good = gz(b"abc", 6);
        let mut bad = good.clone();
        bad[2] = 7;
        assert!(matches!(build(&bad, 1), Err(IndexError::Unsupported { .. })));
        let mut bad = good.clone();
        bad[3] = 0x20;
        assert!(matches!(build(&bad, 1), Err(IndexError::Unsupported { .. })));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let data = text(40_000, 40);
        let mut blob = gz(&data, 6);
        blob.extend_from_slice(&gz(&data[..5000], 9));
        let first = gz(&data, 6).len();
        for n in 0..blob.len() {
            match build(&blob[..n], 1000) {
                Err(IndexError::NotGzip { .. }) => assert_eq!(n, 0),
                Err(IndexError::Truncated { .. }) => assert!(n > 0 && n != first),
                // Cut between the two members: a complete stream.
                Ok((idx, out)) => {
                    assert_eq!(n, first);
                    assert_eq!(out, data);
                    assert_eq!(idx.uncompressed_size(), data.len() as u64);
                }
                Err(e) => panic!("cut at {n}: {e}"),
            }
        }
    }

    #[test]
    fn trailer_mismatches() {
        let data = text(10_000, 50);
        let good = gz(&data, 6);
        let n = good.len();
        let mut bad = good.clone();
        bad[n - 8] ^= 0x40;
        assert!(matches!(build(&bad, 1), Err(IndexError::CrcMismatch { offset: 0, .. })));
        let mut bad = good.clone();
        bad[n - 2] ^= 1;
        assert!(matches!(build(&bad, 1), Err(IndexError::SizeMismatch { offset: 0, .. })));
        // The second member is the bad one.
        let mut two = gz(b"first", 6);
        let at = two.len() as u64;
        two.extend_from_slice(&bad);
        match build(&two, 1) {
            Err(IndexError::SizeMismatch { offset, expected, actual }) => {
                assert_eq!(offset, at);
                assert_eq!(actual, 10_000);
                assert_eq!(expected, 10_000 ^ (1 << 16));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sequential_reader_matches_in_small_reads() {
        let mut data = text(700_000, 60);
        data.extend_from_slice(&random(300_000, 61));
        let mut blob = gz(&data[..400_000], 6);
        blob.extend_from_slice(&gz(&data[400_000..], 6));
        let (idx, _) = build(&blob, 100_000).unwrap();
        for start in [0u64, 1, 99_999, 123_456, 399_999, 400_000, 999_999, 1_000_000] {
            let mut r = idx.reader_at(&blob[..], start).unwrap();
            assert_eq!(r.position(), start);
            let mut got = Vec::new();
            let mut buf = [0u8; 4097];
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert!(got == data[start as usize..], "reader from {start}");
            assert_eq!(r.position(), data.len() as u64);
        }
    }

    #[test]
    fn reading_from_the_wrong_blob_fails_or_returns_garbage_without_panicking() {
        let data = text(500_000, 70);
        let blob = gz(&data, 6);
        let (idx, _) = build(&blob, 50_000).unwrap();
        let mut r = Rng::new(71);
        for i in 0..200 {
            let mut bad = blob.clone();
            match i % 3 {
                0 => bad.truncate(r.below(blob.len() as u64) as usize),
                1 => {
                    let at = r.below(blob.len() as u64) as usize;
                    bad[at] ^= 1 << r.below(8);
                }
                _ => bad = random(blob.len(), i),
            }
            let mut buf = vec![0; 200_000];
            if let Ok(n) = idx.read_at(&bad, r.below(data.len() as u64), &mut buf) {
                assert!(n <= buf.len());
            }
        }
    }

    #[test]
    fn index_bytes_are_checked() {
        let data = text(300_000, 80);
        let blob = gz(&data, 6);
        let (idx, _) = build(&blob, 50_000).unwrap();
        let good = idx.to_bytes();
        for n in 0..good.len() {
            assert!(GzipIndex::from_bytes(&good[..n]).is_err());
        }
        let mut v1 = good.clone();
        v1[8] = 1;
        assert!(matches!(GzipIndex::from_bytes(&v1), Err(IndexError::UnsupportedVersion(1))));
        let mut flipped = good.clone();
        flipped[INDEX_HEADER + 1] ^= 1;
        assert!(matches!(GzipIndex::from_bytes(&flipped), Err(IndexError::BadIndex("checksum mismatch"))));
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(GzipIndex::from_bytes(&longer), Err(IndexError::BadIndex("bytes after the last window"))));
    }

    #[test]
    fn a_damaged_window_fails_the_reads_that_need_it() {
        let data = random(300_000, 81);
        let blob = gz(&data, 6);
        let (idx, _) = build(&blob, 50_000).unwrap();
        let mut bytes = idx.to_bytes();
        // The last byte of the last window: the table's checksum still holds.
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        let idx = GzipIndex::from_bytes(&bytes).unwrap();
        let mut buf = vec![0; 1000];
        let err = idx.read_at(&blob, data.len() as u64 - 1000, &mut buf).unwrap_err();
        assert!(matches!(err, IndexError::BadIndex("window checksum mismatch")), "{err}");
        // Reads starting from other checkpoints are served.
        assert_eq!(idx.read_at(&blob, 10, &mut buf).unwrap(), 1000);
        assert_eq!(buf, data[10..1010]);
    }

    /// Recomputes the table checksum of a changed index, to reach the
    /// checks behind it.
    fn reseal(mut b: Vec<u8>) -> Vec<u8> {
        if b.len() >= INDEX_HEADER {
            let tl = u32::from_le_bytes(b[36..40].try_into().unwrap()) as usize;
            let end = INDEX_HEADER.saturating_add(tl).min(b.len());
            let c = crc32(&b[INDEX_HEADER..end]);
            b[40..44].copy_from_slice(&c.to_le_bytes());
        }
        b
    }

    struct Fixture {
        data: Vec<u8>,
        blob: Vec<u8>,
        idx: GzipIndex,
        bytes: Vec<u8>,
    }

    fn fixture() -> &'static Fixture {
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| {
            let mut data = text(1_000_000, 90);
            let mut blob = gz(&data, 6);
            let r = random(400_000, 91);
            blob.extend_from_slice(&gz(&r, 6));
            data.extend_from_slice(&r);
            let t = text(600_000, 92);
            blob.extend_from_slice(&gz(&t, 9));
            data.extend_from_slice(&t);
            let (idx, _) = build(&blob, 128 << 10).unwrap();
            let bytes = idx.to_bytes();
            Fixture { data, blob, idx, bytes }
        })
    }

    proptest! {
        #[test]
        fn read_at_matches_plain_bytes(off in 0u64..2_100_000, len in 0usize..400_000) {
            let f = fixture();
            let mut buf = vec![0; len];
            let n = f.idx.read_at(&f.blob, off, &mut buf).unwrap();
            let lo = (off as usize).min(f.data.len());
            let hi = (off as usize + len).min(f.data.len());
            prop_assert_eq!(n, hi - lo);
            prop_assert!(buf[..n] == f.data[lo..hi]);
        }

        #[test]
        fn streamed_index_equals_the_built_one(
            parts in proptest::collection::vec((0u8..3, 0usize..300_000), 1..6),
            level in 0u32..10,
            span in prop::sample::select(vec![1u64, 4096, 64 << 10, 256 << 10, DEFAULT_SPAN]),
            members in 1usize..4,
        ) {
            // Text, random bytes and zeros in runs of any size, in one
            // member or several.
            let mut data = Vec::new();
            for (i, (kind, n)) in parts.iter().enumerate() {
                match kind {
                    0 => data.extend_from_slice(&text(*n, i as u64)),
                    1 => data.extend_from_slice(&random(*n, i as u64)),
                    _ => data.resize(data.len() + n, 0),
                }
            }
            let mut blob = Vec::new();
            let step = data.len() / members + 1;
            for piece in data.chunks(step) {
                blob.extend_from_slice(&gz(piece, level));
            }
            if data.is_empty() {
                blob = gz(b"", level);
            }
            let (idx, _) = build(&blob, span).unwrap();
            let (file, out, points, s) = streamed(&blob, span).unwrap();
            prop_assert!(file == idx.to_bytes());
            prop_assert!(out == data);
            prop_assert_eq!(kept(&points), idx.checkpoint_offsets().collect::<Vec<_>>());
            prop_assert!(s.held_peak() <= WINDOW);
        }

        #[test]
        fn from_bytes_never_panics_on_random_bytes(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = GzipIndex::from_bytes(&b);
            let mut with_magic = INDEX_MAGIC.to_vec();
            with_magic.extend_from_slice(&INDEX_VERSION.to_le_bytes());
            with_magic.extend_from_slice(&b);
            let _ = GzipIndex::from_bytes(&reseal(with_magic));
        }

        #[test]
        fn changed_indexes_are_refused_or_read_without_panicking(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
            off in 0u64..2_100_000,
        ) {
            let f = fixture();
            let mut b = f.bytes.clone();
            for (at, v) in &edits {
                let i = at.index(b.len());
                b[i] = *v;
            }
            if edits.len() == 3 {
                b.truncate(cut.index(b.len()));
            }
            if let Ok(idx) = GzipIndex::from_bytes(&reseal(b)) {
                let mut buf = vec![0; 100_000];
                if let Ok(n) = idx.read_at(&f.blob, off, &mut buf) {
                    prop_assert!(n <= buf.len());
                }
            }
        }

        #[test]
        fn damaged_streams_are_refused_or_decode_right(
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
            level in 0u32..10,
        ) {
            let data = text(20_000, 100);
            let mut blob = gz(&data, level);
            let i = at.index(blob.len());
            blob[i] ^= 1 << bit;
            // Flips in MTIME, XFL and OS, and in some bits deflate does not
            // use (padding after the last block, code lengths of symbols that
            // never occur), are harmless; any other must be caught.
            if let Ok((idx, out)) = build(&blob, 4096) {
                prop_assert!(out == data, "flip at {} gave other data", i);
                prop_assert_eq!(idx.uncompressed_size(), data.len() as u64);
            }
        }
    }
}

/// Figures for the reports: `cargo test --release layerindex -- --ignored --nocapture`.
#[cfg(test)]
mod bench {
    use super::tests::{gz, random, text};
    use super::*;
    use flate2::read::MultiGzDecoder;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use sha2::{Digest as _, Sha256};
    use std::fs::File;
    use std::io::{BufReader, Write};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn mb_s(bytes: u64, d: Duration) -> f64 {
        bytes as f64 / d.as_secs_f64() / 1e6
    }

    #[test]
    #[ignore = "slow: index size on 50 MB"]
    fn index_size_on_50mb() {
        for (name, data) in [("text", text(50_000_000, 1)), ("random", random(50_000_000, 2))] {
            let blob = gz(&data, 6);
            let idx = GzipIndex::build(&blob[..], DEFAULT_SPAN, &mut |_| {}).unwrap();
            let size = idx.to_bytes().len();
            eprintln!(
                "{name}: 50 MB -> {} bytes gzip, {} checkpoints, index {} bytes ({:.3}% of uncompressed, {:.3}% of compressed)",
                blob.len(),
                idx.checkpoint_count(),
                size,
                100.0 * size as f64 / data.len() as f64,
                100.0 * size as f64 / blob.len() as f64,
            );
            let mut buf = vec![0; 1 << 20];
            for off in [0u64, 12_345_678, 49_000_000] {
                let n = idx.read_at(&blob, off, &mut buf).unwrap();
                assert!(buf[..n] == data[off as usize..off as usize + n]);
            }
        }
    }

    /// Drops the file from the page cache, so that the next read goes to
    /// the disk.
    fn drop_cache(path: &std::path::Path) {
        let st = Command::new("dd")
            .arg(format!("if={}", path.display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn resident(path: &std::path::Path) -> String {
        Command::new("fincore")
            .args(["--noheadings", "--output", "RES"])
            .arg(path)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|_| "?".into())
    }

    #[test]
    #[ignore = "benchmark on 200 MB"]
    fn benchmark_200mb() {
        let dir = std::env::var_os("IMG_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let path = dir.join(format!("img-layerindex-bench-{}.gz", std::process::id()));
        // 3 MiB of text then 1 MiB of random data, 50 times: 200 MiB.
        let mut data = Vec::with_capacity(200 << 20);
        for i in 0..50 {
            data.extend_from_slice(&text(3 << 20, i));
            data.extend_from_slice(&random(1 << 20, 1000 + i));
        }
        let u = data.len() as u64;
        {
            let mut e = GzEncoder::new(std::io::BufWriter::new(File::create(&path).unwrap()), Compression::new(6));
            e.write_all(&data).unwrap();
            e.finish().unwrap().into_inner().unwrap().sync_all().unwrap();
        }
        let c = std::fs::metadata(&path).unwrap().len();
        eprintln!("data: {u} bytes, gzip -6 (flate2): {c} bytes, {:.1}%", 100.0 * c as f64 / u as f64);
        // Warm the page cache.
        std::io::copy(&mut File::open(&path).unwrap(), &mut std::io::sink()).unwrap();

        let best = |f: &mut dyn FnMut()| {
            (0..3)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed()
                })
                .min()
                .unwrap()
        };
        let t_gzip = best(&mut || {
            let st = Command::new("gzip").arg("-dc").arg(&path).stdout(Stdio::null()).status().unwrap();
            assert!(st.success());
        });
        let t_flate2 = best(&mut || {
            let mut d = MultiGzDecoder::new(BufReader::with_capacity(128 << 10, File::open(&path).unwrap()));
            assert_eq!(std::io::copy(&mut d, &mut std::io::sink()).unwrap(), u);
        });
        let t_build = best(&mut || {
            let idx = GzipIndex::build(File::open(&path).unwrap(), DEFAULT_SPAN, &mut |_| {}).unwrap();
            assert_eq!(idx.uncompressed_size(), u);
        });
        let t_build_sha = best(&mut || {
            let mut h = Sha256::new();
            GzipIndex::build(File::open(&path).unwrap(), DEFAULT_SPAN, &mut |c| h.update(c)).unwrap();
            assert_eq!(h.finalize()[..], Sha256::digest(&data)[..]);
        });
        let t_sha = best(&mut || {
            let mut h = Sha256::new();
            h.update(&data);
            h.finalize();
        });
        eprintln!("full decode of {u} bytes, best of 3:");
        for (what, t) in [
            ("gzip -dc FILE > /dev/null", t_gzip),
            ("flate2 MultiGzDecoder", t_flate2),
            ("GzipIndex::build", t_build),
            ("build + sha256 in the sink", t_build_sha),
            ("(sha256 alone)", t_sha),
        ] {
            eprintln!("  {what:<28} {:>7.0} ms {:>6.0} MB/s", ms(t), mb_s(u, t));
        }

        let file = File::open(&path).unwrap();
        let reads = 100;
        let mut buf = vec![0u8; 1 << 20];
        eprintln!("1 MiB read_at at {reads} random offsets, per span:");
        for span in [256u64 << 10, 512 << 10, 1 << 20, 2 << 20, 4 << 20] {
            let t = Instant::now();
            let idx = GzipIndex::build(File::open(&path).unwrap(), span, &mut |_| {}).unwrap();
            let t_idx = t.elapsed();
            let bytes = idx.to_bytes();
            let idx = GzipIndex::from_bytes(&bytes).unwrap();
            let mut offsets = Vec::new();
            let mut x = span;
            for _ in 0..reads {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                offsets.push(x % (u - (1 << 20)));
            }
            let mut warm = Vec::new();
            let mut cold = Vec::new();
            let mut res = String::new();
            for (i, &off) in offsets.iter().enumerate() {
                let t = Instant::now();
                let n = idx.read_at(&file, off, &mut buf).unwrap();
                warm.push(t.elapsed());
                assert!(n == buf.len() && buf[..] == data[off as usize..off as usize + n]);
                drop_cache(&path);
                if i == 0 {
                    res = resident(&path);
                }
                let t = Instant::now();
                let n = idx.read_at(&file, off, &mut buf).unwrap();
                cold.push(t.elapsed());
                assert_eq!(n, buf.len());
            }
            let stats = |v: &mut Vec<Duration>| {
                v.sort();
                let mean = v.iter().sum::<Duration>() / v.len() as u32;
                format!(
                    "mean {:>5.1} ms, median {:>5.1} ms, max {:>5.1} ms",
                    ms(mean),
                    ms(v[v.len() / 2]),
                    ms(v[v.len() - 1])
                )
            };
            eprintln!(
                "  span {:>4} KiB: {:>4} checkpoints, index {:>8} bytes = {:.3}% of uncompressed, build {:.2?}",
                span >> 10,
                idx.checkpoint_count(),
                bytes.len(),
                100.0 * bytes.len() as f64 / u as f64,
                t_idx
            );
            eprintln!("      warm: {}", stats(&mut warm));
            eprintln!("      cold: {}   (resident after dropping: {res})", stats(&mut cold));
        }
        // A file of the layer read front to back in 128 KiB requests, as
        // FUSE sends them: one reader, or a read_at per request.
        let idx = GzipIndex::build(File::open(&path).unwrap(), DEFAULT_SPAN, &mut |_| {}).unwrap();
        let (start, len) = (50_000_000u64, 32usize << 20);
        let mut chunk = vec![0u8; 128 << 10];
        let t = Instant::now();
        let mut r = idx.reader_at(&file, start).unwrap();
        let mut got = 0;
        while got < len {
            r.read_exact(&mut chunk).unwrap();
            got += chunk.len();
        }
        let t_reader = t.elapsed();
        let t = Instant::now();
        let mut off = start;
        while off < start + len as u64 {
            off += idx.read_at(&file, off, &mut chunk).unwrap() as u64;
        }
        let t_read_at = t.elapsed();
        eprintln!("32 MiB read in 128 KiB requests (default span):");
        eprintln!("  one GzipReader            {:>7.0} ms {:>6.0} MB/s", ms(t_reader), mb_s(len as u64, t_reader));
        eprintln!("  read_at per request       {:>7.0} ms {:>6.0} MB/s", ms(t_read_at), mb_s(len as u64, t_read_at));
        std::fs::remove_file(&path).unwrap();
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1e3
    }
}
