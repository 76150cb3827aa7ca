//! zstd:chunked (containers/storage's format): a zstd layer that any tool
//! reads as one tar.zst, in which each regular file's data (and each chunk
//! of a large file) is a zstd frame of its own, followed by three zstd
//! skippable frames that decoders pass over: the table of contents (TOC,
//! zstd-compressed JSON), the tar-split (zstd-compressed JSON lines that
//! rebuild the exact tar from the files' contents) and a 64-byte footer.
//!
//! The layer's descriptor carries where the TOC lies and the sha256 of its
//! compressed bytes (`io.github.containers.zstd-chunked.manifest-position`
//! and `…manifest-checksum`), so a reader fetches it with one Range request
//! and checks it before trusting it; the TOC gives each file's sha256 and
//! each chunk's. The older annotation names (`io.containers.zstd-chunked.*`,
//! read by containers/storage before 1.45) are written too.
//!
//! Footer (little-endian u64s): TOC offset, compressed and uncompressed
//! length, TOC type (1), tar-split offset, compressed and uncompressed
//! length, then the magic `GNUlInUx`. Offsets point past the 8-byte
//! header of the skippable frame holding each part.
//!
//! [`convert`] writes a layer from any uncompressed tar stream (read twice:
//! once for the entries, once for the bytes, so header bytes are copied as
//! they are); [`parse_position`], [`read_toc`] and [`parse_footer`] read
//! one back, as untrusted bytes.

use crate::digest::{Digest, Hasher};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};

pub const MANIFEST_CHECKSUM_ANNOTATION: &str = "io.github.containers.zstd-chunked.manifest-checksum";
pub const MANIFEST_POSITION_ANNOTATION: &str = "io.github.containers.zstd-chunked.manifest-position";
pub const TARSPLIT_POSITION_ANNOTATION: &str = "io.github.containers.zstd-chunked.tarsplit-position";
pub const TARSPLIT_CHECKSUM_ANNOTATION: &str = "io.github.containers.zstd-chunked.tarsplit-checksum";
/// The names containers/storage used before 1.45 (podman 4.3 reads these).
pub const OLD_MANIFEST_CHECKSUM_ANNOTATION: &str = "io.containers.zstd-chunked.manifest-checksum";
pub const OLD_MANIFEST_POSITION_ANNOTATION: &str = "io.containers.zstd-chunked.manifest-position";
pub const FOOTER_SIZE: usize = 64;
const FOOTER_MAGIC: &[u8; 8] = b"GNUlInUx";
const SKIPPABLE_MAGIC: [u8; 4] = [0x50, 0x2a, 0x4d, 0x18];
/// The most a TOC may take, compressed or not (containers/storage refuses
/// more than 50 MiB).
pub const MAX_TOC_SIZE: u64 = 50 << 20;
const LEVEL: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ZstdChunkedError {
    #[error("reading the layer: {0}")]
    Io(#[from] io::Error),
    #[error("the zstd:chunked table of contents is damaged: {0}")]
    BadToc(String),
    #[error("the zstd:chunked table of contents has digest {actual}, the manifest says {expected}")]
    TocDigest { expected: String, actual: String },
    #[error("the layer's {entries} entries need a table of contents of {size} bytes, over the {MAX_TOC_SIZE} bytes readers accept; a layer this large cannot be zstd:chunked (keep it zstd)")]
    TocTooLarge { size: u64, entries: usize },
    #[error("{path}: {what} cannot be written as zstd:chunked")]
    Unsupported { path: String, what: &'static str },
    #[error("the layer's annotation {key}={value:?} is not {want}")]
    BadAnnotation { key: &'static str, value: String, want: &'static str },
}

/// Where a skippable part lies in the blob: offset (past its 8-byte frame
/// header), compressed and uncompressed length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub offset: u64,
    pub len: u64,
    pub ulen: u64,
}

/// One TOC entry as containers/storage writes it (Go field order).
#[derive(Debug, Clone, Default, Serialize)]
struct Entry {
    #[serde(rename = "type")]
    kind: &'static str,
    name: String,
    #[serde(rename = "linkName", skip_serializing_if = "String::is_empty")]
    link_name: String,
    #[serde(skip_serializing_if = "is_zero")]
    mode: u64,
    #[serde(skip_serializing_if = "is_zero")]
    size: u64,
    #[serde(skip_serializing_if = "is_zero")]
    uid: u64,
    #[serde(skip_serializing_if = "is_zero")]
    gid: u64,
    #[serde(rename = "modtime", skip_serializing_if = "Option::is_none")]
    mod_time: Option<String>,
    #[serde(rename = "accesstime", skip_serializing_if = "Option::is_none")]
    access_time: Option<String>,
    #[serde(rename = "changetime", skip_serializing_if = "Option::is_none")]
    change_time: Option<String>,
    #[serde(rename = "devMajor", skip_serializing_if = "is_zero")]
    dev_major: u64,
    #[serde(rename = "devMinor", skip_serializing_if = "is_zero")]
    dev_minor: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    xattrs: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    digest: String,
    #[serde(skip_serializing_if = "is_zero")]
    offset: u64,
    #[serde(rename = "endOffset", skip_serializing_if = "is_zero")]
    end_offset: u64,
    #[serde(rename = "chunkSize", skip_serializing_if = "is_zero")]
    chunk_size: u64,
    #[serde(rename = "chunkOffset", skip_serializing_if = "is_zero")]
    chunk_offset: u64,
    #[serde(rename = "chunkDigest", skip_serializing_if = "String::is_empty")]
    chunk_digest: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Serialize)]
struct Toc<'a> {
    version: u32,
    entries: &'a [Entry],
    #[serde(rename = "tarSplitDigest")]
    tar_split_digest: String,
}

/// One line of the tar-split: a segment of raw tar bytes (type 2) or a
/// file whose contents go there (type 1, with its CRC-64/ISO).
#[derive(Serialize)]
struct SplitLine<'a> {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    size: u64,
    #[serde(serialize_with = "base64_or_null")]
    payload: &'a [u8],
    position: u64,
}

fn base64_bytes<S: serde::Serializer>(b: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine as _;
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
}

fn base64_or_null<S: serde::Serializer>(b: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    if b.is_empty() {
        s.serialize_none()
    } else {
        base64_bytes(b, s)
    }
}

/// What [`convert`] wrote.
#[derive(Debug, Clone)]
pub struct Converted {
    /// sha256 of the compressed TOC (the manifest checksum annotation).
    pub toc_digest: Digest,
    pub toc: Position,
    pub tar_split: Position,
    pub tar_split_digest: Digest,
    /// sha256 and size of the uncompressed tar (the new DiffID).
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    pub entries: usize,
}

impl Converted {
    /// The annotations of the layer's descriptor.
    pub fn annotations(&self) -> Vec<(String, String)> {
        let t = self.toc;
        let manifest_position = format!("{}:{}:{}:1", t.offset, t.len, t.ulen);
        let s = self.tar_split;
        vec![
            (MANIFEST_CHECKSUM_ANNOTATION.into(), self.toc_digest.to_string()),
            (MANIFEST_POSITION_ANNOTATION.into(), manifest_position.clone()),
            (TARSPLIT_POSITION_ANNOTATION.into(), format!("{}:{}:{}", s.offset, s.len, s.ulen)),
            (TARSPLIT_CHECKSUM_ANNOTATION.into(), self.tar_split_digest.to_string()),
            (OLD_MANIFEST_CHECKSUM_ANNOTATION.into(), self.toc_digest.to_string()),
            (OLD_MANIFEST_POSITION_ANNOTATION.into(), manifest_position),
        ]
    }
}

/// CRC-64 with the ISO polynomial, as Go's `hash/crc64` computes it (the
/// tar-split's file checksums).
pub struct Crc64 {
    table: [u64; 256],
    crc: u64,
}

impl Crc64 {
    pub fn new() -> Crc64 {
        let mut table = [0u64; 256];
        for (i, t) in table.iter_mut().enumerate() {
            let mut c = i as u64;
            for _ in 0..8 {
                c = if c & 1 == 1 { (c >> 1) ^ 0xD800_0000_0000_0000 } else { c >> 1 };
            }
            *t = c;
        }
        Crc64 { table, crc: 0 }
    }

    pub fn update(&mut self, b: &[u8]) {
        let mut c = !self.crc;
        for &x in b {
            c = self.table[((c as u8) ^ x) as usize] ^ (c >> 8);
        }
        self.crc = !c;
    }

    pub fn sum(&self) -> [u8; 8] {
        self.crc.to_be_bytes()
    }
}

impl Default for Crc64 {
    fn default() -> Crc64 {
        Crc64::new()
    }
}

/// A time as Go's `time.Time` marshals it (RFC 3339 with nanoseconds,
/// trailing zeros dropped), in UTC.
fn go_time(secs: i64, nanos: u32) -> String {
    let base = crate::timefmt::format_rfc3339(secs);
    if nanos == 0 {
        return base;
    }
    let frac = format!("{nanos:09}");
    format!("{}.{}Z", &base[..base.len() - 1], frac.trim_end_matches('0'))
}

/// A PAX time ("1700000000.123456789") as seconds and nanoseconds.
fn pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = whole.parse().ok()?;
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nanos: u32 = digits.parse().ok()?;
    // Go reads "-1.5" as 1.5 s before the epoch.
    Some(if secs < 0 && nanos > 0 { (secs - 1, 1_000_000_000 - nanos) } else { (secs, nanos) })
}

/// A GNU header's access or change time (12 bytes of octal at `at`), when
/// set (Go takes the field only when its first byte is not NUL).
fn gnu_time(h: &tar::Header, at: usize) -> Option<(i64, u32)> {
    let b = &h.as_bytes()[at..at + 12];
    if b[0] == 0 || &h.as_bytes()[257..265] != b"ustar  \0" {
        return None;
    }
    let s = std::str::from_utf8(b).ok()?.trim_matches(|c: char| c == '\0' || c == ' ');
    i64::from_str_radix(s, 8).ok().map(|t| (t, 0))
}

/// Where one entry's data lies in the source tar: `size` bytes at `data`
/// (its headers, and the padding of the file before, come before).
#[derive(Clone, Copy, Default)]
struct Span {
    data: u64,
    size: u64,
}

/// The output: zstd frames one after another, the uncompressed bytes
/// hashed for the DiffID.
struct Frames<W> {
    out: W,
    at: u64,
    zstd: zstd::bulk::Compressor<'static>,
    diff: Hasher,
    /// Bytes of the frame being gathered.
    pending: Vec<u8>,
}

impl<W: Write> Frames<W> {
    /// Ends the frame being gathered (if any) and returns where the next
    /// starts.
    fn cut(&mut self) -> io::Result<u64> {
        if !self.pending.is_empty() {
            let frame = self.zstd.compress(&self.pending)?;
            self.out.write_all(&frame)?;
            self.at += frame.len() as u64;
            self.pending.clear();
        }
        Ok(self.at)
    }

    fn push(&mut self, b: &[u8]) {
        self.diff.update(b);
        self.pending.extend_from_slice(b);
    }

    /// Writes a skippable frame holding `data`; returns where `data` starts.
    fn skippable(&mut self, data: &[u8]) -> io::Result<u64> {
        self.cut()?;
        self.out.write_all(&SKIPPABLE_MAGIC)?;
        self.out.write_all(&(data.len() as u32).to_le_bytes())?;
        self.out.write_all(data)?;
        let at = self.at + 8;
        self.at += 8 + data.len() as u64;
        Ok(at)
    }
}

/// Reads `open_tar()` (called twice, each time a reader of the same
/// uncompressed tar stream) and writes the zstd:chunked layer to `out`,
/// files of more than `chunk_size` bytes cut into chunks of that size.
pub fn convert<R: Read, W: Write>(
    mut open_tar: impl FnMut() -> io::Result<R>,
    out: W,
    chunk_size: u64,
) -> Result<(Converted, W), ZstdChunkedError> {
    let chunk_size = chunk_size.max(1);
    // Pass 1: the entries and where each lies.
    let mut entries: Vec<Entry> = Vec::new();
    let mut spans: Vec<Span> = Vec::new();
    {
        let mut ar = tar::Archive::new(open_tar()?);
        for e in ar.entries()? {
            let mut e = e?;
            let name_bytes = e.path_bytes().into_owned();
            let name = String::from_utf8_lossy(&name_bytes).into_owned();
            let unsupported = |what| ZstdChunkedError::Unsupported { path: name.clone(), what };
            if std::str::from_utf8(&name_bytes).is_err() {
                return Err(unsupported("a name that is not UTF-8"));
            }
            let h = e.header().clone();
            let kind = match h.entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => "reg",
                tar::EntryType::Directory => "dir",
                tar::EntryType::Symlink => "symlink",
                tar::EntryType::Link => "hardlink",
                tar::EntryType::Char => "char",
                tar::EntryType::Block => "block",
                tar::EntryType::Fifo => "fifo",
                tar::EntryType::GNUSparse => return Err(unsupported("a sparse file")),
                _ => return Err(unsupported("an entry of this type")),
            };
            if kind != "reg" && e.size() > 0 {
                return Err(unsupported("a header-only entry with data after it"));
            }
            let mut ent = Entry {
                kind,
                name,
                mode: u64::from(h.mode().unwrap_or(0)),
                size: h.size().unwrap_or(0),
                uid: h.uid().unwrap_or(0),
                gid: h.gid().unwrap_or(0),
                mod_time: Some(go_time(h.mtime().unwrap_or(0) as i64, 0)),
                access_time: gnu_time(&h, 345).map(|(s, n)| go_time(s, n)),
                change_time: gnu_time(&h, 357).map(|(s, n)| go_time(s, n)),
                ..Entry::default()
            };
            if let Some(l) = e.link_name_bytes() {
                ent.link_name = String::from_utf8(l.into_owned()).map_err(|_| ZstdChunkedError::Unsupported {
                    path: ent.name.clone(),
                    what: "a link target that is not UTF-8",
                })?;
            }
            if matches!(kind, "char" | "block") {
                ent.dev_major = u64::from(h.device_major().ok().flatten().unwrap_or(0));
                ent.dev_minor = u64::from(h.device_minor().ok().flatten().unwrap_or(0));
            }
            if let Some(pax) = e.pax_extensions()? {
                for x in pax {
                    let x = x?;
                    let (k, v) = (x.key_bytes(), x.value_bytes());
                    let num = || std::str::from_utf8(v).ok().and_then(|s| s.parse::<u64>().ok());
                    let time = || pax_time(v).map(|(s, n)| go_time(s, n));
                    match k {
                        b"uid" => ent.uid = num().unwrap_or(ent.uid),
                        b"gid" => ent.gid = num().unwrap_or(ent.gid),
                        b"size" => ent.size = num().unwrap_or(ent.size),
                        b"mtime" => ent.mod_time = time().or(ent.mod_time.take()),
                        b"atime" => ent.access_time = time().or(ent.access_time.take()),
                        b"ctime" => ent.change_time = time().or(ent.change_time.take()),
                        _ => {
                            if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                                use base64::Engine as _;
                                let v = base64::engine::general_purpose::STANDARD.encode(v);
                                ent.xattrs.insert(String::from_utf8_lossy(name).into_owned(), v);
                            }
                        }
                    }
                }
            }
            let size = if kind == "reg" { e.size() } else { 0 };
            let span = Span { data: e.raw_file_position(), size };
            if size > 0 {
                // The whole file's digest, read here; the chunks' in pass 2.
                ent.digest = crate::digest::hash_reader(&mut e)?.finish().to_string();
            }
            entries.push(ent);
            spans.push(span);
        }
    }
    // A TOC too large for readers is known before the data is written.
    let estimate = super::json_len(&Toc { version: 1, entries: &entries, tar_split_digest: String::new() });
    if estimate > MAX_TOC_SIZE {
        return Err(ZstdChunkedError::TocTooLarge { size: estimate, entries: entries.len() });
    }

    // Pass 2: the bytes, cut into frames, and the tar-split beside them.
    let mut f =
        Frames { out, at: 0, zstd: zstd::bulk::Compressor::new(LEVEL)?, diff: Hasher::new(), pending: Vec::new() };
    let mut split = zstd::stream::write::Encoder::new(Vec::new(), LEVEL)?;
    let mut split_len = 0u64;
    let mut line_no = 0u64;
    let mut line = |split: &mut zstd::stream::write::Encoder<Vec<u8>>, l: SplitLine| -> io::Result<()> {
        let mut bytes = serde_json::to_vec(&SplitLine { position: line_no, ..l }).map_err(io::Error::other)?;
        bytes.push(b'\n');
        split.write_all(&bytes)?;
        split_len += bytes.len() as u64;
        line_no += 1;
        Ok(())
    };
    let mut src = open_tar()?;
    let mut pos = 0u64;
    let mut buf = vec![0u8; 256 << 10];
    let read_exact = |src: &mut R, n: usize, buf: &mut Vec<u8>| -> io::Result<()> {
        if buf.len() < n {
            buf.resize(n, 0);
        }
        src.read_exact(&mut buf[..n]).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(io::ErrorKind::UnexpectedEof, "the layer is shorter on its second reading")
            } else {
                e
            }
        })
    };
    let mut toc: Vec<Entry> = Vec::with_capacity(entries.len());
    for (mut ent, sp) in entries.into_iter().zip(spans) {
        // The header bytes (and the padding of the file before) go into
        // the frame being gathered, and into the tar-split as a segment.
        let head = (sp.data - pos) as usize;
        read_exact(&mut src, head, &mut buf)?;
        f.push(&buf[..head]);
        line(&mut split, SplitLine { kind: 2, name: "", size: 0, payload: &buf[..head], position: 0 })?;
        pos = sp.data;
        let mut crc = Crc64::new();
        let mut chunks: Vec<Entry> = Vec::new();
        let mut done = 0u64;
        while done < sp.size {
            let len = (sp.size - done).min(chunk_size);
            let offset = f.cut()?;
            let mut h = Hasher::new();
            let mut left = len;
            while left > 0 {
                let n = left.min(256 << 10) as usize;
                read_exact(&mut src, n, &mut buf)?;
                h.update(&buf[..n]);
                crc.update(&buf[..n]);
                f.push(&buf[..n]);
                left -= n as u64;
            }
            let end = f.cut()?;
            chunks.push(Entry {
                kind: "chunk",
                name: ent.name.clone(),
                offset,
                end_offset: end,
                chunk_offset: done,
                chunk_size: len,
                chunk_digest: h.finish().to_string(),
                ..Entry::default()
            });
            done += len;
        }
        pos += sp.size;
        let sum = crc.sum();
        let payload: &[u8] = if sp.size > 0 { &sum } else { &[] };
        line(&mut split, SplitLine { kind: 1, name: &ent.name, size: ent.size, payload, position: 0 })?;
        if let (Some(first), Some(last)) = (chunks.first(), chunks.last()) {
            ent.offset = first.offset;
            ent.end_offset = last.end_offset;
        }
        if chunks.len() > 1 {
            let mut chunks = chunks.into_iter();
            let first = chunks.next().expect("more than one");
            ent.chunk_size = first.chunk_size;
            ent.chunk_digest = first.chunk_digest;
            toc.push(ent);
            // Chunk entries carry no end offset: each ends where the next
            // starts, the last where the file ends.
            toc.extend(chunks.map(|c| Entry { end_offset: 0, ..c }));
        } else {
            toc.push(ent);
        }
    }
    // The padding of the last file, the end of the archive and whatever
    // follows, in the last frame and the tar-split.
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        f.push(&buf[..n]);
        line(&mut split, SplitLine { kind: 2, name: "", size: 0, payload: &buf[..n], position: 0 })?;
    }
    f.cut()?;
    let split_bytes = split.finish()?;
    let tar_split_digest = Digest::of_bytes(&split_bytes);

    let count = toc.len();
    let json = serde_json::to_vec(&Toc { version: 1, entries: &toc, tar_split_digest: tar_split_digest.to_string() })
        .map_err(|e| ZstdChunkedError::BadToc(e.to_string()))?;
    if json.len() as u64 > MAX_TOC_SIZE {
        return Err(ZstdChunkedError::TocTooLarge { size: json.len() as u64, entries: count });
    }
    let toc_comp = zstd::bulk::compress(&json, LEVEL)?;
    let toc_at = f.skippable(&toc_comp)?;
    let split_at = f.skippable(&split_bytes)?;
    let toc_pos = Position { offset: toc_at, len: toc_comp.len() as u64, ulen: json.len() as u64 };
    let split_pos = Position { offset: split_at, len: split_bytes.len() as u64, ulen: split_len };
    f.skippable(&footer(toc_pos, split_pos))?;
    let uncompressed_size = f.diff.len();
    let converted = Converted {
        toc_digest: Digest::of_bytes(&toc_comp),
        toc: toc_pos,
        tar_split: split_pos,
        tar_split_digest,
        diff_id: f.diff.finish(),
        uncompressed_size,
        entries: count,
    };
    Ok((converted, f.out))
}

/// The 64 bytes of the footer (the payload of the last skippable frame).
pub fn footer(toc: Position, split: Position) -> [u8; FOOTER_SIZE] {
    let mut f = [0u8; FOOTER_SIZE];
    for (i, v) in [toc.offset, toc.len, toc.ulen, 1, split.offset, split.len, split.ulen].iter().enumerate() {
        f[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    f[56..].copy_from_slice(FOOTER_MAGIC);
    f
}

/// Where the TOC lies, from the last 64 bytes of a layer.
pub fn parse_footer(f: &[u8]) -> Result<Position, ZstdChunkedError> {
    let bad = |m: &str| ZstdChunkedError::BadToc(m.to_string());
    if f.len() != FOOTER_SIZE || &f[56..] != FOOTER_MAGIC {
        return Err(bad("no zstd:chunked footer at the end of the layer"));
    }
    let u = |i: usize| u64::from_le_bytes(f[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    if u(3) != 1 {
        return Err(bad(&format!("the footer gives TOC type {}, not 1", u(3))));
    }
    Ok(Position { offset: u(0), len: u(1), ulen: u(2) })
}

/// The TOC position annotation "offset:length:uncompressed length:1".
pub fn parse_position(value: &str) -> Result<Position, ZstdChunkedError> {
    let bad = || ZstdChunkedError::BadAnnotation {
        key: MANIFEST_POSITION_ANNOTATION,
        value: value.to_string(),
        want: "offset:length:uncompressed-length:1",
    };
    let parts: Vec<u64> = value.split(':').map(|p| p.parse::<u64>()).collect::<Result<_, _>>().map_err(|_| bad())?;
    match parts[..] {
        [offset, len, ulen, 1] => Ok(Position { offset, len, ulen }),
        _ => Err(bad()),
    }
}

/// The TOC's JSON from its compressed bytes (`pos.len` of them, from
/// `pos.offset`), checked against `expected` (the manifest checksum
/// annotation) before it is decompressed; at most `pos.ulen` bytes, which
/// must be under the limit.
pub fn read_toc(compressed: &[u8], pos: Position, expected: &Digest) -> Result<Vec<u8>, ZstdChunkedError> {
    let bad = |m: String| ZstdChunkedError::BadToc(m);
    if pos.len > MAX_TOC_SIZE || pos.ulen > MAX_TOC_SIZE {
        return Err(bad(format!(
            "it is {} bytes ({} compressed), over the {MAX_TOC_SIZE}-byte limit",
            pos.ulen, pos.len
        )));
    }
    let actual = Digest::of_bytes(compressed);
    if actual != *expected {
        return Err(ZstdChunkedError::TocDigest { expected: expected.to_string(), actual: actual.to_string() });
    }
    let mut dec = zstd::stream::read::Decoder::new(compressed).map_err(|e| bad(e.to_string()))?;
    dec.window_log_max(27).map_err(|e| bad(e.to_string()))?;
    let mut json = Vec::with_capacity(pos.ulen as usize);
    (&mut dec).take(pos.ulen + 1).read_to_end(&mut json).map_err(|e| bad(format!("it does not decompress ({e})")))?;
    if json.len() as u64 != pos.ulen {
        return Err(bad(format!("it is {} bytes, the annotation says {}", json.len(), pos.ulen)));
    }
    Ok(json)
}

/// The annotations of a zstd:chunked layer: the compressed TOC's digest
/// and where it lies (the new names, or the old ones); `None` when the
/// descriptor has neither.
pub fn toc_of(annotations: &[(String, String)]) -> Option<Result<(Digest, Position), ZstdChunkedError>> {
    let get = |k: &str| annotations.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (sum, pos, key) = match (get(MANIFEST_CHECKSUM_ANNOTATION), get(MANIFEST_POSITION_ANNOTATION)) {
        (Some(s), Some(p)) => (s, p, MANIFEST_CHECKSUM_ANNOTATION),
        _ => (
            get(OLD_MANIFEST_CHECKSUM_ANNOTATION)?,
            get(OLD_MANIFEST_POSITION_ANNOTATION)?,
            OLD_MANIFEST_CHECKSUM_ANNOTATION,
        ),
    };
    let digest = match Digest::parse(sum) {
        Ok(d) => d,
        Err(_) => {
            return Some(Err(ZstdChunkedError::BadAnnotation { key, value: sum.to_string(), want: "a sha256 digest" }))
        }
    };
    Some(parse_position(pos).map(|p| (digest, p)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layerindex::estargz::tests::random;

    #[test]
    fn crc64_iso_matches_the_check_value() {
        let mut c = Crc64::new();
        c.update(b"123456789");
        assert_eq!(c.sum(), 0xB909_56C7_75A4_1001u64.to_be_bytes());
    }

    #[test]
    fn go_time_drops_trailing_zeros() {
        assert_eq!(go_time(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(go_time(1_700_000_000, 500_000_000), "2023-11-14T22:13:20.5Z");
        assert_eq!(pax_time(b"1700000000.123"), Some((1_700_000_000, 123_000_000)));
        assert_eq!(pax_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(pax_time(b"x"), None);
    }

    fn sample() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let add = |b: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(1_700_000_000);
            b.append_data(&mut h, name, data).unwrap();
        };
        add(&mut b, "etc/", tar::EntryType::Directory, b"");
        add(&mut b, "etc/os-release", tar::EntryType::Regular, b"ID=test\n");
        add(&mut b, "empty", tar::EntryType::Regular, b"");
        add(&mut b, "big", tar::EntryType::Regular, &random(300_000, 3));
        b.append_pax_extensions([("SCHILY.xattr.user.k", b"v".as_slice()), ("mtime", b"1700000000.25".as_slice())])
            .unwrap();
        add(&mut b, "x", tar::EntryType::Regular, b"xattr");
        b.into_inner().unwrap()
    }

    #[test]
    fn a_converted_layer_decompresses_to_the_same_tar_and_its_toc_reads_back() {
        let tar = sample();
        let (c, blob) = convert(|| Ok(io::Cursor::new(tar.clone())), Vec::new(), 100_000).unwrap();
        // Any zstd reader sees the tar, skippable frames passed over.
        assert_eq!(zstd::decode_all(blob.as_slice()).unwrap(), tar);
        assert_eq!(c.diff_id, Digest::of_bytes(&tar));
        let pos = parse_footer(&blob[blob.len() - FOOTER_SIZE..]).unwrap();
        assert_eq!(pos, c.toc);
        let at = pos.offset as usize;
        assert_eq!(blob[at - 8..at - 4], SKIPPABLE_MAGIC);
        let json = read_toc(&blob[at..at + pos.len as usize], pos, &c.toc_digest).unwrap();
        let toc: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let entries = toc["entries"].as_array().unwrap();
        let names: Vec<(&str, &str)> =
            entries.iter().map(|e| (e["type"].as_str().unwrap(), e["name"].as_str().unwrap())).collect();
        assert_eq!(
            names,
            [
                ("dir", "etc/"),
                ("reg", "etc/os-release"),
                ("reg", "empty"),
                ("reg", "big"),
                ("chunk", "big"),
                ("chunk", "big"),
                ("reg", "x")
            ]
        );
        assert_eq!(entries[6]["modtime"], "2023-11-14T22:13:20.25Z");
        assert_eq!(entries[6]["xattrs"]["user.k"], "dg==");
        // Each file's frames hold exactly its bytes.
        let big = &entries[3];
        let (start, end) = (big["offset"].as_u64().unwrap() as usize, big["endOffset"].as_u64().unwrap() as usize);
        assert_eq!(zstd::decode_all(&blob[start..end]).unwrap(), random(300_000, 3));
        let second = entries[4]["offset"].as_u64().unwrap() as usize;
        let third = entries[5]["offset"].as_u64().unwrap() as usize;
        let part = zstd::decode_all(&blob[second..third]).unwrap();
        assert_eq!(part, random(300_000, 3)[100_000..200_000]);
        assert_eq!(entries[4]["chunkDigest"], Digest::of_bytes(&part).to_string());
        // Wrong checksum: refused before decompressing.
        let other = Digest::of_bytes(b"x");
        assert!(matches!(
            read_toc(&blob[at..at + pos.len as usize], pos, &other),
            Err(ZstdChunkedError::TocDigest { .. })
        ));
    }

    #[test]
    fn the_tar_split_rebuilds_the_tar_from_the_files() {
        use base64::Engine as _;
        let tar = sample();
        let (c, blob) = convert(|| Ok(io::Cursor::new(tar.clone())), Vec::new(), 100_000).unwrap();
        let s = c.tar_split;
        let comp = &blob[s.offset as usize..(s.offset + s.len) as usize];
        assert_eq!(Digest::of_bytes(comp), c.tar_split_digest);
        let lines = zstd::decode_all(comp).unwrap();
        assert_eq!(lines.len() as u64, s.ulen);
        let mut files: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
        for e in tar::Archive::new(tar.as_slice()).entries().unwrap() {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            files.insert(name, v);
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut rebuilt = Vec::new();
        for (n, l) in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()).enumerate() {
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            assert_eq!(v["position"], n as u64);
            match v["type"].as_u64().unwrap() {
                2 => rebuilt.extend(b64.decode(v["payload"].as_str().unwrap()).unwrap()),
                1 => {
                    let data = &files[v["name"].as_str().unwrap()];
                    assert_eq!(v["size"].as_u64().unwrap_or(0), data.len() as u64);
                    if !data.is_empty() {
                        let mut crc = Crc64::new();
                        crc.update(data);
                        assert_eq!(b64.decode(v["payload"].as_str().unwrap()).unwrap(), crc.sum());
                    } else {
                        assert!(v["payload"].is_null());
                    }
                    rebuilt.extend(data);
                }
                t => panic!("type {t}"),
            }
        }
        assert_eq!(rebuilt, tar);
    }

    #[test]
    fn annotations_are_read_under_either_name() {
        let pos = "10:20:30:1";
        let sum = Digest::of_bytes(b"t").to_string();
        let new =
            vec![(MANIFEST_CHECKSUM_ANNOTATION.into(), sum.clone()), (MANIFEST_POSITION_ANNOTATION.into(), pos.into())];
        let old = vec![
            (OLD_MANIFEST_CHECKSUM_ANNOTATION.into(), sum.clone()),
            (OLD_MANIFEST_POSITION_ANNOTATION.into(), pos.into()),
        ];
        for a in [new, old] {
            let (d, p) = toc_of(&a).unwrap().unwrap();
            assert_eq!(d.to_string(), sum);
            assert_eq!(p, Position { offset: 10, len: 20, ulen: 30 });
        }
        assert!(toc_of(&[]).is_none());
        for bad in ["10:20:30", "10:20:30:2", "a:b:c:1", "1:2:3:1:5"] {
            assert!(parse_position(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn random_footers_positions_and_tocs_never_panic(
            b in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            text in ".{0,40}",
            off in proptest::num::u64::ANY,
            len in proptest::num::u64::ANY,
            ulen in proptest::num::u64::ANY,
        ) {
            let _ = parse_footer(&b);
            let mut f = footer(Position { offset: 1, len: 2, ulen: 3 }, Position { offset: 4, len: 5, ulen: 6 }).to_vec();
            let n = b.len().min(56);
            f[..n].copy_from_slice(&b[..n]);
            let _ = parse_footer(&f);
            let _ = parse_position(&text);
            let _ = parse_position(&format!("{off}:{len}:{ulen}:1"));
            // A TOC that matches its checksum but is not zstd, or claims any
            // length: an error, never a panic or a huge allocation.
            let d = Digest::of_bytes(&b);
            let _ = read_toc(&b, Position { offset: off, len, ulen: ulen % (MAX_TOC_SIZE + 2) }, &d);
            if let Ok(z) = zstd::bulk::compress(&b, 1) {
                let got = read_toc(&z, Position { offset: 8, len: z.len() as u64, ulen: b.len() as u64 }, &Digest::of_bytes(&z));
                proptest::prop_assert_eq!(got.ok(), Some(b.clone()));
            }
        }
    }
}
