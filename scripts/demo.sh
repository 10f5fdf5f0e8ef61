#!/usr/bin/env bash
# The main job: a sample data set loaded with `chasync insert`, into the ClickHouse at
# CLICKHOUSE_URL (the project's own, started by scripts/with-clickhouse.sh when none answers).
# Usage: scripts/demo.sh [ROWS]   (default 2,000,000)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
rows="${1:-2000000}"
url="${CLICKHOUSE_URL:-http://127.0.0.1:8123}"
q() { curl -fsS "$url/" --data-binary "$1"; }

cargo build --release -q -p chasync-cli
chasync="$repo/target/release/chasync"

mkdir -p "$repo/var/demo"
data="$repo/var/demo/events-$rows.ndjson"
if [ ! -s "$data" ]; then
  echo "demo: generating $rows sample events into $data"
  q "SELECT number AS id, toDateTime(1700000000 + number % 86400) AS ts,
       concat('user-', toString(number % 10000)) AS user,
       ['click', 'view', 'buy'][number % 3 + 1] AS kind,
       round((number % 1000) / 10, 1) AS value
     FROM numbers($rows) FORMAT JSONEachRow" > "$data.tmp"
  mv "$data.tmp" "$data"
fi

q "CREATE DATABASE IF NOT EXISTS chasync_demo"
q "DROP TABLE IF EXISTS chasync_demo.events SYNC"
q "CREATE TABLE chasync_demo.events (id UInt64, ts DateTime, user String,
     kind LowCardinality(String), value Float64, _insert_id UUID)
   ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 1000"

echo "demo: chasync insert --table chasync_demo.events $(basename "$data")"
"$chasync" --url "$url" insert --table chasync_demo.events --spool-dir "$repo/var/demo/dlq" "$data"

echo "demo: what landed:"
q "SELECT count() AS rows, uniqExact(id) AS ids, uniqExact(_insert_id) AS batches,
     sum(value) AS total_value FROM chasync_demo.events FORMAT PrettyCompactMonoBlock"
echo "demo: ClickHouse keeps running at $url (./run clickhouse-stop stops it)."
