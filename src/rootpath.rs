//! Paths inside a root directory (an image's tree, a stage's root): a
//! container path resolved as the container would see it, symlinks
//! followed inside the root. Builds and bundles both use it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Symlinks followed in one resolution before it is refused (as ELOOP).
const MAX_LINKS: usize = 40;

/// `path` (absolute or relative to the root) resolved inside `root`: every
/// component but the last is followed if it is a symlink; the last too
/// when `follow_last`. Components that do not exist are kept as they are.
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> io::Result<PathBuf> {
    let mut todo: Vec<String> = components(path).into_iter().rev().collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        let candidate = join(root, &done).join(&c);
        let last = todo.is_empty();
        match fs::symlink_metadata(&candidate) {
            Ok(md) if md.file_type().is_symlink() && (!last || follow_last) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::other(format!("too many levels of symbolic links in {path}")));
                }
                let target = fs::read_link(&candidate)?;
                let target = target.to_string_lossy();
                if target.starts_with('/') {
                    done.clear();
                }
                todo.extend(components(&target).into_iter().rev());
            }
            _ => done.push(c),
        }
    }
    Ok(join(root, &done))
}

pub(crate) fn components(p: &str) -> Vec<String> {
    p.split('/').filter(|c| !c.is_empty() && *c != ".").map(str::to_string).collect()
}

fn join(root: &Path, parts: &[String]) -> PathBuf {
    let mut p = root.to_path_buf();
    for c in parts {
        p.push(c);
    }
    p
}
