//! A synchronous S3 client for blob storage.

pub mod sigv4;
mod xml;
