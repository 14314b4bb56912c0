"""Pages, forms and feedback for the console: Jinja2 templates (autoescaped), the
pages' security headers, flash messages across a redirect, and the guards every
action passes (a same-origin POST, the session's CSRF token, an admin session).

Errors reach the operator as a sentence on the page, never as a trace.
"""

import functools
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from clickhouse_connect.driver.client import Client
from fastapi import HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api.console.session import (
    PATH,
    Session,
    console_settings,
    same_origin,
    signing_key,
    token_matches,
)
from api.deps import get_clickhouse
from api.errors import HTTP_ANSWERS, as_http
from api.resources import Resources

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
FLASH_COOKIE = "if_console_flash"

# Scripts and styles from this origin only: no inline code, no inline style attributes.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
READ_ONLY = (
    "This session was opened with a read key: it can see everything but change nothing. "
    "Sign in with an admin key to {what}."
)
BAD_FORM = (
    "This form has expired or did not come from this console (its security token did not "
    "match). Reload the page and try again."
)


class Refused(Exception):
    """An action the console will not take, with the sentence saying why."""

    def __init__(self, message: str, status_code: int = status.HTTP_403_FORBIDDEN) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def _flash_mac(request: Request, text: str) -> str:
    key = signing_key(request.app.state.settings, console_settings(request))
    return hmac.new(key, f"flash\x1f{text}".encode(), hashlib.sha256).hexdigest()[:32]


def take_flash(request: Request) -> dict[str, str] | None:
    value = request.cookies.get(FLASH_COOKIE)
    if not value:
        return None
    mac, _, body = value.partition(".")
    if not hmac.compare_digest(mac, _flash_mac(request, body)):
        return None
    try:
        found = orjson.loads(bytes.fromhex(body))
        return {"kind": str(found["kind"]), "text": str(found["text"])}
    except (ValueError, KeyError, TypeError):
        return None


def page(
    request: Request,
    template: str,
    session: Session | None,
    status_code: int = 200,
    flash: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    shown = flash or take_flash(request)
    body = TEMPLATES.get_template(template).render(
        session=session, flash=shown, path=request.url.path, base=PATH, **context
    )
    response = HTMLResponse(body, status_code, headers=PAGE_HEADERS)
    if request.cookies.get(FLASH_COOKIE):
        response.delete_cookie(FLASH_COOKIE, path=PATH)
    return response


def redirect(request: Request, to: str, kind: str = "", text: str = "") -> RedirectResponse:
    """Post/Redirect/Get, with a message for the next page."""
    response = RedirectResponse(to, status.HTTP_303_SEE_OTHER)
    if text:
        body = orjson.dumps({"kind": kind, "text": text}).hex()
        response.set_cookie(
            FLASH_COOKIE,
            f"{_flash_mac(request, body)}.{body}",
            max_age=60,
            path=PATH,
            httponly=True,
            secure=request.url.scheme == "https",
            samesite="strict",
        )
    return response


async def form_of(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (the last value of each); the body is capped by the route."""
    body = await request.body()
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise Refused("The form was not valid text.", status.HTTP_400_BAD_REQUEST) from None
    return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=200))


async def action_form(request: Request, session: Session, what: str) -> dict[str, str]:
    """The form of an action, once it proved it came from this console and may act."""
    if not same_origin(request):
        raise Refused(BAD_FORM)
    form = await form_of(request)
    if not token_matches(session.csrf, form.get("csrf")):
        raise Refused(BAD_FORM)
    if not session.can_act:
        raise Refused(READ_ONLY.format(what=what))
    return form


def warehouse(resources: Resources) -> Client:
    return get_clickhouse(resources)  # raises when it is down: a 503 (api/errors.py)


def detail_of(exc: HTTPException) -> str:
    """An API error as a sentence: 422 details are lists of field errors."""
    detail = exc.detail
    if isinstance(detail, list):
        parts = []
        for error in detail:
            if isinstance(error, dict):
                where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
                parts.append(f"{where}: {error.get('msg', '')}" if where else error.get("msg", ""))
        return "; ".join(parts) or "the request was not valid"
    if isinstance(detail, dict):
        return str(detail.get("message") or detail.get("reason") or detail)
    return str(detail)


def explained(status_code: int, detail: str) -> str:
    if status_code == status.HTTP_503_SERVICE_UNAVAILABLE:
        return f"A part of intentflow is unavailable right now ({detail}). Try again shortly."
    if status_code == status.HTTP_404_NOT_FOUND:
        return f"Not found: {detail}."
    if status_code == status.HTTP_422_UNPROCESSABLE_CONTENT:
        return f"Please check the form: {detail}."
    return detail[:1:].upper() + detail[1:] + "."


def number(text: str, default: int, low: int, high: int) -> int:
    """A number typed into a form or a URL, within bounds; ``default`` when it is not one."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        return default
    return min(max(int(text), low), high)


def checked_id(value: str, what: str = "shopper", limit: int = 256) -> str:
    """An id from the path: a page saying so, not a validation error, when it cannot be one."""
    if not value or len(value) > limit:
        raise Refused(f"No such {what}: an id has 1 to {limit} characters.", 404)
    return value


def with_query(path: str, **params: Any) -> str:
    clean = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{path}?{urlencode(clean)}" if clean else path


Handler = Callable[..., Awaitable[Response]]


# How a guarded handler answers a failure: (request, session, status, sentence, its kwargs).
Failed = Callable[[Request, Any, int, str, dict[str, Any]], Response]


def _guarded(handler: Handler, what: str, failed: Failed, fault: str) -> Handler:
    """Refusals become a 403 page; an HTTP answer ≥ 400 or a fault becomes ``failed``."""

    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> Response:
        request: Request = kwargs["request"]
        session = kwargs.get("session")
        try:
            return await handler(*args, **kwargs)
        except Refused as exc:
            return page(request, "error.html", session, exc.status_code, message=exc.message)
        except HTTP_ANSWERS as answer:
            exc = as_http(answer)
            if exc.status_code < 400:
                raise
            text = explained(exc.status_code, detail_of(exc))
            return failed(request, session, exc.status_code, text, kwargs)
        except Exception:
            log.exception("console %s %s failed", what, request.url.path)
            return failed(request, session, 500, fault, kwargs)

    return wrapper


def guarded_page(handler: Handler) -> Handler:
    """A page: a failure underneath is shown as a sentence, with the status it had."""

    def shown(request: Request, session: Any, status_code: int, text: str, _: dict) -> Response:
        return page(request, "error.html", session, status_code, message=text)

    fault = "Something went wrong on our side; it has been logged. Try again shortly."
    return _guarded(handler, "page", shown, fault)


def guarded_action(back: Callable[..., str]) -> Callable[[Handler], Handler]:
    """An action: refused with a 403 page; a failure underneath goes back as a message."""

    def sent_back(
        request: Request, _session: Any, _status: int, text: str, kwargs: dict
    ) -> Response:
        return redirect(request, back(**kwargs), "error", text)

    fault = "That did not work because of a fault on our side; it has been logged."
    return lambda handler: _guarded(handler, "action", sent_back, fault)
