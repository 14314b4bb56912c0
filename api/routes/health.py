"""``GET /v1/health``: is each part the API depends on reachable, and is a worker consuming?

Checks talk to the real parts (a Kafka metadata request, ClickHouse's /ping, the
worker's consumer group) with short timeouts. A part that is down makes the answer
503 "degraded", never a 5xx error, so the clients are taken from ``Resources``
inside each check rather than from dependencies that would fail the request.
"""

import asyncio
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.deps import ResourcesDep, SettingsDep
from api.resources import Resources
from api.routing import GuardedRoute

router = APIRouter(prefix="/v1", tags=["health"], route_class=GuardedRoute)

CHECK_TIMEOUT_S = 2.0
# A group with members in any other state (joining, rebalancing, Stable; Tansu reports
# "Unknown" while a member joins) has a worker attached.
_NO_WORKER_STATES = {"Empty", "Dead"}


class ComponentHealth(BaseModel):
    status: Literal["ok", "down"]
    detail: str


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    components: dict[str, ComponentHealth]


def _ok(detail: str) -> ComponentHealth:
    return ComponentHealth(status="ok", detail=detail)


def _down(detail: str) -> ComponentHealth:
    return ComponentHealth(status="down", detail=detail)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {CHECK_TIMEOUT_S:.0f}s"
    return f"{type(exc).__name__}: {exc}"[:200]


async def check_broker(resources: Resources) -> ComponentHealth:
    try:
        admin = await resources.kafka_admin(CHECK_TIMEOUT_S)
        cluster = await asyncio.wait_for(admin.describe_cluster(), CHECK_TIMEOUT_S)
    except Exception as exc:
        return _down(_describe(exc))
    return _ok(f"{len(cluster.get('brokers', []))} broker(s)")


async def check_worker(resources: Resources, group_id: str) -> ComponentHealth:
    """A worker is up when its app id's consumer group has members.

    Tansu 0.6 answers DescribeGroups (measured: "Empty" with no members before a
    worker joins, "Unknown" while it joins, then "Stable"), so this is the same
    Kafka-native signal as on Apache Kafka. A member that vanished without leaving
    stays listed until its session times out (broker_session_timeout, 10 s locally).
    """
    try:
        admin = await resources.kafka_admin(CHECK_TIMEOUT_S)
        responses = await asyncio.wait_for(
            admin.describe_consumer_groups([group_id]), CHECK_TIMEOUT_S
        )
    except Exception as exc:
        return _down(_describe(exc))
    for response in responses:
        for group in response.to_object()["groups"]:
            if group["group"] != group_id:
                continue
            members = len(group["members"])
            detail = f"group {group_id}: {group['state']}, {members} member(s)"
            if members and group["state"] not in _NO_WORKER_STATES:
                return _ok(detail)
            return _down(detail)
    return _down(f"group {group_id} not found")


def _ping_warehouse(resources: Resources) -> bool:
    return resources.clickhouse().ping(timeout=CHECK_TIMEOUT_S)


async def check_warehouse(resources: Resources) -> ComponentHealth:
    try:
        # clickhouse-connect is synchronous; keep the event loop free.
        answered = await asyncio.wait_for(
            asyncio.to_thread(_ping_warehouse, resources), CHECK_TIMEOUT_S + 1
        )
    except Exception as exc:
        return _down(_describe(exc))
    return _ok("ping answered") if answered else _down("ping unanswered")


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "A part is down"}},
    summary="Status of the broker, the warehouse and the workers",
)
async def health(settings: SettingsDep, resources: ResourcesDep) -> JSONResponse:
    broker, warehouse, worker = await asyncio.gather(
        check_broker(resources),
        check_warehouse(resources),
        check_worker(resources, settings.app_id),
    )
    components = {"broker": broker, "warehouse": warehouse, "worker": worker}
    ok = all(c.status == "ok" for c in components.values())
    body = Health(status="ok" if ok else "degraded", components=components)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
