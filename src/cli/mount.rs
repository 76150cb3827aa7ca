//! `img mount`, `img commit`, `img umount`, `img mounts` and the hidden
//! `img __serve-mount`: their flags, and what they print
//! (`ops::mount` does the work).

use super::{print_table, Ctx};
use crate::ops::mount::{self as ops_mount, MountOptions, ServeOptions};
use crate::timefmt::{human_ago, now};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args)]
pub struct MountArgs {
    /// The image (name or ID)
    #[arg(value_name = "IMAGE")]
    image: String,
    /// Where to mount it (created if missing); a directory under the store by default
    #[arg(value_name = "DIR", conflicts_with_all = ["bundle", "tty"])]
    dir: Option<PathBuf>,
    /// Make DIR (created if missing) an OCI runtime bundle: the image
    /// mounted at DIR/rootfs, and DIR/config.json its config converted onto
    /// runc's default spec (rootless when img is not run as root), so that
    /// `runc run -b DIR NAME` runs it. img umount DIR removes the mount and
    /// the config.json (kept if changed since)
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,
    /// With --bundle: give the process a terminal (runc run then needs one)
    #[arg(long, requires = "bundle")]
    tty: bool,
    /// Mount it writable: changes go to a directory in the store (overlayfs
    /// over the image) until img commit or img umount --discard
    #[arg(long)]
    rw: bool,
    /// Choose the image for OS/ARCH[/VARIANT] (docker:// images)
    #[arg(long)]
    platform: Option<String>,
    /// With a docker:// or partial image: fetch the rest of every layer in
    /// the background while mounted, then store it as img pull would, so
    /// that the image ends complete
    #[arg(long)]
    complete: bool,
    #[command(flatten)]
    registry: super::registry::RegistryFlags,
    #[command(flatten)]
    rate: super::registry::RateFlags,
    #[command(flatten)]
    trust: super::trust::TrustFlags,
}

pub fn mount(ctx: &Ctx, a: MountArgs) -> Result<()> {
    let opts = MountOptions {
        client: crate::registry::ClientOptions { rate: a.rate.rate(), ..a.registry.options()? },
        image: a.image,
        dir: a.dir,
        bundle: a.bundle,
        tty: a.tty,
        rw: a.rw,
        platform: a.platform,
        trust: a.trust.options(),
        complete: a.complete,
    };
    let progress = super::progress::Reporter::new(true);
    let done = ops_mount::mount(ctx.kernel(), ctx.root(), &opts, &progress)?;
    for w in done.warnings {
        eprintln!("warning: {w}");
    }
    print_dir(&done.dir)
}

fn print_dir(dir: &Path) -> Result<()> {
    let mut out = super::stdout();
    writeln!(out, "{}", dir.display())?;
    out.flush()?;
    Ok(())
}

/// The hidden command the serving process runs.
#[derive(Args)]
pub struct ServeArgs {
    id: String,
    dir: PathBuf,
    /// A writable mount's state directory: the tree is served at its
    /// `lower`, and overlayfs with its `upper` mounted at DIR.
    #[arg(long)]
    state: Option<PathBuf>,
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    tls_verify: Option<bool>,
    #[arg(long)]
    authfile: Option<PathBuf>,
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// USER:PASS on the first line of stdin
    #[arg(long)]
    creds_stdin: bool,
    /// Bytes per second from the registry, 0 for no cap; the store's setting when not given
    #[arg(long)]
    limit_rate: Option<u64>,
    /// The fingerprint of the changes last committed (a writable mount taken up again)
    #[arg(long, default_value = "")]
    committed: String,
    /// The name the mount was asked for
    #[arg(long, default_value = "")]
    name: String,
    /// An empty directory there if the image has none (a bundle's mount points)
    #[arg(long = "mount-point", value_name = "PATH")]
    mount_points: Vec<PathBuf>,
    /// Complete the partial image in the background
    #[arg(long)]
    complete: bool,
}

pub fn serve(ctx: &Ctx, a: ServeArgs) -> Result<()> {
    let opts = ServeOptions {
        id: a.id,
        dir: a.dir,
        state: a.state,
        client: crate::registry::ClientOptions {
            insecure: a.tls_verify == Some(false),
            loopback_plain_http: a.tls_verify.is_none(),
            creds: None,
            authfile: a.authfile,
            cert_dir: a.cert_dir,
            rate: a.limit_rate.map(crate::ratelimit::Rate::bytes_per_second).unwrap_or_default(),
        },
        creds_stdin: a.creds_stdin,
        committed: a.committed,
        name: a.name,
        mount_points: a.mount_points.iter().map(|p| p.as_os_str().as_bytes().to_vec()).collect(),
        complete: a.complete,
    };
    // Its stderr is the mount's log.
    ops_mount::serve(ctx.kernel(), ctx.root(), &opts, Arc::new(|m: &str| eprintln!("img mount: {m}")))
}

#[derive(Args)]
pub struct CommitArgs {
    /// The writable mount (its directory or its bundle's, or the image mounted writable once)
    #[arg(value_name = "DIR|IMAGE")]
    mount: String,
    /// The new image's name
    #[arg(value_name = "IMAGE")]
    reference: Option<String>,
    /// Author of the new image (e.g. "Jane <jane@example.com>")
    #[arg(short, long)]
    author: Option<String>,
    /// Commit message, kept in the image history
    #[arg(short, long)]
    message: Option<String>,
    /// Apply a Dockerfile instruction to the config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, ONBUILD, STOPSIGNAL)
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    change: Vec<String>,
    /// Accepted for docker compatibility: nothing runs in a mount, so there is nothing to pause
    #[arg(short, long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pause: Option<bool>,
    /// Image format: oci or docker (default: the mounted image's)
    #[arg(short, long, value_parser = super::format_parser(&["oci", "docker"], false))]
    format: Option<String>,
    /// Print only the image ID
    #[arg(short, long)]
    quiet: bool,
}

pub fn commit(ctx: &Ctx, a: CommitArgs) -> Result<()> {
    let mut store = ctx.open_store()?;
    let m = ops_mount::find_mount(&store, &a.mount)?;
    let opts = crate::ops::commit::CommitOptions {
        reference: a.reference,
        author: a.author,
        message: a.message,
        changes: a.change,
        format: a.format,
    };
    let done = crate::ops::commit::commit(&mut store, &m.record, &opts)
        .with_context(|| format!("committing {}", m.record.mountpoint))?;
    if !a.quiet {
        eprintln!(
            "committed {}: {} added or changed, {} deleted, {} replaced directories",
            m.record.mountpoint, done.stats.changed, done.stats.deleted, done.stats.opaque
        );
    }
    writeln!(super::stdout(), "{}", done.id)?;
    Ok(())
}

#[derive(Args)]
pub struct UmountArgs {
    /// Mount directories (or bundle directories of img mount --bundle), or
    /// images whose mounts to remove
    #[arg(value_name = "DIR|IMAGE", required_unless_present = "all")]
    targets: Vec<String>,
    /// Unmount every img mount
    #[arg(short, long)]
    all: bool,
    /// Throw away the changes of writable mounts that are not committed
    #[arg(long)]
    discard: bool,
}

pub fn umount(ctx: &Ctx, a: UmountArgs) -> Result<()> {
    let mut store = ctx.open_store()?;
    let mut refused = 0;
    ops_mount::umount(ctx.kernel(), &mut store, &a.targets, a.all, a.discard, &mut |s, res| match res {
        Ok(()) => println!("{}", s.record.mountpoint),
        Err(e) => {
            eprintln!("error: {}", crate::error_chain(&e));
            refused += 1;
        }
    })?;
    if refused > 0 {
        return Err(super::AlreadyReported("umount").into());
    }
    Ok(())
}

#[derive(Args)]
pub struct MountsArgs {
    /// Output format: table or json
    #[arg(long, value_parser = super::format_parser(&["table", "json"], false))]
    format: Option<String>,
}

pub fn mounts(ctx: &Ctx, a: MountsArgs) -> Result<()> {
    let mut store = ctx.open_store()?;
    let live = ops_mount::mounts(ctx.kernel(), &mut store, &|w| eprintln!("warning: {w}"))?;
    let mut out = super::stdout();
    match a.format.as_deref() {
        Some("json") => {
            let v: Vec<serde_json::Value> = live
                .iter()
                .map(|row| {
                    let s = &row.state;
                    serde_json::json!({
                        "Mountpoint": s.record.mountpoint,
                        "Image": row.image,
                        "ImageId": s.record.image_id.hex(),
                        "Pid": s.record.pid,
                        "ReadOnly": !s.record.writable,
                        "Mounted": s.mounted,
                        "Serving": s.serving,
                        "Created": s.record.created_at,
                        "Bundle": row.bundle,
                        "Lazy": row.lazy,
                    })
                })
                .collect();
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
        None | Some("table") => {
            let mut rows =
                vec![vec!["MOUNTPOINT".into(), "IMAGE".into(), "PID".into(), "MODE".into(), "CREATED".into()]];
            for row in &live {
                let s = &row.state;
                rows.push(vec![
                    s.record.mountpoint.clone(),
                    row.image.clone(),
                    s.record.pid.to_string(),
                    match (s.record.writable, s.serving) {
                        (false, _) => "ro".into(),
                        (true, true) => "rw".into(),
                        (true, false) => "rw (stopped)".into(),
                    },
                    human_ago(Some(s.record.created_at), now()),
                ]);
            }
            print_table(&mut out, &rows)?;
        }
        Some(f) => bail!("unknown format {f:?}: use table or json"),
    }
    out.flush()?;
    Ok(())
}
