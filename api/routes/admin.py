"""Operators' endpoints (admin key): channel switches, flows, previews, force-sends, audit.

A channel switch is a row in ``channel_controls``; the dispatcher polls it every
second (docs/dispatch.md). Flows and force-sends publish a decision on
``nudges`` like the engine does, so the dispatcher's consent check, fallback
and receipts apply to them too; nothing here talks to a provider. Every action
is written to the audit log.
"""

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from api.auth import AdminCaller
from api.deps import ClickHouseDep, ResourcesDep, SettingsDep
from api.privacy.audit import actor_of, read_log, record_action
from api.privacy.consent import ConsentStoreUnavailable, privacy_store
from api.queries.channels import channel_pauses, switch_channel_at
from api.queries.products import latest_products
from api.routing import GuardedRoute
from schemas.messages import FLOW_RULES_VERSION, FORCED_RULES_VERSION, CartItem, Nudge
from schemas.templates import render
from schemas.topics import NUDGES

router = APIRouter(prefix="/v1/admin", tags=["admin"], route_class=GuardedRoute)

ChannelName = Literal["whatsapp", "sms"]


class ChannelState(BaseModel):
    channel: ChannelName
    paused: bool


class Item(BaseModel):
    product_id: Annotated[str, Field(min_length=1, max_length=256)]
    # Bounded: a quantity past 64 bits cannot be serialised onto the topic (was a 500).
    quantity: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    price: Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)] = 0.0


class CartRescueFlow(BaseModel):
    user_id: Annotated[str, Field(min_length=1, max_length=256)]
    items: Annotated[list[Item], Field(min_length=1, max_length=100)]
    discount_percent: Annotated[float, Field(gt=0, le=100)] = 10.0
    # Makes a retried request publish the same message id.
    request_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None


class ForceSend(BaseModel):
    user_id: Annotated[str, Field(min_length=1, max_length=256)]
    kind: Literal["cart_rescue", "high_intent"] = "high_intent"
    product_id: Annotated[str, Field(min_length=1, max_length=256)]
    discount_percent: Annotated[float, Field(gt=0, le=100)] = 10.0
    request_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None


class Preview(BaseModel):
    kind: Literal["cart_rescue", "high_intent", "vip_upgrade", "campaign"] = "cart_rescue"
    product: Annotated[str, Field(max_length=256)] | None = None
    name: Annotated[str, Field(max_length=256)] | None = None
    discount_percent: Annotated[float, Field(gt=0, le=100)] = 10.0
    user_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None


class Published(BaseModel):
    message_id: str
    channels: list[str]


def _message_id(user_id: str, flow: str, request_id: str | None) -> str:
    nonce = request_id or uuid.uuid4().hex
    return hashlib.sha256(f"{user_id}\x1f{flow}\x1f{nonce}".encode()).hexdigest()[:32]


async def _consented(resources, settings, user_id: str) -> list[dict[str, Any]]:
    store = privacy_store(resources, settings)
    try:
        return await asyncio.to_thread(store.consents, user_id)
    except Exception as exc:
        raise ConsentStoreUnavailable(type(exc).__name__) from exc


async def _publish(resources, nudge: Nudge) -> None:
    await resources.events.publish(NUDGES.name, [(nudge.user_key.encode(), nudge.to_json())])


def _usable(consents: list[dict[str, Any]]) -> tuple[str, ...]:
    # Every flow an admin starts (cart rescue, force-send of a nudge) is marketing.
    return tuple(
        c["channel"]
        for c in consents
        if c["granted"] and c["phone"] and c["purpose"] == "marketing"
    )


@router.post("/channels/{channel}/{action}", response_model=ChannelState)
async def switch_channel(
    channel: ChannelName,
    action: Literal["pause", "resume"],
    caller: AdminCaller,
    clickhouse: ClickHouseDep,
) -> ChannelState:
    paused = action == "pause"
    await asyncio.to_thread(
        switch_channel_at, clickhouse, channel, paused, datetime.now(UTC), actor_of(caller)
    )
    await record_action(clickhouse, caller, f"channel_{action}", channel=channel)
    return ChannelState(channel=channel, paused=paused)


@router.get("/channels", response_model=list[ChannelState])
async def channel_states(caller: AdminCaller, clickhouse: ClickHouseDep) -> list[ChannelState]:
    paused = await asyncio.to_thread(channel_pauses, clickhouse)
    return [ChannelState(channel=c, paused=paused.get(c, False)) for c in ("whatsapp", "sms")]


async def _publish_admin_nudge(
    resources: ResourcesDep,
    clickhouse: ClickHouseDep,
    caller: AdminCaller,
    action: str,
    origin: Literal["admin_flow", "admin_force"],
    **decision: Any,
) -> Published:
    """An operator's nudge: decided now, published like the engine's, and audited."""
    now = datetime.now(UTC)
    nudge = Nudge(
        user_key=decision["user_id"],
        status="emit",
        triggered_at=now,
        decided_at=now,
        score=0.0,
        rules_version=FLOW_RULES_VERSION if origin == "admin_flow" else FORCED_RULES_VERSION,
        trigger_event_id=f"admin:{caller.key_hash[:12]}",
        origin=origin,
        **decision,
    )
    await _publish(resources, nudge)
    await record_action(
        clickhouse, caller, action, user_key=nudge.user_key, message_id=nudge.nudge_id
    )
    return Published(message_id=nudge.nudge_id, channels=list(nudge.channels))


@router.post("/flows/cart-rescue", response_model=Published, status_code=status.HTTP_202_ACCEPTED)
async def cart_rescue_flow(
    flow: CartRescueFlow,
    caller: AdminCaller,
    settings: SettingsDep,
    resources: ResourcesDep,
    clickhouse: ClickHouseDep,
) -> Published:
    channels = _usable(await _consented(resources, settings, flow.user_id))
    message_id = _message_id(flow.user_id, "cart-rescue", flow.request_id)
    return await _publish_admin_nudge(
        resources,
        clickhouse,
        caller,
        "flow_cart_rescue",
        "admin_flow",
        nudge_id=message_id,
        kind="cart_rescue",
        user_id=flow.user_id,
        cart_id=f"admin-{message_id[:12]}",
        items=tuple(CartItem(**item.model_dump()) for item in flow.items),
        discount_percent=flow.discount_percent,
        channels=channels,
    )


@router.post("/messages/send", response_model=Published, status_code=status.HTTP_202_ACCEPTED)
async def force_send(
    request: ForceSend,
    caller: AdminCaller,
    settings: SettingsDep,
    resources: ResourcesDep,
    clickhouse: ClickHouseDep,
) -> Published:
    """Send now, past the daily cap; consent is still required (never forced)."""
    channels = _usable(await _consented(resources, settings, request.user_id))
    message_id = _message_id(request.user_id, "force-send", request.request_id)
    cart = {}
    if request.kind == "cart_rescue":
        cart = {
            "cart_id": f"admin-{message_id[:12]}",
            "items": (CartItem(product_id=request.product_id, quantity=1, price=0.0),),
        }
    return await _publish_admin_nudge(
        resources,
        clickhouse,
        caller,
        "message_force_send",
        "admin_force",
        nudge_id=message_id,
        kind=request.kind,
        user_id=request.user_id,
        product_id=request.product_id,
        discount_percent=request.discount_percent,
        channels=channels,
        **cart,
    )


@router.post("/messages/preview")
async def preview(
    request: Preview,
    caller: AdminCaller,
    settings: SettingsDep,
    resources: ResourcesDep,
    clickhouse: ClickHouseDep,
) -> dict[str, Any]:
    """Both renderings of a message, and the masked phones it would go to; nothing is sent.

    ``product`` is a product id, looked up in the catalog as the dispatcher does. Links
    are the storefront's own (untracked): a preview's link must not count as a click."""
    found = {}
    if request.product:
        found = await asyncio.to_thread(latest_products, clickhouse, [request.product])
    rendered = render(
        kind=request.kind,
        message_id="preview",
        storefront_url=settings.storefront_url,
        discount_percent=request.discount_percent,
        product=found[request.product][0] if request.product in found else None,
        name=request.name,
    )
    recipients = []
    if request.user_id:
        recipients = await _consented(resources, settings, request.user_id)
    await record_action(clickhouse, caller, "message_preview", user_key=request.user_id or "")
    card = rendered.whatsapp
    return {
        "whatsapp": {
            "image_url": card.image_url,
            "title": card.title,
            "body": card.body,
            "button": {"text": card.button_text, "url": card.button_url},
        },
        "sms": rendered.sms,
        "recipients": recipients,
    }


@router.get("/audit")
async def audit(
    caller: AdminCaller,
    clickhouse: ClickHouseDep,
    user_key: Annotated[str | None, Query(max_length=256)] = None,
    message_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> dict[str, Any]:
    """Admin actions and message state changes, newest first."""
    rows = await asyncio.to_thread(read_log, clickhouse, user_key, message_id, limit)
    return {"rows": rows}
