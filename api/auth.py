"""Who is calling: API keys and their scopes, as dependencies routes declare.

Keys are configured only as SHA-256 hashes (``INTENTFLOW_<SCOPE>_KEY_HASHES``)
and compared in constant time. A route states the scopes it accepts:

    @router.get("/v1/metrics/funnel")
    async def funnel(caller: ReadCaller) -> ...

Write keys are public by nature (they ship in storefront pages) and may only
send browser events; server, read and admin keys are secrets and are taken from
the ``Authorization: Bearer`` header only, never from a URL.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.dependencies.models import Dependant
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from api.deps import SettingsDep
from api.settings import ApiSettings
from schemas.keys import hash_api_key, key_matches


class Scope(StrEnum):
    WRITE = "write"  # browsers: send events
    SERVER = "server"  # store backends: send events, including server-side ones
    READ = "read"  # dashboards: metrics
    ADMIN = "admin"  # operators: consent, erasure, campaigns


@dataclass(frozen=True, slots=True)
class Caller:
    scope: Scope
    # The key's SHA-256: names the key (rate limits, audit) without holding the secret.
    key_hash: str


BEACON_KEY_PARAM = "write_key"

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key: `Authorization: Bearer <key>`.",
)
_beacon_key = APIKeyQuery(
    name=BEACON_KEY_PARAM,
    auto_error=False,
    scheme_name="BeaconWriteKey",
    description="A write key in the URL, for `navigator.sendBeacon`, which cannot set "
    "headers. Accepted for write keys only.",
)

BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
BeaconKeyDep = Annotated[str | None, Depends(_beacon_key)]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=message, headers={"WWW-Authenticate": "Bearer"}
    )


def _configured_hashes(settings: ApiSettings, scope: Scope) -> frozenset[str]:
    return getattr(settings, f"{scope.value}_key_hashes")


def authenticate(
    settings: ApiSettings,
    scopes: tuple[Scope, ...],
    bearer: str | None,
    beacon_key: str | None = None,
) -> Caller:
    """The caller's scope among ``scopes``; 401 when the key is missing or not one of them."""
    if bearer is not None:
        key, candidates = bearer, scopes
    elif beacon_key is not None:
        key, candidates = beacon_key, tuple(s for s in scopes if s is Scope.WRITE)
    else:
        raise _unauthorized("missing API key (Authorization: Bearer <key>)")
    for scope in candidates:
        if key_matches(key, _configured_hashes(settings, scope)):
            return Caller(scope=scope, key_hash=hash_api_key(key))
    allowed = " or ".join(s.value for s in candidates) or "no"
    raise _unauthorized(f"invalid API key: this endpoint takes a {allowed} key")


@dataclass(frozen=True, slots=True)
class KeyRequirement:
    scopes: tuple[Scope, ...]
    beacon: bool


def require(*scopes: Scope, beacon: bool = False) -> Callable[..., Awaitable[Caller]]:
    """A dependency admitting keys of ``scopes``; ``beacon`` also takes a write key from the URL."""
    if beacon:

        async def caller_with_beacon(
            settings: SettingsDep, bearer: BearerDep, beacon_key: BeaconKeyDep
        ) -> Caller:
            token = bearer.credentials if bearer else None
            return authenticate(settings, scopes, token, beacon_key)

        caller_with_beacon.key_requirement = KeyRequirement(scopes, beacon)  # type: ignore[attr-defined]
        return caller_with_beacon

    async def caller(settings: SettingsDep, bearer: BearerDep) -> Caller:
        return authenticate(settings, scopes, bearer.credentials if bearer else None)

    caller.key_requirement = KeyRequirement(scopes, beacon)  # type: ignore[attr-defined]
    return caller


def key_requirement(dependant: Dependant) -> KeyRequirement | None:
    """The key a route's dependencies require (``require(...)``), if any."""
    for dependency in dependant.dependencies:
        found: Any = getattr(dependency.call, "key_requirement", None)
        if isinstance(found, KeyRequirement):
            return found
        found = key_requirement(dependency)
        if found is not None:
            return found
    return None


WriteCaller = Annotated[Caller, Depends(require(Scope.WRITE))]
ServerCaller = Annotated[Caller, Depends(require(Scope.SERVER))]
ReadCaller = Annotated[Caller, Depends(require(Scope.READ))]
AdminCaller = Annotated[Caller, Depends(require(Scope.ADMIN))]
# Reports: analysts and operators alike.
ReportCaller = Annotated[Caller, Depends(require(Scope.READ, Scope.ADMIN))]
# The collector: browsers (also by beacon) and store backends.
TrackCaller = Annotated[Caller, Depends(require(Scope.WRITE, Scope.SERVER, beacon=True))]


async def authenticate_request(
    settings: ApiSettings, requirement: KeyRequirement, request: Request
) -> Caller:
    """``authenticate`` from the request's headers (and URL, for beacons) alone."""
    bearer = await _bearer(request)
    beacon_key = await _beacon_key(request) if requirement.beacon else None
    token = bearer.credentials if bearer else None
    return authenticate(settings, requirement.scopes, token, beacon_key)
