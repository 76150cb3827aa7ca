//! The store as an OCI registry (`img serve`).
//!
//! `route` parses the distribution API's URLs and checks names; `http` is
//! the HTTP/1.1 server (TLS by rustls); `auth` decides who may do what;
//! `api` answers the API from the store; `page` is the image center;
//! `admin` changes users, namespaces and grants (the CLI's `img serve
//! admin`); `backend` is where it all is kept (the store, or PostgreSQL
//! and S3).

pub mod admin;
pub mod api;
pub mod auth;
pub mod backend;
pub mod http;
pub mod login;
pub mod metrics;
pub mod page;
pub mod route;

use anyhow::{bail, Context, Result};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What `img serve` was asked for.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Client certificates are required, signed by these CAs.
    pub tls_client_ca: Option<PathBuf>,
    pub settings: api::Settings,
    pub limits: http::Limits,
    /// Access logs, allowed networks, trusted proxies, the stop's timeout.
    pub http: http::Options,
    /// A second, plain-HTTP listener for `GET /metrics` only.
    pub metrics_listen: Option<String>,
    /// The metrics listener may be on an address other than loopback.
    pub metrics_public: bool,
    /// Blobs in S3 (`s3://BUCKET/PREFIX?endpoint=...`), with `database`.
    pub storage: Option<String>,
    /// Users, repositories and records in PostgreSQL (`postgres://...`).
    pub database: Option<String>,
}

/// The backend: the store at `root`, or PostgreSQL (`database`) with S3
/// (`storage`, which admin commands may leave out).
pub fn open_backend(root: &Path, storage: Option<&str>, database: Option<&str>) -> Result<Arc<dyn backend::Backend>> {
    match (storage, database) {
        (None, None) => {
            // Created and migrated now; the lock is not held while serving.
            drop(crate::store::Store::open(root)?);
            Ok(Arc::new(backend::local::Local::new(root).context("preparing the upload directory")?))
        }
        (s, Some(d)) => Ok(Arc::new(backend::cluster::Cluster::open(d, s)?)),
        (Some(_), None) => bail!("--storage needs --database (where users, repositories and uploads are kept)"),
    }
}

/// Who may do what when the server starts (see `api` for the model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Users exist: callers log in; anonymous callers pull what is public.
    Users,
    /// No users: anonymous callers pull what is public; nobody pushes.
    NoUsers,
    /// `--open` on a store without users: anyone pulls and pushes.
    Open,
}

/// A bound, ready server.
pub struct Server {
    listener: TcpListener,
    tls: Option<http::TlsConfig>,
    api: Arc<api::Api>,
    pub address: std::net::SocketAddr,
    pub mode: Mode,
    limits: http::Limits,
    http: http::Options,
    metrics: Option<TcpListener>,
}

/// Opens the store, reads the TLS files and binds the address.
pub fn bind(root: &Path, opts: &ServeOptions) -> Result<Server> {
    if opts.storage.is_some() != opts.database.is_some() {
        bail!("--storage and --database go together: blobs in S3, the rest in PostgreSQL");
    }
    let backend = open_backend(root, opts.storage.as_deref(), opts.database.as_deref())?;
    let users = backend.user_count()?;
    if opts.settings.open && users > 0 {
        bail!(
            "--open: the store has {users} user(s), and --open would let anyone push beside them; drop --open (img serve admin list shows the users)"
        );
    }
    let tls = match (&opts.tls_cert, &opts.tls_key) {
        (Some(c), Some(k)) => Some(tls_config(c, k, opts.tls_client_ca.as_deref())?),
        (None, None) => {
            if opts.tls_client_ca.is_some() {
                bail!("--tls-client-ca needs --tls-cert and --tls-key");
            }
            None
        }
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    let listener = TcpListener::bind(&opts.listen)
        .with_context(|| format!("listening on {}; is another server there?", opts.listen))?;
    let address = listener.local_addr()?;
    if opts.settings.open && !address.ip().is_loopback() {
        bail!(
            "--open lets anyone push and is allowed on a loopback address only, not {address}; add users (img serve admin user add NAME --admin) to serve other machines"
        );
    }
    let mode = match (users, opts.settings.open) {
        (0, true) => Mode::Open,
        (0, false) => Mode::NoUsers,
        _ => Mode::Users,
    };
    let metrics = opts.metrics_listen.as_deref().map(|a| http::bind_metrics(a, opts.metrics_public)).transpose()?;
    let api = Arc::new(api::Api::new(backend, opts.settings.clone())?);
    api.collect_garbage();
    Ok(Server { listener, tls, api, address, mode, limits: opts.limits, http: opts.http.clone(), metrics })
}

impl Server {
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The metrics listener's address, if there is one.
    pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until SIGTERM or SIGINT, then stops gracefully (see
    /// `http::serve_with`); garbage is collected every minute.
    pub fn run(self) -> Result<()> {
        let stop = img_sys::signal::Termination::catch().context("catching SIGTERM and SIGINT")?;
        if let Some(l) = self.metrics {
            http::serve_metrics(l).context("starting the metrics listener")?;
        }
        let gc = self.api.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(60));
            gc.collect_garbage();
        });
        http::serve_with(self.listener, self.tls, self.api, self.limits, self.http, Some(&stop))?;
        Ok(())
    }
}

fn tls_config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<http::TlsConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", cert.display());
    }
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("{} is not a PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))? {
                let c = c.with_context(|| format!("{} is not a PEM certificate", ca.display()))?;
                roots.add(c).with_context(|| format!("{}: a CA certificate rustls refuses", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .with_context(|| format!("client CA {}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let cfg = builder.with_single_cert(certs, key).context("the TLS certificate and key do not go together")?;
    Ok(Arc::new(cfg))
}
