# chasync: the verbs people type. `./run <recipe>` installs `just` first if needed.

set shell := ["bash", "-euo", "pipefail", "-c"]

# ClickHouse of the project (scripts/clickhouse.sh); override with CLICKHOUSE_URL to use another.
export CLICKHOUSE_URL := env_var_or_default("CLICKHOUSE_URL", "http://127.0.0.1:8123")

default:
    @just --list

# Start the project's ClickHouse 26.9 on loopback (installs it on first use).
clickhouse-start:
    scripts/clickhouse.sh start

# Stop the project's ClickHouse.
clickhouse-stop:
    scripts/clickhouse.sh stop

# Is the project's ClickHouse up?
clickhouse-status:
    scripts/clickhouse.sh status

# The main job: a sample data set (2M events) loaded with `chasync insert` into the project's
# ClickHouse (started when nothing answers at CLICKHOUSE_URL), with progress and a summary.
demo rows="2000000":
    CHASYNC_KEEP_CLICKHOUSE=1 scripts/with-clickhouse.sh scripts/demo.sh {{rows}}

# The Rust API example: 2M typed rows through `Ingestor<T>`.
demo-rust rows="2000000":
    CHASYNC_KEEP_CLICKHOUSE=1 scripts/with-clickhouse.sh cargo run --release -q -p chasync-core --example ingest -- {{rows}}

# Build everything.
build:
    cargo build --workspace --all-targets

# Format, lint and doc checks.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps -q

# `cargo package` of every publishable crate (verified: each built from its .crate), and
# `cargo install --path` of `chasync` and `chasyncd`.
package:
    scripts/check-package.sh

# The Python package as a wheel people can install (manylinux_2_28, abi3, stripped), into dist/.
wheel:
    scripts/build-wheel.sh

# Release builds of `chasync` and `chasyncd` (stripped), into target/release/.
release:
    cargo build --release -p chasync-cli -p chasync-daemon

# All tests against a real ClickHouse (started and stopped here unless CLICKHOUSE_URL is set),
# the Python ones against the wheel installed from its file, the gateway with the real clients,
# the sources against real brokers,
# then the packages (`cargo package`, `cargo install --path`).
test:
    scripts/with-clickhouse.sh cargo test --workspace --all-targets
    scripts/with-clickhouse.sh cargo test --workspace --doc
    cargo bench -p chasync-benches -- --test
    scripts/with-clickhouse.sh scripts/test-python.sh
    scripts/with-clickhouse.sh scripts/test-gateway.sh
    scripts/with-clickhouse.sh scripts/test-sources.sh
    scripts/check-package.sh

# The exactly-once sources against real brokers on loopback (tansu for Kafka, nats-server with
# JetStream), consumers killed at crash points, e.g. `./run test-distributed kafka_`.
test-distributed *args:
    scripts/with-clickhouse.sh scripts/test-sources.sh {{args}}

# chasyncd with the real clients (clickhouse-connect, aiochclient, curl), e.g.
# `./run test-gateway -k curl`.
test-gateway *args:
    scripts/with-clickhouse.sh scripts/test-gateway.sh {{args}}

# The Python package's tests against a real ClickHouse: the wheel (built as `./run wheel`),
# installed from the file into a fresh venv, then pytest (with mypy --strict and stubtest).
test-python *args:
    scripts/with-clickhouse.sh scripts/test-python.sh {{args}}

# The Python contenders of bench-e2e only (the seed's class, the asyncio floor, the drop-in,
# write_many, write_columns, clickhouse-connect) and the Native ceiling, e.g.
# `./run bench-python --rows 1000000 --runs 3`.
bench-python *args:
    scripts/bench-e2e.sh --only python,curl-native {{args}}

# The gateway benchmark: 64 clients sending 100-row inserts (JSONEachRow from a Rust load
# generator, clickhouse-connect `insert()`), straight into ClickHouse (async_insert 0 and 1) and
# through chasyncd (release build, durable acks), on a private ClickHouse started for it; rows/s,
# latency, parts per minute, server CPU, checked counts. `./run bench-gateway --duration 20 --runs 3`.
# Results: target/bench-gateway.md and target/bench-gateway.json.
bench-gateway *args:
    scripts/bench-gateway.sh {{args}}

# Kafka consumers, N members of one group against one (release build; rows/s, lag), on the
# tansu broker and a ClickHouse it starts when CLICKHOUSE_URL is unset. Sizes from
# CHASYNC_BENCH_MESSAGES, CHASYNC_BENCH_MEMBERS (1,3) and CHASYNC_BENCH_RATES (0,20000).
bench-kafka:
    CHASYNC_SOURCES_RELEASE=1 scripts/with-clickhouse.sh scripts/test-sources.sh bench_ --ignored --nocapture

# What CI runs: lint, then the tests.
ci: lint test

# Criterion micro-benchmarks of the hot paths.
bench:
    cargo bench -p chasync-benches

# The end-to-end benchmark: every contender (chasync from Rust, Python and the shell, the raw
# crate, clickhouse-connect, the seed's class, curl ceilings) on the same rows, narrow and wide
# schemas, separate processes, interleaved runs, medians, checksums; builds and installs what it
# needs. Options go to the harness: `./run bench-e2e --rows 1000000 --runs 3 --schema wide`.
# Results: target/bench-e2e.md and target/bench-e2e.json.
bench-e2e *args:
    scripts/bench-e2e.sh {{args}}
