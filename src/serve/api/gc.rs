//! Garbage collection while serving: what the backend collects (expired
//! uploads and what they left, blobs nothing refers to).

use super::Api;

impl Api {
    /// Drops uploads untouched for longer than the settings allow, and
    /// whatever else the backend collects.
    pub fn collect_garbage(&self) {
        self.backend.collect_garbage(self.settings.upload_ttl);
    }
}
