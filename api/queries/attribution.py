"""Attribution: which orders a message led to. One definition, used by every query.

An ``order_placed`` event whose ``utm_message_id`` is a message's id (the nudge
id; the token id for a VIP upgrade; the member id for a campaign) converts that
message when the order's time is at or after the message's first ``read`` or
``clicked`` receipt and at most ``window_s`` after it. The conversion's channel
is that first engaging receipt's channel. An order counts once per message (by
order_id, at its earliest timestamp), whatever duplicate rows exist.
"""

from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from api.queries.common import TimeRange, in_range

# Bound parameters: start_ms, end_ms (the orders' time range), window_s.
ATTRIBUTED_ORDERS_SQL = f"""
SELECT
    o.message_id AS message_id,
    e.kind AS kind,
    e.channel AS channel,
    o.order_id AS order_id,
    toUnixTimestamp64Milli(o.ordered_at) AS ordered_at_ms,
    o.revenue AS revenue,
    o.user_key AS user_key
FROM (
    SELECT utm_message_id AS message_id, order_id,
           min(timestamp) AS ordered_at, any(revenue) AS revenue, any(user_key) AS user_key
    FROM events
    WHERE name = 'order_placed' AND utm_message_id != '' AND {in_range("timestamp")}
    GROUP BY message_id, order_id
) AS o
INNER JOIN (
    SELECT message_id, any(kind) AS kind, min(at) AS engaged_at, argMin(channel, at) AS channel
    FROM receipts
    WHERE status IN ('read', 'clicked')
    GROUP BY message_id
) AS e ON o.message_id = e.message_id
WHERE o.ordered_at >= e.engaged_at
  AND o.ordered_at <= e.engaged_at + toIntervalSecond({{window_s:UInt32}})
"""


@dataclass(frozen=True, slots=True)
class AttributedOrder:
    message_id: str
    kind: str
    channel: str
    order_id: str
    ordered_at_ms: int
    revenue: float
    user_key: str


def attribution_params(time_range: TimeRange, window_s: int) -> dict[str, int]:
    return {**time_range.params(), "window_s": window_s}


def attributed_orders(
    client: Client, time_range: TimeRange, window_s: int
) -> list[AttributedOrder]:
    """Every attributed (message, order) pair with an order in ``time_range``."""
    result = client.query(
        ATTRIBUTED_ORDERS_SQL + " ORDER BY ordered_at_ms, message_id, order_id",
        parameters=attribution_params(time_range, window_s),
    )
    return [
        AttributedOrder(m, k, c, o, int(t), float(r), u)
        for m, k, c, o, t, r, u in result.result_rows
    ]
