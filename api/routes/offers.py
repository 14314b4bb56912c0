"""``GET /v1/offers/{message_id}``: the offer a message made, for the store backend that
honours its link (the demo shop: api/routes/demo_api.py).

A message's link lands with ``utm_message_id`` (schemas/templates.py); for a nudge
that is its id, and the nudge names the cart it rescues or the product it pushes and
the discount it promised. Server keys (store backends) and admin keys may ask: the
answer names the shopper and their cart, which a page's public write key must not read.

Expiry: an offer holds as long as an order from it still counts as the message's
conversion, ``attribution_window_s`` after the decision (api/queries/attribution.py
counts from the first read or click, which comes after it, so an honoured order is
always inside the window). The answer says when, and whether that time has passed;
the storefront decides what an expired offer still gets.
"""

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import BaseModel

from api.auth import Caller, Scope, require
from api.deps import ClickHouseDep, SettingsDep
from api.queries.offers import nudge_offer
from api.routing import GuardedRoute
from schemas.time import iso_ms

router = APIRouter(prefix="/v1/offers", tags=["offers"], route_class=GuardedRoute)

OfferReader = Annotated[Caller, Depends(require(Scope.SERVER, Scope.ADMIN))]


class OfferItem(BaseModel):
    product_id: str
    quantity: int
    price: float


class Offer(BaseModel):
    message_id: str
    kind: Literal["cart_rescue", "high_intent"]
    user_key: str
    user_id: str | None
    product_id: str | None
    items: list[OfferItem]
    discount_percent: float
    decided_at: str
    expires_at: str
    expired: bool


@router.get(
    "/{message_id}",
    summary="The offer a message made: its shopper, cart and discount",
    responses={
        401: {"description": "No server or admin key."},
        404: {"description": "No sent message has this id."},
        503: {"description": "The warehouse is unavailable; retry."},
    },
)
async def get_offer(
    message_id: Annotated[str, Path(min_length=1, max_length=256)],
    caller: OfferReader,
    settings: SettingsDep,
    clickhouse: ClickHouseDep,
) -> Offer:
    found = await asyncio.to_thread(nudge_offer, clickhouse, message_id)  # down: a 503
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no sent message has this id")
    expires_at_ms = found.decided_at_ms + settings.attribution_window_s * 1000
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    return Offer(
        message_id=found.message_id,
        kind=found.kind,
        user_key=found.user_key,
        user_id=found.user_id or None,
        product_id=found.product_id or None,
        items=[OfferItem.model_validate(item) for item in orjson.loads(found.items_json)],
        discount_percent=found.discount_percent,
        decided_at=iso_ms(found.decided_at_ms),
        expires_at=iso_ms(expires_at_ms),
        expired=now_ms >= expires_at_ms,
    )
