"""Segments in the warehouse: stored rules, and who a rule selects from ``profiles``.

The condition comes from ``schemas.segments.compile_rule`` (whitelisted
identifiers, bound values); nothing here puts input into SQL text.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from schemas import pii
from schemas.segments import Group, compile_rule, load_rule
from schemas.time import as_utc, epoch_ms, iso_ms

SEGMENT_COLUMNS = ["segment_id", "name", "description", "rules", "created_at", "created_by"]
_PHONE_LIKE = re.compile(r"^\+?[0-9][0-9 ()-]{6,}$")

# The sample's columns: profile fields, and the newest masked phone (never a clear one).
_SAMPLE = """
SELECT p.user_key, p.total_spend, p.orders, p.visits, p.first_seen, p.last_seen, p.last_order,
       p.top_categories, p.intent_score, p.tier, p.channels, p.country, p.device,
       ph.masked, count() OVER () AS size
FROM (SELECT * FROM profiles WHERE {condition}) AS p
LEFT JOIN (
    SELECT user_key, argMax(masked, decided_at) AS masked FROM pii_phones GROUP BY user_key
) AS ph ON p.user_key = ph.user_key
ORDER BY p.user_key
LIMIT {{sample:UInt32}}
"""


@dataclass(frozen=True, slots=True)
class StoredSegment:
    segment_id: str
    name: str
    description: str
    rules: Group
    created_at: datetime
    created_by: str


def save_segment(client: Client, segment: StoredSegment) -> None:
    row = [
        segment.segment_id,
        segment.name,
        segment.description,
        segment.rules.model_dump_json(),
        segment.created_at,
        segment.created_by,
    ]
    client.insert("segments", [row], column_names=SEGMENT_COLUMNS)


def load_segment(client: Client, segment_id: str) -> StoredSegment | None:
    rows = client.query(
        "SELECT segment_id, name, description, rules, created_at, created_by"
        " FROM segments FINAL WHERE segment_id = {id:String}",
        parameters={"id": segment_id},
    ).result_rows
    if not rows:
        return None
    sid, name, description, rules, created_at, created_by = rows[0]
    return StoredSegment(sid, name, description, load_rule(rules), created_at, created_by)


def list_segments(client: Client, limit: int | None) -> list[StoredSegment]:
    """The newest ``limit`` segments (all of them with None)."""
    rows = client.query(
        "SELECT segment_id, name, description, rules, created_at, created_by"
        " FROM segments FINAL ORDER BY created_at DESC, segment_id"
        + ("" if limit is None else " LIMIT {limit:UInt32}"),
        parameters={"limit": limit} if limit is not None else {},
    ).result_rows
    return [StoredSegment(s, n, d, load_rule(r), c, b) for s, n, d, r, c, b in rows]


def mask_identifier(value: str) -> str:
    """A user key as shown in previews: an e-mail or a phone used as an id is masked."""
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}{pii.MASK_CHAR * 3}@{domain}"
    if _PHONE_LIKE.match(value):
        digits = re.sub(r"\D", "", value)
        return f"{pii.MASK_CHAR * max(0, len(digits) - 4)}{digits[-4:]}"
    return value


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return iso_ms(epoch_ms(as_utc(value)))


def preview(
    client: Client, rule: Group, now_ms: int, sample: int
) -> tuple[int, list[dict[str, Any]]]:
    """(members of the rule at ``now_ms``, up to ``sample`` of them with PII masked)."""
    compiled = compile_rule(rule, now_ms)
    result = client.query(
        _SAMPLE.format(condition=compiled.sql),
        parameters={**compiled.params, "sample": sample},
    )
    rows = result.result_rows
    if not rows:
        return 0, []
    profiles = []
    for row in rows:
        key, spend, orders, visits, first, last, last_order, cats, score, tier, *rest = row
        channels, country, device, phone, _ = rest
        profiles.append(
            {
                "user": mask_identifier(key),
                "total_spend": float(spend),
                "orders": int(orders),
                "visits": int(visits),
                "first_seen": _time(first),
                "last_seen": _time(last),
                "last_order": _time(last_order),
                "top_categories": list(cats),
                "intent_score": float(score),
                "tier": tier,
                "channels": list(channels),
                "country": country,
                "device": device,
                "phone": phone or None,
            }
        )
    return int(rows[0][-1]), profiles


def member_keys(client: Client, rule: Group, now_ms: int) -> set[str]:
    """Every member's user key (tests compare it with an independent filter)."""
    compiled = compile_rule(rule, now_ms)
    result = client.query(
        f"SELECT user_key FROM profiles WHERE {compiled.sql}", parameters=compiled.params
    )
    return {key for (key,) in result.result_rows}
