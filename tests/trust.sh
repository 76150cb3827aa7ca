#!/usr/bin/env bash
# Image trust with real peers: skopeo 1.9 and podman 4.3 sign and verify
# GPG simple signatures beside img, with OpenPGP keys made here by gpg;
# Debian's docker-registry holds the images and a lookaside directory of the
# suite's the simple signatures. Debian builds skopeo and podman with
# sigstore disabled ("Debian-local change: sigstore disabled": they neither
# make nor find sigstore signatures), so sigstore signatures, attachments
# (sha256-<hex>.sig tags) made with img's keys, are checked both ways
# against tests/support/cosign_peer.py, an independent signer and verifier
# on PyCA cryptography and libsodium. img serve keeps simple signatures
# through its API extension, which skopeo reads. Policies and registries.d files are the suite's own,
# passed to every tool (--signature-policy/--policy, --registries.d, a
# private HOME for podman): nothing is read from or written to /etc or the
# user's configuration.
#
# Usage: IMG=target/release/img tests/trust.sh [CHECK-NAME-SUBSTRING...]
set -uo pipefail
cd "$(dirname "$0")/.."
IMG=$(realpath "${IMG:-target/release/img}")
GEN=$PWD/testdata/gen
WORK=$(mktemp -d "${TMPDIR:-/tmp}/img-trust.XXXXXX")
LOG_NOTES=1
source tests/lib.sh
need docker-registry skopeo podman gpg gpg-agent curl python3 /usr/bin/python3
/usr/bin/python3 -c 'import nacl.secret, cryptography' 2>/dev/null ||
  { echo "not ok - tools: python3-nacl and python3-cryptography are missing"; echo "0 passed, 1 failed"; exit 1; }
COSIGN_PEER=$PWD/tests/support/cosign_peer.py
[[ -f $GEN/base-oci.tar && -f $GEN/layered-oci.tar && -f $GEN/base-docker.tar ]] ||
  { echo "not ok - testdata: run scripts/make-testdata.sh"; exit 1; }

export GNUPGHOME=$WORK/gnupg
mkdir -m 700 -p "$GNUPGHOME"

RUNS=$(mktemp -d /tmp/img-run.XXXXXX)   # podman wants a runroot under 50 characters
# A private podman store and HOME: pm DIR ARGS...
pm() {
  local s=$1; shift
  local run; run=$RUNS/$(echo "$s" | cksum | cut -d' ' -f1)
  HOME=$WORK/podman-home podman --root "$s/root" --runroot "$run" --tmpdir "$s/tmp" --storage-driver vfs \
    --events-backend file --cgroup-manager cgroupfs "$@"
}
suite_cleanup() { gpgconf --kill all >/dev/null 2>&1 || true; rm -rf "$RUNS"; }

# Two OpenPGP keys, A (with a passphrase) and B (without); their public
# keyrings a.gpg and b.gpg; A's passphrase in a file.
echo "a-secret" > "$WORK/a.pass"
gpg --batch --pinentry-mode loopback --passphrase a-secret --quick-gen-key "img test A <a@example.com>" ed25519 sign never \
  >"$WORK/gpg.log" 2>&1 &&
  gpg --batch --pinentry-mode loopback --passphrase '' --quick-gen-key "img test B <b@example.com>" rsa2048 sign never \
    >>"$WORK/gpg.log" 2>&1 || { echo "not ok - gpg keys: $(tail -3 "$WORK/gpg.log")"; exit 1; }
fpr() { gpg --with-colons --list-secret-keys "$1" | awk -F: '/^fpr/ {print $10; exit}'; }
FA=$(fpr a@example.com) FB=$(fpr b@example.com)
gpg --export "$FA" > "$WORK/a.gpg" && gpg --export "$FB" > "$WORK/b.gpg"

# Two sigstore key pairs made by img.
echo "s-secret" > "$WORK/s.pass"
"$IMG" image generate-sigstore-key --output-prefix "$WORK/s1" --passphrase-file "$WORK/s.pass" 2>/dev/null &&
  "$IMG" image generate-sigstore-key --output-prefix "$WORK/s2" --passphrase-file "$WORK/s.pass" 2>/dev/null ||
  { echo "not ok - img image generate-sigstore-key"; exit 1; }

start_docker_registry plain REG || { echo "not ok - registry"; exit 1; }

# Where signatures live, for every tool: the suite's lookaside directory
# and sigstore attachments; podman reads its HOME's copy.
RD=$WORK/registries.d
mkdir -p "$RD" "$WORK/podman-home/.config/containers"
cat > "$RD/default.yaml" <<EOF
default-docker:
  lookaside: file://$WORK/sigstore
  lookaside-staging: file://$WORK/sigstore
  use-sigstore-attachments: true
EOF
cp -r "$RD" "$WORK/podman-home/.config/containers/registries.d"

# policy FILE SCOPE REQUIREMENT-JSON: a policy rejecting everything but
# SCOPE (a docker scope), which gets REQUIREMENT.
policy() {
  cat > "$1" <<EOF
{
  "default": [{"type": "reject"}],
  "transports": {
    "docker": {"$2": [$3]}
  }
}
EOF
}
SIGNED_A='{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "'$WORK/a.gpg'"}'
SIGSTORE_1='{"type": "sigstoreSigned", "keyPath": "'$WORK/s1.pub'"}'

sk() { skopeo --registries.d "$RD" "$@"; }
# skopeo copy of a test image to the registry, without checking any policy.
put() { sk --insecure-policy copy -q --dest-tls-verify=false "$@"; }

# The store's state: its images and blob files.
state() { "$IMG" images -q --no-trunc 2>/dev/null | sort; find "$IMG_ROOT" -path '*/blobs/*' -type f 2>/dev/null | sort; }

# img pull that must be refused, leaving the store as it was: refused WHY REF ARGS...
refused() {
  local why=$1 ref=$2; shift 2
  local before; before=$(state)
  if "$IMG" pull --tls-verify=false --registries.d "$RD" "$@" "$ref" >"$T/out" 2>&1; then
    fail "$why: the pull of $ref was accepted: $(cat "$T/out")"
  fi
  has -i -E "signature|policy|reject" "$T/out" || fail "$why: the error does not say why: $(cat "$T/out")"
  [[ $(state) == "$before" ]] || fail "$why: the refused pull changed the store"
  echo "# $why: $(tail -1 "$T/out")"
}

# skopeo signs with a GPG key into the registry (lookaside); img pulls
# under signedBy A: accepted, and the signature is kept and verifiable.
check_skopeo_gpg_signature_is_accepted_by_img() {
  export IMG_ROOT=$T/store
  put --sign-by "$FA" --sign-passphrase-file "$WORK/a.pass" "oci-archive:$GEN/base-oci.tar" "docker://$REG/test/gpg:1" \
    || fail "skopeo could not sign"
  ls "$WORK"/sigstore/test/gpg@sha256=*/signature-1 >/dev/null || fail "skopeo wrote no lookaside signature"
  policy "$T/p.json" "$REG/test" "$SIGNED_A"
  "$IMG" pull --tls-verify=false --signature-policy "$T/p.json" --registries.d "$RD" "$REG/test/gpg:1" >"$T/out" 2>&1 ||
    fail "img refused a correctly signed image: $(cat "$T/out")"
  "$IMG" image verify --signature-policy "$T/p.json" "$REG/test/gpg:1" >"$T/v" 2>&1 || fail "verify: $(cat "$T/v")"
  has -i "$FA" "$T/v" || fail "verify does not name the signer: $(cat "$T/v")"
}

# The same requirement refuses: an unsigned image, one signed by another
# key, one signed for another identity, one whose signature is of another
# digest; the store is left as it was each time.
check_wrongly_signed_images_are_refused_and_nothing_stored() {
  export IMG_ROOT=$T/store
  "$IMG" load -q -i "$GEN/base-docker.tar" >/dev/null   # something in the store already
  policy "$T/p.json" "$REG/test" "$SIGNED_A"
  put "oci-archive:$GEN/base-oci.tar" "docker://$REG/test/unsigned:1"
  refused "unsigned" "$REG/test/unsigned:1" --signature-policy "$T/p.json"
  put --sign-by "$FB" "oci-archive:$GEN/base-oci.tar" "docker://$REG/test/otherkey:1"
  refused "signed by another key" "$REG/test/otherkey:1" --signature-policy "$T/p.json"
  put --sign-by "$FA" --sign-passphrase-file "$WORK/a.pass" --sign-identity "$REG/test/somethingelse:1" \
    "oci-archive:$GEN/base-oci.tar" "docker://$REG/test/otherid:1"
  refused "signed for another identity" "$REG/test/otherid:1" --signature-policy "$T/p.json"
  # A valid signature, by A for this name, of another image's digest.
  put --sign-by "$FA" --sign-passphrase-file "$WORK/a.pass" "oci-archive:$GEN/layered-oci.tar" \
    "docker://$REG/test/swapped:1"
  local d; d=$(ls -d "$WORK"/sigstore/test/swapped@sha256=*)
  put "oci-archive:$GEN/base-oci.tar" "docker://$REG/test/swapped:1"
  local now; now=$(sk inspect --tls-verify=false --format '{{.Digest}}' "docker://$REG/test/swapped:1")
  mkdir -p "$WORK/sigstore/test/swapped@sha256=${now#sha256:}"
  cp "$d/signature-1" "$WORK/sigstore/test/swapped@sha256=${now#sha256:}/signature-1"
  refused "a signature of another digest" "$REG/test/swapped:1" --signature-policy "$T/p.json"
  # A scope the policy rejects outright.
  put "oci-archive:$GEN/base-oci.tar" "docker://$REG/other/unsigned:1"
  refused "rejected scope" "$REG/other/unsigned:1" --signature-policy "$T/p.json"
}

# A sigstore signature made by an independent signer with img's key
# format (an attachment): img pulls under sigstoreSigned with its public
# key, and refuses under the other key or without a signature.
check_independent_sigstore_signature_is_accepted_by_img() {
  export IMG_ROOT=$T/store
  put "oci-archive:$GEN/base-oci.tar" "docker://$REG/test/sigstore:1"
  put "oci-archive:$GEN/layered-oci.tar" "docker://$REG/test/sigstore-none:1"
  /usr/bin/python3 "$COSIGN_PEER" sign "$WORK/s1.key" "$WORK/s.pass" "$REG" test/sigstore 1 "$REG/test/sigstore:1" \
    2>"$T/err" || fail "the independent signer could not use img's key: $(cat "$T/err")"
  policy "$T/p.json" "$REG/test" "$SIGSTORE_1"
  "$IMG" pull --tls-verify=false --signature-policy "$T/p.json" --registries.d "$RD" "$REG/test/sigstore:1" \
    >"$T/out" 2>&1 || fail "img refused a correctly signed image: $(cat "$T/out")"
  policy "$T/p2.json" "$REG/test" '{"type": "sigstoreSigned", "keyPath": "'$WORK/s2.pub'"}'
  export IMG_ROOT=$T/store2
  refused "sigstore signature by another key" "$REG/test/sigstore:1" --signature-policy "$T/p2.json"
  refused "no sigstore signature" "$REG/test/sigstore-none:1" --signature-policy "$T/p.json"
}

# img signs on push (GPG and sigstore); skopeo and podman accept its GPG
# signature under a policy requiring that key, the independent verifier its
# sigstore one; a tampered signature is refused by every one of them.
check_img_signatures_are_accepted_by_skopeo_and_podman() {
  export IMG_ROOT=$T/store
  "$IMG" load -q -i "$GEN/base-docker.tar" >/dev/null
  "$IMG" push --tls-verify=false --registries.d "$RD" --sign-by "$FA" --sign-passphrase-file "$WORK/a.pass" \
    localhost/base:1 "$REG/signed/gpg:1" >"$T/out" 2>&1 || fail "img push --sign-by: $(cat "$T/out")"
  "$IMG" push --tls-verify=false --registries.d "$RD" --sign-by-sigstore-private-key "$WORK/s1.key" \
    --sign-passphrase-file "$WORK/s.pass" localhost/base:1 "$REG/signed/sigstore:1" >"$T/out" 2>&1 ||
    fail "img push --sign-by-sigstore-private-key: $(cat "$T/out")"
  policy "$T/gpg.json" "$REG/signed" "$SIGNED_A"
  policy "$T/sigstore.json" "$REG/signed" "$SIGSTORE_1"
  sk --policy "$T/gpg.json" copy -q --src-tls-verify=false "docker://$REG/signed/gpg:1" "dir:$T/d1" 2>"$T/err" ||
    fail "skopeo refused img's GPG signature: $(cat "$T/err")"
  /usr/bin/python3 "$COSIGN_PEER" verify "$WORK/s1.pub" "$REG" signed/sigstore 1 "$REG/signed/sigstore:1" >/dev/null 2>"$T/err" ||
    fail "the independent verifier refused img's sigstore signature: $(cat "$T/err")"
  if /usr/bin/python3 "$COSIGN_PEER" verify "$WORK/s2.pub" "$REG" signed/sigstore 1 "$REG/signed/sigstore:1" >/dev/null 2>&1; then
    fail "the independent verifier accepted img's sigstore signature under another key"
  fi
  pm "$T/pm" pull -q --tls-verify=false --signature-policy "$T/gpg.json" "$REG/signed/gpg:1" >/dev/null 2>"$T/err" ||
    fail "podman refused img's GPG signature: $(cat "$T/err")"
  # Tampered: one byte of the simple signature changed.
  local f; f=$(ls "$WORK"/sigstore/signed/gpg@sha256=*/signature-1)
  python3 - "$f" <<'EOF'
import sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[len(b) // 2] ^= 0x01; open(p, 'wb').write(b)
EOF
  if sk --policy "$T/gpg.json" copy -q --src-tls-verify=false "docker://$REG/signed/gpg:1" "dir:$T/d3" 2>"$T/err"; then
    fail "skopeo accepted a tampered signature"
  fi
  if pm "$T/pm2" pull -q --tls-verify=false --signature-policy "$T/gpg.json" "$REG/signed/gpg:1" >/dev/null 2>"$T/err"; then
    fail "podman accepted a tampered signature"
  fi
  export IMG_ROOT=$T/store2
  refused "tampered signature" "$REG/signed/gpg:1" --signature-policy "$T/gpg.json"
}

# A policy written by `podman image trust set` is read and obeyed by img;
# img's own `image trust set` writes one podman reads the same way.
check_podman_trust_set_policy_is_obeyed() {
  export IMG_ROOT=$T/store
  put --sign-by "$FA" --sign-passphrase-file "$WORK/a.pass" "oci-archive:$GEN/base-oci.tar" "docker://$REG/test/gpg:1"
  put "oci-archive:$GEN/base-oci.tar" "docker://$REG/test/unsigned:1"
  echo '{"default": [{"type": "insecureAcceptAnything"}]}' > "$T/p.json"
  pm "$T/pm" image trust set --policypath "$T/p.json" -t signedBy -f "$WORK/a.gpg" "$REG/test" 2>"$T/err" ||
    fail "podman image trust set: $(cat "$T/err")"
  pm "$T/pm" image trust set --policypath "$T/p.json" -t reject "$REG/other" 2>"$T/err" ||
    fail "podman image trust set -t reject: $(cat "$T/err")"
  "$IMG" pull -q --tls-verify=false --signature-policy "$T/p.json" --registries.d "$RD" "$REG/test/gpg:1" >"$T/out" 2>&1 ||
    fail "img refused a signed image under podman's policy: $(cat "$T/out")"
  put "oci-archive:$GEN/base-oci.tar" "docker://$REG/other/x:1"
  refused "rejected by podman's policy" "$REG/other/x:1" --signature-policy "$T/p.json"
  refused "unsigned under podman's policy" "$REG/test/unsigned:1" --signature-policy "$T/p.json"
  "$IMG" image trust show --policypath "$T/p.json" > "$T/show" || fail "trust show"
  has -E "^repository +$REG/test +signed +$WORK/a.gpg" "$T/show" || fail "trust show: $(cat "$T/show")"
  has -E "^repository +$REG/other +reject" "$T/show" || fail "trust show: $(cat "$T/show")"
  # img's set, read by podman.
  "$IMG" image trust set --policypath "$T/img.json" -t signedBy -f "$WORK/a.gpg" "$REG/test" 2>"$T/err" ||
    fail "img image trust set: $(cat "$T/err")"
  "$IMG" image trust set --policypath "$T/img.json" -t reject default 2>"$T/err" || fail "img image trust set default"
  pm "$T/pm" image trust show --policypath "$T/img.json" > "$T/pshow" 2>&1 || fail "podman cannot read img's policy: $(cat "$T/pshow")"
  pm "$T/pm" pull -q --tls-verify=false --signature-policy "$T/img.json" "$REG/test/gpg:1" >/dev/null 2>"$T/err" ||
    fail "podman refused under img's policy: $(cat "$T/err")"
  if pm "$T/pm" pull -q --tls-verify=false --signature-policy "$T/img.json" "$REG/test/unsigned:1" >/dev/null 2>&1; then
    fail "podman accepted what img's policy rejects"
  fi
}

# Loads, lazy mounts and build's FROM obey the policy too.
check_load_mount_and_build_obey_the_policy() {
  export IMG_ROOT=$T/store
  cat > "$T/p.json" <<EOF
{"default": [{"type": "reject"}],
 "transports": {"docker-archive": {"": [{"type": "insecureAcceptAnything"}]},
                "docker": {"$REG/test/gpg": [$SIGNED_A]}}}
EOF
  local before; before=$(state)
  if "$IMG" load -i "$GEN/base-oci.tar" --signature-policy "$T/p.json" >"$T/out" 2>&1; then
    fail "load of an oci-archive the policy rejects was accepted"
  fi
  has -i "reject" "$T/out" || fail "load: $(cat "$T/out")"
  [[ $(state) == "$before" ]] || fail "a refused load changed the store"
  "$IMG" load -q -i "$GEN/base-docker.tar" --signature-policy "$T/p.json" >/dev/null 2>"$T/err" ||
    fail "load of an accepted docker-archive: $(cat "$T/err")"
  before=$(state)
  if "$IMG" mount --tls-verify=false --signature-policy "$T/p.json" --registries.d "$RD" "docker://$REG/test/unsigned:1" \
    "$T/mnt" >"$T/out" 2>&1; then
    MOUNTS+=("$T/mnt")
    fail "a lazy mount of a rejected image was made"
  fi
  [[ $(state) == "$before" ]] || fail "a refused mount changed the store"
  put "oci-archive:$GEN/base-oci.tar" "docker://$REG/test/unsigned:1"
  mkdir -p "$T/ctx" && printf 'FROM %s/test/unsigned:1\nRUN true\n' "$REG" > "$T/ctx/Dockerfile"
  if "$IMG" build --tls-verify=false --signature-policy "$T/p.json" --registries.d "$RD" -t x "$T/ctx" >"$T/out" 2>&1; then
    fail "a build FROM a rejected image was accepted"
  fi
  has -i "signature\|reject" "$T/out" || fail "build: $(tail -3 "$T/out")"
}

# img serve keeps simple signatures (API extension) and sigstore
# attachments; skopeo reads both from it under a policy requiring them.
check_serve_keeps_and_serves_signatures() {
  export IMG_ROOT=$T/store
  "$IMG" load -q -i "$GEN/base-docker.tar" >/dev/null
  local port; port=$(free_port)
  "$IMG" serve --listen "127.0.0.1:$port" --open >"$T/serve.log" 2>&1 &
  PIDS+=($!)
  wait_for "http://127.0.0.1:$port/v2/" "$T/serve.log" || fail "img serve did not start"
  curl -sI "http://127.0.0.1:$port/v2/" | has -i "x-registry-supports-signatures: 1" || fail "no signature extension"
  export IMG_ROOT=$T/client
  "$IMG" load -q -i "$GEN/base-docker.tar" >/dev/null
  "$IMG" push --tls-verify=false --sign-by "$FA" --sign-passphrase-file "$WORK/a.pass" \
    localhost/base:1 "127.0.0.1:$port/team/app:1" >"$T/out" 2>&1 || fail "push --sign-by to img serve: $(cat "$T/out")"
  "$IMG" push --tls-verify=false --registries.d "$RD" --sign-by-sigstore-private-key "$WORK/s1.key" \
    --sign-passphrase-file "$WORK/s.pass" localhost/base:1 "127.0.0.1:$port/team/app:2" >"$T/out" 2>&1 ||
    fail "push --sign-by-sigstore-private-key to img serve: $(cat "$T/out")"
  policy "$T/gpg.json" "127.0.0.1:$port/team" "$SIGNED_A"
  policy "$T/sigstore.json" "127.0.0.1:$port/team" "$SIGSTORE_1"
  sk --policy "$T/gpg.json" copy -q --src-tls-verify=false \
    "docker://127.0.0.1:$port/team/app:1" "dir:$T/d1" 2>"$T/err" || fail "skopeo: $(cat "$T/err")"
  /usr/bin/python3 "$COSIGN_PEER" verify "$WORK/s1.pub" "127.0.0.1:$port" team/app 2 "127.0.0.1:$port/team/app:2" \
    >/dev/null 2>"$T/err" || fail "the independent verifier (sigstore through img serve): $(cat "$T/err")"
  export IMG_ROOT=$T/fourth
  "$IMG" pull -q --tls-verify=false --registries.d "$RD" --signature-policy "$T/sigstore.json" "127.0.0.1:$port/team/app:2" \
    >/dev/null 2>"$T/err" || fail "img pull (sigstore) from img serve: $(cat "$T/err")"
  export IMG_ROOT=$T/third
  "$IMG" pull -q --tls-verify=false --signature-policy "$T/gpg.json" "127.0.0.1:$port/team/app:1" >/dev/null 2>"$T/err" ||
    fail "img pull from img serve: $(cat "$T/err")"
}

# Hostile inputs: a 100 MB signature, invalid armour, a key file that is
# not a key, a policy with an unknown field or a missing key file: each a
# clear error naming the object, bounded memory, nothing stored.
check_hostile_signatures_keys_and_policies_are_refused() {
  export IMG_ROOT=$T/store
  put "oci-archive:$GEN/base-oci.tar" "docker://$REG/hostile/big:1"
  local now; now=$(sk inspect --tls-verify=false --format '{{.Digest}}' "docker://$REG/hostile/big:1")
  local dir="$WORK/sigstore/hostile/big@sha256=${now#sha256:}"
  mkdir -p "$dir"
  head -c 100M /dev/urandom > "$dir/signature-1"
  policy "$T/p.json" "$REG/hostile" "$SIGNED_A"
  local before; before=$(state)
  /usr/bin/time -f '%M' -o "$T/rss" "$IMG" pull --tls-verify=false --signature-policy "$T/p.json" --registries.d "$RD" \
    "$REG/hostile/big:1" >"$T/out" 2>&1 && fail "a 100 MB signature was accepted"
  has -E "over|limit|bytes" "$T/out" || fail "100 MB signature: $(cat "$T/out")"
  [[ $(state) == "$before" ]] || fail "the refused pull changed the store"
  local kb; kb=$(tail -1 "$T/rss")
  (( kb < 100000 )) || fail "reading a 100 MB signature took $kb KiB"
  echo "# 100 MB signature refused with a peak RSS of $kb KiB: $(tail -1 "$T/out")"
  # Invalid armour.
  printf -- '-----BEGIN PGP MESSAGE-----\n\n!!!! not base64 !!!!\n-----END PGP MESSAGE-----\n' > "$dir/signature-1"
  refused "invalid armour" "$REG/hostile/big:1" --signature-policy "$T/p.json"
  # A key file that is not a key.
  echo "not a key" > "$T/notakey.gpg"
  policy "$T/bad.json" "$REG/hostile" '{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "'$T/notakey.gpg'"}'
  refused "a key file that is not a key" "$REG/hostile/big:1" --signature-policy "$T/bad.json"
  has "$T/notakey.gpg" "$T/out" || fail "the error does not name the key file: $(cat "$T/out")"
  # A missing key file.
  policy "$T/missing.json" "$REG/hostile" '{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "'$T/nothere.gpg'"}'
  refused "a missing key file" "$REG/hostile/big:1" --signature-policy "$T/missing.json"
  has "$T/nothere.gpg" "$T/out" || fail "the error does not name the missing key file: $(cat "$T/out")"
  # A policy with an unknown field: refused naming the file and the line.
  printf '{\n  "default": [{"type": "insecureAcceptAnything"}],\n  "frobnicate": true\n}\n' > "$T/unknown.json"
  "$IMG" pull --tls-verify=false --signature-policy "$T/unknown.json" "$REG/hostile/big:1" >"$T/out" 2>&1 &&
    fail "a policy with an unknown field was used"
  has "$T/unknown.json:3" "$T/out" || fail "the error does not name the file and line: $(cat "$T/out")"
  [[ $(state) == "$before" ]] || fail "a refused pull changed the store"
}

# Under a policy that needs no signature, a signature that cannot be read
# (here one over the size limit) is warned about and the image comes in;
# under signedBy the same image is refused.
check_an_unreadable_signature_does_not_block_an_image_the_policy_accepts() {
  export IMG_ROOT=$T/store
  put "oci-archive:$GEN/base-oci.tar" "docker://$REG/unreadable/app:1"
  local now; now=$(sk inspect --tls-verify=false --format '{{.Digest}}' "docker://$REG/unreadable/app:1")
  mkdir -p "$WORK/sigstore/unreadable/app@sha256=${now#sha256:}"
  head -c 5M /dev/zero > "$WORK/sigstore/unreadable/app@sha256=${now#sha256:}/signature-1"
  policy "$T/p.json" "$REG/unreadable" "$SIGNED_A"
  refused "an unreadable signature under signedBy" "$REG/unreadable/app:1" --signature-policy "$T/p.json"
  echo '{"default": [{"type": "insecureAcceptAnything"}]}' > "$T/open.json"
  "$IMG" pull --tls-verify=false --signature-policy "$T/open.json" --registries.d "$RD" "$REG/unreadable/app:1" \
    >"$T/out" 2>&1 || fail "an unreadable signature blocked an image the policy accepts anyway: $(cat "$T/out")"
  has "warning: reading the signatures" "$T/out" || fail "no warning about the signature: $(cat "$T/out")"
  [[ -n $("$IMG" images -q "$REG/unreadable/app:1") ]] || fail "the image is not in the store"
}

run_checks "$@"
