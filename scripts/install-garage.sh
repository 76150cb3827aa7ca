#!/usr/bin/env bash
# Makes Garage (an S3 store, used by tests/support/garage.sh) available and
# prints the path of its binary: a 2.x `garage` on PATH if there is one, else
# ${IMG_GARAGE_CACHE:-/var/cache/img-test}/bin/garage, built there the first
# time with `cargo install garage --locked --version 2.5.0` (slow: 15 minutes
# or more on 2 cores; later runs reuse it).
#
# Usage: GARAGE_BIN=$(scripts/install-garage.sh)
set -euo pipefail
VERSION=2.5.0
CACHE=${IMG_GARAGE_CACHE:-/var/cache/img-test}

# tests/support/garage.sh speaks the 2.x command line ("garage v2.5.0" from
# a release, "garage cargo:2.5.0" from crates.io)
if bin=$(command -v garage) && "$bin" --version 2>/dev/null | grep -Eq '^garage (v|cargo:)?2\.'; then
  echo "$bin"
  exit 0
fi
if [[ -x $CACHE/bin/garage ]]; then
  echo "$CACHE/bin/garage"
  exit 0
fi
command -v cargo >/dev/null || { echo "install-garage.sh: cargo is needed to build garage $VERSION; install Rust (rustup.rs)" >&2; exit 1; }
mkdir -p "$CACHE"
echo "install-garage.sh: building garage $VERSION into $CACHE (once; this takes a while)" >&2
# The build's own target directory, removed after: only the binary is kept.
target=$(mktemp -d "${TMPDIR:-/tmp}/img-garage-build.XXXXXX")
trap 'rm -rf "$target"' EXIT
cargo install garage --locked --version "$VERSION" --root "$CACHE" --target-dir "$target" >&2
[[ -x $CACHE/bin/garage ]] || { echo "install-garage.sh: cargo install finished but $CACHE/bin/garage is not there" >&2; exit 1; }
echo "$CACHE/bin/garage"
