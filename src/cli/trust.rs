//! Trust flags shared by the commands that bring images in or send them
//! out, and `img image trust|sign|verify|generate-sigstore-key`.

use super::Ctx;
use crate::ops::trust::{self as ops_trust, SignOptions, TrustOptions};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Clone, Default)]
#[command(next_help_heading = "Trust options")]
pub(crate) struct TrustFlags {
    /// Signature policy (containers-policy.json) to obey instead of $IMG_POLICY,
    /// ~/.config/containers/policy.json, /etc/containers/policy.json or /etc/isula-build/policy.json
    #[arg(long, visible_alias = "policy", value_name = "FILE")]
    signature_policy: Option<PathBuf>,
    /// Directory of registries.d files saying where signatures are kept
    #[arg(long = "registries.d", value_name = "DIR")]
    registries_d: Option<PathBuf>,
}

impl TrustFlags {
    pub(crate) fn options(&self) -> TrustOptions {
        TrustOptions { policy: self.signature_policy.clone(), registries_d: self.registries_d.clone() }
    }
}

#[derive(Args, Clone, Default)]
#[command(next_help_heading = "Signing options")]
pub(crate) struct SignFlags {
    /// Sign the image with the OpenPGP key of this FINGERPRINT in your GnuPG keyring (simple signing)
    #[arg(long, value_name = "FINGERPRINT")]
    sign_by: Option<String>,
    /// Sign the image with this sigstore (cosign) private key
    #[arg(long, value_name = "FILE")]
    sign_by_sigstore_private_key: Option<PathBuf>,
    /// Read the signing key's passphrase from FILE
    #[arg(long, value_name = "FILE")]
    sign_passphrase_file: Option<PathBuf>,
    /// The identity to sign for (a full reference); the destination by default
    #[arg(long, value_name = "REFERENCE")]
    sign_identity: Option<String>,
    /// Do not copy the signatures the image came with
    #[arg(long)]
    remove_signatures: bool,
}

impl SignFlags {
    pub(crate) fn options(&self) -> SignOptions {
        SignOptions {
            sign_by: self.sign_by.clone(),
            sigstore_key: self.sign_by_sigstore_private_key.clone(),
            passphrase_file: self.sign_passphrase_file.clone(),
            identity: self.sign_identity.clone(),
            remove_signatures: self.remove_signatures,
        }
    }
}

#[derive(Subcommand)]
pub enum TrustCommand {
    /// Show the signature policy
    Show(ShowArgs),
    /// Set the policy for a registry or repository (or the default)
    Set(SetArgs),
}

#[derive(Args)]
pub struct ShowArgs {
    /// The policy file to show (the one in use by default)
    #[arg(long, value_name = "FILE")]
    policypath: Option<PathBuf>,
    /// Directory of registries.d files (for the STORE column)
    #[arg(long = "registries.d", value_name = "DIR")]
    registries_d: Option<PathBuf>,
    /// Print the policy file as it is
    #[arg(long)]
    raw: bool,
    /// Print the rows as JSON
    #[arg(short, long)]
    json: bool,
    /// Show only this registry or repository (and the default)
    #[arg(value_name = "REGISTRY")]
    registry: Option<String>,
}

#[derive(Args)]
pub struct SetArgs {
    /// The policy file to write (the one in use by default)
    #[arg(long, value_name = "FILE")]
    policypath: Option<PathBuf>,
    /// accept, reject, signedBy or sigstoreSigned
    #[arg(short = 't', long = "type", default_value = "signedBy", value_name = "TYPE")]
    kind: String,
    /// Public key file(s) to trust: GnuPG keyrings for signedBy, PEM keys for sigstoreSigned
    #[arg(short = 'f', long = "pubkeysfile", value_name = "FILE")]
    pubkeys: Vec<PathBuf>,
    /// `default`, a registry (registry.example.com) or a repository (registry.example.com/team/app)
    #[arg(value_name = "REGISTRY")]
    registry: String,
}

pub fn trust(command: TrustCommand) -> Result<()> {
    match command {
        TrustCommand::Show(a) => show(a),
        TrustCommand::Set(a) => set(a),
    }
}

fn show(a: ShowArgs) -> Result<()> {
    let shown = ops_trust::show(a.policypath.as_deref(), a.registries_d.as_deref())?;
    let mut out = super::stdout();
    if a.raw {
        out.write_all(shown.raw.as_bytes())?;
        if !shown.raw.ends_with('\n') {
            writeln!(out)?;
        }
        return Ok(());
    }
    let rows: Vec<&ops_trust::TrustRow> = shown
        .rows
        .iter()
        .filter(|r| a.registry.as_deref().is_none_or(|want| r.scope == "default" || r.scope == want))
        .collect();
    if a.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "transport": r.transport, "name": r.scope, "repo_name": r.scope,
                    "type": r.kind, "gpg_id": r.ids, "sigstore": r.store,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let w_t = rows.iter().map(|r| r.transport.len()).max().unwrap_or(0).max(9);
    let w_n = rows.iter().map(|r| r.scope.len()).max().unwrap_or(0).max(4);
    let w_k = rows.iter().map(|r| r.kind.len()).max().unwrap_or(0).max(4);
    let w_i = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0).max(2);
    writeln!(out, "{:w_t$}  {:w_n$}  {:w_k$}  {:w_i$}  STORE", "TRANSPORT", "NAME", "TYPE", "ID")?;
    for r in rows {
        writeln!(out, "{:w_t$}  {:w_n$}  {:w_k$}  {:w_i$}  {}", r.transport, r.scope, r.kind, r.ids, r.store)?;
    }
    Ok(())
}

fn set(a: SetArgs) -> Result<()> {
    let path = ops_trust::set(a.policypath.as_deref(), &a.registry, &a.kind, &a.pubkeys)?;
    eprintln!("Wrote {}", path.display());
    Ok(())
}

#[derive(Args)]
pub struct SignArgs {
    #[command(flatten)]
    sign: SignFlags,
    /// Also write simple signatures under this directory (a lookaside staging directory)
    #[arg(short, long, value_name = "DIR")]
    directory: Option<PathBuf>,
    #[command(flatten)]
    trust: TrustFlags,
    /// Images to sign, by full name (registry.example.com/team/app:1)
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
}

pub fn sign(ctx: &Ctx, a: SignArgs) -> Result<()> {
    let opts = a.sign.options();
    if !opts.signs() {
        bail!("say how to sign: --sign-by FINGERPRINT (GnuPG) or --sign-by-sigstore-private-key FILE");
    }
    let mut store = ctx.open_store()?;
    for name in &a.images {
        let signed = ops_trust::sign_stored(&mut store, name, &opts, &a.trust.options(), a.directory.as_deref())?;
        for line in signed {
            eprintln!("{line}");
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    trust: TrustFlags,
    /// Print the result as JSON
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// Images to check against the policy, by the name the policy should see
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
}

pub fn verify(ctx: &Ctx, a: VerifyArgs) -> Result<()> {
    let store = ctx.open_store()?;
    let mut out = super::stdout();
    let mut failed = 0;
    let mut results = Vec::new();
    for name in &a.images {
        match ops_trust::verify_name(&store, name, &a.trust.options()) {
            Ok(accepted) => {
                if a.format.is_none() {
                    writeln!(out, "{name}: accepted")?;
                    for r in &accepted.reasons {
                        writeln!(out, "  {r}")?;
                    }
                }
                results.push(serde_json::json!({"image": name, "accepted": true, "reasons": accepted.reasons}));
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {}", crate::error_chain(&e));
                results.push(serde_json::json!({"image": name, "accepted": false, "error": crate::error_chain(&e)}));
            }
        }
    }
    if a.format.as_deref() == Some("json") {
        writeln!(out, "{}", serde_json::to_string_pretty(&results)?)?;
    }
    out.flush()?;
    if failed > 0 {
        return Err(super::AlreadyReported("verify").into());
    }
    Ok(())
}

#[derive(Args)]
pub struct GenerateKeyArgs {
    /// Write PREFIX.key (the encrypted private key) and PREFIX.pub
    #[arg(long, value_name = "PREFIX")]
    output_prefix: PathBuf,
    /// Read the passphrase from FILE (asked for on the terminal otherwise)
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

pub fn generate_key(a: GenerateKeyArgs) -> Result<()> {
    let pass = match &a.passphrase_file {
        Some(f) => ops_trust::read_passphrase(f)?,
        None => {
            let p1 = crate::user::read_password("Passphrase for the new key: ")?;
            let p2 = crate::user::read_password("Again: ")?;
            if p1 != p2 {
                bail!("the passphrases differ; nothing was written");
            }
            p1
        }
    };
    let (key, public) = ops_trust::generate_sigstore_key(&a.output_prefix, &pass)?;
    eprintln!("Wrote {} and {}", key.display(), public.display());
    Ok(())
}
