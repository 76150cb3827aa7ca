//! What `img serve` keeps in the index: users, namespaces, repository
//! visibility and grants, and what clients pushed (manifests, the blobs
//! they refer to, tags of manifests that are not images of the store,
//! uploaded blobs not yet referred to).
//!
//! A served repository is named `NAMESPACE/REPOSITORY`. Images of the
//! store are served under their name's path without the domain
//! (`localhost/team/app:1` and `docker.io/team/app:1` are both
//! `team/app:1`; `localhost` wins when both exist). Pushed images are
//! stored as `localhost/NAMESPACE/REPOSITORY:TAG`.

use super::{add_blob_rows_tx, digest_col, insert_image_tx, now, Index, NewImage, Result, TagName};
use crate::digest::Digest;
use crate::store::StoredBlobs;
use rusqlite::{params, OptionalExtension, Transaction};

/// A user of `img serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeUser {
    pub name: String,
    /// The password's hash (a PHC string).
    pub password: String,
    pub admin: bool,
}

/// A manifest a client pushed into a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: String,
    /// The digest of the manifest it refers to (`subject`), or "".
    pub subject: String,
    pub pushed_at: i64,
}

/// Where a served manifest's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestBody {
    /// A blob of the store.
    Blob { digest: Digest, media_type: String },
    /// A manifest list made by `img manifest`, kept in the index.
    Inline { media_type: String, body: Vec<u8> },
}

/// A tag of a served repository, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedTag {
    pub repository: String,
    pub tag: String,
    pub digest: Digest,
    pub media_type: String,
    /// Bytes of manifest, config and layers (0 when not known).
    pub size: u64,
    /// When it was tagged or pushed (seconds since the epoch).
    pub at: i64,
}

/// `repository` of the tags table without its domain, in SQL.
const PATH: &str = "substr(t.repository, instr(t.repository, '/') + 1)";

/// The path of a fully qualified name (`domain/ns/repo:tag` → `ns/repo`, `tag`).
fn split_name(name: &str) -> Option<(&str, &str)> {
    let (_, rest) = name.split_once('/')?;
    let (path, tag) = rest.rsplit_once(':')?;
    (!path.contains('@')).then_some((path, tag))
}

/// Removes what `repo` holds (see `Index::remove_serve_repository`);
/// returns how many rows went.
fn remove_repository_tx(tx: &Transaction, repo: &str) -> rusqlite::Result<usize> {
    let mut n = 0;
    n += tx.execute("DELETE FROM served_signatures WHERE repository = ?1", params![repo])?;
    n += tx.execute("DELETE FROM served_tags WHERE repository = ?1", params![repo])?;
    n += tx.execute("DELETE FROM served_manifests WHERE repository = ?1", params![repo])?;
    n += tx.execute("DELETE FROM served_uploads WHERE repository = ?1", params![repo])?;
    n += tx.execute("DELETE FROM serve_repositories WHERE name = ?1", params![repo])?;
    n += tx.execute("DELETE FROM serve_repository_info WHERE name = ?1", params![repo])?;
    n += tx.execute("DELETE FROM serve_grants WHERE scope = ?1", params![repo])?;
    n += tx.execute("DELETE FROM tags WHERE repository = ?1", params![format!("localhost/{repo}")])?;
    Ok(n)
}

impl Index {
    // ---- users, namespaces, grants ---------------------------------------

    pub fn serve_user(&self, name: &str) -> Result<Option<ServeUser>> {
        let mut st = self.conn.prepare_cached("SELECT name, password, admin FROM serve_users WHERE name = ?1")?;
        Ok(st
            .query_row(params![name], |r| Ok(ServeUser { name: r.get(0)?, password: r.get(1)?, admin: r.get(2)? }))
            .optional()?)
    }

    pub fn serve_users(&self) -> Result<Vec<ServeUser>> {
        let mut st = self.conn.prepare_cached("SELECT name, password, admin FROM serve_users ORDER BY name")?;
        let rows = st.query_map([], |r| Ok(ServeUser { name: r.get(0)?, password: r.get(1)?, admin: r.get(2)? }))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn serve_user_count(&self) -> Result<u64> {
        Ok(self.conn.query_row("SELECT count(*) FROM serve_users", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Adds a user or changes one's password and admin flag; true if added.
    pub fn put_serve_user(&mut self, u: &ServeUser) -> Result<bool> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE serve_users SET password = ?2, admin = ?3 WHERE name = ?1",
                params![u.name, u.password, u.admin],
            )?;
            if changed == 0 {
                tx.execute(
                    "INSERT INTO serve_users(name, password, admin, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![u.name, u.password, u.admin, now()],
                )?;
            }
            Ok(changed == 0)
        })
    }

    /// Removes a user and their grants; false if there was none.
    pub fn remove_serve_user(&mut self, name: &str) -> Result<bool> {
        self.write(|tx| Ok(tx.execute("DELETE FROM serve_users WHERE name = ?1", params![name])? > 0))
    }

    /// A namespace's visibility: Some(true) public, Some(false) private,
    /// None when it was not made.
    pub fn serve_namespace(&self, name: &str) -> Result<Option<bool>> {
        let mut st = self.conn.prepare_cached("SELECT public FROM serve_namespaces WHERE name = ?1")?;
        Ok(st.query_row(params![name], |r| r.get(0)).optional()?)
    }

    /// Whether a namespace may be reached from outside the internal
    /// networks (false when it was not made).
    pub fn serve_namespace_external(&self, name: &str) -> Result<bool> {
        let mut st = self.conn.prepare_cached("SELECT external FROM serve_namespaces WHERE name = ?1")?;
        Ok(st.query_row(params![name], |r| r.get(0)).optional()?.unwrap_or(false))
    }

    /// Lets a namespace be reached from outside the internal networks, or
    /// not; false if it was not made.
    pub fn set_serve_namespace_external(&mut self, name: &str, external: bool) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute("UPDATE serve_namespaces SET external = ?2 WHERE name = ?1", params![name, external])? > 0)
        })
    }

    /// Every namespace made, with its visibility.
    pub fn serve_namespaces(&self) -> Result<Vec<(String, bool)>> {
        let mut st = self.conn.prepare_cached("SELECT name, public FROM serve_namespaces ORDER BY name")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Makes a namespace or changes its visibility; true if made.
    pub fn put_serve_namespace(&mut self, name: &str, public: bool) -> Result<bool> {
        self.write(|tx| {
            let changed =
                tx.execute("UPDATE serve_namespaces SET public = ?2 WHERE name = ?1", params![name, public])?;
            if changed == 0 {
                tx.execute(
                    "INSERT INTO serve_namespaces(name, public, created_at) VALUES (?1, ?2, ?3)",
                    params![name, public, now()],
                )?;
            }
            Ok(changed == 0)
        })
    }

    /// Removes a namespace with its repositories (see
    /// `remove_serve_repository`), in one transaction: a namespace made
    /// again later starts empty. False if it was not made.
    pub fn remove_serve_namespace(&mut self, name: &str) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute("DELETE FROM serve_namespaces WHERE name = ?1", params![name])?;
            let prefix = format!("{name}/");
            let mut repos: Vec<String> = Vec::new();
            for sql in [
                "SELECT repository FROM served_manifests WHERE substr(repository, 1, length(?1)) = ?1",
                "SELECT repository FROM served_tags WHERE substr(repository, 1, length(?1)) = ?1",
                "SELECT repository FROM served_uploads WHERE substr(repository, 1, length(?1)) = ?1",
                "SELECT name FROM serve_repositories WHERE substr(name, 1, length(?1)) = ?1",
                "SELECT name FROM serve_repository_info WHERE substr(name, 1, length(?1)) = ?1",
                "SELECT substr(repository, length('localhost/') + 1) FROM tags WHERE substr(repository, 1, length(?1)) = ?1",
            ] {
                let p = if sql.contains("FROM tags") { format!("localhost/{prefix}") } else { prefix.clone() };
                let mut st = tx.prepare_cached(sql)?;
                for r in st.query_map(params![p], |r| r.get::<_, String>(0))? {
                    repos.push(r?);
                }
            }
            repos.sort();
            repos.dedup();
            let mut m = 0;
            for r in &repos {
                m += remove_repository_tx(tx, r)?;
            }
            tx.execute("DELETE FROM serve_grants WHERE scope = ?1", params![name])?;
            Ok(n + m > 0)
        })
    }

    /// Removes a repository with its images: its record and visibility,
    /// the grants on it, its manifests, tags and signatures, its uploaded
    /// blobs, and the store's tags `localhost/REPO:*` (the images' layers
    /// stay until `img prune`; images of other registries served under the
    /// same path are the user's own and stay). False if there was nothing.
    pub fn remove_serve_repository(&mut self, name: &str) -> Result<bool> {
        self.write(|tx| Ok(remove_repository_tx(tx, name)? > 0))
    }

    /// A secret shared by the servers of this store, made (from `make`)
    /// the first time it is asked for.
    pub fn serve_secret(&mut self, name: &str, make: impl Fn() -> Vec<u8>) -> Result<Vec<u8>> {
        self.write(|tx| {
            let found: Option<Vec<u8>> = tx
                .prepare_cached("SELECT value FROM serve_secrets WHERE name = ?1")?
                .query_row(params![name], |r| r.get(0))
                .optional()?;
            if let Some(v) = found {
                return Ok(v);
            }
            let v = make();
            tx.execute(
                "INSERT INTO serve_secrets(name, value, created_at) VALUES (?1, ?2, ?3)",
                params![name, v, now()],
            )?;
            Ok(v)
        })
    }

    /// (name, summary, description, created_at) of one repository made
    /// explicitly, or of all.
    pub fn serve_repository_info(&self, name: Option<&str>) -> Result<Vec<(String, String, String, i64)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT name, summary, description, created_at FROM serve_repository_info
             WHERE ?1 IS NULL OR name = ?1 ORDER BY name",
        )?;
        let rows = st.query_map(params![name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Makes a repository or changes its summary and description; true if made.
    pub fn put_serve_repository_info(&mut self, name: &str, summary: &str, description: &str) -> Result<bool> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE serve_repository_info SET summary = ?2, description = ?3 WHERE name = ?1",
                params![name, summary, description],
            )?;
            if changed == 0 {
                tx.execute(
                    "INSERT INTO serve_repository_info(name, summary, description, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![name, summary, description, now()],
                )?;
            }
            Ok(changed == 0)
        })
    }

    /// A repository's own visibility (None: its namespace's).
    pub fn serve_repository_visibility(&self, name: &str) -> Result<Option<bool>> {
        let mut st = self.conn.prepare_cached("SELECT public FROM serve_repositories WHERE name = ?1")?;
        Ok(st.query_row(params![name], |r| r.get(0)).optional()?)
    }

    /// Every repository with a visibility of its own.
    pub fn serve_repository_visibilities(&self) -> Result<Vec<(String, bool)>> {
        let mut st = self.conn.prepare_cached("SELECT name, public FROM serve_repositories ORDER BY name")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Gives a repository a visibility of its own, or (None) its namespace's.
    pub fn set_serve_repository_visibility(&mut self, name: &str, public: Option<bool>) -> Result<()> {
        self.write(|tx| {
            match public {
                Some(p) => tx.execute(
                    "INSERT INTO serve_repositories(name, public, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT(name) DO UPDATE SET public = excluded.public, updated_at = excluded.updated_at",
                    params![name, p, now()],
                )?,
                None => tx.execute("DELETE FROM serve_repositories WHERE name = ?1", params![name])?,
            };
            Ok(())
        })
    }

    /// Grants as (user, scope, access), of one user or of all.
    pub fn serve_grants(&self, user: Option<&str>) -> Result<Vec<(String, String, String)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT user, scope, access FROM serve_grants WHERE ?1 IS NULL OR user = ?1 ORDER BY user, scope",
        )?;
        let rows = st.query_map(params![user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Gives `user` `access` ("pull" or "push") on `scope` (a namespace or
    /// `namespace/repository`), replacing what they had there; false if
    /// there is no such user.
    pub fn put_serve_grant(&mut self, user: &str, scope: &str, access: &str) -> Result<bool> {
        self.write(|tx| {
            let exists = tx.prepare_cached("SELECT 1 FROM serve_users WHERE name = ?1")?.exists(params![user])?;
            if exists {
                tx.execute(
                    "INSERT INTO serve_grants(user, scope, access) VALUES (?1, ?2, ?3)
                     ON CONFLICT(user, scope) DO UPDATE SET access = excluded.access",
                    params![user, scope, access],
                )?;
            }
            Ok(exists)
        })
    }

    /// Takes a grant away; false if there was none.
    pub fn remove_serve_grant(&mut self, user: &str, scope: &str) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute("DELETE FROM serve_grants WHERE user = ?1 AND scope = ?2", params![user, scope])? > 0)
        })
    }

    // ---- served content: reads --------------------------------------------

    /// The manifest tag `tag` of `repo` names: a pushed index or artifact,
    /// an image of the store, or a manifest list made by `img manifest`.
    pub fn served_tag(&self, repo: &str, tag: &str) -> Result<Option<ManifestBody>> {
        let mut st = self.conn.prepare_cached(
            "SELECT m.digest, m.media_type FROM served_tags s
             JOIN served_manifests m ON m.repository = s.repository AND m.digest = s.digest
             WHERE s.repository = ?1 AND s.tag = ?2 AND (s.image_id = '' OR EXISTS (SELECT 1 FROM tags x WHERE x.name = 'localhost/' || s.repository || ':' || s.tag AND x.image_id = s.image_id))",
        )?;
        let found: Option<(String, String)> =
            st.query_row(params![repo, tag], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
        if let Some((d, media_type)) = found {
            return Ok(Some(ManifestBody::Blob { digest: digest_col(d)?, media_type }));
        }
        let sql = format!(
            "SELECT i.manifest_digest, i.manifest_media_type FROM tags t JOIN images i ON i.id = t.image_id
             WHERE {PATH} = ?1 AND t.tag = ?2 AND i.kind = 'oci'
             ORDER BY t.repository = 'localhost/' || ?1 DESC, t.repository LIMIT 1"
        );
        let found: Option<(String, String)> =
            self.conn.prepare_cached(&sql)?.query_row(params![repo, tag], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
        if let Some((d, media_type)) = found {
            return Ok(Some(ManifestBody::Blob { digest: digest_col(d)?, media_type }));
        }
        for name in self.manifest_list_names()? {
            if split_name(&name) == Some((repo, tag)) {
                if let Some((media_type, body)) = self.manifest_list(&name)? {
                    return Ok(Some(ManifestBody::Inline { media_type, body }));
                }
            }
        }
        Ok(None)
    }

    /// The manifest of digest `d` if `repo` serves it: pushed there, an
    /// image of the store tagged there, or a manifest list named there.
    pub fn served_manifest(&self, repo: &str, d: &Digest) -> Result<Option<ManifestBody>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT media_type FROM served_manifests WHERE repository = ?1 AND digest = ?2")?;
        if let Some(media_type) = st.query_row(params![repo, d.as_str()], |r| r.get::<_, String>(0)).optional()? {
            return Ok(Some(ManifestBody::Blob { digest: d.clone(), media_type }));
        }
        let sql = format!(
            "SELECT i.manifest_media_type FROM images i JOIN tags t ON t.image_id = i.id
             WHERE i.manifest_digest = ?2 AND {PATH} = ?1 AND i.kind = 'oci' LIMIT 1"
        );
        let found: Option<String> =
            self.conn.prepare_cached(&sql)?.query_row(params![repo, d.as_str()], |r| r.get(0)).optional()?;
        if let Some(media_type) = found {
            return Ok(Some(ManifestBody::Blob { digest: d.clone(), media_type }));
        }
        for name in self.manifest_list_names()? {
            if split_name(&name).map(|(p, _)| p) == Some(repo) {
                if let Some((media_type, body)) = self.manifest_list(&name)? {
                    if Digest::of_bytes(&body) == *d {
                        return Ok(Some(ManifestBody::Inline { media_type, body }));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Whether blob `d` belongs to `repo`: referred to by a manifest served
    /// there, or uploaded there.
    pub fn served_blob(&self, repo: &str, d: &Digest) -> Result<bool> {
        let mut st = self.conn.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM served_blob_refs WHERE repository = ?1 AND digest = ?2)
                 OR EXISTS (SELECT 1 FROM served_manifests WHERE repository = ?1 AND digest = ?2)
                 OR EXISTS (SELECT 1 FROM served_uploads WHERE repository = ?1 AND digest = ?2)",
        )?;
        if st.query_row(params![repo, d.as_str()], |r| r.get::<_, bool>(0))? {
            return Ok(true);
        }
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM image_blobs ib JOIN tags t ON t.image_id = ib.image_id
                            JOIN images i ON i.id = ib.image_id
                            WHERE ib.digest = ?2 AND {PATH} = ?1 AND i.kind = 'oci')"
        );
        Ok(self.conn.prepare_cached(&sql)?.query_row(params![repo, d.as_str()], |r| r.get::<_, bool>(0))?)
    }

    /// The tags of `repo`, sorted, each once.
    pub fn served_tags(&self, repo: &str) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        let mut st = self.conn.prepare_cached("SELECT s.tag FROM served_tags s WHERE s.repository = ?1 AND (s.image_id = '' OR EXISTS (SELECT 1 FROM tags x WHERE x.name = 'localhost/' || s.repository || ':' || s.tag AND x.image_id = s.image_id))")?;
        for r in st.query_map(params![repo], |r| r.get::<_, String>(0))? {
            out.push(r?);
        }
        let sql =
            format!("SELECT t.tag FROM tags t JOIN images i ON i.id = t.image_id WHERE {PATH} = ?1 AND i.kind = 'oci'");
        for r in self.conn.prepare_cached(&sql)?.query_map(params![repo], |r| r.get::<_, String>(0))? {
            out.push(r?);
        }
        for name in self.manifest_list_names()? {
            if let Some((p, t)) = split_name(&name) {
                if p == repo {
                    out.push(t.to_string());
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Whether `repo` serves something: a manifest pushed to it, or a tag
    /// (as `served_tags` finds them: a served tag whose image is still
    /// tagged, a tag of an OCI image, a manifest list named
    /// `DOMAIN/REPO:TAG`). One query, asked for every request that is
    /// allowed to pull.
    pub fn served_repository_exists(&self, repo: &str) -> Result<bool> {
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM served_manifests WHERE repository = ?1)
             OR EXISTS (SELECT 1 FROM served_tags s WHERE s.repository = ?1 AND (s.image_id = '' OR EXISTS (SELECT 1 FROM tags x WHERE x.name = 'localhost/' || s.repository || ':' || s.tag AND x.image_id = s.image_id)))
             OR EXISTS (SELECT 1 FROM tags t JOIN images i ON i.id = t.image_id WHERE {PATH} = ?1 AND i.kind = 'oci')
             OR (instr(?1, '@') = 0 AND EXISTS (SELECT 1 FROM manifest_lists l WHERE instr(l.name, '/') > 0
                 AND substr(l.name, instr(l.name, '/') + 1, length(?1) + 1) = ?1 || ':'
                 AND instr(substr(l.name, instr(l.name, '/') + length(?1) + 2), ':') = 0))"
        );
        Ok(self.conn.prepare_cached(&sql)?.query_row(params![repo], |r| r.get::<_, bool>(0))?)
    }

    /// Every repository that serves something (not checked as names).
    pub fn served_repositories(&self) -> Result<Vec<String>> {
        let sql = format!(
            "SELECT DISTINCT {PATH} FROM tags t JOIN images i ON i.id = t.image_id WHERE i.kind = 'oci'
             UNION SELECT DISTINCT repository FROM served_manifests"
        );
        let mut out: Vec<String> =
            self.conn.prepare_cached(&sql)?.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        for name in self.manifest_list_names()? {
            if let Some((p, _)) = split_name(&name) {
                out.push(p.to_string());
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Every tag of every repository, with digest, size and time, for the
    /// image center.
    pub fn served_tag_listing(&self) -> Result<Vec<ServedTag>> {
        let mut out = Vec::new();
        let mut st = self.conn.prepare_cached(
            "SELECT s.repository, s.tag, s.digest, m.media_type, m.size, s.tagged_at FROM served_tags s
             JOIN served_manifests m ON m.repository = s.repository AND m.digest = s.digest WHERE (s.image_id = '' OR EXISTS (SELECT 1 FROM tags x WHERE x.name = 'localhost/' || s.repository || ':' || s.tag AND x.image_id = s.image_id))",
        )?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get::<_, String>(2)?, r.get(3)?, r.get::<_, i64>(4)?, r.get(5)?))
        })?;
        for r in rows {
            let (repository, tag, d, media_type, size, at) = r?;
            out.push(ServedTag { repository, tag, digest: digest_col(d)?, media_type, size: size as u64, at });
        }
        let sql = format!(
            "SELECT {PATH}, t.tag, i.manifest_digest, i.manifest_media_type, i.size, t.tagged_at
             FROM tags t JOIN images i ON i.id = t.image_id WHERE i.kind = 'oci'
             ORDER BY t.repository = 'localhost/' || {PATH} DESC, t.repository"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get::<_, String>(2)?, r.get(3)?, r.get::<_, i64>(4)?, r.get(5)?))
        })?;
        for r in rows {
            let (repository, tag, d, media_type, size, at) = r?;
            if !out.iter().any(|t: &ServedTag| t.repository == repository && t.tag == tag) {
                out.push(ServedTag { repository, tag, digest: digest_col(d)?, media_type, size: size as u64, at });
            }
        }
        out.sort_by(|a, b| (&a.repository, &a.tag).cmp(&(&b.repository, &b.tag)));
        Ok(out)
    }

    /// Manifests pushed into `repo` that refer to `subject`.
    pub fn served_referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<ServedManifest>> {
        let mut st = self.conn.prepare_cached(
            "SELECT digest, media_type, size, artifact_type, subject, pushed_at FROM served_manifests
             WHERE repository = ?1 AND subject = ?2 ORDER BY pushed_at, digest",
        )?;
        let rows = st.query_map(params![repo, subject.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get::<_, i64>(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (d, media_type, size, artifact_type, subject, pushed_at) = r?;
            out.push(ServedManifest {
                digest: digest_col(d)?,
                media_type,
                size: size as u64,
                artifact_type,
                subject,
                pushed_at,
            });
        }
        Ok(out)
    }

    // ---- served content: writes -------------------------------------------

    /// Records blobs uploaded into `repo` (stored already, see
    /// `Store::commit_blobs`).
    pub fn link_served_uploads(&mut self, repo: &str, blobs: &StoredBlobs) -> Result<()> {
        self.write(|tx| {
            add_blob_rows_tx(tx, blobs)?;
            let mut st = tx.prepare_cached(
                "INSERT INTO served_uploads(repository, digest, added_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(repository, digest) DO UPDATE SET added_at = excluded.added_at",
            )?;
            for (d, _) in blobs.iter() {
                st.execute(params![repo, d.as_str(), now()])?;
            }
            Ok(())
        })
    }

    /// Records a manifest pushed into `repo` (its body among `blobs`, stored
    /// already), the blobs it refers to, and, under `tag`, either the image
    /// of the store it makes (`image`, tagged `localhost/REPO:TAG`) or the
    /// manifest itself. One transaction.
    pub fn put_served_manifest(
        &mut self,
        repo: &str,
        m: &ServedManifest,
        refs: &[Digest],
        blobs: &StoredBlobs,
        tag: Option<&str>,
        image: Option<&NewImage>,
    ) -> Result<()> {
        self.write(|tx| {
            add_blob_rows_tx(tx, blobs)?;
            tx.execute(
                "INSERT INTO served_manifests(repository, digest, media_type, artifact_type, subject, size, pushed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(repository, digest) DO UPDATE SET pushed_at = excluded.pushed_at",
                params![repo, m.digest.as_str(), m.media_type, m.artifact_type, m.subject, m.size as i64, now()],
            )?;
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO served_blob_refs(repository, manifest, digest) VALUES (?1, ?2, ?3)",
            )?;
            for d in refs {
                st.execute(params![repo, m.digest.as_str(), d.as_str()])?;
            }
            drop(st);
            let tag_name = tag.map(|t| TagName {
                name: format!("localhost/{repo}:{t}"),
                repository: format!("localhost/{repo}"),
                tag: t.to_string(),
            });
            // The store knows an image by its config: one pushed again with
            // other layer blobs (another compression, another manifest
            // format) is another manifest of the same image. The store's
            // tag names the image, and a served tag names this manifest.
            let stored_as: Option<String> = match image {
                Some(img) => tx
                    .prepare_cached("SELECT manifest_digest FROM images WHERE id = ?1")?
                    .query_row(params![img.id.as_str()], |r| r.get(0))
                    .optional()?,
                None => None,
            };
            let served_tag = |tx: &Transaction, t: &str, image_id: &str| {
                tx.execute(
                    "INSERT INTO served_tags(repository, tag, digest, tagged_at, image_id) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(repository, tag) DO UPDATE SET digest = excluded.digest,
                        tagged_at = excluded.tagged_at, image_id = excluded.image_id",
                    params![repo, t, m.digest.as_str(), now(), image_id],
                )
            };
            match (image, tag, &tag_name) {
                (Some(img), _, _) => {
                    let tags: Vec<TagName> = tag_name.iter().cloned().collect();
                    insert_image_tx(tx, img, &[], &tags)?;
                    if let Some(t) = tag {
                        match stored_as {
                            Some(d) if d != m.digest.as_str() => {
                                served_tag(tx, t, img.id.as_str())?;
                            }
                            _ => {
                                tx.execute(
                                    "DELETE FROM served_tags WHERE repository = ?1 AND tag = ?2",
                                    params![repo, t],
                                )?;
                            }
                        }
                    }
                }
                (None, Some(t), Some(n)) => {
                    served_tag(tx, t, "")?;
                    tx.execute("DELETE FROM tags WHERE name = ?1", params![n.name])?;
                }
                _ => {}
            }
            Ok(())
        })
    }

    /// Deletes manifest `d` from `repo`: its record, the tags that name it
    /// there (of the store's images too); the store's images and blobs
    /// stay until `img rmi` or `img prune`. False if `repo` did not serve it.
    pub fn delete_served_manifest(&mut self, repo: &str, d: &Digest) -> Result<bool> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM served_signatures WHERE repository = ?1 AND digest = ?2",
                params![repo, d.as_str()],
            )?;
            let n = tx.execute(
                "DELETE FROM served_manifests WHERE repository = ?1 AND digest = ?2",
                params![repo, d.as_str()],
            )?;
            let sql = format!(
                "DELETE FROM tags WHERE name IN (SELECT t.name FROM tags t JOIN images i ON i.id = t.image_id
                 WHERE i.manifest_digest = ?2 AND {PATH} = ?1)"
            );
            let m = tx.execute(&sql, params![repo, d.as_str()])?;
            Ok(n + m > 0)
        })
    }

    /// Removes tag `tag` of `repo`; false if there was none.
    pub fn delete_served_tag(&mut self, repo: &str, tag: &str) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute("DELETE FROM served_tags WHERE repository = ?1 AND tag = ?2", params![repo, tag])?;
            let sql =
                format!("DELETE FROM tags WHERE name IN (SELECT t.name FROM tags t WHERE {PATH} = ?1 AND t.tag = ?2)");
            let m = tx.execute(&sql, params![repo, tag])?;
            Ok(n + m > 0)
        })
    }

    /// Forgets that blob `d` was uploaded into `repo`; false if it was not.
    pub fn unlink_served_upload(&mut self, repo: &str, d: &Digest) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM served_uploads WHERE repository = ?1 AND digest = ?2",
                params![repo, d.as_str()],
            )? > 0)
        })
    }

    /// Forgets uploads recorded before `before` (seconds since the epoch)
    /// that no served manifest refers to; returns how many.
    pub fn expire_served_uploads(&mut self, before: i64) -> Result<usize> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM served_uploads WHERE added_at < ?1 AND NOT EXISTS
                 (SELECT 1 FROM served_blob_refs r WHERE r.repository = served_uploads.repository
                  AND r.digest = served_uploads.digest)",
                params![before],
            )?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_path_and_tag() {
        assert_eq!(split_name("localhost/team/app:1"), Some(("team/app", "1")));
        assert_eq!(split_name("127.0.0.1:5000/team/app:v2"), Some(("team/app", "v2")));
        assert_eq!(split_name("app:1"), None);
        assert_eq!(split_name("localhost/team/app@sha256:00"), None);
    }

    #[test]
    fn served_repository_exists_agrees_with_served_tags() {
        let dir = crate::testdir::TestDir::new("served-repository-exists");
        let mut ix = Index::open(&dir.join("img.db")).unwrap();
        ix.put_manifest_list("localhost/team/list:1", crate::image::OCI_INDEX, b"{}").unwrap();
        ix.put_manifest_list("127.0.0.1:5000/team/other:v:2", crate::image::OCI_INDEX, b"{}").unwrap();
        ix.put_manifest_list("localhost/team/digested@sha256:00", crate::image::OCI_INDEX, b"{}").unwrap();
        let m = ServedManifest {
            digest: Digest::of_bytes(b"{}"),
            media_type: crate::image::OCI_MANIFEST.to_string(),
            size: 2,
            artifact_type: String::new(),
            subject: String::new(),
            pushed_at: 0,
        };
        ix.put_served_manifest("team/pushed", &m, &[], &StoredBlobs::assumed(vec![(m.digest.clone(), 2)]), None, None)
            .unwrap();
        let names = [
            "team/list",
            "team/lis",
            "team/list:1",
            "team",
            "list",
            "team/other",
            "team/other:v",
            "team/digested",
            "team/digested@sha256",
            "team/pushed",
            "team/nothing",
        ];
        for name in names {
            let pushed = ix.served_manifest(name, &m.digest).unwrap().is_some();
            let slow = pushed || !ix.served_tags(name).unwrap().is_empty();
            assert_eq!(ix.served_repository_exists(name).unwrap(), slow, "{name}");
        }
        assert!(ix.served_repository_exists("team/list").unwrap());
        assert!(ix.served_repository_exists("team/other:v").unwrap());
        assert!(ix.served_repository_exists("team/pushed").unwrap());
        assert!(!ix.served_repository_exists("team/digested").unwrap());
    }
}
