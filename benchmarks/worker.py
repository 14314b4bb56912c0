"""Worker throughput and produce → nudge latency, each beside its reference, in one run.

    python -m benchmarks.worker [--events 120000] [--users 20000]

On a fresh Tansu broker, the same pre-produced topic of realistic, valid
events is consumed by
- raw aiokafka (``getmany`` + ``orjson.loads``): the ceiling of any Python consumer;
- a bare batched Faust agent (``take_events`` + a dict update): the reference;
- the intentflow worker (engine: fold, state, decisions), 1 process, then 2;
- Quix Streams doing the per-user work with RocksDB state and changelog
  (benchmarks/quix_reference.py, in its own virtualenv ``.venv-quix``), over the
  raw topic from its start: its rate is first to last event processed.
The Faust ones run in their own consumer group, each over its own copy of the topic
produced once the group is stable; their rate is taken from the group's committed
offsets between 10 % and 100 % of the events, so start-up and group joins are not
counted. Then latency: events are produced at half the measured
worker rate and every nudge's arrival is matched to its trigger event's send
time; reference: the produce → consume round trip of a bare record.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks.fold import make_events
from benchmarks.warehouse_process import migrated_warehouse
from pipeline.local.broker import Broker, ensure_topics
from pipeline.local.processes import ManagedProcess
from schemas.events import parse_event
from schemas.messages import load_decision
from schemas.topics import (
    CONTROL,
    IDENTITY,
    NUDGES,
    SOURCE_TOPICS,
    TELEMETRY_DLQ,
    VIP,
    TopicSpec,
    namespaced,
)

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4
WORKER = ["-m", "pipeline.cli", "worker"]
BARE_FAUST = ["-m", "benchmarks.apps.bare_faust"]
QUIX_PYTHON = ROOT / ".venv-quix" / "bin" / "python"
QUIX_REFERENCE = ROOT / "benchmarks" / "quix_reference.py"
# Every copy of the source topic is created with an explicit retention: Quix derives its
# changelog's config from the source topic's retention.ms, which Tansu reports only when
# set. Tansu deletes nothing within a run this short, so the others consume the same.
SOURCE_RETENTION_MS = 7 * 24 * 3600 * 1000


def source_topic(name: str) -> TopicSpec:
    return TopicSpec(name, PARTITIONS, SOURCE_RETENTION_MS)


WAREHOUSE_DATABASE = "bench"


def _env(brokers: str, data_dir: Path, namespace: str, source: str, **extra: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env.update(
        {
            "INTENTFLOW_ENV": "test",
            "INTENTFLOW_KAFKA_BROKERS": brokers,
            "INTENTFLOW_DATA_DIR": str(data_dir),
            "INTENTFLOW_NAMESPACE": namespace,
            "INTENTFLOW_SOURCE_TOPIC": source,
            "INTENTFLOW_TOKEN_SECRET": "benchmark-token-secret-of-32-bytes!!",
            "INTENTFLOW_PII_MASTER_KEY": "benchmark-pii-master-key",
            "INTENTFLOW_LINK_SECRET": "benchmark-link-secret",
            "INTENTFLOW_WEB_ENABLED": "false",
            "INTENTFLOW_LOG_LEVEL": "warning",
            **{f"INTENTFLOW_{k.upper()}": v for k, v in extra.items()},
        }
    )
    return env


@contextmanager
def processes(
    module_args: list[str], count: int, env_for: Callable[[int], dict], logs: Path
) -> Iterator[list[ManagedProcess]]:
    started = []
    try:
        for index in range(count):
            process = ManagedProcess(
                f"worker-{index}",
                [sys.executable, *module_args],
                logs / f"{module_args[-1]}-{index}.log",
                env=env_for(index),
                cwd=ROOT,
            )
            process.start()
            started.append(process)
        yield started
    finally:
        for process in started:
            process.stop(15)


async def produce(brokers: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=5, max_batch_size=1 << 20)
    await producer.start()
    try:
        acks = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


async def committed_total(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    # Tansu needs the partitions named (docs/local-stack.md).
    offsets = await admin.list_consumer_group_offsets(group, partitions=partitions)
    return sum(max(meta.offset, 0) for meta in offsets.values() if meta is not None)


async def wait_until_stable(brokers: str, group: str, members: int, timeout_s: float = 60) -> None:
    """Until every worker of ``group`` has joined and partitions are assigned."""
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for response in await admin.describe_consumer_groups([group]):
                for found in response.to_object()["groups"]:
                    if found["state"] == "Stable" and len(found["members"]) == members:
                        return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{group}: {members} member(s) not stable in {timeout_s:g}s")
    finally:
        await admin.close()


class TooFewCommits(RuntimeError):
    """A group committed everything at once: no rate between two commits to take."""


async def rate_from_commits(brokers: str, group: str, topic: str, total: int) -> float:
    """Events/s between 10 % and 100 % of ``total`` committed by ``group``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        first_at = None
        first_count = 0
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            done = await committed_total(admin, group, topic)
            now = time.monotonic()
            if first_at is None and done >= total // 10:
                first_at, first_count = now, done
            if done >= total:
                if done == first_count:
                    raise TooFewCommits(f"{group} committed all {total} at once: too few to time")
                return (done - first_count) / (now - first_at)
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{group} did not finish ({done}/{total})")
    finally:
        await admin.close()


async def raw_consume_rate(brokers: str, topic: str, total: int) -> float:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=brokers, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        seen, started = 0, None
        loads = orjson.loads
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for messages in batch.values():
                if started is None:
                    started = time.perf_counter()
                for message in messages:
                    loads(message.value)
                seen += len(messages)
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def measure_workers(
    brokers: str, warehouse: str, work: Path, records: list[tuple[bytes, bytes]], total: int
) -> dict:
    """Raw aiokafka, then Quix over the same topic (``quix_rate``), then the bare Faust
    agent and the worker (1 and 2 processes, then the engine alone), each over its own
    copy of the topic (``worker_rate``)."""

    topic = "raw.telemetry.raw"

    async def raw_reference() -> float:
        await ensure_topics(brokers, [source_topic(topic)])
        await produce(brokers, topic, records)
        return await raw_consume_rate(brokers, topic, total)

    results = {"raw_consume_events_per_s": asyncio.run(raw_reference())}
    print(f"  {'raw_consume_events_per_s':28} {results['raw_consume_events_per_s']:>10,.0f}")
    results.update(quix_rate(brokers, work, topic, total))
    runs = [
        ("bare_faust_events_per_s", BARE_FAUST, 1, "bare"),
        ("worker_events_per_s", WORKER, 1, "worker1"),
        ("worker2_events_per_s", WORKER, 2, "worker2"),
        ("engine_only_events_per_s", WORKER, 1, "engine1"),
    ]
    for name, module_args, count, namespace in runs:
        results[name] = worker_rate(
            brokers, warehouse, work, records, namespace, module_args, count
        )
        print(f"  {name:28} {results[name]:>10,.0f} events/s", flush=True)
    return results


def worker_rate(
    brokers: str,
    warehouse: str,
    work: Path,
    records: list[tuple[bytes, bytes]],
    namespace: str,
    module_args: list[str] = WORKER,
    count: int = 1,
    **settings: str,
) -> float:
    """Events/s of ``count`` processes of ``module_args`` over their own copy of
    ``records``, produced once their group is stable, so joins and rebalances are not
    part of what is measured. ``settings`` are extra INTENTFLOW_* settings.

    The worker is the live one: the engine and the warehouse sink (a second agent
    on the same topic) into a real warehouse. A namespace starting ``engine`` runs
    it in that namespace, where no sink is registered."""
    live = not namespace.startswith("engine")
    topic = f"{namespace}.telemetry.raw"
    specs = [source_topic(topic)] + [
        namespaced(s, namespace) for s in (NUDGES, VIP, IDENTITY, TELEMETRY_DLQ, CONTROL)
    ]
    asyncio.run(ensure_topics(brokers, specs))
    group = f"bench-{namespace}" if live else f"bench-{namespace}.{namespace}"

    def env(i: int) -> dict:
        return _env(
            brokers,
            work / namespace,
            "" if live else namespace,
            topic,
            worker_index=str(i),
            wall_clock_watermark="false",
            app_id=f"bench-{namespace}",
            clickhouse_url=warehouse,
            clickhouse_database=WAREHOUSE_DATABASE,
            **settings,
        )

    async def produce_and_measure() -> float:
        producing = asyncio.create_task(produce(brokers, topic, records))
        rate = await rate_from_commits(brokers, group, topic, len(records))
        await producing
        return rate

    with processes(module_args, count, env, work):
        asyncio.run(wait_until_stable(brokers, group, count))
        return asyncio.run(produce_and_measure())


def quix_rate(brokers: str, work: Path, topic: str, total: int, group: str = "bench-quix") -> dict:
    """The Quix Streams reference (benchmarks/quix_reference.py) over ``topic``, already
    holding ``total`` events, from its start: the script's own rate, first to last event
    processed; also its group's rate from its commits (``rate_from_commits``, as the
    workers are measured, though they are measured while their topic is produced). Empty,
    with how to build it, when ``.venv-quix`` is missing."""
    if not QUIX_PYTHON.exists():
        print(f"  quix_stateful_events_per_s: skipped, no {QUIX_PYTHON.relative_to(ROOT)}")
        print("    (`make bench` builds it; alone: `make .venv-quix/.installed`)", flush=True)
        return {}
    log = work / "quix.log"
    argv = [str(QUIX_PYTHON), str(QUIX_REFERENCE), "--brokers", brokers, "--topic", topic]
    argv += ["--group", group, "--state-dir", str(work / "quix"), "--events", str(total)]
    reference = ManagedProcess("quix", argv, log, cwd=ROOT)

    async def committed_rate() -> float:
        measuring = asyncio.create_task(rate_from_commits(brokers, group, topic, total))
        while reference.is_running():
            done, _ = await asyncio.wait({measuring}, timeout=0.2)
            if done:
                break
        try:  # its last commit may land after it exited
            return await asyncio.wait_for(measuring, timeout=5)
        except TimeoutError:
            raise RuntimeError(f"the Quix reference stopped:\n{reference.log_tail()}") from None

    reference.start()
    try:
        # A fast reference over few events (--quick) may commit only once.
        committed = None
        with suppress(TooFewCommits):
            committed = asyncio.run(committed_rate())
        deadline = time.monotonic() + 30
        while reference.is_running() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        reference.stop(15)
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"the Quix reference printed no result:\n{reference.log_tail()}")
    own = json.loads(lines[-1])
    rate = own["events"] / own["seconds"]
    print(f"  {'quix_stateful_events_per_s':28} {rate:>10,.0f} events/s", flush=True)
    result = {"quix_stateful_events_per_s": rate}
    if committed is not None:
        result["quix_stateful_committed_events_per_s"] = committed
    return result


# --- latency ------------------------------------------------------------------------


def lingering_events(count: int, start: datetime, tag: int) -> list[tuple[bytes, bytes, str]]:
    """Shoppers lingering on one product's specs: each crosses high intent within a few events."""
    out = []
    for i in range(count):
        user = f"lat{tag}-{i // 6}"
        at = start + timedelta(milliseconds=i)
        raw = {
            "event_id": f"00000000-0000-4000-{8000 + tag:04x}-{i:012d}",
            "name": "spec_linger",
            "timestamp": at.isoformat(),
            "anonymous_id": f"anon-{user}",
            "user_id": user,
            "properties": {"product_id": "p-lat", "dwell_ms": 20_000},
        }
        event = parse_event(raw, received_at=at)
        out.append((event.key.encode(), event.to_json(), str(event.event_id)))
    return out


async def latency(
    brokers: str, topic: str, nudges_topic: str, rate: float, count: int, tag: int
) -> dict:
    """Produce → nudge arrival, and its split at the nudge's record timestamp (set by
    the worker's producer when the worker hands the nudge over, after the batch was
    fed): in to the worker's send, and from that send to the reader's hands."""
    records = lingering_events(count, datetime.now(UTC), tag)
    sent_at: dict[str, float] = {}
    sent_wall: dict[str, float] = {}
    arrived: dict[str, float] = {}
    handed_over: dict[str, float] = {}
    consumer = await ready_reader(brokers, nudges_topic, fetch_max_wait_ms=5)
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=0)
    await producer.start()

    async def consume() -> None:
        while len(arrived) < count // 6:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for messages in batch.values():
                for message in messages:
                    trigger = load_decision(message.value).trigger_event_id
                    arrived.setdefault(trigger, now)
                    handed_over.setdefault(trigger, message.timestamp / 1000)

    reader = asyncio.create_task(consume())
    began = time.perf_counter()
    for i, (key, value, event_id) in enumerate(records):
        await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
        sent_at[event_id] = time.perf_counter()
        sent_wall[event_id] = time.time()
        await producer.send(topic, value, key=key)
    with suppress(TimeoutError):
        await asyncio.wait_for(reader, timeout=30)
    await producer.stop()
    await consumer.stop()
    matched = [e for e in arrived if e in sent_at]
    if not matched:
        raise RuntimeError("no nudge arrived")
    samples = sorted((arrived[e] - sent_at[e]) * 1000 for e in matched)
    # Wall clocks of one machine; the record timestamp has millisecond resolution.
    inbound = [(handed_over[e] - sent_wall[e]) * 1000 for e in matched]
    return {
        "latency_p50_ms": statistics.median(samples),
        "latency_p99_ms": percentile(samples, 0.99),
        "latency_samples": len(samples),
        "latency_to_worker_send_p50_ms": statistics.median(inbound),
        "latency_to_worker_send_p99_ms": percentile(sorted(inbound), 0.99),
    }


async def ready_reader(brokers: str, topic: str, fetch_max_wait_ms: int) -> AIOKafkaConsumer:
    """A consumer at the topic's end that has already fetched once. A fresh one handed
    its first records ~200 ms after they arrived, so every run that started its clock
    before that measured the reader's start-up as the p99 (~176 ms in 9 of 11 runs;
    benchmarks/RESULTS.md); the warm-up of 600 events primed the worker, not the reader."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=brokers,
        auto_offset_reset="latest",
        fetch_max_wait_ms=fetch_max_wait_ms,
    )
    await consumer.start()
    await consumer.seek_to_end()
    await consumer.getmany(timeout_ms=300)  # nothing is sent yet: only its first fetches
    return consumer


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def round_trip(brokers: str, topic: str, rate: float, count: int) -> dict:
    # The same fetch wait as the worker's consumer (pipeline/faust_transport.py).
    consumer = await ready_reader(brokers, topic, fetch_max_wait_ms=10)
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=0)
    await producer.start()
    sent: dict[bytes, float] = {}
    samples: list[float] = []

    async def consume() -> None:
        while len(samples) < count:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for messages in batch.values():
                samples.extend((now - sent[m.value]) * 1000 for m in messages if m.value in sent)

    reader = asyncio.create_task(consume())
    began = time.perf_counter()
    for i in range(count):
        await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
        value = f"{i}".encode()
        sent[value] = time.perf_counter()
        await producer.send(topic, value)
    await asyncio.wait_for(reader, timeout=30)
    await producer.stop()
    await consumer.stop()
    samples.sort()
    return {
        "round_trip_p50_ms": statistics.median(samples),
        "round_trip_p99_ms": percentile(samples, 0.99),
    }


def measure_latency(
    brokers: str, work: Path, rate: float, count: int, namespace: str = "latency", **settings: str
) -> dict:
    """Nudge latency of one worker (``settings``: extra INTENTFLOW_* settings) at ``rate``,
    then the bare round trip on the same broker."""
    topic = f"{namespace}.telemetry.raw"
    bare = f"{namespace}.bare"
    specs = [TopicSpec(topic, PARTITIONS), TopicSpec(bare, PARTITIONS)] + [
        namespaced(s, namespace) for s in (NUDGES, VIP, IDENTITY, TELEMETRY_DLQ, CONTROL)
    ]
    asyncio.run(ensure_topics(brokers, specs))
    env = _env(brokers, work / namespace, namespace, topic, **settings)
    with processes(WORKER, 1, lambda i: env, work):
        # Warm up: the worker joins its group and handles a first trickle.
        asyncio.run(latency(brokers, topic, f"{namespace}.nudges", rate, 600, tag=1))
        result = asyncio.run(latency(brokers, topic, f"{namespace}.nudges", rate, count, tag=2))
    result.update(asyncio.run(round_trip(brokers, bare, rate, min(count, 2000))))
    return result


def run(events: int = 120_000, users: int = 20_000) -> dict:
    parsed, _ = make_events(events, users)
    records = [(event.key.encode(), event.to_json()) for event in parsed]
    with (
        tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp,
        Broker() as broker,
        migrated_warehouse(WAREHOUSE_DATABASE) as warehouse,
    ):
        work = Path(tmp)
        asyncio.run(ensure_topics(broker.bootstrap_servers, SOURCE_TOPICS))
        print(f"worker throughput over {events:,} events of {users:,} shoppers:", flush=True)
        results = measure_workers(broker.bootstrap_servers, warehouse, work, records, events)
        rate = results["worker_events_per_s"] / 2
        print(f"latency at half the worker's rate ({rate:,.0f} events/s):", flush=True)
        results.update(measure_latency(broker.bootstrap_servers, work, rate, 6_000))
    results["worker_vs_bare_faust"] = (
        results["worker_events_per_s"] / results["bare_faust_events_per_s"]
    )
    results["worker2_vs_worker"] = results["worker2_events_per_s"] / results["worker_events_per_s"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=120_000)
    parser.add_argument("--users", type=int, default=20_000)
    args = parser.parse_args()
    results = run(args.events, args.users)
    for name, value in results.items():
        print(f"{name:32} {value:>12,.2f}")


if __name__ == "__main__":
    main()
