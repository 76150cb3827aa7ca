//! How long operations (pull, push, copy, build) report what they do:
//! lines, and bytes per blob; `cli/progress.rs` draws them.

use crate::digest::Digest;

/// Progress for stderr: lines, and optionally byte counts per blob (for
/// progress bars).
pub trait Progress: Sync {
    fn line(&self, msg: &str);
    /// A transfer of `size` bytes of blob `d` starts (or resumes at `done`).
    fn blob_start(&self, _d: &Digest, _size: u64, _done: u64) {}
    /// `done` bytes of blob `d` are transferred.
    fn blob_bytes(&self, _d: &Digest, _done: u64) {}
    /// The transfer of blob `d` ended (`ok` false: it failed).
    fn blob_end(&self, _d: &Digest, _ok: bool) {}
}

impl<F: Fn(&str) + Sync> Progress for F {
    fn line(&self, msg: &str) {
        self(msg)
    }
}
