//! A directory for one unit test, under the system's temporary directory,
//! removed with everything in it when the test is done (found: helpers
//! made `img-blobs-*` and `img-index-test-*` directories and left them).

use std::path::{Path, PathBuf};

pub struct TestDir(PathBuf);

impl TestDir {
    /// A new, empty directory named after `name` and this process.
    pub fn new(name: &str) -> TestDir {
        let d = std::env::temp_dir().join(format!("img-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
        TestDir(d)
    }
}

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
