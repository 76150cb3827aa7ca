//! Garbage collection while serving: expired uploads, upload files left
//! by an earlier process, and uploaded blobs no manifest came for.

use super::{now, Api};

impl Api {
    /// Drops uploads untouched for longer than the settings allow, and
    /// upload files no live upload owns (left by an earlier process) once
    /// they are that old; forgets uploaded blobs that no manifest came for
    /// within a day.
    pub fn collect_garbage(&self) {
        let ttl = self.settings.upload_ttl;
        let mut live = Vec::new();
        {
            let mut ups = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
            ups.retain(|_, u| {
                let keep = u.idle() < ttl;
                if !keep {
                    let _ = std::fs::remove_file(&u.path);
                }
                keep
            });
            live.extend(ups.keys().cloned());
        }
        if let Ok(rd) = std::fs::read_dir(self.paths.uploads_dir()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if live.contains(&name) {
                    continue;
                }
                let old =
                    e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_none_or(|a| a > ttl);
                if old {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let _ = self.with_index(|ix| ix.expire_served_uploads(now() - 86_400));
    }
}
