"""Stable receipt ids: the same step of the same message always hashes to the same id.

A re-delivered webhook (same provider event id) or a dispatcher step re-done
after a crash produces the same ``receipt_id``, so consumers and the warehouse
collapse the repeats.
"""

import hashlib


def receipt_id(message_id: str, channel: str | None, status: str, event_ref: str = "") -> str:
    text = "\x1f".join((message_id, channel or "", status, event_ref))
    return hashlib.sha256(text.encode()).hexdigest()[:32]
