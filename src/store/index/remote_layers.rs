//! The `remote_layers` table: the layers of partial images that are read
//! from their registry on demand.

use super::{digest_col, Index, Result};
use crate::digest::Digest;
use rusqlite::params;

/// A layer of a partial image that is read from its registry on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLayer {
    /// Its place among the image's layers, bottom first.
    pub position: usize,
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    /// The digest of its table of contents, from the manifest.
    pub toc_digest: String,
    /// Where it is read from: `registry/repository`.
    pub source: String,
}

impl Index {
    /// The layers of partial image `id` that are not stored, bottom first.
    pub fn remote_layers(&self, id: &Digest) -> Result<Vec<RemoteLayer>> {
        let mut st = self.conn.prepare_cached(
            "SELECT position, digest, size, media_type, toc_digest, source
             FROM remote_layers WHERE image_id = ?1 ORDER BY position",
        )?;
        let rows = st.query_map(params![id.as_str()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        rows.map(|r| {
            let (position, d, size, media_type, toc_digest, source) = r?;
            Ok(RemoteLayer {
                position: position as usize,
                digest: digest_col(d)?,
                size: size as u64,
                media_type,
                toc_digest,
                source,
            })
        })
        .collect()
    }

    /// Every digest some partial image still reads from a registry.
    pub fn remote_layer_digests(&self) -> Result<Vec<Digest>> {
        let mut st = self.conn.prepare_cached("SELECT DISTINCT digest FROM remote_layers ORDER BY digest")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| digest_col(r?)).collect()
    }
}
