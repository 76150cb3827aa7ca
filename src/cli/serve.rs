//! `img serve` and `img serve admin ...`.

use super::Ctx;
use crate::serve::{self, admin, api};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServeArgs {
    #[command(subcommand)]
    command: Option<ServeCommand>,
    /// Address to listen on [default: 127.0.0.1:5000]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// TLS certificate chain (PEM); with --tls-key, the server speaks HTTPS
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM)
    #[arg(long, value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
    /// How clients are asked to log in: token (a Bearer token from /token) or basic
    #[arg(long, value_name = "SCHEME")]
    auth: Option<String>,
    /// Print a line per request on standard error (address, method, path, status, user, bytes, time, request id)
    #[arg(long)]
    access_log: bool,
    /// The access log's format: text or json (one object per line); either turns the access log on
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics, plain HTTP (a loopback address unless --metrics-public)
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Let --metrics-listen be an address other machines reach
    #[arg(long)]
    metrics_public: bool,
    /// Serve only clients in this network (repeatable; like 10.0.0.0/8 or fd00::/8); others are closed at once
    #[arg(long, value_name = "CIDR")]
    allow_from: Vec<String>,
    /// An internal network (repeatable): clients outside every one reach only namespaces made with --external
    #[arg(long, value_name = "CIDR")]
    internal_network: Vec<String>,
    /// A proxy in this network names the client in X-Forwarded-For (its last hop), which is then believed (repeatable)
    #[arg(long, value_name = "CIDR")]
    trusted_proxy: Vec<String>,
    /// On SIGTERM or SIGINT, how long requests in flight may take to finish [default: 30]
    #[arg(long, value_name = "SECONDS")]
    shutdown_timeout: Option<u64>,
    /// Keep blobs at this URL (with --database)
    #[arg(long, value_name = "URL")]
    storage: Option<String>,
    /// Keep the registry's state in this database (with --storage)
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Let anyone pull and push without logging in, while the store has no users (only on a loopback address)
    #[arg(long)]
    open: bool,
    /// A TOML file with the settings above (listen, tls_cert, tls_key, tls_client_ca, auth, open, access_log,
    /// log_format, metrics_listen, metrics_public, allow_from, trusted_proxy and internal_network as lists, shutdown_timeout,
    /// storage, database) and limits: token_ttl, upload_ttl, idle_timeout, head_timeout (seconds),
    /// max_connections, max_connections_per_address, max_uploads_per_user, max_upload_bytes_per_user; flags win
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ServeCommand {
    /// Manage the users, namespaces, repositories, visibility and grants of img serve
    Admin {
        /// The PostgreSQL database of a scaled-out img serve (postgres://USER@HOST:PORT/DB; the password from
        /// PGPASSWORD or ~/.pgpass), instead of the store
        #[arg(long, value_name = "URL", global = true, env = "IMG_SERVE_DATABASE")]
        database: Option<String>,
        /// The S3 bucket of a scaled-out img serve (s3://BUCKET/PREFIX?endpoint=URL&region=R), for gc
        #[arg(long, value_name = "URL", global = true, env = "IMG_SERVE_STORAGE")]
        storage: Option<String>,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Add, change or remove users
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Make, change or remove namespaces
    Namespace {
        #[command(subcommand)]
        command: NamespaceCommand,
    },
    /// Make or remove a repository, or set its own visibility (img serve admin repository NAME --public)
    #[command(args_conflicts_with_subcommands = true)]
    Repository {
        #[command(subcommand)]
        command: Option<RepositoryCommand>,
        /// NAMESPACE/REPOSITORY
        name: Option<String>,
        #[arg(long, conflicts_with_all = ["private", "inherit"])]
        public: bool,
        #[arg(long, conflicts_with = "inherit")]
        private: bool,
        /// Take the namespace's visibility again
        #[arg(long)]
        inherit: bool,
    },
    /// Give a user pull or push (pull, push and delete) on a namespace or a repository
    Grant {
        user: String,
        /// NAMESPACE or NAMESPACE/REPOSITORY
        scope: String,
        /// pull or push
        access: String,
    },
    /// Take a user's grant on a namespace or repository away
    Revoke { user: String, scope: String },
    /// Collect garbage now: expired uploads, and blobs nothing refers to (after the grace period)
    Gc,
    /// List users, namespaces, repositories with their own visibility, and grants
    #[command(visible_alias = "ls")]
    List {
        /// json for JSON
        #[arg(long, value_parser = super::format_parser(&["json"], false))]
        format: Option<String>,
    },
}

#[derive(Subcommand)]
enum RepositoryCommand {
    /// Make a repository in a namespace, or change its summary and description
    Add {
        /// NAMESPACE/REPOSITORY
        name: String,
        /// One line saying what it holds (shown in the image center and the catalog API)
        #[arg(long)]
        summary: Option<String>,
        /// A longer description
        #[arg(long)]
        description: Option<String>,
        #[arg(long, conflicts_with = "private")]
        public: bool,
        #[arg(long)]
        private: bool,
    },
    /// Remove a repository with its images (manifests, tags and signatures)
    #[command(visible_alias = "remove")]
    Rm {
        /// NAMESPACE/REPOSITORY
        name: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user, or set an existing one's password (and admin rights only if --admin or --no-admin is given)
    Add {
        name: String,
        /// Read the password from standard input
        #[arg(long)]
        password_stdin: bool,
        /// The user may do everything, in every namespace
        #[arg(long, conflicts_with = "no_admin")]
        admin: bool,
        /// Take an existing user's admin rights away (never the last admin's)
        #[arg(long)]
        no_admin: bool,
    },
    /// Remove a user and their grants (never the last admin)
    #[command(visible_alias = "remove")]
    Rm { name: String },
}

#[derive(Subcommand)]
enum NamespaceCommand {
    /// Make a namespace (private unless --public), or change its visibility
    Add {
        name: String,
        #[arg(long, conflicts_with = "private")]
        public: bool,
        #[arg(long)]
        private: bool,
        /// Clients outside the internal networks (img serve --internal-network) may reach it too
        #[arg(long, conflicts_with = "no_external")]
        external: bool,
        /// Only clients inside the internal networks may reach it (the default)
        #[arg(long)]
        no_external: bool,
    },
    /// Remove a namespace with its repositories, their images and grants
    #[command(visible_alias = "remove")]
    Rm { name: String },
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    listen: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    auth: Option<String>,
    open: Option<bool>,
    token_ttl: Option<u64>,
    upload_ttl: Option<u64>,
    idle_timeout: Option<u64>,
    head_timeout: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_address: Option<usize>,
    max_uploads_per_user: Option<usize>,
    max_upload_bytes_per_user: Option<u64>,
    access_log: Option<bool>,
    log_format: Option<String>,
    metrics_listen: Option<String>,
    metrics_public: Option<bool>,
    allow_from: Option<Vec<String>>,
    trusted_proxy: Option<Vec<String>>,
    internal_network: Option<Vec<String>>,
    shutdown_timeout: Option<u64>,
    storage: Option<String>,
    database: Option<String>,
}

/// Networks from flags, or else from the configuration's `key`.
fn networks(
    flag: &str,
    given: Vec<String>,
    file: Option<Vec<String>>,
    path: &std::path::Path,
) -> Result<Vec<serve::http::Cidr>> {
    let (list, from) = if given.is_empty() {
        (file.unwrap_or_default(), format!("{}: {}", path.display(), flag.trim_start_matches('-').replace('-', "_")))
    } else {
        (given, flag.to_string())
    };
    list.iter().map(|s| s.parse().with_context(|| from.clone())).collect()
}

/// A number of seconds from the configuration, within bounds.
fn seconds(file: &std::path::Path, key: &str, v: u64, max: u64) -> Result<std::time::Duration> {
    if v == 0 || v > max {
        bail!("{}: {key} = {v} is not between 1 and {max} seconds", file.display());
    }
    Ok(std::time::Duration::from_secs(v))
}

fn count<T: PartialOrd + std::fmt::Display + From<u8>>(file: &std::path::Path, key: &str, v: T) -> Result<T> {
    if v < T::from(1u8) {
        bail!("{}: {key} = {v} must be at least 1", file.display());
    }
    Ok(v)
}

pub fn run(ctx: &Ctx, a: ServeArgs) -> Result<()> {
    if let Some(ServeCommand::Admin { database, storage, command }) = a.command {
        return run_admin(ctx, database.as_deref(), storage.as_deref(), command);
    }
    let file: ConfigFile = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("{} is not a valid img serve configuration", p.display()))?
        }
        None => ConfigFile::default(),
    };
    let auth = match a.auth.or(file.auth).as_deref().unwrap_or("token") {
        "token" => api::AuthMode::Token,
        "basic" => api::AuthMode::Basic,
        other => bail!("--auth {other:?}: give token or basic"),
    };
    // The HTTP layer writes the access log.
    let mut settings = api::Settings { auth, open: a.open || file.open == Some(true), ..Default::default() };
    let mut limits = serve::http::Limits::default();
    let path = a.config.clone().unwrap_or_default();
    let day = 86_400;
    if let Some(t) = file.token_ttl {
        settings.token_ttl = seconds(&path, "token_ttl", t, day)?;
    }
    if let Some(t) = file.upload_ttl {
        settings.upload_ttl = seconds(&path, "upload_ttl", t, 7 * day)?;
    }
    if let Some(t) = file.idle_timeout {
        limits.idle = seconds(&path, "idle_timeout", t, 3600)?;
    }
    if let Some(t) = file.head_timeout {
        limits.head = seconds(&path, "head_timeout", t, 600)?;
    }
    if let Some(n) = file.max_connections {
        limits.max_connections = count(&path, "max_connections", n)?;
    }
    if let Some(n) = file.max_connections_per_address {
        limits.max_per_address = count(&path, "max_connections_per_address", n)?;
    }
    if let Some(n) = file.max_uploads_per_user {
        settings.max_uploads_per_user = count(&path, "max_uploads_per_user", n)?;
    }
    if let Some(n) = file.max_upload_bytes_per_user {
        settings.upload_bytes_per_user = count(&path, "max_upload_bytes_per_user", n)?;
    }
    let log_format = a.log_format.or(file.log_format);
    let access_log = match log_format.as_deref() {
        Some("json") => serve::http::AccessLog::Json,
        Some("text") => serve::http::AccessLog::Text,
        Some(other) => bail!("{}: log_format = {other:?}: give text or json", path.display()),
        None if a.access_log || file.access_log == Some(true) => serve::http::AccessLog::Text,
        None => serve::http::AccessLog::Off,
    };
    let shutdown_timeout = a.shutdown_timeout.or(file.shutdown_timeout).unwrap_or(30);
    if shutdown_timeout > 3600 {
        bail!("shutdown timeout {shutdown_timeout}: give 0 to 3600 seconds");
    }
    settings.internal_networks = networks("--internal-network", a.internal_network, file.internal_network, &path)?;
    let http = serve::http::Options {
        access_log,
        allow_from: networks("--allow-from", a.allow_from, file.allow_from, &path)?,
        trusted_proxies: networks("--trusted-proxy", a.trusted_proxy, file.trusted_proxy, &path)?,
        shutdown_timeout: std::time::Duration::from_secs(shutdown_timeout),
    };
    let (storage, database) = (a.storage.or(file.storage), a.database.or(file.database));
    if storage.is_some() != database.is_some() {
        eprintln!(
            "error: --storage and --database go together (blobs at the one, the registry's state in the other); give both, or neither to serve the local store"
        );
        std::process::exit(2);
    }
    let opts = serve::ServeOptions {
        listen: a.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:5000".into()),
        tls_cert: a.tls_cert.or(file.tls_cert),
        tls_key: a.tls_key.or(file.tls_key),
        tls_client_ca: a.tls_client_ca.or(file.tls_client_ca),
        settings,
        limits,
        http,
        metrics_listen: a.metrics_listen.or(file.metrics_listen),
        metrics_public: a.metrics_public || file.metrics_public == Some(true),
        storage,
        database,
    };
    let server = serve::bind(ctx.root(), &opts)?;
    let scheme = if server.tls() { "https" } else { "http" };
    eprintln!("img serve: serving {} at {scheme}://{}", ctx.root().display(), server.address);
    if let Some(m) = server.metrics_address() {
        eprintln!("img serve: metrics at http://{m}/metrics");
    }
    match server.mode {
        serve::Mode::Open => eprintln!(
            "img serve: --open: anyone who reaches {} may pull and push, until a user is added",
            server.address
        ),
        serve::Mode::NoUsers => eprintln!(
            "img serve: no users yet: anonymous callers may pull public namespaces only, nobody may push; \
             add an admin with img serve admin user add NAME --admin"
        ),
        serve::Mode::Users => {}
    }
    server.run()
}

fn read_password(name: &str, from_stdin: bool) -> Result<String> {
    let prompt = if from_stdin { String::new() } else { format!("Password for {name}: ") };
    let p = crate::user::read_password(&prompt)?;
    if p.is_empty() {
        bail!("no password given for {name} (give it on standard input with --password-stdin)");
    }
    Ok(p)
}

fn run_admin(ctx: &Ctx, database: Option<&str>, storage: Option<&str>, c: AdminCommand) -> Result<()> {
    let backend = serve::open_backend(ctx.root(), storage, database)?;
    let b = &*backend;
    match c {
        AdminCommand::User { command: UserCommand::Add { name, password_stdin, admin: is_admin, no_admin } } => {
            admin::check_user_name(&name)?;
            let password = read_password(&name, password_stdin)?;
            let want = if is_admin {
                Some(true)
            } else if no_admin {
                Some(false)
            } else {
                None
            };
            let change = admin::user_add(b, &name, &password, want)?;
            let is_admin_now = admin::list(b)?.users.iter().any(|u| u.name == name && u.admin);
            let role = if is_admin_now { "an admin" } else { "not an admin" };
            match (change, want) {
                (admin::UserChange::Added, _) => eprintln!("added user {name} ({role})"),
                (admin::UserChange::Changed, None) => {
                    eprintln!("user {name} exists: changed the password; admin rights unchanged ({role})")
                }
                (admin::UserChange::Changed, Some(_)) => {
                    eprintln!("user {name} exists: changed the password; now {role}")
                }
            }
        }
        AdminCommand::User { command: UserCommand::Rm { name } } => {
            admin::user_rm(b, &name)?;
            eprintln!("removed user {name}");
        }
        AdminCommand::Namespace {
            command: NamespaceCommand::Add { name, public, private: _, external, no_external },
        } => {
            let made = admin::namespace_add(b, &name, public)?;
            if external || no_external {
                admin::namespace_external(b, &name, external)?;
            }
            let vis = if public { "public" } else { "private" };
            eprintln!("{} namespace {name} ({vis})", if made { "made" } else { "changed" });
        }
        AdminCommand::Namespace { command: NamespaceCommand::Rm { name } } => {
            admin::namespace_rm(b, &name)?;
            eprintln!("removed namespace {name}");
        }
        AdminCommand::Repository {
            command: Some(RepositoryCommand::Add { name, summary, description, public, private }),
            ..
        } => {
            let made = admin::repository_add(b, &name, summary.as_deref(), description.as_deref())?;
            if public || private {
                admin::repository_visibility(b, &name, Some(public))?;
            }
            eprintln!("{} repository {name}", if made { "made" } else { "changed" });
        }
        AdminCommand::Repository { command: Some(RepositoryCommand::Rm { name }), .. } => {
            admin::repository_rm(b, &name)?;
            eprintln!("removed repository {name} with its images");
        }
        AdminCommand::Repository { command: None, name, public, private, inherit } => {
            let Some(name) = name else {
                bail!("give a repository: img serve admin repository add|rm NAME, or NAME --public|--private|--inherit")
            };
            let v = match (public, private, inherit) {
                (true, _, _) => Some(true),
                (_, true, _) => Some(false),
                (_, _, true) => None,
                _ => bail!("give --public, --private or --inherit"),
            };
            admin::repository_visibility(b, &name, v)?;
        }
        AdminCommand::Grant { user, scope, access } => {
            admin::grant(b, &user, &scope, &access)?;
            eprintln!("granted {access} on {scope} to {user}");
        }
        AdminCommand::Revoke { user, scope } => {
            admin::revoke(b, &user, &scope)?;
            eprintln!("revoked {user}'s grant on {scope}");
        }
        AdminCommand::Gc => {
            b.collect_garbage(api::Settings::default().upload_ttl);
            eprintln!("collected garbage");
        }
        AdminCommand::List { format } => {
            let l = admin::list(b)?;
            if format.as_deref() == Some("json") {
                println!("{}", serde_json::to_string_pretty(&l)?);
                return Ok(());
            }
            if let Some(f) = format {
                bail!("--format {f:?}: only json is supported");
            }
            let mut rows = vec![vec!["KIND".into(), "NAME".into(), "DETAIL".into()]];
            for u in &l.users {
                rows.push(vec!["user".into(), u.name.clone(), if u.admin { "admin".into() } else { String::new() }]);
            }
            for n in &l.namespaces {
                let mut detail = vis(n.public);
                if n.external == Some(true) {
                    detail.push_str(", reachable from outside");
                }
                rows.push(vec!["namespace".into(), n.name.clone(), detail]);
            }
            for r in &l.repositories {
                rows.push(vec!["repository".into(), r.name.clone(), vis(r.public)]);
            }
            for r in &l.repository_info {
                rows.push(vec!["repository".into(), r.name.clone(), format!("made; {}", r.summary)]);
            }
            for g in &l.grants {
                rows.push(vec!["grant".into(), g.user.clone(), format!("{} on {}", g.access, g.scope)]);
            }
            super::print_table(&mut std::io::stdout().lock(), &rows)?;
        }
    }
    Ok(())
}

fn vis(public: bool) -> String {
    if public { "public" } else { "private" }.into()
}
