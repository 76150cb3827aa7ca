//! The `manifest_lists` table: manifest lists kept by name for `img manifest`.

use super::{now, Index, Result};
use rusqlite::{params, OptionalExtension};

impl Index {
    /// Manifest list `name`: its media type and JSON.
    pub fn manifest_list(&self, name: &str) -> Result<Option<(String, Vec<u8>)>> {
        let mut st = self.conn.prepare_cached("SELECT media_type, body FROM manifest_lists WHERE name = ?1")?;
        let mut rows = st.query(params![name])?;
        match rows.next()? {
            Some(r) => Ok(Some((r.get(0)?, r.get(1)?))),
            None => Ok(None),
        }
    }

    /// Stores manifest list `name` (replacing one of that name).
    pub fn put_manifest_list(&mut self, name: &str, media_type: &str, body: &[u8]) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO manifest_lists(name, media_type, body, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET media_type = excluded.media_type, body = excluded.body,
                 updated_at = excluded.updated_at",
                params![name, media_type, body, now()],
            )?;
            Ok(())
        })
    }

    /// Where the members of list `name` that are not in the store came
    /// from: digest to `REGISTRY/REPOSITORY`.
    pub fn manifest_list_sources(&self, name: &str) -> Result<std::collections::BTreeMap<String, String>> {
        let mut st = self.conn.prepare_cached("SELECT sources FROM manifest_lists WHERE name = ?1")?;
        let text: Option<String> = st.query_row(params![name], |r| r.get(0)).optional()?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default())
    }

    /// Records where member `digest` of list `name` came from.
    pub fn add_manifest_list_source(&mut self, name: &str, digest: &str, source: &str) -> Result<()> {
        let mut all = self.manifest_list_sources(name)?;
        all.insert(digest.to_string(), source.to_string());
        let text = serde_json::to_string(&all).unwrap_or_else(|_| "{}".into());
        self.write(|tx| {
            tx.execute("UPDATE manifest_lists SET sources = ?2 WHERE name = ?1", params![name, text])?;
            Ok(())
        })
    }

    /// Removes manifest list `name`; false if there was none.
    pub fn remove_manifest_list(&mut self, name: &str) -> Result<bool> {
        self.write(|tx| Ok(tx.execute("DELETE FROM manifest_lists WHERE name = ?1", params![name])? > 0))
    }

    /// The names of all manifest lists.
    pub fn manifest_list_names(&self) -> Result<Vec<String>> {
        let mut st = self.conn.prepare_cached("SELECT name FROM manifest_lists ORDER BY name")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}
