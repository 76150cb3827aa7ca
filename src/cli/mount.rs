use super::{print_table, Ctx};
use crate::index::MountRecord;
use crate::mount;
use crate::mount::bundle;
use crate::ops::resolve_image;
use crate::timefmt::{human_ago, now};
use anyhow::{bail, Context, Result};
use clap::Args;
use img_sys::Kernel;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
    #[command(flatten)]
    registry: super::registry::RegistryFlags,
}

/// Creates the mount directory if needed; returns its absolute path and
/// whether it was created (so that a failed mount can remove it).
fn absolute(p: &Path) -> Result<(PathBuf, bool)> {
    let created = !p.exists();
    std::fs::create_dir_all(p).with_context(|| format!("creating mount directory {}", p.display()))?;
    Ok((p.canonicalize().with_context(|| format!("resolving {}", p.display()))?, created))
}

pub fn mount(ctx: &Ctx, a: MountArgs) -> Result<()> {
    let mut store = ctx.open_store()?;
    let img = match a.image.strip_prefix("docker://") {
        // Pulled lazily: eStargz and zstd:chunked layers stay in the registry until read.
        Some(reference) => {
            let opts = crate::ops::pull::PullOptions {
                reference: reference.to_string(),
                platform: a.platform.clone(),
                client: a.registry.options()?,
                jobs: 6,
                lazy: true,
            };
            let progress = super::progress::Reporter::new(true);
            let id = crate::ops::pull::pull(&mut store, &opts, &progress)?;
            store.index().image(&id)?.ok_or_else(|| crate::ops::NotFound(a.image.clone()))?
        }
        None => resolve_image(&store, &a.image)?,
    };
    let Some(bundle_dir) = &a.bundle else {
        let (dir, created) = absolute(&a.dir.clone().unwrap_or_else(|| mount::default_mountpoint(&store, &img)))?;
        let res = start(ctx, store, &a, &img, &dir, &[]);
        if res.is_err() && created {
            let _ = std::fs::remove_dir(&dir);
        }
        res?;
        return print_dir(&dir);
    };
    let (bundle_dir, bundle_created) = absolute(bundle_dir)?;
    let res = (|| {
        let plan = bundle::plan(&store, &img, &bundle_dir)?;
        let (dir, created) = absolute(&plan.rootfs)?;
        let res = start(ctx, store, &a, &img, &dir, &plan.mount_points)
            .and_then(|()| bundle::finish(&mut ctx.open_store()?, &plan, a.rw, a.tty));
        if res.is_err() && created {
            let _ = std::fs::remove_dir(&dir);
        }
        res
    })();
    match res {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("warning: {w}");
            }
            print_dir(&bundle_dir)
        }
        Err(e) => {
            if bundle_created {
                let _ = std::fs::remove_dir(&bundle_dir);
            }
            Err(e)
        }
    }
}

fn print_dir(dir: &Path) -> Result<()> {
    let mut out = super::stdout();
    writeln!(out, "{}", dir.display())?;
    out.flush()?;
    Ok(())
}

fn start(
    ctx: &Ctx,
    store: crate::store::Store,
    a: &MountArgs,
    img: &crate::index::ImageRecord,
    dir: &Path,
    mount_points: &[Vec<u8>],
) -> Result<()> {
    if mount::is_mounted(dir) {
        bail!("{} is already a mountpoint; img umount it first", dir.display());
    }
    // A writable mount whose server died keeps its changes; mounting the
    // same image there again takes them up.
    let previous = store.index().mounts()?.into_iter().find(|m| Path::new(&m.mountpoint) == dir);
    let mut committed = String::new();
    if let Some(p) = &previous {
        if p.writable && mount::has_uncommitted_changes(p)? {
            if !a.rw || p.image_id != img.id {
                bail!(
                    "{} holds changes to image {} that are not committed; run img mount --rw {} {} to go on with them, img commit, or img umount --discard {}",
                    dir.display(),
                    &p.image_id.hex()[..12],
                    &p.image_id.hex()[..12],
                    dir.display(),
                    dir.display()
                );
            }
            committed = p.committed.clone();
        } else if mount::pid_alive(p.pid) {
            bail!("{} is already an img mount; img umount it first", dir.display());
        }
    }
    if std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false) {
        bail!("{} is not empty; mount on an empty directory", dir.display());
    }
    if img.kind == crate::index::ImageKind::Embedded {
        return mount_embedded(store, a, img, dir);
    }
    // Indexes missing are built here, not in the long-lived server.
    mount::ensure_indexes(&store, img).with_context(|| format!("mounting {}", a.image))?;
    let state = a.rw.then(|| mount::StateDir::for_mountpoint(&store, dir));
    if let Some(st) = &state {
        for d in [st.lower(), st.upper(), st.work()] {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
    }
    drop(store);
    // One process serves the mount; it says "ready" (or the error) on its
    // stdout once the mount is in place, then keeps serving.
    let log_path = {
        let store = ctx.open_store()?;
        mount::log_path(&store, dir)
    };
    if let Some(logs) = log_path.parent() {
        std::fs::create_dir_all(logs).with_context(|| format!("creating {}", logs.display()))?;
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    let exe = std::env::current_exe().context("finding the img executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--root").arg(ctx.root()).arg("__serve-mount").arg(img.id.as_str()).arg(dir);
    if let Some(st) = &state {
        cmd.arg("--state").arg(&st.0);
    }
    if !committed.is_empty() {
        cmd.arg("--committed").arg(&committed);
    }
    let name = mounted_name(&a.image, img);
    if !name.is_empty() {
        cmd.arg("--name").arg(&name);
    }
    for p in mount_points {
        cmd.arg("--mount-point").arg(std::ffi::OsStr::from_bytes(p));
    }
    // A partial image's server reads from the registry: it gets the same
    // registry options (credentials through its stdin, never arguments),
    // and gives up on a registry that stops answering in bounded time.
    let partial = img.kind == crate::index::ImageKind::Partial;
    let mut secret = None;
    if partial {
        let o = a.registry.options()?;
        if o.insecure {
            cmd.arg("--tls-verify=false");
        } else if !o.loopback_plain_http {
            cmd.arg("--tls-verify=true");
        }
        if let Some(f) = &o.authfile {
            cmd.arg("--authfile").arg(f);
        }
        if let Some(d) = &o.cert_dir {
            cmd.arg("--cert-dir").arg(d);
        }
        if let Some(c) = &o.creds {
            cmd.arg("--creds-stdin");
            secret = Some(format!("{}:{}\n", c.username, c.password));
        }
        if std::env::var_os("IMG_REGISTRY_TIMEOUT").is_none() {
            cmd.env("IMG_REGISTRY_TIMEOUT", mount::lazy::lazy_timeout().as_secs().to_string());
        }
    }
    let mut child = cmd
        .stdin(if secret.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .process_group(0)
        .spawn()
        .context("starting the process that serves the mount")?;
    if let (Some(secret), Some(mut stdin)) = (secret, child.stdin.take()) {
        stdin.write_all(secret.as_bytes()).context("passing the credentials to the mount's process")?;
    }
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    if line.trim() != "ready" {
        let _ = child.wait();
        if let Some(st) = &state {
            // Nothing was written through a mount that never came up;
            // changes kept from before stay.
            if previous.is_none() {
                let _ = std::fs::remove_dir_all(&st.0);
            }
        }
        let msg = line.trim().strip_prefix("error: ").unwrap_or(line.trim()).to_string();
        bail!(
            "mounting {} at {}: {}",
            a.image,
            dir.display(),
            if msg.is_empty() { format!("the serving process failed; see {}", log_path.display()) } else { msg }
        );
    }
    // The serving process recorded the mount before it said "ready", so
    // that the mount is listed even if this command is killed now.
    Ok(())
}

/// An iSulad embedded image: kernel mounts of its layers, as iSulad makes
/// them, with no process serving them.
fn mount_embedded(
    mut store: crate::store::Store,
    a: &MountArgs,
    img: &crate::index::ImageRecord,
    dir: &Path,
) -> Result<()> {
    if a.rw {
        bail!("{} is an iSulad embedded image, which mounts read-only; drop --rw", a.image);
    }
    if !img_sys::is_root() {
        bail!(
            "{} is an iSulad embedded image: its layers are kernel squashfs and bind mounts, which need root",
            a.image
        );
    }
    if !crate::ops::save::layers_of(&store, img)?.is_empty() {
        bail!(
            "{}: its layers were copied into the store without their paths; load it again without --copy to mount it",
            a.image
        );
    }
    let layers = store.index().external_layers(&img.id)?;
    mount::embedded::mount(&img_sys::RealKernel, &layers, dir)?;
    store.index_mut().add_mount(&MountRecord {
        mountpoint: dir.to_string_lossy().into_owned(),
        image_id: img.id.clone(),
        pid: 0,
        writable: false,
        created_at: now(),
        state_dir: String::new(),
        committed: String::new(),
        name: mounted_name(&a.image, img),
    })?;
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
    /// The fingerprint of the changes last committed (a writable mount taken up again)
    #[arg(long, default_value = "")]
    committed: String,
    /// The name the mount was asked for
    #[arg(long, default_value = "")]
    name: String,
    /// An empty directory there if the image has none (a bundle's mount points)
    #[arg(long = "mount-point", value_name = "PATH")]
    mount_points: Vec<PathBuf>,
}

/// The name `img mounts` shows for a mount asked for as `asked`: the name
/// as given (an ID or ID prefix gives none: the image's first tag is shown).
fn mounted_name(asked: &str, img: &crate::index::ImageRecord) -> String {
    let asked = asked.strip_prefix("docker://").unwrap_or(asked);
    let hex = asked.strip_prefix("sha256:").unwrap_or(asked);
    if hex.len() >= 4 && img.id.hex().starts_with(hex) {
        return String::new();
    }
    asked.to_string()
}

/// Records the mount this process serves, before it says "ready": a mount
/// that exists is listed, whatever happens to the command that asked for it.
fn record_mount(
    ctx: &Ctx,
    a: &ServeArgs,
    img: &crate::index::ImageRecord,
    state: &Option<mount::StateDir>,
) -> std::io::Result<()> {
    let mut store = ctx.open_store().map_err(std::io::Error::other)?;
    store
        .index_mut()
        .add_mount(&MountRecord {
            mountpoint: a.dir.to_string_lossy().into_owned(),
            image_id: img.id.clone(),
            pid: std::process::id() as i64,
            writable: state.is_some(),
            created_at: now(),
            state_dir: state.as_ref().map(|s| s.0.to_string_lossy().into_owned()).unwrap_or_default(),
            committed: a.committed.clone(),
            name: a.name.clone(),
        })
        .map_err(std::io::Error::other)
}

/// Tells `img mount` (which may be gone: a closed pipe is no error).
fn say(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub fn serve(ctx: &Ctx, a: ServeArgs) -> Result<()> {
    let fail = |e: &anyhow::Error| say(&format!("error: {}", crate::error_chain(e)));
    let mount_points: Vec<Vec<u8>> = a.mount_points.iter().map(|p| p.as_os_str().as_bytes().to_vec()).collect();
    let prepared = (|| -> Result<_> {
        let store = ctx.open_store()?;
        let img = resolve_image(&store, &a.id)?;
        let fs = if img.kind == crate::index::ImageKind::Partial {
            let mut creds = None;
            if a.creds_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).context("reading the credentials")?;
                let (u, p) = line.trim_end_matches('\n').split_once(':').context("credentials are USER:PASS")?;
                creds = Some(crate::registry::authfile::Credentials { username: u.into(), password: p.into() });
            }
            let opts = crate::registry::ClientOptions {
                insecure: a.tls_verify == Some(false),
                loopback_plain_http: a.tls_verify.is_none(),
                creds,
                authfile: a.authfile.clone(),
                cert_dir: a.cert_dir.clone(),
            };
            let stats = Arc::new(mount::lazy::Stats::default());
            let options_for = |host: &str| crate::ops::options::options_for(host, &opts);
            let fs = mount::partial_fs(&store, &img, &options_for, stats.clone(), &mount_points)?;
            write_stats(mount::stats_path(&store, &a.dir), stats);
            fs
        } else {
            if img.kind == crate::index::ImageKind::Embedded {
                bail!(
                    "mounting {}: iSulad embedded images cannot be mounted yet; img save it and load the archive",
                    img.id
                );
            }
            let layers = crate::ops::save::layers_of(&store, &img)?;
            mount::layers_fs_with(&store, &layers, &img.id.to_string(), &mount_points)?
        };
        Ok((img, fs))
    })();
    let (img, fs) = match prepared {
        Ok(p) => p,
        Err(e) => {
            fail(&e);
            return Err(e);
        }
    };
    // The layers' entries the tree was built from are free now: this
    // process serves for long, so what it keeps should be the tree alone.
    img_sys::release_free_memory();
    let fs = std::sync::Arc::new(fs.with_error_log(|m| eprintln!("img mount: {m}")));
    let cfg = img_fuse::MountConfig {
        fs_name: format!("img:{}", &img.id.hex()[..12]),
        allow_other: crate::user::effective_uid() == Some(0),
        // A read or lookup waiting on a registry holds a thread; others go on.
        threads: if img.kind == crate::index::ImageKind::Partial { 8 } else { 2 },
    };
    let state = a.state.clone().map(mount::StateDir);
    if let (Some(st), false) = (&state, img_sys::is_root()) {
        // Rootless: the FUSE filesystem takes the writes itself, over the
        // whole tree (streamed layers must be in first).
        let fs = Arc::into_inner(fs).expect("the filesystem is not shared yet");
        if !fs.settled() {
            eprintln!("img mount: a rootless writable mount is ready once the streamed layers are in");
            if let Err(e) = fs.settle() {
                let e = anyhow::anyhow!("mounting {}: {e}", img.id);
                fail(&e);
                return Err(e);
            }
        }
        let rw = std::sync::Arc::new(img_fuse::RwFs::new(fs, st.upper()));
        let res = img_fuse::serve_rw(rw, &a.dir, &cfg, || {
            record_mount(ctx, &a, &img, &state)?;
            say("ready");
            Ok(())
        });
        return finish_serve(ctx, &a, &state, res);
    }
    let fuse_dir = state.as_ref().map(|s| s.lower()).unwrap_or_else(|| a.dir.clone());
    let res = img_fuse::serve(fs, &fuse_dir, &cfg, || {
        if let Some(st) = &state {
            let ov = img_sys::OverlayMount {
                lower: vec![st.lower()],
                upper: st.upper(),
                work: st.work(),
                target: a.dir.clone(),
                userxattr: false,
            };
            img_sys::RealKernel.mount_overlay(&ov).map_err(std::io::Error::other)?;
            watch_overlay(a.dir.clone(), st.lower());
        }
        if let Err(e) = record_mount(ctx, &a, &img, &state) {
            if state.is_some() {
                let _ = img_sys::RealKernel.unmount(&a.dir, img_sys::Unmount::Lazy);
            }
            return Err(e);
        }
        say("ready");
        Ok(())
    });
    finish_serve(ctx, &a, &state, res)
}

/// Keeps `path` up to date with what a lazy mount fetched, ten times a
/// second while it changes (written aside and renamed into place).
fn write_stats(path: PathBuf, stats: Arc<mount::lazy::Stats>) {
    std::thread::spawn(move || {
        let mut last = serde_json::Value::Null;
        loop {
            let now = stats.to_json();
            if now != last {
                let tmp = path.with_extension("tmp");
                if std::fs::write(&tmp, now.to_string()).and_then(|()| std::fs::rename(&tmp, &path)).is_ok() {
                    last = now;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    });
}

/// After the mount went away: forget it, unless it holds changes not committed.
fn finish_serve(ctx: &Ctx, a: &ServeArgs, state: &Option<mount::StateDir>, res: std::io::Result<()>) -> Result<()> {
    if let Err(e) = &res {
        say(&format!("error: {e}"));
    }
    // Only this process's own record, and its own overlay: another mount
    // may be at the same directory by now (found by four processes
    // mounting and unmounting one image: an old server removed the record
    // of the new mount, which then could not be listed or unmounted).
    // A store removed meanwhile is not made again (found: a test's store
    // came back after its test had removed it).
    let store = if ctx.root().join("img.db").exists() { ctx.open_store().ok() } else { None };
    if let Some(mut store) = store {
        let dir = a.dir.to_string_lossy();
        let me = std::process::id() as i64;
        let record =
            store.index().mounts().ok().and_then(|ms| ms.into_iter().find(|m| m.mountpoint == dir && m.pid == me));
        if let Some(r) = record {
            if state.is_some() && mount::is_mounted(&a.dir) {
                // The tree under the overlay went away (unmounted by hand):
                // the overlay cannot work without it.
                let _ = img_sys::RealKernel.unmount(&a.dir, img_sys::Unmount::Lazy);
            }
            let _ = std::fs::remove_file(mount::stats_path(&store, &a.dir));
            let bundle = bundle::record_of(store.root(), &a.dir);
            if let Some(note) = bundle.and_then(|b| bundle::forget(store.root(), &a.dir, &b)) {
                eprintln!("img mount: {note}");
            }
            // Forget the mount, unless it holds changes not committed.
            if !mount::has_uncommitted_changes(&r).unwrap_or(true) {
                let _ = store.index_mut().remove_mount_of(&dir, me);
                if let Some(st) = &state {
                    let _ = std::fs::remove_dir_all(&st.0);
                }
            }
        }
    }
    res.with_context(|| format!("serving {}", a.dir.display()))
}

/// When the overlay at `dir` is unmounted by hand (umount DIR), the tree
/// under it is unmounted too, which ends the server.
fn watch_overlay(dir: PathBuf, lower: PathBuf) {
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        if !mount::is_mounted(&dir) {
            let _ = img_sys::RealKernel.unmount(&lower, img_sys::Unmount::Lazy);
            return;
        }
    });
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

/// Finds the mount `target` names: a mount directory, or an image with one
/// writable mount.
fn find_mount(states: &[mount::MountState], store: &crate::store::Store, target: &str) -> Result<mount::MountState> {
    if let Some(s) = mounts_at(states, target).into_iter().next() {
        return Ok(s);
    }
    if let Ok(img) = resolve_image(store, target) {
        let rw: Vec<_> = states.iter().filter(|s| s.record.image_id == img.id && s.record.writable).collect();
        match rw.len() {
            1 => return Ok(rw[0].clone()),
            0 => {}
            _ => bail!("{target} is mounted writable more than once; name the mount directory"),
        }
    }
    bail!("{target} is not a writable img mount (see img mounts; mount one with img mount --rw)")
}

/// The mounts at directory `target`, or at `target/rootfs` when `target`
/// is the directory of a bundle (img mount --bundle).
fn mounts_at(states: &[mount::MountState], target: &str) -> Vec<mount::MountState> {
    let Ok(dir) = Path::new(target).canonicalize() else { return Vec::new() };
    for d in [dir.clone(), bundle::rootfs_path(&dir)] {
        let d = d.to_string_lossy();
        let found: Vec<_> = states.iter().filter(|s| s.record.mountpoint == d).cloned().collect();
        if !found.is_empty() {
            return found;
        }
    }
    Vec::new()
}

pub fn commit(ctx: &Ctx, a: CommitArgs) -> Result<()> {
    let mut store = ctx.open_store()?;
    let states = mount::mounts(&store)?;
    let m = find_mount(&states, &store, &a.mount)?;
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
    let states = mount::mounts(&store)?;
    let mut chosen: Vec<mount::MountState> = Vec::new();
    if a.all {
        chosen = states.clone();
    }
    for t in &a.targets {
        let by_dir = mounts_at(&states, t);
        let found = if !by_dir.is_empty() {
            by_dir
        } else {
            match resolve_image(&store, t) {
                Ok(img) => states.iter().filter(|s| s.record.image_id == img.id).cloned().collect(),
                Err(_) => vec![],
            }
        };
        if found.is_empty() {
            bail!("{t} is not an img mount (see img mounts)");
        }
        chosen.extend(found);
    }
    // Every mount asked for is tried; one holding changes not committed
    // is refused (and kept) without stopping the others.
    let mut refused = 0;
    for s in chosen {
        match mount::unmount(&mut store, &s, a.discard) {
            Ok(()) => println!("{}", s.record.mountpoint),
            Err(e) => {
                eprintln!("error: {}", crate::error_chain(&e));
                refused += 1;
            }
        }
    }
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
    let states = mount::mounts(&store)?;
    let mut live = Vec::new();
    for s in states {
        if !s.serving {
            let dir = &s.record.mountpoint;
            if mount::has_uncommitted_changes(&s.record)? {
                // The server died (kill -9) and the changes stay for a
                // commit or a new mount.
                if s.mounted {
                    eprintln!("warning: the process serving {dir} (pid {}) is gone; unmounting it", s.record.pid);
                    mount::detach(&s)?;
                }
                eprintln!(
                    "warning: {dir} holds changes that are not committed: img commit {dir} IMAGE, img mount --rw {} {dir}, or img umount --discard {dir}",
                    &s.record.image_id.hex()[..12]
                );
                live.push(mount::MountState { mounted: false, ..s });
                continue;
            }
            eprintln!("warning: the process serving {dir} (pid {}) is gone; unmounting it", s.record.pid);
            mount::unmount(&mut store, &s, false)?;
            continue;
        }
        live.push(s);
    }
    let mut out = super::stdout();
    // The name the mount was asked for (found: the image's first tag was
    // shown, whatever name was mounted), else the first tag, else the ID.
    let names = |s: &mount::MountState| -> String {
        if !s.record.name.is_empty() {
            return s.record.name.clone();
        }
        let id = &s.record.image_id;
        store
            .index()
            .image(id)
            .ok()
            .flatten()
            .and_then(|i| i.tags.first().cloned())
            .unwrap_or_else(|| id.hex()[..12].to_string())
    };
    match a.format.as_deref() {
        Some("json") => {
            let v: Vec<serde_json::Value> = live
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "Mountpoint": s.record.mountpoint,
                        "Image": names(s),
                        "ImageId": s.record.image_id.hex(),
                        "Pid": s.record.pid,
                        "ReadOnly": !s.record.writable,
                        "Mounted": s.mounted,
                        "Serving": s.serving,
                        "Created": s.record.created_at,
                        "Bundle": bundle::bundle_of(&store, Path::new(&s.record.mountpoint)),
                        "Lazy": std::fs::read(mount::stats_path(&store, std::path::Path::new(&s.record.mountpoint)))
                            .ok()
                            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()),
                    })
                })
                .collect();
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
        None | Some("table") => {
            let mut rows =
                vec![vec!["MOUNTPOINT".into(), "IMAGE".into(), "PID".into(), "MODE".into(), "CREATED".into()]];
            for s in &live {
                rows.push(vec![
                    s.record.mountpoint.clone(),
                    names(s),
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
