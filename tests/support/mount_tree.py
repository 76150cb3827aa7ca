"""Lists or compares file trees (a directory, or a tar file as its entries
say) for tests/mount.sh: per path the type, permission bits, owner, size,
sha256 of regular files, symlink target, device numbers, xattrs, mtime in
nanoseconds, and which names are hard links of one file.

  mount_tree.py list TREE
  mount_tree.py cmp [OPTIONS] A B     exit 1 and print the differences
      --no-owners      leave uid and gid out
      --mtimes=WHAT    compare mtimes of: none, files (everything but
                       directories; the default) or all
      --as=UID:GID     the reader is this user, not root: a regular file
                       that a tar side's modes and owners deny it counts
                       as "denied", as an unreadable file of a directory
                       side does, and a directory it may not list hides
                       what is in it
      --only=P,Q,...   compare only these paths and what is under them
A TREE of "-" is a tar stream read from standard input.
Plain Python 3 (3.7 or later) and no packages, so that any user can run it.
"""
import errno, hashlib, os, stat, sys, tarfile


def norm(p):
    p = p.lstrip("/")
    while p.startswith("./"):
        p = p[2:]
    return p.rstrip("/")


def sha(f):
    h = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


def from_dir(root):
    out, inodes = {}, {}

    def onerror(e):
        p = norm(os.path.relpath(e.filename, root))
        if isinstance(e, PermissionError) and p in out:
            out[p]["listing"] = "denied"
        else:
            raise e

    for dirpath, dirs, files in os.walk(root, onerror=onerror):
        for n in dirs + files:
            full = os.path.join(dirpath, n)
            p = norm(os.path.relpath(full, root))
            st = os.lstat(full)
            e = {"mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
                 "mtime": st.st_mtime_ns}
            xa = {}
            for k in sorted(os.listxattr(full, follow_symlinks=False)):
                xa[k] = os.getxattr(full, k, follow_symlinks=False).hex()
            if xa:
                e["xattrs"] = xa
            m = st.st_mode
            if stat.S_ISDIR(m):
                e["type"] = "dir"
            elif stat.S_ISLNK(m):
                e["type"], e["target"], e["mode"] = "symlink", os.readlink(full), 0o777
            elif stat.S_ISREG(m):
                e["type"], e["size"] = "file", st.st_size
                try:
                    with open(full, "rb") as f:
                        e["sha256"] = sha(f)
                except PermissionError:
                    e["sha256"] = "denied"
                except OSError as err:   # EIO from a broken mount, say: a difference, not a crash
                    e["sha256"] = "error:" + errno.errorcode.get(err.errno, str(err.errno))
                if st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), []).append(p)
            elif stat.S_ISFIFO(m):
                e["type"] = "fifo"
            elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
                e["type"] = "char" if stat.S_ISCHR(m) else "block"
                e["rdev"] = "%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                e["type"] = "other:%o" % stat.S_IFMT(m)
            out[p] = e
    for group in inodes.values():
        if len(group) > 1:
            for p in group:
                out[p]["hardlinks"] = sorted(group)
    return out


def pax_mtime(m):
    v = m.pax_headers.get("mtime")
    if v is None:
        return int(m.mtime) * 10**9
    secs, _, frac = v.partition(".")
    return int(secs) * 10**9 + int((frac + "000000000")[:9])


def from_tar(path, reader=None):
    out, root_of, members = {}, {}, {}
    # "-": a tar stream on standard input, read once, in order.
    t = (tarfile.open(fileobj=sys.stdin.buffer, mode="r|*", bufsize=1 << 20) if path == "-"
         else tarfile.open(path, "r:*"))
    with t:
        for m in t:
            p = norm(m.name)
            if not p:
                continue
            e = {"mode": m.mode & 0o7777, "uid": m.uid, "gid": m.gid, "mtime": pax_mtime(m)}
            xa = {k[len("SCHILY.xattr."):]: v.encode("utf-8", "surrogateescape").hex()
                  for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}
            if xa:
                e["xattrs"] = dict(sorted(xa.items()))
            if m.isdir():
                e["type"] = "dir"
            elif m.issym():
                e["type"], e["target"], e["mode"] = "symlink", m.linkname, 0o777
            elif m.islnk():
                target = norm(m.linkname)
                if out.get(target, {}).get("type") != "file":
                    e["type"] = "hard link to a missing file " + target
                else:
                    e = dict(out[target])
                    r = root_of.get(target, target)
                    members.setdefault(r, [r]).append(p)
                    root_of[p] = r
            elif m.isreg():
                e["type"], e["size"] = "file", m.size
                e["sha256"] = sha(t.extractfile(m))
                if reader and not allowed(e, 4, *reader):
                    e["sha256"] = "denied"
            elif m.isfifo():
                e["type"] = "fifo"
            elif m.ischr() or m.isblk():
                e["type"] = "char" if m.ischr() else "block"
                e["rdev"] = "%d:%d" % (m.devmajor, m.devminor)
            else:
                e["type"] = "other:%s" % m.type
            if p in out:
                e["duplicate"] = True
            out[p] = e
    for g in members.values():
        for p in g:
            out[p]["hardlinks"] = sorted(g)
    if reader:
        # What the reader cannot list, it cannot see into.
        shut = sorted(p for p, e in out.items() if e["type"] == "dir" and not allowed(e, 5, *reader))
        for d in shut:
            out[d]["listing"] = "denied"
        for p in [p for p in out if any(p.startswith(d + "/") for d in shut)]:
            del out[p]
    return out


def allowed(e, bits, uid, gid):
    """Would the kernel's permission check grant (uid, gid) all of bits
    (4 read, 2 write, 1 execute, as in the "other" class) on entry e?"""
    if uid == 0:
        return True
    shift = 6 if e["uid"] == uid else 3 if e["gid"] == gid else 0
    return (e["mode"] >> shift) & bits == bits


def load(path, reader=None):
    return from_dir(path) if path != "-" and os.path.isdir(path) else from_tar(path, reader)


KEYS = ["type", "mode", "uid", "gid", "size", "sha256", "target", "rdev", "xattrs", "hardlinks", "mtime",
        "listing", "duplicate"]


def show(e, owners=True, mtimes="files"):
    keys = [k for k in KEYS if owners or k not in ("uid", "gid")]
    if mtimes == "none" or (mtimes == "files" and e.get("type") == "dir"):
        keys.remove("mtime")
    return " ".join("%s=%s" % (k, oct(e[k]) if k == "mode" else e[k]) for k in keys if k in e)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    opts = {a.split("=")[0]: a.partition("=")[2] for a in args if a.startswith("--")}
    args = [a for a in args if not a.startswith("--")]
    if cmd == "list":
        for p, e in sorted(load(args[0]).items()):
            print(p, show(e, True, "all"))
        return 0
    owners = "--no-owners" not in opts
    mtimes = opts.get("--mtimes", "files")
    reader = tuple(int(x) for x in opts["--as"].split(":")) if "--as" in opts else None
    a, b = load(args[0], reader), load(args[1], reader)
    bad = 0
    paths = sorted(set(a) | set(b))
    if "--only" in opts:
        only = [norm(p) for p in opts["--only"].split(",")]
        paths = [p for p in paths if any(p == o or p.startswith(o + "/") for o in only)]
    for p in paths:
        x = show(a[p], owners, mtimes) if p in a else "(absent)"
        y = show(b[p], owners, mtimes) if p in b else "(absent)"
        if x != y:
            bad += 1
            if bad <= 20:
                print("  %s:\n    A: %s\n    B: %s" % (p, x, y), file=sys.stderr)
    if bad:
        print("%d of %d paths differ (A=%s, B=%s)" % (bad, len(paths), args[0], args[1]), file=sys.stderr)
    else:
        print("%d paths alike" % len(paths))
    return 1 if bad else 0


sys.exit(main())
