//! Random access into zstd layers made of several frames (zstd:chunked
//! layers, and any encoder that starts new frames): the compressed and
//! uncompressed offset where each frame starts, found in the one pass that
//! decompresses the layer. A read starts at the frame holding its offset
//! instead of the start of the layer. A single-frame layer has one entry
//! and gains nothing; it is read sequentially.

use std::io::{self, Read};
use zstd::stream::raw::{DParameter, Decoder, InBuffer, Operation, OutBuffer};

/// Frames asking for a window over 128 MiB are refused (memory bomb).
const WINDOW_LOG_MAX: u32 = 27;
/// Largest number of frames kept (a hostile layer of empty frames).
const MAX_FRAMES: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ZstdIndex {
    /// (compressed offset, uncompressed offset) of each frame's start,
    /// both increasing; the first has uncompressed offset 0 (and is (0, 0)
    /// unless the layer starts with empty frames).
    pub frames: Vec<(u64, u64)>,
}

impl ZstdIndex {
    /// Decompresses `r` once, handing the output to `sink`, and records
    /// where each frame starts.
    pub fn build<R: Read>(mut r: R, sink: &mut dyn FnMut(&[u8])) -> io::Result<ZstdIndex> {
        let mut dec = Decoder::new()?;
        dec.set_parameter(DParameter::WindowLogMax(WINDOW_LOG_MAX))?;
        let mut inbuf = vec![0u8; 128 * 1024];
        let mut out = vec![0u8; 256 * 1024];
        let (mut c, mut u) = (0u64, 0u64);
        let mut frames = vec![(0u64, 0u64)];
        let mut in_frame = false;
        loop {
            let n = r.read(&mut inbuf)?;
            if n == 0 {
                break;
            }
            let mut input = InBuffer::around(&inbuf[..n]);
            loop {
                let before = input.pos();
                let mut o = OutBuffer::around(&mut out[..]);
                let hint = dec.run(&mut input, &mut o)?;
                let produced = o.pos();
                let full = produced == out.len();
                sink(&out[..produced]);
                u += produced as u64;
                c += (input.pos() - before) as u64;
                if input.pos() > before || produced > 0 {
                    in_frame = true;
                }
                if hint == 0 && in_frame {
                    // A frame ended here; the next one (if any) starts here.
                    in_frame = false;
                    if frames.last().map(|l| l.1) == Some(u) {
                        // An empty frame: the next one starts after it.
                        *frames.last_mut().expect("never empty") = (c, u);
                    } else if frames.len() >= MAX_FRAMES {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "more than 4M zstd frames"));
                    } else {
                        frames.push((c, u));
                    }
                }
                if input.pos() == n && !full {
                    break;
                }
            }
        }
        if in_frame {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the zstd stream ends inside a frame"));
        }
        // The last boundary is the end of the stream, not a frame start.
        if frames.len() > 1 && frames.last() == Some(&(c, u)) {
            frames.pop();
        }
        if frames.len() == 1 {
            frames[0] = (0, 0);
        }
        Ok(ZstdIndex { frames })
    }

    /// The frame a read at uncompressed `offset` starts from:
    /// (compressed offset, uncompressed offset).
    pub fn frame_for(&self, offset: u64) -> (u64, u64) {
        let i = self.frames.partition_point(|&(_, u)| u <= offset);
        self.frames.get(i.wrapping_sub(1)).copied().unwrap_or((0, 0))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put(&mut out, self.frames.len() as u64);
        let (mut pc, mut pu) = (0u64, 0u64);
        for &(c, u) in &self.frames {
            put(&mut out, c - pc);
            put(&mut out, u - pu);
            (pc, pu) = (c, u);
        }
        out
    }

    /// Parses what `to_bytes` wrote; untrusted bytes give an error, never a panic.
    pub fn from_bytes(b: &[u8]) -> Option<ZstdIndex> {
        let mut pos = 0;
        let n = get(b, &mut pos)? as usize;
        if n == 0 || n > MAX_FRAMES || n > b.len() {
            return None;
        }
        let mut frames = Vec::with_capacity(n);
        let (mut c, mut u) = (0u64, 0u64);
        for i in 0..n {
            let (dc, du) = (get(b, &mut pos)?, get(b, &mut pos)?);
            if i > 0 && (dc == 0 || du == 0) {
                return None;
            }
            c = c.checked_add(dc)?;
            u = u.checked_add(du)?;
            frames.push((c, u));
        }
        (pos == b.len() && frames[0].1 == 0).then_some(ZstdIndex { frames })
    }
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn get(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= ((byte & 0x7f) as u64).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames_of(parts: &[&[u8]]) -> Vec<u8> {
        parts.iter().flat_map(|p| zstd::encode_all(*p, 3).unwrap()).collect()
    }

    #[test]
    fn each_frame_start_is_recorded_and_the_output_is_whole() {
        let a = vec![b'a'; 300_000];
        let b: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let blob = frames_of(&[&a, b"", &b]);
        let mut got = Vec::new();
        let ix = ZstdIndex::build(blob.as_slice(), &mut |d| got.extend_from_slice(d)).unwrap();
        assert_eq!(got, [a.clone(), b.clone()].concat());
        let first = zstd::encode_all(a.as_slice(), 3).unwrap().len() as u64;
        let empty = zstd::encode_all(&b""[..], 3).unwrap().len() as u64;
        // The empty frame between them is skipped: b's frame starts after it.
        assert_eq!(ix.frames, vec![(0, 0), (first + empty, 300_000)]);
        // A read in b starts at b's frame, and decoding from there gives b.
        let (c, u) = ix.frame_for(300_000 + 5);
        assert_eq!(u, 300_000);
        let rest = zstd::decode_all(&blob[c as usize..]).unwrap();
        assert_eq!(rest, b);
        assert_eq!(ix.frame_for(10), (0, 0));
    }

    #[test]
    fn a_single_frame_has_one_entry() {
        let blob = frames_of(&[&vec![1u8; 1 << 20]]);
        let ix = ZstdIndex::build(blob.as_slice(), &mut |_| {}).unwrap();
        assert_eq!(ix.frames, vec![(0, 0)]);
    }

    #[test]
    fn a_truncated_stream_is_an_error() {
        let blob = frames_of(&[&vec![5u8; 100_000], &vec![6u8; 100_000]]);
        assert!(ZstdIndex::build(&blob[..blob.len() - 3], &mut |_| {}).is_err());
    }

    proptest! {
        #[test]
        fn bytes_round_trip(deltas in proptest::collection::vec((1u64..1 << 40, 1u64..1 << 40), 0..50)) {
            let mut frames = vec![(0, 0)];
            let (mut c, mut u) = (0, 0);
            for (dc, du) in deltas { c += dc; u += du; frames.push((c, u)); }
            let ix = ZstdIndex { frames };
            prop_assert_eq!(ZstdIndex::from_bytes(&ix.to_bytes()), Some(ix));
        }

        #[test]
        fn any_bytes_parse_without_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ZstdIndex::from_bytes(&b);
        }
    }
}
