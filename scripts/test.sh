#!/usr/bin/env bash
# Runs all the tests on a fresh Debian 12 machine (as root): installs what
# they need, then the Rust unit and integration tests, the release build,
# the test images, the interop suite against podman, skopeo and umoci, the
# registry suite against a real docker-registry, and the mount suite on the
# kernel's FUSE (it adds and removes a user, imgtest, for a rootless mount),
# the build suite against buildah, the img serve suite with img, skopeo and
# podman as clients, the seeds suite (the examples of isula-build's, isula's
# and docker's documents, typed as written), the clients suite with
# docker 20.10 and containerd's ctr on daemons of its own, the trust
# suite (signature policies and signing beside skopeo, podman and gpg),
# the disk suite (a store kept within its max-size on a small tmpfs),
# the cluster suite (img serve on a 3-node Garage S3 cluster and
# PostgreSQL behind haproxy; Garage is built once with cargo and kept in
# /var/cache/img-test, scripts/install-garage.sh), and the edge suite (the
# static arm64 and armv7 edge builds under qemu-user, scripts/release.sh).
#
# Usage: scripts/test.sh [--long] [--suite NAME] [--only CHECK]
#   --long         also the long tests (exported as IMG_TEST_LONG=1)
#   --suite NAME   one suite: cargo (the Rust tests), interop, registry, mount,
#                  hostile, build, serve, seeds, clients, trust, disk, cluster or edge
#   --only CHECK   with --suite, the checks (or Rust tests) whose name holds CHECK
# Exits non-zero if any step failed; every step runs even after a failure.
set -uo pipefail
cd "$(dirname "$0")/.."

SUITE="" ONLY=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --long) export IMG_TEST_LONG=1 ;;
    --suite) SUITE=${2:?--suite needs a name}; shift ;;
    --only) ONLY+=("${2:?--only needs a check name}"); shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
SUITES=(interop registry mount hostile build serve seeds clients trust disk cluster edge)
case " cargo ${SUITES[*]} " in *" ${SUITE:-cargo} "*) ;; *) echo "test.sh: unknown suite $SUITE (cargo ${SUITES[*]})" >&2; exit 2 ;; esac
[[ ${#ONLY[@]} == 0 || -n $SUITE ]] || { echo "test.sh: --only goes with --suite" >&2; exit 2; }
# wanted NAME: whether the run includes suite NAME
wanted() { [[ -z $SUITE || $SUITE == "$1" ]]; }

START=$SECONDS
# What the temporary directories hold before: every test cleans up what it
# made, and the run checks that it did.
temp_entries() { ls -d "${TMPDIR:-/tmp}"/img-* /var/tmp/img-* 2>/dev/null | grep -v "^$LOGS\$" | sort; }
LOGS=""
BEFORE=$(temp_entries)
LOGS=$(mktemp -d /tmp/img-test.XXXXXX)
trap 'rm -rf "$LOGS"' EXIT
results=() failures=0

step() { # step NAME COMMAND...: run, time and record one step
  local name=$1 t0=$SECONDS; shift
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$LOGS/$name.log"
  local rc=${PIPESTATUS[0]}
  local line="$name: $([[ $rc == 0 ]] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - t0))s"
  results+=("$line")
  [[ $rc == 0 ]] || failures=$((failures + 1))
  echo "=== $line"
  return "$rc"
}

install_packages() {
  local want=(podman skopeo umoci runc busybox-static fuse3 squashfs-tools squashfs-tools-ng xz-utils zstd
              python3 hyperfine docker-registry apache2-utils curl openssl procps attr buildah
              chromium-headless-shell uidmap runc docker.io containerd gpg gpg-agent time python3-cryptography python3-nacl
              haproxy postgresql qemu-user-static binutils python3-pip) missing=()
  for p in "${want[@]}"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep '^ii' > /dev/null || missing+=("$p")
  done
  if [[ ${#missing[@]} == 0 ]]; then
    echo "all packages are installed"
    return 0
  fi
  [[ $(id -u) == 0 ]] || { echo "need root to install: ${missing[*]}"; return 1; }
  echo "installing: ${missing[*]}"
  # Keep packages (docker-registry) from starting services.
  local policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq &&
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >"$LOGS/apt.log" 2>&1
  local rc=$?
  [[ $rc == 0 ]] || tail -n 30 "$LOGS/apt.log"
  [[ -z $policy ]] || rm -f "$policy"
  return $rc
}

# cargo comes from rustup in ~/.cargo/bin on these machines.
if ! command -v cargo >/dev/null && [[ -x $HOME/.cargo/bin/cargo ]]; then
  export PATH=$HOME/.cargo/bin:$PATH
fi

not_run() { results+=("$1: FAILED (not run: $2)"); failures=$((failures + 1)); }

step packages install_packages
built=0
if command -v cargo >/dev/null; then
  if wanted cargo; then step cargo-test cargo test --release --workspace -- "${ONLY[@]}"; fi
  if [[ $SUITE != cargo ]]; then step cargo-build cargo build --release && built=1; fi
else
  echo "cargo is not on PATH and not in ~/.cargo/bin (install it with rustup)"
  not_run cargo "cargo not found"
fi
[[ $SUITE == cargo ]] || step testdata scripts/make-testdata.sh
# Garage (the cluster suite's S3 store): built once, then reused.
if wanted cluster; then
  if step garage scripts/install-garage.sh; then
    GARAGE_BIN=$(tail -n 1 "$LOGS/garage.log")
    export GARAGE_BIN
  fi
fi
# The ARM binaries the edge suite runs (a quicker profile than a release's).
EDGE_TARGETS=(aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf)
cross=0
if wanted edge && [[ $built == 1 ]]; then
  step cross-build scripts/release.sh --profile cross-test --variant edge --no-size-check \
    "${EDGE_TARGETS[@]}" && cross=1
fi
for suite in "${SUITES[@]}"; do
  wanted "$suite" || continue
  if [[ $suite == edge && $cross != 1 ]]; then
    not_run edge "no ARM build"
  elif [[ $built == 1 ]]; then   # never test a stale binary
    step "$suite" env IMG="${CARGO_TARGET_DIR:-$PWD/target}/release/img" "tests/$suite.sh" "${ONLY[@]}"
  else
    not_run "$suite" "no release build"
  fi
done

# Leave the machine as it was: no podman, registry or mount server left running.
# (pgrep matches names of at most 15 characters: one short pattern each)
left=$(pgrep -a 'podman|conmon'; pgrep -a 'registry'; pgrep -a 'dockerd|containerd')
[[ -z $left ]] || printf '%s\nwarning: processes above still running\n' "$left"
pgrep -af -- '__serve-mount' && echo "warning: img mount servers above still running"
pgrep -af -- 'img serve' && echo "warning: img serve processes above still running"

# Nothing the tests made is left in the temporary directories.
leftovers() {
  local after new
  after=$(temp_entries)
  new=$(comm -13 <(printf '%s\n' "$BEFORE") <(printf '%s\n' "$after") | grep . || true)
  [[ -z $new ]] && { echo "the tests left nothing in the temporary directories"; return 0; }
  printf 'left by the tests:\n%s\n' "$new"
  return 1
}
step leftovers leftovers

# Totals over the cargo test runs and the interop, registry, mount and hostile suites.
passed=0 failed=0
if [[ -f $LOGS/cargo-test.log ]]; then
  while read -r p f; do passed=$((passed + p)); failed=$((failed + f)); done < <(
    sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$LOGS/cargo-test.log")
fi
for suite in "${SUITES[@]}"; do
  if [[ -f $LOGS/$suite.log ]]; then
    read -r p f < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$LOGS/$suite.log" | tail -1) &&
      { passed=$((passed + p)); failed=$((failed + f)); }
  fi
done

echo
echo "=== summary ($((SECONDS - START))s)"
printf '  %s\n' "${results[@]}"
echo "total: $passed passed, $failed failed"
[[ $failures == 0 && $failed == 0 ]]
