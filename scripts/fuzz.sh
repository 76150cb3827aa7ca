#!/usr/bin/env bash
# Fuzzes every parser of untrusted bytes (img::fuzz_entry::TARGETS) with
# cargo fuzz (libFuzzer; needs a nightly toolchain and cargo-fuzz:
# rustup toolchain install nightly; cargo install cargo-fuzz), SECONDS
# seconds each, seeded from testdata/ and earlier finds. An input that
# crashes a parser is copied to testdata/fuzz/<target>/, where
# tests/fuzz_regressions.rs replays it on stable in every test run.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}; shift || true
targets=("$@")
if [[ ${#targets[@]} == 0 ]]; then
  mapfile -t targets < <(sed -n '/^pub const TARGETS/,/^];/s/^ *"\([a-z_]*\)",$/\1/p' src/fuzz_entry.rs)
fi
work=${FUZZ_DIR:-/var/tmp/img-fuzz}
mkdir -p "$work"
cargo +nightly fuzz build -O --fuzz-dir fuzz parsers >&2
bin=fuzz/target/x86_64-unknown-linux-gnu/release/parsers
for t in "${targets[@]}"; do
  corpus=$work/corpus/$t
  mkdir -p "$corpus" "$work/crashes/$t"
  # Seeds: what the repository already holds for this parser.
  case $t in
    dockerfile) cp tests/support/build_cases/*Dockerfile* "$corpus/" 2>/dev/null || true ;;
    reference) grep -v "^#" testdata/references.txt | cut -f1 | grep . | head -200 | split -l 1 - "$corpus/ref-" ;;
    layer_tar) [[ -f testdata/gen/base-rootfs.tar ]] && cp testdata/gen/base-rootfs.tar "$corpus/base.tar" ;;
    policy) cp testdata/trust/*.json "$corpus/" 2>/dev/null || true ;;
  esac
  [[ -d testdata/fuzz/$t ]] && cp testdata/fuzz/$t/* "$corpus/" 2>/dev/null || true
  echo "fuzz: $t for ${secs}s" >&2
  IMG_FUZZ_TARGET=$t "$bin" "$corpus" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 \
    -timeout=10 -artifact_prefix="$work/crashes/$t/" -print_final_stats=1 > "$work/$t.log" 2>&1 || true
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -1)
  found=$(ls "$work/crashes/$t" | wc -l)
  echo "fuzz: $t: ${runs:-?} inputs, $found crashing" >&2
  if [[ $found -gt 0 ]]; then
    mkdir -p "testdata/fuzz/$t"
    cp "$work/crashes/$t"/* "testdata/fuzz/$t/"
  fi
done
