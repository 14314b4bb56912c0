"""No phone number or e-mail in clear anywhere the project writes, after real traffic.

The local stack runs as a user runs it; simulated shoppers give consent with
phone numbers and identify with e-mails and phones among their traits. Then
every record of every topic (dead letters' base64 payloads decoded), every row
of every warehouse table and every log line is searched for those exact values.
"""

import asyncio
import base64
import binascii
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import clickhouse_connect
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.simulate import generate_events, post_events
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


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v.strip().strip("'\"") for k, v in pairs}


def test_no_phone_or_email_in_clear_in_topics_tables_or_logs(tmp_path: Path):
    data_dir = tmp_path / "stack"
    api_port = support.free_port()
    log_path = tmp_path / "local-up.log"
    with log_path.open("wb") as log:
        stack = subprocess.Popen(
            [
                *(sys.executable, "-m", "pipeline.cli", "local", "up", "--no-simulate"),
                *("--data-dir", str(data_dir), "--api-port", str(api_port)),
            ],
            cwd=support.PROJECT_ROOT,
            env=support.child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        env_file = data_dir / "local.env"
        support.wait_for(
            lambda: env_file.exists() and stack.poll() is None, 90, "the local stack up"
        )
        env = read_env(env_file)
        events = with_identifiers(generate_events(11, 40, 800, datetime.now(UTC), days=0.2))
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
        warehouse = clickhouse_connect.get_client(
            dsn=env["INTENTFLOW_CLICKHOUSE_URL"], database="intentflow"
        )
        support.wait_for(
            lambda: warehouse.command("SELECT count() FROM events") >= len(events),
            90,
            "the events in the warehouse",
            interval_s=1.0,
        )
        time.sleep(3)  # decisions, dispatch and receipts settle

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
        for log_file in (data_dir / "logs").glob("*.log"):
            if hits := leaks(log_file.read_bytes(), secrets):
                found.setdefault(f"log {log_file.name}", set()).update(hits)
        warehouse.close()
    finally:
        stack.send_signal(signal.SIGTERM)
        stack.wait(60)
    assert found == {}
    # The scan itself finds what it looks for, in clear and inside base64.
    phone = next(s for s in secrets if s.startswith("+"))
    assert leaks(f'{{"p": "{phone}"}}'.encode(), secrets)
    assert leaks(b'{"v": "' + base64.b64encode(f"xx {phone} yy".encode()) + b'"}', secrets)
