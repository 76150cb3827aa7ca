//! The schema, as an append-only list of migrations.
//!
//! Migration `n` (1-based) brings `PRAGMA user_version` from `n - 1` to `n`.
//! Never edit or remove a migration that has been released; append a new one.

/// Each entry is one batch of SQL run inside the migrating transaction.
pub const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;

    -- One row per complete, verified file under blobs/sha256/.
    CREATE TABLE blobs (
        digest   TEXT PRIMARY KEY CHECK (digest GLOB 'sha256:*' AND length(digest) = 71),
        size     INTEGER NOT NULL CHECK (size >= 0),
        added_at INTEGER NOT NULL
    ) STRICT;

    -- Blobs an ingest is about to move into blobs/; see ARCHITECTURE.md "Ingest".
    CREATE TABLE pending_blobs (
        digest   TEXT PRIMARY KEY CHECK (digest GLOB 'sha256:*' AND length(digest) = 71),
        added_at INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE images (
        id                  TEXT PRIMARY KEY CHECK (id GLOB 'sha256:*' AND length(id) = 71),
        manifest_digest     TEXT NOT NULL,
        manifest_media_type TEXT NOT NULL,
        created             INTEGER,
        size                INTEGER NOT NULL,
        architecture        TEXT NOT NULL DEFAULT '',
        os                  TEXT NOT NULL DEFAULT '',
        variant             TEXT NOT NULL DEFAULT '',
        author              TEXT NOT NULL DEFAULT '',
        labels              TEXT NOT NULL DEFAULT '{}',
        added_at            INTEGER NOT NULL,
        kind                TEXT NOT NULL DEFAULT 'oci'
    ) STRICT;

    -- The blobs an image needs: its manifest, config and layers.
    CREATE TABLE image_blobs (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        role     TEXT NOT NULL CHECK (role IN ('manifest', 'config', 'layer')),
        position INTEGER NOT NULL,
        digest   TEXT NOT NULL REFERENCES blobs(digest),
        PRIMARY KEY (image_id, role, position)
    ) STRICT;
    CREATE INDEX image_blobs_digest ON image_blobs(digest);

    CREATE TABLE tags (
        name       TEXT PRIMARY KEY,
        repository TEXT NOT NULL,
        tag        TEXT NOT NULL,
        image_id   TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        tagged_at  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX tags_image ON tags(image_id);

    -- Layers of iSulad embedded images, kept in place outside the store.
    CREATE TABLE external_layers (
        image_id          TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position          INTEGER NOT NULL,
        media_type        TEXT NOT NULL,
        path_in_host      TEXT NOT NULL,
        path_in_container TEXT NOT NULL,
        digest            TEXT NOT NULL,
        size              INTEGER NOT NULL,
        PRIMARY KEY (image_id, position)
    ) STRICT;
    "#,
    // 2: `img images` lists newest first without a sort.
    r#"
    CREATE INDEX images_by_created ON images(created DESC, added_at DESC, id);
    "#,
    // 3: blobs whose rows are deleted and whose files are about to be; a
    // process killed in between leaves them here for the next one to unlink.
    r#"
    CREATE TABLE doomed_blobs (
        digest   TEXT PRIMARY KEY CHECK (digest GLOB 'sha256:*' AND length(digest) = 71),
        added_at INTEGER NOT NULL
    ) STRICT;
    "#,
    // 4: images mounted by `img mount`, with the process serving each.
    r#"
    CREATE TABLE mounts (
        mountpoint TEXT PRIMARY KEY,
        image_id   TEXT NOT NULL,
        pid        INTEGER NOT NULL,
        writable   INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    "#,
    // 5: writable mounts keep their state (upper, work and lower
    // directories) in a directory of their own, and remember what their
    // upper directory looked like when it was last committed.
    r#"
    ALTER TABLE mounts ADD COLUMN state_dir TEXT NOT NULL DEFAULT '';
    ALTER TABLE mounts ADD COLUMN committed TEXT NOT NULL DEFAULT '';
    "#,
    // 6: partial images (kind 'partial'), made by a lazy pull: the layers
    // not stored yet, with the repository they are read from on demand.
    r#"
    CREATE TABLE remote_layers (
        image_id   TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position   INTEGER NOT NULL,
        digest     TEXT NOT NULL CHECK (digest GLOB 'sha256:*' AND length(digest) = 71),
        size       INTEGER NOT NULL CHECK (size >= 0),
        media_type TEXT NOT NULL,
        toc_digest TEXT NOT NULL,
        source     TEXT NOT NULL,
        PRIMARY KEY (image_id, position)
    ) STRICT;
    CREATE INDEX remote_layers_digest ON remote_layers(digest);
    "#,
    // 7: the layer cache of img build: what each step made (a layer, or
    // only a history entry), by a key of the step and all before it. A row
    // does not keep its layer's blob: one that is gone is a miss.
    r#"
    CREATE TABLE build_cache (
        key        TEXT PRIMARY KEY,
        layer      TEXT CHECK (layer IS NULL OR (layer GLOB 'sha256:*' AND length(layer) = 71)),
        diff_id    TEXT,
        size       INTEGER,
        media_type TEXT,
        created    TEXT NOT NULL,
        used_at    INTEGER NOT NULL
    ) STRICT;
    "#,
    // 8: manifest lists made by `img manifest`, by name, their JSON kept
    // here (they refer to images of the store by manifest digest).
    r#"
    CREATE TABLE manifest_lists (
        name       TEXT PRIMARY KEY,
        media_type TEXT NOT NULL,
        body       BLOB NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    "#,
    // 9: `img serve`: its users (passwords as PHC strings), namespaces and
    // repositories with their visibility, grants, and what clients pushed:
    // every manifest (its body and the blobs it refers to stay referenced
    // while it is served), tags of manifests that are not images of the
    // store (indexes, artifacts), and blobs uploaded into a repository
    // that no manifest refers to yet.
    r#"
    CREATE TABLE serve_users (
        name       TEXT PRIMARY KEY,
        password   TEXT NOT NULL,
        admin      INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE serve_namespaces (
        name       TEXT PRIMARY KEY,
        public     INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE serve_repositories (
        name       TEXT PRIMARY KEY,
        public     INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE serve_grants (
        user   TEXT NOT NULL REFERENCES serve_users(name) ON DELETE CASCADE,
        scope  TEXT NOT NULL,
        access TEXT NOT NULL CHECK (access IN ('pull', 'push')),
        PRIMARY KEY (user, scope)
    ) STRICT;
    CREATE TABLE served_manifests (
        repository    TEXT NOT NULL,
        digest        TEXT NOT NULL REFERENCES blobs(digest),
        media_type    TEXT NOT NULL,
        artifact_type TEXT NOT NULL DEFAULT '',
        subject       TEXT NOT NULL DEFAULT '',
        size          INTEGER NOT NULL,
        pushed_at     INTEGER NOT NULL,
        PRIMARY KEY (repository, digest)
    ) STRICT;
    CREATE INDEX served_manifests_subject ON served_manifests(repository, subject);
    CREATE TABLE served_blob_refs (
        repository TEXT NOT NULL,
        manifest   TEXT NOT NULL,
        digest     TEXT NOT NULL REFERENCES blobs(digest),
        PRIMARY KEY (repository, manifest, digest),
        FOREIGN KEY (repository, manifest) REFERENCES served_manifests(repository, digest) ON DELETE CASCADE
    ) STRICT;
    CREATE INDEX served_blob_refs_digest ON served_blob_refs(digest);
    CREATE TABLE served_tags (
        repository TEXT NOT NULL,
        tag        TEXT NOT NULL,
        digest     TEXT NOT NULL,
        tagged_at  INTEGER NOT NULL,
        -- For a manifest of an image of the store that was stored from
        -- another manifest: the image, whose tag of the same name must
        -- exist for this row to count ('' for indexes and artifacts).
        image_id   TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (repository, tag),
        FOREIGN KEY (repository, digest) REFERENCES served_manifests(repository, digest) ON DELETE CASCADE
    ) STRICT;
    CREATE TABLE served_uploads (
        repository TEXT NOT NULL,
        digest     TEXT NOT NULL REFERENCES blobs(digest),
        added_at   INTEGER NOT NULL,
        PRIMARY KEY (repository, digest)
    ) STRICT;
    CREATE INDEX served_uploads_digest ON served_uploads(digest);
    "#,
    // 10: where the members of a manifest list that are not in the store
    // came from (a JSON object, digest to REGISTRY/REPOSITORY), so that
    // `img manifest push` can copy them to the destination.
    r#"
    ALTER TABLE manifest_lists ADD COLUMN sources TEXT NOT NULL DEFAULT '{}';
    "#,
    // 11: the name a mount was asked for (`img mounts` shows it).
    r#"
    ALTER TABLE mounts ADD COLUMN name TEXT NOT NULL DEFAULT '';
    "#,
    // 12: the uncompressed size of each layer blob, measured when the layer
    // is stored (an image's size, as docker and podman show it, is the sum
    // of its layers'); NULL where it is not known: layers stored before,
    // until `img fsck --repair` measures them.
    r#"
    ALTER TABLE blobs ADD COLUMN diff_size INTEGER CHECK (diff_size IS NULL OR diff_size >= 0);
    "#,
    // 13: the signatures an image came with, or was given: each signs
    // `signed_digest` (the manifest, or the index it was chosen from), as
    // an OpenPGP simple signature or a sigstore payload with annotations.
    r#"
    CREATE TABLE signatures (
        image_id      TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        signed_digest TEXT NOT NULL,
        kind          TEXT NOT NULL CHECK (kind IN ('simple', 'sigstore')),
        body          BLOB NOT NULL,
        annotations   TEXT NOT NULL DEFAULT '{}',
        body_digest   TEXT NOT NULL,
        added_at      INTEGER NOT NULL,
        PRIMARY KEY (image_id, signed_digest, kind, body_digest)
    ) STRICT;
    -- Simple signatures pushed to img serve through the signature API
    -- extension, by repository and the manifest digest they sign.
    CREATE TABLE served_signatures (
        repository  TEXT NOT NULL,
        digest      TEXT NOT NULL,
        body        BLOB NOT NULL,
        body_digest TEXT NOT NULL,
        added_at    INTEGER NOT NULL,
        PRIMARY KEY (repository, digest, body_digest)
    ) STRICT;
    "#,
    // 14: `img serve`: secrets shared by every server on the store (the
    // token key, so that a token of one is valid on all), repositories
    // made explicitly, with a summary and a description, and whether a
    // namespace may be reached from outside the internal networks.
    r#"
    ALTER TABLE serve_namespaces ADD COLUMN external INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE serve_secrets (
        name       TEXT PRIMARY KEY,
        value      BLOB NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE serve_repository_info (
        name        TEXT PRIMARY KEY,
        summary     TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        created_at  INTEGER NOT NULL
    ) STRICT;
    "#,
    // 15: the store's size limit: when each image was last used (pulled,
    // loaded, built, tagged, mounted or named on a command line; NULL:
    // not since this migration, its added_at counts), whether it is pinned
    // (never evicted), and which live commands use it (a process id with
    // its start time in clock ticks, so that a reused id is not taken for
    // the command; rows of dead processes are ignored and swept).
    r#"
    ALTER TABLE images ADD COLUMN last_used INTEGER;
    ALTER TABLE images ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1));
    CREATE TABLE image_leases (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        pid      INTEGER NOT NULL,
        started  INTEGER NOT NULL,
        PRIMARY KEY (image_id, pid, started)
    ) STRICT;
    "#,
    // 16: room a live command has claimed in a store with a max-size,
    // before writing it (a process id with its start time, as in
    // image_leases), so that two commands adding data at once do not
    // together pass the limit; rows of dead processes are swept.
    r#"
    CREATE TABLE space_reservations (
        pid     INTEGER NOT NULL,
        started INTEGER NOT NULL,
        bytes   INTEGER NOT NULL CHECK (bytes >= 0),
        PRIMARY KEY (pid, started)
    ) STRICT;
    "#,
];
