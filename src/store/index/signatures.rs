//! The `signatures` table: the signatures each image came with or was
//! given, kept as found so that push, save and verify can use them again.

use super::{digest_col, now, Index, Result};
use crate::digest::Digest;
use rusqlite::params;

/// A signature as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSignature {
    /// The digest it signs: the image's manifest, or the index it was chosen from.
    pub signed_digest: Digest,
    /// `simple` or `sigstore`.
    pub kind: String,
    /// The OpenPGP message, or the sigstore payload.
    pub body: Vec<u8>,
    /// For sigstore: the payload layer's annotations, as a JSON object.
    pub annotations: String,
}

/// Records `sigs` for image `id` in `tx` (those it has are kept once).
pub(super) fn add_signatures_tx(tx: &rusqlite::Transaction, id: &Digest, sigs: &[StoredSignature]) -> Result<()> {
    let mut st = tx.prepare_cached(
        "INSERT OR IGNORE INTO signatures
         (image_id, signed_digest, kind, body, annotations, body_digest, added_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for s in sigs {
        let body_digest = Digest::of_bytes(&s.body);
        st.execute(params![
            id.as_str(),
            s.signed_digest.as_str(),
            s.kind,
            s.body,
            s.annotations,
            body_digest.as_str(),
            now()
        ])?;
    }
    Ok(())
}

impl Index {
    /// Records `sigs` for image `id` (those it already has are kept once).
    pub fn add_signatures(&mut self, id: &Digest, sigs: &[StoredSignature]) -> Result<()> {
        if sigs.is_empty() {
            return Ok(());
        }
        let id = id.clone();
        self.write(|tx| add_signatures_tx(tx, &id, sigs))
    }

    /// The signatures of image `id`, oldest first.
    pub fn signatures(&self, id: &Digest) -> Result<Vec<StoredSignature>> {
        let mut st = self.conn.prepare_cached(
            "SELECT signed_digest, kind, body, annotations FROM signatures
             WHERE image_id = ?1 ORDER BY added_at, rowid",
        )?;
        let rows = st.query_map(params![id.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Vec<u8>>(2)?, r.get::<_, String>(3)?))
        })?;
        rows.map(|r| {
            let (d, kind, body, annotations) = r?;
            Ok(StoredSignature { signed_digest: digest_col(d)?, kind, body, annotations })
        })
        .collect()
    }
}

impl Index {
    /// Adds a simple signature of manifest `d` of served repository `repo`
    /// (kept once); refused with `false` when `max` are already there.
    pub fn add_served_signature(&mut self, repo: &str, d: &Digest, body: &[u8], max: usize) -> Result<bool> {
        let body_digest = Digest::of_bytes(body);
        self.write(|tx| {
            let n: i64 = tx.query_row(
                "SELECT count(*) FROM served_signatures WHERE repository = ?1 AND digest = ?2",
                params![repo, d.as_str()],
                |r| r.get(0),
            )?;
            if n as usize >= max {
                return Ok(false);
            }
            tx.execute(
                "INSERT OR IGNORE INTO served_signatures (repository, digest, body, body_digest, added_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![repo, d.as_str(), body, body_digest.as_str(), now()],
            )?;
            Ok(true)
        })
    }

    /// The simple signatures of manifest `d` of served repository `repo`, oldest first.
    pub fn served_signatures(&self, repo: &str, d: &Digest) -> Result<Vec<Vec<u8>>> {
        let mut st = self.conn.prepare_cached(
            "SELECT body FROM served_signatures WHERE repository = ?1 AND digest = ?2 ORDER BY added_at, rowid",
        )?;
        let rows = st.query_map(params![repo, d.as_str()], |r| r.get::<_, Vec<u8>>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{blobs_of, new_image, temp_dir};
    use super::*;

    #[test]
    fn signatures_are_kept_once_and_go_with_their_image() {
        let dir = temp_dir("sigs");
        let mut ix = Index::open(&dir.join("img.db")).unwrap();
        let img = new_image(1, &[2]);
        ix.insert_image(&img, &blobs_of(&img), &[]).unwrap();
        let s = StoredSignature {
            signed_digest: img.manifest_digest.clone(),
            kind: "simple".into(),
            body: b"sig".to_vec(),
            annotations: "{}".into(),
        };
        ix.add_signatures(&img.id, &[s.clone(), s.clone()]).unwrap();
        assert_eq!(ix.signatures(&img.id).unwrap(), vec![s]);
        ix.delete_image(&img.id).unwrap();
        assert!(ix.signatures(&img.id).unwrap().is_empty());
    }
}
