#!/usr/bin/env bash
# Builds static (musl) img binaries for x86-64, arm64 and armv7, each with
# its sha256: the full tool (default features) and the edge build
# (--no-default-features --features edge: no `img build`, no `img serve`).
# C parts (bundled SQLite, liblzma, zstd, ring) are compiled and everything
# is linked by zig (`zig cc`, from the ziglang wheel) through cargo-zigbuild;
# the first run installs what is missing (docs/edge.md).
#
# Usage: scripts/release.sh [--profile NAME] [--variant full|edge|both]
#                           [--out DIR] [--no-size-check] [TARGET...]
#   --profile NAME   cargo profile (default dist; tests/edge.sh's binaries
#                    use cross-test, quicker to build)
#   --variant V      which binaries (default both)
#   --out DIR        where the binaries and their .sha256 go
#                    (default ${CARGO_TARGET_DIR:-target}/dist/PROFILE)
#   --no-size-check  do not fail on a binary over its size limit
#   TARGET...        default: x86_64-unknown-linux-musl aarch64-unknown-linux-musl
#                    armv7-unknown-linux-musleabihf
# Size limits (stripped): full 10 MB, edge 5 MB (10,000,000 and 5,000,000 bytes).
# Prints one line per binary: name, size in bytes, sha256.
set -euo pipefail
cd "$(dirname "$0")/.."

# The versions of the tools, pinned so that every machine builds the same.
ZIGLANG_VERSION=0.17.1
ZIGBUILD_VERSION=0.24.1
FULL_LIMIT=10000000 EDGE_LIMIT=5000000

PROFILE=dist VARIANT=both OUT="" SIZE_CHECK=1 TARGETS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --profile) PROFILE=${2:?--profile needs a name}; shift ;;
    --variant) VARIANT=${2:?--variant needs full, edge or both}; shift ;;
    --out) OUT=${2:?--out needs a directory}; shift ;;
    --no-size-check) SIZE_CHECK=0 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "release.sh: unknown option $1" >&2; exit 2 ;;
    *) TARGETS+=("$1") ;;
  esac
  shift
done
case $VARIANT in full) VARIANTS=(full) ;; edge) VARIANTS=(edge) ;; both) VARIANTS=(full edge) ;;
  *) echo "release.sh: --variant takes full, edge or both, not $VARIANT" >&2; exit 2 ;; esac
[[ ${#TARGETS[@]} -gt 0 ]] ||
  TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf)
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
OUT=${OUT:-$TARGET_DIR/dist/$PROFILE}

if ! command -v cargo >/dev/null && [[ -x $HOME/.cargo/bin/cargo ]]; then
  export PATH=$HOME/.cargo/bin:$PATH
fi

# The tools: the Rust targets, zig (as the C compiler and linker) and
# cargo-zigbuild. A target whose prebuilt standard library rustup cannot
# fetch (armv7-unknown-linux-musleabihf from some mirrors) has it built
# from rust-src instead (-Zbuild-std, allowed on stable by RUSTC_BOOTSTRAP=1).
BUILD_STD=" "
install_tools() {
  local t
  for t in "${TARGETS[@]}"; do
    rustup target list --installed | grep -qx "$t" && continue
    if ! rustup target add "$t" >/dev/null 2>&1; then
      echo "release.sh: rustup has no standard library for $t here: building it from rust-src" >&2
      rustup component add rust-src >&2
      BUILD_STD+="$t "
    fi
  done
  # zig: on PATH, or Python's ziglang module (cargo-zigbuild runs
  # `python3 -m ziglang`), or the ziglang wheel (the zig release,
  # repackaged) installed in ~/.cache (pip --target: Debian's own Python
  # stays untouched).
  local zigdir=${XDG_CACHE_HOME:-$HOME/.cache}/img-release/ziglang-$ZIGLANG_VERSION
  if ! command -v zig >/dev/null && ! python3 -m ziglang version >/dev/null 2>&1; then
    if [[ ! -x $zigdir/ziglang/zig ]]; then
      python3 -m pip install --quiet --target "$zigdir" "ziglang==$ZIGLANG_VERSION" >&2
    fi
    export PATH=$zigdir/ziglang:$PATH
  fi
  if ! cargo zigbuild --version >/dev/null 2>&1; then
    cargo install --locked --quiet "cargo-zigbuild@$ZIGBUILD_VERSION" >&2
  fi
}
install_tools

# SQLite as img uses it: the index needs no full-text search, R-trees,
# JSON functions, statistics tables, extensions or deprecated calls, so the
# bundled SQLite is compiled without them (SQLite's own recommended
# options among them): about a third of its code.
export LIBSQLITE3_FLAGS="-USQLITE_ENABLE_FTS3 -USQLITE_ENABLE_FTS3_PARENTHESIS -USQLITE_ENABLE_FTS5
  -USQLITE_ENABLE_RTREE -USQLITE_ENABLE_DBSTAT_VTAB -USQLITE_ENABLE_STAT4 -USQLITE_SOUNDEX
  -USQLITE_ENABLE_LOAD_EXTENSION -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_OMIT_JSON
  -DSQLITE_OMIT_DEPRECATED -DSQLITE_OMIT_SHARED_CACHE -DSQLITE_DEFAULT_MEMSTATUS=0"

mkdir -p "$OUT"
status=0
for target in "${TARGETS[@]}"; do
  for variant in "${VARIANTS[@]}"; do
    features=()
    name=img-$target limit=$FULL_LIMIT
    if [[ $variant == edge ]]; then
      features=(--no-default-features --features edge)
      name=img-edge-$target limit=$EDGE_LIMIT
    fi
    echo "=== $name: cargo zigbuild --profile $PROFILE --target $target ${features[*]}" >&2
    std=()
    flags_var=CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<< "$target")_RUSTFLAGS
    if [[ $BUILD_STD == *" $target "* ]]; then
      std=(-Zbuild-std=std,panic_abort)
      # Without rustup's component there are no self-contained musl start
      # files (crt1.o and the rest): zig supplies them, and musl's libc.
      export "$flags_var=-Clink-self-contained=no"
    fi
    env ${std:+RUSTC_BOOTSTRAP=1} cargo zigbuild --locked --quiet --profile "$PROFILE" --target "$target" \
      "${std[@]}" "${features[@]}" --bin img >&2
    cp "$TARGET_DIR/$target/$PROFILE/img" "$OUT/$name"
    (cd "$OUT" && sha256sum "$name" > "$name.sha256")
    # Static: no program interpreter, so it runs on any Linux of its architecture.
    if readelf -l "$OUT/$name" | grep -q 'Requesting program interpreter'; then
      echo "release.sh: $name is not statically linked" >&2
      status=1
    fi
    size=$(stat -c %s "$OUT/$name")
    echo "$name $size $(cut -d' ' -f1 "$OUT/$name.sha256")"
    if [[ $SIZE_CHECK == 1 && $size -gt $limit ]]; then
      echo "release.sh: $name is $size bytes, over its limit of $limit" >&2
      status=1
    fi
  done
done
echo "release.sh: binaries in $OUT" >&2
exit $status
