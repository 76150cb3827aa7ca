//! img's read-only image filesystem: the merged tree of an image's layers
//! (`tree`), the operations on it over a source of layer bytes (`fs`), and
//! the FUSE adapter (`adapter`, the only file that names fuser types).

#![forbid(unsafe_code)]

mod adapter;
pub mod fs;
pub mod tree;

pub use adapter::{serve, MountConfig};
pub use fs::{BlobSource, ImageFs};
pub use tree::{DataRef, Entry, Kind, Layer, Segment, SparseError, SparseMap, Tree, MAX_SEGMENTS};
