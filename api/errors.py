"""Error answers that cannot fail, whatever the input was, and the one mapping of
outages to HTTP.

A part that is down (the warehouse, the event log, the consent store) is the
caller's 503 with ``Retry-After``, written once here: routes let the exception
through and the application's handler answers ``{"detail": "..."}``. Wrappers
that render errors their own way (Segment's routes, the console) ask ``as_http``.

FastAPI's own 422 echoes each error's ``input`` and ``ctx`` through
``json.dumps(allow_nan=False)``: a body holding ``NaN``, ``Infinity`` or
``1e309`` (Python's json reads all three) made the 422 itself a 500, and the
server then dropped the keep-alive connection. Here every value is made
JSON-safe first: non-finite floats become the strings "NaN", "Infinity" and
"-Infinity", integers too long to print are described, long texts cut.
"""

import logging
import math
from typing import Any

from clickhouse_connect.driver.exceptions import ClickHouseError
from fastapi import FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.privacy.consent import ConsentStoreUnavailable
from api.producer import BrokerUnavailable

log = logging.getLogger(__name__)

_MAX_TEXT = 200
_MAX_ITEMS = 20
_MAX_DEPTH = 4
_MAX_INT_BITS = 64

# Seconds a client waits before retrying a part that did not answer.
WAREHOUSE_RETRY_AFTER_S = 5
CONSENT_STORE_RETRY_AFTER_S = 2

# A socket error under a route is the warehouse's connection (the only blocking I/O
# routes do themselves); the broker's errors arrive as BrokerUnavailable.
OUTAGES: tuple[type[Exception], ...] = (
    ClickHouseError,
    OSError,
    BrokerUnavailable,
    ConsentStoreUnavailable,
)
# What a wrapper that renders errors itself catches: the HTTP errors and the outages.
HTTP_ANSWERS: tuple[type[Exception], ...] = (HTTPException, *OUTAGES)


def _unavailable(detail: str, retry_after_s: float) -> HTTPException:
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"{detail}; retry",
        headers={"Retry-After": str(retry_after_s)},
    )


def as_http(exc: Exception) -> HTTPException:
    """``exc`` as the answer a client gets: an HTTPException as it is, an outage its 503."""
    if isinstance(exc, HTTPException):
        return exc
    if isinstance(exc, BrokerUnavailable):
        # Nothing of the request counts as done: resending it (same ids) is safe.
        return _unavailable("not accepted: the event log is unavailable", exc.retry_after_s)
    if isinstance(exc, ConsentStoreUnavailable):
        return _unavailable(
            f"not accepted: the consent store is unavailable ({exc})", CONSENT_STORE_RETRY_AFTER_S
        )
    if isinstance(exc, OUTAGES):
        return _unavailable(f"warehouse unavailable: {type(exc).__name__}", WAREHOUSE_RETRY_AFTER_S)
    raise TypeError(f"not an HTTP answer: {type(exc).__name__}") from exc


async def outage(request: Request, exc: Exception) -> JSONResponse:
    """The application's answer to a part that is down: 503, ``Retry-After``, a reason."""
    answer = as_http(exc)
    return JSONResponse({"detail": answer.detail}, answer.status_code, headers=answer.headers)


def json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` as something ``json.dumps(allow_nan=False)`` always encodes, bounded in size."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value if len(value) <= _MAX_TEXT else value[:_MAX_TEXT] + "…"
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            return f"an integer of {value.bit_length()} bits"
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if depth >= _MAX_DEPTH:
        return "…"
    if isinstance(value, dict):
        items = list(value.items())[:_MAX_ITEMS]
        return {str(json_safe(k, depth + 1)): json_safe(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item, depth + 1) for item in list(value)[:_MAX_ITEMS]]
    return json_safe(str(value), depth + 1)


def _error(error: Any) -> dict[str, Any]:
    if not isinstance(error, dict):
        return {"type": "value_error", "loc": [], "msg": json_safe(str(error))}
    # Every key FastAPI would show (and a route's own, e.g. "unknown_words"), made safe.
    rendered = {str(key): json_safe(value) for key, value in error.items()}
    rendered["type"] = json_safe(error.get("type", "value_error"))
    rendered["loc"] = json_safe(list(error.get("loc", ())))
    rendered["msg"] = json_safe(error.get("msg", ""))
    return rendered


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with ``{"detail": [{"type", "loc", "msg", "input", ...}]}`` as FastAPI's, never a 500."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    try:
        detail = [_error(error) for error in errors]
        return JSONResponse({"detail": detail}, status.HTTP_422_UNPROCESSABLE_CONTENT)
    except Exception as failure:  # the last resort must not be a 500
        log.warning("a 422 could not be rendered in full (%s)", type(failure).__name__)
        return JSONResponse(
            {"detail": [{"type": "value_error", "loc": [], "msg": "invalid request"}]},
            status.HTTP_422_UNPROCESSABLE_CONTENT,
        )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    for kind in OUTAGES:
        app.add_exception_handler(kind, outage)
