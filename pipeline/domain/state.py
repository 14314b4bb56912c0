"""The per-user state the fold carries, and its compact byte form.

Plain ``__slots__`` dataclasses, mutated in place by the fold (the agent owns
one state per key; nothing else holds a reference). Scores are integer
milli-points, times integer epoch milliseconds, so the byte form (orjson of a
positional list) round-trips exactly and a restarted worker decides exactly as
an uninterrupted one would. No phone number is ever stored: consent keeps only
"a phone is known" per channel, with the decision per purpose (transactional,
marketing) and when each was made.
"""

import base64
import struct
from dataclasses import dataclass, field

import orjson

from schemas.messages import Nudge

FORMAT_VERSION = 1
NO_TIME = -1  # before any event time (events are at or after the epoch)

# Consent flags per channel: GRANTED is transactional consent (order updates),
# MARKETING consent to offers (nudges, VIP upgrades, campaigns); each purpose is
# decided on its own, so each has its own decision time.
GRANTED = 1
HAS_PHONE = 2
MARKETING = 4
# purpose -> (its flag, where its decision time sits in a consent entry)
PURPOSE_SLOTS = {"transactional": (GRANTED, 1), "marketing": (MARKETING, 2)}


@dataclass(slots=True)
class Intent:
    """A decaying score: milli-points per signal code, valued at the anchor time ``t``.

    ``total`` is ``sum(parts.values())``, kept to save the sum on every signal;
    it is derived, so it is not serialized.
    """

    t: int
    parts: dict[str, int] = field(default_factory=dict)
    total: int = field(default=0, compare=False)


def _with_total(score: Intent) -> Intent:
    # Derived, not serialized: restored once when a state is read back.
    score.total = sum(score.parts.values())
    return score


@dataclass(slots=True)
class ProductIntent(Intent):
    """A product's score plus its high-intent trigger state (hysteresis, cooldown)."""

    armed: bool = True
    crossings: int = 0
    fired_ms: int = NO_TIME


@dataclass(slots=True)
class Cart:
    cart_id: str  # event id of the add_to_cart that started it: the rescue's trigger
    started_ms: int
    items: dict[str, list[float]] = field(default_factory=dict)  # product -> [qty, price]
    deadline_ms: int | None = None  # None once the rescue has been triggered
    checkout_ms: int = NO_TIME  # checkout_started since the last cart change
    rescue_id: str | None = None
    rescue_emitted: bool = False  # published with status emit: needs a cancellation
    # The key the rescue was published under (its dispatcher partition); None: the
    # state's own (carts stored before this field, and rescues not yet triggered).
    rescue_key: str | None = None


@dataclass(slots=True)
class Held:
    """A nudge held through quiet hours, published when they end or it goes stale."""

    deadline_ms: int  # min(release, triggered + max hold)
    release_ms: int
    nudge: Nudge


@dataclass(slots=True)
class Sent:
    """A high-intent nudge the engine published to be sent, while the dispatcher may
    still hold it (the kind's maximum age): withdrawn if its product is bought."""

    product: str
    nudge_id: str
    user_key: str  # the key it was published under: its dispatcher partition
    emitted_ms: int


@dataclass(slots=True)
class UserState:
    key: str
    user_id: str | None = None
    anonymous_id: str | None = None
    last_ms: int = NO_TIME  # latest event time seen
    horizon_ms: int = NO_TIME  # events at or before this cannot be deduplicated: dropped
    seen: dict[int, int] = field(default_factory=dict)  # event id (64 bits) -> ms
    user: Intent = field(default_factory=lambda: Intent(NO_TIME))
    products: dict[str, ProductIntent] = field(default_factory=dict)
    categories: dict[str, Intent] = field(default_factory=dict)
    focus: str | None = None  # product viewed last
    focus_ms: int = NO_TIME
    cart: Cart | None = None
    orders: int = 0
    order_ids: list[str] = field(default_factory=list)  # recent ones, to drop re-sent orders
    vip: bool = False
    # channel -> [flags, transactional decision ms, marketing decision ms]
    consent: dict[str, list[int]] = field(default_factory=dict)
    timezone: str | None = None
    cap_day: int = 0  # local day ordinal the count is for
    cap_count: int = 0
    hi_ms: int = NO_TIME  # last high_intent nudge, for the user cooldown
    held: list[Held] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)  # anonymous ids merged in
    hi_sent: list[Sent] = field(default_factory=list)


def _pack_seen(seen: dict[int, int], last_ms: int) -> list:
    # Ids as base64 of 8 bytes each (a JSON integer would take 20 characters);
    # times as small ages behind last_ms.
    ids = struct.pack(f"<{len(seen)}Q", *seen)
    return [base64.b64encode(ids).decode(), [last_ms - ms for ms in seen.values()]]


def _unpack_seen(packed: list, last_ms: int) -> dict[int, int]:
    blob, ages = packed
    ids = struct.unpack(f"<{len(ages)}Q", base64.b64decode(blob))
    return {i: last_ms - age for i, age in zip(ids, ages, strict=True)}


def _intent_out(s: Intent) -> list:
    return [s.t, s.parts]


def _product_out(p: ProductIntent) -> list:
    return [p.t, p.parts, p.armed, p.crossings, p.fired_ms]


def _product_in(raw: list) -> ProductIntent:
    t, parts, armed, crossings, fired_ms = raw
    return ProductIntent(t, parts, sum(parts.values()), armed, crossings, fired_ms)


def _cart_out(c: Cart | None) -> list | None:
    if c is None:
        return None
    return [
        c.cart_id,
        c.started_ms,
        c.items,
        c.deadline_ms,
        c.checkout_ms,
        c.rescue_id,
        c.rescue_emitted,
        c.rescue_key,
    ]


def consent_entry(state: UserState, channel: str) -> list[int]:
    """``[flags, transactional ms, marketing ms]`` of a channel (NO_TIME: never decided).

    States written before consent had a purpose hold ``[flags, ms]``: their decision
    was for order updates, so they read as transactional with no marketing decision."""
    entry = state.consent.get(channel)
    if entry is None:
        return [0, NO_TIME, NO_TIME]
    if len(entry) == 2:
        return [entry[0] & (GRANTED | HAS_PHONE), entry[1], NO_TIME]
    return list(entry)


def state_to_bytes(state: UserState) -> bytes:
    return orjson.dumps(
        [
            FORMAT_VERSION,
            state.key,
            state.user_id,
            state.anonymous_id,
            state.last_ms,
            state.horizon_ms,
            _pack_seen(state.seen, state.last_ms),
            _intent_out(state.user),
            {k: _product_out(p) for k, p in state.products.items()},
            {k: _intent_out(c) for k, c in state.categories.items()},
            state.focus,
            state.focus_ms,
            _cart_out(state.cart),
            state.orders,
            state.order_ids,
            state.vip,
            state.consent,
            state.timezone,
            state.cap_day,
            state.cap_count,
            state.hi_ms,
            [[h.deadline_ms, h.release_ms, h.nudge.model_dump(mode="json")] for h in state.held],
            state.merged,
            [[x.product, x.nudge_id, x.user_key, x.emitted_ms] for x in state.hi_sent],
        ]
    )


def state_from_bytes(data: bytes) -> UserState:
    """Inverse of ``state_to_bytes``; raises ``ValueError`` on a foreign layout."""
    raw = orjson.loads(data)
    if not isinstance(raw, list) or not raw or raw[0] != FORMAT_VERSION:
        raise ValueError(f"not a user state of format {FORMAT_VERSION}")
    (
        _,
        key,
        user_id,
        anonymous_id,
        last_ms,
        horizon_ms,
        seen,
        user,
        products,
        categories,
        focus,
        focus_ms,
        cart,
        orders,
        order_ids,
        vip,
        consent,
        timezone,
        cap_day,
        cap_count,
        hi_ms,
        held,
        merged,
        *newer,
    ) = raw
    # States written before a field was added read back without it.
    hi_sent = newer[0] if newer else []
    return UserState(
        key=key,
        user_id=user_id,
        anonymous_id=anonymous_id,
        last_ms=last_ms,
        horizon_ms=horizon_ms,
        seen=_unpack_seen(seen, last_ms),
        user=_with_total(Intent(*user)),
        products={k: _product_in(p) for k, p in products.items()},
        categories={k: _with_total(Intent(*c)) for k, c in categories.items()},
        focus=focus,
        focus_ms=focus_ms,
        cart=Cart(*cart) if cart is not None else None,
        orders=orders,
        order_ids=order_ids,
        vip=vip,
        consent=consent,
        timezone=timezone,
        cap_day=cap_day,
        cap_count=cap_count,
        hi_ms=hi_ms,
        held=[Held(d, r, Nudge.model_validate(n)) for d, r, n in held],
        merged=merged,
        hi_sent=[Sent(*x) for x in hi_sent],
    )
