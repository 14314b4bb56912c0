"""Signed, expiring, single-use discount tokens (JWT, HS256, rotation by key id).

Signing and verification take time as data so a replay issues byte-identical
tokens and tests can move the clock. Single use is enforced by whoever redeems
(the API), not here.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import jwt
from pydantic import SecretStr

if TYPE_CHECKING:
    from schemas.settings import CommonSettings

ALGORITHM = "HS256"
ISSUER = "intentflow"


class TokenError(ValueError):
    """A refused token; ``reason`` is machine-readable."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class TokenKeys:
    """The key new tokens are signed with, plus older keys still accepted for verification."""

    current_kid: str
    secrets: Mapping[str, str]

    def __post_init__(self) -> None:
        if self.current_kid not in self.secrets:
            raise ValueError(f"no secret for the current key id {self.current_kid!r}")


def token_keys(
    settings: "CommonSettings", older: Mapping[str, SecretStr] | None = None
) -> TokenKeys:
    """The settings' signing key plus ``older`` ones still accepted (rotation by key id).
    The engine signs with the current key; the API also verifies with the older ones."""
    secrets = {kid: secret.get_secret_value() for kid, secret in (older or {}).items()}
    secrets[settings.token_key_id] = settings.token_secret.get_secret_value()
    return TokenKeys(current_kid=settings.token_key_id, secrets=secrets)


def sign_token(claims: Mapping[str, Any], keys: TokenKeys) -> str:
    """Claims must hold ``jti`` (token id), ``sub`` and ``exp`` (epoch seconds)."""
    for required in ("jti", "sub", "exp"):
        if required not in claims:
            raise ValueError(f"token claims need {required!r}")
    payload = {"iss": ISSUER, **claims}
    return jwt.encode(
        payload,
        keys.secrets[keys.current_kid],
        algorithm=ALGORITHM,
        headers={"kid": keys.current_kid},
    )


def verify_token(token: str, keys: TokenKeys, *, now: datetime) -> dict[str, Any]:
    """Return the claims of a genuine, unexpired token or raise ``TokenError``."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenError("malformed", str(exc)) from None
    if header.get("alg") != ALGORITHM:
        raise TokenError("malformed", f"algorithm {header.get('alg')!r} is not accepted")
    kid = header.get("kid")
    secret = keys.secrets.get(kid) if isinstance(kid, str) else None
    if secret is None:
        raise TokenError("unknown_key", f"key id {kid!r} is not known")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            # Expiry is checked below against the ``now`` we were given.
            options={"verify_exp": False, "require": ["jti", "sub", "exp", "iss"]},
        )
    except jwt.InvalidSignatureError:
        raise TokenError(
            "invalid_signature", "signature does not match: forged or tampered"
        ) from None
    except jwt.PyJWTError as exc:
        raise TokenError("malformed", str(exc)) from None
    _check_claims(claims)
    if claims["exp"] <= now.timestamp():
        raise TokenError("expired", "the token has expired")
    return claims


# Epoch seconds of 9999-12-31T23:59:59Z: later is not a time.
_MAX_EXP = 253_402_300_799


def _number(value: Any, low: float, high: float) -> bool:
    """A JSON number (not a boolean), finite, within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return low <= value <= high


def _check_claims(claims: Mapping[str, Any]) -> None:
    """Every claim the redeemer reads has its type and range, before anything is recorded.

    The signature proves who made a token, not that its claims are well formed (a
    signing bug, an old key): a wrong type must be refused here, not fail after the
    token was marked redeemed.
    """
    jti, sub = claims["jti"], claims["sub"]
    if not isinstance(jti, str) or not 1 <= len(jti) <= 128:
        raise TokenError("malformed", "claim jti must be a string of 1 to 128 characters")
    if not isinstance(sub, str) or not 1 <= len(sub) <= 256:
        raise TokenError("malformed", "claim sub must be a string of 1 to 256 characters")
    if not _number(claims["exp"], 0, _MAX_EXP):
        raise TokenError("malformed", "claim exp must be epoch seconds (a number)")
    if "discount_percent" in claims and not _number(claims["discount_percent"], 0, 100):
        raise TokenError("malformed", "claim discount_percent must be a number from 0 to 100")
