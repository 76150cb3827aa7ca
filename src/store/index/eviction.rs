//! What keeping the store within its size needs from the index: when each
//! image was last used, which are pinned, and which live commands use them
//! (`image_leases`).

use super::{digest_col, now, Index, Result};
use crate::digest::Digest;
use rusqlite::params;
use std::collections::HashMap;

/// The most leases kept per image (the newest).
const LEASES_PER_IMAGE: i64 = 8;

/// An image as eviction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvictionRow {
    pub id: Digest,
    /// Seconds since the epoch (its `added_at` when never used since).
    pub last_used: i64,
    pub pinned: bool,
    /// The stored blobs it references, each once, with their sizes.
    pub blobs: Vec<(Digest, u64)>,
}

/// A command that said it uses an image: its process id and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    pub pid: i64,
    pub started: i64,
}

impl Index {
    /// Records that image `id` is used now, by the command `lease` (which
    /// eviction leaves it to while that process lives). One small
    /// transaction; callers may ignore its failure (a read-only store).
    pub fn note_use(&self, id: &Digest, lease: Option<Lease>) -> Result<()> {
        // Not fsynced: a last use or a lease lost to a power cut only
        // makes an image look older to eviction, and the command is gone.
        self.write_soft(|tx| {
            tx.prepare_cached("UPDATE images SET last_used = ?2 WHERE id = ?1")?
                .execute(params![id.as_str(), now()])?;
            if let Some(l) = lease {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO image_leases(image_id, pid, started)
                     SELECT id, ?2, ?3 FROM images WHERE id = ?1",
                )?
                .execute(params![id.as_str(), l.pid, l.started])?;
                // Rows of ended commands are swept by eviction; a store
                // that never evicts keeps the newest few per image.
                tx.prepare_cached(
                    "DELETE FROM image_leases WHERE image_id = ?1 AND rowid NOT IN
                     (SELECT rowid FROM image_leases WHERE image_id = ?1 ORDER BY rowid DESC LIMIT ?2)",
                )?
                .execute(params![id.as_str(), LEASES_PER_IMAGE])?;
            }
            Ok(())
        })
    }

    /// Pins or unpins image `id`; false if there is no such image.
    pub fn set_pinned(&mut self, id: &Digest, pinned: bool) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute("UPDATE images SET pinned = ?2 WHERE id = ?1", params![id.as_str(), pinned as i64])? > 0)
        })
    }

    /// Every image with its last use, pin and stored blobs, in two flat queries.
    pub fn eviction_rows(&self) -> Result<Vec<EvictionRow>> {
        let mut blobs: HashMap<String, Vec<(Digest, u64)>> = HashMap::new();
        {
            let mut st = self.conn.prepare_cached(
                "SELECT DISTINCT ib.image_id, b.digest, b.size FROM image_blobs ib JOIN blobs b ON b.digest = ib.digest",
            )?;
            let rows =
                st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?;
            for r in rows {
                let (id, d, size) = r?;
                blobs.entry(id).or_default().push((digest_col(d)?, size.max(0) as u64));
            }
        }
        let mut st =
            self.conn.prepare_cached("SELECT id, coalesce(last_used, added_at), pinned FROM images ORDER BY id")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
        let mut out = Vec::new();
        for r in rows {
            let (id, last_used, pinned) = r?;
            let b = blobs.remove(&id).unwrap_or_default();
            out.push(EvictionRow { id: digest_col(id)?, last_used, pinned: pinned != 0, blobs: b });
        }
        Ok(out)
    }

    /// Every lease: (image, lease).
    pub fn leases(&self) -> Result<Vec<(Digest, Lease)>> {
        let mut st = self.conn.prepare_cached("SELECT image_id, pid, started FROM image_leases")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
        let mut out = Vec::new();
        for r in rows {
            let (id, pid, started) = r?;
            out.push((digest_col(id)?, Lease { pid, started }));
        }
        Ok(out)
    }

    /// Claims `bytes` of room for command `own` if `fits` accepts the
    /// room other live commands have claimed (dead ones' claims, as
    /// `alive` tells, are forgotten); one write transaction, so two
    /// commands never both count without the other. Returns the others'
    /// total, and whether the claim was made.
    pub fn reserve_space(
        &mut self,
        own: &Lease,
        bytes: u64,
        alive: &dyn Fn(&Lease) -> bool,
        fits: &dyn Fn(u64) -> bool,
    ) -> Result<(u64, bool)> {
        self.write(|tx| {
            let rows: Vec<(Lease, i64)> = {
                let mut st = tx.prepare_cached("SELECT pid, started, bytes FROM space_reservations")?;
                let rows = st.query_map([], |r| Ok((Lease { pid: r.get(0)?, started: r.get(1)? }, r.get(2)?)))?;
                rows.collect::<std::result::Result<_, _>>()?
            };
            let mut others = 0u64;
            for (l, b) in &rows {
                if l == own {
                    continue;
                }
                if alive(l) {
                    others = others.saturating_add(u64::try_from(*b).unwrap_or(0));
                } else {
                    tx.execute(
                        "DELETE FROM space_reservations WHERE pid = ?1 AND started = ?2",
                        params![l.pid, l.started],
                    )?;
                }
            }
            let ok = fits(others);
            if ok {
                tx.execute(
                    "INSERT OR REPLACE INTO space_reservations(pid, started, bytes) VALUES (?1, ?2, ?3)",
                    params![own.pid, own.started, i64::try_from(bytes).unwrap_or(i64::MAX)],
                )?;
            }
            Ok((others, ok))
        })
    }

    /// Gives back the room command `own` claimed.
    pub fn release_space(&mut self, own: &Lease) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM space_reservations WHERE pid = ?1 AND started = ?2",
                params![own.pid, own.started],
            )?;
            Ok(())
        })
    }

    /// Forgets the leases of commands that have ended.
    pub fn drop_leases(&mut self, ended: &[Lease]) -> Result<()> {
        if ended.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut st = tx.prepare_cached("DELETE FROM image_leases WHERE pid = ?1 AND started = ?2")?;
            for l in ended {
                st.execute(params![l.pid, l.started])?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::index::tests::{blobs_of, d, new_image, tag, temp_dir};

    #[test]
    fn uses_pins_and_leases_round_trip() {
        let dir = temp_dir("eviction");
        let mut ix = Index::open(&dir.join("img.db")).unwrap();
        let a = new_image(1, &[10, 11, 10]);
        let b = new_image(2, &[10, 12]);
        ix.insert_image(&a, &blobs_of(&a), &[tag("docker.io/library/a:1")]).unwrap();
        ix.insert_image(&b, &blobs_of(&b), &[]).unwrap();
        ix.conn.execute("UPDATE images SET last_used = 5 WHERE id = ?1", [a.id.as_str()]).unwrap();
        let rows = ix.eviction_rows().unwrap();
        let ra = rows.iter().find(|r| r.id == a.id).unwrap();
        assert_eq!(ra.last_used, 5);
        assert!(!ra.pinned);
        let mut digests: Vec<_> = ra.blobs.iter().map(|(x, _)| x.clone()).collect();
        digests.sort();
        digests.dedup();
        assert_eq!(digests.len(), ra.blobs.len(), "a layer used twice is listed once");
        assert!(ra.blobs.iter().any(|(x, _)| x == &d(10)));

        ix.note_use(&a.id, Some(Lease { pid: 7, started: 9 })).unwrap();
        assert!(ix.image(&a.id).unwrap().unwrap().last_used > 5);
        ix.note_use(&a.id, Some(Lease { pid: 7, started: 9 })).unwrap();
        assert_eq!(ix.leases().unwrap(), vec![(a.id.clone(), Lease { pid: 7, started: 9 })]);
        // An image that is gone gets no lease.
        ix.note_use(&d(99), Some(Lease { pid: 7, started: 9 })).unwrap();
        assert_eq!(ix.leases().unwrap().len(), 1);
        ix.drop_leases(&[Lease { pid: 7, started: 9 }]).unwrap();
        assert!(ix.leases().unwrap().is_empty());
        // Never more than a few per image, the newest kept.
        for pid in 0..20 {
            ix.note_use(&a.id, Some(Lease { pid, started: 1 })).unwrap();
        }
        let pids: Vec<i64> = ix.leases().unwrap().iter().map(|(_, l)| l.pid).collect();
        assert_eq!(pids.len(), LEASES_PER_IMAGE as usize);
        assert!(pids.contains(&19) && !pids.contains(&0), "{pids:?}");
        ix.drop_leases(&(0..20).map(|pid| Lease { pid, started: 1 }).collect::<Vec<_>>()).unwrap();

        assert!(ix.set_pinned(&b.id, true).unwrap());
        assert!(ix.image(&b.id).unwrap().unwrap().pinned);
        assert!(!ix.set_pinned(&d(99), true).unwrap());
        ix.note_use(&b.id, Some(Lease { pid: 8, started: 1 })).unwrap();
        ix.delete_image(&b.id).unwrap();
        assert!(ix.leases().unwrap().is_empty(), "leases go with their image");
    }

    #[test]
    fn tagging_and_inserting_count_as_use() {
        let dir = temp_dir("eviction-use");
        let mut ix = Index::open(&dir.join("img.db")).unwrap();
        let a = new_image(1, &[10]);
        ix.insert_image(&a, &blobs_of(&a), &[]).unwrap();
        ix.conn.execute("UPDATE images SET last_used = 1 WHERE id = ?1", [a.id.as_str()]).unwrap();
        ix.tag(&tag("docker.io/library/a:2"), &a.id).unwrap();
        assert!(ix.image(&a.id).unwrap().unwrap().last_used > 1);
        ix.conn.execute("UPDATE images SET last_used = 1 WHERE id = ?1", [a.id.as_str()]).unwrap();
        ix.insert_image(&a, &blobs_of(&a), &[]).unwrap();
        assert!(ix.image(&a.id).unwrap().unwrap().last_used > 1);
    }
    #[test]
    fn claims_count_only_live_other_commands_and_are_made_only_when_they_fit() {
        let dir = temp_dir("eviction-claims");
        let mut ix = Index::open(&dir.join("img.db")).unwrap();
        let (a, b, dead) = (Lease { pid: 1, started: 1 }, Lease { pid: 2, started: 2 }, Lease { pid: 3, started: 3 });
        let alive = |l: &Lease| l.pid != 3;
        assert_eq!(ix.reserve_space(&a, 100, &alive, &|others| others == 0).unwrap(), (0, true));
        assert_eq!(ix.reserve_space(&dead, 1000, &|_| true, &|_| true).unwrap(), (100, true));
        // b sees a's claim, not the dead command's (which is swept), nor its own.
        assert_eq!(ix.reserve_space(&b, 50, &alive, &|others| others <= 100).unwrap(), (100, true));
        assert_eq!(ix.reserve_space(&b, 70, &alive, &|_| true).unwrap(), (100, true), "a new claim replaces the old");
        assert_eq!(ix.reserve_space(&a, 10, &alive, &|_| false).unwrap(), (70, false));
        // A refused claim leaves the old one.
        assert_eq!(ix.reserve_space(&b, 0, &alive, &|_| false).unwrap(), (100, false));
        ix.release_space(&a).unwrap();
        assert_eq!(ix.reserve_space(&b, 0, &|_| true, &|_| false).unwrap(), (0, false), "the dead one was swept");
    }
}
