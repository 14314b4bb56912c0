"""``POST /v1/track``: the collector. Validates events and puts them on ``telemetry.raw``.

Hot path: the body is read raw and parsed once with orjson (no FastAPI body
model), every valid event is queued on the producer before any send is awaited,
and the answer is written with orjson. A 202 means Kafka acknowledged every
accepted event.
"""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from api.auth import Scope, TrackCaller
from api.deps import ResourcesDep, SettingsDep
from api.privacy.consent import master_key, protect_consents
from api.privacy.holds import split_held
from api.privacy.traits import pseudonymise_ids, redact_events, seal_identity_traits
from api.ratelimit import take_or_refuse
from api.resources import Resources
from api.routing import GuardedRoute
from api.settings import ApiSettings
from schemas.events import SERVER_EVENTS, Event, EventError, parse_event
from schemas.topics import TELEMETRY_RAW

router = APIRouter(prefix="/v1", tags=["collector"], route_class=GuardedRoute)

# text/plain is what navigator.sendBeacon can send cross-origin without a preflight.
JSON_MEDIA_TYPES = ("application/json", "text/plain")


class FieldError(BaseModel):
    loc: list[str | int] = Field(description='Path to the field, e.g. ["properties", "price"].')
    msg: str


class RejectedEvent(BaseModel):
    index: int = Field(description="Position of the event in the batch (0 for a single event).")
    errors: list[FieldError]


class PendingConsent(BaseModel):
    event_id: str
    reason: str = Field(description="phone_change_needs_verification (docs/dispatch.md).")


class TrackAccepted(BaseModel):
    accepted: int = Field(description="Events acknowledged by Kafka.")
    rejected: list[RejectedEvent]
    pending: list[PendingConsent] = Field(
        default_factory=list,
        description="Consents not applied: a write key cannot replace a user's phone.",
    )


class ErrorMessage(BaseModel):
    detail: str


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Resolve ``#/$defs`` references so the schema can sit inside the OpenAPI document."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


def _request_body_schema() -> dict[str, Any]:
    event = inline_refs(Event.model_json_schema())
    batch = {
        "title": "TrackBatch",
        "type": "object",
        "properties": {"batch": {"type": "array", "items": event, "maxItems": 500}},
        "required": ["batch"],
    }
    return {"oneOf": [event, batch]}


_BODY_SCHEMA = _request_body_schema()
_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "description": 'One event, or `{"batch": [...]}` of up to 500 events; at most '
        "1 MiB. Standard events' properties: `schemas/jsonschema/<name>.json`.",
        "content": {media_type: {"schema": _BODY_SCHEMA} for media_type in JSON_MEDIA_TYPES},
    }
}


def _error(code: int, detail: str, headers: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(code, detail=detail, headers=headers)


def _events_in(payload: Any, max_events: int) -> list[Any]:
    if isinstance(payload, dict) and "batch" in payload:
        batch = payload["batch"]
        if not isinstance(batch, list):
            raise _error(status.HTTP_422_UNPROCESSABLE_CONTENT, "batch must be a JSON array")
        if len(batch) > max_events:
            raise _error(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"batch has {len(batch)} events; at most {max_events} per request",
            )
        return batch
    if isinstance(payload, dict):
        return [payload]
    raise _error(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        'body must be one event (a JSON object) or {"batch": [...]}',
    )


def _validate(
    raws: list[Any], scope: Scope, received_at: datetime, ip: str | None, max_age: timedelta
) -> tuple[list[Event], list[dict[str, Any]]]:
    events: list[Event] = []
    rejected: list[dict[str, Any]] = []
    may_send_server_events = scope is Scope.SERVER
    for index, raw in enumerate(raws):
        try:
            event = parse_event(
                raw,
                received_at=received_at,
                ip=ip,
                max_age=max_age,
                from_server=may_send_server_events,
            )
        except EventError as exc:
            rejected.append({"index": index, "errors": exc.errors})
            continue
        if event.name in SERVER_EVENTS and not may_send_server_events:
            msg = f"{event.name} is a server-side event: send it with a server key"
            rejected.append({"index": index, "errors": [{"loc": ["name"], "msg": msg}]})
            continue
        events.append(event)
    return events, rejected


async def protect_and_publish(
    events: list[Event], scope: Scope, settings: ApiSettings, resources: Resources
) -> tuple[list[Event], list[dict[str, Any]]]:
    """Make events safe to keep and put them on telemetry.raw; returns once Kafka acknowledged.

    Returns the events produced and the consents left pending. Raises
    ``ConsentStoreUnavailable`` or ``BrokerUnavailable``: then nothing counts as accepted
    (events of shoppers without a consent may already be on the topic: the client
    resends with the same ids and the duplicates are dropped downstream).
    Shared by every route that collects events (``/v1/track``, ``/segment/v1/*``).
    """
    master = master_key(settings.pii_master_key.get_secret_value())
    # No e-mail or phone in clear past this point (api/privacy/traits.py): ids first,
    # since the consent store keys by them.
    events = pseudonymise_ids(events, master)
    held, free = split_held(events)
    if not held:
        free = redact_events(seal_identity_traits(free, master), master)
        await _publish(resources, free)
        return free, []
    # The shoppers with a consent here wait, all their events in order: consent is
    # recorded and phones sealed before anything of theirs is produced
    # (docs/dispatch.md). The others' events go while it is written.
    free = redact_events(seal_identity_traits(free, master), master)
    sending = asyncio.ensure_future(_publish(resources, free))
    try:
        held, pending = await protect_consents(
            held, resources, settings, trusted=scope is Scope.SERVER
        )
        held = redact_events(seal_identity_traits(held, master), master)
        await _publish(resources, held)
    finally:
        # Answer only once the other shoppers' events are acknowledged too (or failed).
        await asyncio.wait([sending])
        failed = sending.exception()
    if failed is not None:
        raise failed
    return [*free, *held], pending


async def _publish(resources: Resources, events: list[Event]) -> None:
    await resources.events.publish(
        TELEMETRY_RAW.name, [(event.key.encode(), event.to_json()) for event in events]
    )


@router.post(
    "/track",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TrackAccepted,
    summary="Send one event or a batch",
    description=(
        "Browsers send with a **write key** (`Authorization: Bearer wk_…`, or "
        "`?write_key=` for `navigator.sendBeacon`); store backends with a **server key**, "
        "the only kind allowed to send server-side events (`order_placed`, `price_drop`). "
        "Valid events are accepted and invalid ones reported field by field; 202 means "
        "Kafka acknowledged every accepted event. Rate limits count events per key."
    ),
    responses={
        401: {"model": ErrorMessage, "description": "Missing or invalid key."},
        413: {"model": ErrorMessage, "description": "Body over 1 MiB or over 500 events."},
        415: {"model": ErrorMessage, "description": "Body is not JSON."},
        422: {"model": ErrorMessage, "description": "Body is not parsable JSON of that shape."},
        429: {
            "model": ErrorMessage,
            "description": "The key's event rate limit; retry after `Retry-After` seconds.",
        },
        503: {
            "model": ErrorMessage,
            "description": "Kafka did not acknowledge; nothing of the request is reported "
            "accepted. Retry after `Retry-After` seconds with the same event ids.",
        },
    },
    openapi_extra=_OPENAPI_BODY,
)
async def track(
    request: Request, caller: TrackCaller, settings: SettingsDep, resources: ResourcesDep
) -> Response:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in JSON_MEDIA_TYPES:
        raise _error(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send JSON (Content-Type: application/json)"
        )
    # At most INTENTFLOW_MAX_BODY_BYTES: enforced while it is read (api/routing.py, 413).
    body = await request.body()
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _error(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"body is not valid JSON: {exc}"
        ) from None
    raws = _events_in(payload, settings.max_batch_events)

    take_or_refuse(resources.rate_limits, caller.key_hash, len(raws))

    # A store backend's address says nothing about the shopper: keep only browsers'.
    ip = request.client.host if request.client and caller.scope is Scope.WRITE else None
    max_age = timedelta(days=settings.max_event_age_days)
    events, rejected = _validate(raws, caller.scope, datetime.now(UTC), ip, max_age)
    # The consent store or the event log being down: a 503 and nothing accepted
    # (api/errors.py); the client resends with the same ids.
    events, pending = await protect_and_publish(events, caller.scope, settings, resources)
    return Response(
        orjson.dumps(
            {
                "accepted": len(events),
                "rejected": rejected,
                **({"pending": pending} if pending else {}),
            }
        ),
        status_code=status.HTTP_202_ACCEPTED,
        media_type="application/json",
    )
