"""Launch one campaign: fix its members, hold some out, publish the targets' messages.

Members are the segment's profiles at launch (the rule is evaluated with the
launch time as "now"); consent is read from the same profiles, then checked
again by the dispatcher at send time. The order is crash-safe: members are
written, then messages published and acknowledged, then the campaign marked
launched. A crash in between re-launches it on the next poll with the same
member ids and message ids, so the warehouse collapses the rows and the
dispatcher drops the messages it has already handled.

Quiet hours are kept in each member's local time (the zone their events carry,
else the campaign's), as the engine keeps them for nudges: a member the launch
finds in quiet hours is deferred to their end and published by ``release_due``
on a later poll, which records each release after the broker acknowledged it.

A best-hour campaign (``send_time``) aims each target at the next occurrence of their
best local hour, learned from their reads and clicks (pipeline/campaigns/best_hour.py),
or, for the random-hour control, at a random hour; quiet hours are kept from there, and
the deferred message takes the same release path.
"""

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from aiokafka import AIOKafkaProducer
from clickhouse_connect.driver.client import Client

from pipeline.campaigns.best_hour import (
    LOOKBACK,
    WINDOW,
    arm_and_hour,
    hour_counts,
    next_at_hour,
    pooled,
)
from pipeline.domain.clock import quiet_until, to_datetime, to_ms, zone
from pipeline.warehouse.reading_hours import hour_histories
from schemas.campaigns import (
    CAMPAIGN_COLUMNS,
    MEMBER_COLUMNS,
    STATUS_CHANGE_SQL,
    member_group,
    member_message_id,
)
from schemas.messages import CampaignMessage
from schemas.process_metrics import timed_send
from schemas.segments import compile_rule, load_rule
from schemas.time import as_utc

log = logging.getLogger(__name__)

# Ids first, then each campaign on its own: one row that cannot be read (a time Python
# cannot hold) fails that campaign only, never the poll.
_DUE = """
SELECT campaign_id FROM campaigns FINAL
WHERE status = 'scheduled' AND send_at <= fromUnixTimestamp64Milli({now_ms:Int64}, 'UTC')
ORDER BY send_at, campaign_id
"""
_CAMPAIGN = f"""
SELECT {", ".join(CAMPAIGN_COLUMNS)} FROM campaigns FINAL
WHERE campaign_id = {{campaign_id:String}} AND status = 'scheduled'
"""


# Deferred targets whose time has come and whose message is not yet published.
_RELEASABLE = """
SELECT m.campaign_id, m.user_key, m.message_id, m.channels, m.anonymous_ids,
       c.product, c.discount_percent, c.launched_at
FROM (
    SELECT campaign_id, user_key, message_id, channels, anonymous_ids
    FROM campaign_members FINAL
    WHERE member_group = 'target' AND send_after > added_at
      AND send_after <= fromUnixTimestamp64Milli({now_ms:Int64}, 'UTC')
) AS m
INNER JOIN (
    SELECT campaign_id, product, discount_percent, assumeNotNull(launched_at) AS launched_at
    FROM campaigns FINAL
    WHERE status = 'launched'
) AS c ON m.campaign_id = c.campaign_id
WHERE (m.campaign_id, m.message_id) NOT IN (SELECT campaign_id, message_id FROM campaign_releases)
ORDER BY m.campaign_id, m.message_id
LIMIT {limit:UInt32}
"""


@dataclass(frozen=True, slots=True)
class Launch:
    campaign_id: str
    audience: int
    targeted: int
    holdout: int
    no_consent: int
    deferred: int = 0


def due_campaigns(client: Client, now: datetime) -> list[str]:
    """Ids of the scheduled campaigns whose send time has come, oldest first."""
    rows = client.query(_DUE, parameters={"now_ms": to_ms(now)}).result_rows
    return [campaign_id for (campaign_id,) in rows]


def load_campaign(client: Client, campaign_id: str) -> dict[str, Any] | None:
    """The campaign's row if it is still scheduled; raises if a value cannot be read."""
    rows = client.query(_CAMPAIGN, parameters={"campaign_id": campaign_id}).result_rows
    return dict(zip(CAMPAIGN_COLUMNS, rows[0], strict=True)) if rows else None


def mark_failed(client: Client, campaign_id: str, reason: str) -> None:
    """The campaign will not launch: its status and why, for GET /v1/campaigns."""
    client.command(
        STATUS_CHANGE_SQL,
        parameters={
            "campaign_id": campaign_id,
            "status": "failed",
            "reason": reason,
            "from_statuses": ["scheduled"],
        },
    )


def send_after(now: datetime, campaign: dict[str, Any], member_timezone: str) -> datetime:
    """When a member's message may go out: ``now``, or the end of the campaign's quiet
    hours in the member's zone (the campaign's zone when theirs is unknown)."""
    start, end = campaign["quiet_start"], campaign["quiet_end"]
    if start == end:  # no quiet hours
        return now
    tz = zone(member_timezone, campaign["timezone"])
    until = quiet_until(to_ms(now), tz, time(start), time(end))
    return now if until is None else to_datetime(until)


def aimed_send_after(
    now: datetime, campaign: dict[str, Any], member_timezone: str, hour: int | None
) -> datetime:
    """When a member's message may go out, aimed at ``hour`` o'clock in their zone (None:
    as created): its next occurrence, then quiet hours from there; as created when that
    falls outside the window a campaign message lives in."""
    if hour is None:
        return send_after(now, campaign, member_timezone)
    tz = zone(member_timezone, campaign["timezone"])
    after = send_after(next_at_hour(now, hour, tz), campaign, member_timezone)
    return after if after - now <= WINDOW else send_after(now, campaign, member_timezone)


def _histories(
    client: Client, campaign: dict[str, Any], found: list[tuple], now: datetime
) -> dict[str, list[int]]:
    """Each member's reads and clicks per local hour (their zone, else the campaign's)."""
    compiled = compile_rule(load_rule(campaign["rules"]), to_ms(now))
    zones = {user_key: timezone for user_key, _, _, timezone in found}
    return hour_histories(
        client,
        to_ms(now - LOOKBACK),
        to_ms(now),
        lambda user_key: zone(zones.get(user_key), campaign["timezone"]),
        # The rule's values are bound parameters.
        f"AND user_key IN (SELECT user_key FROM profiles WHERE {compiled.sql})",
        compiled.params,
    )


def _members(client: Client, campaign: dict[str, Any], now: datetime) -> list[tuple]:
    compiled = compile_rule(load_rule(campaign["rules"]), to_ms(now))
    result = client.query(
        f"SELECT user_key, anonymous_ids, channels, timezone FROM profiles WHERE {compiled.sql}",
        parameters=compiled.params,
    )
    return result.result_rows


def _message(
    campaign_id: str,
    user_key: str,
    anonymous_ids: list[str],
    channels: list[str],
    product: str,
    discount_percent: float,
    launched_at: datetime,
) -> tuple[bytes, bytes]:
    message = CampaignMessage(
        message_id=member_message_id(campaign_id, user_key),
        campaign_id=campaign_id,
        user_key=user_key,
        anonymous_ids=tuple(anonymous_ids),
        product=product or None,
        discount_percent=float(discount_percent),
        channels=tuple(channels),
        launched_at=launched_at,
    )
    return user_key.encode(), message.to_json()


async def _publish(producer: AIOKafkaProducer, topic: str, messages: list[tuple]) -> None:
    with timed_send("campaigns", {topic: len(messages)}):
        pending = [await producer.send(topic, value, key=key) for key, value in messages]
        for future in pending:
            await future  # acknowledged by the broker


async def launch(
    client: Client, producer: AIOKafkaProducer, topic: str, campaign: dict[str, Any], now: datetime
) -> Launch:
    campaign_id = campaign["campaign_id"]
    policy = list(campaign["channels"])
    share = float(campaign["holdout_share"])
    members, messages = [], []
    counts = {"target": 0, "holdout": 0, "no_consent": 0, "deferred": 0}
    found = await asyncio.to_thread(_members, client, campaign, now)
    best = campaign["send_time"] == "best_hour"
    histories = await asyncio.to_thread(_histories, client, campaign, found, now) if best else {}
    # The population prior: the audience's reads and clicks pooled, each in local time.
    population = pooled(histories.values())
    no_history = hour_counts(())
    for user_key, anonymous_ids, consented, timezone in found:
        group, usable = member_group(campaign_id, user_key, list(consented), policy, share)
        counts[group] += 1
        message_id = member_message_id(campaign_id, user_key)
        arm, hour = "", None
        if best and group == "target":
            own = histories.get(user_key, no_history)
            arm, hour = arm_and_hour(campaign_id, user_key, own, population)
        after = aimed_send_after(now, campaign, timezone, hour) if group == "target" else now
        members.append(
            [
                campaign_id,
                user_key,
                message_id,
                group,
                usable,
                now,
                after,
                list(anonymous_ids),
                arm,
                -1 if hour is None else hour,
            ]
        )
        if group != "target":
            continue
        if after > now:
            counts["deferred"] += 1
            continue
        messages.append(
            _message(
                campaign_id,
                user_key,
                anonymous_ids,
                usable,
                campaign["product"],
                campaign["discount_percent"],
                now,
            )
        )
    if members:
        await asyncio.to_thread(
            client.insert, "campaign_members", members, column_names=MEMBER_COLUMNS
        )
    await _publish(producer, topic, messages)
    launched = {**campaign, "status": "launched", "launched_at": now, "updated_at": now}
    await asyncio.to_thread(
        client.insert,
        "campaigns",
        [[launched[c] for c in CAMPAIGN_COLUMNS]],
        column_names=CAMPAIGN_COLUMNS,
    )
    report = Launch(
        campaign_id,
        len(members),
        counts["target"],
        counts["holdout"],
        counts["no_consent"],
        counts["deferred"],
    )
    log.info(
        "campaign %s launched: %d members, %d messages (%d deferred to their best hour or"
        " the end of their quiet hours), %d held out, %d without consent",
        campaign_id,
        report.audience,
        report.targeted,
        report.deferred,
        report.holdout,
        report.no_consent,
    )
    return report


def _releasable(client: Client, now: datetime, limit: int) -> list[tuple]:
    """Deferred members whose quiet hours have ended and whose message is not released."""
    parameters = {"now_ms": to_ms(now), "limit": limit}
    return client.query(_RELEASABLE, parameters=parameters).result_rows


async def release_due(
    client: Client, producer: AIOKafkaProducer, topic: str, now: datetime, limit: int = 10_000
) -> int:
    """Publish deferred members' messages whose quiet hours have ended; how many."""
    rows = await asyncio.to_thread(_releasable, client, now, limit)
    if not rows:
        return 0
    messages = [
        _message(
            campaign_id,
            user_key,
            anonymous_ids,
            channels,
            product,
            discount,
            as_utc(launched),
        )
        for campaign_id, user_key, _, channels, anonymous_ids, product, discount, launched in rows
    ]
    await _publish(producer, topic, messages)
    await asyncio.to_thread(
        client.insert,
        "campaign_releases",
        [[row[0], row[2], now] for row in rows],
        column_names=["campaign_id", "message_id", "released_at"],
    )
    log.info("%d deferred campaign messages released after quiet hours", len(rows))
    return len(rows)


def utc_now() -> datetime:
    return datetime.now(UTC)
