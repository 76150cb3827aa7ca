#!/usr/bin/env bash
# The ARM smoke suite: the static arm64 and armv7 edge builds of img
# (scripts/release.sh --variant edge) run under Debian's qemu-user-static,
# each against the native img ($IMG) and a real docker-registry: load,
# images, inspect, save, pull, push, fsck, prune, and a mount served by the
# ARM binary with every file read back. A break on ARM fails here.
#
# qemu-user runs one process; a program the emulated img starts is run by
# the host kernel, which cannot run an ARM binary unless binfmt_misc sends
# it to qemu. `img mount` starts its serving process that way, so without
# binfmt the suite starts that process (`img __serve-mount`, as `img mount`
# does) under qemu itself; with binfmt registered, `img mount` is run too.
#
# Usage: IMG=target/release/img tests/edge.sh [CHECK-NAME-SUBSTRING...]
# The ARM binaries: $IMG_ARM64 and $IMG_ARMV7, by default
# ${CARGO_TARGET_DIR:-target}/dist/cross-test/img-edge-TARGET, as
# `scripts/release.sh --profile cross-test --variant edge --no-size-check
# aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf` makes them
# (scripts/test.sh does); EDGE_ARCHES=arm64 or armv7 tests one of them.
# A missing binary or tool is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
IMG=$(realpath "${IMG:-target/release/img}")
GEN=$PWD/testdata/gen
DIST=${CARGO_TARGET_DIR:-$PWD/target}/dist/cross-test
IMG_ARM64=${IMG_ARM64:-$DIST/img-edge-aarch64-unknown-linux-musl}
IMG_ARMV7=${IMG_ARMV7:-$DIST/img-edge-armv7-unknown-linux-musleabihf}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/img-edge.XXXXXX")
source tests/lib.sh
need qemu-aarch64-static qemu-arm-static docker-registry skopeo readelf curl python3 sha256sum
[[ -f $GEN/base-oci.tar ]] || { echo "not ok - testdata: run scripts/make-testdata.sh"; exit 1; }
# EDGE_ARCHES="arm64" (or armv7) runs the checks on one of the two only.
read -ra ARCHES <<< "${EDGE_ARCHES:-arm64 armv7}"
for a in "${ARCHES[@]}"; do
  case $a in arm64) b=$IMG_ARM64 ;; armv7) b=$IMG_ARMV7 ;; *) echo "not ok - EDGE_ARCHES: unknown $a"; exit 1 ;; esac
  [[ -x $b ]] || { echo "not ok - $b is missing: run scripts/release.sh --profile cross-test --variant edge"; echo "0 passed, 1 failed"; exit 1; }
done

# arm ARCH ARGS...: the ARM img of ARCH, under qemu.
arm() {
  local arch=$1; shift
  case $arch in
    arm64) qemu-aarch64-static "$IMG_ARM64" "$@" ;;
    armv7) qemu-arm-static "$IMG_ARMV7" "$@" ;;
  esac
}
arm_bin() { case $1 in arm64) echo "$IMG_ARM64" ;; armv7) echo "$IMG_ARMV7" ;; esac; }

start_docker_registry plain REG || { echo "not ok - start the registry"; exit 1; }
skopeo copy -q --dest-tls-verify=false "oci-archive:$GEN/layered-oci.tar" "docker://$REG/test/layered:1" ||
  { echo "not ok - skopeo push"; exit 1; }

# files_digest DIR: the path and sha256 of every regular file under DIR,
# and the target of every symbolic link, sorted.
files_digest() (
  cd "$1" && find . -type f -exec sha256sum {} + | sort -k2
  find . -type l -printf '%p -> %l\n' | sort
)

check_binaries_are_static_arm_and_run() {
  local arch bin machine
  for arch in "${ARCHES[@]}"; do
    bin=$(arm_bin "$arch")
    machine=$(readelf -h "$bin" | sed -n 's/^ *Machine: *//p')
    case $arch in
      arm64) [[ $machine == AArch64 ]] || fail "$bin is for $machine, not AArch64" ;;
      armv7) [[ $machine == ARM ]] || fail "$bin is for $machine, not ARM" ;;
    esac
    ! readelf -l "$bin" | has 'program interpreter' || fail "$bin is not static"
    arm "$arch" version > "$T/version" || fail "$arch: img version"
    has "^Version: *$("$IMG" --version | awk '{print $2}')\$" < "$T/version" || fail "$arch: another version than $IMG's"
    has "^OS/Arch: *linux/arm" < "$T/version" || fail "$arch: img version says $(cat "$T/version")"
  done
}

check_edge_build_names_the_features_it_lacks() {
  local arch rc
  for arch in "${ARCHES[@]}"; do
    rc=0; arm "$arch" build -t x "$T" 2>"$T/err" || rc=$?
    [[ $rc == 125 ]] || fail "$arch: img build exited $rc, not 125"
    has 'without the `build` feature' < "$T/err" || fail "$arch: img build: $(cat "$T/err")"
    rc=0; arm "$arch" serve 2>"$T/err" || rc=$?
    [[ $rc == 125 ]] && has 'without the `serve` feature' < "$T/err" || fail "$arch: img serve: $(cat "$T/err")"
  done
}

check_load_inspect_save_agree_with_native() {
  local arch want got
  IMG_ROOT=$T/native "$IMG" load -q -i "$GEN/layered-docker.tar" >/dev/null
  want=$(IMG_ROOT=$T/native "$IMG" inspect -f '{{.Id}} {{.Digest}}' layered:1)
  for arch in "${ARCHES[@]}"; do
    export IMG_ROOT=$T/$arch
    arm "$arch" load -q -i "$GEN/layered-docker.tar" >/dev/null || fail "$arch: load docker-archive"
    arm "$arch" load -q -i "$GEN/base-oci.tar" >/dev/null || fail "$arch: load oci-archive"
    [[ $(arm "$arch" images -q | wc -l) == 2 ]] || fail "$arch: images: $(arm "$arch" images)"
    got=$(arm "$arch" inspect -f '{{.Id}} {{.Digest}}' layered:1) || fail "$arch: inspect"
    [[ $got == "$want" ]] || fail "$arch: inspect says $got, the native img $want"
    arm "$arch" save -o "$T/$arch.tar" layered:1 || fail "$arch: save"
    IMG_ROOT=$T/$arch-back "$IMG" load -q -i "$T/$arch.tar" >/dev/null || fail "$arch: its archive does not load natively"
    [[ $(IMG_ROOT=$T/$arch-back "$IMG" images -q) == $(IMG_ROOT=$T/native "$IMG" images -q) ]] ||
      fail "$arch: the saved image has another ID"
    arm "$arch" fsck >/dev/null || fail "$arch: fsck after load"
  done
}

check_pull_and_push_against_the_registry() {
  local arch id want digest
  want=$(skopeo inspect --raw --tls-verify=false "docker://$REG/test/layered:1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])')
  for arch in "${ARCHES[@]}"; do
    export IMG_ROOT=$T/$arch
    id=$(arm "$arch" pull -q "$REG/test/layered:1") || fail "$arch: pull"
    [[ "sha256:$id" == "$want" ]] || fail "$arch: pulled image ID $id is not the config digest $want"
    arm "$arch" push "$REG/test/layered:1" "$REG/from/$arch:1" 2>"$T/push.err" || fail "$arch: push: $(cat "$T/push.err")"
    digest=$(skopeo inspect --tls-verify=false "docker://$REG/from/$arch:1" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["Digest"])') || fail "$arch: skopeo cannot read the push"
    [[ $(arm "$arch" inspect -f '{{.Digest}}' "$REG/test/layered:1") == "$digest" ]] ||
      fail "$arch: the pushed manifest $digest differs from the stored one"
    arm "$arch" fsck >/dev/null || fail "$arch: fsck after pull"
  done
}

check_fsck_finds_damage_and_prune_removes() {
  local arch blob
  for arch in "${ARCHES[@]}"; do
    export IMG_ROOT=$T/$arch
    arm "$arch" load -q -i "$GEN/base-oci.tar" >/dev/null || fail "$arch: load"
    arm "$arch" load -q -i "$GEN/layered-oci.tar" >/dev/null || fail "$arch: load"
    arm "$arch" fsck >/dev/null || fail "$arch: fsck of a sound store"
    # Damage the biggest blob (a layer): fsck must say so, and repair it.
    blob=$(ls -S "$IMG_ROOT/blobs/sha256" | head -1)
    chmod u+w "$IMG_ROOT/blobs/sha256/$blob"
    printf 'x' | dd of="$IMG_ROOT/blobs/sha256/$blob" bs=1 seek=100 conv=notrunc status=none
    ! arm "$arch" fsck >"$T/fsck.out" 2>&1 || fail "$arch: fsck passed a damaged blob"
    has "$blob" < "$T/fsck.out" || fail "$arch: fsck did not name the damaged blob: $(cat "$T/fsck.out")"
    arm "$arch" fsck --repair >/dev/null 2>&1 || true
    arm "$arch" fsck >/dev/null || fail "$arch: fsck after repair"
    arm "$arch" prune -a -f >/dev/null || fail "$arch: prune"
    [[ -z $(arm "$arch" images -q) ]] || fail "$arch: images left after prune -a"
    [[ -z $(ls "$IMG_ROOT/blobs/sha256") ]] || fail "$arch: blobs left after prune -a"
  done
}

check_mount_serves_every_file() {
  [[ $(id -u) == 0 && -e /dev/fuse ]] || fail "mounting needs root and /dev/fuse here"
  local arch id pid
  IMG_ROOT=$T/native "$IMG" load -q -i "$GEN/layered-oci.tar" >/dev/null
  mkdir -p "$T/want"
  IMG_ROOT=$T/native "$IMG" export layered:1 | tar -x -C "$T/want" 2>/dev/null
  files_digest "$T/want" > "$T/want.sums"
  [[ $(wc -l < "$T/want.sums") -gt 10 ]] || fail "the exported tree is too small to check"
  for arch in "${ARCHES[@]}"; do
    export IMG_ROOT=$T/$arch
    arm "$arch" load -q -i "$GEN/layered-oci.tar" >/dev/null || fail "$arch: load"
    id=$(arm "$arch" images -q --no-trunc | head -1)
    mkdir -p "$T/mnt-$arch"
    MOUNTS+=("$T/mnt-$arch")
    # What `img mount` starts (see the top of this file), under qemu.
    arm "$arch" __serve-mount "${id#sha256:}" "$T/mnt-$arch" > "$T/serve-$arch.out" 2>"$T/serve-$arch.err" &
    pid=$!; PIDS+=("$pid")
    for _ in $(seq 100); do [[ -s $T/serve-$arch.out ]] && break; sleep 0.1; done
    [[ $(head -1 "$T/serve-$arch.out") == ready ]] || fail "$arch: the mount server: $(cat "$T/serve-$arch.out" "$T/serve-$arch.err")"
    files_digest "$T/mnt-$arch" > "$T/$arch.sums"
    diff "$T/want.sums" "$T/$arch.sums" || fail "$arch: the mount serves other files than export writes"
    arm "$arch" mounts | has "$T/mnt-$arch" || fail "$arch: img mounts does not list the mount"
    arm "$arch" umount "$T/mnt-$arch" || fail "$arch: umount"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    ! kill -0 "$pid" 2>/dev/null || fail "$arch: the mount server outlived umount"
  done
}

run_checks "$@"
