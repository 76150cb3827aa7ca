//! The lifecycle of image mounts: `img mount` (checks, then a process
//! started to serve the mount, which says when it is ready),
//! `img __serve-mount` (that process: the filesystem served through FUSE,
//! with overlayfs over it for a writable mount), `img umount`, and the
//! mounts listed for `img mounts`, dead ones reconciled first. The
//! filesystem itself is `mount`'s.

use super::progress::Progress;
use super::resolve_image;
use crate::mount::{self, bundle, MountState};
use crate::registry::ClientOptions;
use crate::store::index::{ImageKind, ImageRecord, MountRecord};
use crate::store::Store;
use crate::timefmt::now;
use anyhow::{bail, Context, Result};
use img_sys::Kernel;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

/// What `img mount` is asked for.
#[derive(Clone)]
pub struct MountOptions {
    /// The image (name or ID; `docker://REF` is pulled lazily first).
    pub image: String,
    /// Where to mount it; a directory under the store when `None`.
    pub dir: Option<PathBuf>,
    /// Make this directory an OCI runtime bundle of the image instead.
    pub bundle: Option<PathBuf>,
    /// With `bundle`: the process gets a terminal.
    pub tty: bool,
    /// Writable (overlayfs over the image, changes kept in the store).
    pub rw: bool,
    /// `OS/ARCH[/VARIANT]` of a `docker://` image.
    pub platform: Option<String>,
    /// Options for the registry of a `docker://` or partial image.
    pub client: ClientOptions,
    /// The signature policy a `docker://` image obeys, checked before a byte is served.
    pub trust: super::trust::TrustOptions,
    /// A partial image is completed in the background while it is mounted
    /// (every layer fetched, checked and stored, as `img pull` does).
    pub complete: bool,
}

/// A mount made.
pub struct Mounted {
    /// The mount directory, or the bundle's directory.
    pub dir: PathBuf,
    /// What the bundle's config could not carry over.
    pub warnings: Vec<String>,
}

/// Creates the mount directory if needed; returns its absolute path and
/// whether it was created (so that a failed mount can remove it).
fn absolute(p: &Path) -> Result<(PathBuf, bool)> {
    let created = !p.exists();
    std::fs::create_dir_all(p).with_context(|| format!("creating mount directory {}", p.display()))?;
    Ok((p.canonicalize().with_context(|| format!("resolving {}", p.display()))?, created))
}

/// Mounts an image as `opts` says, in the store at `root`; the mount is
/// served by a process of its own (`img __serve-mount`, see [`serve`])
/// once this returns.
pub fn mount(kernel: &dyn Kernel, root: &Path, opts: &MountOptions, progress: &dyn Progress) -> Result<Mounted> {
    let mut store = Store::open(root)?;
    // One cap for the lazy pull and, in its own process, the lazy reads.
    let opts = &MountOptions { client: super::options::rate_limited(root, &opts.client)?, ..opts.clone() };
    let img = match opts.image.strip_prefix("docker://") {
        // Pulled lazily: eStargz and zstd:chunked layers stay in the registry until read.
        Some(reference) => {
            let pull_opts = super::pull::PullOptions {
                reference: reference.to_string(),
                platform: opts.platform.clone(),
                client: opts.client.clone(),
                jobs: 6,
                lazy: true,
                trust: opts.trust.clone(),
            };
            let id = super::pull::pull(&mut store, &pull_opts, progress)?;
            store.index().image(&id)?.ok_or_else(|| super::NotFound(opts.image.clone()))?
        }
        None => resolve_image(&store, &opts.image)?,
    };
    let Some(bundle_dir) = &opts.bundle else {
        let (dir, created) = absolute(&opts.dir.clone().unwrap_or_else(|| mount::default_mountpoint(&store, &img)))?;
        let res = start(kernel, root, store, opts, &img, &dir, &[]);
        if res.is_err() && created {
            let _ = std::fs::remove_dir(&dir);
        }
        res?;
        return Ok(Mounted { dir, warnings: Vec::new() });
    };
    let (bundle_dir, bundle_created) = absolute(bundle_dir)?;
    let res = (|| {
        let plan = bundle::plan(&store, &img, &bundle_dir)?;
        let (dir, created) = absolute(&plan.rootfs)?;
        let res = start(kernel, root, store, opts, &img, &dir, &plan.mount_points)
            .and_then(|()| bundle::finish(kernel, &mut Store::open(root)?, &plan, opts.rw, opts.tty));
        if res.is_err() && created {
            let _ = std::fs::remove_dir(&dir);
        }
        res
    })();
    match res {
        Ok(warnings) => Ok(Mounted { dir: bundle_dir, warnings }),
        Err(e) => {
            if bundle_created {
                let _ = std::fs::remove_dir(&bundle_dir);
            }
            Err(e)
        }
    }
}

fn start(
    kernel: &dyn Kernel,
    root: &Path,
    store: Store,
    a: &MountOptions,
    img: &ImageRecord,
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
    if img.kind == ImageKind::Embedded {
        return mount_embedded(kernel, store, a, img, dir);
    }
    // Indexes missing are built here, not in the long-lived server.
    mount::ensure_indexes(&store, img).with_context(|| format!("mounting {}", a.image))?;
    let state = a.rw.then(|| mount::StateDir::for_mountpoint(&store, dir));
    if let Some(st) = &state {
        for d in [st.lower(), st.upper(), st.work()] {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
    }
    // One process serves the mount; it says "ready" (or the error) on its
    // stdout once the mount is in place, then keeps serving.
    let log_path = mount::log_path(&store, dir);
    drop(store);
    if let Some(logs) = log_path.parent() {
        std::fs::create_dir_all(logs).with_context(|| format!("creating {}", logs.display()))?;
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    let exe = std::env::current_exe().context("finding the img executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--root").arg(root).arg("__serve-mount").arg(img.id.as_str()).arg(dir);
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
    let partial = img.kind == ImageKind::Partial;
    let mut secret = None;
    if partial {
        let o = &a.client;
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
        cmd.arg(format!("--limit-rate={}", o.rate.limit().map_or(0, |l| l.rate())));
        if let Some(c) = &o.creds {
            cmd.arg("--creds-stdin");
            secret = Some(format!("{}:{}\n", c.username, c.password));
        }
        if a.complete {
            cmd.arg("--complete");
        }
        if std::env::var_os("IMG_REGISTRY_TIMEOUT").is_none() {
            cmd.env("IMG_REGISTRY_TIMEOUT", mount::lazy::lazy_timeout().as_secs().to_string());
        }
    }
    // glibc gives each thread that allocates an arena of its own (up to
    // eight per core), and a long-lived server's read-ahead threads come
    // and go: their freed buffers stayed resident in arenas nobody used
    // again (80 MB of the server's memory after a walk of the bench image
    // instead of 44 MB). One arena is enough for a FUSE server; musl
    // ignores the variable. One the user set is kept.
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        cmd.env("MALLOC_ARENA_MAX", "1");
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
    kernel: &dyn Kernel,
    mut store: Store,
    a: &MountOptions,
    img: &ImageRecord,
    dir: &Path,
) -> Result<()> {
    if a.rw {
        bail!("{} is an iSulad embedded image, which mounts read-only; drop --rw", a.image);
    }
    if !img_sys::process::is_root() {
        bail!(
            "{} is an iSulad embedded image: its layers are kernel squashfs and bind mounts, which need root",
            a.image
        );
    }
    if !super::save::layers_of(&store, img)?.is_empty() {
        bail!(
            "{}: its layers were copied into the store without their paths; load it again without --copy to mount it",
            a.image
        );
    }
    let layers = store.index().external_layers(&img.id)?;
    mount::embedded::mount(kernel, &layers, dir)?;
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

/// The name `img mounts` shows for a mount asked for as `asked`: the name
/// as given (an ID or ID prefix gives none: the image's first tag is shown).
fn mounted_name(asked: &str, img: &ImageRecord) -> String {
    let asked = asked.strip_prefix("docker://").unwrap_or(asked);
    let hex = asked.strip_prefix("sha256:").unwrap_or(asked);
    if hex.len() >= 4 && img.id.hex().starts_with(hex) {
        return String::new();
    }
    asked.to_string()
}

/// What the process serving a mount (`img __serve-mount`) is asked for.
pub struct ServeOptions {
    /// The image's ID.
    pub id: String,
    /// The mount directory.
    pub dir: PathBuf,
    /// A writable mount's state directory: the tree is served at its
    /// `lower`, and overlayfs with its `upper` mounted at `dir`.
    pub state: Option<PathBuf>,
    /// Options for a partial image's registry (credentials: see `creds_stdin`).
    pub client: ClientOptions,
    /// USER:PASS comes on the first line of stdin.
    pub creds_stdin: bool,
    /// The fingerprint of the changes last committed (a writable mount taken up again).
    pub committed: String,
    /// The name the mount was asked for.
    pub name: String,
    /// An empty directory there if the image has none (a bundle's mount points).
    pub mount_points: Vec<Vec<u8>>,
    /// Complete a partial image in the background (see [`MountOptions`]).
    pub complete: bool,
}

/// Where the serving process writes what happens to the mount (its stderr,
/// the mount's log).
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// Records the mount this process serves, before it says "ready": a mount
/// that exists is listed, whatever happens to the command that asked for it.
fn record_mount(
    root: &Path,
    a: &ServeOptions,
    img: &ImageRecord,
    state: &Option<mount::StateDir>,
) -> std::io::Result<()> {
    let mut store = Store::open(root).map_err(std::io::Error::other)?;
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

/// Serves the mount `a` describes until it is unmounted, from the store at
/// `root`: says "ready" (or "error: ...") on stdout once the mount is in
/// place, for [`mount`] waiting on the other end. A root's writable mount
/// is an overlay over the tree, mounted through `kernel`.
pub fn serve(kernel: &'static dyn Kernel, root: &Path, a: &ServeOptions, log: Log) -> Result<()> {
    let fail = |e: &anyhow::Error| say(&format!("error: {}", crate::error_chain(e)));
    let mount_points = &a.mount_points;
    let mut whole = Vec::new();
    let mut client = a.client.clone();
    let prepared = (|| -> Result<_> {
        let store = Store::open(root)?;
        let img = resolve_image(&store, &a.id)?;
        let fs = if img.kind == ImageKind::Partial {
            client = super::options::rate_limited(root, &a.client)?;
            let opts = &mut client;
            if a.creds_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).context("reading the credentials")?;
                let (u, p) = line.trim_end_matches('\n').split_once(':').context("credentials are USER:PASS")?;
                opts.creds = Some(crate::registry::authfile::Credentials { username: u.into(), password: p.into() });
            }
            let stats = Arc::new(mount::lazy::Stats::default());
            let options_for = |host: &str| super::options::options_for(host, opts);
            let whole = a.complete.then_some(&mut whole);
            let fs = mount::partial_fs(&store, &img, &options_for, stats.clone(), mount_points, whole)?;
            write_stats(mount::stats_path(&store, &a.dir), stats);
            fs
        } else {
            if img.kind == ImageKind::Embedded {
                bail!(
                    "mounting {}: iSulad embedded images cannot be mounted yet; img save it and load the archive",
                    img.id
                );
            }
            let layers = super::save::layers_of(&store, &img)?;
            mount::layers_fs_with(&store, &layers, &img.id.to_string(), mount_points)?
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
    img_sys::process::release_free_memory();
    let error_log = log.clone();
    let fs = std::sync::Arc::new(fs.with_error_log(move |m| error_log(m)));
    let cfg = img_fuse::MountConfig {
        fs_name: format!("img:{}", &img.id.hex()[..12]),
        allow_other: crate::user::effective_uid() == Some(0),
        // A read or lookup waiting on a registry holds a thread; others go on.
        threads: if img.kind == ImageKind::Partial { 8 } else { 2 },
    };
    let state = a.state.clone().map(mount::StateDir);
    if let (Some(st), false) = (&state, img_sys::process::is_root()) {
        // Rootless: the FUSE filesystem takes the writes itself, over the
        // whole tree (streamed layers must be in first).
        let fs = Arc::into_inner(fs).expect("the filesystem is not shared yet");
        if !fs.settled() {
            log("a rootless writable mount is ready once the streamed layers are in");
            if let Err(e) = fs.settle() {
                let e = anyhow::anyhow!("mounting {}: {e}", img.id);
                fail(&e);
                return Err(e);
            }
        }
        if a.complete && img.kind == ImageKind::Partial {
            complete_in_background(root, &img.id, &client, whole, None, log.clone());
        }
        let rw = std::sync::Arc::new(img_fuse::RwFs::new(fs, st.upper()));
        let res = img_fuse::serve_rw(rw, &a.dir, &cfg, || {
            record_mount(root, a, &img, &state)?;
            say("ready");
            Ok(())
        });
        return finish_serve(kernel, root, a, &state, res, &log);
    }
    if a.complete && img.kind == ImageKind::Partial {
        complete_in_background(root, &img.id, &client, whole, Some(fs.clone()), log.clone());
    }
    let fuse_dir = state.as_ref().map(|s| s.lower()).unwrap_or_else(|| a.dir.clone());
    let res = img_fuse::serve(fs, &fuse_dir, &cfg, || {
        if let Some(st) = &state {
            mount::upper::mount_writable(kernel, st, &a.dir).map_err(std::io::Error::other)?;
            watch_overlay(kernel, a.dir.clone(), st.lower());
        }
        if let Err(e) = record_mount(root, a, &img, &state) {
            if state.is_some() {
                let _ = kernel.unmount(&a.dir, img_sys::Unmount::Lazy);
            }
            return Err(e);
        }
        say("ready");
        Ok(())
    });
    finish_serve(kernel, root, a, &state, res, &log)
}

/// Completes partial image `id` once the layers fetched whole (`whole`) and
/// streamed (`fs` settled) are in, so that `img pull` takes them from
/// `lazy/` without fetching them again; the mount goes on serving (its
/// layers' bytes stay where it reads them until it ends).
fn complete_in_background(
    root: &Path,
    id: &crate::digest::Digest,
    client: &ClientOptions,
    whole: Vec<std::thread::JoinHandle<()>>,
    fs: Option<Arc<img_fuse::ImageFs<mount::source::StoreSource>>>,
    log: Log,
) {
    let (root, id, client) = (root.to_path_buf(), id.clone(), client.clone());
    std::thread::spawn(move || {
        for h in whole {
            let _ = h.join();
        }
        if let Some(Err(e)) = fs.map(|fs| fs.settle()) {
            log(&format!("not completing {id}: {e}"));
            return;
        }
        match complete(&root, &id, &client) {
            Ok(()) => log(&format!("image {id} is complete: every layer is stored")),
            Err(e) => log(&format!("{}; img pull completes it", crate::error_chain(&e))),
        }
    });
}

/// Makes partial image `id` (in the store at `root`) a pulled one, as `img
/// pull` would leave it: each layer not stored is taken from what lazy
/// mounts hold and Range requests for the rest, checked against its digest
/// and stored, and the image recorded complete. The manifest is pulled by
/// its digest from the repository the layers are read from, so the image
/// completed is the one mounted whatever its tag names now. `client` is
/// the registry options of the mount; the signature policy is the default
/// one, as for `img pull`.
fn complete(root: &Path, id: &crate::digest::Digest, client: &ClientOptions) -> Result<()> {
    let mut store = crate::store::Store::open(root)?;
    let Some(img) = store.index().image(id)? else {
        anyhow::bail!("completing image {id}: it is no longer in the store")
    };
    if img.kind != crate::store::index::ImageKind::Partial {
        return Ok(());
    }
    let remote = store.index().remote_layers(id)?;
    let source = remote.first().map(|r| r.source.clone()).with_context(|| format!("image {id} reads no layer"))?;
    let opts = super::pull::PullOptions {
        reference: format!("{source}@{}", img.manifest_digest),
        platform: None,
        client: client.clone(),
        jobs: 6,
        lazy: false,
        trust: super::trust::TrustOptions::default(),
    };
    super::pull::pull(&mut store, &opts, &|_: &str| {}).with_context(|| format!("completing image {id}"))?;
    Ok(())
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
fn finish_serve(
    kernel: &dyn Kernel,
    root: &Path,
    a: &ServeOptions,
    state: &Option<mount::StateDir>,
    res: std::io::Result<()>,
    log: &Log,
) -> Result<()> {
    if let Err(e) = &res {
        say(&format!("error: {e}"));
    }
    // Only this process's own record, and its own overlay: another mount
    // may be at the same directory by now (found by four processes
    // mounting and unmounting one image: an old server removed the record
    // of the new mount, which then could not be listed or unmounted).
    // A store removed meanwhile is not made again (found: a test's store
    // came back after its test had removed it).
    let store = if crate::store::StorePaths::new(root).db().exists() { Store::open(root).ok() } else { None };
    if let Some(mut store) = store {
        let dir = a.dir.to_string_lossy();
        let me = std::process::id() as i64;
        let record =
            store.index().mounts().ok().and_then(|ms| ms.into_iter().find(|m| m.mountpoint == dir && m.pid == me));
        if let Some(r) = record {
            if state.is_some() && mount::is_mounted(&a.dir) {
                // The tree under the overlay went away (unmounted by hand):
                // the overlay cannot work without it.
                let _ = kernel.unmount(&a.dir, img_sys::Unmount::Lazy);
            }
            let _ = std::fs::remove_file(mount::stats_path(&store, &a.dir));
            let bundle = bundle::record_of(store.root(), &a.dir);
            if let Some(note) = bundle.and_then(|b| bundle::forget(store.root(), &a.dir, &b)) {
                log(&note);
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
fn watch_overlay(kernel: &'static dyn Kernel, dir: PathBuf, lower: PathBuf) {
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        if !mount::is_mounted(&dir) {
            let _ = kernel.unmount(&lower, img_sys::Unmount::Lazy);
            return;
        }
    });
}

/// Finds the mount `target` names: a mount directory, or an image with one
/// writable mount.
pub fn find_mount(store: &Store, target: &str) -> Result<MountState> {
    let states = mount::mounts(store)?;
    if let Some(s) = mounts_at(&states, target).into_iter().next() {
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
fn mounts_at(states: &[MountState], target: &str) -> Vec<MountState> {
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

/// Unmounts the mounts `targets` name (mount directories, bundle
/// directories or images), or every mount with `all`. Every mount asked
/// for is tried, and `done` told how it went; one holding changes not
/// committed is refused (and kept) unless `discard`, without stopping the
/// others. A target that names no mount is an error before any is tried.
pub fn umount(
    kernel: &dyn Kernel,
    store: &mut Store,
    targets: &[String],
    all: bool,
    discard: bool,
    done: &mut dyn FnMut(&MountState, Result<()>),
) -> Result<()> {
    let states = mount::mounts(store)?;
    let mut chosen: Vec<MountState> = Vec::new();
    if all {
        chosen = states.clone();
    }
    for t in targets {
        let by_dir = mounts_at(&states, t);
        let found = if !by_dir.is_empty() {
            by_dir
        } else {
            match resolve_image(store, t) {
                Ok(img) => states.iter().filter(|s| s.record.image_id == img.id).cloned().collect(),
                Err(_) => vec![],
            }
        };
        if found.is_empty() {
            bail!("{t} is not an img mount (see img mounts)");
        }
        chosen.extend(found);
    }
    for s in chosen {
        let res = mount::unmount(kernel, store, &s, discard);
        done(&s, res);
    }
    Ok(())
}

/// A mount as `img mounts` lists it.
pub struct MountRow {
    pub state: MountState,
    /// The name the mount was asked for, else the image's first tag, else
    /// its short ID.
    pub image: String,
    /// The bundle directory, for a mount made with `--bundle`.
    pub bundle: Option<PathBuf>,
    /// What a lazy mount fetched so far, as its serving process reports it.
    pub lazy: Option<serde_json::Value>,
}

/// The mounts of the store, after reconciling those whose serving process
/// died: a writable one holding changes not committed is unmounted and
/// kept (listed as not mounted), the others are unmounted and forgotten;
/// `warn` is told of each.
pub fn mounts(kernel: &dyn Kernel, store: &mut Store, warn: &dyn Fn(&str)) -> Result<Vec<MountRow>> {
    let states = mount::mounts(store)?;
    let mut live = Vec::new();
    for s in states {
        if !s.serving {
            let dir = &s.record.mountpoint;
            if mount::has_uncommitted_changes(&s.record)? {
                // The server died (kill -9) and the changes stay for a
                // commit or a new mount.
                if s.mounted {
                    warn(&format!("the process serving {dir} (pid {}) is gone; unmounting it", s.record.pid));
                    mount::detach(kernel, &s)?;
                }
                warn(&format!(
                    "{dir} holds changes that are not committed: img commit {dir} IMAGE, img mount --rw {} {dir}, or img umount --discard {dir}",
                    &s.record.image_id.hex()[..12]
                ));
                live.push(MountState { mounted: false, ..s });
                continue;
            }
            warn(&format!("the process serving {dir} (pid {}) is gone; unmounting it", s.record.pid));
            mount::unmount(kernel, store, &s, false)?;
            continue;
        }
        live.push(s);
    }
    // The name the mount was asked for (found: the image's first tag was
    // shown, whatever name was mounted), else the first tag, else the ID.
    let name = |s: &MountState| -> String {
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
    Ok(live
        .into_iter()
        .map(|s| {
            let at = Path::new(&s.record.mountpoint);
            MountRow {
                image: name(&s),
                bundle: bundle::bundle_of(store, at),
                lazy: std::fs::read(mount::stats_path(store, at))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()),
                state: s,
            }
        })
        .collect())
}
