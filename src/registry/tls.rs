//! TLS settings per registry: the system roots plus `certs.d/HOST[:PORT]/`
//! (`*.crt` CAs, `*.cert` + `*.key` client certificate for mutual TLS),
//! looked up where podman, docker and iSulad keep them (iSulad's layout is
//! `ca.crt`, `tls.cert`, `tls.key`).

use std::fs;
use std::path::{Path, PathBuf};
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

/// The system CA bundle on Debian.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

pub struct TlsSettings {
    roots: Vec<Certificate<'static>>,
    client: Option<ClientCert>,
    insecure: bool,
}

impl TlsSettings {
    pub fn to_ureq(&self) -> TlsConfig {
        let b = TlsConfig::builder().disable_verification(self.insecure).client_cert(self.client.clone());
        let b = if self.roots.is_empty() {
            b.root_certs(RootCerts::WebPki)
        } else {
            b.root_certs(RootCerts::new_with_certs(&self.roots))
        };
        b.build()
    }
}

/// Directories searched for `host`'s certificates, in order.
pub fn cert_dirs(host: &str, explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(d) = explicit {
        return vec![d.to_path_buf()];
    }
    let mut v = vec![
        PathBuf::from("/etc/containers/certs.d").join(host),
        PathBuf::from("/etc/docker/certs.d").join(host),
        PathBuf::from("/etc/isulad/certs.d").join(host),
    ];
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        let xdg = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".config"));
        v.push(xdg.join("containers/certs.d").join(host));
    }
    v
}

fn read_pem(p: &Path) -> Result<Vec<PemItem<'static>>, String> {
    let data = fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
    ureq::tls::parse_pem(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM file: {e}", p.display()))
}

/// Builds the settings for `registry`.
pub fn settings_for(registry: &str, insecure: bool, explicit: Option<&Path>) -> Result<TlsSettings, String> {
    let mut roots = Vec::new();
    if let Ok(data) = fs::read(SYSTEM_BUNDLE) {
        for item in ureq::tls::parse_pem(&data).flatten() {
            if let PemItem::Certificate(c) = item {
                roots.push(c);
            }
        }
    }
    let mut client_cert: Option<PathBuf> = None;
    let mut client_key: Option<PathBuf> = None;
    for dir in cert_dirs(registry, explicit) {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        names.sort();
        for p in names {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
            if name.ends_with(".crt") {
                for item in read_pem(&p)? {
                    if let PemItem::Certificate(c) = item {
                        roots.push(c);
                    }
                }
            } else if name.ends_with(".cert") && client_cert.is_none() {
                let key = p.with_extension("key");
                if !key.exists() {
                    return Err(format!("client certificate {} has no matching key {}", p.display(), key.display()));
                }
                client_cert = Some(p.clone());
                client_key = Some(key);
            }
        }
    }
    let client = match (client_cert, client_key) {
        (Some(c), Some(k)) => {
            let certs: Vec<Certificate<'static>> = read_pem(&c)?
                .into_iter()
                .filter_map(|i| if let PemItem::Certificate(c) = i { Some(c) } else { None })
                .collect();
            let key: PrivateKey<'static> = read_pem(&k)?
                .into_iter()
                .find_map(|i| if let PemItem::PrivateKey(k) = i { Some(k) } else { None })
                .ok_or_else(|| format!("{} holds no private key", k.display()))?;
            if certs.is_empty() {
                return Err(format!("{} holds no certificate", c.display()));
            }
            Some(ClientCert::new_with_certs(&certs, key))
        }
        _ => None,
    };
    Ok(TlsSettings { roots, client, insecure })
}
