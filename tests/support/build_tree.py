"""File trees and configs of built images for tests/build.sh.

  build_tree.py list TREE
  build_tree.py cmp [OPTIONS] A B
      Compare two flattened root filesystems (tar files, as `img export`
      writes them, or directories): per path the type, permission bits,
      owner, size, sha256 of regular files, symlink target, device numbers,
      hard-link grouping and mtime (seconds). Exit 1 and print the
      differences.
      --since=EPOCH    entries whose mtime is at or after EPOCH on both sides
                       were made during the build: their mtimes are not
                       compared (everything else's are, directories' too)
      --buildah=B|A    that side was built by buildah: its mount points for
                       RUN (proc, dev, sys, run: empty directories;
                       etc/hosts, etc/resolv.conf: empty files) are left out
                       when the other side lacks them, and so is the mtime
                       of their parent directory when buildah changed it
      --no-owners      leave uid and gid out
      --ignore=P,Q     leave these paths (and what is under them) out
  build_tree.py artifacts ARCHIVE
      Print the RUN mount points (proc/, dev/, sys/, run/, etc/hosts,
      etc/resolv.conf and anything under them) found in any layer of a
      docker-archive or oci-archive, one "LAYER PATH" a line; exit 1 if any.
  build_tree.py config ARCHIVE
      Print the image config's fields that tests/build.sh compares, as
      sorted JSON (Labels without io.buildah.version, Env sorted; empty
      values dropped).
  build_tree.py env ARCHIVE
      Print the image config's Env as it is (order kept, null if none), as
      JSON.
  build_tree.py history ARCHIVE
      Print the created_by of each history entry of the image, one a line.
  build_tree.py cmp-config [--fields=F,G] A B
      Compare those fields of two archives; exit 1 and print differences.
Plain Python 3 and no packages.
"""
import hashlib, io, json, os, stat, subprocess, sys, tarfile

ARTIFACT_DIRS = ("proc", "dev", "sys", "run")
ARTIFACT_FILES = ("etc/hosts", "etc/resolv.conf")


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
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            full = os.path.join(dirpath, n)
            p = norm(os.path.relpath(full, root))
            st = os.lstat(full)
            e = {"mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
                 "mtime": int(st.st_mtime)}
            m = st.st_mode
            if stat.S_ISDIR(m):
                e["type"] = "dir"
            elif stat.S_ISLNK(m):
                e["type"], e["target"], e["mode"] = "symlink", os.readlink(full), 0o777
            elif stat.S_ISREG(m):
                e["type"], e["size"] = "file", st.st_size
                with open(full, "rb") as f:
                    e["sha256"] = sha(f)
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


def open_tar(path_or_bytes):
    """A tarfile of a path or of bytes; zstd through the zstd tool."""
    data = path_or_bytes
    if isinstance(data, str):
        with open(data, "rb") as f:
            head = f.read(4)
        if head != b"\x28\xb5\x2f\xfd":
            return tarfile.open(data, "r:*")
        data = open(data, "rb").read()
    if data[:4] == b"\x28\xb5\x2f\xfd":
        data = subprocess.run(["zstd", "-dc"], input=data, stdout=subprocess.PIPE, check=True).stdout
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:*")


def from_tar(path):
    out, root_of, members = {}, {}, {}
    with open_tar(path) as t:
        for m in t:
            p = norm(m.name)
            if not p:
                continue
            e = {"mode": m.mode & 0o7777, "uid": m.uid, "gid": m.gid, "mtime": int(m.mtime)}
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
    return out


def load(path):
    return from_dir(path) if os.path.isdir(path) else from_tar(path)


KEYS = ["type", "mode", "uid", "gid", "size", "sha256", "target", "rdev", "hardlinks", "mtime", "duplicate"]


def show(e, keys):
    return " ".join("%s=%s" % (k, oct(e[k]) if k == "mode" else e[k]) for k in keys if k in e)


def is_artifact(p, e, tree):
    """A RUN mount point that buildah leaves in its layers."""
    if p in ARTIFACT_DIRS:
        return e["type"] == "dir" and not any(q.startswith(p + "/") for q in tree)
    if p in ARTIFACT_FILES:
        return e["type"] == "file" and e.get("size") == 0
    return False


def cmp(args, opts):
    a, b = load(args[0]), load(args[1])
    since = int(opts["--since"]) if "--since" in opts else None
    keys = [k for k in KEYS if "--no-owners" not in opts or k not in ("uid", "gid")]
    ignore = [norm(p) for p in opts.get("--ignore", "").split(",") if p]
    touched = set()          # parents of the buildah artifacts left out
    side = opts.get("--buildah")
    if side:
        bt, other = (b, a) if side == "B" else (a, b)
        for p in [p for p in bt if p not in other and is_artifact(p, bt[p], bt)]:
            del bt[p]
            touched.add(os.path.dirname(p))
    bad = 0
    paths = sorted(set(a) | set(b))
    paths = [p for p in paths if not any(p == i or p.startswith(i + "/") for i in ignore)]
    for p in paths:
        ks = list(keys)
        if p in a and p in b:
            ma, mb = a[p]["mtime"], b[p]["mtime"]
            made = since is not None and ma >= since and mb >= since
            if made or (p in touched and a[p]["type"] == "dir"):
                ks.remove("mtime")
        x = show(a[p], ks) if p in a else "(absent)"
        y = show(b[p], ks) if p in b else "(absent)"
        if x != y:
            bad += 1
            if bad <= 20:
                print("  %s:\n    A: %s\n    B: %s" % (p, x, y), file=sys.stderr)
    if bad:
        print("%d of %d paths differ (A=%s, B=%s)" % (bad, len(paths), args[0], args[1]), file=sys.stderr)
        return 1
    print("%d paths alike" % len(paths))
    return 0


def archive(path):
    """(config, [layer bytes]) of a docker-archive or an oci-archive."""
    with tarfile.open(path, "r:*") as t:
        names = t.getnames()
        read = lambda n: t.extractfile(norm(n)).read()
        if "manifest.json" in names:
            m = json.loads(read("manifest.json"))[0]
            return json.loads(read(m["Config"])), [read(l) for l in m["Layers"]]
        ix = json.loads(read("index.json"))
        blob = lambda d: read("blobs/" + d.replace(":", "/"))
        m = json.loads(blob(ix["manifests"][0]["digest"]))
        if "manifests" in m:           # an index inside
            m = json.loads(blob(m["manifests"][0]["digest"]))
        return json.loads(blob(m["config"]["digest"])), [blob(l["digest"]) for l in m["layers"]]


FIELDS = ["Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts", "Volumes",
          "StopSignal", "Healthcheck", "OnBuild", "Shell", "author"]


def config(path):
    c, _ = archive(path)
    cc = c.get("config") or {}
    out = {}
    for f in FIELDS:
        v = c.get(f) if f == "author" else cc.get(f)
        if f == "Env" and v:
            v = sorted(v)         # buildah appends a redefined variable, docker and img replace it in place
        if f == "Labels" and v:
            v = {k: x for k, x in v.items() if k != "io.buildah.version"}
        if v not in (None, "", [], {}):
            out[f] = v
    return out


def artifacts(path):
    _, layers = archive(path)
    found = []
    for i, data in enumerate(layers):
        with open_tar(data) as t:
            for m in t:
                p = norm(m.name)
                if any(p == d or p.startswith(d + "/") for d in ARTIFACT_DIRS) or p in ARTIFACT_FILES:
                    found.append("%d %s" % (i + 1, p))
    for f in found:
        print(f)
    return 1 if found else 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    opts = {a.split("=")[0]: a.partition("=")[2] for a in args if a.startswith("--")}
    args = [a for a in args if not a.startswith("--")]
    if cmd == "list":
        for p, e in sorted(load(args[0]).items()):
            print(p, show(e, KEYS))
        return 0
    if cmd == "cmp":
        return cmp(args, opts)
    if cmd == "artifacts":
        return artifacts(args[0])
    if cmd == "config":
        print(json.dumps(config(args[0]), sort_keys=True))
        return 0
    if cmd == "env":
        c, _ = archive(args[0])
        print(json.dumps((c.get("config") or {}).get("Env")))
        return 0
    if cmd == "history":
        c, _ = archive(args[0])
        for h in c.get("history") or []:
            print(h.get("created_by", ""))
        return 0
    if cmd == "cmp-config":
        a, b = config(args[0]), config(args[1])
        fields = opts["--fields"].split(",") if "--fields" in opts else FIELDS
        bad = [f for f in fields if a.get(f) != b.get(f)]
        for f in bad:
            print("  %s:\n    A: %s\n    B: %s" % (f, json.dumps(a.get(f), sort_keys=True),
                                                   json.dumps(b.get(f), sort_keys=True)), file=sys.stderr)
        if not bad:
            print("%d config fields alike" % len(fields))
        return 1 if bad else 0
    print("build_tree.py: unknown command " + cmd, file=sys.stderr)
    return 2


sys.exit(main())
