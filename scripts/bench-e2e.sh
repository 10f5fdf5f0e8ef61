#!/usr/bin/env bash
# The end-to-end benchmark (benches/src/bin/e2e.rs) with everything it needs, on a fresh
# machine too: the release builds of the harness and of the `chasync` CLI, a Python venv with
# the package built in release mode (`pip install ./python`) and the other clients
# (clickhouse-connect, aiohttp for the seed's class, pyarrow, numpy), then the harness against
# CLICKHOUSE_URL, or against the project's ClickHouse started (and stopped) for the run.
#
#   scripts/bench-e2e.sh [e2e options]    # e.g. --rows 1000000 --runs 3 --schema wide
#
# The venv is the one of the Python tests ($CHASYNC_CACHE/pyenv, see scripts/test-python.sh)
# unless CHASYNC_BENCH_VENV names another. Results: target/bench-e2e.md and .json.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${CHASYNC_CACHE:-$HOME/.cache/chasync}"
venv="${CHASYNC_BENCH_VENV:-$cache/pyenv}"
target="${CARGO_TARGET_DIR:-$repo/target}"
cd "$repo"

echo "bench-e2e: building the harness and the chasync CLI (release)" >&2
cargo build --release -q -p chasync-benches --bin e2e -p chasync-cli --bin chasync

deps=("numpy>=1.24" "pyarrow>=14" "aiohttp>=3.9" "clickhouse-connect>=0.8")
stamp="$venv/.chasync-bench-deps"
if [ ! -x "$venv/bin/python" ]; then
  echo "bench-e2e: creating $venv" >&2
  mkdir -p "$(dirname "$venv")"
  "${PYTHON:-python3}" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${deps[*]}" ]; then
  echo "bench-e2e: installing the Python contenders' clients" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${deps[@]}"
  echo "${deps[*]}" > "$stamp"
fi
echo "bench-e2e: building and installing the Python package (release)" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$repo/python"

exec "$here/with-clickhouse.sh" "$target/release/e2e" \
  --python "$venv/bin/python" --chasync "$target/release/chasync" "$@"
