"""Shoppers: the searchable table, one shopper's page, and the actions on a shopper
(preview then force-send, the cart-rescue flow, their referral link, erasure with its
report).

Actions call the admin API's own route functions with the session's caller, so
consent checks, publishing and the audit log are the API's, not copies.
"""

import asyncio
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from api.console.render import (
    action_form,
    checked_id,
    guarded_action,
    guarded_page,
    number,
    page,
    redirect,
    warehouse,
)
from api.console.session import PATH, SessionDep
from api.deps import ResourcesDep, SettingsDep
from api.privacy.consent import privacy_store
from api.privacy.revoke import RevokeFailed, revoke_consent
from api.queries.shoppers import shoppers
from api.queries.timeline import message_steps, receipts_of
from api.routes import admin, profiles, referrals, users
from api.routing import GuardedRoute

router = APIRouter(include_in_schema=False, route_class=GuardedRoute)

PAGE_SIZE = 25
MAX_PAGE = 10_000


M = TypeVar("M", bound=BaseModel)


def model(cls: type[M], **fields: Any) -> M:
    """The API's request model from form fields; a 422 with the fields' reasons if invalid."""
    try:
        return cls(**{k: v for k, v in fields.items() if v not in (None, "")})
    except ValidationError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, exc.errors(include_url=False)
        ) from None


def shopper_url(user_id: str = "", **_: Any) -> str:
    return f"{PATH}/shoppers/{quote(user_id, safe='')}"


@router.get("/shoppers")
@guarded_page
async def shopper_list(
    request: Request, session: SessionDep, resources: ResourcesDep, q: str = "", page_no: str = "1"
) -> Response:
    q = q.strip()[:256]
    page_no = number(page_no, 1, 1, MAX_PAGE)
    clickhouse = warehouse(resources)
    total, rows = await asyncio.to_thread(
        shoppers, clickhouse, q, PAGE_SIZE, (page_no - 1) * PAGE_SIZE
    )
    pages = max(1, -(-total // PAGE_SIZE))
    return page(
        request,
        "shoppers.html",
        session,
        q=q,
        rows=rows,
        total=total,
        page_no=page_no,
        pages=pages,
        channels=("whatsapp", "sms"),
        purposes=("marketing", "transactional"),
    )


@router.get("/shoppers/{user_id}")
@guarded_page
async def shopper(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    resources: ResourcesDep,
    user_id: str,
) -> Response:
    user_id = checked_id(user_id)
    clickhouse = warehouse(resources)
    profile = await profiles.get_user_profile(user_id, session.caller, settings, clickhouse)
    store = privacy_store(resources, settings)
    try:
        consents, consents_err = await asyncio.to_thread(store.consents, profile.user_id), ""
    except Exception as exc:
        consents, consents_err = [], f"consent store unavailable ({type(exc).__name__})"
    try:
        receipts, receipts_err = (
            await asyncio.to_thread(receipts_of, clickhouse, profile.user_id),
            "",
        )
    except Exception as exc:
        receipts, receipts_err = [], f"receipts unavailable ({type(exc).__name__})"
    by_message: dict[str, list[dict[str, Any]]] = {}
    for receipt in receipts:
        by_message.setdefault(receipt["message_id"], []).append(receipt)
    messages = {message: message_steps(steps) for message, steps in by_message.items()}
    live = profile.live or {}
    products = live.get("products") or {}
    top = max(products.items(), key=lambda kv: kv[1].get("score", 0), default=None)
    return page(
        request,
        "shopper.html",
        session,
        profile=profile,
        live=live,
        top_product=top[0] if top else "",
        consents=consents,
        consents_err=consents_err,
        messages=sorted(messages.items(), key=lambda kv: kv[1][-1]["at"], reverse=True),
        receipts_err=receipts_err,
        url=shopper_url(profile.user_id),
    )


@router.post("/shoppers/{user_id}/send")
@guarded_action(back=shopper_url)
async def force_send(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    resources: ResourcesDep,
    user_id: str,
) -> Response:
    user_id = checked_id(user_id)
    form = await action_form(request, session, "send a message")
    body = model(
        admin.ForceSend,
        user_id=user_id,
        kind=form.get("kind"),
        product_id=form.get("product_id"),
        discount_percent=form.get("discount_percent"),
        request_id=form.get("request_id"),
    )
    sent = await admin.force_send(body, session.caller, settings, resources, warehouse(resources))
    text = (
        f"Message {sent.message_id} queued on {', '.join(sent.channels)}."
        if sent.channels
        else f"Message {sent.message_id} recorded, but the shopper has no marketing consent "
        "with a phone on any channel: the dispatcher will not send it."
    )
    return redirect(request, shopper_url(user_id), "ok" if sent.channels else "error", text)


@router.post("/shoppers/{user_id}/cart-rescue")
@guarded_action(back=shopper_url)
async def cart_rescue(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    resources: ResourcesDep,
    user_id: str,
) -> Response:
    user_id = checked_id(user_id)
    form = await action_form(request, session, "start a flow")
    item = model(
        admin.Item,
        product_id=form.get("product_id"),
        quantity=form.get("quantity"),
        price=form.get("price"),
    )
    flow = model(
        admin.CartRescueFlow,
        user_id=user_id,
        items=[item],
        discount_percent=form.get("discount_percent"),
        request_id=form.get("request_id"),
    )
    published = await admin.cart_rescue_flow(
        flow, session.caller, settings, resources, warehouse(resources)
    )
    channels = ", ".join(published.channels) or "no channel (no marketing consent with a phone)"
    text = f"Cart rescue {published.message_id} started on {channels}."
    return redirect(request, shopper_url(user_id), "ok" if published.channels else "error", text)


@router.post("/shoppers/{user_id}/referral")
@guarded_action(back=shopper_url)
async def referral_link(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    resources: ResourcesDep,
    user_id: str,
) -> Response:
    """The shopper's link for bringing a new customer (the same one each time)."""
    user_id = checked_id(user_id)
    await action_form(request, session, "create referral links")
    link = await referrals.create_referral(
        model(referrals.ReferralRequest, user_id=user_id),
        session.caller,
        settings,
        warehouse(resources),
    )
    text = f"Referral link for this shopper (the same each time): {link.url}"
    return redirect(request, shopper_url(user_id), "ok", text)


@router.post("/shoppers/{user_id}/erase")
@guarded_action(back=shopper_url)
async def erase(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    resources: ResourcesDep,
    user_id: str,
) -> Response:
    user_id = checked_id(user_id)
    form = await action_form(request, session, "erase a shopper")
    if form.get("confirm", "") != user_id:
        return redirect(
            request,
            shopper_url(user_id),
            "error",
            "Nothing was erased: type the shopper's id exactly to confirm an erasure.",
        )
    report = await users.erase_user(
        user_id, session.caller, warehouse(resources), resources, settings
    )
    return page(request, "erased.html", session, report=report)


CHANNELS = ("whatsapp", "sms", "email")
PURPOSES = ("marketing", "transactional")


@router.post("/shoppers/{user_id}/consent")
@guarded_action(back=shopper_url)
async def revoke(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    resources: ResourcesDep,
    user_id: str,
) -> Response:
    user_id = checked_id(user_id)
    form = await action_form(request, session, "revoke consent")
    channel, purpose = form.get("channel", ""), form.get("purpose", "")
    if channel not in CHANNELS or purpose not in PURPOSES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"choose a channel ({', '.join(CHANNELS)}) and a purpose ({', '.join(PURPOSES)})",
        )
    warehouse(resources)  # a warehouse that is down is a 503 before anything is written
    try:
        await revoke_consent(resources, settings, session.caller, user_id, channel, purpose)
    except RevokeFailed as failed:
        if failed.stage == "consent store":
            text = "Nothing changed: the consent store is unavailable. Try again shortly."
        else:
            text = (
                f"{channel} {purpose} consent is revoked in the store (nothing more will be "
                "sent), but the engine was not told: the event log is unavailable. Revoke "
                "again to retry."
            )
        return redirect(request, shopper_url(user_id), "error", text)
    text = f"{channel} consent for {purpose} messages revoked; queued messages are cancelled."
    return redirect(request, shopper_url(user_id), "ok", text)
