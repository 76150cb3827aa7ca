"""Writes the OCI image layouts that tests/mount.sh mounts, from seeded data
(the same bytes on every run; nothing is downloaded).

  python3 mount_image.py full LAYOUT [TWIN]
                                         the 4-layer image, tag "1"; TWIN
                                         gets the same layers with layer 4
                                         gzip (for umoci 0.4, which has no
                                         zstd): the same tree, the same ID
  python3 mount_image.py sparse LAYOUT [SECOND]
                                         sparse files made with GNU tar, tag
                                         "1": layer 1 (gzip) in the old GNU
                                         format (8 MiB, 5 GiB and a 60-island
                                         file), layers 2 (zstd), 3 (gzip) and
                                         4 (uncompressed) in the PAX formats
                                         1.0, 0.1 and 0.0; LAYOUT/sparse.json
                                         lists each file's size and data
                                         islands (offset, length, sha256).
                                         SECOND: layers 2-4 alone, gzip (umoci
                                         refuses old GNU sparse entries and
                                         zstd layers)
  python3 mount_image.py hostile LAYOUT  one layer with a PAX sparse file
                                         whose map has overlapping segments

The full image: layer 1 (gzip) is a root filesystem with every kind of
entry (directories, files of 0 bytes to 5 MiB, hard links across
directories, relative, absolute and dangling symlinks, a fifo, character and
block devices, setuid and setgid files, a security.capability and a
user.test xattr, 10,000 small files, a 200-deep directory path, a 255-byte
file name, other owners, sub-second mtimes); layer 2 (gzip) deletes a file
and a directory (whiteouts), makes a directory opaque, replaces the target
of a hard link, links to a file of layer 1, turns a file into a directory
and a directory into a file, and holds a 4 MiB text file in the middle of
its compressed stream (the corruption check flips bytes there); layer 3 is
uncompressed and layer 4 zstd.
"""
import gzip, hashlib, io, json, os, random, re, subprocess, sys, tarfile, tempfile

EPOCH = 1700000000
rng = random.Random(20261123)

# A valid VFS_CAP_REVISION_2 security.capability: effective, cap_net_bind_service.
CAPABILITY = bytes([1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])


class Layer:
    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.n = 0

    def _info(self, name, mode, uid, gid, mtime):
        ti = tarfile.TarInfo(name)
        ti.mode, ti.uid, ti.gid = mode, uid, gid
        ti.uname = ti.gname = ""
        self.n += 1
        ti.mtime = mtime if mtime is not None else EPOCH + self.n
        if isinstance(mtime, str):   # a PAX mtime with nanoseconds, kept exact
            ti.mtime = float(mtime)
            ti.pax_headers = {"mtime": mtime}
        return ti

    def dir(self, name, mode=0o755, uid=0, gid=0, mtime=None):
        ti = self._info(name, mode, uid, gid, mtime)
        ti.type = tarfile.DIRTYPE
        self.tar.addfile(ti)

    def file(self, name, data, mode=0o644, uid=0, gid=0, mtime=None, xattrs=None):
        ti = self._info(name, mode, uid, gid, mtime)
        ti.size = len(data)
        if xattrs:
            # tarfile writes PAX values as UTF-8 text, so keep binary values
            # ASCII-safe via surrogateescape decoding.
            ti.pax_headers.update({"SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()})
        self.tar.addfile(ti, io.BytesIO(data))

    def link(self, name, target, kind, mode=0o777, mtime=None):
        ti = self._info(name, mode, 0, 0, mtime)
        ti.type, ti.linkname = kind, target
        self.tar.addfile(ti)

    def sym(self, name, target):
        self.link(name, target, tarfile.SYMTYPE)

    def hard(self, name, target):
        self.link(name, target, tarfile.LNKTYPE, mode=0o644)

    def special(self, name, kind, mode, major=0, minor=0):
        ti = self._info(name, mode, 0, 0, None)
        ti.type, ti.devmajor, ti.devminor = kind, major, minor
        self.tar.addfile(ti)

    def whiteout(self, path):
        d, b = os.path.split(path)
        self.file(os.path.join(d, ".wh." + b), b"", mode=0o600)

    def opaque(self, d):
        self.file(d + "/.wh..wh..opq", b"", mode=0o600)

    def bytes(self):
        self.tar.close()
        return self.buf.getvalue()


def text(n, seed):
    """About n bytes of text with both repeats and variety (deflates to a
    real Huffman-coded stream, not stored blocks)."""
    r = random.Random(seed)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
             "juliett", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec"]
    out, i = [], 0
    size = 0
    while size < n:
        line = "%08d %s %08x\n" % (i, " ".join(r.choice(words) for _ in range(6)), r.getrandbits(32))
        out.append(line)
        size += len(line)
        i += 1
    return "".join(out).encode()[:n]


def layer1():
    L = Layer()
    for d in ["bin", "etc", "data", "data/sub", "home", "del-dir", "del-dir/inner", "opq", "opq/sub",
              "links", "dev", "many", "long", "srv", "srv/to-file", "deep"]:
        L.dir(d)
    L.dir("tmp", mode=0o1777)
    L.dir("home/user", mode=0o750, uid=1000, gid=1000)
    L.file("etc/hello", b"hello v1\n")
    L.file("etc/to-dir", b"a file in layer 1, a directory in layer 2\n")
    L.file("etc/secret", b"root only\n", mode=0o600)
    L.file("etc/no-perms", b"mode 0000\n", mode=0o000)
    L.file("data/empty", b"")
    L.file("data/small", rng.randbytes(100))
    L.file("data/medium", rng.randbytes(64 << 10), mode=0o640, gid=50)
    L.file("data/big.bin", rng.randbytes(5 << 20), mtime="%d.25" % EPOCH)
    L.file("data/text.txt", text(3 << 20, 1), mtime="%d.123456789" % (EPOCH + 1))
    L.file("data/orig", b"hard-linked from two other directories\n", mode=0o444)
    L.hard("links/hl-orig", "data/orig")
    L.hard("data/sub/hl-orig2", "data/orig")
    L.file("data/target2", b"target2 version 1 (layer 1)\n")
    L.hard("links/hl-target2", "data/target2")
    L.file("del-file", b"deleted by layer 2\n")
    L.file("del-dir/y", b"y\n")
    L.file("del-dir/inner/x", b"x\n")
    L.file("opq/a", b"a\n")
    L.file("opq/b", b"b\n")
    L.file("opq/sub/c", b"c\n")
    L.file("srv/to-file/child", b"gone when srv/to-file becomes a file\n")
    L.file("bin/suid", b"#!/bin/sh\necho suid\n", mode=0o4755)
    L.file("bin/sgid", b"#!/bin/sh\necho sgid\n", mode=0o2755, gid=50)
    L.file("bin/cap", b"\x7fELF not really\n", mode=0o755, xattrs={"security.capability": CAPABILITY})
    L.file("data/xattr-file", b"has a user xattr\n", xattrs={"user.test": b"hello xattr"})
    L.file("home/user/file", b"the user's\n", mode=0o640, uid=1000, gid=1000)
    L.file("data/nobody", b"owned by nobody\n", uid=65534, gid=65534)
    L.sym("links/rel", "../data/small")
    L.sym("links/abs", "/etc/hello")
    L.sym("links/dangling", "/nowhere/missing")
    L.sym("links/dir-link", "../data")
    L.special("dev/fifo", tarfile.FIFOTYPE, 0o644)
    L.special("dev/null", tarfile.CHRTYPE, 0o666, 1, 3)
    L.special("dev/loop0", tarfile.BLKTYPE, 0o660, 7, 0)
    for d in range(100):
        L.dir("many/d%03d" % d)
        for f in range(100):
            L.file("many/d%03d/f%05d" % (d, d * 100 + f), rng.randbytes(rng.randrange(0, 300)))
    path = "deep"
    for i in range(1, 201):
        path += "/l%03d" % i
        L.dir(path)
    L.file(path + "/leaf.txt", b"200 directories down\n")
    name = "long/" + "x" * 251 + ".txt"
    assert len(os.path.basename(name)) == 255
    L.file(name, b"a 255-byte name\n")
    return L.bytes()


def layer2():
    L = Layer()
    L.whiteout("del-file")
    L.whiteout("del-dir")
    L.opaque("opq")
    L.file("opq/new", b"the only entry of the opaque directory\n")
    L.file("data/target2", b"target2 version 2 (layer 2)\n")
    L.hard("links/hl2", "data/small")
    L.file("etc/hello", b"hello v2\n", mode=0o640)
    L.dir("etc/to-dir")
    L.file("etc/to-dir/inside", b"inside\n")
    L.file("srv/to-file", b"was a directory\n")
    L.file("data/before-corrupt", b"before the middle of layer 2\n")
    L.file("data/corrupt-me.txt", text(4 << 20, 2))
    L.file("data/after-corrupt", b"after the middle of layer 2\n")
    return L.bytes()


def layer3():
    L = Layer()
    L.dir("bin", mode=0o750, mtime=EPOCH + 99999)   # a directory over a directory: new metadata
    L.whiteout("data/medium")
    L.file("data/l3.bin", rng.randbytes(2 << 20))
    L.dir("l3dir")
    for i in range(20):
        L.file("l3dir/f%02d" % i, rng.randbytes(i * 1000))
    L.hard("links/hl3", "data/big.bin")
    return L.bytes()


def layer4():
    L = Layer()
    L.whiteout("many/d000/f00000")
    L.file("data/zstd.bin", rng.randbytes(1 << 20))
    L.file("data/zstd.txt", text(1 << 20, 3))
    L.file("deep/" + "/".join("l%03d" % i for i in range(1, 201)) + "/from-layer-4", b"zstd\n")
    return L.bytes()


def blob(layout, data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", d), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + d, "size": len(data)}


def compress(data, how):
    if how == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip"
    if how == "zstd":
        return (subprocess.run(["zstd", "-q", "-c", "-3"], input=data, stdout=subprocess.PIPE, check=True).stdout,
                "application/vnd.oci.image.layer.v1.tar+zstd")
    return data, "application/vnd.oci.image.layer.v1.tar"


def write_layout(layout, layers):
    """layers: [(uncompressed tar bytes, "gzip" | "zstd" | "none")]"""
    os.makedirs(os.path.join(layout, "blobs", "sha256"))
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    descs, diff_ids = [], []
    for tar, how in layers:
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        data, media = compress(tar, how)
        descs.append(dict(mediaType=media, **blob(layout, data)))
    created = "2023-11-14T22:13:20Z"
    config = {
        "created": created, "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Labels": {"org.example.test": "mount"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": created, "created_by": "tests/support/mount_image.py layer %d" % (i + 1)}
                    for i in range(len(layers))],
    }
    cfg = blob(layout, json.dumps(config, sort_keys=True).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **cfg), "layers": descs}
    m = blob(layout, json.dumps(manifest, sort_keys=True).encode())
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [dict(mediaType="application/vnd.oci.image.manifest.v1+json",
                                annotations={"org.opencontainers.image.ref.name": "1"}, **m)]}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)


GiB = 1 << 30

# The sparse files of the sparse image: name -> (real size, [(offset, length)]
# of data islands), each island filled with seeded random bytes. Islands
# are 4 KiB-aligned, so that GNU tar's hole detection (SEEK_DATA/SEEK_HOLE,
# block-sized) finds exactly these on any filesystem with 4 KiB blocks.
SPARSE = {
    # Old GNU format (type S; 5 descriptors, so one extension block): at 0,
    # in the middle, across 4 GiB and near the end, ending in a hole.
    "data/big.img": (5 * GiB, [(0, 64 << 10), (5 * GiB // 2, 1 << 20), (4 * GiB - (8 << 10), 16 << 10),
                               (5 * GiB - (12 << 10), 8 << 10)]),
    # Old GNU format with 60 islands (3 extension blocks), ending in data.
    "data/many.img": (60 * (64 << 10), [(i * (64 << 10) + (60 << 10), 4 << 10) for i in range(60)]),
    # PAX 1.0 (the map at the start of the data): a hole first, data to
    # the end, a size that is no multiple of 512.
    "pax/v10.img": ((64 << 20) + 1000, [(1 << 20, 4 << 10), ((64 << 20) - (4 << 10), (4 << 10) + 1000)]),
    # PAX 0.1 (GNU.sparse.map) and 0.0 (GNU.sparse.offset/numbytes).
    "pax/v01.img": (16 << 20, [(0, 4 << 10), (8 << 20, 12 << 10)]),
    "pax/v00.img": (16 << 20, [(4 << 20, 4 << 10), ((16 << 20) - (4 << 10), 4 << 10)]),
}


def island(name, offset, length):
    """The bytes of one island (the same on every run)."""
    return random.Random("%s@%d" % (name, offset)).randbytes(length)


def make_sparse(root, name):
    size, islands = SPARSE[name]
    path = os.path.join(root, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
        for off, n in islands:
            f.seek(off)
            f.write(island(name, off, n))


def fixed_sparse_names(data):
    """GNU tar names the header of a PAX 0.1/1.0 sparse file
    DIR/GNUSparseFile.PID/NAME: make PID 0, so that the layer is the same
    on every run (readers take the real name from GNU.sparse.name)."""
    out, pos = bytearray(data), 0
    while pos + 512 <= len(out):
        h = out[pos:pos + 512]
        if h == bytes(512):
            break
        size = int(h[124:136].rstrip(b"\0 ") or b"0", 8)
        name = h[:100].rstrip(b"\0")
        fixed = re.sub(rb"GNUSparseFile\.[0-9]+/", b"GNUSparseFile.0/", name)
        if fixed != name:
            h[:100] = fixed.ljust(100, b"\0")
            h[148:156] = b" " * 8
            h[148:156] = b"%06o\0 " % sum(h)
            out[pos:pos + 512] = h
        pos += 512 + (size + 511) // 512 * 512
    return bytes(out)


def gnu_tar(root, names, *opts):
    return subprocess.run(["tar", *opts, "--sort=name", "--numeric-owner", "--owner=0", "--group=0",
                           "--mtime=@%d" % EPOCH, "-C", root, "-cf", "-", *names],
                          stdout=subprocess.PIPE, check=True).stdout


def sparse_layers():
    """The layers of the sparse image, by GNU tar: old GNU sparse entries
    (type S) in layer 1, PAX sparse formats 1.0, 0.1 and 0.0 in layers 2-4."""
    pax = ["--format=posix", "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime"]
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "root")
        os.makedirs(os.path.join(root, "data"))
        with open(os.path.join(root, "data", "hello"), "wb") as f:
            f.write(b"hello\n")
        with open(os.path.join(root, "data", "holes.img"), "wb") as f:
            f.truncate(8 << 20)
            f.seek(1 << 20)
            f.write(b"data between holes\n" * 100)
        for name in SPARSE:
            make_sparse(root, name)
        gnu = gnu_tar(root, ["data"], "--format=gnu", "--sparse")
        v10, v01, v00 = (gnu_tar(root, ["pax", "pax/v%s.img" % v.replace(".", "")], *pax, "--no-recursion",
                                 "--sparse-version=" + v) for v in ["1.0", "0.1", "0.0"])
    layers = [gnu, fixed_sparse_names(v10), fixed_sparse_names(v01), v00]
    for tar, want in zip(layers, [("data/holes.img", "data/big.img", "data/many.img"), ("pax/v10.img",),
                                  ("pax/v01.img",), ("pax/v00.img",)]):
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            sparse = {m.name for m in t if m.sparse}
        assert sparse == set(want), "GNU tar wrote no sparse entries for %s, only %s (does this filesystem keep holes?)" \
            % (want, sorted(sparse))
    return layers


def hostile_layer():
    """A layer whose PAX 0.1 sparse file has a map with overlapping segments."""
    L = Layer()
    L.dir("data")
    L.file("data/fine", b"a plain file\n")
    ti = L._info("data/GNUSparseFile.0/overlap.img", 0o644, 0, 0, None)
    data = rng.randbytes(8192)
    ti.size = len(data)
    ti.pax_headers = {"GNU.sparse.size": str(1 << 20), "GNU.sparse.numblocks": "2",
                      "GNU.sparse.name": "data/overlap.img", "GNU.sparse.map": "0,4096,2048,4096"}
    L.tar.addfile(ti, io.BytesIO(data))
    return L.bytes()


def write_sparse_manifest(path):
    """What the sparse files hold, for tests/mount.sh to check the mount
    against: per file its size and per island its offset, length and sha256."""
    with open(path, "w") as f:
        json.dump({name: {"size": size, "islands": [[off, n, hashlib.sha256(island(name, off, n)).hexdigest()]
                                                    for off, n in islands]}
                   for name, (size, islands) in SPARSE.items()}, f, indent=1, sort_keys=True)


def main():
    what, layout = sys.argv[1], sys.argv[2]
    if what == "full":
        tars = [layer1(), layer2(), layer3(), layer4()]
        write_layout(layout, list(zip(tars, ["gzip", "gzip", "none", "zstd"])))
        if len(sys.argv) > 3:
            write_layout(sys.argv[3], list(zip(tars, ["gzip", "gzip", "none", "gzip"])))
    elif what == "sparse":
        tars = sparse_layers()
        write_layout(layout, list(zip(tars, ["gzip", "zstd", "gzip", "none"])))
        write_sparse_manifest(os.path.join(layout, "sparse.json"))
        if len(sys.argv) > 3:
            write_layout(sys.argv[3], list(zip(tars[1:], ["gzip", "gzip", "none"])))
    elif what == "hostile":
        write_layout(layout, [(hostile_layer(), "gzip")])
    else:
        sys.exit("usage: mount_image.py full|sparse|hostile LAYOUT [SECOND]")


main()
