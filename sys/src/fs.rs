//! File calls std lacks: extended attributes, times set without following
//! a symlink, and read-only mappings of the store's index files. Like
//! `std::fs`, they act on files, not on what is mounted, so they are plain
//! functions (not [`crate::Kernel`] methods) and are tested on temporary
//! files.

use std::io;
use std::path::Path;

pub use crate::sys::{map_index_file, map_read_only, set_times_nofollow, Mapped};

/// The extended attributes of `path` (not following a symlink), sorted by name.
pub fn xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut names = crate::sys::list_xattrs(path)?;
    names.sort();
    let mut out = Vec::new();
    for n in names {
        if let Some(v) = crate::sys::get_xattr(path, &n)? {
            out.push((n, v));
        }
    }
    Ok(out)
}

/// One extended attribute of `path` (not following a symlink).
pub fn xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    crate::sys::get_xattr(path, name)
}

/// Sets an extended attribute of `path` (not following a symlink).
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    crate::sys::set_xattr(path, name, value)
}

/// Removes an extended attribute of `path` (not following a symlink).
pub fn remove_xattr(path: &Path, name: &str) -> io::Result<()> {
    crate::sys::remove_xattr(path, name)
}
