"""``intentflow local up --partitions 12 --workers 3`` as an operator scales it out: a
subprocess with every real part (Tansu, chDB, three stream workers, dispatcher, provider
simulator, API), simulator-shaped traffic through the collector, and the outcomes read
where they land: each worker's ``/metrics`` (which partitions it owns), the provider
simulator (which messages went out) and the warehouse (which events are stored).

The traffic: shoppers spread so that every one of the 12 partitions holds some, each
giving WhatsApp consent with a phone of their own, viewing a product and leaving it in
the cart. On ``make demo``'s rules (pipeline/local/demo_rules.yaml: a cart idle 60 s is
rescued, no quiet hours, no holdout) that is exactly one cart rescue per shopper. The
journeys are dated a few minutes back, so their deadlines have passed and the workers'
wall-clock watermark fires them as soon as a partition is idle: no waiting a minute.
"""

import contextlib
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import httpx

from api.producer import partition_for
from pipeline.local.simulate import CATALOG, SHOP
from tests import support

PARTITIONS = 12
WORKERS = 3
SHOPPERS_PER_PARTITION = 3
DEMO_RULES = support.PROJECT_ROOT / "pipeline" / "local" / "demo_rules.yaml"
RAW = "telemetry.raw"
STARTUP_TIMEOUT_S = 120.0
OUTCOME_TIMEOUT_S = 90.0

scrape, value = support.scrape_metrics, support.metric_value


def shoppers() -> list[str]:
    """User ids, ``SHOPPERS_PER_PARTITION`` on each partition (the collector's partitioner)."""
    per_partition: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    run = uuid.uuid4().hex[:6]
    n = 0
    while any(len(users) < SHOPPERS_PER_PARTITION for users in per_partition.values()):
        user = f"scale-{run}-{n}"
        users = per_partition[partition_for(user.encode(), PARTITIONS)]
        if len(users) < SHOPPERS_PER_PARTITION:
            users.append(user)
        n += 1
    return [user for users in per_partition.values() for user in users]


def phone_of(index: int) -> str:
    """A distinct fictional number per shopper (555-01xx block, like the simulator's): its
    last four digits, all the provider simulator shows, name the shopper."""
    area = (201, 212, 303, 415, 512, 617, 702, 808)[index // 100]
    return f"+1{area}55501{index % 100:02d}"


def abandoned_cart(user: str, index: int, start: datetime) -> list[dict[str, Any]]:
    """Consent, a landing, a product view and an add to cart, then nothing: a rescue."""
    product = CATALOG[index % len(CATALOG)]
    item = {"product_id": product.product_id, "category": product.category}
    session = str(uuid.uuid4())
    context = {
        "page": {"url": f"{SHOP}/p/{product.product_id}", "path": f"/p/{product.product_id}"},
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "locale": "en-US",
        "timezone": "UTC",
        "device": "desktop",
        "country": "US",
    }

    def event(name: str, at_s: float, properties: dict[str, Any]) -> dict[str, Any]:
        when = start + timedelta(seconds=at_s)
        return {
            "event_id": str(uuid.uuid4()),
            "name": name,
            "timestamp": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "anonymous_id": f"anon-{user}",
            "user_id": user,
            "session_id": session,
            "properties": properties,
            "context": context,
        }

    consent = {"channel": "whatsapp", "granted": True, "purpose": "marketing"}
    return [
        event("consent", 0, {**consent, "phone": phone_of(index)}),
        event("page_view", 5, {"url": f"{SHOP}/p/{product.product_id}"}),
        event("product_view", 6, {**item, "price": product.price}),
        event("add_to_cart", 20, {**item, "quantity": 1, "price": product.price}),
    ]


def post_abandoned_carts(stack: support.LocalStack, users: list[str]) -> list[dict[str, Any]]:
    """Every shopper's abandoned cart, three minutes old, in one batch to the collector."""
    start = datetime.now(UTC) - timedelta(minutes=3)
    events = [e for i, u in enumerate(users) for e in abandoned_cart(u, i, start)]
    answer = httpx.post(
        f"{stack.api}/v1/track",
        json={"batch": events},
        headers={"Authorization": f"Bearer {stack.env['INTENTFLOW_WRITE_KEY']}"},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == len(events), answer.text
    return events


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: val.strip("'") for key, val in pairs}


def owned_partitions(url: str) -> set[int]:
    """The raw topic's partitions this worker measures lag on: those assigned to it."""
    return {
        int(dict(labels)["partition"])
        for (name, labels) in scrape(url)
        if name == "intentflow_consumer_lag" and dict(labels)["topic"] == RAW
    }


def test_twelve_partitions_three_workers_each_rescue_sent_once(tmp_path: Path) -> None:
    started = time.monotonic()
    env = support.child_env(
        RULES=str(DEMO_RULES),
        # Shoppers neither read nor click: only the sends are counted.
        SIM_READ_RATE="0",
        SIM_CLICK_RATE="0",
        SIM_DELAY_S="0.2",
        LOG_LEVEL="warning",
    )
    scale = ("--partitions", str(PARTITIONS), "--workers", str(WORKERS))
    with support.local_stack(tmp_path, *scale, env=env, timeout_s=STARTUP_TIMEOUT_S) as stack:
        up_s = time.monotonic() - started
        metrics, keys = stack.metrics, stack.env
        workers = [metrics[f"worker-{i}"] for i in range(WORKERS)]
        providers = stack.url("providers")

        users = shoppers()
        events = post_abandoned_carts(stack, users)
        sent_s = time.monotonic() - started

        # 1. Every partition of the raw topic is owned by exactly one worker.
        owners: list[set[int]] = []

        def settled() -> bool:
            owners[:] = [owned_partitions(url) for url in workers]
            return sum(map(len, owners)) == PARTITIONS and set().union(*owners) == set(
                range(PARTITIONS)
            )

        with contextlib.suppress(TimeoutError):  # the assertions below say how it is wrong
            support.wait_for(settled, OUTCOME_TIMEOUT_S, "12 partitions owned", interval_s=0.5)
        owned = sorted(p for partitions in owners for p in partitions)
        assert owned == list(range(PARTITIONS)), f"owned {owned} by workers as {owners}"
        assert all(owners), f"a worker owns nothing: {owners}"

        # 2. One rescue per shopper reaches the provider, none twice. Counted once the
        # dispatcher has read every nudge the workers published (re-published ones too).
        tails = {phone_of(i)[-4:]: user for i, user in enumerate(users)}
        messages: list[dict[str, Any]] = []

        def dispatched() -> bool:
            published = sum(
                value(scrape(url), "intentflow_records_out_total", topic="nudges")
                for url in workers
            )
            read = value(
                scrape(metrics["dispatcher"]), "intentflow_records_in_total", topic="nudges"
            )
            messages[:] = httpx.get(providers, timeout=10).json()["messages"]
            return published >= len(users) and read >= published and len(messages) >= len(users)

        with contextlib.suppress(TimeoutError):  # the assertions below say who is missing
            support.wait_for(dispatched, OUTCOME_TIMEOUT_S, "every rescue sent", interval_s=0.5)
        per_shopper = Counter(tails.get(m["to_masked"][-4:], m["to_masked"]) for m in messages)
        missing = sorted(set(users) - set(per_shopper))
        assert not missing, f"no rescue reached the provider for {missing}"
        assert set(per_shopper) == set(users), per_shopper
        assert set(per_shopper.values()) == {1}, [u for u, n in per_shopper.items() if n > 1]
        assert {m["kind"] for m in messages} == {"cart_rescue"}
        assert len({m["message_id"] for m in messages}) == len(users)
        decided = [
            value(scrape(url), "intentflow_decisions_total", kind="cart_rescue", status="emit")
            for url in workers
        ]
        assert sum(decided) >= len(users)  # at least once: a rebalance may decide twice

        # 3. Every event reaches the warehouse (through the three workers' sinks).
        ids = [e["event_id"] for e in events]
        client = clickhouse_connect.get_client(
            dsn=keys["INTENTFLOW_CLICKHOUSE_URL"],
            database=keys["INTENTFLOW_CLICKHOUSE_DATABASE"],
        )
        try:

            def stored() -> int:
                query = "SELECT uniqExact(event_id) FROM events WHERE toString(event_id) IN %(ids)s"
                return client.query(query, parameters={"ids": ids}).result_rows[0][0]

            support.wait_for(lambda: stored() == len(ids), 60, "events in the warehouse", 0.5)
        finally:
            client.close()
        done_s = time.monotonic() - started
        print(
            f"12x3: up {up_s:.1f}s, traffic sent {sent_s:.1f}s, outcomes {done_s:.1f}s; "
            f"owners {[sorted(o) for o in owners]}; {len(users)} shoppers, "
            f"{len(messages)} messages, decided {decided}"
        )

        # The stack stops its parts on SIGTERM, none left behind.
        status, outlived = stack.stop()
        assert status == 0, stack.log_path.read_text()[-3000:]
        assert outlived == set(), "parts outlived the stack"
