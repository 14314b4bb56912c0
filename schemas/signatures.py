"""Webhook signatures: HMAC-SHA256 over ``"{timestamp}.{body}"`` with a per-provider secret.

The timestamp is inside the signed bytes, so a captured webhook cannot be
replayed later than ``tolerance_s`` with a fresh timestamp (Stripe's scheme).
Verification compares in constant time. Pure: time is an argument.
"""

import hashlib
import hmac

SIGNATURE_HEADER = "X-Intentflow-Signature"
TIMESTAMP_HEADER = "X-Intentflow-Timestamp"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def signature_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(
    secret: str,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    now_s: float,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> str | None:
    """None when genuine and fresh; otherwise why not (never echoing the secret)."""
    if not signature or not timestamp:
        return "missing signature or timestamp"
    if not timestamp.isdigit():
        return "malformed timestamp"
    sent_at = int(timestamp)
    if abs(now_s - sent_at) > tolerance_s:
        return "timestamp outside the tolerance (replayed or clock skew)"
    expected = sign(secret, sent_at, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        return "signature does not match"
    return None
