"""The seed's inserter, as published in the article the project replaces: aiohttp +
JSONEachRow, a semaphore, retries, and a queue-draining `stream_insert`. Kept verbatim (but for
formatting) as the baseline of the Python contenders of the end-to-end benchmark
(`e2e_python.py` imports it) and as the existing HTTP client that the daemon's tests point at
`chasyncd` unchanged.

As a script: seed_inserter.py HOST PORT DATABASE TABLE ROWS
(inserts ROWS rows `{id, name}` in batches of 500 with `_execute_insert`).
"""
import asyncio
import json
import logging
import sys
from typing import Any, Dict, List, Optional

import aiohttp
from aiohttp import ClientTimeout, TCPConnector

logger = logging.getLogger("seed")


class ClickHouseAsyncInserter:
    def __init__(
        self,
        host: str,
        port: int,
        database: str,
        table: str,
        max_concurrency: int = 8,
        batch_size: int = 50_000,
        timeout_sec: int = 30,
        retries: int = 3,
    ):
        self.base_url = f"http://{host}:{port}"
        self.database = database
        self.table = table
        self.batch_size = batch_size
        self.semaphore = asyncio.Semaphore(max_concurrency)
        self.timeout = ClientTimeout(total=timeout_sec, connect=5)
        self.connector = TCPConnector(
            limit=max_concurrency * 2, keepalive_timeout=60, enable_cleanup_closed=True
        )
        self.session: Optional[aiohttp.ClientSession] = None
        self.retries = retries

    async def __aenter__(self):
        self.session = aiohttp.ClientSession(
            connector=self.connector,
            timeout=self.timeout,
            headers={"Content-Type": "application/json"},
        )
        return self

    async def __aexit__(self, exc_type, exc_val, exc_tb):
        if self.session:
            await self.session.close()

    async def _execute_insert(self, batch: List[Dict[str, Any]]) -> bool:
        if not batch:
            return True
        query = f"INSERT INTO {self.database}.{self.table} FORMAT JSONEachRow"
        payload = "\n".join(json.dumps(row, ensure_ascii=False) for row in batch)
        for attempt in range(self.retries):
            try:
                async with self.semaphore:
                    async with self.session.post(
                        f"{self.base_url}/?query={query}", data=payload.encode("utf-8")
                    ) as response:
                        if response.status == 200:
                            return True
                        error_body = await response.text()
                        logger.warning(
                            f"Insert failed (attempt {attempt + 1}/{self.retries}): "
                            f"{response.status} - {error_body}"
                        )
            except asyncio.TimeoutError:
                logger.error(f"HTTP timeout on attempt {attempt + 1}")
            except aiohttp.ClientError as e:
                logger.error(f"Client transport error on attempt {attempt + 1}: {e}")
            if attempt < self.retries - 1:
                delay = min(2**attempt + 0.5, 10.0)
                await asyncio.sleep(delay)
        return False

    async def stream_insert(self, data_stream: asyncio.Queue) -> None:
        buffer = []
        while True:
            try:
                record = await asyncio.wait_for(data_stream.get(), timeout=1.0)
                buffer.append(record)
                if len(buffer) >= self.batch_size:
                    success = await self._execute_insert(buffer)
                    if not success:
                        logger.critical("Batch insert failed after retries; routing to DLQ")
                    buffer.clear()
            except asyncio.TimeoutError:
                if buffer:
                    await self._execute_insert(buffer)
                    buffer.clear()


async def main() -> int:
    host, port, database, table, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    batch_size = 500
    rows = [{"id": i, "name": f"ünïcode-{i}"} for i in range(n)]
    async with ClickHouseAsyncInserter(host, port, database, table, batch_size=batch_size) as ins:
        batches = [rows[i:i + batch_size] for i in range(0, n, batch_size)]
        results = await asyncio.gather(*(ins._execute_insert(b) for b in batches))
    if not all(results):
        print(f"{results.count(False)} batches failed", file=sys.stderr)
        return 1
    print(f"inserted {n} rows in {len(batches)} requests", file=sys.stderr)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(asyncio.run(main()))
