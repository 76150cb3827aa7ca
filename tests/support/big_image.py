"""Writes an OCI image layout whose images hold one big file, /big, for the
copy-up checks of tests/mount.sh and the copy-up figure of scripts/bench.sh.

  python3 big_image.py LAYOUT SIZE_MIB [random|text|zero]... [gzip|zstd]...

One image per content and compression, tagged CONTENT-COMPRESSION (e.g.
random-gzip): a single layer with /big (SIZE_MIB MiB, mode 0644, owned by
root) and nothing else. "random" is seeded pseudo-random bytes (the same
on every run, incompressible), "text" source-like lines with short random
runs (about 2:1 under gzip), "zero" is zeros. LAYOUT/big.json maps each
content to the sha256 of /big, and CONTENT+x to that of /big with one "x"
appended (what a copy-up check expects). The tar goes through the gzip and zstd
command-line tools (fast level), so a 512 MiB image takes seconds.
"""
import hashlib, json, os, random, subprocess, sys, tarfile, tempfile

EPOCH = 1700000000
MIB = 1 << 20


WORDS = ("the of and to in is for on with as by at from this that fn let mut pub struct impl return "
         "if else match while loop self Some None Ok Err usize u64 String Vec Result").split()


def text_block(rng, pool):
    """1 MiB of source-like text lines with a random run of 256 B - 2 KiB
    after every ~4 KiB: about 2:1 under gzip, like real layers."""
    out, n = [], 0
    while n < MIB:
        lines = "".join(rng.choices(pool, k=64)).encode()
        run = rng.randbytes(rng.randint(256, 2048))
        out += [lines, run]
        n += len(lines) + len(run)
    return b"".join(out)[:MIB]


def content(kind, size_mib):
    if kind == "text":
        rng = random.Random(20261208)
        pool = ["    " * rng.randint(0, 3) + " ".join(rng.choices(WORDS, k=rng.randint(2, 10))) + "\n" for _ in range(4096)]
        for _ in range(size_mib):
            yield text_block(rng, pool)
    elif kind == "zero":
        block = bytes(MIB)
        for _ in range(size_mib):
            yield block
    else:
        rng = random.Random(20261207)
        for _ in range(size_mib):
            yield rng.randbytes(MIB)


class Chunks:
    """A file-like object over a generator of byte blocks, hashing them."""

    def __init__(self, gen):
        self.gen, self.buf, self.hash = gen, b"", hashlib.sha256()

    def read(self, n=-1):
        while n < 0 or len(self.buf) < n:
            b = next(self.gen, None)
            if b is None:
                break
            self.hash.update(b)
            self.buf += b
        if n < 0:
            n = len(self.buf)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def write_blob(layout, path_or_bytes):
    h = hashlib.sha256()
    if isinstance(path_or_bytes, bytes):
        data = path_or_bytes
        h.update(data)
        size = len(data)
    else:
        size = os.path.getsize(path_or_bytes)
        with open(path_or_bytes, "rb") as f:
            while b := f.read(4 * MIB):
                h.update(b)
    digest = h.hexdigest()
    dest = os.path.join(layout, "blobs", "sha256", digest)
    if isinstance(path_or_bytes, bytes):
        with open(dest, "wb") as f:
            f.write(data)
    else:
        os.replace(path_or_bytes, dest)
    return "sha256:" + digest, size


def file_sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(4 * MIB):
            h.update(b)
    return h.hexdigest()


def main():
    layout, size_mib = sys.argv[1], int(sys.argv[2])
    kinds = [a for a in sys.argv[3:] if a in ("random", "zero", "text")] or ["random"]
    comps = [a for a in sys.argv[3:] if a in ("gzip", "zstd")] or ["gzip"]
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    manifests, sums = [], {}
    for kind in kinds:
        tmp = tempfile.mkdtemp(dir=layout)
        tar_path = os.path.join(tmp, "layer.tar")
        with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as t:
            ti = tarfile.TarInfo("big")
            ti.size, ti.mode, ti.mtime = size_mib * MIB, 0o644, EPOCH
            ti.uname = ti.gname = ""
            src = Chunks(content(kind, size_mib))
            t.addfile(ti, src)
        sums[kind] = src.hash.hexdigest()
        appended = src.hash.copy()
        appended.update(b"x")
        sums[kind + "+x"] = appended.hexdigest()
        diff_id = "sha256:" + file_sha(tar_path)
        for comp in comps:
            out = os.path.join(tmp, "layer." + comp)
            cmd = ["gzip", "-1", "-n", "-c"] if comp == "gzip" else ["zstd", "-1", "-q", "-c"]
            with open(tar_path, "rb") as i, open(out, "wb") as o:
                subprocess.run(cmd, stdin=i, stdout=o, check=True)
            ldigest, lsize = write_blob(layout, out)
            config = {
                "architecture": "amd64",
                "os": "linux",
                "created": "2023-11-14T22:13:20Z",
                "config": {"Cmd": ["/big"]},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                "history": [{"created": "2023-11-14T22:13:20Z", "created_by": f"big_image.py {kind} {comp} {size_mib} MiB"}],
            }
            cdigest, csize = write_blob(layout, json.dumps(config, sort_keys=True).encode())
            media = "application/vnd.oci.image.layer.v1.tar+" + comp
            manifest = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": csize},
                "layers": [{"mediaType": media, "digest": ldigest, "size": lsize}],
            }
            mdigest, msize = write_blob(layout, json.dumps(manifest, sort_keys=True).encode())
            manifests.append({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": mdigest,
                "size": msize,
                "annotations": {"org.opencontainers.image.ref.name": f"{kind}-{comp}"},
            })
        os.remove(tar_path)
        os.rmdir(tmp)
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": manifests}, f)
    with open(os.path.join(layout, "big.json"), "w") as f:
        json.dump(sums, f)


if __name__ == "__main__":
    main()
