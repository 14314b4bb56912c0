"""What messages cost, per channel: the ``sent`` receipts' prices (the rules' rate card,
recorded by the dispatcher) against the orders attributed to them (api/queries/
attribution.py). Sends and orders are both taken in the range; a receipt re-delivered
under the same id counts once.
"""

from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from api.queries.attribution import ATTRIBUTED_ORDERS_SQL, attribution_params
from api.queries.common import TimeRange, in_range

_COSTS_SQL = f"""
SELECT s.channel, s.currency, s.messages, s.cost, c.conversions, c.revenue
FROM (
    SELECT channel, currency, uniqExact(message_id) AS messages, sum(cost) AS cost
    FROM (
        SELECT receipt_id, any(channel) AS channel, any(currency) AS currency,
               any(message_id) AS message_id, any(cost) AS cost
        FROM receipts
        WHERE status = 'sent' AND {in_range("at")}
        GROUP BY receipt_id
    )
    GROUP BY channel, currency
) AS s
LEFT JOIN (
    SELECT channel, count() AS conversions, sum(revenue) AS revenue
    FROM ({ATTRIBUTED_ORDERS_SQL})
    GROUP BY channel
) AS c ON s.channel = c.channel
ORDER BY s.channel, s.currency
"""


@dataclass(frozen=True, slots=True)
class ChannelCost:
    channel: str
    currency: str  # the rate card's when sent ('' before costs were recorded)
    messages: int  # sent (taken by the provider)
    cost: float
    conversions: int  # attributed orders
    revenue: float
    cost_per_message: float | None
    cost_per_conversion: float | None  # None without a conversion


def costs(client: Client, time_range: TimeRange, window_s: int) -> list[ChannelCost]:
    rows = client.query(_COSTS_SQL, parameters=attribution_params(time_range, window_s))
    out = []
    for channel, currency, messages, cost, conversions, revenue in rows.result_rows:
        cost, conversions = round(float(cost), 6), int(conversions or 0)
        out.append(
            ChannelCost(
                channel,
                currency,
                int(messages),
                cost,
                conversions,
                round(float(revenue or 0), 2),
                round(cost / messages, 6) if messages else None,
                round(cost / conversions, 6) if conversions else None,
            )
        )
    return out
