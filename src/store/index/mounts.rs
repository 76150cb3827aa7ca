//! The `mounts` table: the mounts `img mount` made and who serves them.

use super::{digest_col, Index, Result};
use crate::digest::Digest;
use rusqlite::params;

/// A mount made by `img mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRecord {
    pub mountpoint: String,
    pub image_id: Digest,
    pub pid: i64,
    pub writable: bool,
    pub created_at: i64,
    /// A writable mount's own directory (upper, work, lower); empty when read-only.
    pub state_dir: String,
    /// The fingerprint of the upper directory when it was last committed.
    pub committed: String,
    /// The name the mount was asked for (empty: an ID, or not known).
    pub name: String,
}

impl Index {
    /// Records a mount (replacing a stale row for the same mountpoint). A
    /// read-only mount's row is not fsynced: a power cut ends the mount too.
    /// A writable one's is, since it leads to the changes kept.
    pub fn add_mount(&mut self, m: &MountRecord) -> Result<()> {
        let durable = m.writable;
        let write = |tx: &rusqlite::Transaction| {
            tx.execute(
                "INSERT OR REPLACE INTO mounts(mountpoint, image_id, pid, writable, created_at, state_dir, committed, name) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![m.mountpoint, m.image_id.as_str(), m.pid, m.writable as i64, m.created_at, m.state_dir, m.committed, m.name],
            )?;
            Ok(())
        };
        if durable {
            self.write(write)
        } else {
            self.write_soft(write)
        }
    }

    /// Forgets the mount at `mountpoint` if process `pid` serves it.
    pub fn remove_mount_of(&mut self, mountpoint: &str, pid: i64) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute("DELETE FROM mounts WHERE mountpoint = ?1 AND pid = ?2", params![mountpoint, pid])? > 0)
        })
    }

    /// Records the fingerprint of a writable mount's upper directory at commit.
    pub fn set_mount_committed(&mut self, mountpoint: &str, fingerprint: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute("UPDATE mounts SET committed = ?2 WHERE mountpoint = ?1", params![mountpoint, fingerprint])?;
            Ok(())
        })
    }

    pub fn remove_mount(&mut self, mountpoint: &str) -> Result<bool> {
        self.write(|tx| Ok(tx.execute("DELETE FROM mounts WHERE mountpoint = ?1", params![mountpoint])? > 0))
    }

    pub fn mounts(&self) -> Result<Vec<MountRecord>> {
        let mut st = self.conn.prepare_cached(
            "SELECT mountpoint, image_id, pid, writable, created_at, state_dir, committed, name FROM mounts ORDER BY created_at, mountpoint",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mountpoint, id, pid, writable, created_at, state_dir, committed, name) = row?;
            out.push(MountRecord {
                mountpoint,
                image_id: digest_col(id)?,
                pid,
                writable: writable != 0,
                created_at,
                state_dir,
                committed,
                name,
            });
        }
        Ok(out)
    }
}
