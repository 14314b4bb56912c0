"""The live engine's per-record logic over recorded events, in memory.

``ReplayRunner`` drives the very ``EngineProcessor`` the score agent runs, with
a ``MemoryStateStore`` and a ``PartitionClock`` that only event time moves
(nothing here calls ``follow_wall_clock``). Records must come per partition in
their original offset order; partitions may interleave in any way (states are
per user, watermarks per partition).

Identity hand-overs, which live travel through the ``identity.handover`` topic
to the user's partition, are routed in process: to the partition the default
partitioner gives their key, right after the record that produced them.

VIP upgrades are not signed: a replay never mints a redeemable discount token.
Erased subjects' records (schemas/erasure.py) are skipped by the processor, as
live: a replay, of a topic or of any file, makes no decision for them.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.partitioner import murmur2

from pipeline.domain.rules import Rules
from pipeline.domain.state import UserState
from pipeline.engine.clock import PartitionClock
from pipeline.engine.memory_store import MemoryStateStore
from pipeline.engine.outputs import Record
from pipeline.engine.processor import EngineProcessor, EngineTopics
from pipeline.replay.recorded import RecordedEvent
from schemas.erasure import ErasureList
from schemas.events import Event
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
        erasures: ErasureList | None = None,
    ) -> None:
        self.rules = rules
        self.partitions = partitions
        self.topics = topics
        self.clock = PartitionClock(allowed_lateness_ms=0)
        self.processor = EngineProcessor(
            rules, MemoryStateStore[UserState](), self.clock, topics, _unsigned, erasures
        )
        # Decisions and dead letters for the run's own topics, in the order made.
        self.outputs: list[Record] = []
        self.orders: dict[str, RecordedOrder] = {}
        self.records = 0
        self.last_event_ms: int | None = None
        self.counts: Counter[str] = Counter()

    def feed(self, records: Iterable[RecordedEvent]) -> None:
        processor, route = self.processor, self._route
        last = self.last_event_ms if self.last_event_ms is not None else -1
        count = 0
        for record in records:
            event = processor.on_raw(record.partition, record.offset, record.key, record.value)
            route(processor.drain())
            if record.event_ms > last:
                last = record.event_ms
            if event is not None and event.name == "order_placed":
                self._note_order(event)
            count += 1
        self.records += count
        self.last_event_ms = last if last >= 0 else None

    def finish(self, end_ms: int) -> None:
        """Move every partition's watermark to the end of the range and fire what is due."""
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
        identity = self.topics.identity
        pending = records
        while pending:
            hops: list[Record] = []
            for record in pending:
                topic, key, value, _ = record
                if topic == identity:
                    assert value is not None
                    partition = (murmur2(key) & 0x7FFFFFFF) % self.partitions
                    self.processor.on_identity(partition, -1, key, value)
                    hops.extend(self.processor.drain())
                    self.counts["identity_hops"] += 1
                else:
                    self.outputs.append(record)
                    self.counts[topic] += 1
            pending = hops

    def _note_order(self, event: Event) -> None:
        order_id = str(event.properties["order_id"])
        if order_id not in self.orders:
            self.orders[order_id] = RecordedOrder(
                event.key,
                order_id,
                int(event.timestamp.timestamp() * 1000),
                float(event.properties["total"]),
            )
