//! The command line: clap definitions and rendering only. Each command
//! parses its flags, calls one function in `ops`, and prints the result.
//! Data goes to stdout; progress and diagnostics to stderr.

mod archive;
#[cfg(feature = "build")]
mod build;
pub(crate) mod dialect;
mod images;
mod inspect;
mod manage;
mod manifest;
mod mount;
mod progress;
mod registry;
#[cfg(feature = "serve")]
mod serve;
mod system;
mod trust;

use crate::store::Store;
use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "img", version, about = "A daemonless, rootless container image tool", disable_help_subcommand = true)]
pub struct Cli {
    /// Store root directory [default: /var/lib/img for root, else ~/.local/share/img]
    #[arg(long, global = true, env = "IMG_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List images
    #[command(visible_alias = "ls")]
    Images(images::ImagesArgs),
    /// Show detailed information on images
    Inspect(inspect::InspectArgs),
    /// Show the history of an image
    History(inspect::HistoryArgs),
    /// Give an image more names
    Tag(manage::TagArgs),
    /// Remove images
    #[command(visible_alias = "rm")]
    Rmi(manage::RmiArgs),
    /// Remove dangling images and unreferenced blobs
    Prune(manage::PruneArgs),
    /// Keep images from eviction when the store is over its max-size
    Pin(manage::PinArgs),
    /// Let pinned images be evicted again
    Unpin(manage::PinArgs),
    /// Write images to an archive
    Save(archive::SaveArgs),
    /// Load images from an archive
    Load(archive::LoadArgs),
    /// Make an image from a root filesystem tarball
    Import(archive::ImportArgs),
    /// Write an image's root filesystem as a tarball
    Export(archive::ExportArgs),
    /// Pull an image from a registry
    Pull(registry::PullArgs),
    /// Push an image to a registry
    Push(registry::PushArgs),
    /// Log in to a registry
    Login(registry::LoginArgs),
    /// Log out of a registry
    Logout(registry::LogoutArgs),
    /// List the tags of a repository on a registry
    Tags(registry::TagsArgs),
    /// Search a registry's repositories
    Search(registry::SearchArgs),
    /// Copy an image between registries, archives, OCI layouts and the store
    Copy(registry::CopyArgs),
    /// Make, change and push manifest lists (multi-platform images)
    Manifest {
        #[command(subcommand)]
        command: manifest::ManifestCommand,
    },
    /// Build an image from a Dockerfile
    #[cfg(feature = "build")]
    Build(build::BuildArgs),
    #[cfg(feature = "build")]
    #[command(name = "__build-run", hide = true)]
    BuildRun(build::BuildRunArgs),
    /// Rewrite an image's layers in another format (eStargz or zstd:chunked, for lazy pulls)
    Convert(manage::ConvertArgs),
    /// Mount an image's root filesystem (served from the layer blobs; --rw for a writable one)
    Mount(mount::MountArgs),
    /// Make a new image from the changes in a writable mount
    Commit(mount::CommitArgs),
    /// Unmount image mounts
    #[command(visible_alias = "unmount")]
    Umount(mount::UmountArgs),
    /// List image mounts
    Mounts(mount::MountsArgs),
    /// Serve the store as an OCI registry, with users, namespaces and grants
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
    #[command(name = "__serve-mount", hide = true)]
    ServeMount(mount::ServeArgs),
    /// Show store information
    Info(system::InfoArgs),
    /// Show version information
    Version(system::VersionArgs),
    /// Check the store, and repair it
    Fsck(system::FsckArgs),
    /// System commands (df)
    System {
        #[command(subcommand)]
        command: system::SystemCommand,
    },
    /// Image commands (docker image ... spelling)
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completion {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    #[cfg(feature = "man")]
    #[command(name = "__man", hide = true)]
    Man {
        /// Where to write the man pages (img.1, img-COMMAND.1, ...)
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ImageCommand {
    /// List images (img images)
    #[command(visible_alias = "list")]
    Ls(images::ImagesArgs),
    /// Show detailed information on images (img inspect)
    Inspect(inspect::InspectArgs),
    /// Show the history of an image (img history)
    History(inspect::HistoryArgs),
    /// Give an image more names (img tag)
    Tag(manage::TagArgs),
    /// Remove images (img rmi)
    Rm(manage::RmiArgs),
    /// Remove dangling images and unreferenced blobs (img prune)
    Prune(manage::PruneArgs),
    /// Write images to an archive (img save)
    Save(archive::SaveArgs),
    /// Load images from an archive (img load)
    Load(archive::LoadArgs),
    /// Make an image from a root filesystem tarball (img import)
    Import(archive::ImportArgs),
    /// Write an image's root filesystem as a tarball (img export)
    Export(archive::ExportArgs),
    /// Build an image from a Dockerfile (img build)
    #[cfg(feature = "build")]
    Build(build::BuildArgs),
    /// Pull an image from a registry (img pull)
    Pull(registry::PullArgs),
    /// Push an image to a registry (img push)
    Push(registry::PushArgs),
    /// Mount an image's root filesystem (img mount)
    Mount(mount::MountArgs),
    /// Unmount image mounts (img umount)
    #[command(visible_alias = "unmount")]
    Umount(mount::UmountArgs),
    /// Show or set the signature policy (containers-policy.json)
    Trust {
        #[command(subcommand)]
        command: trust::TrustCommand,
    },
    /// Sign stored images (simple signing with GnuPG, or sigstore)
    Sign(trust::SignArgs),
    /// Check stored images and their signatures against the signature policy
    Verify(trust::VerifyArgs),
    /// Make a sigstore key pair to sign with (PREFIX.key, PREFIX.pub)
    GenerateSigstoreKey(trust::GenerateKeyArgs),
}

/// Shared context for command handlers.
pub struct Ctx {
    root: PathBuf,
    /// The kernel `main` made: every mount and namespace goes through it.
    kernel: &'static dyn crate::ops::Kernel,
}

impl Ctx {
    /// The kernel to mount and unshare through.
    pub fn kernel(&self) -> &'static dyn crate::ops::Kernel {
        self.kernel
    }
    pub fn open_store(&self) -> Result<Store> {
        let s = Store::open(&self.root).map_err(anyhow::Error::from)?;
        Ok(s)
    }
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }
}

/// An error already reported to the user; only the exit status is left.
#[derive(Debug, thiserror::Error)]
#[error("{0} failed")]
pub struct AlreadyReported(pub &'static str);

/// Runs img with `args`, mounting and unsharing through `kernel`; returns
/// the process exit status.
pub fn main(kernel: &'static dyn crate::ops::Kernel) -> ExitCode {
    let argv = match dialect::translate(std::env::args_os().collect()) {
        dialect::Translation::Args(d, argv) => {
            dialect::set(d);
            argv
        }
        dialect::Translation::Refused(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(125);
        }
    };
    if let Some((command, feature)) = left_out(&argv) {
        eprintln!(
            "error: img {command}: this img was built without the `{feature}` feature: use a full build of img (cargo build --features full)"
        );
        return ExitCode::from(125);
    }
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 125 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli, kernel) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                // The reader went away (`img images | head`): not an error.
                return ExitCode::SUCCESS;
            }
            if e.downcast_ref::<AlreadyReported>().is_none() {
                eprintln!("error: {}", chain(&e));
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The command `argv` names and the Cargo feature it needs, when that
/// feature was left out of this build (`--features edge`).
fn left_out(argv: &[std::ffi::OsString]) -> Option<(&'static str, &'static str)> {
    let mut words = argv.iter().skip(1).filter_map(|a| a.to_str());
    let mut first = None;
    while let Some(w) = words.next() {
        if w == "--root" {
            words.next();
        } else if !w.starts_with('-') {
            first = Some(w);
            break;
        }
    }
    let mut command = first?;
    if command == "image" {
        command = words.find(|w| !w.starts_with('-'))?;
    }
    let known: &[(&'static str, &'static str, bool)] = &[
        ("build", "build", cfg!(feature = "build")),
        ("__build-run", "build", cfg!(feature = "build")),
        ("serve", "serve", cfg!(feature = "serve")),
        ("__man", "man", cfg!(feature = "man")),
    ];
    known.iter().find(|(c, _, built)| !built && *c == command).map(|(c, f, _)| (*c, *f))
}

fn chain(e: &anyhow::Error) -> String {
    crate::error_chain(e)
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<crate::ops::NotFound>().is_some() {
        return 1;
    }
    1
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

fn run(cli: Cli, kernel: &'static dyn crate::ops::Kernel) -> Result<()> {
    let root = cli.root.unwrap_or_else(Store::default_root);
    let ctx = Ctx { root, kernel };
    match cli.command {
        Command::Images(a) | Command::Image { command: ImageCommand::Ls(a) } => images::run(&ctx, a),
        Command::Inspect(a) | Command::Image { command: ImageCommand::Inspect(a) } => inspect::run(&ctx, a),
        Command::History(a) | Command::Image { command: ImageCommand::History(a) } => inspect::history(&ctx, a),
        Command::Tag(a) | Command::Image { command: ImageCommand::Tag(a) } => manage::tag(&ctx, a),
        Command::Rmi(a) | Command::Image { command: ImageCommand::Rm(a) } => manage::rmi(&ctx, a),
        Command::Prune(a) | Command::Image { command: ImageCommand::Prune(a) } => manage::prune(&ctx, a),
        Command::Pin(a) => manage::pin(&ctx, a, true),
        Command::Unpin(a) => manage::pin(&ctx, a, false),
        Command::Save(a) | Command::Image { command: ImageCommand::Save(a) } => archive::save(&ctx, a),
        Command::Load(a) | Command::Image { command: ImageCommand::Load(a) } => archive::load(&ctx, a),
        Command::Import(a) | Command::Image { command: ImageCommand::Import(a) } => archive::import(&ctx, a),
        Command::Export(a) | Command::Image { command: ImageCommand::Export(a) } => archive::export(&ctx, a),
        Command::Pull(a) | Command::Image { command: ImageCommand::Pull(a) } => registry::pull(&ctx, a),
        Command::Push(a) | Command::Image { command: ImageCommand::Push(a) } => registry::push(&ctx, a),
        Command::Login(a) => registry::login(a),
        Command::Logout(a) => registry::logout(a),
        Command::Tags(a) => registry::tags(a),
        Command::Search(a) => registry::search(a),
        Command::Copy(a) => registry::copy(&ctx, a),
        Command::Mount(a) | Command::Image { command: ImageCommand::Mount(a) } => mount::mount(&ctx, a),
        Command::Commit(a) => mount::commit(&ctx, a),
        Command::Convert(a) => manage::convert(&ctx, a),
        #[cfg(feature = "build")]
        Command::Build(a) | Command::Image { command: ImageCommand::Build(a) } => build::build(&ctx, a),
        Command::Manifest { command } => manifest::run(&ctx, command),
        #[cfg(feature = "build")]
        Command::BuildRun(a) => build::build_run(&ctx, a),
        Command::Umount(a) | Command::Image { command: ImageCommand::Umount(a) } => mount::umount(&ctx, a),
        Command::Mounts(a) => mount::mounts(&ctx, a),
        Command::Image { command: ImageCommand::Trust { command } } => trust::trust(command),
        Command::Image { command: ImageCommand::Sign(a) } => trust::sign(&ctx, a),
        Command::Image { command: ImageCommand::Verify(a) } => trust::verify(&ctx, a),
        Command::Image { command: ImageCommand::GenerateSigstoreKey(a) } => trust::generate_key(a),
        Command::ServeMount(a) => mount::serve(&ctx, a),
        #[cfg(feature = "serve")]
        Command::Serve(a) => serve::run(&ctx, a),
        Command::Info(a) => system::info(&ctx, a),
        Command::Version(a) => system::version(a),
        Command::Fsck(a) => system::fsck(&ctx, a),
        Command::System { command } => system::system(&ctx, command),
        Command::Completion { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            let mut cmd = Cli::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "img", &mut buf);
            let mut out = stdout();
            out.write_all(&buf)?;
            out.flush()?;
            Ok(())
        }
        #[cfg(feature = "man")]
        Command::Man { dir } => write_man_pages(&dir),
    }
}

/// Writes a man page for img and for each of its commands (hidden ones left out).
#[cfg(feature = "man")]
fn write_man_pages(dir: &std::path::Path) -> Result<()> {
    use anyhow::Context;
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fn write(cmd: &clap::Command, name: &str, dir: &std::path::Path) -> Result<()> {
        use anyhow::Context;
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd.clone().name(name.to_string())).render(&mut buf)?;
        std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub, &format!("{name}-{}", sub.get_name()), dir)?;
        }
        Ok(())
    }
    let mut cmd = Cli::command();
    cmd.build();
    write(&cmd, "img", dir)
}

/// Renders a Go template over `data`, or JSON for `--format json`.
pub(crate) fn render_template(tmpl: &img_gotemplate::Template, data: &serde_json::Value) -> Result<String> {
    tmpl.execute(data).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Parses a `--format` template, turning `\t` and `\n` escapes into characters as docker does.
pub(crate) fn parse_template(src: &str) -> Result<img_gotemplate::Template> {
    img_gotemplate::Template::parse(src).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Prints a table with columns padded like docker's tabwriter (3 spaces).
pub(crate) fn print_table(out: &mut impl std::io::Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Buffered standard output; callers flush it before returning so that a
/// write error (a full disk behind a redirect) is reported.
pub(crate) fn stdout() -> std::io::BufWriter<std::io::StdoutLock<'static>> {
    std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock())
}

/// A `--format` value parser: one of `keywords`, or, when `templates` is
/// true, a Go template (anything with an action, `{{...}}`; after `table `
/// when `table` is one of the keywords). Any other value is a usage error
/// that names it and what the flag takes, rather than a format silently
/// ignored or a word printed once per item.
pub(crate) fn format_parser(
    keywords: &'static [&'static str],
    templates: bool,
) -> impl Fn(&str) -> std::result::Result<String, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        if keywords.contains(&s) || (templates && s.contains("{{")) {
            return Ok(s.to_string());
        }
        let mut takes: Vec<String> = keywords.iter().map(|k| k.to_string()).collect();
        if templates {
            takes.push("a Go template ('{{...}}')".to_string());
        }
        let takes = match takes.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        Err(format!("unknown format {s:?}: use {takes}"))
    }
}

#[cfg(test)]
mod feature_tests {
    use super::left_out;

    fn argv(words: &[&str]) -> Vec<std::ffi::OsString> {
        std::iter::once("img").chain(words.iter().copied()).map(Into::into).collect()
    }

    #[test]
    fn commands_of_left_out_features_are_named() {
        let cases: &[(&[&str], Option<(&str, &str)>, bool)] = &[
            (&["build", "."], Some(("build", "build")), cfg!(feature = "build")),
            (&["--root", "/r", "image", "build", "."], Some(("build", "build")), cfg!(feature = "build")),
            (&["--root=/r", "serve"], Some(("serve", "serve")), cfg!(feature = "serve")),
            (&["__man", "d"], Some(("__man", "man")), cfg!(feature = "man")),
            (&["--root", "build", "images"], None, false),
            (&["images"], None, false),
            (&["image", "ls"], None, false),
            (&[], None, false),
        ];
        for (words, want, built) in cases {
            let want = if *built { None } else { *want };
            assert_eq!(left_out(&argv(words)), want, "{words:?}");
        }
    }
}
