//! The store's lock file, with flock(2) semantics (std's `File::lock`):
//! locks belong to the open file description and die with the process, so a
//! killed img never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub struct LockFile {
    file: File,
}

impl LockFile {
    pub fn open(path: &Path) -> io::Result<LockFile> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
        Ok(LockFile { file })
    }

    pub fn lock_shared(&self) -> io::Result<()> {
        self.file.lock_shared()
    }

    pub fn lock_exclusive(&self) -> io::Result<()> {
        self.file.lock()
    }

    /// Returns false if another process holds the lock.
    pub fn try_lock_exclusive(&self) -> io::Result<bool> {
        match self.file.try_lock() {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    pub fn unlock(&self) -> io::Result<()> {
        self.file.unlock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_shared_holders_across_descriptions() {
        let p = std::env::temp_dir().join(format!("img-lock-test-{}", std::process::id()));
        let a = LockFile::open(&p).unwrap();
        let b = LockFile::open(&p).unwrap();
        a.lock_shared().unwrap();
        assert!(!b.try_lock_exclusive().unwrap(), "a shared holder blocks an exclusive lock");
        a.unlock().unwrap();
        assert!(b.try_lock_exclusive().unwrap());
        b.unlock().unwrap();
        let _ = std::fs::remove_file(&p);
    }
}
