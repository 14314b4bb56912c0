"""Decisions, receipts and the bandit's snapshots for seeding the warehouse in tests, as the
engine and the dispatcher would have made them (written with their own row functions),
and the sink's writer to insert any table's rows."""

import uuid
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from pipeline.sink.batch import SinkBatch
from pipeline.sink.rows import Table
from pipeline.sink.writer import WarehouseWriter
from schemas.bandit import Arm, Snapshot, snapshot_id
from schemas.bandit_tables import record_snapshot
from schemas.messages import CartItem, Nudge, Receipt


def nudge(
    nid: str,
    kind: str,
    user: str,
    at: datetime,
    channels: tuple[str, ...] = (),
    status: str = "emit",
    reason: str | None = None,
    **extra: Any,
) -> Nudge:
    """A decision about ``user`` at ``at``; a cart rescue carries a one-item cart."""
    cart = (
        {"cart_id": f"c-{user}", "items": (CartItem(product_id="p1", quantity=1, price=10.0),)}
        if kind == "cart_rescue"
        else {"product_id": "p1"}
    )
    return Nudge(
        nudge_id=nid,
        kind=kind,
        user_key=user,
        user_id=user,
        status=status,
        reason=reason,
        triggered_at=at,
        decided_at=at,
        discount_percent=10,
        channels=channels,
        score=0.9,
        rules_version="r1",
        trigger_event_id=f"e-{nid}",
        **cart,
        **extra,
    )


def receipt(
    message: str, user: str, kind: str, channel: str, status: str, at: datetime, **cost: Any
) -> Receipt:
    """One receipt of a message; the same (message, channel, status) is the same receipt."""
    return Receipt(
        receipt_id=uuid.uuid5(uuid.NAMESPACE_OID, f"{message}{channel}{status}").hex,
        message_id=message,
        kind=kind,
        user_key=user,
        channel=channel,
        status=status,
        at=at,
        **cost,
    )


def variants_in_force(
    client: Client, kind: str, effective_from_ms: int, *arms: tuple[str, int, int]
) -> None:
    """The bandit's snapshot of ``kind``'s variants (name, sends, successes) in force from
    ``effective_from_ms``, recorded as the dispatcher records it."""
    snapshot = Snapshot(
        snapshot_id(kind, effective_from_ms),
        kind,
        effective_from_ms,
        tuple(Arm(*arm) for arm in arms),
    )
    record_snapshot(client, snapshot, "click")


def insert(client: Client, table: Table, rows: list[tuple], topic: str) -> None:
    """``rows`` of ``table`` written as the sink writes a batch of ``topic`` (partition 0)."""
    writer = WarehouseWriter("unused", "unused")
    writer._client = client
    batch = SinkBatch(topic)
    for offset, row in enumerate(rows):
        batch.add(0, offset, (table, row))
    writer.write_batch(batch)
