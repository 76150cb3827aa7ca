//! eStargz: a gzip layer that any tool reads as one tar.gz, made of gzip
//! members that start where each file's data (and each 4 MiB chunk of a
//! large file) starts, with a table of contents (the TOC, a JSON document
//! stored as the tar entry `stargz.index.json`) and a 51-byte footer giving
//! where the TOC's member starts. With the TOC, one file's bytes are a Range
//! request for its members away; the TOC's sha256 travels in the layer's
//! descriptor (`containerd.io/snapshot/stargz/toc.digest`), so it can be
//! checked before it is trusted, and each chunk's sha256 is in the TOC.
//!
//! [`convert`] writes an eStargz layer from any uncompressed tar stream
//! (read twice: once for the entries, once for the bytes, so that header
//! bytes are copied as they are, PAX records and long names included);
//! [`parse_footer`] and [`parse_toc`] read one back, as untrusted bytes.
//!
//! Layout written, as stargz-snapshotter's writer does by default:
//! `.no.prefetch.landmark` first (no file is prefetched), every regular
//! file's data in members of at most `chunk_size` bytes, then one member
//! holding the TOC's tar entry and the end of the archive, then the footer.

use crate::digest::{Digest, Hasher};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};

pub const TOC_NAME: &str = "stargz.index.json";
pub const FOOTER_SIZE: usize = 51;
pub const TOC_DIGEST_ANNOTATION: &str = "containerd.io/snapshot/stargz/toc.digest";
pub const UNCOMPRESSED_SIZE_ANNOTATION: &str = "io.containers.estargz.uncompressed-size";
pub const NO_PREFETCH_LANDMARK: &str = ".no.prefetch.landmark";
pub const PREFETCH_LANDMARK: &str = ".prefetch.landmark";
/// stargz-snapshotter's default chunk size.
pub const DEFAULT_CHUNK_SIZE: u64 = 4 << 20;
/// The most a TOC may take, compressed or not, before it is refused.
pub const MAX_TOC_SIZE: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum EstargzError {
    #[error("reading the layer: {0}")]
    Io(#[from] io::Error),
    #[error("the layer is not an eStargz layer: {0}")]
    NotEstargz(&'static str),
    #[error("the eStargz table of contents is damaged: {0}")]
    BadToc(String),
    #[error("the eStargz table of contents has digest {actual}, the manifest says {expected}")]
    TocDigest { expected: String, actual: String },
    #[error("the layer's {entries} entries need a table of contents of {size} bytes or more, over the {MAX_TOC_SIZE} bytes readers accept; a layer this large cannot be eStargz (keep it gzip)")]
    TocTooLarge { size: u64, entries: usize },
    #[error("{path}: {what} cannot be written as eStargz")]
    Unsupported { path: String, what: &'static str },
}

/// The table of contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Toc {
    pub version: u32,
    pub entries: Vec<TocEntry>,
}

/// One entry of the TOC, with stargz-snapshotter's field names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TocEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub size: u64,
    #[serde(rename = "modtime", skip_serializing_if = "String::is_empty")]
    pub mod_time: String,
    #[serde(rename = "linkName", skip_serializing_if = "String::is_empty")]
    pub link_name: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub mode: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub uid: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub gid: u64,
    #[serde(rename = "userName", skip_serializing_if = "String::is_empty")]
    pub user_name: String,
    #[serde(rename = "groupName", skip_serializing_if = "String::is_empty")]
    pub group_name: String,
    /// Where the gzip member holding this entry's (chunk's) data starts.
    #[serde(skip_serializing_if = "is_zero")]
    pub offset: u64,
    #[serde(rename = "innerOffset", skip_serializing_if = "is_zero")]
    pub inner_offset: u64,
    #[serde(rename = "devMajor", skip_serializing_if = "is_zero")]
    pub dev_major: u64,
    #[serde(rename = "devMinor", skip_serializing_if = "is_zero")]
    pub dev_minor: u64,
    /// Values base64-encoded, as Go encodes `[]byte`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub digest: String,
    #[serde(rename = "chunkOffset", skip_serializing_if = "is_zero")]
    pub chunk_offset: u64,
    #[serde(rename = "chunkSize", skip_serializing_if = "is_zero")]
    pub chunk_size: u64,
    #[serde(rename = "chunkDigest", skip_serializing_if = "String::is_empty")]
    pub chunk_digest: String,
}

/// A TOC entry as a reader needs it, its strings borrowed from the JSON
/// where they have no escapes (fields a reader does not use, such as the
/// owner names, are skipped). zstd:chunked TOCs have the same fields, and
/// a few of their own.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TocEntryRef<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    pub size: u64,
    #[serde(rename = "modtime", borrow)]
    pub mod_time: Cow<'a, str>,
    #[serde(rename = "linkName", borrow)]
    pub link_name: Cow<'a, str>,
    pub mode: u64,
    pub uid: u64,
    pub gid: u64,
    pub offset: u64,
    #[serde(rename = "innerOffset")]
    pub inner_offset: u64,
    #[serde(rename = "devMajor")]
    pub dev_major: u64,
    #[serde(rename = "devMinor")]
    pub dev_minor: u64,
    pub xattrs: BTreeMap<String, String>,
    #[serde(rename = "chunkOffset")]
    pub chunk_offset: u64,
    #[serde(rename = "chunkSize")]
    pub chunk_size: u64,
    #[serde(rename = "chunkDigest", borrow)]
    pub chunk_digest: Cow<'a, str>,
    /// The whole file's sha256 (zstd:chunked: what a file of one chunk is
    /// checked against).
    #[serde(borrow)]
    pub digest: Cow<'a, str>,
    /// zstd:chunked: where the frames of the file's data end.
    #[serde(rename = "endOffset")]
    pub end_offset: u64,
    /// zstd:chunked: "zeros" for a chunk of zeros (nothing to fetch).
    #[serde(rename = "chunkType", borrow)]
    pub chunk_type: Cow<'a, str>,
}

impl<'a> From<&'a TocEntry> for TocEntryRef<'a> {
    fn from(e: &'a TocEntry) -> TocEntryRef<'a> {
        TocEntryRef {
            name: Cow::Borrowed(&e.name),
            kind: Cow::Borrowed(&e.kind),
            size: e.size,
            mod_time: Cow::Borrowed(&e.mod_time),
            link_name: Cow::Borrowed(&e.link_name),
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            offset: e.offset,
            inner_offset: e.inner_offset,
            dev_major: e.dev_major,
            dev_minor: e.dev_minor,
            xattrs: e.xattrs.clone(),
            chunk_offset: e.chunk_offset,
            chunk_size: e.chunk_size,
            chunk_digest: Cow::Borrowed(&e.chunk_digest),
            digest: Cow::Borrowed(&e.digest),
            end_offset: 0,
            chunk_type: Cow::Borrowed(""),
        }
    }
}

#[derive(Deserialize)]
struct TocRefs<'a> {
    version: u32,
    #[serde(borrow)]
    entries: Vec<TocEntryRef<'a>>,
}

/// The entries of a TOC's JSON (already checked against its digest), for
/// reading.
pub fn toc_entries(json: &[u8]) -> Result<Vec<TocEntryRef<'_>>, EstargzError> {
    let t: TocRefs = serde_json::from_slice(json).map_err(|e| EstargzError::BadToc(e.to_string()))?;
    if t.version != 1 {
        return Err(EstargzError::BadToc(format!("version {} is not known", t.version)));
    }
    Ok(t.entries)
}

/// A TOC over borrowed entries, serialised as `Toc` is.
#[derive(Serialize)]
struct TocRef<'a> {
    version: u32,
    entries: &'a [TocEntry],
}

/// The TOC's JSON on its way into the current member, hashed.
struct JsonOut<'a, W: Write> {
    m: &'a mut Members<W>,
    hash: Hasher,
}

impl<W: Write> Write for JsonOut<'_, W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.hash.update(b);
        self.m.write(b)?;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// What [`convert`] wrote.
#[derive(Debug, Clone)]
pub struct Converted {
    /// sha256 of the TOC's JSON, for the layer descriptor's annotation.
    pub toc_digest: Digest,
    /// sha256 and size of the uncompressed tar (the new DiffID).
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    pub entries: usize,
}

impl Converted {
    /// The annotations of the layer's descriptor.
    pub fn annotations(&self) -> Vec<(String, String)> {
        vec![
            (TOC_DIGEST_ANNOTATION.to_string(), self.toc_digest.to_string()),
            (UNCOMPRESSED_SIZE_ANNOTATION.to_string(), self.uncompressed_size.to_string()),
        ]
    }
}

/// Counts what passes into the compressed output.
struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The output: gzip members one after another, the uncompressed bytes
/// hashed for the DiffID.
struct Members<W: Write> {
    out: Option<Counting<W>>,
    gz: Option<flate2::write::GzEncoder<Counting<W>>>,
    diff: Hasher,
    level: flate2::Compression,
}

impl<W: Write> Members<W> {
    /// Ends the current member (if any) and returns where the next starts.
    fn cut(&mut self) -> io::Result<u64> {
        if let Some(gz) = self.gz.take() {
            self.out = Some(gz.finish()?);
        }
        Ok(self.out.as_ref().expect("the output is held when no member is open").n)
    }

    fn write(&mut self, b: &[u8]) -> io::Result<()> {
        if b.is_empty() {
            return Ok(());
        }
        if self.gz.is_none() {
            let out = self.out.take().expect("the output is held when no member is open");
            self.gz = Some(flate2::GzBuilder::new().operating_system(255).write(out, self.level));
        }
        self.diff.update(b);
        self.gz.as_mut().expect("opened above").write_all(b)
    }

    fn finish(mut self) -> io::Result<(Counting<W>, Hasher)> {
        self.cut()?;
        Ok((self.out.take().expect("cut returns the output"), self.diff))
    }
}

/// Where one entry lies in the source tar: its bytes are `start..end`
/// (extension headers, header, data, padding); a regular file's data is
/// `size` bytes at `data`.
#[derive(Clone, Copy, Default)]
struct Span {
    start: u64,
    data: u64,
    size: u64,
    end: u64,
}

/// The source tar read from its start, copied into members or skipped.
struct Source<R> {
    r: R,
    pos: u64,
    buf: Vec<u8>,
}

impl<R: Read> Source<R> {
    /// Copies the bytes up to `to` into the current member (`to` is never
    /// behind: spans are visited in source order).
    fn copy_to<W: Write>(&mut self, m: &mut Members<W>, to: u64, mut h: Option<&mut Hasher>) -> io::Result<()> {
        while self.pos < to {
            let n = (to - self.pos).min(self.buf.len() as u64) as usize;
            self.r.read_exact(&mut self.buf[..n])?;
            if let Some(h) = h.as_deref_mut() {
                h.update(&self.buf[..n]);
            }
            m.write(&self.buf[..n])?;
            self.pos += n as u64;
        }
        Ok(())
    }

    fn skip_to(&mut self, to: u64) -> io::Result<()> {
        let n = to.saturating_sub(self.pos);
        let got = io::copy(&mut (&mut self.r).take(n), &mut io::sink())?;
        if got != n {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the layer is shorter on its second reading"));
        }
        self.pos = to;
        Ok(())
    }
}

/// A name as the prefetch list and the TOC compare them.
fn clean(name: &str) -> &str {
    name.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/')
}

/// Which entries go before the landmark: those `prefetch` names, the
/// directories above them and the targets of hard links among them.
fn prioritized(entries: &[TocEntry], prefetch: &[String]) -> Vec<bool> {
    let mut want: std::collections::HashSet<String> = std::collections::HashSet::new();
    let add = |want: &mut std::collections::HashSet<String>, name: &str| {
        let mut n = clean(name);
        while !n.is_empty() && want.insert(n.to_string()) {
            n = n.rfind('/').map_or("", |i| &n[..i]);
        }
    };
    for p in prefetch {
        add(&mut want, p);
    }
    let links: Vec<String> = entries
        .iter()
        .filter(|e| e.kind == "hardlink" && want.contains(clean(&e.name)))
        .map(|e| e.link_name.clone())
        .collect();
    for l in links {
        add(&mut want, &l);
    }
    entries.iter().map(|e| want.contains(clean(&e.name))).collect()
}

/// Reads `open_tar()` (called two or three times, each time a reader of the
/// same uncompressed tar stream) and writes the eStargz layer to `out`.
/// Entries named in `prefetch` (with their parent directories) come first,
/// then `.prefetch.landmark`; with none, `.no.prefetch.landmark` comes first.
pub fn convert<R: Read, W: Write>(
    open_tar: impl FnMut() -> io::Result<R>,
    out: W,
    chunk_size: u64,
    prefetch: &[String],
) -> Result<(Converted, W), EstargzError> {
    convert_limited(open_tar, out, chunk_size, prefetch, MAX_TOC_SIZE)
}

/// `convert`, refusing TOCs over `max_toc` bytes.
fn convert_limited<R: Read, W: Write>(
    mut open_tar: impl FnMut() -> io::Result<R>,
    out: W,
    chunk_size: u64,
    prefetch: &[String],
    max_toc: u64,
) -> Result<(Converted, W), EstargzError> {
    let chunk_size = chunk_size.max(1);
    // Pass 1: the entries and where each lies (what follows the last one
    // is the end of the archive, dropped).
    let mut entries: Vec<TocEntry> = Vec::new();
    let mut spans: Vec<Span> = Vec::new();
    {
        let mut ar = tar::Archive::new(open_tar()?);
        let mut start = 0u64;
        for e in ar.entries()? {
            let mut e = e?;
            let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let h = e.header().clone();
            let unsupported = |what| EstargzError::Unsupported { path: path.clone(), what };
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
            if clean(&path) == TOC_NAME {
                return Err(unsupported("a table of contents already in the layer (it is eStargz already)"));
            }
            let mut ent = TocEntry {
                name: path.clone(),
                kind: kind.into(),
                mode: u64::from(h.mode().unwrap_or(0)),
                uid: h.uid().unwrap_or(0),
                gid: h.gid().unwrap_or(0),
                user_name: h.username().ok().flatten().unwrap_or("").to_string(),
                group_name: h.groupname().ok().flatten().unwrap_or("").to_string(),
                mod_time: crate::timefmt::format_rfc3339(h.mtime().unwrap_or(0) as i64),
                ..TocEntry::default()
            };
            if let Some(l) = e.link_name_bytes() {
                ent.link_name = String::from_utf8_lossy(&l).into_owned();
            }
            if matches!(kind, "char" | "block") {
                ent.dev_major = u64::from(h.device_major().ok().flatten().unwrap_or(0));
                ent.dev_minor = u64::from(h.device_minor().ok().flatten().unwrap_or(0));
            }
            if let Some(pax) = e.pax_extensions()? {
                for x in pax {
                    let x = x?;
                    if let Some(name) = x.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                        use base64::Engine as _;
                        let v = base64::engine::general_purpose::STANDARD.encode(x.value_bytes());
                        ent.xattrs.insert(String::from_utf8_lossy(name).into_owned(), v);
                    }
                }
            }
            let mut span = Span { start, end: e.raw_header_position() + 512, ..Span::default() };
            if kind == "reg" {
                ent.size = e.size();
                span.data = e.raw_file_position();
                span.size = e.size();
                span.end = span.end.max(span.data + span.size.div_ceil(512) * 512);
                // The whole file's digest, read here; the chunks' in pass 2.
                ent.digest = crate::digest::hash_reader(&mut e)?.finish().to_string();
            }
            start = span.end;
            entries.push(ent);
            spans.push(span);
        }
    }

    // A TOC too large for readers is known before the data is written:
    // chunks only add to what the entries take.
    let len = super::json_len(&TocRef { version: 1, entries: &entries });
    if len > max_toc {
        return Err(EstargzError::TocTooLarge { size: len, entries: entries.len() });
    }

    // Pass 2 (and 3): the bytes, cut into members.
    let first = prioritized(&entries, prefetch);
    let any_first = first.iter().any(|&f| f);
    let level = flate2::Compression::default();
    let mut m = Members { out: Some(Counting { inner: out, n: 0 }), gz: None, diff: Hasher::new(), level };
    let mut toc: Vec<TocEntry> = Vec::with_capacity(entries.len() + 1);
    let mut entries: Vec<Option<TocEntry>> = entries.into_iter().map(Some).collect();
    let mut emit = |m: &mut Members<W>, toc: &mut Vec<TocEntry>, src: &mut Source<R>, i: usize| -> io::Result<()> {
        let sp = spans[i];
        let ent = entries[i].take().expect("each entry is written once");
        src.skip_to(sp.start)?;
        if sp.size == 0 {
            src.copy_to(m, sp.end, None)?;
            toc.push(ent);
            return Ok(());
        }
        // Headers before the data go where the member stands.
        src.copy_to(m, sp.data, None)?;
        let mut first = Some(ent);
        let mut written = 0u64;
        while written < sp.size {
            let len = (sp.size - written).min(chunk_size);
            let offset = m.cut()?;
            let mut h = Hasher::new();
            src.copy_to(m, sp.data + written + len, Some(&mut h))?;
            let mut e = first.take().unwrap_or_else(|| TocEntry {
                name: toc.last().map(|t| t.name.clone()).unwrap_or_default(),
                kind: "chunk".into(),
                ..TocEntry::default()
            });
            e.offset = offset;
            e.chunk_offset = written;
            if len < sp.size {
                e.chunk_size = len;
            }
            e.chunk_digest = h.finish().to_string();
            toc.push(e);
            written += len;
        }
        // The padding after the data stays in the last chunk's member.
        src.copy_to(m, sp.end, None)
    };
    let source = |r| Source { r, pos: 0, buf: vec![0u8; 256 << 10] };
    if any_first {
        let mut src = source(open_tar()?);
        for i in (0..first.len()).filter(|&i| first[i]) {
            emit(&mut m, &mut toc, &mut src, i)?;
        }
        landmark(&mut m, &mut toc, PREFETCH_LANDMARK)?;
    } else {
        landmark(&mut m, &mut toc, NO_PREFETCH_LANDMARK)?;
    }
    let mut src = source(open_tar()?);
    for i in (0..first.len()).filter(|&i| !first[i]) {
        emit(&mut m, &mut toc, &mut src, i)?;
    }

    // The TOC, with the end of the archive, in a member of its own; its
    // JSON is written as it is made (measured first, for the tar header).
    let count = toc.len();
    let toc = TocRef { version: 1, entries: &toc };
    let len = super::json_len(&toc);
    if len > max_toc {
        return Err(EstargzError::TocTooLarge { size: len, entries: count });
    }
    let toc_at = m.cut()?;
    let mut th = tar::Header::new_ustar();
    th.set_path(TOC_NAME)?;
    th.set_size(len);
    th.set_mode(0o644);
    th.set_mtime(0);
    th.set_entry_type(tar::EntryType::Regular);
    th.set_cksum();
    m.write(th.as_bytes())?;
    let mut w = io::BufWriter::with_capacity(64 << 10, JsonOut { m: &mut m, hash: Hasher::new() });
    serde_json::to_writer(&mut w, &toc).map_err(|e| EstargzError::BadToc(e.to_string()))?;
    let w = w.into_inner().map_err(|e| e.into_error())?;
    let toc_digest = w.hash.finish();
    let pad = (512 - len % 512) % 512;
    m.write(&vec![0u8; pad as usize + 1024])?;
    let (mut out, diff) = m.finish()?;
    out.write_all(&footer(toc_at))?;
    let uncompressed_size = diff.len();
    Ok((Converted { toc_digest, diff_id: diff.finish(), uncompressed_size, entries: count }, out.inner))
}

/// A landmark file (one byte, 0xf), its data in a member of its own.
fn landmark<W: Write>(m: &mut Members<W>, toc: &mut Vec<TocEntry>, name: &str) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)?;
    h.set_size(1);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    m.write(h.as_bytes())?;
    let at = m.cut()?;
    let mut block = [0u8; 512];
    block[0] = 0xf;
    m.write(&block)?;
    let digest = Digest::of_bytes(&[0xf]).to_string();
    toc.push(TocEntry {
        name: name.into(),
        kind: "reg".into(),
        size: 1,
        mode: 0o644,
        offset: at,
        mod_time: crate::timefmt::format_rfc3339(0),
        digest: digest.clone(),
        chunk_digest: digest,
        ..TocEntry::default()
    });
    Ok(())
}

/// The 51-byte footer: an empty gzip member whose extra field says where
/// the TOC's member starts.
pub fn footer(toc_at: u64) -> [u8; FOOTER_SIZE] {
    let mut f = [0u8; FOOTER_SIZE];
    f[..10].copy_from_slice(&[0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff]);
    f[10..12].copy_from_slice(&26u16.to_le_bytes());
    f[12..14].copy_from_slice(b"SG");
    f[14..16].copy_from_slice(&22u16.to_le_bytes());
    f[16..38].copy_from_slice(format!("{toc_at:016x}STARGZ").as_bytes());
    // An empty final stored block, then CRC32 and size, both 0.
    f[38..43].copy_from_slice(&[1, 0, 0, 0xff, 0xff]);
    f
}

/// Where the TOC's member starts, from the last 51 bytes of a layer.
pub fn parse_footer(f: &[u8]) -> Result<u64, EstargzError> {
    let bad = EstargzError::NotEstargz;
    if f.len() != FOOTER_SIZE {
        return Err(bad("the footer is not 51 bytes"));
    }
    if f[..4] != [0x1f, 0x8b, 8, 4] || f[10..12] != 26u16.to_le_bytes() || &f[12..14] != b"SG" {
        return Err(bad("no eStargz footer at the end of the layer"));
    }
    if f[14..16] != 22u16.to_le_bytes() || &f[32..38] != b"STARGZ" {
        return Err(bad("no STARGZ mark in the footer"));
    }
    let hex = std::str::from_utf8(&f[16..32]).map_err(|_| bad("the TOC offset is not hexadecimal"))?;
    let at = u64::from_str_radix(hex, 16).map_err(|_| bad("the TOC offset is not hexadecimal"))?;
    // The footer's own member must be the empty one written above.
    if f[38..] != [1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0] {
        return Err(bad("the footer's gzip member is not empty"));
    }
    Ok(at)
}

/// The TOC from the bytes of its gzip member (from the offset the footer
/// gives to the footer), checked against `expected` (the descriptor's
/// annotation) when given. Untrusted: sizes are bounded, the JSON is
/// parsed strictly.
pub fn parse_toc(member: &[u8], expected: Option<&Digest>) -> Result<(Toc, Digest), EstargzError> {
    let (toc, file) = parse_toc_file(member, expected)?;
    Ok((toc, file.digest))
}

/// The TOC's own tar entry, as a full read of the layer shows it.
#[derive(Debug, Clone)]
pub struct TocFile {
    pub json: Vec<u8>,
    pub digest: Digest,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
}

/// `parse_toc`, also giving the TOC's tar entry.
pub fn parse_toc_file(member: &[u8], expected: Option<&Digest>) -> Result<(Toc, TocFile), EstargzError> {
    let file = read_toc_file(member, expected)?;
    let toc: Toc = serde_json::from_slice(&file.json).map_err(|e| EstargzError::BadToc(e.to_string()))?;
    if toc.version != 1 {
        return Err(EstargzError::BadToc(format!("version {} is not known", toc.version)));
    }
    Ok((toc, file))
}

/// The TOC's tar entry from the bytes of its gzip member, its JSON checked
/// against `expected` when given (not parsed: see [`toc_entries`]).
pub fn read_toc_file(member: &[u8], expected: Option<&Digest>) -> Result<TocFile, EstargzError> {
    let bad = |m: &str| EstargzError::BadToc(m.to_string());
    let gz = flate2::read::GzDecoder::new(member);
    let mut ar = tar::Archive::new(gz.take(MAX_TOC_SIZE + 1024));
    let mut entries = ar.entries().map_err(|e| bad(&e.to_string()))?;
    let mut e = entries.next().ok_or_else(|| bad("no tar entry"))?.map_err(|e| bad(&e.to_string()))?;
    if e.path_bytes().as_ref() != TOC_NAME.as_bytes() {
        return Err(bad(&format!("the entry is {:?}, not {TOC_NAME}", String::from_utf8_lossy(&e.path_bytes()))));
    }
    if e.size() > MAX_TOC_SIZE {
        return Err(bad(&format!("it is {} bytes, over the {MAX_TOC_SIZE}-byte limit", e.size())));
    }
    let mut json = Vec::with_capacity(e.size() as usize);
    e.read_to_end(&mut json).map_err(|e| bad(&e.to_string()))?;
    if json.len() as u64 != e.size() {
        return Err(bad("truncated"));
    }
    let digest = Digest::of_bytes(&json);
    if let Some(want) = expected {
        if *want != digest {
            return Err(EstargzError::TocDigest { expected: want.to_string(), actual: digest.to_string() });
        }
    }
    let h = e.header();
    let file = TocFile {
        mode: h.mode().unwrap_or(0o644) & 0o7777,
        uid: h.uid().unwrap_or(0),
        gid: h.gid().unwrap_or(0),
        mtime: h.mtime().unwrap_or(0) as i64,
        json,
        digest,
    };
    Ok(file)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::read::{GzDecoder, MultiGzDecoder};

    /// Incompressible test bytes from `seed` (also used by `mount::lazy`'s tests).
    pub(crate) fn random(n: usize, mut seed: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    /// A layer with every kind of entry, PAX xattrs, a long name, an empty
    /// file and files of several chunks.
    fn source() -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
        let mut b = tar::Builder::new(Vec::new());
        let mut files = Vec::new();
        let add = |b: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, data: &[u8], link: &str| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(if kind == tar::EntryType::Directory { 0o755 } else { 0o4751 });
            h.set_uid(1000);
            h.set_gid(100);
            h.set_mtime(1_700_000_000);
            if kind == tar::EntryType::Char {
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
            }
            if link.is_empty() {
                b.append_data(&mut h, name, data).unwrap();
            } else {
                b.append_link(&mut h, name, link).unwrap();
            }
        };
        add(&mut b, "etc/", tar::EntryType::Directory, b"", "");
        b.append_pax_extensions([("SCHILY.xattr.user.k", b"v\0x".as_slice())]).unwrap();
        add(&mut b, "etc/os-release", tar::EntryType::Regular, b"ID=test\n", "");
        files.push(("etc/os-release".to_string(), b"ID=test\n".to_vec()));
        add(&mut b, "empty", tar::EntryType::Regular, b"", "");
        files.push(("empty".to_string(), Vec::new()));
        let big = random(2_500_000, 7);
        add(&mut b, "big", tar::EntryType::Regular, &big, "");
        files.push(("big".to_string(), big));
        let long = format!("{}/file", "d".repeat(150));
        let exact = random(1 << 20, 9);
        add(&mut b, &long, tar::EntryType::Regular, &exact, "");
        files.push((long, exact));
        add(&mut b, "link", tar::EntryType::Symlink, b"", "etc/os-release");
        add(&mut b, "hard", tar::EntryType::Link, b"", "etc/os-release");
        add(&mut b, "fifo", tar::EntryType::Fifo, b"", "");
        add(&mut b, "null", tar::EntryType::Char, b"", "");
        (b.into_inner().unwrap(), files)
    }

    type Files = Vec<(String, Vec<u8>)>;
    /// Name, data, mode and the first PAX record's value of each entry.
    type Listing = Vec<(Vec<u8>, Vec<u8>, u32, Option<Vec<u8>>)>;

    fn converted(chunk: u64) -> (Vec<u8>, Converted, Files) {
        let (tar, files) = source();
        let (c, out) = convert(|| Ok(tar.as_slice()), Vec::new(), chunk, &[]).unwrap();
        (out, c, files)
    }

    #[test]
    fn the_layer_is_one_tar_gz_with_the_same_entries_and_the_toc() {
        let (src, _) = source();
        let (out, c, _) = converted(1 << 20);
        let mut plain = Vec::new();
        MultiGzDecoder::new(out.as_slice()).read_to_end(&mut plain).unwrap();
        assert_eq!(Digest::of_bytes(&plain), c.diff_id);
        assert_eq!(plain.len() as u64, c.uncompressed_size);
        let list = |t: &[u8]| -> Listing {
            let mut ar = tar::Archive::new(t);
            ar.entries()
                .unwrap()
                .map(|e| {
                    let mut e = e.unwrap();
                    let mut d = Vec::new();
                    e.read_to_end(&mut d).unwrap();
                    let x = e
                        .pax_extensions()
                        .unwrap()
                        .and_then(|mut p| p.next())
                        .map(|x| x.unwrap().value_bytes().to_vec());
                    (e.path_bytes().into_owned(), d, e.header().mode().unwrap(), x)
                })
                .collect()
        };
        let got = list(&plain);
        let want = list(&src);
        assert_eq!(got.first().map(|g| g.0.clone()), Some(NO_PREFETCH_LANDMARK.as_bytes().to_vec()));
        assert_eq!(got.last().map(|g| g.0.clone()), Some(TOC_NAME.as_bytes().to_vec()));
        assert_eq!(got[1..got.len() - 1], want[..], "the source's entries, headers and data are kept");
    }

    #[test]
    fn the_toc_finds_every_chunk_and_checks_it() {
        let (out, c, files) = converted(1 << 20);
        let toc = chunks_check(&out, &c, &files);
        let big = toc.entries.iter().filter(|e| e.name == "big").count();
        assert_eq!(big, 3, "2.5 MB in 1 MiB chunks");
        let x = toc.entries.iter().find(|e| e.name == "etc/os-release").unwrap();
        assert_eq!(x.xattrs.get("user.k").map(String::as_str), Some("dgB4"));
        let dev = toc.entries.iter().find(|e| e.name == "null").unwrap();
        assert_eq!((dev.kind.as_str(), dev.dev_major, dev.dev_minor), ("char", 1, 3));
        let hard = toc.entries.iter().find(|e| e.name == "hard").unwrap();
        assert_eq!((hard.kind.as_str(), hard.link_name.as_str()), ("hardlink", "etc/os-release"));
    }

    #[test]
    fn prefetched_files_come_first_with_their_directories_and_link_targets() {
        let (tar, files) = source();
        let list = ["/etc/os-release".to_string(), "hard".to_string()];
        let (c, out) = convert(|| Ok(tar.as_slice()), Vec::new(), 1 << 20, &list).unwrap();
        let toc = chunks_check(&out, &c, &files);
        let names: Vec<&str> = toc.entries.iter().filter(|e| e.kind != "chunk").map(|e| e.name.as_str()).collect();
        let long = format!("{}/file", "d".repeat(150));
        let want = [
            "etc/",
            "etc/os-release",
            "hard",
            PREFETCH_LANDMARK,
            "empty",
            "big",
            long.as_str(),
            "link",
            "fifo",
            "null",
        ];
        assert_eq!(names, want);
        // The tar has that order too, the PAX record still before its file.
        let mut plain = Vec::new();
        MultiGzDecoder::new(out.as_slice()).read_to_end(&mut plain).unwrap();
        let mut ar = tar::Archive::new(plain.as_slice());
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            if name == "etc/os-release" {
                let x: Vec<_> =
                    e.pax_extensions().unwrap().unwrap().map(|x| x.unwrap().key().unwrap().to_string()).collect();
                assert_eq!(x, ["SCHILY.xattr.user.k"]);
            }
            seen.push(name);
        }
        assert_eq!(seen[..want.len()], want);
        assert_eq!(seen.last().map(String::as_str), Some(TOC_NAME));
    }

    /// Reads the TOC back and checks every file's chunks against it and
    /// against the file's data; returns the TOC.
    fn chunks_check(out: &[u8], c: &Converted, files: &Files) -> Toc {
        let toc_at = parse_footer(&out[out.len() - FOOTER_SIZE..]).unwrap();
        let (toc, digest) = parse_toc(&out[toc_at as usize..out.len() - FOOTER_SIZE], Some(&c.toc_digest)).unwrap();
        assert_eq!(digest, c.toc_digest);
        assert_eq!(toc.entries.len(), c.entries);
        for (name, data) in files {
            let chunks: Vec<&TocEntry> = toc.entries.iter().filter(|e| &e.name == name).collect();
            let reg = chunks[0];
            assert_eq!((reg.kind.as_str(), reg.size), ("reg", data.len() as u64), "{name}");
            assert_eq!(reg.digest, Digest::of_bytes(data).to_string(), "{name}");
            let mut whole = Vec::new();
            for ch in chunks.iter().filter(|e| e.offset != 0) {
                let len = if ch.chunk_size == 0 { reg.size - ch.chunk_offset } else { ch.chunk_size };
                let mut part = vec![0u8; len as usize];
                GzDecoder::new(&out[ch.offset as usize..]).read_exact(&mut part).unwrap();
                assert_eq!(Digest::of_bytes(&part).to_string(), ch.chunk_digest, "{name} at {}", ch.chunk_offset);
                assert_eq!(ch.chunk_offset, whole.len() as u64);
                whole.extend_from_slice(&part);
            }
            assert_eq!(&whole, data, "{name}");
        }
        toc
    }

    #[test]
    fn a_toc_other_than_the_manifest_says_is_refused() {
        let (out, _, _) = converted(DEFAULT_CHUNK_SIZE);
        let toc_at = parse_footer(&out[out.len() - FOOTER_SIZE..]).unwrap() as usize;
        let other = Digest::of_bytes(b"another toc");
        let err = parse_toc(&out[toc_at..out.len() - FOOTER_SIZE], Some(&other)).unwrap_err();
        assert!(matches!(err, EstargzError::TocDigest { .. }), "{err}");
    }

    #[test]
    fn footers_are_checked() {
        let f = footer(0x1234);
        assert_eq!(parse_footer(&f).unwrap(), 0x1234);
        let mut plain = Vec::new();
        GzDecoder::new(f.as_slice()).read_to_end(&mut plain).unwrap();
        assert!(plain.is_empty(), "the footer is an empty gzip member");
        for i in 0..FOOTER_SIZE {
            let mut g = f;
            g[i] ^= 0x40;
            // Header bytes that do not matter: mtime, extra flags, OS.
            if (4..10).contains(&i) {
                continue;
            }
            assert!(parse_footer(&g).is_err(), "byte {i} changed and still accepted");
        }
        assert!(parse_footer(&f[1..]).is_err());
    }

    #[test]
    fn a_layer_that_is_estargz_already_or_sparse_is_refused() {
        let (out, _, _) = converted(DEFAULT_CHUNK_SIZE);
        let mut plain = Vec::new();
        MultiGzDecoder::new(out.as_slice()).read_to_end(&mut plain).unwrap();
        let err = convert(|| Ok(plain.as_slice()), Vec::new(), DEFAULT_CHUNK_SIZE, &[]).unwrap_err();
        assert!(matches!(err, EstargzError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn a_table_of_contents_over_the_limit_is_refused_before_the_data_is_written() {
        let (tar, _) = source();
        let mut out = Vec::new();
        let err = convert_limited(|| Ok(tar.as_slice()), &mut out, DEFAULT_CHUNK_SIZE, &[], 1000).unwrap_err();
        assert!(matches!(err, EstargzError::TocTooLarge { entries: 9, .. }), "{err}");
        assert!(out.is_empty(), "{} bytes written before the refusal", out.len());
        // The whole TOC is measured as it is written: a limit the entries
        // pass but the chunks do not is caught at the end.
        let (out, c, _) = converted(DEFAULT_CHUNK_SIZE);
        let toc_at = parse_footer(&out[out.len() - FOOTER_SIZE..]).unwrap() as usize;
        let (toc, d) = parse_toc(&out[toc_at..out.len() - FOOTER_SIZE], Some(&c.toc_digest)).unwrap();
        let full = crate::layerindex::json_len(&TocRef { version: 1, entries: &toc.entries });
        assert_eq!(d, c.toc_digest);
        let err = convert_limited(|| Ok(tar.as_slice()), Vec::new(), DEFAULT_CHUNK_SIZE, &[], full - 1).unwrap_err();
        assert!(matches!(err, EstargzError::TocTooLarge { .. }), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn random_footers_and_tocs_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse_footer(&b);
            let _ = parse_toc(&b, None);
            let mut f = footer(7).to_vec();
            let n = b.len().min(FOOTER_SIZE);
            f[..n].copy_from_slice(&b[..n]);
            let _ = parse_footer(&f);
        }
    }
}
