"""Operating pages: channels (pause / resume), message previews, drafts of message
variants by the optional language model, the audit log with dead letters, and
backtest comparisons.

Admin-only reads of the API (channel states, previews, the audit log) stay
admin-only here: a read session sees a note in their place.
"""

import asyncio
import re
from typing import get_args

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from api.console.render import (
    Refused,
    action_form,
    guarded_action,
    guarded_page,
    number,
    page,
    redirect,
    warehouse,
)
from api.console.session import PATH, SessionDep
from api.console.shoppers import model
from api.deps import ResourcesDep, SettingsDep
from api.llm import LanguageModelDep
from api.privacy.audit import read_log
from api.queries.backtests import recent_runs
from api.queries.common import TimeRange
from api.queries.series import dead_letters
from api.routes import admin, templates
from api.routing import GuardedRoute
from schemas.backtests import UnknownRun, compare_in_warehouse
from schemas.messages import NudgeKind
from schemas.time import now_ms

router = APIRouter(include_in_schema=False, route_class=GuardedRoute)

ADMIN_NOTE = "Shown to admin sessions only (as in the API): sign in with an admin key to see it."
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # as /v1/backtests/compare
KINDS = ("cart_rescue", "high_intent", "vip_upgrade", "campaign")
DRAFT_KINDS = get_args(NudgeKind)  # the kinds with variants


def channels_url(**_: object) -> str:
    return f"{PATH}/channels"


@router.get("/channels")
@guarded_page
async def channels(request: Request, session: SessionDep, resources: ResourcesDep) -> Response:
    states = None
    if session.can_act:
        states = await admin.channel_states(session.caller, warehouse(resources))
    return page(request, "channels.html", session, states=states, note=ADMIN_NOTE)


@router.post("/channels/{channel}/{action}")
@guarded_action(back=channels_url)
async def switch(
    request: Request,
    session: SessionDep,
    resources: ResourcesDep,
    channel: str,
    action: str,
) -> Response:
    if channel not in ("whatsapp", "sms") or action not in ("pause", "resume"):
        raise Refused("No such channel switch: channels are whatsapp and sms.", 404)
    await action_form(request, session, f"{action} a channel")
    state = await admin.switch_channel(channel, action, session.caller, warehouse(resources))
    name = {"whatsapp": "WhatsApp", "sms": "SMS"}[state.channel]
    text = (
        f"{name} is paused: the dispatcher holds its messages from its next poll (about a second)."
        if state.paused
        else f"{name} is running again."
    )
    return redirect(request, channels_url(), "ok", text)


@router.get("/messages")
@guarded_page
async def messages(
    request: Request,
    session: SessionDep,
    user_id: str = "",
    kind: str = "cart_rescue",
    product: str = "",
) -> Response:
    kind = kind if kind in KINDS else "cart_rescue"
    form = {
        "user_id": user_id[:256],
        "kind": kind,
        "product": product[:256],
        "name": "",
        "discount": "10",
    }
    return page(request, "messages.html", session, form=form, kinds=KINDS, shown=None)


def messages_url(**_: object) -> str:
    return f"{PATH}/messages"


@router.post("/messages/preview")
@guarded_action(back=messages_url)
async def preview(
    request: Request, session: SessionDep, settings: SettingsDep, resources: ResourcesDep
) -> Response:
    form = await action_form(request, session, "preview messages")
    body = model(
        admin.Preview,
        kind=form.get("kind"),
        product=form.get("product"),
        name=form.get("name"),
        discount_percent=form.get("discount"),
        user_id=form.get("user_id"),
    )
    shown = await admin.preview(body, session.caller, settings, resources, warehouse(resources))
    values = {
        "user_id": form.get("user_id", ""),
        "kind": body.kind,
        "product": form.get("product", ""),
        "name": form.get("name", ""),
        "discount": f"{body.discount_percent:g}",
    }
    return page(request, "messages.html", session, form=values, kinds=KINDS, shown=shown)


def variants_url(**_: object) -> str:
    return f"{PATH}/#variants"


@router.post("/variants/drafts")
@guarded_action(back=variants_url)
async def draft_variants(
    request: Request, session: SessionDep, resources: ResourcesDep, llm: LanguageModelDep
) -> Response:
    """The overview's "Draft variants" form: the drafts to copy into the rules file."""
    form = await action_form(request, session, "draft message variants")
    kind = form.get("kind", "")
    if kind not in DRAFT_KINDS:
        raise Refused(f"No such nudge kind: variants are for {', '.join(DRAFT_KINDS)}.", 404)
    body = model(templates.DraftRequest, count=form.get("count"), brief=form.get("brief"))
    drafts = await templates.draft_variants(kind, body, session.caller, warehouse(resources), llm)
    values = {"kind": kind, "count": body.count, "brief": body.brief or ""}
    return page(
        request, "drafts.html", session, drafts=drafts, drafts_form=values, draft_kinds=DRAFT_KINDS
    )


@router.get("/audit")
@guarded_page
async def audit(
    request: Request,
    session: SessionDep,
    resources: ResourcesDep,
    user_key: str = "",
    message_id: str = "",
    action: str = "",
    days: str = "7",
) -> Response:
    user_key, message_id, action = user_key[:256], message_id[:128], action[:64]
    days = number(days, 7, 1, 90)
    clickhouse = warehouse(resources)
    entries = None
    if session.can_act:
        rows = await asyncio.to_thread(read_log, clickhouse, user_key, message_id, 500)
        entries = [r for r in rows if not action or r["action"] == action]
    end_ms = now_ms()
    span = TimeRange(end_ms - days * 86_400_000, end_ms)
    letters = await asyncio.to_thread(dead_letters, clickhouse, 3600 * 24, span)
    return page(
        request,
        "audit.html",
        session,
        entries=entries,
        note=ADMIN_NOTE,
        letters=[r for r in letters if r.count],
        filters={"user_key": user_key, "message_id": message_id, "action": action, "days": days},
    )


@router.get("/backtests")
@guarded_page
async def backtests(
    request: Request,
    session: SessionDep,
    resources: ResourcesDep,
    a: str = "",
    b: str = "live",
) -> Response:
    clickhouse = warehouse(resources)
    runs = await asyncio.to_thread(recent_runs, clickhouse)
    comparison, problem = None, ""
    if a and b and not (RUN_ID.match(a) and RUN_ID.match(b)):
        problem = "A run id has letters, digits, _ and - only, at most 64."
    elif a and b:
        try:
            comparison = await run_in_threadpool(compare_in_warehouse, clickhouse, a, b, 200)
        except UnknownRun as exc:
            problem = str(exc)
    return page(
        request,
        "backtests.html",
        session,
        runs=runs,
        a=a,
        b=b,
        comparison=comparison,
        problem=problem,
    )
