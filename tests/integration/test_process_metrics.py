"""Each process's /metrics in Prometheus's format, and the user partition count as a
setting, on the real broker: the API and stream workers as they run in production.

Scrapes are read with prometheus_client's own parser, as Prometheus would read them.
"""

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from pipeline.local.broker import ensure_topics
from pipeline.local.processes import ManagedProcess
from pipeline.worker import CONFIG_ERROR_EXIT
from schemas.events import parse_event
from schemas.topics import TELEMETRY_DLQ, TELEMETRY_RAW, namespaced, source_topics
from tests import support
from tests.collector_server import WRITE_KEY, collector_settings, event, running_api

scrape, value, Samples = support.scrape_metrics, support.metric_value, support.MetricSamples


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for sample_name, labels in samples if sample_name == name}


def test_the_api_serves_metrics_on_its_own_port_only_and_counts_what_it_produces(broker: str):
    port = support.free_port()
    metrics_url = f"http://{support.LOOPBACK}:{port}/metrics"
    with running_api(collector_settings(broker, metrics_port=port)) as api_url:
        before = scrape(metrics_url)
        sent = [event("page_view") for _ in range(3)]
        response = httpx.post(
            f"{api_url}/v1/track",
            json={"batch": sent},
            headers={"Authorization": f"Bearer {WRITE_KEY}"},
            timeout=10,
        )
        assert response.status_code == 202, response.text
        after = scrape(metrics_url)
        # Not on the public port: nothing there names the pipeline's internals.
        assert httpx.get(f"{api_url}/metrics", timeout=5).status_code == 404

    topic = TELEMETRY_RAW.name
    produced = "intentflow_records_out_total"
    assert value(after, produced, topic=topic) - value(before, produced, topic=topic) == 3
    sends = "intentflow_send_seconds_count"
    assert value(after, sends, producer="collector") > value(before, sends, producer="collector")
    # Every process gets the client's process metrics (memory, CPU) for free.
    assert value(after, "process_resident_memory_bytes") > 0
    # The listener went away with the app.
    with pytest.raises(httpx.ConnectError):
        httpx.get(metrics_url, timeout=2)


# --- stream workers -------------------------------------------------------------------


def raw_record(user: str, name: str = "page_view") -> tuple[bytes, bytes]:
    now = datetime.now(UTC)
    raw = {
        "event_id": str(uuid.uuid4()),
        "name": name,
        "timestamp": now.isoformat(),
        "anonymous_id": user,
        "properties": {"url": "https://shop.test/"},
    }
    return user.encode(), parse_event(raw, received_at=now).to_json()


async def produce(brokers: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=5)
    await producer.start()
    try:
        # Keyed like the collector: the default partitioner, over the topic's partitions.
        futures = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def namespace_topics(brokers: str, namespace: str, partitions: int) -> str:
    """A namespace's source topics, the user-keyed ones at ``partitions``; its raw topic."""
    await ensure_topics(brokers, [namespaced(s, namespace) for s in source_topics(partitions)])
    return namespaced(TELEMETRY_RAW, namespace).name


@contextmanager
def score_worker(
    tmp: Path, brokers: str, namespace: str, index: int, partitions: int, metrics_port: int
) -> Iterator[ManagedProcess]:
    """One ``intentflow worker`` of the namespace's group (a namespace has no sink)."""
    env = support.process_env(
        kafka_brokers=brokers,
        data_dir=str(tmp / "data"),
        namespace=namespace,
        source_topic=namespaced(TELEMETRY_RAW, namespace).name,
        worker_index=str(index),
        user_partitions=str(partitions),
        metrics_port=str(metrics_port),
        wall_clock_watermark="false",
    )
    log_path = tmp / f"worker-{index}.log"
    process = support.python_process(
        f"worker-{index}", ["-m", "pipeline.cli", "worker"], log_path, env
    )
    process.start()
    try:
        yield process
    finally:
        process.stop(15)
        assert "Traceback" not in log_path.read_text(), process.log_tail(40)


def metrics_once_up(url: str, process: ManagedProcess) -> Samples:
    def answers() -> bool:
        assert process.is_running(), process.log_tail(40)
        return support.http_ok(url)

    support.wait_for(answers, 30, f"metrics at {url}")
    return scrape(url)


async def test_a_worker_counts_records_batches_dead_letters_flushes_and_lag(
    broker: str, tmp_path: Path
):
    namespace = f"m{uuid.uuid4().hex[:8]}"
    raw = await namespace_topics(broker, namespace, 4)
    port = support.free_port()
    url = f"http://{support.LOOPBACK}:{port}/metrics"
    good = [raw_record(f"shopper-{n}") for n in range(40)]
    poison = [(b"shopper-x", b"{not json"), (b"shopper-y", b'{"name": "page_view"}')]
    with score_worker(tmp_path, broker, namespace, 0, 4, port) as worker:
        metrics_once_up(url, worker)
        await produce(broker, raw, good + poison)

        def all_read() -> bool:
            samples = scrape(url)
            return value(samples, "intentflow_records_in_total", topic=raw) >= len(good) + 2

        await asyncio.to_thread(support.wait_for, all_read, 60, "every record read")
        # Lag is measured on a timer; every partition read to its end comes down to 0.

        def lag_measured() -> bool:
            samples = scrape(url)
            partitions = label_values(samples, "intentflow_consumer_lag", "partition")
            lags = [v for (n, labels), v in samples.items() if n == "intentflow_consumer_lag"]
            memtables = value(samples, "intentflow_state_memory_bytes", part="memtables")
            return bool(partitions) and max(lags) == 0 and memtables > 0

        await asyncio.to_thread(support.wait_for, lag_measured, 30, "consumer lag measured")
        samples = scrape(url)

    assert value(samples, "intentflow_records_in_total", topic=raw) == len(good) + 2
    assert value(samples, "intentflow_dead_letters_total", reason="invalid_event") == 2
    dlq = namespaced(TELEMETRY_DLQ, namespace).name
    assert value(samples, "intentflow_records_out_total", topic=dlq) == 2
    assert value(samples, "intentflow_batch_records_count", topic=raw) >= 1
    assert value(samples, "intentflow_batch_records_sum", topic=raw) == len(good) + 2
    assert value(samples, "intentflow_flush_seconds_count", target="state") >= 1
    assert value(samples, "intentflow_send_seconds_count", producer="worker") >= 1
    # RocksDB's memory, within the process's budget (pipeline/engine/rocksdb_memory.py).
    assert 0 < value(samples, "intentflow_state_memory_bytes", part="total") <= 64 << 20
    # Only topics in labels: no shopper, no event id.
    text_labels = {v for (_, labels) in samples for _, v in labels}
    assert not any("shopper" in label for label in text_labels)


async def test_three_workers_share_twelve_partitions_and_each_processes_events(
    broker: str, tmp_path: Path
):
    namespace = f"p{uuid.uuid4().hex[:8]}"
    partitions = 12
    raw = await namespace_topics(broker, namespace, partitions)
    ports = [support.free_port() for _ in range(3)]
    urls = [f"http://{support.LOOPBACK}:{port}/metrics" for port in ports]
    produced = 0
    with (
        score_worker(tmp_path, broker, namespace, 0, partitions, ports[0]) as first,
        score_worker(tmp_path, broker, namespace, 1, partitions, ports[1]) as second,
        score_worker(tmp_path, broker, namespace, 2, partitions, ports[2]) as third,
    ):
        for url, process in zip(urls, (first, second, third), strict=True):
            metrics_once_up(url, process)

        def read_by(url: str) -> float:
            return value(scrape(url), "intentflow_records_in_total", topic=raw)

        # Waves of 240 shoppers (spread over every partition) until all three have read
        # some: the group settles while it runs, as it does when workers are scaled out.
        deadline = asyncio.get_running_loop().time() + 90
        while not all(read_by(url) > 0 for url in urls):
            assert asyncio.get_running_loop().time() < deadline, [read_by(u) for u in urls]
            wave = [raw_record(f"shopper-{produced + n}") for n in range(240)]
            await produce(broker, raw, wave)
            produced += len(wave)
            await asyncio.sleep(1)

        def everything_read() -> bool:
            return sum(read_by(url) for url in urls) >= produced

        await asyncio.to_thread(support.wait_for, everything_read, 60, "every wave read")

        def owned(url: str) -> set[str]:
            return label_values(scrape(url), "intentflow_consumer_lag", "partition")

        def partitions_settled() -> bool:
            sets = [owned(url) for url in urls]
            union = set().union(*sets)
            return union == {str(p) for p in range(partitions)} and sum(map(len, sets)) == 12

        await asyncio.to_thread(support.wait_for, partitions_settled, 30, "12 partitions owned")
        counts = [read_by(url) for url in urls]
        owners = [owned(url) for url in urls]

    assert all(count > 0 for count in counts), counts
    # At least once: a rebalance may re-deliver a batch, never skip one.
    assert sum(counts) >= produced
    assert all(owners), owners


async def test_a_worker_refuses_topics_of_another_partition_count(broker: str, tmp_path: Path):
    namespace = f"x{uuid.uuid4().hex[:8]}"
    raw = await namespace_topics(broker, namespace, 4)
    with score_worker(tmp_path, broker, namespace, 0, 12, support.free_port()) as worker:
        await asyncio.to_thread(
            support.wait_for, lambda: not worker.is_running(), 30, "the worker to stop"
        )
        assert worker.returncode() == CONFIG_ERROR_EXIT
        log = (tmp_path / "worker-0.log").read_text()
    assert f"topic {raw} has 4 partitions, 12 configured" in log
    assert "INTENTFLOW_USER_PARTITIONS" in log
