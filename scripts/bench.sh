#!/usr/bin/env bash
# Times img against podman (and the physical limit, sha256sum + cp) on the
# same generated images, one tool after the other on the same filesystem,
# warm cache, and prints medians and ratios.
#
#   scripts/bench.sh [--runs N] [--images N] [--dir DIR]
#
# Needs: hyperfine, podman, python3, GNU time (installed by scripts/test.sh).
set -euo pipefail

RUNS=5
NIMAGES=1000
PODMAN_IMAGES=100
WORK=${BENCH_DIR:-/var/tmp/img-bench}
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --images) NIMAGES=$2; shift 2 ;;
        --dir) WORK=$2; shift 2 ;;
        *) echo "usage: $0 [--runs N] [--images N] [--dir DIR]" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
cargo build --release -q
IMG=$PWD/target/release/img
for t in hyperfine podman python3 /usr/bin/time; do
    command -v "$t" >/dev/null || { echo "bench: $t is missing (scripts/test.sh installs it)" >&2; exit 1; }
done
mkdir -p "$WORK"
cd "$WORK"
echo "bench: working in $WORK ($(df -T . | awk 'NR==2 {print $2}'))" >&2

# A 250 MB image of incompressible files (fixed seed) as a docker-archive.
if [ ! -f big-docker.tar ]; then
    python3 - <<'EOF'
import os, random, tarfile, io
random.seed(20261123)
with tarfile.open("big-rootfs.tar", "w", format=tarfile.PAX_FORMAT) as t:
    for i in range(50):
        data = random.randbytes(5 * 1024 * 1024)
        ti = tarfile.TarInfo(f"data/f{i:03}")
        ti.size = len(data); ti.mtime = 1700000000; ti.mode = 0o644
        t.addfile(ti, io.BytesIO(data))
EOF
    rm -rf s-prep
    "$IMG" --root s-prep import big-rootfs.tar bench/big:1 >/dev/null
    "$IMG" --root s-prep save -o big-docker.tar bench/big:1
    rm -rf s-prep big-rootfs.tar
fi
SIZE=$(stat -c %s big-docker.tar)

# Stores with many images for the listing benchmarks.
make_many() { # root count
    local root=$1 n=$2
    [ -f "$root/.done-$n" ] && return
    rm -rf "$root"; mkdir -p tiny; echo x > tiny/x; tar -C tiny -cf tiny.tar .
    for i in $(seq 1 "$n"); do "$IMG" --root "$root" import tiny.tar "bench/app$i:v1" -c "LABEL n=$i" >/dev/null; done
    touch "$root/.done-$n"
}
make_many s-many "$NIMAGES"
make_many s-podmanmany "$PODMAN_IMAGES"
if [ ! -f pm-many/.done ]; then
    rm -rf pm-many pm-many-run
    "$IMG" --root s-podmanmany save -o many.tar $(for i in $(seq 1 "$PODMAN_IMAGES"); do echo "bench/app$i:v1"; done)
    podman --root "$WORK/pm-many" --runroot "$WORK/pm-many-run" --storage-driver vfs load -q -i many.tar >/dev/null
    touch pm-many/.done
fi

cat big-docker.tar >/dev/null  # warm the page cache

hf() { # name, runs, warmup, then commands; writes medians to $name.json
    local name=$1 runs=$2 warm=$3; shift 3
    hyperfine --style none -w "$warm" -r "$runs" --export-json "$name.json" "$@" >/dev/null 2>&1
}
hf load "$RUNS" 1 \
    --prepare "rm -rf $WORK/s-load" "$IMG --root $WORK/s-load load -i big-docker.tar" \
    --prepare "rm -f $WORK/cp-dest" "sha256sum big-docker.tar && cp big-docker.tar cp-dest" \
    --prepare "rm -rf $WORK/pm $WORK/pm-run" "podman --root $WORK/pm --runroot $WORK/pm-run --storage-driver vfs load -q -i big-docker.tar"
hf save "$RUNS" 1 \
    --prepare "rm -f $WORK/out.tar" "$IMG --root $WORK/s-load save -o out.tar bench/big:1" \
    --prepare "rm -f $WORK/out.tar" "podman --root $WORK/pm --runroot $WORK/pm-run --storage-driver vfs save -q -o out.tar bench/big:1"
hf list $((RUNS * 6)) 3 -N \
    "$IMG --root $WORK/s-many images" \
    "$IMG --root $WORK/s-many inspect bench/app500:v1" \
    "$IMG --root $WORK/s-podmanmany images" \
    "podman --root $WORK/pm-many --runroot $WORK/pm-many-run --storage-driver vfs images"
rm -rf s-load cp-dest pm pm-run out.tar
/usr/bin/time -f "%M" -o rss.txt "$IMG" --root "$WORK/s-rss" load -i big-docker.tar >/dev/null
RSS_KB=$(cat rss.txt); rm -rf s-rss

python3 - "$SIZE" "$RSS_KB" "$IMG" "$NIMAGES" "$PODMAN_IMAGES" <<'EOF'
import json, os, sys
size, rss_kb, img, n, pn = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def med(name):
    return [r["median"] for r in json.load(open(f"{name}.json"))["results"]]
load, save, lst = med("load"), med("save"), med("list")
ms = lambda s: f"{s*1000:8.1f} ms"
print(f"img load of a {size/1e6:.0f} MB docker-archive (medians)")
print(f"  img load            {ms(load[0])}")
print(f"  sha256sum + cp      {ms(load[1])}   img / (sha256sum+cp) = {load[0]/load[1]:.2f}  (goal <= 1.3)")
print(f"  podman load         {ms(load[2])}   podman / img = {load[2]/load[0]:.1f}x  (goal >= 3)")
print(f"img save of the same image")
print(f"  img save            {ms(save[0])}")
print(f"  podman save         {ms(save[1])}   podman / img = {save[1]/save[0]:.1f}x")
print(f"listing, process start included")
print(f"  img images ({n} images)      {ms(lst[0])}  (goal < 10 ms)")
print(f"  img inspect ({n} images)     {ms(lst[1])}  (goal < 10 ms)")
print(f"  img images ({pn} images)      {ms(lst[2])}")
print(f"  podman images ({pn} images)   {ms(lst[3])}   podman / img = {lst[3]/lst[2]:.1f}x")
print(f"peak RSS of img load: {rss_kb/1024:.1f} MB  (goal < 30 MB)")
print(f"stripped release binary: {os.path.getsize(img)/1e6:.1f} MB  (goal < 10 MB)")
EOF
