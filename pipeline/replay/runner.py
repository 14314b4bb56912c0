"""The live engine's per-record logic over recorded events, in memory.

``ReplayRunner`` drives the very ``EngineProcessor`` the score agent runs, with
a ``MemoryStateStore`` and a ``PartitionClock`` that only the records move:
event time, and the watermark records the live worker wrote into the log
(schemas/engine_records.py). Records must come per partition in their original
offset order; partitions may interleave in any way (states are
per user, watermarks per partition).

Identity hand-overs are records in the raw log (schemas/engine_records.py): the
replay merges one where the live run's hand-over record stands in the user's
log, with the anonymous state this run computed (its rules may differ), parked
from the identify that produced it. A logged hand-over read before its
identify (partitions interleave by arrival) carries the live state, which is
the same under the live rules; one never logged (the range ends between the
two) is merged at the end. Traffic recorded without hand-over records (made
by a generator, or exported by an older version: ``handovers_logged`` false)
has each merged right after its identify, on the partition its key gives.
Claims (an identify keyed by the user id) hop through ``identity.handover`` in
process, to the partition the default partitioner gives their key.

VIP upgrades are not signed: a replay never mints a redeemable discount token.
Erased subjects' records (schemas/erasure.py) are skipped by the processor, as
live: a replay, of a topic or of any file, makes no decision for them.
"""

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka.partitioner import murmur2

from pipeline.domain.rules import Rules
from pipeline.domain.state import UserState
from pipeline.engine.clock import PartitionClock
from pipeline.engine.memory_store import MemoryStateStore
from pipeline.engine.outputs import Record
from pipeline.engine.processor import EngineProcessor, EngineTopics
from pipeline.replay.recorded import RecordedEvent
from schemas.engine_records import is_handover, is_watermark, read_handover
from schemas.erasure import ErasureList
from schemas.events import Event
from schemas.fast_events import FastEvent
from schemas.messages import VipUpgrade


@dataclass(frozen=True, slots=True)
class RecordedOrder:
    """An order in the replayed traffic: what conversions are measured against."""

    user_key: str
    order_id: str
    ordered_ms: int
    total: float


def longest_deadline_ms(rules: Rules) -> int:
    """How long after its last event a user's pending deadline can still fire."""
    plan = rules.plan
    # A rescue can be held through quiet hours after its own deadline.
    return max(plan.cart_timeout_ms, plan.checkout_timeout_ms) + plan.max_hold_ms


def _unsigned(upgrade: VipUpgrade) -> None:
    return None


class ReplayRunner:
    def __init__(
        self,
        rules: Rules,
        partitions: int,
        topics: EngineTopics,
        handovers_logged: bool = True,
        erasures: ErasureList | None = None,
        observe: Callable[[Event | FastEvent, UserState | None], None] | None = None,
    ) -> None:
        self.rules = rules
        # Called with each event and its user's state right after the event is folded
        # (backtest intent reads the score there); records read fast give a FastEvent.
        self._observe = observe
        self.partitions = partitions
        self.topics = topics
        self.clock = PartitionClock()
        self.processor = EngineProcessor(
            rules,
            MemoryStateStore[UserState](),
            self.clock,
            topics,
            _unsigned,
            erasures,
        )
        # Decisions and dead letters for the run's own topics, in the order made.
        self.outputs: list[Record] = []
        self.orders: dict[str, RecordedOrder] = {}
        self.records = 0
        self.last_event_ms: int | None = None
        self.counts: Counter[str] = Counter()
        # (anonymous id, user id) → this run's hand-over record, until its logged twin is read.
        self._parked: dict[tuple[str, str], bytes] = {}
        self._handovers_logged = handovers_logged
        self._merged: set[tuple[str, str]] = set()

    def feed(self, records: Iterable[RecordedEvent]) -> None:
        processor, route, observe = self.processor, self._route, self._observe
        last = self.last_event_ms if self.last_event_ms is not None else -1
        count = 0
        for record in records:
            value = record.value
            if is_handover(value):
                processor.on_raw(record.partition, record.offset, record.key, self._own(value))
                route(processor.drain())
                continue
            event = processor.on_raw(record.partition, record.offset, record.key, value)
            route(processor.drain())
            if is_watermark(value):
                self.counts["watermarks"] += 1
                continue
            if record.event_ms > last:
                last = record.event_ms
            if event is not None and event.name == "order_placed":
                self._note_order(event)
            if event is not None and observe is not None:
                observe(event, processor.store.get(event.key, record.partition))
            count += 1
        self.records += count
        self.last_event_ms = last if last >= 0 else None

    def finish(self, end_ms: int) -> None:
        """Merge the hand-overs never logged in the range, then move every partition's
        watermark to the end of the range and fire what is due."""
        parked, self._parked = self._parked, {}
        for value in parked.values():
            key = read_handover(value).user_id.encode()
            self.processor.on_raw(self._partition_of(key), -1, key, value)
            self._route(self.processor.drain())
        for partition in range(self.partitions):
            self.clock.observe(partition, end_ms)
            self.processor.fire_due(partition)
            self._route(self.processor.drain())

    def take_outputs(self) -> list[Record]:
        out, self.outputs = self.outputs, []
        return out

    def _route(self, records: list[Record]) -> None:
        if not records:
            return
        identity, raw = self.topics.identity, self.topics.raw
        pending = records
        while pending:
            hops: list[Record] = []
            for record in pending:
                topic, key, value, _ = record
                if topic == raw and is_handover(value) and self._handovers_logged:
                    assert value is not None
                    self._park(value)
                elif topic == raw and is_handover(value):
                    self.processor.on_raw(self._partition_of(key), -1, key, value)
                    hops.extend(self.processor.drain())
                    self.counts["identity_hops"] += 1
                elif topic == identity:
                    assert value is not None
                    self.processor.on_identity(self._partition_of(key), -1, key, value)
                    hops.extend(self.processor.drain())
                    self.counts["identity_hops"] += 1
                else:
                    self.outputs.append(record)
                    self.counts[topic] += 1
            pending = hops

    def _partition_of(self, key: bytes) -> int:
        return (murmur2(key) & 0x7FFFFFFF) % self.partitions

    def _park(self, value: bytes) -> None:
        handover = read_handover(value)
        link = (handover.anonymous_id, handover.user_id)
        if link not in self._merged:  # its logged twin was read first
            self._parked[link] = value

    def _own(self, logged: bytes) -> bytes:
        try:
            handover = read_handover(logged)
        except ValueError:
            return logged  # the processor dead-letters it
        link = (handover.anonymous_id, handover.user_id)
        self._merged.add(link)
        self.counts["handovers"] += 1
        return self._parked.pop(link, logged)

    def _note_order(self, event: Event | FastEvent) -> None:
        order_id = str(event.properties["order_id"])
        if order_id not in self.orders:
            self.orders[order_id] = RecordedOrder(
                event.key,
                order_id,
                int(event.timestamp.timestamp() * 1000),
                float(event.properties["total"]),
            )
