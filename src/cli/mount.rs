use super::{print_table, Ctx};
use crate::index::MountRecord;
use crate::mount;
use crate::ops::resolve_image;
use crate::timefmt::{human_ago, now};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Args)]
pub struct MountArgs {
    /// The image (name or ID)
    #[arg(value_name = "IMAGE")]
    image: String,
    /// Where to mount it (created if missing); a directory under the store by default
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Creates the mount directory if needed; returns its absolute path and
/// whether it was created (so that a failed mount can remove it).
fn absolute(p: &Path) -> Result<(PathBuf, bool)> {
    let created = !p.exists();
    std::fs::create_dir_all(p).with_context(|| format!("creating mount directory {}", p.display()))?;
    Ok((p.canonicalize().with_context(|| format!("resolving {}", p.display()))?, created))
}

pub fn mount(ctx: &Ctx, a: MountArgs) -> Result<()> {
    let store = ctx.open_store()?;
    let img = resolve_image(&store, &a.image)?;
    let (dir, created) = absolute(&a.dir.clone().unwrap_or_else(|| mount::default_mountpoint(&store, &img)))?;
    let res = start(ctx, store, &a, &img, &dir);
    if res.is_err() && created {
        let _ = std::fs::remove_dir(&dir);
    }
    res
}

fn start(
    ctx: &Ctx,
    store: crate::store::Store,
    a: &MountArgs,
    img: &crate::index::ImageRecord,
    dir: &Path,
) -> Result<()> {
    if mount::is_mounted(dir) {
        bail!("{} is already a mountpoint; img umount it first", dir.display());
    }
    if std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false) {
        bail!("{} is not empty; mount on an empty directory", dir.display());
    }
    drop(store);
    // One process serves the mount; it says "ready" (or the error) on its
    // stdout once the mount is in place, then keeps serving.
    let logs = ctx.root().join("mounts");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let log_path = logs.join(format!("{}.log", img.id.hex()));
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    let exe = std::env::current_exe().context("finding the img executable")?;
    let mut child = Command::new(exe)
        .arg("--root")
        .arg(ctx.root())
        .arg("__serve-mount")
        .arg(img.id.as_str())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .process_group(0)
        .spawn()
        .context("starting the process that serves the mount")?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    if line.trim() != "ready" {
        let _ = child.wait();
        let msg = line.trim().strip_prefix("error: ").unwrap_or(line.trim()).to_string();
        bail!(
            "mounting {} at {}: {}",
            a.image,
            dir.display(),
            if msg.is_empty() { format!("the serving process failed; see {}", log_path.display()) } else { msg }
        );
    }
    let mut store = ctx.open_store()?;
    store.index_mut().add_mount(&MountRecord {
        mountpoint: dir.to_string_lossy().into_owned(),
        image_id: img.id.clone(),
        pid: child.id() as i64,
        writable: false,
        created_at: now(),
    })?;
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
}

pub fn serve(ctx: &Ctx, a: ServeArgs) -> Result<()> {
    let fail = |e: &anyhow::Error| {
        println!("error: {}", crate::error_chain(e));
    };
    let prepared = (|| -> Result<_> {
        let store = ctx.open_store()?;
        let img = resolve_image(&store, &a.id)?;
        let fs = mount::image_fs(&store, &img)?;
        Ok((img, fs))
    })();
    let (img, fs) = match prepared {
        Ok(p) => p,
        Err(e) => {
            fail(&e);
            return Err(e);
        }
    };
    let fs = std::sync::Arc::new(fs.with_error_log(|m| eprintln!("img mount: {m}")));
    let cfg = img_fuse::MountConfig {
        fs_name: format!("img:{}", &img.id.hex()[..12]),
        allow_other: crate::user::effective_uid() == Some(0),
        threads: 2,
    };
    let res = img_fuse::serve(fs, &a.dir, &cfg, || {
        println!("ready");
        let _ = std::io::stdout().flush();
    });
    if let Err(e) = &res {
        println!("error: {e}");
    }
    // Unmounted: forget the mount.
    if let Ok(mut store) = ctx.open_store() {
        let _ = store.index_mut().remove_mount(&a.dir.to_string_lossy());
    }
    res.with_context(|| format!("serving {}", a.dir.display()))
}

#[derive(Args)]
pub struct UmountArgs {
    /// Mount directories, or images whose mounts to remove
    #[arg(value_name = "DIR|IMAGE", required_unless_present = "all")]
    targets: Vec<String>,
    /// Unmount every img mount
    #[arg(short, long)]
    all: bool,
}

pub fn umount(ctx: &Ctx, a: UmountArgs) -> Result<()> {
    let mut store = ctx.open_store()?;
    let states = mount::mounts(&store)?;
    let mut chosen: Vec<mount::MountState> = Vec::new();
    if a.all {
        chosen = states.clone();
    }
    for t in &a.targets {
        let as_dir = Path::new(t).canonicalize().ok().map(|p| p.to_string_lossy().into_owned());
        let by_dir: Vec<_> = states.iter().filter(|s| Some(&s.record.mountpoint) == as_dir.as_ref()).cloned().collect();
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
    for s in chosen {
        mount::unmount(&mut store, &s)?;
        println!("{}", s.record.mountpoint);
    }
    Ok(())
}

#[derive(Args)]
pub struct MountsArgs {
    /// Output format: table or json
    #[arg(long)]
    format: Option<String>,
}

pub fn mounts(ctx: &Ctx, a: MountsArgs) -> Result<()> {
    let mut store = ctx.open_store()?;
    let states = mount::mounts(&store)?;
    let mut live = Vec::new();
    for s in states {
        if !s.serving {
            // The server died (kill -9): report it and clean up.
            eprintln!(
                "warning: the process serving {} (pid {}) is gone; unmounting it",
                s.record.mountpoint, s.record.pid
            );
            if s.mounted {
                let _ = mount::unmount_dir(Path::new(&s.record.mountpoint), true);
            }
            store.index_mut().remove_mount(&s.record.mountpoint)?;
            continue;
        }
        live.push(s);
    }
    let mut out = super::stdout();
    let names = |id: &crate::digest::Digest| -> String {
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
                        "Image": names(&s.record.image_id),
                        "ImageId": s.record.image_id.hex(),
                        "Pid": s.record.pid,
                        "ReadOnly": !s.record.writable,
                        "Mounted": s.mounted,
                        "Created": s.record.created_at,
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
                    names(&s.record.image_id),
                    s.record.pid.to_string(),
                    if s.record.writable { "rw".into() } else { "ro".into() },
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
