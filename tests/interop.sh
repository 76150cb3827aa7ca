#!/usr/bin/env bash
# Interop tests: img against real peers (podman, skopeo, umoci) on the images
# that scripts/make-testdata.sh makes in testdata/gen/.
#
# Usage: IMG=target/release/img tests/interop.sh [CHECK-NAME-SUBSTRING...]
# Every check runs with a fresh IMG_ROOT and fresh private podman stores
# under one temp dir, prints "ok - NAME" or "not ok - NAME" and the reason,
# and the suite exits non-zero if any check failed. A missing tool fails.
# IMG_TEST_LONG=1 adds the long checks (a large image).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
IMG=$(realpath "${IMG:-target/release/img}")
GEN=$REPO/testdata/gen
WORK=$(mktemp -d "${TMPDIR:-/tmp}/img-interop.XXXXXX")
RUNS=$(mktemp -d /tmp/img-run.XXXXXX)   # podman wants a runroot under 50 characters
export IMG_ROOT=/nonexistent   # each check sets its own

source tests/lib.sh
suite_cleanup() {
  # vfs stores need no mounts, but unmount anything left under WORK anyway.
  grep -o " $WORK[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$RUNS"
}

# ---------------------------------------------------------------- helpers


img() { "$IMG" "$@"; }

# A private podman store: pm DIR ARGS...
pm() {
  local s=$1; shift
  local run; run=$RUNS/$(echo "$s" | cksum | cut -d' ' -f1)
  podman --root "$s/root" --runroot "$run" --tmpdir "$s/tmp" --storage-driver vfs \
    --events-backend file --cgroup-manager cgroupfs "$@"
}

# The rootfs directory of an image in a private podman store.
pm_rootfs() { pm "$1" image mount "$2"; }

pm_id() { pm "$1" image inspect --format '{{.Id}}' "$2"; }

# The image ID from img's inspect JSON (not through a template).
img_id() { img inspect "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Id"])'; }

same() { # same WHAT A B
  [[ "$2" == "$3" ]] || fail "$1 differs: '$2' != '$3'"
}

# trees [--owners] [--only=PATH]... A B: compare two file trees (directories
# or tar files): types, modes, sizes, sha256, link targets, hard links, mtimes
trees() { python3 "$WORK/tree.py" cmp --mtimes "$@" || fail "file trees differ: ${*: -2}"; }

# listing X: one line per entry of a tree: PATH TYPE MODE SIZE SHA256/TARGET
listing() { python3 "$WORK/tree.py" list "$1"; }

cat > "$WORK/tree.py" <<'PY'
"""Walk a directory or a tar file and compare or list its entries:
path, type, permission bits, owner, size and sha256 of regular files,
symlink targets, and which regular files are hard links of each other."""
import hashlib, os, stat, sys, tarfile

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
            if stat.S_ISDIR(st.st_mode):
                e["type"] = "dir"
            elif stat.S_ISLNK(st.st_mode):
                e["type"], e["target"] = "symlink", os.readlink(full)
                e["mode"] = 0o777
            elif stat.S_ISREG(st.st_mode):
                e["type"], e["size"] = "file", st.st_size
                with open(full, "rb") as f:
                    e["sha256"] = sha(f)
                if st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), []).append(p)
            else:
                e["type"] = "other:%o" % stat.S_IFMT(st.st_mode)
            out[p] = e
    for group in inodes.values():
        if len(group) > 1:
            for p in group:
                out[p]["hardlinks"] = sorted(group)
    return out

def from_tar(path):
    out, root_of, members = {}, {}, {}
    with tarfile.open(path, "r:*") as t:
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
                    e.update({k: out[target][k] for k in ("type", "size", "sha256", "mtime")})
                    r = root_of.get(target, target)
                    members.setdefault(r, [r]).append(p)
                    root_of[p] = r
            elif m.isreg():
                e["type"], e["size"] = "file", m.size
                e["sha256"] = sha(t.extractfile(m))
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

def show(e, owners, mtimes=False):
    keys = ["type", "mode", "size", "sha256", "target", "hardlinks", "duplicate"]
    if owners:
        keys[2:2] = ["uid", "gid"]
    if mtimes and "hardlinks" not in e:   # unpackers differ on a linked inode's mtime
        keys.append("mtime")
    return " ".join("%s=%s" % (k, oct(e[k]) if k == "mode" else e[k]) for k in keys if k in e)

def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    owners, mtimes = "--owners" in args, "--mtimes" in args
    only = [a[7:] for a in args if a.startswith("--only=")]
    args = [a for a in args if a not in ("--owners", "--mtimes") and not a.startswith("--only=")]
    if cmd == "list":
        for p, e in sorted(load(args[0]).items()):
            print(p, show(e, True, True))
        return 0
    a, b = load(args[0]), load(args[1])
    bad = 0
    paths = sorted(only or set(a) | set(b))
    for p in paths:
        x = show(a[p], owners, mtimes) if p in a else "(absent)"
        y = show(b[p], owners, mtimes) if p in b else "(absent)"
        if x != y:
            bad += 1
            if bad <= 20:
                print("  %s:\n    A: %s\n    B: %s" % (p, x, y), file=sys.stderr)
    if bad:
        print("%d of %d paths differ (A=%s, B=%s)" % (bad, len(paths), args[0], args[1]), file=sys.stderr)
    return 1 if bad else 0

sys.exit(main())
PY

# ---------------------------------------------------------------- checks
# Each check runs in its own subshell with `set -e`, in its own directory $T,
# with IMG_ROOT=$T/img and podman stores $T/pa, $T/pb, ...

# podman save (FORMAT) -> img load -> img save (FORMAT) -> podman load:
# the same image ID, the same name, the same files.
roundtrip_podman() {
  local name=$1 src=$2 format=$3
  pm "$T/pa" load -q -i "$GEN/$src" >/dev/null
  local id_a; id_a=$(pm_id "$T/pa" "$name")
  pm "$T/pa" save -q --format "$format" -o "$T/from-podman.tar" "$name"
  img load -i "$T/from-podman.tar" | has -x "Loaded image: $name" || fail "img load did not print the name $name"
  same "image ID (podman, img)" "$id_a" "$(img_id "$name")"
  img save --format "$format" -o "$T/from-img.tar" "$name"
  pm "$T/pb" load -q -i "$T/from-img.tar" >/dev/null
  same "image ID (podman, podman after img)" "$id_a" "$(pm_id "$T/pb" "$name")"
  pm "$T/pb" image exists "$name" || fail "podman does not know $name after loading img's archive"
  trees --owners "$(pm_rootfs "$T/pa" "$name")" "$(pm_rootfs "$T/pb" "$name")"
  img fsck >/dev/null || fail "img fsck failed"
  # (img export is compared with podman and umoci by the checks below)
}
check_docker_archive_roundtrip_base() { roundtrip_podman localhost/base:1 base-docker.tar docker-archive; }
check_docker_archive_roundtrip_layered() { roundtrip_podman localhost/layered:1 layered-docker.tar docker-archive; }
check_oci_archive_roundtrip_base() { roundtrip_podman localhost/base:1 base-oci.tar oci-archive; }
check_oci_archive_roundtrip_layered() { roundtrip_podman localhost/layered:1 layered-oci.tar oci-archive; }

# The base image's files are exactly the tarball podman imported.
check_base_image_is_rootfs_tarball() {
  img load -q -i "$GEN/base-docker.tar" >/dev/null
  img export -o "$T/export.tar" localhost/base:1
  trees --owners "$GEN/base-rootfs.tar" "$T/export.tar"
}

# skopeo copy containers-storage:... oci:DIR -> img load -i DIR
check_skopeo_oci_dir_load() {
  # (from an OCI image: skopeo converts a docker one, which changes the ID)
  pm "$T/pa" load -q -i "$GEN/layered-oci.tar" >/dev/null
  local id; id=$(pm_id "$T/pa" localhost/layered:1)
  skopeo copy -q "containers-storage:[vfs@$T/pa/root+$RUNS/$(echo "$T/pa" | cksum | cut -d' ' -f1)]localhost/layered:1" \
    "oci:$T/oci-dir:localhost/layered:1"
  img load -i "$T/oci-dir" | has -x "Loaded image: localhost/layered:1" || fail "img load did not print the name"
  same "image ID (podman, img)" "$id" "$(img_id localhost/layered:1)"
  img fsck >/dev/null || fail "img fsck failed"
  # A bare tag as ref.name (what umoci and `skopeo copy ... oci:DIR:TAG` write)
  skopeo copy -q "oci-archive:$GEN/base-oci.tar" "oci:$T/oci-tag:v1"
  img load -q -i "$T/oci-tag" > "$T/out"
  pm "$T/pa" load -q -i "$GEN/base-oci.tar" >/dev/null
  id=$(pm_id "$T/pa" localhost/base:1)
  grep -q "$id" "$T/out" || fail "img load -q printed '$(cat "$T/out")', not the ID $id"
  img images -q --no-trunc | has "$id" || fail "$id is not in img images"
}

# An OCI archive whose ref.name is a bare name (skopeo copy ... oci-archive:FILE:NAME)
# was loaded without a name; podman names it localhost/NAME:latest, and so does img.
check_oci_archive_bare_name_loads_as_podman_names_it() {
  skopeo copy -q "oci-archive:$GEN/base-oci.tar" "oci-archive:$T/bare.tar:myapp"
  pm "$T/pb" load -q -i "$T/bare.tar" >/dev/null || fail "podman load"
  local want got
  want=$(pm "$T/pb" images --format '{{.Repository}}:{{.Tag}}' | head -1)
  img load -q -i "$T/bare.tar" >/dev/null || fail "img load"
  got=$(img images --format '{{.Repository}}:{{.Tag}}' | grep myapp || true)
  [[ $want == localhost/myapp:latest && $got == "$want" ]] || fail "podman names it $want, img $got"
}

# img save --format oci-dir -> umoci unpack; skopeo reads it too
check_img_oci_dir_umoci_unpack() {
  img load -q -i "$GEN/layered-docker.tar" >/dev/null
  img save --format oci-dir -o "$T/dir" localhost/layered:1
  umoci unpack --rootless --image "$T/dir:localhost/layered:1" "$T/bundle" >/dev/null
  umoci unpack --rootless --image "$GEN/layered.oci:1" "$T/bundle0" >/dev/null
  trees "$T/bundle0/rootfs" "$T/bundle/rootfs"
  skopeo inspect --raw "oci:$T/dir:localhost/layered:1" >/dev/null
  skopeo copy -q "oci:$T/dir:localhost/layered:1" "oci:$T/copy:x"
}

# img export of the layered image = umoci unpack of it (whiteouts applied)
check_layered_export_matches_umoci() {
  umoci unpack --rootless --image "$GEN/layered.oci:1" "$T/bundle" >/dev/null
  for src in layered.oci layered-oci.tar layered-docker.tar; do
    rm -rf "$T/img"
    img load -q -i "$GEN/$src" >/dev/null
    img export -o "$T/export.tar" "$(img images -q --no-trunc | head -1)"
    trees "$T/bundle/rootfs" "$T/export.tar"
  done
  listing "$T/export.tar" > "$T/list"
  ! grep -q '\.wh\.' "$T/list" || fail "whiteout files in the export: $(grep '\.wh\.' "$T/list")"
  for gone in etc/motd var/cache/junk var/cache/junk/a opt/app/lib opt/app/lib/one.bin; do
    ! grep -q "^$gone " "$T/list" || fail "$gone should have been deleted by layer 2"
  done
  for here in var/keep var/cache srv/new.txt data/added.bin opt/app/bin/run data/hard-b data/hard-c \
              "etc/to-dir type=dir" "etc/to-dir/inside.txt" "var/lib type=symlink"; do
    grep -q "^$here " "$T/list" || fail "$here is missing"
  done
  tar -xOf "$T/export.tar" opt/app/config.txt 2>/dev/null | has -x version=2 ||
    tar -xOf "$T/export.tar" ./opt/app/config.txt | has -x version=2 || fail "opt/app/config.txt is not layer 2's"
  grep -q "^opt/app/config.txt type=file mode=0o600 " "$T/list" || fail "opt/app/config.txt mode: $(grep '^opt/app/config.txt ' "$T/list")"
}

# ... and = podman's rootfs of it, owners included
check_layered_export_matches_podman() {
  pm "$T/pa" load -q -i "$GEN/layered-docker.tar" >/dev/null
  img load -q -i "$GEN/layered-docker.tar" >/dev/null
  img export -o "$T/export.tar" localhost/layered:1
  trees --owners "$(pm_rootfs "$T/pa" localhost/layered:1)" "$T/export.tar"
}

# img export of the layered image unpacks with GNU tar and with podman import
check_layered_export_unpacks() {
  umoci unpack --rootless --image "$GEN/layered.oci:1" "$T/bundle" >/dev/null
  img load -q -i "$GEN/layered-oci.tar" >/dev/null
  img export -o "$T/export.tar" localhost/layered:1
  mkdir "$T/x"
  tar -C "$T/x" -xf "$T/export.tar" || fail "tar -x of img export failed"
  trees "$T/bundle/rootfs" "$T/x"
  pm "$T/pa" import -q "$T/export.tar" localhost/flat:1 >/dev/null || fail "podman import of img export failed"
  trees "$T/bundle/rootfs" "$(pm_rootfs "$T/pa" localhost/flat:1)"
}

# Hard links of layer 1 whose target layer 2 deletes (data/pair-2) or
# replaces (data/pair-4) keep their own content, as umoci and podman have it.
check_export_hard_link_target_deleted() {
  umoci unpack --rootless --image "$GEN/layered.oci:1" "$T/bundle" >/dev/null
  img load -q -i "$GEN/layered.oci" >/dev/null
  img export -o "$T/export.tar" "$(img images -q --no-trunc | head -1)"
  trees --only=data/pair-1 --only=data/pair-2 "$T/bundle/rootfs" "$T/export.tar"
}
check_export_hard_link_target_replaced() {
  umoci unpack --rootless --image "$GEN/layered.oci:1" "$T/bundle" >/dev/null
  img load -q -i "$GEN/layered.oci" >/dev/null
  img export -o "$T/export.tar" "$(img images -q --no-trunc | head -1)"
  trees --only=data/pair-3 --only=data/pair-4 "$T/bundle/rootfs" "$T/export.tar"
}

# Saved by ID, an image carries no names, as with podman (and docker) save.
check_save_by_id_names_match_podman() {
  pm "$T/pa" load -q -i "$GEN/base-docker.tar" >/dev/null
  local id; id=$(pm_id "$T/pa" localhost/base:1)
  pm "$T/pa" save -q -o "$T/podman.tar" "$id"
  img load -q -i "$GEN/base-docker.tar" >/dev/null
  img save -o "$T/img.tar" "$id"
  same "RepoTags of a save by ID (podman, img)" \
    "$(tar -xOf "$T/podman.tar" manifest.json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["RepoTags"] or [])')" \
    "$(tar -xOf "$T/img.tar" manifest.json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["RepoTags"] or [])')"
  # and img load of podman's nameless archive gives the image, without a name
  rm -rf "$T/img"
  img load -i "$T/podman.tar" | has "$id" || fail "img load of a nameless archive did not print the ID"
  same "img images --format json of a nameless image (Id RepoTags)" "$id []" \
    "$(img images --format json | python3 -c 'import json,sys; print(*["%s %s" % (i["Id"], i["RepoTags"]) for i in json.load(sys.stdin)])')"
}

# img inspect -f prints what podman image inspect -f prints
check_inspect_format_matches_podman() {
  pm "$T/pa" load -q -i "$GEN/layered-oci.tar" >/dev/null
  img load -q -i "$GEN/layered-oci.tar" >/dev/null
  local f
  for f in '{{.Id}}' '{{json .Config.Cmd}}' '{{.Os}}/{{.Architecture}}' '{{index .Config.Labels "org.example.test"}}'; do
    same "inspect -f '$f' (podman, img)" "$(pm "$T/pa" image inspect -f "$f" localhost/layered:1)" \
      "$(img inspect -f "$f" localhost/layered:1)"
  done
}

# Names: several tags (short and full) survive img save -> podman load, and
# podman save -m -> img load.
check_names_roundtrip() {
  img load -q -i "$GEN/layered.oci" >/dev/null
  img tag "$(img images -q --no-trunc | head -1)" foo bar:2 quay.io/x/y:3
  img save -o "$T/names.tar" foo bar:2 quay.io/x/y:3
  pm "$T/pa" load -q -i "$T/names.tar" >/dev/null
  for n in docker.io/library/foo:latest docker.io/library/bar:2 quay.io/x/y:3; do
    pm "$T/pa" image exists "$n" || fail "podman lacks $n after loading img's archive"
  done
  pm "$T/pa" save -q -m -o "$T/back.tar" docker.io/library/foo:latest quay.io/x/y:3
  rm -rf "$T/img"
  img load -i "$T/back.tar" > "$T/out"
  for n in docker.io/library/foo:latest quay.io/x/y:3; do
    grep -qx "Loaded image: $n" "$T/out" || fail "img load printed: $(cat "$T/out")"
    img inspect "$n" >/dev/null || fail "img does not know $n"
  done
  img inspect foo >/dev/null || fail "the short name foo does not find docker.io/library/foo:latest"
  ! img inspect bar:2 >/dev/null 2>&1 || fail "bar:2 was not saved by podman, yet img has it"
}

# img import -c: the config podman sees equals podman import's own
check_import_changes_match_podman_import() {
  local ch=(-c 'CMD echo hi' -c 'ENTRYPOINT ["/bin/sh", "-c"]' -c 'ENV A=1' -c 'WORKDIR /data'
            -c 'USER 1000:1000' -c 'EXPOSE 80' -c 'EXPOSE 443/udp' -c 'LABEL a=b' -c 'VOLUME /v')
  pm "$T/pa" import -q "${ch[@]}" "$GEN/base-rootfs.tar" localhost/by-podman:1 >/dev/null
  img import "${ch[@]}" "$GEN/base-rootfs.tar" localhost/by-img:1 >/dev/null
  img save localhost/by-img:1 | pm "$T/pa" load -q >/dev/null
  same "config" "$(pm "$T/pa" image inspect --format '{{json .Config}}' localhost/by-podman:1)" \
    "$(pm "$T/pa" image inspect --format '{{json .Config}}' localhost/by-img:1)"
  same "layers" "$(pm "$T/pa" image inspect --format '{{json .RootFS}}' localhost/by-podman:1)" \
    "$(pm "$T/pa" image inspect --format '{{json .RootFS}}' localhost/by-img:1)"
}

# img load of compressed archives, from a file and from standard input
compressed() {
  local tool=$1 ext=$2
  for src in base-docker.tar layered-docker.tar layered-oci.tar; do
    "$tool" -c "$GEN/$src" > "$T/$src.$ext"
  done
  img load -i "$T/base-docker.tar.$ext" | has -x "Loaded image: localhost/base:1" || fail "base-docker.tar.$ext"
  img load < "$T/layered-docker.tar.$ext" | has -x "Loaded image: localhost/layered:1" || fail "layered-docker.tar.$ext from stdin"
  local id; id=$(img_id localhost/layered:1)
  img rmi -f localhost/layered:1 >/dev/null
  img load -i "$T/layered-oci.tar.$ext" | has -x "Loaded image: localhost/layered:1" || fail "layered-oci.tar.$ext"
  same "image ID" "$id" "$(img_id localhost/layered:1)"
  pm "$T/pa" load -q -i "$GEN/base-docker.tar" >/dev/null
  same "image ID (podman, img)" "$(pm_id "$T/pa" localhost/base:1)" "$(img_id localhost/base:1)"
  img fsck >/dev/null || fail "img fsck failed after loading"
}
check_load_gzip() { compressed gzip gz; }
check_load_xz() { compressed xz xz; }
check_load_zstd() { compressed zstd zst; }

# img save to standard output | podman load
check_save_stdout_to_podman_load() {
  img load -q -i "$GEN/layered-oci.tar" >/dev/null
  img load -q -i "$GEN/base-docker.tar" >/dev/null
  img save localhost/layered:1 | pm "$T/pa" load -q >/dev/null
  same "image ID" "$(img_id localhost/layered:1)" "$(pm_id "$T/pa" localhost/layered:1)"
  img save --format oci-archive localhost/base:1 | pm "$T/pb" load -q >/dev/null
  same "image ID" "$(img_id localhost/base:1)" "$(pm_id "$T/pb" localhost/base:1)"
  # two images in one archive
  img save -o "$T/two.tar" localhost/base:1 localhost/layered:1
  pm "$T/pc" load -q -i "$T/two.tar" >/dev/null
  pm "$T/pc" image exists localhost/base:1 || fail "base missing from a two-image archive"
  pm "$T/pc" image exists localhost/layered:1 || fail "layered missing from a two-image archive"
  trees --owners "$(pm_rootfs "$T/pc" localhost/layered:1)" "$(pm_rootfs "$T/pa" localhost/layered:1)"
}

# podman save -m (two images, one archive) -> img load
check_podman_multi_image_archive() {
  pm "$T/pa" load -q -i "$GEN/base-docker.tar" >/dev/null
  pm "$T/pa" load -q -i "$GEN/layered-docker.tar" >/dev/null
  pm "$T/pa" save -q -m -o "$T/two.tar" localhost/base:1 localhost/layered:1
  img load -i "$T/two.tar" > "$T/out"
  grep -qx "Loaded image: localhost/base:1" "$T/out" || fail "img load: $(cat "$T/out")"
  grep -qx "Loaded image: localhost/layered:1" "$T/out" || fail "img load: $(cat "$T/out")"
  same "image ID" "$(pm_id "$T/pa" localhost/base:1)" "$(img_id localhost/base:1)"
  same "image ID" "$(pm_id "$T/pa" localhost/layered:1)" "$(img_id localhost/layered:1)"
}

# skopeo reads what img writes
check_skopeo_reads_img_archives() {
  img load -q -i "$GEN/layered.oci" >/dev/null
  img tag "$(img images -q --no-trunc | head -1)" localhost/layered:1
  img save -o "$T/d.tar" localhost/layered:1
  img save --format oci-archive -o "$T/o.tar" localhost/layered:1
  skopeo copy -q "docker-archive:$T/d.tar" "oci:$T/from-docker:1"
  skopeo copy -q "oci-archive:$T/o.tar" "oci:$T/from-oci:1"
  umoci unpack --rootless --image "$T/from-docker:1" "$T/b1" >/dev/null
  umoci unpack --rootless --image "$T/from-oci:1" "$T/b2" >/dev/null
  umoci unpack --rootless --image "$GEN/layered.oci:1" "$T/b0" >/dev/null
  trees "$T/b0/rootfs" "$T/b1/rootfs"
  trees "$T/b0/rootfs" "$T/b2/rootfs"
  local cfg; cfg=$(skopeo inspect --config "oci-archive:$T/o.tar" | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["Labels"]["org.example.test"])')
  same "label" layered "$cfg"
}

# img import (plain, .gz, .xz, .zst) -c CMD -> img save -> podman load
import_to_podman() {
  local ext=$1 tar=$T/rootfs.tar
  case $ext in
    tar) cp "$GEN/base-rootfs.tar" "$tar" ;;
    gz) gzip -c "$GEN/base-rootfs.tar" > "$tar.gz"; tar=$tar.gz ;;
    xz) xz -c "$GEN/base-rootfs.tar" > "$tar.xz"; tar=$tar.xz ;;
    zst) zstd -q -c "$GEN/base-rootfs.tar" > "$tar.zst"; tar=$tar.zst ;;
  esac
  img import -c 'CMD ["/bin/sh"]' -c 'ENV A=1' -m "imported $ext" "$tar" localhost/imported:$ext >/dev/null
  img save -o "$T/saved.tar" localhost/imported:$ext
  pm "$T/pa" load -q -i "$T/saved.tar" >/dev/null
  same "image ID" "$(img_id localhost/imported:$ext)" "$(pm_id "$T/pa" localhost/imported:$ext)"
  same "CMD" '["/bin/sh"]' "$(pm "$T/pa" image inspect --format '{{json .Config.Cmd}}' localhost/imported:$ext)"
  pm "$T/pa" image inspect --format '{{json .Config.Env}}' localhost/imported:$ext | has '"A=1"' ||
    fail "ENV A=1 missing: $(pm "$T/pa" image inspect --format '{{json .Config.Env}}' localhost/imported:$ext)"
  trees --owners "$GEN/base-rootfs.tar" "$(pm_rootfs "$T/pa" localhost/imported:$ext)"
}
check_import_tar_to_podman() { import_to_podman tar; }
check_import_gz_to_podman() { import_to_podman gz; }
check_import_xz_to_podman() { import_to_podman xz; }
check_import_zst_to_podman() { import_to_podman zst; }

# import from standard input, and podman import of img export
check_import_stdin_and_reimport() {
  img import - localhost/piped:1 < "$GEN/base-rootfs.tar" >/dev/null
  img export -o "$T/export.tar" localhost/piped:1
  trees --owners "$GEN/base-rootfs.tar" "$T/export.tar"
  pm "$T/pa" import -q "$T/export.tar" localhost/reimported:1 >/dev/null
  trees --owners "$GEN/base-rootfs.tar" "$(pm_rootfs "$T/pa" localhost/reimported:1)"
}

# Long: a large image (many files, a 300 MiB layer) through podman and back.
check_long_large_image_roundtrip() {
  [[ ${IMG_TEST_LONG:-} == 1 ]] || return 0
  python3 - "$T/big-rootfs.tar" <<'PY'
import io, random, sys, tarfile
rng = random.Random(7)
with tarfile.open(sys.argv[1], "w") as t:
    for i in range(20000):
        ti = tarfile.TarInfo("many/%03d/f%05d" % (i % 200, i)); d = rng.randbytes(rng.randrange(0, 3000))
        ti.size = len(d); t.addfile(ti, io.BytesIO(d))
    for i in range(3):
        ti = tarfile.TarInfo("big/%d.bin" % i); d = rng.randbytes(100 << 20)
        ti.size = len(d); t.addfile(ti, io.BytesIO(d))
PY
  img import "$T/big-rootfs.tar" localhost/big:1 >/dev/null
  img save -o "$T/big.tar" localhost/big:1
  pm "$T/pa" load -q -i "$T/big.tar" >/dev/null
  same "image ID" "$(img_id localhost/big:1)" "$(pm_id "$T/pa" localhost/big:1)"
  pm "$T/pa" save -q -o "$T/big2.tar" localhost/big:1
  rm -rf "$T/img"
  img load -q -i "$T/big2.tar" >/dev/null
  img export -o "$T/export.tar" localhost/big:1
  trees --owners "$T/big-rootfs.tar" "$T/export.tar"
}

# ---------------------------------------------------------------- runner

# Each check has its own store; its podman stores' mounts go when it ends,
# and so does its directory.
before_check() { export IMG_ROOT=$T/img; }
after_check() {
  for s in "$T"/p?; do [[ -d $s ]] && pm "$s" image unmount -a >/dev/null 2>&1; done
  rm -rf "$T"
}
skip_check() { [[ $1 == check_long_* && ${IMG_TEST_LONG:-} != 1 ]]; }

preflight() {
  local missing=()
  for t in podman skopeo umoci python3 gzip xz zstd "$IMG"; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  [[ -f $GEN/.stamp ]] || missing+=("testdata/gen (run scripts/make-testdata.sh)")
  [[ ${#missing[@]} == 0 ]] || fail "missing: ${missing[*]}"
}

echo "# img: $IMG ($("$IMG" --version 2>&1))"
if ! (preflight) 2>"$WORK/preflight"; then
  echo "not ok - preflight"; sed 's/^/#   /' "$WORK/preflight"
  echo "0 passed, 1 failed"
  exit 1
fi
run_checks "$@"
