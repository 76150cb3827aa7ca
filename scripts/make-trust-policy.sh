#!/usr/bin/env bash
# Writes testdata/trust/podman-policy.json with the real podman: a policy
# that `podman image trust set` made, which src/trust/policy.rs must read
# back as podman meant it. HOME and the policy file live in a temporary
# directory; the key file path in the output is fixed (/keys/test.gpg) so
# the fixture does not depend on where the script ran.
#
#   podman image trust set -t reject default
#   podman image trust set -t signedBy -f KEY 127.0.0.1:5000/x
#   podman image trust set -t signedBy -f KEY -f KEY2 registry.example/ns
#   podman image trust set -t accept docker.io
#
# and testdata/trust/podman-trust-show.txt, what `podman image trust show`
# prints for it (its key IDs need gpg2, so that column is empty).
#
# Usage: scripts/make-trust-policy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v podman >/dev/null || { echo "make-trust-policy: podman is missing (apt-get install podman)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/home" "$tmp/keys"
# podman checks only that the key files exist; it does not read them.
echo "not a key" >"$tmp/keys/test.gpg"
echo "not a key" >"$tmp/keys/test2.gpg"
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$tmp/policy.json"
p() { HOME="$tmp/home" podman image trust set --policypath "$tmp/policy.json" "$@"; }
p -t reject default
p -t signedBy -f "$tmp/keys/test.gpg" 127.0.0.1:5000/x
p -t signedBy -f "$tmp/keys/test.gpg" -f "$tmp/keys/test2.gpg" registry.example/ns
p -t accept docker.io
sed "s#$tmp/keys/#/keys/#g" "$tmp/policy.json" >testdata/trust/podman-policy.json
HOME="$tmp/home" podman image trust show --policypath "$tmp/policy.json" 2>/dev/null | sed "s#$tmp/keys/#/keys/#g" >testdata/trust/podman-trust-show.txt
echo "wrote testdata/trust/podman-policy.json and podman-trust-show.txt"
