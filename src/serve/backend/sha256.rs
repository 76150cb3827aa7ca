//! SHA-256 whose state can be kept between requests: an upload sent in
//! chunks to several instances is hashed by each in turn, the state kept
//! in the database between them (sha2's own hasher cannot be saved).

use sha2::digest::generic_array::GenericArray;

const IV: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// A SHA-256 in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    h: [u32; 8],
    /// Bytes hashed, the buffered ones included.
    len: u64,
    /// Bytes not yet making a whole block (fewer than 64).
    buf: Vec<u8>,
}

impl Default for State {
    fn default() -> State {
        State { h: IV, len: 0, buf: Vec::new() }
    }
}

/// The saved form: 32 bytes of state, 8 of length, then the buffered bytes.
const SAVED_HEAD: usize = 40;

impl State {
    pub fn new() -> State {
        State::default()
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if !self.buf.is_empty() {
            let take = (64 - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() < 64 {
                return;
            }
            let block = GenericArray::clone_from_slice(&self.buf);
            sha2::compress256(&mut self.h, &[block]);
            self.buf.clear();
        }
        let whole = data.len() / 64 * 64;
        if whole > 0 {
            let blocks: Vec<GenericArray<u8, _>> =
                data[..whole].chunks_exact(64).map(GenericArray::clone_from_slice).collect();
            sha2::compress256(&mut self.h, &blocks);
        }
        self.buf.extend_from_slice(&data[whole..]);
    }

    pub fn finish(&self) -> [u8; 32] {
        let mut h = self.h;
        let mut tail = self.buf.clone();
        tail.push(0x80);
        while tail.len() % 64 != 56 {
            tail.push(0);
        }
        tail.extend_from_slice(&(self.len.wrapping_mul(8)).to_be_bytes());
        let blocks: Vec<GenericArray<u8, _>> = tail.chunks_exact(64).map(GenericArray::clone_from_slice).collect();
        sha2::compress256(&mut h, &blocks);
        let mut out = [0u8; 32];
        for (i, w) in h.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SAVED_HEAD + self.buf.len());
        for w in self.h {
            out.extend_from_slice(&w.to_be_bytes());
        }
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.buf);
        out
    }

    /// None if `b` is not a saved state (a damaged row is refused, never
    /// trusted).
    pub fn from_bytes(b: &[u8]) -> Option<State> {
        if b.len() < SAVED_HEAD || b.len() >= SAVED_HEAD + 64 {
            return None;
        }
        let mut h = [0u32; 8];
        for (i, w) in h.iter_mut().enumerate() {
            *w = u32::from_be_bytes(b[i * 4..i * 4 + 4].try_into().ok()?);
        }
        let len = u64::from_be_bytes(b[32..40].try_into().ok()?);
        let buf = b[SAVED_HEAD..].to_vec();
        if len % 64 != buf.len() as u64 {
            return None;
        }
        Some(State { h, len, buf })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::Digest as _;

    #[test]
    fn known_answers() {
        let hex = |b: [u8; 32]| crate::digest::hex_encode(&b);
        assert_eq!(hex(State::new().finish()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let mut s = State::new();
        s.update(b"abc");
        assert_eq!(hex(s.finish()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn damaged_states_are_refused() {
        assert!(State::from_bytes(b"").is_none());
        assert!(State::from_bytes(&[0u8; 39]).is_none());
        assert!(State::from_bytes(&[0u8; 104]).is_none());
        let mut s = State::new();
        s.update(b"12345");
        let mut b = s.to_bytes();
        b.pop();
        assert!(State::from_bytes(&b).is_none());
    }

    proptest! {
        #[test]
        fn saved_and_resumed_anywhere_agrees_with_sha2(data in proptest::collection::vec(any::<u8>(), 0..700), cuts in proptest::collection::vec(0usize..700, 0..6)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort();
            let mut s = State::new();
            let mut at = 0;
            for c in cuts.into_iter().chain(std::iter::once(data.len())) {
                s.update(&data[at..c]);
                at = c;
                s = State::from_bytes(&s.to_bytes()).unwrap();
            }
            let want: [u8; 32] = sha2::Sha256::digest(&data).into();
            prop_assert_eq!(s.finish(), want);
        }

        #[test]
        fn hostile_saved_states_never_panic(b in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Some(s) = State::from_bytes(&b) {
                let _ = s.finish();
            }
        }
    }
}
