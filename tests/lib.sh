# What the shell suites share: sourced by tests/*.sh.
#
# A suite defines check_* functions and then calls `run_checks "$@"`: each
# check runs in a subshell with `set -eEuo pipefail`, its own directory $T
# under $WORK, and its servers (pids added to PIDS) stopped when it ends;
# mount points it adds to MOUNTS are unmounted (lazily) when it ends; it
# prints "ok - NAME" or "not ok - NAME" and the end of its log, then
# "N passed, M failed"; a line a check writes to $T/measure is printed
# after the checks, after "# " unless it starts with "#". Arguments (and $ONLY, if set) are substrings of
# the checks to run. Suites set WORK (removed at exit, with every server in
# PIDS) before sourcing this file.
#
# What a suite may set or define to change that (each optional):
#   CHECKS=(NAME...)      the checks to run, in this order (default: every
#                         check_* function, by name)
#   CHECK_ERREXIT=0       run checks without set -e: a check fails only
#                         where it says so (fail), as its commands expect
#   LOG_NOTES=1           print the "# ..." lines of a passing check's log
#                         after its "ok" line
#   before_check          runs in the check's subshell before it ($name, $T)
#   after_check RC        runs in the suite's shell after it ($name, $T,
#                         $CHECK_START: $SECONDS when it began)
#   skip_check FN         true for a check not to run this time
#   after_checks          runs after the last check, before the totals
#   suite_cleanup         runs at exit before the servers stop and WORK goes

: "${WORK:?set WORK before sourcing tests/lib.sh}"
PIDS=() MOUNTS=()
lib_cleanup() {
  declare -F suite_cleanup >/dev/null && suite_cleanup
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  [[ -n ${KEEP_WORK:-} ]] || rm -rf "$WORK"
}
trap lib_cleanup EXIT

fail() { echo "$*" >&2; exit 1; }
# grep that reads its input to the end (grep -q under pipefail can fail
# the pipeline with the writer's SIGPIPE)
has() { grep "$@" > /dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# make_pki DIR: the test PKI in DIR: a CA; a server certificate for
# 127.0.0.1 and a client certificate, both from it; an RSA key and
# self-signed certificate that sign tokens. ca-only/ and client/ are
# certificate directories (--cert-dir, --dest-cert-dir) with the CA, and
# with the CA and the client certificate. openssl's output goes to
# DIR.log.
make_pki() (
  local dir=$1
  mkdir -p "$dir/ca-only" "$dir/client" && cd "$dir" || return 1
  local ec=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256)
  {
    openssl genpkey "${ec[@]}" -out ca.key &&
      openssl req -x509 -new -key ca.key -subj "/CN=img test CA" -days 2 -out ca.crt \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign &&
      openssl genpkey "${ec[@]}" -out server.key &&
      openssl req -x509 -new -key server.key -subj /CN=127.0.0.1 -days 2 -CA ca.crt -CAkey ca.key -out server.crt \
        -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
        -addext keyUsage=critical,digitalSignature -addext extendedKeyUsage=serverAuth &&
      openssl genpkey "${ec[@]}" -out client.key &&
      openssl req -x509 -new -key client.key -subj "/CN=img test client" -days 2 -CA ca.crt -CAkey ca.key \
        -out client.cert -addext basicConstraints=critical,CA:FALSE \
        -addext keyUsage=critical,digitalSignature -addext extendedKeyUsage=clientAuth &&
      openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sign.key &&
      openssl req -x509 -new -key sign.key -subj "/CN=img test token signer" -days 2 -out sign.crt &&
      cp ca.crt ca-only/ && cp ca.crt client.cert client.key client/
  } 2>"$dir.log" >&2
)

# need TOOL...: a missing tool is a failure of the whole suite.
need() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "not ok - tools: $t is missing (scripts/test.sh installs it)"; echo "0 passed, 1 failed"; exit 1; }
  done
}

# start_docker_registry NAME VAR [OPTION...]: Debian's docker-registry in
# $WORK/NAME on a free port of 127.0.0.1; sets VAR to host:port once it
# answers. Options: htpasswd=FILE (Basic auth), tls (HTTPS with the server
# certificate of $PKI, made by make_pki), clientcas (and require a client
# certificate from its CA), token=REALM (token auth for $TOKEN_SERVICE from
# $TOKEN_ISSUER, tokens signed by $PKI/sign.key). Not run in a subshell, so
# that cleanup knows the server's pid.
start_docker_registry() {
  local name=$1 var=$2 port opt auth="" tls="" scheme=http; port=$(free_port); shift 2
  for opt in "$@"; do
    case $opt in
      htpasswd=*) auth="auth: {htpasswd: {realm: test, path: ${opt#*=}}}" ;;
      tls) tls=", tls: {certificate: $PKI/server.crt, key: $PKI/server.key}"; scheme=https ;;
      clientcas) tls="${tls%\}}, clientcas: [$PKI/ca.crt]}" ;;
      token=*) auth="auth: {token: {realm: '${opt#*=}', service: $TOKEN_SERVICE, issuer: $TOKEN_ISSUER, rootcertbundle: $PKI/sign.crt}}" ;;
      *) echo "start_docker_registry: unknown option $opt" >&2; return 1 ;;
    esac
  done
  mkdir -p "$WORK/$name"
  {
    echo "version: 0.1"
    echo "log: {level: error}"
    echo "storage: {filesystem: {rootdirectory: $WORK/$name/data}, delete: {enabled: true}}"
    echo "http: {addr: 127.0.0.1:$port$tls}"
    [[ -n $auth ]] && echo "$auth"
  } > "$WORK/$name/config.yml"
  docker-registry serve "$WORK/$name/config.yml" > "$WORK/$name/log" 2>&1 &
  PIDS+=($!)
  wait_for "$scheme://127.0.0.1:$port/v2/" "$WORK/$name/log" && printf -v "$var" '%s' "127.0.0.1:$port"
}

# wait_for URL LOG: waits until URL answers (any status; over https with the
# client certificate of $PKI); prints LOG if it never does.
wait_for() {
  local tls=()
  [[ $1 == https:* ]] && tls=(--cacert "$PKI/ca.crt" --cert "$PKI/client.cert" --key "$PKI/client.key")
  for _ in $(seq 50); do
    curl -s -o /dev/null "${tls[@]}" "$1" && return 0
    sleep 0.1
  done
  cat "$2" >&2
  return 1
}

# drive_tty ANSWER CMD...: runs CMD on a pseudo-terminal, types ANSWER
# when it asks for a password, and prints what the terminal showed.
TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
drive_tty() { python3 "$TESTS_DIR/support/drive_tty.py" "$@"; }

passed=0 failed=0
run_check() {
  local fn=$1 name=${1#check_}
  local T=$WORK/$name
  # the suite's own servers (started before the checks) outlive each check
  SUITE_PIDS=${#PIDS[@]}
  CHECK_START=$SECONDS
  mkdir -p "$T"
  (
    if [[ ${CHECK_ERREXIT:-1} == 1 ]]; then
      set -eEuo pipefail
      trap 'echo "stopped at line $LINENO: $BASH_COMMAND" >&2' ERR
    else
      set -uo pipefail
    fi
    trap 'for p in "${PIDS[@]:SUITE_PIDS}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
          for m in "${MOUNTS[@]}"; do umount -l "$m" 2>/dev/null || true; done' EXIT
    export T
    if declare -F before_check >/dev/null; then before_check; fi
    "$fn"
  ) > "$T/log" 2>&1
  local rc=$?
  [[ -f $T/measure ]] && sed '/^#/!s/^/# /' "$T/measure" >> "$WORK/measurements"
  if [[ $rc == 0 ]]; then
    echo "ok - $name"; passed=$((passed + 1))
    if [[ ${LOG_NOTES:-0} == 1 ]]; then grep '^# ' "$T/log" || true; fi
  else
    echo "not ok - $name"; failed=$((failed + 1))
    tail -n 25 "$T/log" | sed 's/^/#   /'
  fi
  if declare -F after_check >/dev/null; then after_check "$rc"; fi
  return 0
}

# selected_checks [SUBSTRING...]: the checks run_checks runs, one a line:
# CHECKS, or every check_* function, or those whose name holds one of the
# substrings (or $ONLY), less those skip_check skips.
selected_checks() {
  local fn keep pat pats=("$@") fns
  [[ -n ${ONLY:-} ]] && pats+=("$ONLY")
  if declare -p CHECKS &>/dev/null; then fns=("${CHECKS[@]}"); else mapfile -t fns < <(declare -F | awk '{print $3}' | grep '^check_'); fi
  for fn in "${fns[@]}"; do
    if [[ ${#pats[@]} -gt 0 ]]; then
      keep=0; for pat in "${pats[@]}"; do [[ $fn == *"$pat"* ]] && keep=1; done
      [[ $keep == 1 ]] || continue
    fi
    if declare -F skip_check >/dev/null && skip_check "$fn"; then continue; fi
    echo "$fn"
  done
}

# run_checks [SUBSTRING...]: runs the selected checks; returns non-zero if
# any failed or none ran.
run_checks() {
  local start=$SECONDS fn fns
  mapfile -t fns < <(selected_checks "$@")
  for fn in "${fns[@]}"; do run_check "$fn"; done
  if declare -F after_checks >/dev/null; then after_checks; fi
  [[ -f $WORK/measurements ]] && cat "$WORK/measurements"
  echo "# the suite took $((SECONDS - start)) s"
  echo "$passed passed, $failed failed"
  [[ $failed == 0 && $passed -gt 0 ]]
}
