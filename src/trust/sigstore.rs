//! placeholder
use crate::digest::Digest;
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
#[derive(Debug, thiserror::Error)]
#[error("x")]
pub struct SignatureError;
pub fn attachment_tag(_digest: &Digest) -> String {
    unimplemented!()
}
pub fn payload(_identity: &str, _digest: &Digest) -> Vec<u8> {
    unimplemented!()
}
pub struct PrivateKey;
impl PrivateKey {
    pub fn generate() -> PrivateKey {
        unimplemented!()
    }
    pub fn from_encrypted_pem(_b: &[u8], _p: &[u8]) -> Result<PrivateKey, SignatureError> {
        unimplemented!()
    }
    pub fn to_encrypted_pem(&self, _p: &[u8]) -> String {
        unimplemented!()
    }
    pub fn public_pem(&self) -> String {
        unimplemented!()
    }
    pub fn sign(&self, _payload: &[u8]) -> String {
        unimplemented!()
    }
}
