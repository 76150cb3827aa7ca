//! Counts and sizes across the tables, for `img info` and `img system df`.

use super::{Index, Result};

impl Index {
    /// Counts for `img info`: (images, tags, blobs, blob bytes).
    pub fn counts(&self) -> Result<(u64, u64, u64, u64)> {
        Ok(self.conn.query_row(
            "SELECT (SELECT count(*) FROM images), (SELECT count(*) FROM tags),
                    (SELECT count(*) FROM blobs), (SELECT coalesce(sum(size), 0) FROM blobs)",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, i64>(3)? as u64,
                ))
            },
        )?)
    }
}
