# What the shell suites share: sourced by tests/*.sh.
#
# A suite defines check_* functions and then calls `run_checks "$@"`: each
# check runs in a subshell with `set -eEuo pipefail`, its own directory $T
# under $WORK, and its servers (pids added to PIDS) stopped when it ends;
# it prints "ok - NAME" or "not ok - NAME" and the end of its log, then
# "N passed, M failed"; a line "# ..." a check writes to $T/measure is
# printed after the checks. Arguments are substrings of the checks to run.
# Suites set WORK (removed at exit, with every server in PIDS) before
# sourcing this file.

: "${WORK:?set WORK before sourcing tests/lib.sh}"
PIDS=()
lib_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap lib_cleanup EXIT

fail() { echo "$*" >&2; exit 1; }
# grep that reads its input to the end (grep -q under pipefail can fail
# the pipeline with the writer's SIGPIPE)
has() { grep "$@" > /dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# need TOOL...: a missing tool is a failure of the whole suite.
need() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "not ok - tools: $t is missing (scripts/test.sh installs it)"; echo "0 passed, 1 failed"; exit 1; }
  done
}

# start_docker_registry VAR [HTPASSWD]: Debian's docker-registry on a free
# port of 127.0.0.1 (Basic auth when an htpasswd file is given); sets VAR to
# host:port once it answers.
start_docker_registry() {
  local var=$1 htpasswd=${2:-} port dir; port=$(free_port); dir=$(mktemp -d "$WORK/registry.XXXXXX")
  {
    echo "version: 0.1"
    echo "log: {level: error}"
    echo "storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}"
    echo "http: {addr: 127.0.0.1:$port}"
    [[ -n $htpasswd ]] && echo "auth: {htpasswd: {realm: test, path: $htpasswd}}"
  } > "$dir/config.yml"
  docker-registry serve "$dir/config.yml" > "$dir/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/v2/"; then
      printf -v "$var" '%s' "127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  cat "$dir/log" >&2
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
  mkdir -p "$T"
  (
    set -eEuo pipefail
    trap 'echo "stopped at line $LINENO: $BASH_COMMAND" >&2' ERR
    trap 'for p in "${PIDS[@]:SUITE_PIDS}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done' EXIT
    export T
    "$fn"
  ) > "$T/log" 2>&1
  local rc=$?
  [[ -f $T/measure ]] && sed 's/^/# /' "$T/measure" >> "$WORK/measurements"
  if [[ $rc == 0 ]]; then
    echo "ok - $name"; passed=$((passed + 1))
  else
    echo "not ok - $name"; failed=$((failed + 1))
    tail -n 25 "$T/log" | sed 's/^/#   /'
  fi
}

# run_checks [SUBSTRING...]: every check_* function (or those whose name
# holds one of the substrings); returns non-zero if any failed or none ran.
run_checks() {
  local start=$SECONDS fn keep pat
  for fn in $(declare -F | awk '{print $3}' | grep '^check_'); do
    if [[ $# -gt 0 ]]; then
      keep=0; for pat in "$@"; do [[ $fn == *"$pat"* ]] && keep=1; done
      [[ $keep == 1 ]] || continue
    fi
    run_check "$fn"
  done
  [[ -f $WORK/measurements ]] && cat "$WORK/measurements"
  echo "# the suite took $((SECONDS - start)) s"
  echo "$passed passed, $failed failed"
  [[ $failed == 0 && $passed -gt 0 ]]
}
