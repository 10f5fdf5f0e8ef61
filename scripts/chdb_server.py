"""Serve a real ClickHouse (26.9, embedded in PyPI's chdb-core) over HTTP and native TCP.

Run from a directory that holds `config.xml` (listen_host, http_port, tcp_port, users_config,
query_log); `scripts/clickhouse.sh` writes that directory and starts this file.

clickhouse-local only listens while a query runs, so after `SYSTEM START LISTEN` this process
runs one query that blocks on reading a FIFO. It costs no CPU while it waits; writing a line
to the FIFO (or closing its write end) ends the query and this process exits cleanly. SIGKILL
is the crash stop.

Usage: python chdb_server.py DATA_DIR HOLD_FIFO
"""

import sys

import chdb._chdb as chdb_native


def main() -> int:
    data_dir, hold_fifo = sys.argv[1], sys.argv[2]
    hold = hold_fifo.replace("'", "\\'")
    sql = (
        "SYSTEM START LISTEN HTTP; "
        "SYSTEM START LISTEN TCP; "
        f"SELECT count() FROM file('{hold}', 'LineAsString') "
        "SETTINGS max_execution_time = 0"
    )
    chdb_native.query(sql, "TSV", path=data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
