#!/usr/bin/env bash
# Quick start on a fresh Debian machine: build img, install it, make a small
# image from busybox-static and try the main commands on it.
# The demo uses a throwaway store (IMG_ROOT); at the end it loads the sample
# images (sample:1, sample:2, sample:3) into your own store to try the rest on.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -t 1 ]]; then B=$'\033[1m' N=$'\033[0m'; else B= N=; fi
show() { printf '\n%s$ %s%s\n' "$B" "$*" "$N"; }
quote() { # the arguments as a shell would need them typed
  local a out=()
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=@%+-]+$ ]]; then out+=("$a"); else out+=("'${a//\'/\'\\\'\'}'"); fi
  done
  echo "${out[*]}"
}
run() { show "$(quote "$@")"; "$@"; }
say() { printf '\n# %s\n' "$*"; }

# 1. Tools: cargo (from rustup), a C compiler (for the bundled SQLite and
#    compressors) and busybox-static (for the sample image).
if ! command -v cargo >/dev/null && [[ -x $HOME/.cargo/bin/cargo ]]; then
  export PATH=$HOME/.cargo/bin:$PATH
fi
if ! command -v cargo >/dev/null; then
  echo "cargo is not installed. Install Rust with rustup (https://rustup.rs):"
  echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh"
  echo "then open a new shell (or: . ~/.cargo/env) and run this script again."
  exit 1
fi
need=()
command -v cc >/dev/null || need+=(build-essential)
[[ -x /bin/busybox ]] || need+=(busybox-static)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v curl >/dev/null || need+=(curl)
command -v fusermount3 >/dev/null || need+=(fuse3)
if [[ ${#need[@]} -gt 0 ]]; then
  if [[ $(id -u) == 0 ]]; then
    run apt-get update -qq
    # Keep the docker-registry package from starting a system service.
    policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      policy=/usr/sbin/policy-rc.d
      printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy
    fi
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
    [[ -z $policy ]] || rm -f "$policy"
  else
    echo "Please install: sudo apt-get install ${need[*]}"; exit 1
  fi
fi

# 2. Build and install.
run cargo build --release
if [[ $(id -u) == 0 ]]; then BIN_DIR=/usr/local/bin; else BIN_DIR=$HOME/.local/bin; fi
run install -D -m 0755 target/release/img "$BIN_DIR/img"
# Man pages and bash completion, where the system looks for them.
scripts/make-man.sh target/release/img target/man >/dev/null
if [[ $(id -u) == 0 ]]; then MAN_DIR=/usr/local/share/man/man1 COMP_DIR=/usr/share/bash-completion/completions
else MAN_DIR=$HOME/.local/share/man/man1 COMP_DIR=$HOME/.local/share/bash-completion/completions; fi
mkdir -p "$MAN_DIR" "$COMP_DIR" && cp target/man/man1/*.1 "$MAN_DIR/" && cp target/man/completions/img.bash "$COMP_DIR/img"
say "Man pages in $MAN_DIR (man img-pull), bash completion in $COMP_DIR/img"
case ":$PATH:" in *":$BIN_DIR:"*) ;; *) say "Add $BIN_DIR to your PATH to call img by name."
  export PATH=$BIN_DIR:$PATH ;; esac
run img version

# 3. A sample image from busybox-static, in a throwaway store.
DEMO=$(mktemp -d /tmp/img-quickstart.XXXXXX)
REGISTRY_PID=""
SERVE_PID=""
cleanup() {
  img umount -a --discard >/dev/null 2>&1 || true
  [[ -z $SERVE_PID ]] || kill "$SERVE_PID" 2>/dev/null || true
  if [[ -n $REGISTRY_PID ]]; then
    kill "$REGISTRY_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$REGISTRY_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$REGISTRY_PID" 2>/dev/null || true
  fi
  rm -rf "$DEMO"
}
trap cleanup EXIT
export IMG_ROOT=$DEMO/store
say "Store for this demo: IMG_ROOT=$IMG_ROOT (default: /var/lib/img, or ~/.local/share/img)"
mkdir -p "$DEMO/rootfs/bin" "$DEMO/rootfs/etc" "$DEMO/rootfs/tmp"
cp /bin/busybox "$DEMO/rootfs/bin/"
for applet in sh ls cat echo; do ln -s busybox "$DEMO/rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$DEMO/rootfs/etc/passwd"
run tar -C "$DEMO/rootfs" -cf "$DEMO/rootfs.tar" .
run img import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' -m "busybox sample" "$DEMO/rootfs.tar" sample:1

# 4. The main job.
run img images
run img inspect sample:1
run img history sample:1
run img save -o "$DEMO/sample.tar" sample:1
say "Load the archive into a second store:"
run img --root "$DEMO/store2" load -i "$DEMO/sample.tar"
run img --root "$DEMO/store2" images
say "The image's root filesystem:"
show "img export sample:1 | tar t | head"
img export sample:1 | tar t | head || true

# 5. A registry on 127.0.0.1 (Debian's docker-registry, plain HTTP): push,
#    then pull into a third store.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 5000)
printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: 127.0.0.1:%s}\n' \
  "$DEMO/registry" "$PORT" > "$DEMO/registry.yml"
say "A local registry on 127.0.0.1:$PORT:"
docker-registry serve "$DEMO/registry.yml" > "$DEMO/registry.log" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/v2/" && break; sleep 0.1; done
run img push --tls-verify=false sample:1 "127.0.0.1:$PORT/demo/sample:1"
run img tags --tls-verify=false "127.0.0.1:$PORT/demo/sample"
run img inspect --tls-verify=false -f '{{.Digest}} {{.Architecture}}' "docker://127.0.0.1:$PORT/demo/sample:1"
run img --root "$DEMO/store3" pull --tls-verify=false "127.0.0.1:$PORT/demo/sample:1"

# 6. Look inside without unpacking: a read-only FUSE mount of the image.
say "Mount the image (served from its stored layers):"
run img mount sample:1 "$DEMO/mnt"
run ls "$DEMO/mnt" "$DEMO/mnt/bin"
run cat "$DEMO/mnt/etc/passwd"
run img mounts
run img umount "$DEMO/mnt"

# 7. Change it and commit the change, as docker commit does.
say "A writable mount, a change, and img commit:"
run img mount --rw sample:1 "$DEMO/rw"
run sh -c "echo 'hello from img commit' > '$DEMO/rw/etc/motd'"
run img commit -m "add a motd" -c 'CMD ["cat", "/etc/motd"]' "$DEMO/rw" sample:2
run img umount "$DEMO/rw"
run img history sample:2
run img mount sample:2 "$DEMO/mnt2"
run cat "$DEMO/mnt2/etc/motd"
run img umount "$DEMO/mnt2"

# 8. Build an image from a Dockerfile (RUN in a sandbox on the image's
#    mounted files, COPY from the context), then again from the cache.
say "img build from a Dockerfile:"
mkdir -p "$DEMO/ctx"
echo "built by img" > "$DEMO/ctx/message.txt"
cat > "$DEMO/ctx/Dockerfile" <<'DOCKERFILE'
FROM sample:1
ARG GREETING=hello
RUN echo "$GREETING from RUN" > /greeting && /bin/busybox mkdir -p /app
COPY message.txt /app/
WORKDIR /app
CMD ["cat", "/greeting", "message.txt"]
DOCKERFILE
run cat "$DEMO/ctx/Dockerfile"
run img build -t sample:3 "$DEMO/ctx"
run img build -t sample:3 "$DEMO/ctx"
run img history sample:3
run img mount sample:3 "$DEMO/mnt3"
run cat "$DEMO/mnt3/greeting" "$DEMO/mnt3/app/message.txt"
run img umount "$DEMO/mnt3"

# 9. Serve the store as a registry, with a user, a private namespace and a
#    grant; push to it and pull from it.
SPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 5001)
say "img serve: the store as a registry on 127.0.0.1:$SPORT, with a user and a grant:"
show "printf 'demo-pass\\n' | img --root $DEMO/served serve admin user add demo --password-stdin"
printf 'demo-pass\n' | img --root "$DEMO/served" serve admin user add demo --password-stdin
run img --root "$DEMO/served" serve admin namespace add team --private
run img --root "$DEMO/served" serve admin grant demo team push
run img --root "$DEMO/served" serve admin list
img --root "$DEMO/served" serve --listen "127.0.0.1:$SPORT" 2>"$DEMO/serve.log" &
SERVE_PID=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$SPORT/v2/" && break; sleep 0.1; done
show "printf 'demo-pass\\n' | img login -u demo --password-stdin --tls-verify=false 127.0.0.1:$SPORT"
printf 'demo-pass\n' | img login -u demo --password-stdin --tls-verify=false "127.0.0.1:$SPORT"
run img push --tls-verify=false sample:3 "127.0.0.1:$SPORT/team/sample:3"
run img --root "$DEMO/store4" pull --tls-verify=false "127.0.0.1:$SPORT/team/sample:3"
run img logout "127.0.0.1:$SPORT"
run img --root "$DEMO/served" images
kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true

# 10. Leave the sample images in your own store, to try the rest on.
OWN=$(env -u IMG_ROOT img info -f '{{.Store.Root}}')
say "The sample images stay in your own store ($OWN) to try the README's commands on:"
img save sample:1 sample:2 sample:3 | env -u IMG_ROOT img load
run env -u IMG_ROOT img images 'sample*'
say "Done. Try 'img --help', 'img inspect sample:3'; 'img save sample:3 | podman load' hands an image to podman."
