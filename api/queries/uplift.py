"""Uplift: conversion of nudged users against the holdout, with 95 % intervals.

Users are those whose first nudge decision in the range (live run) was emitted
(nudged) or suppressed for the holdout (holdout). A user converted when an
``order_placed`` event of theirs falls at or after that first decision and
before the range's end. Per group: the Wilson score interval; the difference:
Newcombe's hybrid score interval (Newcombe 1998, method 10), built from the
two Wilson intervals.
"""

import math
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from api.queries.common import TimeRange, in_range
from schemas.runs import LIVE_RUN

Z95 = 1.959963984540054

_SQL = f"""
SELECT holdout, count() AS users, countIf(converted) AS converted
FROM (
    SELECT f.user_key AS user_key, any(f.holdout) AS holdout,
           max(o.user_key != '' AND o.timestamp >= f.first_at) AS converted
    FROM (
        SELECT user_key, min(decided_at) AS first_at,
               argMin(status = 'suppressed', decided_at) AS holdout
        FROM nudges
        WHERE run_id = {{run_id:String}} AND {in_range("decided_at")}
          AND (status = 'emit' OR (status = 'suppressed' AND reason = 'holdout'))
          AND ({{kind:String}} = '' OR kind = {{kind:String}})
        GROUP BY user_key
    ) AS f
    LEFT JOIN (
        SELECT user_key, timestamp FROM events
        WHERE name = 'order_placed' AND {in_range("timestamp")}
    ) AS o ON o.user_key = f.user_key
    GROUP BY f.user_key
)
GROUP BY holdout
"""


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def newcombe(c1: int, n1: int, c2: int, n2: int, z: float = Z95) -> tuple[float, float]:
    """95 % interval of p1 − p2 (Newcombe's hybrid score method)."""
    p1 = c1 / n1 if n1 else 0.0
    p2 = c2 / n2 if n2 else 0.0
    l1, u1 = wilson(c1, n1, z)
    l2, u2 = wilson(c2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, low), min(1.0, high)


@dataclass(frozen=True, slots=True)
class UpliftRow:
    group: str
    users: int | None
    converted: int | None
    rate: float
    ci_low: float
    ci_high: float


def uplift_rows(nudged: tuple[int, int], holdout: tuple[int, int]) -> list[UpliftRow]:
    """Rows from (users, converted) of each group."""
    rows = []
    for group, (n, c) in (("nudged", nudged), ("holdout", holdout)):
        low, high = wilson(c, n)
        rows.append(UpliftRow(group, n, c, c / n if n else 0.0, low, high))
    (n1, c1), (n2, c2) = nudged, holdout
    low, high = newcombe(c1, n1, c2, n2)
    rows.append(UpliftRow("uplift", None, None, rows[0].rate - rows[1].rate, low, high))
    return rows


def uplift(client: Client, time_range: TimeRange, kind: str | None = None) -> list[UpliftRow]:
    params = {**time_range.params(), "run_id": LIVE_RUN, "kind": kind or ""}
    groups = {False: (0, 0), True: (0, 0)}
    for holdout, users, converted in client.query(_SQL, parameters=params).result_rows:
        groups[bool(holdout)] = (int(users), int(converted))
    return uplift_rows(groups[False], groups[True])
