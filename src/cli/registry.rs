use super::dialect::Done;
use super::Ctx;
use crate::ops::pull::{self, PullOptions};
use crate::ops::push::{self, LayerCompression, PushOptions};
use crate::registry::authfile::{self, Credentials};
use crate::registry::ClientOptions;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

#[derive(Args, Clone)]
#[command(next_help_heading = "Registry options")]
pub(crate) struct RegistryFlags {
    /// Require HTTPS and verify certificates (false allows plain HTTP and unverified TLS for this registry;
    /// unless it is given, a registry on localhost or 127.0.0.0/8 may answer in plain HTTP, as docker allows)
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    tls_verify: Option<bool>,
    /// Credentials for the registry (USER:PASS)
    #[arg(long, value_name = "USER:PASS")]
    creds: Option<String>,
    /// Auth file to read (and for login, write)
    #[arg(long, value_name = "FILE", env = "REGISTRY_AUTH_FILE")]
    authfile: Option<PathBuf>,
    /// Directory of certificates (*.crt, *.cert, *.key) for the registry
    #[arg(long, value_name = "DIR")]
    cert_dir: Option<PathBuf>,
}

impl RegistryFlags {
    pub(crate) fn options(&self) -> Result<ClientOptions> {
        let creds = match &self.creds {
            Some(c) => {
                let (u, p) = c.split_once(':').context("--creds takes USER:PASS")?;
                Some(Credentials { username: u.to_string(), password: p.to_string() })
            }
            None => None,
        };
        Ok(ClientOptions {
            insecure: self.tls_verify == Some(false),
            loopback_plain_http: self.tls_verify.is_none(),
            creds,
            authfile: self.authfile.clone(),
            cert_dir: self.cert_dir.clone(),
            rate: Default::default(),
        })
    }
}

/// `--limit-rate`, on the commands that move image bytes.
#[derive(Args, Clone)]
#[command(next_help_heading = "Registry options")]
pub(crate) struct RateFlags {
    /// Cap the transfer at RATE bytes per second each way, all layers together
    /// (suffixes k, m, g as curl's; 0 for no cap); the store's limit-rate setting by default
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    limit_rate: Option<u64>,
}

impl RateFlags {
    pub(crate) fn rate(&self) -> crate::ratelimit::Rate {
        self.limit_rate.map(crate::ratelimit::Rate::bytes_per_second).unwrap_or_default()
    }
}

/// A rate as curl's `--limit-rate` takes it (`500k`, `1M`, `0` for no
/// cap), a trailing `/s` allowed.
fn parse_rate(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    if !t.is_empty() && t.bytes().all(|b| b == b'0') {
        return Ok(0);
    }
    crate::store::config::parse_size(t).map_err(|e| e.to_string())
}

#[derive(Args)]
pub struct PullArgs {
    #[command(flatten)]
    registry: RegistryFlags,
    #[command(flatten)]
    rate: RateFlags,
    #[command(flatten)]
    trust: super::trust::TrustFlags,
    /// Choose the image for OS/ARCH[/VARIANT] from a multi-platform index
    #[arg(long)]
    platform: Option<String>,
    /// Print only the image ID
    #[arg(short, long)]
    quiet: bool,
    /// Layers downloaded at once
    #[arg(long, default_value_t = 6, value_name = "N")]
    jobs: usize,
    /// Pull every tag of the repository
    #[arg(short = 'a', long)]
    all_tags: bool,
    /// Leave eStargz and zstd:chunked layers in the registry: img mount reads them on demand,
    /// and a later img pull completes the image
    #[arg(long)]
    lazy: bool,
    /// Accepted for docker compatibility (img checks digests, not docker content trust)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    disable_content_trust: Option<bool>,
    /// The image (NAME[:TAG] or NAME@DIGEST)
    #[arg(value_name = "IMAGE")]
    reference: String,
}

pub fn pull(ctx: &Ctx, a: PullArgs) -> Result<()> {
    let _ = a.disable_content_trust;
    if a.reference.trim().is_empty() {
        bail!("the image reference is empty; give one, as img pull registry.example.com/team/app:1");
    }
    let mut store = ctx.open_store()?;
    let opts = PullOptions {
        reference: a.reference.strip_prefix("docker://").unwrap_or(&a.reference).to_string(),
        platform: a.platform.clone(),
        client: ClientOptions { rate: a.rate.rate(), ..a.registry.options()? },
        jobs: a.jobs,
        lazy: a.lazy,
        trust: a.trust.options(),
    };
    let quiet = a.quiet;
    let progress = super::progress::Reporter::new(quiet);
    let mut out = super::stdout();
    if super::dialect::print_done(&mut out, &Done::Pulling(&a.reference))? {
        out.flush()?;
    }
    if a.all_tags {
        let ids = pull::pull_all_tags(&mut store, &opts, &progress)?;
        for id in ids {
            writeln!(out, "{}", id.hex())?;
        }
    } else {
        let id = pull::pull(&mut store, &opts, &progress)?;
        let digest = crate::ops::resolve_image(&store, id.as_str()).ok().map(|i| i.manifest_digest.to_string());
        if !super::dialect::print_done(&mut out, &Done::Pulled { reference: &a.reference, digest })? {
            writeln!(out, "{}", id.hex())?;
        }
    }
    out.flush()?;
    Ok(())
}

#[derive(Args)]
pub struct PushArgs {
    #[command(flatten)]
    registry: RegistryFlags,
    #[command(flatten)]
    rate: RateFlags,
    #[command(flatten)]
    sign: super::trust::SignFlags,
    #[command(flatten)]
    trust: super::trust::TrustFlags,
    /// Recompress every layer: gzip, zstd, estargz or zstd:chunked (gzip or zstd with a table of contents for lazy pulling); by default layers are sent as stored, uncompressed ones gzipped
    #[arg(long, value_name = "FORMAT")]
    compression_format: Option<String>,
    /// Write the pushed manifest's digest to FILE
    #[arg(long, value_name = "FILE")]
    digestfile: Option<PathBuf>,
    /// Upload blobs in chunks of SIZE bytes (suffixes k, m, g) instead of one request each
    #[arg(long, value_name = "SIZE")]
    chunk_size: Option<String>,
    /// Blobs uploaded at once
    #[arg(long, default_value_t = 3, value_name = "N")]
    jobs: usize,
    /// Print nothing but errors
    #[arg(short, long)]
    quiet: bool,
    /// Accepted for docker compatibility (img checks digests, not docker content trust)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    disable_content_trust: Option<bool>,
    /// The local image (name or ID)
    #[arg(value_name = "IMAGE")]
    source: String,
    /// Where to push it (REGISTRY/NAME[:TAG]); the image's name by default
    #[arg(value_name = "DESTINATION")]
    dest: Option<String>,
}

fn parse_size(s: &str) -> Result<u64> {
    Ok(crate::store::config::parse_size(s)?)
}

pub fn push(ctx: &Ctx, a: PushArgs) -> Result<()> {
    let _ = a.disable_content_trust;
    let store = ctx.open_store()?;
    let opts = PushOptions {
        source: a.source.clone(),
        dest: a.dest.clone(),
        client: ClientOptions { rate: a.rate.rate(), ..a.registry.options()? },
        compression: a.compression_format.as_deref().map(LayerCompression::parse).transpose()?,
        chunk_size: a.chunk_size.as_deref().map(parse_size).transpose()?,
        jobs: a.jobs,
        by_digest: false,
        sign: a.sign.options(),
        trust: a.trust.options(),
    };
    let quiet = a.quiet;
    let progress = super::progress::Reporter::new(quiet);
    let pushed = push::push(&store, &opts, &progress)?;
    let digest = pushed.manifest_digest.context("no manifest was pushed")?;
    if let Some(f) = &a.digestfile {
        std::fs::write(f, digest.as_str()).with_context(|| format!("writing the digest to {}", f.display()))?;
    }
    let said =
        super::dialect::print_done(&mut std::io::stdout(), &Done::Pushed(a.dest.as_deref().unwrap_or(&a.source)))?;
    if !said && !quiet {
        eprintln!(
            "Pushed {} ({digest}): {} blobs uploaded, {} already there, {} mounted",
            pushed.reference, pushed.uploaded, pushed.skipped, pushed.mounted
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct CopyArgs {
    /// Require HTTPS and verify certificates for the source registry
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    src_tls_verify: bool,
    /// Require HTTPS and verify certificates for the destination registry
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    dest_tls_verify: bool,
    /// Credentials for the source registry (USER:PASS)
    #[arg(long, value_name = "USER:PASS")]
    src_creds: Option<String>,
    /// Credentials for the destination registry (USER:PASS)
    #[arg(long, value_name = "USER:PASS")]
    dest_creds: Option<String>,
    /// Certificates directory for the source registry
    #[arg(long, value_name = "DIR")]
    src_cert_dir: Option<PathBuf>,
    /// Certificates directory for the destination registry
    #[arg(long, value_name = "DIR")]
    dest_cert_dir: Option<PathBuf>,
    /// Auth file to read credentials from
    #[arg(long, value_name = "FILE", env = "REGISTRY_AUTH_FILE")]
    authfile: Option<PathBuf>,
    /// Copy a whole multi-platform index (registry to registry)
    #[arg(short, long)]
    all: bool,
    /// The platform to copy from an index (OS/ARCH[/VARIANT])
    #[arg(long)]
    platform: Option<String>,
    /// Write the destination manifest's digest to FILE
    #[arg(long, value_name = "FILE")]
    digestfile: Option<PathBuf>,
    #[command(flatten)]
    rate: RateFlags,
    /// Print nothing but errors
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    sign: super::trust::SignFlags,
    #[command(flatten)]
    trust: super::trust::TrustFlags,
    /// docker://REF, img:NAME, oci:DIR[:REF], oci-archive:FILE[:REF] or docker-archive:FILE[:REF]
    #[arg(value_name = "SOURCE")]
    source: String,
    #[arg(value_name = "DESTINATION")]
    dest: String,
}

pub fn copy(ctx: &Ctx, a: CopyArgs) -> Result<()> {
    use crate::ops::copy::{self, CopyOptions, Transport};
    let side = |verify: bool, creds: &Option<String>, cert_dir: &Option<PathBuf>| -> Result<ClientOptions> {
        RegistryFlags {
            tls_verify: Some(verify),
            creds: creds.clone(),
            authfile: a.authfile.clone(),
            cert_dir: cert_dir.clone(),
        }
        .options()
    };
    // One cap for the copy, both sides.
    let rate = a.rate.rate();
    let opts = CopyOptions {
        src_client: ClientOptions { rate: rate.clone(), ..side(a.src_tls_verify, &a.src_creds, &a.src_cert_dir)? },
        dst_client: ClientOptions { rate, ..side(a.dest_tls_verify, &a.dest_creds, &a.dest_cert_dir)? },
        platform: a.platform.clone(),
        all: a.all,
        jobs: 3,
        trust: a.trust.options(),
        sign: a.sign.options(),
    };
    let src = Transport::parse(&a.source)?;
    let dst = Transport::parse(&a.dest)?;
    let quiet = a.quiet;
    let progress = super::progress::Reporter::new(quiet);
    let digest = copy::copy(ctx.root(), &src, &dst, &opts, &progress)?;
    if let Some(f) = &a.digestfile {
        let d = digest.context("--digestfile needs a registry destination")?;
        std::fs::write(f, d.as_str()).with_context(|| format!("writing the digest to {}", f.display()))?;
    }
    Ok(())
}

#[derive(Args)]
pub struct LoginArgs {
    #[command(flatten)]
    registry: RegistryFlags,
    /// User name
    #[arg(short, long)]
    username: Option<String>,
    /// Password (visible to other users in the process list; prefer --password-stdin)
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    password_stdin: bool,
    /// Print the user name stored for the registry
    #[arg(long)]
    get_login: bool,
    #[arg(value_name = "REGISTRY")]
    registry_host: String,
}

fn host_of(s: &str) -> String {
    let s = s.trim_start_matches("https://").trim_start_matches("http://");
    let s = s.split('/').next().unwrap_or(s);
    if s == "index.docker.io" || s == "registry-1.docker.io" {
        "docker.io".into()
    } else {
        s.to_string()
    }
}

pub fn login(a: LoginArgs) -> Result<()> {
    let host = host_of(&a.registry_host);
    let path = a.registry.authfile.clone().unwrap_or_else(authfile::default_path);
    if a.get_login {
        match crate::ops::login::saved_username(&path, &host)? {
            Some(u) => println!("{u}"),
            None => bail!("not logged in to {host}"),
        }
        return Ok(());
    }
    let username = match a.username {
        Some(u) => u,
        None => {
            if a.password_stdin || !std::io::stdin().is_terminal() {
                bail!("give the user name with -u USER");
            }
            eprint!("Username: ");
            let mut l = String::new();
            std::io::stdin().lock().read_line(&mut l)?;
            l.trim().to_string()
        }
    };
    let password = match (a.password, a.password_stdin) {
        (Some(_), true) => bail!("use either --password or --password-stdin"),
        (Some(p), false) => p,
        (None, _) => crate::user::read_password("Password: ")?,
    };
    if username.is_empty() || password.is_empty() {
        bail!("user name and password must not be empty");
    }
    let creds = Credentials { username, password };
    crate::ops::login::login(&host, &creds, &a.registry.options()?, &path)?;
    if !super::dialect::print_done(&mut std::io::stdout(), &Done::LoggedIn)? {
        eprintln!("Login Succeeded!");
    }
    Ok(())
}

#[derive(Args)]
pub struct LogoutArgs {
    /// Remove the credentials of every registry
    #[arg(short, long)]
    all: bool,
    /// Auth file to change
    #[arg(long, value_name = "FILE", env = "REGISTRY_AUTH_FILE")]
    authfile: Option<PathBuf>,
    #[arg(value_name = "REGISTRY")]
    registry_host: Option<String>,
}

pub fn logout(a: LogoutArgs) -> Result<()> {
    let path = a.authfile.clone().unwrap_or_else(authfile::default_path);
    match (a.all, &a.registry_host) {
        (true, _) => {
            authfile::remove(&path, None)?;
            if !super::dialect::print_done(&mut std::io::stdout(), &Done::LoggedOut { all: true })? {
                eprintln!("Removed login credentials for all registries");
            }
        }
        (false, Some(r)) => {
            let host = host_of(r);
            if !authfile::remove(&path, Some(&host))? {
                bail!("not logged in to {host}");
            }
            if !super::dialect::print_done(&mut std::io::stdout(), &Done::LoggedOut { all: false })? {
                eprintln!("Removed login credentials for {host}");
            }
        }
        (false, None) => bail!("give a registry, or -a for all"),
    }
    Ok(())
}

#[derive(Args)]
pub struct SearchArgs {
    #[command(flatten)]
    registry: RegistryFlags,
    /// Show at most N results
    #[arg(long, default_value_t = 25, value_name = "N")]
    limit: usize,
    /// Output format: table, json, or a Go template ('{{.Name}}')
    #[arg(long, value_parser = super::format_parser(&["table", "json"], true))]
    format: Option<String>,
    /// Don't truncate output (accepted for compatibility: nothing is truncated)
    #[arg(long)]
    no_trunc: bool,
    /// Filter the results, as docker does: is-official=BOOL, is-automated=BOOL, stars=N
    #[arg(short, long = "filter", value_name = "FILTER")]
    filter: Vec<String>,
    /// REGISTRY/TERM: repositories of REGISTRY whose name contains TERM
    #[arg(value_name = "TERM")]
    term: String,
}

pub fn search(a: SearchArgs) -> Result<()> {
    let filter = crate::ops::remote::SearchFilter::parse(&a.filter)?;
    let results: Vec<_> = crate::ops::remote::search(&a.term, a.limit, &a.registry.options()?)?
        .into_iter()
        .filter(|r| filter.keeps(r))
        .collect();
    let mut out = super::stdout();
    match a.format.as_deref() {
        Some("json") => {
            serde_json::to_writer_pretty(&mut out, &results)?;
            writeln!(out)?;
        }
        None | Some("table") => {
            let mut rows: Vec<Vec<String>> =
                vec![["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "AUTOMATED"].iter().map(|s| s.to_string()).collect()];
            rows.extend(results.iter().map(|r| {
                vec![
                    r.name.clone(),
                    r.description.clone(),
                    r.stars.to_string(),
                    r.official.clone(),
                    r.automated.clone(),
                ]
            }));
            super::print_table(&mut out, &rows)?;
        }
        Some(f) => {
            let t = super::parse_template(&f.replace("\\t", "\t").replace("\\n", "\n"))?;
            for r in &results {
                writeln!(out, "{}", super::render_template(&t, &serde_json::to_value(r)?)?)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

#[derive(Args)]
pub struct TagsArgs {
    #[command(flatten)]
    registry: RegistryFlags,
    /// The repository (REGISTRY/NAME)
    #[arg(value_name = "REPOSITORY")]
    repository: String,
}

pub fn tags(a: TagsArgs) -> Result<()> {
    let tags = crate::ops::remote::tags(&a.repository, &a.registry.options()?)?;
    let mut out = super::stdout();
    for t in tags {
        writeln!(out, "{t}")?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates_parse_as_curl_takes_them() {
        for (s, v) in
            [("0", 0), ("00", 0), ("0/s", 0), ("500k", 500 << 10), ("1M", 1 << 20), ("2m/s", 2 << 20), ("1000", 1000)]
        {
            assert_eq!(parse_rate(s), Ok(v), "{s}");
        }
        for s in ["", "/s", "-1", "1.5m", "fast", "0k/", "5x"] {
            assert!(parse_rate(s).is_err(), "{s:?} should be refused");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_rate_never_panics(s in ".{0,24}") {
            let _ = parse_rate(&s);
        }
    }
}
