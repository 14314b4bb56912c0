"""Dispatch end to end on the real parts: broker, warehouse, the API (collector, webhooks,
admin, erasure), the provider simulator and the dispatcher as real processes.

Tests run in file order and share the processes: the burst comes first (with a
long delivery timeout), then the dispatcher is restarted with a short one and an
engine worker starts, whose sink brings orders and receipts to the warehouse for the
conversion metrics.

Send time: the dispatcher checks quiet hours (21:00-08:00) in the shopper's zone. Its
rules here make the default zone one where it is midday when the module starts (a
fixed-offset ``Etc/GMT`` zone computed from the real clock), so journeys without a zone
never meet quiet hours whatever the hour the tests run at; quiet hours are tested with
a zone where it is night, computed the same way.
"""

import asyncio
import os
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from clickhouse_connect.driver.client import Client

from api.privacy.store import ConsentDecision, PrivacyStore
from pipeline.domain.rules import default_rules
from schemas import pii
from schemas.inbound import whatsapp_status, whatsapp_webhook
from schemas.keys import hash_api_key
from schemas.messages import CartItem, Nudge
from schemas.provider_refs import encode_ref
from schemas.topics import NUDGES, RECEIPTS
from tests import support
from tests.collector_server import (
    READ_KEY,
    SERVER_KEY,
    WRITE_KEY,
    collector_settings,
    consume_matching,
    running_api,
)

ADMIN_KEY = "ak_test-admin-key"
MASTER = "test-pii-master-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}
SERVER = {"Authorization": f"Bearer {SERVER_KEY}"}
READ = {"Authorization": f"Bearer {READ_KEY}"}
BURST = 1000
# The dispatcher's send waves (send_concurrency): a crash leaves at most one unanswered.
SEND_CONCURRENCY = 32
# A held message expires this long after its hold began (the rules' max_hold_s).
MAX_HOLD_S = 8


def dispatch_rules(path: Path) -> Path:
    raw = default_rules().model_dump()
    raw["suppression"]["default_timezone"] = support.zone_at(12)
    raw["suppression"]["quiet_hours"]["max_hold_s"] = MAX_HOLD_S
    path.write_text(yaml.safe_dump(raw))
    return path


KILL_AT = int(os.environ.get("TEST_DISPATCH_KILL_AT", "250"))


class Dispatcher:
    """The dispatcher as a real process, restartable with other settings."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env, self.process, self.runs = tmp, env, None, 0

    def start(self, **overrides: str) -> None:
        self.runs += 1
        env = support.child_env(**{**self.env, **overrides})
        self.process = support.python_process(
            "dispatcher",
            ["-m", "pipeline.cli", "dispatcher"],
            self.tmp / f"dispatcher-{self.runs}.log",
            env,
        )
        self.process.start()

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.stop(5)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(15)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, broker: str, warehouse: str, clickhouse: Client):
    tmp = tmp_path_factory.mktemp("dispatch")
    database = clickhouse.database
    settings = collector_settings(
        broker,
        clickhouse_url=warehouse,
        clickhouse_database=database,
        pii_master_key=MASTER,
        link_secret="test-link-secret",
        admin_key_hashes=frozenset({hash_api_key(ADMIN_KEY)}),
        **support.api_provider_settings(),
    )
    sim_port, metrics_port = support.free_port(), support.free_port()
    sim_url = f"http://{support.LOOPBACK}:{sim_port}"
    with running_api(settings) as api_url:
        sim = support.python_process(
            "provider-sim",
            ["-m", "pipeline.cli", "provider-sim", "--port", str(sim_port)],
            tmp / "sim.log",
            support.child_env(
                env="test",
                token_secret="test-token-secret-of-at-least-32-bytes",
                pii_master_key=MASTER,
                link_secret="test-link-secret",
                **support.sim_provider_settings(api_url),
                sim_delay_s="0.2",
                sim_read_rate="0",
                sim_click_rate="0",
            ),
        )
        sim.start()
        dispatcher = Dispatcher(
            tmp,
            {
                "env": "test",
                "app_id": f"test-{uuid.uuid4().hex[:8]}",
                "kafka_brokers": broker,
                "clickhouse_url": warehouse,
                "clickhouse_database": database,
                "data_dir": str(tmp / "data"),
                "pii_master_key": MASTER,
                "link_secret": "test-link-secret",
                # Tracked links in messages lead to this API's redirect.
                "public_api_url": api_url,
                "token_secret": "test-token-secret-of-at-least-32-bytes",
                **support.dispatcher_provider_settings(sim_url, api_url),
                "batch_size": "100",
                "send_concurrency": str(SEND_CONCURRENCY),
                "send_unknown_after_s": "5",
                "control_poll_s": "0.3",
                "delivery_timeout_s": "600",
                "rules": str(dispatch_rules(tmp / "dispatch-rules.yaml")),
                "metrics_port": str(metrics_port),
            },
        )
        try:
            support.wait_for_http(f"{sim_url}/health", 30)
            with httpx.Client(timeout=30) as http:
                yield {
                    "api": api_url,
                    "sim": sim_url,
                    "http": http,
                    "dispatcher": dispatcher,
                    "dispatcher_metrics": f"http://{support.LOOPBACK}:{metrics_port}/metrics",
                    "broker": broker,
                    "warehouse": warehouse,
                    "ch": clickhouse,
                    "tmp": tmp,
                }
        finally:
            dispatcher.stop()
            sim.stop(10)
            for log in tmp.glob("*.log"):
                text = log.read_text()
                assert "+1555" not in text, f"a phone number in clear in {log.name}"


@pytest.fixture(scope="module")
def engine(stack):
    """The engine worker (scoring and the warehouse sink), for the conversion metrics: the
    order event and the receipts reach the warehouse through it. Started, not awaited."""
    env = support.process_env(
        app_id=f"test-engine-{uuid.uuid4().hex[:8]}",
        kafka_brokers=stack["broker"],
        clickhouse_url=stack["warehouse"],
        clickhouse_database=stack["ch"].database,
        data_dir=str(stack["tmp"] / "engine"),
        pii_master_key=MASTER,
        log_level="warning",
    )
    worker = support.python_process(
        "worker", ["-m", "pipeline.cli", "worker"], stack["tmp"] / "engine.log", env
    )
    worker.start()
    try:
        yield worker
    finally:
        worker.stop(15)


def sim_messages(stack, message_id: str | None = None) -> list[dict]:
    params = {"message_id": message_id} if message_id else {}
    return stack["http"].get(f"{stack['sim']}/v1/messages", params=params).json()["messages"]


def audit(stack, **params) -> list[dict]:
    response = stack["http"].get(f"{stack['api']}/v1/admin/audit", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()["rows"]


def statuses(stack, message_id: str) -> set[tuple[str, str, str]]:
    return {(r["status"], r["channel"], r["detail"]) for r in audit(stack, message_id=message_id)}


def wait_until(condition, timeout_s: float, what: str) -> None:
    support.wait_for(condition, timeout_s, what, interval_s=0.3)


def consent(
    user: str,
    channel: str,
    granted: bool,
    phone: str | None = None,
    purpose: str | None = "marketing",  # every message the dispatcher sends is marketing
) -> dict:
    props: dict = {"channel": channel, "granted": granted, **({"phone": phone} if phone else {})}
    if purpose is not None:
        props["purpose"] = purpose
    return {
        "event_id": str(uuid.uuid4()),
        "name": "consent",
        "timestamp": datetime.now(UTC).isoformat(),
        "anonymous_id": f"anon-{user}",
        "user_id": user,
        "properties": props,
    }


def track(stack, events: list[dict], headers=WRITE) -> None:
    response = stack["http"].post(
        f"{stack['api']}/v1/track", json={"batch": events}, headers=headers
    )
    assert response.status_code == 202 and not response.json()["rejected"], response.text


def cart_rescue(stack, user: str) -> str:
    response = stack["http"].post(
        f"{stack['api']}/v1/admin/flows/cart-rescue",
        json={"user_id": user, "items": [{"product_id": "sneaker-9", "price": 80.0}]},
        headers=ADMIN,
    )
    assert response.status_code == 202, response.text
    return response.json()["message_id"]


def nudge(user: str, triggered_at: datetime | None = None, timezone: str | None = None) -> Nudge:
    now = datetime.now(UTC)
    return Nudge(
        nudge_id=uuid.uuid4().hex,
        kind="cart_rescue",
        user_key=user,
        user_id=user,
        status="emit",
        triggered_at=triggered_at or now,
        decided_at=now,
        cart_id="c1",
        items=(CartItem(product_id="p1", quantity=1, price=10.0),),
        discount_percent=10,
        channels=("whatsapp",),
        score=1.0,
        rules_version="test",
        trigger_event_id="e1",
        timezone=timezone,
    )


async def produce(brokers: str, nudges: list[Nudge], per_second: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=5, acks="all")
    await producer.start()
    try:
        start = time.monotonic()
        for i, n in enumerate(nudges):
            await asyncio.sleep(max(0.0, start + i / per_second - time.monotonic()))
            await producer.send(NUDGES.name, n.to_json(), key=n.user_key.encode())
        await producer.flush()
    finally:
        await producer.stop()


# --- never twice under SIGKILL -----------------------------------------------------------


def ended(stack, wanted: set[str]) -> dict[str, set[str]]:
    """message id → the final steps (sent, unknown) the dispatcher recorded for it."""
    rows = (
        stack["ch"]
        .query(
            "SELECT message_id, status FROM audit_log"
            " WHERE message_id IN {ids:Array(String)} AND status IN ('sent', 'unknown')",
            parameters={"ids": sorted(wanted)},
        )
        .result_rows
    )
    out: dict[str, set[str]] = {}
    for message_id, status in rows:
        out.setdefault(message_id, set()).add(status)
    return out


def test_a_dispatcher_killed_mid_send_never_sends_a_message_twice(stack):
    """The providers have no idempotency keys: a resend after a crash is a second message.
    Killed with sends in flight, the restarted dispatcher resends none of them: the
    provider's webhooks settle those it took; the rest (at most one wave) end unknown."""
    users = [f"burst-{uuid.uuid4().hex[:10]}" for _ in range(BURST)]
    store = PrivacyStore(stack["ch"], pii.MasterKey.from_secret(MASTER))
    now = datetime.now(UTC)
    store.record(
        [
            ConsentDecision(
                u, "whatsapp", True, now, str(uuid.uuid4()), f"+1555010{i:04d}", "marketing"
            )
            for i, u in enumerate(users)
        ]
    )
    nudges = [nudge(u) for u in users]
    wanted = {n.nudge_id for n in nudges}
    dispatcher = stack["dispatcher"]
    dispatcher.start()

    def accepted() -> list[dict]:
        return [m for m in sim_messages(stack) if m["message_id"] in wanted]

    producing = asyncio.run_coroutine_threadsafe(
        produce(stack["broker"], nudges, per_second=250), _loop()
    )
    wait_until(lambda: len(accepted()) >= KILL_AT, 90, "a quarter of the burst sent")
    dispatcher.kill()
    killed_at = len(accepted())
    assert killed_at < BURST, "the burst was over before the kill"
    producing.result(60)
    dispatcher.start()
    wait_until(lambda: set(ended(stack, wanted)) == wanted, 180, "every nudge sent or unknown")
    taken = accepted()
    by_message: dict[str, int] = {}
    for message in taken:
        by_message[message["message_id"]] = by_message.get(message["message_id"], 0) + 1
    assert max(by_message.values()) == 1, "a shopper got the same message twice"
    assert {m["channel"] for m in taken} == {"whatsapp"}
    steps = ended(stack, wanted)
    unknown = {m for m, s in steps.items() if s == {"unknown"}}
    # Whatever the provider took is known as sent (answered, or reconciled from its
    # webhooks); what never reached it ended unknown, and no more than one wave did.
    assert set(by_message) == wanted - unknown
    assert len(unknown) <= SEND_CONCURRENCY
    print(f"killed after {killed_at} sends; {len(unknown)} intents ended unknown, none resent")


_LOOP: asyncio.AbstractEventLoop | None = None


def _loop() -> asyncio.AbstractEventLoop:
    """A background event loop for producing while the test thread watches."""
    global _LOOP
    if _LOOP is None:
        import threading

        _LOOP = asyncio.new_event_loop()
        threading.Thread(target=_LOOP.run_forever, daemon=True).start()
    return _LOOP


# --- the journeys -----------------------------------------------------------------------


def test_restart_with_a_short_delivery_timeout(stack, engine):
    # The engine joins its group (~20 s on Tansu) while the next journeys run.
    stack["dispatcher"].stop()
    stack["dispatcher"].start(delivery_timeout_s="3")
    stack["http"].post(f"{stack['sim']}/v1/config", json={"read_rate": 1, "click_rate": 1})


def test_cart_rescue_goes_out_on_whatsapp_and_is_read_and_clicked(stack):
    user = f"shopper-{uuid.uuid4().hex[:8]}"
    track(stack, [consent(user, "whatsapp", True, "+15550101234")])
    # The raw topic carries a reference and the masked phone, never the number.
    raw = asyncio.run(
        consume_matching(
            stack["broker"],
            lambda v: v.get("user_id") == user and v["name"] == "consent",
            until=lambda found: bool(found),
        )
    )
    assert raw and "phone" not in raw[0]["properties"]
    assert raw[0]["properties"]["phone_masked"] == "+1 ••••••1234"
    assert raw[0]["properties"]["phone_ref"]

    # The storefront's catalog names the product the rescue is about.
    sneaker = {
        "product_id": "sneaker-9",
        "name": "Trail Runner 9",
        "price": 80.0,
        "currency": "EUR",
        "image_url": "https://shop.example/img/sneaker-9.png",
        "url": "https://shop.example/p/sneaker-9",
        "category": "shoes",
    }
    put = stack["http"].put(
        f"{stack['api']}/v1/products", json={"products": [sneaker]}, headers=SERVER
    )
    assert put.status_code == 200, put.text

    message_id = cart_rescue(stack, user)
    wait_until(
        lambda: (
            {"sent", "delivered", "read", "clicked"}
            <= {s for s, _, _ in statuses(stack, message_id)}
        ),
        40,
        "sent → delivered → read → clicked",
    )
    [message] = sim_messages(stack, message_id)
    assert message["channel"] == "whatsapp" and message["to_masked"] == "+1 ••••••1234"
    # Outside the service window: Meta's approved template, naming the product, its
    # picture in the header, the tracked link's token as the button's suffix.
    content = message["content"]
    assert content["template"] == "intentflow_cart_rescue"
    assert "Trail Runner 9" in content["body_parameters"]
    assert content["header_image"] == sneaker["image_url"]
    assert content["button_url_suffix"] and content["button_url_suffix"] in message["link"]

    # The send is priced from the rules' rate card (a US marketing template); the
    # engine's sink brings the receipt to the warehouse.
    def priced() -> list[tuple]:
        return (
            stack["ch"]
            .query(
                "SELECT cost, currency FROM receipts WHERE message_id = {m:String}"
                " AND status = 'sent'",
                parameters={"m": message_id},
            )
            .result_rows
        )

    wait_until(lambda: bool(priced()), 60, "the sent receipt in the warehouse")
    card = default_rules().dispatch.rate_card
    assert priced()[0] == (card.whatsapp_marketing["1"], card.currency)
    # The link the shopper's phone opened (the simulator followed it, as a phone does)
    # leads through our redirect, which counts the click and lands the shopper on the
    # storefront with the message's UTM tags.
    link = message["link"]
    assert link.startswith(f"{stack['api']}/v1/r/"), link
    tapped = stack["http"].get(link, follow_redirects=False)
    assert tapped.status_code == 302, tapped.text
    landing = tapped.headers["location"]
    assert parse_qs(urlparse(landing).query)["utm_message_id"] == [message_id]
    stack["message"] = (user, message_id, landing)


def test_an_order_from_the_link_is_attributed_to_the_message(stack, engine):
    user, message_id, link = stack["message"]
    utm = {k: v[0] for k, v in parse_qs(urlparse(link).query).items()}
    order = {
        "event_id": str(uuid.uuid4()),
        "name": "order_placed",
        "timestamp": datetime.now(UTC).isoformat(),
        "anonymous_id": f"anon-{user}",
        "user_id": user,
        "properties": {
            "order_id": f"o-{user}",
            "items": [{"product_id": "sneaker-9", "quantity": 1, "amount": 80.0}],
            "total": 80.0,
            "currency": "EUR",
        },
        "context": {
            "campaign": {
                "source": utm["utm_source"],
                "medium": utm["utm_medium"],
                "name": utm["utm_campaign"],
                "utm_message_id": utm["utm_message_id"],
            }
        },
    }
    track(stack, [order], headers=SERVER)
    raw = asyncio.run(
        consume_matching(
            stack["broker"],
            lambda v: v.get("event_id") == order["event_id"],
            until=lambda found: bool(found),
        )
    )
    assert raw[0]["context"]["campaign"]["utm_message_id"] == message_id

    # Read back as a conversion with its revenue, on the channel that engaged.
    span = {
        "from": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "to": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    }

    def outcome(channel: str) -> dict:
        response = stack["http"].get(f"{stack['api']}/v1/metrics/nudges", params=span, headers=READ)
        assert response.status_code == 200, response.text
        rows = [
            r
            for r in response.json()["rows"]
            if (r["kind"], r["channel"]) == ("cart_rescue", channel)
        ]
        return rows[0] if rows else {}

    assert engine.is_running(), engine.log_tail()
    wait_until(lambda: outcome("all").get("converted") == 1, 90, "the conversion in the metrics")
    for channel in ("all", "whatsapp"):
        row = outcome(channel)
        assert (row["converted"], row["orders"], row["revenue"]) == (1, 1, 80.0), row


def switch_channels(stack, action: str, *channels: str) -> None:
    """Pause or resume channels through the admin API, and wait until the dispatcher (which
    polls the switches) has seen it: its gauge says so."""
    for channel in channels:
        response = stack["http"].post(
            f"{stack['api']}/v1/admin/channels/{channel}/{action}", headers=ADMIN
        )
        assert response.status_code == 200, response.text

    def seen() -> bool:
        try:
            samples = support.scrape_metrics(stack["dispatcher_metrics"])
        except httpx.HTTPError:  # restarting
            return False
        wanted = 1.0 if action == "pause" else 0.0
        return all(
            samples.get(("intentflow_channel_paused", frozenset({("channel", c)}))) == wanted
            for c in channels
        )

    support.wait_for(seen, 30, f"the dispatcher to see {', '.join(channels)} {action}d")


def dispatcher_caught_up(stack) -> None:
    """Wait until the dispatcher has committed every nudge and receipt now on the topics:
    it commits a batch only once it has handled it (docs/dispatch.md), so whatever those
    records were to cause has happened. What to wait on before asserting an absence."""
    group = f"{stack['dispatcher'].env['app_id']}.dispatch"
    topics = [NUDGES.name, RECEIPTS.name]
    support.wait_for(
        lambda: support.consumed_to_end(stack["broker"], group, topics),
        30,
        "the dispatcher past every nudge and receipt",
        interval_s=0.3,
    )


def test_paused_whatsapp_sends_the_next_nudge_by_sms(stack):
    user = f"paused-{uuid.uuid4().hex[:8]}"
    track(
        stack,
        [
            consent(user, "whatsapp", True, "+15550102222"),
            consent(user, "sms", True, "+15550102222"),
        ],
    )
    switch_channels(stack, "pause", "whatsapp")
    try:
        message_id = cart_rescue(stack, user)
        wait_until(lambda: ("sent", "sms", "") in statuses(stack, message_id), 30, "the SMS sent")
        assert ("fallback", "whatsapp", "whatsapp_paused") in statuses(stack, message_id)
        assert [m["channel"] for m in sim_messages(stack, message_id)] == ["sms"]
        assert "Hi there" in sim_messages(stack, message_id)[0]["content"]["text"]
        # Twilio's status callbacks, signed for the URL the dispatcher gave, are taken.
        wait_until(
            lambda: ("delivered", "sms", "") in statuses(stack, message_id), 20, "SMS delivered"
        )
        assert sim_messages(stack, message_id)[0]["webhooks"][:2] == ["sent:200", "delivered:200"]
    finally:
        switch_channels(stack, "resume", "whatsapp")  # the next journey needs WhatsApp back
    actions = {r["action"] for r in audit(stack, limit=1000)}
    assert {"channel_pause", "channel_resume", "flow_cart_rescue"} <= actions


def test_no_delivery_in_time_falls_back_to_sms_once(stack):
    http = stack["http"]
    user = f"silent-{uuid.uuid4().hex[:8]}"
    track(
        stack,
        [
            consent(user, "whatsapp", True, "+15550103333"),
            consent(user, "sms", True, "+15550103333"),
        ],
    )
    http.post(f"{stack['sim']}/v1/config", json={"channel": "whatsapp", "silent_rate": 1})
    try:
        message_id = cart_rescue(stack, user)
        wait_until(lambda: ("sent", "sms", "") in statuses(stack, message_id), 30, "SMS fallback")
    finally:
        http.post(f"{stack['sim']}/v1/config", json={"channel": "whatsapp", "silent_rate": 0})
    assert ("fallback", "whatsapp", "delivery_timeout") in statuses(stack, message_id)
    # WhatsApp finally reports a delivery: recorded, and nothing goes out a third time.
    whatsapp = next(m for m in sim_messages(stack, message_id) if m["channel"] == "whatsapp")
    late = webhook_body(whatsapp, "delivered", user)
    response = post_webhook(stack, late)
    assert response.status_code == 200, response.text
    wait_until(
        lambda: ("delivered", "whatsapp", "") in statuses(stack, message_id), 20, "late delivery"
    )
    dispatcher_caught_up(stack)
    assert sorted(m["channel"] for m in sim_messages(stack, message_id)) == ["sms", "whatsapp"]


def test_revoking_consent_cancels_the_queued_nudge(stack):
    user = f"revoke-{uuid.uuid4().hex[:8]}"
    track(
        stack,
        [
            consent(user, "whatsapp", True, "+15550104444"),
            consent(user, "sms", True, "+15550104444"),
        ],
    )
    switch_channels(stack, "pause", "whatsapp", "sms")
    try:
        message_id = cart_rescue(stack, user)
        dispatcher_caught_up(stack)  # and queued: every channel it may use is paused
        assert sim_messages(stack, message_id) == []
        track(stack, [consent(user, "whatsapp", False), consent(user, "sms", False)])
        wait_until(
            lambda: ("cancelled", "", "consent_revoked") in statuses(stack, message_id),
            20,
            "the queued nudge cancelled",
        )
    finally:
        switch_channels(stack, "resume", "whatsapp", "sms")
    dispatcher_caught_up(stack)
    assert sim_messages(stack, message_id) == []


# --- send time ---------------------------------------------------------------------------


def test_stale_and_night_time_nudges_are_expired_or_held_never_sent(stack, engine):
    """Five days old: expired. Night in the shopper's zone: held until 08:00 there, then
    expired past the maximum hold. Day there: sent. Seen in the audit log, the profile
    and the metrics; the simulator never receives the first two."""
    night, day = support.zone_at(2), support.zone_at(12)
    users = {k: f"{k}-{uuid.uuid4().hex[:8]}" for k in ("stale", "night", "day")}
    store = PrivacyStore(stack["ch"], pii.MasterKey.from_secret(MASTER))
    now = datetime.now(UTC)
    store.record(
        [
            ConsentDecision(
                u, "whatsapp", True, now, str(uuid.uuid4()), f"+1555020{i:04d}", "marketing"
            )
            for i, u in enumerate(users.values())
        ]
    )
    stale = nudge(users["stale"], triggered_at=now - timedelta(days=5), timezone=day)
    held = nudge(users["night"], timezone=night)
    sent = nudge(users["day"], timezone=day)
    asyncio.run(produce(stack["broker"], [stale, held, sent], per_second=50))

    wait_until(
        lambda: ("sent", "whatsapp", "") in statuses(stack, sent.nudge_id), 60, "the day send"
    )
    wait_until(
        lambda: ("expired", "", "stale") in statuses(stack, stale.nudge_id), 30, "the stale one"
    )
    local = now.astimezone(ZoneInfo(night))
    until = datetime.combine(local.date(), datetime.min.time().replace(hour=8), ZoneInfo(night))
    if local.hour >= 8:  # the hour turned since zone_at: night is then tomorrow's
        until += timedelta(days=1)
    detail = "quiet_hours_until:" + until.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    wait_until(lambda: ("held", "", detail) in statuses(stack, held.nudge_id), 30, "the hold")
    assert sim_messages(stack, held.nudge_id) == []
    wait_until(
        lambda: ("expired", "", "quiet_hours_max_hold") in statuses(stack, held.nudge_id),
        MAX_HOLD_S + 20,
        "the hold expired",
    )
    assert sim_messages(stack, stale.nudge_id) == [] and sim_messages(stack, held.nudge_id) == []

    # The warehouse (the engine's sink) shows why not: the profile and the breakdown.
    def profile(user: str) -> dict:
        response = stack["http"].get(f"{stack['api']}/v1/users/{user}/profile", headers=READ)
        assert response.status_code == 200, response.text
        return response.json()

    def delivery(user: str) -> tuple[str, str] | None:
        decisions = profile(user)["decisions"]
        return (decisions[0]["delivery"], decisions[0]["delivery_detail"]) if decisions else None

    wait_until(lambda: delivery(users["stale"]) == ("expired", "stale"), 60, "profile: stale")
    wait_until(
        lambda: delivery(users["night"]) == ("expired", "quiet_hours_max_hold"),
        60,
        "profile: the hold expired",
    )

    def not_sent() -> set[tuple[str, str, str, str]]:
        response = stack["http"].get(
            f"{stack['api']}/v1/metrics/nudges/not_sent",
            params={
                "from": (now - timedelta(days=6)).isoformat(),
                "to": (now + timedelta(days=1)).isoformat(),
            },
            headers=READ,
        )
        assert response.status_code == 200, response.text
        return {(r["outcome"], r["stage"], r["kind"], r["reason"]) for r in response.json()["rows"]}

    wanted = {
        ("expired", "send", "cart_rescue", "stale"),
        ("expired", "send", "cart_rescue", "quiet_hours_max_hold"),
        ("held", "send", "cart_rescue", "quiet_hours"),
    }
    wait_until(lambda: wanted <= not_sent(), 60, "the non-sends in the metrics")


# --- webhooks -----------------------------------------------------------------------------


def webhook_body(message: dict, status: str, user: str) -> bytes:
    """Meta's status notification of one of our messages (its reference included)."""
    ref = encode_ref(message["message_id"], user, "cart_rescue")
    found = whatsapp_status(
        message["provider_message_id"], status, datetime.now(UTC), "+15550100000", ref
    )
    return whatsapp_webhook(statuses=[found])


def post_webhook(stack, body: bytes, headers: dict | None = None) -> httpx.Response:
    return stack["http"].post(
        f"{stack['api']}/v1/webhooks/whatsapp",
        content=body,
        headers=support.meta_signed(body) if headers is None else headers,
    )


def test_forged_or_unsigned_webhooks_are_refused_and_change_nothing(stack):
    message = {"provider_message_id": "wamid.forged", "message_id": uuid.uuid4().hex}
    body = webhook_body(message, "read", "someone")
    twilio_token = support.PROVIDER_CREDENTIALS["twilio_auth_token"]
    refused = [
        post_webhook(stack, body, headers={"Content-Type": "application/json"}),
        post_webhook(stack, body, support.meta_signed(body, "not-the-secret")),
        post_webhook(stack, body, support.meta_signed(body, twilio_token)),
        post_webhook(stack, body + b" ", support.meta_signed(body)),
    ]
    assert [r.status_code for r in refused] == [401] * 4
    dispatcher_caught_up(stack)
    assert audit(stack, message_id=message["message_id"]) == []


def test_the_whatsapp_channel_and_the_sim_speak_metas_protocol_end_to_end(stack):
    """The channel as the dispatcher builds it, the simulator as a process, the API's
    webhook: a template goes out, its signed statuses come back and are taken (200)."""
    from pipeline.dispatch.channels import Outgoing, WhatsAppChannel
    from schemas.templates import RenderedMessage, TemplateSend, WhatsAppCard

    settings = support.dispatcher_provider_settings(stack["sim"], stack["api"])
    message_id = uuid.uuid4().hex
    template = TemplateSend(
        "intentflow_cart_rescue",
        "en_US",
        "MARKETING",
        "https://shop.example/p.jpg",
        ("there", "Red shoes", "10"),
        "tok-" + message_id[:8],
    )
    card = WhatsAppCard("https://shop.example/p.jpg", "t", "b", "Buy", "https://shop.example/")
    rendered = RenderedMessage(message_id, "cart_rescue", card, "sms", "https://x", template)

    async def send():
        async with httpx.AsyncClient(timeout=10) as http:
            channel = WhatsAppChannel(
                http,
                api_url=settings["whatsapp_api_url"],
                api_version="v21.0",
                phone_number_id=settings["whatsapp_phone_number_id"],
                access_token=settings["whatsapp_access_token"],
            )
            return await channel.send(
                Outgoing(message_id, "cart_rescue", "wire-user", "+15550107777", rendered)
            )

    result = asyncio.run(send())
    assert result.provider_message_id and result.provider_message_id.startswith("wamid.")

    def webhooks() -> list[str]:
        [message] = sim_messages(stack, message_id)
        return message["webhooks"]

    wait_until(lambda: "delivered:200" in webhooks(), 20, "Meta's statuses taken by the API")
    assert webhooks()[0] == "sent:200"


# --- erasure ------------------------------------------------------------------------------


def test_erasure_removes_the_user_everywhere_and_reports_it(stack):
    user, message_id, _ = stack["message"]
    ch = stack["ch"]
    response = stack["http"].delete(f"{stack['api']}/v1/users/{user}", headers=ADMIN)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["complete"], report
    assert report["privacy_store"]["consents"] >= 1
    assert report["privacy_store"]["pii_phones"] >= 1
    assert report["keys_shredded"] >= 1
    assert report["warehouse"]["audit_log"] >= 4  # the message's state changes
    assert report["streams"]["commands"] >= 1
    for table in ("consents", "pii_phones", "pii_keys", "audit_log"):
        left = ch.query(
            f"SELECT count() FROM {table} WHERE user_key = {{u:String}}", parameters={"u": user}
        ).result_rows[0][0]
        assert left == 0, table
    assert audit(stack, message_id=message_id) == []
    # The erasure itself is audited without the user's key.
    assert any(r["action"] == "user_erased" and user not in r["detail"] for r in audit(stack))
