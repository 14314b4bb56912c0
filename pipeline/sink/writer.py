"""Inserts a batch into ClickHouse with clickhouse-connect, retrying until it is in.

Column-oriented inserts: the rows are transposed once (``zip``) and the client
writes each column in one go, which is the cheapest path through
clickhouse-connect (the client, not the server, is the bottleneck; see
benchmarks/sink.py). Inserts run in a thread so a slow or unreachable
warehouse never blocks the worker's event loop (heartbeats, other agents).
"""

import asyncio
import logging

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from tenacity import AsyncRetrying, wait_exponential_jitter

from pipeline.sink.batch import SinkBatch
from pipeline.sink.rows import Table

log = logging.getLogger(__name__)


class WarehouseWriter:
    def __init__(
        self, url: str, database: str, retry_initial_s: float = 0.2, retry_max_s: float = 5.0
    ) -> None:
        self._url = url
        self._database = database
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._client: Client | None = None
        self.rows_written = 0
        self.retries = 0

    def client(self) -> Client:
        if self._client is None:
            self._client = clickhouse_connect.get_client(
                dsn=self._url,
                database=self._database,
                connect_timeout=3,
                send_receive_timeout=60,
                # No server session: inserts from several threads must not queue on one.
                autogenerate_session_id=False,
            )
        return self._client

    def insert(self, table: Table, rows: list[tuple], token: str) -> None:
        """One insert of ``rows``; a repeat with the same token is dropped by ClickHouse."""
        if not rows:
            return
        columns = list(zip(*rows, strict=True))
        self.client().insert(
            table.name,
            columns,
            column_names=table.columns,
            column_oriented=True,
            settings={"insert_deduplication_token": token},
        )

    def write_batch(self, batch: SinkBatch) -> None:
        for table, rows in batch.rows.items():
            self.insert(table, rows, batch.dedup_token(table))

    async def write(self, batch: SinkBatch) -> None:
        """Insert every table's rows; on failure retry with backoff, forever.

        The caller's offsets are not committed meanwhile: the stream waits, and
        nothing is lost. A retry repeats tables already written with the same
        tokens, which ClickHouse drops, so nothing is doubled.
        """
        if not batch.rows:
            return
        async for attempt in AsyncRetrying(
            wait=wait_exponential_jitter(initial=self._retry_initial_s, max=self._retry_max_s),
            before_sleep=self._on_retry,
        ):
            with attempt:
                await asyncio.to_thread(self.write_batch, batch)
        self.rows_written += len(batch)

    def _on_retry(self, state) -> None:
        self.retries += 1
        exc = state.outcome.exception()
        log.warning(
            "warehouse insert failed (%s: %s); retry %d, offsets held",
            type(exc).__name__,
            str(exc)[:200],
            state.attempt_number,
        )
        # A broken connection may leave the client unusable: make a new one next time.
        self.close()

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None
