"""Launch one campaign: fix its members, hold some out, publish the targets' messages.

Members are the segment's profiles at launch (the rule is evaluated with the
launch time as "now"); consent is read from the same profiles, then checked
again by the dispatcher at send time. The order is crash-safe: members are
written, then messages published and acknowledged, then the campaign marked
launched. A crash in between re-launches it on the next poll with the same
member ids and message ids, so the warehouse collapses the rows and the
dispatcher drops the messages it has already handled.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from clickhouse_connect.driver.client import Client

from schemas.campaigns import (
    CAMPAIGN_COLUMNS,
    MEMBER_COLUMNS,
    in_quiet_hours,
    member_group,
    member_message_id,
)
from schemas.messages import CampaignMessage
from schemas.segments import compile_rule, load_rule

log = logging.getLogger(__name__)

_DUE = f"""
SELECT {", ".join(CAMPAIGN_COLUMNS)} FROM campaigns FINAL
WHERE status = 'scheduled' AND send_at <= fromUnixTimestamp64Milli({{now_ms:Int64}}, 'UTC')
ORDER BY send_at, campaign_id
"""


@dataclass(frozen=True, slots=True)
class Launch:
    campaign_id: str
    audience: int
    targeted: int
    holdout: int
    no_consent: int


def due_campaigns(client: Client, now: datetime) -> list[dict[str, Any]]:
    """Scheduled campaigns whose send time has come and whose quiet hours are not on."""
    now_ms = int(now.timestamp() * 1000)
    rows = client.query(_DUE, parameters={"now_ms": now_ms}).result_rows
    campaigns = [dict(zip(CAMPAIGN_COLUMNS, row, strict=True)) for row in rows]
    return [
        c
        for c in campaigns
        if not in_quiet_hours(now, c["quiet_start"], c["quiet_end"], c["timezone"])
    ]


def _members(client: Client, campaign: dict[str, Any], now: datetime) -> list[tuple]:
    compiled = compile_rule(load_rule(campaign["rules"]), int(now.timestamp() * 1000))
    result = client.query(
        f"SELECT user_key, anonymous_ids, channels FROM profiles WHERE {compiled.sql}",
        parameters=compiled.params,
    )
    return result.result_rows


async def launch(
    client: Client, producer: AIOKafkaProducer, topic: str, campaign: dict[str, Any], now: datetime
) -> Launch:
    campaign_id = campaign["campaign_id"]
    policy = list(campaign["channels"])
    share = float(campaign["holdout_share"])
    members, messages = [], []
    counts = {"target": 0, "holdout": 0, "no_consent": 0}
    for user_key, anonymous_ids, consented in _members(client, campaign, now):
        group, usable = member_group(campaign_id, user_key, list(consented), policy, share)
        counts[group] += 1
        message_id = member_message_id(campaign_id, user_key)
        members.append([campaign_id, user_key, message_id, group, usable, now])
        if group == "target":
            message = CampaignMessage(
                message_id=message_id,
                campaign_id=campaign_id,
                user_key=user_key,
                anonymous_ids=tuple(anonymous_ids),
                product=campaign["product"] or None,
                discount_percent=float(campaign["discount_percent"]),
                channels=tuple(usable),
                launched_at=now,
            )
            messages.append((user_key.encode(), message.to_json()))
    if members:
        client.insert("campaign_members", members, column_names=MEMBER_COLUMNS)
    pending = [await producer.send(topic, value, key=key) for key, value in messages]
    for future in pending:
        await future  # acknowledged by the broker before the campaign counts as launched
    launched = {**campaign, "status": "launched", "launched_at": now, "updated_at": now}
    client.insert(
        "campaigns", [[launched[c] for c in CAMPAIGN_COLUMNS]], column_names=CAMPAIGN_COLUMNS
    )
    report = Launch(
        campaign_id, len(members), counts["target"], counts["holdout"], counts["no_consent"]
    )
    log.info(
        "campaign %s launched: %d members, %d messages, %d held out, %d without consent",
        campaign_id,
        report.audience,
        report.targeted,
        report.holdout,
        report.no_consent,
    )
    return report


def utc_now() -> datetime:
    return datetime.now(UTC)
