"""Shoppers' reads and clicks per local hour, from the receipts: the history send-time
optimisation learns from (pipeline/campaigns/best_hour.py).

One home for the query, shared by the campaign launcher (a campaign's members) and the
dispatcher's send-hour snapshots (every shopper with history): distinct ``read`` and
``clicked`` receipts in ``[since, now)``, counted per quarter hour in SQL (every zone's
offset is a whole number of quarters, so each quarter maps to one local hour), then per
local hour in the shopper's zone here.
"""

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pipeline.campaigns.best_hour import hour_counts, local_hour
from schemas import time as times

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

# Bound parameters: from_ms, now_ms. {members}: '' (every shopper) or "AND user_key IN
# (...)", written by the caller with its own values bound.
HISTORY_SQL = """
SELECT user_key, groupArray(quarter_ms), groupArray(n)
FROM (
    SELECT user_key, toUnixTimestamp(toStartOfFifteenMinutes(at)) * 1000 AS quarter_ms,
           uniqExact(receipt_id) AS n
    FROM receipts
    WHERE status IN ('read', 'clicked') AND user_key != ''
      AND at >= fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC')
      AND at < fromUnixTimestamp64Milli({now_ms:Int64}, 'UTC')
      {members}
    GROUP BY user_key, quarter_ms
)
GROUP BY user_key
"""

# Bound parameters: from_ms, now_ms. The profiles' zones of the shoppers with history.
ZONES_SQL = """
SELECT user_key, timezone FROM profiles
WHERE user_key IN (
    SELECT DISTINCT user_key FROM receipts
    WHERE status IN ('read', 'clicked')
      AND at >= fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC')
      AND at < fromUnixTimestamp64Milli({now_ms:Int64}, 'UTC')
)
"""


def hour_histories(
    client: "Client",
    since_ms: int,
    now_ms: int,
    zone_of: Callable[[str], ZoneInfo],
    members_sql: str = "",
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, list[int]]:
    """user key → their reads and clicks in ``[since, now)`` per local hour (0-23), each in
    the zone ``zone_of`` gives for them."""
    sql = HISTORY_SQL.replace("{members}", members_sql)
    params = {**(parameters or {}), "from_ms": since_ms, "now_ms": now_ms}
    histories = {}
    for user_key, quarters, counts in client.query(sql, parameters=params).result_rows:
        tz = zone_of(user_key)
        hours = hour_counts(())
        for quarter_ms, n in zip(quarters, counts, strict=True):
            hours[local_hour(times.from_ms(quarter_ms), tz)] += n
        histories[user_key] = hours
    return histories


def history_zones(client: "Client", since_ms: int, now_ms: int) -> dict[str, str]:
    """user key → the zone their profile names ('' when none), for those with history."""
    params = {"from_ms": since_ms, "now_ms": now_ms}
    return dict(client.query(ZONES_SQL, parameters=params).result_rows)
