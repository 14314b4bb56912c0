"""Console sessions: an admin or read key exchanged for a signed, expiring cookie.

The cookie holds no secret: the key's scope, the key's SHA-256 (as ``Caller``
does), a random session id and its issue and expiry times, signed with
HMAC-SHA256 under the console's session secret. Every request re-checks the
signature, the expiry, and that the key is still configured for its scope, so
removing a key from the settings ends its sessions at once.

CSRF: every form carries a token that is an HMAC of the session id (a
pre-session nonce for the sign-in form), checked in constant time on every POST;
the cookie is also SameSite=Strict and POSTs from another origin are refused.
"""

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Annotated

import orjson
from fastapi import Depends, HTTPException, Request, status
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.auth import Caller, Scope
from api.deps import SettingsDep
from api.settings import ApiSettings

COOKIE = "if_console"
PRE_COOKIE = "if_console_pre"  # the sign-in form's nonce, before there is a session
PATH = "/console"
CONSOLE_SCOPES = (Scope.ADMIN, Scope.READ)


class ConsoleSettings(BaseSettings):
    """``INTENTFLOW_CONSOLE_*``. Without a session secret, one is derived from the PII
    master key (HMAC with a label of its own): sessions then survive restarts and work
    across API processes with no new setting to deploy."""

    model_config = SettingsConfigDict(env_prefix="INTENTFLOW_CONSOLE_", extra="ignore")
    session_secret: SecretStr | None = None
    session_ttl_s: int = Field(default=8 * 3600, ge=60, le=7 * 86_400)


@dataclass(frozen=True, slots=True)
class Session:
    scope: Scope
    key_hash: str
    sid: str
    issued_at: int
    expires_at: int
    csrf: str

    @property
    def caller(self) -> Caller:
        return Caller(scope=self.scope, key_hash=self.key_hash)

    @property
    def can_act(self) -> bool:
        return self.scope is Scope.ADMIN


def console_settings(request: Request) -> ConsoleSettings:
    state = request.app.state
    found = getattr(state, "console_settings", None)
    if found is None:
        found = state.console_settings = ConsoleSettings()
    return found


def signing_key(settings: ApiSettings, console: ConsoleSettings) -> bytes:
    if console.session_secret is not None:
        return hashlib.sha256(console.session_secret.get_secret_value().encode()).digest()
    master = settings.pii_master_key.get_secret_value().encode()
    return hmac.new(master, b"intentflow console session v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, label: str, data: str) -> str:
    return _b64(hmac.new(key, f"{label}\x1f{data}".encode(), hashlib.sha256).digest())


def issue(key: bytes, scope: Scope, key_hash: str, ttl_s: int, now: float | None = None) -> str:
    """A signed session cookie value."""
    issued = int(time.time() if now is None else now)
    payload = _b64(
        orjson.dumps(
            {
                "s": scope.value,
                "k": key_hash,
                "sid": secrets.token_hex(16),
                "iat": issued,
                "exp": issued + ttl_s,
            }
        )
    )
    return f"{payload}.{_mac(key, 'session', payload)}"


def verify(
    key: bytes, settings: ApiSettings, value: str, now: float | None = None
) -> Session | None:
    """The session in a cookie value; None when forged, malformed, expired or its key is gone."""
    payload, _, signature = value.partition(".")
    if not payload or not hmac.compare_digest(signature, _mac(key, "session", payload)):
        return None
    try:
        data = orjson.loads(_unb64(payload))
        scope = Scope(data["s"])
        key_hash, sid = str(data["k"]), str(data["sid"])
        issued, expires = int(data["iat"]), int(data["exp"])
    except (ValueError, KeyError, TypeError):
        return None
    if scope not in CONSOLE_SCOPES or (time.time() if now is None else now) >= expires:
        return None
    configured = getattr(settings, f"{scope.value}_key_hashes")
    if not any(hmac.compare_digest(key_hash, h) for h in configured):
        return None
    return Session(scope, key_hash, sid, issued, expires, _mac(key, "csrf", sid))


def sign_in_token(key: bytes, nonce: str) -> str:
    return _mac(key, "sign-in", nonce)


def new_nonce() -> str:
    return secrets.token_hex(16)


def token_matches(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), given.encode())


def cookie_options(request: Request, max_age: int) -> dict:
    return {
        "max_age": max_age,
        "path": PATH,
        "httponly": True,
        "secure": request.url.scheme == "https",
        "samesite": "strict",
    }


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from another origin."""
    origin = request.headers.get("origin")
    if origin is None:  # not sent by every browser on same-origin form posts
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


class SignInRequired(HTTPException):
    def __init__(self) -> None:
        super().__init__(status.HTTP_303_SEE_OTHER, "sign in", {"Location": f"{PATH}/signin"})


def current_session(request: Request, settings: SettingsDep) -> Session:
    """The request's session, or a redirect to the sign-in page."""
    value = request.cookies.get(COOKIE)
    if value:
        key = signing_key(settings, console_settings(request))
        found = verify(key, settings, value)
        if found is not None:
            return found
    raise SignInRequired()


SessionDep = Annotated[Session, Depends(current_session)]
