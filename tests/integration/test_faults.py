"""Faults on real processes, short versions (the long ones: ``make chaos``).

Scenarios live in tests/chaos/harness.py; each returns a row of the chaos table.
"""

import asyncio
import time
from pathlib import Path

import pytest

from pipeline.local.broker import Broker, ensure_topics
from schemas.topics import TELEMETRY_RAW
from tests.chaos import harness
from tests.collector_server import SERVER_KEY, collector_settings, consume_raw, event, running_api


def assert_sound(result: harness.Result) -> None:
    print("\n" + harness.table([result]))
    assert result.lost == 0, result.row()
    assert result.duplicates == 0, result.row()
    assert result.nudges_twice == 0, result.row()
    assert result.decision_diff == 0, result.row()
    assert not any("tracebacks" in note for note in result.notes), result.row()


def test_worker_sigkilled_while_traffic_flows(warehouse: str, tmp_path: Path):
    result = harness.worker_crash(warehouse, tmp_path, events=1000, kills=2, seconds=8)
    assert result.accepted > 900
    assert_sound(result)


def test_worker_sigkilled_on_the_wall_clock_while_identities_are_handed_over(
    warehouse: str, tmp_path: Path
):
    result = harness.crash_with_wall_clock(warehouse, tmp_path, events=1500, kills=2, seconds=8)
    assert_sound(result)


def test_two_workers_one_killed_the_other_takes_over(warehouse: str, tmp_path: Path):
    result = harness.worker_takeover(warehouse, tmp_path, events=800, seconds=6)
    assert_sound(result)


def test_warehouse_down_under_a_running_worker(tmp_path: Path):
    result = harness.warehouse_outage(tmp_path, events=600, down_s=3)
    assert any("retries logged" in n and not n.startswith("0 ") for n in result.notes)
    assert_sound(result)


async def test_broker_down_collector_503_then_store_backend_resend_lands_once(tmp_path: Path):
    """While the broker is stopped: 503 + Retry-After, never 202; resent after: once."""
    import httpx

    headers = {"Authorization": f"Bearer {SERVER_KEY}"}
    broker = Broker(log_path=tmp_path / "b1.log").start()
    port = broker.port
    try:
        await ensure_topics(broker.bootstrap_servers, harness.broker_topics())
        settings = collector_settings(broker.bootstrap_servers, produce_timeout_s=2.0)
        with running_api(settings) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                assert (
                    await http.post("/v1/track", json=event(), headers=headers)
                ).status_code == 202
                broker.stop()
                refused = []
                for _ in range(4):
                    batch = [event() for _ in range(10)]
                    response = await http.post("/v1/track", json={"batch": batch}, headers=headers)
                    assert response.status_code == 503, response.text
                    assert int(response.headers["retry-after"]) >= 1
                    refused.append(batch)
                broker = Broker(port=port, log_path=tmp_path / "b2.log").start()
                await ensure_topics(broker.bootstrap_servers, harness.broker_topics())
                deadline = time.monotonic() + 60
                for batch in refused:
                    while True:
                        response = await http.post(
                            "/v1/track", json={"batch": batch}, headers=headers
                        )
                        if response.status_code == 202:
                            break
                        assert response.status_code == 503 and time.monotonic() < deadline
                        await asyncio.sleep(float(response.headers["retry-after"]))
        wanted = {e["event_id"] for batch in refused for e in batch}
        records = await consume_raw(broker.bootstrap_servers, wanted)
        ids = [value["event_id"] for _, _, value in records]
        # A 503 may follow a write that landed (docs/collector.md): the resend then adds a
        # copy with the same id, which the warehouse collapses (test below). None missing.
        assert set(ids) == wanted, "every resent event is on the topic"
    finally:
        broker.stop()


def test_poison_on_every_consumed_topic_is_dead_lettered_and_the_agent_goes_on(
    warehouse: str, tmp_path: Path
):
    with (
        harness.fresh_broker(tmp_path) as broker,
        harness.fresh_database(warehouse, "poison") as client,
    ):
        worker = harness.Worker(
            tmp_path, broker.bootstrap_servers, warehouse, client.database, 0
        ).start()
        try:
            for topic in harness.POISONED_TOPICS:
                asyncio.run(
                    harness.produce_raw(
                        broker.bootstrap_servers, topic, harness.POISON, b"poison-user"
                    )
                )
            good = [event() for _ in range(5)]
            from datetime import UTC, datetime

            from schemas.events import parse_event

            records = [
                (
                    e["anonymous_id"].encode(),
                    parse_event(e, received_at=datetime.now(UTC)).to_json(),
                )
                for e in good
            ]
            asyncio.run(harness.produce_paced(broker.bootstrap_servers, records, 0.5))
            ids = {e["event_id"] for e in good}
            assert harness.wait_stored(client, ids, 90) >= ids, "the agent went on"
            expected = dict.fromkeys(harness.POISONED_TOPICS, len(harness.POISON))

            def all_recorded() -> bool:
                return harness.dead_letters_by_topic(client) == expected

            try:
                harness.support.wait_for(all_recorded, 60, "every poison record dead-lettered")
            finally:
                print(harness.dead_letters_by_topic(client))
            reasons = client.query(
                "SELECT DISTINCT reason FROM dead_letters WHERE reason = ''"
            ).result_rows
            assert reasons == [], "every dead letter names its reason"
            assert worker.process is not None and worker.process.is_running()
        finally:
            worker.stop()
        assert worker.tracebacks() == []


@pytest.mark.parametrize("copies", [10_000])
def test_ten_thousand_copies_of_one_event_collapse_to_one_row(
    warehouse: str, tmp_path: Path, copies: int
):
    import httpx

    headers = {"Authorization": f"Bearer {SERVER_KEY}"}
    with (
        harness.fresh_broker(tmp_path) as broker,
        harness.fresh_database(warehouse, "copies") as client,
    ):
        worker = harness.Worker(
            tmp_path, broker.bootstrap_servers, warehouse, client.database, 0
        ).start()
        try:
            one = event()
            settings = collector_settings(broker.bootstrap_servers)
            with running_api(settings) as url, httpx.Client(base_url=url, timeout=60) as http:
                for _ in range(copies // 500):
                    response = http.post("/v1/track", json={"batch": [one] * 500}, headers=headers)
                    assert response.json() == {"accepted": 500, "rejected": []}
            assert harness.wait_stored(client, {one["event_id"]}, 60) == {one["event_id"]}
            # Every copy's offset committed, so every copy's insert is done: count them now.
            harness.support.wait_for(
                lambda: harness.support.consumed_to_end(
                    broker.bootstrap_servers, "intentflow", [TELEMETRY_RAW.name]
                ),
                60,
                "the worker's commits past every copy",
                interval_s=0.5,
            )
            final = client.query("SELECT count() FROM events FINAL").result_rows[0][0]
            assert final == 1
            query = "SELECT uniqExact(event_id) FROM events"
            assert client.query(query).result_rows[0][0] == 1
        finally:
            worker.stop()
