"""API keys are stored and configured only as hashes.

Keys are 256-bit random tokens, so an unsalted SHA-256 is not brute-forceable
and lets the API find a key's scope with a constant-time compare.
"""

import hashlib
import hmac
import secrets

KEY_PREFIXES = {"write": "wk_", "server": "sk_", "read": "rk_", "admin": "ak_"}


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key(kind: str) -> str:
    return KEY_PREFIXES[kind] + secrets.token_urlsafe(32)


def key_matches(key: str, hashes: frozenset[str]) -> bool:
    """Constant-time membership: every stored hash is compared, whatever matches."""
    digest = hash_api_key(key)
    found = False
    for stored in hashes:
        found |= hmac.compare_digest(digest, stored)
    return found
