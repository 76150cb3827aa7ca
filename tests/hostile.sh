#!/usr/bin/env bash
# Large hostile inputs (tests/support/hostile_corpus.py makes them here):
# a gzip layer holding 512 MiB of zeros (10 GiB with IMG_TEST_LONG=1, as
# scripts/test.sh --long sets), a layer of 1,000,000 entries, a
# 10,000-deep directory chain, names of 4,096 bytes, a gzip stream that is
# not a tar, and a config with a 100 MB environment. Every command that
# reads them (import, load, export, mount) takes them with bounded memory
# (each runs in a memory cgroup the kernel enforces; the peak RSS is
# measured with GNU time or /proc, and asserted) or refuses them
# with a clear error, leaving the store as it was and clean (img fsck).
#
# Usage: IMG=target/release/img tests/hostile.sh [CHECK-NAME-SUBSTRING...]
# (as root: it mounts FUSE; ONLY=WORD runs the checks whose names hold WORD
# too). Prints "ok - NAME" / "not ok - NAME" per check and "N passed, M
# failed" (tests/lib.sh runs the checks).
set -uo pipefail
cd "$(dirname "$0")/.."
IMG=$(realpath "${IMG:-target/release/img}")
WORK=$(mktemp -d /tmp/img-hostile.XXXXXX)
C=$WORK/corpus
source tests/lib.sh
suite_cleanup() {
  for s in "$WORK"/store-*; do
    [[ -d $s ]] && IMG_ROOT=$s timeout 20 "$IMG" umount -a --discard >/dev/null 2>&1
  done
  # (A mount's server leaves its cgroup when it has exited.)
  local i
  for i in 1 2 3 4 5; do
    [[ -n ${CG_BASE:-} ]] || break
    rmdir "$CG_BASE"/img-hostile-$$-* 2>/dev/null
    compgen -G "$CG_BASE/img-hostile-$$-*" >/dev/null || break
    sleep 0.5
  done
}

img() { "$IMG" "$@"; }

# A memory cgroup per limited command, under the one this shell is in
# (cgroup v1's memory controller, or v2's where it is enabled): the kernel
# kills a command that goes over its limit, so the bounds below are
# enforced, not only measured. Where neither is available (no write access),
# the peaks are still measured and asserted, and the run says so.
cgroup_base() {
  local rel
  rel=$(awk -F: '$2 == "memory" {print $3}' /proc/self/cgroup)
  if [[ -n $rel && -w /sys/fs/cgroup/memory$rel ]]; then
    echo "v1 /sys/fs/cgroup/memory$rel"; return
  fi
  rel=$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup)
  if grep -qw memory /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null && [[ -w /sys/fs/cgroup$rel ]]; then
    echo "v2 /sys/fs/cgroup$rel"
  fi
}
read -r CG_KIND CG_BASE <<< "$(cgroup_base)"
[[ -n ${CG_KIND:-} ]] || echo "# no writable memory cgroup here: memory is measured and asserted, not limited by the kernel" >&2

# limited MB CMD...: runs CMD in a fresh memory cgroup limited to MB MiB
# (what it starts, a mount's server included, stays in it).
limited() {
  local mb=$1; shift
  [[ -n ${CG_KIND:-} ]] || { "$@"; return; }
  local cg=$CG_BASE/img-hostile-$$-$BASHPID-$RANDOM
  mkdir "$cg" || return 1
  if [[ $CG_KIND == v1 ]]; then
    echo $((mb << 20)) > "$cg/memory.limit_in_bytes" || return 1
    # No swap to escape to, where the kernel accounts it.
    [[ -e $cg/memory.memsw.limit_in_bytes ]] && echo $((mb << 20)) > "$cg/memory.memsw.limit_in_bytes"
  else
    echo $((mb << 20)) > "$cg/memory.max" || return 1
    [[ -e $cg/memory.swap.max ]] && echo 0 > "$cg/memory.swap.max"
  fi
  bash -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' _ "$cg" "$@"
}

# rss_kb MB CMD...: runs CMD limited to MB MiB (output to $T/out, $T/err) and
# prints its peak RSS in KB; the exit status is CMD's. A command killed at
# its limit says so in $T/err.
rss_kb() {
  local mb=$1; shift
  limited "$mb" /usr/bin/time -f "%M" -o "$T/rss" "$@" > "$T/out" 2> "$T/err"
  local rc=$?
  (( rc == 137 )) && echo "killed at its memory limit of $mb MiB" >> "$T/err"
  tail -1 "$T/rss"
  return $rc
}

# state: what a failed command must leave as it was
state() { img images -a --no-trunc -q | sort; ls "$IMG_ROOT/ingest" 2>/dev/null; }

# The limits hold: a command that takes more than its limit is killed (so
# the bounds of the other checks are the kernel's, not only measured).
check_memory_limits_are_enforced() {
  [[ -n ${CG_KIND:-} ]] || { echo "# no writable memory cgroup: limits only measured" >&2; return 0; }
  local kb
  kb=$(rss_kb 64 python3 -c 'b = bytearray(256 << 20); print(len(b))') && fail "256 MiB were taken under a 64 MiB limit"
  grep -q "killed at its memory limit of 64 MiB" "$T/err" || fail "not killed at the limit: $(cat "$T/err")"
  kb=$(rss_kb 64 python3 -c 'b = bytearray(16 << 20); print(len(b))') || fail "16 MiB under a 64 MiB limit failed: $(cat "$T/err")"
  echo "# memory limits: $CG_KIND cgroup under $CG_BASE" >&2
}

# Import and load take each large input in little memory.
check_import_and_load_stay_small() {
  local x kb
  for x in bomb many deep longnames; do
    kb=$(rss_kb 128 "$IMG" import "$C/$x.tar.gz" "$x:imp") || fail "import $x failed: $(cat "$T/err")"
    (( kb < 64 * 1024 )) || fail "import $x peaked at $kb KB"
    echo "# import $x: peak $kb KB" >&2
    kb=$(rss_kb 128 "$IMG" load -q -i "$C/$x.oci") || fail "load $x failed: $(cat "$T/err")"
    (( kb < 64 * 1024 )) || fail "load $x peaked at $kb KB"
  done
  img fsck >/dev/null || fail "img fsck: $(img fsck 2>&1 | tail -3)"
}

# A gzip stream of zeros (the bomb's size) is no tar: refused with what it is.
check_gzip_without_a_tar_is_refused() {
  img import "$C/bomb.tar.gz" keep:1 >/dev/null || fail "import of the base failed"
  local before kb; before=$(state)
  kb=$(rss_kb 128 "$IMG" import "$C/zeros.gz" z:1) && fail "import of zeros succeeded"
  grep -q "zeros.gz" "$T/err" && grep -q "data is not a tar archive" "$T/err" || fail "unclear error: $(cat "$T/err")"
  (( kb < 64 * 1024 )) || fail "peaked at $kb KB"
  [[ $(state) == "$before" ]] || fail "the store changed"
  img fsck >/dev/null || fail "img fsck"
}

# A config of 100 MB is refused by its size, not read into memory.
check_huge_config_is_refused() {
  local before kb; before=$(state)
  kb=$(rss_kb 128 "$IMG" load -i "$C/bigenv.oci") && fail "load of the 100 MB config succeeded"
  grep -q "config" "$T/err" && grep -q "limit" "$T/err" || fail "unclear error: $(cat "$T/err")"
  grep -q "ingest/" "$T/err" && fail "the error names a temporary file: $(cat "$T/err")"
  (( kb < 64 * 1024 )) || fail "peaked at $kb KB"
  [[ $(state) == "$before" ]] || fail "the store changed"
  img fsck >/dev/null || fail "img fsck"
}

# Export writes each one whole, in memory that grows with the paths only.
check_export_is_bounded_and_whole() {
  local x kb
  for x in bomb many deep longnames; do
    img import "$C/$x.tar.gz" "$x:1" >/dev/null || fail "import $x"
    kb=$(rss_kb 1024 "$IMG" export -o "$WORK/$x-export.tar" "$x:1") || fail "export $x failed: $(cat "$T/err")"
    (( kb < 768 * 1024 )) || fail "export $x peaked at $kb KB"
    echo "# export $x: peak $kb KB" >&2
  done
  [[ $(tar -tf "$WORK/many-export.tar" | grep -c '/f') == 1000000 ]] || fail "the export of many lacks files"
  tar -xOf "$WORK/longnames-export.tar" --wildcards '*/15*' | has long || fail "the long name's file is not in the export"
  [[ $(stat -c %s "$WORK/bomb-export.tar") -gt $((BOMB_MB << 20)) ]] || fail "the bomb's export is short"
  rm -f "$WORK"/*-export.tar
}

# Convert writes the small ones as eStargz and as zstd:chunked and refuses,
# early and cleanly, those whose table of contents would be over what
# readers accept (64 MiB for eStargz, 50 MiB for zstd:chunked).
check_convert_is_bounded_or_refused() {
  local x f t kb before limit
  for x in bomb many deep longnames; do
    img import "$C/$x.tar.gz" "$x:1" >/dev/null || fail "import $x"
  done
  for f in estargz zstd:chunked; do
    t=${f/:/-}
    for x in bomb longnames; do
      kb=$(rss_kb 512 "$IMG" convert -q --format "$f" "$x:1" "$x:$t") || fail "convert $x to $f failed: $(cat "$T/err")"
      (( kb < 256 * 1024 )) || fail "convert $x to $f peaked at $kb KB"
      echo "# convert $x to $f: peak $kb KB" >&2
    done
    img export -o "$T/longnames-conv.tar" "longnames:$t" || fail "export of the converted longnames ($f)"
    tar -xOf "$T/longnames-conv.tar" --wildcards '*/15*' | has long || fail "the long name's file is not in the $f image"
    rm -f "$T/longnames-conv.tar"
    [[ $f == estargz ]] && limit=67108864 || limit=52428800
    for x in many deep; do
      before=$(state)
      kb=$(rss_kb 1024 "$IMG" convert -q --format "$f" "$x:1" "$x:conv") && fail "convert of $x to $f succeeded"
      grep -q "table of contents of [0-9]* bytes.*over the $limit bytes" "$T/err" || fail "unclear error: $(cat "$T/err")"
      (( kb < 768 * 1024 )) || fail "convert $x to $f peaked at $kb KB"
      echo "# convert $x to $f (refused): peak $kb KB" >&2
      [[ $(state) == "$before" ]] || fail "the refused convert of $x to $f changed the store"
    done
  done
  img fsck >/dev/null || fail "img fsck: $(img fsck 2>&1 | tail -3)"
}

# The mount serves them: a million files, the bottom of the chain, the
# long path (opened one directory at a time: it is longer than PATH_MAX),
# the end of the bomb's file of zeros.
check_mount_serves_them() {
  local x m pid hwm rss
  for x in bomb many deep longnames; do
    img import "$C/$x.tar.gz" "$x:1" >/dev/null || fail "import $x"
    m=$(limited 768 "$IMG" mount "$x:1" "$WORK/m-$x") || fail "mount $x failed"
  done
  [[ $(find "$WORK/m-many" -type f | wc -l) == 1000000 ]] || fail "the mount of many does not list a million files"
  python3 - "$WORK/m-deep" "$WORK/m-longnames" <<'PY' || fail "the deep or long paths do not read"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
for _ in range(10000):
    nfd = os.open("d", os.O_RDONLY, dir_fd=fd); os.close(fd); fd = nfd
f = os.open("bottom", os.O_RDONLY, dir_fd=fd)
assert os.read(f, 100) == b"bottom\n"
fd = os.open(sys.argv[2], os.O_RDONLY)
for i in range(15):
    nfd = os.open(("%02d" % i) * 127 + "x", os.O_RDONLY, dir_fd=fd); os.close(fd); fd = nfd
f = os.open("15" * 127 + "x", os.O_RDONLY, dir_fd=fd)
assert os.read(f, 100) == b"long\n"
PY
  [[ $(tail -c 1048576 "$WORK/m-bomb/zeros.bin" | tr -d '\0' | wc -c) == 0 ]] || fail "the end of the zeros is not zeros"
  for x in bomb many deep longnames; do
    pid=$(img mounts --format json | python3 -c 'import json,sys; print([r["Pid"] for r in json.load(sys.stdin) if r["Mountpoint"].endswith("/m-" + sys.argv[1])][0])' "$x")
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    echo "# mount $x: server peak $hwm KB, $rss KB after the walk" >&2
    # A million entries: ~430 MB at the peak (the layer's entries and the
    # tree being built), ~220 MB kept (the tree, its names in one arena).
    (( hwm < 512 * 1024 )) || fail "the server of $x peaked at $hwm KB"
    (( rss < 300 * 1024 )) || fail "the server of $x holds $rss KB"
  done
  img umount -a >/dev/null || fail "umount"
  img fsck >/dev/null || fail "img fsck"
}

# img build of hostile Dockerfiles and contexts: a Dockerfile of 1 MiB
# nesting ${X:-...} 170,000 deep (once a stack overflow), one of 1 MiB of
# quotes, a context holding a 10,000-deep directory chain, a FIFO and a
# file whose name is not UTF-8. Each is refused with a message naming it
# (or built), with bounded memory, the store left as it was.
check_build_refuses_hostile_dockerfiles_and_contexts() {
  [[ -f testdata/gen/base-docker.tar ]] || scripts/make-testdata.sh >/dev/null || fail "make-testdata"
  img load -q -i testdata/gen/base-docker.tar >/dev/null || fail "load of the base"
  local before; before=$(state)
  local d=$T/nested q=$T/quotes deep=$T/deep fifo=$T/fifo bad=$T/badname kb
  mkdir -p "$d" "$q" "$deep" "$fifo" "$bad"
  python3 -c 'n = 170000; print("FROM localhost/base:1"); print("ENV A=" + "${X:-" * n + "v" + "}" * n)' > "$d/Dockerfile"
  python3 -c 'print("FROM localhost/base:1"); print("LABEL a=" + "\"" * 1040001)' > "$q/Dockerfile"
  python3 - "$deep" <<'PY'
import os, sys
os.chdir(sys.argv[1]); os.makedirs("chain"); os.chdir("chain")
for _ in range(10000):
    os.mkdir("d"); os.chdir("d")
open("leaf", "w").write("x")
PY
  printf 'FROM localhost/base:1\nCOPY chain /chain\n' > "$deep/Dockerfile"
  mkfifo "$fifo/pipe"; printf 'FROM localhost/base:1\nCOPY pipe /pipe\n' > "$fifo/Dockerfile"
  python3 -c 'import os, sys; open(os.path.join(sys.argv[1].encode(), b"bad-\xff-name"), "w").write("x")' "$bad"
  printf 'FROM localhost/base:1\nCOPY . /ctx/\n' > "$bad/Dockerfile"
  local ctx want
  for ctx in nested:"nested more than 100 deep" quotes:"quote is not closed" deep:"File name too long" \
             fifo:"only files, directories and symlinks" badname:"not UTF-8"; do
    want=${ctx#*:}; ctx=${ctx%%:*}
    kb=$(rss_kb 512 "$IMG" build -q "$T/$ctx") && fail "the $ctx build succeeded"
    local rc=$?
    [[ $rc == 1 ]] || fail "the $ctx build exited $rc (a crash?): $(head -c 300 "$T/err")"
    grep -q "$want" "$T/err" || fail "the $ctx build's error does not say \"$want\": $(head -c 300 "$T/err")"
    (( kb < 300 * 1024 )) || fail "the $ctx build peaked at $kb KB"
    echo "# build of $ctx: refused, peak $kb KB" >&2
    [[ $(state) == "$before" ]] || fail "the $ctx build left the store changed: $(state)"
  done
  img fsck >/dev/null || fail "img fsck"
}

[[ $(id -u) == 0 ]] || { echo "not ok - setup: run as root (FUSE mounts)"; exit 1; }
echo "# making the corpus in $C"
BOMB_MB=512
[[ ${IMG_TEST_LONG:-} == 1 ]] && BOMB_MB=10240
echo "# the bomb holds $BOMB_MB MiB of zeros"
python3 tests/support/hostile_corpus.py "$C" "$BOMB_MB" || { echo "not ok - corpus"; exit 1; }
# Each check has its own store, whose mounts go when it ends.
before_check() { export BOMB_MB IMG_ROOT=$WORK/store-$name; }
after_check() { IMG_ROOT=$WORK/store-$name timeout 20 "$IMG" umount -a --discard >/dev/null 2>&1; }
LOG_NOTES=1
run_checks "$@"
