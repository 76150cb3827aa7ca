//! Image trust: which images may come in, and the signatures that prove it.
//!
//! Everything here is pure (no network, no store): the callers in
//! `ops::trust` fetch policy files, registries.d files and signatures, and
//! hand their bytes to these parsers and checks.
//!
//! - [`policy`]: `containers-policy.json(5)`, parsed strictly, and the
//!   requirements that apply to an image by transport and scope.
//! - [`identity`]: the `signedIdentity` rules (`matchRepoDigestOrExact`...).
//! - [`registries_d`]: `containers-registries.d(5)`, where signatures live.
//! - [`simple`]: OpenPGP "simple signing" (`atomic container signature`),
//!   made and checked with the `pgp` crate.
//! - [`sigstore`]: sigstore (cosign) signatures: payloads, public and
//!   encrypted private keys, Fulcio certificates and Rekor bundles.
//! - [`gpg`]: asks GnuPG for a secret key by fingerprint (`--sign-by`).
//!
//! [`evaluate`] joins them: every requirement of the policy must accept
//! the image, and a signature requirement accepts it when one signature
//! passes every check.

pub mod gpg;
pub mod identity;
pub mod json;
pub mod policy;
pub mod registries_d;
pub mod scope;
pub mod sigjson;
pub mod sigstore;
pub mod simple;
pub mod verify;

use crate::digest::Digest;
use crate::reference::Reference;
use std::collections::BTreeMap;

/// The largest signature img reads, from any source (as containers/image).
pub const MAX_SIGNATURE_SIZE: u64 = 4 << 20;
/// The most signatures img reads for one image, from all sources together.
pub const MAX_SIGNATURES: usize = 64;

/// The transports policy scopes are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Docker,
    Oci,
    OciArchive,
    DockerArchive,
}

impl Transport {
    /// The name policy.json uses for it.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Docker => "docker",
            Transport::Oci => "oci",
            Transport::OciArchive => "oci-archive",
            Transport::DockerArchive => "docker-archive",
        }
    }
}

/// An image as policy sees it, before any of its content is stored.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub transport: Transport,
    /// The scope string the transport's policy scopes are matched against:
    /// for `docker`, the reference as `host/path[:tag][@digest]`; for the
    /// file transports, the absolute path, with `:ref` when one was named.
    pub scope: String,
    /// The image's docker identity, which `signedIdentity` rules compare with
    /// the identity a signature claims. `None` for an archive with no name.
    pub reference: Option<&'a Reference>,
    /// The top-level manifest as read (an index when the reference names
    /// one): signatures sign its digest.
    pub manifest: &'a [u8],
}

/// A signature as found, before it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// An OpenPGP signed message holding an `atomic container signature`.
    Simple(Vec<u8>),
    /// A sigstore signature: the payload (the layer of the `.sig` manifest)
    /// and that layer's annotations (the signature itself, and any
    /// certificate, chain and Rekor bundle).
    Sigstore { payload: Vec<u8>, annotations: BTreeMap<String, String> },
}

impl Signature {
    pub fn kind(&self) -> &'static str {
        match self {
            Signature::Simple(_) => "simple",
            Signature::Sigstore { .. } => "sigstore",
        }
    }
}

/// What a signature proved, once checked against a requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The identity the signature claims (`docker-reference`).
    pub identity: String,
    /// The manifest digest it signs.
    pub manifest_digest: Digest,
    /// Who signed: an OpenPGP fingerprint, a public key's SHA-256, or a
    /// certificate's subject.
    pub signer: String,
}

/// Why an image was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// A `reject` requirement applies.
    #[error("{scope}: the policy rejects every image here (requirement \"reject\" in {policy}); run `img image trust show` to see the policy")]
    Rejected { scope: String, policy: String },
    /// A signature requirement found no signature at all.
    #[error("{scope}: the policy requires a {requirement} signature and the image has none; ask its publisher to sign it, or run `img image trust show` to see the policy")]
    Unsigned { scope: String, requirement: String },
    /// A signature requirement found signatures, none of which passed.
    #[error("{scope}: the policy requires a {requirement} signature and none of the image's {count} signature(s) passed: {reasons}; run `img image trust show` to see the policy")]
    NoneValid { scope: String, requirement: String, count: usize, reasons: String },
    /// The policy itself cannot be applied (a key file is missing...).
    #[error("{0}")]
    Policy(String),
}

/// What the policy decided for an accepted image: one line per requirement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    pub reasons: Vec<String>,
    /// The signatures that satisfied signature requirements.
    pub verified: Vec<Verified>,
}

/// Checks `image` against `reqs` (the requirements policy gives its scope),
/// with the signatures found for it. All must accept.
pub fn evaluate(
    reqs: &[policy::Requirement],
    image: &Candidate<'_>,
    signatures: &[Signature],
) -> Result<Accepted, Refused> {
    policy::evaluate_with(reqs, image, signatures, &verify::check)
}

/// Whether any of `reqs` reads signatures of the given kind, so callers
/// fetch only what will be checked.
pub fn wants(reqs: &[policy::Requirement], kind: &str) -> bool {
    reqs.iter().any(|r| r.signature_kind() == Some(kind))
}
