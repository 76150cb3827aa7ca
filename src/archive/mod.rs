//! Image archives and layer tars: reading (without extracting), verifying,
//! writing, flattening. Nothing here writes outside the store or the
//! chosen output.

pub mod embedded;
pub mod layer;
pub mod name;
pub mod resolve;
pub mod source;
pub mod sparse;
pub mod write;

/// Appends a symlink entry whose target is written byte for byte. The tar
/// crate's `append_link` treats the target as a path and rewrites some
/// (`/` became `//`); a target that fits the header goes in as it is, a
/// longer one through `append_link`'s GNU long-link entry, which keeps it.
pub fn append_symlink<W: std::io::Write>(
    b: &mut tar::Builder<W>,
    h: &mut tar::Header,
    name: impl AsRef<std::path::Path>,
    target: &[u8],
) -> std::io::Result<()> {
    if target.len() <= 100 && !target.contains(&0) {
        h.set_link_name_literal(target)?;
        h.set_size(0);
        b.append_data(h, name, std::io::empty())
    } else {
        use std::os::unix::ffi::OsStrExt;
        b.append_link(h, name, std::ffi::OsStr::from_bytes(target))
    }
}
