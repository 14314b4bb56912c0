"""``/segment/v1/*``: Segment's HTTP Tracking API, so Segment and RudderStack SDKs send unchanged.

A client configured with the host ``<API>/segment`` posts here as it would to
Segment: ``/v1/batch`` and the single calls ``/v1/{track,identify,page,screen,
alias,group}`` (and analytics.js's one-letter paths ``/v1/{t,i,p,s,a,g}`` and
``/v1/b``). The mapping to our event contract is pure and lives in
``schemas/segment.py``; from there on, a message is an event like any other:
validated by ``parse_event``, made safe (ids, consents, traits, redaction) and
produced by the collector's own ``protect_and_publish``. ``200 {"success": true}``
only once Kafka acknowledged every accepted event.

Answers are what the SDKs understand: 200 on success (rudder-sdk-python takes any
other status, 202 included, for a failure), and every error a JSON object with
``code`` and ``message``, which both Python SDKs read before they decide not to
retry a 4xx (429 and 5xx are retried, after ``Retry-After``).
"""

import base64
import binascii
import zlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.auth import Caller, Scope, authenticate
from api.deps import ResourcesDep, SettingsDep
from api.errors import HTTP_ANSWERS, as_http
from api.ratelimit import take_or_refuse
from api.resources import Resources
from api.routes.track import inline_refs, protect_and_publish
from api.routing import GuardedRoute
from api.settings import ApiSettings
from schemas.events import SERVER_EVENTS, Event, EventError, parse_event
from schemas.segment import MAX_BATCH_BYTES, REQUEST_MODELS, Skipped, segment_event

_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    413: "too_large",
    429: "rate_limited",
    503: "unavailable",
}


class SegmentRoute(GuardedRoute):
    """GuardedRoute whose errors read as Segment's: ``{"code", "message"}`` (SDKs parse them)."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def segment_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTP_ANSWERS as answer:
                exc = as_http(answer)
                message = exc.detail if isinstance(exc.detail, str) else "invalid request"
                body = {
                    "success": False,
                    "code": _CODES.get(exc.status_code, "error"),
                    "message": message,
                    "detail": message,
                }
                return JSONResponse(body, exc.status_code, headers=exc.headers)

        return segment_errors


router = APIRouter(prefix="/segment/v1", tags=["segment"], route_class=SegmentRoute)


class Rejected(BaseModel):
    index: int
    messageId: str | None = None
    errors: list[dict[str, Any]]


class SegmentAccepted(BaseModel):
    success: bool = Field(description="Always true with a 200, as Segment answers.")
    accepted: int = Field(description="Events acknowledged by Kafka.")
    rejected: list[Rejected] = Field(
        default_factory=list, description="Messages refused, each with its reasons."
    )
    skipped: list[dict[str, Any]] = Field(
        default_factory=list, description='Messages whose `integrations` say `"intentflow": false`.'
    )
    pending: list[dict[str, Any]] = Field(default_factory=list)


class SegmentError(BaseModel):
    success: bool = False
    code: str
    message: str


def _error(code: int, message: str, headers: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(code, detail=message, headers=headers)


def _unauthorized(message: str) -> HTTPException:
    return _error(status.HTTP_401_UNAUTHORIZED, message, {"WWW-Authenticate": "Bearer"})


_SCOPES = (Scope.WRITE, Scope.SERVER)


def _header_key(request: Request) -> str | None:
    """The key from ``Authorization``: Basic (the SDKs: key as user, empty password) or Bearer."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise _unauthorized("malformed basic credentials") from None
        user = decoded.partition(":")[0]
        if user:
            return user
    raise _unauthorized("send the write key as the basic-auth user name (empty password)")


def _decoded(body: bytes, encoding: str | None) -> bytes:
    """The body, gunzipped when sent so, never past Segment's 500 KB (a gzip bomb is a 400)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        data = body
    elif encoding == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            data = inflater.decompress(body, MAX_BATCH_BYTES + 1)
        except zlib.error as exc:
            raise _error(status.HTTP_400_BAD_REQUEST, f"body is not valid gzip: {exc}") from None
        if len(data) <= MAX_BATCH_BYTES and not inflater.eof:
            raise _error(status.HTTP_400_BAD_REQUEST, "body is not valid gzip: truncated")
        if inflater.unused_data:
            raise _error(status.HTTP_400_BAD_REQUEST, "body is not one gzip stream")
    else:
        raise _error(
            status.HTTP_400_BAD_REQUEST, f"Content-Encoding {encoding[:40]!r}: send gzip or none"
        )
    if len(data) > MAX_BATCH_BYTES:
        raise _error(
            status.HTTP_400_BAD_REQUEST, "request exceeds 500 KB (Segment's limit per batch)"
        )
    return data


def _body_caller(settings: ApiSettings, payload: dict[str, Any]) -> Caller:
    """The caller whose key is the body's ``writeKey`` (analytics-python sends it there too)."""
    key = payload.get("writeKey")
    if not isinstance(key, str) or not key:
        raise _unauthorized("missing write key (basic-auth user name, or writeKey in the body)")
    return authenticate(settings, _SCOPES, key)


def _message_id(message: Any) -> str | None:
    found = message.get("messageId") if isinstance(message, dict) else None
    return found if isinstance(found, str) else None


def _events(
    messages: list[Any],
    payload: dict[str, Any],
    call: str | None,
    caller: Caller,
    received_at: datetime,
    ip: str | None,
    max_age: timedelta,
) -> tuple[list[Event], list[dict[str, Any]], list[dict[str, Any]]]:
    events: list[Event] = []
    rejected: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    batch = call is None
    for index, message in enumerate(messages):
        try:
            raw = segment_event(
                message,
                call=call,
                received_at=received_at,
                source=caller.key_hash,
                batch_context=payload.get("context") if batch else None,
                batch_integrations=payload.get("integrations") if batch else None,
                batch_sent_at=payload.get("sentAt") if batch else None,
            )
            if isinstance(raw, Skipped):
                skipped.append(
                    {"index": index, "messageId": _message_id(message), "reason": raw.reason}
                )
                continue
            event = parse_event(raw, received_at=received_at, ip=ip, max_age=max_age)
            if event.name in SERVER_EVENTS and caller.scope is not Scope.SERVER:
                msg = f"{event.name} is a server-side event: send it with a server key"
                raise EventError([{"loc": ["event"], "msg": msg}])
        except EventError as exc:
            rejected.append(
                {"index": index, "messageId": _message_id(message), "errors": exc.errors}
            )
            continue
        events.append(event)
    return events, rejected, skipped


async def _ingest(
    request: Request, settings: ApiSettings, resources: Resources, call: str | None
) -> Response:
    received_at = datetime.now(UTC)
    # A key in the headers is checked before any of the body is read.
    header_key = _header_key(request)
    caller = authenticate(settings, _SCOPES, header_key) if header_key is not None else None
    # At most INTENTFLOW_MAX_BODY_BYTES on the wire (api/routing.py, 413).
    body = _decoded(await request.body(), request.headers.get("content-encoding"))
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _error(status.HTTP_400_BAD_REQUEST, f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise _error(status.HTTP_400_BAD_REQUEST, "body must be a JSON object")
    if caller is None:
        caller = _body_caller(settings, payload)
    if call is None:
        messages = payload.get("batch")
        if not isinstance(messages, list):
            raise _error(status.HTTP_400_BAD_REQUEST, "batch must be a JSON array of messages")
        if len(messages) > settings.max_batch_events:
            raise _error(
                status.HTTP_400_BAD_REQUEST,
                f"batch has {len(messages)} messages; at most {settings.max_batch_events}",
            )
    else:
        messages = [payload]

    take_or_refuse(resources.rate_limits, caller.key_hash, len(messages))

    ip = request.client.host if request.client and caller.scope is Scope.WRITE else None
    max_age = timedelta(days=settings.max_event_age_days)
    events, rejected, skipped = _events(messages, payload, call, caller, received_at, ip, max_age)
    if call is not None and rejected:
        # A single call that cannot be kept: Segment's 400, with the reasons.
        reasons = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}"
            for e in rejected[0]["errors"]
        )
        raise _error(status.HTTP_400_BAD_REQUEST, reasons)
    # The consent store or the event log being down: a 503 and nothing accepted
    # (api/errors.py); the client resends with the same ids.
    events, pending = await protect_and_publish(events, caller.scope, settings, resources)
    answer: dict[str, Any] = {"success": True, "accepted": len(events)}
    for name, items in (("rejected", rejected), ("skipped", skipped), ("pending", pending)):
        if items:
            answer[name] = items
    return Response(
        orjson.dumps(answer), status_code=status.HTTP_200_OK, media_type="application/json"
    )


_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "model": SegmentError,
        "description": "Not JSON, not gzip, over 500 KB, a batch that is not an array, or "
        "(single calls) a message that cannot be kept, with the reasons.",
    },
    401: {"model": SegmentError, "description": "Missing or unknown write or server key."},
    413: {"model": SegmentError, "description": "Body over 1 MiB on the wire."},
    429: {"model": SegmentError, "description": "The key's rate limit; retry after Retry-After."},
    503: {
        "model": SegmentError,
        "description": "Kafka did not acknowledge; nothing counts as accepted. Resend the "
        "same messages (same messageIds) after Retry-After.",
    },
}
_AUTH = (
    "Authenticate as Segment's SDKs do: the write key as the HTTP basic-auth user name with "
    "an empty password, or `writeKey` in the body (`Authorization: Bearer` works too). "
    "Server keys likewise, and only they may send `Order Completed`."
)


def _openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    schema = inline_refs(model.model_json_schema())
    return {
        "requestBody": {
            "required": True,
            "content": {media: {"schema": schema} for media in ("application/json", "text/plain")},
        }
    }


def _add(call: str | None, path: str, name: str, public: bool = True) -> None:
    model = REQUEST_MODELS[call or "batch"]

    async def endpoint(
        request: Request, settings: SettingsDep, resources: ResourcesDep
    ) -> Response:
        return await _ingest(request, settings, resources, call)

    endpoint.__name__ = f"segment_{name}"
    router.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        status_code=status.HTTP_200_OK,
        response_model=SegmentAccepted,
        summary=f"Segment `{call or 'batch'}`" + ("" if public else " (analytics.js path)"),
        description=f"Segment's HTTP Tracking API `/v1/{call or 'batch'}`. {_AUTH}",
        responses=_RESPONSES,
        openapi_extra=_openapi_body(model),
        include_in_schema=public,
    )


_add(None, "/batch", "batch")
_add(None, "/b", "b", public=False)  # analytics.js in batching mode
for _call in ("track", "identify", "page", "screen", "alias", "group"):
    _add(_call, f"/{_call}", _call)
    # analytics.js posts single calls to the first letter of their type.
    _add(_call, f"/{_call[0]}", _call[0], public=False)
