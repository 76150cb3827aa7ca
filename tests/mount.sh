#!/usr/bin/env bash
# Tests of img mount, umount and mounts on this machine's kernel FUSE, as
# root. The image is made here (tests/support/mount_image.py): 4 layers
# (gzip, gzip, uncompressed, zstd) with whiteouts of a file and of a
# directory, an opaque directory, hard links across directories and layers,
# symlinks, a fifo, devices, setuid and setgid files, a security.capability
# and a user.test xattr, 10,000 small files, a 200-deep path and a 255-byte
# name. Its mount is compared with umoci unpack and with img export; then
# read-only, many readers, the lifecycle of mounts, a killed server, a
# corrupted layer, sparse files (old GNU and PAX formats, one of 5 GiB,
# compared with GNU tar, umoci and img export), a hostile sparse map, rmi
# and prune of a mounted image,
# and a rootless mount by an unprivileged user (imgtest, made here and
# removed again; /dev/fuse is 0666 during that check only); bundles
# (img mount --bundle) run by runc, as root and as that user, read-only and
# writable, on the busybox image of testdata/gen (scripts/make-testdata.sh).
#
# Usage: IMG=target/release/img tests/mount.sh [CHECK-NAME-SUBSTRING...]
# Prints "ok - NAME" or "not ok - NAME" and the reason per check, then
# measurements that are not asserted ("# " lines), then "N passed, M
# failed"; exits non-zero if any check failed. A missing tool is a failure.
# IMG_TEST_LONG=1 times umoci unpack 5 times, not once; MOUNT_TIMING=1
# prints how long each check took.
set -uo pipefail
cd "$(dirname "$0")/.."
IMG=$(realpath "${IMG:-target/release/img}")
SUPPORT=$PWD/tests/support
WORK=$(mktemp -d /tmp/img-mount.XXXXXX)
chmod 755 "$WORK"                 # the rootless check's user reads its tools and the image here
GEN=$WORK/gen                     # the image layouts
TMPFS=$WORK/tmpfs                 # umoci's bundle and extracted exports
UMOCI=$TMPFS/umoci/rootfs
TREE=$WORK/bin/mount_tree.py
export IMG_ROOT=/nonexistent      # each check sets its own
TEST_USER=imgtest
RUNC=$(command -v runc)           # (the test user's PATH has no sbin)
USER_MADE=0                       # 1 once this run made $TEST_USER
FUSE_MODE=""                      # /dev/fuse's mode while the rootless check changes it

source tests/lib.sh
# Every mount and server this run made goes, whatever happened.
suite_cleanup() {
  local s m pid r c
  # Containers of the bundle checks (runc run removes them when they end).
  for r in "$WORK"/*/runc "$(user_home)/img-mount-test-runc"; do
    [[ -d $r && -n $RUNC ]] || continue
    for c in $("$RUNC" --root "$r" list -q 2>/dev/null); do "$RUNC" --root "$r" delete -f "$c" >/dev/null 2>&1; done
  done
  for s in "$WORK"/store-*; do
    [[ -d $s ]] && IMG_ROOT=$s timeout 20 "$IMG" umount -a --discard >/dev/null 2>&1
  done
  local home; home=$(user_home)
  if [[ -n $home && -d $home/img-mount-test ]]; then
    as_user "$WORK/bin/img" umount -a --discard >/dev/null 2>&1
  fi
  # FUSE mounts left under our directories (a server that would not let go)
  for m in $(awk -v w="$WORK" -v h="$(user_home)" '{t = ""; for (i = 7; i <= NF; i++) if ($i == "-") {t = $(i + 1); break}}
      (t ~ /^fuse/ || t == "overlay") && (index($5, w "/") == 1 || (h != "" && index($5, h "/") == 1)) {print $5}' /proc/self/mountinfo | sort -r); do
    fusermount3 -uz "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
  # Servers of our stores still running: ours, ended by their ids.
  for pid in $(img_procs "$WORK" "${home:+$home/img-mount-test}"); do
    kill "$pid" 2>/dev/null
  done
  [[ -f $WORK/fuse-mode ]] && FUSE_MODE=$(cat "$WORK/fuse-mode")
  [[ -n $FUSE_MODE ]] && chmod "$FUSE_MODE" /dev/fuse
  [[ -f $WORK/user-made ]] && USER_MADE=1
  if [[ $USER_MADE == 1 ]]; then
    userdel -r "$TEST_USER" >/dev/null 2>&1
  elif [[ -n $home ]]; then
    as_user rm -rf "$home/img-mount-test" "$home/img-mount-test.tar" "$home"/img-mount-test-* 2>/dev/null
  fi
  mountpoint -q "$TMPFS" && umount -l "$TMPFS"
}

# ---------------------------------------------------------------- helpers

img() { "$IMG" "$@"; }

# trees [OPTIONS] A B: the two trees are alike (see tests/support/mount_tree.py)
trees() { python3 "$TREE" cmp "$@" >/dev/null || fail "file trees differ: ${*: -2}"; }

# The image ID of the layouts (the config digest).
image_id() {
  python3 - "$GEN/full" <<'PY'
import json, sys
root = sys.argv[1]
ix = json.load(open(root + "/index.json"))
m = json.load(open(root + "/blobs/sha256/" + ix["manifests"][0]["digest"].split(":")[1]))
print(m["config"]["digest"].split(":")[1])
PY
}

# load_image [LAYOUT]: into this check's store, named localhost/mountfs:1
load_image() {
  local id
  id=$(img load -q -i "${1:-$GEN/full}") || fail "img load failed"
  img tag "$id" localhost/mountfs:1 || fail "img tag failed"
  # The layouts' bare ref.name "1" names the image localhost/1:latest (as
  # podman names it): the checks want localhost/mountfs:1 alone.
  img rmi localhost/1:latest >/dev/null 2>&1 || true
}

# The digest (hex) of layer N (from 1) of the full image.
layer_hex() {
  python3 - "$GEN/full" "$1" <<'PY'
import json, sys
root, n = sys.argv[1], int(sys.argv[2])
ix = json.load(open(root + "/index.json"))
m = json.load(open(root + "/blobs/sha256/" + ix["manifests"][0]["digest"].split(":")[1]))
print(m["layers"][n - 1]["digest"].split(":")[1])
PY
}

# mounted DIR: DIR is a mountpoint in /proc/self/mountinfo (our paths need no escapes)
mounted() { awk -v d="$1" '$5 == d {f=1} END {exit !f}' /proc/self/mountinfo; }

# mounts_json: `img mounts --format json`, checked to be JSON
mounts_json() {
  local out
  out=$(img mounts --format json) || fail "img mounts --format json failed"
  python3 -c 'import json,sys; json.loads(sys.argv[1])' "$out" || fail "img mounts --format json is not JSON: $out"
  printf '%s\n' "$out"
}

# field MOUNTPOINT FIELD: a field of that mount's row, or nothing (no row)
field() {
  mounts_json | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    if r.get("Mountpoint") == sys.argv[1]:
        print(json.dumps(r.get(sys.argv[2])) if not isinstance(r.get(sys.argv[2]), str) else r[sys.argv[2]])' "$1" "$2"
}

# img_procs PATH...: the img processes (of $IMG or the test user's copy)
# whose command line or environment names one of the paths: when no img
# command of ours is running, the servers of those stores.
img_procs() {
  python3 - "$IMG" "$WORK/bin/img" "$@" <<'PY'
import os, re, sys
exes = {os.path.realpath(sys.argv[1]), os.path.realpath(sys.argv[2])}
paths = [re.compile(re.escape(p.encode()) + rb"(\0|/|$)") for p in sys.argv[3:] if p]
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if os.readlink("/proc/%s/exe" % pid) not in exes:
            continue
        with open("/proc/%s/cmdline" % pid, "rb") as c, open("/proc/%s/environ" % pid, "rb") as e:
            seen = c.read() + b"\0" + e.read()
    except OSError:
        continue
    if any(p.search(seen) for p in paths):
        print(pid)
PY
}

# The servers of this check's store.
servers() { img_procs "$IMG_ROOT"; }

# no_servers: waits up to 5 s for this check's servers to end (a server
# ends a moment after its mount is gone)
no_servers() {
  local i
  for i in $(seq 50); do
    [[ -z $(servers) ]] && return 0
    sleep 0.1
  done
  fail "servers left: $(servers)"
}

# gone PID: waits up to 5 s for PID to end
gone() {
  local i
  for i in $(seq 50); do
    [[ -d /proc/$1 ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]] || return 0
    sleep 0.1
  done
  return 1
}

# sha FILE: its sha256
sha() { sha256sum < "$1" | cut -d' ' -f1; }

# ---------------------------------------------------------------- checks
# Each runs in its own subshell with `set -e`, with its own directory $T and
# its own store IMG_ROOT=$WORK/store-NAME.

# 1. The mounted tree is umoci's: every path's type, mode, owner, size,
# content, link target, device numbers, xattrs, hard-link grouping and
# mtime (directories' too).
check_tree_matches_umoci_unpack() {
  load_image
  local m; m=$(img mount localhost/mountfs:1) || fail "img mount failed"
  trees --mtimes=all "$m" "$UMOCI"
}

# ... and img export's: extracted with GNU tar on tmpfs (owners, xattrs;
# mtimes of everything but directories, which tar cannot keep when later
# layers' entries land in them), and the tar file itself (mtimes of all).
check_tree_matches_img_export() {
  load_image
  local m x=$TMPFS/export-x; m=$(img mount localhost/mountfs:1) || fail "img mount failed"
  img export -o "$T/export.tar" localhost/mountfs:1 || fail "img export failed"
  mkdir "$x"
  tar --numeric-owner --xattrs --xattrs-include='*' -xpf "$T/export.tar" -C "$x" || fail "tar -x of the export failed"
  trees --mtimes=files "$m" "$x"
  trees --mtimes=all "$m" "$T/export.tar"
  rm -rf "$x"
}

# The layers' meaning, stated here rather than taken from a peer.
check_merged_tree_semantics() {
  load_image
  local m; m=$(img mount localhost/mountfs:1) || fail "img mount failed"
  cd "$m"
  for p in del-file del-dir opq/a opq/sub data/medium srv/to-file/child many/d000/f00000; do
    [[ ! -e $p && ! -L $p ]] || fail "$p should be gone"
  done
  [[ $(ls -A opq) == new ]] || fail "opaque opq holds: $(ls -A opq)"
  [[ $(cat etc/hello) == "hello v2" ]] || fail "etc/hello is not layer 2's"
  [[ -d etc/to-dir && -f etc/to-dir/inside && -f srv/to-file ]] || fail "file<->directory replacements wrong"
  [[ $(cat links/hl-target2) == "target2 version 1 (layer 1)" ]] || fail "links/hl-target2 lost its layer-1 content"
  [[ $(cat data/target2) == "target2 version 2 (layer 2)" ]] || fail "data/target2 is not layer 2's"
  [[ $(stat -c %i data/target2) != $(stat -c %i links/hl-target2) ]] || fail "links/hl-target2 still linked to the new data/target2"
  [[ $(stat -c '%i %h' data/orig) == "$(stat -c '%i %h' links/hl-orig)" && $(stat -c %h data/orig) == 3 ]] ||
    fail "data/orig, links/hl-orig, data/sub/hl-orig2 are not one inode with 3 links"
  [[ $(stat -c %i data/small) == $(stat -c %i links/hl2) ]] || fail "links/hl2 (layer 2) is not data/small (layer 1)"
  [[ $(stat -c %i data/big.bin) == $(stat -c %i links/hl3) ]] || fail "links/hl3 (layer 3) is not data/big.bin (layer 1)"
  [[ $(readlink links/rel) == ../data/small && $(readlink links/abs) == /etc/hello &&
     $(readlink links/dangling) == /nowhere/missing ]] || fail "symlink targets wrong"
  cmp -s links/rel data/small || fail "links/rel does not lead to data/small"
  [[ ! -e links/dangling ]] || fail "links/dangling leads somewhere"
  [[ $(stat -c '%F %a' dev/fifo) == "fifo 644" ]] || fail "dev/fifo: $(stat -c '%F %a' dev/fifo)"
  [[ $(stat -c '%F %t:%T' dev/null) == "character special file 1:3" ]] || fail "dev/null: $(stat -c '%F %t:%T' dev/null)"
  [[ $(stat -c '%F %t:%T' dev/loop0) == "block special file 7:0" ]] || fail "dev/loop0: $(stat -c '%F %t:%T' dev/loop0)"
  [[ $(stat -c %a bin/suid) == 4755 && $(stat -c %a bin/sgid) == 2755 && $(stat -c %a tmp) == 1777 ]] ||
    fail "setuid, setgid or sticky bits lost"
  [[ $(stat -c '%a %Y' bin) == "750 1700099999" ]] || fail "bin does not carry layer 3's metadata: $(stat -c '%a %Y' bin)"
  [[ $(stat -c '%u:%g' home/user/file) == 1000:1000 && $(stat -c '%u:%g' data/nobody) == 65534:65534 ]] || fail "owners wrong"
  python3 - <<'PY' || fail "xattrs wrong"
import os
assert os.getxattr("bin/cap", "security.capability") == bytes([1, 0, 0, 2, 0, 4] + [0] * 14)
assert os.getxattr("data/xattr-file", "user.test") == b"hello xattr"
assert os.listxattr("data/small") == []
PY
  [[ $(stat -c %s data/empty) == 0 && $(stat -c %s data/big.bin) == 5242880 && $(stat -c %s data/zstd.txt) == 1048576 ]] ||
    fail "sizes wrong"
  [[ $(stat -c %Y.%y data/text.txt) == 1700000001.*.123456789* ]] || fail "sub-second mtime lost: $(stat -c %y data/text.txt)"
  [[ $(find many -type f | wc -l) == 9999 ]] || fail "many/ holds $(find many -type f | wc -l) files, not 9999"
  local deep; deep=deep/$(seq -f 'l%03g' 1 200 | paste -sd/)
  [[ $(cat "$deep/leaf.txt") == "200 directories down" && -f $deep/from-layer-4 ]] || fail "the 200-deep path is wrong"
  local long; long=long/$(printf 'x%.0s' $(seq 251)).txt
  [[ $(cat "$long") == "a 255-byte name" ]] || fail "the 255-byte name is missing"
}

# 2. Read-only: every change fails with EROFS, and nothing changed.
check_read_only() {
  load_image
  local m; m=$(img mount localhost/mountfs:1) || fail "img mount failed"
  local before; before=$(sha "$m/etc/hello")
  python3 - "$m" <<'PY' || fail "a change to the mount did not fail with EROFS"
import errno, os, sys
m = sys.argv[1]
p = lambda s: os.path.join(m, s)
tries = {
    "open for writing": lambda: open(p("etc/hello"), "r+b"),
    "open for appending": lambda: open(p("data/small"), "ab"),
    "create": lambda: open(p("data/new-file"), "xb"),
    "truncate": lambda: os.truncate(p("data/big.bin"), 0),
    "unlink": lambda: os.unlink(p("data/small")),
    "unlink a symlink": lambda: os.unlink(p("links/rel")),
    "rmdir": lambda: os.rmdir(p("opq")),
    "mkdir": lambda: os.mkdir(p("new-dir")),
    "rename": lambda: os.rename(p("data/small"), p("data/renamed")),
    "symlink": lambda: os.symlink("x", p("data/new-link")),
    "hard link": lambda: os.link(p("data/small"), p("data/new-hard")),
    "mknod fifo": lambda: os.mkfifo(p("data/new-fifo")),
    "chmod": lambda: os.chmod(p("data/small"), 0o777),
    "chown": lambda: os.chown(p("data/small"), 1, 1),
    "utime": lambda: os.utime(p("data/small"), (0, 0)),
    "setxattr": lambda: os.setxattr(p("data/small"), "user.new", b"x"),
    "removexattr": lambda: os.removexattr(p("data/xattr-file"), "user.test"),
}
bad = []
for what, f in tries.items():
    try:
        f()
        bad.append("%s succeeded" % what)
    except OSError as e:
        if e.errno != errno.EROFS:
            bad.append("%s: %s, not EROFS" % (what, errno.errorcode.get(e.errno, e.errno)))
for b in bad:
    print(b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
  local err
  err=$( (echo x > "$m/etc/hello") 2>&1 ) && fail "a shell redirection wrote into the mount"
  grep -q "Read-only file system" <<<"$err" || fail "the shell's error is not 'Read-only file system': $err"
  [[ $(sha "$m/etc/hello") == "$before" && -e $m/data/small && ! -e $m/data/new-file ]] || fail "the tree changed"
  trees --mtimes=all "$m" "$UMOCI"
}

# Image files never grant privileges: every mount is nosuid,nodev, so the
# image's device nodes cannot be opened, even by root.
check_mounts_are_nosuid_nodev() {
  load_image
  local m opts err; m=$(img mount localhost/mountfs:1) || fail "img mount failed"
  opts=$(awk -v d="$m" '$5 == d {print $6}' /proc/self/mountinfo)
  [[ ,$opts, == *,nosuid,* && ,$opts, == *,nodev,* ]] || fail "the mount's options are $opts"
  [[ -c $m/dev/null ]] || fail "dev/null is not a character device in the mount"
  err=$( (echo x > "$m/dev/null") 2>&1 ) && fail "root wrote to the image's device node"
  grep -q "Permission denied" <<<"$err" || fail "opening the image's device node: $err"
  [[ $(stat -c %a "$m/bin/suid") == 4755 ]] || fail "the setuid bit is not shown"
}

# ... and many readers at once read every file right.
check_concurrent_readers() {
  load_image
  local m i; m=$(img mount localhost/mountfs:1) || fail "img mount failed"
  (cd "$UMOCI" && find . -type f -print0 | xargs -0 sha256sum | sort) > "$T/want"
  for i in 1 2 3 4 5 6 7 8; do
    (cd "$m" && find . -type f -print0 | xargs -0 sha256sum | sort > "$T/got.$i") &
  done
  wait
  for i in 1 2 3 4 5 6 7 8; do
    cmp -s "$T/want" "$T/got.$i" || fail "reader $i: $(diff "$T/want" "$T/got.$i" | head -5)"
  done
  [[ $(wc -l < "$T/want") -gt 10000 ]] || fail "only $(wc -l < "$T/want") files read"
  [[ -n $(field "$m" Pid) ]] || fail "the mount is gone after the readers"
}

# 3. Lifecycle. img mount prints the directory (under the store's mounts/
# by default; absolute for a relative DIR), usable at once.
check_mount_prints_dir_usable_at_once() {
  load_image
  local out m
  out=$(img mount localhost/mountfs:1) || fail "img mount failed"
  [[ $(wc -l <<<"$out") == 1 ]] || fail "img mount printed more than a line: $out"
  m=$out
  [[ $m == "$(realpath "$IMG_ROOT")/mounts/"* ]] || fail "default mountpoint $m is not under $IMG_ROOT/mounts/"
  [[ $(cat "$m/etc/hello") == "hello v2" ]] || fail "the mount is not usable at once"
  mounted "$m" || fail "$m is not in /proc/self/mountinfo"
  awk -v d="$m" '$5 == d' /proc/self/mountinfo | has ' - fuse' || fail "$m is not a FUSE mount"
  awk -v d="$m" '$5 == d {print $6}' /proc/self/mountinfo | has -w ro || fail "$m is not mounted ro"
  mkdir "$T/work" && cd "$T/work"
  out=$(img mount localhost/mountfs:1 rel) || fail "img mount at a relative DIR failed"
  [[ $out == "$T/work/rel" ]] || fail "img mount printed $out, not $T/work/rel"
  ls "$out/data" | has -x big.bin || fail "$out is not usable at once"
}

# img mounts lists it; its JSON has the fields.
check_mounts_lists_it() {
  load_image
  local m pid; m=$(img mount localhost/mountfs:1 "$T/m") || fail "img mount failed"
  img mounts | has "^$m " || fail "img mounts does not list $m: $(img mounts)"
  mounts_json | python3 -c '
import json, sys, time
rows = json.load(sys.stdin)
want = {"Mountpoint", "Image", "ImageId", "Pid", "ReadOnly", "Mounted", "Created"}
assert isinstance(rows, list) and len(rows) == 1, rows
r = rows[0]
assert want <= set(r), "fields missing: %s" % (want - set(r))
assert r["Mountpoint"] == sys.argv[1], r
assert r["Image"] == "localhost/mountfs:1", r
assert sys.argv[2] in r["ImageId"], r
assert r["ReadOnly"] is True and r["Mounted"] is True, r
assert isinstance(r["Pid"], int) and r["Pid"] > 1, r
assert isinstance(r["Created"], (int, float)) and abs(r["Created"] - time.time()) < 600, r
' "$m" "$ID" || fail "img mounts --format json is wrong: $(img mounts --format json)"
  pid=$(field "$m" Pid)
  [[ $(servers) == "$pid" ]] || fail "Pid $pid is not the one process serving the store ($(servers | xargs))"
}

# img mounts showed the image's first tag whatever name was mounted: it
# shows the name given to img mount (the first tag for an ID).
check_mounts_shows_the_name_mounted() {
  load_image
  img tag localhost/mountfs:1 localhost/zz-second:2
  local m; m=$(img mount localhost/zz-second:2 "$T/m") || fail "img mount failed"
  [[ $(field "$m" Image) == localhost/zz-second:2 ]] || fail "img mounts shows $(field "$m" Image)"
  img mounts | has "localhost/zz-second:2" || fail "the table: $(img mounts)"
  img umount "$m" >/dev/null
  m=$(img mount "${ID:0:12}" "$T/m") || fail "img mount by ID failed"
  [[ $(field "$m" Image) == localhost/mountfs:1 ]] || fail "by ID, img mounts shows $(field "$m" Image), not the first tag"
  img umount "$m" >/dev/null
}

# img umount DIR removes it: not a mountpoint, no row, no server; the
# directory it was given stays, empty.
check_umount_by_dir() {
  load_image
  local m pid; m=$(img mount localhost/mountfs:1 "$T/m") || fail "img mount failed"
  pid=$(field "$m" Pid)
  img umount "$m" >/dev/null || fail "img umount $m failed"
  ! mounted "$m" || fail "$m is still in /proc/self/mountinfo"
  [[ -z $(field "$m" Pid) ]] || fail "img mounts still lists $m"
  gone "$pid" || fail "the server $pid is still running"
  [[ -d $m && -z $(ls -A "$m") ]] || fail "$m is not left as an empty directory"
  # again, by a relative path and with the unmount alias
  img mount localhost/mountfs:1 "$m" >/dev/null || fail "mounting $m again failed"
  (cd "$T" && img unmount m >/dev/null) || fail "img unmount m (relative) failed"
  ! mounted "$m" || fail "$m is still mounted after img unmount"
  no_servers
}

# img umount IMAGE removes every mount of it; umount -a all of them.
check_umount_by_image_and_all() {
  load_image
  local a b
  a=$(img mount localhost/mountfs:1) && b=$(img mount localhost/mountfs:1 "$T/b") || fail "img mount failed"
  img umount localhost/mountfs:1 >/dev/null || fail "img umount IMAGE failed"
  ! mounted "$a" && ! mounted "$b" || fail "still mounted after img umount IMAGE"
  [[ $(mounts_json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') == 0 ]] || fail "rows left"
  img mount localhost/mountfs:1 "$T/b" >/dev/null && img mount "$ID" "$T/c" >/dev/null || fail "img mount failed"
  img umount "${ID:0:12}" >/dev/null || fail "img umount SHORT-ID failed"
  ! mounted "$T/b" && ! mounted "$T/c" || fail "still mounted after img umount by ID"
  img mount localhost/mountfs:1 "$T/b" >/dev/null && img mount localhost/mountfs:1 "$T/c" >/dev/null || fail "img mount failed"
  img umount -a --discard >/dev/null || fail "img umount -a failed"
  ! mounted "$T/b" && ! mounted "$T/c" || fail "still mounted after img umount -a"
  no_servers
  local err; err=$(img umount "$T/b" 2>&1) && fail "img umount of a directory not mounted succeeded"
  grep -q "not an img mount" <<<"$err" || fail "unclear error: $err"
}

# Mounting on a non-empty directory, or on one already mounted, fails
# clearly and changes nothing.
check_mount_refuses_busy_dirs() {
  load_image
  local err m
  mkdir -p "$T/full" && echo x > "$T/full/file"
  err=$(img mount localhost/mountfs:1 "$T/full" 2>&1) && fail "mounting on a non-empty directory succeeded"
  grep -q "not empty" <<<"$err" || fail "unclear error: $err"
  ! mounted "$T/full" && [[ $(cat "$T/full/file") == x ]] || fail "the non-empty directory changed"
  m=$(img mount localhost/mountfs:1 "$T/m") || fail "img mount failed"
  err=$(img mount localhost/mountfs:1 "$T/m" 2>&1) && fail "mounting on a mounted directory succeeded"
  grep -qi "already" <<<"$err" || fail "unclear error: $err"
  [[ $(awk -v d="$m" '$5 == d' /proc/self/mountinfo | wc -l) == 1 ]] || fail "$m is mounted twice"
  [[ $(cat "$m/etc/hello") == "hello v2" ]] || fail "the first mount broke"
  [[ $(mounts_json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') == 1 ]] || fail "rows: $(img mounts)"
  [[ -z $(servers | grep -v "^$(field "$m" Pid)$") ]] || fail "a second server runs"
}

# A missing image: exit 1, a clear error, no server, no row.
check_mount_missing_image_fails() {
  load_image
  local err rc=0
  err=$(img mount localhost/no-such:1 "$T/m" 2>&1) || rc=$?
  [[ $rc == 1 ]] || fail "exit status $rc, not 1"
  grep -q "no-such" <<<"$err" || fail "the error does not name the image: $err"
  sleep 0.2
  [[ -z $(servers) ]] || fail "a server was left: $(servers)"
  ! mounted "$T/m" || fail "$T/m got mounted"
  [[ $(mounts_json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') == 0 ]] || fail "a row was left"
}

# rmi of a mounted image is refused (saying to umount); rmi -f removes the
# image, and then no mount is left serving a deleted image half-broken:
# it is unmounted, or it still reads every file right.
check_rmi_of_mounted_image() {
  load_image
  local m err; m=$(img mount localhost/mountfs:1 "$T/m") || fail "img mount failed"
  err=$(img rmi localhost/mountfs:1 2>&1) && fail "img rmi of a mounted image succeeded"
  grep -q "umount" <<<"$err" || fail "the error does not say to umount: $err"
  img inspect localhost/mountfs:1 >/dev/null || fail "the image is gone after a refused rmi"
  [[ $(cat "$m/etc/hello") == "hello v2" ]] || fail "the mount broke after a refused rmi"
  img rmi -f localhost/mountfs:1 >/dev/null || fail "img rmi -f failed"
  ! img inspect localhost/mountfs:1 >/dev/null 2>&1 || fail "the image is still there after rmi -f"
  [[ -z $(img images -q) ]] || fail "images left: $(img images)"
  img fsck >/dev/null || fail "img fsck after rmi -f: $(img fsck 2>&1)"
  if mounted "$m"; then
    python3 "$TREE" cmp --mtimes=all "$m" "$UMOCI" >/dev/null 2>"$T/cmp" ||
      fail "after rmi -f the mount at $m is still there, but no longer reads right: $(tail -n 1 "$T/cmp"); first: $(head -c 400 "$T/cmp")"
  else
    [[ -z $(field "$m" Pid) ]] || fail "after rmi -f, $m is unmounted but still listed"
  fi
}

# prune spares a mounted (untagged, so dangling) image, and removes it
# once unmounted.
check_prune_spares_mounted_image() {
  img load -q -i "$GEN/full" >/dev/null || fail "img load failed"
  # The layout's bare ref.name names it localhost/1:latest: another image
  # takes that name, so that this one is dangling.
  img tag "$(img load -q -i "$GEN/sparse" | tail -1)" localhost/1:latest || fail "img load of another image failed"
  img images -q --no-trunc --filter dangling=true | has "$ID" || fail "the image is not dangling: $(img images)"
  local m; m=$(img mount "$ID" "$T/m") || fail "img mount failed"
  img prune -f >/dev/null || fail "img prune failed"
  img images -q --no-trunc | has "$ID" || fail "img prune removed the mounted image"
  trees --mtimes=all "$m" "$UMOCI"
  img umount "$m" >/dev/null || fail "img umount failed"
  img prune -f >/dev/null || fail "img prune failed"
  ! img images -q --no-trunc | has "$ID" || fail "img prune kept the image once unmounted"
  img fsck >/dev/null || fail "img fsck: $(img fsck 2>&1)"
}

# kill -9 of the server: img mounts warns, unmounts it and forgets it;
# the store is clean and the directory can be mounted again.
check_killed_server_is_reported_and_cleaned() {
  load_image
  local m pid err; m=$(img mount localhost/mountfs:1 "$T/m") || fail "img mount failed"
  pid=$(field "$m" Pid)
  [[ -n $pid ]] || fail "no Pid for $m"
  kill -9 "$pid"
  gone "$pid" || fail "the server $pid did not die"
  img mounts --format json > "$T/out" 2> "$T/err" || fail "img mounts failed: $(cat "$T/err")"
  grep -qi "warning" "$T/err" && grep -qF "$m" "$T/err" || fail "no warning naming $m: $(cat "$T/err")"
  [[ $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$T/out") == 0 ]] ||
    fail "the dead mount is still listed: $(cat "$T/out")"
  ! mounted "$m" || fail "$m is still in /proc/self/mountinfo"
  err=$(img mounts 2>&1 >/dev/null)
  [[ -z $err ]] || fail "a second img mounts still warns: $err"
  img fsck >/dev/null || fail "img fsck: $(img fsck 2>&1)"
  m=$(img mount localhost/mountfs:1 "$T/m") || fail "mounting $T/m again failed"
  [[ $(cat "$m/etc/hello") == "hello v2" ]] || fail "the new mount does not read"
}

# corrupt_layer_2: flips 64 bytes in the middle of layer 2's gzip blob
# (under data/corrupt-me.txt), after the mount was made.
corrupt_layer_2() {
  local blob; blob=$IMG_ROOT/blobs/sha256/$(layer_hex 2)
  [[ -f $blob ]] || fail "no blob $blob"
  chmod u+w "$blob"
  python3 - "$blob" <<'PY'
import os, sys
p = sys.argv[1]
n = os.path.getsize(p)
with open(p, "r+b") as f:
    f.seek(n // 2)
    b = f.read(64)
    f.seek(n // 2)
    f.write(bytes(x ^ 0xFF for x in b))
PY
  ! img fsck >/dev/null 2>&1 || fail "img fsck does not see the corruption (not made?)"
}

# A corrupted layer: reading the affected file fails with EIO, and what it
# gave before failing is the true start of the file, never wrong bytes.
check_corrupt_layer_read_fails_with_eio() {
  load_image
  local m rc=0; m=$(img mount localhost/mountfs:1 "$T/m") || fail "img mount failed"
  corrupt_layer_2
  cat "$m/data/corrupt-me.txt" > "$T/got" 2> "$T/err" || rc=$?
  cmp -s "$T/got" "$UMOCI/data/corrupt-me.txt" && fail "the whole file read right (no corruption there?)"
  cmp -n "$(stat -c %s "$T/got")" "$T/got" "$UMOCI/data/corrupt-me.txt" >/dev/null ||
    fail "wrong bytes were served: cat exited $rc after $(stat -c %s "$T/got") bytes, first difference at byte $(cmp "$T/got" "$UMOCI/data/corrupt-me.txt" | awk '{print $5}' | tr -d ,)"
  [[ $rc != 0 ]] || fail "cat exited 0"
  grep -q "Input/output error" "$T/err" || fail "cat's error is not EIO: $(cat "$T/err")"
}

# ... while the other files, the mount and its server keep working.
check_corrupt_layer_leaves_the_rest_working() {
  load_image
  local m pid f; m=$(img mount localhost/mountfs:1 "$T/m") || fail "img mount failed"
  pid=$(field "$m" Pid)
  corrupt_layer_2
  cat "$m/data/corrupt-me.txt" > /dev/null 2>&1 || true
  for f in data/before-corrupt data/big.bin data/text.txt data/l3.bin data/zstd.txt data/zstd.bin many/d099/f09999 \
           "deep/$(seq -f 'l%03g' 1 200 | paste -sd/)/from-layer-4"; do
    [[ $(sha "$m/$f") == "$(sha "$UMOCI/$f")" ]] || fail "$f no longer reads right"
  done
  [[ $(ls "$m" | wc -l) -gt 10 ]] || fail "listing the root fails"
  [[ -d /proc/$pid ]] || fail "the server $pid died"
  [[ $(field "$m" Mounted) == true ]] || fail "img mounts no longer shows $m mounted"
  img umount "$m" >/dev/null || fail "img umount failed"
}

# layers LAYOUT: "COMPRESSION BLOB" per layer of the layout's image, bottom first
layers() {
  python3 - "$1" <<'PY'
import json, sys
root = sys.argv[1]
ix = json.load(open(root + "/index.json"))
m = json.load(open(root + "/blobs/sha256/" + ix["manifests"][0]["digest"].split(":")[1]))
for l in m["layers"]:
    how = "gzip" if l["mediaType"].endswith("+gzip") else "zstd" if l["mediaType"].endswith("+zstd") else "none"
    print(how, root + "/blobs/sha256/" + l["digest"].split(":")[1])
PY
}

# Sparse files read as GNU tar extracts them: old GNU entries (one with 3
# extension blocks; a 5 GiB one with data at 0, in the middle, across 4 GiB
# and near the end) and the PAX formats 1.0, 0.1 and 0.0, the whole tree
# compared (sizes, every byte hashed, modes, owners, mtimes).
check_sparse_files_read_as_gnu_tar_extracts() {
  local id m x=$T/x how blob t0
  id=$(img load -q -i "$GEN/sparse") || fail "img load of the sparse image failed"
  m=$(img mount "$id" "$T/m") || fail "img mount of the sparse image failed"
  mkdir "$x"
  while read -r how blob; do
    case $how in
      gzip) gzip -dc "$blob" ;;
      zstd) zstd -qdc "$blob" ;;
      *) cat "$blob" ;;
    esac | tar --numeric-owner -xpf - -C "$x" || fail "GNU tar could not extract $blob"
  done < <(layers "$GEN/sparse")
  [[ $(stat -c %s "$x/data/big.img") == 5368709120 ]] || fail "GNU tar's data/big.img is not 5 GiB"
  t0=$(now)
  trees --mtimes=all "$m" "$x"
  echo "the mount and GNU tar's extraction, every file hashed: $(since "$t0") s"
}

# ... and as stated here: each file's size, its data islands (offset,
# length, sha256 from LAYOUT/sparse.json), zeros around them and in the
# middle of each hole, and blocks that count the data only.
check_sparse_files_hold_their_islands() {
  local id m
  id=$(img load -q -i "$GEN/sparse") || fail "img load of the sparse image failed"
  m=$(img mount "$id" "$T/m") || fail "img mount of the sparse image failed"
  python3 - "$m" "$GEN/sparse/sparse.json" <<'PY' || fail "the sparse files are wrong"
import hashlib, json, os, sys
m, files = sys.argv[1], json.load(open(sys.argv[2]))
bad = []
for name, f in sorted(files.items()):
    p = os.path.join(m, name)
    st = os.stat(p)
    islands = f["islands"]
    stored = sum(n for _, n, _ in islands)
    if st.st_size != f["size"]:
        bad.append("%s: %d bytes, not %d" % (name, st.st_size, f["size"]))
    if st.st_blocks != -(-stored // 512):
        bad.append("%s: %d blocks, not %d (the data's)" % (name, st.st_blocks, -(-stored // 512)))
    holes, end = [], 0
    for off, n, _ in islands + [[f["size"], 0, None]]:
        if off > end:
            holes.append((end, off))
        end = off + n
    with open(p, "rb") as fh:
        for off, n, want in islands:
            fh.seek(off)
            if hashlib.sha256(fh.read(n)).hexdigest() != want:
                bad.append("%s: the island at %d is wrong" % (name, off))
        for a, b in holes:
            for at in sorted({a, max(a, b - 4096), (a + b) // 2}):
                fh.seek(at)
                got = fh.read(min(4096, b - at))
                if got != bytes(min(4096, b - at)):
                    bad.append("%s: the hole at %d holds data" % (name, at))
        fh.seek(f["size"])
        if fh.read(10):
            bad.append("%s: bytes after the end" % name)
for b in bad:
    print(b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

# ... and as umoci unpacks the PAX formats (it refuses old GNU sparse entries).
check_sparse_pax_files_match_umoci_unpack() {
  local id m
  id=$(img load -q -i "$GEN/sparse") || fail "img load of the sparse image failed"
  m=$(img mount "$id" "$T/m") || fail "img mount of the sparse image failed"
  umoci unpack --image "$GEN/sparse-pax:1" "$T/umoci" >/dev/null || fail "umoci unpack of the PAX layers failed"
  [[ -f $T/umoci/rootfs/pax/v10.img ]] || fail "umoci unpacked no pax/v10.img"
  trees --mtimes=all "$m/pax" "$T/umoci/rootfs/pax"
}

# img export writes the sparse files whole (plain entries), as the mount shows them.
check_sparse_image_exports_right() {
  local id m
  id=$(img load -q -i "$GEN/sparse") || fail "img load of the sparse image failed"
  m=$(img mount "$id" "$T/m") || fail "img mount of the sparse image failed"
  img export "$id" | python3 "$TREE" cmp --mtimes=all "$m" - >/dev/null 2>"$T/cmp" ||
    fail "img export differs from the mount: $(head -c 1500 "$T/cmp")"
}

# A layer with a hostile sparse map (overlapping segments): the mount fails
# with an error naming the entry, and leaves no server, row or mount; the
# store stays clean.
check_hostile_sparse_map_refused() {
  local id err rc=0
  id=$(img load -q -i "$GEN/hostile") || fail "img load of the hostile image failed"
  err=$(img mount "$id" 2>&1) || rc=$?
  [[ $rc == 1 ]] || fail "img mount exited $rc, not 1: $err"
  grep -q "data/overlap.img" <<<"$err" && grep -qi "sparse map" <<<"$err" || fail "the error does not name the entry: $err"
  sleep 0.2
  [[ -z $(servers) ]] || fail "a server was left: $(servers)"
  [[ $(mounts_json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') == 0 ]] || fail "a row was left"
  ! grep -qF " $IMG_ROOT/" /proc/self/mountinfo || fail "something is mounted under the store"
  img fsck >/dev/null || fail "img fsck: $(img fsck 2>&1)"
  img inspect "$id" >/dev/null || fail "the image is gone"
}

# ... nor the directory it made for the mount under the store.
check_failed_mount_removes_its_directory() {
  local id; id=$(img load -q -i "$GEN/hostile") || fail "img load failed"
  id=${id#sha256:}
  ! img mount "$id" >/dev/null 2>&1 || fail "img mount of the hostile image succeeded"
  [[ ! -e $IMG_ROOT/mounts/${id:0:12} ]] || fail "img mount left the directory $IMG_ROOT/mounts/${id:0:12} it made"
}

# 3b. Writable mounts and commit.

# The paths make_changes touches.
CHANGED=newfile,etc/hello,data/text.txt,data/big.bin,data/small,data/orig,data/renamed,data/empty,l3dir,new

# make_changes DIR: every kind of change, made through a writable mount
make_changes() {
  local m=$1
  echo "made in the mount" > "$m/newfile"
  mkdir -p "$m/new/dir" && ln -s ../newfile "$m/new/dir/link"
  ln "$m/newfile" "$m/new/hardlink"      # (before the chown: protected_hardlinks)
  chown 1234:5678 "$m/newfile"
  chmod 4750 "$m/newfile"
  echo "overwritten" > "$m/etc/hello"                   # overwrite a lower file
  echo "appended" >> "$m/data/text.txt"                 # append
  truncate -s 3 "$m/data/big.bin"                       # truncate
  chmod 0600 "$m/data/small"                            # chmod only (a copy-up of metadata)
  mv "$m/data/orig" "$m/data/renamed"                   # rename a lower file
  rm "$m/data/empty"                                    # delete a lower file
  rm -rf "$m/l3dir" && mkdir "$m/l3dir" && echo z > "$m/l3dir/z"   # replace a directory
  mkfifo "$m/new/fifo"
  setfattr -n user.note -v committed "$m/new/dir"
}

# Every change is seen through the mount, kept in the store only, and
# committed as one layer; the new image mounted read-only is the writable
# mount, path for path (umoci unpack of it too); the base image is unchanged.
check_writable_mount_commit() {
  load_image "$GEN/twin"    # the layout without zstd layers, which umoci reads
  local m r; m=$(img mount --rw localhost/mountfs:1 "$T/m") || fail "img mount --rw failed"
  [[ $(field "$m" ReadOnly) == false ]] || fail "img mounts does not say it is writable"
  make_changes "$m"
  [[ $(cat "$m/etc/hello") == overwritten && ! -e $m/data/empty && -e $m/data/renamed ]] ||
    fail "the changes are not seen through the mount"
  img fsck >/dev/null || fail "img fsck after the changes: $(img fsck 2>&1)"
  img commit -a "Jane <jane@example.com>" -m "a test change" -c 'ENV COMMITTED=1' "$m" localhost/committed:1 \
    > "$T/id" 2> "$T/err" || fail "img commit failed: $(cat "$T/err")"
  grep -q "deleted" "$T/err" || fail "img commit did not say what it committed: $(cat "$T/err")"
  [[ $(img inspect -f '{{.Author}}|{{index .Config.Env 0}}' localhost/committed:1) == "Jane <jane@example.com>|COMMITTED=1" ]] ||
    fail "author or env not in the config: $(img inspect -f '{{.Author}}|{{.Config.Env}}' localhost/committed:1)"
  img history localhost/committed:1 | sed -n 2p | has "a test change" || fail "no history entry with the message"
  [[ $(img inspect -f '{{len .RootFS.Layers}}' localhost/committed:1) == 5 ]] || fail "not one new layer on the 4"
  r=$(img mount localhost/committed:1 "$T/r") || fail "mounting the committed image failed"
  trees --mtimes=files "$m" "$r"
  # umoci reads the committed layer (OCI whiteouts and opaque directories) the same way.
  img copy img:localhost/committed:1 "oci:$T/layout:1" >/dev/null || fail "copying the committed image to an OCI layout failed"
  umoci unpack --image "$T/layout:1" "$TMPFS/committed" >/dev/null || fail "umoci unpack of the committed image failed"
  trees --mtimes=files "$m" "$TMPFS/committed/rootfs"
  rm -rf "$TMPFS/committed"
  img umount "$r" >/dev/null
  # The base image is as it was.
  r=$(img mount localhost/mountfs:1 "$T/base") || fail "mounting the base image failed"
  trees --mtimes=all "$r" "$UMOCI"
  img umount "$m" >/dev/null || fail "img umount of the committed mount failed"
  [[ -z $(ls "$IMG_ROOT/mounts" | grep '^rw-') ]] || fail "the writable mount's state is left: $(ls "$IMG_ROOT/mounts")"
  img fsck >/dev/null || fail "img fsck: $(img fsck 2>&1)"
}

# podman loads the committed image saved by img and sees the same tree.
# Links made in a writable mount are committed as links: the files they
# point to (outside the mount, or root's only) never end up in the layer.
check_commit_keeps_links_as_links() {
  load_image
  local m; m=$(img mount --rw localhost/mountfs:1 "$T/m") || fail "img mount --rw failed"
  ln -s /etc/shadow "$m/leak" && ln -s / "$m/hostroot" && ln -s ../../../../etc "$m/data/up" || fail "ln -s in the mount"
  mkdir -p "$m/deep/er" && ln -s /etc/passwd "$m/deep/er/pw" || fail "mkdir in the mount"
  img commit -q "$m" localhost/links:1 >/dev/null 2> "$T/err" || fail "img commit failed: $(cat "$T/err")"
  img export localhost/links:1 | tar -tv > "$T/list" || fail "img export of the committed image"
  for p in leak:/etc/shadow hostroot:/ data/up:../../../../etc deep/er/pw:/etc/passwd; do
    grep -qE "^l.* ${p%%:*} -> ${p#*:}\$" "$T/list" || fail "${p%%:*} is not a link to ${p#*:} in the layer: $(grep " ${p%%:*}" "$T/list")"
  done
  img export localhost/links:1 | tar -xO leak hostroot 2>/dev/null | has . && fail "a link's target was read into the layer"
  grep -q "root:" <(img export localhost/links:1 | tar -xO 2>/dev/null) && fail "the layer holds a line of /etc/shadow or /etc/passwd"
  img umount --discard "$m" >/dev/null
}

check_committed_image_loads_in_podman() {
  load_image
  local m p run; run=$(mktemp -d /tmp/img-pr.XXXXXX)   # podman wants a short runroot
  m=$(img mount --rw localhost/mountfs:1 "$T/m") || fail "img mount --rw failed"
  make_changes "$m"
  img commit -q "$m" localhost/committed:2 >/dev/null || fail "img commit failed"
  img save -o "$T/c.tar" localhost/committed:2 || fail "img save failed"
  podman --root "$T/podman" --runroot "$run" --storage-driver vfs load -i "$T/c.tar" > "$T/plog" 2>&1 ||
    fail "podman load failed: $(tail -5 "$T/plog")"
  p=$(podman --root "$T/podman" --runroot "$run" --storage-driver vfs image mount localhost/committed:2) ||
    fail "podman image mount failed"
  # (podman's copy of the base image differs from umoci's in hard links
  # across layers, so only what the commit changed is compared.)
  trees --mtimes=files --only="$CHANGED" "$m" "$p"
  podman --root "$T/podman" --runroot "$run" --storage-driver vfs image unmount -a >/dev/null 2>&1 || true
  rm -rf "$run"
  img umount "$m" >/dev/null
}

# Changes not committed are never lost by umount: refused, and kept until
# commit or --discard; a killed server leaves them for a commit or a new mount.
check_writable_umount_keeps_or_discards_changes() {
  load_image
  local m pid out; m=$(img mount --rw localhost/mountfs:1 "$T/m") || fail "img mount --rw failed"
  echo kept > "$m/kept"
  ! img umount "$m" 2> "$T/err" || fail "img umount of uncommitted changes succeeded"
  grep -q "img commit" "$T/err" && grep -q -- "--discard" "$T/err" || fail "the refusal does not say what to do: $(cat "$T/err")"
  mounted "$m" || fail "the refused umount unmounted it"
  pid=$(field "$m" Pid)
  kill -9 "$pid"; gone "$pid" || fail "the server did not die"
  img mounts --format json > "$T/out" 2> "$T/err" || fail "img mounts failed"
  grep -q "not committed" "$T/err" || fail "img mounts does not warn of the kept changes: $(cat "$T/err")"
  [[ $(field "$m" Serving) == false ]] || fail "the stopped mount is not listed as not serving"
  ! mounted "$m" || fail "the overlay of a dead server is still mounted"
  ! img umount "$m" 2>/dev/null || fail "img umount dropped changes of a dead mount"
  # Mounting the same image there again takes the changes up.
  m=$(img mount --rw localhost/mountfs:1 "$T/m") || fail "mounting again failed"
  [[ $(cat "$m/kept") == kept ]] || fail "the kept change is not back"
  echo more > "$m/more"
  img commit -q "$m" localhost/kept:1 >/dev/null || fail "img commit failed"
  img umount "$m" >/dev/null || fail "img umount after the commit failed"
  # --discard drops changes.
  m=$(img mount --rw localhost/mountfs:1 "$T/m") || fail "img mount --rw failed"
  [[ ! -e $m/kept ]] || fail "a new writable mount shows the old changes"
  rm "$m/etc/hello"
  img umount --discard "$m" >/dev/null || fail "img umount --discard failed"
  [[ -z $(ls "$IMG_ROOT/mounts" | grep '^rw-') ]] || fail "state left after --discard: $(ls "$IMG_ROOT/mounts")"
  m=$(img mount localhost/kept:1 "$T/k") || fail "mounting the committed image failed"
  [[ $(cat "$m/kept") == kept && $(cat "$m/more") == more && -e $m/etc/hello ]] || fail "the committed image is wrong"
  img umount "$m" >/dev/null
  img fsck >/dev/null || fail "img fsck: $(img fsck 2>&1)"
}

# img commit killed at moments spread over its run: no image appears, the
# store stays clean (img fsck), the changes stay, and a new commit works.
check_commit_killed_leaves_store_clean() {
  load_image
  local m m2 i pid delay listed finished=0 full trials=20 seed=${IMG_TEST_SEED:-24601} t0
  [[ ${IMG_TEST_LONG:-} == 1 ]] && trials=100
  m=$(img mount --rw localhost/mountfs:1 "$T/m") || fail "img mount --rw failed"
  head -c 64M /dev/urandom > "$m/random.bin"
  # How long a whole commit of the same changes takes (on another mount, so
  # that the changes of $m stay uncommitted).
  m2=$(img mount --rw localhost/mountfs:1 "$T/m2") || fail "the second img mount --rw failed"
  cp "$m/random.bin" "$m2/random.bin"
  t0=$EPOCHREALTIME
  img commit -q "$m2" localhost/timing:1 >/dev/null || fail "the timing commit failed"
  full=$(python3 -c "print(int(($EPOCHREALTIME - $t0) * 1000))")
  img umount "$m2" >/dev/null && img rmi localhost/timing:1 >/dev/null || fail "removing the timing commit"
  echo "# a whole commit takes $full ms; $trials kills at seeded moments up to 1.2 times that (seed $seed)" >&2
  RANDOM=$seed
  for i in $(seq "$trials"); do
    delay=$(awk -v ms=$(( (RANDOM * 32768 + RANDOM) % (full * 12 / 10 + 1) )) 'BEGIN {printf "%.3f", ms / 1000}')
    # The binary itself, not the img function: killing the subshell that
    # runs a function would leave the commit running.
    "$IMG" commit -q "$m" localhost/killed:1 >/dev/null 2>&1 &
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # (A listing that fails would hide a finished commit: it fails the check.)
    listed=$(img images --format '{{.Repository}}' 2>&1) ||
      fail "img images after a commit killed at ${delay}s failed: $listed"
    if grep -q killed <<< "$listed"; then
      # The commit finished before the kill: fine, but then it is whole.
      img mount localhost/killed:1 "$T/k$i" >/dev/null || fail "the commit that finished does not mount"
      cmp -s "$T/k$i/random.bin" "$m/random.bin" || fail "the finished commit lost data"
      img umount "$T/k$i" >/dev/null
      img rmi localhost/killed:1 >/dev/null
      finished=$((finished + 1))
    fi
    img fsck >/dev/null 2>&1 || fail "img fsck after a commit killed at ${delay}s: $(img fsck 2>&1 | tail -3)"
  done
  echo "# $((trials - finished)) of $trials commits killed before they finished" >&2
  # Killed commits do not count as commits.
  (( finished > 0 )) || ! img umount "$m" 2>/dev/null ||
    fail "the changes were taken as committed; images: $(img images 2>&1); mounts: $(img mounts --format json 2>&1)"
  img commit -q "$m" localhost/after:1 >/dev/null || fail "img commit after the kills failed"
  # No temporary file of the killed commits outlives the next command.
  [[ -z $(ls -A "$IMG_ROOT/ingest" 2>/dev/null) ]] || fail "ingest/ kept $(ls "$IMG_ROOT/ingest")"
  img umount "$m" >/dev/null || fail "img umount after the commit failed"
  img prune -f >/dev/null 2>&1 || true
  img fsck >/dev/null || fail "img fsck at the end: $(img fsck 2>&1)"
}

# An iSulad embedded image mounts as iSulad assembles it: the host's / as
# layer 0 (read-only), a squashfs layer at its pathInContainer (/srv), all
# read-only; rmi is refused while mounted; umount takes every layer down.
check_embedded_image_mounts_as_isulad_does() {
  local e=$T/embedded m sha
  mkdir -p "$e/content/sub" "$e/layers"
  echo "from the squashfs layer" > "$e/content/hello"
  head -c 300000 /dev/urandom > "$e/content/sub/data.bin"
  mksquashfs "$e/content" "$e/layers/app.sqfs" -noappend -quiet -all-root >/dev/null || fail "mksquashfs failed"
  sha=$(sha256sum < "$e/layers/app.sqfs" | cut -d' ' -f1)
  python3 - "$e" "$sha" "$(stat -c %s "$e/layers/app.sqfs")" <<'PY'
import hashlib, json, sys
d, sha, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
m = {"schemaVersion": 1, "mediaType": "application/embedded.manifest+json", "imageName": "emb:1",
     "created": "2024-01-02T03:04:05+08:00", "config": {"Env": ["A=1"]},
     "layers": [{"mediaType": "application/bind.image.rootfs.diff.dir", "pathInHost": "/", "pathInContainer": "",
                 "digest": "", "size": 0},
                {"mediaType": "application/squashfs.image.rootfs.diff.img", "pathInHost": "layers/app.sqfs",
                 "pathInContainer": "/srv", "digest": "sha256:" + sha, "size": size}]}
b = json.dumps(m).encode()
open(d + "/app.manifest", "wb").write(b)
open(d + "/app.sgn", "w").write("sha256:" + hashlib.sha256(b).hexdigest() + "\n")
PY
  img load --type embedded -i "$e/app.manifest" >/dev/null || fail "img load --type embedded failed"
  ! img mount --rw emb:1 "$T/rw" 2> "$T/err" || fail "a writable embedded mount succeeded"
  grep -q "read-only" "$T/err" || fail "the --rw refusal does not say why: $(cat "$T/err")"
  m=$(img mount emb:1 "$T/m") || fail "img mount of the embedded image failed"
  cmp -s "$m/etc/os-release" /etc/os-release || fail "layer 0 is not the host's root"
  [[ $(cat "$m/srv/hello") == "from the squashfs layer" ]] || fail "the squashfs layer is not at /srv"
  cmp -s "$m/srv/sub/data.bin" "$e/content/sub/data.bin" || fail "the squashfs layer's data differs"
  ! touch "$m/srv/new" 2>/dev/null || fail "the squashfs layer is writable"
  ! touch "$m/tmp/img-embedded-write-test" 2>/dev/null || fail "layer 0 is writable"
  [[ $(field "$m" ReadOnly) == true ]] || fail "img mounts does not list it read-only"
  ! img rmi emb:1 2>/dev/null || fail "rmi of the mounted embedded image succeeded"
  img umount "$m" >/dev/null || fail "img umount failed"
  [[ -z $(awk -v d="$m" 'index($5, d) == 1' /proc/self/mountinfo) ]] || fail "mounts left under $m"
  [[ $(mounts_json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') == 0 ]] || fail "still listed"
  img rmi emb:1 >/dev/null || fail "rmi after umount failed"
}

# Regression: with a relative --root, the state directory was recorded
# relative, so commit and umount run elsewhere missed the changes.
check_relative_root_keeps_changes() {
  local rel=$T/rel
  mkdir -p "$rel"
  (cd "$rel" && "$IMG" --root s load -q -i "$GEN/full" >/dev/null && "$IMG" --root s mount --rw "$ID" "$rel/w" >/dev/null) ||
    fail "mount --rw with a relative --root failed"
  echo hi > "$rel/w/new"
  (cd / && "$IMG" --root "$rel/s" commit "$rel/w" localhost/rel:1 2> "$T/err" >/dev/null) || fail "commit failed: $(cat "$T/err")"
  grep -q "1 added" "$T/err" || fail "the commit missed the change: $(cat "$T/err")"
  echo more > "$rel/w/more"
  ! (cd / && "$IMG" --root "$rel/s" umount "$rel/w" 2>/dev/null) || fail "umount dropped an uncommitted change"
  (cd / && "$IMG" --root "$rel/s" umount --discard "$rel/w" >/dev/null) || fail "umount --discard failed"
}

# A read-only mount is not committable. rmi -f of an image mounted
# writable with changes not committed unmounted it and threw the changes
# away: now it refuses as umount does, and keeps mount and changes; after
# img umount --discard, rmi -f goes on.
check_rmi_f_keeps_uncommitted_changes() {
  load_image
  local m; m=$(img mount localhost/mountfs:1 "$T/ro") || fail "img mount failed"
  ! img commit "$m" localhost/x:1 2> "$T/err" || fail "img commit of a read-only mount succeeded"
  grep -q -- "--rw" "$T/err" || fail "the refusal does not say to mount with --rw: $(cat "$T/err")"
  img umount "$m" >/dev/null
  m=$(img mount --rw localhost/mountfs:1 "$T/m") || fail "img mount --rw failed"
  echo x > "$m/x"
  ! img rmi localhost/mountfs:1 2>/dev/null || fail "rmi of a mounted image succeeded"
  ! img rmi -f localhost/mountfs:1 > "$T/out" 2> "$T/err" || fail "img rmi -f threw away changes not committed: $(cat "$T/out")"
  img umount "$m" 2> "$T/umount.err" && fail "img umount took changes not committed"
  [[ $(sed 's/^error: //' "$T/err") == $(sed 's/^error: //' "$T/umount.err") ]] || fail "rmi -f and umount refuse differently: $(cat "$T/err") / $(cat "$T/umount.err")"
  mounted "$m" && [[ $(cat "$m/x") == x ]] || fail "the mount or its change went"
  img inspect localhost/mountfs:1 >/dev/null || fail "the image went"
  img umount --discard "$m" >/dev/null || fail "img umount --discard failed"
  img rmi -f localhost/mountfs:1 >/dev/null || fail "img rmi -f after --discard failed"
  [[ -z $(ls "$IMG_ROOT/mounts" | grep '^rw-') ]] || fail "state left after --discard and rmi -f"
  img fsck >/dev/null || fail "img fsck: $(img fsck 2>&1)"
}

# The other ways a mount goes: umount -a unmounts the others and refuses
# (non-zero) the one with changes; img prune -a keeps the image a stopped
# writable mount's changes are on (its server killed); rmi -f of it is
# refused too; img mounts (which cleans up after dead servers) keeps the
# changes; they can be committed.
check_every_unmount_path_keeps_uncommitted_changes() {
  load_image
  local ro rw pid
  ro=$(img mount localhost/mountfs:1 "$T/ro") || fail "img mount failed"
  rw=$(img mount --rw localhost/mountfs:1 "$T/rw") || fail "img mount --rw failed"
  echo kept > "$rw/kept"
  img umount -a > "$T/out" 2> "$T/err" && fail "umount -a succeeded over changes not committed"
  ! mounted "$ro" || fail "umount -a did not unmount the read-only mount"
  mounted "$rw" && [[ $(cat "$rw/kept") == kept ]] || fail "umount -a lost the writable mount"
  has 'not committed' "$T/err" || fail "umount -a does not say why: $(cat "$T/err")"
  pid=$(field "$rw" Pid); kill -9 "$pid"; gone "$pid" || fail "the server did not die"
  img mounts >/dev/null 2>&1 || fail "img mounts failed"
  img prune -a -f >/dev/null 2>&1 || fail "img prune -a failed"
  img inspect localhost/mountfs:1 >/dev/null 2>&1 || fail "prune -a removed the base of changes not committed"
  ! img rmi -f localhost/mountfs:1 2>/dev/null || fail "rmi -f removed the base of a stopped mount's changes"
  img fsck --repair >/dev/null 2>&1 || fail "img fsck --repair failed"
  rw=$(img mount --rw localhost/mountfs:1 "$T/rw") || fail "mounting again failed"
  [[ $(cat "$rw/kept") == kept ]] || fail "the change did not survive"
  img commit -q "$rw" localhost/kept:1 >/dev/null || fail "img commit failed"
  img umount "$rw" >/dev/null || fail "umount after commit failed"
}

# Four processes each mounting and unmounting one image at their own
# directories, with img mounts and img prune beside them, left FUSE
# mounts img no longer listed (an old server removed the record of the
# new mount at its directory). Now every mount that exists is listed and
# img umount takes it; none is left.
check_concurrent_mounts_keep_their_records() {
  load_image
  local secs=20 w end
  [[ ${IMG_TEST_LONG:-} == 1 ]] && secs=60
  end=$((SECONDS + secs))
  for w in 1 2 3 4; do
    ( n=0; mkdir -p "$T/w$w"
      while ((SECONDS < end)); do
        m=$(img mount localhost/mountfs:1 "$T/w$w" 2>>"$T/errors.$w") || { echo "mount $n failed" >> "$T/errors.$w"; continue; }
        [[ -e $m/etc/hello ]] || echo "mount $n does not read" >> "$T/errors.$w"
        img umount "$m" >/dev/null 2>>"$T/errors.$w" || echo "umount $n failed" >> "$T/errors.$w"
        n=$((n + 1))
      done; echo "$n" > "$T/count.$w" ) &
  done
  ( while ((SECONDS < end)); do img mounts >/dev/null 2>&1; img prune -f >/dev/null 2>&1; done ) &
  wait
  local total=0 f
  for f in "$T"/count.*; do total=$((total + $(cat "$f"))); done
  ((total > 20)) || fail "only $total mounts were made"
  local left; left=$(awk -v d="$T/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo)
  [[ -z $left ]] || fail "mounts left after the battery: $left; img mounts lists: $(img mounts 2>&1)"
  no_servers
  [[ $(mounts_json) == "[]" ]] || fail "records left: $(mounts_json)"
  if cat "$T"/errors.* 2>/dev/null | grep -v '^$' > "$T/errs"; then
    fail "errors in the battery: $(sort "$T/errs" | uniq -c | sort -rn | head -5)"
  fi
  echo "# 4 processes mounting and unmounting one image for ${secs}s beside img mounts and prune: $total mounts, 0 left over" 
}

# img mount killed (SIGKILL) at a random moment of its start left a
# mounted, served image that img mounts did not list (3 of 40). Now the
# serving process records the mount before it says ready: whatever
# survives is listed, and img umount -a leaves nothing.
check_killed_mount_leaves_no_orphan() {
  load_image
  local trials=40 i delay seed=${IMG_TEST_SEED:-4242} listed=0 pid
  [[ ${IMG_TEST_LONG:-} == 1 ]] && trials=200
  for i in $(seq "$trials"); do
    delay=$(python3 -c 'import random,sys; random.seed(int(sys.argv[1])); print("%.3f" % random.uniform(0, 0.03))' "$((seed + i))")
    img mount localhost/mountfs:1 "$T/k$i" >/dev/null 2>&1 &
    pid=$!
    sleep "$delay"; kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  done
  sleep 2
  local d
  for d in $(awk -v d="$T/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo); do
    [[ -n $(field "$d" Pid) ]] || fail "$d is mounted but img mounts does not list it: $(img mounts 2>&1)"
    listed=$((listed + 1))
  done
  img umount -a >/dev/null 2>&1 || fail "img umount -a failed: $(img umount -a 2>&1)"
  [[ -z $(awk -v d="$T/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo) ]] || fail "mounts left after img umount -a"
  no_servers
  echo "# img mount killed at random in its first 30 ms, $trials times: $listed mounts came up, each listed; none left after umount -a"
}

# 3c. Bundles: img mount --bundle DIR makes DIR an OCI runtime bundle
# that runc runs as it is: DIR/rootfs the mount, DIR/config.json the
# image's config converted onto runc's default spec.

# The command the bundle checks' image runs (its Entrypoint is sh -c): what
# the config gives the process, and a file of the committed layer.
BUNDLE_CMD='echo $GREETING from $(pwd) as $(id -u):$(id -g) home $HOME; cat note.txt'

# bundle_image USER W [as_user]: makes localhost/run:1 from the testdata
# busybox image (Cmd /bin/sh, Env PATH, no /proc, /dev or /sys) in the
# store of root (or of the test user): a file added through a writable
# mount at W, and a config that sets Entrypoint, Cmd, Env, WorkingDir and
# User USER.
bundle_image() {
  local user=$1 w=$2 run=${3:-} bin=$IMG
  [[ -z $run ]] || bin=$WORK/bin/img
  $run "$bin" load -q -i "$GEN/base-docker.tar" >/dev/null || fail "loading the busybox image failed"
  $run "$bin" mount --rw localhost/base:1 "$w" >/dev/null || fail "img mount --rw of the busybox image failed"
  $run sh -c "echo 'from the committed layer' > '$w/opt/app/note.txt'" || fail "writing into $w failed"
  $run "$bin" commit -q -c 'ENTRYPOINT ["/bin/sh", "-c"]' -c "CMD [\"$BUNDLE_CMD\"]" -c 'ENV GREETING=hello' \
    -c 'WORKDIR /opt/app' -c "USER $user" -c 'STOPSIGNAL SIGQUIT' -c 'EXPOSE 8080/tcp' -c 'LABEL org.example.k=v' \
    "$w" localhost/run:1 >/dev/null || fail "img commit of the bundle image failed"
  $run "$bin" umount "$w" >/dev/null || fail "img umount of $w failed"
}

# config FILE EXPR: a Python expression over the config.json FILE (as c)
config() { python3 -c "import json, sys; c = json.load(open(sys.argv[1])); print($2)" "$1"; }

# As root: runc runs the image's Entrypoint and Cmd with its Env, WorkingDir
# and User (a name and a group, resolved with the image's /etc/passwd and
# /etc/group), on a read-only root that has /proc, /dev and /sys although
# the image has none; img umount DIR takes the mount and the config.json.
check_bundle_runs_under_runc() {
  bundle_image user:nogroup "$T/w"
  local b out
  b=$(img mount --bundle "$T/b" localhost/run:1 2> "$T/err") || fail "img mount --bundle failed: $(cat "$T/err")"
  [[ $b == "$T/b" ]] || fail "img mount --bundle printed $b"
  [[ ! -s $T/err ]] || fail "img mount --bundle warned: $(cat "$T/err")"
  mounted "$b/rootfs" || fail "$b/rootfs is not a mountpoint"
  [[ -d $b/rootfs/proc && -d $b/rootfs/dev && -d $b/rootfs/sys ]] || fail "the mount points are missing"
  [[ $(field "$b/rootfs" Bundle) == "$b" ]] || fail "img mounts does not name the bundle: $(mounts_json)"
  out=$(cd / && timeout 60 "$RUNC" --root "$T/runc" run -b "$b" c1 < /dev/null 2> "$T/err") ||
    fail "runc run failed: $(cat "$T/err")"
  [[ $out == $'hello from /opt/app as 1000:65534 home /home/user\nfrom the committed layer' ]] ||
    fail "the container printed: $out"
  [[ $(config "$b/config.json" 'c["root"], c["process"]["terminal"], c["process"]["user"], c["process"]["args"]') == \
     "{'path': 'rootfs', 'readonly': True} False {'uid': 1000, 'gid': 65534} ['/bin/sh', '-c', '$BUNDLE_CMD']" ]] ||
    fail "config.json: $(config "$b/config.json" 'c["root"], c["process"]')"
  [[ $(config "$b/config.json" 'sorted(c["annotations"].items())[:2], sorted(c["annotations"].items())[3:], c["annotations"]["org.opencontainers.image.created"][:2]') == \
     "[('org.example.k', 'v'), ('org.opencontainers.image.architecture', 'amd64')] [('org.opencontainers.image.exposedPorts', '8080/tcp'), ('org.opencontainers.image.os', 'linux'), ('org.opencontainers.image.stopSignal', 'SIGQUIT')] 20" ]] ||
    fail "annotations: $(config "$b/config.json" 'c["annotations"]')"
  [[ $(config "$b/config.json" '[n["type"] for n in c["linux"]["namespaces"]]') == "['pid', 'network', 'ipc', 'uts', 'mount']" ]] ||
    fail "namespaces: $(config "$b/config.json" 'c["linux"]["namespaces"]')"
  # The root is read-only for the container (a config changed by hand).
  config "$b/config.json" 'json.dumps({**c, "process": {**c["process"], "user": {"uid": 0, "gid": 0}, "args": ["sh", "-c", "echo x > /new"]}})' > "$T/c" &&
    cp "$T/c" "$b/config.json"
  ! (cd / && timeout 60 "$RUNC" --root "$T/runc" run -b "$b" c2 < /dev/null > "$T/out" 2>&1) || fail "the container wrote into its root"
  has -i "read-only" "$T/out" || fail "the write failed otherwise: $(cat "$T/out")"
  # img umount DIR: the mount goes; a config.json changed by hand stays (said so).
  img umount "$b" > /dev/null 2> "$T/err" || fail "img umount $b failed: $(cat "$T/err")"
  ! mounted "$b/rootfs" || fail "$b/rootfs is still mounted"
  [[ -f $b/config.json ]] || fail "the changed config.json was removed"
  has "was changed" "$T/err" || fail "img umount does not say the config.json stays: $(cat "$T/err")"
  # ... and a new bundle there does not overwrite it.
  ! img mount --bundle "$b" localhost/run:1 > /dev/null 2> "$T/err" || fail "img mount --bundle overwrote a config.json"
  has "config.json exists" "$T/err" || fail "the refusal does not say why: $(cat "$T/err")"
  ! mounted "$b/rootfs" || fail "the refused bundle left a mount"
  rm "$b/config.json"
  # An unchanged config.json goes with the mount, here by its rootfs.
  img mount --bundle "$b" localhost/run:1 > /dev/null 2>&1 || fail "mounting the bundle again failed"
  img umount "$b/rootfs" > /dev/null || fail "img umount $b/rootfs failed"
  [[ ! -e $b/config.json && -d $b/rootfs && -z $(ls -A "$b/rootfs") ]] || fail "left in $b: $(ls -AR "$b")"
  [[ $(mounts_json) == "[]" ]] || fail "still listed: $(mounts_json)"
  [[ -z $(ls "$IMG_ROOT/mounts" | grep '^bundle-') ]] || fail "records left: $(ls "$IMG_ROOT/mounts")"
}

# A writable bundle: what the container writes is in the mount, and img
# commit DIR takes it; the mount points the image lacks are not committed.
check_bundle_rw_commit() {
  bundle_image root "$T/w"
  img mount --rw localhost/run:1 "$T/w2" > /dev/null || fail "img mount --rw failed"
  img commit -q -c 'CMD ["echo written in the container > out.txt; id -u > ran-as"]' "$T/w2" localhost/writer:1 > /dev/null ||
    fail "img commit of the writer image failed"
  img umount "$T/w2" > /dev/null
  local b=$T/rw m
  img mount --rw --bundle "$b" localhost/writer:1 > /dev/null 2> "$T/err" || fail "img mount --rw --bundle failed: $(cat "$T/err")"
  [[ $(config "$b/config.json" 'c["root"]["readonly"]') == False ]] || fail "root.readonly is not false"
  (cd / && timeout 60 "$RUNC" --root "$T/runc" run -b "$b" c1 < /dev/null > "$T/out" 2>&1) || fail "runc run failed: $(cat "$T/out")"
  [[ $(cat "$b/rootfs/opt/app/out.txt") == "written in the container" && $(cat "$b/rootfs/opt/app/ran-as") == 0 ]] ||
    fail "the container's files are not in the mount: $(ls -la "$b/rootfs/opt/app")"
  ! img umount "$b" 2> /dev/null || fail "img umount took changes not committed"
  img commit "$b" localhost/written:1 > /dev/null 2> "$T/err" || fail "img commit $b failed: $(cat "$T/err")"
  has "added or changed, 0 deleted" "$T/err" || fail "the commit: $(cat "$T/err")"
  img umount "$b" > /dev/null || fail "img umount after the commit failed"
  [[ ! -e $b/config.json ]] || fail "the config.json stayed"
  m=$(img mount localhost/written:1 "$T/check") || fail "mounting the commit failed"
  [[ $(cat "$m/opt/app/out.txt") == "written in the container" ]] || fail "the commit lacks the container's file"
  [[ ! -e $m/proc && ! -e $m/dev && ! -e $m/sys ]] || fail "the bundle's mount points were committed: $(ls "$m")"
  img umount "$m" > /dev/null
}

# 4. Rootless: an ordinary user mounts an image of their own store through
# fusermount3 and reads it from their own shell (no namespace entered).
user_home() { getent passwd "$TEST_USER" | cut -d: -f6; }
as_user() {
  local h; h=$(user_home)
  (cd / && runuser -u "$TEST_USER" -- env -i HOME="$h" IMG_ROOT="$h/img-mount-test" PATH=/usr/bin:/bin LANG=C.UTF-8 "$@")
}
# ensure_test_user: the unprivileged user exists, and /dev/fuse is 0666
# (restored after the check)
ensure_test_user() {
  if ! id "$TEST_USER" >/dev/null 2>&1; then
    useradd -m "$TEST_USER" || fail "useradd failed"
    USER_MADE=1
    echo 1 > "$WORK/user-made"
  fi
  local f
  for f in /etc/subuid /etc/subgid; do
    grep -q "^$TEST_USER:" "$f" || echo "$TEST_USER:300000:65536" >> "$f"
  done
  [[ -f $WORK/fuse-mode ]] || stat -c %a /dev/fuse > "$WORK/fuse-mode"
  chmod 0666 /dev/fuse
}

check_rootless_mount() {
  ensure_test_user
  local uid gid h m pid
  uid=$(id -u "$TEST_USER") gid=$(id -g "$TEST_USER") h=$(user_home)
  as_user "$WORK/bin/img" load -q -i "$GEN/full" >/dev/null || fail "img load as $TEST_USER failed"
  m=$(as_user "$WORK/bin/img" mount "$ID") || fail "img mount as $TEST_USER failed"
  [[ $m == "$h/img-mount-test/mounts/"* ]] || fail "mounted at $m"
  mounted "$m" || fail "$m is not in /proc/self/mountinfo"
  awk -v d="$m" '$5 == d' /proc/self/mountinfo | has "user_id=$uid" || fail "not the user's FUSE mount"
  pid=$(as_user "$WORK/bin/img" mounts --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Pid"])')
  [[ $(awk '/^Uid:/ {print $2}' "/proc/$pid/status") == "$uid" ]] || fail "the server does not run as $TEST_USER"
  [[ $(as_user cat "$m/data/xattr-file") == "has a user xattr" ]] || fail "$TEST_USER cannot read the mount"
  ! as_user cat "$m/etc/secret" >/dev/null 2>&1 || fail "$TEST_USER read a file of mode 0600 owned by root"
  ! as_user touch "$m/data/small" 2>/dev/null || fail "$TEST_USER wrote into the mount"
  local opts; opts=$(awk -v d="$m" '$5 == d {print $6}' /proc/self/mountinfo)
  [[ ,$opts, == *,nosuid,* && ,$opts, == *,nodev,* ]] || fail "the user's mount has options $opts"
  ! as_user sh -c "echo x > '$m/dev/null'" 2>/dev/null || fail "$TEST_USER wrote to the image's device node"
  as_user "$WORK/bin/img" export -o "$h/img-mount-test.tar" "$ID" || fail "img export as $TEST_USER failed"
  as_user python3 "$TREE" cmp --mtimes=all --as="$uid:$gid" "$m" "$h/img-mount-test.tar" >/dev/null 2>"$T/cmp" ||
    fail "the user's view differs from img export: $(head -c 1500 "$T/cmp")"
  as_user "$WORK/bin/img" umount "$m" >/dev/null || fail "img umount as $TEST_USER failed"
  ! mounted "$m" || fail "$m is still mounted"
  gone "$pid" || fail "the server $pid is still running"
  [[ $(as_user "$WORK/bin/img" mounts --format json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') == 0 ]] ||
    fail "img mounts still lists it"
  as_user rm -rf "$h/img-mount-test" "$h/img-mount-test.tar"
  chmod "$(cat "$WORK/fuse-mode")" /dev/fuse && rm "$WORK/fuse-mode"
}

# A rootless writable mount: the FUSE filesystem keeps the changes itself
# (the user is the image's root there: chown, setuid, files of mode 0600
# owned by root); the commit is the changed tree, owners included.
check_rootless_writable_mount_and_commit() {
  ensure_test_user
  local h m; h=$(user_home)
  as_user "$WORK/bin/img" load -q -i "$GEN/full" >/dev/null || fail "img load as $TEST_USER failed"
  m=$(as_user "$WORK/bin/img" mount --rw "$ID" "$h/img-mount-test-rw") || fail "img mount --rw as $TEST_USER failed"
  awk -v d="$m" '$5 == d' /proc/self/mountinfo | has "user_id=$(id -u "$TEST_USER")" || fail "not the user's FUSE mount"
  as_user cat "$m/etc/secret" >/dev/null || fail "the user cannot read a root-only file in their writable mount"
  as_user bash -c "$(declare -f make_changes); make_changes $m" 2> "$T/err" || fail "changes as $TEST_USER failed: $(cat "$T/err")"
  [[ $(as_user cat "$m/etc/hello") == overwritten ]] || fail "the overwrite is not seen"
  [[ $(as_user stat -c %u:%g:%a "$m/newfile") == 1234:5678:4750 ]] || fail "chown/chmod not kept: $(as_user stat -c %u:%g:%a "$m/newfile")"
  as_user "$WORK/bin/img" commit -q "$m" localhost/rootless:1 >/dev/null 2> "$T/err" || fail "img commit as $TEST_USER failed: $(cat "$T/err")"
  as_user "$WORK/bin/img" export -o "$h/img-mount-test-c.tar" localhost/rootless:1 || fail "img export failed"
  as_user python3 "$TREE" cmp --mtimes=files "$m" "$h/img-mount-test-c.tar" >/dev/null 2> "$T/cmp" ||
    fail "the committed image differs from the mount: $(head -c 1500 "$T/cmp")"
  as_user "$WORK/bin/img" umount "$m" >/dev/null || fail "img umount after the commit failed"
  ! mounted "$m" || fail "$m is still mounted after img umount"
  as_user "$WORK/bin/img" fsck >/dev/null || fail "img fsck as $TEST_USER failed"
  as_user rm -rf "$h/img-mount-test-c.tar" "$h/img-mount-test-rw"
  chmod "$(cat "$WORK/fuse-mode")" /dev/fuse && rm "$WORK/fuse-mode"
}

# Rootless bundles (runc --root in a directory of the user): the caller
# mapped to root in a user namespace as runc spec --rootless does; the
# image's User (another user) cannot be mapped, so the process runs as root
# there, with a warning. A writable one: the container's file is committed.
check_rootless_bundle_runs_under_runc() {
  ensure_test_user
  local h uid gid b out; h=$(user_home) uid=$(id -u "$TEST_USER") gid=$(id -g "$TEST_USER")
  local u=("$WORK/bin/img")
  bundle_image user "$h/img-mount-test-w" as_user
  b=$(as_user "${u[@]}" mount --bundle "$h/img-mount-test-b" localhost/run:1 2> "$T/err") ||
    fail "img mount --bundle as $TEST_USER failed: $(cat "$T/err")"
  has "runs as root in the container" "$T/err" || fail "no warning that the image's user is not kept: $(cat "$T/err")"
  awk -v d="$b/rootfs" '$5 == d' /proc/self/mountinfo | has "user_id=$uid" || fail "not the user's FUSE mount"
  [[ $(config "$b/config.json" 'c["linux"]["uidMappings"], c["linux"]["gidMappings"], [n["type"] for n in c["linux"]["namespaces"]]') == \
     "[{'containerID': 0, 'hostID': $uid, 'size': 1}] [{'containerID': 0, 'hostID': $gid, 'size': 1}] ['pid', 'ipc', 'uts', 'mount', 'user']" ]] ||
    fail "not rootless: $(config "$b/config.json" 'c["linux"]')"
  out=$(as_user "$RUNC" --root "$h/img-mount-test-runc" run -b "$b" c1 < /dev/null 2> "$T/err") ||
    fail "runc run as $TEST_USER failed: $(cat "$T/err")"
  [[ $out == $'hello from /opt/app as 0:0 home /home/user\nfrom the committed layer' ]] || fail "the container printed: $out"
  as_user "${u[@]}" umount "$b" > /dev/null || fail "img umount $b as $TEST_USER failed"
  [[ ! -e $b/config.json ]] && ! mounted "$b/rootfs" || fail "the bundle was not taken down"
  # Writable: the container (root there, the user outside) writes; the commit has it.
  b=$(as_user "${u[@]}" mount --rw --bundle "$h/img-mount-test-rw" localhost/base:1) || fail "img mount --rw --bundle as $TEST_USER failed"
  config "$b/config.json" 'json.dumps({**c, "process": {**c["process"], "args": ["sh", "-c", "echo made rootless > /opt/app/out.txt"]}})' > "$T/c" &&
    as_user cp "$T/c" "$b/config.json"
  as_user "$RUNC" --root "$h/img-mount-test-runc" run -b "$b" c2 < /dev/null > "$T/out" 2>&1 || fail "runc run of the writable bundle failed: $(cat "$T/out")"
  as_user "${u[@]}" commit -q "$b" localhost/rootless-written:1 > /dev/null 2> "$T/err" || fail "img commit $b failed: $(cat "$T/err")"
  as_user "${u[@]}" umount "$b" > /dev/null 2> "$T/err" || fail "img umount $b failed: $(cat "$T/err")"
  out=$(as_user "${u[@]}" mount localhost/rootless-written:1 "$h/img-mount-test-check") || fail "mounting the commit failed"
  [[ $(as_user cat "$out/opt/app/out.txt") == "made rootless" ]] || fail "the commit lacks the container's file"
  [[ ! -e $out/proc ]] || fail "the bundle's mount points were committed"
  as_user "${u[@]}" umount "$out" > /dev/null
  as_user rm -rf "$h"/img-mount-test-*
  chmod "$(cat "$WORK/fuse-mode")" /dev/fuse && rm "$WORK/fuse-mode"
}

# ---------------------------------------------------------------- measurements
# Not asserted: printed as "# " lines.
now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN {printf "%.3f", a - b}'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

measure() {
  export IMG_ROOT=$WORK/store-measure
  img load -q -i "$GEN/full" >/dev/null || return 1
  local i t0 m pid times=()
  for i in 1 2 3 4 5; do
    t0=$(now)
    m=$(img mount "$ID" "$WORK/measure-m") && ls "$m" >/dev/null || return 1
    times+=("$(since "$t0")")
    img umount "$m" >/dev/null || return 1
  done
  echo "# img mount until the first ls returns: median $(printf '%s\n' "${times[@]}" | median) s of 5 (${times[*]})"
  echo "# umoci unpack of the same image (onto tmpfs): median $(printf '%s\n' "${UMOCI_TIMES[@]}" | median) s of ${#UMOCI_TIMES[@]} (${UMOCI_TIMES[*]})"
  m=$(img mount "$ID" "$WORK/measure-m") || return 1
  pid=$(img mounts --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Pid"])')
  echo "# serving process after the mount: $(grep VmRSS "/proc/$pid/status" | tr -s ' \t' ' ')"
  t0=$(now)
  (cd "$m" && find . -type f -print0 | xargs -0 cat > /dev/null && find . > /dev/null)
  echo "# a full tree walk reading every file: $(since "$t0") s; serving process after it:" \
    "$(grep -E 'VmRSS' "/proc/$pid/status" | tr -s ' \t' ' '), $(grep -E 'VmHWM' "/proc/$pid/status" | tr -s ' \t' ' ')"
  img umount "$m" >/dev/null
  local id; id=$(img load -q -i "$GEN/sparse") || return 1
  m=$(img mount "$id" "$WORK/measure-m") || return 1
  t0=$(now)
  dd if="$m/data/big.img" of=/dev/null bs=1M status=none || return 1
  echo "# reading the 5 GiB sparse file through a new mount (1 MiB reads): $(since "$t0") s"
  img umount "$m" >/dev/null
}

# ---------------------------------------------------------------- copy-up of large files

# big_layout: $GEN/big, images with one 72 MiB file /big (more than the
# source's caches hold, many gzip checkpoints): random and text content,
# gzip and zstd layers (tests/support/big_image.py), made once a run.
big_layout() {
  [[ -f $GEN/big/big.json ]] && return 0
  python3 "$SUPPORT/big_image.py" "$GEN/big" 72 random text gzip zstd || fail "making the big-file images failed"
  chmod -R a+rX "$GEN/big"
}
# big_sum KEY: the sha256 of /big in big.json (KIND, or KIND+x for /big with "x" appended)
big_sum() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$GEN/big/big.json" "$1"; }

# Appending one byte to a 72 MiB file of the image through img mount --rw
# (overlayfs copies it up from the FUSE tree) gives the file's bytes and
# the byte, in the mount and in the upper directory, for each content and
# compression; the image mounted again read-only is unchanged.
check_rw_copyup_of_a_large_file_keeps_the_right_bytes() {
  big_layout
  img load -q -i "$GEN/big" >/dev/null || fail "img load of the big-file images failed"
  local kind comp m want orig up
  for kind in random text; do
    orig=$(big_sum "$kind") want=$(big_sum "$kind+x")
    for comp in gzip zstd; do
      m=$(img mount --rw "localhost/$kind-$comp" "$T/m") || fail "img mount --rw $kind-$comp failed"
      printf x >> "$m/big" || fail "appending to /big of $kind-$comp failed"
      [[ $(sha "$m/big") == "$want" ]] || fail "$kind-$comp: /big after the append is not the image's bytes and x"
      up=$(ls -d "$IMG_ROOT"/mounts/rw-*/upper) || fail "no upper directory"
      [[ $(sha "$up/big") == "$want" ]] || fail "$kind-$comp: the upper directory's /big is not the image's bytes and x"
      img umount --discard "$m" >/dev/null || fail "img umount --discard $kind-$comp failed"
      m=$(img mount "localhost/$kind-$comp" "$T/r") || fail "img mount $kind-$comp failed"
      [[ $(sha "$m/big") == "$orig" ]] || fail "$kind-$comp: the image's /big changed"
      img umount "$m" >/dev/null || fail "img umount $kind-$comp failed"
    done
  done
  img fsck >/dev/null || fail "img fsck: $(img fsck 2>&1)"
}

# The same through a rootless writable mount, where the FUSE filesystem
# copies the file up itself.
check_rootless_rw_copyup_of_a_large_file_keeps_the_right_bytes() {
  ensure_test_user
  big_layout
  local h m kind comp want orig; h=$(user_home)
  as_user "$WORK/bin/img" load -q -i "$GEN/big" >/dev/null || fail "img load as $TEST_USER failed"
  for kind in random text; do
    orig=$(big_sum "$kind") want=$(big_sum "$kind+x")
    for comp in gzip zstd; do
      m=$(as_user "$WORK/bin/img" mount --rw "localhost/$kind-$comp" "$h/img-mount-test-rw") ||
        fail "img mount --rw $kind-$comp as $TEST_USER failed"
      as_user sh -c "printf x >> '$m/big'" || fail "appending to /big of $kind-$comp as $TEST_USER failed"
      [[ $(as_user sha256sum "$m/big" | cut -d' ' -f1) == "$want" ]] ||
        fail "$kind-$comp: /big after the append is not the image's bytes and x"
      [[ $(sha "$h/img-mount-test/mounts/"rw-*/upper/big) == "$want" ]] ||
        fail "$kind-$comp: the upper directory's /big is not the image's bytes and x"
      as_user "$WORK/bin/img" umount --discard "$m" >/dev/null || fail "img umount --discard as $TEST_USER failed"
      m=$(as_user "$WORK/bin/img" mount "localhost/$kind-$comp") || fail "img mount $kind-$comp as $TEST_USER failed"
      [[ $(as_user sha256sum "$m/big" | cut -d' ' -f1) == "$orig" ]] || fail "$kind-$comp: the image's /big changed"
      as_user "$WORK/bin/img" umount "$m" >/dev/null || fail "img umount as $TEST_USER failed"
    done
  done
  as_user rm -rf "$h/img-mount-test" "$h/img-mount-test-rw"
  chmod "$(cat "$WORK/fuse-mode")" /dev/fuse && rm "$WORK/fuse-mode"
}

# big_layer: the layer of localhost/random-gzip (mounted once so that its
# index file is written): its hex, the only index file in the store.
big_layer() {
  big_layout
  img load -q -i "$GEN/big" >/dev/null || fail "img load of the big-file images failed"
  local m; m=$(img mount localhost/random-gzip "$T/r") || fail "img mount random-gzip failed"
  img umount "$m" >/dev/null || fail "img umount random-gzip failed"
  local ix; ix=$(ls "$IMG_ROOT/indexes")
  [[ $ix =~ ^[0-9a-f]{64}$ ]] || fail "not one index file after one mount: $ix"
  echo "$ix"
}
# flip_byte FILE OFFSET: inverts one byte of FILE in place (a blob damaged on disk)
flip_byte() {
  python3 -c 'import sys; f = open(sys.argv[1], "r+b"); o = int(sys.argv[2]); f.seek(o); b = f.read(1); f.seek(o); f.write(bytes([b[0] ^ 0xff]))' "$1" "$2"
}

# An index file of format 6 (sha256 per chunk, as img wrote before chunks
# were checked with a CRC-32) is read as it is, not rebuilt, and a copy-up
# through it gives the right bytes.
check_copyup_reads_index_files_of_the_older_format() {
  local ix m before; ix=$(big_layer) || exit 1
  python3 "$SUPPORT/index_v6.py" "$IMG_ROOT/indexes/$ix" "$IMG_ROOT/blobs/sha256/$ix" ||
    fail "rewriting the index file as format 6 failed"
  before=$(sha "$IMG_ROOT/indexes/$ix")
  m=$(img mount --rw localhost/random-gzip "$T/m") || fail "img mount --rw over an index file of format 6 failed"
  printf x >> "$m/big" || fail "appending to /big failed"
  [[ $(sha "$m/big") == "$(big_sum random+x)" ]] || fail "/big after the append is not the image's bytes and x"
  img umount --discard "$m" >/dev/null || fail "img umount --discard failed"
  [[ $(sha "$IMG_ROOT/indexes/$ix") == "$before" ]] || fail "the index file of format 6 was rebuilt rather than read"
}

# A blob damaged on disk after its index was written (one byte flipped in
# the middle of /big's data): the copy-up fails (EIO) rather than copy
# wrong bytes, with the current index file (CRC-32 per chunk) and with
# one of format 6 (sha256 per chunk); the upper directory holds no /big,
# and the serving process's log names the blob, the damage and img fsck.
check_copyup_of_a_damaged_blob_fails_and_keeps_no_wrong_file() {
  local ix blob m up format
  ix=$(big_layer) || exit 1
  blob=$IMG_ROOT/blobs/sha256/$ix
  chmod u+w "$blob"
  flip_byte "$blob" $((36 << 20))
  for format in 7 6; do
    if [[ $format == 6 ]]; then
      # The sha256s of format 6 are of the blob as it was.
      flip_byte "$blob" $((36 << 20))
      python3 "$SUPPORT/index_v6.py" "$IMG_ROOT/indexes/$ix" "$blob" || fail "rewriting the index file as format 6 failed"
      flip_byte "$blob" $((36 << 20))
    fi
    m=$(img mount --rw localhost/random-gzip "$T/m") || fail "format $format: img mount --rw failed"
    if printf x 2>/dev/null >> "$m/big"; then
      fail "format $format: appending to /big of a damaged blob succeeded"
    fi
    up=$(ls -d "$IMG_ROOT"/mounts/rw-*/upper) || fail "no upper directory"
    [[ ! -e $up/big ]] || fail "format $format: the upper directory has a /big after a failed copy-up"
    grep -q "$ix is damaged at bytes .*run img fsck" "$IMG_ROOT"/mounts/*.log ||
      fail "format $format: the serving log does not say what is damaged: $(cat "$IMG_ROOT"/mounts/*.log)"
    img umount --discard "$m" >/dev/null || fail "format $format: img umount --discard failed"
    rm -f "$IMG_ROOT"/mounts/*.log
  done
}

# An index is never made from a damaged blob: with the index file gone, a
# mount of a blob damaged on disk fails, saying so and what to run,
# instead of recording checks of the wrong bytes; repaired, it mounts.
check_copyup_index_is_never_made_from_a_damaged_blob() {
  local ix blob out m
  ix=$(big_layer) || exit 1
  blob=$IMG_ROOT/blobs/sha256/$ix
  rm "$IMG_ROOT/indexes/$ix"
  chmod u+w "$blob"
  flip_byte "$blob" $((20 << 20))
  if out=$(img mount localhost/random-gzip "$T/r" 2>&1); then
    img umount "$T/r" >/dev/null 2>&1
    fail "a mount of a damaged blob without its index succeeded"
  fi
  [[ $out == *"layer sha256:$ix is damaged"*"run img fsck"* ]] || fail "the error does not say what is damaged: $out"
  [[ ! -e $IMG_ROOT/indexes/$ix ]] || fail "an index file was written from the damaged blob"
  flip_byte "$blob" $((20 << 20))
  m=$(img mount localhost/random-gzip "$T/r") || fail "img mount of the repaired blob failed"
  [[ $(sha "$m/big") == "$(big_sum random)" ]] || fail "/big of the repaired blob is not the image's"
  img umount "$m" >/dev/null || fail "img umount failed"
}

# ---------------------------------------------------------------- runner

# Each check has its own store; its mounts go when it ends, whatever it
# left (the rootless check's too, with /dev/fuse's mode put back).
before_check() { export IMG_ROOT=$WORK/store-$name; }
after_check() {
  [[ -n ${MOUNT_TIMING:-} ]] && echo "# $name took $((SECONDS - CHECK_START))s"
  [[ -f $WORK/user-made ]] && USER_MADE=1
  [[ -f $WORK/fuse-mode ]] && FUSE_MODE=$(cat "$WORK/fuse-mode")
  IMG_ROOT=$WORK/store-$name timeout 20 "$IMG" umount -a --discard >/dev/null 2>&1
  if [[ -n $FUSE_MODE ]]; then
    as_user "$WORK/bin/img" umount -a --discard >/dev/null 2>&1
    chmod "$FUSE_MODE" /dev/fuse && FUSE_MODE="" && rm -f "$WORK/fuse-mode"
  fi
  return 0
}
LOG_NOTES=1
after_checks() { (measure) 2>&1 || echo "# measurements failed"; }

preflight() {
  [[ $(id -u) == 0 ]] || fail "must run as root (FUSE as root, umoci unpack keeping owners, a test user)"
  local missing=() t
  for t in fusermount3 umoci podman runc setfattr mksquashfs python3 tar zstd gzip useradd userdel runuser getent mountpoint "$IMG"; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  [[ -c /dev/fuse ]] || missing+=("/dev/fuse")
  [[ -f testdata/gen/base-docker.tar ]] || missing+=("testdata/gen/base-docker.tar (run scripts/make-testdata.sh)")
  [[ ${#missing[@]} == 0 ]] || fail "missing: ${missing[*]} (scripts/test.sh installs fuse3 umoci runc python3 zstd)"
  grep -qw fuse /proc/filesystems || fail "the kernel has no FUSE"
}

# The image layouts, umoci's unpack of the image (timed), and the tools
# the test user runs, copied where that user can read them.
setup() {
  mkdir -p "$GEN" "$TMPFS" "$WORK/bin"
  cp "$IMG" "$SUPPORT/mount_tree.py" "$WORK/bin/" && chmod 755 "$WORK/bin"/*
  python3 "$SUPPORT/mount_image.py" full "$GEN/full" "$GEN/twin" &&
    python3 "$SUPPORT/mount_image.py" sparse "$GEN/sparse" "$GEN/sparse-pax" &&
    python3 "$SUPPORT/mount_image.py" hostile "$GEN/hostile" || fail "making the image layouts failed"
  cp testdata/gen/base-docker.tar "$GEN/" || fail "copying the busybox image failed"
  chmod -R a+rX "$GEN"
  mount -t tmpfs -o size=3g,mode=755 img-mount-test "$TMPFS" || fail "mounting a tmpfs failed"
  local i n=1 t0
  [[ ${IMG_TEST_LONG:-} == 1 ]] && n=5
  for i in $(seq "$n"); do
    rm -rf "$TMPFS/umoci"
    t0=$(now)
    umoci unpack --image "$GEN/twin:1" "$TMPFS/umoci" >/dev/null || fail "umoci unpack failed"
    since "$t0" >> "$WORK/umoci-times"; echo >> "$WORK/umoci-times"
  done
}

echo "# img: $IMG ($("$IMG" --version 2>&1))"
if ! (preflight && setup) 2>"$WORK/setup.err"; then
  echo "not ok - setup"; sed 's/^/#   /' "$WORK/setup.err"
  echo "0 passed, 1 failed"
  exit 1
fi
ID=$(image_id)
mapfile -t UMOCI_TIMES < "$WORK/umoci-times"
run_checks "$@"
