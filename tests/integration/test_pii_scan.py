"""No phone number or e-mail in clear anywhere the project writes, after real traffic.

The local stack runs as a user runs it; simulated shoppers give consent with
phone numbers and identify with e-mails and phones among their traits. Then
every record of every topic (dead letters' base64 payloads decoded), every row
of every warehouse table, every log line and the API's answers are searched for
those exact values.

Besides the documented paths, shoppers hide them everywhere issue 15 found them
(``hidden_shapes``): nested traits, lists, other key names, display forms, extra
consent and custom properties, search queries, URLs and their query strings,
and ids that are themselves e-mails or phones.
"""

import asyncio
import base64
import binascii
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import clickhouse_connect
import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.local.simulate import generate_events, post_events
from schemas.settings import CommonSettings
from schemas.topics import NUDGES, RECEIPTS, TELEMETRY_RAW
from tests import support

_BASE64 = re.compile(rb'"[A-Za-z0-9+/=]{24,}"')


def with_identifiers(events: list[dict]) -> list[dict]:
    """Give every identify an e-mail and a phone among its traits, as storefronts do."""
    out = []
    for event in events:
        if event["name"] == "identify":
            traits = dict(event["properties"].get("traits", {}))
            traits["email"] = f"{event['user_id']}@shopper.example"
            traits["phone"] = f"+1415555{abs(hash(event['user_id'])) % 10_000:04d}"
            event = {**event, "properties": {**event["properties"], "traits": traits}}
        out.append(event)
    return out


def hidden_shapes(count: int, at: datetime) -> tuple[list[dict], set[str]]:
    """Events that hide e-mails and phones in every shape issue 15 listed, and those values."""
    events: list[dict] = []
    secrets: set[str] = set()

    def add(name: str, anonymous: str, user: str | None, props: dict, **extra) -> None:
        event = {
            "event_id": str(uuid.uuid4()),
            "name": name,
            "timestamp": (at + timedelta(seconds=len(events))).isoformat(),
            "anonymous_id": anonymous,
            "properties": props,
            **extra,
        }
        if user is not None:
            event["user_id"] = user
        events.append(event)

    for i in range(count):
        user = f"id.shopper{i}@mail.example"  # an id that is an e-mail
        anonymous = f"+1 415 555 07{i:02d}"  # an id that is a phone
        phones = {
            "list": f"+1 415 555 01{i:02d}",
            "whatsapp": f"+447700900{i:03d}",
            "tel": f"(415) 555-02{i:02d}",
            "phone_e164": f"+1415555030{i}",
            "Phone Number": f"415.555.04{i:02d}",
            "consent_extra": f"+3361234{i:04d}",
            "custom": f"+4915112345{i:03d}",
            "url": f"+1415555{i:04d}",
        }
        emails = {
            k: f"{k}{i}@mail.example"
            for k in ("nested", "display", "custom", "search", "url", "ref", "term")
        }
        add(
            "identify",
            anonymous,
            user,
            {
                "traits": {
                    "contact": {"email": emails["nested"], "phones": [phones["list"]]},
                    "whatsapp": phones["whatsapp"],
                    "tel": phones["tel"],
                    "phone_e164": phones["phone_e164"],
                    "Phone Number": phones["Phone Number"],
                    "from": f"Alice Example <{emails['display']}>",
                }
            },
        )
        consent = {"channel": "whatsapp", "granted": True, "phone": f"+1415555{9000 + i}"}
        add("consent", anonymous, user, {**consent, "backup_phone": phones["consent_extra"]})
        body = f"reach me at {emails['custom']} or {phones['custom']}"
        add("support_ticket", anonymous, user, {"body": body})
        add("search", anonymous, user, {"query": f"orders of {emails['search']}"})
        url = (
            f"https://shop.example/account?email={emails['url'].replace('@', '%40')}"
            f"&phone={phones['url'].replace('+', '%2B')}"
        )
        page = {"url": url, "referrer": f"https://mail.example/?to={emails['ref']}"}
        add(
            "page_view",
            anonymous,
            user,
            {"url": url},
            context={"page": page, "campaign": {"term": emails["term"]}},
        )
        secrets.update({user, anonymous, consent["phone"], *phones.values(), *emails.values()})
        secrets.add(emails["url"].replace("@", "%40"))
        secrets.update("".join(c for c in p if c.isdigit()) for p in (anonymous, *phones.values()))
    return events, secrets


def identifiers(events: list[dict]) -> set[str]:
    found = set()
    for event in events:
        props = event["properties"]
        for value in (props.get("phone"), *props.get("traits", {}).values()):
            if isinstance(value, str) and (value.startswith("+") or "@" in value):
                found.add(value)
                if value.startswith("+"):
                    found.add(value[1:])  # the digits without the plus
    return found


def leaks(blob: bytes, secrets: set[str]) -> set[str]:
    """The identifiers in ``blob``, also inside base64 payloads (dead letters)."""
    texts = [blob]
    for match in _BASE64.finditer(blob):
        try:
            texts.append(base64.b64decode(match.group()[1:-1], validate=True))
        except (binascii.Error, ValueError):
            continue
    return {s for s in secrets for text in texts if s.encode() in text}


async def all_records(brokers: str) -> dict[str, list[bytes]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        topics = await admin.list_topics()
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=brokers, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: dict[str, list[bytes]] = {topic: [] for topic in topics}
    try:
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 2.0:
            batch = await consumer.getmany(timeout_ms=300)
            for tp, messages in batch.items():
                records[tp.topic].extend((m.key or b"") + b" " + (m.value or b"") for m in messages)
                quiet_since = time.monotonic()
    finally:
        await consumer.stop()
    return records


def test_no_phone_or_email_in_clear_in_topics_tables_or_logs(tmp_path: Path):
    with support.local_stack(tmp_path) as stack:
        env, data_dir = stack.env, stack.data_dir
        now = datetime.now(UTC)
        events = with_identifiers(generate_events(11, 40, 800, now, days=0.2))
        secrets = identifiers(events)
        assert sum(s.startswith("+") for s in secrets) >= 10, "the traffic must hold phones"
        assert any("@" in s for s in secrets), "the traffic must hold e-mails"
        summary = post_events(
            events,
            env["INTENTFLOW_API_URL"],
            env["INTENTFLOW_WRITE_KEY"],
            env["INTENTFLOW_SERVER_KEY"],
            batch_size=200,
        )
        assert summary.accepted == len(events), summary.rejection_reasons
        hidden, hidden_secrets = hidden_shapes(5, now)
        secrets |= hidden_secrets
        api_url, write = env["INTENTFLOW_API_URL"], env["INTENTFLOW_WRITE_KEY"]
        answers: list[str] = []
        with httpx.Client(timeout=30) as http:
            response = http.post(
                f"{api_url}/v1/track",
                json={"batch": hidden},
                headers={"Authorization": f"Bearer {write}"},
            )
            answers.append(response.text)
            assert response.status_code == 202, response.text
            assert response.json()["rejected"] == [], response.text
        events = events + hidden
        warehouse = clickhouse_connect.get_client(
            dsn=env["INTENTFLOW_CLICKHOUSE_URL"], database="intentflow"
        )
        support.wait_for(
            lambda: warehouse.command("SELECT count() FROM events") >= len(events),
            90,
            "the events in the warehouse",
            interval_s=1.0,
        )
        # Decisions, sends and receipts settle: the worker past every event, then the
        # dispatcher past every nudge and receipt (each commits only what it has handled).
        brokers, app_id = (
            env["INTENTFLOW_KAFKA_BROKERS"],
            CommonSettings.model_fields["app_id"].default,
        )
        for group, topics in (
            (app_id, [TELEMETRY_RAW.name]),
            (f"{app_id}.dispatch", [NUDGES.name, RECEIPTS.name]),
        ):
            support.wait_for(
                lambda: support.consumed_to_end(brokers, group, topics),  # noqa: B023
                90,
                f"{group} past every record",
                interval_s=0.5,
            )

        found: dict[str, set[str]] = {}
        for topic, records in asyncio.run(all_records(env["INTENTFLOW_KAFKA_BROKERS"])).items():
            for record in records:
                if hits := leaks(record, secrets):
                    found.setdefault(f"topic {topic}", set()).update(hits)
        tables = [row[0] for row in warehouse.query("SHOW TABLES").result_rows]
        assert "events" in tables and "pii_phones" in tables
        for table in tables:
            text = repr(warehouse.query(f"SELECT * FROM `{table}`").result_rows).encode()
            if hits := leaks(text, secrets):
                found.setdefault(f"table {table}", set()).update(hits)
        with httpx.Client(timeout=30) as http:
            read = {"Authorization": f"Bearer {env['INTENTFLOW_READ_KEY']}"}
            for user in sorted({e["user_id"] for e in hidden}):
                answer = http.get(f"{api_url}/v1/users/{user}/profile", headers=read)
                assert answer.status_code in (200, 404), answer.text
                answers.append(answer.text)
        for answer in answers:
            if hits := leaks(answer.encode(), secrets):
                found.setdefault("API answers", set()).update(hits)
        for log_file in (data_dir / "logs").glob("*.log"):
            if hits := leaks(log_file.read_bytes(), secrets):
                found.setdefault(f"log {log_file.name}", set()).update(hits)
        warehouse.close()
    assert found == {}
    # The scan itself finds what it looks for, in clear and inside base64.
    phone = next(s for s in secrets if s.startswith("+"))
    assert leaks(f'{{"p": "{phone}"}}'.encode(), secrets)
    assert leaks(b'{"v": "' + base64.b64encode(f"xx {phone} yy".encode()) + b'"}', secrets)
