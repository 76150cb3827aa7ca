#!/usr/bin/env bash
# A throwaway PostgreSQL 15 server for tests, on 127.0.0.1 and a Unix
# socket in its own directory.
#
# Sourced by test scripts (which call pg_stop in their cleanup):
#   source tests/support/postgres.sh
#   pg_start "$WORK/pg"      # exports PG_URL PGPASSWORD PG_PORT PG_DIR PG_SOCKET_URL
#   pg_restart; pg_stop_server; pg_start_server   # restarts and outages
#   pg_add_role NAME md5     # another role; exports PG_ROLE_URL PG_ROLE_PASSWORD
#   pg_psql -c 'SELECT 1'    # psql as the superuser, over the socket
#   pg_stop                  # stops the server and removes its directory
#
# Or run as a command: a server for the length of one command, e.g. the
# client's live tests (they read IMG_TEST_PG_URL and friends):
#   tests/support/postgres.sh run cargo test --lib pg:: -- --ignored
#
# Run as root, the server runs as the `postgres` system user (initdb
# refuses root); run as anyone else, as that user. Host connections use
# scram-sha-256, the local socket trusts everyone (the directory is 0700).

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

# _pg_as CMD...: CMD as the server's user.
_pg_as() {
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

_pg_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

_pg_ctl() { _pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 "$@" > /dev/null; }

# pg_psql ARGS...: psql as the superuser over the socket, stopping at the
# first error.
pg_psql() {
  _pg_as "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres "$@"
}

_pg_password() { head -c 24 /dev/urandom | base64 | tr -d '/+=\n'; }

# pg_start DIR: a new cluster in DIR (made; its owner becomes the server's
# user), started on a free port; role and database `img` with a generated
# password.
pg_start() {
  local dir=${1:-} try
  [[ -n $dir ]] || { echo "pg_start: name a directory" >&2; return 1; }
  [[ -x $PG_BIN/initdb ]] || { echo "pg_start: $PG_BIN/initdb not found: install postgresql 15 or set PG_BIN" >&2; return 1; }
  mkdir -p "$dir" || return 1
  PG_DIR=$(realpath "$dir")
  if [[ $(id -u) == 0 ]]; then
    chown postgres: "$PG_DIR" || return 1
    # The server's user must reach DIR: a test's private temporary
    # directories on the way get o+x (enter, not list).
    local up=$PG_DIR tmp
    tmp=$(realpath "${TMPDIR:-/tmp}")
    while up=$(dirname "$up"); [[ $up == "$tmp"/* ]]; do
      runuser -u postgres -- test -x "$up" || chmod o+x "$up"
    done
    runuser -u postgres -- test -x "$PG_DIR" \
      || { echo "pg_start: user postgres cannot reach $PG_DIR: chmod o+x its parents" >&2; return 1; }
  fi
  chmod 700 "$PG_DIR"
  _pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -E UTF8 --locale=C --no-sync \
    --auth-local=trust --auth-host=scram-sha-256 > "$PG_DIR/initdb.log" 2>&1 \
    || { echo "pg_start: initdb failed:" >&2; cat "$PG_DIR/initdb.log" >&2; return 1; }
  # A free port can be taken between the look and the start: try again.
  for try in 1 2 3; do
    PG_PORT=$(_pg_free_port)
    _pg_as tee -a "$PG_DIR/data/postgresql.conf" > /dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
# A test server: speed over durability.
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    _pg_ctl start && break
    [[ $try == 3 ]] && { echo "pg_start: the server did not start:" >&2; tail -20 "$PG_DIR/server.log" >&2; return 1; }
  done
  export PG_DIR PG_PORT
  PGPASSWORD=$(_pg_password)
  pg_psql -c "CREATE ROLE img LOGIN PASSWORD '$PGPASSWORD'" -c "CREATE DATABASE img OWNER img" || return 1
  export PGPASSWORD
  export PG_URL="postgres://img@127.0.0.1:$PG_PORT/img"
  export PG_SOCKET_URL="postgres://img@/img?host=$PG_DIR&port=$PG_PORT"
}

# pg_add_role NAME [scram-sha-256|md5]: a login role with a generated
# password stored as asked (md5 roles get their own pg_hba line, as
# scram-sha-256 would refuse them); exports PG_ROLE_URL (database img) and
# PG_ROLE_PASSWORD.
pg_add_role() {
  local name=${1:?pg_add_role: name a role} method=${2:-scram-sha-256} pw
  pw=$(_pg_password)
  pg_psql -c "SET password_encryption = '$method'" -c "CREATE ROLE $name LOGIN PASSWORD '$pw'" \
    -c "GRANT ALL ON DATABASE img TO $name" || return 1
  if [[ $method == md5 ]]; then
    { echo "host all $name 127.0.0.1/32 md5"; cat "$PG_DIR/data/pg_hba.conf"; } > "$PG_DIR/hba.new"
    _pg_as tee "$PG_DIR/data/pg_hba.conf" < "$PG_DIR/hba.new" > /dev/null
    rm -f "$PG_DIR/hba.new"
    _pg_ctl reload || return 1
    sleep 0.3
  fi
  export PG_ROLE_URL="postgres://$name@127.0.0.1:$PG_PORT/img" PG_ROLE_PASSWORD=$pw
}

pg_restart() { _pg_ctl restart -m fast; }
pg_stop_server() { _pg_ctl stop -m fast; }
pg_start_server() { _pg_ctl start; }

# pg_stop: stops the server (if running) and removes its directory.
pg_stop() {
  [[ -n ${PG_DIR:-} && -d $PG_DIR ]] || return 0
  if [[ -f $PG_DIR/data/postmaster.pid ]]; then
    _pg_ctl stop -m fast || _pg_ctl stop -m immediate
  fi
  rm -rf "$PG_DIR"
  unset PG_DIR PG_PORT PG_URL PG_SOCKET_URL PGPASSWORD PG_ROLE_URL PG_ROLE_PASSWORD
}

# As a command: `postgres.sh run CMD...` runs CMD with a server and the
# variables the client's live tests read, then removes the server.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -uo pipefail
  [[ ${1:-} == run && $# -gt 1 ]] || { echo "usage: $0 run COMMAND..." >&2; exit 2; }
  shift
  work=$(mktemp -d "${TMPDIR:-/tmp}/img-pg.XXXXXX")
  trap 'pg_stop; rm -rf "$work"' EXIT
  trap 'exit 130' INT TERM
  pg_start "$work/pg" || exit 1
  pg_add_role img_md5 md5 || exit 1
  export IMG_TEST_PG_URL=$PG_URL IMG_TEST_PG_SOCKET_URL=$PG_SOCKET_URL
  export IMG_TEST_PG_MD5_URL=$PG_ROLE_URL IMG_TEST_PG_MD5_PASSWORD=$PG_ROLE_PASSWORD
  export IMG_TEST_PG_DIR=$PG_DIR IMG_TEST_PG_SUPPORT=$(realpath "${BASH_SOURCE[0]}")
  "$@"
fi
