"""``/v1/summaries/*``: a nudge kind's outcomes in plain words, with the figures stated.

Read scope, the same ranges as ``/v1/metrics/*``; the figures come from the same
queries, so each number in the text is one the metrics API reports.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.auth import ReadCaller
from api.deps import ClickHouseDep, SettingsDep
from api.params import TimeRangeDep
from api.queries.summaries import nudge_figures
from api.routing import GuardedRoute
from schemas.summaries import SUMMARY_KINDS, stated, summary_text

router = APIRouter(prefix="/v1/summaries", tags=["summaries"], route_class=GuardedRoute)


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
