"""Stable identifiers and the holdout draw: pure hashes of what a decision is about.

The same user, rule, trigger and rules version always give the same id, so a
re-run after a crash or a replay produces ids the dispatcher and the
warehouse already know.
"""

from hashlib import blake2b


def digest(*parts: str) -> str:
    """32 hex characters of blake2b over the parts, unit-separated so they cannot run together."""
    return blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def nudge_id(user_key: str, kind: str, trigger: str, rules_version: str) -> str:
    return digest(user_key, kind, trigger, rules_version)


def vip_token_id(user_key: str, trigger_event_id: str, rules_version: str) -> str:
    return digest(user_key, "vip_upgrade", trigger_event_id, rules_version)


def in_holdout(user_key: str, salt: str, share: float) -> bool:
    """Deterministic draw: the user's bucket in [0, 1) under this experiment salt."""
    bucket = int.from_bytes(blake2b(f"{salt}\x1f{user_key}".encode(), digest_size=8).digest())
    return bucket / 2**64 < share
