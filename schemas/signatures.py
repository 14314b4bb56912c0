"""Webhook signatures: HMAC-SHA256 over ``"{timestamp}.{body}"`` with a per-provider secret.

The timestamp is inside the signed bytes, so a captured webhook cannot be
replayed later than ``tolerance_s`` with a fresh timestamp (Stripe's scheme).
Verification compares in constant time. Pure: time is an argument.
"""

import hashlib
import hmac
import re

SIGNATURE_HEADER = "X-Intentflow-Signature"
TIMESTAMP_HEADER = "X-Intentflow-Timestamp"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300
# Epoch seconds in ASCII digits: str.isdigit() also takes "²" and "١٢", and int() of
# thousands of digits raises.
_EPOCH_SECONDS = re.compile(r"[0-9]{1,12}", re.ASCII)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def signature_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def stale(
    signature: str | None, timestamp: str | None, now_s: float, tolerance_s: int
) -> str | None:
    """What is wrong with the headers alone (checked before the body is read), or None."""
    if not signature or not timestamp:
        return "missing signature or timestamp"
    if not _EPOCH_SECONDS.fullmatch(timestamp):
        return "malformed timestamp"
    if abs(now_s - int(timestamp)) > tolerance_s:
        return "timestamp outside the tolerance (replayed or clock skew)"
    return None


def verify(
    secret: str,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    now_s: float,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> str | None:
    """None when genuine and fresh; otherwise why not (never echoing the secret)."""
    problem = stale(signature, timestamp, now_s, tolerance_s)
    if problem is not None:
        return problem
    expected = sign(secret, int(timestamp or ""), body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        return "signature does not match"
    return None
