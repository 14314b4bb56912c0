"""The overview: message outcomes, opt-outs, revenue and cost, uplift against the
holdout, each nudge kind's summary in words, message variants (rates with intervals,
the bandit's allocation), the storefront funnel, and a live timeline
(``/console/api/timeline``, polled).

Figures come from the same query functions as ``/v1/metrics/*``; each panel stands
alone, so a part that is unavailable (or a query this build lacks) leaves a note in
its place and the rest of the page intact.
"""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, get_args

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from api.console.render import guarded_page, page, warehouse
from api.console.session import SessionDep
from api.deps import ResourcesDep, SettingsDep
from api.errors import HTTP_ANSWERS, as_http
from api.queries.common import TimeRange
from api.queries.funnel import funnel
from api.queries.nudges import ALL as ALL_CHANNELS
from api.queries.nudges import nudge_outcomes
from api.queries.opt_outs import opt_outs
from api.queries.series import timeseries
from api.queries.summaries import nudge_figures
from api.queries.timeline import timeline
from api.queries.uplift import uplift
from api.queries.variants import variant_rows
from api.routing import GuardedRoute
from schemas.messages import NudgeKind
from schemas.runs import LIVE_RUN
from schemas.summaries import SUMMARY_KINDS, summary_text
from schemas.time import now_ms

try:  # /v1/metrics/costs arrived later than the console in some branches
    from api.queries.costs import costs
except ImportError:  # pragma: no cover - depends on the branch
    costs = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False, route_class=GuardedRoute)

RANGES = {"24h": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400, "365d": 365 * 86_400}
# Buckets of the activity chart per range: 24 to 52 columns.
STEPS = {"24h": 3600, "7d": 6 * 3600, "30d": 86_400, "365d": 7 * 86_400}
STOREFRONT_STEPS = ["page_view", "product_view", "add_to_cart", "checkout_started", "order_placed"]
OUTCOMES = ("sent", "delivered", "read", "clicked", "converted")


def span_of(name: str) -> TimeRange:
    end_ms = now_ms()
    return TimeRange(end_ms - RANGES[name] * 1000, end_ms)


def bars(pairs: list[tuple[str, float]]) -> list[dict[str, Any]]:
    """Each value with its bar's length, 0..100, against the largest."""
    top = max((value for _, value in pairs), default=0) or 1
    return [{"label": k, "value": v, "width": round(100 * v / top, 2)} for k, v in pairs]


def activity(nudges: list[Any], orders: list[Any]) -> dict[str, Any] | None:
    """Nudges sent and orders per bucket as paired columns on a 0..100 scale."""
    if not nudges:
        return None
    top = max([p.value for p in nudges] + [p.value for p in orders] + [1])
    placed = {p.t: p.value for p in orders}
    columns = []
    for i, point in enumerate(nudges):
        order_count = placed.get(point.t, 0)
        columns.append(
            {
                "x": i * 10,
                "nudges": round(100 * point.value / top, 2),
                "orders": round(100 * order_count / top, 2),
                "title": f"{point.t[:16].replace('T', ' ')}: {point.value} nudges, "
                f"{order_count} orders",
            }
        )
    return {
        "columns": columns,
        "width": len(columns) * 10,
        "top": top,
        "first": nudges[0].t[:16].replace("T", " "),
        "last": nudges[-1].t[:16].replace("T", " "),
    }


def interval(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The uplift with its 95% interval on a symmetric scale around zero (0..100)."""
    found = next((r for r in rows if r["group"] == "uplift"), None)
    if found is None:
        return None
    reach = max(abs(found["ci_low"]), abs(found["ci_high"]), abs(found["rate"]), 0.01)

    def at(x: float) -> float:
        return round(50 + 50 * x / reach, 2)

    low, high = at(found["ci_low"]), at(found["ci_high"])
    return {"low": low, "width": max(high - low, 0.5), "point": at(found["rate"]), "zero": 50}


async def panel(name: str, query: Callable[[], Any]) -> tuple[Any, str]:
    """(result, '') or (None, why it is missing)."""
    try:
        return await asyncio.to_thread(query), ""
    except Exception as exc:
        log.warning("console overview: %s unavailable: %s", name, type(exc).__name__)
        return None, f"{name} unavailable right now ({type(exc).__name__})"


@router.get("/")
@guarded_page
async def overview(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    resources: ResourcesDep,
    range: str = "7d",
) -> Response:
    range = range if range in RANGES else "7d"
    span = span_of(range)
    clickhouse = warehouse(resources)
    window = settings.attribution_window_s
    (
        (outcomes, outcomes_err),
        (stops, stops_err),
        (lift, lift_err),
        (steps, funnel_err),
        (variants, variants_err),
    ) = await asyncio.gather(
        panel("message outcomes", lambda: nudge_outcomes(clickhouse, span, window, LIVE_RUN)),
        panel("opt-outs", lambda: opt_outs(clickhouse, 86_400, span)),
        panel("uplift", lambda: [asdict(r) for r in uplift(clickhouse, span)]),
        panel(
            "storefront funnel",
            lambda: funnel(clickhouse, STOREFRONT_STEPS, 86_400, span, None),
        ),
        panel("message variants", lambda: variant_rows(clickhouse, now_ms())),
    )
    step = STEPS[range]
    (series, series_err) = await panel(
        "activity",
        lambda: (
            timeseries(clickhouse, "nudges", step, span, None, None),
            timeseries(clickhouse, "orders", step, span, None, None),
        ),
    )
    # One panel per kind, as /v1/summaries/nudges words it for the same range.
    summaries = []
    for kind in SUMMARY_KINDS:
        text, err = await panel(
            f"{kind.replace('_', ' ')} summary",
            lambda kind=kind: summary_text(nudge_figures(clickhouse, span, window, kind)),
        )
        summaries.append({"kind": kind, "text": text, "err": err})
    if costs is None:
        cost_rows, cost_err = None, "message costs are not available in this build"
    else:
        cost_rows, cost_err = await panel(
            "message costs", lambda: [asdict(r) for r in costs(clickhouse, span, window)]
        )
    totals = dict.fromkeys((*OUTCOMES, "revenue"), 0.0)
    # One row per kind counts each message once across its channels ('all').
    for row in outcomes or []:
        if row["channel"] != ALL_CHANNELS:
            continue
        for name in totals:
            totals[name] += float(row[name])
    figures = {
        **{name: int(totals[name]) for name in OUTCOMES},
        "revenue": round(totals["revenue"], 2),
        "opt_outs": sum(r.count for r in stops) if stops is not None else None,
        "cost": round(sum(r["cost"] for r in cost_rows), 2) if cost_rows is not None else None,
    }
    return page(
        request,
        "overview.html",
        session,
        range=range,
        ranges=list(RANGES),
        figures=figures,
        outcomes_err=outcomes_err,
        stops_err=stops_err,
        message_bars=bars([(n, figures[n]) for n in OUTCOMES]) if outcomes is not None else [],
        cost_rows=cost_rows or [],
        cost_err=cost_err,
        uplift_rows=lift or [],
        uplift_interval=interval(lift or []),
        uplift_err=lift_err,
        activity=activity(*series) if series is not None else None,
        series_err=series_err,
        funnel_bars=bars([(r.name, r.users) for r in steps or []]),
        funnel_err=funnel_err,
        summaries=summaries,
        variant_rows=variants or [],
        variants_err=variants_err,
        drafts_form={"kind": "cart_rescue", "count": 3, "brief": ""},
        can_draft=settings.segment_llm_url is not None,
        draft_kinds=get_args(NudgeKind),
    )


@router.get("/api/timeline")
async def timeline_json(session: SessionDep, resources: ResourcesDep) -> Response:
    """The newest decisions and receipts, for the overview's script."""
    try:
        rows = await asyncio.to_thread(timeline, warehouse(resources))
    except HTTP_ANSWERS as answer:
        exc = as_http(answer)
        return JSONResponse({"rows": [], "error": str(exc.detail)}, exc.status_code)
    except Exception as exc:
        log.warning("console timeline unavailable: %s", type(exc).__name__)
        return JSONResponse({"rows": [], "error": "the warehouse did not answer"}, 503)
    return JSONResponse({"rows": rows}, headers={"Cache-Control": "no-store"})
