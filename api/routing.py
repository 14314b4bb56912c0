"""The route class of every router: the caller's key, then the body's size, then the route.

FastAPI reads and parses a route's body (a pydantic body model) before it
resolves the route's dependencies, its key among them: without this, a caller
with no key could make the API read and parse megabytes before its 401 (an
11 MiB body of a million keys cost 2.5 s of CPU and 120 MiB). ``GuardedRoute``
checks the key the route requires (``api.auth.require``) from the headers alone,
then holds the body to its route class's cap — from Content-Length before
reading, and while it streams in (chunked) — and only then runs FastAPI's
handler. The route's own ``require(...)`` dependency still runs and gives it its
``Caller``. Every router is ``APIRouter(..., route_class=GuardedRoute)``.
"""

from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request, Response, status
from fastapi.routing import APIRoute
from starlette.types import Message, Receive

from api.auth import authenticate_request, key_requirement
from api.deps import get_settings
from api.settings import ApiSettings

# The body cap of each class of route (the collector's is a setting).
WEBHOOK_MAX_BODY_BYTES = 64 * 1024
# Admin, segment, campaign, token requests are small JSON documents; GETs have none.
API_MAX_BODY_BYTES = 64 * 1024
_COLLECTOR_PATH = "/v1/track"
# Segment's HTTP API (api/routes/segment.py): the collector's cap on the wire; Segment's
# own 500 KB per batch is checked on the decompressed body there (400, as Segment).
_SEGMENT_PREFIX = "/segment/"
_WEBHOOK_PREFIX = "/v1/webhooks/"


def max_body_bytes(path: str, settings: ApiSettings) -> int:
    """The body cap of the route at ``path``."""
    if path == _COLLECTOR_PATH or path.startswith(_SEGMENT_PREFIX):
        return settings.max_body_bytes
    if path.startswith(_WEBHOOK_PREFIX):
        return WEBHOOK_MAX_BODY_BYTES
    return API_MAX_BODY_BYTES


def _too_large(limit: int) -> HTTPException:
    return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body exceeds {limit} bytes")


def _declared_over(declared: str | None, limit: int) -> bool:
    if declared is None:
        return False
    text = declared.strip()
    # ASCII digits only; more digits than any cap has is over it (no int() of 5,000 digits).
    if not (text.isascii() and text.isdigit()):
        return False  # the server's HTTP parser refuses these before we see them
    return len(text) > 18 or int(text) > limit


def _capped(receive: Receive, limit: int) -> Receive:
    received = 0

    async def capped_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _too_large(limit)
        return message

    return capped_receive


class GuardedRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()
        requirement = key_requirement(self.dependant)
        path = self.path

        async def guarded(request: Request) -> Response:
            settings = get_settings(request)
            if requirement is not None:
                await authenticate_request(settings, requirement, request)  # 401
            limit = max_body_bytes(path, settings)
            if _declared_over(request.headers.get("content-length"), limit):
                raise _too_large(limit)
            return await handler(Request(request.scope, _capped(request.receive, limit)))

        return guarded
