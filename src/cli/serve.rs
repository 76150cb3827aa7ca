//! `img serve` and `img serve admin ...`.

use super::Ctx;
use crate::serve::{self, admin, api};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::io::{BufRead, IsTerminal};
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
    /// Print a line per request on standard error (address, method, path, status)
    #[arg(long)]
    access_log: bool,
    /// A TOML file with the settings above (listen, tls_cert, tls_key, tls_client_ca, auth, token_ttl, upload_ttl in seconds); flags win
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ServeCommand {
    /// Manage the users, namespaces, visibility and grants of img serve
    Admin {
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
    /// Set a repository's own visibility
    Repository {
        /// NAMESPACE/REPOSITORY
        name: String,
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
    /// List users, namespaces, repositories with their own visibility, and grants
    #[command(visible_alias = "ls")]
    List {
        /// json for JSON
        #[arg(long)]
        format: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user, or set an existing one's password
    Add {
        name: String,
        /// Read the password from standard input
        #[arg(long)]
        password_stdin: bool,
        /// The user may do everything, in every namespace
        #[arg(long)]
        admin: bool,
    },
    /// Remove a user and their grants
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
    },
    /// Remove a namespace's settings and grants (its images stay in the store)
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
    token_ttl: Option<u64>,
    upload_ttl: Option<u64>,
}

pub fn run(ctx: &Ctx, a: ServeArgs) -> Result<()> {
    if let Some(ServeCommand::Admin { command }) = a.command {
        return run_admin(ctx, command);
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
    let mut settings = api::Settings { auth, access_log: a.access_log, ..Default::default() };
    if let Some(t) = file.token_ttl {
        settings.token_ttl = std::time::Duration::from_secs(t.max(1));
    }
    if let Some(t) = file.upload_ttl {
        settings.upload_ttl = std::time::Duration::from_secs(t.max(1));
    }
    let opts = serve::ServeOptions {
        listen: a.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:5000".into()),
        tls_cert: a.tls_cert.or(file.tls_cert),
        tls_key: a.tls_key.or(file.tls_key),
        tls_client_ca: a.tls_client_ca.or(file.tls_client_ca),
        settings,
    };
    let server = serve::bind(ctx.root(), &opts)?;
    let scheme = if server.tls() { "https" } else { "http" };
    eprintln!("img serve: serving {} at {scheme}://{}", ctx.root().display(), server.address);
    if server.open {
        eprintln!(
            "img serve: no users yet, so anyone may pull and push; add one with img serve admin user add NAME --admin"
        );
    }
    server.run()
}

fn read_password(name: &str, from_stdin: bool) -> Result<String> {
    let stdin = std::io::stdin();
    if !from_stdin && stdin.is_terminal() {
        eprint!("Password for {name}: ");
    }
    let mut l = String::new();
    stdin.lock().read_line(&mut l)?;
    let p = l.trim_end_matches(['\n', '\r']).to_string();
    if p.is_empty() {
        bail!("no password given for {name} (give it on standard input with --password-stdin)");
    }
    Ok(p)
}

fn run_admin(ctx: &Ctx, c: AdminCommand) -> Result<()> {
    let mut store = ctx.open_store()?;
    match c {
        AdminCommand::User { command: UserCommand::Add { name, password_stdin, admin: is_admin } } => {
            admin::check_user_name(&name)?;
            let password = read_password(&name, password_stdin)?;
            let added = admin::user_add(&mut store, &name, &password, is_admin)?;
            eprintln!(
                "{} user {name}{}",
                if added { "added" } else { "changed" },
                if is_admin { " (admin)" } else { "" }
            );
        }
        AdminCommand::User { command: UserCommand::Rm { name } } => {
            admin::user_rm(&mut store, &name)?;
            eprintln!("removed user {name}");
        }
        AdminCommand::Namespace { command: NamespaceCommand::Add { name, public, private: _ } } => {
            let made = admin::namespace_add(&mut store, &name, public)?;
            let vis = if public { "public" } else { "private" };
            eprintln!("{} namespace {name} ({vis})", if made { "made" } else { "changed" });
        }
        AdminCommand::Namespace { command: NamespaceCommand::Rm { name } } => {
            admin::namespace_rm(&mut store, &name)?;
            eprintln!("removed namespace {name}");
        }
        AdminCommand::Repository { name, public, private, inherit } => {
            let v = match (public, private, inherit) {
                (true, _, _) => Some(true),
                (_, true, _) => Some(false),
                (_, _, true) => None,
                _ => bail!("give --public, --private or --inherit"),
            };
            admin::repository_visibility(&mut store, &name, v)?;
        }
        AdminCommand::Grant { user, scope, access } => {
            admin::grant(&mut store, &user, &scope, &access)?;
            eprintln!("granted {access} on {scope} to {user}");
        }
        AdminCommand::Revoke { user, scope } => {
            admin::revoke(&mut store, &user, &scope)?;
            eprintln!("revoked {user}'s grant on {scope}");
        }
        AdminCommand::List { format } => {
            let l = admin::list(&store)?;
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
                rows.push(vec!["namespace".into(), n.name.clone(), vis(n.public)]);
            }
            for r in &l.repositories {
                rows.push(vec!["repository".into(), r.name.clone(), vis(r.public)]);
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
