"""A fast way to read back the events our own collector wrote, equal to ``load_event``.

``load_event`` re-validates every record with pydantic (~2/3 of a replay's time).
Records on our internal topics were written by ``Event.to_json`` after
``parse_event``: they are in *canonical form* (properties already normalised,
defaults present, no nulls where the dump leaves them out). ``fast_load_event``
decodes the envelope with msgspec (in C, with the model's constraints), checks
in a few Python lines that the properties are in that canonical form, and
builds a ``FastEvent``: a plain object with the attributes the engine and the
fold read, of the same values ``load_event`` gives.

Anything it is not sure of (a constraint it does not mirror exactly, a
non-canonical property, an invalid record) goes to ``load_event``, which returns
the pydantic ``Event`` or raises ``EventError`` for the dead letter, as before.
So the fast path only decides *how* a valid record is read, never *whether* it
is valid. tests/unit/test_fast_events.py checks equality on generated records.
"""

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
import orjson

from schemas.events import (
    MAX_FUTURE_SKEW,
    MAX_PROPERTIES_BYTES,
    Event,
    _partition_key,
    load_event,
    truncate_ip,
)
from schemas.time import epoch_ms

# Python's ``$`` also matches before a final newline, pydantic's (Rust) does not: ``\Z``.
_NAME = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}\Z")]
_ID = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+\Z")]
_SHORT = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_TEXT = Annotated[str, msgspec.Meta(max_length=2048)]
_URL = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
_COUNTRY = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}\Z")]


class FastPage(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    url: _URL | None = None
    path: _TEXT | None = None
    referrer: _TEXT | None = None
    title: _TEXT | None = None


class FastCampaign(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    source: _SHORT | None = None
    medium: _SHORT | None = None
    name: _SHORT | None = None
    term: _SHORT | None = None
    content: _SHORT | None = None
    utm_message_id: _SHORT | None = None


class FastContext(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    page: FastPage | None = None
    user_agent: _TEXT | None = None
    campaign: FastCampaign | None = None
    locale: _SHORT | None = None
    timezone: _SHORT | None = None
    device: Literal["desktop", "mobile", "tablet", "other"] | None = None
    country: _COUNTRY | None = None


_EMPTY_CONTEXT = FastContext()


class _Wire(msgspec.Struct, forbid_unknown_fields=True):
    # Times stay text here: they are parsed below as load_event parses them.
    event_id: UUID
    name: _NAME
    timestamp: str
    anonymous_id: _ID
    received_at: str
    user_id: _ID | None = None
    session_id: _SHORT | None = None
    properties: dict[str, Any] = {}
    context: FastContext = _EMPTY_CONTEXT
    ip: str | None = None
    from_server: bool = False


_DECODER = msgspec.json.Decoder(_Wire)
# The forms Event.to_json writes (and pydantic reads to the same instant and offset).
_CANONICAL_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})\Z"
)


class FastEvent:
    """The attributes of ``Event`` that the engine, the fold and a replay read."""

    __slots__ = (
        "anonymous_id",
        "context",
        "event_id",
        "from_server",
        "ip",
        "key",
        "name",
        "properties",
        "received_at",
        "session_id",
        "timestamp",
        "ts_ms",
        "user_id",
    )

    def __init__(
        self,
        event_id: UUID,
        name: str,
        timestamp: datetime,
        anonymous_id: str,
        user_id: str | None,
        session_id: str | None,
        properties: dict[str, Any],
        context: FastContext,
        received_at: datetime,
        ip: str | None,
        from_server: bool,
    ) -> None:
        self.event_id = event_id
        self.name = name
        self.timestamp = timestamp
        self.anonymous_id = anonymous_id
        self.user_id = user_id
        self.session_id = session_id
        self.properties = properties
        self.context = context
        self.received_at = received_at
        self.ip = ip
        self.from_server = from_server
        self.key = _partition_key(name, user_id, anonymous_id)
        self.ts_ms = epoch_ms(timestamp)

    @property
    def utm_message_id(self) -> str | None:
        campaign = self.context.campaign
        return campaign.utm_message_id if campaign else None


# --- canonical properties --------------------------------------------------------
# Per standard event: its fields in declaration order, each with a check of the
# canonical (already dumped) value. A field with a non-None default must be
# present (the dump writes it); one defaulting to None may be absent.


def _short(v: Any) -> bool:
    return type(v) is str and 1 <= len(v) <= 256


def _text(v: Any) -> bool:
    return type(v) is str and len(v) <= 2048


def _url(v: Any) -> bool:
    return type(v) is str and 1 <= len(v) <= 4096


def _money(v: Any) -> bool:
    # The dump writes floats; an int would be normalised (20 -> 20.0): not canonical.
    return type(v) is float and 0.0 <= v < float("inf")


def _int_between(low: int, high: int) -> Any:
    def check(v: Any) -> bool:
        return type(v) is int and low <= v <= high

    return check


def _percentage(v: Any) -> bool:
    return type(v) is float and 0.0 <= v <= 100.0


def _bool(v: Any) -> bool:
    return type(v) is bool


def _channel(v: Any) -> bool:
    return v in ("whatsapp", "sms", "email") and type(v) is str


def _purpose(v: Any) -> bool:
    return v in ("transactional", "marketing") and type(v) is str


_E164 = re.compile(r"^\+[1-9][0-9]{6,14}\Z")
_CURRENCY = re.compile(r"^[A-Z]{3}\Z")


def _e164(v: Any) -> bool:
    return type(v) is str and _E164.match(v) is not None


def _currency(v: Any) -> bool:
    return type(v) is str and _CURRENCY.match(v) is not None


def _query(v: Any) -> bool:
    return type(v) is str and len(v) <= 512


def _traits(v: Any) -> bool:
    # dict[str, Any] dumped: kept as is, but only JSON scalars are surely unchanged.
    return type(v) is dict and all(_scalar(x) for x in v.values())


_ITEM_FIELDS = ("product_id", "quantity", "amount", "tax", "discount", "category")
_quantity = _int_between(1, 10_000)


def _item(v: Any) -> bool:
    if type(v) is not dict:
        return False
    keys = list(v)
    if keys != list(_ITEM_FIELDS[: len(keys)]) or len(keys) < 5:
        return False
    return (
        _short(v["product_id"])
        and _quantity(v["quantity"])
        and _money(v["amount"])
        and _money(v["tax"])
        and _money(v["discount"])
        and (len(keys) == 5 or _short(v["category"]))
    )


def _items(v: Any) -> bool:
    return type(v) is list and 1 <= len(v) <= 500 and all(_item(x) for x in v)


def _scalar(v: Any) -> bool:
    # Extras are kept by the dump; scalars come out unchanged (no None: the dump drops it).
    t = type(v)
    return t is str or t is int or t is bool or t is float


# name -> ((field, required, check), ...) in the model's declaration order
_Fields = tuple[tuple[str, bool, Any], ...]
_PRODUCT: _Fields = (
    ("product_id", True, _short),
    ("category", False, _short),
    ("price", False, _money),
)
_CART: _Fields = (
    ("product_id", True, _short),
    ("quantity", True, _quantity),
    ("price", True, _money),
    ("category", False, _short),
)
_CANONICAL: dict[str, _Fields] = {
    "page_view": (("url", True, _url),),
    "product_view": _PRODUCT,
    "spec_linger": (
        ("product_id", True, _short),
        ("dwell_ms", True, _int_between(0, 86_400_000)),
        ("category", False, _short),
    ),
    "deep_scroll": (("percentage", True, _percentage),),
    "search": (("query", True, _query),),
    "add_to_cart": _CART,
    "remove_from_cart": _CART,
    "checkout_started": (),
    "order_placed": (
        ("order_id", True, _short),
        ("items", True, _items),
        ("total", True, _money),
        ("currency", True, _currency),
    ),
    "exit_intent": (),
    "button_click": (("element_id", True, _short), ("text", True, _text)),
    "price_drop": (
        ("product_id", True, _short),
        ("old_price", True, _money),
        ("new_price", True, _money),
    ),
    "identify": (("traits", True, _traits),),
    "consent": (
        ("channel", True, _channel),
        ("granted", True, _bool),
        ("purpose", True, _purpose),
        ("phone", False, _e164),
        ("phone_ref", False, _short),
        ("phone_masked", False, _short),
    ),
}


def _canonical_properties(fields: _Fields, properties: dict[str, Any]) -> bool:
    """Whether the model's validate-and-dump would give these properties back unchanged."""
    keys = iter(properties)
    key = next(keys, None)
    for field, required, check in fields:
        if key == field:
            if not check(properties[field]):
                return False
            key = next(keys, None)
        elif required or field in properties:  # missing, or out of the model's order
            return False
    while key is not None:  # extras, after the model's fields
        if not _scalar(properties[key]):
            return False
        key = next(keys, None)
    return True


def _fast(data: bytes) -> FastEvent | None:
    try:
        wire = _DECODER.decode(data)
    except msgspec.DecodeError:  # ValidationError included
        return None
    name, properties = wire.name, wire.properties
    fields = _CANONICAL.get(name)
    if fields is not None and not _canonical_properties(fields, properties):
        return None
    stamp, received = wire.timestamp, wire.received_at
    if _CANONICAL_TIME.match(stamp) is None or _CANONICAL_TIME.match(received) is None:
        return None
    try:
        timestamp = datetime.fromisoformat(stamp)
        received_at = datetime.fromisoformat(received)
        if timestamp > received_at + MAX_FUTURE_SKEW:
            return None
        if len(orjson.dumps(properties, option=orjson.OPT_NON_STR_KEYS)) > MAX_PROPERTIES_BYTES:
            return None
    except (ValueError, OverflowError, orjson.JSONEncodeError):
        return None
    if name == "identify" and not wire.user_id:
        return None
    ip = wire.ip
    return FastEvent(
        wire.event_id,
        name,
        timestamp,
        wire.anonymous_id,
        wire.user_id,
        wire.session_id,
        properties,
        wire.context,
        received_at,
        truncate_ip(ip) if ip else None,
        wire.from_server,
    )


def fast_load_event(data: bytes) -> "FastEvent | Event":
    """``load_event``'s event, read fast when the record is in canonical form.

    Returns a ``FastEvent`` (same values) or, for anything else, what ``load_event``
    returns; raises ``EventError`` exactly when ``load_event`` does."""
    event = _fast(data)
    if event is None:
        return load_event(data)
    return event
