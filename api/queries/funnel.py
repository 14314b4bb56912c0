"""Ordered funnels, read from the per-user pre-aggregation ``funnel_steps``.

The definition is ClickHouse's ``windowFunnel`` over ``events`` (kept here as
``raw_funnel_sql``, the reference the tests compare with): per user, the deepest
step reached by a chain that starts at a step-1 event and ends at most ``window``
later, each step at or after the previous one (at equal times the earlier step
comes first). A duplicated event (same time, same name) cannot change that
maximum, so no dedup pass is needed.

``funnel_steps`` (schemas/migrations/0290_funnel_steps.sql) holds, per (name,
user, month), the exact event times and the breakdown columns beside them,
filled by a materialized view on ``events``. The query reads the step names'
rows, gathers each user's times as sorted codes ``time * 16 + step`` and walks
the steps with array functions instead of ``windowFunnel`` (which costs more
than everything else over millions of events):

- ``l1``: at each position, the code of the latest step-1 event so far;
- ``lk``: at each position, the start (step-1 code) of the latest chain that
  reached step k so far. A step-k event extends the chain of ``l(k-1)`` at its
  position when it lies within the window of that chain's start; starts only
  grow along the array, so the latest chain is the one with the most room left.

The user's level is the number of ``lk`` that hold a chain at the end. That is
``windowFunnel``'s own greedy pass, so the answers are the same (tested against
the raw query). Step conditions compare the name with bound parameters; only
the number of steps (at most 15, the code's 4 bits) comes from the request.
"""

from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from api.queries.common import TimeRange, in_range

# Breakdown fields a caller may name → the events column (never the caller's text).
BREAKDOWN_COLUMNS: dict[str, str] = {
    "product_id": "product_id",
    "category": "category",
    "device": "device",
    "country": "country",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
    "currency": "currency",
}


@dataclass(frozen=True, slots=True)
class FunnelRow:
    step: int
    name: str
    breakdown: str
    users: int
    conversion_from_previous: float
    conversion_from_first: float


def raw_funnel_sql(step_count: int, breakdown: str | None) -> str:
    """The definition: ``windowFunnel`` over every event of the steps (the reference)."""
    conditions = ", ".join(f"name = {{step_{i}:String}}" for i in range(step_count))
    if breakdown is None:
        breakdown_expr = "''"
    else:
        column = BREAKDOWN_COLUMNS[breakdown]  # KeyError for anything not whitelisted
        # The value on the user's earliest step-1 event in the range.
        breakdown_expr = f"toString(argMinIf({column}, timestamp, name = {{step_0:String}}))"
    return f"""
SELECT breakdown, level, count() AS users
FROM (
    SELECT
        -- Grouping by a 64-bit hash of the key halves the query time (measured over
        -- 10 M events); collisions among even millions of users are negligible here.
        cityHash64(user_key) AS user,
        windowFunnel({{window_ms:UInt64}})(
            toUInt64(toUnixTimestamp64Milli(timestamp)), {conditions}
        ) AS level,
        {breakdown_expr} AS breakdown
    FROM events
    WHERE name IN {{steps:Array(String)}} AND {in_range("timestamp")}
    GROUP BY user
)
WHERE level > 0
GROUP BY breakdown, level
"""


# No chain yet (below any code: codes of real times are far from the Int64 bounds).
_NONE = "toInt64(-9223372036854775808)"
# Codes are time * 16 + step index (1-based): 4 bits for the step.
MAX_STEPS = 15
_TIMES_IN_RANGE = "{start_ms:Int64} <= t AND t < {end_ms:Int64}"


def funnel_sql(step_count: int, breakdown: str | None) -> str:
    if not 1 <= step_count <= MAX_STEPS:
        raise ValueError(f"1 to {MAX_STEPS} steps")
    walk = [
        "arraySort(codes) AS c",
        "arrayMap(x -> bitAnd(x, 15), c) AS s",
        f"arrayFill((v, i) -> i = 1, arrayMap((x, i) -> if(i = 1, x, {_NONE}), c, s), s) AS l1",
    ]
    for k in range(2, step_count + 1):
        # A step-k code x = t * 16 + k extends a chain started at l = t1 * 16 + 1 when
        # t <= t1 + window, i.e. x <= l + window * 16 + (k - 1).
        walk.append(
            f"arrayFill(v -> v != {_NONE}, arrayMap((x, i, l) -> if(i = {k} AND l != {_NONE}"
            f" AND x <= l + {{window_ms:Int64}} * 16 + {k - 1}, l, {_NONE}), c, s, l{k - 1}))"
            f" AS l{k}"
        )
    level = " + ".join(f"(l{k}[-1] != {_NONE})" for k in range(1, step_count + 1))
    if breakdown is None:
        breakdown_column, breakdown_expr = "", "''"
    else:
        column = BREAKDOWN_COLUMNS[breakdown]  # KeyError for anything not whitelisted
        breakdown_column = f", arrayFilter((v, t) -> {_TIMES_IN_RANGE}, {column}, times) AS b"
        # The value on the user's earliest step-1 event in the range.
        breakdown_expr = "toString(argMinArrayIf(b, ts, name = {step_0:String}))"
    return f"""
SELECT breakdown, level, count() AS users
FROM (
    SELECT {", ".join(walk)}, {level} AS level, breakdown
    FROM (
        SELECT
            cityHash64(user_key) AS user,  -- as the raw query groups
            groupArrayArray(arrayMap(x -> x * 16 + step, ts)) AS codes,
            {breakdown_expr} AS breakdown
        FROM (
            SELECT
                user_key,
                name,
                indexOf({{steps:Array(String)}}, name) AS step,
                arrayFilter(t -> {_TIMES_IN_RANGE}, times) AS ts{breakdown_column}
            FROM funnel_steps
            WHERE name IN {{steps:Array(String)}}
                AND month BETWEEN toYYYYMM(fromUnixTimestamp64Milli({{start_ms:Int64}}, 'UTC'))
                AND toYYYYMM(fromUnixTimestamp64Milli({{end_ms:Int64}}, 'UTC'))
        )
        WHERE notEmpty(ts)
        GROUP BY user
    )
)
WHERE level > 0
GROUP BY breakdown, level
"""


def funnel(
    client: Client,
    steps: list[str],
    window_s: int,
    time_range: TimeRange,
    breakdown: str | None = None,
    *,
    raw: bool = False,
) -> list[FunnelRow]:
    """Users per step; ``raw`` reads ``events`` with ``windowFunnel`` (the reference)."""
    params: dict[str, object] = {
        **time_range.params(),
        "window_ms": window_s * 1000,
        "steps": steps,
        **{f"step_{i}": name for i, name in enumerate(steps)},
    }
    sql = (raw_funnel_sql if raw else funnel_sql)(len(steps), breakdown)
    result = client.query(sql, parameters=params)
    # users who reached exactly level L, per breakdown value
    exact: dict[str, dict[int, int]] = {}
    for value, level, users in result.result_rows:
        exact.setdefault(value, {})[int(level)] = int(users)
    if not exact:
        exact[""] = {}
    rows: list[FunnelRow] = []
    for value in sorted(exact):
        levels = exact[value]
        reached = [
            sum(n for lvl, n in levels.items() if lvl >= k) for k in range(1, len(steps) + 1)
        ]
        for index, name in enumerate(steps):
            users = reached[index]
            previous = reached[index - 1] if index else users
            rows.append(
                FunnelRow(
                    step=index + 1,
                    name=name,
                    breakdown=value,
                    users=users,
                    conversion_from_previous=_share(users, previous) if index else 1.0,
                    conversion_from_first=_share(users, reached[0]) if index else 1.0,
                )
            )
    return rows


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
