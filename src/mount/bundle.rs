//! `img mount --bundle DIR`: an OCI runtime bundle around a mount, so that
//! `runc run -b DIR NAME` runs the image. `DIR/rootfs` is the mount and
//! `DIR/config.json` the image's config converted as the image spec's
//! conversion.md says, onto the defaults of `runc spec` (`runc spec
//! --rootless` when img does not run as root).
//!
//! The conversion ([`convert`], [`resolve_user`], [`mount_points`]) is pure;
//! writing the bundle and removing its config.json when the mount goes are
//! below it.

use crate::digest::Digest;
use crate::store::Store;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The OCI runtime spec version written.
const OCI_VERSION: &str = "1.0.2";
/// runc's default PATH, given when the image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The mount points of runc's default mounts that must be in the root
/// (the others are inside /dev's tmpfs and /sys).
const RUNTIME_MOUNT_POINTS: [&str; 3] = ["/proc", "/dev", "/sys"];
/// Annotation prefixes runtimes act on (runc and crun apply
/// `org.systemd.property.*` to the container's systemd unit; crun reads
/// `run.oci.*`): an image's labels do not become those.
const RUNTIME_ANNOTATION_PREFIXES: [&str; 2] = ["org.systemd.property.", "run.oci."];
/// The most of /etc/passwd or /etc/group read.
const MAX_ID_FILE: u64 = 4 << 20;

/// What the conversion cannot do, each naming what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("no user {name:?} in the image's /etc/passwd (its config's User is {spec:?}); a bundle needs a user the image lists or a numeric one (img commit --change 'USER UID:GID' makes such an image)")]
    NoUser { name: String, spec: String },
    #[error("no group {name:?} in the image's /etc/group (its config's User is {spec:?}); a bundle needs a group the image lists or a numeric one (img commit --change 'USER UID:GID' makes such an image)")]
    NoGroup { name: String, spec: String },
    #[error("the image's /etc/{file} gives {name:?} the id {value:?}, which is not a number; fix that line of the image's /etc/{file}")]
    BadId { file: &'static str, name: String, value: String },
    #[error("the image's config has no {0}; it cannot be run (see img inspect)")]
    Missing(&'static str),
}

/// How the bundle is to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `root.readonly`: the mount is read-only (not `--rw`).
    pub readonly: bool,
    /// `process.terminal`.
    pub terminal: bool,
    /// The caller's uid and gid when it is not root: a user namespace maps
    /// them to root in the container, as `runc spec --rootless` does.
    pub rootless: Option<(u32, u32)>,
}

/// The image's /etc/passwd and /etc/group, as far as they exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdFiles {
    pub passwd: Option<String>,
    pub group: Option<String>,
}

/// A converted config, and what the caller should be told of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub spec: Spec,
    pub warnings: Vec<String>,
}

// The runtime config, in the order `runc spec` writes it.

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub oci_version: String,
    pub process: Process,
    pub root: Root,
    pub hostname: String,
    pub mounts: Vec<Mount>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub linux: Linux,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    pub terminal: bool,
    pub user: User,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub capabilities: Capabilities,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capabilities {
    pub bounding: Vec<String>,
    pub effective: Vec<String>,
    pub permitted: Vec<String>,
    pub ambient: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Root {
    pub path: String,
    pub readonly: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uid_mappings: Vec<IdMapping>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gid_mappings: Vec<IdMapping>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    pub namespaces: Vec<Namespace>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdMapping {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resources {
    pub devices: Vec<DeviceRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceRule {
    pub allow: bool,
    pub access: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
    Mount { destination: destination.into(), kind: kind.into(), source: source.into(), options: strings(options) }
}

/// What `runc spec` writes (runc 1.1), but for the process, which the image
/// gives.
fn runc_default() -> Spec {
    let caps = strings(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    Spec {
        oci_version: OCI_VERSION.into(),
        process: Process {
            terminal: false,
            user: User::default(),
            args: strings(&["sh"]),
            env: Vec::new(),
            cwd: "/".into(),
            capabilities: Capabilities {
                bounding: caps.clone(),
                effective: caps.clone(),
                permitted: caps.clone(),
                ambient: caps,
            },
            rlimits: vec![Rlimit { kind: "RLIMIT_NOFILE".into(), hard: 1024, soft: 1024 }],
            no_new_privileges: true,
        },
        root: Root { path: "rootfs".into(), readonly: true },
        hostname: "runc".into(),
        mounts: vec![
            mount("/proc", "proc", "proc", &[]),
            mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
            mount(
                "/dev/pts",
                "devpts",
                "devpts",
                &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
            ),
            mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
            mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
            mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
            mount("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", "ro"]),
        ],
        annotations: BTreeMap::new(),
        linux: Linux {
            uid_mappings: Vec::new(),
            gid_mappings: Vec::new(),
            resources: Some(Resources { devices: vec![DeviceRule { allow: false, access: "rwm".into() }] }),
            namespaces: ["pid", "network", "ipc", "uts", "mount"]
                .iter()
                .map(|k| Namespace { kind: k.to_string() })
                .collect(),
            masked_paths: strings(&[
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
            ]),
            readonly_paths: strings(&["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]),
        },
    }
}

/// What `runc spec --rootless` changes: a user namespace mapping the
/// caller to root instead of a network namespace, /sys bound from the host
/// (sysfs cannot be mounted without a network namespace of one's own), no
/// `uid=`/`gid=` mount options (the ids are not mapped), and no device
/// rules (there are no cgroups to set them in).
fn make_rootless(s: &mut Spec, uid: u32, gid: u32) {
    s.linux.namespaces.retain(|n| n.kind != "network");
    s.linux.namespaces.push(Namespace { kind: "user".into() });
    s.linux.uid_mappings = vec![IdMapping { container_id: 0, host_id: uid, size: 1 }];
    s.linux.gid_mappings = vec![IdMapping { container_id: 0, host_id: gid, size: 1 }];
    s.linux.resources = None;
    for m in &mut s.mounts {
        if m.destination == "/sys" {
            *m = mount("/sys", "none", "/sys", &["rbind", "nosuid", "noexec", "nodev", "ro"]);
        }
        m.options.retain(|o| !o.starts_with("uid=") && !o.starts_with("gid="));
    }
}

/// The image config's `config` object (empty when it has none).
fn run_config(image: &Value) -> &serde_json::Map<String, Value> {
    static EMPTY: std::sync::OnceLock<serde_json::Map<String, Value>> = std::sync::OnceLock::new();
    image.get("config").and_then(Value::as_object).unwrap_or_else(|| EMPTY.get_or_init(Default::default))
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn string_field<'a>(m: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// `p` made absolute and clean (`..` stops at the root), as a mount
/// destination or a working directory inside the container.
fn clean_abs(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The image's working directory in the container (`/` when it has none).
fn working_dir(image: &Value) -> String {
    clean_abs(string_field(run_config(image), "WorkingDir").unwrap_or("/"))
}

/// The image's volumes as mount destinations, sorted; `/` is left out.
fn volumes(image: &Value) -> Vec<String> {
    let mut v: Vec<String> = run_config(image)
        .get("Volumes")
        .and_then(Value::as_object)
        .map(|m| m.keys().map(|k| clean_abs(k)).filter(|k| k != "/").collect())
        .unwrap_or_default();
    v.sort();
    v.dedup();
    v
}

/// The directories the runtime mounts on or changes into, which must be in
/// the root when it cannot make them there (a read-only root): /proc, /dev,
/// /sys, the image's volumes and its working directory.
pub fn mount_points(image: &Value) -> Vec<String> {
    let mut out: Vec<String> = RUNTIME_MOUNT_POINTS.iter().map(|s| s.to_string()).collect();
    out.extend(volumes(image));
    let cwd = working_dir(image);
    if cwd != "/" && !out.contains(&cwd) {
        out.push(cwd);
    }
    out
}

/// The process's user, as the image's config `User` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// The groups of /etc/group that list the user by name, when `User`
    /// is a name without a group (conversion.md leaves them out otherwise).
    pub additional_gids: Vec<u32>,
    /// From the user's /etc/passwd line, if it has one.
    pub home: Option<String>,
}

fn fields(file: &str) -> impl Iterator<Item = Vec<&str>> {
    file.lines().map(|l| l.split(':').collect::<Vec<_>>())
}

/// `User` (`name`, `uid`, `name:group`, `uid:gid`, `uid:group`,
/// `name:gid`; empty is root) resolved with the image's /etc/passwd and
/// /etc/group, as conversion.md says: numbers are taken as they are,
/// names looked up (one missing is an error). Without a group, the gid is
/// the user's in /etc/passwd (0 for a uid it does not list).
pub fn resolve_user(spec: &str, files: &IdFiles) -> Result<ResolvedUser, BundleError> {
    let passwd = files.passwd.as_deref().unwrap_or("");
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g).filter(|g| !g.is_empty())),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let numeric = u.parse::<u32>().ok();
    let entry = match numeric {
        Some(n) => fields(passwd).find(|f| f.len() >= 4 && f[2].parse::<u32>() == Ok(n)),
        None => fields(passwd).find(|f| f.len() >= 4 && f[0] == u),
    };
    let parse_id = |file: &'static str, name: &str, value: &str| {
        value.parse::<u32>().map_err(|_| BundleError::BadId { file, name: name.into(), value: value.into() })
    };
    let uid = match (numeric, &entry) {
        (Some(n), _) => n,
        (None, Some(f)) => parse_id("passwd", u, f[2])?,
        (None, None) => return Err(BundleError::NoUser { name: u.into(), spec: spec.into() }),
    };
    let group = files.group.as_deref().unwrap_or("");
    let gid = match g {
        None => match &entry {
            Some(f) => parse_id("passwd", f[0], f[3])?,
            None => 0,
        },
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => match fields(group).find(|f| f.len() >= 3 && f[0] == g) {
                Some(f) => parse_id("group", g, f[2])?,
                None => return Err(BundleError::NoGroup { name: g.into(), spec: spec.into() }),
            },
        },
    };
    let mut additional_gids = Vec::new();
    if numeric.is_none() && g.is_none() {
        for f in fields(group).filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m.trim() == u)) {
            if let Ok(n) = f[2].parse::<u32>() {
                if !additional_gids.contains(&n) {
                    additional_gids.push(n);
                }
            }
        }
    }
    let home = entry.as_ref().and_then(|f| f.get(5)).filter(|h| !h.is_empty()).map(|h| h.to_string());
    Ok(ResolvedUser { uid, gid, additional_gids, home })
}

/// The runtime config of image config `image` (the whole config blob,
/// as JSON), its user resolved with `files`.
pub fn convert(image: &Value, files: &IdFiles, opts: &Options) -> Result<Converted, BundleError> {
    let c = run_config(image);
    let mut warnings = Vec::new();
    let mut s = runc_default();

    // Verbatim fields.
    let mut args = string_list(c.get("Entrypoint"));
    args.extend(string_list(c.get("Cmd")));
    if args.is_empty() {
        warnings.push("the image has no Entrypoint or Cmd; the bundle runs runc's default, sh".into());
    } else {
        s.process.args = args;
    }
    for e in string_list(c.get("Env")) {
        if e.split_once('=').is_some_and(|(k, _)| !k.is_empty()) {
            s.process.env.push(e);
        } else {
            warnings.push(format!("the image's Env entry {e:?} is not NAME=VALUE and is left out (runc refuses it)"));
        }
    }
    s.process.cwd = working_dir(image);

    // The user.
    let spec = string_field(c, "User").unwrap_or("");
    let user = resolve_user(spec, files)?;
    s.process.user = User { uid: user.uid, gid: user.gid, additional_gids: user.additional_gids.clone() };

    // Defaults the image does not set (never one it does).
    let has = |env: &[String], name: &str| env.iter().any(|e| e.split_once('=').is_some_and(|(k, _)| k == name));
    if !has(&s.process.env, "PATH") {
        s.process.env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&s.process.env, "HOME") {
        s.process.env.push(format!("HOME={}", user.home.as_deref().unwrap_or("/")));
    }
    s.process.terminal = opts.terminal;
    if opts.terminal && !has(&s.process.env, "TERM") {
        s.process.env.push("TERM=xterm".into());
    }
    s.root.readonly = opts.readonly;

    // Annotations: the implicit ones, then the labels, which win.
    let a = &mut s.annotations;
    let top = |k: &str| image.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    a.insert("org.opencontainers.image.os".into(), top("os").ok_or(BundleError::Missing("os"))?.into());
    a.insert(
        "org.opencontainers.image.architecture".into(),
        top("architecture").ok_or(BundleError::Missing("architecture"))?.into(),
    );
    for (field, key) in [
        ("variant", "org.opencontainers.image.variant"),
        ("os.version", "org.opencontainers.image.os.version"),
        ("author", "org.opencontainers.image.author"),
        ("created", "org.opencontainers.image.created"),
    ] {
        if let Some(v) = top(field) {
            a.insert(key.into(), v.into());
        }
    }
    let features = string_list(image.get("os.features"));
    if !features.is_empty() {
        a.insert("org.opencontainers.image.os.features".into(), features.join(","));
    }
    if let Some(sig) = string_field(c, "StopSignal") {
        a.insert("org.opencontainers.image.stopSignal".into(), sig.into());
    }
    let mut ports: Vec<&String> =
        c.get("ExposedPorts").and_then(Value::as_object).map(|m| m.keys().collect()).unwrap_or_default();
    ports.sort();
    if !ports.is_empty() {
        a.insert(
            "org.opencontainers.image.exposedPorts".into(),
            ports.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(","),
        );
    }
    if let Some(labels) = c.get("Labels").and_then(Value::as_object) {
        for (k, v) in labels {
            let Some(v) = v.as_str() else { continue };
            if RUNTIME_ANNOTATION_PREFIXES.iter().any(|p| k.starts_with(p)) {
                warnings.push(format!(
                    "the image's label {k:?} is left out of the annotations: runtimes act on annotations named so"
                ));
                continue;
            }
            a.insert(k.clone(), v.into());
        }
    }

    // Volumes: an empty tmpfs each, so that what is written there does not
    // go to the root (nor into a commit of a writable mount).
    for v in volumes(image) {
        s.mounts.push(mount(&v, "tmpfs", "tmpfs", &["rw", "nosuid", "nodev", "relatime"]));
    }

    if let Some((uid, gid)) = opts.rootless {
        make_rootless(&mut s, uid, gid);
        if s.process.user.uid != 0 || s.process.user.gid != 0 {
            warnings.push(format!(
                "the image's user is {}:{}{}, which a rootless bundle cannot run as: only your own uid and gid are mapped (to root in the container), and other ids could not read your mount; it runs as root in the container",
                s.process.user.uid,
                s.process.user.gid,
                if spec.is_empty() { String::new() } else { format!(" (User {spec:?})") }
            ));
        }
        s.process.user = User::default();
    }
    Ok(Converted { spec: s, warnings })
}

// ---------------------------------------------------------------- the bundle on disk

/// What `img mount --bundle` wrote, kept beside the mount's other files in
/// the store so that the config.json goes with the mount.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// The bundle directory.
    bundle: String,
    /// The sha256 of the config.json written there.
    config: String,
}

/// Where the record of the bundle around the mount at `mountpoint` is.
fn record_path(store: &Store, mountpoint: &Path) -> PathBuf {
    let key = Digest::of_bytes(mountpoint.as_os_str().as_encoded_bytes());
    store.paths().bundle_record(&key)
}

fn read_record(store_root: &Path, mountpoint: &Path) -> Option<Record> {
    let key = Digest::of_bytes(mountpoint.as_os_str().as_encoded_bytes());
    let p = crate::store::StorePaths::new(store_root).bundle_record(&key);
    serde_json::from_slice(&std::fs::read(p).ok()?).ok()
}

/// The bundle directory around the mount at `mountpoint`, if it is one.
pub fn bundle_of(store: &Store, mountpoint: &Path) -> Option<PathBuf> {
    read_record(store.root(), mountpoint).map(|r| PathBuf::from(r.bundle))
}

/// The config.json of bundle `dir`.
pub fn config_path(dir: &Path) -> PathBuf {
    dir.join("config.json")
}

/// The mountpoint of bundle `dir`.
pub fn rootfs_path(dir: &Path) -> PathBuf {
    dir.join("rootfs")
}

/// A bundle to be made: where, and what its mount needs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The bundle directory (absolute).
    pub dir: PathBuf,
    /// Where the image is mounted: `dir/rootfs`.
    pub rootfs: PathBuf,
    /// The image's config blob, as JSON.
    pub config: Value,
    /// What the mount must have (see [`mount_points`]).
    pub mount_points: Vec<Vec<u8>>,
}

/// Checks that image `img` can be made a bundle at `dir` (absolute), and
/// says what its mount needs. A config.json that img did not write for a
/// mount there is refused (the user's own would be lost).
pub fn plan(store: &Store, img: &crate::store::index::ImageRecord, dir: &Path) -> Result<Plan> {
    if img.kind == crate::store::index::ImageKind::Embedded {
        bail!("{} is an iSulad embedded image, which cannot be made a bundle; img save it, load the archive and make a bundle of that", img.id);
    }
    let cfg = config_path(dir);
    if let Ok(bytes) = std::fs::read(&cfg) {
        let ours = read_record(store.root(), &rootfs_path(dir))
            .is_some_and(|r| Path::new(&r.bundle) == dir && r.config == Digest::of_bytes(&bytes).hex());
        if !ours {
            bail!(
                "{} exists; move it away, or mount the image alone with img mount IMAGE {} to run that config",
                cfg.display(),
                rootfs_path(dir).display()
            );
        }
    }
    let bytes = store.read_blob(&img.id, crate::image::MAX_CONFIG_SIZE)?;
    let config = crate::image::parse_config(&format!("the config of {}", img.id), &bytes)?.raw;
    let mount_points = mount_points(&config).into_iter().map(String::into_bytes).collect();
    Ok(Plan { dir: dir.to_path_buf(), rootfs: rootfs_path(dir), config, mount_points })
}

/// Writes the bundle of `plan` once its mount is up (writable if `rw`;
/// `tty` gives the process a terminal); returns the conversion's warnings.
/// On failure the mount goes again (a writable mount holding changes not
/// committed stays, as img umount keeps it), through `kernel`.
pub fn finish(
    kernel: &dyn img_sys::Kernel,
    store: &mut Store,
    plan: &Plan,
    rw: bool,
    tty: bool,
) -> Result<Vec<String>> {
    let written = (|| {
        let rootless = if img_sys::process::is_root() {
            None
        } else {
            Some((
                crate::user::effective_uid().context("reading the effective uid")?,
                crate::user::effective_gid().context("reading the effective gid")?,
            ))
        };
        write(store, &plan.dir, &plan.config, &Options { readonly: !rw, terminal: tty, rootless })
    })()
    .with_context(|| format!("making the bundle {}", plan.dir.display()));
    if written.is_err() {
        let here = plan.rootfs.to_string_lossy();
        if let Some(m) = super::mounts(store)?.into_iter().find(|m| m.record.mountpoint == here) {
            let _ = super::unmount(kernel, store, &m, false);
        }
    }
    written
}

/// A file of the mounted image (its path resolved inside the root), or
/// nothing if it is not there.
fn read_in_root(root: &Path, path: &str) -> Result<Option<String>> {
    let p =
        crate::rootpath::resolve_in_root(root, path, true).with_context(|| format!("finding {path} in the image"))?;
    let f = match std::fs::File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {path} of the image")),
    };
    let mut bytes = Vec::new();
    f.take(MAX_ID_FILE).read_to_end(&mut bytes).with_context(|| format!("reading {path} of the image"))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Writes `dir/config.json` for the image `config` mounted at
/// `dir/rootfs`, and records it for the mount (first, so that a config.json
/// on disk is always one the mount's end removes). Returns the warnings
/// of the conversion.
fn write(store: &Store, dir: &Path, config: &Value, opts: &Options) -> Result<Vec<String>> {
    let rootfs = rootfs_path(dir);
    for p in mount_points(config) {
        if !crate::rootpath::resolve_in_root(&rootfs, &p, true).is_ok_and(|p| p.is_dir()) {
            bail!(
                "the image has no directory {p}, which the runtime mounts on or changes into, and the mount could not add one (something else is there, or the image's layers were still streaming: img pull the image, then make the bundle again)"
            );
        }
    }
    let files = IdFiles { passwd: read_in_root(&rootfs, "/etc/passwd")?, group: read_in_root(&rootfs, "/etc/group")? };
    let converted = convert(config, &files, opts)?;
    let mut bytes = serde_json::to_vec_pretty(&converted.spec)?;
    bytes.push(b'\n');
    let record =
        Record { bundle: dir.to_string_lossy().into_owned(), config: Digest::of_bytes(&bytes).hex().to_string() };
    let rp = record_path(store, &rootfs);
    write_atomically(&rp, &serde_json::to_vec(&record)?)?;
    write_atomically(&config_path(dir), &bytes)?;
    Ok(converted.warnings)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("writing {}", path.display()))
}

/// The record of the bundle around the mount at `mountpoint`, if it is
/// one: read before the mount goes, for [`forget`].
pub fn record_of(store_root: &Path, mountpoint: &Path) -> Option<Record> {
    read_record(store_root, mountpoint)
}

/// The mount at `mountpoint`, a bundle's as `record` says, is gone: the
/// bundle's config.json goes too, unless it was changed since img wrote it
/// (then it stays, and the returned note says so). The server and img
/// umount may both do this at once.
pub fn forget(store_root: &Path, mountpoint: &Path, record: &Record) -> Option<String> {
    let key = Digest::of_bytes(mountpoint.as_os_str().as_encoded_bytes());
    let _ = std::fs::remove_file(crate::store::StorePaths::new(store_root).bundle_record(&key));
    let cfg = config_path(Path::new(&record.bundle));
    let bytes = std::fs::read(&cfg).ok()?;
    if Digest::of_bytes(&bytes).hex() == record.config {
        let _ = std::fs::remove_file(&cfg);
        None
    } else {
        Some(format!("{} was changed since img mount wrote it, so it stays", cfg.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\nnohome:x:1002:1002::\nbad:x:x1:5::/:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app,other\napp:x:1001:\nwheel:x:10:other, app\nodd:x:zz:app\n";

    fn files() -> IdFiles {
        IdFiles { passwd: Some(PASSWD.into()), group: Some(GROUP.into()) }
    }
    fn image(config: Value) -> Value {
        json!({"architecture": "amd64", "os": "linux", "config": config, "rootfs": {"type": "layers", "diff_ids": []}})
    }
    fn ro() -> Options {
        Options { readonly: true, terminal: false, rootless: None }
    }

    #[test]
    fn users_resolve_as_conversion_md_says() {
        let u = |uid, gid, extra: &[u32], home: Option<&str>| ResolvedUser {
            uid,
            gid,
            additional_gids: extra.to_vec(),
            home: home.map(str::to_string),
        };
        let table: &[(&str, ResolvedUser)] = &[
            ("", u(0, 0, &[], Some("/root"))),
            ("root", u(0, 0, &[], Some("/root"))),
            // A name: passwd's uid and gid, the groups listing it, its home.
            ("app", u(1000, 1001, &[50, 10], Some("/home/app"))),
            // A uid: taken as it is; passwd gives the gid and home; no groups.
            ("1000", u(1000, 1001, &[], Some("/home/app"))),
            // A uid passwd does not list: gid 0, no home.
            ("4242", u(4242, 0, &[], None)),
            ("1000:7", u(1000, 7, &[], Some("/home/app"))),
            ("4242:4343", u(4242, 4343, &[], None)),
            // A group named: from /etc/group, and no supplementary groups.
            ("app:staff", u(1000, 50, &[], Some("/home/app"))),
            ("1000:wheel", u(1000, 10, &[], Some("/home/app"))),
            ("app:9", u(1000, 9, &[], Some("/home/app"))),
            // An empty group is no group.
            ("app:", u(1000, 1001, &[50, 10], Some("/home/app"))),
            ("nohome", u(1002, 1002, &[], None)),
        ];
        for (spec, want) in table {
            assert_eq!(resolve_user(spec, &files()).as_ref(), Ok(want), "User {spec:?}");
        }
        let err = |spec: &str, f: &IdFiles| resolve_user(spec, f).unwrap_err();
        assert_eq!(err("nobody", &files()), BundleError::NoUser { name: "nobody".into(), spec: "nobody".into() });
        assert_eq!(
            err("app:nogroup", &files()),
            BundleError::NoGroup { name: "nogroup".into(), spec: "app:nogroup".into() }
        );
        assert_eq!(err("bad", &files()), BundleError::BadId { file: "passwd", name: "bad".into(), value: "x1".into() });
        assert_eq!(
            err("app:odd", &files()),
            BundleError::BadId { file: "group", name: "odd".into(), value: "zz".into() }
        );
        // No /etc/passwd or /etc/group: numbers still work, names do not.
        let none = IdFiles::default();
        assert_eq!(resolve_user("", &none), Ok(u(0, 0, &[], None)));
        assert_eq!(resolve_user("1000:1000", &none), Ok(u(1000, 1000, &[], None)));
        assert!(matches!(err("app", &none), BundleError::NoUser { .. }));
        assert!(matches!(err("0:staff", &none), BundleError::NoGroup { .. }));
        let msg = err("nobody", &files()).to_string();
        assert!(
            msg.starts_with("no user \"nobody\" in the image's /etc/passwd") && msg.contains("img commit --change"),
            "{msg}"
        );
    }

    #[test]
    fn entrypoint_and_cmd_make_the_args() {
        let table: &[(Value, &[&str], bool)] = &[
            (json!({"Cmd": ["/bin/sh"]}), &["/bin/sh"], false),
            (json!({"Entrypoint": ["/app", "--serve"]}), &["/app", "--serve"], false),
            (json!({"Entrypoint": ["/app"], "Cmd": ["-v", "x y"]}), &["/app", "-v", "x y"], false),
            (json!({"Entrypoint": [], "Cmd": ["echo", "hi"]}), &["echo", "hi"], false),
            (json!({"Entrypoint": null, "Cmd": ["echo"]}), &["echo"], false),
            (json!({"Entrypoint": ["/app"], "Cmd": null}), &["/app"], false),
            (json!({"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo $HOME"]}), &["/bin/sh", "-c", "echo $HOME"], false),
            // Neither: runc's default, and a warning.
            (json!({}), &["sh"], true),
            (json!({"Entrypoint": [], "Cmd": []}), &["sh"], true),
            (Value::Null, &["sh"], true),
        ];
        for (config, args, warns) in table {
            let c = convert(&image(config.clone()), &files(), &ro()).unwrap();
            assert_eq!(c.spec.process.args, strings(args), "{config}");
            assert_eq!(c.warnings.iter().any(|w| w.contains("no Entrypoint or Cmd")), *warns, "{config}");
        }
    }

    #[test]
    fn env_is_kept_and_only_missing_defaults_are_added() {
        let env = |config: Value, opts: &Options| convert(&image(config), &files(), opts).unwrap().spec.process.env;
        let path = format!("PATH={DEFAULT_PATH}");
        let table: &[(Value, Vec<String>)] = &[
            (json!({}), vec![path.clone(), "HOME=/root".into()]),
            (
                json!({"Env": ["PATH=/bin", "A=1", "B=x=y", "E="]}),
                strings(&["PATH=/bin", "A=1", "B=x=y", "E=", "HOME=/root"]),
            ),
            (json!({"Env": ["HOME=/srv"], "User": "app"}), vec!["HOME=/srv".into(), path.clone()]),
            (json!({"User": "app"}), vec![path.clone(), "HOME=/home/app".into()]),
            (json!({"User": "4242"}), vec![path.clone(), "HOME=/".into()]),
            // Duplicates stay as the image has them.
            (json!({"Env": ["A=1", "A=2", "PATH=/x", "HOME=/h"]}), strings(&["A=1", "A=2", "PATH=/x", "HOME=/h"])),
        ];
        for (config, want) in table {
            assert_eq!(&env(config.clone(), &ro()), want, "{config}");
        }
        // Entries that are not NAME=VALUE are left out, with a warning.
        let c = convert(&image(json!({"Env": ["A=1", "JUNK", "=v"], "Cmd": ["x"]})), &files(), &ro()).unwrap();
        assert_eq!(c.spec.process.env, vec!["A=1".to_string(), path.clone(), "HOME=/root".into()]);
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("\"JUNK\""), "{:?}", c.warnings);
        // A terminal gets TERM unless the image sets one.
        let tty = Options { terminal: true, ..ro() };
        assert!(env(json!({}), &tty).contains(&"TERM=xterm".to_string()));
        assert_eq!(env(json!({"Env": ["TERM=dumb"]}), &tty)[0], "TERM=dumb");
        assert_eq!(env(json!({"Env": ["TERM=dumb"]}), &tty).iter().filter(|e| e.starts_with("TERM=")).count(), 1);
    }

    #[test]
    fn user_working_dir_and_root() {
        let c = convert(&image(json!({"User": "app", "WorkingDir": "/srv/app"})), &files(), &ro()).unwrap();
        assert_eq!(c.spec.process.user, User { uid: 1000, gid: 1001, additional_gids: vec![50, 10] });
        assert_eq!(c.spec.process.cwd, "/srv/app");
        assert_eq!(c.spec.root, Root { path: "rootfs".into(), readonly: true });
        assert!(!c.spec.process.terminal);
        let rw = Options { readonly: false, terminal: true, rootless: None };
        let c = convert(&image(json!({"User": "1000:50", "WorkingDir": "rel/../dir/"})), &files(), &rw).unwrap();
        assert_eq!(c.spec.process.user, User { uid: 1000, gid: 50, additional_gids: vec![] });
        assert_eq!(c.spec.process.cwd, "/dir");
        assert!(!c.spec.root.readonly && c.spec.process.terminal);
        assert_eq!(
            convert(&image(json!({"User": "ghost"})), &files(), &ro()).unwrap_err(),
            BundleError::NoUser { name: "ghost".into(), spec: "ghost".into() }
        );
    }

    #[test]
    fn annotations_follow_the_image_and_labels_win() {
        let mut img = image(json!({
            "StopSignal": "SIGQUIT",
            "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
            "Labels": {
                "org.opencontainers.image.os": "from-a-label",
                "com.example.k": "v",
                "org.systemd.property.ExecStopPost": "x",
                "run.oci.handler": "krun",
            },
        }));
        img["variant"] = json!("v8");
        img["os.version"] = json!("10.0");
        img["os.features"] = json!(["a", "b"]);
        img["author"] = json!("Jane");
        img["created"] = json!("2024-01-02T03:04:05.123456789Z");
        let c = convert(&img, &files(), &ro()).unwrap();
        let want: BTreeMap<String, String> = [
            ("com.example.k", "v"),
            ("org.opencontainers.image.architecture", "amd64"),
            ("org.opencontainers.image.author", "Jane"),
            ("org.opencontainers.image.created", "2024-01-02T03:04:05.123456789Z"),
            ("org.opencontainers.image.exposedPorts", "53/udp,8080/tcp"),
            ("org.opencontainers.image.os", "from-a-label"),
            ("org.opencontainers.image.os.features", "a,b"),
            ("org.opencontainers.image.os.version", "10.0"),
            ("org.opencontainers.image.stopSignal", "SIGQUIT"),
            ("org.opencontainers.image.variant", "v8"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(c.spec.annotations, want);
        assert_eq!(
            c.warnings.iter().filter(|w| w.contains("left out of the annotations")).count(),
            2,
            "{:?}",
            c.warnings
        );
        // The least an image has.
        let c = convert(&image(json!({"Cmd": ["x"]})), &files(), &ro()).unwrap();
        assert_eq!(
            c.spec.annotations.keys().collect::<Vec<_>>(),
            ["org.opencontainers.image.architecture", "org.opencontainers.image.os"]
        );
        let mut no_os = image(json!({}));
        no_os["os"] = json!("");
        assert_eq!(convert(&no_os, &files(), &ro()).unwrap_err(), BundleError::Missing("os"));
    }

    #[test]
    fn volumes_are_tmpfs_and_mount_points() {
        let img = image(json!({"Volumes": {"/data": {}, "/var//log/../cache/": {}, "/": {}}, "WorkingDir": "/work"}));
        let c = convert(&img, &files(), &ro()).unwrap();
        let extra: Vec<&Mount> = c
            .spec
            .mounts
            .iter()
            .filter(|m| m.kind == "tmpfs" && m.source == "tmpfs" && m.destination != "/dev")
            .collect();
        assert_eq!(extra.iter().map(|m| m.destination.as_str()).collect::<Vec<_>>(), ["/data", "/var/cache"]);
        assert_eq!(mount_points(&img), ["/proc", "/dev", "/sys", "/data", "/var/cache", "/work"]);
        assert_eq!(mount_points(&image(json!({"WorkingDir": "/"}))), ["/proc", "/dev", "/sys"]);
        assert_eq!(
            mount_points(&image(json!({"WorkingDir": "/data", "Volumes": {"/data": {}}}))),
            ["/proc", "/dev", "/sys", "/data"]
        );
    }

    #[test]
    fn the_rest_is_runc_spec() {
        let c = convert(&image(json!({"Cmd": ["x"]})), &files(), &ro()).unwrap();
        let v = serde_json::to_value(&c.spec).unwrap();
        assert_eq!(v["ociVersion"], "1.0.2");
        assert_eq!(v["hostname"], "runc");
        assert_eq!(
            v["process"]["capabilities"]["bounding"],
            json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"])
        );
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(v["process"]["rlimits"], json!([{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]));
        assert_eq!(v["process"]["user"], json!({"uid": 0, "gid": 0}));
        assert_eq!(
            v["linux"]["namespaces"],
            json!([{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}])
        );
        assert_eq!(v["linux"]["resources"], json!({"devices": [{"allow": false, "access": "rwm"}]}));
        assert!(v["linux"].get("uidMappings").is_none());
        assert_eq!(
            v["mounts"][5],
            json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]})
        );
        assert_eq!(v["mounts"][0], json!({"destination": "/proc", "type": "proc", "source": "proc"}));
        assert!(v["mounts"][2]["options"].as_array().unwrap().contains(&json!("gid=5")));
        assert_eq!(v["linux"]["maskedPaths"].as_array().unwrap().len(), 10);
        assert_eq!(v["linux"]["readonlyPaths"].as_array().unwrap().len(), 5);
        // Keys in runc's order.
        let text = serde_json::to_string(&c.spec).unwrap();
        let at = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
        assert!(
            at("ociVersion") < at("process")
                && at("process") < at("root")
                && at("root") < at("mounts")
                && at("mounts") < at("linux")
        );
    }

    #[test]
    fn rootless_maps_the_caller_to_root_as_runc_spec_rootless_does() {
        let opts = Options { rootless: Some((1234, 5678)), ..ro() };
        let c = convert(&image(json!({"Cmd": ["x"]})), &files(), &opts).unwrap();
        let v = serde_json::to_value(&c.spec).unwrap();
        assert_eq!(v["linux"]["uidMappings"], json!([{"containerID": 0, "hostID": 1234, "size": 1}]));
        assert_eq!(v["linux"]["gidMappings"], json!([{"containerID": 0, "hostID": 5678, "size": 1}]));
        assert_eq!(
            v["linux"]["namespaces"],
            json!([{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "user"}])
        );
        assert!(v["linux"].get("resources").is_none());
        assert_eq!(
            v["mounts"][5],
            json!({"destination": "/sys", "type": "none", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
        );
        assert_eq!(v["mounts"][2]["options"], json!(["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // Only root is mapped: an image's other user runs as root, with a warning.
        let c = convert(&image(json!({"User": "app"})), &files(), &opts).unwrap();
        assert_eq!(c.spec.process.user, User::default());
        assert!(c.spec.process.env.contains(&"HOME=/home/app".to_string()));
        assert!(
            c.warnings.iter().any(|w| w.contains("1000:1001 (User \"app\")") && w.contains("runs as root")),
            "{:?}",
            c.warnings
        );
    }
}
