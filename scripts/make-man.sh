#!/usr/bin/env bash
# Writes img's man pages (img.1 and img-COMMAND.1 for every command) and its
# shell completions (bash, zsh, fish) from the built binary.
#
# Usage: scripts/make-man.sh [IMG] [DIR]   (defaults: target/release/img, target/man)
set -euo pipefail
cd "$(dirname "$0")/.."
IMG=${1:-target/release/img}
DIR=${2:-target/man}
mkdir -p "$DIR/man1" "$DIR/completions"
"$IMG" __man "$DIR/man1"
"$IMG" completion bash > "$DIR/completions/img.bash"
"$IMG" completion zsh > "$DIR/completions/_img"
"$IMG" completion fish > "$DIR/completions/img.fish"
echo "man pages in $DIR/man1 ($(ls "$DIR/man1" | wc -l)), completions in $DIR/completions"
