//! `lazy/<hex>.index`: a lazy layer's tree and chunk table, packed into an
//! index file (`mount::index_file`) when the TOC is first read, so that a
//! mount maps it instead of reading and parsing the TOC again.

use super::toc::{ChunkRef, Codec, TocLayer};
use crate::digest::Digest;
use crate::store::StorePaths;
use img_fuse::Layer;
use std::io;

const PACK_MAGIC: &[u8; 8] = b"IMGLAZY1";

/// The chunk table as 32-byte words, in the checksum list of an index
/// file (`index_file`, whose head is hashed): a header word (magic, chunk
/// count, where the TOC's file starts and its size), a word with the
/// prefetch end (+1; 0 for none), then three words a chunk: virtual
/// offset, length, member start and end; bytes to skip and codec; sha256.
fn pack(tl: &TocLayer) -> Vec<[u8; 32]> {
    let mut out = Vec::with_capacity(2 + 3 * tl.chunks.len());
    let word = |vals: [u64; 4]| {
        let mut w = [0u8; 32];
        for (i, v) in vals.iter().enumerate() {
            w[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        w
    };
    let (toc_virt, toc_len) = tl.toc_file.unwrap_or((0, 0));
    let mut head = word([0, tl.chunks.len() as u64, toc_virt, toc_len]);
    head[..8].copy_from_slice(PACK_MAGIC);
    out.push(head);
    out.push(word([tl.prefetch_end.map(|e| e + 1).unwrap_or(0), 0, 0, 0]));
    for c in &tl.chunks {
        out.push(word([c.virt, c.len, c.comp, c.comp_end]));
        out.push(word([c.inner, c.codec.code(), 0, 0]));
        out.push(c.sha256);
    }
    out
}

/// What [`pack`] wrote: (chunks, TOC file start and size, prefetch end).
type Unpacked = (Vec<ChunkRef>, Option<(u64, u64)>, Option<u64>);

fn unpack(words: &[[u8; 32]]) -> Option<Unpacked> {
    let u = |w: &[u8; 32], i: usize| u64::from_le_bytes(w[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    let head = words.first()?;
    if &head[..8] != PACK_MAGIC {
        return None;
    }
    let n = usize::try_from(u(head, 1)).ok()?;
    if words.len() != 2 + 3 * n {
        return None;
    }
    let toc = (u(head, 3) > 0).then(|| (u(head, 2), u(head, 3)));
    let prefetch = u(&words[1], 0).checked_sub(1);
    let chunks = words[2..]
        .chunks_exact(3)
        .map(|w| {
            Some(ChunkRef {
                virt: u(&w[0], 0),
                len: u(&w[0], 1),
                comp: u(&w[0], 2),
                comp_end: u(&w[0], 3),
                inner: u(&w[1], 0),
                sha256: w[2],
                codec: Codec::from_code(u(&w[1], 1))?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some((chunks, toc, prefetch))
}

/// Writes `lazy/<hex>.index` for layer `d` (aside, then renamed into place).
pub fn write_index(paths: &StorePaths, d: &Digest, tl: &TocLayer) -> io::Result<()> {
    let ix = super::super::index_file::LayerIndex {
        layer: tl.layer.clone(),
        chunks: super::super::index_file::ChunkSums::Sha256(pack(tl)),
        access: crate::layerindex::SharedBytes::default(),
    };
    let bytes = super::super::index_file::encode(d, &ix);
    let path = paths.lazy_index(d);
    std::fs::create_dir_all(paths.lazy_dir())?;
    let tmp = path.with_extension(format!("index.tmp-{}", std::process::id()));
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, &path)
}

/// Layer `d`'s tree (as layer `i` of its image), chunk table, TOC file
/// place and prefetch end, from `lazy/<hex>.index`; `None` when it is
/// missing or damaged (the TOC is read instead).
pub fn read_index(paths: &StorePaths, d: &Digest, i: usize) -> Option<(Layer, Unpacked)> {
    let map = super::super::map_index(&paths.lazy_index(d))?;
    let ix = super::super::index_file::decode(&map, d, i).ok()?;
    let unpacked = unpack(ix.chunks.words()?)?;
    Some((ix.layer, unpacked))
}
