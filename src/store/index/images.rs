//! The `images`, `image_blobs` and `external_layers` tables: images, the
//! blobs each one references and the layers of embedded images kept
//! outside the store.

use super::blobs::{add_blob_rows_tx, set_diff_sizes_tx};
use super::tags::tag_in_tx;
use super::{digest_col, now, Index, IndexError, RemoteLayer, Result, TagName};
use crate::digest::Digest;
use crate::store::StoredBlobs;
use rusqlite::{params, Transaction};

/// What an image is made of, as the `images.kind` column records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    /// Every blob (manifest, config, layers) is in the store.
    Oci,
    /// An iSulad embedded image: its config is stored, its layers are
    /// files outside the store (`external_layers`).
    Embedded,
    /// Made by a lazy pull: some layers are read from their registry on
    /// demand (`remote_layers`) until `img pull` completes the image.
    Partial,
}

impl ImageKind {
    /// The text the index stores.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Oci => "oci",
            ImageKind::Embedded => "embedded",
            ImageKind::Partial => "partial",
        }
    }

    /// The kind stored as `s`; an unknown kind (written by a newer img) is
    /// refused rather than read as another.
    pub fn parse(s: &str) -> Result<ImageKind> {
        match s {
            "oci" => Ok(ImageKind::Oci),
            "embedded" => Ok(ImageKind::Embedded),
            "partial" => Ok(ImageKind::Partial),
            _ => Err(IndexError::UnknownKind(s.to_string())),
        }
    }
}

impl std::fmt::Display for ImageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An image as the index records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    pub id: Digest,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    /// Seconds since the epoch, from the config's `created`.
    pub created: Option<i64>,
    /// The image's size as docker and podman show it: the sum of its
    /// layers' uncompressed sizes (a layer's stored size where that is not
    /// known, as for the layers of a partial image still in the registry).
    /// For embedded images, the size their manifest gives.
    pub size: u64,
    pub architecture: String,
    pub os: String,
    pub variant: String,
    pub author: String,
    /// The config's labels as a JSON object.
    pub labels: String,
    pub added_at: i64,
    pub kind: ImageKind,
    /// Fully qualified `repository:tag` names, sorted.
    pub tags: Vec<String>,
    /// Seconds since the epoch when the image was last pulled, loaded,
    /// built, tagged, mounted or named on a command line.
    pub last_used: i64,
    /// Pinned images are never evicted to keep the store within its size.
    pub pinned: bool,
}

/// What `insert_image` records.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub id: Digest,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub created: Option<i64>,
    pub size: u64,
    pub architecture: String,
    pub os: String,
    pub variant: String,
    pub author: String,
    pub labels: String,
    pub kind: ImageKind,
    pub config_digest: Digest,
    pub layer_digests: Vec<Digest>,
    pub external_layers: Vec<ExternalLayer>,
    /// Layers of a partial image (`ImageKind::Partial`) that are not stored:
    /// they get no blob reference, only a `remote_layers` row.
    pub remote_layers: Vec<RemoteLayer>,
    /// The uncompressed sizes of layer blobs, where measured, recorded
    /// for blobs that have none yet.
    pub layer_diff_sizes: Vec<(Digest, u64)>,
}

/// A layer kept outside the store (iSulad embedded images).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalLayer {
    pub media_type: String,
    pub path_in_host: String,
    pub path_in_container: String,
    pub digest: String,
    pub size: u64,
}

/// What `delete_image` removed.
#[derive(Debug, Clone, Default)]
pub struct Deleted {
    pub untagged: Vec<String>,
    pub deleted: bool,
}

impl Index {
    /// Inserts an image, its blob references and tags in one transaction.
    /// Tags already pointing elsewhere move to this image; returns, for each
    /// moved tag, the image it left. `blobs` (the image's blobs that are
    /// stored, as `Store::commit_blobs` or `Store::stored_blobs` found them)
    /// get rows if they have none.
    pub fn insert_image(
        &mut self,
        img: &NewImage,
        blobs: &StoredBlobs,
        tags: &[TagName],
    ) -> Result<Vec<(String, Digest)>> {
        self.write(|tx| insert_image_tx(tx, img, blobs, tags))
    }

    /// `insert_image` with the signatures the image came with, in the same
    /// transaction (one commit: a pull under a signature policy costs no
    /// extra fsync).
    pub fn insert_signed_image(
        &mut self,
        img: &NewImage,
        blobs: &StoredBlobs,
        tags: &[TagName],
        sigs: &[super::StoredSignature],
    ) -> Result<Vec<(String, Digest)>> {
        self.write(|tx| {
            let moved = insert_image_tx(tx, img, blobs, tags)?;
            super::signatures::add_signatures_tx(tx, &img.id, sigs)?;
            Ok(moved)
        })
    }

    /// Deletes an image row (and with it its tags and blob references).
    pub fn delete_image(&mut self, id: &Digest) -> Result<Deleted> {
        self.write(|tx| {
            let mut untagged = Vec::new();
            {
                let mut st = tx.prepare_cached("SELECT name FROM tags WHERE image_id = ?1 ORDER BY name")?;
                for r in st.query_map(params![id.as_str()], |r| r.get::<_, String>(0))? {
                    untagged.push(r?);
                }
            }
            let deleted = tx.execute("DELETE FROM images WHERE id = ?1", params![id.as_str()])? > 0;
            Ok(Deleted { untagged, deleted })
        })
    }

    /// Image IDs starting with `prefix` (hex, without "sha256:").
    pub fn ids_with_prefix(&self, prefix: &str) -> Result<Vec<Digest>> {
        let mut st =
            self.conn.prepare_cached("SELECT id FROM images WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT 3")?;
        let lo = format!("sha256:{prefix}");
        let hi = format!("sha256:{prefix}\u{10ffff}");
        let rows = st.query_map(params![lo, hi], |r| r.get::<_, String>(0))?;
        rows.map(|r| digest_col(r?)).collect()
    }

    pub fn image(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        let mut all = self.query_images(Some(id), true)?;
        Ok(all.pop())
    }

    /// Every image with its tags, newest first.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        self.query_images(None, true)
    }

    /// Every image with its tags, newest first, without the descriptive
    /// columns (media type, platform, author are left empty): what a
    /// listing needs, at a fraction of the allocations.
    pub fn images_brief(&self) -> Result<Vec<ImageRecord>> {
        self.query_images(None, false)
    }

    fn query_images(&self, only: Option<&Digest>, full: bool) -> Result<Vec<ImageRecord>> {
        // Two flat queries joined here: a correlated, ordered subquery per
        // image costs a temp b-tree each and dominated `img images`.
        let sql = format!(
            "SELECT id, manifest_digest, {}, created, size, {}, labels, added_at,
                    coalesce(last_used, added_at), pinned
             FROM images {} ORDER BY created DESC, added_at DESC, id",
            if full { "manifest_media_type" } else { "''" },
            if full { "architecture, os, variant, author, kind" } else { "'', '', '', '', kind" },
            if only.is_some() { "WHERE id = ?1" } else { "" }
        );
        let mut tags: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
        {
            let tag_sql = if only.is_some() {
                "SELECT image_id, name FROM tags WHERE image_id = ?1 ORDER BY name"
            } else {
                "SELECT image_id, name FROM tags ORDER BY name"
            };
            let mut st = self.conn.prepare_cached(tag_sql)?;
            let map = |r: &rusqlite::Row| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?));
            let rows: Vec<(String, String)> = match only {
                Some(id) => st.query_map(params![id.as_str()], map)?.collect::<rusqlite::Result<_>>()?,
                None => st.query_map([], map)?.collect::<rusqlite::Result<_>>()?,
            };
            for (id, name) in rows {
                tags.entry(id).or_default().push(name);
            }
        }
        let totals = self.layer_totals(only)?;
        let mut st = self.conn.prepare_cached(&sql)?;
        let bad = |i: usize, s: String| {
            rusqlite::Error::FromSqlConversionFailure(
                i,
                rusqlite::types::Type::Text,
                Box::new(IndexError::BadDigest(s)),
            )
        };
        let map = |r: &rusqlite::Row| {
            let id: String = r.get(0)?;
            let tags = tags.remove(&id).unwrap_or_default();
            let md: String = r.get(1)?;
            let kind: String = r.get(9)?;
            let kind = ImageKind::parse(&kind)
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(9, rusqlite::types::Type::Text, Box::new(e)))?;
            let size = if kind == ImageKind::Embedded {
                r.get::<_, i64>(4)?.max(0) as u64
            } else {
                totals.get(&id).copied().unwrap_or(0)
            };
            Ok(ImageRecord {
                id: Digest::parse(&id).map_err(|_| bad(0, id.clone()))?,
                manifest_digest: Digest::parse(&md).map_err(|_| bad(1, md.clone()))?,
                manifest_media_type: r.get(2)?,
                created: r.get(3)?,
                size,
                architecture: r.get(5)?,
                os: r.get(6)?,
                variant: r.get(7)?,
                author: r.get(8)?,
                kind,
                labels: r.get(10)?,
                added_at: r.get(11)?,
                tags,
                last_used: r.get(12)?,
                pinned: r.get::<_, i64>(13)? != 0,
            })
        };
        let mut out = Vec::with_capacity(1024);
        match only {
            Some(id) => {
                for r in st.query_map(params![id.as_str()], map)? {
                    out.push(r.map_err(row_error)?);
                }
            }
            None => {
                for r in st.query_map([], map)? {
                    out.push(r.map_err(row_error)?);
                }
            }
        }
        Ok(out)
    }

    /// Each image's layer total: uncompressed sizes where known, stored
    /// sizes elsewhere, and for a partial image its layers in the registry
    /// at their compressed size. Flat grouped queries, like `query_images`.
    fn layer_totals(&self, only: Option<&Digest>) -> Result<std::collections::HashMap<String, u64>> {
        let mut totals: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        let filter = if only.is_some() { "AND ib.image_id = ?1" } else { "" };
        let stored = format!(
            "SELECT ib.image_id, sum(coalesce(b.diff_size, b.size)) FROM image_blobs ib
             JOIN blobs b ON b.digest = ib.digest WHERE ib.role = 'layer' {filter} GROUP BY ib.image_id"
        );
        let remote = format!(
            "SELECT image_id, sum(size) FROM remote_layers {} GROUP BY image_id",
            if only.is_some() { "WHERE image_id = ?1" } else { "" }
        );
        for sql in [stored, remote] {
            let mut st = self.conn.prepare_cached(&sql)?;
            let map = |r: &rusqlite::Row| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?));
            let rows: Vec<(String, i64)> = match only {
                Some(id) => st.query_map(params![id.as_str()], map)?.collect::<rusqlite::Result<_>>()?,
                None => st.query_map([], map)?.collect::<rusqlite::Result<_>>()?,
            };
            for (id, n) in rows {
                *totals.entry(id).or_default() += n.max(0) as u64;
            }
        }
        Ok(totals)
    }

    /// The blobs of an image by role, in order: (role, position, digest).
    pub fn image_blobs(&self, id: &Digest) -> Result<Vec<(String, Digest)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT role, digest FROM image_blobs WHERE image_id = ?1
             ORDER BY CASE role WHEN 'manifest' THEN 0 WHEN 'config' THEN 1 ELSE 2 END, position",
        )?;
        let rows = st.query_map(params![id.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|r| {
            let (role, d) = r?;
            Ok((role, digest_col(d)?))
        })
        .collect()
    }

    pub fn external_layers(&self, id: &Digest) -> Result<Vec<ExternalLayer>> {
        let mut st = self.conn.prepare_cached(
            "SELECT media_type, path_in_host, path_in_container, digest, size
             FROM external_layers WHERE image_id = ?1 ORDER BY position",
        )?;
        let rows = st.query_map(params![id.as_str()], |r| {
            Ok(ExternalLayer {
                media_type: r.get(0)?,
                path_in_host: r.get(1)?,
                path_in_container: r.get(2)?,
                digest: r.get(3)?,
                size: r.get::<_, i64>(4)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// A row that did not convert: the index's own error when a column held
/// what the index refuses (an invalid digest, an unknown kind), as such.
fn row_error(e: rusqlite::Error) -> IndexError {
    if let rusqlite::Error::FromSqlConversionFailure(i, t, inner) = e {
        return match inner.downcast::<IndexError>() {
            Ok(ie) => *ie,
            Err(inner) => IndexError::Sql(rusqlite::Error::FromSqlConversionFailure(i, t, inner)),
        };
    }
    IndexError::Sql(e)
}

/// `Index::insert_image` inside the caller's transaction.
pub(super) fn insert_image_tx(
    tx: &Transaction,
    img: &NewImage,
    blobs: &[(Digest, u64)],
    tags: &[TagName],
) -> Result<Vec<(String, Digest)>> {
    add_blob_rows_tx(tx, blobs)?;
    set_diff_sizes_tx(tx, &img.layer_diff_sizes)?;
    let exists: bool = tx.prepare_cached("SELECT 1 FROM images WHERE id = ?1")?.exists(params![img.id.as_str()])?;
    if !exists {
        tx.execute(
            "INSERT INTO images(id, manifest_digest, manifest_media_type, created, size,
                architecture, os, variant, author, labels, added_at, kind)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                img.id.as_str(),
                img.manifest_digest.as_str(),
                img.manifest_media_type,
                img.created,
                img.size as i64,
                img.architecture,
                img.os,
                img.variant,
                img.author,
                img.labels,
                now(),
                img.kind.as_str(),
            ],
        )?;
        let mut st =
            tx.prepare_cached("INSERT INTO image_blobs(image_id, role, position, digest) VALUES (?1, ?2, ?3, ?4)")?;
        if img.kind != ImageKind::Embedded {
            st.execute(params![img.id.as_str(), "manifest", 0, img.manifest_digest.as_str()])?;
        }
        st.execute(params![img.id.as_str(), "config", 0, img.config_digest.as_str()])?;
        for (i, d) in img.layer_digests.iter().enumerate() {
            if img.remote_layers.iter().any(|r| r.position == i) {
                continue;
            }
            st.execute(params![img.id.as_str(), "layer", i as i64, d.as_str()])?;
        }
        drop(st);
        let mut st = tx.prepare_cached(
            "INSERT INTO remote_layers(image_id, position, digest, size, media_type, toc_digest, source)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for r in &img.remote_layers {
            st.execute(params![
                img.id.as_str(),
                r.position as i64,
                r.digest.as_str(),
                r.size as i64,
                r.media_type,
                r.toc_digest,
                r.source
            ])?;
        }
        drop(st);
        let mut st = tx.prepare_cached(
            "INSERT INTO external_layers(image_id, position, media_type, path_in_host,
                path_in_container, digest, size) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for (i, l) in img.external_layers.iter().enumerate() {
            st.execute(params![
                img.id.as_str(),
                i as i64,
                l.media_type,
                l.path_in_host,
                l.path_in_container,
                l.digest,
                l.size as i64
            ])?;
        }
    } else if img.remote_layers.is_empty() && img.kind != ImageKind::Embedded {
        // A partial image is completed: its layers are stored now.
        let partial: bool = tx
            .prepare_cached("SELECT 1 FROM images WHERE id = ?1 AND kind = 'partial'")?
            .exists(params![img.id.as_str()])?;
        if partial {
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO image_blobs(image_id, role, position, digest) VALUES (?1, 'layer', ?2, ?3)",
            )?;
            for (i, d) in img.layer_digests.iter().enumerate() {
                st.execute(params![img.id.as_str(), i as i64, d.as_str()])?;
            }
            drop(st);
            tx.execute("DELETE FROM remote_layers WHERE image_id = ?1", params![img.id.as_str()])?;
            tx.execute(
                "UPDATE images SET kind = ?2, size = ?3 WHERE id = ?1",
                params![img.id.as_str(), img.kind.as_str(), img.size as i64],
            )?;
        }
    }
    // Pulled, loaded, built or committed again: used now.
    tx.prepare_cached("UPDATE images SET last_used = ?2 WHERE id = ?1")?.execute(params![img.id.as_str(), now()])?;
    let mut moved = Vec::new();
    for t in tags {
        if let Some(prev) = tag_in_tx(tx, t, &img.id)? {
            moved.push((t.name.clone(), prev));
        }
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::index::tests::{blobs_of, d, new_image, tag, temp_dir};

    #[test]
    fn image_size_is_its_layers_uncompressed_size() {
        let dir = temp_dir("sizes");
        let mut ix = Index::open(&dir.join("img.db")).unwrap();
        // Layer 20 appears twice; 21 is not measured: its stored size (1) counts.
        let mut a = new_image(1, &[20, 21, 20]);
        a.layer_diff_sizes = vec![(d(20), 100)];
        ix.insert_image(&a, &blobs_of(&a), &[tag("docker.io/library/a:1")]).unwrap();
        assert_eq!(ix.image(&a.id).unwrap().unwrap().size, 201);
        assert_eq!(ix.unmeasured_layers().unwrap(), vec![d(21)]);
        ix.set_diff_sizes(&[(d(21), 50), (d(20), 7)]).unwrap();
        assert_eq!(ix.diff_size(&d(20)).unwrap(), Some(100), "a recorded size is not replaced");
        assert_eq!(ix.image(&a.id).unwrap().unwrap().size, 250);
        assert_eq!(ix.images_brief().unwrap()[0].size, 250);
        assert!(ix.unmeasured_layers().unwrap().is_empty());
        // The same layers reached another way: the same size.
        let b = new_image(2, &[20, 21, 20]);
        ix.insert_image(&b, &blobs_of(&b), &[]).unwrap();
        assert_eq!(ix.image(&b.id).unwrap().unwrap().size, 250);
    }

    #[test]
    fn image_blobs_and_tags_round_trip_and_cascade() {
        let dir = temp_dir("roundtrip");
        let mut ix = Index::open(&dir.join("img.db")).unwrap();
        let a = new_image(1, &[10, 11]);
        let b = new_image(2, &[10, 12]);
        ix.insert_image(&a, &blobs_of(&a), &[tag("docker.io/library/a:1")]).unwrap();
        ix.insert_image(&b, &blobs_of(&b), &[tag("docker.io/library/b:1")]).unwrap();
        assert_eq!(ix.images().unwrap().len(), 2);
        assert!(ix.unreferenced_blobs().unwrap().is_empty());
        // Moving a tag reports where it came from.
        let moved = ix.tag(&tag("docker.io/library/a:1"), &b.id).unwrap();
        assert_eq!(moved, Some(a.id.clone()));
        let del = ix.delete_image(&a.id).unwrap();
        assert!(del.deleted);
        let unref: Vec<_> = ix.unreferenced_blobs().unwrap().into_iter().map(|x| x.0).collect();
        // Layer 10 is shared with b and must stay referenced.
        assert!(!unref.contains(&d(10)));
        assert!(unref.contains(&d(11)));
        let gone = ix.delete_unreferenced_blob_rows(&[d(10), d(11)]).unwrap();
        assert_eq!(gone, vec![d(11)]);
        assert!(ix.integrity_problems().unwrap().is_empty());
    }

    #[test]
    fn kinds_read_as_written_and_unknown_ones_are_refused() {
        for k in [ImageKind::Oci, ImageKind::Embedded, ImageKind::Partial] {
            assert_eq!(ImageKind::parse(k.as_str()).unwrap(), k);
        }
        let dir = temp_dir("kinds");
        let mut ix = Index::open(&dir.join("img.db")).unwrap();
        let mut a = new_image(1, &[]);
        a.kind = ImageKind::Embedded;
        ix.insert_image(&a, &blobs_of(&a), &[]).unwrap();
        assert_eq!(ix.image(&a.id).unwrap().unwrap().kind, ImageKind::Embedded);
        let kind: String =
            ix.conn.query_row("SELECT kind FROM images WHERE id = ?1", [a.id.as_str()], |r| r.get(0)).unwrap();
        assert_eq!(kind, "embedded", "the stored text is unchanged");
        ix.conn.execute("UPDATE images SET kind = 'squashed' WHERE id = ?1", [a.id.as_str()]).unwrap();
        let err = ix.image(&a.id).unwrap_err().to_string();
        assert_eq!(err, "image index holds an image of unknown kind \"squashed\"; upgrade img");
    }

    #[test]
    fn id_prefix_lookup() {
        let dir = temp_dir("prefix");
        let mut ix = Index::open(&dir.join("img.db")).unwrap();
        let a = new_image(1, &[]);
        ix.insert_image(&a, &blobs_of(&a), &[]).unwrap();
        let hex = a.id.hex();
        assert_eq!(ix.ids_with_prefix(&hex[..6]).unwrap(), vec![a.id.clone()]);
        assert!(ix.ids_with_prefix("ffffffffff").unwrap().is_empty() || hex.starts_with("ffffffffff"));
    }
}
