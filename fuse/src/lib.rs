//! img's image filesystem: the merged tree of an image's layers (`tree`),
//! the read-only operations on it over a source of layer bytes (`fs`), a
//! writable layer over it for rootless mounts (`rw`), and the FUSE adapter
//! (`adapter`, the only file that names fuser types).

#![forbid(unsafe_code)]

mod adapter;
pub mod fs;
pub mod grow;
mod nodes;
pub mod rw;
pub mod tree;

pub use adapter::{serve, serve_rw, MountConfig};
pub use fs::{BlobSource, ImageFs};
pub use grow::Grow;
pub use rw::RwFs;
pub use tree::{DataRef, Entry, Kind, Layer, Segment, SparseError, SparseMap, Tree, MAX_SEGMENTS};
