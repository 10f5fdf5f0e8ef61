#!/usr/bin/env bash
# The Python package's tests, against the wheel people install: the wheel is built once
# (scripts/build-wheel.sh: manylinux_2_28, abi3, stripped, into dist/), installed from the file
# into a fresh venv with the test dependencies (`pip install dist/chasync-*.whl ...`), then
# pytest runs against CLICKHOUSE_URL (scripts/with-clickhouse.sh provides one) with the
# installed package, not the source tree; the suite includes `mypy --strict` and `stubtest` of
# the stubs. Extra arguments go to pytest. Needs Python 3.10+ with pip (venv) and the Rust
# toolchain.
#
#   scripts/test-python.sh            # everything
#   scripts/test-python.sh -k cancel  # a subset
#   CHASYNC_WHEEL=dist/chasync-...whl scripts/test-python.sh   # a wheel built before
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${CHASYNC_CACHE:-$HOME/.cache/chasync}"
venv="$cache/wheel-venv"
py="${PYTHON:-python3}"

# Test dependencies (pip's own cache keeps their downloads between runs).
deps=("pytest>=8,<10" "pytest-asyncio>=0.24,<2" "numpy>=1.24" "pyarrow>=14" "polars>=1" "pandas>=2"
      "mypy>=1.10,<3")

# The command-line frontends, for the tests that compare the three frontends' options, and
# the TLS terminator of the tests of https:// URLs.
echo "test-python: building chasync, chasyncd and chasync-tls-terminator" >&2
# (`--bin` for each: one `--bin` alone would restrict the build to that binary.)
(cd "$repo" && cargo build --quiet -p chasync-cli -p chasync-daemon -p chasync-testkit \
  --bin chasync --bin chasyncd --bin chasync-tls-terminator)
export CHASYNC_BIN_DIR="${CARGO_TARGET_DIR:-$repo/target}/debug"

if [ -z "${CHASYNC_WHEEL:-}" ]; then
  CHASYNC_WHEEL="$("$here/build-wheel.sh" | tail -1)"
fi
CHASYNC_WHEEL="$(cd "$(dirname "$CHASYNC_WHEEL")" && pwd)/$(basename "$CHASYNC_WHEEL")"
export CHASYNC_WHEEL

echo "test-python: a fresh venv ($venv) with $(basename "$CHASYNC_WHEEL") and the test dependencies" >&2
rm -rf "$venv"
mkdir -p "$cache"
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$CHASYNC_WHEEL" "${deps[@]}"

# The installed package is what is tested: run pytest's own script (not `python -m pytest`,
# which would put the current directory first on sys.path); tests/conftest.py checks that
# `chasync` was imported from the venv.
cd "$repo/python"
status=0
"$venv/bin/pytest" -p no:cacheprovider "$@" || status=$?
if [ "$status" = 5 ]; then
  echo "test-python: pytest collected no tests; that is a failure here" >&2
  exit 1
fi
exit "$status"
