"""GET /v1/users/{id}/profile: live state from the owning worker, decisions from the warehouse."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from aiokafka import AIOKafkaProducer
from clickhouse_connect.driver.client import Client

from pipeline.domain.ids import in_holdout
from pipeline.domain.rules import default_rules
from schemas.events import parse_event
from schemas.topics import TELEMETRY_RAW
from tests import support
from tests.collector_server import READ_KEY, collector_settings, running_api

APP_ID = "intentflow-profile-test"
RULES = default_rules()


def shopper() -> str:
    plan = RULES.suppression
    for _ in range(1000):
        candidate = f"profile-{uuid.uuid4().hex[:8]}"
        if not in_holdout(candidate, plan.experiment_salt, plan.holdout_share):
            return candidate
    raise AssertionError("no user outside the holdout")


def journey(user: str, start: datetime, timezone: str) -> list[bytes]:
    """Consent, then lingering on one product's specs until high intent fires, then a cart."""
    steps = [
        (
            "consent",
            {
                "channel": "whatsapp",
                "granted": True,
                "phone": "+15550100077",
                "purpose": "marketing",
            },
        ),
        ("product_view", {"product_id": "p-prof", "category": "shoes"}),
        ("spec_linger", {"product_id": "p-prof", "dwell_ms": 20_000}),
        ("spec_linger", {"product_id": "p-prof", "dwell_ms": 20_000}),
        ("add_to_cart", {"product_id": "p-other", "quantity": 2, "price": 9.5}),
    ]
    out = []
    for i, (name, properties) in enumerate(steps):
        at = start + timedelta(seconds=10 * i)
        raw = {
            "event_id": str(uuid.uuid4()),
            "name": name,
            "timestamp": at.isoformat(),
            "anonymous_id": f"anon-{user}",
            "user_id": user,
            "properties": properties,
            "context": {"timezone": timezone},
        }
        out.append(parse_event(raw, received_at=at).to_json())
    return out


async def produce(brokers: str, user: str, records: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=brokers)
    await producer.start()
    try:
        for value in records:
            await producer.send_and_wait(TELEMETRY_RAW.name, value, key=user.encode())
    finally:
        await producer.stop()


def test_profile_shows_scores_cart_consent_and_decisions_with_reasons(
    broker: str, warehouse: str, clickhouse: Client, tmp_path: Path
):
    web_port = support.free_port()
    env = support.process_env(
        app_id=APP_ID,
        kafka_brokers=broker,
        clickhouse_url=warehouse,
        clickhouse_database=clickhouse.database,
        data_dir=str(tmp_path / "data"),
        web_enabled="true",
        web_port=str(web_port),
        web_host="127.0.0.1",
        wall_clock_watermark="false",
        log_level="warning",
    )
    worker = support.python_process(
        "worker", ["-m", "pipeline.cli", "worker"], tmp_path / "w.log", env
    )
    settings = collector_settings(
        broker,
        app_id=APP_ID,
        clickhouse_url=warehouse,
        clickhouse_database=clickhouse.database,
        worker_url=f"http://127.0.0.1:{web_port}",
    )
    # Quiet hours (21:00-08:00) are the shopper's: one where it is midday now, whose nudge
    # goes out, and one where it is night, whose nudge the engine holds.
    user, night_owl, night = shopper(), shopper(), support.zone_at(2)
    start = datetime.now(UTC) - timedelta(minutes=1)
    # The phone of the consent event is not what this test is about; the collector
    # normally seals it, here the record is produced directly.
    records = {
        who: [
            r.replace(
                b'"phone":"+15550100077"',
                b'"phone_ref":"test-ref","phone_masked":"+1 ******0077"',
            )
            for r in journey(who, start, zone)
        ]
        for who, zone in ((user, support.zone_at(12)), (night_owl, night))
    }
    worker.start()
    try:
        for who, values in records.items():
            asyncio.run(produce(broker, who, values))
        with running_api(settings) as api:
            headers = {"Authorization": f"Bearer {READ_KEY}"}
            url = f"{api}/v1/users/{user}/profile"

            def complete() -> bool:
                response = httpx.get(url, headers=headers, timeout=5)
                body = response.json() if response.status_code == 200 else {}
                return body.get("live_state") == "ok" and len(body.get("decisions", [])) >= 1

            support.wait_for(complete, 90, "the profile with its decisions", interval_s=0.5)
            body = httpx.get(url, headers=headers, timeout=5).json()
            held_url = f"{api}/v1/users/{night_owl}/profile"

            def held() -> list[dict]:
                response = httpx.get(held_url, headers=headers, timeout=5)
                return response.json().get("decisions", []) if response.status_code == 200 else []

            support.wait_for(held, 60, "the held nudge in the profile", interval_s=0.5)
            (held_decision,) = held()
            unauthorized = httpx.get(url, timeout=5)
            unknown = httpx.get(
                f"{api}/v1/users/nobody-{uuid.uuid4().hex}/profile", headers=headers, timeout=5
            )
    finally:
        worker.stop(15)
    log = (tmp_path / "w.log").read_text()
    assert "Traceback" not in log, log[-3000:]

    live = body["live"]
    assert live["user_key"] == user and live["tier"] == "standard"
    assert live["products"]["p-prof"]["score"] >= RULES.high_intent.threshold
    assert dict(live["products"]["p-prof"]["signals"])["spec_linger"] > 0
    assert live["cart"]["items"] == {"p-other": {"quantity": 2, "price": 9.5}}
    assert live["cart"]["rescue_due"] is not None
    assert live["consent"]["whatsapp"]["marketing"] is True
    assert live["consent"]["whatsapp"]["granted"] is False  # order updates: never asked
    (decision,) = body["decisions"]
    assert (decision["kind"], decision["status"], decision["product_id"]) == (
        "high_intent",
        "emit",
        "p-prof",
    )
    assert decision["rules_version"] == RULES.version
    assert any(name == "spec_linger" for name, _ in decision["signals"])
    # Why not: held by the engine for the night-owl's quiet hours, until 08:00 there.
    release = datetime.now(ZoneInfo(night)).replace(hour=8, minute=0, second=0, microsecond=0)
    if datetime.now(ZoneInfo(night)).hour >= 8:  # the hour turned since zone_at
        release += timedelta(days=1)
    assert (held_decision["status"], held_decision["reason"]) == ("held", "quiet_hours")
    assert held_decision["held_until"] == release.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert unauthorized.status_code == 401
    assert unknown.status_code == 404
