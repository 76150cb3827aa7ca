//! The `blobs`, `pending_blobs` and `doomed_blobs` tables: which complete
//! files `blobs/sha256/` holds, those an ingest is about to link there, and
//! those whose rows are gone but whose files may remain.

use super::{digest_col, now, Index, Result};
use crate::digest::Digest;
use crate::store::StoredBlobs;
use rusqlite::{params, OptionalExtension, Transaction};

impl Index {
    /// Records digests an ingest is about to move into `blobs/`.
    pub fn add_pending(&mut self, digests: &[Digest]) -> Result<()> {
        self.write(|tx| {
            let mut st = tx.prepare_cached("INSERT OR IGNORE INTO pending_blobs(digest, added_at) VALUES (?1, ?2)")?;
            for d in digests {
                st.execute(params![d.as_str(), now()])?;
            }
            Ok(())
        })
    }

    pub fn pending(&self) -> Result<Vec<Digest>> {
        let mut st = self.conn.prepare_cached("SELECT digest FROM pending_blobs")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| digest_col(r?)).collect()
    }

    /// Turns pending digests whose file exists (`present`, with their sizes)
    /// into blob rows, and forgets the rest.
    pub fn resolve_pending(&mut self, present: &StoredBlobs, absent: &[Digest]) -> Result<()> {
        self.write(|tx| {
            for (d, size) in present.iter() {
                tx.execute(
                    "INSERT OR IGNORE INTO blobs(digest, size, added_at) VALUES (?1, ?2, ?3)",
                    params![d.as_str(), *size as i64, now()],
                )?;
                tx.execute("DELETE FROM pending_blobs WHERE digest = ?1", params![d.as_str()])?;
            }
            for d in absent {
                tx.execute("DELETE FROM pending_blobs WHERE digest = ?1", params![d.as_str()])?;
            }
            Ok(())
        })
    }

    pub fn has_blob(&self, d: &Digest) -> Result<bool> {
        let mut st = self.conn.prepare_cached("SELECT 1 FROM blobs WHERE digest = ?1")?;
        Ok(st.exists(params![d.as_str()])?)
    }

    /// Every blob row with its size.
    pub fn blobs(&self) -> Result<Vec<(Digest, u64)>> {
        let mut st = self.conn.prepare_cached("SELECT digest, size FROM blobs ORDER BY digest")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        rows.map(|r| {
            let (d, s) = r?;
            Ok((digest_col(d)?, s as u64))
        })
        .collect()
    }

    /// Blob rows no image and nothing `img serve` serves refers to.
    pub fn unreferenced_blobs(&self) -> Result<Vec<(Digest, u64)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT b.digest, b.size FROM blobs b
             WHERE NOT EXISTS (SELECT 1 FROM image_blobs ib WHERE ib.digest = b.digest)
               AND NOT EXISTS (SELECT 1 FROM served_manifests m WHERE m.digest = b.digest)
               AND NOT EXISTS (SELECT 1 FROM served_blob_refs r WHERE r.digest = b.digest)
               AND NOT EXISTS (SELECT 1 FROM served_uploads u WHERE u.digest = b.digest)
             ORDER BY b.digest",
        )?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        rows.map(|r| {
            let (d, s) = r?;
            Ok((digest_col(d)?, s as u64))
        })
        .collect()
    }

    /// Deletes blob rows that are still unreferenced; returns those deleted.
    /// The caller unlinks their files afterwards (row first, file second).
    pub fn delete_unreferenced_blob_rows(&mut self, candidates: &[Digest]) -> Result<Vec<Digest>> {
        self.write(|tx| {
            let mut out = Vec::new();
            let mut st = tx.prepare_cached(
                "DELETE FROM blobs WHERE digest = ?1
                 AND NOT EXISTS (SELECT 1 FROM image_blobs WHERE digest = ?1)
                 AND NOT EXISTS (SELECT 1 FROM served_manifests WHERE digest = ?1)
                 AND NOT EXISTS (SELECT 1 FROM served_blob_refs WHERE digest = ?1)
                 AND NOT EXISTS (SELECT 1 FROM served_uploads WHERE digest = ?1)",
            )?;
            let mut doom = tx.prepare_cached("INSERT OR IGNORE INTO doomed_blobs(digest, added_at) VALUES (?1, ?2)")?;
            for d in candidates {
                if st.execute(params![d.as_str()])? > 0 {
                    doom.execute(params![d.as_str(), now()])?;
                    out.push(d.clone());
                }
            }
            Ok(out)
        })
    }

    /// Blobs whose rows were deleted but whose files may still exist.
    pub fn doomed(&self) -> Result<Vec<Digest>> {
        let mut st = self.conn.prepare_cached("SELECT digest FROM doomed_blobs")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| digest_col(r?)).collect()
    }

    /// Forgets doomed blobs once their files are gone.
    pub fn clear_doomed(&mut self, digests: &[Digest]) -> Result<()> {
        if digests.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut st = tx.prepare_cached("DELETE FROM doomed_blobs WHERE digest = ?1")?;
            for d in digests {
                st.execute(params![d.as_str()])?;
            }
            Ok(())
        })
    }

    /// Adds rows for blob files that exist on disk but are not indexed.
    pub fn add_blob_rows(&mut self, blobs: &StoredBlobs) -> Result<()> {
        self.write(|tx| {
            let mut st =
                tx.prepare_cached("INSERT OR IGNORE INTO blobs(digest, size, added_at) VALUES (?1, ?2, ?3)")?;
            for (d, s) in blobs.iter() {
                st.execute(params![d.as_str(), *s as i64, now()])?;
            }
            Ok(())
        })
    }

    /// References whose blob row is missing (a broken index).
    pub fn dangling_references(&self) -> Result<Vec<(Digest, String, Digest)>> {
        let mut st = self.conn.prepare(
            "SELECT ib.image_id, ib.role, ib.digest FROM image_blobs ib
             WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = ib.digest)",
        )?;
        let rows =
            st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
        rows.map(|r| {
            let (i, role, d) = r?;
            Ok((digest_col(i)?, role, digest_col(d)?))
        })
        .collect()
    }

    /// The uncompressed size recorded for a layer blob, if any.
    pub fn diff_size(&self, d: &Digest) -> Result<Option<u64>> {
        let mut st = self.conn.prepare_cached("SELECT diff_size FROM blobs WHERE digest = ?1")?;
        let v: Option<Option<i64>> = st.query_row(params![d.as_str()], |r| r.get(0)).optional()?;
        Ok(v.flatten().map(|n| n.max(0) as u64))
    }

    /// Layer blobs of stored images whose uncompressed size is not recorded
    /// (the layers of embedded images, squashfs files whose size is their
    /// manifest's, are not counted).
    pub fn unmeasured_layers(&self) -> Result<Vec<Digest>> {
        let mut st = self.conn.prepare_cached(
            "SELECT DISTINCT b.digest FROM blobs b JOIN image_blobs ib ON ib.digest = b.digest
             JOIN images i ON i.id = ib.image_id
             WHERE ib.role = 'layer' AND i.kind != 'embedded' AND b.diff_size IS NULL ORDER BY b.digest",
        )?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| digest_col(r?)).collect()
    }

    /// Records the uncompressed sizes of layer blobs that have none.
    pub fn set_diff_sizes(&mut self, sizes: &[(Digest, u64)]) -> Result<()> {
        self.write(|tx| set_diff_sizes_tx(tx, sizes))
    }

    /// How many images use each blob of `id` (for "shared size").
    pub fn blob_use_counts(&self) -> Result<Vec<(Digest, u64, u64)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT b.digest, b.size, (SELECT count(DISTINCT image_id) FROM image_blobs ib WHERE ib.digest = b.digest)
             FROM blobs b",
        )?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
        rows.map(|r| {
            let (d, s, n) = r?;
            Ok((digest_col(d)?, s as u64, n as u64))
        })
        .collect()
    }
}

/// Rows for blobs now in `blobs/`, no longer pending.
pub(super) fn add_blob_rows_tx(tx: &Transaction, blobs: &[(Digest, u64)]) -> Result<()> {
    let mut st = tx.prepare_cached("INSERT OR IGNORE INTO blobs(digest, size, added_at) VALUES (?1, ?2, ?3)")?;
    for (d, s) in blobs {
        st.execute(params![d.as_str(), *s as i64, now()])?;
    }
    drop(st);
    let mut st = tx.prepare_cached("DELETE FROM pending_blobs WHERE digest = ?1")?;
    for (d, _) in blobs {
        st.execute(params![d.as_str()])?;
    }
    Ok(())
}

/// Records uncompressed sizes where none is recorded yet.
pub(super) fn set_diff_sizes_tx(tx: &Transaction, sizes: &[(Digest, u64)]) -> Result<()> {
    let mut st = tx.prepare_cached("UPDATE blobs SET diff_size = ?2 WHERE digest = ?1 AND diff_size IS NULL")?;
    for (d, n) in sizes {
        st.execute(params![d.as_str(), *n as i64])?;
    }
    Ok(())
}
