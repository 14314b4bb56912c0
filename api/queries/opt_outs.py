"""Opt-outs by reply (STOP, UNSUBSCRIBE, ...) per time bucket and channel.

One row per inbound message (``opt_outs``, written by the webhook); a
re-delivered webhook has the same provider event id, counted once.
"""

from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from api.queries.common import TimeRange, in_range
from schemas.dispatch_tables import OPT_OUTS
from schemas.time import iso_ms

_BUCKET = "intDiv(toUnixTimestamp64Milli(at), {step_ms:Int64}) * {step_ms:Int64}"


@dataclass(frozen=True, slots=True)
class OptOutCount:
    t: str
    channel: str
    count: int  # distinct inbound messages
    users: int


def opt_outs(client: Client, step_s: int, time_range: TimeRange) -> list[OptOutCount]:
    sql = f"""
        SELECT {_BUCKET} AS t, channel,
               uniqExact(provider_event_id) AS count, uniqExact(user_key) AS users
        FROM {OPT_OUTS}
        WHERE {in_range("at")}
        GROUP BY t, channel
        ORDER BY t, channel"""
    params = {**time_range.params(), "step_ms": step_s * 1000}
    return [
        OptOutCount(iso_ms(int(t)), channel, int(count), int(users))
        for t, channel, count, users in client.query(sql, parameters=params).result_rows
    ]
