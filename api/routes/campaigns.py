"""``/v1/campaigns``: tracked broadcasts to a segment, through the dispatcher.

``POST`` (admin key) stores a campaign as *scheduled*; the campaign launcher
(``intentflow campaigns``, pipeline/campaigns/) launches it at ``send_at``:
it fixes the members, holds out a share of the reachable ones, and publishes one
``CampaignMessage`` per target on ``nudges`` (a target in quiet hours in their
own time zone when it is launched gets theirs when those hours end),
where the dispatcher applies consent, caps, fallback and receipts as for any
nudge. ``GET`` (read or admin key) reports the outcome live, in the metrics
API's shape for Grafana. docs/segments.md.
"""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from fastapi import APIRouter, HTTPException, Query, status
from pydantic import AwareDatetime, BaseModel, Field, ValidationError, field_validator

from api.auth import AdminCaller, ReportCaller
from api.deps import ClickHouseDep, SettingsDep
from api.params import HEX_ID, CampaignIdPath, TagQuery, TimeRangeDep
from api.privacy.audit import actor_of, record_action
from api.queries.campaigns import (
    CampaignFilter,
    campaign_status,
    change_status,
    definitions,
    delete_campaign,
    insert_campaign,
    outcomes,
)
from api.queries.segments import load_segment
from api.routing import GuardedRoute
from schemas.campaigns import CAMPAIGN_CHANNELS, CANCELLABLE, DELETABLE, SendTime
from schemas.segments import Group, load_rule
from schemas.tags import campaign_tags
from schemas.time import now_ms

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"], route_class=GuardedRoute)

Hour = Annotated[int, Field(ge=0, le=23)]


class QuietHours(BaseModel):
    """Hours [start, end) of each member's local time in which no message of the campaign
    goes out (may wrap midnight); a member's message waits for their end."""

    start: Hour = 21
    end: Hour = 9


# How far a send time may be from now: a little in the past is "at once", a year ahead
# is the furthest a campaign is planned. Outside it a time is a mistake (year 1, 9999).
SEND_AT_PAST = timedelta(days=1)
SEND_AT_AHEAD = timedelta(days=365)


class Schedule(BaseModel):
    # None: as soon as the launcher sees it.
    send_at: AwareDatetime | None = None
    quiet_hours: QuietHours | None = None
    # The zone of members whose own zone is unknown (their events carried none).
    timezone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"
    # best_hour: each target's message waits (at most a day) for their best local hour,
    # learned from their reads and clicks; a random-hour control measures the effect.
    send_time: SendTime = "as_created"

    @field_validator("send_at")
    @classmethod
    def _sane_send_at(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return value
        now = datetime.now(UTC)
        if not now - SEND_AT_PAST <= value <= now + SEND_AT_AHEAD:
            raise ValueError(
                "must be at most 1 day before and 365 days after now (omit it to send at once)"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA time zone, e.g. Europe/Berlin") from None
        return value


class CampaignRequest(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    segment_id: Annotated[str, Field(pattern=HEX_ID)]
    template: Literal["campaign"] = "campaign"
    product: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    discount_percent: Annotated[float, Field(gt=0, le=100)] = 10.0
    # The channel policy: which channels may carry it, WhatsApp before SMS.
    channels: Annotated[list[Literal["whatsapp", "sms"]], Field(min_length=1, max_length=2)] = [
        "whatsapp",
        "sms",
    ]
    holdout_share: Annotated[float, Field(ge=0, le=0.9)] = 0.1
    schedule: Schedule = Schedule()

    @field_validator("channels")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("channels must be distinct")
        return [c for c in CAMPAIGN_CHANNELS if c in value]


class CampaignCreated(BaseModel):
    campaign_id: str
    status: Literal["scheduled"]
    send_at: datetime


class CampaignReport(BaseModel):
    """A campaign and its outcome so far (a Grafana row: flat, typed)."""

    campaign_id: str
    name: str
    segment_id: str
    # scheduled, launched, failed (status_reason: the launcher's error) or cancelled.
    status: str
    status_reason: str
    template: str
    channels: str
    discount_percent: float
    holdout_share: float
    created_at: str | None
    send_at: str | None
    launched_at: str | None
    # Members fixed at launch: targeted + holdout + no_consent = audience.
    audience: int
    targeted: int
    holdout: int
    no_consent: int
    # Targeted members whose message waits for the end of their quiet hours (local time)
    # or, in a best-hour campaign, for the hour it is aimed at.
    waiting: int
    # Distinct targeted messages with a receipt of that status; failed: on every channel tried.
    sent: int
    delivered: int
    read: int
    clicked: int
    failed: int
    suppressed: int
    cancelled: int
    # Attributed orders (utm_message_id, after the first read/click, within the window).
    converted: int
    orders: int
    revenue: float
    # Members ordering within the attribution window after launch: targeted vs holdout.
    treated_users: int
    treated_converted: int
    treated_rate: float
    holdout_converted: int
    holdout_rate: float
    uplift: float
    uplift_ci_low: float
    uplift_ci_high: float
    # as_created or best_hour. A best-hour campaign's arms: targets at their learned best
    # hour vs the random-hour control, each with how many read or clicked its message,
    # and the difference of the rates with its 95 % interval (Newcombe).
    send_time: str
    best_hour_targets: int
    best_hour_read: int
    best_hour_read_rate: float
    random_hour_targets: int
    random_hour_read: int
    random_hour_read_rate: float
    send_time_uplift: float
    send_time_uplift_ci_low: float
    send_time_uplift_ci_high: float
    # Derived from its rule, offer and outcome each time (schemas/tags.py).
    tags: list[str]


class CampaignReports(BaseModel):
    rows: list[CampaignReport]


class CampaignDetail(CampaignReport):
    rules: dict[str, Any]
    live: bool


@router.post("", response_model=CampaignCreated, status_code=status.HTTP_202_ACCEPTED)
async def create_campaign(
    request: CampaignRequest, caller: AdminCaller, clickhouse: ClickHouseDep
) -> CampaignCreated:
    segment = await asyncio.to_thread(load_segment, clickhouse, request.segment_id)
    if segment is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "no such segment")
    now = datetime.now(UTC)
    quiet = request.schedule.quiet_hours
    row = {
        "campaign_id": uuid.uuid4().hex,
        "name": request.name,
        "segment_id": segment.segment_id,
        "rules": segment.rules.model_dump_json(),
        "template": request.template,
        "product": request.product or "",
        "discount_percent": request.discount_percent,
        "channels": list(request.channels),
        "holdout_share": request.holdout_share,
        "send_at": request.schedule.send_at or now,
        "quiet_start": quiet.start if quiet else 0,
        "quiet_end": quiet.end if quiet else 0,
        "timezone": request.schedule.timezone,
        "send_time": request.schedule.send_time,
        "status": "scheduled",
        "created_at": now,
        "created_by": actor_of(caller),
        "launched_at": None,
        "updated_at": now,
    }
    await asyncio.to_thread(insert_campaign, clickhouse, row)
    await record_action(clickhouse, caller, "campaign_create", detail=row["campaign_id"])
    return CampaignCreated(
        campaign_id=row["campaign_id"], status="scheduled", send_at=row["send_at"]
    )


def _rule_or_none(stored: str) -> Group | None:
    # A rule that no longer loads failed its campaign; the list still shows it, never a 500.
    try:
        return load_rule(stored)
    except ValidationError:
        return None


async def _reports(
    clickhouse: ClickHouseDep, settings: SettingsDep, where: CampaignFilter
) -> list[dict[str, Any]]:
    def run() -> list[dict[str, Any]]:
        found = definitions(clickhouse, where)
        reports = outcomes(clickhouse, found, settings.attribution_window_s, now_ms())
        for report, campaign in zip(reports, found, strict=True):
            report["rules"] = campaign["rules"]
            offer = {**report, "product": campaign["product"]}
            report["tags"] = campaign_tags(_rule_or_none(campaign["rules"]), offer)
        return reports

    return await asyncio.to_thread(run)


@router.get("", response_model=CampaignReports, summary="Campaigns and their outcomes")
async def list_campaigns(
    caller: ReportCaller,
    clickhouse: ClickHouseDep,
    settings: SettingsDep,
    span: TimeRangeDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    tag: TagQuery = None,
) -> dict[str, Any]:
    """Campaigns created in [from, to) (default: the last 7 days), newest first; with
    ``tag``, those of them carrying it."""
    where = CampaignFilter(None, span.start_ms, span.end_ms, limit if tag is None else None)
    rows = await _reports(clickhouse, settings, where)
    return {"rows": [r for r in rows if tag is None or tag in r["tags"]][:limit]}


@router.get("/{campaign_id}", response_model=CampaignDetail)
async def get_campaign(
    campaign_id: CampaignIdPath,
    caller: ReportCaller,
    clickhouse: ClickHouseDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """One campaign: audience, sent, failed, delivered, read, clicked, converted, revenue,
    uplift against its holdout; live while it runs."""
    found = await _reports(clickhouse, settings, CampaignFilter(campaign_id, limit=1))
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such campaign")
    report = found[0]
    report["rules"] = orjson.loads(report["rules"])
    report["live"] = report["status"] == "launched"
    return report


class CampaignChanged(BaseModel):
    campaign_id: str
    status: Literal["cancelled", "deleted"]


async def _status_of(clickhouse: ClickHouseDep, campaign_id: str) -> tuple[str, bool]:
    found = await asyncio.to_thread(campaign_status, clickhouse, campaign_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such campaign")
    return found


@router.post(
    "/{campaign_id}/cancel",
    response_model=CampaignChanged,
    responses={
        404: {"description": "No such campaign."},
        409: {"description": "The campaign is failed or cancelled already."},
    },
)
async def cancel_campaign(
    campaign_id: CampaignIdPath, caller: AdminCaller, clickhouse: ClickHouseDep
) -> CampaignChanged:
    """Stop a campaign that has not finished: a scheduled one never launches; a launched
    one sends none of the messages still waiting for their members' quiet hours."""
    current, _ = await _status_of(clickhouse, campaign_id)
    if current not in CANCELLABLE:
        raise HTTPException(status.HTTP_409_CONFLICT, f"the campaign is {current}: not cancelled")
    reason = f"cancelled by {actor_of(caller)}"
    await asyncio.to_thread(
        change_status, clickhouse, campaign_id, "cancelled", reason, CANCELLABLE
    )
    await record_action(clickhouse, caller, "campaign_cancel", detail=campaign_id)
    return CampaignChanged(campaign_id=campaign_id, status="cancelled")


@router.delete(
    "/{campaign_id}",
    response_model=CampaignChanged,
    responses={
        404: {"description": "No such campaign."},
        409: {"description": "The campaign launched: kept for its report (cancel it)."},
    },
)
async def delete_campaign_route(
    campaign_id: CampaignIdPath, caller: AdminCaller, clickhouse: ClickHouseDep
) -> CampaignChanged:
    """Delete a campaign that never sent anything (scheduled, failed or cancelled
    before launch); a launched campaign is kept for its report."""
    current, launched = await _status_of(clickhouse, campaign_id)
    if launched or current not in DELETABLE:
        message = "it launched: kept for its report (cancel it)" if launched else current
        raise HTTPException(status.HTTP_409_CONFLICT, f"the campaign is not deleted: {message}")
    await asyncio.to_thread(delete_campaign, clickhouse, campaign_id)
    await record_action(clickhouse, caller, "campaign_delete", detail=campaign_id)
    return CampaignChanged(campaign_id=campaign_id, status="deleted")
