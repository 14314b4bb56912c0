"""Generated shoppers in the warehouse, for segment and campaign tests.

Each shopper gets events (visits, category views, orders, device, country),
some a consent per channel with a phone, some a VIP upgrade or an engine
decision with a score; rows are written as the sink writes them.
"""

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

from api.privacy.store import ConsentDecision, PrivacyStore
from pipeline.sink.rows import EVENTS, NUDGES, VIP_UPGRADES, event_row, nudge_row, vip_row
from schemas import pii
from schemas.events import parse_event
from schemas.messages import Nudge, VipUpgrade

CATEGORIES = ("shoes", "bags", "phones", "books", "toys")
COUNTRIES = ("DE", "FR", "IN", "US", "")
DEVICES = ("mobile", "desktop", "tablet", "")
# Taken in turn (not drawn), so adding them left every other generated value as it was.
TIMEZONES = ("Asia/Kolkata", "America/New_York", "Europe/Berlin", None)
CHANNELS = ("whatsapp", "sms", "email")


@dataclass
class Shoppers:
    user_keys: list[str] = field(default_factory=list)
    # user → channels with consent granted (and a phone for whatsapp/sms).
    consented: dict[str, set[str]] = field(default_factory=dict)
    phones: dict[str, str] = field(default_factory=dict)
    timezones: dict[str, str | None] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)


def event_of(name: str, user: str, at: datetime, session: str, **extra) -> dict:
    """An event of ``user`` as a tracker sends it; ``extra`` is its context."""
    properties = extra.pop("properties", {})
    return {
        "event_id": str(uuid.uuid4()),
        "name": name,
        "timestamp": at.isoformat(),
        "anonymous_id": f"anon-{user}",
        "user_id": user,
        "session_id": session,
        "properties": properties,
        "context": extra,
    }


def write_shoppers(
    client: Client,
    count: int,
    seed: int,
    now: datetime,
    master: str,
    prefix: str = "shopper",
    consent_share: float = 0.6,
) -> Shoppers:
    rng = random.Random(seed)
    out = Shoppers()
    events, vips, nudges, consents = [], [], [], []
    received = now + timedelta(minutes=1)
    for i in range(count):
        user = f"{prefix}-{seed}-{i:05d}"
        out.user_keys.append(user)
        context = {}
        if country := rng.choice(COUNTRIES):
            context["country"] = country
        if device := rng.choice(DEVICES):
            context["device"] = device
        out.timezones[user] = timezone = TIMEZONES[i % len(TIMEZONES)]
        if timezone:
            context["timezone"] = timezone
        last = now - timedelta(days=rng.choice([0, 1, 5, 20, 45, 90]), hours=rng.random())
        for visit in range(rng.randint(1, 3)):
            at = last - timedelta(days=visit * rng.randint(1, 10))
            session = f"s-{user}-{visit}"
            events.append(
                event_of(
                    "page_view",
                    user,
                    at,
                    session,
                    **context,
                    properties={"url": "https://shop.example/"},
                )
            )
            category = rng.choice(CATEGORIES)
            events.append(
                event_of(
                    "product_view",
                    user,
                    at + timedelta(seconds=5),
                    session,
                    **context,
                    properties={"product_id": f"{category}-1", "category": category, "price": 10.0},
                )
            )
            if rng.random() < 0.4:
                total = round(rng.choice([20, 80, 250, 1200, 6000]) * rng.uniform(0.5, 1.5), 2)
                order = {
                    "order_id": f"o-{user}-{visit}",
                    "total": total,
                    "currency": "EUR",
                    "items": [{"product_id": f"{category}-1", "quantity": 1, "amount": total}],
                }
                events.append(
                    event_of(
                        "order_placed",
                        user,
                        at + timedelta(seconds=30),
                        session,
                        **context,
                        properties=order,
                    )
                )
        channels = set()
        phone = f"+1555{rng.randint(0, 9_999_999):07d}"
        for channel in CHANNELS:
            if rng.random() < consent_share:
                granted = rng.random() < 0.85
                consents.append(
                    ConsentDecision(
                        user,
                        channel,
                        granted,
                        last - timedelta(days=100),
                        str(uuid.uuid4()),
                        phone if channel != "email" else None,
                        purpose="marketing",  # campaigns are offers
                    )
                )
                if granted:
                    channels.add(channel)
        out.consented[user] = channels
        out.phones[user] = phone
        if rng.random() < 0.1:
            vips.append(
                VipUpgrade(
                    token_id=uuid.uuid4().hex,
                    user_key=user,
                    user_id=user,
                    discount_percent=10,
                    issued_at=last,
                    expires_at=last + timedelta(days=30),
                    order_count=3,
                    rules_version="test",
                    trigger_event_id=str(uuid.uuid4()),
                )
            )
        if rng.random() < 0.3:
            nudges.append(
                Nudge(
                    nudge_id=uuid.uuid4().hex,
                    kind="high_intent",
                    user_key=user,
                    user_id=user,
                    status="emit",
                    triggered_at=last,
                    decided_at=last,
                    product_id="shoes-1",
                    discount_percent=10,
                    score=round(rng.uniform(0, 5), 2),
                    rules_version="test",
                    trigger_event_id=str(uuid.uuid4()),
                )
            )
    out.events = events
    rows = [event_row(parse_event(e, received_at=received)) for e in events]
    for start in range(0, len(rows), 20_000):
        client.insert(
            EVENTS.name,
            [list(r) for r in rows[start : start + 20_000]],
            column_names=list(EVENTS.columns),
        )
    if vips:
        client.insert(
            VIP_UPGRADES.name,
            [list(vip_row(v, "live")) for v in vips],
            column_names=list(VIP_UPGRADES.columns),
        )
    if nudges:
        client.insert(
            NUDGES.name,
            [list(nudge_row(n, "live")) for n in nudges],
            column_names=list(NUDGES.columns),
        )
    PrivacyStore(client, pii.MasterKey.from_secret(master)).record(consents)
    return out


def utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
