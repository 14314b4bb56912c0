"""The event contract: the envelope every storefront sends and the standard events.

``parse_event`` is the one way in: it validates the envelope, then the
properties of a standard event against that event's model, and reports every
problem with its location (``("properties", "price")``) and reason. Custom
events (any other well-formed name) keep free properties.
"""

import functools
import ipaddress
import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Self
from uuid import UUID

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from schemas.time import epoch_ms

EVENT_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
MAX_PROPERTIES_BYTES = 32 * 1024
MAX_FUTURE_SKEW = timedelta(hours=24)

ShortStr = Annotated[str, StringConstraints(min_length=1, max_length=256)]
# Ids key partitions and states; no control characters (the state store reserves a
# NUL-prefixed key, and no shopper's id needs one).
Id = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
Text = Annotated[str, StringConstraints(max_length=2048)]
Url = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Money = Annotated[float, Field(ge=0, allow_inf_nan=False)]
E164 = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")]
Channel = Literal["whatsapp", "sms", "email"]
# What a consent is for (as Segment/Unomi model it): order updates, or offers.
Purpose = Literal["transactional", "marketing"]
PURPOSES: tuple[str, ...] = ("transactional", "marketing")

_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_8601_text(value: Any) -> Any:
    # pydantic would also take Unix seconds (as numbers or digit strings); the
    # contract is ISO-8601 text, so other languages' storefronts agree with us.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATETIME.match(value):
        raise ValueError("must be an ISO-8601 date-time with a zone, e.g. 2024-05-01T12:00:00Z")
    return value


IsoDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_8601_text)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class _Properties(BaseModel):
    # Storefronts may send more than the required properties; they are kept.
    model_config = ConfigDict(frozen=True, extra="allow", allow_inf_nan=False)


# --- context ---------------------------------------------------------------


class Page(_Model):
    url: Url | None = None
    path: Text | None = None
    referrer: Text | None = None
    title: Text | None = None


class Campaign(_Model):
    source: ShortStr | None = None
    medium: ShortStr | None = None
    name: ShortStr | None = None
    term: ShortStr | None = None
    content: ShortStr | None = None
    # Set on links in the messages we send: ties a landing or an order to a message.
    utm_message_id: ShortStr | None = None


class Context(_Model):
    page: Page | None = None
    user_agent: Text | None = None
    campaign: Campaign | None = None
    locale: ShortStr | None = None
    timezone: ShortStr | None = None
    device: Literal["desktop", "mobile", "tablet", "other"] | None = None
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None


# --- standard events' properties -------------------------------------------


class PageView(_Properties):
    url: Url


class ProductView(_Properties):
    product_id: ShortStr
    category: ShortStr | None = None
    price: Money | None = None


class SpecLinger(_Properties):
    product_id: ShortStr
    dwell_ms: Annotated[int, Field(ge=0, le=86_400_000)]
    category: ShortStr | None = None


class DeepScroll(_Properties):
    percentage: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]


class Search(_Properties):
    query: Annotated[str, StringConstraints(max_length=512)]


class CartChange(_Properties):
    product_id: ShortStr
    quantity: Annotated[int, Field(ge=1, le=10_000)]
    price: Money
    category: ShortStr | None = None


class CheckoutStarted(_Properties):
    pass


class OrderItem(_Model):
    product_id: ShortStr
    quantity: Annotated[int, Field(ge=1, le=10_000)]
    amount: Money
    tax: Money = 0.0
    discount: Money = 0.0
    category: ShortStr | None = None


class OrderPlaced(_Properties):
    order_id: ShortStr
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=500)]
    total: Money
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


class ExitIntent(_Properties):
    pass


class ButtonClick(_Properties):
    element_id: ShortStr
    text: Text


class PriceDrop(_Properties):
    product_id: ShortStr
    old_price: Money
    new_price: Money


class Identify(_Properties):
    traits: dict[str, Any] = Field(default_factory=dict)


class Consent(_Properties):
    channel: Channel
    granted: bool
    purpose: Purpose = Field(
        default="transactional",
        description="What the shopper agreed to on this channel: 'transactional' (order"
        " updates) or 'marketing' (offers, reminders, campaigns). Without it a consent is"
        " for transactional messages only; each purpose is granted and revoked on its own.",
    )
    # Sent by the client; the collector seals it in the consent store and replaces it
    # with the two fields below before anything is produced (docs/dispatch.md).
    phone: E164 | None = None
    phone_ref: ShortStr | None = Field(
        default=None,
        description="Set by the collector: the stored, encrypted copy of the phone.",
        json_schema_extra={"readOnly": True},
    )
    phone_masked: ShortStr | None = Field(
        default=None,
        description="Set by the collector: the phone masked, e.g. +91 ••••••9721.",
        json_schema_extra={"readOnly": True},
    )


PROPERTY_MODELS: dict[str, type[_Properties]] = {
    "page_view": PageView,
    "product_view": ProductView,
    "spec_linger": SpecLinger,
    "deep_scroll": DeepScroll,
    "search": Search,
    "add_to_cart": CartChange,
    "remove_from_cart": CartChange,
    "checkout_started": CheckoutStarted,
    "order_placed": OrderPlaced,
    "exit_intent": ExitIntent,
    "button_click": ButtonClick,
    "price_drop": PriceDrop,
    "identify": Identify,
    "consent": Consent,
}
STANDARD_EVENTS = frozenset(PROPERTY_MODELS)
# Events a store backend sends with a server key; browsers may not forge them.
SERVER_EVENTS = frozenset({"order_placed", "price_drop"})


# --- the envelope ------------------------------------------------------------


def _partition_key(name: str, user_id: str | None, anonymous_id: str) -> str:
    # identify is keyed by the anonymous id: it is ordered after the anonymous
    # events it claims, so the engine hands that state over to the user
    # deterministically, whatever the speed of a replay.
    if name == "identify":
        return anonymous_id
    return user_id or anonymous_id


class Event(_Model):
    """One event as it travels on ``telemetry.raw`` and is stored in the warehouse."""

    event_id: UUID = Field(
        description="Made by the client (a random UUID); the idempotency key: resends are dropped."
    )
    name: Annotated[str, StringConstraints(pattern=EVENT_NAME_PATTERN)] = Field(
        description="A standard event name, or any custom name matching the pattern."
    )
    timestamp: IsoDatetime = Field(
        description="When it happened, ISO-8601 with a zone. At most 24 h ahead of the server."
    )
    anonymous_id: Id = Field(description="Stable per browser (or device) until erased.")
    user_id: Id | None = Field(default=None, description="Set once the shopper is known.")
    session_id: ShortStr | None = None
    properties: dict[str, Any] = Field(
        default_factory=dict,
        description="At most 32 KiB as JSON; standard events require their own properties.",
    )
    context: Context = Field(default_factory=Context)
    # Set by the collector, never trusted from the client.
    received_at: AwareDatetime | None = Field(
        default=None,
        description="Set by the collector; ignored when a client sends it.",
        json_schema_extra={"readOnly": True},
    )
    ip: str | None = Field(
        default=None,
        description="Source address truncated by the collector (IPv4 /24, IPv6 /48).",
        json_schema_extra={"readOnly": True},
    )
    from_server: bool = Field(
        default=False,
        description="Set by the collector: sent with a server key (a store backend), not a "
        "public write key. Only such events may update the product catalog.",
        json_schema_extra={"readOnly": True},
    )

    def model_post_init(self, context: Any, /) -> None:
        # Computed once here, into the instance dict, where the cached_property
        # descriptors below find them: the engine reads both for every event,
        # and on Python 3.11 cached_property's first access takes a lock.
        fields = self.__dict__
        fields["key"] = _partition_key(self.name, self.user_id, self.anonymous_id)
        fields["ts_ms"] = epoch_ms(self.timestamp)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copy = super().model_copy(update=update, deep=deep)
        # The derived values belong to the fields they came from: recompute.
        for derived in ("key", "ts_ms"):
            copy.__dict__.pop(derived, None)
        copy.model_post_init(None)
        return copy

    @functools.cached_property
    def key(self) -> str:
        """Partition key: one shopper's events stay in order on one partition."""
        return _partition_key(self.name, self.user_id, self.anonymous_id)

    @functools.cached_property
    def ts_ms(self) -> int:
        """Event time in epoch milliseconds."""
        return epoch_ms(self.timestamp)

    @property
    def utm_message_id(self) -> str | None:
        campaign = self.context.campaign
        return campaign.utm_message_id if campaign else None

    def to_json(self) -> bytes:
        # pydantic's serializer writes the same bytes as orjson over model_dump, faster.
        return self.__pydantic_serializer__.to_json(self, exclude_none=True)


class EventError(ValueError):
    """Every problem found in one event, each with its location and reason."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


def _details(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    return [{"loc": [*prefix, *err["loc"]], "msg": err["msg"]} for err in exc.errors()]


def _non_finite(value: Any, path: tuple = ()) -> Iterator[tuple]:
    """Where ``value`` holds a float JSON cannot carry (orjson would write it as null)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, (*path, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _non_finite(item, (*path, index))


def parse_event(
    raw: Any,
    *,
    received_at: datetime,
    ip: str | None = None,
    max_age: timedelta | None = None,
    from_server: bool = False,
) -> Event:
    """Validate one event as sent by a client; stamp server fields. Raises ``EventError``.

    Time is an argument: an event may not claim to happen more than 24 h after
    it was received, nor (when ``max_age`` is given: live collection) more than
    ``max_age`` before. Reading back from the raw topic passes no ``max_age``:
    what the collector accepted stays readable.
    """
    if not isinstance(raw, dict):
        raise EventError([{"loc": [], "msg": "an event must be a JSON object"}])
    # Server fields overwrite whatever the client claimed.
    data = {
        **raw,
        "received_at": received_at,
        "ip": truncate_ip(ip) if ip else None,
        "from_server": from_server,
    }
    errors: list[dict[str, Any]] = []
    # Properties first, so the envelope is validated once with them normalised and
    # their problems are reported along with the envelope's.
    name = raw.get("name")
    model = PROPERTY_MODELS.get(name) if isinstance(name, str) else None
    properties = raw.get("properties", {})
    # Before normalising: pydantic's JSON dump, like orjson, would turn them into null.
    non_finite = [
        {"loc": ["properties", *path], "msg": "numbers must be finite: JSON has no NaN or Infinity"}
        for path in _non_finite(properties)
    ]
    if model is not None and isinstance(properties, dict):
        try:
            validated = model.model_validate(properties)
        except ValidationError as exc:
            errors.extend(_details(exc, ("properties",)))
        else:
            data["properties"] = validated.model_dump(mode="json", exclude_none=True)
    named = {tuple(error["loc"]) for error in errors}
    errors.extend(e for e in non_finite if tuple(e["loc"]) not in named)
    try:
        event = Event.model_validate(data)
    except ValidationError as exc:
        raise EventError(_details(exc) + errors) from None
    try:
        size = len(orjson.dumps(event.properties, option=orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError as exc:  # integers beyond 64 bits, nesting too deep
        errors.append({"loc": ["properties"], "msg": f"properties are not storable as JSON: {exc}"})
    else:
        if size > MAX_PROPERTIES_BYTES:
            errors.append({"loc": ["properties"], "msg": "properties exceed 32 KiB"})
    if event.timestamp > received_at + MAX_FUTURE_SKEW:
        errors.append({"loc": ["timestamp"], "msg": "timestamp is more than 24 h in the future"})
    elif max_age is not None and event.timestamp < received_at - max_age:
        days = max_age / timedelta(days=1)
        errors.append(
            {"loc": ["timestamp"], "msg": f"timestamp is more than {days:g} days in the past"}
        )
    if event.name == "identify" and not event.user_id:
        errors.append({"loc": ["user_id"], "msg": "identify needs a user_id"})
    if errors:
        raise EventError(errors)
    return event


# Stands in for the receipt time of a record the collector never stamped, so that
# checking it reports its other problems; no timestamp is "in the future" against it.
_NO_RECEIPT = datetime.max.replace(tzinfo=UTC) - MAX_FUTURE_SKEW


def load_event(data: bytes) -> Event:
    """Read an event back from the raw topic (already stamped); raises ``EventError``."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise EventError([{"loc": [], "msg": f"not JSON: {exc}"}]) from None
    if not isinstance(raw, dict):
        raise EventError([{"loc": [], "msg": "an event must be a JSON object"}])
    received = raw.get("received_at")
    try:
        received_at = datetime.fromisoformat(received) if isinstance(received, str) else None
    except ValueError:
        received_at = None
    if received_at is not None and received_at.tzinfo is not None:
        return parse_event(
            raw,
            received_at=received_at,
            ip=raw.get("ip"),
            from_server=raw.get("from_server") is True,
        )
    # Written by something other than the collector: report every problem at once.
    errors = [{"loc": ["received_at"], "msg": "missing or invalid received_at"}]
    try:
        parse_event(raw, received_at=_NO_RECEIPT)
    except EventError as exc:
        errors.extend(exc.errors)
    raise EventError(errors)


# A batch shares one source address, and shoppers come back: parsing addresses is slow.
@functools.lru_cache(maxsize=4096)
def truncate_ip(ip: str) -> str:
    """Keep only the network part (IPv4 /24, IPv6 /48) before an address is stored anywhere."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)
