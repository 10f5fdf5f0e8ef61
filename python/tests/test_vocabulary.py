"""The three frontends (the `chasync` command line, the `chasyncd` daemon and this package)
map one sample configuration to the same engine configuration: the same option names, the
same meanings, the same defaults (docs/configuration.md)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import chasync

BIN = Path(os.environ["CHASYNC_BIN_DIR"])

# The sample, as each frontend spells it.
KWARGS = dict(
    database="analytics",
    user="loader",
    password="pw-secret",
    compression="none",
    insert_timeout=90,
    query_timeout=2.5,
    settings={"async_insert": 0, "input_format_skip_unknown_fields": 1},
    max_rows=1000,
    max_bytes=1 << 20,
    linger=0.25,
    queue_rows=5000,
    max_concurrency=2,
    retries=2,
    initial_backoff=0.05,
    max_backoff=2,
    fill_insert_id=False,
    stream_id="loader",
    first_sequence=7,
    spool_dir="/tmp/chasync-vocabulary",
    tls_ca_file="/etc/chasync/ca.pem",
    tls_cert_file="/etc/chasync/client.pem",
    tls_key_file="/etc/chasync/client.key",
    tls_insecure_skip_verify=True,
)
URLS = ["http://ch-1:8123", "http://ch-2:8123"]

TOML = """
[clickhouse]
url = ["http://ch-1:8123", "http://ch-2:8123"]
database = "analytics"
user = "loader"
password = "pw-secret"
compression = "none"
insert_timeout = "90s"
query_timeout = "2500ms"
settings = { async_insert = 0, input_format_skip_unknown_fields = 1 }

[batching]
max_rows = 1000
max_bytes = "1MiB"
linger = "250ms"
queue_rows = 5000

[delivery]
max_concurrency = 2
max_attempts = 3
initial_backoff = "50ms"
max_backoff = "2s"
fill_insert_id = false
stream_id = "loader"
first_sequence = 7

[spool]
dir = "/tmp/chasync-vocabulary"

[tls]
ca_file = "/etc/chasync/ca.pem"
cert_file = "/etc/chasync/client.pem"
key_file = "/etc/chasync/client.key"
insecure_skip_verify = true
"""

FLAGS = [
    "--url", ",".join(URLS),
    "--database", "analytics",
    "--user", "loader",
    "--password", "pw-secret",
    "--tls-ca-file", "/etc/chasync/ca.pem",
    "--tls-cert-file", "/etc/chasync/client.pem",
    "--tls-key-file", "/etc/chasync/client.key",
    "--tls-insecure-skip-verify",
    "config",
    "--table", "t",
    "--compression", "none",
    "--set", "insert_timeout=90",
    "--set", "query_timeout=2.5",
    "--setting", "async_insert=0",
    "--setting", "input_format_skip_unknown_fields=1",
    "--max-rows", "1000",
    "--max-bytes", "1MiB",
    "--linger", "250ms",
    "--set", "queue_rows=5000",
    "--max-concurrency", "2",
    "--retries", "2",
    "--set", "initial_backoff=50ms",
    "--set", "max_backoff=2s",
    "--set", "fill_insert_id=false",
    "--set", "stream_id=loader",
    "--set", "first_sequence=7",
    "--spool-dir", "/tmp/chasync-vocabulary",
]


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHASYNC_", "CLICKHOUSE_"))}
    return env


def test_the_three_frontends_map_a_sample_to_the_same_config(tmp_path: Path) -> None:
    from_python = json.loads(chasync.Inserter(URLS, "t", **KWARGS).config_json())

    cli = subprocess.run(
        [str(BIN / "chasync"), *FLAGS], capture_output=True, text=True, env=clean_env()
    )
    assert cli.returncode == 0, cli.stderr
    from_flags = json.loads(cli.stdout)

    toml = tmp_path / "c.toml"
    toml.write_text(TOML)
    cli_file = subprocess.run(
        [str(BIN / "chasync"), "--config", str(toml), "config", "--table", "t"],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert cli_file.returncode == 0, cli_file.stderr
    from_cli_file = json.loads(cli_file.stdout)

    daemon = subprocess.run(
        [str(BIN / "chasyncd"), "--config", str(toml), "--check-config"],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert daemon.returncode == 0, daemon.stderr
    from_daemon = json.loads(daemon.stdout)["engine"]
    # The daemon's engine options name no table: each table takes them.
    from_daemon["table"] = "t"

    assert from_python == from_flags
    assert from_python == from_cli_file
    assert from_python == from_daemon
    # What the sample says, spot-checked, and never the password.
    assert from_python["clickhouse"]["url"] == URLS
    assert from_python["clickhouse"]["password"] == "***"
    assert from_python["delivery"]["max_attempts"] == 3
    assert from_python["batching"]["linger"] == "250ms"
    assert from_python["tls"] == {
        "ca_file": "/etc/chasync/ca.pem",
        "cert_file": "/etc/chasync/client.pem",
        "key_file": "/etc/chasync/client.key",
        "insecure_skip_verify": True,
    }
    assert from_python["clickhouse"]["settings"] == {
        "async_insert": "0",
        "input_format_skip_unknown_fields": "1",
    }
    for text in (cli.stdout, cli_file.stdout, daemon.stdout):
        assert "pw-secret" not in text


def test_the_defaults_are_the_same_everywhere(tmp_path: Path) -> None:
    from_python = json.loads(chasync.Inserter("http://127.0.0.1:8123", "t").config_json())
    cli = subprocess.run(
        [str(BIN / "chasync"), "config", "--table", "t"],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert cli.returncode == 0, cli.stderr
    daemon = subprocess.run(
        [str(BIN / "chasyncd"), "--check-config"], capture_output=True, text=True, env=clean_env()
    )
    assert daemon.returncode == 0, daemon.stderr
    from_daemon = json.loads(daemon.stdout)["engine"]
    from_daemon["table"] = "t"
    # The stream id is random by default: none is fixed here.
    assert from_python["delivery"]["stream_id"] is None
    assert from_python == json.loads(cli.stdout) == from_daemon
    assert from_python["delivery"]["max_attempts"] == 20000
    assert from_python["spool"]["dir"] == "chasync-spool"
    assert from_python["tls"] == {
        "ca_file": None,
        "cert_file": None,
        "key_file": None,
        "insecure_skip_verify": False,
    }
