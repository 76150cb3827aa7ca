#!/usr/bin/env bash
# Generates the test images in testdata/gen/ from busybox-static and seeded
# data; nothing is downloaded, and every output is the same on every run.
#
#   base-rootfs.tar      a root filesystem tarball (GNU tar format)
#   base-docker.tar      it, after `podman import`, as `podman save` docker-archive
#   base-oci.tar         the same image as `podman save` oci-archive
#   layered.oci/         2-layer OCI layout built with umoci (tag "1"); layer 2
#                        deletes a file and a directory (whiteouts), replaces a
#                        directory (opaque), changes files (one to a directory,
#                        a directory to a symlink), deletes or replaces the
#                        targets of hard links, links to a file of layer 1 and
#                        adds files
#   layered-docker.tar   layered.oci as a docker-archive (skopeo)
#   layered-oci.tar      layered.oci as an oci-archive (skopeo)
#
# Usage: scripts/make-testdata.sh [--force]
# It does nothing when the outputs exist and were made by this very script
# (and busybox); --force rebuilds.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=testdata/gen
BUSYBOX=/bin/busybox
EPOCH=1700000000                       # every mtime and "created" time
CREATED=$(date -u -d @$EPOCH +%Y-%m-%dT%H:%M:%SZ)

for t in python3 podman skopeo umoci "$BUSYBOX"; do
  command -v "$t" >/dev/null || { echo "make-testdata: $t is missing (apt-get install podman skopeo umoci busybox-static python3)" >&2; exit 1; }
done

stamp=$(cat "$0" "$BUSYBOX" | sha256sum | cut -c1-64)
outputs=(base-rootfs.tar base-docker.tar base-oci.tar layered.oci/index.json layered-docker.tar layered-oci.tar)
if [[ ${1:-} != --force && "$(cat $OUT/.stamp 2>/dev/null)" == "$stamp" ]] &&
   (cd $OUT && ls "${outputs[@]}" >/dev/null 2>&1); then
  echo "make-testdata: $OUT is up to date"
  exit 0
fi

rm -rf "$OUT"
mkdir -p "$OUT"

# Both layer tarballs, written by Python's tarfile with fixed owners, times
# and order. Layer 1 is the root filesystem, layer 2 its change set.
python3 - "$OUT" "$BUSYBOX" "$EPOCH" <<'PY'
import io, random, sys, tarfile
out, busybox, epoch = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(20240501)

def write(path, fmt, mtime, entries):
    with tarfile.open(path, "w", format=fmt) as t:
        for e in entries:
            kind, name, mode = e[0], e[1], e[2]
            extra = e[3] if len(e) > 3 else None
            ti = tarfile.TarInfo(name)
            ti.mode, ti.mtime, ti.uid, ti.gid = mode, mtime, 0, 0
            ti.uname = ti.gname = "root"
            if name.startswith("home/user"):
                ti.uid = ti.gid = 1000
                ti.uname = ti.gname = "user"
            data = None
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "file":
                data = extra
                ti.size = len(data)
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, extra
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, extra
            t.addfile(ti, io.BytesIO(data) if data is not None else None)

def seeded(n):
    return rng.randbytes(n)

bb = open(busybox, "rb").read()
passwd = b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
group = b"root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n"
text = b"".join(b"line %05d of a compressible text file\n" % i for i in range(3000))
long_name = "long/" + ("n" * 196) + ".txt"          # 200-character file name
assert len(long_name.split("/")[1]) == 200

base = [("dir", "bin", 0o755), ("file", "bin/busybox", 0o755, bb)]
base += [("sym", "bin/" + a, 0o777, "busybox") for a in ("cat", "echo", "ls", "sh", "sleep", "true")]
base += [
    ("dir", "data", 0o755),
    ("file", "data/empty.bin", 0o644, b""),
    ("file", "data/one.bin", 0o644, seeded(1)),
    ("file", "data/block-511.bin", 0o644, seeded(511)),
    ("file", "data/block-512.bin", 0o644, seeded(512)),
    ("file", "data/block-513.bin", 0o644, seeded(513)),
    ("file", "data/page.bin", 0o644, seeded(4096)),
    ("file", "data/medium.bin", 0o644, seeded(65537)),
    ("file", "data/big.bin", 0o644, seeded(1536 * 1024 + 3)),   # > 1 MiB
    ("file", "data/text.txt", 0o644, text),
    ("file", "data/hard-a", 0o644, seeded(3000)),
    ("hard", "data/hard-b", 0o644, "data/hard-a"),
    ("file", "data/pair-1", 0o644, seeded(700)),
    ("hard", "data/pair-2", 0o644, "data/pair-1"),
    ("file", "data/pair-3", 0o644, seeded(800)),
    ("hard", "data/pair-4", 0o644, "data/pair-3"),
    ("sym", "data/link-big", 0o777, "big.bin"),
    ("sym", "data/link-passwd", 0o777, "/etc/passwd"),
    ("dir", "empty", 0o755),
    ("dir", "etc", 0o755),
    ("file", "etc/group", 0o644, group),
    ("file", "etc/hostname", 0o644, b"base\n"),
    ("file", "etc/motd", 0o644, b"deleted by layer 2\n"),
    ("file", "etc/passwd", 0o644, passwd),
    ("file", "etc/to-dir", 0o644, b"a file in layer 1, a directory in layer 2\n"),
    ("dir", "home", 0o755),
    ("dir", "home/user", 0o750),
    ("file", "home/user/notes.txt", 0o640, b"owned by uid 1000\n"),
    ("dir", "long", 0o755),
    ("file", long_name, 0o644, seeded(100)),
    ("dir", "opt", 0o755),
    ("dir", "opt/app", 0o755),
    ("file", "opt/app/config.txt", 0o644, b"version=1\n"),
    ("dir", "opt/app/lib", 0o755),
    ("file", "opt/app/lib/one.bin", 0o644, seeded(2048)),
    ("file", "opt/app/lib/two.bin", 0o644, seeded(2049)),
    ("dir", "root", 0o700),
    ("file", "root/secret", 0o600, b"top secret\n"),
    ("dir", "tmp", 0o1777),
    ("dir", "usr", 0o755),
    ("dir", "usr/bin", 0o755),
    ("file", "usr/bin/setuid-tool", 0o4755, b"#!/bin/sh\necho setuid\n"),
    ("dir", "var", 0o755),
    ("dir", "var/cache", 0o755),
    ("dir", "var/cache/junk", 0o755),
    ("file", "var/cache/junk/a", 0o644, seeded(10)),
    ("file", "var/cache/junk/b", 0o644, seeded(20)),
    ("file", "var/keep", 0o644, b"kept\n"),
    ("dir", "var/lib", 0o755),
    ("file", "var/lib/state", 0o644, b"a directory in layer 1, a symlink in layer 2\n"),
]
write(out + "/base-rootfs.tar", tarfile.GNU_FORMAT, epoch, base)

layer2 = [
    ("dir", "etc", 0o755),
    ("file", "etc/.wh.motd", 0o644, b""),                     # delete a file
    ("file", "etc/hostname", 0o644, b"layered\n"),            # change a file
    ("dir", "etc/to-dir", 0o755),                             # a file becomes a directory
    ("file", "etc/to-dir/inside.txt", 0o644, b"inside\n"),
    ("dir", "opt", 0o755),
    ("dir", "opt/app", 0o755),
    ("file", "opt/app/.wh..wh..opq", 0o644, b""),             # replace a directory
    ("file", "opt/app/config.txt", 0o600, b"version=2\n"),
    ("dir", "opt/app/bin", 0o755),
    ("sym", "opt/app/bin/run", 0o777, "/bin/busybox"),
    ("dir", "var", 0o755),
    ("dir", "var/cache", 0o755),
    ("file", "var/cache/.wh.junk", 0o644, b""),               # delete a directory
    ("sym", "var/lib", 0o777, "../opt"),                      # a directory becomes a symlink
    ("dir", "data", 0o755),
    ("file", "data/.wh.pair-1", 0o644, b""),                  # delete a hard link's target
    ("file", "data/pair-3", 0o644, b"replaced\n"),            # replace a hard link's target
    ("hard", "data/hard-c", 0o644, "data/hard-a"),            # link to a file of layer 1
    ("file", "data/added.bin", 0o644, seeded(200000)),        # add files
    ("dir", "srv", 0o755),
    ("file", "srv/new.txt", 0o644, b"new in layer 2\n"),
]
write(out + "/layer2.tar", tarfile.PAX_FORMAT, epoch + 86400, layer2)
PY
touch -d @$EPOCH "$OUT/base-rootfs.tar"      # podman import takes "created" from it

# The layered image: umoci, with fixed times for the config and history.
L=$OUT/layered.oci
umoci init --layout "$L"
umoci new --image "$L:1"
umoci config --image "$L:1" --no-history --created "$CREATED" --author "img testdata" \
  --config.cmd /bin/sh --config.env PATH=/usr/bin:/bin --config.workingdir / \
  --config.label org.example.test=layered --os linux --architecture amd64
umoci raw add-layer --image "$L:1" --history.created "$CREATED" \
  --history.created_by "base-rootfs.tar" "$OUT/base-rootfs.tar"
umoci raw add-layer --image "$L:1" --history.created "$CREATED" \
  --history.created_by "layer2.tar" "$OUT/layer2.tar"
umoci gc --layout "$L"
rm "$OUT/layer2.tar"
skopeo copy -q "oci:$L:1" "docker-archive:$OUT/layered-docker.tar:localhost/layered:1"
skopeo copy -q "oci:$L:1" "oci-archive:$OUT/layered-oci.tar:localhost/layered:1"

# The base image: podman import + podman save, in a private vfs store.
PG=$OUT/podman
podman() {
  command podman --root "$PG/root" --runroot "$PG/run" --tmpdir "$PG/tmp" \
    --storage-driver vfs --events-backend file --cgroup-manager cgroupfs "$@"
}
podman import -q --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/usr/bin:/bin' \
  --message "base for img tests" "$OUT/base-rootfs.tar" localhost/base:1 >/dev/null
podman save -q -o "$OUT/base-docker.tar" localhost/base:1
podman save -q --format oci-archive -o "$OUT/base-oci.tar" localhost/base:1
rm -rf "$PG"

# podman and skopeo stamp the entries of an oci-archive with the time of the
# run; set them to EPOCH so that the files too are the same on every run.
python3 - "$EPOCH" "$OUT/base-oci.tar" "$OUT/layered-oci.tar" <<'PY'
import os, sys, tarfile
epoch = int(sys.argv[1])
for path in sys.argv[2:]:
    with tarfile.open(path) as src, tarfile.open(path + ".tmp", "w", format=tarfile.PAX_FORMAT) as dst:
        for m in src:
            m.mtime = epoch
            m.pax_headers = {k: v for k, v in m.pax_headers.items() if k not in ("atime", "ctime", "mtime")}
            dst.addfile(m, src.extractfile(m) if m.isreg() else None)
    os.replace(path + ".tmp", path)
PY

echo "$stamp" > "$OUT/.stamp"
(cd "$OUT" && find . -type f ! -name .stamp | sort | xargs sha256sum)
