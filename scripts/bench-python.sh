#!/usr/bin/env bash
# The Python benchmark (benches/python/bench_python.py) in the cached venv of the Python tests,
# with the package built in release mode and the other clients (aiohttp for the original
# class, clickhouse-connect) installed. Usage: scripts/bench-python.sh [ROWS] [extra args]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${CHASYNC_CACHE:-$HOME/.cache/chasync}"
venv="$cache/pyenv"
rows="${1:-1000000}"
[ $# -gt 0 ] && shift
if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$cache"
  "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "numpy>=1.24" "pyarrow>=14" "aiohttp>=3.9" "clickhouse-connect>=0.8"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$repo/python"
exec "$venv/bin/python" "$repo/benches/python/bench_python.py" --rows "$rows" "$@"
