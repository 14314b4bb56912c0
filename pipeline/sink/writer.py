"""Inserts a batch into ClickHouse with clickhouse-connect, retrying until it is in.

Each table's rows go in as inserts of at most ``MAX_PARTITIONS_PER_INSERT``
partitions (``SinkBatch.inserts``). Rows the warehouse refuses for what they
hold (a value it cannot parse or store, a constraint: ``REFUSED_CODES``) are
quarantined rather than retried forever: the insert is halved until the refused
rows are alone, and each becomes a ``dead_letters`` row naming its record
(topic, partition, offset) and the warehouse's reason. Any other failure (the
warehouse away, overloaded) is retried until it is in.

Column-oriented inserts: the rows are transposed once (``zip``) and the client
writes each column in one go, which is the cheapest path through
clickhouse-connect (the client, not the server, is the bottleneck; see
benchmarks/sink.py). Inserts run in a thread so a slow or unreachable
warehouse never blocks the worker's event loop (heartbeats, other agents).
"""

import asyncio
import logging
import struct

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from tenacity import AsyncRetrying, wait_exponential_jitter

from pipeline.metrics import DEAD_LETTERS as DEAD_LETTERS_COUNT
from pipeline.metrics import timed_flush
from pipeline.sink.batch import SinkBatch
from pipeline.sink.rows import DEAD_LETTERS, Table
from schemas.warehouse import warehouse_client

log = logging.getLogger(__name__)

# ClickHouse errors that refuse the rows themselves: the same rows fail every time.
REFUSED_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        376,  # CANNOT_PARSE_UUID
        469,  # VIOLATED_CONSTRAINT
    }
)
# TOO_MANY_PARTS is also "merges are behind" (transient): only its per-block form refuses rows.
_TOO_MANY_PARTITIONS = (252, "partitions for single INSERT block")
# Raised by the client while it encodes a value its column cannot hold.
_ENCODING_ERRORS = (OverflowError, struct.error, UnicodeError)


def refusal(exc: BaseException) -> str | None:
    """The reason the warehouse refused these rows for their content; None if it may pass later."""
    if isinstance(exc, OperationalError):
        return None
    if isinstance(exc, DatabaseError) and exc.code is not None:
        name = exc.name or f"CODE_{exc.code}"
        if exc.code in REFUSED_CODES:
            return f"warehouse_refused_{name}"
        if exc.code == _TOO_MANY_PARTITIONS[0] and _TOO_MANY_PARTITIONS[1] in str(exc):
            return f"warehouse_refused_{name}"
        return None
    if isinstance(exc, _ENCODING_ERRORS):
        return f"warehouse_refused_{type(exc).__name__}"
    return None


INSERT_TIMEOUT_S = 60.0


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
        # Rows the warehouse refused, recorded as dead letters.
        self.quarantined = 0

    def client(self) -> Client:
        if self._client is None:
            # No server session (schemas/warehouse.py): inserts from several threads
            # must not queue on one. A batch of rows may take longer than a query.
            self._client = warehouse_client(self._url, self._database, timeout_s=INSERT_TIMEOUT_S)
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
        for table in list(batch.rows):
            for indexes, token in batch.inserts(table):
                self._insert_or_quarantine(batch, table, indexes, token)

    def _insert_or_quarantine(
        self, batch: SinkBatch, table: Table, indexes: list[int], token: str
    ) -> None:
        """Insert these rows; rows the warehouse refuses become dead letters, the rest go in.

        Halving is deterministic, so a retry of the batch repeats the same inserts
        with the same tokens, which ClickHouse drops.
        """
        rows = batch.rows[table]
        try:
            self.insert(table, [rows[i] for i in indexes], token)
            return
        except Exception as exc:
            reason = refusal(exc)
            if reason is None:
                raise  # retried whole by write()
            # The error's name and code only: ClickHouse's message may quote the values.
            code = getattr(exc, "code", None)
            detail = f"refused by the warehouse: {reason.removeprefix('warehouse_refused_')}"
            detail += f" (code {code})" if code is not None else ""
        if len(indexes) > 1:
            half = len(indexes) // 2
            self._insert_or_quarantine(batch, table, indexes[:half], f"{token}|a")
            self._insert_or_quarantine(batch, table, indexes[half:], f"{token}|b")
            return
        origin = batch.origins[table][indexes[0]]
        # Where and why, never the row (personal data): the record stays in its topic.
        log.error(
            "%s[%d]@%d: %s row refused by the warehouse (%s); dead-lettered",
            batch.topic,
            origin.partition,
            origin.offset,
            table.name,
            reason,
        )
        letters = batch.dead_letters(table, indexes, reason, detail)
        DEAD_LETTERS_COUNT.labels(reason).inc()
        if table == DEAD_LETTERS:
            # A dead letter refused as such has nowhere further to go: counted and logged.
            self.quarantined += 1
            return
        self.insert(DEAD_LETTERS, letters, f"{token}|quarantine")
        self.quarantined += 1

    async def write(self, batch: SinkBatch) -> None:
        """Insert every table's rows; on failure retry with backoff, forever.

        The caller's offsets are not committed meanwhile: the stream waits, and
        nothing is lost. A retry repeats tables already written with the same
        tokens, which ClickHouse drops, so nothing is doubled.
        """
        if not batch.rows:
            return
        with timed_flush("warehouse"):
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
