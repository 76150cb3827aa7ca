#!/usr/bin/env python3
"""Builds the deterministic images of the pull benchmarks as OCI layouts.

    scripts/bench-images.py NAME OUTDIR      NAME: small, medium or large

Every byte comes from random.Random with fixed seeds, every tar entry has
fixed owner and mtime and the entries are sorted, and the layers are gzipped
by zlib with a fixed header, so the same NAME gives the same manifest digest
on every run. Layers are made two at a time (one process each).

  small    1 layer,   ~5 MB compressed: a few /etc files, text and random data
  medium   5 layers, ~250 MB compressed: text, random, 20,000 small files,
           text with a symlink and a hardlink, random and text with whiteouts
  large   10 layers, ~1.2 GB compressed: the same kinds of layer, larger, with
           30,000 small files in all; its largest layer (7th) is one 512 MiB
           file of text interleaved with short random runs (about 2:1 under
           gzip), for the mount benchmark's range and sequential reads
"""
import hashlib
import io
import json
import multiprocessing
import os
import random
import shutil
import sys
import tarfile
import zlib

MB = 1024 * 1024
MTIME = 946684800  # 2000-01-01
CREATED = "2000-01-01T00:00:00Z"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"

WORDS = ["fn", "let", "mut", "pub", "struct", "impl", "match", "if", "else", "return", "for", "while",
         "use", "mod", "const", "enum", "trait", "where", "self", "async", "await", "loop", "in", "as",
         "u8", "u32", "u64", "usize", "String", "Vec<u8>", "Option<T>", "Result<(), Error>", "&str",
         "bool", "{", "}", "(", ")", "=", "==", "->", "=>", ";", "//", "0", "1", "42", "None", "Some(x)"]
SYL = ["ba", "ce", "di", "fo", "gu", "ha", "je", "ki", "lo", "mu", "na", "pe", "qui", "ro", "su",
       "ta", "ve", "wi", "xo", "yu", "ze", "ar", "en", "il", "or", "um", "st", "tr", "ch"]

# Each layer is a list of operations:
#   ("etc",)                                  a few small /etc files
#   ("text"|"rand"|"mixed", dir, total bytes, files)
#                                             files of source-like text, random bytes, or
#                                             text interleaved with short random runs
#   ("small", dir, count)                     count files of 64 B - 4 KiB (80 % text) in nested dirs
#   ("symlink", target, path), ("hardlink", existing path, path), ("whiteout", path)
SPECS = {
    "small": [
        [("etc",), ("text", "usr/share/doc", 6 * MB, 24), ("rand", "usr/lib/data", 3 * MB, 6)],
    ],
    "medium": [
        [("etc",), ("text", "usr/src/base", 40 * MB, 40)],
        [("rand", "data/blob", 100 * MB, 10)],
        [("small", "srv/tree", 20000)],
        [("text", "usr/src/app", 60 * MB, 120), ("symlink", "f000.rs", "usr/src/app/current.rs"),
         ("hardlink", "usr/src/app/f001.rs", "usr/src/app/f001-hardlink.rs")],
        [("rand", "opt/data", 74 * MB, 8), ("text", "opt/text", 30 * MB, 30),
         ("whiteout", "data/blob/f000.bin"), ("whiteout", "srv/tree/d00/e00/f00000.rs")],
    ],
    "large": [
        [("etc",), ("text", "usr/src/base", 60 * MB, 60)],
        [("rand", "data/blob", 250 * MB, 25)],
        [("small", "srv/tree", 20000)],
        [("text", "usr/src/app", 150 * MB, 150)],
        [("rand", "data/mid", 250 * MB, 3)],
        [("text", "usr/share/doc", 80 * MB, 40), ("small", "srv/tree2", 10000)],
        [("mixed", "data/huge", 512 * MB, 1)],
        [("text", "usr/lib/gen", 150 * MB, 75)],
        [("rand", "opt/mix/rand", 120 * MB, 6), ("text", "opt/mix/text", 50 * MB, 50)],
        [("rand", "opt/last/rand", 70 * MB, 5), ("text", "opt/last/text", 30 * MB, 30),
         ("symlink", "f000.txt", "opt/last/text/current.txt"),
         ("hardlink", "opt/last/text/f001.txt", "opt/last/text/f001-hardlink.txt"),
         ("whiteout", "data/blob/f000.bin"), ("whiteout", "srv/tree/d00/e00/f00000.rs"),
         ("whiteout", "usr/src/app/f000.rs")],
    ],
}


def line_pool(n=65536):
    rng = random.Random("bench-pool")
    idents = ["_".join("".join(rng.choice(SYL) for _ in range(rng.randint(1, 3)))
                       for _ in range(rng.randint(1, 3))) for _ in range(4000)]
    pool = []
    for _ in range(n):
        indent = "    " * rng.randint(0, 3)
        toks = [rng.choice(WORDS) if rng.random() < 0.5 else rng.choice(idents) for _ in range(rng.randint(1, 9))]
        pool.append((indent + " ".join(toks) + "\n").encode())
    return pool


POOL = line_pool()


def text(rng, size):
    out, have = [], 0
    while have < size:
        lines = rng.choices(POOL, k=max(64, (size - have) // 30))
        chunk = b"".join(lines)
        out.append(chunk)
        have += len(chunk)
    return b"".join(out)[:size]


def entries(layer, seed):
    """(path, kind, payload) of one layer; kind: dir, file, symlink, hardlink."""
    rng = random.Random(seed)
    ents = {}

    def add_dirs(path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            ents.setdefault("/".join(parts[:i]), ("dir", None))

    def add(path, kind, payload):
        add_dirs(path)
        ents[path] = (kind, payload)

    for op in layer:
        if op[0] == "etc":
            add("etc/os-release", "file", b'NAME="bench"\nID=bench\nVERSION_ID=1\n')
            add("etc/passwd", "file", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
            add("etc/group", "file", b"root:x:0:\nnogroup:x:65534:\n")
            add("etc/hostname", "file", b"bench\n")
            ents.setdefault("tmp", ("dir", None))
        elif op[0] in ("text", "rand", "mixed"):
            kind, d, total, n = op
            ext = "rs" if d.startswith("usr/src") or d.startswith("usr/lib") else ("txt" if kind == "text" else "bin")
            for i in range(n):
                size = total // n
                # Payload made later, one file at a time, from its own seed.
                add(f"{d}/f{i:03}.{ext}", "file", (kind, f"{seed}/{d}/{i}", size))
        elif op[0] == "small":
            _, d, count = op
            for i in range(count):
                a, b = (i // 1000) % 20, (i // 50) % 20
                size = rng.randint(64, 4096)
                kind = "text" if rng.random() < 0.8 else "rand"
                add(f"{d}/d{a:02}/e{b:02}/f{i:05}.rs", "file", (kind, f"{seed}/{d}/{i}", size))
        elif op[0] == "symlink":
            add(op[2], "symlink", op[1])
        elif op[0] == "hardlink":
            add(op[2], "hardlink", op[1])
        elif op[0] == "whiteout":
            d, base = os.path.split(op[1])
            add(f"{d}/.wh.{base}", "file", b"")
    # Sorted, but hardlinks last: their targets must come before them.
    return sorted(ents.items(), key=lambda e: (e[1][0] == "hardlink", e[0]))


def mixed(rng, size):
    """Text with a random run of 256 B - 2 KiB after every ~4 KiB: gzip
    makes Huffman blocks of literals and matches (no stored blocks), about
    2:1, so reading it back costs real inflate work."""
    out, have = [], 0
    while have < size:
        t = text(rng, rng.randint(2048, 6144))
        r = rng.randbytes(rng.randint(256, 2048))
        out += [t, r]
        have += len(t) + len(r)
    return b"".join(out)[:size]


def payload(p):
    if isinstance(p, bytes):
        return p
    kind, seed, size = p
    rng = random.Random(seed)
    return {"rand": rng.randbytes, "text": lambda n: text(rng, n), "mixed": lambda n: mixed(rng, n)}[kind](size)


class Sink:
    """Takes the uncompressed tar; hashes it (diff ID) and writes it gzipped
    to `f`, hashing the compressed bytes (the blob digest)."""

    def __init__(self, f):
        self.f, self.diff, self.blob, self.size = f, hashlib.sha256(), hashlib.sha256(), 0
        self.z = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip header with mtime 0

    def _out(self, b):
        if b:
            self.f.write(b)
            self.blob.update(b)
            self.size += len(b)

    def write(self, b):
        self.diff.update(b)
        self._out(self.z.compress(b))
        return len(b)

    def close(self):
        self._out(self.z.flush())


def make_layer(args):
    name, index, out = args
    tmp = os.path.join(out, "blobs", "sha256", f".layer{index}.tmp")
    with open(tmp, "wb") as f:
        sink = Sink(f)
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.GNU_FORMAT) as t:
            for path, (kind, p) in entries(SPECS[name][index], f"{name}-{index}"):
                ti = tarfile.TarInfo(path)
                ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = MTIME, 0, 0, "root", "root"
                if kind == "dir":
                    ti.type, ti.mode = tarfile.DIRTYPE, 0o1777 if path == "tmp" else 0o755
                    t.addfile(ti)
                elif kind == "symlink":
                    ti.type, ti.mode, ti.linkname = tarfile.SYMTYPE, 0o777, p
                    t.addfile(ti)
                elif kind == "hardlink":
                    ti.type, ti.mode, ti.linkname = tarfile.LNKTYPE, 0o644, p
                    t.addfile(ti)
                else:
                    data = payload(p)
                    ti.size, ti.mode = len(data), 0o644
                    t.addfile(ti, io.BytesIO(data))
        sink.close()
    digest = sink.blob.hexdigest()
    os.rename(tmp, os.path.join(out, "blobs", "sha256", digest))
    print(f"bench-images: {name} layer {index + 1}: {sink.size / 1e6:.1f} MB compressed", file=sys.stderr, flush=True)
    return {"digest": "sha256:" + digest, "size": sink.size, "diff_id": "sha256:" + sink.diff.hexdigest()}


def put_blob(out, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def main():
    name, out = sys.argv[1], sys.argv[2]
    if name not in SPECS:
        sys.exit(f"usage: {sys.argv[0]} small|medium|large OUTDIR")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, "blobs", "sha256"))
    jobs = [(name, i, out) for i in range(len(SPECS[name]))]
    with multiprocessing.Pool(min(2, len(jobs))) as pool:
        layers = pool.map(make_layer, jobs, chunksize=1)
    config = {
        "created": CREATED,
        "author": "img bench",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [l["diff_id"] for l in layers]},
        "history": [{"created": CREATED, "created_by": f"bench-images {name} layer {i + 1}"}
                    for i in range(len(layers))],
    }
    cfg = put_blob(out, json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
        "layers": [{"mediaType": LAYER_TYPE, "digest": l["digest"], "size": l["size"]} for l in layers],
    }
    man = put_blob(out, json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": manifest["mediaType"], **man,
                       "annotations": {"org.opencontainers.image.ref.name": "latest"}}],
    }
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f, sort_keys=True, separators=(",", ":"))
    with open(os.path.join(out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    total = sum(l["size"] for l in layers)
    print(f"bench-images: {name}: {len(layers)} layers, {total / 1e6:.1f} MB compressed, manifest {man['digest']}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
