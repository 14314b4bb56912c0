"""Tracked links: the short, signed token every message link carries (``GET /v1/r/{token}``).

One codec shared by the dispatcher (which makes the token while composing) and the
API (which opens it, records the click and redirects). Pure: no clock, no I/O.

A token names the message (id, kind, channel), the shopper's ``user_key`` and the
landing: a path under the storefront URL (``/cart``, ``/product/cam-001``) or, for
a product whose page is elsewhere, that page's absolute http(s) URL. Nothing else:
no phone, no name, no discount.

``user_key`` is carried in clear (base64url-encoded, not encrypted). It is the
pseudonymous key the storefront gave us (its customer id or the tracker's
anonymous id, both refused by the collector when they look like a phone or an
e-mail), the same value the storefront already keeps in the shopper's cookies;
encrypting it would lengthen every SMS for no one's benefit but a forwarded
link's recipient, who learns nothing personal from it. The signature is what
matters: a token cannot be forged or altered without ``link_secret``, so the
redirect is never an open redirect and a click is never recorded for a message
we did not send.

Layout (then base64url without padding)::

    version(1) kind(1) channel(1) flags(1) message_id user_key landing  mac(16)

Strings are length-prefixed (1 byte for the message id, 2 for the others); a 32-hex message id (a
nudge's or a VIP token's id) is packed into 16 bytes. The MAC is HMAC-SHA256 over
a domain tag and everything before it, truncated to 128 bits.
"""

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

VERSION = 1
KINDS = ("cart_rescue", "high_intent", "vip_upgrade", "campaign")
CHANNELS = ("whatsapp", "sms")
MAC_BYTES = 16
MAX_ID = 255  # message_id, in UTF-8 bytes
MAX_USER_KEY = 1024
MAX_LANDING = 2048
# A token longer than this is refused before it is decoded.
MAX_TOKEN_CHARS = 4 * (4 + 1 + MAX_ID + 2 + MAX_USER_KEY + 2 + MAX_LANDING + MAC_BYTES) // 3 + 4
_TAG = b"intentflow-link-v1\x00"
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_FLAG_PACKED_ID = 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# A clicked receipt's ``detail`` when our redirect recorded it (api/routes/links.py): the
# only clicks we can vouch for. WhatsApp's Cloud API reports no clicks at all.
TRACKED_LINK = "tracked_link"


class LinkError(ValueError):
    """A token that is not one of ours: garbled, truncated, altered or forged."""


@dataclass(frozen=True, slots=True)
class Link:
    message_id: str
    kind: str
    channel: str
    user_key: str
    landing: str  # "/path?query" under the storefront, or an absolute http(s) URL


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _valid_landing(landing: str) -> bool:
    if not landing or len(landing.encode()) > MAX_LANDING or _CONTROL.search(landing):
        return False
    if landing.startswith("/"):
        return not landing.startswith("//")  # a scheme-relative URL is another host
    parts = urlsplit(landing)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _bounded(name: str, value: str, limit: int) -> bytes:
    data = value.encode()
    if not data or len(data) > limit or _CONTROL.search(value):
        raise ValueError(f"{name} must be 1..{limit} bytes without control characters")
    return data


def link_token(
    secret: str | bytes,
    *,
    message_id: str,
    kind: str,
    channel: str,
    user_key: str,
    landing: str,
) -> str:
    """The URL-safe token of one message's link on one channel."""
    if kind not in KINDS or channel not in CHANNELS:
        raise ValueError(f"unknown kind or channel: {kind!r}, {channel!r}")
    if not _valid_landing(landing):
        raise ValueError("landing must be a path under the storefront or an http(s) URL")
    flags = 0
    if _HEX32.match(message_id):
        flags |= _FLAG_PACKED_ID
        packed = bytes.fromhex(message_id)
    else:
        packed = _bounded("message_id", message_id, MAX_ID)
    user = _bounded("user_key", user_key, MAX_USER_KEY)
    land = landing.encode()
    payload = b"".join(
        (
            bytes((VERSION, KINDS.index(kind), CHANNELS.index(channel), flags)),
            bytes((len(packed),)),
            packed,
            len(user).to_bytes(2, "big"),
            user,
            len(land).to_bytes(2, "big"),
            land,
        )
    )
    mac = hmac.new(_key(secret), _TAG + payload, hashlib.sha256).digest()[:MAC_BYTES]
    return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode("ascii")


def open_link_token(secret: str | bytes, token: str) -> Link:
    """The link a token names; ``LinkError`` unless it is intact and signed with ``secret``."""
    if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise LinkError("malformed")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise LinkError("malformed") from None
    if len(raw) <= MAC_BYTES + 4:
        raise LinkError("malformed")
    payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    expected = hmac.new(_key(secret), _TAG + payload, hashlib.sha256).digest()[:MAC_BYTES]
    if not hmac.compare_digest(mac, expected):
        raise LinkError("bad signature")
    # Signed by us, so well-formed; checked anyway (a rotated layout, a bug).
    try:
        version, kind, channel, flags = payload[:4]
        if version != VERSION:
            raise LinkError("unknown version")
        at = 4
        size = payload[at]
        packed = payload[at + 1 : at + 1 + size]
        at += 1 + size
        size = int.from_bytes(payload[at : at + 2], "big")
        user = payload[at + 2 : at + 2 + size].decode()
        at += 2 + size
        size = int.from_bytes(payload[at : at + 2], "big")
        landing = payload[at + 2 : at + 2 + size].decode()
        if at + 2 + size != len(payload):
            raise LinkError("trailing bytes")
        message_id = packed.hex() if flags & _FLAG_PACKED_ID else packed.decode()
        link = Link(message_id, KINDS[kind], CHANNELS[channel], user, landing)
    except (IndexError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, LinkError):
            raise
        raise LinkError("malformed") from None
    if not link.user_key or not link.message_id or not _valid_landing(link.landing):
        raise LinkError("malformed")
    return link


def tracked_url(public_api_url: str, token: str) -> str:
    """The link a message carries: our redirect, which records the click."""
    return f"{public_api_url.rstrip('/')}/v1/r/{token}"


def landing_url(storefront_url: str, link: Link) -> str:
    """Where the shopper lands: the link's page, tagged with the message's UTM parameters."""
    base = (
        f"{storefront_url.rstrip('/')}{link.landing}"
        if link.landing.startswith("/")
        else link.landing
    )
    parts = urlsplit(base)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.startswith("utm_")
    ]
    query += [
        ("utm_source", "intentflow"),
        ("utm_medium", link.channel),
        ("utm_campaign", link.kind),
        ("utm_message_id", link.message_id),
    ]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
