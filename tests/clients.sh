#!/usr/bin/env bash
# Tests of img with docker 20.10 (Debian's docker.io) and containerd's ctr
# as real clients: docker login, push and pull through img serve under token
# auth, with users and a private namespace; ctr pull and push through it
# (ctr asks for its token with POST /token and the credentials in a form);
# docker save -> img load, img save -> docker load, img save (docker-archive
# and oci-archive) -> ctr images import, ctr images export -> img load,
# img build -o docker-daemon:NAME. Image IDs and manifest digests must agree
# on both sides.
#
# The suite starts its own containerd (its own --root, --state, socket and
# config) and its own dockerd on that containerd (its own --data-root,
# --exec-root, --pidfile, socket, daemon.json and key file; no iptables, no
# bridge), and stops them at the end; every docker command has a private
# DOCKER_CONFIG, so no credentials reach root's ~/.docker. The last line
# before the totals checks that nothing was left in root's default places.
#
# Usage: IMG=target/release/img tests/clients.sh [CHECK-NAME-SUBSTRING...]
# Prints "ok - NAME" or "not ok - NAME" and the reason per check, then
# "N passed, M failed"; exits non-zero if any check failed. A missing tool,
# or a daemon that does not start, is a failure (with the daemon's log).
# DOCKER_STORAGE_DRIVER sets dockerd's storage driver (vfs by default: the
# test image has a hard link to a file of a lower layer, which overlay2
# cannot unpack: "link /data/hard-a /data/hard-c: no such file or
# directory", as containerd's overlayfs snapshotter).
set -uo pipefail
cd "$(dirname "$0")/.."
IMG=$(realpath "${IMG:-target/release/img}")
GEN=$PWD/testdata/gen
SUPPORT=$PWD/tests/support
# Debian's docker CLI, not another docker that may come first on PATH
DOCKER=${DOCKER:-/usr/bin/docker}
DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
# Unix socket paths must stay under 108 bytes: a short directory in /tmp.
WORK=$(mktemp -d /tmp/img-clients.XXXXXX)
CD=$WORK/containerd DD=$WORK/docker
CSOCK=$CD/c.sock DSOCK=$DD/d.sock
source tests/lib.sh
CONTAINERD_PID= DOCKERD_PID=

# Root's default places of docker and containerd, and which of them exist
# before the suite: at the end none may have been made, and no default auth
# file may name the suite's registry.
DEFAULT_DIRS=(/etc/docker/key.json /var/lib/docker /var/lib/containerd /opt/containerd /run/docker /run/containerd)
DEFAULT_AUTH=("$HOME/.docker/config.json" "/run/containers/$(id -u)/auth.json" "$HOME/.config/containers/auth.json")
existing() { for p in "${DEFAULT_DIRS[@]}"; do [[ -e $p ]] && echo "$p"; done; }
before_places=$(existing)

stop_pid() { # stop_pid PID SECONDS: TERM, then KILL after SECONDS
  local p=$1 n=$(($2 * 10))
  [[ -n $p ]] && kill -0 "$p" 2>/dev/null || return 0
  kill "$p" 2>/dev/null
  for _ in $(seq "$n"); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null
  wait "$p" 2>/dev/null
  return 0
}
stop_daemons() {
  stop_pid "$DOCKERD_PID" 20; DOCKERD_PID=
  stop_pid "$CONTAINERD_PID" 10; CONTAINERD_PID=
  # anything the daemons left mounted under WORK (overlay2, snapshots)
  grep -o " $WORK[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null
  # dockerd makes /run/docker/plugins whatever its --exec-root: remove it
  # (if empty) when it was not there before
  has -x /run/docker <<<"$before_places" || { rmdir /run/docker/plugins /run/docker 2>/dev/null || true; }
  has -x /run/containerd <<<"$before_places" || { rmdir /run/containerd/s /run/containerd 2>/dev/null || true; }
}
suite_cleanup() { stop_daemons; }
trap 'exit 130' INT TERM HUP   # the daemons are stopped then too

for t in "$DOCKER" "$DOCKERD" containerd ctr runc curl python3; do
  command -v "$t" >/dev/null ||
    { echo "not ok - tools: $t is missing (apt-get install --no-install-recommends docker.io containerd)"; exit 1; }
done
[[ -f $GEN/base-docker.tar && -f $GEN/layered-oci.tar ]] || { echo "not ok - testdata: run scripts/make-testdata.sh"; exit 1; }

# One port for every check's img serve, in turn: dockerd is told at start
# that 127.0.0.1:PORT is an insecure (plain HTTP) registry.
PORT=$(free_port)

# ---------------------------------------------------------------- daemons

# containerd with everything of its own: root, state, sockets, the opt
# directory (else /opt/containerd), no CRI plugin (it wants CNI) and none of
# the snapshotters that cannot work here.
start_containerd() {
  mkdir -p "$CD"
  cat > "$CD/config.toml" <<EOF
version = 2
root = "$CD/root"
state = "$CD/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CSOCK"
[ttrpc]
  address = "$CSOCK.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CD/opt"
EOF
  containerd --config "$CD/config.toml" > "$CD/log" 2>&1 &
  CONTAINERD_PID=$!
  for _ in $(seq 100); do
    ctr --address "$CSOCK" version >/dev/null 2>&1 && return 0
    kill -0 "$CONTAINERD_PID" 2>/dev/null || { wait "$CONTAINERD_PID"; WHY="containerd exited with status $?"; return 1; }
    sleep 0.1
  done
  WHY="containerd did not answer in 10 s"
  return 1
}

# dockerd on the test's containerd, with its own data, exec root, socket,
# pid file, daemon.json (not /etc/docker/daemon.json) and key file (not
# /etc/docker/key.json, which dockerd 20.10 writes otherwise); no network
# setup (no iptables, no bridge, no proxy).
start_dockerd() {
  mkdir -p "$DD"
  printf '{"deprecated-key-path": "%s"}\n' "$DD/key.json" > "$DD/daemon.json"
  "$DOCKERD" --config-file "$DD/daemon.json" --data-root "$DD/data" --exec-root "$DD/exec" --pidfile "$DD/pid" -H "unix://$DSOCK" \
    --containerd "$CSOCK" --containerd-namespace img-clients --containerd-plugins-namespace img-clients-plugins \
    --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none --userland-proxy=false \
    --insecure-registry "127.0.0.1:$PORT" --storage-driver "${DOCKER_STORAGE_DRIVER:-vfs}" > "$DD/log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 300); do
    DOCKER_CONFIG=$DD/cli DOCKER_HOST=unix://$DSOCK "$DOCKER" version >/dev/null 2>&1 && return 0
    kill -0 "$DOCKERD_PID" 2>/dev/null || { wait "$DOCKERD_PID"; WHY="dockerd exited with status $?"; return 1; }
    sleep 0.1
  done
  WHY="dockerd did not answer in 30 s"
  return 1
}

# Why a daemon is missing, for the checks that need it.
need_containerd() { [[ -z ${CONTAINERD_DOWN:-} ]] || fail "containerd did not start: $CONTAINERD_DOWN"; }
need_dockerd() { [[ -z ${DOCKERD_DOWN:-} ]] || fail "dockerd did not start: $DOCKERD_DOWN"; }

# ---------------------------------------------------------------- helpers

# start_serve STORE VAR [ARGS...]: img serve over STORE on 127.0.0.1:PORT;
# sets VAR to host:port once it answers. Not in a subshell, so that the
# check's cleanup knows the pid.
start_serve() {
  local store=$1 var=$2; shift 2
  mkdir -p "$store"
  IMG_ROOT=$store "$IMG" serve --listen "127.0.0.1:$PORT" "$@" > "$store.serve.log" 2>&1 &
  SERVE_PID=$!
  PIDS+=("$SERVE_PID")
  for _ in $(seq 200); do
    if curl -s -o /dev/null "http://127.0.0.1:$PORT/v2/"; then
      printf -v "$var" '%s' "127.0.0.1:$PORT"
      return 0
    fi
    kill -0 "$SERVE_PID" 2>/dev/null || break
    sleep 0.05
  done
  cat "$store.serve.log" >&2
  return 1
}

# start_proxy VAR LOG: tests/support/log_proxy.py in front of this check's
# img serve; sets VAR to its host:port; LOG gets "METHOD PATH STATUS" lines
start_proxy() {
  local var=$1 log=$2 p; p=$(free_port)
  : > "$log"
  python3 "$SUPPORT/log_proxy.py" "$p" "127.0.0.1:$PORT" "$log" 2> "$log.err" &
  PIDS+=("$!")
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$p/v2/" && { : > "$log"; printf -v "$var" '%s' "127.0.0.1:$p"; return 0; }
    sleep 0.05
  done
  cat "$log.err" >&2
  return 1
}

# img with the check's own auth file, or AUTH=FILE (img login writes
# podman's /run/containers/UID/auth.json otherwise)
img() { IMG_ROOT=${ROOT:?} REGISTRY_AUTH_FILE=${AUTH:-$T/auth.json} "$IMG" "$@"; }
admin() { IMG_ROOT=${SROOT:?} "$IMG" serve admin "$@"; }
# dk ARGS...: Debian's docker CLI on the test's dockerd, with the check's own
# DOCKER_CONFIG (logins are written there)
dk() {
  mkdir -p "$T/docker-config"
  DOCKER_CONFIG=$T/docker-config DOCKER_HOST=unix://$DSOCK "$DOCKER" "$@"
}
# ct ARGS...: ctr on the test's containerd, in the check's own namespace.
# The native snapshotter: the test image has a hard link to a file of a
# lower layer, which containerd's overlayfs snapshotter cannot unpack (it
# links in the new layer's empty upper directory: "link .../hard-a
# .../hard-c: no such file or directory").
ct() { CONTAINERD_SNAPSHOTTER=native ctr --address "$CSOCK" -n "${NS:?}" "$@"; }

json_get() { python3 -c 'import json,sys; v=json.load(sys.stdin); print(v.get(sys.argv[1]) if isinstance(v, dict) else v)' "$1"; }
# image IDs as docker writes them (img inspect's {{.Id}} is podman's, bare)
img_id() { local i; i=$(img inspect -f '{{.Id}}' "$1") && echo "sha256:${i#sha256:}"; }
dk_id() { dk image inspect -f '{{.Id}}' "$1"; }
# the digest of the manifest img keeps for NAME (what it pushes and saves)
img_digest() { img inspect -f '{{.Digest}}' "$1"; }
# ct_image NAME FIELD: a field of ctr images ls (2: type, 3: digest)
ct_image() { ct images ls | awk -v n="$1" -v f="$2" '$1 == n { print $f }'; }
# ct_config NAME: the config digest (the image ID) of a containerd image
ct_config() {
  ct content get "$(ct_image "$1" 3)" | python3 -c '
import json, sys
m = json.load(sys.stdin)
if "manifests" in m:
    sys.exit("an index, not a manifest")
print(m["config"]["digest"])'
}

# served_digest CREDS REPO TAG: the digest img serve answers for REPO:TAG,
# with a token for CREDS (user:password)
served_digest() {
  local tok
  tok=$(curl -s -u "$1" "http://$R/token?service=img-serve&scope=repository:$2:pull" | json_get token) || return 1
  curl -s -I -H "Authorization: Bearer $tok" \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json' \
    "http://$R/v2/$2/manifests/$3" | tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p'
}

same() { # same WHAT A B
  [[ -n $2 && $2 == "$3" ]] || fail "$1 differs: '$2' != '$3'"
}

# users: alice may push to the private namespace team, bob may pull
# team/app, carol has no grant; an admin exists so that the store has users.
serve_users() {
  printf 'adm1n-pass\n' | admin user add root1 --admin --password-stdin 2>/dev/null || fail "user add root1"
  printf 'alice-pass\n' | admin user add alice --password-stdin 2>/dev/null || fail "user add alice"
  printf 'bob-pass\n' | admin user add bob --password-stdin 2>/dev/null || fail "user add bob"
  printf 'carol-pass\n' | admin user add carol --password-stdin 2>/dev/null || fail "user add carol"
  admin namespace add team --private 2>/dev/null || fail "namespace add team"
  admin grant alice team push 2>/dev/null && admin grant bob team/app pull 2>/dev/null || fail "grant"
}

# The file tree of a tar file (an img export or a docker export), one line
# per entry: path, type, mode, owner, size, sha256 or link target. Without
# what docker adds to every container (/.dockerenv, /dev, /proc, /sys,
# /etc/hostname, /etc/hosts, /etc/resolv.conf, /etc/mtab).
tree_list() {
  python3 - "$1" <<'PY'
import hashlib, sys, tarfile
skip_exact = {".dockerenv", "dev", "proc", "sys", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab"}
skip_under = ("dev/", "proc/", "sys/")
with tarfile.open(sys.argv[1]) as t:
    for m in t:
        p = m.name.lstrip("/")
        while p.startswith("./"):
            p = p[2:]
        p = p.rstrip("/")
        if not p or p in skip_exact or p.startswith(skip_under):
            continue
        if m.isreg():
            what = "file %d %s" % (m.size, hashlib.sha256(t.extractfile(m).read()).hexdigest())
        elif m.issym():
            what = "symlink " + m.linkname
        elif m.islnk():
            what = "hardlink " + m.linkname.lstrip("/")
        elif m.isdir():
            what = "dir"
        else:
            what = "type %s" % m.type
        print("%s %s %o %d:%d" % (p, what, m.mode & 0o7777, m.uid, m.gid))
PY
}
# same_tree IMAGE-IN-IMG IMAGE-IN-DOCKER: img export and docker export (of a
# container created, not started) give the same files
same_tree() {
  img export -o "$T/img-tree.tar" "$1" || fail "img export $1"
  local c; c=$(dk create --network none "$2" /bin/true) || fail "docker create $2"
  dk export -o "$T/docker-tree.tar" "$c" || fail "docker export $2"
  dk rm "$c" >/dev/null
  tree_list "$T/img-tree.tar" | sort > "$T/img-tree.txt"
  tree_list "$T/docker-tree.tar" | sort > "$T/docker-tree.txt"
  [[ -s $T/img-tree.txt ]] || fail "img export of $1 is empty"
  diff "$T/img-tree.txt" "$T/docker-tree.txt" >&2 || fail "the files of $1 in img and of $2 in docker differ"
}

# docker's image store is shared by the checks: each starts from none.
docker_clean() {
  local ids; ids=$(dk ps -aq)
  [[ -z $ids ]] || dk rm -f $ids >/dev/null
  ids=$(dk images -aq | sort -u)
  [[ -z $ids ]] || dk rmi -f $ids >/dev/null
}

# ---------------------------------------------------------------- checks

# docker login, push and pull through img serve with its default token auth:
# a wrong password is refused; alice logs in, pushes to her private
# namespace (the digest docker prints is the one served), docker pulls it
# back to the same image ID; the credentials are in the private
# DOCKER_CONFIG only; after logout the private image does not pull; bob,
# with a pull grant, pulls and may not push; carol, without a grant, pulls
# nothing.
check_docker_login_push_pull_token_auth() {
  need_dockerd
  local SROOT=$T/server R ROOT=$T/client
  serve_users
  start_serve "$SROOT" R || fail "img serve did not start"
  docker_clean
  dk load -q -i "$GEN/layered-docker.tar" >/dev/null || fail "docker load of the test image"
  local id; id=$(dk_id localhost/layered:1)
  dk tag localhost/layered:1 "$R/team/app:1"
  echo wrong | dk login -u alice --password-stdin "$R" > "$T/login.out" 2>&1 && fail "docker login took a wrong password"
  has -i 'unauthorized\|incorrect\|denied' "$T/login.out" || fail "unclear refusal: $(cat "$T/login.out")"
  [[ ! -s $T/docker-config/config.json ]] || ! has "$R" "$T/docker-config/config.json" ||
    fail "a refused login was saved: $(cat "$T/docker-config/config.json")"
  echo alice-pass | dk login -u alice --password-stdin "$R" > "$T/login.out" 2>&1 || fail "docker login: $(cat "$T/login.out")"
  has "$R" "$T/docker-config/config.json" || fail "docker login saved nothing in the private DOCKER_CONFIG"
  [[ ! -e $HOME/.docker/config.json ]] || ! has "$R" "$HOME/.docker/config.json" ||
    fail "docker login wrote to ~/.docker/config.json"
  dk push "$R/team/app:1" > "$T/push.out" 2>&1 || fail "docker push: $(cat "$T/push.out")"
  local pushed; pushed=$(sed -n 's/.*digest: \(sha256:[0-9a-f]*\) .*/\1/p' "$T/push.out")
  same "the manifest digest docker pushed and the one served" "$pushed" "$(served_digest alice:alice-pass team/app 1)"
  IMG_ROOT=$SROOT "$IMG" images --format '{{.Repository}}:{{.Tag}}' | has -x 'localhost/team/app:1' ||
    fail "the pushed image is not an image of the serving store"
  same "the image ID in the serving store" "$(ROOT=$SROOT img_id localhost/team/app:1)" "$id"
  # pull back into an empty docker
  docker_clean
  dk pull -q "$R/team/app:1" > "$T/pull.out" 2>&1 || fail "docker pull: $(cat "$T/pull.out")"
  same "the image ID docker pulled" "$(dk_id "$R/team/app:1")" "$id"
  dk image inspect -f '{{join .RepoDigests " "}}' "$R/team/app:1" | has -F "$R/team/app@$pushed" ||
    fail "docker's repo digest is not the pushed one: $(dk image inspect -f '{{.RepoDigests}}' "$R/team/app:1")"
  # logged out: the private repository does not pull
  dk logout "$R" >/dev/null 2>&1
  ! has "$R" "$T/docker-config/config.json" || fail "docker logout left the credentials"
  docker_clean
  dk pull -q "$R/team/app:1" > "$T/pull.out" 2>&1 && fail "docker pulled a private image without logging in"
  has -i 'denied\|unauthorized\|not found\|authentication required' "$T/pull.out" || fail "unclear refusal: $(cat "$T/pull.out")"
  # bob pulls, and may not push
  echo bob-pass | dk login -u bob --password-stdin "$R" >/dev/null 2>&1 || fail "docker login as bob"
  dk pull -q "$R/team/app:1" >/dev/null 2>&1 || fail "bob's docker pull"
  dk tag "$R/team/app:1" "$R/team/app:bob"
  dk push "$R/team/app:bob" > "$T/push.out" 2>&1 && fail "bob, with a pull grant, pushed"
  has -i 'denied\|unauthorized\|authentication required' "$T/push.out" || fail "unclear refusal of bob's push: $(cat "$T/push.out")"
  # carol: a login (she exists) but no pull
  echo carol-pass | dk login -u carol --password-stdin "$R" >/dev/null 2>&1 || fail "docker login as carol"
  docker_clean
  dk pull -q "$R/team/app:1" >/dev/null 2>&1 && fail "carol, without a grant, pulled"
  dk logout "$R" >/dev/null 2>&1
  IMG_ROOT=$SROOT "$IMG" fsck >/dev/null 2>&1 || fail "fsck of the serving store: $(IMG_ROOT=$SROOT "$IMG" fsck 2>&1 | tail -3)"
}

# What img pushes (an OCI manifest, gzip layers) docker pulls: the same
# image ID and files as in img, and img's manifest digest; docker pushes it
# back (its own manifest, its own gzip layers) and img pulls that to the
# same ID and docker's digest. Through an open img serve (no users; docker
# pushes anonymously).
check_docker_pulls_what_img_pushes() {
  need_dockerd
  local SROOT=$T/server R ROOT=$T/client
  start_serve "$SROOT" R --open || fail "img serve did not start"
  docker_clean
  img load -q -i "$GEN/layered-oci.tar" >/dev/null || fail "img load"
  local id; id=$(img_id localhost/layered:1)
  img push -q --tls-verify=false --digestfile "$T/digest" localhost/layered:1 "$R/team/layered:1" > "$T/push.out" 2>&1 ||
    fail "img push: $(cat "$T/push.out")"
  dk pull -q "$R/team/layered:1" > "$T/pull.out" 2>&1 || fail "docker pull of img's push: $(cat "$T/pull.out")"
  same "the image ID docker pulled" "$(dk_id "$R/team/layered:1")" "$id"
  dk image inspect -f '{{join .RepoDigests " "}}' "$R/team/layered:1" | has -F "@$(cat "$T/digest")" ||
    fail "docker's repo digest is not img's: $(dk image inspect -f '{{.RepoDigests}}' "$R/team/layered:1")"
  same_tree localhost/layered:1 "$R/team/layered:1"
  dk tag "$R/team/layered:1" "$R/team/bydocker:2"
  dk push "$R/team/bydocker:2" > "$T/push.out" 2>&1 || fail "docker push: $(cat "$T/push.out")"
  local pushed; pushed=$(sed -n 's/.*digest: \(sha256:[0-9a-f]*\) .*/\1/p' "$T/push.out")
  ROOT=$T/client2 img pull -q --tls-verify=false "$R/team/bydocker:2" >/dev/null 2>"$T/err" || fail "img pull of docker's push: $(cat "$T/err")"
  same "the image ID img pulled" "$(ROOT=$T/client2 img_id "$R/team/bydocker:2")" "$id"
  same "the digest img pulled" "$(ROOT=$T/client2 img_digest "$R/team/bydocker:2")" "$pushed"
}

# ctr pulls a private repository through img serve: ctr asks for its token
# with POST /token and the credentials in an OAuth2 form body (a finding:
# img serve answered only GET with Basic, so ctr's pull failed). ctr talks
# through a logging proxy, so that the check sees the POST: ctr falls back
# to GET /token when a POST is answered 400, 401, 404 or 405, and a broken
# POST would go unseen. alice's and bob's pulls work and give the served
# digest and image ID; a wrong password, no credentials and carol (no
# grant) fail.
check_ctr_pull_private_with_user() {
  need_containerd
  local SROOT=$T/server R P ROOT=$T/client NS=pull L=$T/http.log
  mkdir -p "$SROOT"
  serve_users
  IMG_ROOT=$SROOT "$IMG" load -q -i "$GEN/layered-oci.tar" >/dev/null || fail "img load into the serving store"
  IMG_ROOT=$SROOT "$IMG" tag localhost/layered:1 localhost/team/app:1 || fail "img tag"
  local id; id=$(ROOT=$SROOT img_id localhost/team/app:1)
  start_serve "$SROOT" R || fail "img serve did not start"
  start_proxy P "$L" || fail "the logging proxy did not start"
  local served; served=$(served_digest alice:alice-pass team/app 1)
  [[ -n $served ]] || fail "no digest served for team/app:1"
  ct images pull --plain-http --user alice:wrong "$P/team/app:1" > "$T/pull.out" 2>&1 && fail "ctr pulled with a wrong password"
  has -i 'unauthorized\|401\|denied' "$T/pull.out" || fail "unclear refusal: $(tail -3 "$T/pull.out")"
  has -x 'POST /token 401' "$L" || fail "ctr's wrong password did not go to POST /token: $(cat "$L")"
  ct images pull --plain-http "$P/team/app:1" > "$T/pull.out" 2>&1 && fail "ctr pulled a private image without credentials"
  ct images pull --plain-http --user carol:carol-pass "$P/team/app:1" > "$T/pull.out" 2>&1 && fail "carol, without a grant, pulled"
  : > "$L"
  ct images pull --plain-http --user alice:alice-pass "$P/team/app:1" > "$T/pull.out" 2>&1 ||
    fail "ctr pull as alice: $(tail -5 "$T/pull.out")"
  has -x 'POST /token 200' "$L" || fail "ctr's token did not come from POST /token: $(cat "$L")"
  ! has '^GET /token' "$L" || fail "ctr fell back to GET /token (POST /token failed): $(cat "$L")"
  same "the digest ctr pulled" "$(ct_image "$P/team/app:1" 3)" "$served"
  same "the image ID ctr pulled" "$(ct_config "$P/team/app:1")" "$id"
  ct images check | awk -v n="$P/team/app:1" '$1 == n' | has complete || fail "ctr: the pulled image is not complete: $(ct images check)"
  ct images rm "$P/team/app:1" >/dev/null
  : > "$L"
  ct images pull --plain-http --user bob:bob-pass "$P/team/app:1" > "$T/pull.out" 2>&1 ||
    fail "ctr pull as bob: $(tail -5 "$T/pull.out")"
  has -x 'POST /token 200' "$L" && ! has '^GET /token' "$L" || fail "bob's token did not come from POST /token: $(cat "$L")"
}

# ctr pushes to img serve with a user's credentials (POST /token too, seen
# through the logging proxy): alice pushes an image imported from img's
# archive to the private namespace, img pulls it back to the same digest
# and ID; bob (pull only) and a wrong password are refused.
check_ctr_push_private_with_user() {
  need_containerd
  local SROOT=$T/server R P ROOT=$T/client NS=push L=$T/http.log
  mkdir -p "$SROOT"
  serve_users
  start_serve "$SROOT" R || fail "img serve did not start"
  start_proxy P "$L" || fail "the logging proxy did not start"
  img load -q -i "$GEN/layered-oci.tar" >/dev/null || fail "img load"
  local id; id=$(img_id localhost/layered:1)
  img save --format oci-archive -o "$T/l.tar" localhost/layered:1 || fail "img save"
  ct images import --no-unpack "$T/l.tar" > "$T/import.out" 2>&1 || fail "ctr import: $(cat "$T/import.out")"
  local local_name; local_name=$(ct images ls -q | head -1)
  [[ -n $local_name ]] || fail "ctr import made no image"
  local digest; digest=$(ct_image "$local_name" 3)
  ct images push --plain-http --user alice:wrong "$P/team/fromctr:1" "$local_name" > "$T/push.out" 2>&1 &&
    fail "ctr pushed with a wrong password"
  ct images push --plain-http --user bob:bob-pass "$P/team/app:1" "$local_name" > "$T/push.out" 2>&1 &&
    fail "bob, with a pull grant, pushed"
  : > "$L"
  ct images push --plain-http --user alice:alice-pass "$P/team/fromctr:1" "$local_name" > "$T/push.out" 2>&1 ||
    fail "ctr push as alice: $(tail -5 "$T/push.out")"
  has -x 'POST /token 200' "$L" && ! has '^GET /token' "$L" || fail "ctr's push token did not come from POST /token: $(cat "$L")"
  same "the digest served after ctr's push" "$(served_digest alice:alice-pass team/fromctr 1)" "$digest"
  AUTH=$T/none.json ROOT=$T/client2 img pull -q --tls-verify=false "$R/team/fromctr:1" >/dev/null 2>"$T/err" &&
    fail "img pulled a private image without logging in"
  printf 'alice-pass\n' | img login -u alice --password-stdin --tls-verify=false "$R" >/dev/null 2>&1 || fail "img login"
  img pull -q --tls-verify=false "$R/team/fromctr:1" >/dev/null 2>"$T/err" || fail "img pull of ctr's push: $(cat "$T/err")"
  same "the image ID img pulled" "$(img_id "$R/team/fromctr:1")" "$id"
  same "the digest img pulled" "$(img_digest "$R/team/fromctr:1")" "$digest"
  img logout "$R" >/dev/null 2>&1
  IMG_ROOT=$SROOT "$IMG" fsck >/dev/null 2>&1 || fail "fsck of the serving store"
}

# docker save of images loaded into docker -> img load: the same IDs, names
# and files.
check_docker_save_img_load() {
  need_dockerd
  local ROOT=$T/client
  docker_clean
  dk load -q -i "$GEN/layered-docker.tar" >/dev/null && dk load -q -i "$GEN/base-docker.tar" >/dev/null ||
    fail "docker load of the test images"
  dk tag localhost/layered:1 example.com/team/app:2
  dk save -o "$T/docker.tar" localhost/layered:1 localhost/base:1 example.com/team/app:2 || fail "docker save"
  img load -i "$T/docker.tar" > "$T/load.out" 2>&1 || fail "img load of docker save: $(cat "$T/load.out")"
  local n
  for n in localhost/layered:1 localhost/base:1 example.com/team/app:2; do
    same "the image ID of $n" "$(img_id "$n" 2>/dev/null)" "$(dk_id "$n")"
  done
  same_tree localhost/layered:1 localhost/layered:1
  img fsck >/dev/null 2>&1 || fail "fsck after loading docker's archive"
}

# img save -> docker load: docker gets the same IDs and names, and the same
# files; several images in one archive.
check_img_save_docker_load() {
  need_dockerd
  local ROOT=$T/client
  docker_clean
  img load -q -i "$GEN/layered-oci.tar" >/dev/null && img load -q -i "$GEN/base-docker.tar" >/dev/null || fail "img load"
  img tag localhost/layered:1 example.com/team/app:3
  img save -o "$T/img.tar" localhost/layered:1 localhost/base:1 example.com/team/app:3 || fail "img save"
  dk load -i "$T/img.tar" > "$T/load.out" 2>&1 || fail "docker load of img save: $(cat "$T/load.out")"
  local n
  for n in localhost/layered:1 localhost/base:1 example.com/team/app:3; do
    same "the image ID of $n" "$(dk_id "$n" 2>/dev/null)" "$(img_id "$n")"
  done
  same_tree localhost/layered:1 localhost/layered:1
}

# img build -o docker-daemon:NAME runs docker load: the built image is in
# docker under NAME with img's ID.
check_img_build_to_docker_daemon() {
  need_dockerd
  local ROOT=$T/client
  docker_clean
  mkdir -p "$T/ctx" "$T/bin"
  echo hello > "$T/ctx/hello.txt"
  printf 'FROM scratch\nCOPY hello.txt /hello.txt\nLABEL from=img\n' > "$T/ctx/Dockerfile"
  # the docker that img runs is Debian's on the test's dockerd
  ln -s "$DOCKER" "$T/bin/docker"
  PATH=$T/bin:$PATH DOCKER_CONFIG=$T/docker-config DOCKER_HOST=unix://$DSOCK \
    img build -q -o docker-daemon:example.com/built:1 "$T/ctx" > "$T/build.out" 2>"$T/err" ||
    fail "img build -o docker-daemon: $(tail -5 "$T/err")"
  local id; id=$(tail -1 "$T/build.out")
  same "the image ID docker got" "$(dk_id example.com/built:1)" "$id"
  [[ $(dk image inspect -f '{{index .Config.Labels "from"}}' example.com/built:1) == img ]] || fail "the label is lost"
}

# img save --format docker-archive and --format oci-archive -> ctr images
# import: containerd gets the image (unpacked) with img's image ID, and
# from the OCI archive img's manifest digest too.
check_ctr_import_img_save() {
  need_containerd
  local ROOT=$T/client NS=import
  img load -q -i "$GEN/layered-oci.tar" >/dev/null && img load -q -i "$GEN/base-docker.tar" >/dev/null || fail "img load"
  local id; id=$(img_id localhost/layered:1)
  local digest; digest=$(img_digest localhost/layered:1)
  img save -o "$T/docker.tar" localhost/layered:1 localhost/base:1 || fail "img save (docker-archive)"
  ct images import "$T/docker.tar" > "$T/import.out" 2>&1 || fail "ctr import of a docker-archive: $(cat "$T/import.out")"
  ct images ls -q > "$T/names"
  has -x 'localhost/layered:1' "$T/names" && has -x 'localhost/base:1' "$T/names" ||
    fail "ctr import of img's docker-archive named: $(cat "$T/names")"
  same "the image ID in containerd (docker-archive)" "$(ct_config localhost/layered:1)" "$id"
  same "the image ID in containerd (docker-archive)" "$(ct_config localhost/base:1)" "$(img_id localhost/base:1)"
  ct images check | awk '$1 == "localhost/layered:1"' | has complete || fail "not complete: $(ct images check)"
  ct images rm localhost/layered:1 localhost/base:1 >/dev/null
  img save --format oci-archive -o "$T/oci.tar" localhost/layered:1 || fail "img save (oci-archive)"
  ct images import "$T/oci.tar" > "$T/import.out" 2>&1 || fail "ctr import of an oci-archive: $(cat "$T/import.out")"
  ct images ls -q > "$T/names"
  has -x 'localhost/layered:1' "$T/names" || fail "ctr import of img's oci-archive named: $(cat "$T/names")"
  same "the manifest digest in containerd (oci-archive)" "$(ct_image localhost/layered:1 3)" "$digest"
  same "the image ID in containerd (oci-archive)" "$(ct_config localhost/layered:1)" "$id"
  ct snapshots ls | tail -n +2 | has . || fail "ctr import unpacked nothing"
}

# ctr images export -> img load: img gets containerd's names, manifest
# digests and image IDs, for an image pulled through img serve and one
# imported from docker's archive.
check_img_load_ctr_export() {
  need_containerd
  local SROOT=$T/server R ROOT=$T/client NS=export
  start_serve "$SROOT" R --open || fail "img serve did not start"
  ROOT=$T/pusher img load -q -i "$GEN/layered-oci.tar" >/dev/null || fail "img load"
  ROOT=$T/pusher img push -q --tls-verify=false localhost/layered:1 "$R/team/layered:1" >/dev/null 2>&1 || fail "img push"
  ct images pull --plain-http "$R/team/layered:1" > "$T/pull.out" 2>&1 || fail "ctr pull (open serve): $(tail -5 "$T/pull.out")"
  ct images import "$GEN/base-docker.tar" > "$T/import.out" 2>&1 || fail "ctr import of base-docker.tar: $(cat "$T/import.out")"
  ct images export "$T/ctr.tar" "$R/team/layered:1" localhost/base:1 > "$T/export.out" 2>&1 ||
    fail "ctr export: $(cat "$T/export.out")"
  img load -i "$T/ctr.tar" > "$T/load.out" 2>&1 || fail "img load of ctr export: $(cat "$T/load.out")"
  local n
  for n in "$R/team/layered:1" localhost/base:1; do
    same "the image ID of $n" "$(img_id "$n" 2>/dev/null)" "$(ct_config "$n")"
    same "the manifest digest of $n" "$(img_digest "$n" 2>/dev/null)" "$(ct_image "$n" 3)"
  done
  same "the image ID of the exported pull" "$(img_id "$R/team/layered:1")" "$(ROOT=$T/pusher img_id localhost/layered:1)"
  img fsck >/dev/null 2>&1 || fail "fsck after loading ctr's archive"
}

# ---------------------------------------------------------------- runner

after_check() { echo "# $name took $((SECONDS - CHECK_START)) s" >> "$WORK/measurements"; }

echo "# img: $IMG ($("$IMG" --version 2>&1))"
echo "# docker: $("$DOCKER" --version 2>&1); $(containerd --version 2>&1 | cut -d' ' -f1,3); runc $(runc --version 2>&1 | head -1 | cut -d' ' -f3)"
mapfile -t CHECKS < <(selected_checks "$@")
# containerd for every check (dockerd runs on it); dockerd only when a
# check needs it
t0=$SECONDS
start_containerd ||
  CONTAINERD_DOWN="$WHY; $(grep -i 'level=\(error\|fatal\)' "$CD/log" | tail -3) (log: $(tail -c 600 "$CD/log"))"
if for fn in "${CHECKS[@]}"; do declare -f "$fn"; done | has -w need_dockerd; then
  if [[ -n ${CONTAINERD_DOWN:-} ]]; then
    DOCKERD_DOWN="it runs on the test's containerd, which did not start"
  else
    start_dockerd ||
      DOCKERD_DOWN="$WHY; $(grep -i 'level=\(error\|fatal\)' "$DD/log" | tail -3) (log: $(tail -c 600 "$DD/log"))"
  fi
  [[ -n ${DOCKERD_DOWN:-} ]] ||
    echo "# dockerd: storage driver $(DOCKER_CONFIG=$DD/cli DOCKER_HOST=unix://$DSOCK "$DOCKER" info -f '{{.Driver}}' 2>&1)"
fi
export CONTAINERD_DOWN DOCKERD_DOWN
echo "# the daemons started in $((SECONDS - t0)) s"

# After the checks: the daemons stopped, nothing is left in root's default
# places.
after_checks() {
  stop_daemons
  left=$(diff <(echo "$before_places") <(existing) | sed -n 's/^> /made: /p'
         for f in "${DEFAULT_AUTH[@]}"; do [[ -f $f ]] && has -F "127.0.0.1:$PORT" "$f" && echo "credentials in $f"; done
         pgrep -af -- "$WORK" | sed 's/^/still running: /')
  if [[ -z $left ]]; then
    echo "ok - leaves_nothing_behind"; passed=$((passed + 1))
  else
    echo "not ok - leaves_nothing_behind"; failed=$((failed + 1))
    sed 's/^/#   /' <<<"$left"
  fi
}
run_checks
