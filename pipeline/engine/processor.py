"""The engine's record processor: one raw record in, state updated, output records out.

Snuba/Arroyo style: the Faust agent (pipeline/agents/score.py) only feeds
records and ships what ``drain`` returns; everything here runs without a
broker. Per record it parses the event (bad ones become dead letters), folds
it into the user's state, moves the partition's watermark and fires the
deadlines the watermark has passed.
"""

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import orjson

from pipeline.domain.fold import Decision, advance, apply, next_deadline
from pipeline.domain.identity import merge, wants_merge
from pipeline.domain.rules import Rules
from pipeline.domain.state import UserState, state_from_bytes, state_to_bytes
from pipeline.engine.clock import PartitionClock
from pipeline.engine.outputs import Record
from pipeline.metrics import DEAD_LETTERS, count_decision
from schemas.deadletter import DeadLetter
from schemas.engine_records import (
    Handover,
    is_handover,
    is_watermark,
    read_handover,
    read_watermark,
    watermark_record,
)
from schemas.erasure import ErasureList
from schemas.events import Event, EventError
from schemas.fast_events import FastEvent, fast_load_event
from schemas.messages import VipUpgrade
from schemas.time import epoch_ms
from schemas.topics import CONTROL, IDENTITY, NUDGES, TELEMETRY_DLQ, VIP, TopicSpec, namespaced


@dataclass(frozen=True, slots=True)
class EngineTopics:
    raw: str
    dlq: str
    nudges: str
    vip: str
    identity: str
    control: str

    @classmethod
    def for_namespace(cls, namespace: str | None, source_topic: str) -> "EngineTopics":
        def name(spec: TopicSpec) -> str:
            return namespaced(spec, namespace).name

        return cls(
            source_topic,
            name(TELEMETRY_DLQ),
            name(NUDGES),
            name(VIP),
            name(IDENTITY),
            name(CONTROL),
        )


class StateAccess(Protocol):
    """Where user states live: ``UserStateStore`` live, ``MemoryStateStore`` in a file replay."""

    def get(self, key: str, partition: int) -> UserState | None: ...
    def put(self, key: str, partition: int, state: UserState) -> None: ...
    def delete(self, key: str, partition: int) -> None: ...
    def scan(self, partition: int) -> Iterator[tuple[str, UserState]]: ...
    def put_watermark(self, partition: int, watermark_ms: int) -> None: ...
    def watermark(self, partition: int) -> int | None: ...


class EngineProcessor:
    def __init__(
        self,
        rules: Rules,
        store: StateAccess,
        clock: PartitionClock,
        topics: EngineTopics,
        sign_vip: Callable[[VipUpgrade], str],
        erasures: ErasureList | None = None,
    ) -> None:
        self.rules = rules
        # Erased subjects (schemas/erasure.py): their records, re-read, are not folded.
        self.erasures = erasures
        self.store = store
        self.clock = clock
        self.topics = topics
        self._sign_vip = sign_vip
        self._out: list[Record] = []
        self.events_processed = 0
        self.dead_letters = 0
        self.erased = 0
        self.skipped_erased = 0

    def drain(self) -> list[Record]:
        out, self._out = self._out, []
        return out

    # --- raw telemetry -----------------------------------------------------

    def on_raw(
        self, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> Event | FastEvent | None:
        """Fold one raw record; returns the parsed event (None when dead-lettered or a
        watermark record), so the caller can record it without parsing it again."""
        if is_watermark(value):
            self._on_watermark(partition, offset, key, value)
            return None
        if is_handover(value):
            self._on_handover_record(partition, offset, key, value)
            return None
        try:
            # Raw records are what our collector wrote, so the fast read takes them
            # without re-validating; it gives ``load_event``'s values and defers to it
            # for anything else (dead letters too).
            event = fast_load_event(value or b"")
        except EventError as exc:
            self._dead_letter(self.topics.raw, partition, offset, key, value, exc)
            return None
        if self.erasures is not None and self.erasures.covers_event(event):
            # An erased subject's record read again: not folded, not recorded. Its
            # time still moves the watermark, so others' deadlines fire as they did live.
            self.skipped_erased += 1
            self._observe(partition, event)
            return None
        user_key = event.key
        if event.name == "identify" and key is not None and key != user_key.encode():
            # Keyed by the user id by some other producer: this is not the
            # anonymous state's partition; fetch the state from there first.
            self._claim(event.anonymous_id, event.user_id, event.ts_ms)
            self._observe(partition, event)
            return event
        received_ms = epoch_ms(event.received_at)
        state = self.store.get(user_key, partition)
        state, decisions = apply(state, event, self.rules)
        self._keep(partition, user_key, state)
        self._publish(decisions)
        anonymous_id = wants_merge(event)
        if anonymous_id is not None:
            self._on_claim(partition, anonymous_id, event.user_id, event.ts_ms, received_ms)
        self._observe(partition, event, received_ms)
        return event

    def _observe(
        self, partition: int, event: Event | FastEvent, received_ms: int | None = None
    ) -> None:
        # The server's receipt time bounds a client clock that runs fast.
        if received_ms is None:
            received_ms = epoch_ms(event.received_at)
        self._advance(partition, min(event.ts_ms, received_ms))
        self.events_processed += 1

    def _advance(self, partition: int, moment_ms: int) -> None:
        if self.clock.observe(partition, moment_ms):
            # Kept with the states it was reached with (a restart goes on from it).
            self.store.put_watermark(partition, moment_ms)
        self.fire_due(partition)

    def _on_watermark(
        self, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> None:
        try:
            at_ms = read_watermark(value or b"")
        except ValueError as exc:
            self._dead_letter(self.topics.raw, partition, offset, key, value, exc)
            return
        self._advance(partition, at_ms)

    def mark_watermark(self, partition: int, at_ms: int) -> None:
        """Append a watermark record to the partition; the watermark moves when it is read."""
        self._out.append((self.topics.raw, b"", watermark_record(at_ms), partition))

    def fire_due(self, partition: int) -> None:
        watermark = self.clock.watermark(partition)
        for user_key in self.clock.pop_due(partition):
            state = self.store.get(user_key, partition)
            if state is None:
                continue
            state, decisions = advance(state, watermark, self.rules)
            self._keep(partition, user_key, state)
            self._publish(decisions)

    def rebuild_deadlines(self, partition: int) -> int:
        """After a partition is assigned: its watermark as the states were left with it,
        and the deadlines they hold, indexed."""
        watermark = self.store.watermark(partition)
        if watermark is not None:
            self.clock.observe(partition, watermark)
        count = 0
        for user_key, state in self.store.scan(partition):
            deadline = next_deadline(state)
            if deadline is not None:
                self.clock.schedule(partition, user_key, deadline)
                count += 1
        return count

    # --- identity hand-over ------------------------------------------------
    # The anonymous state lives on the anonymous id's partition, the user's on
    # the user id's. An identify keyed by the anonymous id (Event.key) is
    # folded there, in order with the events it claims, and the state goes
    # over at once; one keyed by the user id (a producer other than ours)
    # sends a claim there first (identity topic). The hand-over itself is a
    # record in the raw topic, keyed by the user id (schemas/engine_records.py):
    # merged where it lands in the user's log, so a replay merges it at the
    # same point among the user's events.
    # An anonymous id is bound to the first user id that claims it: the fold sets
    # the anonymous state's ``user_id`` once, and after the hand-over a marker
    # state keeps that binding, so a later claim by another user id (anyone with
    # the public write key can send one) hands nothing over.

    def _claim(self, anonymous_id: str, user_id: str | None, at_ms: int) -> None:
        claim = {"kind": "claim", "anonymous_id": anonymous_id, "user_id": user_id, "at": at_ms}
        self._out.append((self.topics.identity, anonymous_id.encode(), orjson.dumps(claim), None))

    def on_identity(self, partition: int, offset: int, key: bytes | None, value: bytes) -> None:
        try:
            record = orjson.loads(value)
            kind = record["kind"]
            if self._erased_claim(record):
                self.skipped_erased += 1
            elif kind == "claim":
                at = record["at"]
                self._on_claim(partition, record["anonymous_id"], record["user_id"], at, at)
            elif kind == "handover":  # written by a version that sent them here
                anonymous = state_from_bytes(base64.b64decode(record["state"]))
                self._on_handover(partition, record["user_id"], anonymous, record["at"])
            else:
                raise ValueError(f"unknown identity record kind {kind!r}")
        except (ValueError, KeyError, TypeError) as exc:
            self._dead_letter(self.topics.identity, partition, offset, key, value, exc)

    def _erased_claim(self, record: dict) -> bool:
        if self.erasures is None:
            return False
        return self.erasures.covers(record["user_id"], record["anonymous_id"], record["at"])

    def _on_claim(
        self, partition: int, anonymous_id: str, user_id: str, at_ms: int, arrival_ms: int
    ) -> None:
        anonymous = self.store.get(anonymous_id, partition)
        if anonymous is None:
            return
        if anonymous.user_id is not None and anonymous.user_id != user_id:
            return  # bound to the user id that claimed it first
        handover = Handover(user_id, anonymous_id, at_ms, state_to_bytes(anonymous))
        record = handover.to_record(arrival_ms)
        self._out.append((self.topics.raw, user_id.encode(), record, None))
        # Emptied, but the binding stays: a marker with the claiming user id, and the
        # memory of the events already folded, so a re-delivery after a crash drops them
        # instead of folding them again into an empty state (a rescue for a cart that
        # was handed over, under the anonymous id, that no replay of the log makes).
        marker = UserState(anonymous_id, user_id, anonymous_id)
        marker.last_ms, marker.horizon_ms = anonymous.last_ms, anonymous.horizon_ms
        marker.seen = dict(anonymous.seen)
        marker.order_ids = list(anonymous.order_ids)
        self.store.put(anonymous_id, partition, marker)
        self.clock.schedule(partition, anonymous_id, None)

    def _on_handover_record(
        self, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> None:
        try:
            handover = read_handover(value or b"")
            anonymous = state_from_bytes(handover.state)
        except (ValueError, KeyError, TypeError) as exc:
            self._dead_letter(self.topics.raw, partition, offset, key, value, exc)
            return
        if self.erasures is not None and self.erasures.covers(
            handover.user_id, handover.anonymous_id, handover.at_ms
        ):
            self.skipped_erased += 1
            return
        self._on_handover(partition, handover.user_id, anonymous, handover.at_ms)

    def _on_handover(self, partition: int, user_id: str, anonymous: UserState, at_ms: int) -> None:
        state = self.store.get(user_id, partition)
        if state is None:
            state = UserState(user_id, user_id, anonymous.anonymous_id)
        state, decisions = merge(state, anonymous, self.rules, at_ms)
        self._keep(partition, user_id, state)
        self._publish(decisions)
        # The hand-over took a hop: the watermark may already be past its deadlines.
        self.fire_due(partition)

    # --- commands ----------------------------------------------------------

    def on_control(self, partition: int, offset: int, key: bytes | None, value: bytes) -> None:
        """``{"command": "erase", "user_key": ..., "at": ms}``: forget the user's state for good,
        and from now on skip the user's records received up to ``at`` if read again."""
        try:
            record = orjson.loads(value)
            if record["command"] != "erase":
                raise ValueError(f"unknown command {record['command']!r}")
            user_key = record["user_key"]
            if not isinstance(user_key, str) or not user_key:
                raise ValueError("user_key must be a non-empty string")
        except (ValueError, KeyError, TypeError) as exc:
            self._dead_letter(self.topics.control, partition, offset, key, value, exc)
            return
        # A tombstone in RocksDB and in the changelog: recovery forgets it too.
        self.store.delete(user_key, partition)
        self.clock.schedule(partition, user_key, None)
        at = record.get("at")
        if self.erasures is not None and isinstance(at, int):
            self.erasures.add(user_key, at)
        self.erased += 1

    # --- outputs -----------------------------------------------------------

    def _keep(self, partition: int, user_key: str, state: UserState) -> None:
        self.store.put(user_key, partition, state)
        self.clock.schedule(partition, user_key, next_deadline(state))

    def _publish(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            count_decision(decision)
            key = decision.user_key.encode()
            if isinstance(decision, VipUpgrade):
                signed = decision.model_copy(update={"token": self._sign_vip(decision)})
                self._out.append((self.topics.vip, key, signed.to_json(), None))
            else:
                self._out.append((self.topics.nudges, key, decision.to_json(), None))

    def _dead_letter(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        exc: Exception,
    ) -> None:
        # The reason names the fields and the rule broken, never the values.
        errors = exc.errors if isinstance(exc, EventError) else []
        reason = "invalid_event" if isinstance(exc, EventError) else type(exc).__name__
        letter = DeadLetter.of(
            topic=topic,
            partition=partition,
            offset=offset,
            key=key,
            value=value,
            reason=reason,
            errors=errors,
        )
        self._out.append((self.topics.dlq, key or b"", letter.to_json(), None))
        self.dead_letters += 1
        DEAD_LETTERS.labels(reason).inc()
