//! The `tags` table: names that point at images.

use super::{digest_col, now, Index, IndexError, Result};
use crate::digest::Digest;
use rusqlite::{params, OptionalExtension, Transaction};

/// A name to point at an image.
#[derive(Debug, Clone)]
pub struct TagName {
    pub name: String,
    pub repository: String,
    pub tag: String,
}

impl Index {
    /// Points `name` at `image_id`; returns the image it pointed at before, if another.
    pub fn tag(&mut self, name: &TagName, image_id: &Digest) -> Result<Option<Digest>> {
        self.write(|tx| {
            let exists = tx.prepare_cached("SELECT 1 FROM images WHERE id = ?1")?.exists(params![image_id.as_str()])?;
            if !exists {
                return Err(IndexError::ImageGone(image_id.clone()));
            }
            tag_in_tx(tx, name, image_id)
        })
    }

    /// Points every name at `image_id` if the image still exists, in one
    /// transaction; returns false (changing nothing) if it does not.
    pub fn tag_existing(&mut self, names: &[TagName], image_id: &Digest) -> Result<bool> {
        self.write(|tx| {
            let exists = tx.prepare_cached("SELECT 1 FROM images WHERE id = ?1")?.exists(params![image_id.as_str()])?;
            if !exists {
                return Ok(false);
            }
            for n in names {
                tag_in_tx(tx, n, image_id)?;
            }
            Ok(true)
        })
    }

    /// Removes one tag; returns whether it existed.
    pub fn untag(&mut self, name: &str) -> Result<bool> {
        self.write(|tx| Ok(tx.execute("DELETE FROM tags WHERE name = ?1", params![name])? > 0))
    }

    /// The image a tag points at.
    pub fn image_for_tag(&self, name: &str) -> Result<Option<Digest>> {
        let mut st = self.conn.prepare_cached("SELECT image_id FROM tags WHERE name = ?1")?;
        let id: Option<String> = st.query_row(params![name], |r| r.get(0)).optional()?;
        id.map(digest_col).transpose()
    }
}

pub(super) fn tag_in_tx(tx: &Transaction, name: &TagName, image_id: &Digest) -> Result<Option<Digest>> {
    let prev: Option<String> = tx
        .prepare_cached("SELECT image_id FROM tags WHERE name = ?1")?
        .query_row(params![name.name], |r| r.get(0))
        .optional()?;
    tx.execute(
        "INSERT INTO tags(name, repository, tag, image_id, tagged_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id, tagged_at = excluded.tagged_at",
        params![name.name, name.repository, name.tag, image_id.as_str(), now()],
    )?;
    // Tagging is a use (what eviction goes by, least recent first).
    tx.prepare_cached("UPDATE images SET last_used = ?2 WHERE id = ?1")?.execute(params![image_id.as_str(), now()])?;
    match prev {
        Some(p) if p != image_id.as_str() => Ok(Some(digest_col(p)?)),
        _ => Ok(None),
    }
}
