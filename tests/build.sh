#!/usr/bin/env bash
# Tests of img build, as root, against buildah 1.28 (bud --isolation chroot,
# a private vfs store): a Dockerfile of every instruction
# (tests/support/build_cases/) built by both from the same context, in the
# docker and the OCI format, their flattened trees
# (tests/support/build_tree.py: names, types, modes, owners, sizes,
# contents, link targets, mtimes of all that was not made during the build)
# and configs compared; that img's layers hold none of the mount points RUN
# needs (buildah's do); the environment and resolver files RUN sees, and
# its /dev and /sys (runc's, as root and rootless); the default PATH of a
# base without one; COPY's history; multi-stage builds and --target; ONBUILD; a failing RUN and bad input (the
# store unchanged, fsck clean); .dockerignore; heredocs (img alone); the
# layer cache; --build-static; the outputs (docker-archive, oci-archive,
# --iidfile, docker-daemon and isulad without their tools); three builds at
# once into one store; rootless builds by an unprivileged user (imgbuild,
# made here and removed again; /dev/fuse is 0666 during those checks only);
# a hostile ADD archive.
#
# Usage: IMG=target/release/img tests/build.sh [CHECK-NAME-SUBSTRING...]
# Prints "ok - NAME" or "not ok - NAME" and the reason per check, then
# measurements that are not asserted ("# " lines), then "N passed, M
# failed"; exits non-zero if any check failed. A missing tool is a failure.
# BUILD_TIMING=1 prints how long each check took.
set -uo pipefail
cd "$(dirname "$0")/.."
IMG_GIVEN=$(realpath "${IMG:-target/release/img}")
SUPPORT=$PWD/tests/support
CASES=$SUPPORT/build_cases
GEN=$PWD/testdata/gen
WORK=$(mktemp -d /tmp/img-build.XXXXXX)
chmod 755 "$WORK"                 # the rootless check's user reads its tools and context here
# A copy of img is what runs: a rebuild of the binary during the run must
# not swap it under a build.
mkdir -p "$WORK/bin" && cp "$IMG_GIVEN" "$WORK/bin/img" && chmod 755 "$WORK/bin" "$WORK/bin/img"
IMG=$WORK/bin/img
export IMG_ROOT=$WORK/no-store    # each check sets its own
TEST_USER=imgbuild
USER_MADE=0                       # 1 once this run made $TEST_USER
CTX_TIME=1600000000               # the mtime of every file of the contexts made here

user_home() { getent passwd "$TEST_USER" | cut -d: -f6; }
as_user() {
  local h; h=$(user_home)
  (cd / && runuser -u "$TEST_USER" -- env -i HOME="$h" IMG_ROOT="$h/img-build-test" PATH=/usr/bin:/bin LANG=C.UTF-8 "$@")
}

source tests/lib.sh
# Whatever happened: buildah's containers, mounts under our directories,
# /dev/fuse's mode, the test user (tests/lib.sh removes the work directory).
suite_cleanup() {
  local m
  [[ -d $WORK/broot ]] && bah rm --all >/dev/null 2>&1
  for m in $(awk -v w="$WORK" -v h="$(user_home)" 'index($5, w "/") == 1 || (h != "" && index($5, h "/") == 1) {print $5}' \
      /proc/self/mountinfo | sort -r); do
    umount -l "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null
  done
  [[ -f $WORK/fuse-mode ]] && chmod "$(cat "$WORK/fuse-mode")" /dev/fuse
  [[ -f $WORK/user-made ]] && USER_MADE=1
  if [[ $USER_MADE == 1 ]]; then
    userdel -r "$TEST_USER" >/dev/null 2>&1
    sed -i "/^$TEST_USER:/d" /etc/subuid /etc/subgid 2>/dev/null
  elif [[ -n $(user_home) ]]; then
    as_user rm -rf "$(user_home)/img-build-test" 2>/dev/null
  fi
}

# ---------------------------------------------------------------- helpers

img() { "$IMG" "$@"; }
bah() { buildah --root "$WORK/broot" --runroot "$WORK/brun" --storage-driver vfs "$@"; }
tree() { python3 "$SUPPORT/build_tree.py" "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN {printf "%.2f", a - b}'; }

# load_base: the base image (localhost/base:1) into this check's store
load_base() { img load -q -i "$GEN/base-docker.tar" >/dev/null || fail "img load of the base failed"; }

# images: what the store lists (IDs and names, intermediate images too)
images() { img images -a --no-trunc --format '{{.ID}} {{.Repository}}:{{.Tag}}' | sort; }

# trees [OPTIONS] A B: alike, as tests/support/build_tree.py cmp says
trees() { tree cmp "$@" >/dev/null 2>"$T/cmp" || fail "file trees differ: $(head -c 3000 "$T/cmp")"; }
# raw_env ARCHIVE: the config's Env as it is (order kept), as JSON
raw_env() { tree env "$1"; }
# configs [--fields=...] A B: the image configs' compared fields are alike
configs() { tree cmp-config "$@" >/dev/null 2>"$T/cmpc" || fail "configs differ: $(head -c 3000 "$T/cmpc")"; }

# ibuild NAME [ARGS...]: img build -t localhost/NAME:1, its output in
# $T/NAME.out and $T/NAME.err
ibuild() {
  local n=$1; shift
  img build -t "localhost/$n:1" "$@" >"$T/$n.out" 2>"$T/$n.err" || fail "img build of $n failed: $(tail -5 "$T/$n.err")"
}
# iexport NAME [FORMAT]: img's localhost/NAME:1 as $T/NAME-a.tar
# (docker-archive, or FORMAT) and its flattened tree $T/NAME-a.rootfs.tar
iexport() {
  local n=$1 f=${2:-docker-archive}
  img save --format "$f" -o "$T/$n-a.tar" "localhost/$n:1" || fail "img save $n failed"
  img export -o "$T/$n-a.rootfs.tar" "localhost/$n:1" || fail "img export $n failed"
}
# bbuild NAME [BUD ARGS...]: buildah bud into its private store as localhost/NAME
bbuild() {
  local n=$1; shift
  bah bud --isolation chroot -q -t "localhost/$n" "$@" >"$T/bud-$n.log" 2>&1 ||
    fail "buildah bud of $n failed: $(tail -5 "$T/bud-$n.log")"
}
# bexport NAME [FORMAT]: buildah's localhost/NAME as $T/NAME-b.tar
# (docker-archive, or FORMAT) and, through a scratch img store, its
# flattened tree $T/NAME-b.rootfs.tar
bexport() {
  local n=$1 f=${2:-docker-archive} id
  bah push -q "localhost/$n" "$f:$T/$n-b.tar:localhost/$n:1" >/dev/null 2>"$T/push.err" ||
    fail "buildah push of $n failed: $(cat "$T/push.err")"
  id=$(IMG_ROOT=$T/bstore img load -q -i "$T/$n-b.tar") || fail "img load of buildah's $n failed"
  IMG_ROOT=$T/bstore img export -o "$T/$n-b.rootfs.tar" "$id" || fail "img export of buildah's $n failed"
}

# entry TAR PATH: "TYPE MODE UID:GID MTIME SIZE" of PATH in a tar, or "absent"
entry() {
  python3 - "$1" "$2" <<'PY'
import sys, tarfile
want = sys.argv[2].strip("/")
found = "absent"
with tarfile.open(sys.argv[1]) as t:
    for m in t:
        if m.name.strip("/").removeprefix("./") == want:
            kind = "dir" if m.isdir() else "symlink" if m.issym() else "file" if m.isreg() else "other"
            found = "%s %o %d:%d %d %d" % (kind, m.mode & 0o7777, m.uid, m.gid, int(m.mtime), m.size)
print(found)
PY
}
# content TAR PATH: the file's bytes
content() { tar -xOf "$1" "$2" 2>/dev/null || tar -xOf "$1" "./$2" 2>/dev/null || fail "$2 is not in $1"; }

# touch_all DIR: every path of DIR gets mtime $CTX_TIME
touch_all() { find "$1" -exec touch -h -d "@$CTX_TIME" {} +; }

# The context of instructions.Dockerfile: files of several modes, a
# directory with a subdirectory, globbed files, a symlink, a .tar.gz with
# entries of other owners, every mtime $CTX_TIME.
make_instructions_context() {
  local c=$1
  mkdir -p "$c/dir/sub"
  echo "a file" > "$c/file.txt"
  echo "glob one" > "$c/one.glob"; echo "glob two" > "$c/two.glob"; echo "not globbed" > "$c/three.txt"
  echo "owned" > "$c/owned.txt"
  echo "mode" > "$c/mode.txt"; chmod 0604 "$c/mode.txt"
  echo "plain" > "$c/plain.txt"
  echo "top" > "$c/dir/top.txt"; chmod 0640 "$c/dir/top.txt"
  printf '#!/bin/sh\necho run\n' > "$c/dir/run.sh"; chmod 0755 "$c/dir/run.sh"
  echo "nested" > "$c/dir/sub/n.txt"; chmod 0700 "$c/dir/sub"
  ln -s file.txt "$c/link.txt"
  python3 - "$c/archive.tar.gz" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w:gz") as t:
    def add(name, kind, mode, uid, data=b"", link=""):
        ti = tarfile.TarInfo(name)
        ti.mode, ti.uid, ti.gid, ti.mtime = mode, uid, uid, 1650000000
        if kind == "dir":
            ti.type = tarfile.DIRTYPE
        elif kind == "sym":
            ti.type, ti.linkname = tarfile.SYMTYPE, link
        else:
            ti.size = len(data)
        t.addfile(ti, io.BytesIO(data) if kind == "file" else None)
    add("pkg", "dir", 0o750, 1000)
    add("pkg/bin-file", "file", 0o755, 1000, b"#!/bin/sh\n")
    add("pkg/nobody.txt", "file", 0o600, 65534, b"owned by nobody\n")
    add("pkg/link", "sym", 0o777, 0, link="bin-file")
    add("top.txt", "file", 0o644, 0, b"archive top\n")
PY
  cp "$CASES/instructions.Dockerfile" "$c/Dockerfile"
  touch_all "$c"
}

# ---------------------------------------------------------------- checks
# Each runs in its own subshell with `set -e`, with its own directory $T and
# its own store IMG_ROOT=$WORK/store-NAME.

# 1. Every instruction, built by img and by buildah in the docker format
# (which keeps HEALTHCHECK, SHELL and ONBUILD): the same tree, but for
# buildah's RUN mount points, with the mtimes of everything not made during
# the build, and the same config.
instructions_vs_buildah() {
  local format=$1 t0 ti tb
  local args=(--format "$format" --build-arg BASE=localhost/base:1 --build-arg FLAVOR=vanilla)
  load_base
  make_instructions_context "$T/ctx"
  t0=$(date +%s)
  ti=$(now); ibuild inst "${args[@]}" "$T/ctx"; ti=$(since "$ti")
  tb=$(now); bbuild inst "${args[@]}" "$T/ctx"; tb=$(since "$tb")
  echo "cold build of instructions.Dockerfile ($format): img $ti s, buildah $tb s" > "$T/measure"
  local problems=()
  problem() { problems+=("$*"); }
  local archive=docker-archive; [[ $format == oci ]] && archive=oci-archive
  iexport inst "$archive"
  bexport inst "$archive"
  local a=$T/inst-a.rootfs.tar
  tree cmp --since="$t0" --buildah=B "$a" "$T/inst-b.rootfs.tar" >/dev/null 2>"$T/cmp" ||
    problem "file trees differ: $(head -c 3000 "$T/cmp")"
  if [[ $format == docker ]]; then
    tree cmp-config "$T/inst-a.tar" "$T/inst-b.tar" >/dev/null 2>"$T/cmpc" || problem "configs differ: $(cat "$T/cmpc")"
  else
    tree cmp-config --fields=Env,Cmd,Entrypoint,WorkingDir,User,Labels,ExposedPorts,Volumes,StopSignal,author \
      "$T/inst-a.tar" "$T/inst-b.tar" >/dev/null 2>"$T/cmpc" || problem "configs differ: $(cat "$T/cmpc")"
  fi
  # What the comparison rests on, stated too. (Every difference is
  # reported, not only the first.)
  [[ $(content "$a" args.txt) == "args: 1.0 vanilla unused=unset" ]] || problem "args.txt: $(content "$a" args.txt)"
  [[ $(content "$a" exec.txt) == "exec-form 1 1.0" ]] || problem "exec.txt: $(content "$a" exec.txt)"
  [[ $(content "$a" tmp/shell.txt) == "shell 1.0 vanilla 1 two words three words form" ]] || problem "shell.txt: $(content "$a" tmp/shell.txt)"
  [[ $(content "$a" work/sub/relative/where.txt) == /work/sub/relative ]] || problem "WORKDIR relative is not /work/sub/relative"
  [[ $(content "$a" home/user/wd/uid.txt) == 1000 ]] || problem "RUN after USER user did not run as 1000"
  [[ $(entry "$a" copied/file.txt) == "file 644 0:0 $CTX_TIME 7" ]] || problem "copied/file.txt: $(entry "$a" copied/file.txt)"
  [[ $(entry "$a" copied/dir/sub) == "dir 700 0:0 $CTX_TIME 0" ]] || problem "copied/dir/sub: $(entry "$a" copied/dir/sub)"
  [[ $(entry "$a" owned/named.txt) == "file 644 1000:1000 $CTX_TIME 6" ]] || problem "--chown=user:user: $(entry "$a" owned/named.txt)"
  [[ $(entry "$a" owned/new) == "dir 755 1234:5678 "* ]] || problem "the directory made for --chown=1234:5678: $(entry "$a" owned/new)"
  [[ $(entry "$a" modes/mode.txt) == "file 600 0:0 $CTX_TIME 5" ]] || problem "--chmod=0600: $(entry "$a" modes/mode.txt)"
  [[ $(entry "$a" modes/dir/sub) == "dir 750 1000:1000 "* ]] || problem "--chmod=0750 on a directory: $(entry "$a" modes/dir/sub)"
  [[ $(entry "$a" extracted/pkg/nobody.txt) == "file 600 65534:65534 1650000000 16" ]] || problem "ADD kept no owner: $(entry "$a" extracted/pkg/nobody.txt)"
  [[ $(entry "$a" home/user/wd) == "dir 755 1000:1000 "* ]] || problem "WORKDIR after USER user: $(entry "$a" home/user/wd)"
  [[ $(entry "$a" three.txt) == absent && $(entry "$a" globbed/three.txt) == absent ]] || problem "the glob took three.txt"
  tree artifacts "$T/inst-a.tar" > "$T/found" || problem "img's layers hold RUN mount points: $(head -5 "$T/found" | paste -sd' ')"
  local want="quoted key 1000:1000"
  [[ $(tree config "$T/inst-a.tar" | python3 -c 'import json,sys; c=json.load(sys.stdin); print(c["Labels"].get("org.example.quoted"), c["User"])') == "$want" ]] ||
    problem "config: $(tree config "$T/inst-a.tar")"
  [[ ${#problems[@]} == 0 ]] || fail "$(printf '%s\n' "${problems[@]}")"
}
check_instructions_match_buildah_docker_format() { instructions_vs_buildah docker; }
check_instructions_match_buildah_oci_format() { instructions_vs_buildah oci; }

# 2. RUN has /proc and /dev (null usable) while it runs, and
# none of those mount points (proc, dev, sys, run, etc/hosts,
# etc/resolv.conf) is in img's layers or tree; buildah's do hold them (so
# the look would see them).
check_layers_hold_no_run_mount_points() {
  load_base
  mkdir -p "$T/ctx"
  cat > "$T/ctx/Dockerfile" <<'EOF'
FROM localhost/base:1
RUN test -r /proc/self/status && echo x > /dev/null && test -c /dev/zero && test -d /dev/shm && echo ran > /ran
RUN /bin/busybox mkdir -p /srv/x && /bin/busybox head -c 16 /dev/urandom > /srv/x/random && /bin/busybox ls /proc/1 > /srv/pid1
USER user
RUN echo as-user > /tmp/as-user
EOF
  ibuild mp "$T/ctx"
  iexport mp
  local a=$T/mp-a
  tree artifacts "$a.tar" > "$T/found" || fail "img's layers hold RUN mount points: $(head -20 "$T/found")"
  [[ $(content "$a.rootfs.tar" ran) == ran ]] || fail "the RUN did not see /proc or /dev"
  tar -tf "$a.rootfs.tar" | sed 's|^\./||; s|/$||' | grep -xE 'proc|dev|sys|run|etc/hosts|etc/resolv.conf|(proc|dev|sys|run)/.*' > "$T/found2" &&
    fail "img's tree holds: $(head "$T/found2")"
  bbuild mp "$T/ctx"
  bexport mp
  ! tree artifacts "$T/mp-b.tar" >/dev/null || fail "buildah's layers hold no RUN mount points: the look would miss them"
  trees --since=1700000001 --buildah=B --ignore=srv/x/random "$a.rootfs.tar" "$T/mp-b.rootfs.tar"
}

# With the host's network (the default), RUN resolves names as the host
# does: /etc/resolv.conf (the host's nameservers) and /etc/hosts (localhost)
# are there while it runs, also in an image that has neither (as with
# docker and buildah); and they are still not in the layer.
check_run_sees_resolver_files() {
  load_base
  mkdir -p "$T/ctx"
  printf 'FROM localhost/base:1\nRUN cat /etc/resolv.conf > /tmp/resolv.seen; cat /etc/hosts > /tmp/hosts.seen; true\n' > "$T/ctx/Dockerfile"
  ibuild resolv "$T/ctx"
  iexport resolv
  local a=$T/resolv-a.rootfs.tar want
  want=$(grep '^nameserver' /etc/resolv.conf || true)
  [[ -n $want ]] || { echo "# the host's /etc/resolv.conf has no nameserver: not checked" > "$T/measure"; return 0; }
  [[ $(content "$a" tmp/resolv.seen | grep '^nameserver') == "$want" ]] ||
    fail "RUN's /etc/resolv.conf in an image without one: '$(content "$a" tmp/resolv.seen | paste -sd'|')', not the host's '$want'"
  content "$a" tmp/hosts.seen | has -w localhost || fail "RUN's /etc/hosts in an image without one has no localhost: '$(content "$a" tmp/hosts.seen | paste -sd'|')'"
  tree artifacts "$T/resolv-a.tar" > "$T/found" || fail "the layers hold: $(cat "$T/found")"
}

# The environment RUN sees (as root and as USER user), but the host name, is
# buildah's (and docker's): PATH, HOME from /etc/passwd, PWD, ...
check_run_environment_matches_buildah() {
  load_base
  mkdir -p "$T/ctx"
  cat > "$T/ctx/Dockerfile" <<'EOF'
FROM localhost/base:1
ENV E1=one
RUN env | /bin/busybox grep -v ^HOSTNAME= | /bin/busybox sort > /env-root
USER user
RUN env | /bin/busybox grep -v ^HOSTNAME= | /bin/busybox sort > /tmp/env-user
EOF
  ibuild env "$T/ctx"
  iexport env
  bbuild env "$T/ctx"
  bexport env
  local a=$T/env-a.rootfs.tar b=$T/env-b.rootfs.tar f problems=()
  for f in env-root tmp/env-user; do
    [[ $(content "$a" $f) == "$(content "$b" $f)" ]] ||
      problems+=("RUN's environment ($f): img: $(content "$a" $f | paste -sd' '); buildah: $(content "$b" $f | paste -sd' ')")
  done
  [[ ${#problems[@]} == 0 ]] || fail "$(printf '%s\n' "${problems[@]}")"
}

# An image built FROM a base without Env (made by img import) had no PATH in
# its config, so that `ctr run` of it could not find its commands: docker
# and buildah append their default PATH after the base's variables when the
# base sets none (FROM scratch too), and keep a PATH the base or an ENV
# sets. The configs' Env, in order, and what RUN sees are buildah's.
check_base_without_path_gets_default_path() {
  local c=$T/ctx name df problems=()
  img import "$GEN/base-rootfs.tar" localhost/bare:1 >/dev/null || fail "img import failed"
  img import -c 'ENV FOO=bar' "$GEN/base-rootfs.tar" localhost/foo:1 >/dev/null || fail "img import -c failed"
  for name in bare foo; do
    img save --format docker-archive -o "$T/$name.tar" "localhost/$name:1" || fail "img save $name failed"
    bah pull -q "docker-archive:$T/$name.tar" >/dev/null 2>"$T/pull.err" || fail "buildah pull of $name failed: $(cat "$T/pull.err")"
  done
  [[ $(raw_env "$T/bare.tar") == null ]] || fail "the imported base has an Env: $(raw_env "$T/bare.tar")"
  mkdir -p "$c"; echo a > "$c/a.txt"
  for name in bare foo scratch setpath; do
    case $name in
      bare) df='FROM localhost/bare:1\nENV X=1\nRUN echo "$PATH" > /path.txt\nRUN env | grep ^PATH= > /env-path.txt\n' ;;
      foo) df='FROM localhost/foo:1\nRUN echo "$PATH" > /path.txt\n' ;;
      scratch) df='FROM scratch\nCOPY a.txt /\n' ;;
      setpath) df='FROM localhost/bare:1\nENV PATH=/opt/bin:/bin\nRUN echo "$PATH" > /path.txt\n' ;;
    esac
    printf "$df" > "$c/Dockerfile"
    ibuild "p-$name" "$c"
    iexport "p-$name"
    bbuild "p-$name" "$c"
    bexport "p-$name"
    local ie be
    ie=$(raw_env "$T/p-$name-a.tar"); be=$(raw_env "$T/p-$name-b.tar")
    [[ $ie == "$be" ]] || problems+=("FROM $name: img's Env $ie, buildah's $be")
    if [[ $name != scratch ]]; then
      [[ $(content "$T/p-$name-a.rootfs.tar" path.txt) == "$(content "$T/p-$name-b.rootfs.tar" path.txt)" ]] ||
        problems+=("FROM $name: RUN saw PATH=$(content "$T/p-$name-a.rootfs.tar" path.txt), buildah's RUN $(content "$T/p-$name-b.rootfs.tar" path.txt)")
    fi
  done
  local want='["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "X=1"]'
  [[ $(raw_env "$T/p-bare-a.tar") == "$want" ]] || problems+=("FROM bare: Env $(raw_env "$T/p-bare-a.tar"), not $want")
  [[ $(content "$T/p-bare-a.rootfs.tar" env-path.txt) == "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" ]] ||
    problems+=("RUN's environment: $(content "$T/p-bare-a.rootfs.tar" env-path.txt)")
  [[ $(raw_env "$T/p-setpath-a.tar") == '["PATH=/opt/bin:/bin"]' ]] || problems+=("ENV PATH: $(raw_env "$T/p-setpath-a.tar")")
  [[ ${#problems[@]} == 0 ]] || fail "$(printf '%s\n' "${problems[@]}")"
}

# The history of a multi-source COPY (COPY a b /dir/) said dir:HASH in /dir
# where docker and buildah write multi:HASH in /dir/: each COPY and ADD
# says file:, dir: or multi: as buildah does, with the destination as
# written (the hashes are each tool's own); multi's is the sha256 of the
# sources' KIND:HASH joined by commas, as docker makes it; --chown comes
# as docker writes it (buildah leaves it out).
check_multi_source_copy_history_says_multi() {
  load_base
  local c=$T/ctx
  mkdir -p "$c/d/sub"; echo a > "$c/a.txt"; echo b > "$c/b.txt"; echo n > "$c/d/sub/n"
  cat > "$c/Dockerfile" <<'EOF'
FROM localhost/base:1
WORKDIR /w
COPY a.txt /one/
COPY d /two/
COPY a.txt b.txt /multi/
COPY a.txt d /mixed/
COPY *.txt /glob/
COPY b* /g1/
COPY a.txt rel
ADD a.txt /add/
ADD a.txt b.txt /add-multi/
COPY --chown=1000:1000 a.txt /owned
EOF
  touch_all "$c"
  ibuild hist "$c"; iexport hist
  bbuild hist "$c"; bexport hist
  tree history "$T/hist-a.tar" | tail -n +2 > "$T/a.hist"
  tree history "$T/hist-b.tar" | tail -n +2 > "$T/b.hist"
  local masked_a masked_b
  masked_a=$(grep -v -- --chown "$T/a.hist" | sed -E 's/[0-9a-f]{64}/HASH/')
  masked_b=$(grep -v 'in /owned $' "$T/b.hist" | sed -E 's/[0-9a-f]{64}/HASH/')
  [[ $masked_a == "$masked_b" ]] || fail "history differs from buildah's:$(diff <(echo "$masked_a") <(echo "$masked_b") | sed 's/^/ /' | paste -sd'|')"
  grep -qE '^/bin/sh -c #\(nop\) COPY --chown=1000:1000file:[0-9a-f]{64} in /owned $' "$T/a.hist" ||
    fail "COPY --chown's history is not docker's: $(grep owned "$T/a.hist")"
  local ha hb want
  ha=$(sed -nE 's|^/bin/sh -c #\(nop\) COPY file:([0-9a-f]{64}) in /one/ $|\1|p' "$T/a.hist")
  hb=$(sed -nE 's|^/bin/sh -c #\(nop\) COPY file:([0-9a-f]{64}) in /g1/ $|\1|p' "$T/a.hist")
  [[ -n $ha && -n $hb ]] || fail "no file: entries for a.txt and b.txt: $(cat "$T/a.hist")"
  want=$(printf 'file:%s,file:%s' "$ha" "$hb" | sha256sum | cut -c1-64)
  has -xF "/bin/sh -c #(nop) COPY multi:$want in /multi/ " "$T/a.hist" ||
    fail "multi's hash is not sha256(file:A,file:B) ($want): $(grep /multi/ "$T/a.hist")"
}

# 3. Multi-stage: COPY --from by name and index keeps owner, mode, mtime;
# FROM an earlier stage; --target stops there. Like buildah's.
check_multistage_and_target_match_buildah() {
  load_base
  mkdir -p "$T/ctx"
  echo ctx > "$T/ctx/ctxfile"
  cp "$CASES/multistage.Dockerfile" "$T/ctx/Dockerfile"
  touch_all "$T/ctx"
  local t0; t0=$(date +%s)
  ibuild ms-final --target final "$T/ctx"
  ibuild ms-extra "$T/ctx"
  bbuild ms-final --target final "$T/ctx"
  bbuild ms-extra "$T/ctx"
  iexport ms-final; iexport ms-extra
  bexport ms-final; bexport ms-extra
  local a=$T/ms-final-a
  trees --since="$t0" --buildah=B "$a.rootfs.tar" "$T/ms-final-b.rootfs.tar"
  trees --since="$t0" --buildah=B "$T/ms-extra-a.rootfs.tar" "$T/ms-extra-b.rootfs.tar"
  configs "$a.tar" "$T/ms-final-b.tar"
  configs "$T/ms-extra-a.tar" "$T/ms-extra-b.tar"
  [[ $(entry "$a.rootfs.tar" copied-out/sub/artifact) == "file 640 1000:1000 1500000000 6" ]] ||
    fail "COPY --from did not keep owner, mode, mtime: $(entry "$a.rootfs.tar" copied-out/sub/artifact)"
  [[ $(entry "$a.rootfs.tar" copied-out/sub) == "dir 710 1000:1000 "* ]] || fail "copied-out/sub: $(entry "$a.rootfs.tar" copied-out/sub)"
  [[ $(entry "$a.rootfs.tar" copied-out/ctxfile) == "file 644 65534:65534 $CTX_TIME 4" ]] || fail "copied-out/ctxfile: $(entry "$a.rootfs.tar" copied-out/ctxfile)"
  [[ $(entry "$a.rootfs.tar" artifact-by-index) == "file 640 1000:1000 1500000000 6" ]] || fail "COPY --from=0: $(entry "$a.rootfs.tar" artifact-by-index)"
  [[ $(content "$a.rootfs.tar" second.txt) == second ]] || fail "the stage FROM builder is wrong"
  [[ $(entry "$a.rootfs.tar" extra.txt) == absent && $(entry "$a.rootfs.tar" out) == absent ]] || fail "--target final built more than final"
  [[ $(content "$T/ms-extra-a.rootfs.tar" extra.txt) == extra ]] || fail "the last stage did not run"
  tree config "$T/ms-extra-a.tar" | has '"STAGE=final"' || fail "FROM final lost final's ENV"
  ibuild ms-builder --target builder "$T/ctx"
  [[ $(img inspect -f '{{.Id}}' localhost/ms-builder:1) != "$(img inspect -f '{{.Id}}' localhost/ms-final:1)" ]] || fail "--target builder is final"
  img export -o "$T/builder.tar" localhost/ms-builder:1
  [[ $(entry "$T/builder.tar" out/ctxfile) != absent && $(entry "$T/builder.tar" copied-out) == absent ]] || fail "--target builder is not the builder stage"
}

# ONBUILD triggers run in a child build (before its own instructions), and
# the child keeps none of them.
check_onbuild_triggers_run_in_child() {
  load_base
  mkdir -p "$T/parent" "$T/child"
  echo from-child-context > "$T/child/ctx.txt"
  cat > "$T/parent/Dockerfile" <<'EOF'
FROM localhost/base:1
ONBUILD RUN echo trigger > /onbuild.txt
ONBUILD COPY ctx.txt /from-trigger.txt
EOF
  cat > "$T/child/Dockerfile" <<'EOF'
FROM localhost/parent:1
RUN cat /onbuild.txt /from-trigger.txt > /seen-by-child.txt
EOF
  ibuild parent --format docker "$T/parent"
  img export -o "$T/parent.tar" localhost/parent:1
  [[ $(entry "$T/parent.tar" onbuild.txt) == absent ]] || fail "the trigger ran in the parent"
  ibuild child --format docker "$T/child"
  img export -o "$T/child.tar" localhost/child:1
  [[ $(content "$T/child.tar" seen-by-child.txt) == "trigger"$'\n'"from-child-context" ]] ||
    fail "the child saw: $(content "$T/child.tar" seen-by-child.txt)"
  img save -o "$T/child-a.tar" localhost/child:1
  tree config "$T/child-a.tar" | python3 -c 'import json,sys; sys.exit("OnBuild" in json.load(sys.stdin))' ||
    fail "the child image keeps OnBuild: $(tree config "$T/child-a.tar")"
}

# 4. A failing RUN: exit 1, the line, the command and the status; the
# steps after it do not run; no image; fsck clean.
check_failing_run() {
  load_base
  mkdir -p "$T/ctx"
  printf 'FROM localhost/base:1\nRUN echo one\n\nRUN echo two; exit 3\nRUN echo never-runs\n' > "$T/ctx/Dockerfile"
  local before rc=0; before=$(images)
  img build -t localhost/failing:1 "$T/ctx" >"$T/out" 2>"$T/err" || rc=$?
  [[ $rc == 1 ]] || fail "exit $rc, not 1: $(cat "$T/err")"
  grep -qxF "error: line 4: RUN echo two; exit 3: the command exited with status 3" "$T/err" ||
    fail "the error does not name line, command and status: $(tail -3 "$T/err")"
  ! grep -q never-runs "$T/out" "$T/err" || fail "the step after the failing one ran"
  [[ ! -s $T/out ]] || fail "stdout holds: $(cat "$T/out")"
  [[ $(images) == "$before" ]] || fail "the store changed: $(images)"
  img fsck >"$T/fsck" 2>&1 || fail "img fsck: $(cat "$T/fsck")"
  # -q still shows the failing command's output
  rc=0; img build -q "$T/ctx" >"$T/out" 2>"$T/err" || rc=$?
  [[ $rc == 1 ]] && grep -q '^two$' "$T/err" && grep -q "status 3" "$T/err" || fail "-q: exit $rc: $(cat "$T/err")"
}

# 5. Bad input: each exits non-zero with a message naming what is wrong,
# and the store's images stay as they were.
check_bad_input_refused() {
  load_base
  local c=$T/ctx before rc; mkdir -p "$c/sub"
  before=$(images)
  echo "secret outside the context" > "$c/outside"
  printf 'FROM localhost/base:1\nFROB x\n' > "$c/unknown.Dockerfile"
  printf 'FROM localhost/base:1\nCOPY missing.txt /\n' > "$c/missing.Dockerfile"
  printf 'FROM localhost/base:1\nCOPY ../outside /x\n' > "$c/sub/Dockerfile"
  printf 'FROM localhost/base:1\nCOPY ../../outside /y\n' > "$c/sub/deeper.Dockerfile"
  python3 -c 'import sys; sys.stdout.write("FROM localhost/base:1\n" + "# padding\n" * 110000 + "RUN true\n")' > "$c/big.Dockerfile"
  printf 'FROM localhost/base:1\nRUN true\n' > "$c/Dockerfile"
  refused() { # refused WHAT PATTERN ARGS...: img build ARGS fails, stderr matching PATTERN
    local what=$1 pat=$2; shift 2
    rc=0; img build -t localhost/bad:1 "$@" >"$T/out" 2>"$T/err" || rc=$?
    [[ $rc != 0 ]] || fail "$what: exit 0"
    grep -qE "$pat" "$T/err" || fail "$what: the error does not match /$pat/: $(tail -3 "$T/err")"
    [[ $(images) == "$before" ]] || fail "$what: the store changed: $(images)"
  }
  refused "unknown instruction" 'line 2.*FROB|FROB.*line 2' -f "$c/unknown.Dockerfile" "$c"
  refused "missing context" "$T/no-such-dir" "$T/no-such-dir"
  refused "missing Dockerfile" "no-such.Dockerfile" -f "$c/no-such.Dockerfile" "$c"
  refused "COPY of a missing file" 'missing\.txt' -f "$c/missing.Dockerfile" "$c"
  refused "COPY ../outside" 'outside' "$c/sub"
  refused "COPY ../../outside" 'outside' -f "$c/sub/deeper.Dockerfile" "$c/sub"
  refused "a Dockerfile over 1 MiB" '1048576|MiB|too (big|large)' -f "$c/big.Dockerfile" "$c"
  refused "an unknown --target" 'nosuchstage' --target nosuchstage "$c"
  img fsck >"$T/fsck" 2>&1 || fail "img fsck: $(cat "$T/fsck")"
}

# 6. .dockerignore: excluded files are not in the context (COPY . lacks
# them, COPY of one fails), a ! exception comes back, the rest is copied;
# like buildah.
check_dockerignore() {
  load_base
  local c=$T/ctx
  mkdir -p "$c/logs" "$c/keep/deep" "$c/node_modules/x"
  echo a > "$c/a.txt"; echo b > "$c/keep/b.txt"; echo d > "$c/keep/deep/d.txt"
  echo log > "$c/logs/x.log"; echo important > "$c/logs/important.log"; echo other > "$c/logs/other.txt"
  echo key > "$c/secret.key"; echo key2 > "$c/keep/deep/nested.key"; echo m > "$c/node_modules/x/m.js"
  printf 'logs/*.log\n!logs/important.log\n*.key\n**/*.key\nnode_modules\n' > "$c/.dockerignore"
  printf 'FROM localhost/base:1\nCOPY . /all/\n' > "$c/Dockerfile"
  printf 'FROM localhost/base:1\nCOPY secret.key /\n' > "$c/excluded.Dockerfile"
  touch_all "$c"
  ibuild di "$c"
  iexport di
  local a=$T/di-a.rootfs.tar p
  for p in all/logs/x.log all/secret.key all/keep/deep/nested.key all/node_modules; do
    [[ $(entry "$a" $p) == absent ]] || fail "$p was copied though .dockerignore excludes it"
  done
  for p in all/logs/important.log all/logs/other.txt all/a.txt all/keep/b.txt all/keep/deep/d.txt all/Dockerfile all/.dockerignore; do
    [[ $(entry "$a" $p) == file* ]] || fail "$p was not copied"
  done
  local rc=0; img build -f "$c/excluded.Dockerfile" "$c" >/dev/null 2>"$T/err" || rc=$?
  [[ $rc != 0 ]] && grep -q 'secret\.key' "$T/err" || fail "COPY of an excluded file: exit $rc: $(tail -2 "$T/err")"
  bbuild di "$c"
  bexport di
  trees --since=1700000001 --buildah=B "$a" "$T/di-b.rootfs.tar"
}

# 7. Heredocs (img alone): RUN <<EOF runs the script, RUN <<EOF CMD feeds
# CMD, COPY <<EOF writes the content (expanded unless the word is quoted,
# tabs stripped with <<-).
check_heredocs() {
  load_base
  mkdir -p "$T/ctx"
  ibuild heredoc -f "$CASES/heredoc.Dockerfile" "$T/ctx"
  img export -o "$T/h.tar" localhost/heredoc:1
  local a=$T/h.tar
  [[ $(content "$a" h1.txt) == "line1"$'\n'"line2 heredoc" ]] || fail "RUN <<EOF: h1.txt is $(content "$a" h1.txt | od -c | head -3)"
  [[ $(content "$a" h-stdin.txt) == "fed on standard input" ]] || fail "RUN <<EOF CMD: h-stdin.txt is $(content "$a" h-stdin.txt)"
  [[ $(content "$a" etc/greeting) == "hello from a heredoc"$'\n'"  indented heredoc" ]] || fail "COPY <<EOF: $(content "$a" etc/greeting | od -c | head -3)"
  [[ $(entry "$a" etc/greeting) == "file 644 0:0 "* ]] || fail "COPY <<EOF file: $(entry "$a" etc/greeting)"
  [[ $(content "$a" tabs.txt) == "tab-stripped" ]] || fail "COPY <<-EOT: $(content "$a" tabs.txt | od -c | head -3)"
  [[ $(content "$a" quoted.txt) == 'not expanded: $WHO' ]] || fail "COPY <<'EOF': $(content "$a" quoted.txt)"
  [[ $(content "$a" h2.txt) == "$(content "$a" etc/greeting)" ]] || fail "RUN <<ONE cat: h2.txt is $(content "$a" h2.txt)"
}

# 8. The layer cache: an unchanged rebuild uses the cache for every step
# and gives the same ID; a changed context file re-runs its COPY and what
# follows, not what comes before; --no-cache runs everything.
check_cache() {
  load_base
  local c=$T/ctx id1 id2 id3 id4
  mkdir -p "$c"; echo a > "$c/a.txt"; echo b > "$c/b.txt"
  printf 'FROM localhost/base:1\nRUN echo MARK-1 && echo 1 > /m1\nCOPY a.txt /a.txt\nRUN echo MARK-2 && cat /a.txt > /m2\nCOPY b.txt /b.txt\nENV X=1\nRUN echo MARK-3\n' > "$c/Dockerfile"
  ran() { grep -x 'MARK-[0-9]' "$1" | paste -sd' '; }
  id1=$(img build "$c" 2>"$T/e1") || fail "first build failed: $(tail -3 "$T/e1")"
  [[ $(ran "$T/e1") == "MARK-1 MARK-2 MARK-3" ]] || fail "first build ran: $(ran "$T/e1")"
  id2=$(img build "$c" 2>"$T/e2") || fail "rebuild failed"
  [[ $id2 == "$id1" ]] || fail "the rebuild's ID $id2 is not $id1"
  [[ -z $(ran "$T/e2") ]] || fail "the rebuild ran: $(ran "$T/e2")"
  # (the 5 steps that change files; img prints nothing for ENV's)
  [[ $(grep -c -- '--> Using cache' "$T/e2") -ge 5 ]] || fail "the rebuild used the cache $(grep -c -- '--> Using cache' "$T/e2") times, not 5: $(cat "$T/e2")"
  echo changed > "$c/a.txt"
  id3=$(img build "$c" 2>"$T/e3") || fail "build after the change failed"
  [[ $(ran "$T/e3") == "MARK-2 MARK-3" ]] || fail "after changing a.txt these ran: $(ran "$T/e3")"
  [[ $(grep -c -- '--> Using cache' "$T/e3") == 1 ]] || fail "after changing a.txt: $(cat "$T/e3")"
  [[ $id3 != "$id1" ]] || fail "the same ID after a change"
  img export -o "$T/x.tar" "$id3"
  [[ $(content "$T/x.tar" m2) == changed ]] || fail "m2 does not hold the new a.txt"
  id4=$(img build --no-cache "$c" 2>"$T/e5") || fail "--no-cache build failed"
  [[ $(ran "$T/e5") == "MARK-1 MARK-2 MARK-3" ]] && ! grep -q 'Using cache' "$T/e5" || fail "--no-cache: $(cat "$T/e5")"
  local t0 t1
  t0=$(now); img build -q "$c" >/dev/null 2>&1; t1=$(since "$t0")
  echo "cached rebuild of a 7-step Dockerfile: $t1 s" > "$T/measure"
  # A changed --build-arg used by a RUN re-runs it
  printf 'FROM localhost/base:1\nARG V=1\nRUN echo MARK-$V\n' > "$c/arg.Dockerfile"
  img build -f "$c/arg.Dockerfile" "$c" >/dev/null 2>"$T/e6"
  img build -f "$c/arg.Dockerfile" --build-arg V=2 "$c" >/dev/null 2>"$T/e7"
  [[ $(ran "$T/e7") == "MARK-2" ]] || fail "a new --build-arg value did not re-run the RUN: $(cat "$T/e7")"
}

# 9. --build-static: the same ID on every build (--no-cache), after the
# context's mtimes change too, and not the ID of a plain build.
check_build_static() {
  load_base
  local c=$T/ctx a b s p
  mkdir -p "$c/d"; echo a > "$c/a.txt"; echo d > "$c/d/f"
  printf 'FROM localhost/base:1\nCOPY . /ctx/\nRUN echo made > /made && /bin/busybox mkdir /newdir\nENV S=1\nLABEL l=v\n' > "$c/Dockerfile"
  a=$(img build -q --build-static --no-cache "$c" 2>"$T/e1") || fail "build failed: $(tail -3 "$T/e1")"
  sleep 1.1
  b=$(img build -q --build-static --no-cache "$c" 2>"$T/e2") || fail "build failed"
  [[ $a == "$b" ]] || fail "two --build-static --no-cache builds: $a, $b"
  find "$c" -exec touch {} +
  s=$(img build -q --build-static --no-cache "$c" 2>"$T/e3") || fail "build failed"
  [[ $s == "$a" ]] || fail "after touching the context: $s, not $a"
  p=$(img build -q --no-cache "$c" 2>"$T/e4") || fail "build failed"
  [[ $p != "$a" ]] || fail "a plain build has the static build's ID"
  # With the cache warm from the plain build: still the static image (the
  # plain build's layers, with their times, were once taken from the cache).
  local w; w=$(img build -q --build-static "$c" 2>"$T/e5") || fail "build failed"
  [[ $w == "$a" ]] || fail "a --build-static build after a plain one: $w, not $a"
  # The same tree as the plain build, but for mtimes.
  img export -o "$T/s.tar" "$a"; img export -o "$T/p.tar" "$p"
  tree cmp --since=0 "$T/s.tar" "$T/p.tar" >/dev/null 2>"$T/cmp" || fail "static and plain trees differ: $(head -c 2000 "$T/cmp")"
}

# 10. Outputs: docker-archive:PATH:NAME and oci-archive:PATH:NAME that
# skopeo reads, named NAME; --iidfile holds the ID; img:NAME; -q prints
# sha256:ID and nothing else; docker-daemon and isulad without docker or
# isula: a clear error naming the tool.
check_outputs() {
  load_base
  local c=$T/ctx id qid rc
  mkdir -p "$c"
  printf 'FROM localhost/base:1\nRUN echo out > /out\nCMD ["/bin/cat", "/out"]\n' > "$c/Dockerfile"
  id=$(img build --iidfile "$T/iid" -t localhost/out:1 "$c" 2>"$T/e0") || fail "build failed: $(tail -3 "$T/e0")"
  [[ $id =~ ^[0-9a-f]{64}$ ]] || fail "stdout is not an image ID: $id"
  [[ $(cat "$T/iid") == "sha256:$id" || $(cat "$T/iid") == "$id" ]] || fail "--iidfile holds $(cat "$T/iid"), not $id"
  qid=$(img build -q "$c" 2>/dev/null) || fail "-q build failed"
  [[ $qid == "sha256:$id" ]] || fail "-q printed $qid"
  [[ $(img inspect -f '{{.Id}}' localhost/out:1) == *"$id" ]] || fail "localhost/out:1 is not $id"

  img build -q -o "docker-archive:$T/d.tar:localhost/darch:1" "$c" >"$T/id-d" 2>"$T/e1" || fail "-o docker-archive failed: $(tail -3 "$T/e1")"
  skopeo inspect "docker-archive:$T/d.tar" >"$T/d.json" 2>"$T/e" || fail "skopeo inspect of the docker-archive failed: $(cat "$T/e")"
  python3 - "$T/d.tar" "$T/d.json" <<'PY' || fail "the docker-archive is not the image"
import json, sys, tarfile
t = tarfile.open(sys.argv[1])
m = json.load(t.extractfile("manifest.json"))
assert m[0]["RepoTags"] == ["localhost/darch:1"], m[0]["RepoTags"]
s = json.load(open(sys.argv[2]))
assert len(s["Layers"]) == 2, s["Layers"]
PY
  [[ $(skopeo inspect --config "docker-archive:$T/d.tar" | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["Cmd"])') == "['/bin/cat', '/out']" ]] ||
    fail "skopeo sees another config"
  img build -q -o "oci-archive:$T/o.tar:localhost/oarch:1" "$c" >/dev/null 2>"$T/e2" || fail "-o oci-archive failed: $(tail -3 "$T/e2")"
  skopeo inspect "oci-archive:$T/o.tar" >/dev/null 2>"$T/e" || fail "skopeo inspect of the oci-archive failed: $(cat "$T/e")"
  skopeo inspect "oci-archive:$T/o.tar:localhost/oarch:1" >/dev/null 2>"$T/e" ||
    fail "the oci-archive has no reference localhost/oarch:1: $(cat "$T/e")"
  skopeo copy -q "oci-archive:$T/o.tar" "oci:$T/layout:x" >/dev/null 2>"$T/e" || fail "skopeo copy of the oci-archive failed: $(cat "$T/e")"
  IMG_ROOT=$T/other img load -q -i "$T/d.tar" >/dev/null || fail "img load of the docker-archive failed"
  IMG_ROOT=$T/other img export -o "$T/d.rootfs.tar" localhost/darch:1 || fail "the docker-archive is not named localhost/darch:1 for img"
  [[ $(content "$T/d.rootfs.tar" out) == out ]] || fail "the docker-archive's tree lacks /out"

  img build -q -o img:localhost/named:2 "$c" >/dev/null 2>&1 || fail "-o img:NAME failed"
  images | has ' localhost/named:2$' || fail "-o img:localhost/named:2 is not listed"

  local nodocker=$T/nodocker; mkdir -p "$nodocker"
  rc=0; env PATH="$nodocker:/usr/sbin:/usr/bin:/sbin:/bin" "$IMG" build -q -o docker-daemon:localhost/dd:1 "$c" >/dev/null 2>"$T/e3" || rc=$?
  if PATH="/usr/sbin:/usr/bin:/sbin:/bin" command -v docker >/dev/null; then
    echo "# docker is in /usr/bin here: not a check of a missing docker" >> "$T/measure"
  else
    [[ $rc != 0 ]] || fail "-o docker-daemon without docker: exit 0"
    grep -qi docker "$T/e3" && grep -qiE 'not found|No such file|install|cannot run' "$T/e3" ||
      fail "-o docker-daemon without docker: the error does not name the missing docker: $(cat "$T/e3")"
  fi
  if command -v docker >/dev/null && ! docker info >/dev/null 2>&1; then
    rc=0; img build -q -o docker-daemon:localhost/dd:1 "$c" >/dev/null 2>"$T/e4" || rc=$?
    [[ $rc != 0 ]] && grep -qi docker "$T/e4" || fail "-o docker-daemon with docker but no daemon: exit $rc: $(cat "$T/e4")"
  fi
  if ! command -v isula >/dev/null; then
    rc=0; img build -q -o isulad:localhost/is:1 "$c" >/dev/null 2>"$T/e5" || rc=$?
    [[ $rc != 0 ]] || fail "-o isulad without isula: exit 0"
    grep -qi isula "$T/e5" && grep -qiE 'not found|No such file|install|cannot run' "$T/e5" ||
      fail "-o isulad without isula: the error does not name the missing isula: $(cat "$T/e5")"
  fi
  rc=0; img build -q -o bogus:x "$c" >/dev/null 2>"$T/e6" || rc=$?
  [[ $rc != 0 ]] || fail "-o bogus:x: exit 0"
  img fsck >"$T/fsck" 2>&1 || fail "img fsck: $(cat "$T/fsck")"
}

# An -o output writes only its output: -o docker-archive:FILE:busybox:latest
# with FROM busybox retagged the store's busybox:latest to the new image
# (the base became <none> and the next identical build stacked another
# layer); -o isulad:busybox did the same; a failed -o left its name tagged.
check_output_does_not_retag_the_store() {
  load_base
  img tag localhost/base:1 docker.io/library/busybox:latest
  local c=$T/ctx base id1 id2
  base=$(img inspect -f '{{.Id}}' busybox:latest)
  mkdir -p "$c"
  printf 'FROM busybox\nRUN echo x > /x\n' > "$c/Dockerfile"
  id1=$(img build -q -o "docker-archive:$T/a.tar:busybox:latest" "$c" 2>"$T/e1") || fail "build -o docker-archive: $(tail -3 "$T/e1")"
  [[ $(img inspect -f '{{.Id}}' busybox:latest) == "$base" ]] || fail "-o docker-archive retagged busybox:latest"
  tar -xOf "$T/a.tar" manifest.json | python3 -c 'import json,sys; t=json.load(sys.stdin)[0]["RepoTags"]; assert t in (["busybox:latest"], ["docker.io/library/busybox:latest"]), t' ||
    fail "the archive is not named busybox:latest: $(tar -xOf "$T/a.tar" manifest.json)"
  id2=$(img build -q -o "docker-archive:$T/b.tar:busybox:latest" "$c" 2>"$T/e2") || fail "the second build: $(tail -3 "$T/e2")"
  [[ $id1 == "$id2" ]] || fail "the same build again made another image ($id1, then $id2)"
  [[ $(img inspect -f '{{len .RootFS.Layers}}' "$id2") == $(( $(img inspect -f '{{len .RootFS.Layers}}' "$base") + 1 )) ]] ||
    fail "the build stacked more than one layer on the base"
  img build -q -o isulad:busybox "$c" >/dev/null 2>&1 || true   # without isula it fails; with it, it loads
  [[ $(img inspect -f '{{.Id}}' busybox:latest) == "$base" ]] || fail "-o isulad:busybox retagged busybox:latest"
  img build -q -o "docker-archive:/nonexistent/dir/x.tar:a:1" "$c" >/dev/null 2>&1 && fail "-o to a missing directory succeeded"
  ! img inspect a:1 >/dev/null 2>&1 || fail "a failed -o left a:1 tagged"
  img build -q -t localhost/named:1 -o "docker-archive:$T/c.tar:other:2" "$c" >/dev/null 2>&1 || fail "-t with -o"
  img inspect localhost/named:1 >/dev/null 2>&1 || fail "-t did not name the image in the store"
  ! img inspect other:2 >/dev/null 2>&1 || fail "the -o name was tagged in the store"
}

# 11. Two builds at once into one store (different Dockerfiles, a shared
# base): both succeed, both images are right, fsck is clean.
check_concurrent_builds() {
  load_base
  mkdir -p "$T/c1" "$T/c2" "$T/c3"
  printf 'FROM localhost/base:1\nRUN echo one > /one && sleep 1\nRUN echo more > /more\n' > "$T/c1/Dockerfile"
  echo two > "$T/c2/two.txt"
  printf 'FROM localhost/base:1\nCOPY two.txt /two\nRUN sleep 1 && cat /two > /two-copy\n' > "$T/c2/Dockerfile"
  printf 'FROM localhost/base:1\nRUN echo three > /three && sleep 1\n' > "$T/c3/Dockerfile"
  local p1 p2 p3 r1=0 r2=0 r3=0
  img build -t localhost/c1:1 "$T/c1" >"$T/o1" 2>"$T/e1" & p1=$!
  img build -t localhost/c2:1 "$T/c2" >"$T/o2" 2>"$T/e2" & p2=$!
  img build -t localhost/c3:1 "$T/c3" >"$T/o3" 2>"$T/e3" & p3=$!
  wait $p1 || r1=$?; wait $p2 || r2=$?; wait $p3 || r3=$?
  [[ $r1 == 0 && $r2 == 0 && $r3 == 0 ]] ||
    fail "exits $r1 $r2 $r3: $(tail -2 "$T/e1") / $(tail -2 "$T/e2") / $(tail -2 "$T/e3")"
  img export -o "$T/1.tar" localhost/c1:1; img export -o "$T/2.tar" localhost/c2:1; img export -o "$T/3.tar" localhost/c3:1
  [[ $(content "$T/1.tar" more) == more && $(content "$T/2.tar" two-copy) == two && $(content "$T/3.tar" three) == three ]] ||
    fail "an image is wrong"
  [[ $(entry "$T/1.tar" two) == absent && $(entry "$T/2.tar" one) == absent ]] || fail "the builds' changes mixed"
  img fsck >"$T/fsck" 2>&1 || fail "img fsck: $(cat "$T/fsck")"
}

# 12. Rootless: an unprivileged user builds a Dockerfile of COPY and RUN
# into their own store; the tree is the root build's (owners included:
# context files and RUN's files are 0:0 in both).
ensure_test_user() {
  if ! id "$TEST_USER" >/dev/null 2>&1; then
    useradd -m "$TEST_USER" || fail "useradd failed"
    USER_MADE=1
    echo 1 > "$WORK/user-made"
  fi
  # Subordinate ids, as useradd gives them where /etc/subuid exists.
  if ! grep -qs "^$TEST_USER:" /etc/subuid || ! grep -qs "^$TEST_USER:" /etc/subgid; then
    usermod --add-subuids 300000-365535 --add-subgids 300000-365535 "$TEST_USER" || fail "usermod --add-subuids failed"
  fi
  [[ -f $WORK/fuse-mode ]] || stat -c %a /dev/fuse > "$WORK/fuse-mode"
  chmod 0666 /dev/fuse
}

check_rootless_build() {
  ensure_test_user
  load_base
  local c=$WORK/rootless-ctx h t0; h=$(user_home)
  mkdir -p "$c/d/sub"
  echo a > "$c/a.txt"; echo n > "$c/d/sub/n"; chmod 0750 "$c/d/sub"; chmod 0640 "$c/d/sub/n"
  cat > "$c/Dockerfile" <<'EOF'
FROM localhost/base:1
COPY a.txt /a.txt
COPY d /d/
RUN /bin/busybox mkdir -p /made && echo x > /made/f && /bin/busybox chmod 0600 /made/f
RUN ["/bin/busybox", "cp", "-p", "/a.txt", "/made/a.copy"]
WORKDIR /srv/app
RUN echo w > w.txt && cat /root/secret > /made/secret-copy && /bin/busybox rm /data/medium.bin
ENV R=1
EOF
  touch_all "$c"; chmod -R a+rX "$c"
  t0=$(date +%s)
  as_user "$WORK/bin/img" load -q -i "$WORK/bin/base-docker.tar" >/dev/null || fail "img load as $TEST_USER failed"
  as_user "$WORK/bin/img" build -t localhost/rl:1 "$c" >"$T/out" 2>"$T/err" || fail "img build as $TEST_USER failed: $(tail -5 "$T/err")"
  as_user "$WORK/bin/img" export -o "$h/img-build-test/rl.tar" localhost/rl:1 || fail "img export as $TEST_USER failed"
  as_user "$WORK/bin/img" fsck >/dev/null || fail "img fsck as $TEST_USER failed"
  [[ -z $(find "$h/img-build-test" ! -user "$TEST_USER" | head -3) ]] || fail "files in the user's store not theirs: $(find "$h/img-build-test" ! -user "$TEST_USER" | head -3)"
  ibuild rl "$c"
  img export -o "$T/root.tar" localhost/rl:1
  trees --since="$t0" "$T/root.tar" "$h/img-build-test/rl.tar"
  [[ $(entry "$T/root.tar" data/medium.bin) == absent && $(content "$T/root.tar" made/secret-copy) == "top secret" ]] || fail "RUN's changes are missing"
  as_user rm -rf "$h/img-build-test"
  chmod "$(cat "$WORK/fuse-mode")" /dev/fuse && rm "$WORK/fuse-mode"
}

# Rootless, the instructions that meet other owners (README: every
# instruction as an ordinary user): COPY --chown=1000:1000, RUN after USER
# user, WORKDIR and RUN inside /home/user (0750, owned by 1000). Each gives
# the root build's tree. Every failure is reported, not only the first.
check_rootless_other_owners() {
  ensure_test_user
  load_base
  local h problems=() name t0; h=$(user_home); t0=$(date +%s)
  as_user "$WORK/bin/img" load -q -i "$WORK/bin/base-docker.tar" >/dev/null || fail "img load as $TEST_USER failed"
  mkdir -p "$WORK/rootless-owners"
  for name in chown user workdir; do
    local c=$WORK/rootless-owners/$name
    mkdir -p "$c"; echo a > "$c/a.txt"
    case $name in
      chown) printf 'FROM localhost/base:1\nCOPY --chown=1000:1000 a.txt /owned/a.txt\n' ;;
      user) printf 'FROM localhost/base:1\nUSER user\nRUN id -u > /tmp/id.txt\n' ;;
      workdir) printf 'FROM localhost/base:1\nWORKDIR /home/user/wd\nRUN cat ../notes.txt > copy.txt\n' ;;
    esac > "$c/Dockerfile"
    touch_all "$c"; chmod -R a+rX "$WORK/rootless-owners"
    if ! as_user "$WORK/bin/img" build -q -t "localhost/$name:1" "$c" >/dev/null 2>"$T/$name.err"; then
      problems+=("$name ($(sed -n 2p "$c/Dockerfile")): img build as $TEST_USER failed: $(grep error "$T/$name.err" | paste -sd' ')")
      continue
    fi
    as_user "$WORK/bin/img" export -o "$h/img-build-test/$name.tar" "localhost/$name:1" || fail "img export as $TEST_USER failed"
    ibuild "$name" "$c"
    img export -o "$T/$name-root.tar" "localhost/$name:1"
    tree cmp --since="$t0" "$T/$name-root.tar" "$h/img-build-test/$name.tar" >/dev/null 2>"$T/cmp" ||
      problems+=("$name: the tree differs from the root build's: $(head -c 1500 "$T/cmp")")
  done
  as_user rm -rf "$h/img-build-test"
  chmod "$(cat "$WORK/fuse-mode")" /dev/fuse && rm "$WORK/fuse-mode"
  [[ ${#problems[@]} == 0 ]] || fail "$(printf '%s\n' "${problems[@]}")"
}

# A build killed in the middle of a RUN (as root, and as an ordinary user
# whose RUN made a directory of mode 000): its command dies with it, and the
# next img command leaves nothing of it in the store.
check_killed_build_leaves_nothing() {
  ensure_test_user
  load_base
  local c=$WORK/killed h; h=$(user_home)
  mkdir -p "$c"
  printf 'FROM localhost/base:1\nRUN /bin/busybox mkdir -m 000 /locked && sleep 300\n' > "$c/Dockerfile"
  chmod -R a+rX "$c"
  "$IMG" build -q "$c" >/dev/null 2>&1 &
  local pid=$!
  as_user "$WORK/bin/img" load -q -i "$WORK/bin/base-docker.tar" >/dev/null || fail "img load as $TEST_USER failed"
  as_user bash -c "'$WORK/bin/img' build -q '$c' >/dev/null 2>&1 & echo \$! > '$h/killed.pid'; wait" &
  local t
  for t in $(seq 1 100); do
    [[ $(pgrep -f -c '^sleep 300$') -ge 2 ]] && break
    sleep 0.1
  done
  [[ $(pgrep -f -c '^sleep 300$') -ge 2 ]] || fail "the two RUN steps did not start"
  kill -KILL "$pid" "$(cat "$h/killed.pid")"
  wait 2>/dev/null || true
  for t in $(seq 1 50); do
    pgrep -f 'sleep 300' >/dev/null || break
    sleep 0.1
  done
  pgrep -af 'sleep 300' && fail "a killed build's RUN command is still running"
  img images >/dev/null || fail "img images after the kill failed"
  as_user "$WORK/bin/img" images >/dev/null || fail "img images as $TEST_USER after the kill failed"
  local left
  left=$(ls -A "$IMG_ROOT/ingest" "$h/img-build-test/ingest" 2>&1) || fail "cannot list the stores' ingest/: $left"
  [[ $(ls -A "$IMG_ROOT/ingest" "$h/img-build-test/ingest" | grep -vc -e ':$' -e '^$') == 0 ]] || fail "the killed builds left in ingest/: $left"
  img fsck >/dev/null || fail "img fsck is not clean after the kill"
  as_user "$WORK/bin/img" fsck >/dev/null || fail "img fsck as $TEST_USER is not clean after the kill"
  as_user rm -rf "$h/img-build-test" "$h/killed.pid"
  chmod "$(cat "$WORK/fuse-mode")" /dev/fuse && rm "$WORK/fuse-mode"
}

# A store on a small filesystem that fills up during a COPY: one clear
# error, the store as it was, nothing left in ingest/, the space given back.
check_full_disk_refusal() {
  local small=$WORK/small-fs
  mkdir -p "$small"
  mount -t tmpfs -o size=24m tmpfs "$small" || fail "cannot mount a tmpfs"
  local rc=0
  (
    set -e
    export IMG_ROOT=$small/store
    load_base
    local c=$T/full before used
    mkdir -p "$c"
    head -c $((32 << 20)) /dev/urandom > "$c/big"
    printf 'FROM localhost/base:1\nRUN echo small > /small\nCOPY big /big\n' > "$c/Dockerfile"
    before=$(images)
    used=$(df --output=used -k "$small" | tail -1)
    "$IMG" build -q -t full:1 "$c" > "$T/out" 2> "$T/err" && fail "the build on a full disk succeeded"
    grep -q "no space left on device while building $c" "$T/err" || fail "unclear error: $(cat "$T/err")"
    [[ $(grep -c . "$T/err") == 1 ]] || fail "more than one error line: $(cat "$T/err")"
    [[ $(images) == "$before" ]] || fail "the store changed: $(images)"
    [[ -z $(ls -A "$IMG_ROOT/ingest") ]] || fail "ingest/ holds: $(ls -A "$IMG_ROOT/ingest")"
    (( $(df --output=used -k "$small" | tail -1) <= used + 512 )) || fail "the space was not given back: $(df -k "$small" | tail -1) (was $used KB)"
    img fsck >/dev/null || fail "img fsck is not clean"
    rm "$c/big"; echo small > "$c/big"
    "$IMG" build -q -t full:1 "$c" >/dev/null || fail "a build that fits failed after the full one"
  ) || rc=$?
  umount "$small"
  return $rc
}

# RUN lacked what docker and buildah give a step: no /dev/pts, /dev/ptmx,
# /dev/tty or /dev/mqueue, and /sys was an empty directory (apt could not
# log, script could not make a pty, lscpu failed). As root and as an
# ordinary user (with subordinate ids, and without), on the host's network
# and on one of its own, a step now
# has what runc's default spec gives a container: a devpts instance of its
# own (ptmxmode=666, /dev/ptmx a link to pts/ptmx), /dev/tty (which opens
# only in a terminal the step makes: it has none of its own), /dev/shm,
# /dev/mqueue, and /sys with every mount read-only and /sys/firmware
# hidden; a pty works (busybox telnetd gives its shell one, where tty names
# it and /dev/tty writes to it). An ordinary user's step on the host's
# network has the host's /sys bound read-only (the kernel gives a new sysfs
# only to the user namespace owning the network namespace), as rootless runc.
check_run_has_dev_pts_tty_mqueue_and_sys() {
  ensure_test_user
  load_base
  local c=$WORK/run-dev h problems=() who net; h=$(user_home)
  mkdir -p "$c"
  cat > "$c/probe.sh" <<'EOF'
# One line per probe: "ok NAME" or "no NAME".
p() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "ok $name"; else echo "no $name"; fi; }
mounted() { mount | grep -q "^$1 on $2 type $3 ("; }
# opt DIR OPTION: the mount on top at DIR has OPTION
opt() { awk -v d="$1" -v o="$2" '$2 == d {x = "," $4 ","} END {exit index(x, "," o ",") == 0}' /proc/mounts; }
p devpts mounted devpts /dev/pts devpts
p devpts-own-instance test "$(ls /dev/pts)" = ptmx
p devpts-ptmxmode opt /dev/pts ptmxmode=666
p devpts-nosuid opt /dev/pts nosuid
p ptmx-link test "$(readlink /dev/ptmx)" = pts/ptmx
p ptmx-char test -c /dev/ptmx
p tty-char test -c /dev/tty
p tty-without-terminal sh -c '! (: > /dev/tty)'
p mqueue mounted mqueue /dev/mqueue mqueue
p shm mounted tmpfs /dev/shm tmpfs
p sys-cpus test -s /sys/devices/system/cpu/online
p sys-kernel test -d /sys/kernel/mm
p sys-read-only opt /sys ro
p sys-all-read-only awk '$2 ~ /^\/sys(\/|$)/ {o[$2] = "," $4 ","} END {for (d in o) if (index(o[d], ",ro,") == 0) bad = 1; exit bad}' /proc/mounts
p sys-firmware-hidden test -z "$(ls -A /sys/firmware)"
EOF
  cat > "$c/pty.sh" <<'EOF'
# busybox telnetd gives the shell it starts a pty as its terminal.
/bin/busybox telnetd -F -p 2323 -l /bin/sh &
i=0; until netstat -ltn | grep -q ':2323 ' || [ $i -ge 50 ]; do sleep 0.1; i=$((i + 1)); done
(echo 'tty > /tmp/pty-name; echo via-tty > /dev/tty; exit'
 i=0; until [ -s /tmp/pty-name ] || [ $i -ge 50 ]; do sleep 0.1; i=$((i + 1)); done; sleep 0.3) |
  telnet 127.0.0.1 2323 > /tmp/telnet.out 2>&1
kill $!
grep -q via-tty /tmp/telnet.out && echo "ok pty-tty" || echo "no pty-tty"
echo "pty $(cat /tmp/pty-name)"
EOF
  cat > "$c/Dockerfile" <<'EOF'
FROM localhost/base:1
COPY probe.sh pty.sh /
RUN sh /probe.sh > /host-net.out
RUN --network=none sh /probe.sh > /own-net.out
RUN --network=none sh /pty.sh > /pty.out
RUN wc -l < /proc/self/uid_map > /uid-map-lines
EOF
  chmod -R a+rX "$c"
  local want; want=$(sed -n 's/^p \([a-z-]*\) .*/ok \1/p' "$c/probe.sh")
  ibuild devs "$c"
  img export -o "$T/root.tar" localhost/devs:1
  as_user "$WORK/bin/img" load -q -i "$WORK/bin/base-docker.tar" >/dev/null || fail "img load as $TEST_USER failed"
  as_user "$WORK/bin/img" build -q -t localhost/devs:1 "$c" >/dev/null 2>"$T/user.err" ||
    fail "img build as $TEST_USER failed: $(tail -5 "$T/user.err")"
  as_user "$WORK/bin/img" export -o "$h/img-build-test/devs.tar" localhost/devs:1 || fail "img export as $TEST_USER failed"
  cp "$h/img-build-test/devs.tar" "$T/user.tar"
  # Without newuidmap only the user's own ids are mapped: no group 5 for
  # the ptys.
  mkdir -p "$WORK/nomap-bin"; ln -sf "$(command -v fusermount3)" "$WORK/nomap-bin/"
  as_user env PATH="$WORK/nomap-bin" "$WORK/bin/img" build -q --no-cache -t localhost/devs:2 "$c" >/dev/null 2>"$T/nomap.err" ||
    fail "img build as $TEST_USER without newuidmap failed: $(tail -5 "$T/nomap.err")"
  as_user "$WORK/bin/img" export -o "$h/img-build-test/devs2.tar" localhost/devs:2 || fail "img export as $TEST_USER failed"
  cp "$h/img-build-test/devs2.tar" "$T/user-unmapped.tar"
  as_user rm -rf "$h/img-build-test"
  for who in root user user-unmapped; do
    for net in host-net own-net; do
      [[ $(content "$T/$who.tar" $net.out) == "$want" ]] ||
        problems+=("as $who, $net: $(diff <(echo "$want") <(content "$T/$who.tar" $net.out) | grep '^>' | paste -sd' '; true)")
    done
    [[ $(content "$T/$who.tar" pty.out) == "ok pty-tty"$'\n'"pty /dev/pts/0" ]] ||
      problems+=("as $who, a pty: $(content "$T/$who.tar" pty.out | paste -sd' ')")
  done
  # (what the checks rest on: the user's builds mapped their ids as said)
  [[ $(content "$T/user.tar" uid-map-lines) -gt 1 && $(content "$T/user-unmapped.tar" uid-map-lines) == 1 ]] ||
    problems+=("the user's builds mapped $(content "$T/user.tar" uid-map-lines) and $(content "$T/user-unmapped.tar" uid-map-lines) id ranges, not several and 1")
  [[ ${#problems[@]} == 0 ]] || fail "$(printf '%s\n' "${problems[@]}")"
  chmod "$(cat "$WORK/fuse-mode")" /dev/fuse && rm "$WORK/fuse-mode"
}

# RUN is confined (found in review): a chroot escape (mkdir, chroot, 64 x
# chdir .., chroot .) reaches the image's root, not the host's; /proc/sys,
# /etc/hosts and /etc/resolv.conf are read-only; /dev/tty does not open (the
# step has no terminal: it cannot reach the build's); a device node made in
# /dev does not open; files get docker's umask.
check_run_is_confined() {
  command -v gcc >/dev/null || fail "gcc is missing (it builds the escape program)"
  load_base
  local c=$T/confined marker=/tmp/img-build-escaped-$$
  mkdir -p "$c"
  cat > "$c/esc.c" <<EOF
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {
  mkdir("/esc", 0755);
  chroot("/esc");
  for (int i = 0; i < 64; i++) chdir("..");
  chroot(".");
  int fd = open("$marker", O_CREAT | O_WRONLY, 0644);
  if (fd >= 0) { write(fd, "escaped\n", 8); close(fd); }
  return 0;
}
EOF
  gcc -static -O -o "$c/esc" "$c/esc.c" || fail "gcc -static failed"
  rm -f "$marker"
  cat > "$c/Dockerfile" <<'EOF'
FROM localhost/base:1
COPY esc /esc-bin
RUN /esc-bin 2> /esc.err; echo "$?" > /esc.status; : > /results; \
    (echo 1 > /proc/sys/vm/drop_caches) 2>/dev/null && echo proc-sys-writable >> /results; \
    (echo x >> /etc/hosts) 2>/dev/null && echo hosts-writable >> /results; \
    (echo x >> /etc/resolv.conf) 2>/dev/null && echo resolv-writable >> /results; \
    [ -c /dev/tty ] && (: > /dev/tty) 2>/dev/null && echo tty-opens >> /results; \
    /bin/busybox mknod /dev/disk b 254 0 2>/dev/null; (/bin/busybox head -c 1 /dev/disk > /dev/null) 2>/dev/null && echo device-opens >> /results; \
    /bin/busybox touch /umask-probe; true
EOF
  local before; before=$(md5sum /etc/hosts /etc/resolv.conf 2>/dev/null)
  (umask 077; "$IMG" build -q -t confined:1 "$c" > /dev/null 2> "$T/err") || fail "the build failed: $(tail -3 "$T/err")"
  [[ ! -e $marker ]] || { rm -f "$marker"; fail "RUN wrote $marker on the host (chroot escape)"; }
  [[ $(md5sum /etc/hosts /etc/resolv.conf 2>/dev/null) == "$before" ]] || fail "RUN changed the host's /etc/hosts or /etc/resolv.conf"
  img export -o "$T/c.tar" confined:1
  tar -tf "$T/c.tar" | has -x "${marker#/}" ||
    fail "the escape program did not write its file in the image: it exited with $(content "$T/c.tar" esc.status), stderr '$(content "$T/c.tar" esc.err)'; the image holds: $(tar -tf "$T/c.tar" | grep -v '^bin/' | paste -sd' ')"
  local r; r=$(content "$T/c.tar" results)
  [[ -z $r ]] || fail "RUN was not confined: $(echo $r)"
  [[ $(entry "$T/c.tar" umask-probe | cut -d' ' -f2) == 644 ]] || fail "RUN's umask is not 022: $(entry "$T/c.tar" umask-probe)"
}

# COPY's globs and --chown stay inside their roots (found in review): a glob
# through a context's symlink to /etc, a glob in a stage whose symlink points
# at /etc, and a stage whose /etc/passwd is a symlink to a host file.
check_copy_globs_stay_inside() {
  load_base
  local c=$T/globs hostpw=$T/host-passwd
  mkdir -p "$c"
  ln -s /etc "$c/link"
  echo probe:x:4242:4343::/:/bin/sh > "$hostpw"
  printf 'FROM localhost/base:1\nCOPY lin[k]/passw? /x/\n' > "$c/Dockerfile"
  if "$IMG" build -q -t globs:1 "$c" > /dev/null 2> "$T/err"; then
    img export -o "$T/g.tar" globs:1
    ! tar -xOf "$T/g.tar" x/passwd 2>/dev/null | has '^root:' || fail "a context glob copied the host's /etc/passwd"
  fi
  printf 'FROM localhost/base:1 AS a\nRUN /bin/busybox ln -s /etc /hostetc && /bin/busybox ln -s %s /hostpw\nFROM localhost/base:1\nCOPY --from=a /hoste*/passw* /stolen/\nCOPY --from=a /hostpw /pw\n' "$hostpw" > "$c/Dockerfile"
  if "$IMG" build -q -t globs:2 "$c" > /dev/null 2> "$T/err"; then
    img export -o "$T/g2.tar" globs:2
    ! tar -xOf "$T/g2.tar" stolen/passwd 2>/dev/null | has '^root:x:0:0:root:/root:/bin/bash' || fail "a --from glob copied the host's /etc/passwd"
    ! tar -xOf "$T/g2.tar" pw 2>/dev/null | has probe || fail "COPY --from followed a symlink to a host file"
  fi
  printf 'FROM localhost/base:1\nRUN /bin/busybox ln -sf %s /etc/passwd\nCOPY --chown=probe Dockerfile /f\n' "$hostpw" > "$c/Dockerfile"
  if "$IMG" build -q -t globs:3 "$c" > /dev/null 2> "$T/err"; then
    img export -o "$T/g3.tar" globs:3
    [[ $(entry "$T/g3.tar" f | cut -d' ' -f3) != 4242:4343 ]] || fail "--chown read the host's passwd through the image's symlink"
  else
    grep -q 'no user "probe"' "$T/err" || fail "unclear error: $(cat "$T/err")"
  fi
}

# USER gets the supplementary groups /etc/group lists it in, as docker and
# buildah give them (found in review: it got none).
check_user_gets_supplementary_groups() {
  load_base
  local c=$T/groups
  mkdir -p "$c"
  printf 'FROM localhost/base:1\nRUN echo "staff:x:50:user" >> /etc/group\nUSER user\nRUN /bin/busybox id > /tmp/id\n' > "$c/Dockerfile"
  ibuild groups "$c"
  bbuild groups "$c"
  iexport groups; bexport groups
  local i b
  i=$(content "$T/groups-a.rootfs.tar" tmp/id); b=$(content "$T/groups-b.rootfs.tar" tmp/id)
  [[ $i == *"50(staff)"* ]] || fail "USER user has no supplementary group staff: $i"
  [[ $i == "$b" ]] || fail "img's id ($i) is not buildah's ($b)"
}

# 13. A hostile ADD archive ("../../escape", a symlink esc -> / and
# esc/etc/evil through it, an absolute /abs-evil): nothing is written
# outside the image, and in the image only under the ADD destination.
check_hostile_add_archive() {
  load_base
  local c=$T/a/b/ctx rc=0
  mkdir -p "$c"
  python3 - "$c/hostile.tar" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w") as t:
    def f(name, data):
        ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 1650000000
        t.addfile(ti, io.BytesIO(data))
    def link(name, target):
        ti = tarfile.TarInfo(name); ti.type = tarfile.SYMTYPE; ti.linkname = target; t.addfile(ti)
    f("ok.txt", b"ok\n")
    f("../../escape", b"escaped\n")
    f("../../../../../../../../tmp/img-build-escape", b"escaped far\n")
    link("esc", "/")
    f("esc/etc/evil", b"evil\n")
    link("up", "../../../..")
    f("up/evil-up", b"evil up\n")
    f("/abs-evil", b"absolute\n")
PY
  printf 'FROM localhost/base:1\nADD hostile.tar /dest/\n' > "$c/Dockerfile"
  local before; before=$(images)
  img build -t localhost/hostile:1 "$c" >"$T/out" 2>"$T/err" || rc=$?
  local p
  for p in /escape /etc/evil /abs-evil /evil-up /tmp/img-build-escape "$T/escape" "$T/a/escape" "$T/a/b/escape" "$T/evil-up" \
      "$IMG_ROOT/escape" "$IMG_ROOT/../escape" "$WORK/escape"; do
    [[ ! -e $p && ! -L $p ]] || fail "the archive wrote $p on the host"
  done
  [[ -z $(find "$WORK" -name 'evil*' -o -name escape -o -name abs-evil | grep -v "^$IMG_ROOT/" | head -3) ]] ||
    fail "the archive wrote: $(find "$WORK" -name 'evil*' -o -name escape | head -3)"
  if [[ $rc == 0 ]]; then
    img export -o "$T/h.tar" localhost/hostile:1
    tar -tf "$T/h.tar" | sed 's|^\./||' | grep -E '(^|/)(escape|evil|evil-up|abs-evil|img-build-escape)$' | grep -v '^dest/' > "$T/outside" &&
      fail "the image holds outside /dest: $(head -5 "$T/outside")"
    [[ $(content "$T/h.tar" dest/ok.txt) == ok ]] || fail "dest/ok.txt is missing"
    cmp -s <(tar -xOf "$T/h.tar" etc/passwd) <(tar -xOf "$GEN/base-rootfs.tar" etc/passwd) || fail "etc/passwd changed"
    echo "hostile archive: built; entries clamped into /dest: $(tar -tf "$T/h.tar" | grep '^dest/' | paste -sd' ')" > "$T/measure"
  else
    grep -qE 'hostile\.tar|escape|outside|\.\.' "$T/err" || fail "refused without saying why: $(tail -3 "$T/err")"
    [[ $(images) == "$before" ]] || fail "the store changed after the refusal"
    echo "hostile archive: refused: $(tail -1 "$T/err")" > "$T/measure"
  fi
  img fsck >"$T/fsck" 2>&1 || fail "img fsck: $(cat "$T/fsck")"
}

# ---------------------------------------------------------------- runner

# Each check has its own store, removed when it ends, with /dev/fuse's mode
# put back if the check changed it.
before_check() { export IMG_ROOT=$WORK/store-$name; }
after_check() {
  [[ -n ${BUILD_TIMING:-} ]] && echo "# $name took $((SECONDS - CHECK_START))s"
  [[ -f $WORK/user-made ]] && USER_MADE=1
  [[ -f $WORK/fuse-mode ]] && chmod "$(cat "$WORK/fuse-mode")" /dev/fuse && rm -f "$WORK/fuse-mode"
  rm -rf "$WORK/store-$name"
}

preflight() {
  [[ $(id -u) == 0 ]] || fail "must run as root (buildah's chroot isolation, a test user)"
  local missing=() t
  for t in buildah skopeo python3 tar gzip useradd userdel runuser getent "$IMG_GIVEN"; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  [[ -c /dev/fuse ]] || missing+=("/dev/fuse")
  [[ ${#missing[@]} == 0 ]] || fail "missing: ${missing[*]} (scripts/test.sh installs buildah skopeo fuse3 python3)"
  if [[ ! -f $GEN/base-docker.tar ]]; then
    scripts/make-testdata.sh >/dev/null || fail "scripts/make-testdata.sh failed"
  fi
}

# buildah's store with the base image, and the tools the test user runs,
# copied where that user can read them.
setup() {
  cp "$GEN/base-docker.tar" "$WORK/bin/" && chmod a+r "$WORK/bin"/*
  bah pull -q "docker-archive:$GEN/base-docker.tar" >/dev/null || fail "buildah pull of the base failed"
  bah images --format '{{.Name}}:{{.Tag}}' | has -x 'localhost/base:1' || fail "buildah's base is not localhost/base:1: $(bah images)"
}

echo "# img: $IMG_GIVEN ($("$IMG" --version 2>&1)); $(buildah --version)"
if ! (preflight && setup) 2>"$WORK/setup.err"; then
  echo "not ok - setup"; sed 's/^/#   /' "$WORK/setup.err"
  echo "0 passed, 1 failed"
  exit 1
fi
run_checks "$@"
