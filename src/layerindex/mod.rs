//! Random access into compressed layer blobs.
//!
//! A layer is stored as the compressed blob it arrived as. To serve one file
//! of it without decompressing everything before that file, an index is built
//! once, in the same sequential pass that checks the layer's DiffID, and kept
//! next to the blob; a read then starts decompressing at the nearest
//! checkpoint before the wanted offset instead of at the start of the blob.
//!
//! - `gzip`: checkpoints between deflate blocks, each with the 32 KiB of output
//!   that precedes it (the zran method), for single- and multi-member gzip.
//! - `zstd`: where each frame starts, for layers of several frames.
//! - `estargz`, `zstd_chunked`: the two formats with a table of contents,
//!   written by `img convert` and read by lazy mounts.
//!
//! Nothing here opens files or knows about the store: the compressed stream is
//! an `io::Read` while an index is built, and anything implementing
//! [`RandomRead`] when it is read.

pub mod estargz;

/// How many bytes the compact JSON of `v` takes, counted as it is written
/// (a table of contents is measured before it is made, without being held).
pub(crate) fn json_len<T: serde::Serialize + ?Sized>(v: &T) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing to a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}
pub mod gzip;
pub mod zstd;
pub mod zstd_chunked;

use std::io;

/// Positioned reads from a compressed blob, as `pread(2)` does them: `read_at`
/// may return fewer bytes than asked for, and 0 only at the end of the blob.
/// It takes `&self`, so one open blob can serve several readers at once.
pub trait RandomRead {
    /// Reads up to `buf.len()` bytes starting at byte `off` of the blob.
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<usize>;
}

impl RandomRead for [u8] {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        let Ok(start) = usize::try_from(off) else {
            return Ok(0);
        };
        let Some(rest) = self.get(start..) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

impl RandomRead for Vec<u8> {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.as_slice().read_at(off, buf)
    }
}

#[cfg(unix)]
impl RandomRead for std::fs::File {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, off)
    }
}

impl<T: RandomRead + ?Sized> RandomRead for &T {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        (**self).read_at(off, buf)
    }
}

impl<T: RandomRead + ?Sized> RandomRead for std::sync::Arc<T> {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        (**self).read_at(off, buf)
    }
}

/// Bytes shared without copying: all or part of a buffer or of a file
/// mapping, kept alive by its longest holder. An index loaded from a mapped
/// index file refers to its windows where they lie in the mapping, so a
/// mount neither copies nor keeps in memory the windows it never uses.
#[derive(Clone)]
pub struct SharedBytes {
    backing: std::sync::Arc<dyn AsRef<[u8]> + Send + Sync>,
    start: usize,
    end: usize,
}

impl SharedBytes {
    pub fn new(backing: std::sync::Arc<dyn AsRef<[u8]> + Send + Sync>) -> SharedBytes {
        let end = (*backing).as_ref().len();
        SharedBytes { backing, start: 0, end }
    }

    pub fn from_vec(v: Vec<u8>) -> SharedBytes {
        SharedBytes::new(std::sync::Arc::new(v))
    }

    /// Part of these bytes, or None where `range` reaches beyond them.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Option<SharedBytes> {
        if range.start > range.end || range.end > self.len() {
            return None;
        }
        Some(SharedBytes {
            backing: self.backing.clone(),
            start: self.start + range.start,
            end: self.start + range.end,
        })
    }

    pub fn as_slice(&self) -> &[u8] {
        &(*self.backing).as_ref()[self.start..self.end]
    }
}

impl Default for SharedBytes {
    fn default() -> SharedBytes {
        SharedBytes::from_vec(Vec::new())
    }
}

impl std::ops::Deref for SharedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for SharedBytes {
    fn eq(&self, other: &SharedBytes) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SharedBytes {}

impl std::fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedBytes({} bytes)", self.len())
    }
}
