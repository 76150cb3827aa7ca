//! The `build_cache` table: the layers that build steps made, by step key.

use super::{digest_col, now, Index, Result};
use crate::digest::Digest;
use rusqlite::params;

/// A build step's cached result: the layer it made (digest, DiffID, size,
/// media type), if any, and the time of its history entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub key: String,
    pub layer: Option<(Digest, Digest, u64, String)>,
    pub created: String,
}

impl Index {
    /// The cached result of build step `key`, if its layer (if any) is stored.
    pub fn cache_get(&self, key: &str) -> Result<Option<CacheEntry>> {
        let mut st = self.conn.prepare_cached(
            "SELECT c.layer, c.diff_id, c.size, c.media_type, c.created FROM build_cache c
             WHERE c.key = ?1 AND (c.layer IS NULL OR EXISTS (SELECT 1 FROM blobs b WHERE b.digest = c.layer))",
        )?;
        let mut rows = st.query(params![key])?;
        let Some(r) = rows.next()? else { return Ok(None) };
        let layer = match r.get::<_, Option<String>>(0)? {
            None => None,
            Some(d) => {
                let diff: String = r.get(1)?;
                let size: i64 = r.get(2)?;
                let mt: String = r.get(3)?;
                Some((digest_col(d)?, digest_col(diff)?, size.max(0) as u64, mt))
            }
        };
        Ok(Some(CacheEntry { key: key.to_string(), layer, created: r.get(4)? }))
    }

    /// Records build steps' results (replacing older ones of the same keys).
    pub fn cache_put(&mut self, entries: &[CacheEntry]) -> Result<()> {
        self.write(|tx| {
            let mut st = tx.prepare_cached(
                "INSERT OR REPLACE INTO build_cache(key, layer, diff_id, size, media_type, created, used_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for e in entries {
                let (l, d, s, m) = match &e.layer {
                    Some((l, d, s, m)) => (Some(l.as_str()), Some(d.as_str()), Some(*s as i64), Some(m.as_str())),
                    None => (None, None, None, None),
                };
                st.execute(params![e.key, l, d, s, m, e.created, now()])?;
            }
            Ok(())
        })
    }

    /// Forgets the whole build cache; returns how many steps it held.
    pub fn cache_clear(&mut self) -> Result<usize> {
        self.write(|tx| Ok(tx.execute("DELETE FROM build_cache", [])?))
    }
}
