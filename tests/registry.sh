#!/usr/bin/env bash
# Registry tests against a real registry: Debian's docker-registry (CNCF
# distribution), started here on 127.0.0.1, plain HTTP and with htpasswd
# Basic auth; images are put there with skopeo from testdata/gen/.
#
# Usage: IMG=target/release/img tests/registry.sh
# Prints "ok - NAME" or "not ok - NAME" per check; exits non-zero if any
# failed. A missing tool is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
IMG=$(realpath "${IMG:-target/release/img}")
GEN=$PWD/testdata/gen
WORK=$(mktemp -d "${TMPDIR:-/tmp}/img-registry.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$WORK" "$RUNS"
}
trap cleanup EXIT

fail() { echo "$*" >&2; exit 1; }
for t in docker-registry skopeo podman htpasswd curl python3; do
  command -v "$t" >/dev/null || { echo "not ok - tools: $t is missing (scripts/test.sh installs it)"; exit 1; }
done
[[ -f $GEN/base-oci.tar ]] || { echo "not ok - testdata: run scripts/make-testdata.sh"; exit 1; }

RUNS=$(mktemp -d /tmp/img-run.XXXXXX)   # podman wants a runroot under 50 characters
# A private podman store: pm DIR ARGS...
pm() {
  local s=$1; shift
  local run; run=$RUNS/$(echo "$s" | cksum | cut -d' ' -f1)
  podman --root "$s/root" --runroot "$run" --tmpdir "$s/tmp" --storage-driver vfs \
    --events-backend file --cgroup-manager cgroupfs "$@"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_registry NAME VAR [htpasswd-file]: sets VAR to host:port once it
# answers. Not run in a subshell, so that cleanup knows the server's pid.
start_registry() {
  local name=$1 var=$2 auth=${3:-} port; port=$(free_port)
  mkdir -p "$WORK/$name"
  {
    echo "version: 0.1"
    echo "log: {level: error}"
    echo "storage: {filesystem: {rootdirectory: $WORK/$name/data}, delete: {enabled: true}}"
    echo "http: {addr: 127.0.0.1:$port}"
    [[ -n $auth ]] && echo "auth: {htpasswd: {realm: test, path: $auth}}"
  } > "$WORK/$name/config.yml"
  docker-registry serve "$WORK/$name/config.yml" > "$WORK/$name/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$port/v2/" && { printf -v "$var" '%s' "127.0.0.1:$port"; return 0; }
    sleep 0.1
  done
  cat "$WORK/$name/log" >&2
  return 1
}

passed=0 failed=0
check() { # check NAME: runs the function NAME in a subshell with a fresh store
  local name=$1 out
  export IMG_ROOT=$WORK/store-$name
  if out=$( ("$name") 2>&1 ); then
    echo "ok - $name"; passed=$((passed + 1))
  else
    echo "not ok - $name"; echo "$out" | sed 's/^/    /' | tail -n 20; failed=$((failed + 1))
  fi
}

start_registry plain REG || { echo "not ok - start plain registry"; exit 1; }
htpasswd -Bbc "$WORK/htpasswd" alice s3cret-pass >/dev/null 2>&1
start_registry auth AUTH "$WORK/htpasswd" || { echo "not ok - start auth registry"; exit 1; }
skopeo copy -q --dest-tls-verify=false "oci-archive:$GEN/base-oci.tar" "docker://$REG/test/base:1" ||
  { echo "not ok - skopeo push"; exit 1; }
skopeo copy -q --dest-tls-verify=false --dest-creds alice:s3cret-pass "oci-archive:$GEN/base-oci.tar" \
  "docker://$AUTH/test/base:1" || { echo "not ok - skopeo push with auth"; exit 1; }

pull_by_tag_matches_skopeo() {
  local id digest config
  id=$("$IMG" pull -q --tls-verify=false "$REG/test/base:1") || fail "pull failed"
  config=$(skopeo inspect --raw --tls-verify=false "docker://$REG/test/base:1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])')
  [[ "sha256:$id" == "$config" ]] || fail "image ID $id is not the config digest $config"
  digest=$(skopeo inspect --tls-verify=false "docker://$REG/test/base:1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Digest"])')
  [[ $("$IMG" inspect -f '{{.Digest}}' "$REG/test/base:1") == "$digest" ]] || fail "manifest digest differs from skopeo's $digest"
  "$IMG" fsck >/dev/null || fail "fsck after pull"
}

pull_by_digest_and_again_is_up_to_date() {
  local digest
  digest=$(skopeo inspect --tls-verify=false "docker://$REG/test/base:1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Digest"])')
  "$IMG" pull -q --tls-verify=false "$REG/test/base@$digest" >/dev/null || fail "pull by digest failed"
  "$IMG" pull --tls-verify=false "$REG/test/base:1" 2>&1 >/dev/null | grep -q "up to date" ||
    fail "second pull did not reuse the stored image"
  [[ $(ls "$IMG_ROOT/ingest" | wc -l) == 0 ]] || fail "files left in ingest/"
}

pulled_image_saves_and_loads_back() {
  "$IMG" pull -q --tls-verify=false "$REG/test/base:1" >/dev/null || fail "pull failed"
  "$IMG" save -o "$WORK/pulled.tar" "$REG/test/base:1" || fail "save failed"
  local before after
  before=$("$IMG" inspect -f '{{.Id}}' "$REG/test/base:1")
  IMG_ROOT=$WORK/store-reload "$IMG" load -q -i "$WORK/pulled.tar" >/dev/null || fail "reload failed"
  after=$(IMG_ROOT=$WORK/store-reload "$IMG" inspect -f '{{.Id}}' "$REG/test/base:1")
  [[ $before == "$after" ]] || fail "image ID changed: $before -> $after"
}

https_is_required_without_tls_verify_false() {
  local err
  err=$("$IMG" pull "$REG/test/base:1" 2>&1 >/dev/null) && fail "pull over plain http succeeded without --tls-verify=false"
  grep -q "tls-verify=false" <<<"$err" || fail "the error does not say what to do: $err"
  [[ -z $("$IMG" images -q) ]] || fail "an image was stored"
}

missing_tag_is_a_clear_error() {
  local err
  err=$("$IMG" pull --tls-verify=false "$REG/test/base:nosuch" 2>&1 >/dev/null) && fail "pull of a missing tag succeeded"
  grep -qi "not found\|manifest unknown" <<<"$err" || fail "unclear error: $err"
  "$IMG" fsck >/dev/null || fail "fsck"
}

auth_pull_needs_login() {
  local err
  err=$("$IMG" pull --tls-verify=false "$AUTH/test/base:1" 2>&1 >/dev/null) && fail "anonymous pull succeeded"
  grep -q "img login" <<<"$err" || fail "the error does not suggest img login: $err"
  local af=$WORK/auth-$$.json
  echo wrong | "$IMG" login --tls-verify=false --authfile "$af" -u alice --password-stdin "$AUTH" 2>/dev/null &&
    fail "login with a wrong password succeeded"
  [[ ! -e $af ]] || fail "a failed login wrote the auth file"
  echo s3cret-pass | "$IMG" login --tls-verify=false --authfile "$af" -u alice --password-stdin "$AUTH" 2>/dev/null ||
    fail "login failed"
  [[ $(stat -c %a "$af") == 600 ]] || fail "auth file mode is $(stat -c %a "$af")"
  grep -q s3cret-pass "$af" && fail "the password is stored in clear"
  "$IMG" pull -q --tls-verify=false --authfile "$af" "$AUTH/test/base:1" >/dev/null || fail "pull after login failed"
  "$IMG" logout --authfile "$af" "$AUTH" 2>/dev/null || fail "logout failed"
  "$IMG" login --get-login --authfile "$af" "$AUTH" >/dev/null 2>&1 && fail "still logged in after logout"
  "$IMG" pull -q --tls-verify=false --creds alice:s3cret-pass "$AUTH/test/base:1" >/dev/null || fail "pull with --creds failed"
}

tags_lists_the_repository() {
  skopeo copy -q --dest-tls-verify=false "oci-archive:$GEN/base-oci.tar" "docker://$REG/test/base:2" || fail "push"
  [[ $("$IMG" tags --tls-verify=false "$REG/test/base" | sort | tr '\n' ' ') == "1 2 " ]] || fail "tags: $("$IMG" tags --tls-verify=false "$REG/test/base")"
}

push_then_skopeo_and_podman_read_it() {
  "$IMG" load -q -i "$GEN/layered-docker.tar" >/dev/null || fail "load"
  "$IMG" push -q --tls-verify=false --digestfile "$WORK/push.digest" localhost/layered:1 "$REG/push/layered:1" ||
    fail "push failed"
  local digest
  digest=$(skopeo inspect --tls-verify=false "docker://$REG/push/layered:1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Digest"])') || fail "skopeo inspect"
  [[ $(cat "$WORK/push.digest") == "$digest" ]] || fail "--digestfile has $(cat "$WORK/push.digest"), skopeo sees $digest"
  skopeo copy -q --src-tls-verify=false "docker://$REG/push/layered:1" "oci:$WORK/push-oci:x" || fail "skopeo copy of the pushed image"
  local pr=$WORK/podman-push
  pm "$pr" pull -q --tls-verify=false "$REG/push/layered:1" >/dev/null ||
    fail "podman pull of the pushed image"
  # podman unpacked the top layer's change.
  local mnt
  mnt=$(pm "$pr" image mount "$REG/push/layered:1") || fail "podman image mount"
  [[ $(cat "$mnt/etc/hostname") == layered ]] || fail "podman sees /etc/hostname as $(cat "$mnt/etc/hostname" 2>&1)"
}

push_again_skips_and_other_repo_mounts() {
  "$IMG" pull -q --tls-verify=false "$REG/test/base:1" >/dev/null || fail "pull"
  local out
  out=$("$IMG" push --tls-verify=false "$REG/test/base:1" 2>&1) || fail "push of an unchanged image: $out"
  grep -q "0 blobs uploaded, 2 already there" <<<"$out" || fail "blobs were sent again: $out"
  out=$("$IMG" push --tls-verify=false "$REG/test/base:1" "$REG/elsewhere/base:1" 2>&1) || fail "push to another repository: $out"
  grep -q "0 blobs uploaded, 0 already there, 2 mounted" <<<"$out" || fail "blobs were not mounted across repositories: $out"
  skopeo inspect --tls-verify=false "docker://$REG/elsewhere/base:1" >/dev/null || fail "skopeo cannot read the mounted image"
}

chunked_zstd_push_pulls_back_identical() {
  "$IMG" load -q -i "$GEN/base-oci.tar" >/dev/null || fail "load"
  "$IMG" push -q --tls-verify=false --chunk-size 64k --compression-format zstd localhost/base:1 "$REG/push/base:zstd" ||
    fail "chunked zstd push failed"
  skopeo inspect --raw --tls-verify=false "docker://$REG/push/base:zstd" | grep -q 'tar+zstd' || fail "the layers are not zstd"
  local before after
  before=$("$IMG" export localhost/base:1 | sha256sum)
  IMG_ROOT=$WORK/store-zstd-back "$IMG" pull -q --tls-verify=false "$REG/push/base:zstd" >/dev/null || fail "pull back"
  after=$(IMG_ROOT=$WORK/store-zstd-back "$IMG" export "$REG/push/base:zstd" | sha256sum)
  [[ $before == "$after" ]] || fail "the root filesystem changed through zstd"
  local pr=$WORK/podman-zstd
  pm "$pr" pull -q --tls-verify=false "$REG/push/base:zstd" >/dev/null ||
    fail "podman cannot pull the zstd image"
}

podman_push_then_img_pull() {
  local pr=$WORK/podman-src
  pm "$pr" load -q -i "$GEN/layered-oci.tar" >/dev/null || fail "podman load"
  pm "$pr" push -q --tls-verify=false localhost/layered:1 "$REG/frompodman/layered:1" ||
    fail "podman push"
  "$IMG" pull -q --tls-verify=false "$REG/frompodman/layered:1" >/dev/null || fail "img pull of podman's push"
  "$IMG" fsck >/dev/null || fail "fsck"
}

push_refusals_leave_nothing() {
  local err
  err=$("$IMG" push --tls-verify=false nosuch:1 "$REG/x/y:1" 2>&1) && fail "push of a missing image succeeded"
  grep -q "nosuch:1" <<<"$err" || fail "the error does not name the image: $err"
  "$IMG" load -q -i "$GEN/base-oci.tar" >/dev/null || fail "load"
  err=$("$IMG" push --tls-verify=false "$("$IMG" images -q | head -1)" 2>&1) && fail "push of an ID without destination succeeded"
  grep -q "needs a destination" <<<"$err" || fail "unclear error: $err"
  err=$("$IMG" push --tls-verify=false --creds a:b localhost/base:1 "$AUTH/x/y:1" 2>&1) && fail "push with wrong creds succeeded"
  grep -q "img login" <<<"$err" || fail "the error does not suggest img login: $err"
  [[ -z $(ls "$IMG_ROOT/ingest") ]] || fail "files left in ingest/"
}

for c in pull_by_tag_matches_skopeo pull_by_digest_and_again_is_up_to_date pulled_image_saves_and_loads_back \
  https_is_required_without_tls_verify_false missing_tag_is_a_clear_error auth_pull_needs_login tags_lists_the_repository \
  push_then_skopeo_and_podman_read_it push_again_skips_and_other_repo_mounts chunked_zstd_push_pulls_back_identical \
  podman_push_then_img_pull push_refusals_leave_nothing; do
  check "$c"
done
echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
