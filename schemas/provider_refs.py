"""The opaque reference a provider echoes back with a message's status webhooks.

Meta carries it as ``biz_opaque_callback_data`` (at most 512 characters) in every
status of the message; Twilio as the ``ref`` query parameter of the message's
``StatusCallback`` URL. Both webhooks are signed by the provider, so the reference
needs no signature of its own; it only has to round-trip and to be refused cleanly
when it is not ours. Pure.

Format: ``if1.`` then base64url (no padding) of the JSON array
``[message_id, user_key, kind]``.
"""

import base64
import binascii
from dataclasses import dataclass
from typing import get_args

import orjson

from schemas.messages import MessageKind

PREFIX = "if1."
# Meta's limit on biz_opaque_callback_data.
MAX_REF_CHARS = 512
KINDS = frozenset(get_args(MessageKind))


@dataclass(frozen=True, slots=True)
class ProviderRef:
    message_id: str
    user_key: str
    kind: str


def encode_ref(message_id: str, user_key: str, kind: str) -> str:
    """The reference of one message; ValueError when it cannot fit Meta's 512 chars."""
    if kind not in KINDS:
        raise ValueError(f"unknown message kind {kind!r}")
    if not message_id or not user_key:
        raise ValueError("message_id and user_key must not be empty")
    payload = orjson.dumps([message_id, user_key, kind])
    ref = PREFIX + base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    if len(ref) > MAX_REF_CHARS:
        raise ValueError(f"reference is {len(ref)} chars, over {MAX_REF_CHARS}")
    return ref


def decode_ref(ref: object) -> ProviderRef | None:
    """The message a reference names; None for anything that is not one of ours."""
    if not isinstance(ref, str) or not ref.startswith(PREFIX) or len(ref) > MAX_REF_CHARS:
        return None
    data = ref[len(PREFIX) :]
    try:
        payload = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        fields = orjson.loads(payload)
    except (binascii.Error, ValueError):
        return None
    if (
        not isinstance(fields, list)
        or len(fields) != 3
        or not all(isinstance(f, str) and f for f in fields)
        or fields[2] not in KINDS
    ):
        return None
    return ProviderRef(*fields)
