"""``GET /v1/users/{user_id}/profile``: what the engine knows of one shopper, and why it acted.

Scores, cart, tier and consent are the live state, read from the worker that
owns the user's partition (Faust forwards the request there); recent decisions
with their reasons come from the warehouse. Either part may be unavailable
without the other failing the request.
"""

import asyncio
import json
from typing import Annotated, Any, Literal
from urllib.parse import quote

import httpx
from clickhouse_connect.driver.exceptions import ClickHouseError
from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel

from api.auth import ReadCaller
from api.deps import ClickHouseDep, SettingsDep
from api.privacy.consent import master_key
from api.queries.decisions import recent_decisions
from api.routing import GuardedRoute
from schemas import pii
from schemas.time import iso_z

router = APIRouter(prefix="/v1/users", tags=["profiles"], route_class=GuardedRoute)

UserIdPath = Annotated[str, Path(min_length=1, max_length=256)]


class Decision(BaseModel):
    id: str
    kind: str
    status: str
    reason: str
    decided_at: str
    product_id: str
    discount_percent: float
    score: float
    signals: list[tuple[str, float]]
    rules_version: str
    # Why not (yet): the engine's hold (status "held") ends then; null otherwise.
    held_until: str | None = None
    # What the dispatcher last did: its latest receipt's status and detail ("" if none),
    # e.g. held / quiet_hours_until:..., expired / stale, sent, delivered.
    delivery: str = ""
    delivery_detail: str = ""


class UserProfileResponse(BaseModel):
    user_id: str
    live_state: Literal["ok", "unknown_user", "unavailable"]
    # Scores with their top signals, cart, tier, consent (pipeline/domain/profile.py).
    live: dict[str, Any] | None
    decisions_state: Literal["ok", "unavailable"]
    decisions: list[Decision]


async def _live_state(worker_url: str | None, user_id: str) -> tuple[str, dict | None]:
    if not worker_url:
        return "unavailable", None
    url = f"{worker_url.rstrip('/')}/users/{quote(user_id, safe='')}/profile"
    try:
        async with httpx.AsyncClient(timeout=3.0) as client:
            response = await client.get(url)
    except httpx.HTTPError:
        return "unavailable", None
    if response.status_code == status.HTTP_404_NOT_FOUND:
        return "unknown_user", None
    if response.status_code != status.HTTP_200_OK:
        return "unavailable", None
    return "ok", response.json()


def _decisions(clickhouse: ClickHouseDep, user_id: str) -> tuple[str, list[Decision]]:
    try:
        rows = recent_decisions(clickhouse, user_id)
    except (ClickHouseError, OSError):
        return "unavailable", []
    decisions = []
    for row in rows:
        row["decided_at"] = iso_z(row["decided_at"])
        row["held_until"] = iso_z(row["held_until"]) if row["held_until"] else None
        row["signals"] = [tuple(pair) for pair in json.loads(row["signals"] or "[]")]
        decisions.append(Decision(**row))
    return "ok", decisions


@router.get(
    "/{user_id}/profile",
    responses={404: {"description": "Neither the engine nor the warehouse knows this user."}},
)
async def get_user_profile(
    user_id: UserIdPath, caller: ReadCaller, settings: SettingsDep, clickhouse: ClickHouseDep
) -> UserProfileResponse:
    # An id that is an e-mail or phone was stored as its token (api/privacy/traits.py).
    user_id = pii.redact_id(master_key(settings.pii_master_key.get_secret_value()), user_id)
    (live_state, live), (decisions_state, decisions) = await asyncio.gather(
        _live_state(settings.worker_url, user_id),
        asyncio.to_thread(_decisions, clickhouse, user_id),
    )
    if live_state == "unknown_user" and not decisions:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such user")
    return UserProfileResponse(
        user_id=user_id,
        live_state=live_state,
        live=live,
        decisions_state=decisions_state,
        decisions=decisions,
    )
