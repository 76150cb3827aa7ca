#!/usr/bin/env bash
# Runs all the tests on a fresh Debian 12 machine (as root): installs what
# they need, then the Rust unit and integration tests, the release build,
# the test images, the interop suite against podman, skopeo and umoci, the
# registry suite against a real docker-registry, and the mount suite on the
# kernel's FUSE (it adds and removes a user, imgtest, for a rootless mount),
# the build suite against buildah and the img serve suite with img, skopeo
# and podman as clients.
#
# Usage: scripts/test.sh [--long]
#   --long   also the long tests (exported as IMG_TEST_LONG=1)
# Exits non-zero if any step failed; every step runs even after a failure.
set -uo pipefail
cd "$(dirname "$0")/.."

for arg in "$@"; do
  case $arg in
    --long) export IMG_TEST_LONG=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

START=$SECONDS
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
              chromium-headless-shell) missing=()
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
    apt-get install -y -qq "${missing[@]}" </dev/null >"$LOGS/apt.log" 2>&1
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
  step cargo-test cargo test --release --workspace
  step cargo-build cargo build --release && built=1
else
  echo "cargo is not on PATH and not in ~/.cargo/bin (install it with rustup)"
  not_run cargo "cargo not found"
fi
step testdata scripts/make-testdata.sh
if [[ $built == 1 ]]; then   # never test a stale binary
  step interop env IMG="$PWD/target/release/img" tests/interop.sh
  step registry env IMG="$PWD/target/release/img" tests/registry.sh
  step mount env IMG="$PWD/target/release/img" tests/mount.sh
  step hostile env IMG="$PWD/target/release/img" tests/hostile.sh
  step build env IMG="$PWD/target/release/img" tests/build.sh
  step serve env IMG="$PWD/target/release/img" tests/serve.sh
else
  not_run interop "no release build"
  not_run registry "no release build"
  not_run mount "no release build"
  not_run hostile "no release build"
  not_run build "no release build"
  not_run serve "no release build"
fi

# Leave the machine as it was: no podman, registry or mount server left running.
# (pgrep matches names of at most 15 characters: one short pattern each)
left=$(pgrep -a 'podman|conmon'; pgrep -a 'registry')
[[ -z $left ]] || printf '%s\nwarning: processes above still running\n' "$left"
pgrep -af -- '__serve-mount' && echo "warning: img mount servers above still running"
pgrep -af -- 'img serve' && echo "warning: img serve processes above still running"

# Totals over the cargo test runs and the interop, registry, mount and hostile suites.
passed=0 failed=0
if [[ -f $LOGS/cargo-test.log ]]; then
  while read -r p f; do passed=$((passed + p)); failed=$((failed + f)); done < <(
    sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$LOGS/cargo-test.log")
fi
for suite in interop registry mount hostile build serve; do
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
