"""The backtest comparison: two runs' decisions side by side, read from the warehouse.

Shared by ``intentflow backtest compare`` and ``GET /v1/backtests/compare`` (neither
imports the other's internals): the queries, with bound parameters only, and the
report built from their rows. Run ``live`` is what the live pipeline decided.

Definitions:
- a user is *nudged* by a run when it has an emitted (not suppressed) nudge for them;
- ``only_in_a`` lists run A's emitted nudges of users run B did not nudge, each with
  why B did not (``reason``): B's suppression reasons for that user, comma-joined,
  or ``not_triggered`` when B made no decision about them at all;
- a nudged user *converted* when an order of theirs comes after one of the run's
  emitted nudges to them (``decided_at``); orders come from the warehouse's events
  and from the traffic the runs replayed.

``nudges`` is a ReplacingMergeTree keyed by (run_id, nudge_id): every read uses
FINAL, so a not-yet-merged duplicate row never counts twice.
"""

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

NOT_TRIGGERED = "not_triggered"

# Run ids as bound parameters: {a:String} and {b:String}; {x}/{y} for a direction.
TOTALS_SQL = """
SELECT run_id, kind, status, reason, count() AS decisions
FROM nudges FINAL
WHERE run_id IN ({a:String}, {b:String})
GROUP BY run_id, kind, status, reason
"""

USERS_SQL = """
SELECT run_id, uniqExactIf(user_key, status = 'emit') AS users_nudged,
       arraySort(groupUniqArray(rules_version)) AS rules_versions
FROM nudges FINAL
WHERE run_id IN ({a:String}, {b:String})
GROUP BY run_id
"""

# A replay that decided nothing is still a run.
RUNS_SQL = """
SELECT DISTINCT run_id FROM replay_runs FINAL WHERE run_id IN ({a:String}, {b:String})
"""

ORDERS_SQL = """
SELECT user_key, timestamp AS ordered_at FROM events
WHERE name = 'order_placed'
  AND user_key IN (SELECT user_key FROM nudges FINAL
                   WHERE run_id IN ({a:String}, {b:String}) AND status = 'emit')
UNION ALL
SELECT user_key, ordered_at FROM replay_orders FINAL WHERE run_id IN ({a:String}, {b:String})
"""

ORDERS_KNOWN_SQL = f"""
SELECT count() FROM ({ORDERS_SQL})
"""

CONVERTED_SQL = f"""
SELECT n.run_id, uniqExact(n.user_key) AS converted
FROM (SELECT run_id, user_key, decided_at FROM nudges FINAL
      WHERE run_id IN ({{a:String}}, {{b:String}}) AND status = 'emit') AS n
INNER JOIN ({ORDERS_SQL}) AS o ON o.user_key = n.user_key
WHERE o.ordered_at > n.decided_at
GROUP BY n.run_id
"""

ONLY_IN_SQL = """
SELECT n.nudge_id, n.user_key, n.kind, n.triggered_at, n.decided_at, n.rules_version,
       o.reasons
FROM (
    SELECT nudge_id, user_key, kind, triggered_at, decided_at, rules_version
    FROM nudges FINAL
    WHERE run_id = {x:String} AND status = 'emit'
      AND user_key NOT IN (SELECT user_key FROM nudges FINAL
                           WHERE run_id = {y:String} AND status = 'emit')
) AS n
LEFT JOIN (
    SELECT user_key, arraySort(groupUniqArray(reason)) AS reasons
    FROM nudges FINAL
    WHERE run_id = {y:String} AND status = 'suppressed'
    GROUP BY user_key
) AS o ON o.user_key = n.user_key
ORDER BY n.user_key, n.decided_at, n.nudge_id
LIMIT {limit:UInt32}
"""

ONLY_IN_COUNT_SQL = """
SELECT count(), uniqExact(user_key)
FROM nudges FINAL
WHERE run_id = {x:String} AND status = 'emit'
  AND user_key NOT IN (SELECT user_key FROM nudges FINAL
                       WHERE run_id = {y:String} AND status = 'emit')
"""


class _Report(BaseModel):
    model_config = ConfigDict(frozen=True)


class RunTotals(_Report):
    run_id: str
    rules_versions: list[str]
    decisions: int
    nudges_by_kind: dict[str, int]
    users_nudged: int
    suppressions_by_reason: dict[str, int]
    # None when neither the warehouse nor the replayed traffic holds any order.
    converted_users: int | None


class OnlyIn(_Report):
    nudge_id: str
    user_key: str
    kind: str
    triggered_at: datetime
    decided_at: datetime
    rules_version: str
    # Why the other run did not nudge this user (see the module docstring).
    reason: str


class BacktestComparison(_Report):
    a: RunTotals
    b: RunTotals
    only_in_a: list[OnlyIn]
    only_in_b: list[OnlyIn]
    # Totals even when the lists are cut at the limit.
    only_in_a_nudges: int
    only_in_b_nudges: int
    only_in_a_users: int
    only_in_b_users: int


class UnknownRun(LookupError):
    """A run id with no decisions in the warehouse."""


# (sql, parameters) -> rows: the caller's warehouse client runs it.
Query = Callable[[str, dict[str, Any]], Sequence[Sequence[Any]]]


def compare_runs(query: Query, a: str, b: str, limit: int = 100_000) -> BacktestComparison:
    """Both runs' totals and the nudges of each not in the other; raises ``UnknownRun``."""
    pair = {"a": a, "b": b}
    totals = query(TOTALS_SQL, pair)
    users = {row[0]: (int(row[1]), list(row[2])) for row in query(USERS_SQL, pair)}
    recorded = {row[0] for row in query(RUNS_SQL, pair)}
    for run_id in (a, b):
        if run_id not in users and run_id not in recorded:
            raise UnknownRun(f"run {run_id!r} has no decisions in the warehouse")
    orders_known = int(query(ORDERS_KNOWN_SQL, pair)[0][0]) > 0
    converted = {row[0]: int(row[1]) for row in query(CONVERTED_SQL, pair)}

    def run_totals(run_id: str) -> RunTotals:
        by_kind: dict[str, int] = {}
        by_reason: dict[str, int] = {}
        decisions = 0
        for row_run, kind, status, reason, count in totals:
            if row_run != run_id:
                continue
            decisions += int(count)
            if status == "emit":
                by_kind[kind] = by_kind.get(kind, 0) + int(count)
            else:
                by_reason[reason] = by_reason.get(reason, 0) + int(count)
        users_nudged, versions = users.get(run_id, (0, []))
        return RunTotals(
            run_id=run_id,
            rules_versions=versions,
            decisions=decisions,
            nudges_by_kind=dict(sorted(by_kind.items())),
            users_nudged=users_nudged,
            suppressions_by_reason=dict(sorted(by_reason.items())),
            converted_users=converted.get(run_id, 0) if orders_known else None,
        )

    def only_in(x: str, y: str) -> tuple[list[OnlyIn], int, int]:
        direction = {"x": x, "y": y}
        rows = query(ONLY_IN_SQL, {**direction, "limit": limit})
        listed = [
            OnlyIn(
                nudge_id=nudge_id,
                user_key=user_key,
                kind=kind,
                triggered_at=triggered_at,
                decided_at=decided_at,
                rules_version=version,
                reason=",".join(reasons) if reasons else NOT_TRIGGERED,
            )
            for nudge_id, user_key, kind, triggered_at, decided_at, version, reasons in rows
        ]
        nudges, users_count = query(ONLY_IN_COUNT_SQL, direction)[0]
        return listed, int(nudges), int(users_count)

    only_a, nudges_a, users_a = only_in(a, b)
    only_b, nudges_b, users_b = only_in(b, a)
    return BacktestComparison(
        a=run_totals(a),
        b=run_totals(b),
        only_in_a=only_a,
        only_in_b=only_b,
        only_in_a_nudges=nudges_a,
        only_in_b_nudges=nudges_b,
        only_in_a_users=users_a,
        only_in_b_users=users_b,
    )


def compare_in_warehouse(
    client: "Client", a: str, b: str, limit: int = 100_000
) -> BacktestComparison:
    """``compare_runs`` on a warehouse client (blocking: async callers use a thread)."""

    def query(sql: str, parameters: dict[str, Any]) -> Sequence[Sequence[Any]]:
        return client.query(sql, parameters=parameters).result_rows

    return compare_runs(query, a, b, limit)
