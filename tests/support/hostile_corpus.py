"""Writes the large hostile inputs of tests/hostile.sh into DIR, each as a
rootfs tarball (for img import) and as a one-layer OCI layout (for img load):

  bomb          a gzip layer of a few MB holding one file of SIZE_MB of zeros
  many          1,000,000 entries (files of a few bytes in 1,000 directories)
  deep          a chain of 10,000 nested directories with a file at the bottom
  longnames     names of 4,096 bytes (16 components of 255 bytes) via PAX
  bigenv        an OCI layout whose config has a 100 MB environment variable
  zeros         a gzip stream of zeros that is not a tar at all

  hostile_corpus.py DIR [SIZE_MB]
Deterministic: fixed times, owners and order. Plain Python 3, no packages.
"""
import gzip, hashlib, io, json, os, sys, tarfile, zlib

EPOCH = 1700000000


def info(name, size=0, kind=tarfile.REGTYPE, mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.size, ti.type, ti.mode, ti.mtime, ti.uid, ti.gid = size, kind, mode, EPOCH, 0, 0
    return ti


class Zeros(io.RawIOBase):
    def __init__(self, n):
        self.left = n

    def readinto(self, b):
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def gz_tar(path, fill):
    """Writes a gzip-compressed tar made by fill(tarfile) to path (level 1: fast)."""
    with open(path, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
            with tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as t:
                fill(t)


def layout(dir, layer_path, config_extra=None):
    """A one-layer OCI layout around the gzip tar at layer_path."""
    os.makedirs(dir + "/blobs/sha256", exist_ok=True)
    data = open(layer_path, "rb").read()
    ldig = hashlib.sha256(data).hexdigest()
    diff = hashlib.sha256(gzip.decompress(data)).hexdigest() if len(data) < (64 << 20) else None
    if diff is None:
        h = hashlib.sha256()
        d = zlib.decompressobj(31)
        with open(layer_path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(d.decompress(chunk))
        h.update(d.flush())
        diff = h.hexdigest()
    open(dir + "/blobs/sha256/" + ldig, "wb").write(data)
    cfg = {"architecture": "amd64", "os": "linux", "created": "2023-11-14T22:13:20Z",
           "config": config_extra or {}, "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff]}}
    cb = json.dumps(cfg).encode()
    cdig = hashlib.sha256(cb).hexdigest()
    open(dir + "/blobs/sha256/" + cdig, "wb").write(cb)
    m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + cdig, "size": len(cb)},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + ldig,
                     "size": len(data)}]}
    mb = json.dumps(m).encode()
    mdig = hashlib.sha256(mb).hexdigest()
    open(dir + "/blobs/sha256/" + mdig, "wb").write(mb)
    ix = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                             "digest": "sha256:" + mdig, "size": len(mb),
                                             "annotations": {"org.opencontainers.image.ref.name": "1"}}]}
    open(dir + "/index.json", "w").write(json.dumps(ix))
    open(dir + "/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')


def main():
    # An option is not a directory (--help once wrote the corpus into ./--help).
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help") else 2)
    out = sys.argv[1]
    size_mb = int(sys.argv[2]) if len(sys.argv) > 2 else 2048
    os.makedirs(out, exist_ok=True)

    def bomb(t):
        t.addfile(info("zeros.bin", size_mb << 20), Zeros(size_mb << 20))
    gz_tar(out + "/bomb.tar.gz", bomb)

    def many(t):
        for d in range(1000):
            t.addfile(info("d%03d" % d, kind=tarfile.DIRTYPE, mode=0o755))
        for i in range(1000000):
            body = b"%d\n" % i
            t.addfile(info("d%03d/f%07d" % (i % 1000, i), len(body)), io.BytesIO(body))
    gz_tar(out + "/many.tar.gz", many)

    def deep(t):
        path = ""
        for _ in range(10000):
            path += "d/"
            t.addfile(info(path, kind=tarfile.DIRTYPE, mode=0o755))
        t.addfile(info(path + "bottom", 7), io.BytesIO(b"bottom\n"))
    gz_tar(out + "/deep.tar.gz", deep)

    def longnames(t):
        comps = [("%02d" % i) * 127 + "x" for i in range(16)]   # 255 bytes each
        path = ""
        for c in comps[:-1]:
            path += c + "/"
            t.addfile(info(path, kind=tarfile.DIRTYPE, mode=0o755))
        t.addfile(info(path + comps[-1], 5), io.BytesIO(b"long\n"))
    gz_tar(out + "/longnames.tar.gz", longnames)

    def small(t):
        t.addfile(info("etc/", kind=tarfile.DIRTYPE, mode=0o755))
        t.addfile(info("etc/hostname", 5), io.BytesIO(b"host\n"))
    gz_tar(out + "/small.tar.gz", small)

    with open(out + "/zeros.gz", "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
            z = bytes(1 << 20)
            for _ in range(size_mb):
                gz.write(z)

    for name in ["bomb", "many", "deep", "longnames"]:
        layout(out + "/" + name + ".oci", out + "/" + name + ".tar.gz")
    layout(out + "/bigenv.oci", out + "/small.tar.gz", {"Env": ["BIG=" + "x" * (100 << 20)]})


main()
