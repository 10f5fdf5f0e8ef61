#!/usr/bin/env bash
# The gateway benchmark (benches/gateway/bench_gateway.py) with everything it needs: release
# builds of chasyncd and of the JSONEachRow load generator (benches/src/bin/gateway_load.rs), a
# venv with clickhouse-connect, and a private ClickHouse of its own (so that no other load on a
# shared server skews it; started here and stopped at the end unless it was already running).
#
#   scripts/bench-gateway.sh [harness options]   # e.g. --duration 20 --runs 3 --only json
#
# Environment: CHASYNC_BENCH_VENV (default $CHASYNC_CACHE/bench-gateway-venv), BENCH_CH_DIR
# (default <repo>/var/bench-gateway-ch), BENCH_CH_HTTP_PORT (18124), BENCH_CH_TCP_PORT (19001),
# BENCH_SPOOL_DIR (chasyncd's spools, default <repo>/var/bench-gateway-spool: a real disk, as the
# write-ahead log's fsyncs are part of what is measured). Results: target/bench-gateway.md, .json.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${CHASYNC_CACHE:-$HOME/.cache/chasync}"
venv="${CHASYNC_BENCH_VENV:-$cache/bench-gateway-venv}"
target="${CARGO_TARGET_DIR:-$repo/target}"
ch_dir="${BENCH_CH_DIR:-$repo/var/bench-gateway-ch}"
http_port="${BENCH_CH_HTTP_PORT:-18124}"
tcp_port="${BENCH_CH_TCP_PORT:-19001}"
spool="${BENCH_SPOOL_DIR:-$repo/var/bench-gateway-spool}"
cd "$repo"

echo "bench-gateway: building chasyncd and the load generator (release)" >&2
cargo build --release -q -p chasync-daemon --bin chasyncd -p chasync-benches --bin gateway_load

deps=("clickhouse-connect>=0.8,<2" "lz4>=4")
stamp="$venv/.chasync-bench-gateway-deps"
if [ ! -x "$venv/bin/python" ]; then
  echo "bench-gateway: creating $venv" >&2
  mkdir -p "$(dirname "$venv")"
  "${PYTHON:-python3}" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${deps[*]}" ]; then
  echo "bench-gateway: installing clickhouse-connect" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${deps[@]}"
  echo "${deps[*]}" > "$stamp"
fi

ch_cmd() { scripts/clickhouse.sh "$1" --dir "$ch_dir" --http-port "$http_port" --tcp-port "$tcp_port"; }
started=0
if ! ch_cmd status >/dev/null 2>&1; then
  ch_cmd start
  started=1
fi
stop_server() { if [ "$started" = 1 ]; then ch_cmd stop || true; fi; }
trap stop_server EXIT
status="$(ch_cmd status)"
pid="$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$status")"
url="$(ch_cmd url)"
echo "bench-gateway: ClickHouse $status" >&2

"$venv/bin/python" benches/gateway/bench_gateway.py \
  --clickhouse "$url" --server-pid "$pid" \
  --chasyncd "$target/release/chasyncd" --load "$target/release/gateway_load" \
  --spool-dir "$spool" --out "$target/bench-gateway" \
  --command "./run bench-gateway $*" "$@"
