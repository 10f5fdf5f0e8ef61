#!/usr/bin/env bash
# Runs a command against a real ClickHouse. If CLICKHOUSE_URL answers, it is used as it is;
# otherwise the project's server (scripts/clickhouse.sh) is started for the command and
# stopped afterwards (only if this script started it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
url="${CLICKHOUSE_URL:-http://127.0.0.1:8123}"
port="${url##*:}"; port="${port%%/*}"
started=0
if ! curl -fsS --max-time 2 "$url/ping" >/dev/null 2>&1; then
  CH_HTTP_PORT="$port" "$here/clickhouse.sh" start
  started=1
fi
status=0
CLICKHOUSE_URL="$url" "$@" || status=$?
if [ "$started" = 1 ] && [ -z "${CHASYNC_KEEP_CLICKHOUSE:-}" ]; then
  CH_HTTP_PORT="$port" "$here/clickhouse.sh" stop || true
fi
exit "$status"
