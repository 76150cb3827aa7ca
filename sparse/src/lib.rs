//! The map of a sparse file: where its runs of data lie in the file and in
//! the layer's tar stream, checked when made, so that the tar reader that
//! reads maps (img's `archive::sparse`) and the filesystem that serves
//! them (`img-fuse`) share one type without depending on each other.
//! Pure: no IO.

#![forbid(unsafe_code)]

/// Most segments a sparse file may have (GNU tar makes one per run of
/// data; a million is far beyond any real file, and bounds what a hostile
/// map costs).
pub const MAX_SEGMENTS: usize = 1_000_000;

/// One run of a sparse file's data: `len` bytes at `start` in the file,
/// stored at `at` in the layer's uncompressed tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub start: u64,
    pub len: u64,
    pub at: u64,
}

/// Where a sparse file's data is: segments in file order, none empty, none
/// overlapping, all within the file; their bytes are stored one after the
/// other from `at` in the layer, as tar keeps them. Everything else in the
/// file is a hole and reads as zeros. Checked when made, so a value of this
/// type always holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseMap {
    segments: Vec<Segment>,
    size: u64,
    at: u64,
    stored: u64,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SparseError {
    #[error("the sparse map has more than {MAX_SEGMENTS} segments")]
    TooManySegments,
    #[error("the sparse map's segments overlap or are out of order (a segment at {start} after one ending at {end})")]
    Overlap { start: u64, end: u64 },
    #[error("a segment of the sparse map ends at {end}, beyond the file's size {size}")]
    BeyondSize { end: u64, size: u64 },
    #[error("the sparse map's offsets overflow")]
    Overflow,
    #[error("a sparse file of {0} bytes, more than a file may hold")]
    TooLarge(u64),
}

impl SparseMap {
    /// The map of a file of `size` bytes from its (offset in the file,
    /// length) pairs in file order, its data stored contiguously from `at`.
    /// Empty segments are checked, then dropped.
    pub fn new(size: u64, at: u64, pairs: impl IntoIterator<Item = (u64, u64)>) -> Result<SparseMap, SparseError> {
        if size > i64::MAX as u64 {
            return Err(SparseError::TooLarge(size));
        }
        let mut segments = Vec::new();
        let (mut end, mut next_at, mut n) = (0u64, at, 0usize);
        for (start, len) in pairs {
            n += 1;
            if n > MAX_SEGMENTS {
                return Err(SparseError::TooManySegments);
            }
            if start < end {
                return Err(SparseError::Overlap { start, end });
            }
            let seg_end = start.checked_add(len).ok_or(SparseError::Overflow)?;
            if seg_end > size {
                return Err(SparseError::BeyondSize { end: seg_end, size });
            }
            end = seg_end;
            if len == 0 {
                continue;
            }
            segments.push(Segment { start, len, at: next_at });
            next_at = next_at.checked_add(len).ok_or(SparseError::Overflow)?;
        }
        Ok(SparseMap { segments, size, at, stored: next_at - at })
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The file's size, holes included.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Where the stored data starts in the layer.
    pub fn at(&self) -> u64 {
        self.at
    }

    /// How many bytes of data the layer holds (the lengths' sum).
    pub fn stored(&self) -> u64 {
        self.stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_sparse_maps_are_refused() {
        let e = |size, pairs: &[(u64, u64)]| SparseMap::new(size, 0, pairs.iter().copied()).unwrap_err();
        // Overlapping, out of order (an empty segment counts for the order too).
        assert_eq!(e(100, &[(0, 10), (5, 10)]), SparseError::Overlap { start: 5, end: 10 });
        assert_eq!(e(100, &[(50, 10), (0, 10)]), SparseError::Overlap { start: 0, end: 60 });
        assert_eq!(e(100, &[(50, 0), (20, 1)]), SparseError::Overlap { start: 20, end: 50 });
        // Beyond the real size.
        assert_eq!(e(100, &[(0, 10), (95, 6)]), SparseError::BeyondSize { end: 101, size: 100 });
        assert_eq!(e(100, &[(101, 0)]), SparseError::BeyondSize { end: 101, size: 100 });
        // Offsets that overflow, sizes no file may have.
        let max = i64::MAX as u64;
        assert_eq!(e(max, &[(u64::MAX - 1, 2)]), SparseError::Overflow);
        assert_eq!(SparseMap::new(max, u64::MAX - 1, [(0, 2)]).unwrap_err(), SparseError::Overflow);
        assert_eq!(e(max + 1, &[]), SparseError::TooLarge(max + 1));
        assert!(SparseMap::new(max, 0, [(max - 1, 1)]).is_ok());
        // Too many segments, empty ones included.
        let many = (0..=MAX_SEGMENTS as u64).map(|i| (i, 0));
        assert_eq!(SparseMap::new(1 << 40, 0, many).unwrap_err(), SparseError::TooManySegments);
        let just = (0..MAX_SEGMENTS as u64).map(|i| (i * 2, 1));
        assert_eq!(SparseMap::new(1 << 40, 0, just).unwrap().segments().len(), MAX_SEGMENTS);
    }
}
