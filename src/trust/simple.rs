//! placeholder
use crate::digest::Digest;
#[derive(Debug, thiserror::Error)]
#[error("x")]
pub struct SignatureError;
pub fn payload(_identity: &str, _digest: &Digest, _creator: &str, _timestamp: i64) -> Vec<u8> {
    unimplemented!()
}
pub fn sign(_payload: &[u8], _secret_key: &[u8], _passphrase: Option<&str>) -> Result<Vec<u8>, SignatureError> {
    unimplemented!()
}
