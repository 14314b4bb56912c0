"""Storefront traffic: seeded shopper journeys, posted through the collector.

``generate_events`` is pure (seed and window end in, events out: same seed,
same events, event ids included) so tests and benchmarks reuse it;
``post_events`` sends them in batches; ``simulate_command`` is the
``intentflow simulate`` command.

Journeys: landings (some from campaigns and from our own messages), browsing
and searching, product views with deep scrolls and spec lingers, cart changes,
exit intents, abandoned carts, checkouts and orders, return visits over days,
logins (identify) and channel consents. Phone numbers are fictional: the
North American 555-01xx block, reserved for fiction.
"""

import hashlib
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import httpx

from pipeline.progress import Progress
from schemas.events import SERVER_EVENTS

# --- the catalog -------------------------------------------------------------

CATEGORIES = {
    "phones": ("Phone", 199.0, 1299.0),
    "laptops": ("Laptop", 499.0, 2999.0),
    "headphones": ("Headphones", 29.0, 449.0),
    "cameras": ("Camera", 249.0, 2499.0),
    "watches": ("Watch", 99.0, 899.0),
}
SEARCH_TERMS = {
    "phones": ("phone", "5g phone", "cheap phone", "phone 256gb"),
    "laptops": ("laptop", "ultrabook", "gaming laptop", "laptop 16gb"),
    "headphones": ("headphones", "noise cancelling", "earbuds", "wireless headphones"),
    "cameras": ("camera", "mirrorless", "vlog camera", "lens"),
    "watches": ("smartwatch", "running watch", "watch"),
}
BUTTONS = (("newsletter-signup", "Subscribe"), ("size-guide", "Size guide"), ("compare", "Compare"))
USER_AGENTS = (
    ("desktop", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"),
    ("desktop", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605"),
    ("mobile", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148 Safari"),
    ("mobile", "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Mobile Chrome/126"),
    ("tablet", "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile"),
)
LOCALES = (("en-US", "America/New_York", "US"), ("en-GB", "Europe/London", "GB"))
LOCALES += (("de-DE", "Europe/Berlin", "DE"), ("fr-FR", "Europe/Paris", "FR"))
CAMPAIGNS = (
    {"source": "google", "medium": "cpc", "name": "spring_sale"},
    {"source": "newsletter", "medium": "email", "name": "weekly"},
    {"source": "instagram", "medium": "social", "name": "creators"},
)
SHOP = "https://shop.example"
CURRENCY = "EUR"


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    name: str
    category: str
    price: float


def _make_catalog() -> tuple[Product, ...]:
    rng = random.Random(1729)  # fixed: the catalog is part of the simulated world
    products = []
    for category, (noun, low, high) in CATEGORIES.items():
        for n in range(1, 9):
            price = round(rng.uniform(low, high), 0) - 0.01
            products.append(Product(f"{category[:3]}-{n:03d}", f"{noun} {n}", category, price))
    return tuple(products)


CATALOG = _make_catalog()


def fake_phone(rng: random.Random) -> str:
    """An E.164 number in the fictional 555-01xx block of a US area code."""
    area = rng.choice((201, 212, 303, 415, 512, 617, 702, 808))
    return f"+1{area}55501{rng.randrange(100):02d}"


# --- when shoppers read their messages (pure) ----------------------------------
# The simulator's truth for send-time optimisation: each shopper has a hidden preferred
# local hour, fixed by the seed. They check their phone mostly then, so their reads and
# clicks cluster there, and a message arriving near it is likelier to be read than one
# buried under a day of others. Tests state this truth and compare what was learned.

PREFERRED_SHARE = 0.8  # of a shopper's reads, those at their preferred hour
READ_AT_BEST, READ_FAR = 0.65, 0.15  # read chances at the preferred hour, 3+ hours away


def preferred_hour(seed: int, user: str) -> int:
    """The shopper's hidden best hour to be reached (local time, 0-23)."""
    digest = hashlib.blake2b(f"{seed}\x1f{user}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) % 24


def reading_hour(rng: random.Random, preferred: int) -> int:
    """The local hour of one of the shopper's reads: mostly their preferred one."""
    return preferred if rng.random() < PREFERRED_SHARE else rng.randrange(24)


def read_chance(preferred: int, local_hour: int) -> float:
    """How likely a message arriving at ``local_hour`` is read: highest at the preferred
    hour, falling over three hours either side (the clock wraps) to a floor."""
    distance = min((local_hour - preferred) % 24, (preferred - local_hour) % 24)
    return READ_FAR + (READ_AT_BEST - READ_FAR) * max(0.0, 1 - distance / 3)


# --- which message variant shoppers click (pure) --------------------------------
# The simulator's truth for the variant bandit (schemas/bandit.py): each shopper has a
# hidden preferred variant among a template's, fixed by the seed; most shoppers share
# the same one (``variants[0]``), the rest are spread over all. A shopper clicks a
# message in their preferred variant likelier than one in another.

MAJORITY_SHARE = 0.6  # of shoppers, those preferring the template's first variant
CLICK_PREFERRED, CLICK_OTHER = 0.3, 0.08


def preferred_variant(seed: int, user: str, variants: Sequence[str]) -> str:
    """The shopper's hidden preferred variant: ``variants[0]`` for most of them."""
    digest = hashlib.blake2b(f"variant\x1f{seed}\x1f{user}".encode(), digest_size=8).digest()
    draw = int.from_bytes(digest) / 2**64
    if draw < MAJORITY_SHARE:
        return variants[0]
    return variants[int((draw - MAJORITY_SHARE) / (1 - MAJORITY_SHARE) * len(variants))]


def click_chance(preferred: str, shown: str) -> float:
    return CLICK_PREFERRED if shown == preferred else CLICK_OTHER


# --- journeys (pure) ---------------------------------------------------------


@dataclass
class _Shopper:
    anonymous_id: str
    user_id: str | None
    device: str
    user_agent: str
    locale: str
    timezone: str
    country: str
    budget: int
    cart: dict[str, int] = field(default_factory=dict)
    consented: set[str] = field(default_factory=set)
    # One phone per shopper: a browser cannot replace a known phone (docs/dispatch.md).
    phone: str | None = None
    # Hidden purchase propensity in [0, 1] (``simulate_shoppers``): drives how often the
    # shopper lingers on specs, adds to the cart and completes a checkout. None: the
    # plain traffic of ``generate_events``, where every shopper behaves alike.
    propensity: float | None = None


class _Journey:
    """Writes one shopper's events; time only moves forward."""

    def __init__(self, rng: random.Random, shopper: _Shopper, out: list[dict[str, Any]]) -> None:
        self.rng = rng
        self.shopper = shopper
        self.out = out
        self.now = datetime.min.replace(tzinfo=UTC)
        self.session_id = ""
        self.page: dict[str, Any] = {}
        self.campaign: dict[str, str] | None = None
        self.written = 0

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def chance(self, plain: float, low: float, high: float) -> bool:
        """A coin with probability ``plain``; with a propensity p, ``low + (high - low) p``."""
        p = self.shopper.propensity
        return self.rng.random() < (plain if p is None else low + (high - low) * p)

    def wait(self, low_s: float, high_s: float) -> None:
        self.now += timedelta(seconds=self.rng.uniform(low_s, high_s))

    def emit(
        self, name: str, properties: dict[str, Any], *, anonymous_id: str | None = None
    ) -> None:
        shopper = self.shopper
        context: dict[str, Any] = {
            "page": dict(self.page),
            "user_agent": shopper.user_agent,
            "locale": shopper.locale,
            "timezone": shopper.timezone,
            "device": shopper.device,
            "country": shopper.country,
        }
        if self.campaign:
            context["campaign"] = dict(self.campaign)
        event: dict[str, Any] = {
            "event_id": self.uuid(),
            "name": name,
            "timestamp": self.now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "anonymous_id": anonymous_id or shopper.anonymous_id,
            "session_id": self.session_id,
            "properties": properties,
            "context": context,
        }
        if shopper.user_id:
            event["user_id"] = shopper.user_id
        self.out.append(event)
        self.written += 1

    def goto(self, path: str, title: str, properties: dict[str, Any] | None = None) -> None:
        referrer = self.page.get("url")
        self.page = {"url": SHOP + path, "path": path.split("?")[0], "title": title}
        if referrer:
            self.page["referrer"] = referrer
        self.emit("page_view", {"url": SHOP + path, **(properties or {})})

    # A session: landing, then a walk over the shop until the shopper leaves.
    def session(self, start: datetime) -> None:
        rng, shopper = self.rng, self.shopper
        self.now, self.session_id, self.page = start, self.uuid(), {}
        self.campaign = None
        roll = rng.random()
        if roll < 0.25:
            self.campaign = dict(rng.choice(CAMPAIGNS))
        elif roll < 0.32 and shopper.consented:
            # Landing from one of our own messages (a cart rescue, an offer).
            self.campaign = {"source": "intentflow", "medium": "whatsapp", "name": "nudge"}
            self.campaign["utm_message_id"] = f"msg-{rng.getrandbits(48):012x}"
        if shopper.cart and rng.random() < 0.5:
            self.goto("/cart", "Your cart")
        else:
            self.goto("/", "Home")
        interest = rng.choice(list(CATEGORIES))
        for _ in range(rng.randint(2, 14)):
            if self.written >= shopper.budget:
                return
            self.wait(4, 90)
            action = rng.random()
            if action < 0.12:
                interest = self.search(interest)
            elif action < 0.55:
                self.view_product(interest)
            elif action < 0.62 and shopper.cart:
                self.remove_from_cart()
            elif action < 0.67:
                element_id, text = rng.choice(BUTTONS)
                self.emit("button_click", {"element_id": element_id, "text": text})
            elif action < 0.72 and shopper.user_id is None:
                self.identify()
            elif action < 0.76 and shopper.user_id and not shopper.consented:
                self.consent()
            elif action < 0.86 and shopper.cart:
                if self.checkout():
                    return
            else:
                interest = rng.choice(list(CATEGORIES))
                self.goto(f"/c/{interest}", interest.title())
                if rng.random() < 0.4:
                    self.emit("deep_scroll", {"percentage": rng.choice((50, 75, 90, 100))})
        if rng.random() < 0.35:
            self.wait(1, 20)
            self.emit("exit_intent", {})

    def search(self, interest: str) -> str:
        category = interest if self.rng.random() < 0.7 else self.rng.choice(list(CATEGORIES))
        query = self.rng.choice(SEARCH_TERMS[category])
        self.goto(f"/search?q={query.replace(' ', '+')}", f"Search: {query}")
        self.emit("search", {"query": query})
        return category

    def view_product(self, interest: str) -> None:
        rng = self.rng
        pool = [p for p in CATALOG if p.category == interest]
        product = rng.choice(pool if rng.random() < 0.8 else CATALOG)
        self.goto(f"/p/{product.product_id}", product.name)
        item = {"product_id": product.product_id, "category": product.category}
        self.emit("product_view", {**item, "price": product.price})
        if rng.random() < 0.45:
            self.wait(3, 30)
            self.emit("deep_scroll", {"percentage": rng.choice((50, 75, 90, 100))})
        if self.chance(0.35, 0.05, 0.8):
            dwell_ms = int(rng.lognormvariate(9.3, 0.6)) + 3000  # ≥ 3 s, like the tracker
            self.now += timedelta(milliseconds=dwell_ms)
            self.emit("spec_linger", {**item, "dwell_ms": dwell_ms})
        if self.chance(0.3, 0.03, 0.6):
            self.wait(2, 40)
            quantity = 1 if rng.random() < 0.85 else rng.randint(2, 3)
            self.shopper.cart[product.product_id] = (
                self.shopper.cart.get(product.product_id, 0) + quantity
            )
            self.emit("add_to_cart", {**item, "quantity": quantity, "price": product.price})

    def remove_from_cart(self) -> None:
        product_id = self.rng.choice(sorted(self.shopper.cart))
        product = next(p for p in CATALOG if p.product_id == product_id)
        quantity = self.shopper.cart.pop(product_id)
        self.goto("/cart", "Your cart")
        self.emit(
            "remove_from_cart",
            {
                "product_id": product_id,
                "category": product.category,
                "quantity": quantity,
                "price": product.price,
            },
        )

    def identify(self) -> None:
        shopper = self.shopper
        shopper.user_id = f"user-{self.rng.getrandbits(40):010x}"
        traits = {"plan": self.rng.choice(("free", "plus")), "locale": shopper.locale}
        self.emit("identify", {"traits": traits})

    def consent(self) -> None:
        rng = self.rng
        channel = rng.choices(("whatsapp", "sms", "email"), weights=(6, 3, 1))[0]
        granted = rng.random() < 0.85
        # Simulated shoppers agree to offers (marketing): nudges need that consent.
        properties: dict[str, Any] = {
            "channel": channel,
            "granted": granted,
            "purpose": "marketing",
        }
        if channel != "email":
            if self.shopper.phone is None:
                self.shopper.phone = fake_phone(rng)
            properties["phone"] = self.shopper.phone
        if granted:
            self.shopper.consented.add(channel)
        self.emit("consent", properties)

    def checkout(self) -> bool:
        """True when the shopper ordered (the session ends at the confirmation)."""
        rng, shopper = self.rng, self.shopper
        self.goto("/checkout", "Checkout")
        self.emit("checkout_started", {})
        if self.chance(0.35, 0.98, 0.05):
            return False  # abandoned at checkout
        if shopper.user_id is None and rng.random() < 0.6:
            self.wait(5, 40)
            self.identify()
        self.wait(20, 180)
        items = []
        for product_id, quantity in sorted(shopper.cart.items()):
            product = next(p for p in CATALOG if p.product_id == product_id)
            amount = round(product.price * quantity, 2)
            discount = round(amount * 0.1, 2) if self.campaign and rng.random() < 0.5 else 0.0
            tax = round((amount - discount) * 0.2, 2)
            items.append(
                {
                    "product_id": product_id,
                    "category": product.category,
                    "quantity": quantity,
                    "amount": amount,
                    "tax": tax,
                    "discount": discount,
                }
            )
        total = round(sum(i["amount"] - i["discount"] + i["tax"] for i in items), 2)
        order_id = f"ord-{rng.getrandbits(48):012x}"
        self.goto(f"/order/{order_id}", "Thank you")
        # Sent by the store backend (server key), with the shopper's ids and campaign.
        self.emit(
            "order_placed",
            {"order_id": order_id, "items": items, "total": total, "currency": CURRENCY},
        )
        shopper.cart.clear()
        return True


def _new_shopper(rng: random.Random, budget: int, driven: bool) -> _Shopper:
    device, user_agent = rng.choice(USER_AGENTS)
    locale, timezone, country = rng.choice(LOCALES)
    anonymous_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    shopper = _Shopper(anonymous_id, None, device, user_agent, locale, timezone, country, budget)
    if driven:
        # Most shoppers browse, a few mean to buy: mean 1/3, long right tail.
        shopper.propensity = rng.betavariate(1.0, 2.0)
    return shopper


@dataclass(frozen=True, slots=True)
class SimulatedTraffic:
    """Events, and the truth the pipeline never sees: each shopper's purchase propensity,
    by anonymous id (every event of a shopper carries it, logged in or not)."""

    events: list[dict[str, Any]]
    propensity: dict[str, float]


# The signals a propensity makes predictive: spec lingers and carts directly, checkouts
# through the cart. The others (page views, searches, deep scrolls, button clicks, exit
# intents) are drawn alike for every shopper.
DRIVEN_SIGNALS = frozenset({"spec_linger", "add_to_cart", "checkout_started"})


def simulate_shoppers(
    seed: int, users: int, events: int, end: datetime, days: float = 7.0
) -> SimulatedTraffic:
    """``generate_events`` with a hidden purchase propensity per shopper (seeded) driving
    how often they linger on specs (0.1 → 0.7 of product views), add to the cart
    (0.1 → 0.6) and complete a checkout (0.1 → 0.95), for propensity 0 → 1."""
    out, shoppers = _generate(seed, users, events, end, days, driven=True)
    return SimulatedTraffic(out, {s.anonymous_id: s.propensity or 0.0 for s in shoppers})


def generate_events(
    seed: int, users: int, events: int, end: datetime, days: float = 7.0
) -> list[dict[str, Any]]:
    """Exactly ``events`` events (as clients send them) of ``users`` shoppers, oldest first.

    Event times fall in the ``days`` before ``end``. Pure: the same arguments
    give the same events, ids included.
    """
    return _generate(seed, users, events, end, days, driven=False)[0]


def _generate(
    seed: int, users: int, events: int, end: datetime, days: float, driven: bool
) -> tuple[list[dict[str, Any]], list[_Shopper]]:
    if users < 1 or events < 0 or days <= 0 or end.tzinfo is None:
        raise ValueError("need users ≥ 1, events ≥ 0, days > 0 and an end time with a zone")
    rng = random.Random(seed)
    window_start = end - timedelta(days=days)
    # Sessions end well before ``end``; a session lasts at most ~1 h.
    span_s = max(days * 86_400 - 7_200, 1.0)
    out: list[dict[str, Any]] = []
    shoppers: list[_Shopper] = []
    share, extra = divmod(events, users)
    for index in range(users):
        budget = share + (1 if index < extra else 0)
        if budget == 0:
            continue
        journey = _Journey(rng, _new_shopper(rng, budget, driven), out)
        shoppers.append(journey.shopper)
        # Return visits: later sessions pick up a cart left behind.
        first = rng.uniform(0, span_s * 0.8)
        session_starts = iter(sorted(rng.uniform(first, span_s) for _ in range(64)))
        session_start = first
        while journey.written < budget:
            journey.session(window_start + timedelta(seconds=session_start))
            session_start = next(session_starts, session_start + 3_600)
        # A price drop now and then, from the store backend.
        if rng.random() < 0.05 and journey.written:
            product = rng.choice(CATALOG)
            journey.emit(
                "price_drop",
                {
                    "product_id": product.product_id,
                    "old_price": product.price,
                    "new_price": round(product.price * 0.85, 2),
                },
                anonymous_id=f"catalog:{product.product_id}",
            )
            out[-1].pop("user_id", None)
            out[-1].pop("session_id", None)
            out[-1]["context"] = {}
    out.sort(key=lambda event: event["timestamp"])
    return out[:events], shoppers


def is_server_event(event: dict[str, Any]) -> bool:
    return event["name"] in SERVER_EVENTS


# --- posting -----------------------------------------------------------------


@dataclass
class PostSummary:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    skipped_server_events: int = 0
    failed_requests: int = 0
    rejection_reasons: Counter[str] = field(default_factory=Counter)


def _batches(
    events: list[dict[str, Any]], batch_size: int, with_server_key: bool
) -> Iterator[tuple[bool, list[dict[str, Any]]]]:
    """(is_server, batch) in time order; a batch is flushed when the sender kind changes."""
    batch: list[dict[str, Any]] = []
    batch_is_server = False
    for event in events:
        server = is_server_event(event)
        if server and not with_server_key:
            continue
        if batch and (server != batch_is_server or len(batch) >= batch_size):
            yield batch_is_server, batch
            batch = []
        batch_is_server = server
        batch.append(event)
    if batch:
        yield batch_is_server, batch


def post_events(
    events: list[dict[str, Any]],
    api: str,
    write_key: str,
    server_key: str | None = None,
    *,
    batch_size: int = 100,
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
    client: httpx.Client | None = None,
    max_attempts: int = 5,
) -> PostSummary:
    """POST the events to ``{api}/v1/track``; server-side events need ``server_key``."""
    summary = PostSummary()
    summary.skipped_server_events = 0 if server_key else sum(map(is_server_event, events))
    own_client = client is None
    http = client or httpx.Client(timeout=30.0)
    started = time.monotonic()
    try:
        for server, batch in _batches(events, batch_size, server_key is not None):
            key = server_key if server else write_key
            for attempt in range(max_attempts):
                try:
                    response = http.post(
                        f"{api.rstrip('/')}/v1/track",
                        json={"batch": batch},
                        headers={"Authorization": f"Bearer {key}"},
                    )
                except httpx.TransportError:
                    response = None
                if response is not None and response.status_code == 202:
                    body = response.json()
                    summary.accepted += body["accepted"]
                    summary.rejected += len(body["rejected"])
                    for rejection in body["rejected"]:
                        for error in rejection["errors"]:
                            loc = ".".join(map(str, error["loc"]))
                            summary.rejection_reasons[f"{loc}: {error['msg']}"] += 1
                    break
                if response is not None and response.status_code not in (429, 503):
                    summary.failed_requests += 1
                    reason = f"HTTP {response.status_code}: {response.text[:200]}"
                    summary.rejection_reasons[reason] += len(batch)
                    break
                retry_after = response.headers.get("retry-after") if response else None
                time.sleep(float(retry_after) if retry_after else min(2**attempt, 30))
            else:
                summary.failed_requests += 1
            summary.sent += len(batch)
            if progress:
                progress(len(batch))
            if rate:
                # Stay under ``rate`` events/s on average since the start.
                ahead_s = summary.sent / rate - (time.monotonic() - started)
                if ahead_s > 0:
                    time.sleep(ahead_s)
    finally:
        if own_client:
            http.close()
    return summary


# --- the command -------------------------------------------------------------


def _parse_end(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC).replace(microsecond=0)
    end = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if end.tzinfo is None:
        raise click.BadParameter("give a zone, e.g. 2024-05-01T00:00:00Z", param_hint="--end")
    return end


@click.command("simulate")
@click.option("--api", required=True, help="Collector base URL, e.g. http://127.0.0.1:8000.")
@click.option(
    "--write-key",
    required=True,
    envvar="INTENTFLOW_SIMULATE_WRITE_KEY",
    help="A write key of the collector (the browser events are sent with it).",
)
@click.option(
    "--server-key",
    envvar="INTENTFLOW_SIMULATE_SERVER_KEY",
    help="Needed for orders and price drops; without it they are skipped.",
)
@click.option(
    "--users", type=click.IntRange(min=1), default=100, show_default=True, help="Distinct shoppers."
)
@click.option(
    "--events",
    type=click.IntRange(min=0),
    default=10_000,
    show_default=True,
    help="Events to generate and post, in all.",
)
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Max events/s.")
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    default=7.0,
    show_default=True,
    help="Event times spread over this many days before --end.",
)
@click.option("--seed", type=int, help="Same seed and --end: same events. Default: random.")
@click.option(
    "--end",
    "--start",
    "end",
    help="ISO-8601 end of the time window (default: now). --start is its old name, deprecated.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 500),
    default=100,
    show_default=True,
    help="Events per POST /v1/track request.",
)
def simulate_command(
    api: str,
    write_key: str,
    server_key: str | None,
    users: int,
    events: int,
    rate: float | None,
    days: float,
    seed: int | None,
    end: str | None,
    batch_size: int,
) -> None:
    """Send realistic shopper journeys to the collector."""
    seed = seed if seed is not None else int.from_bytes(os.urandom(4), "big")
    end_at = _parse_end(end)
    generated = generate_events(seed, users, events, end_at, days)
    click.echo(
        f"seed {seed}, end {end_at.isoformat()}: {len(generated)} events "
        f"of {users} shoppers over {days:g} days",
        err=True,
    )
    began = time.monotonic()
    progress = Progress("posting", total=len(generated))
    try:
        summary = post_events(
            generated,
            api,
            write_key,
            server_key,
            batch_size=batch_size,
            rate=rate,
            progress=progress.advance,
        )
    finally:
        progress.close()
    elapsed = time.monotonic() - began
    counts = Counter(event["name"] for event in generated)
    lines = [
        f"accepted {summary.accepted}, rejected {summary.rejected}, "
        f"skipped {summary.skipped_server_events} server-side (no --server-key), "
        f"failed requests {summary.failed_requests}",
        f"{elapsed:.1f} s, {summary.sent / elapsed if elapsed else 0:.0f} events/s",
        "by event: " + ", ".join(f"{name} {n}" for name, n in counts.most_common()),
    ]
    # Reasons name fields and rules, never values: no personal data in the output.
    lines += [f"  {n} × {reason}" for reason, n in summary.rejection_reasons.most_common(10)]
    click.echo("\n".join(lines))
    if summary.failed_requests:
        sys.exit(1)
