//! Counts and sizes across the tables, for `img info` and `img system df`.

use super::{digest_col, Index, Result};
use crate::digest::Digest;
use std::collections::HashMap;

/// Blob bytes by who uses them (`Index::blob_usage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlobUsage {
    /// Every blob the index records.
    pub total: u64,
    /// Blobs no image references.
    pub unreferenced: u64,
    /// Blobs that one image references, an image with no tag.
    pub only_untagged: u64,
}

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

    /// Blob bytes for `img system df`, in one query: all blobs, those no
    /// image references, and those that only one image references when
    /// that image has no tag (`img prune` would remove both kinds).
    pub fn blob_usage(&self) -> Result<BlobUsage> {
        Ok(self.conn.query_row(
            "WITH uses AS (SELECT digest, count(DISTINCT image_id) AS n, min(image_id) AS image_id
                           FROM image_blobs GROUP BY digest)
             SELECT coalesce(sum(b.size), 0),
                    coalesce(sum(CASE WHEN u.n IS NULL THEN b.size ELSE 0 END), 0),
                    coalesce(sum(CASE WHEN u.n = 1 AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.image_id = u.image_id)
                                      THEN b.size ELSE 0 END), 0)
             FROM blobs b LEFT JOIN uses u ON u.digest = b.digest",
            [],
            |r| {
                Ok(BlobUsage {
                    total: r.get::<_, i64>(0)?.max(0) as u64,
                    unreferenced: r.get::<_, i64>(1)?.max(0) as u64,
                    only_untagged: r.get::<_, i64>(2)?.max(0) as u64,
                })
            },
        )?)
    }

    /// Each image's stored blob bytes, in one query: (shared with other
    /// images, its own). A blob it references twice counts twice.
    pub fn image_blob_shares(&self) -> Result<HashMap<Digest, (u64, u64)>> {
        let mut st = self.conn.prepare(
            "WITH uses AS (SELECT digest, count(DISTINCT image_id) AS n FROM image_blobs GROUP BY digest)
             SELECT ib.image_id, sum(CASE WHEN u.n > 1 THEN b.size ELSE 0 END),
                    sum(CASE WHEN u.n > 1 THEN 0 ELSE b.size END)
             FROM image_blobs ib JOIN blobs b ON b.digest = ib.digest JOIN uses u ON u.digest = ib.digest
             GROUP BY ib.image_id",
        )?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
        rows.map(|r| {
            let (id, shared, unique) = r?;
            Ok((digest_col(id)?, (shared.max(0) as u64, unique.max(0) as u64)))
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::index::tests::{blobs_of, d, new_image, tag, temp_dir};

    /// The two queries give what the per-blob, per-image loops of
    /// `img system df` used to compute from `blob_use_counts` and `image_blobs`.
    #[test]
    fn usage_queries_match_the_per_image_loops() {
        let dir = temp_dir("usage");
        let mut ix = Index::open(&dir.join("img.db")).unwrap();
        let a = new_image(1, &[10, 11]);
        let b = new_image(2, &[10, 12]);
        let c = new_image(3, &[13, 13]);
        ix.insert_image(&a, &blobs_of(&a), &[tag("docker.io/library/a:1")]).unwrap();
        ix.insert_image(&b, &blobs_of(&b), &[]).unwrap();
        ix.insert_image(&c, &blobs_of(&c), &[]).unwrap();
        ix.add_blob_rows(&crate::store::StoredBlobs::assumed(vec![(d(14), 1000)])).unwrap();

        let uses = ix.blob_use_counts().unwrap();
        let images = ix.images().unwrap();
        let dangling: Vec<_> = images.iter().filter(|i| i.tags.is_empty()).collect();
        let total: u64 = uses.iter().map(|(_, s, _)| s).sum();
        let mut reclaim: u64 = uses.iter().filter(|(_, _, n)| *n == 0).map(|(_, s, _)| s).sum();
        for (dg, s, n) in &uses {
            if *n == 1 && dangling.iter().any(|i| ix.image_blobs(&i.id).unwrap().iter().any(|(_, x)| x == dg)) {
                reclaim += s;
            }
        }
        let u = ix.blob_usage().unwrap();
        assert_eq!(u.total, total);
        assert_eq!(u.unreferenced + u.only_untagged, reclaim);
        assert_eq!(u.unreferenced, 1000);

        let shares = ix.image_blob_shares().unwrap();
        for img in &images {
            let (mut shared, mut unique) = (0, 0);
            for (_, dg) in ix.image_blobs(&img.id).unwrap() {
                if let Some((_, s, n)) = uses.iter().find(|(x, _, _)| x == &dg) {
                    if *n > 1 {
                        shared += s
                    } else {
                        unique += s
                    }
                }
            }
            assert_eq!(shares[&img.id], (shared, unique), "{}", img.id);
        }
        assert_eq!(shares[&c.id], (0, 4), "a layer used twice by one image counts twice");
    }
}
