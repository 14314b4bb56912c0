"""The sink's pure processors: one message, one row, in its table's column order."""

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.sink.batch import SinkBatch
from pipeline.sink.processors import decision_processor, process_dead_letter, process_event
from pipeline.sink.rows import (
    DEAD_LETTERS,
    EVENTS,
    NUDGE_HOLDS,
    NUDGES,
    VIP_UPGRADES,
    dead_letter_row,
    event_row,
    ms,
    nudge_row,
    partition_of,
    vip_row,
)
from schemas.deadletter import DeadLetter
from schemas.events import parse_event
from schemas.messages import CartItem, Nudge, NudgeHeld, VipUpgrade

AT = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)


def order_event():
    raw = {
        "event_id": str(uuid.uuid4()),
        "name": "order_placed",
        "timestamp": "2024-05-01T14:00:00.123+02:00",
        "anonymous_id": "anon-1",
        "user_id": "u-1",
        "properties": {
            "order_id": "o-1",
            "items": [{"product_id": "p1", "quantity": 2, "amount": 20.0}],
            "total": 40.5,
            "currency": "EUR",
        },
        "context": {
            "campaign": {"source": "whatsapp", "utm_message_id": "m" * 32},
            "device": "mobile",
            "country": "DE",
        },
    }
    return parse_event(raw, received_at=AT, ip="192.0.2.77")


def test_event_row_follows_the_table_columns() -> None:
    event = order_event()
    row = dict(zip(EVENTS.columns, event_row(event), strict=True))
    assert row["event_id"] == str(event.event_id)
    assert row["timestamp"] == ms(AT) == 1714564800123  # the offset is honoured
    assert row["user_key"] == "u-1"
    assert (row["order_id"], row["revenue"], row["currency"]) == ("o-1", 40.5, "EUR")
    assert (row["utm_source"], row["utm_message_id"]) == ("whatsapp", "m" * 32)
    assert (row["device"], row["country"], row["ip"]) == ("mobile", "DE", "192.0.2.0")
    assert event_row(event) == event_row(event)  # pure


def test_invalid_raw_records_make_no_row() -> None:
    assert process_event(b"not json", 0) is None
    assert process_event(b'{"name": "page_view"}', 0) is None
    [(table, _)] = process_event(order_event().to_json(), 0)
    assert table is EVENTS


def test_decisions_carry_the_run_and_never_the_token() -> None:
    nudge = Nudge(
        nudge_id="a" * 32,
        kind="cart_rescue",
        user_key="u-1",
        status="suppressed",
        reason="holdout",
        triggered_at=AT,
        decided_at=AT + timedelta(seconds=1),
        cart_id="c-1",
        items=(CartItem(product_id="p1", quantity=1, price=9.5),),
        discount_percent=10,
        score=0.8,
        rules_version="r1",
        trigger_event_id="e1",
    )
    row = dict(zip(NUDGES.columns, nudge_row(nudge, "live"), strict=True))
    assert (row["run_id"], row["status"], row["reason"], row["user_id"]) == (
        "live",
        "suppressed",
        "holdout",
        "",
    )
    assert row["decided_at"] - row["triggered_at"] == 1000
    upgrade = VipUpgrade(
        token_id="b" * 32,
        user_key="u-1",
        discount_percent=15,
        issued_at=AT,
        expires_at=AT + timedelta(days=30),
        order_count=3,
        channels=("sms",),
        rules_version="r1",
        trigger_event_id="e2",
        token="secret.jwt.value",
    )
    vip = vip_row(upgrade, "replay-1")
    assert "secret.jwt.value" not in vip and len(vip) == len(VIP_UPGRADES.columns)
    table, _ = decision_processor("live")(upgrade.to_json(), 0)
    assert table is VIP_UPGRADES


def test_an_engine_hold_is_its_own_row() -> None:
    held = NudgeHeld(
        nudge_id="c" * 32,
        kind="high_intent",
        user_key="u-1",
        held_at=AT,
        release_at=AT + timedelta(hours=8),
        rules_version="r1",
        trigger_event_id="e3",
    )
    table, row = decision_processor("live")(held.to_json(), 0)
    assert table is NUDGE_HOLDS
    named = dict(zip(NUDGE_HOLDS.columns, row, strict=True))
    assert (named["run_id"], named["reason"]) == ("live", "quiet_hours")
    assert named["release_at"] - named["held_at"] == 8 * 3_600_000


def test_dead_letter_row_keeps_location_and_size_not_bytes() -> None:
    letter = DeadLetter.of(
        topic="telemetry.raw",
        partition=2,
        offset=41,
        key=b"u-1",
        value=b'{"phone": "+15550100042"}',
        reason="invalid_event",
        errors=[{"loc": ["name"], "msg": "Field required"}],
    )
    row = dead_letter_row(letter, 1714564800123)
    assert dict(zip(DEAD_LETTERS.columns, row, strict=True)) == {
        "source_topic": "telemetry.raw",
        "partition": 2,
        "offset": 41,
        "reason": "invalid_event",
        "errors": '[{"loc":["name"],"msg":"Field required"}]',
        "user_key": "u-1",
        "value_bytes": 25,
        "at": 1714564800123,
    }
    assert "+1555" not in repr(row)
    assert process_dead_letter(letter.to_json(), 1714564800123) == (DEAD_LETTERS, row)


def test_batch_token_names_the_offsets() -> None:
    batch = SinkBatch("telemetry.raw")
    for partition, offset in ((1, 7), (0, 3), (1, 5), (0, 4)):
        batch.add(partition, offset, None if offset == 4 else (EVENTS, (offset,)))
    assert len(batch) == 3 and batch.skipped == 1
    assert batch.dedup_token(EVENTS) == "telemetry.raw|events|0:3-4,1:5-7"


@settings(max_examples=60, deadline=None)
@given(
    times=st.lists(
        st.integers(min_value=-(2**62), max_value=2**62) | st.integers(-(10**12), 10**13),
        min_size=1,
        max_size=400,
    ),
    limit=st.integers(min_value=1, max_value=120),
)
def test_inserts_cover_every_row_once_within_the_partition_limit(times: list[int], limit: int):
    """Whatever months the rows fall in (event time is the client's), each insert spans at
    most ``limit`` partitions, every row is in exactly one insert, and the split is stable."""
    batch = SinkBatch("t")
    for offset, at in enumerate(times):
        batch.add(0, offset, (EVENTS, ("id", "page_view", at)))

    inserts = list(batch.inserts(EVENTS, limit))

    indexes = [i for chunk, _ in inserts for i in chunk]
    assert sorted(indexes) == list(range(len(times)))
    rows = batch.rows[EVENTS]
    assert all(len({partition_of(EVENTS, rows[i]) for i in chunk}) <= limit for chunk, _ in inserts)
    assert len({token for _, token in inserts}) == len(inserts)
    assert list(batch.inserts(EVENTS, limit)) == inserts
