"""Segment's HTTP Tracking API (and RudderStack's, which is the same) in our event contract.

Pure: a Segment message (one item of ``/v1/batch``, or the body of ``/v1/track``,
``/v1/identify``, ...) becomes one client event of ``schemas/events.py`` — then
validated by ``parse_event`` like any other — or a ``EventError`` with the reason.
No other exception escapes ``segment_event`` whatever the input (property-tested).

The mapping, one table (docs/collector.md, "Segment and RudderStack"):

* ``track`` of an E-commerce spec v2 event in ``TRACK_EVENTS`` becomes our standard
  event, its properties renamed; any other ``track`` becomes a custom event whose
  name is the Segment name in snake case (``Signed Up`` → ``signed_up``).
* ``page`` → ``page_view``; ``screen`` → the custom event ``screen_view`` (an app
  screen has no URL, which ``page_view`` requires); ``identify`` → ``identify``
  (traits kept, sealed by the collector); ``alias`` → ``identify`` handing
  ``previousId`` over to ``userId``; ``group`` → the custom event ``group``.

Envelope: ``messageId`` is the event id (a UUID as it is, anything else through
uuid5 scoped by the sender's key, so a resent message keeps its id); the event
time is corrected for the client's clock as Segment documents it:
``timestamp = receivedAt - (sentAt - timestamp)``.
"""

import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from schemas.events import EVENT_NAME_PATTERN, EventError

# Segment's limits: 32 KB per message, 500 KB per batch request.
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
CALL_TYPES = ("track", "identify", "page", "screen", "alias", "group")
# An event id made from a messageId that is not a UUID: uuid5 in this namespace.
MESSAGE_ID_NAMESPACE = uuid.UUID("5e7a1d3c-2b9f-4c61-9d0e-8f4a6b2c1e37")
# ``integrations: {"intentflow": false}`` keeps a message away from us, as from any
# destination Segment would not send it to.
INTEGRATION_NAME = "intentflow"

_NAME_PATTERN = re.compile(EVENT_NAME_PATTERN)
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")


def _error(loc: list[str | int], msg: str) -> EventError:
    return EventError([{"loc": loc, "msg": msg}])


def _text(value: Any) -> str | None:
    """A Segment id or name: strings as they are, integers as digits (SDKs send both)."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# --- properties, per standard event -------------------------------------------------


def _product_id(properties: Mapping[str, Any]) -> str | None:
    # Spec v2 says product_id; v1 and many shops say id or sku.
    for name in ("product_id", "sku", "id"):
        found = _text(properties.get(name))
        if found:
            return found
    return None


def _product(properties: dict[str, Any]) -> dict[str, Any]:
    # name, price, image_url, url, category stay where the catalog reads them.
    out = dict(properties)
    product_id = _product_id(properties)
    if product_id is not None:
        out["product_id"] = product_id
    return out


def _cart_line(properties: dict[str, Any]) -> dict[str, Any]:
    out = _product(properties)
    if "quantity" not in properties:
        out["quantity"] = 1  # the spec's default: one of the product
    return out


def _order_item(product: Any) -> Any:
    if not isinstance(product, dict):
        return product  # the contract's validation says what is wrong with it
    quantity = product.get("quantity", 1)
    price = _number(product.get("price"))
    count = quantity if isinstance(quantity, int) and not isinstance(quantity, bool) else None
    item: dict[str, Any] = {"quantity": quantity}
    product_id = _product_id(product)
    if product_id is not None:
        item["product_id"] = product_id
    if price is not None and count is not None:
        item["amount"] = round(price * count, 6)  # our items carry the line's amount
    if isinstance(product.get("category"), str):
        item["category"] = product["category"]
    return item


def _order(properties: dict[str, Any]) -> dict[str, Any]:
    out = {key: value for key, value in properties.items() if key != "products"}
    products = properties.get("products")
    out["items"] = [_order_item(p) for p in products] if isinstance(products, list) else products
    if "total" not in properties and "revenue" in properties:
        out["total"] = properties["revenue"]
    if isinstance(properties.get("currency"), str):
        out["currency"] = properties["currency"].upper()
    return out


def _as_is(properties: dict[str, Any]) -> dict[str, Any]:
    return dict(properties)


@dataclass(frozen=True, slots=True)
class TrackMapping:
    name: str
    properties: Callable[[dict[str, Any]], dict[str, Any]]


# Segment E-commerce spec v2 → our standard events. Every other track event is a
# custom event named by ``custom_name`` (Product List Viewed → product_list_viewed).
TRACK_EVENTS: dict[str, TrackMapping] = {
    "Products Searched": TrackMapping("search", _as_is),
    "Product Viewed": TrackMapping("product_view", _product),
    "Product Added": TrackMapping("add_to_cart", _cart_line),
    "Product Removed": TrackMapping("remove_from_cart", _cart_line),
    "Checkout Started": TrackMapping("checkout_started", _as_is),
    "Order Completed": TrackMapping("order_placed", _order),
}


def custom_name(segment_name: str) -> str:
    """``Signed Up`` → ``signed_up``, ``productShared`` → ``product_shared``."""
    snake = _NOT_ALNUM.sub("_", _CAMEL.sub(r"\1_\2", segment_name).lower()).strip("_")
    if not _NAME_PATTERN.match(snake):
        raise _error(
            ["event"],
            f"event name {segment_name[:80]!r} does not make a custom event name: "
            "it needs a letter first and at most 64 letters, digits and underscores",
        )
    return snake


def _track(message: dict[str, Any], properties: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    event = message.get("event")
    if not isinstance(event, str) or not event.strip():
        raise _error(["event"], "a track call needs the event's name")
    mapping = TRACK_EVENTS.get(event.strip())
    if mapping is not None:
        return mapping.name, mapping.properties(properties)
    return custom_name(event), properties


def _page(message: dict[str, Any], properties: dict[str, Any], page: dict[str, Any]):
    out = dict(properties)
    if "url" not in out and isinstance(page.get("url"), str):
        out["url"] = page["url"]
    # A page's own name and category (Segment's top-level fields), kept apart from a
    # product's name and category.
    for field in ("name", "category"):
        if isinstance(message.get(field), str):
            out[f"page_{field}"] = message[field]
    return "page_view", out


def _screen(message: dict[str, Any], properties: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    out = dict(properties)
    for field in ("name", "category"):
        if isinstance(message.get(field), str):
            out[f"screen_{field}"] = message[field]
    return "screen_view", out


def _traits(message: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    traits = message.get("traits")
    if traits is None:
        traits = context.get("traits")
    return traits if isinstance(traits, dict) else {}


# --- envelope ------------------------------------------------------------------------


def parse_time(value: Any, field: str) -> datetime | None:
    """An ISO-8601 time of a Segment message; a time without a zone is UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _error([field], "must be an ISO-8601 date-time")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _error([field], "must be an ISO-8601 date-time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def event_time(
    timestamp: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """Segment's clock-skew correction, ``receivedAt - (sentAt - timestamp)``, to the second.

    That is ``timestamp + (receivedAt - sentAt)``: the client's clock error plus the
    request's transit time. The correction is rounded to whole seconds, so a resend
    (same timestamp, new sentAt, new receivedAt: only the transit time differs) keeps
    its event time, and its duplicate row collapses with the first in the warehouse
    (the events table's sorting key holds the time). A client whose clock is right
    keeps its own timestamp, to the millisecond.
    """
    if timestamp is None:
        return received_at
    if sent_at is None:
        return timestamp
    try:
        skew_s = round((received_at - sent_at).total_seconds())
        return timestamp + timedelta(seconds=skew_s)
    except OverflowError:
        raise _error(["timestamp"], "timestamp and sentAt are too far apart") from None


def event_id(message_id: Any, message: dict[str, Any], source: str) -> str:
    """``messageId`` as our event id: itself when a UUID, else uuid5 scoped by ``source``.

    Without a messageId the id is made from the message's own content (less
    ``sentAt``, which a resend changes), so a resent message is still one event.
    """
    text = _text(message_id)
    if text is not None:
        try:
            return str(uuid.UUID(text))
        except ValueError:
            return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{source}\x00{text}"))
    content = {k: v for k, v in message.items() if k not in ("sentAt", "writeKey", "_metadata")}
    try:
        canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        canonical = repr(sorted(map(repr, content.items()))).encode()
    return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{source}\x00content\x00{canonical.hex()}"))


def merge(batch: dict[str, Any], item: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """Batch-level ``context`` or ``integrations`` under the item's own; the item wins.

    Objects are merged four levels deep (``context.page.url`` is two); deeper, the
    item's value replaces the batch's, so no nesting makes this recurse far.
    """
    out = dict(batch)
    for key, value in item.items():
        if depth < 4 and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, depth + 1)
        else:
            out[key] = value
    return out


def _strings(source: dict[str, Any], names: dict[str, str]) -> dict[str, str]:
    return {
        ours: source[theirs]
        for theirs, ours in names.items()
        if isinstance(source.get(theirs), str)
    }


_PAGE_FIELDS = {"url": "url", "path": "path", "referrer": "referrer", "title": "title"}
_CAMPAIGN_FIELDS = {
    "source": "source",
    "medium": "medium",
    "name": "name",
    "term": "term",
    "content": "content",
    # analytics.js strips utm_ from query parameters: our utm_message_id arrives as
    # message_id.
    "message_id": "utm_message_id",
    "utm_message_id": "utm_message_id",
}
_DEVICES = {
    "desktop": "desktop",
    "mobile": "mobile",
    "ios": "mobile",
    "android": "mobile",
    "tablet": "tablet",
    "ipados": "tablet",
}


def our_context(context: dict[str, Any], page: dict[str, Any]) -> dict[str, Any]:
    """The part of a Segment context our contract holds; the rest is not kept."""
    out: dict[str, Any] = {}
    page_fields = _strings(page, _PAGE_FIELDS)
    if page_fields:
        out["page"] = page_fields
    campaign = _strings(_dict(context.get("campaign")), _CAMPAIGN_FIELDS)
    if campaign:
        out["campaign"] = campaign
    out.update(_strings(context, {"userAgent": "user_agent", "locale": "locale"}))
    out.update(_strings(context, {"timezone": "timezone"}))
    device = _dict(context.get("device")).get("type")
    if isinstance(device, str):
        out["device"] = _DEVICES.get(device.lower(), "other")
    country = _dict(context.get("location")).get("country")
    if isinstance(country, str) and _COUNTRY.match(country):
        out["country"] = country.upper()
    return out


@dataclass(frozen=True, slots=True)
class Skipped:
    """A message whose ``integrations`` turn us off: not an error, not an event."""

    reason: str


def segment_event(
    message: Any,
    *,
    call: str | None,
    received_at: datetime,
    source: str,
    batch_context: Any = None,
    batch_integrations: Any = None,
    batch_sent_at: Any = None,
) -> dict[str, Any] | Skipped:
    """One Segment message as a client event of our contract (for ``parse_event``).

    ``call`` is the call type of a single-call route (``/v1/track``: ``"track"``);
    ``None`` in a batch, where each item says its ``type``. ``source`` scopes event
    ids made from non-UUID messageIds (the sender's key hash). Raises ``EventError``.
    """
    if not isinstance(message, dict):
        raise _error([], "a message must be a JSON object")
    try:
        size = len(orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS))
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise _error([], f"message is not storable as JSON: {exc}") from None
    if size > MAX_MESSAGE_BYTES:
        raise _error([], f"message is {size} bytes; Segment's limit is 32 KB per message")
    kind = call or message.get("type")
    if kind not in CALL_TYPES:
        raise _error(["type"], f"type must be one of {', '.join(CALL_TYPES)}")
    context = merge(_dict(batch_context), _dict(message.get("context")))
    integrations = merge(_dict(batch_integrations), _dict(message.get("integrations")))
    if integrations.get(INTEGRATION_NAME) is False or (
        integrations.get("All") is False and integrations.get(INTEGRATION_NAME) is not True
    ):
        return Skipped(f"integrations turn {INTEGRATION_NAME} off for this message")

    user_id = _text(message.get("userId"))
    anonymous_id = _text(message.get("anonymousId"))
    properties = message.get("properties")
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        raise _error(["properties"], "properties must be a JSON object")
    page = dict(_dict(context.get("page")))

    if kind == "track":
        name, properties = _track(message, properties)
    elif kind == "page":
        page = merge(page, {k: properties[k] for k in _PAGE_FIELDS if k in properties})
        name, properties = _page(message, properties, page)
    elif kind == "screen":
        name, properties = _screen(message, properties)
    elif kind == "identify":
        if user_id is None:
            raise _error(
                ["userId"], "identify needs a userId (traits of an anonymous visitor are not kept)"
            )
        name, properties = "identify", {"traits": _traits(message, context)}
    elif kind == "alias":
        previous = _text(message.get("previousId"))
        if user_id is None or previous is None:
            raise _error(["previousId"], "alias needs a previousId and a userId")
        # The hand-over: the state of previousId goes to userId (an identify, to us).
        name, properties, anonymous_id = "identify", {"traits": {}, "alias": True}, previous
    else:  # group
        group_id = _text(message.get("groupId"))
        if group_id is None:
            raise _error(["groupId"], "group needs a groupId")
        traits = message.get("traits")
        name = "group"
        properties = {"group_id": group_id, "traits": traits if isinstance(traits, dict) else {}}

    if anonymous_id is None:
        if user_id is None:
            raise _error(["anonymousId"], "a message needs an anonymousId or a userId")
        anonymous_id = user_id  # a backend's message names only the user

    timestamp = parse_time(
        message.get("timestamp") or message.get("originalTimestamp") or None, "timestamp"
    )
    sent_at = parse_time(message.get("sentAt", batch_sent_at), "sentAt")
    event: dict[str, Any] = {
        "event_id": event_id(message.get("messageId"), message, source),
        "name": name,
        "timestamp": event_time(timestamp, sent_at, received_at).isoformat(),
        "anonymous_id": anonymous_id,
        "properties": properties,
        "context": our_context(context, page),
    }
    if user_id is not None:
        event["user_id"] = user_id
    session = _text(context.get("sessionId"))  # RudderStack's
    if session is not None:
        event["session_id"] = session
    return event


# --- request models, per resource (the OpenAPI document; the routes parse raw JSON) ---


class _Message(BaseModel):
    """Fields every Segment call shares. Unknown fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    messageId: str | None = Field(
        default=None, description="The event id (a resent message keeps it: counted once)."
    )
    anonymousId: str | None = Field(default=None, description="anonymousId or userId is required.")
    userId: str | None = None
    timestamp: str | None = Field(default=None, description="ISO-8601; corrected by sentAt.")
    sentAt: str | None = Field(default=None, description="When the client sent it (ISO-8601).")
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = Field(
        default=None, description='`{"intentflow": false}` keeps the message away from us.'
    )
    writeKey: str | None = Field(
        default=None, description="The key, when not sent as the basic-auth user name."
    )


class SegmentTrack(_Message):
    type: Literal["track"] | None = None
    event: str = Field(description="E-commerce spec v2 name, or any name (a custom event).")
    properties: dict[str, Any] | None = None


class SegmentPage(_Message):
    type: Literal["page"] | None = None
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None


class SegmentScreen(_Message):
    type: Literal["screen"] | None = None
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None


class SegmentIdentify(_Message):
    type: Literal["identify"] | None = None
    traits: dict[str, Any] | None = None


class SegmentAlias(_Message):
    type: Literal["alias"] | None = None
    previousId: str


class SegmentGroup(_Message):
    type: Literal["group"] | None = None
    groupId: str
    traits: dict[str, Any] | None = None


class SegmentBatch(BaseModel):
    model_config = ConfigDict(extra="allow")

    batch: list[dict[str, Any]] = Field(
        description="Messages of any call type, each with its `type`; at most 500 KB in all."
    )
    context: dict[str, Any] | None = Field(default=None, description="Merged into each message.")
    integrations: dict[str, Any] | None = Field(
        default=None, description="Merged into each message."
    )
    sentAt: str | None = None
    writeKey: str | None = None


REQUEST_MODELS: dict[str, type[BaseModel]] = {
    "batch": SegmentBatch,
    "track": SegmentTrack,
    "identify": SegmentIdentify,
    "page": SegmentPage,
    "screen": SegmentScreen,
    "alias": SegmentAlias,
    "group": SegmentGroup,
}
