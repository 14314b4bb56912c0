"""Time series: events, orders, revenue and nudges per bucket; dead letters per reason.

Buckets start at multiples of the interval since the epoch and are computed in
SQL from epoch milliseconds (bound); empty buckets are filled here. Counts are
of distinct ids, so a not-yet-merged duplicate row changes nothing.
"""

from dataclasses import dataclass
from typing import Literal

from clickhouse_connect.driver.client import Client

from api.queries.common import TimeRange, in_range
from schemas.runs import LIVE_RUN
from schemas.time import iso_ms

Metric = Literal["events", "orders", "revenue", "nudges"]

_BUCKET = "intDiv(toUnixTimestamp64Milli({column}), {{step_ms:Int64}}) * {{step_ms:Int64}}"

# An order counts once (by order_id), at its earliest timestamp, with its total.
_ORDERS = f"""
    SELECT order_id, min(timestamp) AS ordered_at, any(revenue) AS revenue,
           any(currency) AS currency
    FROM events
    WHERE name = 'order_placed' AND {in_range("timestamp")}
    GROUP BY order_id
"""

_SQL: dict[str, str] = {
    "events": f"""
        SELECT {_BUCKET.format(column="timestamp")} AS t, uniqExact(event_id) AS value
        FROM events
        WHERE {in_range("timestamp")} {{name_filter}}
        GROUP BY t""",
    "orders": f"""
        SELECT {_BUCKET.format(column="ordered_at")} AS t, count() AS value
        FROM ({_ORDERS}) GROUP BY t""",
    "revenue": f"""
        SELECT {_BUCKET.format(column="ordered_at")} AS t, sum(revenue) AS value
        FROM ({_ORDERS}) WHERE {{currency_filter}} GROUP BY t""",
    "nudges": f"""
        SELECT {_BUCKET.format(column="decided_at")} AS t, uniqExact(nudge_id) AS value
        FROM nudges
        WHERE run_id = {{run_id:String}} AND status = 'emit' AND {in_range("decided_at")}
        GROUP BY t""",
}


@dataclass(frozen=True, slots=True)
class Point:
    t: str
    value: int | float


def bucket_starts(time_range: TimeRange, step_ms: int) -> range:
    first = time_range.start_ms // step_ms * step_ms
    return range(first, time_range.end_ms, step_ms)


def timeseries(
    client: Client,
    metric: Metric,
    step_s: int,
    time_range: TimeRange,
    name: str | None = None,
    currency: str | None = None,
) -> list[Point]:
    step_ms = step_s * 1000
    params: dict[str, object] = {**time_range.params(), "step_ms": step_ms, "run_id": LIVE_RUN}
    sql = _SQL[metric]
    if metric == "events":
        sql = sql.replace("{name_filter}", "AND name = {name:String}" if name else "")
        params["name"] = name or ""
    if metric == "revenue":
        sql = sql.replace("{currency_filter}", "currency = {currency:String}" if currency else "1")
        params["currency"] = currency or ""
    found = {int(t): value for t, value in client.query(sql, parameters=params).result_rows}
    cast = float if metric == "revenue" else int
    return [Point(iso_ms(t), cast(found.get(t, 0))) for t in bucket_starts(time_range, step_ms)]


@dataclass(frozen=True, slots=True)
class DeadLetterCount:
    t: str
    reason: str
    source_topic: str
    count: int


def dead_letters(client: Client, step_s: int, time_range: TimeRange) -> list[DeadLetterCount]:
    sql = f"""
        SELECT {_BUCKET.format(column="at")} AS t, reason, source_topic,
               uniqExact(source_topic, partition, offset) AS count
        FROM dead_letters
        WHERE {in_range("at")}
        GROUP BY t, reason, source_topic
        ORDER BY t, reason, source_topic"""
    params = {**time_range.params(), "step_ms": step_s * 1000}
    return [
        DeadLetterCount(iso_ms(int(t)), reason, topic, int(count))
        for t, reason, topic, count in client.query(sql, parameters=params).result_rows
    ]
