"""Pure processors: one message in, one warehouse row out (Snuba/Arroyo style).

One function per message type; each returns a tuple in the order of its
table's ``columns``. No I/O, no clock: the same message always makes the same
row, so a re-delivered batch makes identical rows (which is what the
warehouse's dedup relies on).
"""

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import orjson

from schemas.catalog import PRODUCT_COLUMNS, PRODUCTS_TABLE, product_of, product_row
from schemas.deadletter import DeadLetter
from schemas.events import Event
from schemas.fast_events import FastEvent
from schemas.messages import Nudge, NudgeCancellation, NudgeHeld, Receipt, VipUpgrade


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[str, ...]
    # The time column (epoch ms in rows) whose month partitions the table
    # (``PARTITION BY toYYYYMM(...)`` in its migration).
    partitioned_by: str | None = None


EVENTS = Table(
    "events",
    (
        "event_id",
        "name",
        "timestamp",
        "received_at",
        "user_key",
        "anonymous_id",
        "user_id",
        "session_id",
        "product_id",
        "category",
        "order_id",
        "revenue",
        "currency",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_message_id",
        "url",
        "referrer",
        "device",
        "country",
        "timezone",
        "properties",
        "ip",
    ),
    "timestamp",
)
# The catalog (migrations/0170_products.sql): not partitioned, products are few.
PRODUCTS = Table(PRODUCTS_TABLE, PRODUCT_COLUMNS)
NUDGES = Table(
    "nudges",
    (
        "run_id",
        "nudge_id",
        "kind",
        "user_key",
        "user_id",
        "status",
        "reason",
        "triggered_at",
        "decided_at",
        "product_id",
        "cart_id",
        "items",
        "discount_percent",
        "channels",
        "score",
        "signals",
        "rules_version",
        "trigger_event_id",
        "timezone",
    ),
    "decided_at",
)
NUDGE_CANCELLATIONS = Table(
    "nudge_cancellations",
    (
        "run_id",
        "nudge_id",
        "kind",
        "user_key",
        "reason",
        "at",
        "rules_version",
        "trigger_event_id",
    ),
    "at",
)
NUDGE_HOLDS = Table(
    "nudge_holds",
    (
        "run_id",
        "nudge_id",
        "kind",
        "user_key",
        "reason",
        "held_at",
        "release_at",
        "rules_version",
        "trigger_event_id",
    ),
)
VIP_UPGRADES = Table(
    "vip_upgrades",
    (
        "run_id",
        "token_id",
        "user_key",
        "user_id",
        "discount_percent",
        "issued_at",
        "expires_at",
        "order_count",
        "rules_version",
        "trigger_event_id",
        "channels",
    ),
    "issued_at",
)
RECEIPTS = Table(
    "receipts",
    (
        "receipt_id",
        "message_id",
        "kind",
        "user_key",
        "campaign_id",
        "channel",
        "status",
        "at",
        "provider_message_id",
        "detail",
        "cost",
        "currency",
        "variant",
        "send_arm",
        "send_hour",
    ),
    "at",
)
DEAD_LETTERS = Table(
    "dead_letters",
    (
        "source_topic",
        "partition",
        "offset",
        "reason",
        "errors",
        "user_key",
        "value_bytes",
        "at",
    ),
    "at",
)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def ms(moment: datetime) -> int:
    """DateTime64(3) as epoch milliseconds: exact, and written by the client without conversion."""
    return (moment - _EPOCH) // _MS


@cache
def _partition_column(table: Table) -> int | None:
    return table.columns.index(table.partitioned_by) if table.partitioned_by else None


def partition_of(table: Table, row: tuple) -> int:
    """The row's partition in ``table``: the month (YYYYMM, UTC) of its time column; 0 if none.

    Times beyond what a date can hold share one key per side, as ClickHouse clamps them.
    """
    column = _partition_column(table)
    if column is None:
        return 0
    try:
        moment = _EPOCH + row[column] * _MS
    except OverflowError:
        return -1 if row[column] < 0 else 999_999
    return moment.year * 100 + moment.month


def _text(value: Any) -> str:
    """A property as a column value: strings as they are, numbers as text, else ''."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    return ""


def _money(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 0.0


def user_key(user_id: str | None, anonymous_id: str) -> str:
    """The warehouse's user key: the user id when known, else the anonymous id.

    Unlike ``Event.key`` (the partition key) an ``identify`` is keyed by its user too:
    a funnel follows a user across the identify.
    """
    return user_id or anonymous_id


def event_row(event: Event | FastEvent) -> tuple:
    props = event.properties
    context = event.context
    campaign = context.campaign
    page = context.page
    is_order = event.name == "order_placed"
    return (
        str(event.event_id),
        event.name,
        ms(event.timestamp),
        ms(event.received_at or event.timestamp),
        user_key(event.user_id, event.anonymous_id),
        event.anonymous_id,
        event.user_id or "",
        event.session_id or "",
        _text(props.get("product_id")),
        _text(props.get("category")),
        _text(props.get("order_id")) if is_order else "",
        _money(props.get("total")) if is_order else 0.0,
        _text(props.get("currency")) if is_order else "",
        (campaign.source or "") if campaign else "",
        (campaign.medium or "") if campaign else "",
        (campaign.name or "") if campaign else "",
        (campaign.utm_message_id or "") if campaign else "",
        (page.url or "") if page else _text(props.get("url")),
        (page.referrer or "") if page else "",
        context.device or "",
        context.country or "",
        context.timezone or "",
        orjson.dumps(props, option=orjson.OPT_NON_STR_KEYS).decode(),
        event.ip or "",
    )


def catalog_row(event: Event | FastEvent) -> tuple | None:
    """The catalog entry an event describes, stamped with the event's time; None unless a
    store backend sent it (a server key: ``from_server``) and its properties name a
    product (``product_id`` and ``name``, Segment's e-commerce fields). A browser's event,
    sent with a public write key, never changes what messages to other shoppers say."""
    if not event.from_server:
        return None
    product = product_of(event.properties)
    return None if product is None else product_row(product, ms(event.timestamp), "event")


def event_rows(event: Event | FastEvent) -> list[tuple[Table, tuple]]:
    """An event's ``events`` row, and its ``products`` row when it carries one."""
    rows: list[tuple[Table, tuple]] = [(EVENTS, event_row(event))]
    catalog = catalog_row(event)
    if catalog is not None:
        rows.append((PRODUCTS, catalog))
    return rows


def nudge_row(nudge: Nudge, run_id: str) -> tuple:
    return (
        run_id,
        nudge.nudge_id,
        nudge.kind,
        nudge.user_key,
        nudge.user_id or "",
        nudge.status,
        nudge.reason or "",
        ms(nudge.triggered_at),
        ms(nudge.decided_at),
        nudge.product_id or "",
        nudge.cart_id or "",
        orjson.dumps([item.model_dump() for item in nudge.items]).decode(),
        nudge.discount_percent,
        list(nudge.channels),
        nudge.score,
        orjson.dumps(nudge.signals).decode(),
        nudge.rules_version,
        nudge.trigger_event_id,
        nudge.timezone or "",
    )


def cancellation_row(cancellation: NudgeCancellation, run_id: str) -> tuple:
    return (
        run_id,
        cancellation.nudge_id,
        cancellation.kind,
        cancellation.user_key,
        cancellation.reason,
        ms(cancellation.at),
        cancellation.rules_version,
        cancellation.trigger_event_id,
    )


def hold_row(held: NudgeHeld, run_id: str) -> tuple:
    return (
        run_id,
        held.nudge_id,
        held.kind,
        held.user_key,
        held.reason,
        ms(held.held_at),
        ms(held.release_at),
        held.rules_version,
        held.trigger_event_id,
    )


def vip_row(upgrade: VipUpgrade, run_id: str) -> tuple:
    # The signed token is a bearer credential: only its claims are stored.
    return (
        run_id,
        upgrade.token_id,
        upgrade.user_key,
        upgrade.user_id or "",
        upgrade.discount_percent,
        ms(upgrade.issued_at),
        ms(upgrade.expires_at),
        upgrade.order_count,
        upgrade.rules_version,
        upgrade.trigger_event_id,
        list(upgrade.channels),
    )


def receipt_row(receipt: Receipt) -> tuple:
    return (
        receipt.receipt_id,
        receipt.message_id,
        receipt.kind,
        receipt.user_key,
        receipt.campaign_id or "",
        receipt.channel or "",
        receipt.status,
        ms(receipt.at),
        receipt.provider_message_id or "",
        receipt.detail or "",
        receipt.cost or 0.0,
        receipt.currency or "",
        receipt.variant or "",
        receipt.send_arm or "",
        -1 if receipt.send_hour is None else receipt.send_hour,
    )


def dead_letter_row(letter: DeadLetter, at_ms: int) -> tuple:
    """Where, why and how big, never the bytes (they may hold personal data).

    ``at_ms`` is the dead-letter record's own Kafka timestamp (when it was dead-lettered).
    """
    errors = [{"loc": e.get("loc", []), "msg": e.get("msg", "")} for e in letter.errors]
    key = letter.key_b64
    return (
        letter.source_topic,
        letter.partition,
        letter.offset,
        letter.reason,
        orjson.dumps(errors).decode(),
        _decoded_key(key),
        len(letter.original_value()),
        at_ms,
    )


def _decoded_key(key_b64: str | None) -> str:
    if not key_b64:
        return ""
    return base64.b64decode(key_b64).decode("utf-8", errors="replace")
