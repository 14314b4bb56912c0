"""``GET /v1/backtests/compare?a=RUN&b=RUN``: two runs' decisions side by side (read key).

The same report as ``intentflow backtest compare --json`` (schemas/backtests.py):
per-run totals and the nudges of users nudged by one run and not the other.
``live`` names what the live pipeline decided.
"""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool

from api.auth import ReadCaller
from api.deps import ClickHouseDep
from api.routing import GuardedRoute
from schemas.backtests import BacktestComparison, UnknownRun, compare_in_warehouse

router = APIRouter(prefix="/v1/backtests", tags=["backtests"], route_class=GuardedRoute)

RunId = Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]


@router.get(
    "/compare",
    response_model=BacktestComparison,
    responses={404: {"description": "A run has no decisions in the warehouse."}},
)
async def compare(
    caller: ReadCaller,
    clickhouse: ClickHouseDep,
    a: RunId,
    b: RunId,
    limit: Annotated[int, Query(ge=0, le=100_000)] = 1_000,
) -> BacktestComparison:
    try:
        # clickhouse-connect blocks: off the event loop.
        return await run_in_threadpool(compare_in_warehouse, clickhouse, a, b, limit)
    except UnknownRun as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
