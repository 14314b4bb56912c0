"""``/demo/api/``: the demo shop's own backend, which its pages call (same origin, JSON).

It does what a real store's backend does with the intentflow API, over HTTP at
``public_api_url`` with the server key ``INTENTFLOW_DEMO_SERVER_KEY`` (never sent to a
page): it reports an order (``order_placed`` on ``/v1/track``: server-side, so the
engine trusts it and cancels the cart's pending rescue), reads the offer a message
made (``/v1/offers/{message_id}``) and redeems VIP tokens (``/v1/tokens/redeem``).

Prices and discounts come from here, never from the browser: the catalog's price of
each line, the offer's percent as the API states it, the token's as redemption states
it. Discounts do not stack: the larger applies. These routes read no cookie and no
session: what a request may do rests on what it carries (the shopper's ids, a
message id, a token), so another site's page can do nothing here that it could not
do by calling directly; and no CORS header lets it read an answer.

An order is placed only when the collector accepted its event (202, accepted 1);
otherwise the page is told it was not placed, and keeps the cart. The page's
``checkout_id`` is the event's id and names the order: a retry of one checkout is
the same event, which the engine drops as a duplicate if the first one did land.
"""

import logging
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import httpx
from fastapi import APIRouter, HTTPException, Query, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from api.deps import SettingsDep
from api.routes.demo import CATALOG, CURRENCY
from api.routing import GuardedRoute
from api.settings import ApiSettings
from schemas.events import E164, Id
from schemas.pii import mask_phone

log = logging.getLogger(__name__)

router = APIRouter(prefix="/demo/api", include_in_schema=False, route_class=GuardedRoute)

MAX_QUANTITY = 10  # per line: a demo shop, not a wholesaler
MAX_LINES = len(CATALOG)
API_TIMEOUT_S = 5.0
# Our message ids are hex hashes; nothing else goes into a path this backend calls.
MessageId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
NOT_PLACED = "Your order was not placed: {why}. Your cart is kept; please try again."


def _in_catalog(product_id: str) -> str:
    if product_id not in CATALOG:
        raise ValueError("is not a product of this shop")
    return product_id


class OrderLine(BaseModel):
    # A price or name the page sends along is ignored: the catalog's is used.
    model_config = ConfigDict(extra="ignore")

    product_id: Annotated[str, Field(max_length=64), AfterValidator(_in_catalog)]
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY, strict=True)]


def _distinct(lines: list[OrderLine]) -> list[OrderLine]:
    ids = [line.product_id for line in lines]
    if len(set(ids)) != len(ids):
        raise ValueError("names a product twice: one line per product")
    return lines


class OrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkout_id: UUID
    anonymous_id: Id
    user_id: Id
    items: Annotated[
        list[OrderLine], Field(min_length=1, max_length=MAX_LINES), AfterValidator(_distinct)
    ]
    message_id: MessageId | None = None
    vip_token: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None


class VipOutcome(BaseModel):
    redeemed: bool
    discount_percent: float = 0.0
    reason: str | None = None
    message: str | None = None


class PlacedOrder(BaseModel):
    order_id: str
    subtotal: float
    discount_percent: float
    discount: float
    total: float
    currency: str
    vip: VipOutcome | None = None


class OfferLine(BaseModel):
    product_id: str
    quantity: int
    price: float
    name: str
    category: str


class ShopOffer(BaseModel):
    message_id: str
    kind: str
    discount_percent: float
    expired: bool
    expires_at: str
    items: list[OfferLine]


class ProfileRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: Id
    phone: E164 | None = None


class Profile(BaseModel):
    customer_id: str
    phone_masked: str | None


def _server_key(settings: ApiSettings) -> str:
    if settings.demo_server_key is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "this demo shop takes no orders: INTENTFLOW_DEMO_SERVER_KEY is not set",
        )
    return settings.demo_server_key.get_secret_value()


def _client(settings: ApiSettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=settings.public_api_url.rstrip("/"),
        headers={"Authorization": f"Bearer {_server_key(settings)}"},
        timeout=API_TIMEOUT_S,
    )


def _not_placed(why: str) -> HTTPException:
    return HTTPException(status.HTTP_502_BAD_GATEWAY, NOT_PLACED.format(why=why))


def _money(value: float) -> float:
    return round(value, 2)


async def _offer_discount(client: httpx.AsyncClient, message_id: str) -> float:
    """The percent the message ``message_id`` promised, 0 when it promised none (unknown,
    expired, or not a nudge: a VIP or campaign message's id is also a landing's)."""
    response = await client.get(f"/v1/offers/{message_id}")
    if response.status_code == status.HTTP_404_NOT_FOUND:
        return 0.0
    response.raise_for_status()
    offer = response.json()
    return 0.0 if offer["expired"] else float(offer["discount_percent"])


async def _redeem(client: httpx.AsyncClient, token: str, order_id: str) -> VipOutcome:
    response = await client.post("/v1/tokens/redeem", json={"token": token, "order_id": order_id})
    if response.status_code == status.HTTP_200_OK:
        return VipOutcome(redeemed=True, discount_percent=response.json()["discount_percent"])
    detail = response.json().get("detail") if response.content else None
    if isinstance(detail, dict) and "reason" in detail:
        return VipOutcome(redeemed=False, reason=detail["reason"], message=detail["message"])
    response.raise_for_status()  # a 401 or 503: no verdict on the token
    return VipOutcome(redeemed=False, reason="unavailable", message=response.text[:200])


def order_event(
    body: OrderRequest, order_id: str, discount_percent: float, now: datetime
) -> dict[str, Any]:
    """The ``order_placed`` event of an order, priced from the catalog."""
    items = []
    for line in body.items:
        product = CATALOG[line.product_id]
        amount = _money(product["price"] * line.quantity)
        items.append(
            {
                "product_id": line.product_id,
                "quantity": line.quantity,
                "amount": amount,
                "discount": _money(amount * discount_percent / 100),
                "category": product["category"],
            }
        )
    subtotal = _money(sum(item["amount"] for item in items))
    discount = _money(sum(item["discount"] for item in items))
    event: dict[str, Any] = {
        "event_id": str(body.checkout_id),
        "name": "order_placed",
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "anonymous_id": body.anonymous_id,
        "user_id": body.user_id,
        "properties": {
            "order_id": order_id,
            "items": items,
            "subtotal": subtotal,
            "discount": discount,
            "discount_percent": discount_percent,
            "total": _money(subtotal - discount),
            "currency": CURRENCY,
        },
    }
    if body.message_id:
        event["context"] = {"campaign": {"source": "intentflow", "utm_message_id": body.message_id}}
    return event


@router.post("/profile")
async def check_profile(body: ProfileRequest) -> Profile:
    """The profile dialog's fields checked, and the phone masked as everywhere else
    (schemas/pii.py): the page keeps only the masked form. Nothing is stored or logged."""
    masked = mask_phone(body.phone) if body.phone else None
    return Profile(customer_id=body.customer_id, phone_masked=masked)


@router.post("/orders")
async def place_order(body: OrderRequest, settings: SettingsDep) -> PlacedOrder:
    order_id = f"demo-{body.checkout_id.hex[:12]}"
    async with _client(settings) as client:
        try:
            offer_percent = await _offer_discount(client, body.message_id) if body.message_id else 0
            vip = await _redeem(client, body.vip_token, order_id) if body.vip_token else None
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            log.warning("demo order %s: no discount verdict: %s", order_id, type(exc).__name__)
            raise _not_placed("the discount service did not answer") from None
        percent = max(offer_percent, vip.discount_percent if vip else 0.0)
        event = order_event(body, order_id, percent, datetime.now(UTC))
        try:
            response = await client.post("/v1/track", json=event)
        except httpx.HTTPError as exc:
            log.warning("demo order %s: collector unreachable: %s", order_id, type(exc).__name__)
            raise _not_placed("the order service is unreachable") from None
    accepted = response.json().get("accepted") if response.status_code == 202 else None
    if accepted != 1:
        log.warning("demo order %s: collector answered %s", order_id, response.status_code)
        raise _not_placed(f"the order service answered {response.status_code}")
    props = event["properties"]
    return PlacedOrder(
        order_id=order_id,
        subtotal=props["subtotal"],
        discount_percent=percent,
        discount=props["discount"],
        total=props["total"],
        currency=CURRENCY,
        vip=vip,
    )


@router.get("/offer")
async def get_offer(
    message_id: Annotated[MessageId, Query()], settings: SettingsDep
) -> ShopOffer | None:
    """The offer a landing's ``utm_message_id`` names, its cart priced from the catalog
    (products the shop no longer sells are left out). Nothing about the shopper goes back."""
    async with _client(settings) as client:
        try:
            response = await client.get(f"/v1/offers/{message_id}")
        except httpx.HTTPError:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, "offers are unavailable") from None
    if response.status_code == status.HTTP_404_NOT_FOUND:
        return None  # a landing without an offer (a VIP or campaign message) is no error
    if response.status_code != status.HTTP_200_OK:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, "offers are unavailable")
    offer = response.json()
    # A high-intent offer names a product, not a cart: its discount applies, nothing is added.
    items = [_offer_line(item["product_id"], item["quantity"]) for item in offer["items"]]
    return ShopOffer(
        message_id=offer["message_id"],
        kind=offer["kind"],
        discount_percent=offer["discount_percent"],
        expired=offer["expired"],
        expires_at=offer["expires_at"],
        items=[line for line in items if line is not None],
    )


def _offer_line(product_id: str, quantity: int) -> OfferLine | None:
    """A line of a message's cart at today's catalog price; None if the shop dropped it."""
    product = CATALOG.get(product_id)
    if product is None:
        return None
    return OfferLine(
        product_id=product_id,
        quantity=min(quantity, MAX_QUANTITY),
        price=product["price"],
        name=product["name"],
        category=product["category"],
    )
