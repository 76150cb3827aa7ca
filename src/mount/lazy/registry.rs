//! The registry end of a lazy mount: one connection per repository, made
//! when first needed and again after a failure, and a [`Fetch`] per layer
//! that retries a registry that does not answer until `IMG_LAZY_TIMEOUT`.

use super::Fetch;
use crate::digest::Digest;
use crate::registry::{Client, ClientOptions, Repo};
use anyhow::{Context, Result};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a read of bytes not fetched yet keeps trying a registry that
/// does not answer before it fails (EIO): `IMG_LAZY_TIMEOUT` seconds, 5 by
/// default.
pub fn lazy_timeout() -> Duration {
    crate::registry::client::env_seconds("IMG_LAZY_TIMEOUT", 5)
}

/// One repository a mount reads layers from: a connection made when first
/// needed (or by [`RegistrySource::connect`]) and shared by its layers,
/// made again after a failure.
pub struct RegistrySource {
    host: String,
    path: String,
    opts: ClientOptions,
    client: Mutex<Option<Arc<Client>>>,
    timeout: Duration,
}

impl RegistrySource {
    /// `source` is `registry/repository`, as `remote_layers` records it;
    /// `options_for` gives the client options for its registry host.
    pub fn new(source: &str, options_for: impl FnOnce(&str) -> Result<ClientOptions>) -> Result<Arc<RegistrySource>> {
        let (host, path) =
            source.split_once('/').with_context(|| format!("the recorded source {source:?} names no repository"))?;
        Ok(Arc::new(RegistrySource {
            host: host.to_string(),
            path: path.to_string(),
            opts: options_for(host)?,
            client: Mutex::new(None),
            timeout: lazy_timeout(),
        }))
    }

    /// Connects now (a mount checks that its registry answers before it
    /// is ready, so that wrong options are an error, not EIO later).
    pub fn connect(&self) -> crate::registry::Result<()> {
        let c = Arc::new(Client::connect(&self.host, &self.opts)?);
        if let Ok(mut slot) = self.client.lock() {
            *slot = Some(c);
        }
        Ok(())
    }

    /// The connection, made now if there is none.
    fn client(&self) -> crate::registry::Result<Arc<Client>> {
        if let Some(c) = self.client.lock().ok().and_then(|c| c.clone()) {
            return Ok(c);
        }
        let c = Arc::new(Client::connect(&self.host, &self.opts)?);
        if let Ok(mut slot) = self.client.lock() {
            *slot = Some(c.clone());
        }
        Ok(c)
    }

    fn once(&self, digest: &Digest, start: u64, end: u64) -> crate::registry::Result<Vec<u8>> {
        let client = self.client()?;
        let r = Repo::new(&client, &self.path).blob_range(digest, start, end);
        if r.is_err() {
            if let Ok(mut slot) = self.client.lock() {
                *slot = None;
            }
        }
        r
    }

    /// Blob `digest` of this repository from byte `start` to its end, as
    /// it comes (one request; the caller checks the bytes).
    pub fn open_from(&self, digest: &Digest, start: u64) -> crate::registry::Result<Box<dyn io::Read + Send>> {
        let client = self.client()?;
        let r = Repo::new(&client, &self.path).blob_from(digest, start);
        match r {
            Ok(resp) => Ok(resp.body),
            Err(e) => {
                if let Ok(mut slot) = self.client.lock() {
                    *slot = None;
                }
                Err(e)
            }
        }
    }

    /// Reads blob `digest` of this repository.
    pub fn layer(self: &Arc<Self>, digest: Digest) -> RegistryFetch {
        RegistryFetch { source: self.clone(), digest }
    }
}

/// Reads one blob from its repository for a mount; each fetch is retried
/// until `lazy_timeout` has passed.
pub struct RegistryFetch {
    source: Arc<RegistrySource>,
    digest: Digest,
}

impl Fetch for RegistryFetch {
    fn fetch(&self, start: u64, end: u64) -> io::Result<Vec<u8>> {
        let began = Instant::now();
        let mut wait = Duration::from_millis(100);
        let src = &self.source;
        loop {
            match src.once(&self.digest, start, end) {
                Ok(b) => return Ok(b),
                Err(e) => {
                    let refused = matches!(
                        e,
                        crate::registry::RegistryError::Refused { .. }
                            | crate::registry::RegistryError::NotFound { .. }
                            | crate::registry::RegistryError::Unauthorized { .. }
                            | crate::registry::RegistryError::Tls { .. }
                            | crate::registry::RegistryError::AuthFile(_)
                    );
                    if refused || began.elapsed() + wait > src.timeout {
                        return Err(io::Error::other(format!(
                            "fetching bytes {start}..{end} of layer {} from {}/{}: {e}",
                            self.digest, src.host, src.path
                        )));
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}
