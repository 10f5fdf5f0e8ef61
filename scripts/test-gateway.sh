#!/usr/bin/env bash
# chasyncd with the real ClickHouse clients users have (clickhouse-connect, aiochclient, curl):
# a cached venv with them, the daemon built, then pytest (crates/daemon/tests/clients) against
# CLICKHOUSE_URL (scripts/with-clickhouse.sh provides one). Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${CHASYNC_CACHE:-$HOME/.cache/chasync}"
venv="$cache/gateway-venv"
py="${PYTHON:-python3}"

deps=("pytest>=8,<10" "clickhouse-connect>=0.8,<2" "aiochclient>=2.5,<3" "aiohttp>=3.9,<4"
      "pandas>=2" "pyarrow>=14" "brotli>=1.1" "lz4>=4" "zstandard>=0.22")
stamp="$venv/.chasync-gateway-deps"
if [ ! -x "$venv/bin/python" ]; then
  echo "test-gateway: creating $venv" >&2
  mkdir -p "$cache"
  "$py" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${deps[*]}" ]; then
  echo "test-gateway: installing the clients" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${deps[@]}"
  echo "${deps[*]}" > "$stamp"
fi
command -v curl >/dev/null || { echo "test-gateway: curl is needed" >&2; exit 1; }

echo "test-gateway: building chasyncd" >&2
(cd "$repo" && cargo build --quiet -p chasync-daemon)
export CHASYNC_BIN_DIR="${CARGO_TARGET_DIR:-$repo/target}/debug"

cd "$repo/crates/daemon/tests/clients"
status=0
"$venv/bin/pytest" -p no:cacheprovider -q "$@" || status=$?
if [ "$status" = 5 ]; then
  echo "test-gateway: pytest collected no tests; that is a failure here" >&2
  exit 1
fi
exit "$status"
