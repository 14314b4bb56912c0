"""A campaign that cannot launch stops only itself: on the real broker and warehouse, the
launcher marks it failed with the reason and launches the others; the API refuses
send times outside a sane window and lets an admin cancel or delete a campaign that
has not finished."""

import asyncio
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from clickhouse_connect.driver.client import Client

from pipeline.campaigns.command import CampaignSettings, run_launcher
from schemas.campaigns import CAMPAIGN_COLUMNS
from tests import support
from tests.collector_server import api_client
from tests.integration.test_security import ADMIN_KEY, settings_for
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
        "send_time": "as_created",
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
        link_secret="test-link-secret",
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


# --- the API: send times in a sane window, cancel and delete ---------------------------

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def http(broker: str, warehouse: str, clickhouse: Client) -> Iterator[httpx.Client]:
    """The API with the security table's keys, on this module's database."""
    with api_client(settings_for(broker, warehouse, clickhouse.database)) as client:
        yield client


@pytest.fixture(scope="module")
def segment_id(http: httpx.Client) -> str:
    rules = {"op": "AND", "rules": [{"field": "user_key", "op": "contains", "value": "nobody-"}]}
    created = http.post("/v1/segments", json={"name": "none", "rules": rules}, headers=ADMIN)
    assert created.status_code == 201, created.text
    return created.json()["segment_id"]


def create(http: httpx.Client, segment_id: str, send_at: str | None) -> httpx.Response:
    schedule = {"send_at": send_at} if send_at else {}
    body = {"name": "window", "segment_id": segment_id, "schedule": schedule}
    return http.post("/v1/campaigns", json=body, headers=ADMIN)


# Offsets from now, so the test ids do not change with the clock (parallel test
# processes must collect the same ids).
@pytest.mark.parametrize(
    "when",
    [
        "0001-01-01T00:00:00Z",
        "1970-01-01T00:00:00Z",
        timedelta(days=-2),
        timedelta(days=400),
        "9999-12-31T23:59:59Z",
    ],
    ids=str,
)
def test_a_send_time_outside_the_window_is_422(
    http: httpx.Client, segment_id: str, when: str | timedelta
):
    send_at = when if isinstance(when, str) else (datetime.now(UTC) + when).isoformat()
    response = create(http, segment_id, send_at)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"][-2:] == ["schedule", "send_at"]
    assert "365 days" in error["msg"]


def test_a_send_time_within_the_window_is_accepted(http: httpx.Client, segment_id: str):
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    assert create(http, segment_id, later).status_code == 202


def report(http: httpx.Client, campaign_id: str) -> httpx.Response:
    return http.get(f"/v1/campaigns/{campaign_id}", headers=ADMIN)


def test_cancel_then_delete_a_scheduled_campaign(http: httpx.Client, segment_id: str):
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    campaign_id = create(http, segment_id, later).json()["campaign_id"]

    cancelled = http.post(f"/v1/campaigns/{campaign_id}/cancel", headers=ADMIN)
    assert cancelled.json() == {"campaign_id": campaign_id, "status": "cancelled"}
    shown = report(http, campaign_id).json()
    assert (shown["status"], shown["live"]) == ("cancelled", False)
    assert shown["status_reason"].startswith("cancelled by ")
    again = http.post(f"/v1/campaigns/{campaign_id}/cancel", headers=ADMIN)
    assert again.status_code == 409

    deleted = http.delete(f"/v1/campaigns/{campaign_id}", headers=ADMIN)
    assert deleted.json() == {"campaign_id": campaign_id, "status": "deleted"}
    assert report(http, campaign_id).status_code == 404
    assert http.delete(f"/v1/campaigns/{campaign_id}", headers=ADMIN).status_code == 404


def test_a_launched_campaign_can_be_cancelled_but_not_deleted(
    http: httpx.Client, clickhouse: Client
):
    now = datetime.now(UTC)
    launched = campaign_row("launched", now, "nobody-", status="launched", launched_at=now)
    clickhouse.insert("campaigns", [[launched[c] for c in CAMPAIGN_COLUMNS]], CAMPAIGN_COLUMNS)
    campaign_id = launched["campaign_id"]

    refused = http.delete(f"/v1/campaigns/{campaign_id}", headers=ADMIN)
    assert refused.status_code == 409 and "report" in refused.text
    # Deferred messages (quiet hours) of a cancelled campaign are never released.
    assert http.post(f"/v1/campaigns/{campaign_id}/cancel", headers=ADMIN).status_code == 200
    assert report(http, campaign_id).json()["status"] == "cancelled"
    assert http.delete(f"/v1/campaigns/{campaign_id}", headers=ADMIN).status_code == 409


def test_a_campaign_stored_with_year_one_is_listed_and_can_be_deleted(
    http: httpx.Client, clickhouse: Client
):
    poison = campaign_row("year one", datetime(1, 1, 1, tzinfo=UTC), "nobody-")
    clickhouse.insert("campaigns", [[poison[c] for c in CAMPAIGN_COLUMNS]], CAMPAIGN_COLUMNS)

    listed = http.get("/v1/campaigns", headers=ADMIN)
    assert listed.status_code == 200, listed.text
    assert poison["campaign_id"] in {row["campaign_id"] for row in listed.json()["rows"]}
    assert http.delete(f"/v1/campaigns/{poison['campaign_id']}", headers=ADMIN).status_code == 200


def test_campaigns_carry_auto_tags_and_filter_by_them(http: httpx.Client):
    """Tags from the audience rule and the offer; the list filters by one."""
    rules = {"op": "AND", "rules": [{"field": "tier", "op": "=", "value": "vip"}]}
    vip = http.post("/v1/segments", json={"name": "vips", "rules": rules}, headers=ADMIN)
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    bodies = {
        "deep": {"discount_percent": 30, "holdout_share": 0.2, "product": "p-1"},
        "plain": {"discount_percent": 5, "holdout_share": 0},
    }
    made = {}
    for name, offer in bodies.items():
        body = {"name": name, "segment_id": vip.json()["segment_id"], **offer}
        created = http.post(
            "/v1/campaigns", json={**body, "schedule": {"send_at": later}}, headers=ADMIN
        )
        assert created.status_code == 202, created.text
        made[created.json()["campaign_id"]] = name
    tags = {made[r["campaign_id"]]: r["tags"] for r in listed(http) if r["campaign_id"] in made}
    assert tags == {
        "deep": ["high-value", "vip", "deep-discount", "product"],
        "plain": ["high-value", "vip", "discount", "no-holdout"],
    }
    assert {made.get(r["campaign_id"]) for r in listed(http, tag="no-holdout")} >= {"plain"}
    assert "deep" not in {made.get(r["campaign_id"]) for r in listed(http, tag="no-holdout")}
    assert all("no-holdout" in r["tags"] for r in listed(http, tag="no-holdout"))
    assert http.get("/v1/campaigns", params={"tag": "cheap"}, headers=ADMIN).status_code == 422


def listed(http: httpx.Client, **params: str) -> list[dict]:
    response = http.get("/v1/campaigns", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()["rows"]
