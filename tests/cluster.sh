#!/usr/bin/env bash
# Tests of img serve scaled out: blobs in S3 (a real 3-node Garage cluster
# with replication 3), users, repositories and uploads in a real
# PostgreSQL, three img serve instances behind haproxy (which also fronts
# Garage's S3 ports). img, skopeo and podman push and pull through the
# balancer; tokens and uploads cross instances; an instance is killed
# during pushes; a Garage node is stopped during pulls; PostgreSQL is
# restarted; the hosted registry's features (repositories made and
# removed with their images, summaries and descriptions, namespace
# removal, access credentials, the image center) through the CLI, the API
# and a browser; garbage collection while others push; blobs by redirect
# to pre-signed URLs; docker-registry's own S3 driver on the same Garage
# as a peer.
#
# Usage: IMG=target/release/img tests/cluster.sh [CHECK-NAME-SUBSTRING...]
# Needs garage (scripts/install-garage.sh), postgresql, haproxy, skopeo,
# podman, curl, chromium. Everything listens on 127.0.0.1 and goes at exit.
set -uo pipefail
cd "$(dirname "$0")/.."
IMG=$(realpath "${IMG:-target/release/img}")
GEN=$PWD/testdata/gen
WORK=$(mktemp -d "${TMPDIR:-/tmp}/img-cluster.XXXXXX")
RUNS=$(mktemp -d /tmp/img-run.XXXXXX)   # podman wants a short runroot
export REGISTRY_AUTH_FILE=$WORK/auth.json
source tests/lib.sh
source tests/support/garage.sh
source tests/support/postgres.sh
suite_cleanup() {
  garage_stop > /dev/null 2>&1
  pg_stop > /dev/null 2>&1
  rm -rf "$RUNS"
}
need skopeo podman curl python3 haproxy sha256sum docker-registry
[[ -f $GEN/base-docker.tar && -f $GEN/layered-oci.tar ]] || { echo "not ok - testdata: run scripts/make-testdata.sh"; exit 1; }

pm() { # pm DIR ARGS...: podman with a private store
  local s=$1; shift
  local run; run=$RUNS/$(echo "$s" | cksum | cut -d' ' -f1)
  podman --root "$s/root" --runroot "$run" --tmpdir "$s/tmp" --storage-driver vfs \
    --events-backend file --cgroup-manager cgroupfs "$@"
}

# The suite's Garage cluster and PostgreSQL server, with haproxy in front
# of Garage's S3 ports (so that a node may stop).
garage_start "$WORK/garage" 3 > "$WORK/garage.log" 2>&1 || { echo "not ok - garage: the cluster did not start"; tail -20 "$WORK/garage.log"; exit 1; }
pg_start "$WORK/pg" > "$WORK/pg.log" 2>&1 || { echo "not ok - postgresql did not start"; tail -20 "$WORK/pg.log"; exit 1; }
S3LB_PORT=$(free_port)
{
  printf 'global\n  maxconn 2000\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 120s\n  timeout server 120s\n'
  printf '  retries 3\n  option redispatch\n  retry-on conn-failure empty-response\n'
  printf 'frontend s3\n  bind 127.0.0.1:%s\n  default_backend garage\nbackend garage\n  balance roundrobin\n' "$S3LB_PORT"
  i=0
  for e in $GARAGE_S3_ENDPOINTS; do i=$((i + 1)); printf '  server g%s %s check inter 300 fall 1 rise 2\n' "$i" "${e#http://}"; done
} > "$WORK/s3lb.cfg"
haproxy -f "$WORK/s3lb.cfg" -db > "$WORK/s3lb.log" 2>&1 &
PIDS+=("$!")
S3_ENDPOINT=http://127.0.0.1:$S3LB_PORT

# cluster_up: a database and a bucket prefix of this check's own, three
# img serve instances on them (INST, INST_PIDS, ARGS appended to each) and
# haproxy in front (LB). DB is the database's URL, STORAGE the bucket's.
cluster_up() {
  local db; db=c$(echo "$name" | cksum | cut -d' ' -f1)
  pg_psql -q -c "CREATE DATABASE $db OWNER img" > /dev/null || fail "creating database $db"
  DB="postgres://img@127.0.0.1:$PG_PORT/$db"
  PREFIX=$db
  STORAGE="s3://$GARAGE_BUCKET/$db?endpoint=$S3_ENDPOINT&region=$AWS_REGION${GC_GRACE:+&gc_grace=$GC_GRACE}${STORAGE_EXTRA:-}"
  INST=() INST_PIDS=() INST_PORTS=()
  local i
  for i in 1 2 3; do start_instance "$i" "$@"; done
  local lb; lb=$(free_port)
  {
    printf 'global\n  maxconn 2000\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 300s\n  timeout server 300s\n'
    printf '  retries 3\n  option redispatch\n  retry-on conn-failure empty-response\n'
    printf 'frontend registry\n  bind 127.0.0.1:%s\n  option forwardfor\n  default_backend imgs\n' "$lb"
    printf 'backend imgs\n  balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n'
    for i in 1 2 3; do printf '  server i%s %s check inter 300 fall 1 rise 1\n' "$i" "${INST[$((i - 1))]}"; done
  } > "$T/lb.cfg"
  haproxy -f "$T/lb.cfg" -db > "$T/lb.log" 2>&1 &
  PIDS+=("$!")
  LB=127.0.0.1:$lb
  for _ in $(seq 100); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://$LB/healthz") == 200 ]] && return 0
    sleep 0.1
  done
  fail "haproxy did not start: $(tail -5 "$T/lb.log")"
}

# start_instance I [ARGS...]: img serve instance I (again, on its port).
start_instance() {
  local i=$1 port; shift
  port=${INST_PORTS[$((i - 1))]:-$(free_port)}
  mkdir -p "$T/inst$i"
  IMG_ROOT=$T/inst$i/root "$IMG" serve --listen "127.0.0.1:$port" --trusted-proxy 127.0.0.1/32 \
    --storage "$STORAGE" --database "$DB" "$@" \
    >> "$T/inst$i.log" 2>&1 &
  INST_PIDS[$((i - 1))]=$!
  INST_PORTS[$((i - 1))]=$port
  INST[$((i - 1))]=127.0.0.1:$port
  PIDS+=("$!")
  for _ in $(seq 200); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz") == 200 ]] && return 0
    kill -0 "${INST_PIDS[$((i - 1))]}" 2>/dev/null || break
    sleep 0.05
  done
  fail "instance $i did not start: $(tail -5 "$T/inst$i.log")"
}

admin() { IMG_SERVE_DATABASE=$DB IMG_ROOT=$T/adminroot "$IMG" serve admin "$@"; }
img() { IMG_ROOT=${ROOT:?} "$IMG" "$@"; }
client_images() {
  img load -q -i "$GEN/base-docker.tar" >/dev/null && img load -q -i "$GEN/layered-oci.tar" >/dev/null ||
    fail "loading the test images failed"
}
users() {
  printf 'boss-pass\n' | admin user add boss --admin --password-stdin 2>/dev/null || fail "user add boss"
  printf 'alice-pass\n' | admin user add alice --password-stdin 2>/dev/null || fail "user add alice"
  admin namespace add team 2>/dev/null || fail "namespace add team"
  admin namespace add pub --public 2>/dev/null || fail "namespace add pub"
}
token() { # token INSTANCE USER:PASSWORD: a bearer token from that instance
  curl -sf -u "$2" "http://$1/token?service=img-serve&scope=repository:team/app:pull,push" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
objects() { # the number of objects under this check's prefix
  python3 tests/support/s3_list.py "$S3_ENDPOINT" "$GARAGE_BUCKET" "$PREFIX/" | wc -l
}

# img, skopeo and podman push and pull through the balancer (each request
# may go to another instance); the trees agree; the catalog lists them;
# the blobs are in the bucket, nothing on the instances' disks.
check_clients_push_and_pull_through_the_balancer() {
  local ROOT=$T/client
  cluster_up
  users
  client_images
  printf 'boss-pass\n' | img login -u boss --password-stdin --tls-verify=false "$LB" >/dev/null 2>&1 || fail "img login"
  img push -q --tls-verify=false localhost/layered:1 "$LB/team/layered:1" > "$T/push.out" 2>&1 || fail "img push: $(cat "$T/push.out")"
  skopeo copy -q --src-tls-verify=false --src-creds boss:boss-pass "docker://$LB/team/layered:1" "oci:$T/oci:x" || fail "skopeo pull"
  skopeo copy -q --dest-tls-verify=false --dest-creds boss:boss-pass --format v2s2 "oci:$T/oci:x" "docker://$LB/team/viaskopeo:2" ||
    fail "skopeo push"
  pm "$T/pm" login -u boss -p boss-pass --tls-verify=false "$LB" >/dev/null 2>&1 || fail "podman login"
  pm "$T/pm" pull -q --tls-verify=false "$LB/team/viaskopeo:2" >/dev/null || fail "podman pull"
  pm "$T/pm" push -q --tls-verify=false "$LB/team/viaskopeo:2" "$LB/team/viapodman:3" || fail "podman push"
  ROOT=$T/client2 img pull -q --tls-verify=false --creds boss:boss-pass "$LB/team/viapodman:3" >/dev/null || fail "img pull of podman's push"
  img export -o "$T/a.tar" localhost/layered:1
  ROOT=$T/client2 img export -o "$T/b.tar" "$LB/team/viapodman:3"
  [[ $(tar -tvf "$T/a.tar" | sort | md5sum) == $(tar -tvf "$T/b.tar" | sort | md5sum) ]] ||
    fail "the tree that went img -> cluster -> skopeo -> cluster -> podman -> cluster -> img changed"
  local cat; cat=$(curl -s -u boss:boss-pass "http://$LB/v2/_catalog")
  [[ $cat == '{"repositories":["team/layered","team/viapodman","team/viaskopeo"]}' ]] || fail "catalog: $cat"
  local n; n=$(objects)
  ((n >= 3)) || fail "only $n objects in the bucket"
  [[ -z $(find "$T"/inst*/root -type f -size +100k 2>/dev/null) ]] || fail "an instance kept blobs on its disk: $(find "$T"/inst*/root -type f -size +100k | head -3)"
  local served=0 i
  for i in 1 2 3; do has -c '' "$T/inst$i.log" || true; done
  for i in 0 1 2; do
    [[ $(curl -s -o /dev/null -w '%{http_code}' -u boss:boss-pass "http://${INST[$i]}/v2/team/layered/tags/list") == 200 ]] &&
      served=$((served + 1))
  done
  ((served == 3)) || fail "only $served instances serve the pushed repository"
  echo "img, skopeo and podman through haproxy over 3 instances: $n objects in Garage, nothing on the instances' disks" > "$T/measure"
}

# A token issued by one instance is valid on the others; an upload
# started on one is sent on a second and finished on the third; a grant
# revoked on one is gone on all at once.
check_tokens_and_uploads_cross_instances() {
  cluster_up
  users
  admin grant alice team push 2>/dev/null || fail "grant"
  local tok; tok=$(token "${INST[0]}" alice:alice-pass) || fail "no token from instance 1"
  local i
  for i in 1 2; do
    [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" "http://${INST[$i]}/v2/") == 200 ]] ||
      fail "instance $((i + 1)) refuses instance 1's token"
  done
  head -c 12M /dev/urandom > "$T/blob"
  local digest; digest=sha256:$(sha256sum "$T/blob" | cut -d' ' -f1)
  local loc; loc=$(curl -s -D - -o /dev/null -X POST -H "Authorization: Bearer $tok" "http://${INST[0]}/v2/team/app/blobs/uploads/" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "location" {print $2}')
  [[ $loc == /v2/team/app/blobs/uploads/* ]] || fail "no upload started: $loc"
  head -c 7M "$T/blob" > "$T/part1"; tail -c +$((7 * 1024 * 1024 + 1)) "$T/blob" > "$T/part2"
  local st
  st=$(curl -s -o "$T/body" -w '%{http_code}' -X PATCH -H "Authorization: Bearer $tok" -H 'Content-Type: application/octet-stream' \
    -H "Content-Range: 0-$((7 * 1024 * 1024 - 1))" --data-binary "@$T/part1" "http://${INST[1]}$loc")
  [[ $st == 202 ]] || fail "PATCH on instance 2: $st $(cat "$T/body")"
  st=$(curl -s -o "$T/body" -w '%{http_code}' -X PUT -H "Authorization: Bearer $tok" -H 'Content-Type: application/octet-stream' \
    --data-binary "@$T/part2" "http://${INST[2]}$loc?digest=$digest")
  [[ $st == 201 ]] || fail "PUT on instance 3: $st $(cat "$T/body")"
  curl -s -H "Authorization: Bearer $tok" "http://${INST[0]}/v2/team/app/blobs/$digest" | cmp - "$T/blob" ||
    fail "the blob read back from instance 1 is not the one sent in two chunks to instances 2 and 3"
  # A chunk that does not follow is refused, on any instance.
  loc=$(curl -s -D - -o /dev/null -X POST -H "Authorization: Bearer $tok" "http://${INST[1]}/v2/team/app/blobs/uploads/" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "location" {print $2}')
  st=$(curl -s -o /dev/null -w '%{http_code}' -X PATCH -H "Authorization: Bearer $tok" -H 'Content-Range: 5-9' --data-binary 12345 "http://${INST[2]}$loc")
  [[ $st == 416 ]] || fail "an out-of-order chunk got $st, not 416"
  admin revoke alice team 2>/dev/null || fail "revoke"
  for i in 0 1 2; do
    st=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $tok" "http://${INST[$i]}/v2/team/app/blobs/uploads/")
    [[ $st == 401 || $st == 403 ]] || fail "instance $((i + 1)) still lets alice push after the revocation: $st"
  done
}

# Found in review: two chunks sent at once to one upload (on two
# instances) could mix their bytes, the record keeping one request's hash
# and the bucket the other's part, so a blob would be stored under a digest
# its bytes do not have. Now one request at a time writes to an upload:
# the second is refused, and what is stored is what its digest says.
check_concurrent_chunks_cannot_mix_under_one_digest() {
  cluster_up
  users
  head -c 9M /dev/urandom > "$T/a"; head -c 9M /dev/urandom > "$T/b"
  local da db
  da=sha256:$(sha256sum "$T/a" | cut -d' ' -f1); db=sha256:$(sha256sum "$T/b" | cut -d' ' -f1)
  local loc; loc=$(curl -s -D - -o /dev/null -X POST -u boss:boss-pass "http://${INST[0]}/v2/team/app/blobs/uploads/" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "location" {print $2}')
  curl -s -o "$T/ra" -w '%{http_code}' --limit-rate 3M -X PATCH -u boss:boss-pass -H 'Content-Range: 0-9437183' \
    --data-binary "@$T/a" "http://${INST[1]}$loc" > "$T/sa" &
  local pa=$!
  sleep 0.3
  curl -s -o "$T/rb" -w '%{http_code}' --limit-rate 3M -X PATCH -u boss:boss-pass -H 'Content-Range: 0-9437183' \
    --data-binary "@$T/b" "http://${INST[2]}$loc" > "$T/sb" &
  local pb=$!
  wait "$pa" "$pb"
  [[ $(cat "$T/sa") == 202 ]] || fail "the first chunk got $(cat "$T/sa"): $(cat "$T/ra")"
  [[ $(cat "$T/sb") != 202 ]] || fail "a second chunk at the same offset was taken while the first was being written"
  local st; st=$(curl -s -o "$T/r" -w '%{http_code}' -X PUT -u boss:boss-pass "http://${INST[0]}$loc?digest=$da")
  [[ $st == 201 ]] || fail "closing the upload under the first chunk's digest: $st $(cat "$T/r")"
  curl -s -u boss:boss-pass "http://${INST[2]}/v2/team/app/blobs/$da" | cmp - "$T/a" || fail "the stored blob is not its digest's bytes"
  [[ $(curl -s -o /dev/null -w '%{http_code}' -u boss:boss-pass "http://${INST[2]}/v2/team/app/blobs/$db") == 404 ]] ||
    fail "the refused chunk's bytes became a blob"
}

# One instance is killed (SIGKILL) while 10 pushes go through the
# balancer: every push finishes (img push sends a blob again when its
# upload is cut, as docker push does, and the balancer sends the new
# upload to the others), and every pushed image pulls whole. skopeo 1.9
# does not retry an upload cut in the middle of its body (containers'
# retry rules leave out a broken pipe), so 10 skopeo pushes are cut too,
# and the ones that failed succeed when run again: nothing is lost.
check_killed_instance_loses_no_push() {
  local ROOT=$T/client i
  cluster_up
  users
  for i in $(seq 10); do
    mkdir -p "$T/rootfs$i/data" && head -c 8M /dev/urandom > "$T/rootfs$i/data/blob"
    tar -C "$T/rootfs$i" -cf "$T/rootfs$i.tar" data && rm -rf "$T/rootfs$i"
    img import "$T/rootfs$i.tar" "localhost/k:$i" >/dev/null || fail "img import"
    img save -o "$T/k$i.tar" "localhost/k:$i" >/dev/null || fail "img save"
  done
  local pushes=() p failed=0
  for i in $(seq 10); do
    img push -q --tls-verify=false --creds boss:boss-pass "localhost/k:$i" "$LB/team/k$i:1" > "$T/push$i.log" 2>&1 &
    pushes+=("$!")
  done
  sleep 0.5
  kill -9 "${INST_PIDS[1]}"
  for p in "${pushes[@]}"; do wait "$p" || failed=$((failed + 1)); done
  ((failed == 0)) || fail "$failed of 10 img pushes failed with instance 2 killed: $(tail -n 3 "$T"/push*.log)"
  for i in $(seq 10); do
    rm -rf "$T/check"
    skopeo copy -q --src-tls-verify=false --src-creds boss:boss-pass "docker://$LB/team/k$i:1" "oci:$T/check:x" ||
      fail "team/k$i:1 does not pull after the kill"
  done
  start_instance 2
  pushes=()
  for i in $(seq 10); do
    skopeo copy -q --dest-tls-verify=false --dest-creds boss:boss-pass "docker-archive:$T/k$i.tar" "docker://$LB/team/s$i:1" \
      > "$T/skopeo$i.log" 2>&1 &
    pushes+=("$!")
  done
  sleep 0.5
  kill -9 "${INST_PIDS[0]}"
  local cut=0
  i=0
  for p in "${pushes[@]}"; do
    i=$((i + 1))
    if ! wait "$p"; then
      cut=$((cut + 1))
      skopeo copy -q --dest-tls-verify=false --dest-creds boss:boss-pass "docker-archive:$T/k$i.tar" "docker://$LB/team/s$i:1" ||
        fail "skopeo push $i failed again after the kill"
    fi
  done
  for i in $(seq 10); do
    rm -rf "$T/check"
    skopeo copy -q --src-tls-verify=false --src-creds boss:boss-pass "docker://$LB/team/s$i:1" "oci:$T/check:x" ||
      fail "team/s$i:1 does not pull"
    skopeo copy -q --src-tls-verify=false --src-creds boss:boss-pass "docker://$LB/team/k$i:1" "oci:$T/check2:x" ||
      fail "team/k$i:1 no longer pulls after the second kill"
    rm -rf "$T/check2"
  done
  start_instance 1
  echo "instance 2 of 3 killed during 10 img pushes: all 10 finished, each pulls whole; instance 1 killed during 10 skopeo pushes: $cut cut, each finished when run again, nothing lost" > "$T/measure"
}

# A Garage node is stopped while pulls go on: they all finish, whole.
check_garage_node_down_during_pulls() {
  local ROOT=$T/client i
  cluster_up
  users
  client_images
  img push -q --tls-verify=false --creds boss:boss-pass localhost/layered:1 "$LB/team/layered:1" >/dev/null 2>&1 || fail "push"
  local pulls=() p
  for i in $(seq 6); do
    ROOT=$T/puller$i img pull -q --tls-verify=false --creds boss:boss-pass "$LB/team/layered:1" > "$T/pull$i.log" 2>&1 &
    pulls+=("$!")
    if ((i == 2)); then garage_stop_node 3 > /dev/null 2>&1; fi
  done
  local failed=0
  for p in "${pulls[@]}"; do wait "$p" || failed=$((failed + 1)); done
  garage_start_node 3 > /dev/null 2>&1 || fail "garage node 3 did not come back"
  ((failed == 0)) || fail "$failed of 6 pulls failed with a Garage node down: $(tail -3 "$T"/pull*.log)"
  for i in $(seq 6); do
    ROOT=$T/puller$i img fsck >/dev/null 2>&1 || fail "puller $i's store is not whole"
  done
}

# PostgreSQL restarted: requests fail with 503 while it is down, then the
# same instances serve again without a restart.
check_database_outage_is_503_then_recovers() {
  local ROOT=$T/client
  cluster_up
  users
  client_images
  img push -q --tls-verify=false --creds boss:boss-pass localhost/layered:1 "$LB/team/layered:1" >/dev/null 2>&1 || fail "push"
  pg_stop_server > /dev/null 2>&1 || fail "stopping postgresql"
  local st; st=$(curl -s -o "$T/body" -w '%{http_code}' -u boss:boss-pass "http://${INST[0]}/v2/team/layered/tags/list")
  [[ $st == 503 ]] || fail "with the database down, a request got $st: $(cat "$T/body")"
  st=$(curl -s -o /dev/null -w '%{http_code}' "http://${INST[0]}/readyz")
  [[ $st == 503 ]] || fail "with the database down, /readyz says $st"
  pg_start_server > /dev/null 2>&1 || fail "starting postgresql again"
  for _ in $(seq 50); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://$LB/readyz") == 200 ]] && break
    sleep 0.2
  done
  ROOT=$T/client2 img pull -q --tls-verify=false --creds boss:boss-pass "$LB/team/layered:1" >/dev/null 2>&1 ||
    fail "no pull after postgresql came back"
  local i
  for i in 0 1 2; do kill -0 "${INST_PIDS[$i]}" || fail "instance $((i + 1)) exited during the outage"; done
  # The outage is counted where an operator looks.
  curl -s -u boss:boss-pass "http://${INST[0]}/metrics" > "$T/metrics"
  awk '/^img_serve_backend_errors_total\{backend="database"\}/ {n = $2} END {exit !(n > 0)}' "$T/metrics" ||
    fail "the metrics do not count the database errors: $(grep backend_errors "$T/metrics")"
}

# Blobs by redirect (storage URL redirect=true): a blob GET answers 307 to
# a pre-signed URL of the bucket, which clients follow; skopeo and img
# pull through it.
check_blobs_by_redirect() {
  local ROOT=$T/client
  STORAGE_EXTRA='&redirect=true' cluster_up
  users
  client_images
  img push -q --tls-verify=false --creds boss:boss-pass localhost/layered:1 "$LB/team/layered:1" >/dev/null 2>&1 || fail "push"
  local cfg; cfg=$(skopeo inspect --raw --tls-verify=false --creds boss:boss-pass "docker://$LB/team/layered:1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])')
  curl -s -D "$T/h" -o /dev/null -u boss:boss-pass "http://$LB/v2/team/layered/blobs/$cfg"
  head -1 "$T/h" | has ' 307' || fail "a blob GET did not redirect: $(head -1 "$T/h")"
  local to; to=$(tr -d '\r' < "$T/h" | awk -F': ' 'tolower($1) == "location" {print $2}')
  [[ $to == "$S3_ENDPOINT"/* && $to == *X-Amz-Signature=* ]] || fail "the redirect is not a pre-signed URL of the bucket: $to"
  [[ sha256:$(curl -sf "$to" | sha256sum | cut -d' ' -f1) == "$cfg" ]] || fail "the pre-signed URL does not give the blob"
  skopeo copy -q --src-tls-verify=false --src-creds boss:boss-pass "docker://$LB/team/layered:1" "oci:$T/oci:x" || fail "skopeo pull by redirect"
  ROOT=$T/client2 img pull -q --tls-verify=false --creds boss:boss-pass "$LB/team/layered:1" >/dev/null || fail "img pull by redirect"
}

# docker-registry's own S3 driver on the same Garage is a peer: an image
# goes from img's cluster to it and back, whole.
check_docker_registry_on_the_same_garage_is_a_peer() {
  cluster_up
  users
  local port; port=$(free_port)
  printf 'version: 0.1\nlog: {level: error}\nstorage:\n  s3: {region: %s, regionendpoint: "%s", bucket: %s, rootdirectory: /dreg-%s, secure: false, v4auth: true}\n  redirect: {disable: true}\nhttp: {addr: "127.0.0.1:%s"}\n' \
    "$AWS_REGION" "$S3_ENDPOINT" "$GARAGE_BUCKET" "$PREFIX" "$port" > "$T/dreg.yml"
  # (REGISTRY_* variables configure docker-registry: not this suite's auth file; its
  # S3 SDK cannot take a CA bundle with a plain-HTTP endpoint)
  env -u REGISTRY_AUTH_FILE -u AWS_CA_BUNDLE REGISTRY_STORAGE_S3_ACCESSKEY=$AWS_ACCESS_KEY_ID REGISTRY_STORAGE_S3_SECRETKEY=$AWS_SECRET_ACCESS_KEY \
    docker-registry serve "$T/dreg.yml" > "$T/dreg.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/v2/" && break; sleep 0.1; done
  skopeo copy -q --dest-tls-verify=false --dest-creds boss:boss-pass "docker-archive:$GEN/base-docker.tar" "docker://$LB/team/app:1" || fail "push to img"
  skopeo copy -q --src-tls-verify=false --src-creds boss:boss-pass --dest-tls-verify=false \
    "docker://$LB/team/app:1" "docker://127.0.0.1:$port/team/app:1" || fail "img cluster to docker-registry (S3): $(tail -3 "$T/dreg.log")"
  skopeo copy -q --src-tls-verify=false --dest-tls-verify=false --dest-creds boss:boss-pass \
    "docker://127.0.0.1:$port/team/app:1" "docker://$LB/team/back:1" || fail "docker-registry (S3) to img cluster"
  local a b
  a=$(skopeo inspect --raw --tls-verify=false --creds boss:boss-pass "docker://$LB/team/app:1" | sha256sum)
  b=$(skopeo inspect --raw --tls-verify=false --creds boss:boss-pass "docker://$LB/team/back:1" | sha256sum)
  [[ $a == "$b" ]] || fail "the manifest changed on its way through docker-registry"
}

# The hosted registry's features: a repository made with a summary and a
# description (CLI), shown by the API and the page; the access
# credentials; the image center lists public images and those shared with
# the caller (a browser, logged in); a repository removed with its images;
# a namespace removed with its repositories, and made again empty (its
# private image does not come back public).
check_hosted_registry_features() {
  local chrome
  chrome=$(command -v chromium-headless-shell || command -v chromium) || fail "no chromium"
  cluster_up
  users
  admin repository add team/app --summary 'The app <b>' --description 'Built nightly.' 2>/dev/null || fail "repository add"
  admin grant alice team/app pull 2>/dev/null || fail "grant"
  skopeo copy -q --dest-tls-verify=false --dest-creds boss:boss-pass "docker-archive:$GEN/base-docker.tar" "docker://$LB/team/app:1" || fail "push team/app"
  skopeo copy -q --dest-tls-verify=false --dest-creds boss:boss-pass "docker-archive:$GEN/base-docker.tar" "docker://$LB/team/secret:1" || fail "push team/secret"
  skopeo copy -q --dest-tls-verify=false --dest-creds boss:boss-pass "docker-archive:$GEN/base-docker.tar" "docker://$LB/pub/open:1" || fail "push pub/open"
  curl -s -u alice:alice-pass "http://$LB/api/v1/repositories/team/app" > "$T/app.json"
  python3 - "$T/app.json" <<'EOF' || fail "the API's repository: $(cat "$T/app.json")"
import json, sys
v = json.load(open(sys.argv[1]))
assert v["summary"] == "The app <b>" and v["description"] == "Built nightly." and v["tags"] == ["1"] and v["public"] is False, v
EOF
  curl -s -u alice:alice-pass "http://$LB/api/v1/credentials" | python3 -c '
import json, sys
v = json.load(sys.stdin)
assert v["user"] == "alice" and v["registry"].startswith("127.0.0.1:") and v["login"].endswith("-u alice"), v' ||
    fail "the access credentials are wrong"
  curl -s -u alice:alice-pass "http://$LB/api/v1/repositories" | python3 -c '
import json, sys
names = sorted(r["name"] for r in json.load(sys.stdin)["repositories"])
assert names == ["pub/open", "team/app"], names' || fail "alice sees other repositories than pub/open and team/app"
  HOME=$T/home timeout 120 "$chrome" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --dump-dom "http://alice:alice-pass@$LB/login" > "$T/page.html" 2>/dev/null || fail "chromium's DOM dump failed"
  has 'id="account">alice' "$T/page.html" || fail "the page does not show alice's account"
  has "img login $LB -u alice" "$T/page.html" || fail "the page does not show the login command"
  has 'team/app <span class="kind">shared with you</span>' "$T/page.html" || fail "team/app is not shown as shared"
  has 'pub/open <span class="kind">public</span>' "$T/page.html" || fail "pub/open is not shown as public"
  has 'The app &lt;b&gt;' "$T/page.html" || fail "the summary is not shown (escaped)"
  ! has 'team/secret' "$T/page.html" || fail "alice's page shows team/secret"
  admin repository rm team/app 2>/dev/null || fail "repository rm"
  [[ $(curl -s -o /dev/null -w '%{http_code}' -u boss:boss-pass "http://$LB/v2/team/app/manifests/1") == 404 ]] ||
    fail "team/app:1 is still served after the repository was removed"
  admin namespace rm team 2>/dev/null || fail "namespace rm"
  admin namespace add team --public 2>/dev/null || fail "namespace add again"
  local st; st=$(curl -s -o /dev/null -w '%{http_code}' "http://$LB/v2/team/secret/manifests/1")
  [[ $st == 401 ]] || fail "the removed namespace's private image came back public: $st"
  st=$(curl -s -o /dev/null -w '%{http_code}' -u boss:boss-pass "http://$LB/v2/team/secret/manifests/1")
  [[ $st == 404 ]] || fail "the removed namespace's image is still there for an admin: $st"
  [[ $(curl -s "http://$LB/v2/_catalog") == '{"repositories":["pub/open"]}' ]] || fail "catalog: $(curl -s "http://$LB/v2/_catalog")"
}

# Garbage collection while others push: blobs of a deleted image go from
# the bucket after the grace period; a push under way keeps its blobs.
check_garbage_collection_keeps_what_is_in_use() {
  local ROOT=$T/client GC_GRACE=1
  cluster_up
  users
  client_images
  img push -q --tls-verify=false --creds boss:boss-pass localhost/layered:1 "$LB/team/gone:1" >/dev/null 2>&1 || fail "push gone"
  img push -q --tls-verify=false --creds boss:boss-pass localhost/base:1 "$LB/team/kept:1" >/dev/null 2>&1 || fail "push kept"
  local before; before=$(objects)
  local d; d=$(curl -s -I -u boss:boss-pass -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://$LB/v2/team/gone/manifests/1" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}')
  [[ $(curl -s -o /dev/null -w '%{http_code}' -X DELETE -u boss:boss-pass "http://$LB/v2/team/gone/manifests/$d") == 202 ]] ||
    fail "deleting team/gone's manifest"
  sleep 2
  STORAGE=$STORAGE admin gc --storage "$STORAGE" 2>"$T/gc.err" || fail "img serve admin gc: $(cat "$T/gc.err")"
  local after; after=$(objects)
  ((after < before)) || fail "the deleted image's blobs stayed: $before objects before, $after after"
  rm -rf "$T/check"
  skopeo copy -q --src-tls-verify=false --src-creds boss:boss-pass "docker://$LB/team/kept:1" "oci:$T/check:x" ||
    fail "team/kept:1 no longer pulls after the collection"
  echo "garbage collection: $before objects, $after after the image's manifest was deleted" > "$T/measure"
}

# The S3 and PostgreSQL clients' own live tests (marked ignored in
# `cargo test`): S3 against this suite's Garage (one node stopped and
# started again among them), PostgreSQL against a server of their own
# (SCRAM and md5 roles, a restart, an outage).
check_client_live_tests() {
  command -v cargo >/dev/null || fail "cargo is needed for the clients' live tests"
  cargo test -q --release --lib s3::live -- --ignored --test-threads=1 > "$T/s3.log" 2>&1 ||
    fail "the S3 client's live tests: $(tail -n 15 "$T/s3.log")"
  tests/support/postgres.sh run cargo test -q --release --lib pg:: -- --ignored > "$T/pg.log" 2>&1 ||
    fail "the PostgreSQL client's live tests: $(tail -n 15 "$T/pg.log")"
  local s p
  s=$(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' "$T/s3.log" | awk '{n += $1} END {print n + 0}')
  p=$(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' "$T/pg.log" | awk '{n += $1} END {print n + 0}')
  ((s > 0 && p > 0)) || fail "no live test ran: s3 $s, pg $p"
  echo "the clients' live tests: S3 $s passed against Garage, PostgreSQL $p passed" > "$T/measure"
}

run_checks "$@"
