"""``/v1/summaries/*``: a nudge kind's or a campaign's outcomes in plain words, with the
figures stated.

Read scope. A kind's over the same ranges as ``/v1/metrics/*``, from the same queries; a
campaign's from its ``GET /v1/campaigns/{id}`` row: each number in the text is one the
metrics or campaigns API reports.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel

from api.auth import ReadCaller, ReportCaller
from api.deps import ClickHouseDep, SettingsDep
from api.params import CampaignIdPath, TimeRangeDep
from api.queries.campaigns import CampaignFilter, definitions, outcomes
from api.queries.summaries import campaign_figures, nudge_figures
from api.routing import GuardedRoute
from schemas.summaries import SUMMARY_KINDS, stated, summary_text
from schemas.time import now_ms

router = APIRouter(prefix="/v1/summaries", tags=["summaries"], route_class=GuardedRoute)


class SendTimeSummaryFigures(BaseModel):
    """Messages at learned best hours vs the random-hour control (schemas/summaries.py)."""

    best_hour_messages: int
    best_hour_read: int
    best_hour_read_share: float
    random_hour_messages: int
    random_hour_read: int
    random_hour_read_share: float
    random_hour_too_small: bool
    difference: float
    difference_low: float
    difference_high: float
    distinguishable: bool


class NudgeSummaryFigures(BaseModel):
    kind: str
    sent: int
    read: int
    read_share: float
    fallback: int
    fallback_share: float
    nudged_users: int
    nudged_converted: int
    nudged_rate: float
    holdout_users: int
    holdout_converted: int
    holdout_rate: float
    holdout_too_small: bool
    uplift: float
    uplift_low: float
    uplift_high: float
    uplift_distinguishable: bool
    # Null unless the messages were sent at learned best hours.
    send_time: SendTimeSummaryFigures | None


class NudgeSummary(BaseModel):
    kind: str
    text: str
    figures: NudgeSummaryFigures


@router.get(
    "/nudges", response_model=NudgeSummary, summary="A nudge kind's outcomes in plain words"
)
def get_nudge_summary(
    caller: ReadCaller,
    clickhouse: ClickHouseDep,
    settings: SettingsDep,
    span: TimeRangeDep,
    kind: Annotated[Literal[SUMMARY_KINDS], Query()],  # type: ignore[valid-type]
) -> dict[str, Any]:
    # Warehouse errors go through: api/errors.py answers them with 503.
    figures = nudge_figures(clickhouse, span, settings.attribution_window_s, kind)
    return {"kind": kind, "text": summary_text(figures), "figures": stated(figures)}


class CampaignSummary(BaseModel):
    campaign_id: str
    name: str
    status: str
    text: str
    figures: NudgeSummaryFigures


@router.get(
    "/campaigns/{campaign_id}",
    response_model=CampaignSummary,
    summary="A campaign's outcomes in plain words",
    responses={404: {"description": "No such campaign."}},
)
def get_campaign_summary(
    caller: ReportCaller,
    clickhouse: ClickHouseDep,
    settings: SettingsDep,
    campaign_id: CampaignIdPath,
) -> dict[str, Any]:
    found = definitions(clickhouse, CampaignFilter(campaign_id, limit=1))
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such campaign")
    (report,) = outcomes(clickhouse, found, settings.attribution_window_s, now_ms())
    figures = campaign_figures(clickhouse, report)
    return {
        "campaign_id": campaign_id,
        "name": report["name"],
        "status": report["status"],
        "text": summary_text(figures, f"Campaign “{report['name']}” ({report['status']})"),
        "figures": stated(figures),
    }
