"""The events table's sink, fed by the score agent in the same pass over the raw topic.

The score agent parses every raw record anyway; recording its events from there
saves a second Faust agent on the topic (Faust's per-event stream cost, ~70 µs
here) and a second parse of each record (~11 µs, docs/local-stack.md and
benchmarks/RESULTS.md). Each
message is held (``incref``) when it is handed over, so Faust's ack at the
end of the agent's batch does not release it: its offset becomes committable
only when its row is in the warehouse (Quix-style: flush, then commit). Inserts
run in the background, one at a time, while the engine goes on.
"""

import asyncio
import time
from typing import Any

from pipeline.sink.batch import SinkBatch
from pipeline.sink.rows import event_rows
from pipeline.sink.writer import WarehouseWriter
from schemas.events import Event
from schemas.fast_events import FastEvent


class HeldEventSink:
    def __init__(
        self,
        topic: str,
        writer: WarehouseWriter,
        batch_size: int = 10_000,
        within_s: float = 1.0,
    ) -> None:
        self._topic = topic
        self._writer = writer
        self._batch_size = batch_size
        self._within_s = within_s
        self._batch = SinkBatch(topic)
        self._held: list[Any] = []
        self._opened_at = time.monotonic()
        self._inserting: asyncio.Task | None = None

    def hold(self, record: Any, event: Event | FastEvent | None) -> None:
        """Keep ``record`` (a Faust event) unreleased until ``event``'s row is inserted."""
        record.message.incref()
        message = record.message
        output = event_rows(event) if event is not None else None
        self._batch.add_message(message, output)
        if not self._held:
            self._opened_at = time.monotonic()
        self._held.append(record)

    def due(self) -> bool:
        if not self._held:
            return False
        full = len(self._held) >= self._batch_size
        return full or time.monotonic() - self._opened_at >= self._within_s

    async def flush_if_due(self) -> None:
        if self.due():
            await self._start_flush()

    async def drain(self) -> None:
        """Insert everything held and wait for it (revocation, shutdown)."""
        if self._held:
            await self._start_flush()
        if self._inserting is not None:
            await self._inserting

    async def _start_flush(self) -> None:
        # One insert at a time: the next waits for the previous (backpressure).
        if self._inserting is not None:
            await self._inserting
        batch, held = self._batch, self._held
        self._batch, self._held = SinkBatch(self._topic), []
        self._inserting = asyncio.create_task(self._insert_then_release(batch, held))

    def close(self) -> None:
        self._writer.close()

    async def _insert_then_release(self, batch: SinkBatch, held: list[Any]) -> None:
        await self._writer.write(batch)  # retries until the warehouse takes it
        for record in held:
            record.ack()


class NoEventSink:
    """A replay namespace records no events: the score agent's sink hook does nothing."""

    def hold(self, record: Any, event: Event | FastEvent | None) -> None:
        pass

    async def flush_if_due(self) -> None:
        pass

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass
