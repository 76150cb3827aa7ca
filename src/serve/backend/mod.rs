//! Where `img serve` keeps what it serves: one trait, two homes.
//!
//! `local` is the embedded default: the store's SQLite index and blob
//! directory on one machine, where pushed images become images of the
//! store. `cluster` is the scaled-out service: users, namespaces,
//! repositories, grants, tags, manifests' records and upload sessions in
//! PostgreSQL, blobs and upload parts in an S3 bucket; any number of
//! instances share one registry, and one instance's token is valid on all
//! (the token key is kept in the database).
//!
//! The API (`serve::api`) asks the backend only through `Backend`; it
//! never names a path, a table or a bucket.

pub mod cluster;
pub mod local;
pub mod sha256;

use crate::digest::Digest;
use crate::image;
use crate::serve::route::Reference;
pub use crate::store::index::{ManifestBody, ServeUser, ServedManifest, ServedTag};
use std::io::Read;
use std::time::Duration;

/// Why the backend could not answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database or the object store does not answer now (503).
    #[error("{0}")]
    Unavailable(String),
    /// The disk is full (507).
    #[error("{0}")]
    NoSpace(String),
    /// Anything else (500).
    #[error("{0}")]
    Failed(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn failed(what: &str, e: impl std::fmt::Display) -> Error {
        let msg = format!("{what}: {e:#}");
        if msg.contains("No space left") || msg.contains("no space left") {
            Error::NoSpace(msg)
        } else {
            Error::Failed(msg)
        }
    }
}

/// Why an upload request failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the upload is not known (it may have expired); start again")]
    Unknown,
    /// A chunk that does not start where the upload is.
    #[error("the chunk does not start at {have}, where the upload is")]
    Offset { have: u64 },
    /// Over the caller's bytes of uploads in progress.
    #[error("over the caller's upload quota")]
    Quota,
    /// The body could not be read or kept (400 BLOB_UPLOAD_INVALID).
    #[error("{0}")]
    Broken(String),
    /// The bytes are not the digest the client named.
    #[error("the upload's {size} bytes have digest {got}")]
    Digest { got: Digest, size: u64 },
    #[error(transparent)]
    Backend(#[from] Error),
}

/// An upload in progress.
#[derive(Debug, Clone)]
pub struct UploadInfo {
    pub id: String,
    pub repo: String,
    /// A user's name, or `@ADDRESS` for anonymous callers.
    pub owner: String,
    pub size: u64,
    /// Since the last request that wrote to it.
    pub idle: Duration,
}

/// Where a blob's bytes come from.
pub enum BlobBody {
    /// `len` bytes of the file from `start` (sent with `sendfile`-like copies).
    File(std::fs::File),
    /// The bytes from `start`, `len` of them.
    Stream(Box<dyn Read + Send>),
}

/// A blob, or the part of it asked for.
pub struct BlobRead {
    /// The whole blob's size.
    pub size: u64,
    pub start: u64,
    pub len: u64,
    pub body: BlobBody,
}

/// A repository made explicitly, with what its owners say of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RepositoryInfo {
    pub name: String,
    pub summary: String,
    pub description: String,
    pub created_at: i64,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The manifest or its config is not what it should be (400).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Backend(#[from] Error),
}

/// What `img serve` asks of where it keeps things. Every method is one
/// short step (a query, a transaction, an object); none holds a lock or a
/// connection between requests.
pub trait Backend: Send + Sync {
    /// A short name for logs and metrics ("store", "cluster").
    fn kind(&self) -> &'static str;
    /// Whether it can serve now: `Err(why)` if not (for `/readyz`).
    fn ready(&self) -> std::result::Result<(), String>;
    /// The key tokens are signed with, made once and kept, so that a token
    /// issued by one instance is valid on all.
    fn token_key(&self) -> Result<Vec<u8>>;

    // ---- users, namespaces, repositories, grants --------------------------

    fn user(&self, name: &str) -> Result<Option<ServeUser>>;
    fn users(&self) -> Result<Vec<ServeUser>>;
    fn user_count(&self) -> Result<u64>;
    /// Adds a user or changes one; true if added.
    fn put_user(&self, u: &ServeUser) -> Result<bool>;
    fn remove_user(&self, name: &str) -> Result<bool>;
    /// Some(public) if the namespace was made.
    fn namespace(&self, name: &str) -> Result<Option<bool>>;
    fn namespaces(&self) -> Result<Vec<(String, bool)>>;
    /// Makes a namespace or changes its visibility; true if made.
    fn put_namespace(&self, name: &str, public: bool) -> Result<bool>;
    /// Whether clients outside the internal networks may reach it.
    fn namespace_external(&self, name: &str) -> Result<bool>;
    /// False if the namespace was not made.
    fn set_namespace_external(&self, name: &str, external: bool) -> Result<bool>;
    /// Removes a namespace with its repositories (their settings, grants,
    /// manifests, tags and signatures); false if it was not made.
    fn remove_namespace(&self, name: &str) -> Result<bool>;
    fn repository_visibility(&self, name: &str) -> Result<Option<bool>>;
    fn repository_visibilities(&self) -> Result<Vec<(String, bool)>>;
    fn set_repository_visibility(&self, name: &str, public: Option<bool>) -> Result<()>;
    /// (user, scope, access) of one user or all.
    fn grants(&self, user: Option<&str>) -> Result<Vec<(String, String, String)>>;
    /// False if there is no such user.
    fn put_grant(&self, user: &str, scope: &str, access: &str) -> Result<bool>;
    fn remove_grant(&self, user: &str, scope: &str) -> Result<bool>;
    /// A repository made explicitly (`admin repository add`).
    fn repository_info(&self, name: &str) -> Result<Option<RepositoryInfo>>;
    fn repository_infos(&self) -> Result<Vec<RepositoryInfo>>;
    /// Makes a repository or changes what it says of itself; true if made.
    fn put_repository_info(&self, info: &RepositoryInfo) -> Result<bool>;
    /// Removes a repository with its images: its record, visibility,
    /// grants, manifests, tags, signatures and uploaded blobs; false if
    /// there was nothing of it.
    fn remove_repository(&self, name: &str) -> Result<bool>;

    // ---- served content ---------------------------------------------------

    fn find_manifest(&self, repo: &str, reference: &Reference) -> Result<Option<ManifestBody>>;
    /// A blob's bytes, at most `max` (manifests and configs).
    fn read_small(&self, d: &Digest, max: u64) -> Result<Option<Vec<u8>>>;
    fn blob_in_repo(&self, repo: &str, d: &Digest) -> Result<bool>;
    fn blob_size(&self, d: &Digest) -> Result<Option<u64>>;
    /// The blob, or `range` (start, end exclusive) of it; None if absent.
    fn open_blob(&self, d: &Digest, range: Option<(u64, u64)>) -> Result<Option<BlobRead>>;
    /// A URL the client may fetch the blob from instead (a pre-signed
    /// URL), when the backend is set to redirect.
    fn blob_redirect(&self, d: &Digest) -> Result<Option<String>>;
    /// Links a blob that is stored already into `repo` (a cross-repository
    /// mount); false if it is not stored.
    fn link_blob(&self, repo: &str, d: &Digest) -> Result<bool>;
    /// Forgets that blob `d` was uploaded into `repo`.
    fn unlink_blob(&self, repo: &str, d: &Digest) -> Result<bool>;
    fn tags(&self, repo: &str) -> Result<Vec<String>>;
    fn repository_exists(&self, repo: &str) -> Result<bool>;
    fn repositories(&self) -> Result<Vec<String>>;
    fn tag_listing(&self) -> Result<Vec<ServedTag>>;
    fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<ServedManifest>>;
    fn signatures(&self, repo: &str, d: &Digest) -> Result<Vec<Vec<u8>>>;
    /// False if the manifest has `max` signatures already.
    fn add_signature(&self, repo: &str, d: &Digest, body: &[u8], max: usize) -> Result<bool>;
    /// Stores a manifest's body and records it, the blobs it refers to and
    /// its tag; `parts` is set when it is a runnable image (the local
    /// store makes it an image of the store).
    fn put_manifest(
        &self,
        repo: &str,
        m: &ServedManifest,
        bytes: &[u8],
        refs: &[Digest],
        tag: Option<&str>,
        parts: Option<&image::Manifest>,
    ) -> std::result::Result<(), PutError>;
    fn delete_manifest(&self, repo: &str, d: &Digest) -> Result<bool>;
    fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool>;

    // ---- uploads ----------------------------------------------------------

    fn upload_start(&self, repo: &str, owner: &str) -> Result<String>;
    fn upload_info(&self, id: &str) -> Result<Option<UploadInfo>>;
    fn uploads_of(&self, owner: &str) -> Result<Vec<UploadInfo>>;
    /// Appends a body (at offset `at` if the client said) of at most
    /// `room` bytes; returns the upload's size.
    fn upload_append(
        &self,
        id: &str,
        at: Option<u64>,
        body: &mut dyn Read,
        room: u64,
    ) -> std::result::Result<u64, UploadError>;
    /// Appends the last body, checks the digest and makes the upload a
    /// blob of its repository; returns its size. The upload is gone after,
    /// whatever the outcome.
    fn upload_finish(
        &self,
        id: &str,
        body: &mut dyn Read,
        room: u64,
        want: &Digest,
    ) -> std::result::Result<u64, UploadError>;
    fn upload_cancel(&self, id: &str) -> Result<bool>;

    /// Drops uploads idle longer than `upload_ttl` and what they left, and
    /// whatever else the backend collects (unreferenced blobs).
    fn collect_garbage(&self, upload_ttl: Duration);
}

/// The most of a body read and dropped after its upload failed, so that the
/// client is there to read the answer.
pub const MAX_DISCARD: u64 = 16 << 30;

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
