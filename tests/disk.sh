#!/usr/bin/env bash
# The store's size limit (max-size in ROOT/config.toml, docs/disk.md) on a
# store of its own on a small tmpfs: pulls from Debian's docker-registry
# (started here on 127.0.0.1) evict least recently used images and never
# take the store over max-size, never evict a mounted or pinned image, and
# a pull, load (from a file or a pipe) or build that cannot fit fails with
# the store unchanged; two pulls at once do not together pass the high
# watermark; img system prune --max-size. Images are generated here: each a layer of random bytes
# (distinct, incompressible), imported and pushed with img.
#
# Usage: IMG=target/release/img tests/disk.sh [CHECK-NAME-SUBSTRING...]
# Needs root (tmpfs mounts, FUSE). Prints "ok - NAME" or "not ok - NAME"
# per check and "N passed, M failed" (tests/lib.sh runs the checks).
set -uo pipefail
cd "$(dirname "$0")/.."
IMG=$(realpath "${IMG:-target/release/img}")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/img-disk.XXXXXX")
source tests/lib.sh
need docker-registry curl python3 du
if [[ $(id -u) != 0 ]]; then
  if [[ -n ${IMG_TEST_SKIP_ROOT:-} ]]; then echo "# not root: skipped"; echo "0 passed, 0 failed"; exit 0; fi
  echo "not ok - tests/disk.sh needs root (tmpfs mounts); IMG_TEST_SKIP_ROOT=1 skips it"; echo "0 passed, 1 failed"; exit 1
fi

# Every mount and server this run made goes, whatever happened.
suite_cleanup() {
  local m s
  for s in "$WORK"/*/fs/store; do
    [[ -d $s ]] && IMG_ROOT=$s timeout 20 "$IMG" umount -a --discard >/dev/null 2>&1
  done
  for m in $(awk -v w="$WORK/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
}

MiB=$((1024 * 1024))
# gen NAME MIB: pushes $REG/gen/NAME:1, one layer of MIB MiB of random bytes
# (and a small file saying its name), made in a store of its own.
gen() {
  local d=$WORK/gen/$1
  mkdir -p "$d/root"
  head -c $(($2 * MiB)) /dev/urandom > "$d/root/data"
  echo "$1" > "$d/root/name"
  tar -C "$d/root" -cf "$d/rootfs.tar" . &&
    IMG_ROOT=$WORK/gen/store "$IMG" import "$d/rootfs.tar" "localhost/gen/$1:1" >/dev/null &&
    IMG_ROOT=$WORK/gen/store "$IMG" push -q --tls-verify=false "localhost/gen/$1:1" "$REG/gen/$1:1" >/dev/null
}

start_docker_registry plain REG || { echo "not ok - start docker-registry"; exit 1; }
for i in $(seq 1 10); do gen "r$i" 3 || { echo "not ok - generate image r$i"; exit 1; }; done
gen big 6 || { echo "not ok - generate image big"; exit 1; }
for i in c1 c2; do gen "$i" 4 || { echo "not ok - generate image $i"; exit 1; }; done

# small_store SIZE MAX: a store on a new tmpfs of SIZE with max-size MAX;
# sets ROOT. Its mountpoint is unmounted when the suite ends.
small_store() {
  mkdir -p "$T/fs"
  mount -t tmpfs -o "size=$1" tmpfs "$T/fs"
  ROOT=$T/fs/store
  mkdir -p "$ROOT"
  printf 'max-size = "%s"\n' "$2" > "$ROOT/config.toml"
}
img() { IMG_ROOT=${ROOT:?} "$IMG" "$@"; }
pull() { img pull -q --tls-verify=false "$REG/gen/$1:1"; }
# used: what the store takes on disk as du counts it (mountpoints aside)
used() { du -s -B1 --exclude=mounts "$ROOT" | cut -f1; }
present() { img images --format '{{.Repository}}' | has -x "$REG/gen/$1"; }
# state: what must not change when a command fails: the images and the blob files
state() { img images --format json | python3 -c 'import json,sys; print(sorted((i["Id"], i["RepoTags"], i["Pinned"]) for i in json.load(sys.stdin)))'; ls -l "$ROOT/blobs/sha256"; ls "$ROOT/ingest"; }

# 20 pulls of 10 rotating 3 MiB images into a store of max-size 16 MiB (five
# fit): every pull succeeds, du never shows the store over max-size, the
# mounted image and the pinned one stay, and the mount still reads right.
check_twenty_rotating_pulls_stay_within_max_size() {
  small_store 40m 16m
  local max=$((16 * MiB)) i n u evicted=0 order=()
  pull r1 >/dev/null || fail "pull r1"
  local m=$T/m want
  mkdir -p "$m"
  img mount "$REG/gen/r1:1" "$m" >/dev/null || fail "img mount r1"
  MOUNTS+=("$m")
  want=$(sha256sum < "$WORK/gen/r1/root/data")
  pull r2 >/dev/null || fail "pull r2"
  img pin "$REG/gen/r2:1" >/dev/null || fail "img pin r2"
  for i in $(seq 0 19); do
    n=r$((3 + i % 8)); order+=("$n")
    sleep 1 # last use is kept to the second
    img pull --tls-verify=false "$REG/gen/$n:1" > "$T/pull.out" 2> "$T/pull.err" || fail "pull $i ($n) failed: $(cat "$T/pull.err")"
    has evicted "$T/pull.err" && evicted=$((evicted + 1))
    u=$(used)
    echo "# pull $i: $n, store $u bytes"
    ((u <= max)) || fail "after pull $i ($n) the store takes $u bytes, over max-size $max"
    present r1 || fail "pull $i evicted the mounted image r1"
    present r2 || fail "pull $i evicted the pinned image r2"
    present "$n" || fail "pull $i: $n is not in the store"
    [[ $(sha256sum < "$m/data") == "$want" ]] || fail "after pull $i the mount of r1 does not read its data"
  done
  # Five images fit below the low watermark with the index and its log
  # (up to 1 MiB, kept between commands): once full, at least every other
  # pull must evict.
  echo "# $evicted pulls evicted; the index's log takes $(du -B1 "$ROOT/img.db-wal" 2>/dev/null | cut -f1) bytes"
  ((evicted >= 9)) || fail "only $evicted pulls evicted images: the store did not fill up as it should"
  # The images kept besides r1 and r2 are those pulled last.
  img images --format json | PULLED="${order[*]}" python3 -c '
import json, os, re, sys
imgs = {i["RepoTags"][0].split("/gen/")[1].split(":")[0]: i for i in json.load(sys.stdin)}
assert imgs["r2"]["Pinned"] is True and imgs["r1"]["Pinned"] is False, imgs
for i in imgs.values():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", i["LastUsed"]), i["LastUsed"]
kept = set(imgs) - {"r1", "r2"}
last = []
for n in reversed(os.environ["PULLED"].split()):
    if n not in last:
        last.append(n)
assert kept == set(last[:len(kept)]) and len(kept) >= 2, (sorted(kept), last)
' || fail "images after the pulls: $(img images --format json)"
  img umount "$m" >/dev/null || fail "img umount"
  img fsck >/dev/null || fail "img fsck after the evictions: $(img fsck 2>&1)"
}

# A pull that cannot fit (the only other image is mounted, then pinned)
# fails before it writes, says what it needs and what could be freed, and
# leaves the store exactly as it was; unmounted and unpinned, the image
# goes and the pull succeeds.
check_a_pull_that_cannot_fit_fails_and_changes_nothing() {
  small_store 40m 9m
  pull r1 >/dev/null || fail "pull r1"
  local m=$T/m before err
  mkdir -p "$m"
  img mount "$REG/gen/r1:1" "$m" >/dev/null || fail "img mount r1"
  MOUNTS+=("$m")
  before=$(state)
  pull big > /dev/null 2> "$T/err" && fail "a 6 MiB pull beside a mounted 3 MiB image fit in max-size 9 MiB"
  err=$(cat "$T/err")
  echo "# $err"
  [[ $err == *"pulling $REG/gen/big:1 needs 6."*"MB but the store (max-size 9.44MB, "*" used) can free only 0B: unpin or remove images, or raise max-size in $ROOT/config.toml" ]] ||
    fail "the refusal does not say what it needs: $err"
  [[ $(state) == "$before" ]] || fail "the failed pull changed the store: $(diff <(echo "$before") <(state))"
  img umount "$m" >/dev/null || fail "img umount"
  img pin "$REG/gen/r1:1" >/dev/null || fail "img pin"
  before=$(state)
  pull big > /dev/null 2> "$T/err" && fail "the pull evicted a pinned image"
  [[ $(state) == "$before" ]] || fail "the failed pull changed the store"
  img unpin "$REG/gen/r1:1" >/dev/null || fail "img unpin"
  img pull --tls-verify=false "$REG/gen/big:1" > /dev/null 2> "$T/err" || fail "the pull failed with nothing protected: $(cat "$T/err")"
  has evicted "$T/err" || fail "the pull did not say it evicted: $(cat "$T/err")"
  present r1 && fail "r1 was not evicted"
  present big || fail "big is not in the store"
  (($(used) <= 9 * MiB)) || fail "the store takes $(used) bytes, over max-size"
  img pin no-such-image 2> "$T/err" && fail "img pin of an unknown image succeeded"
  has "no-such-image" "$T/err" || fail "img pin's error does not name the image: $(cat "$T/err")"
}

# img load knows its archive's size: one that cannot fit is refused before
# it is staged, the store unchanged; one that fits evicts what it must.
check_a_load_that_cannot_fit_fails_and_changes_nothing() {
  small_store 40m 9m
  IMG_ROOT=$WORK/gen/store "$IMG" save -o "$T/big.tar" localhost/gen/big:1 || fail "save big"
  IMG_ROOT=$WORK/gen/store "$IMG" save -o "$T/r1.tar" localhost/gen/r1:1 || fail "save r1"
  img load -q -i "$T/r1.tar" >/dev/null || fail "load r1"
  img pin localhost/gen/r1:1 >/dev/null || fail "pin r1"
  local before; before=$(state)
  img load -q -i "$T/big.tar" > /dev/null 2> "$T/err" && fail "a 6 MiB archive beside a pinned 3 MiB image fit in 9 MiB"
  has "loading $T/big.tar needs .* but the store (max-size 9.44MB, .* can free only 0B" "$T/err" ||
    fail "the refusal does not say what it needs: $(cat "$T/err")"
  [[ $(state) == "$before" ]] || fail "the failed load changed the store"
  img unpin localhost/gen/r1:1 >/dev/null || fail "unpin r1"
  img load -q -i "$T/big.tar" > /dev/null 2> "$T/err" || fail "load with r1 unpinned: $(cat "$T/err")"
  img images --format '{{.Repository}}' | has -x localhost/gen/r1 && fail "r1 was not evicted"
  (($(used) <= 9 * MiB)) || fail "the store takes $(used) bytes, over max-size"
}

# From a pipe img load cannot know the size first: it stages no more than
# the store can make room for, and one that cannot fit is refused with the
# store (and ingest/) as it was; one that fits evicts what it must.
check_a_load_from_standard_input_that_cannot_fit_fails_and_changes_nothing() {
  small_store 40m 9m
  IMG_ROOT=$WORK/gen/store "$IMG" save -o "$T/big.tar" localhost/gen/big:1 || fail "save big"
  IMG_ROOT=$WORK/gen/store "$IMG" save -o "$T/r1.tar" localhost/gen/r1:1 || fail "save r1"
  img load -q < "$T/r1.tar" >/dev/null || fail "load r1 from standard input"
  img pin localhost/gen/r1:1 >/dev/null || fail "pin r1"
  local before; before=$(state)
  img load -q < "$T/big.tar" > /dev/null 2> "$T/err" && fail "a 6 MiB archive on standard input beside a pinned 3 MiB image fit in 9 MiB"
  echo "# $(cat "$T/err")"
  has "loading standard input needs more than .* but the store (max-size 9.44MB, .* can free only 0B: unpin or remove images, or raise max-size in $ROOT/config.toml" "$T/err" ||
    fail "the refusal does not say what it needs: $(cat "$T/err")"
  [[ $(state) == "$before" ]] || fail "the failed load changed the store: $(diff <(echo "$before") <(state))"
  img unpin localhost/gen/r1:1 >/dev/null || fail "unpin r1"
  gzip -1 < "$T/big.tar" | img load -q > /dev/null 2> "$T/err" || fail "load of a compressed archive from standard input with r1 unpinned: $(cat "$T/err")"
  img images --format '{{.Repository}}' | has -x localhost/gen/r1 && fail "r1 was not evicted"
  img images --format '{{.Repository}}' | has -x localhost/gen/big || fail "big was not loaded"
  (($(used) <= 9 * MiB)) || fail "the store takes $(used) bytes, over max-size"
}

# img build makes its layers before it knows their size: once built, room
# is made for them before they are stored, or the build is refused with
# nothing stored.
check_a_build_that_cannot_fit_fails_and_changes_nothing() {
  small_store 40m 9m
  pull r1 >/dev/null || fail "pull r1"
  img pin "$REG/gen/r1:1" >/dev/null || fail "pin r1"
  mkdir -p "$T/ctx"
  head -c $((6 * MiB)) /dev/urandom > "$T/ctx/data"
  printf 'FROM scratch\nCOPY data /data\n' > "$T/ctx/Dockerfile"
  local before; before=$(state)
  img build -q -t localhost/built:1 "$T/ctx" > /dev/null 2> "$T/err" && fail "a 6 MiB build beside a pinned 3 MiB image fit in 9 MiB"
  echo "# $(tail -1 "$T/err")"
  has "building $T/ctx needs 6.* but the store (max-size 9.44MB, .* can free only 0B" "$T/err" ||
    fail "the refusal does not say what it needs: $(cat "$T/err")"
  [[ $(state) == "$before" ]] || fail "the failed build changed the store: $(diff <(echo "$before") <(state))"
  img unpin "$REG/gen/r1:1" >/dev/null || fail "unpin r1"
  img build -q -t localhost/built:1 "$T/ctx" > /dev/null 2> "$T/err" || fail "the build failed with r1 unpinned: $(cat "$T/err")"
  present r1 && fail "r1 was not evicted"
  img images --format '{{.Repository}}' | has -x localhost/built || fail "the built image is not in the store"
  (($(used) <= 9 * MiB)) || fail "the store takes $(used) bytes, over max-size"
}

# Two pulls at once that each fit alone but not together: the room each
# claims is counted by the other, so the store ends below the high
# watermark with the least recently used image evicted, not above it.
check_two_pulls_at_once_do_not_together_pass_the_limit() {
  small_store 40m 12m
  pull r1 >/dev/null || fail "pull r1"
  local high=$((12 * MiB * 85 / 100)) p1 p2 u
  # Paced so that both are in flight together.
  img pull --limit-rate 1m --tls-verify=false "$REG/gen/c1:1" > /dev/null 2> "$T/c1.err" & p1=$!
  img pull --limit-rate 1m --tls-verify=false "$REG/gen/c2:1" > /dev/null 2> "$T/c2.err" & p2=$!
  PIDS+=("$p1" "$p2")
  wait "$p1" || fail "pull c1: $(cat "$T/c1.err")"
  wait "$p2" || fail "pull c2: $(cat "$T/c2.err")"
  u=$(used)
  echo "# store $u bytes, high watermark $high"
  ((u <= high)) || fail "two pulls at once took the store to $u bytes, over the high watermark $high"
  present c1 && present c2 || fail "a pull's image is missing: $(img images)"
  present r1 && fail "r1 was not evicted"
  cat "$T/c1.err" "$T/c2.err" | has evicted || fail "neither pull said it evicted"
  img fsck >/dev/null || fail "img fsck after the pulls: $(img fsck 2>&1)"
}

# An image another command is using right now (an img save blocked on a
# pipe no one reads yet) is not evicted under it: the pull that must evict
# waits for the command to end, says so, and then evicts.
check_an_image_a_running_command_uses_is_not_evicted() {
  small_store 40m 9m
  pull r1 >/dev/null || fail "pull r1"
  mkfifo "$T/fifo"
  img save "$REG/gen/r1:1" > "$T/fifo" 2> "$T/save.err" &
  local save=$!
  PIDS+=($save)
  exec 3< "$T/fifo"
  sleep 1 # save has named the image and fills the pipe
  kill -0 "$save" || fail "img save ended early: $(cat "$T/save.err")"
  timeout 60 "$IMG" --root "$ROOT" pull --tls-verify=false "$REG/gen/big:1" > /dev/null 2> "$T/err" &
  local pull=$!
  PIDS+=($pull)
  sleep 2
  kill -0 "$pull" || fail "the pull did not wait for img save: $(cat "$T/err")"
  has "waiting for other img processes" "$T/err" || fail "the pull does not say what it waits for: $(cat "$T/err")"
  present r1 || fail "r1 was evicted while img save read it"
  cat <&3 | tar -t > "$T/saved" || fail "the save was damaged"
  exec 3<&-
  wait "$save" || fail "img save failed: $(cat "$T/save.err")"
  has manifest.json "$T/saved" || fail "the saved archive has no manifest.json"
  wait "$pull" || fail "the pull failed once img save had ended: $(cat "$T/err")"
  present r1 && fail "r1 was not evicted once img save had ended"
  present big || fail "big is not in the store"
}

# img system prune --max-size: least recently used first (a name on the
# command line is a use), pinned images kept, shared nothing else removed.
check_prune_max_size_evicts_least_recently_used_first() {
  mkdir -p "$T/store"
  ROOT=$T/store
  local i
  for i in r1 r2 r3 r4; do pull "$i" >/dev/null || fail "pull $i"; sleep 1; done
  img inspect "$REG/gen/r1:1" >/dev/null || fail "inspect r1"
  img pin "$REG/gen/r2:1" >/dev/null || fail "pin r2"
  # (listing is not a use; naming is)
  local id3; id3=$(img images --no-trunc --format '{{.ID}} {{.Repository}}' | awk -v r="$REG/gen/r3" '$2 == r {print $1}')
  [[ $id3 == sha256:* ]] || fail "no ID for r3: $id3"
  # Four images of about 3 MiB: down to 10 MiB means one goes: r3 (r2 is
  # pinned, r1 was used since).
  img system prune --max-size 10m < /dev/null > "$T/out" 2>&1
  has "not pruning" "$T/out" || fail "prune without -f did not ask: $(cat "$T/out")"
  present r3 || fail "prune without -f and without a yes removed r3"
  img system prune -f --max-size 10m > "$T/out" 2> "$T/err" || fail "prune --max-size failed: $(cat "$T/err")"
  cat "$T/out"
  has "deleted: $id3" "$T/out" || fail "r3 was not the one deleted: $(cat "$T/out")"
  has "Total reclaimed space: 3" "$T/out" || fail "the reclaimed space is not shown: $(cat "$T/out")"
  for i in r1 r2 r4; do present "$i" || fail "$i was removed"; done
  present r3 && fail "r3 is still there"
  # Down to 1 MiB: everything but the pinned image, and it says what is left.
  img system prune -f --max-size 1m > "$T/out" 2> "$T/err" || fail "prune --max-size 1m failed: $(cat "$T/err")"
  has "pinned, mounted or in use" "$T/err" || fail "prune does not say why the store is still over: $(cat "$T/err")"
  [[ $(img images -q | wc -l) == 1 ]] && present r2 || fail "not only the pinned image is left: $(img images)"
  img system prune -f --max-size lots 2> "$T/err" && fail "a bad size was taken"
  has "invalid size" "$T/err" || fail "the bad size is not named: $(cat "$T/err")"
  img fsck >/dev/null || fail "img fsck after prune --max-size"
}

run_checks "$@"
