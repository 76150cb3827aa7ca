//! RUN: a command run in a sandbox on a stage's root (the mounted overlay).
//!
//! The build process starts `img __build-run PLAN`, which moves into new
//! mount, PID, IPC and UTS namespaces (and a network namespace for
//! `--network none`) and starts `img __build-run --init PLAN`, the first
//! process of the new PID namespace. That one mounts in the root what
//! runc's default spec gives a container: /proc, a minimal /dev (a tmpfs
//! with the host's null, zero, full, random, urandom and tty bound in, a
//! devpts instance of its own with /dev/ptmx, /dev/shm and /dev/mqueue) and
//! a read-only /sys; then it sets the host name, changes root, and runs
//! the command as the stage's user with the stage's environment, then
//! reaps what is left and exits with the command's status. Both die with
//! their parent, so a killed build leaves no command running; everything
//! mounted lives in the step's namespace and goes with it.

use anyhow::{bail, Context, Result};
use img_sys::{Namespaces, Sandbox};
use serde::{Deserialize, Serialize};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunPlan {
    /// The stage's root, mounted.
    pub root: PathBuf,
    pub argv: Vec<String>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    pub cwd: String,
    /// USER: a name or uid, optionally `:group`; "" is root.
    pub user: String,
    /// Share the host's network (else a network namespace of its own).
    pub host_network: bool,
    pub hostname: String,
    /// The capabilities the command may have (numbers).
    pub caps: Vec<u32>,
}

/// Capability names (without `CAP_`), by number.
pub const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capabilities RUN has by default: docker's and buildah's set.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// The capability numbers RUN gets: the default set and `add` (names with
/// or without `CAP_`, any case; `ALL` for every one).
pub fn capabilities(add: &[String]) -> Result<Vec<u32>> {
    let mut out: Vec<u32> = DEFAULT_CAPABILITIES
        .iter()
        .map(|n| CAPABILITIES.iter().position(|c| c == n).expect("a known name") as u32)
        .collect();
    for a in add {
        let up = a.to_ascii_uppercase();
        let name = up.strip_prefix("CAP_").unwrap_or(&up);
        if name == "ALL" {
            return Ok((0..CAPABILITIES.len() as u32).collect());
        }
        match CAPABILITIES.iter().position(|c| *c == name) {
            Some(n) => out.push(n as u32),
            None => bail!("--cap-add {a}: no such capability (as CAP_SYS_ADMIN or SYS_ADMIN)"),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Host device files bound into the step's /dev. /dev/tty is the opener's
/// own controlling terminal: the step has none (a new session), so it
/// opens only in a terminal the step makes itself (a pty of its devpts),
/// never the one the build runs in.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Parts of /proc made read-only, and files and directories of it hidden,
/// as runc does for containers.
const PROC_READ_ONLY: [&str; 5] = ["bus", "fs", "irq", "sys", "sysrq-trigger"];
const PROC_MASKED_FILES: [&str; 6] = ["kcore", "keys", "latency_stats", "timer_list", "timer_stats", "sched_debug"];
const PROC_MASKED_DIRS: [&str; 3] = ["acpi", "asound", "scsi"];
/// Directories of /sys hidden, as docker does.
const SYS_MASKED_DIRS: [&str; 2] = ["firmware", "devices/virtual/powercap"];

/// The options of the step's devpts (runc's): a new instance, so that the
/// step sees only its own ptys, whose ptmx anyone may open, ptys of group
/// tty (5).
const DEVPTS: &str = "newinstance,ptmxmode=0666,mode=0620,gid=5";

/// `img __build-run PLAN`: the step's namespaces, then its first process.
pub fn helper(k: &dyn Sandbox, plan_path: &Path) -> Result<i32> {
    img_sys::process::die_with_parent();
    let plan = read_plan(plan_path)?;
    if std::env::var("IMG_BUILD_PARENT").ok().and_then(|p| p.parse::<u32>().ok()) != Some(img_sys::process::getppid()) {
        // The build died before this process asked to die with it.
        bail!("the build that started this step is gone");
    }
    // Standard input is a pipe whose only writer is the build: should the
    // build go without this process being told (the parent-death signal
    // is a single path), the step goes with it (the first process then
    // sees its own pipe close and ends, and the kernel ends the rest of
    // its PID namespace). The thread comes first: a process that has
    // unshared its PID namespace cannot make threads.
    std::thread::spawn(|| {
        img_sys::process::wait_for_stdin_writers_gone();
        std::process::exit(137);
    });
    enter_namespaces(k, &plan)?;
    // The running binary itself, even if its file was replaced meanwhile.
    let exe = std::path::PathBuf::from("/proc/self/exe");
    // The first process's standard input is a pipe whose only writer is
    // this process: once it has asked to die with this one, it checks the
    // pipe, so that it does not run the command if this process died
    // before (its parent is outside its PID namespace, so getppid cannot
    // tell). Found by the killed-build check: a RUN command outlived a
    // build killed at that moment.
    let (r, w) = std::io::pipe().context("making a pipe for a RUN step")?;
    let mut child = Command::new(exe)
        .arg("__build-run")
        .arg("--init")
        .arg(plan_path)
        .stdin(Stdio::from(r))
        .spawn()
        .context("starting the first process of a RUN step")?;
    let status = child.wait().context("waiting for a RUN step")?;
    drop(w);
    Ok(exit_code(status))
}

/// The step's new namespaces (the network's only for `--network none`,
/// with its loopback interface up).
fn enter_namespaces(k: &dyn Sandbox, plan: &RunPlan) -> Result<()> {
    k.unshare(Namespaces { mount: true, pid: true, ipc: true, uts: true, net: !plan.host_network, user: false })
        .context("making the namespaces of a RUN step (the kernel must allow user namespaces)")?;
    if !plan.host_network {
        k.loopback_up().context("bringing up the loopback interface of a RUN step")?;
    }
    Ok(())
}

/// The shell's convention: the exit code, or 128 + the signal.
pub fn exit_code(s: std::process::ExitStatus) -> i32 {
    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
}

fn read_plan(p: &Path) -> Result<RunPlan> {
    let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not a RUN plan", p.display()))
}

/// `img __build-run --init PLAN`: process 1 of the step.
pub fn init(k: &dyn Sandbox, plan_path: &Path) -> Result<i32> {
    img_sys::process::die_with_parent();
    if img_sys::process::stdin_writers_gone() {
        bail!("the process that started this RUN step is gone");
    }
    let plan = read_plan(plan_path)?;
    // No controlling terminal; files made with docker's mask.
    let _ = img_sys::process::setsid();
    img_sys::process::umask(0o022);
    let (uid, gid) = enter_root(k, &plan, Path::new("/"))?;
    let Some((prog, args)) = plan.argv.split_first() else { bail!("RUN has no command") };
    let mut cmd = Command::new(prog);
    cmd.args(args).env_clear().current_dir(&plan.cwd).stdin(Stdio::null());
    img_sys::process::run_as(&mut cmd, uid, gid, supplementary_groups(uid, gid, Path::new("/")));
    for kv in &plan.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        cmd.env(k, v);
    }
    if !plan.env.iter().any(|kv| kv.starts_with("HOME=")) {
        cmd.env("HOME", home_of(uid, Path::new("/")));
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: running {prog:?} in {}: {e}", plan.cwd);
            return Ok(if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 });
        }
    };
    // Should the process that started this one go, this one ends (and the
    // kernel ends every process of the PID namespace with it), whether or
    // not the parent-death signal came.
    std::thread::spawn(|| {
        img_sys::process::wait_for_stdin_writers_gone();
        std::process::exit(137);
    });
    let status = child.wait().context("waiting for the command")?;
    Ok(exit_code(status))
}

/// Prepares the step's root, makes it the root, finds the user the command
/// runs as (in `new_root`: the step's root as it is seen once it is the
/// root) and limits the capabilities; returns the user's uid and gid.
fn enter_root(k: &dyn Sandbox, plan: &RunPlan, new_root: &Path) -> Result<(u32, u32)> {
    prepare_root(k, plan)?;
    // pivot_root, not chroot: nothing of the host's tree stays reachable.
    k.pivot_into(&plan.root).with_context(|| format!("changing root to {}", plan.root.display()))?;
    let (uid, gid) = resolve_user(&plan.user, new_root)?;
    k.limit_capabilities(&plan.caps).context("limiting the capabilities of RUN")?;
    Ok((uid, gid))
}

/// /proc, /dev (with /dev/pts, /dev/shm and /dev/mqueue), /sys, the host
/// name and the host's resolver files.
pub fn prepare_root(k: &dyn Sandbox, plan: &RunPlan) -> Result<()> {
    let r = &plan.root;
    let proc = r.join("proc");
    k.mount_special("proc", &proc, "", false).context("mounting /proc for RUN")?;
    for p in PROC_READ_ONLY {
        let p = proc.join(p);
        if p.exists() {
            k.bind_self_read_only(&p).with_context(|| format!("making {} read-only for RUN", p.display()))?;
        }
    }
    for p in PROC_MASKED_FILES {
        let p = proc.join(p);
        if p.exists() {
            k.bind(Path::new("/dev/null"), &p).with_context(|| format!("hiding {} from RUN", p.display()))?;
        }
    }
    for p in PROC_MASKED_DIRS {
        hide_dir(k, &proc.join(p))?;
    }
    let dev = r.join("dev");
    // nodev: device nodes a step makes there do not open; the host's bound
    // in below keep their own mount's flags.
    k.mount_special("tmpfs", &dev, "mode=755,size=65536k", false).context("mounting /dev for RUN")?;
    for d in DEVICES {
        let host = Path::new("/dev").join(d);
        if !host.exists() {
            continue;
        }
        let target = dev.join(d);
        std::fs::write(&target, b"").with_context(|| format!("making {}", target.display()))?;
        k.bind(&host, &target).with_context(|| format!("binding /dev/{d} for RUN"))?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(name))?;
    }
    std::fs::create_dir(dev.join("shm"))?;
    k.mount_special("tmpfs", &dev.join("shm"), "mode=1777,size=65536k", false).context("mounting /dev/shm for RUN")?;
    // Its ptys are devices: this mount is not nodev.
    let pts = dev.join("pts");
    std::fs::create_dir(&pts)?;
    if k.mount_special("devpts", &pts, DEVPTS, true).is_err() {
        // A user namespace that maps only the caller's ids has no group 5.
        let without_gid = DEVPTS.trim_end_matches(",gid=5");
        k.mount_special("devpts", &pts, without_gid, true).context("mounting /dev/pts for RUN")?;
    }
    std::os::unix::fs::symlink("pts/ptmx", dev.join("ptmx"))?;
    std::fs::create_dir(dev.join("mqueue"))?;
    k.mount_special("mqueue", &dev.join("mqueue"), "", false).context("mounting /dev/mqueue for RUN")?;
    // A /sys only where the image has a directory for it (the build makes
    // one where it has none).
    let sys = r.join("sys");
    if std::fs::symlink_metadata(&sys).is_ok_and(|m| m.is_dir()) {
        match k.mount_special_read_only("sysfs", &sys, "") {
            Ok(()) => {}
            // The kernel gives a new sysfs only to a process that is root
            // of the user namespace owning its network namespace: a
            // rootless step on the host's network is not. There, the
            // host's /sys, bound read-only, as rootless runc does.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                k.bind_tree_read_only(Path::new("/sys"), &sys).context(
                    "binding the host's /sys read-only for RUN (a step on a network of its own, RUN --network=none, mounts a /sys of its own)",
                )?
            }
            Err(e) => return Err(e).context("mounting /sys read-only for RUN"),
        }
        for p in SYS_MASKED_DIRS {
            hide_dir(k, &sys.join(p))?;
        }
    }
    if plan.host_network {
        for f in ["resolv.conf", "hosts"] {
            let (host, target) = (Path::new("/etc").join(f), r.join("etc").join(f));
            // Only over a file the image has: making one would change the layer.
            let is_file = std::fs::symlink_metadata(&target).map(|m| m.is_file()).unwrap_or(false);
            if host.exists() && is_file {
                k.bind(&host, &target).with_context(|| format!("binding /etc/{f} for RUN"))?;
                k.bind_self_read_only(&target).with_context(|| format!("making /etc/{f} read-only for RUN"))?;
            }
        }
    }
    k.sethostname(&plan.hostname).context("setting the host name for RUN")?;
    Ok(())
}

/// Hides directory `p` (if there) under an empty read-only tmpfs.
fn hide_dir(k: &dyn Sandbox, p: &Path) -> Result<()> {
    if p.is_dir() {
        k.mount_special("tmpfs", p, "size=0", false).with_context(|| format!("hiding {} from RUN", p.display()))?;
        k.bind_self_read_only(p).with_context(|| format!("hiding {} from RUN", p.display()))?;
    }
    Ok(())
}

/// A file of the image under `root`, its path resolved inside the root (an
/// image's /etc/passwd may be a symlink to anywhere); "" if unreadable.
fn read_in_root(root: &Path, path: &str) -> String {
    super::fsops::resolve_in_root(root, path, true)
        .ok()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

/// The groups of /etc/group that list the user of `uid` (by its name in
/// /etc/passwd) as a member, and its primary group: its supplementary
/// groups, as docker gives them to USER.
pub fn supplementary_groups(uid: u32, gid: u32, root: &Path) -> Vec<u32> {
    let passwd = read_in_root(root, "/etc/passwd");
    let name = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && f[2] == uid.to_string())
        .map(|f| f[0].to_string());
    let mut out = vec![gid];
    if let Some(name) = name {
        for l in read_in_root(root, "/etc/group").lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() >= 4 && f[3].split(',').any(|m| m.trim() == name) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if !out.contains(&g) {
                        out.push(g);
                    }
                }
            }
        }
    }
    out
}

/// The home directory of `uid` in the image's /etc/passwd under `root`
/// (/root for root, / for a user it does not list), as HOME for RUN.
pub fn home_of(uid: u32, root: &Path) -> String {
    let passwd = read_in_root(root, "/etc/passwd");
    let home = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[2] == uid.to_string())
        .map(|f| f[5].to_string())
        .filter(|h| !h.is_empty());
    home.unwrap_or_else(|| if uid == 0 { "/root".into() } else { "/".into() })
}

/// USER `spec` (`name`, `uid`, `name:group`, `uid:gid`) as ids, names
/// looked up in the image's /etc/passwd and /etc/group under `root`. A
/// user without a group gets the group passwd gives it (0 for a bare uid
/// not listed there).
pub fn resolve_user(spec: &str, root: &Path) -> Result<(u32, u32)> {
    if spec.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in_root(root, "/etc/passwd");
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && (f[0] == u || (u.parse::<u32>().is_ok() && f[2] == u)));
    let uid = match (u.parse::<u32>(), &entry) {
        (Ok(n), _) => n,
        (Err(_), Some(f)) => f[2].parse().with_context(|| format!("/etc/passwd gives user {u} a bad uid"))?,
        (Err(_), None) => {
            bail!("USER {spec}: no user {u:?} in the image's /etc/passwd; use a numeric uid or add the user")
        }
    };
    let gid = match g {
        None => entry.and_then(|f| f[3].parse().ok()).unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let group = read_in_root(root, "/etc/group");
                let f = group.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() >= 3 && f[0] == g);
                match f {
                    Some(f) => f[2].parse().with_context(|| format!("/etc/group gives group {g} a bad gid"))?,
                    None => bail!("USER {spec}: no group {g:?} in the image's /etc/group; use a numeric gid"),
                }
            }
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_through_the_images_files() {
        let r_dir = crate::testdir::TestDir::new("run-user");
        let r = r_dir.to_path_buf();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")
            .unwrap();
        std::fs::write(r.join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(resolve_user("", &r).unwrap(), (0, 0));
        assert_eq!(resolve_user("app", &r).unwrap(), (1000, 1001));
        assert_eq!(resolve_user("1000", &r).unwrap(), (1000, 1001));
        assert_eq!(resolve_user("2000", &r).unwrap(), (2000, 0));
        assert_eq!(resolve_user("app:staff", &r).unwrap(), (1000, 50));
        assert_eq!(resolve_user("app:7", &r).unwrap(), (1000, 7));
        assert!(resolve_user("nobody", &r).unwrap_err().to_string().contains("no user \"nobody\""));
        assert!(resolve_user("app:wheel", &r).unwrap_err().to_string().contains("no group \"wheel\""));
        assert_eq!(home_of(1000, &r), "/home/app");
        std::fs::write(r.join("etc/group"), "root:x:0:\nstaff:x:50:app,other\ndisk:x:6:other\nwheel:x:10:app\n")
            .unwrap();
        assert_eq!(supplementary_groups(1000, 1001, &r), vec![1001, 50, 10]);
        assert_eq!(supplementary_groups(2000, 0, &r), vec![0]);
        assert_eq!(home_of(0, &r), "/root");
        assert_eq!(home_of(5, &r), "/");
        std::fs::remove_dir_all(&r).unwrap();
    }

    #[test]
    fn capabilities_are_the_default_set_and_those_added() {
        let d = capabilities(&[]).unwrap();
        assert_eq!(d.len(), 14);
        assert!(d.contains(&0) && !d.contains(&21), "{d:?}");
        let a = capabilities(&["CAP_SYS_ADMIN".into(), "net_admin".into()]).unwrap();
        assert!(a.contains(&21) && a.contains(&12));
        assert_eq!(capabilities(&["ALL".into()]).unwrap().len(), CAPABILITIES.len());
        assert!(capabilities(&["CAP_FLY".into()]).unwrap_err().to_string().contains("no such capability"));
    }

    fn plan_at(root: &Path) -> RunPlan {
        RunPlan {
            root: root.to_path_buf(),
            argv: vec!["true".into()],
            env: vec![],
            cwd: "/".into(),
            user: String::new(),
            host_network: false,
            hostname: "build".into(),
            caps: vec![],
        }
    }

    fn prepared(name: &str, fail: &[&str]) -> Vec<String> {
        let r_dir = crate::testdir::TestDir::new(&format!("run-prep-{name}"));
        let r = r_dir.to_path_buf();
        for d in ["dev", "sys/firmware", "sys/kernel"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        let k = img_sys::RecordingKernel::default();
        for f in fail {
            k.fail.lock().unwrap().push(f.replace("ROOT", &r.display().to_string()));
        }
        prepare_root(&k, &plan_at(&r)).unwrap();
        assert_eq!(std::fs::read_link(r.join("dev/ptmx")).unwrap(), Path::new("pts/ptmx"));
        std::fs::remove_dir_all(&r).unwrap();
        k.calls().iter().map(|c| c.replace(&r.display().to_string(), "ROOT")).collect()
    }

    #[test]
    fn a_step_gets_new_namespaces_and_its_own_network_unless_on_the_hosts() {
        let k = img_sys::RecordingKernel::default();
        let mut plan = plan_at(Path::new("/r"));
        enter_namespaces(&k, &plan).unwrap();
        assert_eq!(
            k.calls(),
            [
                "unshare Namespaces { user: false, mount: true, pid: true, ipc: true, uts: true, net: true }",
                "loopback up"
            ]
        );
        let k = img_sys::RecordingKernel::default();
        plan.host_network = true;
        enter_namespaces(&k, &plan).unwrap();
        assert_eq!(
            k.calls(),
            ["unshare Namespaces { user: false, mount: true, pid: true, ipc: true, uts: true, net: false }"]
        );
    }

    // The root is mounted before it becomes the root, and the capabilities
    // are limited last, once no mount is left to make.
    #[test]
    fn the_step_mounts_its_root_then_pivots_into_it_then_limits_capabilities() {
        let r_dir = crate::testdir::TestDir::new("run-enter");
        let r = r_dir.to_path_buf();
        for d in ["dev", "sys", "etc"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(r.join("etc/passwd"), "app:x:1000:1001::/home/app:/bin/sh\n").unwrap();
        let k = img_sys::RecordingKernel::default();
        let plan = RunPlan { user: "app".into(), caps: vec![0, 21], ..plan_at(&r) };
        assert_eq!(enter_root(&k, &plan, &r).unwrap(), (1000, 1001));
        let root = r.display().to_string();
        let calls: Vec<String> = k.calls().iter().map(|c| c.replace(&root, "ROOT")).collect();
        std::fs::remove_dir_all(&r).unwrap();
        let at = |want: &str| calls.iter().position(|c| c == want).unwrap_or_else(|| panic!("{want}: {calls:?}"));
        let pivot = at("pivot ROOT");
        for mount in [
            "mount proc ROOT/proc  dev=false",
            "mount tmpfs ROOT/dev/shm mode=1777,size=65536k dev=false",
            "mount devpts ROOT/dev/pts newinstance,ptmxmode=0666,mode=0620,gid=5 dev=true",
            "mount mqueue ROOT/dev/mqueue  dev=false",
            "mount-ro sysfs ROOT/sys ",
            "bind-rw /dev/null ROOT/dev/null",
            "sethostname build",
        ] {
            assert!(at(mount) < pivot, "{mount}: {calls:?}");
        }
        assert_eq!(calls[pivot + 1..], ["capabilities [0, 21]"]);
    }

    // RUN had no /dev/pts, /dev/ptmx, /dev/tty or /dev/mqueue, and /sys was
    // an empty directory: apt could not log, script could not make a pty,
    // lscpu failed.
    #[test]
    fn the_root_gets_what_runc_gives_a_container() {
        let calls = prepared("plain", &[]);
        let has = |c: &str| calls.iter().any(|x| x == c);
        assert!(calls[0].starts_with("mount proc "), "{calls:?}");
        assert!(calls[1].starts_with("mount tmpfs ROOT/dev ") && calls[1].ends_with("dev=false"), "{calls:?}");
        for want in [
            "bind-rw /dev/null ROOT/dev/null",
            "mount tmpfs ROOT/dev/shm mode=1777,size=65536k dev=false",
            "mount devpts ROOT/dev/pts newinstance,ptmxmode=0666,mode=0620,gid=5 dev=true",
            "mount mqueue ROOT/dev/mqueue  dev=false",
            "mount-ro sysfs ROOT/sys ",
            "mount tmpfs ROOT/sys/firmware size=0 dev=false",
            "bind-ro ROOT/sys/firmware",
        ] {
            assert!(has(want), "{want}: {calls:?}");
        }
        // The host's /dev/tty where there is one (a step opens it only in a
        // terminal of its own).
        assert_eq!(has("bind-rw /dev/tty ROOT/dev/tty"), Path::new("/dev/tty").exists(), "{calls:?}");
        assert!(!calls.iter().any(|c| c.starts_with("rbind-ro")), "{calls:?}");
        assert_eq!(calls.last().unwrap(), "sethostname build");
    }

    // In a user namespace that does not own the network namespace the
    // kernel refuses a new sysfs, and one mapping only the caller's ids has
    // no group 5 for devpts.
    #[test]
    fn a_rootless_step_gets_the_hosts_sys_read_only_and_ptys_without_group_tty() {
        let calls = prepared(
            "rootless",
            &["mount-ro sysfs ", "mount devpts ROOT/dev/pts newinstance,ptmxmode=0666,mode=0620,gid=5 "],
        );
        let has = |c: &str| calls.iter().any(|x| x == c);
        for want in [
            "mount devpts ROOT/dev/pts newinstance,ptmxmode=0666,mode=0620 dev=true",
            "rbind-ro /sys ROOT/sys",
            "mount tmpfs ROOT/sys/firmware size=0 dev=false",
        ] {
            assert!(has(want), "{want}: {calls:?}");
        }
    }
}
