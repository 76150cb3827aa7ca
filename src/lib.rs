//! img: a daemonless, rootless container image tool.
//!
//! See ARCHITECTURE.md for the map of this crate and its invariants.
#![forbid(unsafe_code)]

pub mod archive;
pub mod cli;
pub mod compression;
pub mod digest;
pub mod dockerfile;
pub mod dockerignore;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod image;
pub mod layerindex;
pub mod mount;
pub mod ops;
#[cfg(feature = "serve")]
pub mod pg;
pub mod ratelimit;
pub mod reference;
pub mod registry;
pub mod rootpath;
#[cfg(feature = "serve")]
pub mod s3;
#[cfg(feature = "serve")]
pub mod serve;
pub mod store;
#[cfg(test)]
pub(crate) mod testdir;
pub mod timefmt;
pub mod trust;
pub mod user;

/// Aborts the process at a named point when `IMG_CRASHPOINT` names it, so
/// that tests can kill a command at the exact moment they want to check.
pub fn crashpoint(name: &str) {
    if let Some(want) = std::env::var_os("IMG_CRASHPOINT") {
        if want == name {
            std::process::abort();
        }
    }
}

/// An error and its causes on one line, repeated text left out.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        if parts.last().is_none_or(|p| !p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}
