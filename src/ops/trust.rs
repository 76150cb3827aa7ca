//! Image trust at the edges of the store: the policy checked before an
//! image comes in (pull, copy, load, lazy mounts, build's `FROM`), the
//! signatures fetched for it and kept with it, and signatures made and
//! published when an image goes out (push, copy, build `-o`).
//!
//! Parsing and checking are `crate::trust`'s; this module reads files and
//! registries for it and records what it found.

use super::progress::Progress;
use crate::digest::Digest;
use crate::reference::Reference;
use crate::registry::signatures::get_lookaside;
use crate::registry::{FetchedManifest, Repo, Upload};
use crate::store::index::StoredSignature;
use crate::store::Store;
use crate::trust::policy::{Policy, Requirement};
use crate::trust::registries_d::{self, RegistriesD};
use crate::trust::{self, gpg, sigstore, simple, Candidate, Signature, Transport, MAX_SIGNATURES, MAX_SIGNATURE_SIZE};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The most bytes of signatures read for one image, from one source: the
/// memory a hostile registry or lookaside can make img hold.
const MAX_SIGNATURES_TOTAL: u64 = 16 << 20;

/// The artifact type of sigstore signatures found as OCI referrers.
const SIGSTORE_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// Which policy and registries.d a command obeys (`--signature-policy`,
/// `--registries.d`); the usual places when `None`.
#[derive(Debug, Clone, Default)]
pub struct TrustOptions {
    pub policy: Option<PathBuf>,
    pub registries_d: Option<PathBuf>,
}

/// How to sign what a command sends out.
#[derive(Debug, Clone, Default)]
pub struct SignOptions {
    /// An OpenPGP key fingerprint in the user's GnuPG keyring.
    pub sign_by: Option<String>,
    /// A sigstore (cosign) private key file.
    pub sigstore_key: Option<PathBuf>,
    /// The passphrase of either key, in a file (first line).
    pub passphrase_file: Option<PathBuf>,
    /// The identity to sign for; the destination reference by default.
    pub identity: Option<String>,
    /// Send none of the signatures the image came with.
    pub remove_signatures: bool,
}

impl SignOptions {
    pub fn signs(&self) -> bool {
        self.sign_by.is_some() || self.sigstore_key.is_some()
    }
}

/// The policy and registries.d of one command, read once.
pub struct Trust {
    pub policy: Policy,
    pub registries_d: RegistriesD,
}

impl Trust {
    pub fn load(opts: &TrustOptions) -> Result<Trust> {
        let policy = Policy::load(opts.policy.as_deref())?;
        let registries_d = RegistriesD::load(opts.registries_d.as_deref())?;
        Ok(Trust { policy, registries_d })
    }

    /// Whether every requirement for `scope` accepts anything, so that no
    /// signature need be looked for.
    fn accepts_anything(reqs: &[Requirement]) -> bool {
        !reqs.is_empty() && reqs.iter().all(|r| matches!(r, Requirement::InsecureAcceptAnything))
    }
}

/// The scope string of a registry image, as containers/image names it:
/// `host/path:tag`, else `host/path@digest`.
pub fn docker_scope(r: &Reference) -> String {
    registries_d::docker_identity(r)
}

/// Checks an image about to be pulled from `repo` under the name `r`,
/// whose top-level manifest is `top`; returns the signatures found (to be
/// kept with the image). Nothing has been stored yet, so a refusal leaves
/// the store as it was.
pub fn admit_remote(
    trust: &Trust,
    repo: &Repo,
    r: &Reference,
    top: &FetchedManifest,
    progress: &dyn Progress,
) -> Result<Vec<StoredSignature>> {
    let scope = docker_scope(r);
    let reqs = trust.policy.requirements_for(Transport::Docker, &scope);
    let settings = trust.registries_d.for_reference(r);
    let want_simple = trust::wants(reqs, "simple");
    let want_sigstore = trust::wants(reqs, "sigstore") || settings.use_sigstore_attachments;
    let anything = Trust::accepts_anything(reqs);
    let fetch = || -> Result<Vec<Signature>> {
        let mut sigs: Vec<Signature> = Vec::new();
        if want_simple || anything {
            // Simple signatures: the registry's API extension, else lookaside.
            if repo.client.has_signature_extension() {
                for s in
                    repo.extension_signatures(&top.digest, MAX_SIGNATURES, MAX_SIGNATURE_SIZE, MAX_SIGNATURES_TOTAL)?
                {
                    sigs.push(Signature::Simple(s));
                }
            } else if let Some(base) = settings.lookaside.as_deref() {
                // A remote lookaside is only asked when the policy needs it.
                if want_simple || base.starts_with("file://") {
                    sigs.extend(read_lookaside(base, r, &top.digest)?.into_iter().map(Signature::Simple));
                }
            }
        }
        if want_sigstore {
            sigs.extend(sigstore_attachments(repo, &top.digest)?);
        }
        Ok(sigs)
    };
    let mut sigs = match fetch().with_context(|| format!("reading the signatures of {r}")) {
        Ok(s) => s,
        // Under a policy that needs none, signatures are only kept for a
        // later push: not finding them is no reason to refuse the image.
        Err(e) if anything => {
            progress.line(&format!(
                "warning: {}; the policy needs none, so the image comes in without them",
                crate::error_chain(&e)
            ));
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    sigs.truncate(MAX_SIGNATURES);
    if !anything {
        progress.line("Checking image signatures");
        let candidate =
            Candidate { transport: Transport::Docker, scope: scope.clone(), reference: Some(r), manifest: &top.bytes };
        trust::evaluate(reqs, &candidate, &sigs)
            .map_err(|e| anyhow::anyhow!("pulling {r} under the policy {}: {e}", trust.policy.source))?;
    }
    Ok(sigs.iter().map(|s| stored(s, &top.digest)).collect())
}

/// Checks an image coming from a file transport (an OCI layout or an
/// archive) at `path`; such images carry no signatures img can read, so a
/// signature requirement refuses them.
pub fn admit_file(
    trust: &Trust,
    transport: Transport,
    path: &Path,
    reference: Option<&str>,
    name: Option<&Reference>,
    manifest: &[u8],
) -> Result<()> {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut scope = abs.display().to_string();
    if let Some(r) = reference {
        scope.push(':');
        scope.push_str(r);
    }
    let reqs = trust.policy.requirements_for(transport, &scope);
    if Trust::accepts_anything(reqs) {
        return Ok(());
    }
    let candidate = Candidate { transport, scope, reference: name, manifest };
    trust::evaluate(reqs, &candidate, &[])
        .map_err(|e| anyhow::anyhow!("loading {} under the policy {}: {e}", path.display(), trust.policy.source))?;
    Ok(())
}

/// Checks a stored image against the policy for the name `r`, with the
/// signatures kept with it (`img image verify`).
pub fn verify_stored(
    trust: &Trust,
    store: &Store,
    id: &Digest,
    r: &Reference,
) -> Result<trust::Accepted, trust::Refused> {
    let img = store.index().image(id).ok().flatten();
    let sigs = store.index().signatures(id).unwrap_or_default();
    let manifest_digest = img.map(|i| i.manifest_digest);
    // The digest signed is the manifest's, or an index it was chosen from.
    let signed: Vec<Digest> = sigs.iter().map(|s| s.signed_digest.clone()).chain(manifest_digest).collect();
    let scope = docker_scope(r);
    let reqs = trust.policy.requirements_for(Transport::Docker, &scope);
    let mut last = None;
    let mut tried = Vec::new();
    for d in signed {
        if tried.contains(&d) {
            continue;
        }
        tried.push(d.clone());
        let Ok(bytes) = store.read_blob(&d, crate::image::MAX_MANIFEST_SIZE) else { continue };
        let of: Vec<Signature> = sigs.iter().filter(|s| s.signed_digest == d).filter_map(loaded).collect();
        let candidate =
            Candidate { transport: Transport::Docker, scope: scope.clone(), reference: Some(r), manifest: &bytes };
        match trust::evaluate(reqs, &candidate, &of) {
            Ok(a) => return Ok(a),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(trust::Refused::Policy(format!("{r}: the store holds no manifest of this image; run img fsck"))))
}

/// A kept signature, as `crate::trust` reads it.
pub fn loaded(s: &StoredSignature) -> Option<Signature> {
    match s.kind.as_str() {
        "simple" => Some(Signature::Simple(s.body.clone())),
        "sigstore" => Some(Signature::Sigstore {
            payload: s.body.clone(),
            annotations: serde_json::from_str(&s.annotations).unwrap_or_default(),
        }),
        _ => None,
    }
}

/// A found signature, as the store keeps it.
pub fn stored(s: &Signature, signed: &Digest) -> StoredSignature {
    match s {
        Signature::Simple(b) => StoredSignature {
            signed_digest: signed.clone(),
            kind: "simple".into(),
            body: b.clone(),
            annotations: "{}".into(),
        },
        Signature::Sigstore { payload, annotations } => StoredSignature {
            signed_digest: signed.clone(),
            kind: "sigstore".into(),
            body: payload.clone(),
            annotations: serde_json::to_string(annotations).unwrap_or_else(|_| "{}".into()),
        },
    }
}

/// Simple signatures from a lookaside base URL (`file://` or `http(s)://`):
/// `signature-1`, `signature-2`... until one is missing.
fn read_lookaside(base: &str, r: &Reference, digest: &Digest) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut total = 0u64;
    for i in 0..MAX_SIGNATURES {
        let url = registries_d::lookaside_url(base, r, digest, i);
        let got = if let Some(path) = url.strip_prefix("file://") {
            read_file_limited(Path::new(path))?
        } else if url.starts_with("http://") || url.starts_with("https://") {
            get_lookaside(&url, MAX_SIGNATURE_SIZE)?
        } else {
            bail!("lookaside {base:?} is neither file://, http:// nor https://; fix it in registries.d");
        };
        match got {
            Some(b) => {
                total += b.len() as u64;
                if total > MAX_SIGNATURES_TOTAL {
                    bail!("the signatures of {r} in {base} add up to over {MAX_SIGNATURES_TOTAL} bytes; refusing them");
                }
                out.push(b)
            }
            None => break,
        }
    }
    Ok(out)
}

/// A file of at most `MAX_SIGNATURE_SIZE` bytes; `None` when it does not exist.
fn read_file_limited(path: &Path) -> Result<Option<Vec<u8>>> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut v = Vec::new();
    f.take(MAX_SIGNATURE_SIZE + 1).read_to_end(&mut v).with_context(|| format!("reading {}", path.display()))?;
    if v.len() as u64 > MAX_SIGNATURE_SIZE {
        bail!("signature {} is over {} bytes; it is not a signature", path.display(), MAX_SIGNATURE_SIZE);
    }
    Ok(Some(v))
}

/// Sigstore signatures of `digest`: the layers of the `sha256-<hex>.sig`
/// manifest, and of the referrers of the cosign signature artifact type.
fn sigstore_attachments(repo: &Repo, digest: &Digest) -> Result<Vec<Signature>> {
    let mut manifests: Vec<Vec<u8>> = Vec::new();
    if let Some(m) = repo.manifest_if_exists(&sigstore::attachment_tag(digest))? {
        manifests.push(m.bytes);
    }
    // Referrers (cosign's newer place) are asked only when there is no tag.
    let referrers = if manifests.is_empty() { repo.referrers(digest, SIGSTORE_ARTIFACT_TYPE)? } else { None };
    if let Some(ix) = referrers {
        if let Ok(crate::image::Document::Index(ix)) = crate::image::parse_document("referrers", &ix, None) {
            for d in ix.manifests.iter().take(MAX_SIGNATURES) {
                if let Some(m) = repo.manifest_if_exists(d.digest.as_str())? {
                    manifests.push(m.bytes);
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut total = 0u64;
    for bytes in manifests {
        let Ok(crate::image::Document::Manifest(m)) =
            crate::image::parse_document("sigstore signature manifest", &bytes, None)
        else {
            continue;
        };
        for l in m.layers.iter().filter(|l| l.media_type == sigstore::PAYLOAD_MEDIA_TYPE) {
            if out.len() >= MAX_SIGNATURES {
                break;
            }
            if l.size > MAX_SIGNATURE_SIZE {
                bail!("sigstore signature {} is {} bytes, over the limit of {MAX_SIGNATURE_SIZE}", l.digest, l.size);
            }
            total += l.size;
            if total > MAX_SIGNATURES_TOTAL {
                bail!("the sigstore signatures of {digest} add up to over {MAX_SIGNATURES_TOTAL} bytes; refusing them");
            }
            let payload = repo.blob_bytes(&l.digest, MAX_SIGNATURE_SIZE)?;
            let annotations: BTreeMap<String, String> = l.annotations.iter().cloned().collect();
            let sig = Signature::Sigstore { payload, annotations };
            if !out.contains(&sig) {
                out.push(sig);
            }
        }
    }
    Ok(out)
}

/// The passphrase in `file` (its first line), if one is given.
fn passphrase(file: Option<&Path>) -> Result<Option<String>> {
    let Some(f) = file else { return Ok(None) };
    let text = std::fs::read_to_string(f).with_context(|| format!("reading the passphrase file {}", f.display()))?;
    Ok(Some(text.lines().next().unwrap_or_default().to_string()))
}

/// New signatures of `digest` for `identity`, as `opts` asks.
pub fn make_signatures(opts: &SignOptions, identity: &Reference, digest: &Digest) -> Result<Vec<Signature>> {
    let pass = passphrase(opts.passphrase_file.as_deref())?;
    let identity_s = identity.to_string();
    let mut out = Vec::new();
    if let Some(fpr) = &opts.sign_by {
        let key = gpg::export_secret_key(fpr, pass.as_deref())
            .with_context(|| format!("signing {identity_s} with key {fpr}"))?;
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let payload = simple::payload(&identity_s, digest, concat!("img ", env!("CARGO_PKG_VERSION")), now);
        let sig = simple::sign(&payload, &key, pass.as_deref())
            .with_context(|| format!("signing {identity_s} with key {fpr}"))?;
        out.push(Signature::Simple(sig));
    }
    if let Some(path) = &opts.sigstore_key {
        let pem =
            std::fs::read(path).with_context(|| format!("reading the sigstore private key {}", path.display()))?;
        let key = sigstore::PrivateKey::from_encrypted_pem(&pem, pass.as_deref().unwrap_or_default().as_bytes())
            .with_context(|| format!("opening the sigstore private key {}", path.display()))?;
        let payload = sigstore::payload(&identity_s, digest);
        let mut annotations = BTreeMap::new();
        annotations.insert(sigstore::SIGNATURE_ANNOTATION.to_string(), key.sign(&payload));
        out.push(Signature::Sigstore { payload, annotations });
    }
    Ok(out)
}

/// The signatures to send with manifest `digest` pushed as `dest`: those
/// the image came with that sign it (unless `--remove-signatures`), and
/// new ones as `opts` asks.
pub fn outgoing(
    kept: &[StoredSignature],
    digest: &Digest,
    dest: &Reference,
    opts: &SignOptions,
    progress: &dyn Progress,
) -> Result<Vec<Signature>> {
    let mut sigs = Vec::new();
    if !opts.remove_signatures {
        let (same, other): (Vec<_>, Vec<_>) = kept.iter().partition(|s| &s.signed_digest == digest);
        if !other.is_empty() {
            progress.line(&format!(
                "{} signature(s) of the image sign another manifest (an index, or layers since recompressed) and are not copied",
                other.len()
            ));
        }
        sigs.extend(same.into_iter().filter_map(loaded));
    }
    if opts.signs() {
        progress.line("Signing manifest");
        sigs.extend(make_signatures(opts, &sign_identity(opts, dest)?, digest)?);
    }
    Ok(sigs)
}

/// The identity new signatures claim: `--sign-identity`, else `dest`.
pub fn sign_identity(opts: &SignOptions, dest: &Reference) -> Result<Reference> {
    match &opts.identity {
        Some(i) => {
            let r = Reference::parse(i).with_context(|| format!("invalid --sign-identity {i:?}"))?;
            if r.tag().is_none() && r.digest().is_none() {
                bail!("--sign-identity {i:?} must name a tag or digest, as registry.example.com/app:1");
            }
            Ok(r)
        }
        None => {
            Ok(if dest.tag().is_none() && dest.digest().is_none() { dest.with_tag("latest")? } else { dest.clone() })
        }
    }
}

/// Publishes `sigs` of `digest` for the image at `dest` in `repo`: simple
/// signatures through the registry's extension or to the lookaside
/// staging directory, sigstore ones as the `sha256-<hex>.sig` attachment.
pub fn publish(
    trust: &TrustOptions,
    repo: &Repo,
    dest: &Reference,
    digest: &Digest,
    sigs: &[Signature],
    progress: &dyn Progress,
) -> Result<()> {
    if sigs.is_empty() {
        return Ok(());
    }
    progress.line("Storing signatures");
    let ctx = || format!("storing the signatures of {dest}");
    let simple: Vec<&Vec<u8>> =
        sigs.iter().filter_map(|s| if let Signature::Simple(b) = s { Some(b) } else { None }).collect();
    if !simple.is_empty() {
        if repo.client.has_signature_extension() {
            for s in &simple {
                repo.put_extension_signature(digest, s).with_context(ctx)?;
            }
        } else {
            let rd = RegistriesD::load(trust.registries_d.as_deref())?;
            let settings = rd.for_reference(dest);
            let Some(base) = settings.lookaside_staging.or(settings.lookaside) else {
                bail!("storing the signatures of {dest}: no lookaside-staging is configured for it; set one in registries.d");
            };
            write_lookaside(&base, dest, digest, &simple).with_context(ctx)?;
        }
    }
    let sigstore: Vec<(&Vec<u8>, &BTreeMap<String, String>)> = sigs
        .iter()
        .filter_map(|s| {
            if let Signature::Sigstore { payload, annotations } = s {
                Some((payload, annotations))
            } else {
                None
            }
        })
        .collect();
    if !sigstore.is_empty() {
        attach_sigstore(repo, digest, &sigstore).with_context(ctx)?;
    }
    Ok(())
}

/// Writes simple signatures under a `file://` lookaside base, after those
/// already there (one already there is not written twice).
fn write_lookaside(base: &str, r: &Reference, digest: &Digest, sigs: &[&Vec<u8>]) -> Result<()> {
    let Some(_) = base.strip_prefix("file://") else {
        bail!("lookaside-staging {base:?} is not a file:// URL; img writes simple signatures only to a directory (publish it to the web server yourself)");
    };
    let mut existing = Vec::new();
    let mut next = 0;
    while next < MAX_SIGNATURES {
        let url = registries_d::lookaside_url(base, r, digest, next);
        match read_file_limited(Path::new(url.trim_start_matches("file://")))? {
            Some(b) => existing.push(b),
            None => break,
        }
        next += 1;
    }
    for s in sigs {
        if existing.iter().any(|e| e == *s) {
            continue;
        }
        if next >= MAX_SIGNATURES {
            bail!("{r} already has {MAX_SIGNATURES} signatures in {base}");
        }
        let url = registries_d::lookaside_url(base, r, digest, next);
        let path = PathBuf::from(url.trim_start_matches("file://"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, s).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        existing.push((*s).clone());
        next += 1;
    }
    Ok(())
}

/// Adds sigstore signatures to the `sha256-<hex>.sig` manifest of `digest`
/// (made when missing, extended when present).
fn attach_sigstore(repo: &Repo, digest: &Digest, sigs: &[(&Vec<u8>, &BTreeMap<String, String>)]) -> Result<()> {
    let tag = sigstore::attachment_tag(digest);
    let mut layers: Vec<serde_json::Value> = Vec::new();
    if let Some(m) = repo.manifest_if_exists(&tag)? {
        let v: serde_json::Value =
            serde_json::from_slice(&m.bytes).context("the existing signature manifest is not JSON")?;
        if let Some(ls) = v.get("layers").and_then(|l| l.as_array()) {
            layers.extend(ls.iter().cloned());
        }
    }
    let mut added = false;
    for (payload, annotations) in sigs {
        let d = Digest::of_bytes(payload);
        let sig = annotations.get(sigstore::SIGNATURE_ANNOTATION);
        let dup = layers.iter().any(|l| {
            l.get("digest").and_then(|x| x.as_str()) == Some(d.as_str())
                && l.pointer(&format!("/annotations/{}", sigstore::SIGNATURE_ANNOTATION.replace('/', "~1")))
                    .and_then(|x| x.as_str())
                    == sig.map(String::as_str)
        });
        if dup {
            continue;
        }
        upload_small(repo, &d, payload)?;
        layers.push(serde_json::json!({
            "mediaType": sigstore::PAYLOAD_MEDIA_TYPE,
            "size": payload.len(),
            "digest": d.as_str(),
            "annotations": annotations,
        }));
        added = true;
    }
    if !added {
        return Ok(());
    }
    let diff_ids: Vec<serde_json::Value> = layers.iter().filter_map(|l| l.get("digest").cloned()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))?;
    let config_digest = Digest::of_bytes(&config);
    upload_small(repo, &config_digest, &config)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::image::OCI_MANIFEST,
        "config": {"mediaType": crate::image::OCI_CONFIG, "size": config.len(), "digest": config_digest.as_str()},
        "layers": layers,
    }))?;
    repo.put_manifest(&tag, crate::image::OCI_MANIFEST, &manifest)?;
    Ok(())
}

fn upload_small(repo: &Repo, d: &Digest, bytes: &[u8]) -> Result<()> {
    if repo.has_blob(d, &repo.push_scope())? {
        return Ok(());
    }
    match repo.start_upload(None)? {
        Upload::Mounted => Ok(()),
        Upload::Location(l) => Ok(repo.put_blob(&l, d, &mut &bytes[..], bytes.len() as u64)?),
    }
}

pub use crate::trust::policy::TrustRow;

/// The policy in use, as `img image trust show` prints it.
pub struct Shown {
    pub source: String,
    pub raw: String,
    pub rows: Vec<TrustRow>,
}

/// The policy at `path` (the one in use when `None`), row by row, with the
/// lookaside registries.d configures for each signed scope.
pub fn show(path: Option<&Path>, registries_d: Option<&Path>) -> Result<Shown> {
    let policy = Policy::load(path)?;
    let raw = match Policy::find(path) {
        Some(p) => std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
        None => String::new(),
    };
    let mut rows = policy.describe();
    RegistriesD::load(registries_d)?.fill_stores(&mut rows);
    Ok(Shown { source: policy.source.clone(), raw, rows })
}

/// Where `img image trust set` writes: `path`, else the policy in use,
/// else the user's (or, for root, the system's) policy.json.
fn policy_to_write(path: Option<&Path>) -> PathBuf {
    if let Some(p) = path {
        return p.to_path_buf();
    }
    if let Some(p) = Policy::find(None) {
        return p;
    }
    if img_sys::process::is_root() {
        PathBuf::from("/etc/containers/policy.json")
    } else {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
        let config = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".config"));
        config.join("containers/policy.json")
    }
}

/// Sets the requirement for `scope` (`default`, a registry or a
/// repository) in the policy file, as `podman image trust set` does (one
/// `signedBy` a key file, so every key given must have signed), and writes
/// the file as podman lays it out, atomically. A file that is there must
/// parse first; nothing is written otherwise.
pub fn set(path: Option<&Path>, scope: &str, kind: &str, pubkeys: &[PathBuf]) -> Result<PathBuf> {
    use crate::trust::identity::SignedIdentity;
    use crate::trust::policy::KeySource;
    let file = policy_to_write(path);
    let mut policy = if file.exists() {
        Policy::load_file(&file)?
    } else {
        let mut p = Policy::insecure_default();
        p.source = file.display().to_string();
        p
    };
    let keys: Vec<PathBuf> = pubkeys
        .iter()
        .map(|p| {
            let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            if !abs.is_file() {
                bail!("public key file {} does not exist; give an existing file to -f", abs.display());
            }
            Ok(abs)
        })
        .collect::<Result<_>>()?;
    if !matches!(kind, "signedBy" | "sigstoreSigned") && !keys.is_empty() {
        bail!("-f names keys, which only signedBy and sigstoreSigned use");
    }
    let reqs: Vec<Requirement> = match kind {
        "accept" | "insecureAcceptAnything" => vec![Requirement::InsecureAcceptAnything],
        "reject" => vec![Requirement::Reject],
        "signedBy" if keys.is_empty() => bail!("signedBy needs the public keys to trust: give -f KEYRING"),
        "signedBy" => keys
            .iter()
            .map(|k| Requirement::SignedBy {
                keys: KeySource::Path(k.clone()),
                identity: SignedIdentity::MatchRepoDigestOrExact,
            })
            .collect(),
        "sigstoreSigned" => match keys.as_slice() {
            [one] => vec![Requirement::SigstoreSigned {
                key: Some(KeySource::Path(one.clone())),
                fulcio: None,
                rekor_public_key: None,
                identity: SignedIdentity::MatchRepoDigestOrExact,
            }],
            _ => bail!("sigstoreSigned takes exactly one public key: give -f KEY.pub once"),
        },
        other => bail!("unknown trust type {other:?}: use accept, reject, signedBy or sigstoreSigned"),
    };
    if scope == "default" {
        policy.set_default(reqs);
    } else {
        let scope = scope.strip_prefix("docker://").unwrap_or(scope);
        crate::trust::policy::check_scope("docker", scope)
            .map_err(|e| anyhow::anyhow!("{scope:?} is not a registry or repository: {e}"))?;
        policy.set_scope("docker", scope, reqs);
    }
    let out = policy.to_json();
    Policy::parse(&file.display().to_string(), &out)
        .map_err(|e| anyhow::anyhow!("the new policy would be invalid, so nothing was written: {e}"))?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = file.with_extension("json.tmp");
    std::fs::write(&tmp, &out).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &file).with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

/// The passphrase in `file` (its first line).
pub fn read_passphrase(file: &Path) -> Result<String> {
    Ok(passphrase(Some(file))?.unwrap_or_default())
}

/// Writes a new sigstore key pair: `PREFIX.key` (encrypted with
/// `passphrase`, in cosign's format) and `PREFIX.pub`; refuses to replace
/// files that exist.
pub fn generate_sigstore_key(prefix: &Path, passphrase: &str) -> Result<(PathBuf, PathBuf)> {
    let key_path = PathBuf::from(format!("{}.key", prefix.display()));
    let pub_path = PathBuf::from(format!("{}.pub", prefix.display()));
    for p in [&key_path, &pub_path] {
        if p.exists() {
            bail!("{} exists; remove it or choose another --output-prefix", p.display());
        }
    }
    let key = sigstore::PrivateKey::generate();
    let pem = key.to_encrypted_pem(passphrase.as_bytes());
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .with_context(|| format!("creating {}", key_path.display()))?;
    std::io::Write::write_all(&mut f, pem.as_bytes()).with_context(|| format!("writing {}", key_path.display()))?;
    std::fs::write(&pub_path, key.public_pem()).with_context(|| format!("writing {}", pub_path.display()))?;
    Ok((key_path, pub_path))
}

/// Signs the stored image `name` (a full name, which becomes the signed
/// identity unless `--sign-identity` says otherwise) and keeps the
/// signatures with it; simple ones are also written under `directory`
/// (else the lookaside staging of registries.d). Returns what it did.
pub fn sign_stored(
    store: &mut Store,
    name: &str,
    opts: &SignOptions,
    trust: &TrustOptions,
    directory: Option<&Path>,
) -> Result<Vec<String>> {
    let (img, _) = super::resolve_name(store, name)?;
    let r = Reference::parse_with_default_tag(name.strip_prefix("docker://").unwrap_or(name))
        .with_context(|| format!("signing {name}: give the image's full name (registry.example.com/team/app:1)"))?;
    let identity = sign_identity(opts, &r)?;
    let sigs = make_signatures(opts, &identity, &img.manifest_digest)?;
    let mut done = Vec::new();
    let simple: Vec<&Vec<u8>> =
        sigs.iter().filter_map(|s| if let Signature::Simple(b) = s { Some(b) } else { None }).collect();
    if !simple.is_empty() {
        let base = match directory {
            Some(d) => format!("file://{}", std::path::absolute(d).unwrap_or_else(|_| d.to_path_buf()).display()),
            None => {
                let rd = RegistriesD::load(trust.registries_d.as_deref())?;
                let s = rd.for_reference(&identity);
                s.lookaside_staging.or(s.lookaside).context("no lookaside-staging is configured; give --directory")?
            }
        };
        write_lookaside(&base, &identity, &img.manifest_digest, &simple)?;
        done.push(format!("{identity}: simple signature written under {base}"));
    }
    let stored_sigs: Vec<StoredSignature> = sigs.iter().map(|s| stored(s, &img.manifest_digest)).collect();
    store.index_mut().add_signatures(&img.id, &stored_sigs)?;
    done.push(format!("{identity}: {} signature(s) kept with image {}", stored_sigs.len(), img.id.short()));
    Ok(done)
}

/// Checks the stored image `name` against the policy, under that name.
pub fn verify_name(store: &Store, name: &str, trust: &TrustOptions) -> Result<trust::Accepted> {
    let (img, _) = super::resolve_name(store, name)?;
    let r = Reference::parse_with_default_tag(name.strip_prefix("docker://").unwrap_or(name))
        .with_context(|| format!("verifying {name}: give the image's full name"))?;
    let t = Trust::load(trust)?;
    verify_stored(&t, store, &img.id, &r).map_err(|e| anyhow::anyhow!("{e}"))
}
