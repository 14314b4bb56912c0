"""Campaigns in the warehouse: definitions, and what happened to their messages.

Every figure is counted from what the pipeline recorded: members (fixed at
launch), receipts (the dispatcher's and the providers'), attributed orders
(api/queries/attribution.py) and members' orders for the uplift against the
holdout. Distinct ids throughout, so unmerged duplicate rows change nothing;
read while a campaign runs, the figures are live.
"""

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

from api.queries.attribution import ATTRIBUTED_ORDERS_SQL
from api.queries.uplift import newcombe
from schemas.campaigns import CAMPAIGN_COLUMNS, STATUS_CHANGE_SQL
from schemas.time import iso_ms

# Times as epoch ms: a row holding a time Python's datetime cannot (a send_at in year 1,
# stored before the API refused it) is still listed, never a 500 for every campaign.
_TIMES = ("send_at", "created_at", "launched_at", "updated_at")
_SELECTED = ", ".join(
    f"toUnixTimestamp64Milli({c}) AS {c}_ms" if c in _TIMES else c for c in CAMPAIGN_COLUMNS
)
_DEFINITIONS = f"""
SELECT {_SELECTED}, status_reason
FROM campaigns FINAL
WHERE {{where}}
ORDER BY created_at DESC, campaign_id
{{limit}}
"""
_STATUS = """
SELECT status, launched_at IS NOT NULL FROM campaigns FINAL
WHERE campaign_id = {campaign_id:String}
"""
# waiting: targets whose message waits for their quiet hours to end (local time).
_MEMBERS = """
SELECT campaign_id, count(), countIf(member_group = 'target'), countIf(member_group = 'holdout'),
       countIf(member_group = 'no_consent'),
       countIf(member_group = 'target' AND send_after > fromUnixTimestamp64Milli({now_ms:Int64}))
FROM (
    SELECT campaign_id, user_key, argMax(member_group, added_at) AS member_group,
           argMax(send_after, added_at) AS send_after
    FROM campaign_members WHERE campaign_id IN {ids:Array(String)}
    GROUP BY campaign_id, user_key
)
GROUP BY campaign_id
"""
_TARGETS = """
SELECT DISTINCT campaign_id, message_id FROM campaign_members
WHERE campaign_id IN {ids:Array(String)} AND member_group = 'target'
"""
# Per message: each status seen at least once; failed = failed on every channel tried.
_RECEIPTS = f"""
SELECT m.campaign_id, countIf(r.sent), countIf(r.delivered), countIf(r.read), countIf(r.clicked),
       countIf(r.failed AND NOT r.delivered), countIf(r.suppressed), countIf(r.cancelled)
FROM ({_TARGETS}) AS m
INNER JOIN (
    SELECT message_id,
           max(status = 'sent') AS sent, max(status = 'delivered') AS delivered,
           max(status = 'read') AS read, max(status = 'clicked') AS clicked,
           max(status = 'failed') AS failed, max(status = 'suppressed') AS suppressed,
           max(status = 'cancelled') AS cancelled
    FROM receipts
    WHERE message_id IN (SELECT message_id FROM ({_TARGETS}))
    GROUP BY message_id
) AS r ON m.message_id = r.message_id
GROUP BY m.campaign_id
"""
_CONVERSIONS = f"""
SELECT m.campaign_id, uniqExact(a.message_id), uniqExact(a.order_id), sum(a.revenue)
FROM ({ATTRIBUTED_ORDERS_SQL}) AS a
INNER JOIN ({_TARGETS}) AS m ON a.message_id = m.message_id
GROUP BY m.campaign_id
"""
# Members of the compared groups converting (any order) within the window after launch.
_UPLIFT = """
SELECT m.campaign_id, m.grp, count(),
       countIf(arrayExists(t -> t >= l.launched_ms AND t <= l.launched_ms + {window_ms:Int64},
                           o.times))
FROM (
    SELECT campaign_id, user_key, any(member_group) AS grp
    FROM campaign_members
    WHERE campaign_id IN {ids:Array(String)} AND member_group IN ('target', 'holdout')
    GROUP BY campaign_id, user_key
) AS m
INNER JOIN (
    SELECT campaign_id, toUnixTimestamp64Milli(assumeNotNull(launched_at)) AS launched_ms
    FROM campaigns FINAL
    WHERE campaign_id IN {ids:Array(String)} AND launched_at IS NOT NULL
) AS l ON m.campaign_id = l.campaign_id
LEFT JOIN (
    SELECT if(user_id != '', user_id, user_key) AS buyer,
           groupArray(toUnixTimestamp64Milli(timestamp)) AS times
    FROM events
    WHERE name = 'order_placed'
      AND (user_key IN (SELECT user_key FROM campaign_members WHERE campaign_id IN {ids:Array(String)})
           OR user_id IN (SELECT user_key FROM campaign_members WHERE campaign_id IN {ids:Array(String)}))
    GROUP BY buyer
) AS o ON m.user_key = o.buyer
GROUP BY m.campaign_id, m.grp
"""  # noqa: E501

# A best-hour campaign's arms (pipeline/campaigns/best_hour.py): per arm, its targets and
# those whose message was read or clicked (an SMS has no read receipt, only its clicks).
_ARMS = f"""
SELECT m.campaign_id, m.arm, count(), countIf(r.engaged)
FROM (
    SELECT campaign_id, message_id, argMax(send_arm, added_at) AS arm
    FROM campaign_members
    WHERE campaign_id IN {{ids:Array(String)}} AND member_group = 'target'
    GROUP BY campaign_id, message_id
) AS m
LEFT JOIN (
    SELECT message_id, max(status IN ('read', 'clicked')) AS engaged
    FROM receipts
    WHERE message_id IN (SELECT message_id FROM ({_TARGETS}))
    GROUP BY message_id
) AS r ON m.message_id = r.message_id
WHERE m.arm IN ('best_hour', 'random_hour')
GROUP BY m.campaign_id, m.arm
SETTINGS join_use_nulls = 0
"""

COUNTS = ("audience", "targeted", "holdout", "no_consent", "waiting")
RECEIPT_COUNTS = ("sent", "delivered", "read", "clicked", "failed", "suppressed", "cancelled")


@dataclass(frozen=True, slots=True)
class CampaignFilter:
    campaign_id: str | None = None
    created_from_ms: int | None = None
    created_to_ms: int | None = None
    limit: int | None = 100  # None: every campaign that matches


def _iso(epoch_ms: int | None) -> str | None:
    if epoch_ms is None:
        return None
    try:
        return iso_ms(epoch_ms)
    except OverflowError:
        return None


def insert_campaign(client: Client, row: dict[str, Any]) -> None:
    client.insert("campaigns", [[row[c] for c in CAMPAIGN_COLUMNS]], column_names=CAMPAIGN_COLUMNS)


def definitions(client: Client, where: CampaignFilter) -> list[dict[str, Any]]:
    conditions, params = ["1"], {} if where.limit is None else {"limit": where.limit}
    limit = "" if where.limit is None else "LIMIT {limit:UInt32}"
    if where.campaign_id is not None:
        conditions.append("campaign_id = {campaign_id:String}")
        params["campaign_id"] = where.campaign_id
    if where.created_from_ms is not None:
        conditions.append("created_at >= fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC')")
        params["from_ms"] = where.created_from_ms
    if where.created_to_ms is not None:
        conditions.append("created_at < fromUnixTimestamp64Milli({to_ms:Int64}, 'UTC')")
        params["to_ms"] = where.created_to_ms
    sql = _DEFINITIONS.format(where=" AND ".join(conditions), limit=limit)
    result = client.query(sql, parameters=params)
    columns = [*CAMPAIGN_COLUMNS, "status_reason"]
    return [dict(zip(columns, row, strict=True)) for row in result.result_rows]


def campaign_status(client: Client, campaign_id: str) -> tuple[str, bool] | None:
    """(status, whether it ever launched); None when there is no such campaign."""
    rows = client.query(_STATUS, parameters={"campaign_id": campaign_id}).result_rows
    return (rows[0][0], bool(rows[0][1])) if rows else None


def change_status(
    client: Client, campaign_id: str, status: str, reason: str, from_statuses: tuple[str, ...]
) -> None:
    client.command(
        STATUS_CHANGE_SQL,
        parameters={
            "campaign_id": campaign_id,
            "status": status,
            "reason": reason,
            "from_statuses": list(from_statuses),
        },
    )


def delete_campaign(client: Client, campaign_id: str) -> None:
    """The campaign's definition and any members a failed launch left behind."""
    for table in ("campaigns", "campaign_members", "campaign_releases"):
        client.command(
            f"DELETE FROM {table} WHERE campaign_id = {{campaign_id:String}}",
            parameters={"campaign_id": campaign_id},
        )


def _rate(converted: int, users: int) -> float:
    return converted / users if users else 0.0


def outcomes(
    client: Client, campaigns: list[dict[str, Any]], window_s: int, now_ms: int
) -> list[dict[str, Any]]:
    """One flat row per campaign: its definition and every count, live."""
    ids = [c["campaign_id"] for c in campaigns]
    stats: dict[str, dict[str, Any]] = defaultdict(dict)
    if ids:
        params: dict[str, Any] = {"ids": ids}
        member_params = {**params, "now_ms": now_ms}
        for cid, *counts in client.query(_MEMBERS, parameters=member_params).result_rows:
            stats[cid].update(zip(COUNTS, map(int, counts), strict=True))
        for cid, *counts in client.query(_RECEIPTS, parameters=params).result_rows:
            stats[cid].update(zip(RECEIPT_COUNTS, map(int, counts), strict=True))
        for cid, arm, users, engaged in client.query(_ARMS, parameters=params).result_rows:
            stats[cid].update({f"{arm}_targets": int(users), f"{arm}_read": int(engaged)})
        launched = [c["launched_at"] for c in campaigns if c["launched_at"] is not None]
        if launched:
            start_ms = min(launched)
            conversion_params = {
                **params,
                "start_ms": start_ms,
                "end_ms": now_ms + 1,
                "window_s": window_s,
            }
            result = client.query(_CONVERSIONS, parameters=conversion_params)
            for cid, converted, orders, revenue in result.result_rows:
                stats[cid].update(converted=int(converted), orders=int(orders))
                stats[cid]["revenue"] = float(revenue)
            uplift_params = {**params, "window_ms": window_s * 1000}
            for cid, group, users, converted in client.query(
                _UPLIFT, parameters=uplift_params
            ).result_rows:
                stats[cid][f"{group}_users"] = int(users)
                stats[cid][f"{group}_converted"] = int(converted)
    return [_row(c, stats.get(c["campaign_id"], {})) for c in campaigns]


def _row(campaign: dict[str, Any], found: dict[str, Any]) -> dict[str, Any]:
    counts = {name: found.get(name, 0) for name in (*COUNTS, *RECEIPT_COUNTS)}
    treated_users, treated = found.get("target_users", 0), found.get("target_converted", 0)
    holdout_users, held = found.get("holdout_users", 0), found.get("holdout_converted", 0)
    low, high = newcombe(treated, treated_users, held, holdout_users)
    best_users, best = found.get("best_hour_targets", 0), found.get("best_hour_read", 0)
    random_users, random = found.get("random_hour_targets", 0), found.get("random_hour_read", 0)
    arm_low, arm_high = newcombe(best, best_users, random, random_users)
    return {
        "campaign_id": campaign["campaign_id"],
        "name": campaign["name"],
        "segment_id": campaign["segment_id"],
        "status": campaign["status"],
        "status_reason": campaign["status_reason"],
        "template": campaign["template"],
        "channels": ",".join(campaign["channels"]),
        "discount_percent": float(campaign["discount_percent"]),
        "holdout_share": float(campaign["holdout_share"]),
        "created_at": _iso(campaign["created_at"]),
        "send_at": _iso(campaign["send_at"]),
        "launched_at": _iso(campaign["launched_at"]),
        **counts,
        "converted": found.get("converted", 0),
        "orders": found.get("orders", 0),
        "revenue": found.get("revenue", 0.0),
        "treated_users": treated_users,
        "treated_converted": treated,
        "treated_rate": _rate(treated, treated_users),
        "holdout_converted": held,
        "holdout_rate": _rate(held, holdout_users),
        "uplift": _rate(treated, treated_users) - _rate(held, holdout_users),
        "uplift_ci_low": low,
        "uplift_ci_high": high,
        "send_time": campaign["send_time"],
        "best_hour_targets": best_users,
        "best_hour_read": best,
        "best_hour_read_rate": _rate(best, best_users),
        "random_hour_targets": random_users,
        "random_hour_read": random,
        "random_hour_read_rate": _rate(random, random_users),
        "send_time_uplift": _rate(best, best_users) - _rate(random, random_users),
        "send_time_uplift_ci_low": arm_low,
        "send_time_uplift_ci_high": arm_high,
    }
