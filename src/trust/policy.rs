//! `containers-policy.json(5)`: parsed strictly, scopes looked up, requirements evaluated.

use super::identity::SignedIdentity;
use super::{Accepted, Candidate, Refused, Signature, Transport};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where key material comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Path(PathBuf),
    Paths(Vec<PathBuf>),
    Data(Vec<u8>),
}

/// Fulcio-issued certificates (`sigstoreSigned.fulcio`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fulcio {
    pub ca: KeySource,
    pub oidc_issuer: String,
    pub subject_email: String,
}

/// One policy requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    InsecureAcceptAnything,
    Reject,
    SignedBy {
        keys: KeySource,
        identity: SignedIdentity,
    },
    SigstoreSigned {
        key: Option<KeySource>,
        fulcio: Option<Fulcio>,
        rekor_public_key: Option<KeySource>,
        identity: SignedIdentity,
    },
}

impl Requirement {
    /// The kind of signature it reads (`simple`, `sigstore`), if any.
    pub fn signature_kind(&self) -> Option<&'static str> {
        match self {
            Requirement::SignedBy { .. } => Some("simple"),
            Requirement::SigstoreSigned { .. } => Some("sigstore"),
            _ => None,
        }
    }
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The file it came from (for messages), or `built-in default`.
    pub source: String,
    pub default: Vec<Requirement>,
    /// transport name → scope → requirements.
    pub transports: BTreeMap<String, BTreeMap<String, Vec<Requirement>>>,
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl Policy {
    pub fn find(_explicit: Option<&std::path::Path>) -> Option<std::path::PathBuf> {
        unimplemented!()
    }

    pub fn load(_explicit: Option<&std::path::Path>) -> Result<Policy, PolicyError> {
        unimplemented!()
    }

    pub fn parse(_file: &str, _text: &str) -> Result<Policy, PolicyError> {
        unimplemented!()
    }

    /// The requirements for `scope` under `transport`: the most specific scope, else the transport's `""`, else the default.
    pub fn requirements_for(&self, _transport: Transport, _scope: &str) -> &[Requirement] {
        unimplemented!()
    }
}

pub fn evaluate(_reqs: &[Requirement], _image: &Candidate<'_>, _sigs: &[Signature]) -> Result<Accepted, Refused> {
    unimplemented!()
}
