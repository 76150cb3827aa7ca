#!/usr/bin/env bash
# Registry tests against a real registry: Debian's docker-registry (CNCF
# distribution), started here on 127.0.0.1: plain HTTP, htpasswd Basic auth,
# TLS with a CA made here, mutual TLS, and token auth with a small token
# issuer (tests/support/token_issuer.py); images are put there with skopeo
# from testdata/gen/.
#
# Usage: IMG=target/release/img tests/registry.sh [CHECK-NAME-SUBSTRING...]
# (ONLY=WORD runs the checks whose names hold WORD too)
# Prints "ok - NAME" or "not ok - NAME" per check and "N passed, M failed"
# (tests/lib.sh runs the checks); exits non-zero if any failed. A missing
# tool is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
IMG=$(realpath "${IMG:-target/release/img}")
GEN=$PWD/testdata/gen
WORK=$(mktemp -d "${TMPDIR:-/tmp}/img-registry.XXXXXX")
source tests/lib.sh
suite_cleanup() { rm -rf "$RUNS"; }
need docker-registry skopeo podman htpasswd curl python3 openssl
[[ -f $GEN/base-oci.tar ]] || { echo "not ok - testdata: run scripts/make-testdata.sh"; exit 1; }

RUNS=$(mktemp -d /tmp/img-run.XXXXXX)   # podman wants a runroot under 50 characters
# A private podman store: pm DIR ARGS...
pm() {
  local s=$1; shift
  local run; run=$RUNS/$(echo "$s" | cksum | cut -d' ' -f1)
  podman --root "$s/root" --runroot "$run" --tmpdir "$s/tmp" --storage-driver vfs \
    --events-backend file --cgroup-manager cgroupfs "$@"
}

# The test PKI (tests/lib.sh's make_pki).
PKI=$WORK/pki
# start_token_issuer VAR: starts the token issuer over HTTPS and sets VAR to
# its realm URL. Users: alice (any action), reader (pull only).
TOKEN_SERVICE=img-test-registry TOKEN_ISSUER=img-test-issuer
TOKEN_LOG=$WORK/token-issuer/log
start_token_issuer() {
  local port; port=$(free_port)
  mkdir -p "$WORK/token-issuer"
  python3 tests/support/token_issuer.py --port "$port" --cert "$PKI/server.crt" --key "$PKI/server.key" \
    --sign-cert "$PKI/sign.crt" --sign-key "$PKI/sign.key" --issuer $TOKEN_ISSUER --service $TOKEN_SERVICE \
    --user 'alice:t0ken-pass:*' --user 'reader:read-pass:pull' 2> "$TOKEN_LOG" &
  PIDS+=($!)
  wait_for "https://127.0.0.1:$port/token" "$TOKEN_LOG" && printf -v "$1" '%s' "https://127.0.0.1:$port/token"
}

# own_home: a fresh, empty $HOME under $WORK, so that only the certificates
# and credentials a check puts there are found.
own_home() {
  export HOME=$WORK/home-${FUNCNAME[1]}
  unset XDG_CONFIG_HOME DOCKER_CONFIG
  export REGISTRY_AUTH_FILE=$HOME/auth.json
  mkdir -p "$HOME"
}

make_pki "$PKI" || { echo "not ok - make the test PKI"; cat "$WORK/pki.log"; exit 1; }
start_docker_registry plain REG || { echo "not ok - start plain registry"; exit 1; }
htpasswd -Bbc "$WORK/htpasswd" alice s3cret-pass >/dev/null 2>&1
start_docker_registry auth AUTH htpasswd="$WORK/htpasswd" || { echo "not ok - start auth registry"; exit 1; }
skopeo copy -q --dest-tls-verify=false "oci-archive:$GEN/base-oci.tar" "docker://$REG/test/base:1" ||
  { echo "not ok - skopeo push"; exit 1; }
skopeo copy -q --dest-tls-verify=false --dest-creds alice:s3cret-pass "oci-archive:$GEN/base-oci.tar" \
  "docker://$AUTH/test/base:1" || { echo "not ok - skopeo push with auth"; exit 1; }
start_docker_registry mirror MIRROR || { echo "not ok - start mirror registry"; exit 1; }
# The mirror holds an image the origin lacks, under a path prefix.
skopeo copy -q --dest-tls-verify=false "oci-archive:$GEN/layered-oci.tar" "docker://$MIRROR/hub/only/mirrored:1" ||
  { echo "not ok - skopeo push to the mirror"; exit 1; }
start_docker_registry lazy LAZYREG || { echo "not ok - start the registry lazy mounts lose"; exit 1; }
LAZYREG_PID=${PIDS[-1]}
start_docker_registry tls TLS tls || { echo "not ok - start TLS registry"; exit 1; }
start_docker_registry mtls MTLS tls clientcas || { echo "not ok - start mutual TLS registry"; exit 1; }
start_token_issuer REALM || { echo "not ok - start token issuer"; exit 1; }
start_docker_registry token TOKEN tls token="$REALM" || { echo "not ok - start token registry"; exit 1; }
skopeo copy -q --dest-cert-dir "$PKI/ca-only" "oci-archive:$GEN/base-oci.tar" "docker://$TLS/test/base:1" ||
  { echo "not ok - skopeo push over TLS"; exit 1; }
skopeo copy -q --dest-cert-dir "$PKI/client" "oci-archive:$GEN/base-oci.tar" "docker://$MTLS/test/base:1" ||
  { echo "not ok - skopeo push over mutual TLS"; exit 1; }
skopeo copy -q --dest-cert-dir "$PKI/ca-only" --dest-creds alice:t0ken-pass "oci-archive:$GEN/base-oci.tar" \
  "docker://$TOKEN/test/base:1" || { echo "not ok - skopeo push with token auth"; cat "$TOKEN_LOG"; exit 1; }

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

pull_writes_the_layer_indexes_a_mount_uses() {
  local layers d mnt; declare -A before
  "$IMG" pull -q --tls-verify=false "$REG/test/base:1" >/dev/null || fail "pull failed"
  layers=$(skopeo inspect --raw --tls-verify=false "docker://$REG/test/base:1" |
    python3 -c 'import json,sys; [print(l["digest"][7:]) for l in json.load(sys.stdin)["layers"]]')
  [[ -n $layers ]] || fail "no layers listed"
  for d in $layers; do
    [[ -s $IMG_ROOT/indexes/$d ]] || fail "no index file for layer $d after the pull"
    before[$d]=$(stat -c %i "$IMG_ROOT/indexes/$d")
    cp "$IMG_ROOT/indexes/$d" "$WORK/pulled-index-$d"
  done
  mnt=$WORK/mnt-pulled-index; mkdir -p "$mnt"
  "$IMG" mount "$REG/test/base:1" "$mnt" >/dev/null || fail "mount after pull"
  ls "$mnt" | grep -q . || { "$IMG" umount "$mnt"; fail "empty mount"; }
  cat "$mnt/etc/os-release" >/dev/null 2>&1 || ls -R "$mnt" >/dev/null || { "$IMG" umount "$mnt"; fail "reading the mount"; }
  "$IMG" umount "$mnt" >/dev/null || fail "umount"
  for d in $layers; do
    [[ $(stat -c %i "$IMG_ROOT/indexes/$d") == "${before[$d]}" ]] || fail "the mount rebuilt the index of $d"
  done
  # The index a mount's scan builds is the same file, byte for byte.
  rm -f "$IMG_ROOT"/indexes/*
  "$IMG" mount "$REG/test/base:1" "$mnt" >/dev/null || fail "mount after removing the indexes"
  "$IMG" umount "$mnt" >/dev/null || fail "umount"
  for d in $layers; do
    cmp -s "$IMG_ROOT/indexes/$d" "$WORK/pulled-index-$d" || fail "the pull's index of $d differs from the scan's"
  done
  "$IMG" fsck >/dev/null || fail "fsck after pull and mount"
}

pull_by_digest_and_again_is_up_to_date() {
  local digest
  digest=$(skopeo inspect --tls-verify=false "docker://$REG/test/base:1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Digest"])')
  "$IMG" pull -q --tls-verify=false "$REG/test/base@$digest" >/dev/null || fail "pull by digest failed"
  "$IMG" pull --tls-verify=false "$REG/test/base:1" 2>&1 >/dev/null | has "up to date" ||
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

# As docker allows: a registry on 127.0.0.0/8 or localhost may answer in
# plain HTTP without --tls-verify=false (found: it was refused); an explicit
# --tls-verify still requires TLS.
localhost_registry_needs_no_tls_verify_false() {
  local err
  err=$("$IMG" pull --tls-verify=true "$REG/test/base:1" 2>&1 >/dev/null) && fail "pull over plain http succeeded with --tls-verify"
  grep -q "tls-verify=false" <<<"$err" || fail "the error does not say what to do: $err"
  [[ -z $("$IMG" images -q) ]] || fail "an image was stored"
  "$IMG" pull -q "$REG/test/base:1" >/dev/null 2>"$WORK/loopback.err" || fail "a pull from a plain-HTTP registry on 127.0.0.1: $(cat "$WORK/loopback.err")"
  "$IMG" rmi "$REG/test/base:1" >/dev/null
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
  skopeo inspect --raw --tls-verify=false "docker://$REG/push/base:zstd" | has 'tar+zstd' || fail "the layers are not zstd"
  local before after
  before=$("$IMG" export localhost/base:1 | sha256sum)
  IMG_ROOT=$WORK/store-zstd-back "$IMG" pull -q --tls-verify=false "$REG/push/base:zstd" >/dev/null || fail "pull back"
  after=$(IMG_ROOT=$WORK/store-zstd-back "$IMG" export "$REG/push/base:zstd" | sha256sum)
  [[ $before == "$after" ]] || fail "the root filesystem changed through zstd"
  local pr=$WORK/podman-zstd
  pm "$pr" pull -q --tls-verify=false "$REG/push/base:zstd" >/dev/null ||
    fail "podman cannot pull the zstd image"
}

# estargz_layers_are_right REPO TAG: every layer of $REG/REPO:TAG is eStargz
# as stargz-snapshotter reads it (footer, TOC with the digest the manifest
# gives, each chunk's member holding bytes of the chunk's digest), checked
# with Python's own gzip and tar.
estargz_layers_are_right() {
  local repo=$1 tag=$2
  skopeo inspect --raw --tls-verify=false "docker://$REG/$repo:$tag" > "$WORK/esgz.json" || fail "skopeo inspect"
  python3 - "$WORK/esgz.json" "$REG" "$repo" <<'PY' || fail "the layers of $repo:$tag are not the eStargz they claim to be"
import hashlib, io, json, os, sys, tarfile, urllib.request, zlib
m = json.load(open(sys.argv[1]))
prefetched = []
assert m["mediaType"] == "application/vnd.oci.image.manifest.v1+json", m["mediaType"]
chunks = 0
for l in m["layers"]:
    assert l["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip", l["mediaType"]
    blob = urllib.request.urlopen(f"http://{sys.argv[2]}/v2/{sys.argv[3]}/blobs/{l['digest']}").read()
    foot = blob[-51:]
    assert foot[12:14] == b"SG" and foot[32:38] == b"STARGZ", foot
    at = int(foot[16:32], 16)
    member = zlib.decompressobj(31).decompress(blob[at:-51])
    raw = tarfile.open(fileobj=io.BytesIO(member)).extractfile("stargz.index.json").read()
    want = l["annotations"]["containerd.io/snapshot/stargz/toc.digest"]
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == want, "TOC digest"
    plain = b""
    rest = blob
    while rest:  # every member, as a gzip reader sees them
        d = zlib.decompressobj(31)
        plain += d.decompress(rest)
        rest = d.unused_data
    assert len(plain) == int(l["annotations"]["io.containers.estargz.uncompressed-size"]), "uncompressed size"
    toc = json.loads(raw)
    for e in toc["entries"]:
        if e["type"] not in ("reg", "chunk") or not e.get("offset"):
            continue
        d = zlib.decompressobj(31)
        n = e.get("chunkSize") or (next(x for x in toc["entries"] if x["name"] == e["name"])["size"] - e.get("chunkOffset", 0))
        data = d.decompress(blob[e["offset"]:], n)
        while len(data) < n and d.unconsumed_tail:
            data += d.decompress(d.unconsumed_tail, n - len(data))
        assert "sha256:" + hashlib.sha256(data[:n]).hexdigest() == e["chunkDigest"], e["name"]
        chunks += 1
    names = [e["name"] for e in toc["entries"] if e["type"] != "chunk"]
    first = os.environ.get("EXPECT_FIRST")
    if first and first in names:
        assert names.index(first) < names.index(".prefetch.landmark"), names
        prefetched.append(first)
    elif ".no.prefetch.landmark" not in names and ".prefetch.landmark" not in names:
        raise AssertionError("no landmark: " + " ".join(names))
assert chunks > 0, "no chunk checked"
assert not os.environ.get("EXPECT_FIRST") or prefetched, "the prefetched file is in no layer's prefetch area"
PY
}

# img convert --format estargz, pushed: the layers are eStargz, and still
# plain tar+gzip: podman pulls them and img pulls back the same files (with
# the landmark and the TOC added, as eStargz has).
estargz_convert_push_is_read_by_podman_and_stargz_rules() {
  "$IMG" load -q -i "$GEN/layered-oci.tar" >/dev/null || fail "load"
  echo etc/hostname > "$WORK/prefetch.list"
  "$IMG" convert -q --format estargz --chunk-size 65536 --prefetch-list "$WORK/prefetch.list" \
    localhost/layered:1 localhost/layered:esgz >/dev/null || fail "convert failed"
  "$IMG" fsck >/dev/null || fail "fsck after convert"
  "$IMG" push -q --tls-verify=false localhost/layered:esgz "$REG/esgz/layered:1" || fail "push of the eStargz image"
  EXPECT_FIRST=etc/hostname estargz_layers_are_right esgz/layered 1
  local pr=$WORK/podman-esgz
  pm "$pr" pull -q --tls-verify=false "$REG/esgz/layered:1" >/dev/null || fail "podman cannot pull the eStargz image"
  local mnt; mnt=$(pm "$pr" image mount "$REG/esgz/layered:1") || fail "podman image mount"
  [[ $(cat "$mnt/etc/hostname") == layered ]] || fail "podman sees /etc/hostname as $(cat "$mnt/etc/hostname" 2>&1)"
  [[ -f $mnt/stargz.index.json ]] || fail "podman's tree has no TOC: it did not read the eStargz layer as tar"
  IMG_ROOT=$WORK/store-esgz-back "$IMG" pull -q --tls-verify=false "$REG/esgz/layered:1" >/dev/null || fail "pull back"
  diff <("$IMG" export localhost/layered:1 | tar -t | sort) \
    <(IMG_ROOT=$WORK/store-esgz-back "$IMG" export "$REG/esgz/layered:1" | tar -t | grep -vx 'stargz.index.json\|.no.prefetch.landmark\|.prefetch.landmark' | sort) ||
    fail "the converted image holds other files"
  [[ $(IMG_ROOT=$WORK/store-esgz-back "$IMG" export "$REG/esgz/layered:1" | tar -xO etc/hostname) == layered ]] ||
    fail "the converted image's /etc/hostname differs"
}

# A rootfs of 24 random 1 MiB files and an /etc/os-release, in one layer,
# converted to eStargz and pushed (once) to $REG, $LAZYREG and $TOKEN as
# lazy/big:1; to $REG also as lazy/big:prefetch (eStargz with a prefetch
# list), lazy/big:zc (zstd:chunked), lazy/big:zstd and lazy/big:gzip.
make_lazy_image() {
  [[ -f $WORK/lazy-pushed ]] && return 0
  local s=$WORK/store-lazy-src
  python3 - "$WORK/lazy-root.tar" <<'PY' || return 1
import io, random, sys, tarfile
r = random.Random(7)
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    def add(name, data=None, kind=tarfile.REGTYPE, mode=0o644, link=""):
        i = tarfile.TarInfo(name)
        i.type, i.mode, i.mtime, i.linkname = kind, mode, 1700000000, link
        i.size = len(data) if data is not None else 0
        t.addfile(i, io.BytesIO(data) if data is not None else None)
    for d in ["etc", "usr", "usr/lib"]:
        add(d, kind=tarfile.DIRTYPE, mode=0o755)
    add("etc/os-release", b'NAME="img test"\nID=imgtest\n')
    for n in range(24):
        add(f"usr/lib/blob{n:02}", r.randbytes(1 << 20), mode=0o755)
    add("usr/lib/link", kind=tarfile.SYMTYPE, link="blob00")
    add("usr/lib/hard", kind=tarfile.LNKTYPE, link="usr/lib/blob01")
PY
  IMG_ROOT=$s "$IMG" import "$WORK/lazy-root.tar" localhost/lazy:src >/dev/null &&
    IMG_ROOT=$s "$IMG" convert -q --format estargz localhost/lazy:src localhost/lazy:esgz >/dev/null &&
    IMG_ROOT=$s "$IMG" push -q --tls-verify=false localhost/lazy:esgz "$REG/lazy/big:1" &&
    IMG_ROOT=$s "$IMG" push -q --tls-verify=false localhost/lazy:esgz "$LAZYREG/lazy/big:1" &&
    IMG_ROOT=$s "$IMG" push -q --cert-dir "$PKI/ca-only" --creds alice:t0ken-pass localhost/lazy:esgz \
      "$TOKEN/lazy/big:1" &&
    echo etc/os-release > "$WORK/lazy-prefetch.list" &&
    IMG_ROOT=$s "$IMG" convert -q --format estargz --prefetch-list "$WORK/lazy-prefetch.list" localhost/lazy:src \
      localhost/lazy:prefetch >/dev/null &&
    IMG_ROOT=$s "$IMG" push -q --tls-verify=false localhost/lazy:prefetch "$REG/lazy/big:prefetch" &&
    IMG_ROOT=$s "$IMG" push -q --tls-verify=false --compression-format zstd:chunked localhost/lazy:src \
      "$REG/lazy/big:zc" &&
    IMG_ROOT=$s "$IMG" push -q --tls-verify=false --compression-format zstd localhost/lazy:src "$REG/lazy/big:zstd" &&
    IMG_ROOT=$s "$IMG" push -q --tls-verify=false --compression-format gzip localhost/lazy:src "$REG/lazy/big:gzip" &&
    touch "$WORK/lazy-pushed"
}

# lazy_stat FIELD: that field of the Lazy figures of the only mount, once
# they are written.
lazy_stat() {
  sleep 0.3
  "$IMG" mounts --format json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['Lazy']['$1'])"
}

# Bytes the store keeps of what lazy mounts fetched (every range fetched
# from the registry, the TOC included, is kept: lazy/*.ranges list them).
lazy_held() {
  python3 scripts/lazy-held.py "$IMG_ROOT/lazy"
}

# start_slowlink TARGET: a 16 Mbit/s link (scripts/slowlink.py) to
# host:port TARGET on a free port; sets SLOW to its address and SLOW_PID.
start_slowlink() {
  local port out=$WORK/slowlink-$RANDOM.out; port=$(free_port)
  python3 scripts/slowlink.py "127.0.0.1:$port" "$1" --delay-ms 1 --rate-mbit 16 > "$out" &
  SLOW_PID=$!
  for _ in $(seq 50); do [[ -s $out ]] && break; sleep 0.1; done
  [[ -s $out ]] || fail "scripts/slowlink.py did not start"
  SLOW=127.0.0.1:$port
}

# lazy_blob N: the bytes of usr/lib/blobNN of make_lazy_image's tree.
lazy_blob() {
  python3 -c '
import random, sys
r = random.Random(7)
for n in range(24):
    b = r.randbytes(1 << 20)
    if n == int(sys.argv[1]): sys.stdout.buffer.write(b)' "$1"
}

# read_fails_in_time FILE: reading FILE fails with EIO within 20 s.
read_fails_in_time() {
  local t0=$SECONDS out
  out=$(timeout 60 cat "$1" 2>&1 >/dev/null) && fail "a read of $1 with the registry stopped succeeded"
  [[ $out == *"Input/output error"* ]] || fail "the read failed with: $out"
  (( SECONDS - t0 <= 20 )) || fail "the read took $((SECONDS - t0)) s to fail"
}

# img mount docker://REF of an eStargz image: mounted at once and marked
# partial; reading /etc/os-release fetches under 1% of the image; a second
# mount reads it from the store; the tree equals a full pull's; img pull
# completes the image from what was fetched; through token auth and TLS too.
lazy_mount_of_estargz_reads_only_what_is_read() {
  make_lazy_image || fail "making the eStargz image"
  local m=$WORK/lazy-m1 full=$WORK/lazy-full t=$WORK/store-lazy-token m3=$WORK/lazy-m3
  mkdir -p "$m" "$full" "$m3"
  # (Expanded now: the locals are gone when the subshell exits.)
  trap "\"$IMG\" umount $m >/dev/null 2>&1; IMG_ROOT=$WORK/store-lazy-full \"$IMG\" umount $full >/dev/null 2>&1; IMG_ROOT=$t \"$IMG\" umount $m3 >/dev/null 2>&1" EXIT
  "$IMG" mount --tls-verify=false "docker://$REG/lazy/big:1" "$m" >/dev/null || fail "lazy mount"
  "$IMG" images | grep "lazy/big" | has "(partial)" || fail "img images does not show it partial: $("$IMG" images)"
  [[ $("$IMG" inspect -f '{{.Partial}}' "$REG/lazy/big:1") == true ]] || fail "img inspect does not show it partial"
  [[ $(cat "$m/etc/os-release") == *ID=imgtest* ]] || fail "os-release reads $(cat "$m/etc/os-release" 2>&1)"
  local size held; size=$("$IMG" inspect -f '{{.Size}}' "$REG/lazy/big:1"); held=$(lazy_held)
  (( size > 24000000 )) || fail "the image is only $size bytes"
  (( held > 0 && held * 100 < size )) || fail "reading os-release fetched $held of the image's $size bytes"
  (( $(lazy_stat Requests) >= 1 && $(lazy_stat BytesFetched) > 0 )) || fail "no fetch counted: $("$IMG" mounts --format json)"
  echo "os-release: $held of $size bytes fetched" >&2
  "$IMG" save -o "$WORK/lazy.tar" "$REG/lazy/big:1" 2>"$WORK/lazy-save.err" && fail "save of a partial image worked"
  grep -q "img pull" "$WORK/lazy-save.err" || fail "save's refusal does not say what to do: $(cat "$WORK/lazy-save.err")"
  "$IMG" fsck >/dev/null || fail "fsck of a store with a partial image"
  # A second mount of the partial image reads what the first fetched.
  "$IMG" umount "$m" >/dev/null || fail "umount"
  "$IMG" mount --tls-verify=false "$REG/lazy/big:1" "$m" >/dev/null || fail "mount of the partial image by name"
  [[ $(cat "$m/etc/os-release") == *ID=imgtest* ]] || fail "os-release, second mount"
  [[ $(lazy_stat BytesFetched) == 0 ]] || fail "the second read fetched $(lazy_stat BytesFetched) bytes"
  (( $(lazy_stat BytesFromCache) > 0 )) || fail "the second read did not come from the store"
  # The whole tree, every byte checked, equals a full pull's.
  IMG_ROOT=$WORK/store-lazy-full "$IMG" pull -q --tls-verify=false "$REG/lazy/big:1" >/dev/null || fail "full pull"
  IMG_ROOT=$WORK/store-lazy-full "$IMG" mount "$REG/lazy/big:1" "$full" >/dev/null || fail "mount of the full pull"
  python3 tests/support/mount_tree.py cmp "$m" "$full" >&2 || fail "the lazy tree differs from the full pull's"
  local fetched; fetched=$(lazy_held)
  (( fetched > size * 9 / 10 )) || fail "reading every file kept only $fetched of $size bytes"
  # img pull completes it from what was fetched.
  "$IMG" umount "$m" >/dev/null || fail "umount"
  "$IMG" pull -q --tls-verify=false "$REG/lazy/big:1" >/dev/null || fail "img pull of the partial image"
  "$IMG" images | has "(partial)" && fail "still partial after img pull"
  [[ -z $(ls -A "$IMG_ROOT/lazy" 2>/dev/null) ]] || fail "lazy/ kept $(ls "$IMG_ROOT/lazy") after the pull"
  "$IMG" fsck >/dev/null || fail "fsck after completing"
  "$IMG" save -o "$WORK/lazy.tar" "$REG/lazy/big:1" || fail "save of the completed image"
  # Token auth over TLS: credentials reach the serving process, not through its arguments.
  IMG_ROOT=$t "$IMG" mount --cert-dir "$PKI/ca-only" --creds alice:t0ken-pass "docker://$TOKEN/lazy/big:1" "$m3" \
    >/dev/null || fail "lazy mount with token auth"
  cmp -s "$m3/usr/lib/blob07" "$full/usr/lib/blob07" || fail "a file read through token auth differs"
  local pid; pid=$(IMG_ROOT=$t "$IMG" mounts --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Pid"])')
  [[ -r /proc/$pid/cmdline ]] || fail "no serving process $pid"
  tr '\0' ' ' < "/proc/$pid/cmdline" | has "__serve-mount" || fail "pid $pid is not the serving process"
  tr '\0' ' ' < "/proc/$pid/cmdline" | has t0ken-pass && fail "the password is in the serving process's arguments"
  tr '\0' '\n' < "/proc/$pid/environ" | has t0ken-pass && fail "the password is in the serving process's environment"
  true
}

# zstd_chunked_layers_are_right REPO TAG: every layer of $REG/REPO:TAG is
# zstd:chunked as containers/storage reads it: the zstd CLI decompresses it
# to a tar (skippable frames passed over); the TOC lies where the
# annotation says, with the digest it gives; each file's frames decompress
# to bytes of the file's digest; the footer agrees with the annotations.
zstd_chunked_layers_are_right() {
  local repo=$1 tag=$2
  skopeo inspect --raw --tls-verify=false "docker://$REG/$repo:$tag" > "$WORK/zc.json" || fail "skopeo inspect"
  python3 - "$WORK/zc.json" "$REG" "$repo" <<'PY' || fail "the layers of $repo:$tag are not the zstd:chunked they claim to be"
import datetime, hashlib, io, json, struct, subprocess, sys, tarfile, urllib.request
m = json.load(open(sys.argv[1]))
assert m["mediaType"] == "application/vnd.oci.image.manifest.v1+json", m["mediaType"]
unzstd = lambda b: subprocess.run(["zstd", "-dcq"], input=b, capture_output=True, check=True).stdout
files = 0
for l in m["layers"]:
    assert l["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd", l["mediaType"]
    a = l["annotations"]
    blob = urllib.request.urlopen(f"http://{sys.argv[2]}/v2/{sys.argv[3]}/blobs/{l['digest']}").read()
    tar = unzstd(blob)
    assert tar[257:262] == b"ustar", "the layer does not decompress to a tar"
    pos = a["io.github.containers.zstd-chunked.manifest-position"]
    off, clen, ulen, kind = map(int, pos.split(":"))
    assert kind == 1 and a["io.containers.zstd-chunked.manifest-position"] == pos, "old annotation"
    comp = blob[off:off + clen]
    assert blob[off - 8:off - 4] == bytes([0x50, 0x2a, 0x4d, 0x18]), "no skippable frame before the TOC"
    assert "sha256:" + hashlib.sha256(comp).hexdigest() == a["io.github.containers.zstd-chunked.manifest-checksum"], "TOC checksum"
    raw = unzstd(comp)
    assert len(raw) == ulen, "TOC length"
    toc = json.loads(raw)
    foot = struct.unpack("<7Q", blob[-64:-8])
    assert blob[-8:] == b"GNUlInUx" and foot[:4] == (off, clen, ulen, 1), "footer"
    so, sl, su = map(int, a["io.github.containers.zstd-chunked.tarsplit-position"].split(":"))
    assert foot[4:] == (so, sl, su), "the footer's tar-split"
    assert "sha256:" + hashlib.sha256(blob[so:so + sl]).hexdigest() == toc["tarSplitDigest"], "tar-split digest"
    for e in toc["entries"]:
        if e["type"] == "reg" and e.get("size"):
            data = unzstd(blob[e["offset"]:e["endOffset"]])
            assert "sha256:" + hashlib.sha256(data).hexdigest() == e["digest"], e["name"]
            files += 1
    # Each entry's metadata is its tar header's (what containers/storage
    # checks the TOC against, through the tar-split).
    kinds = {tarfile.REGTYPE: "reg", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink"}
    by_name = {e["name"].rstrip("/"): e for e in toc["entries"] if e["type"] != "chunk"}
    members = tarfile.open(fileobj=io.BytesIO(tar)).getmembers()
    assert len(members) == len(by_name), "the TOC and the tar list other entries"
    for t in members:
        e = by_name[t.name]
        mtime = datetime.datetime.fromisoformat(e["modtime"].replace("Z", "+00:00")).timestamp()
        got = (e["type"], e.get("mode", 0), e.get("size", 0), e.get("uid", 0), e.get("gid", 0), mtime, e.get("linkName", ""))
        want = (kinds.get(t.type, "?"), t.mode, t.size if t.isreg() else 0, t.uid, t.gid, float(t.mtime), t.linkname)
        assert got == want, (t.name, got, want)
assert files > 0, "no file checked"
PY
}

# podman_partial_pull DIR REF: podman pulls REF into a fresh overlay store
# in DIR with partial pulls on (containers/storage's own reader of eStargz
# and zstd:chunked TOCs: it fetches each file's chunks by Range and checks
# them), and says so in its log; prints the mounted image's root. The
# caller unmounts with podman_partial_done DIR.
podman_partial_pull() {
  local d=$1 ref=$2
  mkdir -p "$d"
  printf '%s\n' '[storage]' 'driver = "overlay"' "runroot = \"$RUNS/partial-$(basename "$d")\"" \
    "graphroot = \"$d/root\"" '[storage.options]' \
    'pull_options = {enable_partial_images = "true", use_hard_links = "false", ostree_repos = ""}' > "$d/storage.conf"
  CONTAINERS_STORAGE_CONF=$d/storage.conf podman --log-level debug --events-backend file --cgroup-manager cgroupfs \
    pull --tls-verify=false "$ref" > "$d/pull.log" 2>&1 || { tail -5 "$d/pull.log" >&2; return 1; }
  if grep -q "Failed to retrieve partial blob" "$d/pull.log"; then grep "partial blob" "$d/pull.log" >&2; return 1; fi
  grep -q "Retrieved partial blob" "$d/pull.log" || { echo "podman pulled no layer partially" >&2; return 1; }
  CONTAINERS_STORAGE_CONF=$d/storage.conf podman image mount "$ref"
}
podman_partial_done() {
  CONTAINERS_STORAGE_CONF=$1/storage.conf podman image unmount -a >/dev/null 2>&1
  umount "$1/root/overlay" 2>/dev/null
  true
}

# img convert --format zstd:chunked, pushed: the layers are right, podman
# (with partial pulls on) reads every layer through its TOC and sees the
# same tree as img's mount of the source, and the DiffIDs stay (the tar is
# the same); an eStargz image of img's is read the same way.
zstd_chunked_convert_push_is_pulled_partially_by_podman() {
  "$IMG" load -q -i "$GEN/base-oci.tar" >/dev/null || fail "load"
  "$IMG" convert -q --format zstd:chunked --chunk-size 65536 localhost/base:1 localhost/base:zc >/dev/null ||
    fail "convert failed"
  "$IMG" fsck >/dev/null || fail "fsck after convert"
  [[ $("$IMG" inspect -f '{{.RootFS.Layers}}' localhost/base:zc) == "$("$IMG" inspect -f '{{.RootFS.Layers}}' localhost/base:1)" ]] ||
    fail "zstd:chunked changed the DiffIDs"
  "$IMG" push -q --tls-verify=false localhost/base:zc "$REG/zc/base:1" || fail "push of the zstd:chunked image"
  zstd_chunked_layers_are_right zc/base 1
  "$IMG" convert -q --format estargz localhost/base:1 localhost/base:esgz >/dev/null || fail "convert to eStargz"
  "$IMG" push -q --tls-verify=false localhost/base:esgz "$REG/zc/base:esgz" || fail "push of the eStargz image"
  local m=$WORK/zc-img pz=$WORK/partial-zc pe=$WORK/partial-esgz root
  mkdir -p "$m"
  trap "\"$IMG\" umount $m >/dev/null 2>&1; podman_partial_done $pz; podman_partial_done $pe" EXIT
  "$IMG" mount localhost/base:1 "$m" >/dev/null || fail "img mount"
  # podman 4.3's TOC reader looks for "ModTime", "UID" and "GID" where the
  # format (and its own writer) says "modtime", "uid" and "gid": files it
  # writes from a TOC get the time of the pull and root as owner, whoever
  # wrote the layer. Those are left out here; the TOC's own values are
  # checked against the tar headers above.
  root=$(podman_partial_pull "$pz" "$REG/zc/base:1") || fail "podman's partial pull of the zstd:chunked image"
  python3 tests/support/mount_tree.py cmp --mtimes=none --no-owners "$root" "$m" >&2 ||
    fail "podman's tree of the zstd:chunked image differs"
  root=$(podman_partial_pull "$pe" "$REG/zc/base:esgz") || fail "podman's partial pull of the eStargz image"
  python3 tests/support/mount_tree.py cmp --mtimes=none --no-owners "$root" "$m" >&2 ||
    fail "podman's tree of the eStargz image differs"
}

# img mount docker://REF of a zstd:chunked image: reading /etc/os-release
# fetches under 1% of the image and a second read fetches nothing; the tree
# equals a full pull's, and so do lazy mounts of the plain gzip and zstd
# images (their layers have no TOC: they are downloaded); img pull
# completes the image from what was fetched.
lazy_mount_of_zstd_chunked_reads_only_what_is_read() {
  make_lazy_image || fail "making the images"
  local m=$WORK/lazy-zc full=$WORK/lazy-zc-full f=$WORK/store-lazy-zc-full
  mkdir -p "$m" "$full"
  trap "\"$IMG\" umount $m >/dev/null 2>&1; IMG_ROOT=$f \"$IMG\" umount $full >/dev/null 2>&1" EXIT
  "$IMG" mount --tls-verify=false "docker://$REG/lazy/big:zc" "$m" >/dev/null || fail "lazy mount"
  "$IMG" images | grep "lazy/big" | has "(partial)" || fail "img images does not show it partial: $("$IMG" images)"
  [[ $(cat "$m/etc/os-release") == *ID=imgtest* ]] || fail "os-release reads $(cat "$m/etc/os-release" 2>&1)"
  local size held; size=$("$IMG" inspect -f '{{.Size}}' "$REG/lazy/big:zc"); held=$(lazy_held)
  (( size > 24000000 )) || fail "the image is only $size bytes"
  (( held > 0 && held * 100 < size )) || fail "reading os-release fetched $held of the image's $size bytes"
  echo "os-release: $held of $size bytes fetched" >&2
  local before; before=$(lazy_stat BytesFetched)
  (( before > 0 )) || fail "no fetch counted"
  [[ $(cat "$m/etc/os-release") == *ID=imgtest* ]] || fail "os-release, second read"
  [[ $(lazy_stat BytesFetched) == "$before" ]] || fail "a second read fetched $(( $(lazy_stat BytesFetched) - before )) bytes"
  IMG_ROOT=$f "$IMG" pull -q --tls-verify=false "$REG/lazy/big:zc" >/dev/null || fail "full pull"
  IMG_ROOT=$f "$IMG" mount "$REG/lazy/big:zc" "$full" >/dev/null || fail "mount of the full pull"
  python3 tests/support/mount_tree.py cmp "$m" "$full" >&2 || fail "the lazy tree differs from the full pull's"
  "$IMG" umount "$m" >/dev/null || fail "umount"
  local t
  for t in gzip zstd; do
    "$IMG" mount --tls-verify=false "docker://$REG/lazy/big:$t" "$m" >/dev/null || fail "lazy mount of the $t image"
    python3 tests/support/mount_tree.py cmp "$m" "$full" >&2 || fail "the lazy tree of the $t image differs"
    "$IMG" umount "$m" >/dev/null || fail "umount"
  done
  "$IMG" pull -q --tls-verify=false "$REG/lazy/big:zc" >/dev/null || fail "img pull of the partial image"
  "$IMG" images | has "(partial)" && fail "still partial after img pull"
  [[ -z $(ls -A "$IMG_ROOT/lazy" 2>/dev/null) ]] || fail "lazy/ kept $(ls "$IMG_ROOT/lazy") after the pull"
  "$IMG" fsck >/dev/null || fail "fsck after completing"
}

# A lazy mount of an image of plain gzip layers (a 25 MB base, a layer
# that adds files, one that removes one) through a slow link (16 Mbit/s):
# the layers stream from the mount on; a file early in the base layer reads
# long before the base layer is in; the tree, once whole, equals a full
# pull's (the whiteout applied); img pull then completes the image from
# what the mount fetched, without fetching the layers again.
lazy_mount_streams_plain_layers() {
  make_lazy_image || fail "making the images"
  local s=$WORK/store-lazy-src c=$WORK/stream-ctx m=$WORK/lazy-stream full=$WORK/lazy-stream-full
  local f=$WORK/store-lazy-stream-full
  mkdir -p "$c" "$m" "$full"
  IMG_ROOT=$s "$IMG" mount --rw localhost/lazy:src "$c" >/dev/null || fail "writable mount"
  mkdir "$c/app" && echo hello > "$c/app/hello" && rm "$c/usr/lib/blob05" || fail "changing the mount"
  IMG_ROOT=$s "$IMG" commit -q "$c" localhost/lazy:layers >/dev/null || fail "commit"
  IMG_ROOT=$s "$IMG" umount "$c" >/dev/null || fail "umount of the writable mount"
  IMG_ROOT=$s "$IMG" push -q --tls-verify=false --compression-format gzip localhost/lazy:layers "$REG/lazy/layers:1" ||
    fail "pushing it"
  start_slowlink "$REG"
  trap "kill $SLOW_PID 2>/dev/null; \"$IMG\" umount $m >/dev/null 2>&1; IMG_ROOT=$f \"$IMG\" umount $full >/dev/null 2>&1" EXIT
  local slow=$SLOW
  local base; base=$(skopeo inspect --raw --tls-verify=false "docker://$REG/lazy/layers:1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])')
  local t0=$EPOCHREALTIME
  "$IMG" mount --tls-verify=false "docker://$slow/lazy/layers:1" "$m" >/dev/null || fail "lazy mount"
  [[ $(cat "$m/etc/os-release") == *ID=imgtest* ]] || fail "os-release reads $(cat "$m/etc/os-release" 2>&1)"
  local took; took=$(python3 -c "print(round($EPOCHREALTIME - $t0, 2))")
  local fetched size; fetched=$(lazy_stat BytesFetched); size=$("$IMG" inspect -f '{{.Size}}' "$slow/lazy/layers:1")
  echo "os-release read $took s after the mount began, with $fetched of $size bytes fetched" >&2
  (( fetched * 2 < size )) || fail "os-release was read only after $fetched of $size bytes came"
  [[ $(cat "$m/app/hello") == hello ]] || fail "a file of the second layer"
  # Listing waits for every layer; the whiteout holds.
  ls "$m/usr/lib" | has blob23 || fail "usr/lib does not list blob23"
  ls "$m/usr/lib" | has blob05 && fail "the removed file is listed"
  [[ -e $m/usr/lib/blob05 ]] && fail "the removed file is there"
  (( $(lazy_stat BytesFetched) >= size * 9 / 10 )) || fail "the layers did not stream whole: $(lazy_stat BytesFetched) of $size"
  IMG_ROOT=$f "$IMG" pull -q --tls-verify=false "$REG/lazy/layers:1" >/dev/null || fail "full pull"
  IMG_ROOT=$f "$IMG" mount "$REG/lazy/layers:1" "$full" >/dev/null || fail "mount of the full pull"
  python3 tests/support/mount_tree.py cmp "$m" "$full" >&2 || fail "the streamed tree differs from the full pull's"
  "$IMG" fsck >/dev/null || fail "fsck with a streamed mount"
  "$IMG" umount "$m" >/dev/null || fail "umount"
  # The pull takes the layers from what the mount fetched.
  local gets; gets=$(grep -c "GET /v2/lazy/layers/blobs/$base" "$WORK/plain/log")
  (( gets >= 1 )) || fail "the registry's log does not show the base layer fetched"
  "$IMG" pull -q --tls-verify=false "$slow/lazy/layers:1" >/dev/null || fail "img pull of the streamed image"
  [[ $(grep -c "GET /v2/lazy/layers/blobs/$base" "$WORK/plain/log") == "$gets" ]] ||
    fail "img pull fetched the base layer again"
  "$IMG" images | has "(partial)" && fail "still partial after img pull"
  "$IMG" fsck >/dev/null || fail "fsck after completing"
  true
}

# A streamed lazy mount whose registry stops answering mid-stream: a read
# of bytes not streamed yet fails with EIO within the timeout, what came
# still reads, and the stream goes on once the registry is back. Unmounting
# while the layer streams leaves a store fsck finds clean, whose image img
# pull then completes.
lazy_stream_survives_a_registry_that_goes_away() {
  make_lazy_image || fail "making the images"
  local m=$WORK/lazy-stream2; mkdir -p "$m"
  skopeo copy -q --src-tls-verify=false --dest-tls-verify=false "docker://$REG/lazy/big:gzip" \
    "docker://$LAZYREG/lazy/big:gzip" || fail "copying the gzip image"
  start_slowlink "$LAZYREG"
  trap "kill -CONT $LAZYREG_PID 2>/dev/null; kill $SLOW_PID 2>/dev/null; \"$IMG\" umount $m >/dev/null 2>&1" EXIT
  local slow=$SLOW
  IMG_LAZY_TIMEOUT=2 "$IMG" mount --tls-verify=false "docker://$slow/lazy/big:gzip" "$m" >/dev/null || fail "lazy mount"
  [[ $(cat "$m/etc/os-release") == *ID=imgtest* ]] || fail "os-release"
  kill -STOP "$LAZYREG_PID"
  read_fails_in_time "$m/usr/lib/blob20"
  [[ $(cat "$m/etc/os-release") == *ID=imgtest* ]] || fail "what came no longer reads"
  kill -CONT "$LAZYREG_PID"
  cmp -s "$m/usr/lib/blob20" <(lazy_blob 20) || fail "blob20 does not read right once the registry is back: $(cat "$m/usr/lib/blob20" 2>&1 >/dev/null) $(cat "$IMG_ROOT"/mounts/*.log 2>/dev/null | tail -5)"
  "$IMG" umount "$m" >/dev/null || fail "umount"
  "$IMG" fsck >/dev/null || fail "fsck after the faults"
  # Unmounted while the layer streams (a fresh store: nothing cached).
  export IMG_ROOT=$IMG_ROOT-2
  "$IMG" mount --tls-verify=false "docker://$slow/lazy/big:gzip" "$m" >/dev/null || fail "second lazy mount"
  [[ $(cat "$m/etc/os-release") == *ID=imgtest* ]] || fail "os-release, second mount"
  "$IMG" umount "$m" >/dev/null || fail "umount while streaming"
  "$IMG" fsck >/dev/null || fail "fsck after an unmount while streaming"
  "$IMG" images | has "(partial)" || fail "the image is no longer partial"
  "$IMG" pull -q --tls-verify=false "$slow/lazy/big:gzip" >/dev/null || fail "img pull after an unmount while streaming"
  "$IMG" fsck >/dev/null || fail "fsck after the pull"
  [[ -z $(ls -A "$IMG_ROOT/ingest" 2>/dev/null) ]] || fail "ingest/ kept $(ls "$IMG_ROOT/ingest")"
}

# store_disk PID: the bytes the store's files take on the disk, those the
# process PID holds open unlinked under it (scratch files) included.
store_disk() {
  local n fd l blocks
  n=$(du -s -B1 "$IMG_ROOT" | cut -f1)
  for fd in /proc/"$1"/fd/*; do
    l=$(readlink "$fd" 2>/dev/null) || continue
    [[ $l == "$IMG_ROOT"/*" (deleted)" ]] || continue
    blocks=$(stat -L -c '%b*%B' "$fd" 2>/dev/null) || continue
    n=$(( n + blocks ))
  done
  echo "$n"
}

# A whole read (tar of every file) of a lazy mount of a plain gzip image
# of text (3:1 compressible): the store's disk use, the serving process's
# unlinked scratch files included, stays well under the uncompressed size
# (the compressed bytes in lazy/ and the checkpoint windows; before, a
# spill file held the whole tar); every file reads as a full pull's. Then
# img mount --complete of it ends with the image pulled, its reads right.
lazy_gzip_stream_keeps_no_uncompressed_copy() {
  local s=$WORK/store-lazy-src m=$WORK/lazy-gz-text full=$WORK/lazy-gz-text-full f=$WORK/store-lazy-gz-text-full
  mkdir -p "$m" "$full"
  trap "\"$IMG\" umount $m >/dev/null 2>&1; IMG_ROOT=$IMG_ROOT-c \"$IMG\" umount $m >/dev/null 2>&1; IMG_ROOT=$f \"$IMG\" umount $full >/dev/null 2>&1" EXIT
  python3 - "$WORK/lazy-text.tar" <<'PY' || fail "making the tree"
import io, random, sys, tarfile
r = random.Random(5)
words = [bytes(r.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(r.randrange(2, 9))) for _ in range(300)]
with tarfile.open(sys.argv[1], "w") as t:
    def add(name, data=None, kind=tarfile.REGTYPE, mode=0o644):
        i = tarfile.TarInfo(name)
        i.type, i.mode, i.mtime = kind, mode, 1700000000
        i.size = len(data) if data is not None else 0
        t.addfile(i, io.BytesIO(data) if data is not None else None)
    add("etc", kind=tarfile.DIRTYPE, mode=0o755)
    add("etc/os-release", b"ID=imgtest\n")
    add("srv", kind=tarfile.DIRTYPE, mode=0o755)
    for n in range(160):
        size = r.randrange(100_000, 500_000)
        out = bytearray()
        while len(out) < size:
            out += r.choice(words) + (b"\n" if r.randrange(10) == 0 else b" ")
        add(f"srv/t{n:03}.txt", bytes(out[:size]))
PY
  IMG_ROOT=$s "$IMG" import "$WORK/lazy-text.tar" localhost/lazy:text >/dev/null &&
    IMG_ROOT=$s "$IMG" push -q --tls-verify=false --compression-format gzip localhost/lazy:text "$REG/lazy/text:1" ||
    fail "pushing it"
  local raw comp; raw=$(stat -c %s "$WORK/lazy-text.tar")
  comp=$(skopeo inspect --raw --tls-verify=false "docker://$REG/lazy/text:1" |
    python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')
  "$IMG" mount --tls-verify=false "docker://$REG/lazy/text:1" "$m" >/dev/null || fail "lazy mount"
  tar -cf - -C "$m" . | wc -c >/dev/null || fail "tar of the lazy mount"
  local pid disk
  pid=$("$IMG" mounts --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Pid"])')
  disk=$(store_disk "$pid")
  echo "lazy gzip image of text, whole read: the store takes $disk bytes on disk for a $raw-byte tar ($comp compressed)" >> "$T/measure"
  (( disk * 2 < raw )) || fail "after a whole read the store takes $disk bytes for a $raw-byte tar: a copy of the tar is kept"
  IMG_ROOT=$f "$IMG" pull -q --tls-verify=false "$REG/lazy/text:1" >/dev/null || fail "full pull"
  IMG_ROOT=$f "$IMG" mount "$REG/lazy/text:1" "$full" >/dev/null || fail "mount of the full pull"
  python3 tests/support/mount_tree.py cmp "$m" "$full" >&2 || fail "the streamed tree differs from the full pull's"
  "$IMG" umount "$m" >/dev/null || fail "umount"
  "$IMG" fsck >/dev/null || fail "fsck after the lazy mount"
  # --complete, in a fresh store: the image ends pulled and reads right.
  export IMG_ROOT=$IMG_ROOT-c
  "$IMG" mount --complete --tls-verify=false "docker://$REG/lazy/text:1" "$m" >/dev/null || fail "lazy mount --complete"
  local i
  for i in $(seq 120); do
    "$IMG" images | grep "lazy/text" | has "(partial)" || break
    sleep 0.5
  done
  "$IMG" images | grep "lazy/text" | has "(partial)" &&
    fail "still partial after 60 s: $(tail -3 "$IMG_ROOT"/mounts/*.log 2>/dev/null)"
  cmp -s "$m/srv/t150.txt" "$full/srv/t150.txt" || fail "srv/t150.txt reads wrong after completing"
  cmp -s "$m/srv/t003.txt" "$full/srv/t003.txt" || fail "srv/t003.txt reads wrong after completing"
  "$IMG" fsck >/dev/null || fail "fsck after --complete"
  "$IMG" umount "$m" >/dev/null || fail "umount after --complete"
  [[ -z $(ls -A "$IMG_ROOT/ingest" 2>/dev/null) ]] || fail "ingest/ kept $(ls "$IMG_ROOT/ingest")"
  true
}

# An image converted with a prefetch list: the mount fetches the files
# before the landmark by itself, so reading them fetches nothing more.
lazy_mount_prefetches_the_landmarked_files() {
  make_lazy_image || fail "making the eStargz image"
  local m=$WORK/lazy-m4; mkdir -p "$m"
  trap "\"$IMG\" umount $m >/dev/null 2>&1" EXIT
  "$IMG" mount --tls-verify=false "docker://$REG/lazy/big:prefetch" "$m" >/dev/null || fail "lazy mount"
  local i fetched=0
  for i in $(seq 50); do
    fetched=$(lazy_stat BytesFetched)
    (( fetched > 0 )) && break
  done
  (( fetched > 0 )) || fail "nothing was prefetched"
  [[ $(cat "$m/etc/os-release") == *ID=imgtest* ]] || fail "os-release"
  [[ $(lazy_stat BytesFetched) == "$fetched" ]] || fail "reading a prefetched file fetched $(( $(lazy_stat BytesFetched) - fetched )) bytes more"
  (( $(lazy_stat BytesFromCache) > 0 )) || fail "the prefetched file was not read from the store"
  (( fetched < 1000000 )) || fail "the prefetch fetched $fetched bytes: more than the files before the landmark"
}

# A whole read (tar of every file) of a lazy mount of an eStargz image of
# 2,000 small files and the 24 big ones of make_lazy_image: chunks read
# near each other share Range requests and a layer read mostly is fetched
# whole in the background, so the requests are far fewer than the files
# (one request a file before); every byte equals a full pull's, and the
# bytes fetched are the layer's about once.
lazy_whole_read_coalesces_requests() {
  make_lazy_image || fail "making the images"
  local s=$WORK/store-lazy-src m=$WORK/lazy-whole full=$WORK/lazy-whole-full f=$WORK/store-lazy-whole-full
  mkdir -p "$m" "$full"
  trap "\"$IMG\" umount $m >/dev/null 2>&1; IMG_ROOT=$f \"$IMG\" umount $full >/dev/null 2>&1" EXIT
  python3 - "$WORK/lazy-small.tar" <<'PY' || fail "making the tree"
import io, random, sys, tarfile
r = random.Random(11)
with tarfile.open(sys.argv[1], "w") as t:
    def add(name, data=None, kind=tarfile.REGTYPE, mode=0o644):
        i = tarfile.TarInfo(name)
        i.type, i.mode, i.mtime = kind, mode, 1700000000
        i.size = len(data) if data is not None else 0
        t.addfile(i, io.BytesIO(data) if data is not None else None)
    add("etc", kind=tarfile.DIRTYPE, mode=0o755)
    add("etc/os-release", b'ID=imgtest\n')
    for d in range(20):
        add(f"lib/m{d:02}", kind=tarfile.DIRTYPE, mode=0o755)
        for n in range(100):
            add(f"lib/m{d:02}/f{n:03}.py", r.randbytes(r.randrange(200, 4000)))
PY
  IMG_ROOT=$s "$IMG" import "$WORK/lazy-small.tar" localhost/lazy:small >/dev/null &&
    IMG_ROOT=$s "$IMG" convert -q --format estargz localhost/lazy:small localhost/lazy:small-esgz >/dev/null &&
    IMG_ROOT=$s "$IMG" push -q --tls-verify=false localhost/lazy:small-esgz "$REG/lazy/small:1" || fail "pushing it"
  "$IMG" mount --tls-verify=false "docker://$REG/lazy/small:1" "$m" >/dev/null || fail "lazy mount"
  tar -cf - -C "$m" . | wc -c >/dev/null || fail "tar of the lazy mount"
  local req fetched size; req=$(lazy_stat Requests); fetched=$(lazy_stat BytesFetched)
  size=$("$IMG" inspect -f '{{.Size}}' "$REG/lazy/small:1")
  echo "a whole read of 2,001 files: $req requests, $fetched bytes fetched of a $size-byte image" >&2
  (( req > 0 && req < 100 )) || fail "a whole read of 2,001 files made $req Range requests"
  (( fetched < size * 12 / 10 )) || fail "a whole read fetched $fetched bytes of a $size-byte image"
  IMG_ROOT=$f "$IMG" pull -q --tls-verify=false "$REG/lazy/small:1" >/dev/null || fail "full pull"
  IMG_ROOT=$f "$IMG" mount "$REG/lazy/small:1" "$full" >/dev/null || fail "mount of the full pull"
  python3 tests/support/mount_tree.py cmp "$m" "$full" >&2 || fail "the lazy tree differs from the full pull's"
  "$IMG" umount "$m" >/dev/null || fail "umount"
  # The big files of make_lazy_image, read in order: few requests too.
  "$IMG" mount --tls-verify=false "docker://$REG/lazy/big:1" "$m" >/dev/null || fail "lazy mount of lazy/big"
  tar -cf - -C "$m" . | wc -c >/dev/null || fail "tar of lazy/big"
  req=$(lazy_stat Requests)
  (( req < 16 )) || fail "a whole read of 24 files of 1 MiB made $req Range requests"
}

# img mount --complete, through a slow link: the image is partial when the
# mount is up and ends complete without another command (every layer
# stored, checked by fsck, saved), while the mount went on serving the
# right bytes; the layers were fetched once (the pull took what the mount
# fetched). The same for an image of plain gzip layers, which stream.
lazy_mount_complete_ends_with_the_image_pulled() {
  make_lazy_image || fail "making the images"
  local m=$WORK/lazy-complete t
  mkdir -p "$m"
  start_slowlink "$REG"
  trap "kill $SLOW_PID 2>/dev/null; \"$IMG\" umount $m >/dev/null 2>&1" EXIT
  for t in 1 gzip; do
    "$IMG" mount --complete --tls-verify=false "docker://$SLOW/lazy/big:$t" "$m" >/dev/null ||
      fail "lazy mount --complete of lazy/big:$t"
    "$IMG" images | grep "lazy/big" | has "(partial)" || fail "lazy/big:$t is not partial at first: $("$IMG" images)"
    [[ $(cat "$m/etc/os-release") == *ID=imgtest* ]] || fail "os-release of lazy/big:$t"
    local i
    for i in $(seq 120); do
      "$IMG" images | grep "lazy/big" | has "(partial)" || break
      sleep 0.5
    done
    "$IMG" images | grep "lazy/big" | has "(partial)" &&
      fail "lazy/big:$t is still partial after 60 s: $(tail -3 "$IMG_ROOT"/mounts/*.log 2>/dev/null)"
    echo "lazy/big:$t after --complete: $("$IMG" images | grep lazy/big)" >&2
    cmp -s "$m/usr/lib/blob20" <(lazy_blob 20) || fail "blob20 of lazy/big:$t does not read right after completing"
    local size fetched; size=$("$IMG" inspect -f '{{.Size}}' "$SLOW/lazy/big:$t"); fetched=$(lazy_stat BytesFetched)
    (( fetched <= size * 11 / 10 )) || fail "the mount fetched $fetched bytes of the $size-byte lazy/big:$t"
    "$IMG" fsck >/dev/null || fail "fsck after --complete of lazy/big:$t"
    "$IMG" save -o "$WORK/lazy-complete.tar" "$SLOW/lazy/big:$t" || fail "save of the completed lazy/big:$t"
    "$IMG" umount "$m" >/dev/null || fail "umount"
    [[ -z $(ls -A "$IMG_ROOT/lazy" 2>/dev/null) ]] || fail "lazy/ kept $(ls "$IMG_ROOT/lazy") after completing"
    "$IMG" rmi -f "$SLOW/lazy/big:$t" >/dev/null || fail "rmi"
  done
}

# A lazy mount whose registry stops answering: a read of bytes not fetched
# fails with EIO within the timeout, what was fetched still reads, and reads
# succeed again once the registry is back.
lazy_mount_survives_a_registry_that_goes_away() {
  make_lazy_image || fail "making the eStargz image"
  local m=$WORK/lazy-m2; mkdir -p "$m"
  trap "kill -CONT $LAZYREG_PID 2>/dev/null; \"$IMG\" umount $m >/dev/null 2>&1" EXIT
  IMG_LAZY_TIMEOUT=2 "$IMG" mount --tls-verify=false "docker://$LAZYREG/lazy/big:1" "$m" >/dev/null || fail "lazy mount"
  cat "$m/etc/os-release" >/dev/null || fail "os-release"
  kill -STOP "$LAZYREG_PID"
  read_fails_in_time "$m/usr/lib/blob03"
  [[ $(cat "$m/etc/os-release") == *ID=imgtest* ]] || fail "what was fetched no longer reads"
  ls "$m/usr/lib" | has blob23 || fail "the tree does not list with the registry stopped"
  kill -CONT "$LAZYREG_PID"
  cmp -s "$m/usr/lib/blob03" <(lazy_blob 3) || fail "blob03 does not read right once the registry is back"
  (( $(lazy_stat FailedFetches) >= 1 )) || fail "the failed fetch was not counted"
  "$IMG" umount "$m" >/dev/null || fail "umount"
  "$IMG" fsck >/dev/null || fail "fsck after the faults"
}

# A manifest whose TOC digest annotation is not the TOC's: the lazy mount is
# refused naming the digest, and the store is left as it was.
lazy_mount_refuses_a_toc_that_does_not_match() {
  make_lazy_image || fail "making the eStargz image"
  local mf=$WORK/lazy-bad.json m=$WORK/lazy-bad out
  mkdir -p "$m"
  curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/lazy/big/manifests/1" |
    python3 -c '
import json, sys
m = json.load(sys.stdin)
for l in m["layers"]:
    l["annotations"]["containerd.io/snapshot/stargz/toc.digest"] = "sha256:" + "0" * 64
json.dump(m, sys.stdout)' > "$mf" || fail "reading the manifest"
  curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$mf" \
    "http://$REG/v2/lazy/big/manifests/badtoc" >/dev/null || fail "putting the altered manifest"
  out=$("$IMG" mount --tls-verify=false "docker://$REG/lazy/big:badtoc" "$m" 2>&1) && fail "the mount worked: $out"
  [[ $out == *"sha256:0000000000000000"* && $out == *"table of contents"* ]] || fail "unclear refusal: $out"
  [[ -z $("$IMG" images -q) ]] || fail "an image was recorded"
  [[ -z $(ls -A "$IMG_ROOT/lazy" 2>/dev/null) ]] || fail "lazy/ kept $(ls "$IMG_ROOT/lazy")"
  "$IMG" fsck >/dev/null || fail "fsck"
}

# img push --compression-format estargz converts on the way (a docker image
# becomes OCI, its config gets the new DiffIDs) and leaves the store alone;
# pushing the result again converts nothing.
push_compression_format_estargz() {
  "$IMG" load -q -i "$GEN/layered-docker.tar" >/dev/null || fail "load"
  local before; before=$("$IMG" images --no-trunc --format json)
  "$IMG" push -q --tls-verify=false --compression-format estargz localhost/layered:1 "$REG/esgzpush/layered:1" ||
    fail "push --compression-format estargz failed"
  [[ $("$IMG" images --no-trunc --format json) == "$before" ]] || fail "the push changed the store"
  estargz_layers_are_right esgzpush/layered 1
  IMG_ROOT=$WORK/store-esgzpush "$IMG" pull -q --tls-verify=false "$REG/esgzpush/layered:1" >/dev/null ||
    fail "img pull of the eStargz push (DiffIDs checked against the new config)"
  IMG_ROOT=$WORK/store-esgzpush "$IMG" fsck >/dev/null || fail "fsck"
  local out
  out=$(IMG_ROOT=$WORK/store-esgzpush "$IMG" push --tls-verify=false --compression-format estargz \
    "$REG/esgzpush/layered:1" "$REG/esgzpush/layered:2" 2>&1) || fail "push again: $out"
  grep -q "Converting" <<<"$out" && fail "eStargz layers were converted again: $out"
  [[ $(skopeo inspect --raw --tls-verify=false "docker://$REG/esgzpush/layered:2" | sha256sum) == \
     $(skopeo inspect --raw --tls-verify=false "docker://$REG/esgzpush/layered:1" | sha256sum) ]] ||
    fail "pushing the eStargz image again changed its manifest"
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

# config_digest REF SKOPEO-OPTION...: the config digest skopeo sees.
config_digest() {
  local ref=$1; shift
  skopeo inspect --raw "$@" "docker://$ref" | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])'
}

# stored_nothing: no image and no blob in the store.
stored_nothing() {
  [[ -z $("$IMG" images -q) ]] || fail "an image was stored"
  [[ -z $(find "$IMG_ROOT/blobs" -type f 2>/dev/null) ]] || fail "blobs were stored"
}

tls_unknown_ca_is_a_clear_error() {
  own_home
  local err
  err=$("$IMG" pull "$TLS/test/base:1" 2>&1 >/dev/null) && fail "pull from a registry with an unknown CA succeeded"
  stored_nothing
  grep -q "certs.d" <<<"$err" || fail "the error does not say where to put the CA: $err"
}

tls_pull_with_cert_dir() {
  own_home
  local id
  id=$("$IMG" pull -q --cert-dir "$PKI/ca-only" "$TLS/test/base:1") || fail "pull with --cert-dir failed"
  [[ "sha256:$id" == "$(config_digest "$TLS/test/base:1" --cert-dir "$PKI/ca-only")" ]] ||
    fail "image ID $id is not the config digest"
  [[ $("$IMG" tags --cert-dir "$PKI/ca-only" "$TLS/test/base") == 1 ]] || fail "tags with --cert-dir"
  "$IMG" fsck >/dev/null || fail "fsck after pull"
}

tls_pull_with_ca_in_home_certs_d() {
  own_home
  mkdir -p "$HOME/.config/containers/certs.d/$TLS" && cp "$PKI/ca.crt" "$HOME/.config/containers/certs.d/$TLS/"
  "$IMG" pull -q "$TLS/test/base:1" >/dev/null || fail "pull with the CA in ~/.config/containers/certs.d failed"
  # $XDG_CONFIG_HOME takes the place of ~/.config.
  export XDG_CONFIG_HOME=$HOME/xdg IMG_ROOT=$IMG_ROOT-xdg
  mkdir -p "$XDG_CONFIG_HOME/containers/certs.d/$TLS" && cp "$PKI/ca.crt" "$XDG_CONFIG_HOME/containers/certs.d/$TLS/"
  rm -r "$HOME/.config"
  "$IMG" pull -q "$TLS/test/base:1" >/dev/null || fail "pull with the CA in \$XDG_CONFIG_HOME/containers/certs.d failed"
}

tls_verify_false_allows_an_unknown_ca() {
  own_home
  "$IMG" pull -q --tls-verify=false "$TLS/test/base:1" >/dev/null || fail "pull with --tls-verify=false over TLS failed"
  [[ -n $("$IMG" images -q) ]] || fail "no image stored"
}

mtls_missing_client_certificate_is_a_clear_error() {
  own_home
  local err
  err=$("$IMG" pull --cert-dir "$PKI/ca-only" "$MTLS/test/base:1" 2>&1 >/dev/null) &&
    fail "pull without a client certificate succeeded"
  stored_nothing
  grep -qi "client certificate" <<<"$err" || fail "the error does not say a client certificate is needed: $err"
}

mtls_pull_with_client_certificate_in_certs_d() {
  own_home
  local d=$HOME/.config/containers/certs.d/$MTLS
  mkdir -p "$d" && cp "$PKI/ca.crt" "$PKI/client.cert" "$PKI/client.key" "$d/"
  "$IMG" pull -q "$MTLS/test/base:1" >/dev/null || fail "pull with client.cert and client.key failed"
  [[ $("$IMG" tags "$MTLS/test/base") == 1 ]] || fail "tags over mutual TLS"
}

mtls_pull_with_isulad_file_names() {
  own_home
  local d=$HOME/isulad
  mkdir -p "$d" && cp "$PKI/ca.crt" "$d/" && cp "$PKI/client.cert" "$d/tls.cert" && cp "$PKI/client.key" "$d/tls.key"
  "$IMG" pull -q --cert-dir "$d" "$MTLS/test/base:1" >/dev/null || fail "pull with ca.crt, tls.cert and tls.key failed"
}

mtls_client_certificate_without_key_is_an_error() {
  own_home
  local d=$HOME/nokey err
  mkdir -p "$d" && cp "$PKI/ca.crt" "$PKI/client.cert" "$d/"
  err=$("$IMG" pull --cert-dir "$d" "$MTLS/test/base:1" 2>&1 >/dev/null) && fail "pull with a client certificate and no key succeeded"
  grep -q "client.key" <<<"$err" || fail "the error does not name the missing key: $err"
  stored_nothing
}

token_pull_needs_login() {
  own_home
  local err
  err=$("$IMG" pull --cert-dir "$PKI/ca-only" "$TOKEN/test/base:1" 2>&1 >/dev/null) && fail "anonymous pull succeeded"
  grep -q "img login" <<<"$err" || fail "the error does not suggest img login: $err"
  stored_nothing
}

token_login_then_pull() {
  own_home
  local af=$HOME/auth.json c=(--cert-dir "$PKI/ca-only") before
  echo wrong | "$IMG" login "${c[@]}" --authfile "$af" -u alice --password-stdin "$TOKEN" 2>/dev/null &&
    fail "login with a wrong password succeeded"
  [[ ! -e $af ]] || fail "a failed login wrote the auth file"
  echo t0ken-pass | "$IMG" login "${c[@]}" --authfile "$af" -u alice --password-stdin "$TOKEN" 2>/dev/null ||
    fail "login failed"
  [[ -s $af ]] || fail "login wrote no auth file"
  before=$(wc -l < "$TOKEN_LOG")
  "$IMG" pull -q "${c[@]}" --authfile "$af" "$TOKEN/test/base:1" >/dev/null || fail "pull after login failed"
  [[ $(tail -n +$((before + 1)) "$TOKEN_LOG" | grep -c "^user=alice scope=repository:test/base:pull granted=") == 1 ]] ||
    fail "not one token request for repository:test/base:pull by alice: $(tail -n +$((before + 1)) "$TOKEN_LOG")"
  "$IMG" logout --authfile "$af" "$TOKEN" 2>/dev/null || fail "logout failed"
  IMG_ROOT=$IMG_ROOT-2 "$IMG" pull -q "${c[@]}" --authfile "$af" "$TOKEN/test/base:1" >/dev/null 2>&1 &&
    fail "pull after logout succeeded"
  true
}

token_pull_with_creds() {
  own_home
  local c=(--cert-dir "$PKI/ca-only")
  "$IMG" pull -q "${c[@]}" --creds alice:wrong "$TOKEN/test/base:1" >/dev/null 2>&1 && fail "pull with a wrong password succeeded"
  stored_nothing
  "$IMG" pull -q "${c[@]}" --creds alice:t0ken-pass "$TOKEN/test/base:1" >/dev/null || fail "pull with --creds failed"
  # reader is granted pull only.
  IMG_ROOT=$IMG_ROOT-reader "$IMG" pull -q "${c[@]}" --creds reader:read-pass "$TOKEN/test/base:1" >/dev/null ||
    fail "pull as the read-only user failed"
  grep -q '^user=reader scope=repository:test/base:pull granted=.*"actions": \["pull"\]' "$TOKEN_LOG" ||
    fail "the issuer saw no pull request by reader"
  [[ $("$IMG" tags "${c[@]}" --creds reader:read-pass "$TOKEN/test/base") == 1 ]] || fail "tags with a token"
}

push_over_mtls_and_token_auth() {
  own_home
  "$IMG" load -q -i "$GEN/layered-docker.tar" >/dev/null || fail "load"
  "$IMG" push -q --cert-dir "$PKI/client" localhost/layered:1 "$MTLS/pushed/layered:1" || fail "push over mutual TLS"
  skopeo inspect --cert-dir "$PKI/client" "docker://$MTLS/pushed/layered:1" >/dev/null || fail "skopeo cannot see the mTLS push"
  local c=(--cert-dir "$PKI/ca-only") err
  err=$("$IMG" push "${c[@]}" --creds reader:read-pass localhost/layered:1 "$TOKEN/pushed/layered:1" 2>&1) &&
    fail "a pull-only user could push"
  grep -q "unauthorized\|denied" <<<"$err" || fail "unclear error for a refused push: $err"
  "$IMG" push -q "${c[@]}" --creds alice:t0ken-pass localhost/layered:1 "$TOKEN/pushed/layered:1" || fail "push with a token"
  grep -q '^user=alice scope=repository:pushed/layered:pull,push granted=' "$TOKEN_LOG" ||
    fail "the issuer saw no push scope request by alice"
  skopeo inspect --cert-dir "$PKI/ca-only" --creds alice:t0ken-pass "docker://$TOKEN/pushed/layered:1" >/dev/null ||
    fail "skopeo cannot see the token push"
  # Across repositories with a token: mount needs pull on the source too.
  export IMG_ROOT=$IMG_ROOT-mount
  "$IMG" pull -q "${c[@]}" --creds alice:t0ken-pass "$TOKEN/pushed/layered:1" >/dev/null || fail "pull back"
  local out
  out=$("$IMG" push "${c[@]}" --creds alice:t0ken-pass "$TOKEN/pushed/layered:1" "$TOKEN/copy/layered:1" 2>&1) ||
    fail "cross-repository push: $out"
  grep -q "0 blobs uploaded, 0 already there, 3 mounted" <<<"$out" || fail "blobs were not mounted: $out"
}

remote_inspect_matches_skopeo_and_stores_nothing() {
  local ref=docker://$REG/test/base:1
  # (img ends the manifest with a newline where it has none, as a line of output)
  [[ $("$IMG" inspect --raw --tls-verify=false "$ref") == "$(skopeo inspect --raw --tls-verify=false "$ref")" ]] ||
    fail "--raw differs from skopeo's"
  [[ $("$IMG" inspect --config --tls-verify=false "$ref" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rootfs"]["diff_ids"])') == \
     "$(skopeo inspect --config --tls-verify=false "$ref" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rootfs"]["diff_ids"])')" ]] ||
    fail "--config differs from skopeo's"
  local mine theirs
  mine=$("$IMG" inspect --tls-verify=false -f '{{.Digest}} {{.Architecture}} {{len .Layers}}' "$ref") || fail "inspect"
  theirs=$(skopeo inspect --tls-verify=false -f '{{.Digest}} {{.Architecture}} {{len .Layers}}' "$ref")
  [[ $mine == "$theirs" ]] || fail "inspect says $mine, skopeo $theirs"
  [[ -z $("$IMG" images -q) && -z $(ls "$IMG_ROOT/blobs/sha256" 2>/dev/null) ]] || fail "remote inspect stored something"
  "$IMG" inspect --tls-verify=false "docker://$REG/test/nosuch:1" >/dev/null 2>&1 && fail "inspect of a missing tag succeeded"
  true
}

search_lists_matching_repositories() {
  local out
  out=$("$IMG" search --tls-verify=false --format '{{.Name}}' "$REG/bas") || fail "search failed"
  grep -qx "$REG/test/base" <<<"$out" || fail "test/base not found: $out"
  grep -v "bas" <<<"$out" | has . && fail "results that do not match: $out"
  [[ $("$IMG" search --tls-verify=false --limit 1 --format '{{.Name}}' "$REG/" | wc -l) == 1 ]] || fail "--limit 1"
  "$IMG" search --tls-verify=false "$REG/" | sed -n 1p | has "^NAME *DESCRIPTION" || fail "no table header"
  [[ -z $("$IMG" search --tls-verify=false --format '{{.Name}}' "$REG/zzznothing") ]] || fail "results for a term that matches nothing"
}

# registries_conf TEXT: a registries.conf for this check only.
registries_conf() {
  export CONTAINERS_REGISTRIES_CONF=$IMG_ROOT.registries.conf
  printf '%s\n' "$1" > "$CONTAINERS_REGISTRIES_CONF"
}

mirror_serves_then_origin_is_the_fallback() {
  registries_conf "[[registry]]
location = \"$REG\"
insecure = true
[[registry.mirror]]
location = \"$MIRROR/hub\"
insecure = true"
  # Only the mirror has it: without a flag (insecure from the file).
  "$IMG" pull -q "$REG/only/mirrored:1" >/dev/null || fail "pull through the mirror failed"
  "$IMG" inspect -f '{{.Id}}' "$REG/only/mirrored:1" >/dev/null || fail "not recorded under the origin's name"
  # Only the origin has it: the mirror's 404 falls through.
  "$IMG" pull -q "$REG/test/base:1" >/dev/null || fail "fallback to the origin failed"
  "$IMG" fsck >/dev/null || fail "fsck"
}

digest_only_mirror_is_skipped_for_tags() {
  registries_conf "[[registry]]
location = \"$REG\"
insecure = true
[[registry.mirror]]
location = \"$MIRROR/hub\"
insecure = true
pull-from-mirror = \"digest-only\""
  "$IMG" pull -q "$REG/only/mirrored:1" >/dev/null 2>&1 && fail "a digest-only mirror served a tag"
  local digest
  digest=$(skopeo inspect --tls-verify=false "docker://$MIRROR/hub/only/mirrored:1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Digest"])')
  "$IMG" pull -q "$REG/only/mirrored@$digest" >/dev/null || fail "a digest-only mirror did not serve a digest"
}

blocked_registry_is_refused() {
  registries_conf "[[registry]]
location = \"$REG\"
blocked = true"
  local err
  err=$("$IMG" pull --tls-verify=false "$REG/test/base:1" 2>&1) && fail "pull from a blocked registry succeeded"
  grep -q "blocked" <<<"$err" || fail "unclear error: $err"
  "$IMG" load -q -i "$GEN/base-oci.tar" >/dev/null
  "$IMG" push --tls-verify=false localhost/base:1 "$REG/x/y:1" >/dev/null 2>&1 && fail "push to a blocked registry succeeded"
  true
}

short_names_use_the_search_registries() {
  registries_conf "unqualified-search-registries = [\"$MIRROR\", \"$REG\"]
[[registry]]
location = \"$REG\"
insecure = true
[[registry]]
location = \"$MIRROR\"
insecure = true"
  local out
  out=$("$IMG" pull test/base:1 2>&1 >/dev/null) || fail "short-name pull failed: $out"
  grep -q "Trying to pull $MIRROR/test/base:1" <<<"$out" || fail "the first search registry was not tried: $out"
  "$IMG" inspect -f '{{.Id}}' "$REG/test/base:1" >/dev/null || fail "not recorded under its full name"
}

isulad_daemon_json_mirrors_and_insecure() {
  export IMG_ISULAD_DAEMON_JSON=$IMG_ROOT.daemon.json CONTAINERS_REGISTRIES_CONF=/nonexistent
  printf '{"registry-mirrors": ["%s"], "insecure-registries": ["%s"], "engine": "lcr"}\n' "$REG" "$REG" > "$IMG_ISULAD_DAEMON_JSON"
  "$IMG" pull -q test/base:1 >/dev/null || fail "pull of a short name through iSulad's registry-mirrors failed"
  echo '{"registry-mirrors": "oops"}' > "$IMG_ISULAD_DAEMON_JSON"
  local err
  err=$("$IMG" pull -q test/base:1 2>&1) && fail "a broken daemon.json was accepted"
  grep -q "daemon.json" <<<"$err" || fail "the error does not name the file: $err"
}

copy_between_registries_streams_without_a_store() {
  export IMG_ROOT=$WORK/never-created-$$
  "$IMG" copy -q --src-tls-verify=false --dest-tls-verify=false "docker://$REG/test/base:1" "docker://$MIRROR/copied/base:1" ||
    fail "copy between registries failed"
  [[ ! -e $IMG_ROOT ]] || fail "a registry-to-registry copy created a store"
  [[ $(skopeo inspect --raw --tls-verify=false "docker://$REG/test/base:1" | sha256sum) == \
     "$(skopeo inspect --raw --tls-verify=false "docker://$MIRROR/copied/base:1" | sha256sum)" ]] || fail "the manifest changed"
  skopeo copy -q --src-tls-verify=false "docker://$MIRROR/copied/base:1" "oci:$WORK/copied-check:x" || fail "skopeo cannot read the copy"
}

copy_all_copies_a_multi_platform_index() {
  # An index of two platforms, made by hand from the layered OCI layout.
  local L=$WORK/multi
  rm -rf "$L"; cp -r "$GEN/layered.oci" "$L"
  python3 tests/support/multi_index.py "$L" || fail "making the two-platform index"
  skopeo copy -q --all --dest-tls-verify=false "oci:$L:multi" "docker://$REG/test/multi:1" || fail "skopeo push of the index"
  "$IMG" copy -q --all --src-tls-verify=false --dest-tls-verify=false --digestfile "$WORK/multi.digest" \
    "docker://$REG/test/multi:1" "docker://$MIRROR/copied/multi:1" || fail "copy --all failed"
  local want
  want=$(skopeo inspect --raw --tls-verify=false "docker://$REG/test/multi:1" | sha256sum | cut -d' ' -f1)
  [[ $(cat "$WORK/multi.digest") == "sha256:$want" ]] || fail "the index digest changed: $(cat "$WORK/multi.digest") vs $want"
  skopeo inspect --raw --tls-verify=false "docker://$MIRROR/copied/multi:1" | has arm64 || fail "the copy is not the index"
  "$IMG" pull -q --tls-verify=false --platform linux/arm64 "$MIRROR/copied/multi:1" >/dev/null || fail "pull --platform from the copied index"
  local err
  err=$("$IMG" pull --tls-verify=false --platform linux/s390x "$MIRROR/copied/multi:1" 2>&1) && fail "pull of a missing platform succeeded"
  grep -q "linux/amd64, linux/arm64" <<<"$err" || fail "the error does not list the platforms: $err"
}

copy_through_archives_and_the_store() {
  local oci=$WORK/copy-oci-$$
  "$IMG" copy -q --src-tls-verify=false "docker://$REG/test/base:1" "oci:$oci:v1" || fail "registry to oci"
  [[ -z $("$IMG" images -q) ]] || fail "registry to oci left an image in the store"
  [[ -z $(ls "$IMG_ROOT/ingest") ]] || fail "registry to oci left files in ingest/"
  skopeo inspect "oci:$oci:v1" >/dev/null || fail "skopeo cannot read the OCI layout"
  "$IMG" copy -q "oci:$oci:v1" "docker-archive:$WORK/copy-$$.tar:example.com/app:2" || fail "oci to docker-archive"
  skopeo inspect "docker-archive:$WORK/copy-$$.tar" >/dev/null || fail "skopeo cannot read the docker-archive"
  "$IMG" copy -q "docker-archive:$WORK/copy-$$.tar" "img:example.com/app:3" || fail "docker-archive to the store"
  "$IMG" inspect -f '{{.Id}}' example.com/app:3 >/dev/null || fail "not in the store under the new name"
  "$IMG" copy -q --dest-tls-verify=false "img:example.com/app:3" "docker://$MIRROR/fromstore/app:3" || fail "store to registry"
  "$IMG" copy -q "oci:$oci:nosuch" "oci-archive:$WORK/x.tar" 2>/dev/null && fail "a missing ref was copied"
  [[ ! -e $WORK/x.tar ]] || fail "a failed copy left its output"
  "$IMG" copy -q "nonsense" "img:x" 2>/dev/null && fail "a source without transport was accepted"
  "$IMG" fsck >/dev/null || fail "fsck"
}

pull_all_tags_pulls_every_tag() {
  skopeo copy -q --dest-tls-verify=false "oci-archive:$GEN/base-oci.tar" "docker://$REG/alltags/img:a" || fail "push a"
  skopeo copy -q --dest-tls-verify=false "oci-archive:$GEN/layered-oci.tar" "docker://$REG/alltags/img:b" || fail "push b"
  [[ $("$IMG" pull -q -a --tls-verify=false "$REG/alltags/img" | wc -l) == 2 ]] || fail "pull -a did not print two IDs"
  "$IMG" inspect -f '{{.Id}}' "$REG/alltags/img:a" "$REG/alltags/img:b" >/dev/null || fail "a tag is missing"
  "$IMG" pull -q -a --tls-verify=false "$REG/alltags/img:a" >/dev/null 2>&1 && fail "pull -a accepted a tag"
  true
}

# Passwords never show: not in any output or error (wrong or right, JSON
# included), not in the auth file in clear, not in a running img's
# arguments with --password-stdin; the auth file is 0600 even under umask 0.
secrets_never_leak() {
  local af=$WORK/secret-auth.json out=$WORK/secret-out pw=Sup3r-S3cret-9517 bad=Wr0ng-S3cret-4242
  rm -f "$af"
  {
    echo "$bad" | "$IMG" login --tls-verify=false --authfile "$af" -u alice --password-stdin "$AUTH"
    "$IMG" pull --tls-verify=false --creds "alice:$bad" "$AUTH/test/base:1"
    "$IMG" push --tls-verify=false --creds "alice:$bad" localhost/nosuch:1 "$AUTH/test/x:1"
    "$IMG" inspect --tls-verify=false --creds "alice:$bad" "docker://$AUTH/test/base:1"
    "$IMG" tags --tls-verify=false --creds "alice:$bad" "$AUTH/test/base"
  } > "$out" 2>&1
  grep -q "$bad" "$out" && fail "a wrong password shows in img's output: $(grep "$bad" "$out" | head -3)"
  grep -qi "unauthorized\|denied\|401" "$out" || fail "the failures do not say why: $(head -5 "$out")"
  ( umask 000
    echo "$pw" | "$IMG" login --tls-verify=false --authfile "$af" -u alice --password-stdin "$AUTH" ) > "$out" 2>&1 &&
    fail "login with a password the registry does not know succeeded"
  # The right password (alice's, from the htpasswd setup), under umask 0.
  ( umask 000
    echo s3cret-pass | "$IMG" login --tls-verify=false --authfile "$af" -u alice --password-stdin "$AUTH" ) >> "$out" 2>&1 ||
    fail "login failed: $(tail -3 "$out")"
  [[ $(stat -c %a "$af") == 600 ]] || fail "auth file mode under umask 0 is $(stat -c %a "$af")"
  {
    "$IMG" login --get-login --authfile "$af" "$AUTH"
    "$IMG" pull --tls-verify=false --authfile "$af" "$AUTH/test/base:1"
    "$IMG" inspect --tls-verify=false --authfile "$af" "docker://$AUTH/test/base:1"
    "$IMG" inspect --tls-verify=false --authfile "$af" --raw "docker://$AUTH/test/base:1"
    "$IMG" info --format json
  } >> "$out" 2>&1
  grep -q "s3cret-pass" "$out" "$af" && fail "the password shows in output or in clear in the auth file"
  # A pull that is running: its arguments and environment hold no password.
  "$IMG" pull --tls-verify=false --authfile "$af" "$AUTH/test/base:1" >/dev/null 2>&1 &
  local pid=$! leaked=0
  for _ in 1 2 3 4 5; do
    [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' < "/proc/$pid/cmdline" | has "s3cret-pass" && leaked=1
    sleep 0.02
  done
  wait "$pid" || true
  [[ $leaked == 0 ]] || fail "the password is in a running img's arguments"
}

manifest_list_of_built_images_is_pulled_per_platform() {
  # Two images built here (the host's platform, and linux/arm64 from
  # scratch), a list of them, pushed with --all, read back per platform.
  local S=$WORK/s-manifest C=$WORK/manifest-ctx out
  mkdir -p "$C/amd" "$C/arm"
  printf 'FROM localhost/base:1\nRUN echo host > /arch\n' > "$C/amd/Dockerfile"
  printf 'FROM scratch\nCOPY arch /arch\n' > "$C/arm/Dockerfile"
  echo arm64 > "$C/arm/arch"
  IMG_ROOT=$S "$IMG" load -q -i "$GEN/base-docker.tar" >/dev/null || fail "load"
  IMG_ROOT=$S "$IMG" build -q -t localhost/app:amd "$C/amd" >/dev/null || fail "build of the host image"
  IMG_ROOT=$S "$IMG" build -q --platform linux/arm64 -t localhost/app:arm "$C/arm" >/dev/null || fail "build of the arm64 image"
  IMG_ROOT=$S "$IMG" manifest create localhost/multi:1 localhost/app:amd >/dev/null || fail "manifest create"
  IMG_ROOT=$S "$IMG" manifest add localhost/multi:1 localhost/app:arm >/dev/null || fail "manifest add"
  IMG_ROOT=$S "$IMG" manifest annotate --variant v8 --os-features f1 localhost/multi:1 localhost/app:arm >/dev/null || fail "manifest annotate"
  out=$(IMG_ROOT=$S "$IMG" manifest inspect localhost/multi:1) || fail "manifest inspect"
  python3 - "$out" <<'PY' || fail "the list is not as made: $out"
import json, sys
v = json.loads(sys.argv[1])
plats = sorted((m["platform"]["os"], m["platform"]["architecture"], m["platform"].get("variant", "")) for m in v["manifests"])
assert plats == [("linux", "amd64", ""), ("linux", "arm64", "v8")], plats
arm = [m for m in v["manifests"] if m["platform"]["architecture"] == "arm64"][0]
assert arm["platform"]["os.features"] == ["f1"], arm
PY
  err=$(IMG_ROOT=$S "$IMG" manifest create localhost/multi:1 localhost/app:amd 2>&1) && fail "a second create of the same list succeeded"
  grep -q "exists" <<<"$err" || fail "unclear error for an existing list: $err"
  IMG_ROOT=$S "$IMG" manifest push -q --all --tls-verify=false localhost/multi:1 "$REG/test/list:1" > "$WORK/list.digest" || fail "manifest push --all"
  local raw; raw=$(skopeo inspect --raw --tls-verify=false "docker://$REG/test/list:1") || fail "skopeo cannot read the list"
  [[ "sha256:$(printf '%s' "$raw" | sha256sum | cut -d' ' -f1)" == "$(cat "$WORK/list.digest")" ]] || fail "the pushed list's digest is not the one printed"
  [[ $(skopeo --override-arch arm64 --override-variant v8 inspect --tls-verify=false "docker://$REG/test/list:1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Architecture"])') == arm64 ]] ||
    fail "skopeo --override-arch arm64 does not get the arm64 image"
  [[ $(skopeo --override-arch amd64 inspect --tls-verify=false "docker://$REG/test/list:1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Architecture"])') == amd64 ]] ||
    fail "skopeo --override-arch amd64 does not get the amd64 image"
  local P=$WORK/s-manifest-pull
  IMG_ROOT=$P "$IMG" pull -q --tls-verify=false --platform linux/arm64/v8 "$REG/test/list:1" >/dev/null || fail "img pull --platform linux/arm64"
  IMG_ROOT=$P "$IMG" export "$REG/test/list:1" -o "$WORK/arm.tar" || fail "export of the pulled arm64 image"
  [[ $(tar -xOf "$WORK/arm.tar" arch) == arm64 ]] || fail "the pulled image is not the arm64 one"
  IMG_ROOT=$P "$IMG" pull -q --tls-verify=false "$REG/test/list:1" >/dev/null || fail "img pull for the host"
  IMG_ROOT=$P "$IMG" export "$REG/test/list:1" -o "$WORK/amd.tar" || fail "export of the pulled host image"
  [[ $(tar -xOf "$WORK/amd.tar" arch) == host ]] || fail "the pulled image is not the host one"
  # img build -o docker:// pushes what it built; a list in another store
  # takes that image from the registry (not in its store) and is pushed
  # without --all beside it.
  IMG_ROOT=$S "$IMG" build -q --tls-verify=false -o "docker://$REG/test/single:1" "$C/amd" >/dev/null || fail "build -o docker://"
  local single; single=sha256:$(skopeo inspect --raw --tls-verify=false "docker://$REG/test/single:1" | sha256sum | cut -d' ' -f1) ||
    fail "skopeo cannot read the image build -o docker:// pushed"
  local R=$WORK/s-manifest-remote
  IMG_ROOT=$R "$IMG" manifest create --tls-verify=false localhost/remote:1 "$REG/test/single:1" >/dev/null || fail "manifest create of a registry's image"
  IMG_ROOT=$R "$IMG" manifest inspect localhost/remote:1 | has "\"$single\"" || fail "the list does not name the registry's manifest $single"
  IMG_ROOT=$R "$IMG" manifest push -q --tls-verify=false localhost/remote:1 "$REG/test/single:list" >/dev/null || fail "manifest push of a list of a registry's image"
  skopeo inspect --raw --tls-verify=false "docker://$REG/test/single:list" | has "\"$single\"" || fail "the pushed list does not name $single"
  [[ -z $(IMG_ROOT=$R "$IMG" images -q) ]] || fail "a list of a registry's image stored images"
  # Taking an entry out, then the list.
  IMG_ROOT=$S "$IMG" manifest rm localhost/multi:1 localhost/app:arm || fail "manifest rm of an entry"
  [[ $(IMG_ROOT=$S "$IMG" manifest inspect localhost/multi:1 | grep -c '"digest"') == 1 ]] || fail "the entry is still listed"
  IMG_ROOT=$S "$IMG" manifest rm localhost/multi:1 || fail "manifest rm of the list"
  err=$(IMG_ROOT=$S "$IMG" manifest inspect localhost/multi:1 2>&1) && fail "the removed list is still there"
  grep -q "no such manifest list" <<<"$err" || fail "unclear error for a missing list: $err"
}

# --limit-rate: a ~6 MiB image of one incompressible layer, imported into
# $WORK/store-rate-src (never pulled, so that a push of it uploads every
# byte) and pushed once to $REG as rate/img:1.
make_rate_image() {
  [[ -f $WORK/rate-pushed ]] && return 0
  local s=$WORK/store-rate-src
  python3 - "$WORK/rate-root.tar" <<'PY' || return 1
import io, random, sys, tarfile
with tarfile.open(sys.argv[1], "w") as t:
    data = random.Random(11).randbytes(6 << 20)
    i = tarfile.TarInfo("payload")
    i.size, i.mode, i.mtime = len(data), 0o644, 1700000000
    t.addfile(i, io.BytesIO(data))
PY
  IMG_ROOT=$s "$IMG" import "$WORK/rate-root.tar" localhost/rate:src >/dev/null &&
    IMG_ROOT=$s "$IMG" push -q --tls-verify=false localhost/rate:src "$REG/rate/img:1" &&
    touch "$WORK/rate-pushed"
}

# image_bytes REF: the bytes of the manifest, config and layers of REF.
image_bytes() {
  skopeo inspect --raw --tls-verify=false "docker://$1" |
    python3 -c 'import json,sys; b=sys.stdin.buffer.read(); m=json.loads(b); print(len(b) + m["config"]["size"] + sum(l["size"] for l in m["layers"]))'
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# paced WHAT MS BYTES RATE: moving BYTES took MS ms: at least 95% of what
# RATE bytes a second allows (less the bucket's burst of a tenth of a
# second), and, loosely (a loaded machine is slow), not over 3 times that
# and 5 s.
paced() {
  local what=$1 ms=$2 bytes=$3 rate=$4
  local want=$(( (bytes - rate / 10) * 1000 / rate ))
  echo "# $what: $bytes bytes in $ms ms at a cap of $rate B/s: $(( bytes * 1000 / (ms > 0 ? ms : 1) )) B/s" >&2
  (( ms * 100 >= want * 95 )) || fail "$what took $ms ms, under 95% of the $want ms a cap of $rate B/s allows"
  (( ms <= want * 3 + 5000 )) || fail "$what took $ms ms, far over the $want ms a cap of $rate B/s asks"
}

# A pull and a push of the image with --limit-rate 500k (12 s each) take as
# long as the cap says; the pulled image is whole. The push is of the
# pulled image (its layer sent as stored, nothing compressed on the way)
# to another registry (which cannot mount the blobs from elsewhere).
limit_rate_paces_pull_and_push() {
  make_rate_image || fail "making the image"
  local bytes t0 ms dest=$MIRROR/rate/pushed-$RANDOM:1
  bytes=$(image_bytes "$REG/rate/img:1") || fail "skopeo inspect"
  (( bytes > 6000000 )) || fail "the image is only $bytes bytes"
  t0=$(now_ms)
  "$IMG" pull -q --tls-verify=false --limit-rate 500k "$REG/rate/img:1" >/dev/null || fail "pull --limit-rate"
  paced "pull --limit-rate 500k" $(( $(now_ms) - t0 )) "$bytes" $((500 << 10))
  "$IMG" fsck >/dev/null || fail "fsck after the paced pull"
  t0=$(now_ms)
  "$IMG" push -q --tls-verify=false --limit-rate 500k "$REG/rate/img:1" "$dest" ||
    fail "push --limit-rate"
  ms=$(( $(now_ms) - t0 ))
  bytes=$(image_bytes "$dest") || fail "skopeo inspect of the pushed image"
  paced "push --limit-rate 500k" "$ms" "$bytes" $((500 << 10))
  [[ $("$IMG" inspect -f '{{.Digest}}' "$REG/rate/img:1") == \
     "$(skopeo inspect --tls-verify=false "docker://$dest" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Digest"])')" ]] ||
    fail "the paced push changed the manifest"
}

# The store's limit-rate setting caps a pull that gives none; --limit-rate
# 0 (curl's "no cap") overrides it; a bad setting or flag is refused.
store_limit_rate_applies_and_the_flag_overrides_it() {
  make_rate_image || fail "making the image"
  local bytes t0 ms zero=$WORK/store-rate-zero err
  bytes=$(image_bytes "$REG/rate/img:1") || fail "skopeo inspect"
  "$IMG" images >/dev/null && IMG_ROOT=$zero "$IMG" images >/dev/null || fail "making the stores"
  echo 'limit-rate = "2m"' > "$IMG_ROOT/config.toml"
  cp "$IMG_ROOT/config.toml" "$zero/config.toml"
  t0=$(now_ms)
  "$IMG" pull -q --tls-verify=false "$REG/rate/img:1" >/dev/null || fail "pull under the store's limit-rate"
  paced "pull under limit-rate = 2m" $(( $(now_ms) - t0 )) "$bytes" $((2 << 20))
  t0=$(now_ms)
  IMG_ROOT=$zero "$IMG" pull -q --tls-verify=false --limit-rate 0 "$REG/rate/img:1" >/dev/null || fail "pull --limit-rate 0"
  ms=$(( $(now_ms) - t0 ))
  (( ms * 2 < bytes * 1000 / (2 << 20) )) || fail "pull --limit-rate 0 took $ms ms: the store's 2m cap still held"
  err=$("$IMG" pull -q --tls-verify=false --limit-rate fast "$REG/rate/img:1" 2>&1) && fail "--limit-rate fast was accepted"
  grep -q "invalid size" <<<"$err" || fail "unclear error for --limit-rate fast: $err"
  echo 'limit-rate = "lots"' > "$zero/config.toml"
  err=$(IMG_ROOT=$zero "$IMG" pull -q --tls-verify=false "$REG/rate/img:1" 2>&1) && fail "a bad limit-rate setting was accepted"
  grep -q "config.toml" <<<"$err" || fail "the error does not name the config file: $err"
  rm -rf "$zero"
}

# img copy between registries (streamed) with --limit-rate 2m: each way
# under the cap, so the copy takes as long as the cap says.
limit_rate_paces_copy() {
  make_rate_image || fail "making the image"
  local bytes t0 dest=$MIRROR/rate/copied-$RANDOM:1
  bytes=$(image_bytes "$REG/rate/img:1") || fail "skopeo inspect"
  t0=$(now_ms)
  "$IMG" copy -q --src-tls-verify=false --dest-tls-verify=false --limit-rate 2m "docker://$REG/rate/img:1" "docker://$dest" ||
    fail "copy --limit-rate"
  paced "copy --limit-rate 2m" $(( $(now_ms) - t0 )) "$bytes" $((2 << 20))
  [[ $(image_bytes "$dest") == "$bytes" ]] || fail "the copy differs"
}

# A lazy mount with --limit-rate 256k: reading a 1 MiB file of random
# bytes fetches at least that from the registry, paced by the serving
# process; the bytes are right.
limit_rate_paces_lazy_mount_reads() {
  make_lazy_image || fail "making the eStargz image"
  local m=$WORK/rate-lazy t0 ms f0 f1
  mkdir -p "$m"
  trap "\"$IMG\" umount $m >/dev/null 2>&1" EXIT
  "$IMG" mount --tls-verify=false --limit-rate 256k "docker://$REG/lazy/big:1" "$m" >/dev/null || fail "lazy mount --limit-rate"
  f0=$(lazy_stat BytesFetched)
  t0=$(now_ms)
  cmp -s "$m/usr/lib/blob05" <(lazy_blob 5) || fail "usr/lib/blob05 read wrong"
  ms=$(( $(now_ms) - t0 ))
  f1=$(lazy_stat BytesFetched)
  (( f1 - f0 >= 1 << 20 )) || fail "reading 1 MiB fetched only $(( f1 - f0 )) bytes"
  paced "lazy read --limit-rate 256k" "$ms" $(( 1 << 20 )) $((256 << 10))
  "$IMG" umount "$m" >/dev/null || fail "umount"
}

CHECKS=(pull_by_tag_matches_skopeo pull_writes_the_layer_indexes_a_mount_uses pull_by_digest_and_again_is_up_to_date pulled_image_saves_and_loads_back \
  localhost_registry_needs_no_tls_verify_false missing_tag_is_a_clear_error auth_pull_needs_login tags_lists_the_repository \
  push_then_skopeo_and_podman_read_it push_again_skips_and_other_repo_mounts chunked_zstd_push_pulls_back_identical \
  podman_push_then_img_pull push_refusals_leave_nothing estargz_convert_push_is_read_by_podman_and_stargz_rules \
  push_compression_format_estargz lazy_mount_of_estargz_reads_only_what_is_read \
  lazy_mount_survives_a_registry_that_goes_away lazy_mount_refuses_a_toc_that_does_not_match \
  lazy_mount_prefetches_the_landmarked_files lazy_whole_read_coalesces_requests \
  lazy_mount_complete_ends_with_the_image_pulled zstd_chunked_convert_push_is_pulled_partially_by_podman \
  lazy_mount_of_zstd_chunked_reads_only_what_is_read lazy_mount_streams_plain_layers \
  lazy_stream_survives_a_registry_that_goes_away lazy_gzip_stream_keeps_no_uncompressed_copy \
  tls_unknown_ca_is_a_clear_error tls_pull_with_cert_dir tls_pull_with_ca_in_home_certs_d \
  tls_verify_false_allows_an_unknown_ca mtls_missing_client_certificate_is_a_clear_error \
  mtls_pull_with_client_certificate_in_certs_d mtls_pull_with_isulad_file_names \
  mtls_client_certificate_without_key_is_an_error token_pull_needs_login token_login_then_pull token_pull_with_creds \
  push_over_mtls_and_token_auth remote_inspect_matches_skopeo_and_stores_nothing search_lists_matching_repositories \
  mirror_serves_then_origin_is_the_fallback digest_only_mirror_is_skipped_for_tags blocked_registry_is_refused \
  short_names_use_the_search_registries isulad_daemon_json_mirrors_and_insecure \
  copy_between_registries_streams_without_a_store copy_all_copies_a_multi_platform_index copy_through_archives_and_the_store \
  pull_all_tags_pulls_every_tag secrets_never_leak manifest_list_of_built_images_is_pulled_per_platform \
  limit_rate_paces_pull_and_push store_limit_rate_applies_and_the_flag_overrides_it limit_rate_paces_copy \
  limit_rate_paces_lazy_mount_reads)
# Each check has its own store and runs without set -e: it fails where it
# says so.
before_check() { export IMG_ROOT=$WORK/store-$name; }
CHECK_ERREXIT=0
run_checks "$@"
