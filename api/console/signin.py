"""Signing in and out, and the console's static files."""

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response

from api.auth import Scope, authenticate
from api.console.render import BAD_FORM, form_of, page, redirect
from api.console.session import (
    CONSOLE_SCOPES,
    COOKIE,
    PATH,
    PRE_COOKIE,
    SessionDep,
    console_settings,
    cookie_options,
    issue,
    new_nonce,
    same_origin,
    sign_in_token,
    signing_key,
    token_matches,
    verify,
)
from api.deps import SettingsDep
from api.routing import GuardedRoute

router = APIRouter(include_in_schema=False, route_class=GuardedRoute)

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}
ASSET_HEADERS = {"Cache-Control": "public, max-age=300"}
PRE_TTL_S = 3600
ARTICLE = {Scope.ADMIN: "an", Scope.READ: "a"}


def _sign_in_page(request: Request, settings, message: str = "", status_code: int = 200):
    key = signing_key(settings, console_settings(request))
    nonce = request.cookies.get(PRE_COOKIE) or new_nonce()
    response = page(
        request,
        "signin.html",
        None,
        status_code,
        flash={"kind": "error", "text": message} if message else None,
        csrf=sign_in_token(key, nonce),
    )
    response.set_cookie(PRE_COOKIE, nonce, **cookie_options(request, PRE_TTL_S))
    return response


@router.get("/signin")
async def sign_in_form(request: Request, settings: SettingsDep) -> Response:
    value = request.cookies.get(COOKIE)
    key = signing_key(settings, console_settings(request))
    if value and verify(key, settings, value) is not None:
        return RedirectResponse(f"{PATH}/", status.HTTP_303_SEE_OTHER)
    return _sign_in_page(request, settings)


@router.post("/signin")
async def sign_in(request: Request, settings: SettingsDep) -> Response:
    key = signing_key(settings, console_settings(request))
    form = await form_of(request)
    nonce = request.cookies.get(PRE_COOKIE, "")
    if not same_origin(request) or not nonce:
        return _sign_in_page(request, settings, BAD_FORM, status.HTTP_403_FORBIDDEN)
    if not token_matches(sign_in_token(key, nonce), form.get("csrf")):
        return _sign_in_page(request, settings, BAD_FORM, status.HTTP_403_FORBIDDEN)
    try:
        caller = authenticate(settings, CONSOLE_SCOPES, form.get("key", "").strip() or None)
    except HTTPException:
        text = "That key was not accepted. The console takes an admin key or a read key."
        return _sign_in_page(request, settings, text, status.HTTP_401_UNAUTHORIZED)
    ttl = console_settings(request).session_ttl_s
    response = redirect(
        request,
        f"{PATH}/",
        "ok",
        f"Signed in with {ARTICLE[caller.scope]} {caller.scope.value} key.",
    )
    response.set_cookie(
        COOKIE, issue(key, caller.scope, caller.key_hash, ttl), **cookie_options(request, ttl)
    )
    response.delete_cookie(PRE_COOKIE, path=PATH)
    return response


@router.post("/signout")
async def sign_out(request: Request, session: SessionDep) -> Response:
    form = await form_of(request)
    if not same_origin(request) or not token_matches(session.csrf, form.get("csrf")):
        return page(request, "error.html", session, status.HTTP_403_FORBIDDEN, message=BAD_FORM)
    response = RedirectResponse(f"{PATH}/signin", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE, path=PATH)
    return response


@router.get("/static/{name}")
async def asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
    return Response((STATIC / name).read_bytes(), headers=ASSET_HEADERS, media_type=media_type)
