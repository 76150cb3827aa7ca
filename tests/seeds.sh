#!/usr/bin/env bash
# The examples of the documents img is built from (iSulad's image
# management, isula-build's manual, docker's image commands), typed as they
# are written there: through `img`, `img ctr-img`, and the binary called
# `isula-build` and `isula`. Hosts are a docker-registry started here on
# 127.0.0.1 (Basic auth where the example logs in), images the test images.
# Each check compares output shape and exit codes with what the documents
# show.
#
# Usage: IMG=target/release/img tests/seeds.sh [CHECK-NAME-SUBSTRING...]
# As root (commit through a writable mount).
set -uo pipefail
cd "$(dirname "$0")/.."
IMG=$(realpath "${IMG:-target/release/img}")
GEN=$PWD/testdata/gen
WORK=$(mktemp -d "${TMPDIR:-/tmp}/img-seeds.XXXXXX")
source tests/lib.sh
need python3 curl skopeo docker-registry htpasswd mksquashfs xz
[[ -f $GEN/base-docker.tar && -f $GEN/base-rootfs.tar ]] || { echo "not ok - testdata: run scripts/make-testdata.sh"; exit 1; }

# The names the tools are called by, as links to img.
BIN=$WORK/bin
mkdir -p "$BIN" && ln -s "$IMG" "$BIN/img" && ln -s "$IMG" "$BIN/isula-build" && ln -s "$IMG" "$BIN/isula"
export PATH=$BIN:$PATH
# Credentials go to a file of the test's, never the user's (not through
# REGISTRY_AUTH_FILE, which docker-registry would read as its own setting).
export XDG_RUNTIME_DIR=$WORK/run
mkdir -p "$XDG_RUNTIME_DIR"

HEX64='[0-9a-f]{64}'
# The registries: R open, A with Basic auth (user cooper).
htpasswd -Bbn cooper cooper-pass > "$WORK/htpasswd" 2>/dev/null
start_docker_registry plain R || { echo "not ok - registry"; exit 1; }
start_docker_registry auth A htpasswd="$WORK/htpasswd" || { echo "not ok - registry with auth"; exit 1; }

# busybox:latest (the test base) in this check's store.
base() { img load -q -i "$GEN/base-docker.tar" >/dev/null && img tag localhost/base:1 busybox:latest; }
short_id() { img images -q --no-trunc "$1" | head -1 | sed 's/^sha256://' | cut -c1-12; }

# Seed 001, isula-build ctr-img build: --build-arg with -f and no context
# (the current directory), --build-static in both time forms, --iidfile,
# --cap-add; the messages isula-build prints.
check_isula_build_ctr_img_build() {
  export IMG_ROOT=$T/store; base
  mkdir -p "$T/ctx" && cd "$T/ctx"
  echo "This is bar file" > bar.txt
  printf 'FROM busybox\nARG foo\nADD ${foo}.txt .\nRUN cat ${foo}.txt\n' > Dockerfile_arg
  isula-build ctr-img build --build-arg foo=bar -f Dockerfile_arg > "$T/out" 2>&1 || fail "build: $(tail -5 "$T/out")"
  has 'This is bar file' "$T/out" || fail "RUN's output is not shown: $(cat "$T/out")"
  has -E "^Build success with image id: $HEX64$" "$T/out" || fail "no success line: $(tail -3 "$T/out")"
  printf 'FROM busybox\nRUN echo static > /s\n' > Dockerfile
  local a b c
  a=$(isula-build ctr-img build -f Dockerfile --build-static='build-time=2020-05-23 10:55:33' . 2>/dev/null | sed -n 's/^Build success with image id: //p')
  b=$(isula-build ctr-img build -f Dockerfile --build-static='build-time=2020-05-23 10:55:33' . 2>/dev/null | sed -n 's/^Build success with image id: //p')
  c=$(isula-build ctr-img build -f Dockerfile --build-static='build-time=2020-05-23 10-55-33' . 2>/dev/null | sed -n 's/^Build success with image id: //p')
  [[ -n $a && $a == "$b" && $a == "$c" ]] || fail "--build-static builds differ: $a / $b / $c"
  isula-build ctr-img build -f Dockerfile_arg --build-arg foo=bar --iidfile testfile >/dev/null 2>&1 || fail "--iidfile build"
  grep -qE "^(sha256:)?$HEX64$" testfile || fail "testfile holds: $(cat testfile)"
  isula-build ctr-img build --cap-add CAP_SYS_ADMIN --cap-add CAP_SYS_PTRACE -f Dockerfile >/dev/null 2>"$T/err" ||
    fail "--cap-add: $(tail -3 "$T/err")"
  head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' '#' > big/Dockerfile 2>/dev/null || { mkdir big; head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' '#' > big/Dockerfile; }
  isula-build ctr-img build big > "$T/out" 2>&1 && fail "a Dockerfile over 1 MiB was taken"
  has '1 MiB' "$T/out" || fail "unclear: $(cat "$T/out")"
}

# Seed 001: images (the dashed table), import (a .tar.xz), save (by name,
# by ID, several, -f oci), load, tag, rm -p.
check_isula_build_ctr_img_image_commands() {
  export IMG_ROOT=$T/store; base
  cd "$T"
  isula-build ctr-img images > images.out || fail "images"
  head -1 images.out | has -E '^-+( +-+){4}$' || fail "no rule above the header: $(head -2 images.out)"
  sed -n 2p images.out | has -E 'REPOSITORY +TAG +IMAGE ID +CREATED +SIZE' || fail "header: $(sed -n 2p images.out)"
  has -E ' busybox +latest +[0-9a-f]{12} +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} +[0-9.]+ [kMG]?B' images.out || fail "no busybox row: $(cat images.out)"
  xz -c "$GEN/base-rootfs.tar" > openEuler-docker.x86_64.tar.xz
  isula-build ctr-img import ./openEuler-docker.x86_64.tar.xz openeuler:20.03-lts-sp3 > out || fail "import"
  has -E "^Import success with image id: \"$HEX64\"$" out || fail "import said: $(cat out)"
  isula-build ctr-img images | has -E ' openeuler +20.03-lts-sp3 ' || fail "the imported image is not listed"
  isula-build ctr-img save busybox:latest -o busybox.tar > out || fail "save by name"
  has -x 'Save success with image: busybox:latest' out || fail "save said: $(cat out)"
  local id; id=$(short_id busybox:latest)
  isula-build ctr-img save "$id" -o busybox2.tar > out || fail "save by ID"
  has -x "Save success with image: $id" out || fail "save by ID said: $(cat out)"
  isula-build ctr-img save busybox:latest openeuler:20.03-lts-sp3 -o all.tar > out || fail "save of two"
  has -x 'Save success with image: \[busybox:latest openeuler:20.03-lts-sp3\]' out || fail "save of two said: $(cat out)"
  isula-build ctr-img save -f oci busybox:latest -o oci.tar >/dev/null || fail "save -f oci"
  skopeo inspect "oci-archive:oci.tar" >/dev/null || fail "save -f oci did not write an OCI archive"
  IMG_ROOT=$T/other isula-build ctr-img load -i busybox.tar > out || fail "load"
  has -E "^Loaded image as $HEX64$" out || fail "load said: $(cat out)"
  isula-build ctr-img tag "$id" alpine:v1 || fail "tag"
  isula-build ctr-img images | has -E ' alpine +v1 +'"$id"' ' || fail "the new tag is not listed"
  img build -q "$(mkdir -p c && printf 'FROM busybox\nRUN echo d > /d\n' > c/Dockerfile && echo c)" >/dev/null 2>&1 || fail "a dangling build"
  isula-build ctr-img rm -p > out || fail "rm -p"
  has -E "^Deleted: sha256:$HEX64$" out || fail "rm -p said: $(cat out)"
  isula-build ctr-img rm alpine:v1 >/dev/null || fail "rm"
  ! isula-build ctr-img images | has ' alpine ' || fail "rm did not remove alpine:v1"
  local rc=0; isula-build ctr-img frob > out 2>&1 || rc=$?
  [[ $rc == 125 ]] && has 'unknown command' out || fail "an unknown ctr-img command: exit $rc: $(cat out)"
}

# Seed 001: pull, push, login (-p is --password-stdin; the prompt), logout
# -a, info -HV, version, manifest create/annotate/inspect/push, and build
# outputs (docker-archive, docker://, isulad without isula).
check_isula_build_registry_commands() {
  export IMG_ROOT=$T/store; base
  cd "$T"
  img tag busybox:latest "$R/library/mybusybox:latest"
  isula-build ctr-img push "$R/library/mybusybox:latest" > out 2>&1 || fail "push: $(tail -3 out)"
  has -x "Push success with image: $R/library/mybusybox:latest" out || fail "push said: $(cat out)"
  img push -q busybox:latest "$R/library/alpine:latest" >/dev/null 2>&1 || fail "seeding alpine"
  IMG_ROOT=$T/other isula-build ctr-img pull "$R/library/alpine:latest" > out 2>&1 || fail "pull: $(tail -3 out)"
  has -x "Pull success with image: $R/library/alpine:latest" out || fail "pull said: $(cat out)"
  echo cooper-pass > creds.txt
  cat creds.txt | isula-build login -u cooper -p "$A" > out 2>&1 || fail "login -p: $(cat out)"
  has -x 'Login Succeeded' out || fail "login said: $(cat out)"
  drive_tty cooper-pass isula-build login "$A" -u cooper > out || fail "login at the prompt: $(cat out)"
  has 'Password:' out && has 'Login Succeeded' out && ! has 'cooper-pass' out || fail "the prompt: $(cat out)"
  isula-build logout -a > out 2>&1 || fail "logout -a"
  has -x 'Removed authentications' out || fail "logout -a said: $(cat out)"
  isula-build info -HV > out || fail "info -HV"
  has 'store' out || fail "info: $(cat out)"
  isula-build version > out || fail "version"
  has -i 'version' out || fail "version: $(cat out)"
  img load -q -i "$GEN/layered-docker.tar" >/dev/null   # another image for the second platform
  img push -q busybox:latest "$R/openeuler_x86:latest" >/dev/null 2>&1 && img push -q localhost/layered:1 "$R/openeuler_aarch64:latest" >/dev/null 2>&1 ||
    fail "seeding the platform images"
  isula-build manifest create openeuler "$R/openeuler_x86:latest" "$R/openeuler_aarch64:latest" >/dev/null 2>&1 || fail "manifest create"
  isula-build manifest annotate --os linux --arch arm64 openeuler:latest "$R/openeuler_aarch64:latest" >/dev/null 2>&1 || fail "manifest annotate"
  isula-build manifest inspect openeuler:latest > out || fail "manifest inspect"
  has '"arm64"' out || fail "the annotation is not in the list: $(cat out)"
  isula-build manifest push openeuler:latest "$R/openeuler:latest" > out 2>&1 || fail "manifest push: $(tail -3 out)"
  skopeo inspect --raw --tls-verify=false "docker://$R/openeuler:latest" | python3 -c 'import json,sys; m=json.load(sys.stdin)["manifests"]; assert len(m) == 2, m' ||
    fail "the pushed list"
  mkdir -p ctx && printf 'FROM busybox\nRUN echo o > /o\n' > ctx/Dockerfile && cd ctx
  isula-build ctr-img build -f Dockerfile -o "docker-archive:$T/image.tar:busybox:latest" >/dev/null 2>&1 || fail "-o docker-archive"
  skopeo inspect "docker-archive:$T/image.tar" >/dev/null || fail "the docker-archive"
  isula-build ctr-img build -f Dockerfile -o "docker://$R/library/busybox:latest" >/dev/null 2>&1 || fail "-o docker://"
  skopeo inspect --tls-verify=false "docker://$R/library/busybox:latest" >/dev/null || fail "the pushed build"
  if ! command -v isula >/dev/null || [[ $(command -v isula) == "$BIN/isula" ]]; then
    PATH=${PATH#"$BIN:"} isula-build ctr-img build -f Dockerfile -o isulad:busybox:2.0 > "$T/out" 2>&1 && fail "-o isulad without iSulad"
    has -i 'isula' "$T/out" || fail "-o isulad: $(cat "$T/out")"
  fi
}

# Seed 000, isula: load (its message names the file), images (REF table),
# inspect -f "{{json .image.id}}", pull (pulling/pulled), rmi (removed),
# login at the prompt, logout; commands that are not about images.
check_isula_image_commands() {
  export IMG_ROOT=$T/store; base
  cd "$T"
  img save -o busybox.tar busybox:latest && img rmi busybox:latest localhost/base:1 >/dev/null
  isula load -i busybox.tar > out || fail "load"
  has -x "Load image from \"$T/busybox.tar\" success" out || fail "load said: $(cat out)"
  isula images > out || fail "images"
  head -1 out | has -E '^REF +IMAGE ID +CREATED +SIZE$' || fail "header: $(head -1 out)"
  has -E '^(docker.io/library/)?busybox:latest +[0-9a-f]{12} +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} +[0-9.]+ [KMG]?B$' out || fail "row: $(cat out)"
  local id; id=$(img images -q --no-trunc busybox:latest | sed 's/^sha256://')
  [[ $(isula inspect -f "{{json .image.id}}" busybox) == "\"$id\"" ]] || fail "inspect .image.id: $(isula inspect -f "{{json .image.id}}" busybox)"
  img push -q busybox:latest "$R/official/busybox:latest" >/dev/null 2>&1 || fail "seeding"
  IMG_ROOT=$T/other isula pull "$R/official/busybox" > out || fail "pull"
  has -x "Image \"$R/official/busybox\" pulling" out || fail "pull said: $(cat out)"
  has -E "^Image \"$R/official/busybox@sha256:$HEX64\" pulled$" out || fail "pull said: $(cat out)"
  IMG_ROOT=$T/other isula rmi "$R/official/busybox" > out || fail "rmi"
  has -x "Image \"$R/official/busybox\" removed" out || fail "rmi said: $(cat out)"
  drive_tty cooper-pass isula login -u cooper "$A" > out || fail "login: $(cat out)"
  has 'Login Succeeded' out && ! has 'cooper-pass' out || fail "login said: $(cat out)"
  isula logout "$A" > out || fail "logout"
  has -x 'Logout Succeeded' out || fail "logout said: $(cat out)"
  local rc=0; isula run busybox > out 2>&1 || rc=$?
  [[ $rc == 125 ]] && has 'images only' out || fail "isula run: exit $rc: $(cat out)"
}

# Seed 000, embedded images: isula load -i test.manifest --type embedded,
# images, inspect -f "{{json .created}}", rmi; without --type embedded the
# error says to add it.
check_isula_embedded_image() {
  export IMG_ROOT=$T/store
  local e=$T/embedded sha
  mkdir -p "$e/content" "$e/layers" && echo hi > "$e/content/hello"
  mksquashfs "$e/content" "$e/layers/app.sqfs" -noappend -quiet -all-root >/dev/null || fail "mksquashfs"
  sha=$(sha256sum < "$e/layers/app.sqfs" | cut -d' ' -f1)
  python3 - "$e" "$sha" "$(stat -c %s "$e/layers/app.sqfs")" <<'PY'
import hashlib, json, sys
d, sha, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
m = {"schemaVersion": 1, "mediaType": "application/embedded.manifest+json", "imageName": "test:v1",
     "created": "2018-03-01T15:55:44.322987811Z",
     "layers": [{"mediaType": "application/bind.image.rootfs.diff.dir", "pathInHost": "/", "pathInContainer": "",
                 "digest": "", "size": 0},
                {"mediaType": "application/squashfs.image.rootfs.diff.img", "pathInHost": "layers/app.sqfs",
                 "pathInContainer": "/srv", "digest": "sha256:" + sha, "size": size}]}
b = json.dumps(m).encode()
open(d + "/test.manifest", "wb").write(b)
open(d + "/test.sgn", "w").write("sha256:" + hashlib.sha256(b).hexdigest())
PY
  isula load -i "$e/test.manifest" > out 2>&1 && fail "load of a manifest without --type embedded succeeded"
  has -- '--type embedded' out || fail "the error does not say to add --type embedded: $(cat out)"
  isula load -i "$e/test.manifest" --type embedded > out || fail "load --type embedded"
  has -x "Load image from \"$e/test.manifest\" success" out || fail "load said: $(cat out)"
  isula images | has -E '^test:v1 +[0-9a-f]{12} +2018-03-01 15:55:44 ' || fail "images: $(isula images)"
  [[ $(isula inspect -f "{{json .created}}" test:v1) == '"2018-03-01T15:55:44'* ]] || fail "inspect .created: $(isula inspect -f "{{json .created}}" test:v1)"
  isula rmi test:v1 > out || fail "rmi"
  has -x 'Image "test:v1" removed' out || fail "rmi said: $(cat out)"
}

# Seeds 002 and 003, docker's image commands: search (--limit, --filter),
# pull, build, rmi (the conflict, untag, -f), image prune (its question),
# save (-o, >, several), load (-i, <), images PATTERN, inspect -f of a
# field the image lacks, history --no-trunc, tag, login, push; commit -a
# -c -p of a writable mount.
check_docker_image_commands() {
  export IMG_ROOT=$T/store; base
  cd "$T"
  img tag busybox:latest alpine:latest && img tag busybox:latest hello-world:latest && img tag busybox:latest ubuntu:18.04
  img push -q alpine:latest "$R/library/python:3" >/dev/null 2>&1 && img push -q alpine:latest "$R/library/ubuntu:18.04" >/dev/null 2>&1 || fail "seeding"
  img search "$R/python" > out || fail "search"
  head -1 out | has -E '^NAME +DESCRIPTION +STARS +OFFICIAL +AUTOMATED$' || fail "search header: $(head -1 out)"
  has 'library/python' out || fail "search found nothing: $(cat out)"
  img search --limit 100 "$R/python" >/dev/null || fail "search --limit"
  [[ $(img search --filter=is-official=true "$R/python" | wc -l) == 1 ]] || fail "--filter=is-official=true kept a catalog entry"
  [[ $(img search --filter=stars=10 "$R/python" | wc -l) == 1 ]] || fail "--filter=stars=10 kept an entry with no stars"
  IMG_ROOT=$T/other img pull "$R/library/ubuntu:18.04" >/dev/null 2>&1 || fail "pull"
  mkdir -p ctx && printf 'FROM busybox\nRUN echo r > /r\n' > ctx/Dockerfile
  (cd ctx && img build . >/dev/null 2>&1) || fail "build ."
  (cd ctx && img build -t assassing/redis:2.3 . >/dev/null 2>&1) || fail "build -t"
  img tag ubuntu:18.04 base:1.0
  local id; id=$(short_id ubuntu:18.04)
  img rmi "$id" > out 2>&1 && fail "rmi of an image with several tags"
  has 'unable to delete .* (must be forced) - image is referenced in multiple repositories' out || fail "rmi said: $(cat out)"
  img rmi base:1.0 > out || fail "rmi base:1.0"
  has -E '^Untagged: (docker.io/library/)?base:1.0$' out || fail "rmi said: $(cat out)"
  img tag busybox:latest nginx:latest
  img rmi -f nginx > out || fail "rmi -f"
  has -E '^Untagged: (docker.io/library/)?nginx:latest$' out || fail "rmi -f said: $(cat out)"
  echo y | img image prune > out 2> err || fail "image prune"
  has 'WARNING! This will remove all dangling images' err && has 'Are you sure you want to continue? \[y/N\]' err || fail "prune asked: $(cat err)"
  has 'Total reclaimed space:' out || fail "prune said: $(cat out)"
  img images alpine | has -E '^(docker.io/library/)?alpine +latest +[0-9a-f]{12} ' || fail "images alpine"
  img save -o a.tar alpine && img save alpine > a1.tar && img save -o docker.tar alpine hello-world || fail "save"
  cmp -s a.tar a1.tar || fail "save -o and save > differ"
  IMG_ROOT=$T/l1 img load -i docker.tar > out || fail "load -i"
  has -E '^Loaded image: (docker.io/library/)?alpine:latest$' out && has -E '^Loaded image: (docker.io/library/)?hello-world:latest$' out ||
    fail "load said: $(cat out)"
  img save "$(img images -q --no-trunc alpine | head -1)" > 2.tar || fail "save by ID"
  IMG_ROOT=$T/l2 img load < 2.tar > out || fail "load <"
  has -E "^Loaded image ID: sha256:$HEX64$" out || fail "load < said: $(cat out)"
  img images 'ubu*' | has -E '^(docker.io/library/)?ubuntu +18.04 ' || fail "images ubu*"
  [[ $(img inspect -f {{".ContainerConfig.Hostname"}} alpine) == "" ]] || fail "inspect of a field the image lacks"
  img inspect -f {{".ContainerConfig.Hostname"}} alpine >/dev/null || fail "inspect -f .ContainerConfig.Hostname failed"
  img history --no-trunc alpine | head -1 | has -E '^IMAGE +CREATED +CREATED BY +SIZE +COMMENT$' || fail "history header"
  img tag alpine:latest "$R/assassing/a1:latest" || fail "tag"
  printf 'cooper-pass\n' | img login -u cooper --password-stdin "$A" >/dev/null 2>&1 || fail "login"
  img tag alpine:latest "$A/assassing/a1:latest"
  img push --disable-content-trust "$A/assassing/a1:latest" >/dev/null 2>"$T/err" || fail "push to the registry logged in to: $(tail -3 "$T/err")"
  img push "$R/assassing/a1:latest" >/dev/null 2>&1 || fail "push"
  img logout "$A" >/dev/null 2>&1
  printf 'wrong\n' | img login -u cooper --password-stdin "$A" > out 2>&1 && fail "a wrong password was taken"
  has 'refused the user name or password' out && ! has 'run img login' out || fail "a wrong password: $(cat out)"
  # commit -a -c -p of a writable mount (docker commit of a container)
  local m; m=$(img mount --rw busybox:latest "$T/b1") || fail "mount --rw"
  mkdir -p "$m/data/html" && echo '<h1>busybox httpd</h1>' > "$m/data/html/index.html"
  img commit -a 'cobla wt' -c 'CMD ["/bin/httpd", "-f", "-h", "/data/html"]' -p "$m" cobla/bus_info:v0.0.2 >/dev/null 2>"$T/err" ||
    fail "commit: $(cat "$T/err")"
  img umount "$m" >/dev/null
  [[ $(img inspect -f '{{.Author}} {{json .Config.Cmd}}' cobla/bus_info:v0.0.2) == 'cobla wt ["/bin/httpd","-f","-h","/data/html"]' ]] ||
    fail "the commit: $(img inspect -f '{{.Author}} {{json .Config.Cmd}}' cobla/bus_info:v0.0.2)"
}

run_checks "$@"
