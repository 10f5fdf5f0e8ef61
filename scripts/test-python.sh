#!/usr/bin/env bash
# The Python package's tests: a cached venv with the test dependencies, the package built in
# release mode and installed the way a user installs it (`pip install ./python`), then pytest
# against CLICKHOUSE_URL (scripts/with-clickhouse.sh provides one). Extra arguments go to
# pytest. Needs only Python 3.10+ with pip (venv) and the Rust toolchain.
#
#   scripts/test-python.sh            # everything
#   scripts/test-python.sh -k cancel  # a subset
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${CHASYNC_CACHE:-$HOME/.cache/chasync}"
venv="$cache/pyenv"
py="${PYTHON:-python3}"

# Test dependencies; the stamp makes later runs skip the install when the list is unchanged.
deps=("pytest>=8,<10" "pytest-asyncio>=0.24,<2" "numpy>=1.24" "pyarrow>=14" "polars>=1" "pandas>=2")
stamp="$venv/.chasync-test-deps"
if [ ! -x "$venv/bin/python" ]; then
  echo "test-python: creating $venv" >&2
  mkdir -p "$cache"
  "$py" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${deps[*]}" ]; then
  echo "test-python: installing test dependencies" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${deps[@]}"
  echo "${deps[*]}" > "$stamp"
fi

# The command-line frontends, for the tests that compare the three frontends' options, and
# the TLS terminator of the tests of https:// URLs.
echo "test-python: building chasync, chasyncd and chasync-tls-terminator" >&2
(cd "$repo" && cargo build --quiet -p chasync-cli -p chasync-daemon \
  -p chasync-testkit --bin chasync-tls-terminator)
export CHASYNC_BIN_DIR="${CARGO_TARGET_DIR:-$repo/target}/debug"

echo "test-python: building and installing the package (release)" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$repo/python"

# The installed package is what is tested: run pytest's own script (not `python -m pytest`,
# which would put the source tree, without the compiled module, first on sys.path).
cd "$repo/python"
status=0
"$venv/bin/pytest" -p no:cacheprovider "$@" || status=$?
if [ "$status" = 5 ]; then
  echo "test-python: pytest collected no tests; that is a failure here" >&2
  exit 1
fi
exit "$status"
