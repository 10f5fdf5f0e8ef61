#!/usr/bin/env bash
# A real ClickHouse 26.9 on loopback for tests, benchmarks, CI and the demo.
#
# The server is the ClickHouse engine shipped in PyPI's chdb-core, installed into a cached venv on
# first use, serving HTTP and native TCP from clickhouse-local (see scripts/chdb_server.py).
#
# Usage: scripts/clickhouse.sh COMMAND [--dir DIR] [--http-port N] [--tcp-port N]
#                               [--extra-config FILE] [--profile-settings FILE]
#   install   install chdb-core into the cached venv (start does this too)
#   start     start the server (no-op if this instance already answers), wait for /ping
#   stop      clean stop: end the holding query, wait, SIGTERM/SIGKILL only as a fallback
#   kill      SIGKILL the server (a crash, for crash tests); data stays in the instance dir
#   restart   stop, then start on the same data directory
#   status    print whether the instance is up, its PID and URL; exit 1 when it is down
#   url       print the HTTP URL of the instance
#   python    print the path of the venv's python (has chdb)
#
# Environment (flags win): CH_DIR (default: <repo>/var/clickhouse), CH_HTTP_PORT (8123),
# CH_TCP_PORT (9000), CH_TEST_USER (chasync_test), CH_TEST_PASSWORD (chasync-secret),
# (and a user chasync_restricted, password restricted-secret, who may only SELECT and INSERT
# in the database chasync_restricted: no system.query_log, no SYSTEM FLUSH LOGS),
# CHASYNC_CACHE (default: ~/.cache/chasync) where the venv lives.
# --extra-config FILE: XML elements put inside <clickhouse> of the server's config.xml (e.g.
#   <remote_servers> for a cluster); --profile-settings FILE: XML elements put into the default
#   profile (e.g. <distributed_foreground_insert>1</distributed_foreground_insert>). Both are
#   read at start (a restart rewrites the config from them again).
set -euo pipefail

CHDB_VERSION="26.9.0"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

cmd="${1:-}"
[ $# -gt 0 ] && shift
CH_DIR="${CH_DIR:-$repo/var/clickhouse}"
CH_HTTP_PORT="${CH_HTTP_PORT:-8123}"
CH_TCP_PORT="${CH_TCP_PORT:-9000}"
CH_TEST_USER="${CH_TEST_USER:-chasync_test}"
CH_TEST_PASSWORD="${CH_TEST_PASSWORD:-chasync-secret}"
CH_EXTRA_CONFIG="${CH_EXTRA_CONFIG:-}"
CH_PROFILE_SETTINGS="${CH_PROFILE_SETTINGS:-}"
cache="${CHASYNC_CACHE:-$HOME/.cache/chasync}"
venv="$cache/chdb-$CHDB_VERSION"

while [ $# -gt 0 ]; do
  case "$1" in
    --dir) CH_DIR="$2"; shift 2 ;;
    --http-port) CH_HTTP_PORT="$2"; shift 2 ;;
    --tcp-port) CH_TCP_PORT="$2"; shift 2 ;;
    --extra-config) CH_EXTRA_CONFIG="$2"; shift 2 ;;
    --profile-settings) CH_PROFILE_SETTINGS="$2"; shift 2 ;;
    *) echo "clickhouse.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$CH_DIR"
CH_DIR="$(cd "$CH_DIR" && pwd)"
pidfile="$CH_DIR/server.pid"
fifo="$CH_DIR/hold.fifo"
log="$CH_DIR/server.log"
url="http://127.0.0.1:$CH_HTTP_PORT"

say() { echo "clickhouse.sh: $*" >&2; }

install() {
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import chdb._chdb' 2>/dev/null; then
    return 0
  fi
  say "installing chdb-core==$CHDB_VERSION into $venv"
  mkdir -p "$cache"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps "chdb-core==$CHDB_VERSION"
  "$venv/bin/python" -c 'import chdb._chdb'
}

pid_alive() {
  [ -f "$pidfile" ] || return 1
  local pid
  pid="$(cat "$pidfile")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

ping_ok() {
  curl -fsS --max-time 2 "$url/ping" >/dev/null 2>&1
}

# The contents of an optional fragment file (empty when none is given).
fragment() {
  if [ -n "$1" ]; then
    if [ ! -r "$1" ]; then say "cannot read $1"; exit 2; fi
    cat "$1"
  fi
}

write_config() {
  local extra_config profile_settings
  extra_config="$(fragment "$CH_EXTRA_CONFIG")"
  profile_settings="$(fragment "$CH_PROFILE_SETTINGS")"
  cat >"$CH_DIR/config.xml" <<EOF
<clickhouse>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$CH_HTTP_PORT</http_port>
  <tcp_port>$CH_TCP_PORT</tcp_port>
  <users_config>users.xml</users_config>
  <max_concurrent_queries>200</max_concurrent_queries>
  <query_log>
    <database>system</database>
    <table>query_log</table>
    <flush_interval_milliseconds>1000</flush_interval_milliseconds>
  </query_log>
$extra_config
</clickhouse>
EOF
  cat >"$CH_DIR/users.xml" <<EOF
<clickhouse>
  <profiles>
    <default>
      <async_insert>0</async_insert>
      <log_queries>1</log_queries>
$profile_settings
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
      <access_management>1</access_management>
    </default>
    <$CH_TEST_USER>
      <password>$CH_TEST_PASSWORD</password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </$CH_TEST_USER>
    <chasync_restricted>
      <password>restricted-secret</password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
      <grants>
        <query>GRANT SELECT, INSERT ON chasync_restricted.*</query>
      </grants>
    </chasync_restricted>
  </users>
  <quotas><default></default></quotas>
</clickhouse>
EOF
}

start() {
  if pid_alive && ping_ok; then
    say "already running (pid $(cat "$pidfile")) at $url"
    return 0
  fi
  if ping_ok; then
    say "something else already answers at $url; choose another --http-port"
    return 1
  fi
  install
  write_config
  mkdir -p "$CH_DIR/data"
  rm -f "$fifo"
  mkfifo "$fifo"
  # A new session, so the server outlives this script and its terminal.
  (cd "$CH_DIR" && exec setsid "$venv/bin/python" "$here/chdb_server.py" "$CH_DIR/data" "$fifo" \
    </dev/null >>"$log" 2>&1) &
  echo $! >"$pidfile"
  local i
  for i in $(seq 1 300); do
    if ping_ok; then
      say "up (pid $(cat "$pidfile")) at $url, data in $CH_DIR/data"
      return 0
    fi
    if ! pid_alive; then
      say "server exited during start-up; last lines of $log:"
      tail -n 20 "$log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  say "no answer from $url after 30 s; see $log"
  return 1
}

wait_gone() {
  local pid="$1" tries="$2" i
  for i in $(seq 1 "$tries"); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}

stop() {
  if ! pid_alive; then
    say "not running"
    rm -f "$pidfile"
    return 0
  fi
  local pid
  pid="$(cat "$pidfile")"
  # Ending the holding query lets clickhouse-local shut down cleanly.
  if [ -p "$fifo" ]; then
    timeout 5 bash -c "echo stop > '$fifo'" 2>/dev/null || true
  fi
  if ! wait_gone "$pid" 100; then
    say "clean stop timed out; SIGTERM"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 50; then
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone "$pid" 50 || true
    fi
  fi
  rm -f "$pidfile"
  say "stopped"
}

crash() {
  if ! pid_alive; then
    say "not running"
    return 0
  fi
  local pid
  pid="$(cat "$pidfile")"
  kill -KILL "$pid" 2>/dev/null || true
  wait_gone "$pid" 100 || true
  rm -f "$pidfile"
  say "killed (pid $pid)"
}

case "$cmd" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  kill) crash ;;
  restart) stop; start ;;
  status)
    if pid_alive && ping_ok; then
      echo "up pid=$(cat "$pidfile") url=$url dir=$CH_DIR"
    else
      echo "down url=$url dir=$CH_DIR"
      exit 1
    fi
    ;;
  url) echo "$url" ;;
  python) install; echo "$venv/bin/python" ;;
  *) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
