//! Content digests: a validated `Digest` newtype and hashing readers and writers.
//!
//! A digest string from an image, an archive or a registry is hostile until
//! `Digest::parse` accepted it: only `sha256:` with exactly 64 lower-case hex
//! characters is accepted, so a digest can never turn into a path with `/` or
//! `..` in it (CVE-2024-3727 class).

use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Read, Write};

/// A validated `sha256:<64 lower-case hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest {0:?}: unsupported algorithm (only sha256 is supported)")]
    UnsupportedAlgorithm(String),
    #[error("invalid digest {0:?}: expected 64 lower-case hex characters after \"sha256:\"")]
    BadHex(String),
    #[error("invalid digest {0:?}: missing \"algorithm:\" prefix")]
    MissingAlgorithm(String),
}

impl Digest {
    /// Parses `sha256:<hex>`; anything else is refused.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(DigestError::MissingAlgorithm(truncate_for_error(s)));
        };
        if alg != "sha256" {
            return Err(DigestError::UnsupportedAlgorithm(truncate_for_error(s)));
        }
        if !is_lower_hex(hex, 64) {
            return Err(DigestError::BadHex(truncate_for_error(s)));
        }
        Ok(Digest(s.to_string()))
    }

    /// Builds a digest from a bare 64-character hex string.
    pub fn from_hex(hex: &str) -> Result<Digest, DigestError> {
        Digest::parse(&format!("sha256:{hex}"))
    }

    /// The sha256 of a byte slice.
    pub fn of_bytes(data: &[u8]) -> Digest {
        let mut h = Sha256::new();
        h.update(data);
        Digest::from_hasher(h)
    }

    fn from_hasher(h: Sha256) -> Digest {
        Digest(format!("sha256:{}", hex_encode(&h.finalize())))
    }

    /// The hex part, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    /// The full `sha256:<hex>` form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex characters, as docker shows IDs.
    pub fn short(&self) -> &str {
        &self.0[7..19]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

fn truncate_for_error(s: &str) -> String {
    // A hostile digest could be megabytes long; an error message needs only its start.
    s.chars().take(100).collect()
}

/// True if `s` is exactly `len` lower-case hex characters.
pub fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Lower-case hex encoding.
pub fn hex_encode(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

/// A running sha256 with a byte count.
#[derive(Clone, Default)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.len += data.len() as u64;
    }
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn finish(self) -> Digest {
        Digest::from_hasher(self.inner)
    }
}

/// Feeds everything `r` yields into a new `Hasher` (to finish it, or to go
/// on hashing what follows, as a resumed download does).
pub fn hash_reader(r: &mut impl Read) -> io::Result<Hasher> {
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(h),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
    }
}

/// A reader that hashes and counts everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Hasher::new() }
    }
    /// Bytes read so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }
    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }
    pub fn finish(self) -> (Digest, u64, R) {
        let len = self.hasher.len();
        (self.hasher.finish(), len, self.inner)
    }
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer that hashes and counts everything written, then passes it on.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Hasher::new() }
    }
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }
    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }
    pub fn finish(self) -> (Digest, u64, W) {
        let len = self.hasher.len();
        (self.hasher.finish(), len, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn of_bytes_matches_known_value() {
        assert_eq!(Digest::of_bytes(b"").as_str(), EMPTY);
    }

    #[test]
    fn parse_table() {
        let ok = [EMPTY];
        for s in ok {
            assert_eq!(Digest::parse(s).unwrap().as_str(), s);
        }
        let bad = [
            "",
            "sha256",
            "sha256:",
            "sha256:../../etc/passwd",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85/",
        ];
        for s in bad {
            assert!(Digest::parse(s).is_err(), "{s:?} must be refused");
        }
    }

    #[test]
    fn hashing_reader_and_writer_agree_with_of_bytes() {
        let data = b"hello world".repeat(1000);
        let mut r = HashingReader::new(&data[..]);
        let mut sink = Vec::new();
        io::copy(&mut r, &mut sink).unwrap();
        let (d, n, _) = r.finish();
        assert_eq!(d, Digest::of_bytes(&data));
        assert_eq!(n, data.len() as u64);
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(&data).unwrap();
        let (d2, n2, out) = w.finish();
        assert_eq!(d2, d);
        assert_eq!(n2, n);
        assert_eq!(out, data);
        let h = hash_reader(&mut &data[..]).unwrap();
        assert_eq!(h.len(), n);
        assert_eq!(h.finish(), d);
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepted_digests_are_path_safe(s in ".{0,100}") {
            if let Ok(d) = Digest::parse(&s) {
                prop_assert!(!d.hex().contains('/'));
                prop_assert!(!d.hex().contains('.'));
                prop_assert_eq!(d.hex().len(), 64);
            }
        }

        #[test]
        fn of_bytes_round_trips_through_parse(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let d = Digest::of_bytes(&data);
            prop_assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        }
    }
}
