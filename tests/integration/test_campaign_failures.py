"""A campaign that cannot launch stops only itself: on the real broker and warehouse, the
launcher marks it failed with the reason and launches the others; the API refuses
send times outside a sane window and lets an admin cancel or delete a campaign that
has not finished."""

import asyncio
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from clickhouse_connect.driver.client import Client

from pipeline.campaigns.command import CampaignSettings, run_launcher
from schemas.campaigns import CAMPAIGN_COLUMNS
from tests import support
from tests.shoppers import write_shoppers

MASTER = "test-pii-master-key"


def campaign_row(name: str, send_at: datetime, prefix: str, **overrides) -> dict:
    now = datetime.now(UTC)
    row = {
        "campaign_id": uuid.uuid4().hex,
        "name": name,
        "segment_id": "s",
        "rules": orjson.dumps(
            {"op": "AND", "rules": [{"field": "user_key", "op": "contains", "value": prefix}]}
        ).decode(),
        "template": "campaign",
        "product": "sneakers",
        "discount_percent": 10.0,
        "channels": ["whatsapp", "sms"],
        "holdout_share": 0.0,
        "send_at": send_at,
        "quiet_start": 0,
        "quiet_end": 0,
        "timezone": "UTC",
        "status": "scheduled",
        "created_at": now,
        "created_by": "test",
        "launched_at": None,
        "updated_at": now,
    }
    row.update(overrides)
    return row


def statuses(client: Client, ids: list[str]) -> dict[str, tuple[str, str]]:
    rows = client.query(
        "SELECT campaign_id, status, status_reason FROM campaigns FINAL"
        " WHERE campaign_id IN {ids:Array(String)}",
        parameters={"ids": ids},
    ).result_rows
    return {campaign_id: (status, reason) for campaign_id, status, reason in rows}


@pytest.fixture
def launcher(broker: str, warehouse: str, clickhouse: Client) -> Iterator[None]:
    settings = CampaignSettings(
        env="test",
        kafka_brokers=broker,
        clickhouse_url=warehouse,
        clickhouse_database=clickhouse.database,
        campaign_poll_s=0.2,
        token_secret="test-token-secret-of-at-least-32-bytes",
        pii_master_key=MASTER,
    )
    stop: asyncio.Event | None = None
    loop = asyncio.new_event_loop()

    def run() -> None:
        nonlocal stop
        asyncio.set_event_loop(loop)
        stop = asyncio.Event()
        loop.run_until_complete(run_launcher(settings, stop))

    thread = threading.Thread(target=run, name="launcher", daemon=True)
    thread.start()
    try:
        yield
    finally:
        support.wait_for(lambda: stop is not None, 10, "the launcher's stop event")
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)


def test_a_campaign_that_cannot_launch_is_failed_and_the_others_launch(
    clickhouse: Client, launcher: None
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    write_shoppers(clickhouse, 20, seed=5, now=now, master=MASTER, prefix="iso", consent_share=1)
    # Stored before the API refused such send times: year 1 (the warehouse keeps 1900).
    poison = campaign_row("year one", datetime(1, 1, 1, tzinfo=UTC), "iso-")
    # A rule the launcher cannot compile (stored by an older release, say).
    broken = campaign_row("broken rule", now, "iso-", rules='{"op": "AND", "rules": "x"}')
    good = [campaign_row(f"good {n}", now + timedelta(seconds=n), "iso-") for n in range(2)]
    rows = [poison, broken, *good]
    clickhouse.insert(
        "campaigns", [[r[c] for c in CAMPAIGN_COLUMNS] for r in rows], CAMPAIGN_COLUMNS
    )
    ids = [r["campaign_id"] for r in rows]

    def settled() -> bool:
        found = statuses(clickhouse, ids)
        return all(found.get(i, ("scheduled",))[0] != "scheduled" for i in ids)

    support.wait_for(settled, 30, "every campaign launched or failed", interval_s=0.2)
    found = statuses(clickhouse, ids)
    assert [found[r["campaign_id"]][0] for r in good] == ["launched", "launched"]
    assert found[broken["campaign_id"]][0] == "failed"
    assert found[broken["campaign_id"]][1]
    print({r["name"]: found[r["campaign_id"]] for r in rows})
