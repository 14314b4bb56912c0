"""Nudge outcomes per message kind and channel: decisions, receipts, conversions.

Each count is of things that happened in the range: decisions by decided_at
(VIP upgrades by issued_at), receipts by their time, conversions by the order's
time. Counts are of distinct ids, so unmerged duplicate rows change nothing.
A decision's channel is its first (preferred) deliverable channel, 'none'
without one; the 'all' row counts each message once across channels.
"""

from collections import defaultdict

from clickhouse_connect.driver.client import Client

from api.queries.attribution import ATTRIBUTED_ORDERS_SQL, attribution_params
from api.queries.common import TimeRange, in_range
from schemas.messages import SUPPRESSION_REASONS

RECEIPT_STATUSES = ("sent", "delivered", "read", "clicked", "failed")
ALL = "all"
_CHANNEL = "if(empty(channels), 'none', channels[1])"

# Reasons are constants of this module, not input.
_BY_REASON = ", ".join(f"countIf(reason = '{r}')" for r in SUPPRESSION_REASONS)
_DECISIONS = f"""
SELECT kind, channel, countIf(status = 'emit'), countIf(status = 'suppressed'), {_BY_REASON}
FROM (
    SELECT nudge_id, any(kind) AS kind, any(status) AS status, any(reason) AS reason,
           any(channels) AS channels, {_CHANNEL} AS channel
    FROM nudges
    WHERE run_id = {{run_id:String}} AND {in_range("decided_at")}
    GROUP BY nudge_id
)
GROUP BY kind, channel
"""
_VIP = f"""
SELECT 'vip_upgrade', channel, count()
FROM (
    SELECT token_id, any(channels) AS channels, {_CHANNEL} AS channel
    FROM vip_upgrades
    WHERE run_id = {{run_id:String}} AND {in_range("issued_at")}
    GROUP BY token_id
)
GROUP BY channel
"""
_CANCELLED = f"""
SELECT c.kind, if(empty(n.channels), 'none', n.channels[1]) AS channel, uniqExact(c.nudge_id)
FROM (
    SELECT DISTINCT nudge_id, kind FROM nudge_cancellations
    WHERE run_id = {{run_id:String}} AND {in_range("at")}
) AS c
LEFT JOIN (
    SELECT nudge_id, any(channels) AS channels FROM nudges
    WHERE run_id = {{run_id:String}} GROUP BY nudge_id
) AS n ON c.nudge_id = n.nudge_id
GROUP BY c.kind, channel
"""
_RECEIPTS_BY_CHANNEL = f"""
SELECT kind, if(channel = '', 'none', channel) AS channel_name, status, uniqExact(message_id)
FROM receipts
WHERE status IN {{statuses:Array(String)}} AND {in_range("at")}
GROUP BY kind, channel_name, status
"""
_RECEIPTS_ALL = f"""
SELECT kind, status, uniqExact(message_id)
FROM receipts
WHERE status IN {{statuses:Array(String)}} AND {in_range("at")}
GROUP BY kind, status
"""
_CONVERSIONS_BY_CHANNEL = f"""
SELECT kind, if(channel = '', 'none', channel), uniqExact(message_id), uniqExact(order_id),
       sum(revenue)
FROM ({ATTRIBUTED_ORDERS_SQL})
GROUP BY kind, channel
"""
_CONVERSIONS_ALL = f"""
SELECT kind, uniqExact(message_id), uniqExact(order_id), sum(revenue)
FROM ({ATTRIBUTED_ORDERS_SQL})
GROUP BY kind
"""

COUNT_FIELDS = (
    "emitted",
    "suppressed",
    *(f"suppressed_{r}" for r in SUPPRESSION_REASONS),
    "cancelled",
    *RECEIPT_STATUSES,
    "converted",
    "orders",
)


def _empty_row(kind: str, channel: str) -> dict[str, object]:
    return {"kind": kind, "channel": channel, **dict.fromkeys(COUNT_FIELDS, 0), "revenue": 0.0}


def nudge_outcomes(
    client: Client, time_range: TimeRange, window_s: int, run_id: str
) -> list[dict[str, object]]:
    rows: dict[tuple[str, str], dict[str, object]] = defaultdict(dict)

    def row(kind: str, channel: str) -> dict[str, object]:
        found = rows.get((kind, channel))
        if not found:
            found = rows[(kind, channel)] = _empty_row(kind, channel)
        return found

    def add(kind: str, channel: str, name: str, value: float) -> None:
        for target in (row(kind, channel), row(kind, ALL)):
            target[name] += value  # type: ignore[operator]

    base = {**time_range.params(), "run_id": run_id}
    decision_fields = ("emitted", "suppressed", *(f"suppressed_{r}" for r in SUPPRESSION_REASONS))
    for kind, channel, *counts in client.query(_DECISIONS, parameters=base).result_rows:
        for name, value in zip(decision_fields, counts, strict=True):
            add(kind, channel, name, int(value))
    for kind, channel, count in client.query(_VIP, parameters=base).result_rows:
        add(kind, channel, "emitted", int(count))
    for kind, channel, count in client.query(_CANCELLED, parameters=base).result_rows:
        add(kind, channel, "cancelled", int(count))

    # Receipts and conversions are distinct messages: 'all' is counted, not summed.
    receipt_params = {**time_range.params(), "statuses": list(RECEIPT_STATUSES)}
    result = client.query(_RECEIPTS_BY_CHANNEL, parameters=receipt_params)
    for kind, channel, status, count in result.result_rows:
        row(kind, channel)[status] = int(count)
    for kind, status, count in client.query(_RECEIPTS_ALL, parameters=receipt_params).result_rows:
        row(kind, ALL)[status] = int(count)
    conversion_params = attribution_params(time_range, window_s)
    result = client.query(_CONVERSIONS_BY_CHANNEL, parameters=conversion_params)
    for kind, channel, converted, orders, revenue in result.result_rows:
        target = row(kind, channel)
        target.update(converted=int(converted), orders=int(orders), revenue=float(revenue))
    result = client.query(_CONVERSIONS_ALL, parameters=conversion_params)
    for kind, converted, orders, revenue in result.result_rows:
        row(kind, ALL).update(converted=int(converted), orders=int(orders), revenue=float(revenue))

    def order(key: tuple[str, str]) -> tuple[str, int, str]:
        kind, channel = key
        return kind, 0 if channel == ALL else 1, channel

    return [rows[key] for key in sorted(rows, key=order)]
