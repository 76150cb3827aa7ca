#!/usr/bin/env bash
# The S3 client (src/s3) against a real store: a 3-node Garage cluster on
# 127.0.0.1 (tests/support/garage.sh), the ignored tests of src/s3/live.rs
# run one at a time (one of them stops and restarts a node), then the
# cluster is stopped and its directory removed.
#
# Usage: tests/s3_garage.sh [CARGO TEST ARGS...]   (e.g. --release)
# Garage comes from scripts/install-garage.sh (built once, ~15 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
GARAGE_BIN=$(scripts/install-garage.sh)
export GARAGE_BIN
source tests/support/garage.sh
dir=$(mktemp -d "${TMPDIR:-/tmp}/img-garage.XXXXXX")
trap 'garage_stop; rm -rf "$dir"' EXIT
t0=$SECONDS
garage_start "$dir/cluster" 3
echo "# garage cluster of 3 up in $((SECONDS - t0)) s: $GARAGE_S3_ENDPOINTS"
cargo test "$@" --lib s3::live -- --ignored --test-threads=1
