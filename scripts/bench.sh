#!/usr/bin/env bash
# Times img against podman, skopeo and the physical limit on the same
# generated images, one tool after the other on the same filesystem, warm
# cache, and prints medians and ratios.
#
#   scripts/bench.sh [--only SECTIONS] [--runs N] [--images N] [--dir DIR]
#                    [--pull-images small,medium,large] [--podman-runs N] [--pull-jobs N]
#                    [--max-wait SECONDS]
#
# Sections (comma-separated for --only; all by default):
#   load  img load/save/images/inspect vs podman and sha256sum + cp
#   pull  img pull from a local docker-registry vs skopeo, podman and the
#         physical limit (parallel curl, sha256sum, cp + sync); img push vs skopeo
#   mount img mount of the large pull image (root only): time to the first
#         ls, cold and warm, vs umoci unpack and podman image mount; a cold
#         1 MiB read in the middle of the largest layer; a sequential read of
#         its big file vs gzip -dc; a walk of every file vs an unpacked tree;
#         the serving process's RSS; img mount --rw writes, copy-up and
#         img commit vs a podman container and a plain directory. --runs
#         runs for the quick timings, at most 3 for the slow ones (umoci
#         unpack, the walk, the writable mount): about 10 minutes on an
#         idle machine, most of it umoci, podman and the 1 GiB commits.
#         Everything is on the filesystem of --dir: give a tmpfs one (e.g.
#         /dev/shm/img-bench) to leave out the disk's file creation cost,
#         which the unpacking peers pay and img does not.
#         Its last step, copy-up (also alone: --only copyup): a 1-byte
#         append to a 512 MiB file (random, text and zero content; gzip
#         and zstd layers) through img mount --rw vs a podman container.
#   lazy  img mount docker:// of the large image converted to eStargz and to zstd:chunked, and
#         of the gzip image as generated (streamed) (root
#         only): time to the first byte of /etc/os-release from an empty
#         store, and the bytes fetched for it, vs img pull + img mount of the
#         gzip image and podman pull; then the same with 20 ms of delay and a
#         100 Mbit/s rate on the loopback of a network namespace made here
#         (tc netem), where the registry and the clients run. Where the
#         kernel has no netem qdisc (or there is no tc), the clients reach
#         the registry through scripts/slowlink.py instead, a TCP proxy in
#         the namespace adding the same one-way delay and shared rate (the
#         connection setup is not delayed); the report says which was used.
#         Then a whole read (tar of every file) of a lazy mount of an
#         eStargz image of the host's Python library vs img pull + mount +
#         the same read, on both links, with the Range requests it made.
#         About 12 minutes, most of it the full pulls over the slow link.
#   build img build vs buildah bud (--layers, vfs, chroot isolation) of the
#         same Dockerfiles on the busybox base of scripts/make-testdata.sh:
#         a small one (RUN, COPY, ENV), ten RUN steps, a multi-stage build
#         with COPY --from, and a COPY of a 64 MB context of 2,000 files;
#         each cold (--no-cache) and fully cached. About 3 minutes.
#   serve img serve vs docker-registry with the same image (SERVE_IMAGE,
#         medium by default): skopeo and podman pulls through each, and
#         manifest GETs per second from 50 keep-alive clients (ab); podman's
#         store on /dev/shm.
#   cluster img serve on S3 and PostgreSQL vs docker-registry's S3 driver,
#         both on the same 3-node Garage cluster (replication 3, behind
#         haproxy) and each behind its own haproxy: skopeo push and pull of
#         the same image (SERVE_IMAGE, medium by default) through 3
#         instances of each, and manifest GETs per second from 50 keep-alive
#         clients (ab) through 1 and through 3 instances. Not in the default
#         set: it needs garage (scripts/install-garage.sh), postgresql and
#         haproxy. About 5 minutes.
#   rate  --limit-rate 1m on a 12 MiB layer of random bytes from a local
#         docker-registry: img pull, img push, img copy between two
#         registries and a read of the file through a lazy mount (eStargz),
#         each over 12 s; the achieved rate (bytes moved over the command's
#         wall time; for the mount, bytes fetched over the read's) against
#         the cap, median of --runs (at most 3). Not in the default set.
#         About 3 minutes.
#   edge  the static release binaries (scripts/release.sh: full and edge
#         builds for x86-64, arm64 and armv7): their sizes, and the peak RSS
#         (GNU time) of the full binary's img load (of the EDGE_IMAGE OCI
#         layout, medium by default), img pull (from a local docker-registry)
#         and a mount server (`img __serve-mount`, what `img mount` starts)
#         while every file of the mount is read; x86-64 natively, arm64 and
#         armv7 under qemu-user, beside qemu running the same binary for
#         --version (qemu's own share). Root only (the mount). Not in the
#         default set: the first run builds six binaries (about 25 minutes
#         on 2 idle cores), later ones reuse them.
#
# Needs: hyperfine, podman, skopeo, docker-registry, curl, python3, GNU time,
# umoci and nsenter, and tc for netem (installed by scripts/test.sh).
set -euo pipefail

RUNS=5
NIMAGES=1000
PODMAN_IMAGES=100
PODMAN_RUNS=3
PULL_IMAGES=small,medium,large
PULL_JOBS=
MAX_WAIT=300
ONLY=load,pull,mount,lazy,build,serve
WORK=${BENCH_DIR:-/var/tmp/img-bench}
usage() {
    echo "usage: $0 [--only load,pull,mount,copyup,lazy,build,serve,cluster,rate,edge] [--runs N] [--images N] [--dir DIR] [--pull-images small,medium,large] [--podman-runs N] [--pull-jobs N] [--max-wait SECONDS]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --only) ONLY=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --images) NIMAGES=$2; shift 2 ;;
        --dir) WORK=$2; shift 2 ;;
        --pull-images) PULL_IMAGES=$2; shift 2 ;;
        --podman-runs) PODMAN_RUNS=$2; shift 2 ;;
        --pull-jobs) PULL_JOBS=$2; shift 2 ;;
        --max-wait) MAX_WAIT=$2; shift 2 ;;
        *) usage ;;
    esac
done
for s in ${ONLY//,/ }; do
    case "$s" in load|pull|mount|copyup|lazy|build|serve|cluster|rate|edge) ;; *) echo "bench: unknown section $s (load, pull, mount, copyup, lazy, build, serve, cluster, rate, edge)" >&2; exit 2 ;; esac
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }

cd "$(dirname "$0")/.."
cargo build --release -q
# The binary just built, wherever cargo puts it (CARGO_TARGET_DIR is honoured).
IMG=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/img
[[ -x $IMG ]] || { echo "bench: no binary at $IMG after cargo build" >&2; exit 1; }
REPO=$PWD
GEN=$PWD/scripts/bench-images.py
SLOWLINK=$PWD/scripts/slowlink.py
LAZY_HELD=$PWD/scripts/lazy-held.py
need=(hyperfine podman python3 /usr/bin/time)
want pull && need+=(skopeo docker-registry curl unshare)
want mount && need+=(umoci gzip dd find xargs)
want lazy && need+=(skopeo docker-registry curl ip nsenter)
want build && need+=(buildah)
want serve && need+=(skopeo docker-registry curl ab)
want cluster && need+=(skopeo docker-registry curl ab haproxy)
want rate && need+=(docker-registry curl)
want edge && need+=(skopeo docker-registry curl qemu-aarch64-static qemu-arm-static)
if want edge && [ "$(id -u)" != 0 ]; then
    echo "bench: the edge section needs root (it mounts)" >&2; exit 1
fi
if { want mount || want copyup; } && [ "$(id -u)" != 0 ]; then
    echo "bench: the mount section needs root (it drops the page cache and mounts overlayfs)" >&2; exit 1
fi
if want build && [ "$(id -u)" != 0 ]; then
    echo "bench: the build section runs buildah as root" >&2; exit 1
fi
if want lazy && [ "$(id -u)" != 0 ]; then
    echo "bench: the lazy section needs root (it makes a network namespace)" >&2; exit 1
fi
for t in "${need[@]}"; do
    command -v "$t" >/dev/null || { echo "bench: $t is missing (scripts/test.sh installs it)" >&2; exit 1; }
done
mkdir -p "$WORK"
cd "$WORK"
FSTYPE=$(df -T . | awk 'NR==2 {print $2}')
echo "bench: working in $WORK ($FSTYPE)" >&2

# Sections add what must be undone (servers, mounts) to CLEANUPS; it runs
# on every exit, failures and interrupts included.
CLEANUPS=()
on_exit() {
    local f
    for f in "${CLEANUPS[@]}"; do "$f" || true; done
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Images: deterministic OCI layouts made by scripts/bench-images.py, kept in
# images/ until the generator changes.
GENSUM=$(sha256sum "$GEN" | cut -c1-12)
gen_images() { # names
    local name
    mkdir -p images
    for name in "$@"; do
        if [ ! -f "images/$name/.done-$GENSUM" ]; then
            echo "bench: generating the $name image" >&2
            python3 "$GEN" "$name" "images/$name"
            touch "images/$name/.done-$GENSUM"
        fi
    done
}
blobs() { # name -> "digest path" of the config and the layers
    python3 - "images/$1" <<'PY'
import json, sys
d = sys.argv[1]
ix = json.load(open(f"{d}/index.json"))
m = json.load(open(f"{d}/blobs/sha256/{ix['manifests'][0]['digest'][7:]}"))
for b in [m["config"]] + m["layers"]:
    print(b["digest"], f"{d}/blobs/sha256/{b['digest'][7:]}")
PY
}

# The machine may be shared: before each timing wait up to --max-wait
# seconds for it to be otherwise idle, and say so when something else ran
# right before or after a timing. (On a busy machine, running the whole
# script under nice -n -15 keeps the timed commands ahead of other work.)
busy_pct() { # percent of all CPUs busy over the next 2 s
    local a b
    a=($(head -1 /proc/stat)); sleep 2; b=($(head -1 /proc/stat))
    local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
    echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}
wait_quiet() { # name: wait up to MAX_WAIT seconds for less than 10 % CPU busy
    local p t=0
    while :; do
        p=$(busy_pct)
        [ "$p" -lt 10 ] && return 0
        [ "$t" -ge "$MAX_WAIT" ] && break
        [ "$t" = 0 ] && echo "bench: waiting for other work on the machine to end ($p% CPU busy)" >&2
        t=$((t + 2))
    done
    echo "$1: other processes used $p% of the CPUs before it was timed" >> busy.txt
}
: > busy.txt
hf() { # name, runs, warmup, then hyperfine arguments; writes $name.json
    local name=$1 runs=$2 warm=$3 p; shift 3
    wait_quiet "$name"
    echo "bench: timing $name" >&2
    hyperfine --style basic -w "$warm" -r "$runs" --export-json "$name.json" "$@" >"$name.log" 2>&1 || {
        echo "bench: hyperfine failed for $name:" >&2; tail -n 20 "$name.log" >&2; exit 1
    }
    sync; p=$(busy_pct)
    [ "$p" -lt 10 ] || echo "$name: other processes used $p% of the CPUs right after it was timed" >> busy.txt
}

if want load; then
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
fi

if want pull; then
    NAMES=${PULL_IMAGES//,/ }
    gen_images $NAMES

    # A docker-registry of our own on a free port, storage kept in registry/
    # (wiped when the generator changes), stopped on exit. Its access log is
    # used to check that pushes really upload every blob.
    [ -f "registry/.gen-$GENSUM" ] || { rm -rf registry; mkdir -p registry; touch "registry/.gen-$GENSUM"; }
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    REG=127.0.0.1:$PORT
    cat > registry.yml <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: $REG
YML
    docker-registry serve registry.yml >registry.log 2>&1 </dev/null &
    REG_PID=$!
    pull_cleanup() {
        kill "$REG_PID" 2>/dev/null || true
        wait "$REG_PID" 2>/dev/null || true
        umount "$WORK/pm-pull/overlay" 2>/dev/null || true
        rm -rf "$WORK"/registry/docker/registry/v2/repositories/push-* "$WORK"/s-pull "$WORK"/sk-pull \
            "$WORK"/cp-pull "$WORK"/pm-pull "$WORK"/pm-pull-run "$WORK"/s-push || true
    }
    CLEANUPS+=(pull_cleanup)
    for i in $(seq 1 100); do curl -fs -o /dev/null "http://$REG/v2/" && break; sleep 0.1; done
    curl -fs -o /dev/null "http://$REG/v2/" || { echo "bench: the registry did not start:" >&2; cat registry.log >&2; exit 1; }
    echo "bench: registry $REG (pid $REG_PID)" >&2

    JOBS_OPT=${PULL_JOBS:+--jobs $PULL_JOBS}
    PM="podman --root $WORK/pm-pull --runroot $WORK/pm-pull-run --storage-driver overlay"
    # podman's overlay driver bind-mounts its overlay/ directory on itself.
    PM_RESET="umount $WORK/pm-pull/overlay 2>/dev/null; rm -rf $WORK/pm-pull $WORK/pm-pull-run; sync"
    for name in $NAMES; do
        skopeo copy -q --dest-tls-verify=false "oci:images/$name:latest" "docker://$REG/bench/$name:latest"
        BLOBS=""; URLS=""
        while read -r d path; do
            BLOBS="$BLOBS $WORK/$path"; URLS="$URLS http://$REG/v2/bench/$name/blobs/$d"
            curl -fs -o /dev/null "http://$REG/v2/bench/$name/blobs/$d"  # served, and warm in the page cache
        done < <(blobs "$name")
        cat $BLOBS >/dev/null
        # sync FILE... flushes just those files (like img's fsync of each
        # blob), not whatever else on the machine is dirty.
        hf "pull-$name" "$RUNS" 1 \
            --prepare "rm -rf $WORK/s-pull; sync" "IMG_ROOT=$WORK/s-pull $IMG pull --tls-verify=false -q $JOBS_OPT $REG/bench/$name" \
            --prepare "rm -rf $WORK/sk-pull; sync" "skopeo copy -q --src-tls-verify=false docker://$REG/bench/$name oci:$WORK/sk-pull" \
            --prepare sync "for u in $URLS; do curl -s -o /dev/null \$u & done; wait" \
            --prepare sync "sha256sum $BLOBS >/dev/null" \
            --prepare sync "openssl dgst -sha256 $BLOBS >/dev/null" \
            --prepare "rm -rf $WORK/cp-pull; mkdir $WORK/cp-pull; sync" "cp $BLOBS $WORK/cp-pull/ && sync $WORK/cp-pull/*"
        # podman unpacks every layer, which is slow on this disk: PODMAN_RUNS
        # runs, and only the one if that one took over 60 s.
        rm -f "podman-$name.note"
        if [ "$name" = large ]; then
            hf "podman-$name" 1 0 --prepare "$PM_RESET" \
                "$PM pull -q --tls-verify=false $REG/bench/$name"
            if python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["results"][0]["median"] <= 60)' "podman-$name.json"; then
                echo "1 run only: over 60 s a run" > "podman-$name.note"
            fi
        fi
        if [ ! -f "podman-$name.note" ]; then
            hf "podman-$name" "$PODMAN_RUNS" 0 --prepare "$PM_RESET" \
                "$PM pull -q --tls-verify=false $REG/bench/$name"
        fi
        bash -c "$PM_RESET"
        rm -rf s-pull sk-pull cp-pull
        /usr/bin/time -f "%M" -o "rss-pull-$name.txt" \
            env IMG_ROOT="$WORK/s-pull" "$IMG" pull --tls-verify=false -q $JOBS_OPT "$REG/bench/$name" >/dev/null
        rm -rf s-pull
    done

    # What verifying signatures adds to a pull of medium: the same pull with
    # no policy, under signedBy (a GPG simple signature in a lookaside
    # directory) and under sigstoreSigned (an attachment), signed by img.
    if [[ " $NAMES " == *" medium "* ]] && command -v gpg >/dev/null; then
        export GNUPGHOME=$WORK/gnupg; mkdir -m 700 -p "$GNUPGHOME"
        trust_cleanup() { gpgconf --kill all >/dev/null 2>&1 || true; rm -rf "$WORK/gnupg" "$WORK/trust"; }
        CLEANUPS+=(trust_cleanup)
        mkdir -p "$WORK/trust/rd"
        gpg --batch --pinentry-mode loopback --passphrase '' --quick-gen-key "bench <bench@example.com>" ed25519 sign never >/dev/null 2>&1
        FPR=$(gpg --with-colons --list-secret-keys bench@example.com | awk -F: '/^fpr/ {print $10; exit}')
        gpg --export "$FPR" > "$WORK/trust/key.gpg"
        echo pass > "$WORK/trust/pass"
        "$IMG" image generate-sigstore-key --output-prefix "$WORK/trust/s" --passphrase-file "$WORK/trust/pass" 2>/dev/null
        printf 'default-docker:\n  lookaside: file://%s\n  use-sigstore-attachments: true\n' "$WORK/trust/sigstore" > "$WORK/trust/rd/d.yaml"
        for kind in gpg sigstore; do
            printf '{"default":[{"type":"reject"}],"transports":{"docker":{"%s":[%s]}}}\n' "$REG/bench" \
                "$([[ $kind == gpg ]] && echo '{"type":"signedBy","keyType":"GPGKeys","keyPath":"'$WORK/trust/key.gpg'"}' \
                    || echo '{"type":"sigstoreSigned","keyPath":"'$WORK/trust/s.pub'"}')" > "$WORK/trust/$kind.json"
        done
        IMG_ROOT=$WORK/trust/src "$IMG" pull --tls-verify=false -q "$REG/bench/medium" >/dev/null
        IMG_ROOT=$WORK/trust/src "$IMG" push --tls-verify=false -q --registries.d "$WORK/trust/rd" --sign-by "$FPR" \
            --sign-by-sigstore-private-key "$WORK/trust/s.key" --sign-passphrase-file "$WORK/trust/pass" \
            "$REG/bench/medium" "$REG/bench/medium-signed:latest"
        # Interleaved (none, signedBy, sigstoreSigned, none, ...): a few ms
        # are measured under a spread of tens of ms, and hyperfine's one
        # command after the other let the disk's state drift between them.
        python3 - "$RUNS" "$WORK/s-pull" pull-verify.json \
            "IMG_ROOT=$WORK/s-pull $IMG pull --tls-verify=false -q $JOBS_OPT $REG/bench/medium-signed" \
            "IMG_ROOT=$WORK/s-pull $IMG pull --tls-verify=false -q $JOBS_OPT --registries.d $WORK/trust/rd --signature-policy $WORK/trust/gpg.json $REG/bench/medium-signed" \
            "IMG_ROOT=$WORK/s-pull $IMG pull --tls-verify=false -q $JOBS_OPT --registries.d $WORK/trust/rd --signature-policy $WORK/trust/sigstore.json $REG/bench/medium-signed" <<'PY'
import json, shutil, statistics, subprocess, sys, time
runs, root, out, cmds = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
times = [[] for _ in cmds]
for _ in range(runs + 1):  # the first round warms up
    for i, c in enumerate(cmds):
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["sync"], check=True)
        t0 = time.perf_counter()
        subprocess.run(c, shell=True, check=True, stdout=subprocess.DEVNULL)
        times[i].append(time.perf_counter() - t0)
res = [{"command": c, "median": statistics.median(t[1:]), "stddev": statistics.stdev(t[1:]), "times": t[1:]}
       for c, t in zip(cmds, times)]
json.dump({"results": res}, open(out, "w"))
PY
        rm -rf "$WORK/s-pull"
    fi

    # img push of medium to a new repository each run vs skopeo from the OCI
    # layout. The source image is tagged only with a name on another
    # registry, so img has nothing to mount from; skopeo runs with an empty
    # blob-info cache (tmpfs over it in a private mount namespace), or it
    # would mount the blobs from repositories it pushed to before.
    if [[ " $NAMES " == *" medium "* ]]; then
        rm -rf s-push
        export IMG_ROOT=$WORK/s-push
        "$IMG" pull --tls-verify=false -q "$REG/bench/medium" >/dev/null
        "$IMG" tag "$REG/bench/medium:latest" bench/push-src:latest
        "$IMG" rmi "$REG/bench/medium:latest" >/dev/null
        NB=$(blobs medium | wc -l)
        out=$("$IMG" push --tls-verify=false bench/push-src:latest "$REG/push-check:latest" 2>&1)
        grep -q "$NB blobs uploaded, 0 already there, 0 mounted" <<<"$out" || {
            echo "bench: img push did not upload all $NB blobs:" >&2; echo "$out" >&2; exit 1; }
        unset IMG_ROOT
        SKCACHE=/var/lib/containers/cache
        mkdir -p "$SKCACHE"
        start=$(wc -l < registry.log)
        hf push-medium "$RUNS" 1 \
            "IMG_ROOT=$WORK/s-push $IMG push --tls-verify=false -q bench/push-src:latest $REG/push-img-\$(date +%s%N):latest" \
            "unshare -m sh -c 'mount -t tmpfs none $SKCACHE && skopeo copy -q --dest-tls-verify=false oci:$WORK/images/medium:latest docker://$REG/push-sk-\$(date +%s%N):latest'"
        # Completed uploads (PUT .../blobs/uploads/...) and mounts per tool.
        tail -n +$((start + 1)) registry.log > push-access.log
        for t in img sk; do
            echo "$(grep -c "\"PUT /v2/push-$t-[0-9]*/blobs/uploads/" push-access.log || true)" \
                 "$(grep -c "/v2/push-$t-[0-9]*/blobs/uploads/?.*mount=" push-access.log || true)" \
                 "$(grep -c "\"PUT /v2/push-$t-[0-9]*/manifests/" push-access.log || true)"
        done > push-counts.txt
        echo "$NB" >> push-counts.txt
    fi

    python3 - "$RUNS" "$PODMAN_RUNS" "$FSTYPE" "$WORK" "$NAMES" "${PULL_JOBS:-default}" <<'PY'
import json, os, sys
runs, pruns, fs, work, names, jobs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].split(), sys.argv[6]
def med(name):
    return [r["median"] for r in json.load(open(f"{name}.json"))["results"]]
def layout(name):
    d = f"images/{name}"
    ix = json.load(open(f"{d}/index.json"))
    m = json.load(open(f"{d}/blobs/sha256/{ix['manifests'][0]['digest'][7:]}"))
    return len(m["layers"]), sum(l["size"] for l in m["layers"])
print(f"img pull from a local docker-registry (127.0.0.1, plain HTTP); bench dir {work} on {fs}; warm cache")
print(f"medians in seconds of {runs} runs (podman: {pruns}, overlay driver); img --jobs {jobs}")
print(f"{'image':7} {'layers':>6} {'MB gz':>7} {'img':>7} {'skopeo':>7} {'podman':>7} {'curl':>7} {'sha256sum':>9} {'openssl':>7} {'cp+sync':>7}")
rows, notes = [], []
for n in names:
    nl, size = layout(n)
    img, sk, curl, sha, ssl, cp = med(f"pull-{n}")
    pm = med(f"podman-{n}")[0]
    rss = int(open(f"rss-pull-{n}.txt").read().split()[-1]) / 1024
    print(f"{n:7} {nl:>6} {size/1e6:>7.1f} {img:>7.3f} {sk:>7.3f} {pm:>7.2f} {curl:>7.3f} {sha:>9.3f} {ssl:>7.3f} {cp:>7.3f}")
    rows.append((n, img, sk, pm, max(curl, sha, cp), max(curl, ssl, cp), rss))
    if os.path.exists(f"podman-{n}.note"):
        notes.append(f"podman on {n}: " + open(f"podman-{n}.note").read().strip())
for note in notes:
    print(note)
print("limit = slowest of: every blob fetched by curl, all at once; sha256sum of every blob; cp of every blob + sync of the copies")
print("limit(ssl) = the same with openssl dgst -sha256 (SHA-NI) for sha256sum")
print(f"{'image':7} {'limit':>7} {'img/limit':>9} {'limit(ssl)':>10} {'img/limit(ssl)':>14} {'skopeo/img':>10} {'podman/img':>10} {'img RSS':>8}")
for n, img, sk, pm, lim, lims, rss in rows:
    print(f"{n:7} {lim:>7.3f} {img/lim:>9.2f} {lims:>10.3f} {img/lims:>14.2f} {sk/img:>10.2f} {pm/img:>10.1f} {rss:>5.1f} MB")
print("goals: img/limit <= 1.2; skopeo/img >= 2 on medium, >= 1.5 on large; podman/img >= 10; img pull peak RSS < 30 MB")
if os.path.exists("pull-verify.json"):
    import statistics
    rs = json.load(open("pull-verify.json"))["results"]
    none, gpg, sig = (r["median"] for r in rs)
    # Each round ran the three one after the other: the median of the
    # round-by-round differences is steadier than a difference of medians.
    paired = [statistics.median([a - b for a, b in zip(r["times"], rs[0]["times"])]) * 1000 for r in rs[1:]]
    print(f"pull of medium, signed, medians of {runs} interleaved runs: no policy {none:.3f} s; signedBy {gpg:.3f} s; "
          f"sigstoreSigned {sig:.3f} s; median paired difference: signedBy {paired[0]:+.1f} ms, sigstoreSigned {paired[1]:+.1f} ms "
          f"(spread {rs[0]['stddev'] * 1000:.0f} ms); goal: at most +10 ms")
if os.path.exists("push-counts.txt") and "medium" in names:
    img, sk = med("push-medium")
    iu, im, ip, su, sm, sp, nb = map(int, open("push-counts.txt").read().split())
    print(f"push of medium to a new repository each run (medians of {runs} runs)")
    print(f"  img push     {img:7.3f} s")
    print(f"  skopeo copy  {sk:7.3f} s   skopeo/img = {sk/img:.2f}")
    print(f"  registry log: img {iu} blobs uploaded, {im} mounted in {ip} pushes; skopeo {su} uploaded, {sm} mounted in {sp} pushes ({nb} blobs an image)")
PY
fi

if want mount; then
    # Everything here (the image layout, img's store, umoci's bundle,
    # podman's storage, the plain directory) is under $WORK: one filesystem.
    gen_images large
    HEAVY=$(( RUNS < 3 ? RUNS : 3 ))
    MS=$WORK/s-mount
    IMGM="$IMG --root $MS"
    MNT=$WORK/mnt-img
    RW=$WORK/mnt-rw
    UB=$WORK/umoci-b
    PLAIN=$WORK/plain
    SRC=$WORK/src-1g.bin
    PMM="podman --root $WORK/pm-mount --runroot $WORK/pm-mount-run --storage-driver overlay"
    DROP="sync; echo 3 > /proc/sys/vm/drop_caches"
    mounted_under_work() { # mountpoints under $WORK, deepest first
        awk -v w="$WORK/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r
    }
    mount_cleanup() {
        $IMGM umount -a --discard >/dev/null 2>&1
        $PMM rm -af >/dev/null 2>&1
        $PMM image unmount -a >/dev/null 2>&1
        umount "$WORK/pm-mount/overlay" 2>/dev/null
        # Whatever is left (a server that died, an interrupted prepare).
        local m
        for m in $(mounted_under_work); do umount "$m" 2>/dev/null || umount -l "$m"; done
        rm -rf "$WORK/s-mpull" "$WORK/mnt-pull" "$MS" "$MNT" "$RW" "$UB" "$PLAIN" "$SRC" "$WORK/pm-mount" "$WORK/pm-mount-run" "$WORK/pm-ctr-path"
        true
    }
    CLEANUPS+=(mount_cleanup)
    mount_cleanup || true

    # The largest layer (compressed), and the file whose data holds the
    # middle of that layer's uncompressed stream.
    if [ ! -f "mount-target-$GENSUM.txt" ]; then
        python3 - "$WORK/images/large" > "mount-target-$GENSUM.txt" <<'PY'
import gzip, json, sys, tarfile
d = sys.argv[1]
ix = json.load(open(f"{d}/index.json"))
m = json.load(open(f"{d}/blobs/sha256/{ix['manifests'][0]['digest'][7:]}"))
big = max(m["layers"], key=lambda l: l["size"])
blob = f"{d}/blobs/sha256/{big['digest'][7:]}"
with gzip.open(blob) as g:
    files = [(e.name, e.offset_data, e.size) for e in tarfile.open(fileobj=g, mode="r|") if e.isreg()]
    while g.read(1 << 20):  # the padding after the tar's end
        pass
    total = g.tell()
mid = total // 2
name, off, size = next(f for f in files if f[1] <= mid < f[1] + f[2])
print(blob, total, name, size, (mid - off) >> 20)
PY
    fi
    read -r BIGBLOB LAYER_LEN BIGFILE BIGSIZE SKIP < "mount-target-$GENSUM.txt"
    LAYERS=$(blobs large | tail -n +2 | awk -v w="$WORK" '{printf "%s/%s ", w, $2}')
    cat $LAYERS >/dev/null  # warm in the page cache

    # img's store: the large image loaded from its OCI layout, once.
    hf mount-img-load 1 0 --prepare "rm -rf $MS; sync" "$IMGM load -q -i $WORK/images/large >/dev/null"
    $IMGM tag "$($IMGM images -q | head -1)" bench/large

    serve_pid() { # mountpoint -> pid of the process serving it
        $IMGM mounts --format json | python3 -c '
import json, sys
print(next(m["Pid"] for m in json.load(sys.stdin) if m["Mountpoint"] == sys.argv[1]))' "$1"
    }
    rss() { # mountpoint -> "VmRSS VmHWM" of its server, in kB
        awk '/^VmRSS|^VmHWM/ {v[$1] = $2} END {print v["VmRSS:"], v["VmHWM:"]}' "/proc/$(serve_pid "$1")/status"
    }

    # podman: the image pulled from the same OCI layout once (it unpacks
    # every layer), then only its image mount is timed.
    hf mount-podman-pull 1 0 --prepare "umount $WORK/pm-mount/overlay 2>/dev/null; rm -rf $WORK/pm-mount $WORK/pm-mount-run; sync" \
        "$PMM pull -q oci:$WORK/images/large:latest >/dev/null"
    PMID=$($PMM images -q | head -1)

    # 1. From the start of the mount (or unpack) to the first ls of its root.
    hf mount-umoci "$HEAVY" 0 --prepare "rm -rf $UB; sync" \
        "umoci unpack --image $WORK/images/large:latest $UB >/dev/null && ls $UB/rootfs >/dev/null"
    hf mount-cold "$RUNS" 0 --prepare "$IMGM umount $MNT >/dev/null 2>&1; rm -f $MS/indexes/*; sync" \
        "$IMGM mount bench/large $MNT >/dev/null && ls $MNT >/dev/null"
    rss "$MNT" > rss-mount-cold.txt
    # The first mount after a pull, which built the layers' indexes as they
    # streamed in: no scan is left to the mount. It needs the pull section's
    # registry (--only pull,mount).
    rm -f mount-after-pull.json
    if [ -n "${REG:-}" ]; then
        MP="$IMG --root $WORK/s-mpull"
        MPNT=$WORK/mnt-pull
        mkdir -p "$MPNT"
        skopeo copy -q --dest-tls-verify=false "oci:images/large:latest" "docker://$REG/bench/large:latest"
        hf mount-after-pull "$RUNS" 0 \
            --prepare "$MP umount $MPNT >/dev/null 2>&1; rm -rf $WORK/s-mpull; $MP pull --tls-verify=false -q $REG/bench/large >/dev/null; sync" \
            "$MP mount $REG/bench/large $MPNT >/dev/null && ls $MPNT >/dev/null"
        $MP umount "$MPNT" >/dev/null
        rm -rf "$WORK/s-mpull" "$MPNT"
    fi
    hf mount-warm "$RUNS" 1 \
        --prepare "$IMGM umount $MNT >/dev/null 2>&1; true" "$IMGM mount bench/large $MNT >/dev/null && ls $MNT >/dev/null" \
        --prepare "$PMM image unmount -a >/dev/null 2>&1; true" "ls \$($PMM image mount $PMID) >/dev/null"
    rss "$MNT" > rss-mount-warm.txt
    $PMM image unmount -a >/dev/null

    # Cold reads: page cache dropped and a new mount before each run; the
    # tools are run once after the drop so that loading them is not timed.
    REMOUNT="$IMGM umount $MNT >/dev/null 2>&1; $DROP; $IMGM mount bench/large $MNT >/dev/null && ls $MNT >/dev/null"
    WARM_TOOLS="dd --version >/dev/null; cat --version >/dev/null; gzip --version >/dev/null; find --version >/dev/null; xargs --version >/dev/null"
    # 2. 1 MiB in the middle of the largest layer.
    hf range-read "$RUNS" 0 \
        --prepare "$REMOUNT && $WARM_TOOLS" "dd if=$MNT/$BIGFILE of=/dev/null bs=1M skip=$SKIP count=1 status=none" \
        --prepare "$DROP; $WARM_TOOLS" "dd if=$UB/rootfs/$BIGFILE of=/dev/null bs=1M skip=$SKIP count=1 status=none"
    # 3. The whole big file vs gzip -dc of its layer.
    hf seq-read "$RUNS" 0 \
        --prepare "$REMOUNT && $WARM_TOOLS" "cat $MNT/$BIGFILE >/dev/null" \
        --prepare "$DROP; $WARM_TOOLS" "gzip -dc $BIGBLOB >/dev/null"
    # 4. Every file of the tree, vs umoci's unpacked tree and vs gzip -dc of
    # every layer (what any reader of the whole tree must decompress).
    hf walk "$HEAVY" 0 \
        --prepare "$REMOUNT && $WARM_TOOLS" "find $MNT -type f -print0 | xargs -0 cat >/dev/null" \
        --prepare "$DROP; $WARM_TOOLS" "find $UB/rootfs -type f -print0 | xargs -0 cat >/dev/null" \
        --prepare "$DROP; $WARM_TOOLS" "for b in $LAYERS; do gzip -dc \$b; done >/dev/null"
    # 5. The server after the walk (the last run's mount).
    rss "$MNT" > rss-walk.txt
    $IMGM umount "$MNT" >/dev/null

    # 6. Writable mounts: a 1 GiB file written (two copies of the big file,
    # so that commit compresses real data), a 1-byte append to the big file
    # (copy-up), and commit; vs a podman container (created, never run:
    # podman mount gives its overlay root, podman commit makes the image)
    # and a plain directory on the same filesystem.
    cat "$UB/rootfs/$BIGFILE" "$UB/rootfs/$BIGFILE" > "$SRC"
    mkdir -p "$PLAIN"; cp "$UB/rootfs/$BIGFILE" "$PLAIN/big.bin"; sync
    RW_IMG="$IMGM umount --discard $RW >/dev/null 2>&1; $IMGM mount --rw bench/large $RW >/dev/null"
    RW_PM="$PMM rm -f bc >/dev/null 2>&1; $PMM create -q --name bc $PMID >/dev/null && $PMM mount bc > $WORK/pm-ctr-path"
    DD_1G="bs=1M conv=fsync status=none"
    hf rw-write "$HEAVY" 0 \
        --prepare "$RW_IMG; sync" "dd if=$SRC of=$RW/new.bin $DD_1G" \
        --prepare "$RW_PM; sync" "dd if=$SRC of=\$(cat $WORK/pm-ctr-path)/new.bin $DD_1G" \
        --prepare "rm -f $PLAIN/new.bin; sync" "dd if=$SRC of=$PLAIN/new.bin $DD_1G"
    hf rw-copyup "$HEAVY" 0 \
        --prepare "$RW_IMG; sync" "printf x >> $RW/$BIGFILE" \
        --prepare "$RW_PM; sync" "printf x >> \$(cat $WORK/pm-ctr-path)/$BIGFILE" \
        --prepare "sync" "printf x >> $PLAIN/big.bin"
    hf rw-commit "$HEAVY" 0 \
        --prepare "$IMGM rmi bench/committed >/dev/null 2>&1; $RW_IMG && dd if=$SRC of=$RW/new.bin $DD_1G" \
            "$IMGM commit -q $RW bench/committed >/dev/null" \
        --prepare "$PMM rmi -f bench/committed >/dev/null 2>&1; $RW_PM && dd if=$SRC of=\$(cat $WORK/pm-ctr-path)/new.bin $DD_1G" \
            "$PMM commit -q bc bench/committed >/dev/null"

    grep -h . "$MS"/mounts/*.log > mount-serve.log 2>/dev/null || true
    mount_cleanup || true
    left=$(mounted_under_work)
    [ -z "$left" ] || { echo "bench: mounts left under $WORK: $left" >&2; exit 1; }

    python3 - "$RUNS" "$HEAVY" "$FSTYPE" "$WORK" "$BIGFILE" "$BIGSIZE" "$LAYER_LEN" "$SKIP" "$BIGBLOB" <<'PY'
import json, os, sys
runs, heavy, fs, work, bigfile = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
bigsize, layer_len, skip, bigblob = int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8]), sys.argv[9]
def med(name):
    return [r["median"] for r in json.load(open(f"{name}.json"))["results"]]
def rss(name):
    return [int(v) / 1024 for v in open(f"rss-{name}.txt").read().split()]
(umoci,), (cold,), (warm, pm_mount) = med("mount-umoci"), med("mount-cold"), med("mount-warm")
(pm_pull,), (img_load,) = med("mount-podman-pull"), med("mount-img-load")
(rr_img, rr_unp), (sq_img, sq_gz), (wk_img, wk_unp, wk_gz) = med("range-read"), med("seq-read"), med("walk")
(w_img, w_pm, w_plain), (c_img, c_pm, c_plain), (cm_img, cm_pm) = med("rw-write"), med("rw-copyup"), med("rw-commit")
r_cold, r_warm, r_walk = rss("mount-cold"), rss("mount-warm"), rss("walk")
tp_img, tp_gz = bigsize / sq_img / 1e6, layer_len / sq_gz / 1e6
s = lambda t: f"{t:.3f} s"
print(f"img mount of the large image ({os.path.getsize(bigblob) / 1e6:.0f} MB largest layer); bench dir {work} on {fs}")
print(f"medians of {runs} runs ({heavy} for umoci unpack, the walk and the writable mount)")
print(f"# mount ready, warm (indexes kept): img {s(warm)}, peer umoci unpack {s(umoci)}, ratio {umoci / warm:.1f}x  (goal >= 50x, img < 0.1 s)")
print(f"# mount ready, cold (indexes built): img {s(cold)}, peer umoci unpack {s(umoci)}, ratio {umoci / cold:.1f}x")
after_pull = med("mount-after-pull")[0] if os.path.exists("mount-after-pull.json") else None
if after_pull is not None:
    print(f"# mount ready, first after img pull (indexes built by the pull): img {s(after_pull)}, "
          f"peer umoci unpack {s(umoci)}, ratio {umoci / after_pull:.0f}x  (goal img < 0.1 s)")
print(f"# mount ready, warm: img {s(warm)}, peer podman image mount {s(pm_mount)}, ratio {pm_mount / warm:.2f}x  "
      f"(podman pulled and unpacked the image first: {s(pm_pull)}, 1 run)")
print(f"# from the OCI layout to the first ls: img load + cold mount {s(img_load + cold)}, peer podman pull + image mount "
      f"{s(pm_pull + pm_mount)}, ratio {(pm_pull + pm_mount) / (img_load + cold):.1f}x  (load and pull: 1 run each)")
print(f"# cold read of 1 MiB at {skip} MiB in {bigfile} (middle of the largest layer): img {s(rr_img)}, "
      f"peer unpacked file {s(rr_unp)}, ratio {rr_img / rr_unp:.1f}x  (goal img < 0.020 s)")
print(f"# sequential read of {bigfile} ({bigsize / 2**20:.0f} MiB), cold: img {s(sq_img)} ({tp_img:.0f} MB/s), "
      f"peer gzip -dc of its layer {s(sq_gz)} ({tp_gz:.0f} MB/s), ratio {tp_img / tp_gz:.2f}  (throughput img/gzip, goal >= 0.70)")
print(f"# find | xargs cat of every file, cold: img {s(wk_img)}, peer umoci's unpacked tree {s(wk_unp)}, "
      f"ratio {wk_img / wk_unp:.2f}x  (goal <= 2); gzip -dc of every layer {s(wk_gz)} (img/gzip {wk_img / wk_gz:.2f})")
print(f"# serving process RSS/HWM: after a cold mount {r_cold[0]:.1f}/{r_cold[1]:.1f} MB, after a warm mount "
      f"{r_warm[0]:.1f}/{r_warm[1]:.1f} MB, after the walk {r_walk[0]:.1f}/{r_walk[1]:.1f} MB  (goal < 50 MB)")
print(f"# write 1 GiB (dd conv=fsync) into a writable mount: img --rw {s(w_img)}, peer podman container {s(w_pm)}, "
      f"ratio {w_img / w_pm:.2f}x; plain directory {s(w_plain)} (img/plain {w_img / w_plain:.2f}x)")
print(f"# copy-up, 1 byte appended to {bigfile}: img --rw {s(c_img)}, peer podman container {s(c_pm)}, "
      f"ratio {c_img / c_pm:.2f}x; plain directory (no copy) {s(c_plain)}")
print(f"# commit of the 1 GiB change: img commit {s(cm_img)}, peer podman commit {s(cm_pm)}, ratio {cm_img / cm_pm:.2f}x  "
      f"(img gzips the layer; podman stores it uncompressed)")
print("summary (medians)")
rows = [
    ("mount ready, warm", warm, f"umoci unpack {umoci:.3f} s ({umoci / warm:.0f}x); podman image mount {pm_mount:.3f} s", warm < 0.1 and umoci / warm >= 50),
    ("mount ready, cold", cold, f"umoci unpack ({umoci / cold:.1f}x)", None),
] + ([("mount ready, after pull", after_pull, "indexes built by the pull", after_pull < 0.1)] if after_pull is not None else []) + [
    ("load + cold mount", img_load + cold, f"podman pull + image mount {pm_pull + pm_mount:.3f} s", None),
    ("cold 1 MiB read", rr_img, f"unpacked file {rr_unp:.4f} s", rr_img < 0.020),
    ("sequential read", sq_img, f"gzip -dc {sq_gz:.3f} s; {tp_img:.0f} vs {tp_gz:.0f} MB/s = {tp_img / tp_gz:.2f}", tp_img / tp_gz >= 0.7),
    ("walk of every file", wk_img, f"unpacked tree {wk_unp:.3f} s ({wk_img / wk_unp:.2f}x)", wk_img / wk_unp <= 2),
    ("write 1 GiB, --rw", w_img, f"podman container {w_pm:.3f} s; plain {w_plain:.3f} s", None),
    ("copy-up of the big file", c_img, f"podman container {c_pm:.3f} s", None),
    ("commit 1 GiB", cm_img, f"podman commit {cm_pm:.3f} s", None),
]
for name, t, peer, ok in rows:
    goal = "" if ok is None else ("  goal met" if ok else "  GOAL MISSED")
    print(f"  {name:24} {t:8.3f} s   {peer}{goal}")
hwm = max(r_cold[1], r_warm[1], r_walk[1])
print(f"  {'serving process peak':24} {hwm:6.1f} MB   (VmHWM){'  goal met' if hwm < 50 else '  GOAL MISSED'}")
if os.path.getsize("mount-serve.log"):
    print(f"the serving processes logged (see {work}/mount-serve.log):")
    print("".join("  " + l for l in open("mount-serve.log").readlines()[:10]), end="")
PY
fi

# The mount section's copy-up step (also alone: --only copyup): images with
# one 512 MiB file /big (tests/support/big_image.py: random, text and zero
# content, each as a gzip and a zstd layer), and a 1-byte append to /big,
# which copies it up: through img mount --rw (overlayfs over the FUSE tree,
# as root) vs a podman container of the same image (created, never run;
# podman mount gives its overlay root). Medians of --runs runs, a new mount
# or container before each; ratio img/podman per image.
bench_copyup() {
    local L=$WORK/images/copyup CS=$WORK/s-copyup CM=$WORK/mnt-copyup
    local PMC="podman --root $WORK/pm-copyup --runroot $WORK/pm-copyup-run --storage-driver overlay"
    local sum t tags=() ids=()
    copyup_cleanup() {
        $IMG --root "$WORK/s-copyup" umount -a --discard >/dev/null 2>&1
        podman --root "$WORK/pm-copyup" --runroot "$WORK/pm-copyup-run" --storage-driver overlay rm -af >/dev/null 2>&1
        local m
        for m in $(awk -v w="$WORK/" 'index($5, w) == 1 && ($5 ~ /copyup/) {print $5}' /proc/self/mountinfo | sort -r); do
            umount "$m" 2>/dev/null || umount -l "$m"
        done
        rm -rf "$WORK/s-copyup" "$WORK/mnt-copyup" "$WORK/pm-copyup" "$WORK/pm-copyup-run" "$WORK/pm-copyup-path"
        true
    }
    CLEANUPS+=(copyup_cleanup)
    copyup_cleanup
    sum=$(sha256sum "$REPO/tests/support/big_image.py" | cut -c1-12)
    if [ ! -f "$L/.done-$sum" ]; then
        echo "bench: generating the copy-up images" >&2
        rm -rf "$L"
        python3 "$REPO/tests/support/big_image.py" "$L" 512 random text zero gzip zstd
        touch "$L/.done-$sum"
    fi
    cat "$L"/blobs/sha256/* >/dev/null  # warm in the page cache
    $IMG --root "$CS" load -q -i "$L" >/dev/null
    for t in random-gzip random-zstd text-gzip text-zstd zero-gzip zero-zstd; do
        tags+=("$t")
        ids+=("$($PMC pull -q "oci:$L:$t")")
    done
    mkdir -p "$CM"
    local i
    for i in "${!tags[@]}"; do
        t=${tags[$i]}
        hf "copyup-$t" "$RUNS" 0 \
            --prepare "$IMG --root $CS umount --discard $CM >/dev/null 2>&1; $IMG --root $CS mount --rw localhost/$t $CM >/dev/null; sync" \
                "printf x >> $CM/big" \
            --prepare "$PMC rm -f cu >/dev/null 2>&1; $PMC create -q --name cu ${ids[$i]} >/dev/null && $PMC mount cu > $WORK/pm-copyup-path; sync" \
                "printf x >> \$(cat $WORK/pm-copyup-path)/big"
    done
    grep -h . "$CS"/mounts/*.log > copyup-serve.log 2>/dev/null || true
    copyup_cleanup
    python3 - "$RUNS" "$FSTYPE" "$WORK" "${tags[@]}" <<'PY'
import json, os, sys
runs, fs, work, tags = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
print(f"copy-up of a 512 MiB file (1 byte appended) through img mount --rw vs a podman container; "
      f"medians of {runs} runs; bench dir {work} on {fs}")
worst = 0
for t in tags:
    img, pm = [r["median"] for r in json.load(open(f"copyup-{t}.json"))["results"]]
    worst = max(worst, img / pm)
    print(f"# copy-up {t:12} img --rw {img:.3f} s, peer podman container {pm:.3f} s, ratio {img / pm:.2f}x  (goal <= 2)")
print(f"  {'copy-up, worst image':24} ratio {worst:.2f}x{'  goal met' if worst <= 2 else '  GOAL MISSED'}")
if os.path.getsize("copyup-serve.log"):
    print(f"the serving processes logged (see {work}/copyup-serve.log):")
    print("".join("  " + l for l in open("copyup-serve.log").readlines()[:10]), end="")
PY
}
if want mount || want copyup; then
    bench_copyup
fi

if want lazy; then
    # A registry in a network namespace of its own, reached from there: on
    # its loopback first as it is, then with tc netem adding 20 ms of delay
    # and a 100 Mbit/s rate, or, where the kernel has no netem, through
    # scripts/slowlink.py doing the same in user space. img and podman run
    # in that namespace too (only the network namespace: mounts stay
    # visible).
    gen_images large
    NS=img-bench-lazy
    LZ=$WORK/lazy
    lazy_cleanup() {
        local m
        for m in $(awk -v w="$LZ/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
            umount "$m" 2>/dev/null || umount -l "$m"
        done
        [ -n "${SLOW_PID:-}" ] && kill "$SLOW_PID" 2>/dev/null
        [ -n "${LREG_PID:-}" ] && kill "$LREG_PID" 2>/dev/null
        ip netns del "$NS" 2>/dev/null
        umount "$LZ/pm/overlay" 2>/dev/null
        rm -rf "$LZ/s-lazy" "$LZ/s-full" "$LZ/pm" "$LZ/pm-run" "$LZ/mnt-lazy" "$LZ/mnt-full"
        true
    }
    CLEANUPS+=(lazy_cleanup)
    lazy_cleanup || true
    mkdir -p "$LZ"
    ip netns add "$NS"
    IN="nsenter --net=/run/netns/$NS"
    $IN ip link set lo up
    LREG=127.0.0.1:5000
    cat > "$LZ/registry.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $LZ/registry
http:
  addr: $LREG
YML
    rm -rf "$LZ/registry"
    $IN docker-registry serve "$LZ/registry.yml" >"$LZ/registry.log" 2>&1 </dev/null &
    LREG_PID=$!
    for i in $(seq 1 100); do $IN curl -fs -o /dev/null "http://$LREG/v2/" && break; sleep 0.1; done
    # The gzip image as generated, and the same converted by img to eStargz.
    $IN skopeo copy -q --dest-tls-verify=false "oci:images/large:latest" "docker://$LREG/bench/large:gzip"
    rm -rf "$LZ/s-src"
    IMG_ROOT=$LZ/s-src $IN "$IMG" pull -q --tls-verify=false "$LREG/bench/large:gzip" >/dev/null
    echo "bench: converting the large image to eStargz" >&2
    /usr/bin/time -f "%e" -o "$LZ/convert-time.txt" env IMG_ROOT="$LZ/s-src" \
        "$IMG" convert -q --format estargz "$LREG/bench/large:gzip" localhost/large:esgz >/dev/null
    IMG_ROOT=$LZ/s-src $IN "$IMG" push -q --tls-verify=false localhost/large:esgz "$LREG/bench/large:esgz"
    echo "bench: converting the large image to zstd:chunked" >&2
    /usr/bin/time -f "%e" -o "$LZ/convert-time-zc.txt" env IMG_ROOT="$LZ/s-src" \
        "$IMG" convert -q --format zstd:chunked "$LREG/bench/large:gzip" localhost/large:zc >/dev/null
    IMG_ROOT=$LZ/s-src $IN "$IMG" push -q --tls-verify=false localhost/large:zc "$LREG/bench/large:zc"
    # An image of many small files for the whole read: the host's Python
    # library (about 5,000 files, 100 MB) in one layer, as eStargz.
    tar -cf "$LZ/py.tar" -C / usr/lib/python3.11 usr/lib/python3 usr/bin/python3.11 2>/dev/null || true
    IMG_ROOT=$LZ/s-src "$IMG" import "$LZ/py.tar" localhost/py:src >/dev/null
    IMG_ROOT=$LZ/s-src "$IMG" convert -q --format estargz localhost/py:src localhost/py:esgz >/dev/null
    IMG_ROOT=$LZ/s-src $IN "$IMG" push -q --tls-verify=false localhost/py:esgz "$LREG/bench/py:esgz"
    rm -rf "$LZ/s-src" "$LZ/py.tar"
    PMZ="podman --root $LZ/pm --runroot $LZ/pm-run --storage-driver overlay"
    PMZ_RESET="umount $LZ/pm/overlay 2>/dev/null; rm -rf $LZ/pm $LZ/pm-run; sync"
    # (The serving process may still be writing its log as it ends: the
    # store goes on a second try.)
    LAZY_RESET="$IMG --root $LZ/s-lazy umount -a >/dev/null 2>&1; rm -rf $LZ/s-lazy 2>/dev/null || { sleep 0.5; rm -rf $LZ/s-lazy; }; mkdir -p $LZ/mnt-lazy; sync"
    FULL_RESET="$IMG --root $LZ/s-full umount -a >/dev/null 2>&1; rm -rf $LZ/s-full 2>/dev/null || { sleep 0.5; rm -rf $LZ/s-full; }; mkdir -p $LZ/mnt-full; sync"
    lazy_round() { # label, runs for the full pulls, registry address
        local tag=$1 fr=$2 reg=$3 f
        for f in esgz zc gzip; do
            # (The gzip stream runs as long as a full pull: as many runs.)
            local runs=$RUNS
            [ "$f" = gzip ] && runs=$fr
            hf "lazy-$f-$tag" "$runs" 1 --prepare "$LAZY_RESET" \
                "$IN $IMG --root $LZ/s-lazy mount --tls-verify=false docker://$reg/bench/large:$f $LZ/mnt-lazy >/dev/null && head -c1 $LZ/mnt-lazy/etc/os-release >/dev/null"
            # What that read fetched: every range kept in lazy/ (TOCs
            # included) when the byte came (a streamed layer goes on).
            bash -c "$LAZY_RESET"
            $IN "$IMG" --root "$LZ/s-lazy" mount --tls-verify=false "docker://$reg/bench/large:$f" "$LZ/mnt-lazy" >/dev/null
            head -c1 "$LZ/mnt-lazy/etc/os-release" >/dev/null
            python3 "$LAZY_HELD" "$LZ/s-lazy/lazy" > "lazy-bytes-$f-$tag.txt"
            "$IMG" --root "$LZ/s-lazy" inspect -f '{{.Size}}' "$reg/bench/large:$f" >> "lazy-bytes-$f-$tag.txt"
            bash -c "$LAZY_RESET"
        done
        for f in gzip zc; do
            hf "lazy-full-$f-$tag" "$fr" 0 --prepare "$FULL_RESET" \
                "$IN $IMG --root $LZ/s-full pull -q --tls-verify=false $reg/bench/large:$f >/dev/null && $IMG --root $LZ/s-full mount $reg/bench/large:$f $LZ/mnt-full >/dev/null && head -c1 $LZ/mnt-full/etc/os-release >/dev/null"
            bash -c "$FULL_RESET"
        done
        hf "lazy-podman-$tag" 1 0 --prepare "$PMZ_RESET" "$IN $PMZ pull -q --tls-verify=false $reg/bench/large:gzip"
        bash -c "$PMZ_RESET"
        # A whole read (tar of every file) of the Python image: lazy, and
        # img pull + mount of the same image; the Range requests it made.
        hf "lazy-whole-$tag" "$RUNS" 0 --prepare "$LAZY_RESET" \
            "$IN $IMG --root $LZ/s-lazy mount --tls-verify=false docker://$reg/bench/py:esgz $LZ/mnt-lazy >/dev/null && tar -cf - -C $LZ/mnt-lazy . | wc -c >/dev/null"
        $IN "$IMG" --root "$LZ/s-lazy" mount --tls-verify=false "docker://$reg/bench/py:esgz" "$LZ/mnt-lazy" >/dev/null
        tar -cf - -C "$LZ/mnt-lazy" . | wc -c >/dev/null
        sleep 0.3
        "$IMG" --root "$LZ/s-lazy" mounts --format json |
            python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Lazy"]["Requests"])' > "lazy-whole-requests-$tag.txt"
        bash -c "$LAZY_RESET"
        hf "lazy-whole-full-$tag" "$RUNS" 0 --prepare "$FULL_RESET" \
            "$IN $IMG --root $LZ/s-full pull -q --tls-verify=false $reg/bench/py:esgz >/dev/null && $IMG --root $LZ/s-full mount $reg/bench/py:esgz $LZ/mnt-full >/dev/null && tar -cf - -C $LZ/mnt-full . | wc -c >/dev/null"
        bash -c "$FULL_RESET"
    }
    lazy_round loopback "$RUNS" "$LREG"
    # The slow link: tc netem on the namespace's loopback, or, where the
    # kernel has no netem qdisc ("Specified qdisc kind is unknown"), a proxy
    # in front of the registry adding the same delay and rate.
    if $IN tc qdisc add dev lo root netem delay 20ms rate 100mbit 2>/dev/null; then
        echo "tc netem" > lazy-link.txt
        lazy_round netem 1 "$LREG"
        $IN tc qdisc del dev lo root
    else
        echo "bench: no tc netem here; using scripts/slowlink.py for the slow link" >&2
        echo "userspace proxy (scripts/slowlink.py; the kernel has no netem)" > lazy-link.txt
        SLOW=127.0.0.1:5001
        $IN python3 "$SLOWLINK" "$SLOW" "$LREG" --delay-ms 20 --rate-mbit 100 \
            >"$LZ/slowlink.out" 2>"$LZ/slowlink.log" </dev/null &
        SLOW_PID=$!
        for i in $(seq 1 100); do
            grep -qx listening "$LZ/slowlink.out" 2>/dev/null && break
            kill -0 "$SLOW_PID" 2>/dev/null || break
            sleep 0.1
        done
        grep -qx listening "$LZ/slowlink.out" 2>/dev/null || {
            echo "bench: scripts/slowlink.py did not start:" >&2; cat "$LZ/slowlink.log" >&2; exit 1
        }
        lazy_round netem 1 "$SLOW"
        kill "$SLOW_PID" 2>/dev/null || true
        wait "$SLOW_PID" 2>/dev/null || true
        SLOW_PID=
    fi
    python3 - "$RUNS" "$(cat "$LZ/convert-time.txt")" "$(cat "$LZ/convert-time-zc.txt")" "$(cat lazy-link.txt)" <<'PY'
import json, sys
runs, conv, conv_zc, slow = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
med = lambda n: json.load(open(f"{n}.json"))["results"][0]["median"]
print(f"lazy mount of the large image from a docker-registry in a network namespace: eStargz (converted by img in {conv:.1f} s)")
print(f"and zstd:chunked (converted in {conv_zc:.1f} s), against a full pull of the gzip image as generated and of the zstd:chunked one")
print(f"time to the first byte of /etc/os-release from an empty store; medians of {runs} runs (full pulls and the gzip stream over the slow link, podman: 1)")
print(f"{'link':18} {'format':13} {'img lazy':>9} {'fetched':>16} {'full (gzip)':>12} {'ratio':>6} {'full (same)':>12} {'ratio':>6} {'podman pull':>12} {'ratio':>6}")
for tag, link in (("loopback", "loopback"), ("netem", "20 ms, 100 Mbit/s")):
    pm, gz = med(f"lazy-podman-{tag}"), med(f"lazy-full-gzip-{tag}")
    for f, name in (("esgz", "eStargz"), ("zc", "zstd:chunked"), ("gzip", "gzip stream")):
        lz = med(f"lazy-{f}-{tag}")
        same = med(f"lazy-full-zc-{tag}") if f == "zc" else gz
        got, size = map(int, open(f"lazy-bytes-{f}-{tag}.txt").read().split())
        print(f"{link:18} {name:13} {lz:>8.3f}s {got/1e6:>7.2f} MB {100*got/size:>5.2f}% {gz:>11.2f}s {gz/lz:>5.0f}x {same:>11.2f}s {same/lz:>5.0f}x {pm:>11.2f}s {pm/lz:>5.0f}x")
print(f"20 ms, 100 Mbit/s: {slow}")
print("goals: img lazy < 0.3 s and >= 20x faster than the full pull; fetched < 1% of the image (eStargz, zstd:chunked)")
print(f"whole read (tar of every file) of the host's Python library as eStargz, medians of {runs} runs")
print(f"{'link':18} {'img lazy':>9} {'requests':>9} {'pull + mount':>13} {'ratio':>6}")
for tag, link in (("loopback", "loopback"), ("netem", "20 ms, 100 Mbit/s")):
    lz, full = med(f"lazy-whole-{tag}"), med(f"lazy-whole-full-{tag}")
    req = open(f"lazy-whole-requests-{tag}.txt").read().strip()
    print(f"{link:18} {lz:>8.2f}s {req:>9} {full:>12.2f}s {lz/full:>5.2f}x")
print("goal: a whole read of a lazy mount within 2x of img pull + a read of the local mount")
print("a gzip layer has no TOC: its files are known as it streams, and a name in a lower layer waits for every layer above it")
PY
fi

if want build; then
    [ -f "$REPO/testdata/gen/base-docker.tar" ] || "$REPO/scripts/make-testdata.sh" >&2
    B=$WORK/build
    rm -rf "$B"; mkdir -p "$B"
    buildah() { command buildah --root "$B/broot" --runroot "$B/brun" --storage-driver vfs "$@"; }
    "$IMG" --root "$B/s" load -q -i "$REPO/testdata/gen/base-docker.tar" >/dev/null
    buildah pull -q "docker-archive:$REPO/testdata/gen/base-docker.tar" >/dev/null
    mk() { mkdir -p "$B/$1"; cat > "$B/$1/Dockerfile"; }
    mk small <<'EOF'
FROM localhost/base:1
ENV APP=/opt/app
RUN /bin/busybox mkdir -p $APP && echo built > $APP/stamp
COPY config.txt /etc/app/
EOF
    echo "key=value" > "$B/small/config.txt"
    { echo "FROM localhost/base:1"; for i in $(seq 1 10); do echo "RUN echo step $i > /step-$i"; done; } | mk steps
    mk multi <<'EOF'
FROM localhost/base:1 AS builder
RUN /bin/busybox mkdir -p /out && /bin/busybox seq 1 20000 > /out/numbers && /bin/busybox gzip /out/numbers
FROM localhost/base:1
COPY --from=builder /out/numbers.gz /srv/
CMD ["/bin/sh"]
EOF
    mk copy <<'EOF'
FROM localhost/base:1
COPY data /data
EOF
    python3 - "$B/copy/data" <<'PY'
import os, random, sys
random.seed(20261204)
root = sys.argv[1]
for d in range(20):
    os.makedirs(f"{root}/d{d:02}", exist_ok=True)
    for f in range(100):
        open(f"{root}/d{d:02}/f{f:03}", "wb").write(random.randbytes(32 * 1024))
PY
    BUILDAH="buildah --root $B/broot --runroot $B/brun --storage-driver vfs"
    cases=(small steps multi copy)
    for c in "${cases[@]}"; do
        hf "build-cold-$c" "$RUNS" 1 \
            "$IMG --root $B/s build --no-cache -q -t bench/$c:1 $B/$c" \
            "$BUILDAH bud --isolation chroot --layers --no-cache -q -t bench/$c:1 $B/$c"
        hf "build-cached-$c" "$RUNS" 2 \
            "$IMG --root $B/s build -q -t bench/$c:1 $B/$c" \
            "$BUILDAH bud --isolation chroot --layers -q -t bench/$c:1 $B/$c"
    done
    python3 - "$RUNS" "${cases[@]}" <<'PY'
import json, sys
runs, cases = sys.argv[1], sys.argv[2:]
med = lambda n: [r["median"] for r in json.load(open(f"{n}.json"))["results"]]
print(f"img build vs buildah bud --layers (vfs, chroot isolation), medians of {runs} runs")
print(f"{'Dockerfile':10} {'img cold':>9} {'buildah cold':>13} {'ratio':>6}   {'img cached':>10} {'buildah cached':>15} {'ratio':>6}")
for c in cases:
    ic, bc = med(f"build-cold-{c}")
    ih, bh = med(f"build-cached-{c}")
    print(f"{c:10} {ic*1000:>7.0f}ms {bc*1000:>11.0f}ms {bc/ic:>5.1f}x   {ih*1000:>8.0f}ms {bh*1000:>13.0f}ms {bh/ih:>5.1f}x")
print("goals: faster than buildah on every case; a cached rebuild under 200 ms")
PY
fi

if want serve; then
    SNAME=${SERVE_IMAGE:-medium}
    gen_images "$SNAME"
    SV=$WORK/serve
    rm -rf "$SV"; mkdir -p "$SV"
    free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
    DREG=127.0.0.1:$(free)
    printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: %s}\n' \
        "$SV/registry" "$DREG" > "$SV/registry.yml"
    docker-registry serve "$SV/registry.yml" >"$SV/registry.log" 2>&1 </dev/null &
    DREG_PID=$!
    IREG=127.0.0.1:$(free)
    IMG_ROOT=$SV/store "$IMG" serve --open --listen "$IREG" >"$SV/serve.log" 2>&1 </dev/null &
    IREG_PID=$!
    serve_cleanup() {
        kill "$DREG_PID" "$IREG_PID" 2>/dev/null || true
        wait "$DREG_PID" "$IREG_PID" 2>/dev/null || true
        rm -rf "$SV" || true
    }
    CLEANUPS+=(serve_cleanup)
    for r in "$DREG" "$IREG"; do
        for i in $(seq 1 100); do curl -s -o /dev/null "http://$r/v2/" && break; sleep 0.1; done
        skopeo copy -q --dest-tls-verify=false "oci:images/$SNAME:latest" "docker://$r/bench/$SNAME:1"
        curl -s -o /dev/null "http://$r/v2/bench/$SNAME/manifests/1"
    done
    echo "bench: docker-registry $DREG, img serve $IREG" >&2
    # podman unpacks every layer (vfs): its store is on a tmpfs where there
    # is one, so that the disk's noise does not drown the servers' part.
    PMDIR=$SV
    [ -d /dev/shm ] && PMDIR=/dev/shm/img-bench-serve
    SPM="podman --root $PMDIR/pm --runroot $PMDIR/pm-run --storage-driver vfs"
    hf "serve-skopeo" "$RUNS" 1 \
        --prepare "rm -rf $SV/sk; sync" "skopeo copy -q --src-tls-verify=false docker://$DREG/bench/$SNAME:1 oci:$SV/sk:x" \
        --prepare "rm -rf $SV/sk; sync" "skopeo copy -q --src-tls-verify=false docker://$IREG/bench/$SNAME:1 oci:$SV/sk:x"
    hf "serve-podman" "$PODMAN_RUNS" 0 \
        --prepare "rm -rf $PMDIR/pm $PMDIR/pm-run; sync" "$SPM pull -q --tls-verify=false $DREG/bench/$SNAME:1" \
        --prepare "rm -rf $PMDIR/pm $PMDIR/pm-run; sync" "$SPM pull -q --tls-verify=false $IREG/bench/$SNAME:1"
    rm -rf "$SV/sk" "$PMDIR/pm" "$PMDIR/pm-run"
    ACCEPT='Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
    for r in "$DREG" "$IREG"; do
        for i in $(seq 1 "$RUNS"); do
            wait_quiet "serve-rps"
            ab -k -q -n 20000 -c 50 -H "$ACCEPT" "http://$r/v2/bench/$SNAME/manifests/1" 2>&1 |
                awk -v r="$r" '/Requests per second/ {print r, $4} /Failed requests/ && $3 != 0 {print "failed", r, $3 > "/dev/stderr"}'
        done
    done > "$SV/rps.txt"
    SIZE=$(du -sb "images/$SNAME/blobs" | cut -f1)
    python3 - "$DREG" "$IREG" "$SIZE" "$RUNS" "$SV/rps.txt" <<'PY'
import json, statistics, sys
dreg, ireg, size, runs, rpsf = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
med = lambda n: [r["median"] for r in json.load(open(f"{n}.json"))["results"]]
print(f"img serve vs docker-registry (both plain HTTP on 127.0.0.1, filesystem storage), the {size/1e6:.0f} MB image; medians")
for tool in ("skopeo", "podman"):
    d, i = med(f"serve-{tool}")
    print(f"  {tool} pull   docker-registry {d:6.2f} s ({size/d/1e6:5.0f} MB/s)   img serve {i:6.2f} s ({size/i/1e6:5.0f} MB/s)   ratio {d/i:4.2f}x")
rps = {}
for line in open(rpsf):
    r, v = line.split()
    rps.setdefault(r, []).append(float(v))
d, i = statistics.median(rps.get(dreg, [0])), statistics.median(rps.get(ireg, [0]))
print(f"  manifest GETs, 50 clients (ab -k, {runs} runs of 20,000)   docker-registry {d:8.0f}/s   img serve {i:8.0f}/s   ratio {i/max(d,1):5.1f}x")
print("goal: img serve at least as fast as docker-registry on every figure")
PY
fi

if want cluster; then
    CNAME=${SERVE_IMAGE:-medium}
    gen_images "$CNAME"
    CL=$WORK/cluster
    rm -rf "$CL"; mkdir -p "$CL"
    source "$REPO/tests/support/garage.sh"
    source "$REPO/tests/support/postgres.sh"
    cfree() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
    CL_PIDS=()
    cluster_cleanup() {
        local p
        for p in "${CL_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
        for p in "${CL_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
        garage_stop >/dev/null 2>&1 || true
        pg_stop >/dev/null 2>&1 || true
        rm -rf "$CL" || true
    }
    CLEANUPS+=(cluster_cleanup)
    garage_start "$CL/garage" 3 >"$CL/garage.log" 2>&1 || { echo "bench: garage did not start" >&2; tail -5 "$CL/garage.log" >&2; exit 1; }
    pg_start "$CL/pg" >"$CL/pg.log" 2>&1 || { echo "bench: postgresql did not start" >&2; exit 1; }
    # haproxy_cfg PORT SERVER...: a balancer on PORT over the servers.
    haproxy_cfg() {
        local port=$1 i=0 s; shift
        printf 'global\n  maxconn 4000\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 300s\n  timeout server 300s\n'
        printf '  retries 3\n  option redispatch\n  retry-on conn-failure empty-response\n'
        printf 'frontend f\n  bind 127.0.0.1:%s\n  option forwardfor\n  default_backend b\nbackend b\n  balance roundrobin\n' "$port"
        for s in "$@"; do i=$((i + 1)); printf '  server s%s %s\n' "$i" "$s"; done
    }
    S3P=$(cfree)
    haproxy_cfg "$S3P" $(for e in $GARAGE_S3_ENDPOINTS; do echo "${e#http://}"; done) > "$CL/s3.cfg"
    haproxy -f "$CL/s3.cfg" -db >"$CL/s3.log" 2>&1 & CL_PIDS+=("$!")
    S3E=http://127.0.0.1:$S3P
    # img serve: 3 instances on one database and one bucket prefix.
    STOR="s3://$GARAGE_BUCKET/img?endpoint=$S3E&region=$AWS_REGION"
    DBU="postgres://img@127.0.0.1:$PG_PORT/img"
    IMGS=() DREGS=()
    for i in 1 2 3; do
        p=$(cfree)
        # Behind a balancer: its connections are many clients' (no per-address limit).
        IMG_ROOT=$CL/root$i "$IMG" serve --open --listen "127.0.0.1:$p" --trusted-proxy 127.0.0.1/32 \
            --storage "$STOR" --database "$DBU" >"$CL/img$i.log" 2>&1 </dev/null &
        CL_PIDS+=("$!"); IMGS+=("127.0.0.1:$p")
    done
    # docker-registry: 3 instances with its S3 driver on the same Garage
    # (another prefix), a shared upload secret, streaming (no redirects).
    for i in 1 2 3; do
        p=$(cfree)
        printf 'version: 0.1\nlog: {level: error}\nstorage:\n  s3: {region: %s, regionendpoint: "%s", bucket: %s, rootdirectory: /dreg, secure: false, v4auth: true}\n  redirect: {disable: true}\n  cache: {blobdescriptor: inmemory}\n  delete: {enabled: true}\nhttp: {addr: "127.0.0.1:%s", secret: bench-shared-secret}\n' \
            "$AWS_REGION" "$S3E" "$GARAGE_BUCKET" "$p" > "$CL/dreg$i.yml"
        env -u AWS_CA_BUNDLE REGISTRY_STORAGE_S3_ACCESSKEY=$AWS_ACCESS_KEY_ID REGISTRY_STORAGE_S3_SECRETKEY=$AWS_SECRET_ACCESS_KEY \
            docker-registry serve "$CL/dreg$i.yml" >"$CL/dreg$i.log" 2>&1 </dev/null &
        CL_PIDS+=("$!"); DREGS+=("127.0.0.1:$p")
    done
    I1=127.0.0.1:$(cfree); I3=127.0.0.1:$(cfree); D1=127.0.0.1:$(cfree); D3=127.0.0.1:$(cfree)
    haproxy_cfg "${I1#*:}" "${IMGS[0]}" > "$CL/i1.cfg"; haproxy_cfg "${I3#*:}" "${IMGS[@]}" > "$CL/i3.cfg"
    haproxy_cfg "${D1#*:}" "${DREGS[0]}" > "$CL/d1.cfg"; haproxy_cfg "${D3#*:}" "${DREGS[@]}" > "$CL/d3.cfg"
    for c in i1 i3 d1 d3; do haproxy -f "$CL/$c.cfg" -db >"$CL/$c.log" 2>&1 & CL_PIDS+=("$!"); done
    for r in "${IMGS[@]}" "${DREGS[@]}" "$I1" "$I3" "$D1" "$D3"; do
        for i in $(seq 1 200); do curl -s -o /dev/null "http://$r/v2/" && break; sleep 0.1; done
    done
    echo "bench: img serve ${IMGS[*]} (balanced at $I1 and $I3), docker-registry ${DREGS[*]} (at $D1 and $D3), Garage behind $S3E" >&2
    # Pushes: a new repository each run, skopeo's blob cache cleared, so
    # every byte is sent.
    SKCACHE="rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb $HOME/.local/share/containers/cache/blob-info-cache-v1.boltdb"
    hf "cluster-push" "$RUNS" 0 \
        --prepare "$SKCACHE; sync" "skopeo copy -q --dest-tls-verify=false oci:images/$CNAME:latest docker://$D3/bench/p\$(date +%s%N):1" \
        --prepare "$SKCACHE; sync" "skopeo copy -q --dest-tls-verify=false oci:images/$CNAME:latest docker://$I3/bench/p\$(date +%s%N):1"
    for r in "$D3" "$I3"; do
        skopeo copy -q --dest-tls-verify=false "oci:images/$CNAME:latest" "docker://$r/bench/$CNAME:1"
        curl -s -o /dev/null "http://$r/v2/bench/$CNAME/manifests/1"
    done
    hf "cluster-pull" "$RUNS" 1 \
        --prepare "rm -rf $CL/sk; sync" "skopeo copy -q --src-tls-verify=false docker://$D3/bench/$CNAME:1 oci:$CL/sk:x" \
        --prepare "rm -rf $CL/sk; sync" "skopeo copy -q --src-tls-verify=false docker://$I3/bench/$CNAME:1 oci:$CL/sk:x"
    rm -rf "$CL/sk"
    ACCEPT='Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
    for r in "$D1" "$D3" "$I1" "$I3"; do
        for i in $(seq 1 "$RUNS"); do
            wait_quiet "cluster-rps"
            ab -k -q -n 20000 -c 50 -H "$ACCEPT" "http://$r/v2/bench/$CNAME/manifests/1" 2>&1 |
                awk -v r="$r" '/Requests per second/ {print r, $4} /Failed requests|Non-2xx/ && $3 != 0 {print "failed", r, $0 > "/dev/stderr"}'
        done
    done > "$CL/rps.txt"
    SIZE=$(du -sb "images/$CNAME/blobs" | cut -f1)
    python3 - "$D1" "$D3" "$I1" "$I3" "$SIZE" "$RUNS" "$CL/rps.txt" <<'PY'
import json, statistics, sys
d1, d3, i1, i3, size, runs, rpsf = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], sys.argv[7]
med = lambda n: [r["median"] for r in json.load(open(f"{n}.json"))["results"]]
print(f"img serve (S3 + PostgreSQL) vs docker-registry (S3 driver), both on a 3-node Garage cluster behind haproxy, the {size/1e6:.0f} MB image; medians")
for what in ("push", "pull"):
    d, i = med(f"cluster-{what}")
    print(f"  skopeo {what}, 3 instances   docker-registry {d:6.2f} s ({size/d/1e6:5.0f} MB/s)   img serve {i:6.2f} s ({size/i/1e6:5.0f} MB/s)   ratio {d/i:4.2f}x")
rps = {}
for line in open(rpsf):
    r, v = line.split()
    rps.setdefault(r, []).append(float(v))
m = {k: statistics.median(rps.get(k, [0])) for k in (d1, d3, i1, i3)}
for label, d, i in (("1 instance ", d1, i1), ("3 instances", d3, i3)):
    print(f"  manifest GETs, 50 clients (ab -k, {runs} runs of 20,000), {label}   docker-registry {m[d]:8.0f}/s   img serve {m[i]:8.0f}/s   ratio {m[i]/max(m[d],1):5.1f}x")
print(f"  img serve, 3 instances over 1: {m[i3]/max(m[i1],1):4.2f}x; docker-registry: {m[d3]/max(m[d1],1):4.2f}x")
print("goal: img serve ahead of docker-registry on every figure; 3 instances at least 1.5x the manifest GETs of one")
PY
    cluster_cleanup
    CLEANUPS=("${CLEANUPS[@]/cluster_cleanup/true}")
fi

if want rate; then
    RT=$WORK/rate
    rate_cleanup() {
        [ -d "$RT/s-lazy" ] && { "$IMG" --root "$RT/s-lazy" umount -a >/dev/null 2>&1 || true; }
        if [ -n "${RA_PID:-}" ]; then
            kill "$RA_PID" "$RB_PID" 2>/dev/null || true
            wait "$RA_PID" "$RB_PID" 2>/dev/null || true
            RA_PID=
        fi
        rm -rf "$RT" || true
    }
    CLEANUPS+=(rate_cleanup)
    rm -rf "$RT"; mkdir -p "$RT"
    rport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
    RA=127.0.0.1:$(rport); RB=127.0.0.1:$(rport)
    printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: %s}\n' "$RT/ra" "$RA" > "$RT/ra.yml"
    printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: %s}\n' "$RT/rb" "$RB" > "$RT/rb.yml"
    docker-registry serve "$RT/ra.yml" >"$RT/ra.log" 2>&1 </dev/null &
    RA_PID=$!
    docker-registry serve "$RT/rb.yml" >"$RT/rb.log" 2>&1 </dev/null &
    RB_PID=$!
    for r in "$RA" "$RB"; do
        for i in $(seq 1 100); do curl -fs -o /dev/null "http://$r/v2/" && break; sleep 0.1; done
    done
    python3 - "$RT/root.tar" <<'PY'
import io, random, sys, tarfile
with tarfile.open(sys.argv[1], "w") as t:
    data = random.Random(20261207).randbytes(12 << 20)
    i = tarfile.TarInfo("payload")
    i.size, i.mode, i.mtime = len(data), 0o644, 1700000000
    t.addfile(i, io.BytesIO(data))
PY
    SRC="$IMG --root $RT/s-src"
    $SRC import "$RT/root.tar" localhost/rate:src >/dev/null
    $SRC push -q --tls-verify=false localhost/rate:src "$RA/rate/img:1"
    $SRC convert -q --format estargz localhost/rate:src localhost/rate:esgz >/dev/null
    $SRC push -q --tls-verify=false localhost/rate:esgz "$RA/rate/img:esgz"
    CAP=$((1 << 20))
    ms() { echo $(( $(date +%s%N) / 1000000 )); }
    image_bytes() { # registry repo tag: manifest, config and layers
        curl -fs -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
            "http://$1/v2/$2/manifests/$3" |
            python3 -c 'import json,sys; b=sys.stdin.buffer.read(); m=json.loads(b); print(len(b) + m["config"]["size"] + sum(l["size"] for l in m["layers"]))'
    }
    fetched() { "$IMG" --root "$RT/s-lazy" mounts --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Lazy"]["BytesFetched"])'; }
    BYTES=$(image_bytes "$RA" rate/img 1)
    : > "$RT/rate.txt"
    for i in $(seq 1 $(( RUNS < 3 ? RUNS : 3 ))); do
        echo "bench: timing rate, run $i" >&2
        rm -rf "$RT/s-pull"; sync; t0=$(ms)
        "$IMG" --root "$RT/s-pull" pull -q --tls-verify=false --limit-rate 1m "$RA/rate/img:1" >/dev/null
        echo "pull $BYTES $(( $(ms) - t0 ))" >> "$RT/rate.txt"
        t0=$(ms)
        # The pulled image, its layer sent as stored, to the other registry.
        "$IMG" --root "$RT/s-pull" push -q --tls-verify=false --limit-rate 1m "$RA/rate/img:1" "$RB/rate/push-$i:1"
        echo "push $(image_bytes "$RB" rate/push-$i 1) $(( $(ms) - t0 ))" >> "$RT/rate.txt"
        t0=$(ms)
        "$IMG" copy -q --src-tls-verify=false --dest-tls-verify=false --limit-rate 1m \
            "docker://$RA/rate/img:1" "docker://$RB/rate/copy-$i:1"
        echo "copy $BYTES $(( $(ms) - t0 ))" >> "$RT/rate.txt"
        rm -rf "$RT/s-lazy" "$RT/mnt"; mkdir -p "$RT/mnt"
        "$IMG" --root "$RT/s-lazy" mount --tls-verify=false --limit-rate 1m "docker://$RA/rate/img:esgz" "$RT/mnt" >/dev/null
        sleep 0.3; f0=$(fetched); t0=$(ms)
        cat "$RT/mnt/payload" >/dev/null
        t1=$(ms); sleep 0.3; f1=$(fetched)
        echo "lazy $(( f1 - f0 )) $(( t1 - t0 ))" >> "$RT/rate.txt"
        "$IMG" --root "$RT/s-lazy" umount "$RT/mnt" >/dev/null
    done
    python3 - "$CAP" "$RT/rate.txt" <<'PY'
import statistics, sys
cap, rows = int(sys.argv[1]), [l.split() for l in open(sys.argv[2])]
print(f"--limit-rate 1m ({cap} B/s) on a 12 MiB layer of random bytes from a local docker-registry; medians of {len(rows) // 4} runs")
worst = 0.0
for op in ("pull", "push", "copy", "lazy"):
    runs = [(int(b), int(t)) for o, b, t in rows if o == op]
    rates = [b * 1000 / t for b, t in runs]
    r = statistics.median(rates)
    worst = max(worst, max(abs(x / cap - 1) for x in rates))
    what = "lazy read" if op == "lazy" else f"img {op}"
    b, t = runs[len(runs) // 2]
    print(f"  {what:10} {b / 1e6:6.2f} MB in {statistics.median(t for _, t in runs) / 1000:5.2f} s   {r / 1024:7.1f} KiB/s   {r / cap * 100:5.1f}% of the cap")
print(f"  furthest from the cap in any run: {worst * 100:.1f}%")
print("goal: within 5% of the cap over 10 s and more")
PY
    rate_cleanup
fi

if want edge; then
    # The binaries, built (or found built) by scripts/release.sh.
    (cd "$REPO" && scripts/release.sh --no-size-check) > edge-sizes.txt
    DIST=$(dirname "$(dirname "$IMG")")/dist/dist
    EDGE_IMAGE=${EDGE_IMAGE:-medium}
    gen_images "$EDGE_IMAGE"
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    EREG=127.0.0.1:$PORT
    printf 'version: 0.1\nlog: {level: warn}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: %s}\n' \
        "$WORK/edge-registry" "$EREG" > edge-registry.yml
    docker-registry serve edge-registry.yml >edge-registry.log 2>&1 </dev/null &
    EREG_PID=$!
    edge_cleanup() {
        umount -l "$WORK/edge-mnt" 2>/dev/null || true
        kill "$EREG_PID" 2>/dev/null || true
        wait "$EREG_PID" 2>/dev/null || true
        rm -rf "$WORK/edge-registry" "$WORK/edge-store" "$WORK/edge-mnt" || true
    }
    CLEANUPS+=(edge_cleanup)
    for i in $(seq 1 100); do curl -fs -o /dev/null "http://$EREG/v2/" && break; sleep 0.1; done
    skopeo copy -q --dest-tls-verify=false "oci:images/$EDGE_IMAGE:latest" "docker://$EREG/bench/$EDGE_IMAGE:latest"
    : > edge-rss.txt
    for arch in x86_64 aarch64 armv7; do
        case $arch in
            x86_64) run=(); bin=$DIST/img-x86_64-unknown-linux-musl ;;
            aarch64) run=(qemu-aarch64-static); bin=$DIST/img-aarch64-unknown-linux-musl ;;
            armv7) run=(qemu-arm-static); bin=$DIST/img-armv7-unknown-linux-musleabihf ;;
        esac
        E=(env IMG_ROOT="$WORK/edge-store" "${run[@]}" "$bin")
        rm -rf "$WORK/edge-store"
        /usr/bin/time -f %M -o edge-t.txt "${E[@]}" --version >/dev/null
        echo "$arch baseline $(cat edge-t.txt)" >> edge-rss.txt
        wait_quiet "edge-$arch"
        /usr/bin/time -f %M -o edge-t.txt "${E[@]}" pull -q "$EREG/bench/$EDGE_IMAGE:latest" >/dev/null
        echo "$arch pull $(cat edge-t.txt)" >> edge-rss.txt
        rm -rf "$WORK/edge-store"
        /usr/bin/time -f %M -o edge-t.txt "${E[@]}" load -q -i "$WORK/images/$EDGE_IMAGE" >/dev/null
        echo "$arch load $(cat edge-t.txt)" >> edge-rss.txt
        # The mount server, as img mount starts it (run here so that GNU
        # time measures it, and under qemu, which cannot start an ARM
        # program itself), while every file is read; img umount ends it.
        ID=$("${E[@]}" images -q --no-trunc | head -1)
        mkdir -p "$WORK/edge-mnt"
        /usr/bin/time -f %M -o edge-t.txt "${E[@]}" __serve-mount "${ID#sha256:}" "$WORK/edge-mnt" > edge-serve.out 2>edge-serve.err &
        SERVE=$!
        for i in $(seq 1 300); do [ -s edge-serve.out ] && break; sleep 0.1; done
        [ "$(head -1 edge-serve.out)" = ready ] || { echo "bench: the $arch mount server failed:" >&2; cat edge-serve.out edge-serve.err >&2; exit 1; }
        find "$WORK/edge-mnt" -type f -print0 | xargs -0 cat > /dev/null
        "${E[@]}" umount "$WORK/edge-mnt" >/dev/null
        wait "$SERVE" || true
        echo "$arch mount-serve $(cat edge-t.txt)" >> edge-rss.txt
        rm -rf "$WORK/edge-store"
    done
    edge_cleanup
    CLEANUPS=("${CLEANUPS[@]/edge_cleanup/true}")
    python3 - edge-sizes.txt edge-rss.txt "$EDGE_IMAGE" <<'PY'
import sys
sizes, rss, image = sys.argv[1], sys.argv[2], sys.argv[3]
print("static release binaries (stripped; goals: full <= 10 MB, edge <= 5 MB)")
for line in open(sizes):
    name, size, sha = line.split()
    print(f"  {name:44} {int(size)/1e6:6.2f} MB  sha256 {sha[:16]}")
r = {}
for line in open(rss):
    arch, what, kb = line.split()
    r.setdefault(arch, {})[what] = int(kb) / 1024
print(f"peak RSS (GNU time, MB) of the full binary, the {image} image; arm64 and armv7 under qemu-user, whose own share is in 'qemu+--version'")
print(f"  {'target':8} {'qemu+--version':>14} {'pull':>7} {'load':>7} {'mount-serve':>11}")
for arch, v in r.items():
    base = v.get("baseline", 0)
    print(f"  {arch:8} {base:14.1f} {v['pull']:7.1f} {v['load']:7.1f} {v['mount-serve']:11.1f}")
print("goal: pull, load and the mount server under 30 MB on every target (under qemu: less its --version figure)")
PY
fi

if [ -s busy.txt ]; then
    echo "the machine was busy with other work around these timings (figures may be inflated):"
    sed 's/^/  /' busy.txt
else
    echo "the machine was otherwise idle before and after every timing"
fi
