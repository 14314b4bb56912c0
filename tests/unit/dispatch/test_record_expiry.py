"""Finished message records expire; a rebuild reads only what is pending.

The dispatcher's state used to grow forever (every ``m:<id>`` kept, every id in the
user's record) and a rebuild scanned every message ever sent on each assignment.
"""

import asyncio
from collections.abc import Iterable
from datetime import timedelta

from pipeline.dispatch.records import (
    INDEX_MARK,
    MessageRecord,
    Record,
    UserRecord,
    message_key,
    user_key_of,
)

from .test_fallback_grace import MemoryStore
from .test_send_time import DAY_ZONE, NIGHT, NIGHT_MS, decide, make, nudge, receipts

HOUR_MS = 3_600_000
RETENTION_S = 2 * 86_400


class CountingStore(MemoryStore):
    """Counts full scans and the records a rebuild reads."""

    def __init__(self) -> None:
        super().__init__()
        self.full_scans = 0
        self.gets = 0

    def scan(self, partition: int) -> Iterable[tuple[str, Record]]:
        self.full_scans += 1
        return super().scan(partition)

    def get(self, key: str, partition: int) -> Record | None:
        self.gets += 1
        return super().get(key, partition)


def test_a_finished_record_expires_after_the_retention_and_leaves_the_user() -> None:
    d, store, _ = make(record_retention_s=RETENTION_S)
    d.rebuild(0, NIGHT_MS)
    decide(d, nudge(1, timezone=DAY_ZONE), now_ms=NIGHT_MS)
    receipts(d)
    mid = f"{1:032x}"
    record = store.get(message_key(mid), 0)
    assert record.stage == "awaiting"  # pending: never expires while in flight
    asyncio.run(d.tick(NIGHT_MS + 10 * 86_400_000))  # its delivery timeout: SMS, then done
    record = store.get(message_key(mid), 0)
    assert record.stage == "sent" and record.expires_ms is not None
    finished = NIGHT_MS + 10 * 86_400_000
    assert record.expires_ms == finished + RETENTION_S * 1000

    asyncio.run(d.tick(record.expires_ms - 1))
    assert store.get(message_key(mid), 0) is not None
    asyncio.run(d.tick(record.expires_ms))
    assert store.get(message_key(mid), 0) is None
    # Its id left the user's record; with no send in the last day the record went too.
    assert store.get(user_key_of("u1"), 0) is None
    assert [k for k in store.data[0] if not k.startswith("i:")] == []


def test_a_user_with_a_recent_send_keeps_the_cap_but_not_the_old_ids() -> None:
    d, store, _ = make(record_retention_s=60)
    d.rebuild(0, NIGHT_MS)
    old = nudge(1, timezone=DAY_ZONE, status="suppressed", reason="holdout")
    decide(d, old, now_ms=NIGHT_MS)  # the engine's: nothing stored
    expired = nudge(2, triggered=NIGHT - timedelta(days=5), timezone=DAY_ZONE)
    decide(d, expired, now_ms=NIGHT_MS)
    assert store.get(message_key(f"{2:032x}"), 0).outcome == "expired"
    # A later message is sent (and awaits its delivery) within the day.
    later_ms = NIGHT_MS + 6 * 60_000
    decide(d, nudge(3, timezone=DAY_ZONE, triggered=NIGHT), now_ms=later_ms)
    receipts(d)
    # Already too old to send: kept only the retention.
    assert store.get(message_key(f"{2:032x}"), 0).expires_ms == NIGHT_MS + 60_000
    asyncio.run(d.tick(NIGHT_MS + 7 * 60_000))
    assert store.get(message_key(f"{2:032x}"), 0) is None
    user = store.get(user_key_of("u1"), 0)
    assert isinstance(user, UserRecord)
    assert user.messages == [f"{3:032x}"] and user.sent_within_day(later_ms) == 1


def test_a_vip_record_is_kept_while_its_decision_could_still_be_sent() -> None:
    from schemas.messages import VipUpgrade

    d, store, _ = make(record_retention_s=60)
    d.rebuild(0, NIGHT_MS)
    upgrade = VipUpgrade(
        token_id=f"{9:032x}",
        user_key="u1",
        discount_percent=15,
        issued_at=NIGHT,
        expires_at=NIGHT + timedelta(days=30),
        order_count=3,
        rules_version="r1",
        trigger_event_id="e9",
        timezone=DAY_ZONE,
    )
    decide(d, upgrade, now_ms=NIGHT_MS)
    # Sent on WhatsApp, then (no delivery) SMS: finished at the delivery timeout.
    asyncio.run(d.tick(NIGHT_MS + 60_000))
    record = store.get(message_key(f"{9:032x}"), 0)
    assert record.stage == "sent"
    receipts(d)
    # A re-delivery within the 7 days it may still be sent must find the record.
    assert record.expires_ms == NIGHT_MS + 7 * 86_400_000 + 1
    decide(d, upgrade, now_ms=NIGHT_MS + 6 * 86_400_000)
    assert receipts(d) == []  # dropped: handled before


def test_a_rebuild_reads_only_the_pending_messages() -> None:
    store = CountingStore()
    d, _, _ = make()
    d.store = store
    d.rebuild(0, NIGHT_MS)
    assert store.full_scans == 1  # an empty partition: indexed once, marked
    for n in range(1, 41):
        decide(d, nudge(n, timezone=DAY_ZONE, user_key=f"u{n}", status="emit"), now_ms=NIGHT_MS)
    asyncio.run(d.tick(NIGHT_MS + 31_000))  # 30 s delivery timeouts: SMS, then finished
    decide(d, nudge(99, user_key="night-owl"), now_ms=NIGHT_MS + 31_000)  # held (UTC night)
    receipts(d)

    fresh, _, _ = make()
    fresh.store = store
    store.full_scans = store.gets = 0
    assert fresh.rebuild(0, NIGHT_MS + 32_000) == 1
    assert store.full_scans == 0
    assert store.gets <= 3  # the mark and the one pending record, not the 41 messages


def test_a_partition_stored_before_the_indexes_is_scanned_once() -> None:
    store = CountingStore()
    held = MessageRecord(
        message_id="m-held",
        kind="high_intent",
        user_key="u1",
        subjects=["u1"],
        created_ms=NIGHT_MS,
        stage="held",
        deadline_ms=NIGHT_MS + HOUR_MS,
    )
    done = MessageRecord(
        message_id="m-done",
        kind="high_intent",
        user_key="u1",
        subjects=["u1"],
        created_ms=NIGHT_MS - 3 * 86_400_000,
        outcome="sent",
        stage="sent",
    )
    store.put(message_key("m-held"), 0, held)
    store.put(message_key("m-done"), 0, done)
    store.put(user_key_of("u1"), 0, UserRecord(messages=["m-held", "m-done"]))
    d, _, _ = make(record_retention_s=RETENTION_S)
    d.store = store
    assert d.rebuild(0, NIGHT_MS) == 1 and store.full_scans == 1
    assert store.get(INDEX_MARK, 0) is not None
    assert d.rebuild(0, NIGHT_MS) == 1 and store.full_scans == 1
    # The old finished record expires like any other, from the first rebuild on.
    asyncio.run(d.tick(NIGHT_MS + RETENTION_S * 1000))
    assert store.get(message_key("m-done"), 0) is None
    assert store.get(message_key("m-held"), 0) is not None


def test_erasure_removes_the_index_entries_too() -> None:
    import orjson

    d, store, _ = make()
    d.rebuild(0, NIGHT_MS)
    decide(d, nudge(1, user_key="gone"), now_ms=NIGHT_MS)  # held: UTC night
    decide(d, nudge(2, user_key="gone", timezone=DAY_ZONE), now_ms=NIGHT_MS)
    asyncio.run(d.tick(NIGHT_MS + 31_000))  # 2 finishes (SMS after the timeout)
    d.on_control(0, orjson.dumps({"command": "erase", "user_key": "gone"}))
    assert [k for k in store.data[0] if not k.startswith("i:")] == []
    assert d.pending() == 0
