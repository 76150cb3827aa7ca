# A local Garage cluster (an S3 store) for tests: sourced by bash scripts.
#
#   garage_start DIR [NODES]   starts NODES (default 3) nodes on 127.0.0.1,
#                              each with its own RPC, S3 and admin port and its
#                              metadata and data under DIR/nodeI; one shared
#                              RPC secret, replication_factor NODES, one zone
#                              per node; makes a bucket and a key with read,
#                              write and owner rights on it, and exports
#                              GARAGE_S3_ENDPOINTS (the nodes' S3 URLs, in
#                              node order), GARAGE_BUCKET, AWS_ACCESS_KEY_ID,
#                              AWS_SECRET_ACCESS_KEY, AWS_REGION, GARAGE_PIDS,
#                              GARAGE_DIR and GARAGE_NODES
#   garage_stop_node I         stops node I (from 1): SIGTERM, SIGKILL after 10 s
#   garage_start_node I        starts node I again and waits for it to rejoin
#   garage_stop                stops every node and removes DIR
#   garage_cli I ARGS...       runs the garage CLI against node I
#
# The nodes' state is in DIR (pid files, configs), so garage_stop_node and
# garage_start_node also work from another process that sources this file
# with GARAGE_DIR set (the Rust test does). The binary is $GARAGE_BIN, else
# `garage` on PATH, else ${IMG_GARAGE_CACHE:-/var/cache/img-test}/bin/garage
# (scripts/install-garage.sh puts it there). With 3 nodes and replication 3
# reads and writes need 2 of them: one node down still serves.

_garage_bin() {
  if [[ -n ${GARAGE_BIN:-} ]]; then
    [[ -x $GARAGE_BIN ]] || { echo "garage.sh: GARAGE_BIN=$GARAGE_BIN is not an executable" >&2; return 1; }
  elif command -v garage >/dev/null; then
    GARAGE_BIN=$(command -v garage)
  elif [[ -x ${IMG_GARAGE_CACHE:-/var/cache/img-test}/bin/garage ]]; then
    GARAGE_BIN=${IMG_GARAGE_CACHE:-/var/cache/img-test}/bin/garage
  else
    echo "garage.sh: no garage binary; run scripts/install-garage.sh (or set GARAGE_BIN)" >&2
    return 1
  fi
  export GARAGE_BIN
}

_garage_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# _garage_alive PID: the process runs (a zombie does not count)
_garage_alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

garage_cli() {
  local i=$1; shift
  "$GARAGE_BIN" -c "$GARAGE_DIR/node$i/config.toml" "$@"
}

# _garage_wait SECONDS COMMAND...: runs COMMAND every 0.2 s until it succeeds
_garage_wait() {
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || return 1
    sleep 0.2
  done
}

_garage_pids() {
  local i pids=()
  for ((i = 1; i <= GARAGE_NODES; i++)); do
    [[ -f $GARAGE_DIR/node$i/pid ]] && pids+=("$(cat "$GARAGE_DIR/node$i/pid")")
  done
  export GARAGE_PIDS="${pids[*]}"
}

_garage_healthy() { garage_cli "$1" json-api GetClusterHealth | grep -q '"status": *"healthy"'; }

_garage_run() {
  local i=$1 d=$GARAGE_DIR/node$1
  # started from a subshell, so that init (not the caller) reaps it
  (
    cd "$d" || exit 1
    RUST_LOG=${GARAGE_LOG:-garage=warn} "$GARAGE_BIN" -c "$d/config.toml" server >>"$d/log" 2>&1 </dev/null &
    echo $! >"$d/pid"
  )
  _garage_pids
}

garage_start_node() {
  local i=${1:?garage_start_node needs a node number}
  [[ -d $GARAGE_DIR/node$i ]] || { echo "garage.sh: no node $i in ${GARAGE_DIR:-(GARAGE_DIR unset)}" >&2; return 1; }
  _garage_bin || return 1
  _garage_run "$i"
  _garage_wait 30 garage_cli "$i" status ||
    { echo "garage.sh: node $i did not start; its log:" >&2; tail -20 "$GARAGE_DIR/node$i/log" >&2; return 1; }
  _garage_wait 60 _garage_healthy "$i" ||
    { echo "garage.sh: node $i did not rejoin the cluster" >&2; return 1; }
}

garage_stop_node() {
  local i=${1:?garage_stop_node needs a node number} pid n
  pid=$(cat "$GARAGE_DIR/node$i/pid" 2>/dev/null) || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((n = 0; n < 100; n++)); do
    _garage_alive "$pid" || break
    sleep 0.1
  done
  if _garage_alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null
    _garage_wait 5 eval "! _garage_alive $pid"
  fi
  rm -f "$GARAGE_DIR/node$i/pid"
  _garage_pids
}

garage_start() {
  local dir=${1:?garage_start needs a directory} nodes=${2:-3} i
  _garage_bin || return 1
  mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || return 1
  export GARAGE_DIR=$dir GARAGE_NODES=$nodes
  local secret endpoints=() ids=()
  secret=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  for ((i = 1; i <= nodes; i++)); do
    local d=$dir/node$i rpc s3 admin
    rpc=$(_garage_port) s3=$(_garage_port) admin=$(_garage_port)
    mkdir -p "$d/meta" "$d/data"
    cat >"$d/config.toml" <<EOF
metadata_dir = "$d/meta"
data_dir = "$d/data"
db_engine = "sqlite"
metadata_fsync = false
data_fsync = false
replication_factor = $nodes
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
EOF
    chmod 600 "$d/config.toml"
    endpoints+=("http://127.0.0.1:$s3")
    _garage_run "$i"
  done
  for ((i = 1; i <= nodes; i++)); do
    _garage_wait 30 garage_cli "$i" status ||
      { echo "garage.sh: node $i did not start; its log:" >&2; tail -20 "$dir/node$i/log" >&2; return 1; }
    ids+=("$(garage_cli "$i" node id -q)") || return 1
  done
  for ((i = 2; i <= nodes; i++)); do
    garage_cli 1 node connect "${ids[i - 1]}" >/dev/null || return 1
  done
  for ((i = 1; i <= nodes; i++)); do
    garage_cli 1 layout assign -z "zone$i" -c 1G "${ids[i - 1]%%@*}" >/dev/null || return 1
  done
  garage_cli 1 layout apply --version 1 >/dev/null || return 1
  for ((i = 1; i <= nodes; i++)); do
    _garage_wait 60 _garage_healthy "$i" || { echo "garage.sh: node $i does not see a healthy cluster" >&2; return 1; }
  done
  local key=GK$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n') keysecret
  keysecret=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  garage_cli 1 bucket create img-test >/dev/null &&
    garage_cli 1 key import "$key" "$keysecret" -n img-test --yes >/dev/null &&
    garage_cli 1 bucket allow --read --write --owner img-test --key img-test >/dev/null || return 1
  export GARAGE_S3_ENDPOINTS="${endpoints[*]}" GARAGE_BUCKET=img-test AWS_REGION=garage
  export AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$keysecret
}

garage_stop() {
  [[ -n ${GARAGE_DIR:-} && -d $GARAGE_DIR ]] || return 0
  local i
  for ((i = 1; i <= GARAGE_NODES; i++)); do
    garage_stop_node "$i"
  done
  rm -rf "$GARAGE_DIR"
  unset GARAGE_DIR GARAGE_PIDS GARAGE_S3_ENDPOINTS
}
