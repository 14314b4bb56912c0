"""Signed, expiring, single-use discount tokens (JWT, HS256, rotation by key id).

Signing and verification take time as data so a replay issues byte-identical
tokens and tests can move the clock. Single use is enforced by whoever redeems
(the API), not here.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt

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
    if not isinstance(claims["exp"], int | float) or claims["exp"] <= now.timestamp():
        raise TokenError("expired", "the token has expired")
    return claims
