//! The namespaces a build runs in: a mount namespace as root; for an
//! ordinary user a user namespace where the caller is root, with the
//! caller's subordinate ids (`/etc/subuid`, `/etc/subgid`) mapped by
//! `newuidmap`/`newgidmap` when they can be.

use anyhow::{bail, Context, Result};
use img_sys::{Namespaces, Sandbox};
use std::io::Write;

/// Gives this process the namespaces of a build; returns whether the build
/// is rootless (an ordinary user's, as root of a user namespace). Called
/// while the process has one thread. Where the caller's subordinate ids
/// can be mapped, the build runs again in a child that is mapped so, and
/// this process exits with the child's status instead of returning. The
/// namespaces are entered through `k`.
pub fn enter(k: &dyn Sandbox) -> Result<bool> {
    enter_as(k, !img_sys::process::is_root())
}

/// [`enter`] for a caller who is root (`rootless` false) or not.
fn enter_as(k: &dyn Sandbox, rootless: bool) -> Result<bool> {
    if rootless {
        if std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse").is_err() {
            bail!("building as an ordinary user needs /dev/fuse readable and writable by you (chmod 0666 /dev/fuse, as most distributions ship it)");
        }
        let ns = "entering a user namespace for the build (the kernel must allow unprivileged user namespaces)";
        if std::env::var("IMG_BUILD_USERNS").as_deref() == Ok("child") {
            // The parent maps the user's subordinate ids into this namespace.
            img_sys::process::die_with_parent();
            k.unshare(Namespaces { user: true, ..Default::default() }).context(ns)?;
            let mut go = String::new();
            std::io::stdin().read_line(&mut go).context("waiting for the user namespace's mapping")?;
            if go.trim() != "go" {
                bail!("the user namespace was not mapped");
            }
            k.enter_mount_namespace().context(ns)?;
        } else if let Some(maps) = subordinate_ids() {
            match run_mapped(maps)? {}
        } else {
            k.enter_user_namespace().context(ns)?;
        }
    } else {
        k.enter_mount_namespace().context("making a mount namespace for the build")?;
    }
    Ok(rootless)
}

/// The caller's uid and gid and their subordinate ranges (start, count)
/// in /etc/subuid and /etc/subgid, when newuidmap and newgidmap can map them.
#[derive(Debug, PartialEq, Eq)]
struct IdMaps {
    uid: u32,
    gid: u32,
    subuid: (u64, u64),
    subgid: (u64, u64),
}

/// The effective gid (the second of four) in the text of /proc/self/status.
fn status_gid(status: &str) -> Option<u32> {
    status.lines().find_map(|l| l.strip_prefix("Gid:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// The name /etc/passwd (its text) gives uid `uid`, empty if none.
fn user_name(passwd: &str, uid: u32) -> String {
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == uid.to_string())
        .map(|f| f[0].to_string())
        .unwrap_or_default()
}

/// The first range (start, count) an /etc/subuid or /etc/subgid text gives
/// the user `name` or the id `id`.
fn subordinate_range(text: &str, name: &str, id: u32) -> Option<(u64, u64)> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.trim().split(':').collect();
        if f.len() == 3 && (f[0] == name || f[0] == id.to_string()) {
            Some((f[1].parse().ok()?, f[2].parse().ok()?))
        } else {
            None
        }
    })
}

/// The maps from the texts of /etc/passwd, /etc/subuid and /etc/subgid,
/// when both ranges are there and not empty.
fn id_maps(uid: u32, gid: u32, passwd: &str, subuid: &str, subgid: &str) -> Option<IdMaps> {
    let name = user_name(passwd, uid);
    let (subuid, subgid) = (subordinate_range(subuid, &name, uid)?, subordinate_range(subgid, &name, gid)?);
    (subuid.1 > 0 && subgid.1 > 0).then_some(IdMaps { uid, gid, subuid, subgid })
}

fn subordinate_ids() -> Option<IdMaps> {
    let uid = crate::user::effective_uid()?;
    let gid = status_gid(&std::fs::read_to_string("/proc/self/status").ok()?)?;
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let subuid = std::fs::read_to_string("/etc/subuid").ok()?;
    let subgid = std::fs::read_to_string("/etc/subgid").ok()?;
    let maps = id_maps(uid, gid, &passwd, &subuid, &subgid)?;
    let found =
        |t: &str| std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(t).is_file()));
    (found("newuidmap") && found("newgidmap")).then_some(maps)
}

/// Runs this build again in a child that makes a user namespace, maps the
/// caller to root there and the caller's subordinate ids to 1..N (as
/// rootless podman does, so that an image's other users exist in the
/// build), and exits with the child's status.
fn run_mapped(m: IdMaps) -> Result<std::convert::Infallible> {
    use std::process::{Command, Stdio};
    // The running binary itself, even if its file was replaced meanwhile.
    let exe = std::path::PathBuf::from("/proc/self/exe");
    let mut child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("IMG_BUILD_USERNS", "child")
        .stdin(Stdio::piped())
        .spawn()
        .context("starting the build in a user namespace")?;
    let pid = child.id();
    let mine = std::fs::read_link("/proc/self/ns/user").context("reading this process's user namespace")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if std::fs::read_link(format!("/proc/{pid}/ns/user")).is_ok_and(|l| l != mine) {
            break;
        }
        if let Some(st) = child.try_wait()? {
            std::process::exit(super::run::exit_code(st));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            bail!("the build did not enter its user namespace within 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    for (tool, id, (start, count)) in [("newuidmap", m.uid, m.subuid), ("newgidmap", m.gid, m.subgid)] {
        let out = Command::new(tool)
            .arg(pid.to_string())
            .args(["0", &id.to_string(), "1", "1", &start.to_string(), &count.to_string()])
            .output();
        let ok = matches!(&out, Ok(o) if o.status.success());
        if !ok {
            let _ = child.kill();
            let msg = match out {
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                Err(e) => e.to_string(),
            };
            bail!("{tool} could not map your subordinate ids into the build's user namespace: {msg}; check /etc/subuid and /etc/subgid");
        }
    }
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(b"go\n").context("starting the build in its user namespace")?;
    }
    let st = child.wait().context("waiting for the build")?;
    std::process::exit(super::run::exit_code(st))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_as_root_enters_only_a_mount_namespace() {
        let k = img_sys::RecordingKernel::default();
        assert!(!enter_as(&k, false).unwrap());
        assert_eq!(k.calls(), [format!("unshare {:?}", Namespaces { mount: true, ..Default::default() })]);
    }

    #[test]
    fn a_build_as_root_fails_clearly_without_a_mount_namespace() {
        let k = img_sys::RecordingKernel::default();
        k.fail.lock().unwrap().push("unshare".into());
        let e = enter_as(&k, false).unwrap_err();
        assert!(format!("{e:#}").starts_with("making a mount namespace for the build"), "{e:#}");
    }

    #[test]
    fn gid_is_the_effective_one_of_proc_status() {
        let table: &[(&str, Option<u32>)] = &[
            ("Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t1001\t1002\t1002\t1002\n", Some(1002)),
            ("Gid:\t0\t0\t0\t0", Some(0)),
            ("Name:\tx\n", None),
            ("Gid:\n", None),
            ("Gid:\t5", None),
            ("Gid:\t5\tx", None),
        ];
        for (text, want) in table {
            assert_eq!(status_gid(text), *want, "{text:?}");
        }
    }

    #[test]
    fn user_names_come_from_passwd() {
        let passwd = "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nbroken\nbob:x:1001";
        let table: &[(u32, &str)] = &[(0, "root"), (1000, "alice"), (1001, "bob"), (4242, "")];
        for (uid, want) in table {
            assert_eq!(user_name(passwd, *uid), *want, "{uid}");
        }
    }

    #[test]
    fn subordinate_ranges_by_name_or_id() {
        let text = "# no comment syntax, but no match either\nbob:200000:1000\n  alice:100000:65536  \n1001:300000:10\nbad:x:1\nshort:1\n";
        let table: &[(&str, u32, Option<(u64, u64)>)] = &[
            ("alice", 1000, Some((100000, 65536))),
            ("bob", 1000, Some((200000, 1000))),
            ("carol", 1001, Some((300000, 10))),
            ("carol", 1002, None),
            ("bad", 7, None),
            ("short", 7, None),
            ("", 7, None),
        ];
        for (name, id, want) in table {
            assert_eq!(subordinate_range(text, name, *id), *want, "{name} {id}");
        }
        // The first good line that names the user decides.
        assert_eq!(subordinate_range("a:1:2\na:3:4\n", "a", 9), Some((1, 2)));
        assert_eq!(subordinate_range("a:x:2\na:3:4\n", "a", 9), Some((3, 4)));
    }

    #[test]
    fn maps_need_both_ranges_and_not_empty() {
        let passwd = "alice:x:1000:1000::/home/alice:/bin/sh\n";
        let want = IdMaps { uid: 1000, gid: 1000, subuid: (100000, 65536), subgid: (100000, 65536) };
        assert_eq!(id_maps(1000, 1000, passwd, "alice:100000:65536\n", "alice:100000:65536\n"), Some(want));
        // The group file is looked up by the user's name or the gid.
        let by_gid = id_maps(1000, 50, passwd, "1000:1:2\n", "50:3:4\n").expect("maps");
        assert_eq!((by_gid.subuid, by_gid.subgid), ((1, 2), (3, 4)));
        assert_eq!(id_maps(1000, 1000, passwd, "alice:100000:65536\n", ""), None);
        assert_eq!(id_maps(1000, 1000, passwd, "", "alice:100000:65536\n"), None);
        assert_eq!(id_maps(1000, 1000, passwd, "alice:100000:0\n", "alice:100000:65536\n"), None);
        assert_eq!(id_maps(1000, 1000, passwd, "alice:100000:65536\n", "alice:100000:0\n"), None);
        assert_eq!(id_maps(1000, 1000, "", "bob:1:2\n", "bob:1:2\n"), None);
    }
}
