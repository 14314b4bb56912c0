"""Reading a topic's recorded events by event time.

The broker indexes append time only (Tansu's ``offsets_for_times`` ignores
producer timestamps, docs/local-stack.md), and a late event may be appended
long after its event time. So every partition is read from its beginning with
a manual assignment (no consumer group, nothing committed: the live group's
offsets are never touched) and each record is kept when its own event
timestamp lies in ``[from, to)``. Partitions are interleaved in arrival order
(``ArrivalMerge``), each kept in offset order. Reading stops once every partition is past
the end offset seen at the start and nothing new has come for ``quiet_s`` (Tansu's
end offsets can fall short of a multi-record batch's tail, so they are not trusted
alone; and one empty fetch under load proved too little: an export lost a
partition's tail).
"""

import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.replay.recorded import RecordedEvent, arrival_ms, event_time_ms
from schemas.erasure import ErasureList


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Event-time range ``[from_ms, to_ms)``, epoch milliseconds."""

    from_ms: int
    to_ms: int

    def __post_init__(self) -> None:
        if self.to_ms <= self.from_ms:
            raise ValueError("--to must be after --from")

    def __contains__(self, moment_ms: int) -> bool:
        return self.from_ms <= moment_ms < self.to_ms


@dataclass(slots=True)
class ScanCounts:
    read: int = 0
    selected: int = 0
    # Not a JSON object with a zoned timestamp: cannot be placed in time.
    unplaceable: int = 0
    # Records of erased subjects (schemas/erasure.py), left out.
    erased: int = 0


Selected = tuple[RecordedEvent, dict[str, Any]]


class TopicScan:
    """Selected records, per partition in offset order.

    ``async with TopicScan(...) as scan: async for batch in scan.batches(): ...``
    """

    def __init__(
        self,
        bootstrap_servers: list[str],
        topic: str,
        window: TimeRange,
        fetch_timeout_ms: int = 300,
        quiet_s: float = 1.0,
        erasures: ErasureList | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.window = window
        self.erasures = erasures
        self.fetch_timeout_ms = fetch_timeout_ms
        self.quiet_s = quiet_s
        self.counts = ScanCounts()
        self.partitions = 0
        # Sum of end offsets at the start: the (approximate) work to do, for progress.
        self.expected = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._assigned: list[TopicPartition] = []
        self._ends: dict[TopicPartition, int] = {}

    async def __aenter__(self) -> "TopicScan":
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="intentflow-replay",
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=32 << 20,
        )
        await consumer.start()
        try:
            await consumer.topics()  # loads the cluster metadata
            known = consumer.partitions_for_topic(self.topic)
            if not known:
                raise LookupError(f"topic {self.topic!r} does not exist")
            self.partitions = max(known) + 1
            self._assigned = [TopicPartition(self.topic, p) for p in sorted(known)]
            consumer.assign(self._assigned)
            await consumer.seek_to_beginning(*self._assigned)
            self._ends = await consumer.end_offsets(self._assigned)
        except BaseException:
            await consumer.stop()
            raise
        self.expected = sum(self._ends.values())
        self._consumer = consumer
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def progress(self) -> float | None:
        return min(self.counts.read / self.expected, 1.0) if self.expected else None

    def batches(self) -> AsyncIterator[list[Selected]]:
        if self._consumer is None:
            raise RuntimeError("use `async with TopicScan(...) as scan`")
        return self._read(self._consumer, self._assigned, self._ends)

    async def _read(
        self,
        consumer: AIOKafkaConsumer,
        assigned: list[TopicPartition],
        ends: dict[TopicPartition, int],
    ) -> AsyncIterator[list[Selected]]:
        counts, window, erasures = self.counts, self.window, self.erasures
        loads = orjson.loads
        starts = await consumer.beginning_offsets(assigned)
        merge = ArrivalMerge({tp.partition: starts[tp] >= ends[tp] for tp in assigned})
        last_data = time.monotonic()
        while True:
            fetched = await consumer.getmany(timeout_ms=self.fetch_timeout_ms, max_records=20_000)
            if not fetched:
                positions = [await consumer.position(tp) for tp in assigned]
                at_ends = all(pos >= ends[tp] for pos, tp in zip(positions, assigned, strict=True))
                # Tansu's end offsets can stop short of a batch's tail, and under load one
                # fetch may come back empty while the tail is on its way: the end is where
                # nothing more has come for quiet_s.
                if at_ends and time.monotonic() - last_data >= self.quiet_s:
                    rest = merge.drain(final=True)
                    counts.selected += len(rest)
                    if rest:
                        yield rest
                    return
                continue
            last_data = time.monotonic()
            for tp, messages in fetched.items():
                counts.read += len(messages)
                selected: list[Selected] = []
                for message in messages:
                    value = message.value or b""
                    try:
                        event = loads(value)
                    except orjson.JSONDecodeError:
                        event = None
                    moment = event_time_ms(event)
                    if moment is None:
                        counts.unplaceable += 1
                        continue
                    if moment not in window:
                        continue
                    arrival = arrival_ms(event, moment)
                    if erasures is not None and erasures.covers(
                        event.get("user_id"), event.get("anonymous_id"), arrival
                    ):
                        counts.erased += 1
                        continue
                    record = RecordedEvent(
                        tp.partition, message.offset, message.key, value, moment, arrival
                    )
                    selected.append((record, event))
                done = messages[-1].offset + 1 >= ends[tp]
                merge.push(tp.partition, selected, done)
            ready = merge.drain()
            counts.selected += len(ready)
            if ready:
                yield ready


class ArrivalMerge:
    """Interleaves partitions in arrival order, each partition kept in offset order.

    Live, an identify's hand-over reaches the user's partition before the user's
    next events there; a burst replay keeps that order only if it does not run
    ahead on one partition. So a record is released only when every partition
    still being read has one buffered to compare it with.
    """

    def __init__(self, finished: dict[int, bool]) -> None:
        self._buffers: dict[int, deque[Selected]] = {p: deque() for p in finished}
        self._finished = dict(finished)

    def push(self, partition: int, records: list[Selected], finished: bool) -> None:
        self._buffers[partition].extend(records)
        if finished:
            self._finished[partition] = True

    def drain(self, final: bool = False) -> list[Selected]:
        buffers, finished = self._buffers, self._finished
        out: list[Selected] = []
        while True:
            heads = [b for b in buffers.values() if b]
            if not heads:
                return out
            if not final and any(not b and not finished[p] for p, b in buffers.items()):
                return out
            if len(heads) == 1:
                out.extend(heads[0])
                heads[0].clear()
                continue
            first = min(heads, key=_arrival_of_head)
            out.append(first.popleft())


def _arrival_of_head(buffer: deque[Selected]) -> tuple[int, int]:
    record = buffer[0][0]
    return record.arrival_ms, record.partition
