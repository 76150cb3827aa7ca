//! `signedIdentity`: how the identity a signature claims must relate to the image's name.

use crate::reference::Reference;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedIdentity {
    MatchRepoDigestOrExact,
    MatchRepository,
    MatchExact,
    ExactReference(Reference),
    ExactRepository(Reference),
    RemapIdentity { prefix: String, signed_prefix: String },
}
