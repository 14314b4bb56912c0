"""Segments and campaigns: a rule builder with the phrase box, a live audience count and
sample; a segment's lookalikes, previewed then saved as a segment; campaign creation
with a template preview, schedule and quiet hours; each campaign's outcome and history.

The builder's script talks to three small JSON endpoints under ``/console/api/``
(session, same origin, the session's CSRF token in ``X-CSRF-Token``, admin); they
call the segments API's own functions and the segments query engine.
"""

import asyncio
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from api.console.render import (
    READ_ONLY,
    Refused,
    action_form,
    checked_id,
    detail_of,
    explained,
    guarded_action,
    guarded_page,
    number,
    page,
    redirect,
    warehouse,
)
from api.console.session import PATH, Session, SessionDep, same_origin, token_matches
from api.console.shoppers import model
from api.deps import ResourcesDep, SettingsDep
from api.errors import HTTP_ANSWERS, as_http
from api.llm import LanguageModelDep
from api.privacy.audit import read_log
from api.queries.common import TimeRange
from api.queries.segments import preview as segment_preview
from api.routes import admin, campaigns, segments, summaries
from api.routing import GuardedRoute
from schemas.segments import FIELDS, MAX_LIST, OPERATORS, load_rule
from schemas.tags import TAGS
from schemas.time import now_ms

router = APIRouter(include_in_schema=False, route_class=GuardedRoute)

SAMPLE = 10
FIELD_INFO = {
    name: {
        "type": spec.type,
        "description": spec.description,
        "choices": list(spec.choices),
        "operators": sorted(OPERATORS[spec.type]),
    }
    for name, spec in FIELDS.items()
}
CAMPAIGN_DAYS = 30
# Lookalikes offered when the form does not say how many (the API's default).
LOOKALIKES = 100


# --- the builder's JSON endpoints ---------------------------------------------------


def _json_error(message: str, status_code: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code)


async def _json_body(request: Request, session: Session) -> dict[str, Any]:
    if not same_origin(request) or not token_matches(
        session.csrf, request.headers.get("x-csrf-token")
    ):
        raise Refused("This page has expired: reload it and try again.")
    if not session.can_act:
        raise Refused(READ_ONLY.format(what="build segments"))
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise Refused("The request was not JSON.", status.HTTP_400_BAD_REQUEST) from None
    if not isinstance(body, dict):
        raise Refused("The request was not a JSON object.", status.HTTP_400_BAD_REQUEST)
    return body


def _validation_text(exc: ValidationError | RequestValidationError) -> str:
    errors = exc.errors()
    parts = []
    for error in errors[:5]:
        where = " › ".join(str(p) for p in error.get("loc", ()) if p not in ("body",))
        parts.append(f"{where}: {error.get('msg', '')}" if where else str(error.get("msg", "")))
    return "; ".join(parts) or "the rule is not valid"


async def _json_call(request: Request, session: Session, run) -> JSONResponse:
    try:
        body = await _json_body(request, session)
        return JSONResponse(await run(body))
    except Refused as exc:
        return _json_error(exc.message, exc.status_code)
    except (ValidationError, RequestValidationError) as exc:
        return _json_error(_validation_text(exc), status.HTTP_422_UNPROCESSABLE_CONTENT)
    except HTTP_ANSWERS as answer:
        exc = as_http(answer)
        return _json_error(explained(exc.status_code, detail_of(exc)), exc.status_code)


@router.post("/api/segments/preview")
async def preview_rule(request: Request, session: SessionDep, resources: ResourcesDep):
    async def run(body: dict[str, Any]) -> dict[str, Any]:
        # A rule half-typed in the builder is a normal state: its answer says what is
        # missing (200), so the page does not log a failed request at every keystroke.
        try:
            rule = load_rule(body.get("rules"))
        except ValidationError as exc:
            return {"size": None, "sample": [], "problem": _validation_text(exc)}
        clickhouse = warehouse(resources)
        size, sample = await asyncio.to_thread(segment_preview, clickhouse, rule, now_ms(), SAMPLE)
        return {"size": size, "sample": sample}

    return await _json_call(request, session, run)


@router.post("/api/segments/parse")
async def parse_phrase(request: Request, session: SessionDep, llm: LanguageModelDep):
    async def run(body: dict[str, Any]) -> dict[str, Any]:
        parsed = await segments.parse_segment(
            segments.ParseRequest(text=body.get("text")), session.caller, llm
        )
        return parsed.model_dump(mode="json")

    return await _json_call(request, session, run)


@router.post("/api/segments")
async def save_segment(request: Request, session: SessionDep, resources: ResourcesDep):
    async def run(body: dict[str, Any]) -> dict[str, Any]:
        wanted = segments.SegmentRequest(
            name=body.get("name"),
            description=body.get("description") or "",
            rules=body.get("rules"),
        )
        saved = await segments.create_segment(wanted, session.caller, warehouse(resources))
        return saved.model_dump(mode="json")

    return await _json_call(request, session, run)


# --- pages ----------------------------------------------------------------------------


@router.get("/segments")
@guarded_page
async def segment_page(
    request: Request, session: SessionDep, resources: ResourcesDep, saved: str = "", tag: str = ""
) -> Response:
    stored, flash = None, _unknown_tag(tag)
    if session.can_act:  # segments are admin-only in the API too
        stored = (
            await segments.get_segments(
                session.caller, warehouse(resources), 100, tag if tag in TAGS else None
            )
        ).segments
        found = next((s for s in stored if s.segment_id == saved), None)
        if found is not None:
            flash = {"kind": "ok", "text": f"Segment “{found.name}” saved."}
    return page(
        request,
        "segments.html",
        session,
        flash=flash,
        stored=stored,
        fields=FIELD_INFO,
        sample_size=SAMPLE,
        tag=tag if tag in TAGS else "",
        tags=TAGS,
        lookalikes=LOOKALIKES,
        lookalike_max=MAX_LIST,
    )


@router.post("/segments/{segment_id}/lookalike")
@guarded_action(back=lambda **_: f"{PATH}/segments")
async def lookalikes(
    request: Request, session: SessionDep, resources: ResourcesDep, segment_id: str
) -> Response:
    """A segment's lookalikes (POST /v1/segments/{id}/lookalike): previewed first, with the
    model's fit and a masked sample; ``save`` ranks again and stores the top as a segment."""
    segment_id = checked_id(segment_id, "segment", 32)
    form = await action_form(request, session, "find lookalikes")
    size = number(form.get("size", ""), LOOKALIKES, 1, MAX_LIST)
    clickhouse = warehouse(resources)
    wanted = model(
        segments.LookalikeRequest,
        size=size,
        save=bool(form.get("save")),
        name=form.get("name") or None,
    )
    found = await segments.lookalike_segment(segment_id, wanted, session.caller, clickhouse)
    if found.saved is not None:
        return redirect(request, f"{PATH}/segments?saved={found.saved.segment_id}")
    segment = await segments.get_segment(segment_id, session.caller, clickhouse)
    return page(request, "lookalike.html", session, segment=segment, found=found, size=size)


def _unknown_tag(tag: str) -> dict[str, str] | None:
    if not tag or tag in TAGS:
        return None
    return {"kind": "error", "text": "No such tag; showing all. Tags: " + ", ".join(TAGS)}


def _campaign_span() -> TimeRange:
    """Campaigns created in the last CAMPAIGN_DAYS days (the API filters on creation)."""
    now = now_ms()
    return TimeRange(now - CAMPAIGN_DAYS * 86_400_000, now + 60_000)


async def _campaign_page(
    request: Request,
    session: Session,
    settings,
    resources,
    form: dict[str, Any] | None = None,
    shown: dict[str, Any] | None = None,
    status_code: int = 200,
    flash: dict[str, str] | None = None,
) -> Response:
    clickhouse = warehouse(resources)
    tag = (form or {}).get("tag", "")
    reports = await campaigns.list_campaigns(
        session.caller, clickhouse, settings, _campaign_span(), 100, tag if tag in TAGS else None
    )
    flash = flash or _unknown_tag(tag)
    stored = []
    if session.can_act:
        stored = (await segments.get_segments(session.caller, clickhouse, 100)).segments
    defaults = {
        "name": "",
        "segment_id": "",
        "product": "",
        "discount": "10",
        "whatsapp": "on",
        "sms": "on",
        "holdout": "10",
        "send_at": "",
        "timezone": "UTC",
        "quiet": "",
        "best_hour": "",
        "quiet_start": "21",
        "quiet_end": "9",
    }
    return page(
        request,
        "campaigns.html",
        session,
        status_code,
        flash=flash,
        rows=reports["rows"],
        segments=stored,
        form=defaults | (form or {}),
        shown=shown,
        days=CAMPAIGN_DAYS,
        tag=tag if tag in TAGS else "",
        tags=TAGS,
    )


@router.get("/campaigns")
@guarded_page
async def campaign_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    resources: ResourcesDep,
    segment_id: str = "",
    tag: str = "",
) -> Response:
    wanted = {"segment_id": segment_id, "tag": tag}
    return await _campaign_page(request, session, settings, resources, wanted)


def campaigns_url(**_: object) -> str:
    return f"{PATH}/campaigns"


def _schedule(form: dict[str, str]) -> dict[str, Any]:
    schedule: dict[str, Any] = {"timezone": form.get("timezone") or "UTC"}
    if form.get("send_at"):
        # A datetime-local field: the operator's wall time in the campaign's zone.
        try:
            local = datetime.fromisoformat(form["send_at"])
            zone = ZoneInfo(schedule["timezone"])
        except (ValueError, KeyError, OSError, ZoneInfoNotFoundError):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                "send at: a date and time, and timezone: an IANA zone such as Europe/Berlin",
            ) from None
        schedule["send_at"] = local.replace(tzinfo=zone) if local.tzinfo is None else local
    if form.get("best_hour"):
        schedule["send_time"] = "best_hour"
    if form.get("quiet"):
        schedule["quiet_hours"] = {
            "start": number(form.get("quiet_start", ""), 21, 0, 23),
            "end": number(form.get("quiet_end", ""), 9, 0, 23),
        }
    return schedule


@router.post("/campaigns")
@guarded_action(back=campaigns_url)
async def create_campaign(
    request: Request, session: SessionDep, settings: SettingsDep, resources: ResourcesDep
) -> Response:
    form = await action_form(request, session, "create campaigns")
    channels = [c for c in ("whatsapp", "sms") if form.get(c)]
    holdout = number(form.get("holdout", ""), 10, 0, 90) / 100
    if form.get("preview"):
        rendered = await admin.preview(
            model(
                admin.Preview,
                kind="campaign",
                product=form.get("product"),
                name=form.get("name"),
                discount_percent=form.get("discount"),
            ),
            session.caller,
            settings,
            resources,
            warehouse(resources),
        )
        return await _campaign_page(request, session, settings, resources, form, rendered)
    try:
        wanted = model(
            campaigns.CampaignRequest,
            name=form.get("name"),
            segment_id=form.get("segment_id"),
            product=form.get("product"),
            discount_percent=form.get("discount"),
            channels=channels or None,
            holdout_share=holdout,
            schedule=_schedule(form),
        )
    except HTTP_ANSWERS as answer:  # the form again, as typed, with the reasons
        exc = as_http(answer)
        text = explained(exc.status_code, detail_of(exc))
        flash = {"kind": "error", "text": text}
        return await _campaign_page(
            request, session, settings, resources, form, None, exc.status_code, flash
        )
    created = await campaigns.create_campaign(wanted, session.caller, warehouse(resources))
    when = created.send_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return redirect(
        request,
        f"{PATH}/campaigns/{created.campaign_id}",
        "ok",
        f"Campaign scheduled for {when}.",
    )


@router.get("/campaigns/{campaign_id}")
@guarded_page
async def campaign(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    resources: ResourcesDep,
    campaign_id: str,
) -> Response:
    campaign_id = checked_id(campaign_id, "campaign", 32)
    clickhouse = warehouse(resources)
    report = await campaigns.get_campaign(campaign_id, session.caller, clickhouse, settings)
    summary = await asyncio.to_thread(
        summaries.get_campaign_summary, session.caller, clickhouse, settings, campaign_id
    )
    history = None
    if session.can_act:  # the audit log is admin-only in the API too
        rows = await asyncio.to_thread(read_log, clickhouse, None, None, 2000)
        history = [r for r in rows if r["detail"] == campaign_id]
    return page(request, "campaign.html", session, report=report, summary=summary, history=history)


@router.post("/campaigns/{campaign_id}/cancel")
@guarded_action(back=lambda campaign_id="", **_: f"{PATH}/campaigns/{campaign_id}")
async def cancel(
    request: Request, session: SessionDep, resources: ResourcesDep, campaign_id: str
) -> Response:
    campaign_id = checked_id(campaign_id, "campaign", 32)
    await action_form(request, session, "cancel campaigns")
    await campaigns.cancel_campaign(campaign_id, session.caller, warehouse(resources))
    return redirect(
        request,
        f"{PATH}/campaigns/{campaign_id}",
        "ok",
        "Campaign cancelled: nothing more goes out.",
    )
