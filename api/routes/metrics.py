"""``/v1/metrics/*``: funnels, time series, nudge outcomes, uplift, dead letters, opt-outs,
message costs.

The contract (parameters, row shapes, examples) is docs/metrics.md; responses
are ``{"rows": [...]}`` for Grafana's Infinity datasource. Parameters are
checked here (422 naming the field and the reason); the queries in api/queries
bind every value and take identifiers only from their whitelists.
"""

import re
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any, Literal, TypeVar

from aiokafka.errors import KafkaError
from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel

from api.auth import ReadCaller
from api.deps import ClickHouseDep, ResourcesDep, SettingsDep
from api.kafka_lag import consumer_lag
from api.params import IntervalDep, TimeRangeDep, invalid
from api.queries.common import TimeRange
from api.queries.costs import ChannelCost, costs
from api.queries.funnel import BREAKDOWN_COLUMNS, funnel
from api.queries.not_sent import not_sent
from api.queries.nudges import nudge_outcomes
from api.queries.opt_outs import opt_outs
from api.queries.referrals import ReferralRow, referral_funnel
from api.queries.send_time import SendTimeRow, send_time_rows
from api.queries.series import Metric, dead_letters, timeseries
from api.queries.uplift import uplift
from api.queries.variants import variant_rows
from api.routing import GuardedRoute
from schemas.events import EVENT_NAME_PATTERN
from schemas.messages import NudgeKind
from schemas.runs import LIVE_RUN
from schemas.time import now_ms

router = APIRouter(prefix="/v1/metrics", tags=["metrics"], route_class=GuardedRoute)

MAX_BUCKETS = 10_000
MAX_STEPS = 10
MAX_WINDOW_S = 90 * 86_400
_EVENT_NAME = re.compile(EVENT_NAME_PATTERN)
_RUN_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

T = TypeVar("T")


def check_buckets(span: TimeRange, step_s: int) -> None:
    if (span.end_ms - span.start_ms) // (step_s * 1000) > MAX_BUCKETS:
        raise invalid("interval", f"too small for the range: more than {MAX_BUCKETS} buckets")


def run_query(query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    # A warehouse that does not answer is the caller's 503 (api/errors.py).
    return query(*args, **kwargs)


# --- responses ------------------------------------------------------------------


class FunnelStep(BaseModel):
    step: int
    name: str
    breakdown: str
    users: int
    conversion_from_previous: float
    conversion_from_first: float


class FunnelResponse(BaseModel):
    rows: list[FunnelStep]


class SeriesPoint(BaseModel):
    t: str
    value: int | float


class SeriesResponse(BaseModel):
    rows: list[SeriesPoint]


class NudgeOutcome(BaseModel):
    kind: str
    channel: str
    emitted: int
    suppressed: int
    suppressed_no_consent: int
    suppressed_frequency_cap: int
    suppressed_quiet_hours_stale: int
    suppressed_holdout: int
    suppressed_order_placed: int
    suppressed_cart_emptied: int
    cancelled: int
    sent: int
    delivered: int
    read: int
    clicked: int
    failed: int
    converted: int
    orders: int
    revenue: float


class NudgeOutcomesResponse(BaseModel):
    rows: list[NudgeOutcome]


class UpliftGroup(BaseModel):
    group: Literal["nudged", "holdout", "uplift"]
    users: int | None
    converted: int | None
    rate: float
    ci_low: float
    ci_high: float


class UpliftResponse(BaseModel):
    rows: list[UpliftGroup]


class DeadLetterBucket(BaseModel):
    t: str
    reason: str
    source_topic: str
    count: int


class DeadLettersResponse(BaseModel):
    rows: list[DeadLetterBucket]


# --- routes ---------------------------------------------------------------------


@router.get("/funnel", response_model=FunnelResponse, summary="Users reaching each step in order")
def get_funnel(
    caller: ReadCaller,
    clickhouse: ClickHouseDep,
    span: TimeRangeDep,
    steps: Annotated[str, Query(description="Comma-separated event names, in order")],
    window: Annotated[int, Query(ge=1, le=MAX_WINDOW_S, description="Seconds")] = 86_400,
    breakdown: Annotated[
        str | None, Query(description=f"One of: {', '.join(BREAKDOWN_COLUMNS)}")
    ] = None,
) -> dict[str, Any]:
    names = [name.strip() for name in steps.split(",")]
    if not 1 <= len(names) <= MAX_STEPS:
        raise invalid("steps", f"give 1 to {MAX_STEPS} event names")
    for name in names:
        if not _EVENT_NAME.match(name):
            raise invalid("steps", f"not an event name (must match {EVENT_NAME_PATTERN})")
    if len(set(names)) != len(names):
        raise invalid("steps", "steps must be distinct")
    if breakdown is not None and breakdown not in BREAKDOWN_COLUMNS:
        raise invalid("breakdown", f"must be one of: {', '.join(BREAKDOWN_COLUMNS)}")
    rows = run_query(funnel, clickhouse, names, window, span, breakdown)
    return {"rows": [asdict(row) for row in rows]}


@router.get("/timeseries", response_model=SeriesResponse, summary="A metric per time bucket")
def get_timeseries(
    caller: ReadCaller,
    clickhouse: ClickHouseDep,
    span: TimeRangeDep,
    step_s: IntervalDep,
    metric: Annotated[Metric, Query()],
    name: Annotated[str | None, Query(description="metric=events: only this event")] = None,
    currency: Annotated[str | None, Query(description="metric=revenue: only this currency")] = None,
) -> dict[str, Any]:
    check_buckets(span, step_s)
    if name is not None and (metric != "events" or not _EVENT_NAME.match(name)):
        raise invalid("name", "an event name, with metric=events only")
    if currency is not None and (metric != "revenue" or not re.fullmatch(r"[A-Z]{3}", currency)):
        raise invalid("currency", "a 3-letter code such as EUR, with metric=revenue only")
    points = run_query(timeseries, clickhouse, metric, step_s, span, name, currency)
    return {"rows": [asdict(point) for point in points]}


@router.get(
    "/nudges", response_model=NudgeOutcomesResponse, summary="Nudge outcomes per kind and channel"
)
def get_nudges(
    caller: ReadCaller,
    clickhouse: ClickHouseDep,
    settings: SettingsDep,
    span: TimeRangeDep,
    run_id: Annotated[str, Query(description="Decisions of this run")] = LIVE_RUN,
) -> dict[str, Any]:
    if not _RUN_ID.match(run_id):
        raise invalid("run_id", "letters, digits and _.:- only, at most 128")
    rows = run_query(nudge_outcomes, clickhouse, span, settings.attribution_window_s, run_id)
    return {"rows": rows}


class NotSentRow(BaseModel):
    outcome: Literal["held", "expired", "suppressed", "cancelled", "still_held"]
    stage: Literal["decision", "send"]
    kind: str
    reason: str
    messages: int


class NotSentResponse(BaseModel):
    rows: list[NotSentRow]


@router.get(
    "/nudges/not_sent",
    response_model=NotSentResponse,
    summary="Every non-send: held, expired, suppressed, cancelled, by stage and reason",
)
def get_not_sent(
    caller: ReadCaller,
    clickhouse: ClickHouseDep,
    span: TimeRangeDep,
    run_id: Annotated[str, Query(description="Decisions of this run")] = LIVE_RUN,
) -> dict[str, Any]:
    if not _RUN_ID.match(run_id):
        raise invalid("run_id", "letters, digits and _.:- only, at most 128")
    return {"rows": run_query(not_sent, clickhouse, span, run_id)}


@router.get("/uplift", response_model=UpliftResponse, summary="Nudged vs holdout conversion")
def get_uplift(
    caller: ReadCaller,
    clickhouse: ClickHouseDep,
    span: TimeRangeDep,
    kind: Annotated[Literal["cart_rescue", "high_intent"] | None, Query()] = None,
) -> dict[str, Any]:
    rows = run_query(uplift, clickhouse, span, kind)
    return {"rows": [asdict(row) for row in rows]}


class VariantRate(BaseModel):
    kind: str
    variant: str
    sends: int
    successes: int  # clicks or orders: the kind's ``success`` in the rules
    rate: float
    ci_low: float  # the rate's 95 % Wilson interval
    ci_high: float
    allocation: float  # the share of nudges the bandit gives it now
    snapshot_id: str
    effective_from: str


class VariantsResponse(BaseModel):
    rows: list[VariantRate]


@router.get(
    "/variants",
    response_model=VariantsResponse,
    summary="Message variants: rates with intervals and the bandit's allocation",
)
def get_variants(
    caller: ReadCaller,
    clickhouse: ClickHouseDep,
    kind: Annotated[NudgeKind | None, Query()] = None,
) -> dict[str, Any]:
    """Per nudge kind with variants, the bandit's snapshot in force now: each variant's
    sends, successes, success rate with its 95 % interval, and its allocation."""
    rows = run_query(variant_rows, clickhouse, now_ms(), kind)
    return {"rows": [asdict(row) for row in rows]}


class SendTimeResponse(BaseModel):
    rows: list[SendTimeRow]


@router.get(
    "/send_time",
    response_model=SendTimeResponse,
    summary="Nudges sent at the best hour against a random hour: read rates and difference",
)
def get_send_time(
    caller: ReadCaller,
    clickhouse: ClickHouseDep,
    span: TimeRangeDep,
    kind: Annotated[Literal["high_intent"], Query()] = "high_intent",
) -> dict[str, Any]:
    """Per arm (``best_hour``, ``random_hour``) the nudges first held or sent in [from, to),
    those sent and those read or clicked, the read rate with its 95 % Wilson interval; and
    ``difference``: best hour minus random hour, with Newcombe's 95 % interval."""
    rows = run_query(send_time_rows, clickhouse, span, kind)
    return {"rows": [asdict(row) for row in rows]}


@router.get("/dead_letters", response_model=DeadLettersResponse, summary="Dead letters per reason")
def get_dead_letters(
    caller: ReadCaller, clickhouse: ClickHouseDep, span: TimeRangeDep, step_s: IntervalDep
) -> dict[str, Any]:
    check_buckets(span, step_s)
    rows = run_query(dead_letters, clickhouse, step_s, span)
    return {"rows": [asdict(row) for row in rows]}


class OptOutBucket(BaseModel):
    t: str
    channel: str
    count: int
    users: int


class OptOutsResponse(BaseModel):
    rows: list[OptOutBucket]


@router.get(
    "/opt_outs",
    response_model=OptOutsResponse,
    summary="Opt-outs by reply (STOP, UNSUBSCRIBE, ...) per channel",
)
def get_opt_outs(
    caller: ReadCaller, clickhouse: ClickHouseDep, span: TimeRangeDep, step_s: IntervalDep
) -> dict[str, Any]:
    check_buckets(span, step_s)
    rows = run_query(opt_outs, clickhouse, step_s, span)
    return {"rows": [asdict(row) for row in rows]}


class ReferralsResponse(BaseModel):
    rows: list[ReferralRow]


@router.get(
    "/referrals",
    response_model=ReferralsResponse,
    summary="Referral funnel per link: visitors, sign-ups, buyers, orders, revenue",
)
def get_referrals(caller: ReadCaller, clickhouse: ClickHouseDep, span: TimeRangeDep) -> dict:
    """Visitors who first came through a referral link in [from, to), and what they did
    by ``to`` (api/queries/referrals.py says exactly what counts)."""
    rows = run_query(referral_funnel, clickhouse, span)
    return {"rows": [asdict(row) for row in rows]}


class CostsResponse(BaseModel):
    rows: list[ChannelCost]


@router.get(
    "/costs",
    response_model=CostsResponse,
    summary="Messages sent, their cost, and cost per attributed conversion, per channel",
)
def get_costs(
    caller: ReadCaller, clickhouse: ClickHouseDep, settings: SettingsDep, span: TimeRangeDep
) -> dict[str, Any]:
    rows = run_query(costs, clickhouse, span, settings.attribution_window_s)
    return {"rows": [asdict(row) for row in rows]}


class ConsumerLagResponse(BaseModel):
    rows: list[dict[str, Any]]


@router.get(
    "/consumer_lag",
    response_model=ConsumerLagResponse,
    summary="Committed offsets and lag per partition of the worker and dispatcher groups",
    responses={503: {"description": "The broker is unavailable."}},
)
async def get_consumer_lag(
    caller: ReadCaller, settings: SettingsDep, resources: ResourcesDep
) -> dict[str, Any]:
    try:
        admin = await resources.kafka_admin()
        rows = await consumer_lag(
            admin,
            settings.bootstrap_servers,
            settings.app_id,
            settings.user_partitions,
            # Only Apache Kafka answers exact end offsets; Tansu (local, tests) does not.
            approximate=settings.env != "production",
        )
    except (KafkaError, OSError, TimeoutError) as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"broker unavailable: {type(exc).__name__}"
        ) from None
    return {"rows": [asdict(row) for row in rows]}
