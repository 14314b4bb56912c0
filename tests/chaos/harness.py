"""Fault scenarios on the real parts, sized by the caller: short in ``make test``, long in
``make chaos`` (``python -m tests.chaos``).

Every scenario gets a Tansu broker of its own (topic names are fixed for the live
app) and a database of its own on the shared warehouse server, runs real worker
processes (``python -m pipeline.cli worker``: score agent + warehouse sink), hurts
them, and returns a ``Result`` row: events sent, accepted, stored (distinct event ids
in ``events``), duplicates (rows left after ``FINAL`` beyond one per id), lost, and
nudges twice (a nudge id with more than one row after ``FINAL``, or one decision —
user, kind, trigger — under two ids).

Decisions are compared with a run of the same records without faults: the live
``EngineProcessor`` fed in-process, partition by partition in produce order, with a
memory state store and an event-time clock — the replay machinery that
tests/integration/test_replay.py proves equal to a live worker's run. Workers run
with ``wall_clock_watermark=false`` and sentinel page views at the end move every
partition's watermark past every deadline, as in test_engine.py / test_replay.py.
Identify events are left out of that traffic. ``crash_with_wall_clock`` keeps them
and runs the worker on the wall clock: its reference is then the replay of the raw
log as the workers wrote it, hand-over and watermark records included (the replay
machinery merges and fires where those records stand; docs/replay.md).
"""

import asyncio
import os
import random
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import httpx
import orjson
from aiokafka import AIOKafkaProducer
from clickhouse_connect.driver.client import Client

from api.producer import partition_for
from pipeline.domain.rules import default_rules
from pipeline.engine.clock import PartitionClock
from pipeline.engine.memory_store import MemoryStateStore
from pipeline.engine.processor import EngineProcessor, EngineTopics
from pipeline.local.broker import Broker, ensure_topics
from pipeline.local.processes import ManagedProcess
from pipeline.local.simulate import generate_events
from pipeline.replay.recorded import RecordedEvent
from pipeline.replay.runner import ReplayRunner
from pipeline.replay.source import TimeRange, TopicScan
from schemas.engine_records import is_handover, is_watermark
from schemas.events import parse_event
from schemas.messages import Nudge, load_decision
from schemas.topics import DEFAULT_USER_PARTITIONS, SOURCE_TOPICS, TopicSpec
from tests import support

CHANGELOG = "intentflow-user-state-changelog"
DAY_END = datetime(2025, 6, 2, tzinfo=UTC)
# After every deadline of the traffic (the longest: a checkout timeout held through quiet hours).
SENTINEL_AT = DAY_END + timedelta(hours=14)


@dataclass
class Result:
    scenario: str
    sent: int = 0
    accepted: int = 0
    stored: int = 0
    duplicates: int = 0
    lost: int = 0
    nudges_twice: int = 0
    # Beyond the table: what differs from the fault-free run, and how the run went.
    decision_diff: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicates or self.nudges_twice or self.decision_diff)

    def row(self) -> dict[str, Any]:
        data = asdict(self)
        data["notes"] = "; ".join(self.notes)
        return data


COLUMNS = ("scenario", "sent", "accepted", "stored", "duplicates", "lost", "nudges_twice")


def table(results: list[Result]) -> str:
    """The chaos table: one line per scenario, every loss and duplicate column 0 when sound."""
    headers = (*COLUMNS, "decision_diff", "notes")
    rows = [[str(r.row()[h]) for h in headers] for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


# --- traffic ------------------------------------------------------------------------


def traffic(
    seed: int, users: int, events: int, identifies: bool = False
) -> list[tuple[bytes, bytes]]:
    """(key, value) of ``events`` simulated events as the collector would produce them,
    oldest first, then the sentinels that close the range.

    Identify events are left out unless asked for (see the module doc): a few more are
    generated and the oldest ``events`` of the rest kept. Consent events carry a phone
    reference instead of a phone, as the collector makes them.
    """
    records: list[tuple[bytes, bytes]] = []
    for raw in generate_events(seed, users, events + events // 10 + 10, DAY_END, days=1.0):
        if len(records) == events:
            break
        if raw["name"] == "identify" and not identifies:
            continue
        if raw["name"] == "consent" and "phone" in raw.get("properties", {}):
            props = dict(raw["properties"])
            props.pop("phone")
            props["phone_ref"] = f"ref-{uuid.uuid5(uuid.NAMESPACE_URL, raw['event_id']).hex}"
            props["phone_masked"] = "+1 ••••••0100"
            raw = {**raw, "properties": props}
        event = parse_event(raw, received_at=datetime.fromisoformat(raw["timestamp"]))
        records.append((event.key.encode(), event.to_json()))
    if len(records) < events:
        raise ValueError(f"only {len(records)} of {events} events")
    return records + sentinels()


def sentinel_raws(at: datetime) -> list[dict]:
    """A page view at ``at`` from each of enough shoppers to land on every partition: once
    they are processed, so is everything before them."""
    return [
        {
            "event_id": f"00000000-0000-4000-8000-{p:012d}",
            "name": "page_view",
            "timestamp": at.isoformat(),
            "anonymous_id": f"sentinel-{p}",
            "properties": {"url": "https://shop.example/"},
        }
        for p in range(16)
    ]


def sentinels() -> list[tuple[bytes, bytes]]:
    events = [parse_event(raw, received_at=SENTINEL_AT) for raw in sentinel_raws(SENTINEL_AT)]
    return [(event.key.encode(), event.to_json()) for event in events]


def event_ids(records: list[tuple[bytes, bytes]]) -> set[str]:
    return {orjson.loads(value)["event_id"] for _, value in records}


def expected_nudges(records: list[tuple[bytes, bytes]]) -> set[str]:
    """Nudge ids of the fault-free run: the live processor fed in-process, per partition."""
    rules = default_rules()
    engine = EngineProcessor(
        rules,
        MemoryStateStore(),
        PartitionClock(),
        EngineTopics.for_namespace(None, "telemetry.raw"),
        lambda upgrade: "unsigned",
    )
    for offset, (key, value) in enumerate(records):
        engine.on_raw(partition_for(key, DEFAULT_USER_PARTITIONS), offset, key, value)
    ids = set()
    for topic, _, value, _ in engine.drain():
        if topic == "nudges":
            decision = load_decision(value)
            if isinstance(decision, Nudge):
                ids.add(decision.nudge_id)
    return ids


# --- the parts --------------------------------------------------------------------


@contextmanager
def fresh_broker(tmp: Path, port: int | None = None) -> Iterator[Broker]:
    broker = Broker(port=port, log_path=tmp / f"broker-{uuid.uuid4().hex[:6]}.log").start()
    try:
        asyncio.run(ensure_topics(broker.bootstrap_servers, broker_topics()))
        yield broker
    finally:
        broker.stop()


def broker_topics() -> list[TopicSpec]:
    return [*SOURCE_TOPICS, TopicSpec(CHANGELOG, DEFAULT_USER_PARTITIONS)]


@contextmanager
def fresh_database(warehouse: str, name: str) -> Iterator[Client]:
    with support.fresh_database(warehouse, f"chaos_{name}") as client:
        yield client


class Worker:
    """One ``intentflow worker`` process that can be killed and started again."""

    def __init__(
        self,
        tmp: Path,
        brokers: str,
        warehouse: str,
        database: str,
        index: int,
        wall_clock: bool = False,
    ):
        self.tmp, self.index, self.starts = tmp, index, 0
        tmp.mkdir(parents=True, exist_ok=True)
        self.env = support.process_env(
            kafka_brokers=brokers,
            clickhouse_url=warehouse,
            clickhouse_database=database,
            data_dir=str(tmp / "data"),
            worker_index=str(index),
            wall_clock_watermark=str(wall_clock).lower(),
            batch_within_s="0.01",
        )
        self.process: ManagedProcess | None = None

    @property
    def log(self) -> Path:
        return self.tmp / f"worker-{self.index}.{self.starts}.log"

    def start(self) -> "Worker":
        self.starts += 1
        self.process = support.python_process(
            f"worker-{self.index}", ["-m", "pipeline.cli", "worker"], self.log, self.env
        )
        self.process.start()
        return self

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.stop(5)

    def kill_and_restart(self, rng: random.Random) -> None:
        time.sleep(rng.uniform(0.0, 0.5))
        self.kill()
        self.start()

    def note_kills(self, result: "Result") -> None:
        result.notes.append(f"{self.starts - 1} kills ({self.killed_ready} of a Ready worker)")
        if self.tracebacks():
            result.notes.append(f"tracebacks in {self.tracebacks()}")

    def stop(self) -> None:
        if self.process is not None and self.process.is_running():
            self.process.stop(20)

    @property
    def killed_ready(self) -> int:
        """How many of the killed runs had got as far as Faust's ``Ready``."""
        return sum(
            "[^Worker]: Ready"
            in self.tmp.joinpath(f"worker-{self.index}.{n}.log").read_text(errors="replace")
            for n in range(1, self.starts)
        )

    def tracebacks(self) -> list[str]:
        found = []
        for log in sorted(self.tmp.glob(f"worker-{self.index}.*.log")):
            if "Traceback" in log.read_text(errors="replace"):
                found.append(log.name)
        return found


async def produce_paced(
    brokers: str,
    records: list[tuple[bytes, bytes]],
    seconds: float,
    on_tick: Callable[[float], None] | None = None,
) -> None:
    """Produce ``records`` spread over about ``seconds``; ``on_tick(fraction)`` between chunks."""
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=5, acks="all")
    await producer.start()
    try:
        chunks = max(1, int(seconds * 10))
        size = -(-len(records) // chunks)
        started = time.monotonic()
        for n in range(chunks):
            for key, value in records[n * size : (n + 1) * size]:
                await producer.send("telemetry.raw", value, key=key)
            await producer.flush()
            if on_tick is not None:
                await asyncio.to_thread(on_tick, (n + 1) / chunks)
            await asyncio.sleep(max(0.0, started + (n + 1) * seconds / chunks - time.monotonic()))
    finally:
        await producer.stop()


# --- the checks ---------------------------------------------------------------------


def stored_ids(client: Client) -> set[str]:
    rows = client.query("SELECT DISTINCT toString(event_id) FROM events").result_rows
    return {row[0] for row in rows}


def stored_count(client: Client) -> int:
    return client.query("SELECT uniqExact(event_id) FROM events").result_rows[0][0]


def wait_stored(client: Client, wanted: set[str], timeout_s: float) -> set[str]:
    """The stored ids once they include ``wanted``, or at ``timeout_s``.

    Polls a count and fetches the ids only once it is high enough: fetching 200,000
    ids every half second would take CPU from the workers under test.
    """
    deadline = time.monotonic() + timeout_s
    interval = min(5.0, max(0.5, len(wanted) / 40_000))
    while time.monotonic() < deadline:
        if stored_count(client) >= len(wanted):
            found = stored_ids(client)
            if wanted <= found:
                return found
        time.sleep(interval)
    return stored_ids(client)


def live_nudges(client: Client) -> set[str]:
    query = "SELECT DISTINCT nudge_id FROM nudges WHERE run_id = 'live'"
    return {row[0] for row in client.query(query).result_rows}


def wait_nudges(client: Client, expected: set[str], timeout_s: float) -> set[str]:
    deadline = time.monotonic() + timeout_s
    found: set[str] = set()
    while time.monotonic() < deadline:
        found = live_nudges(client)
        if found >= expected:
            time.sleep(1.0)  # anything extra would show up now
            return live_nudges(client)
        time.sleep(0.5)
    return found


def settle_and_count(
    result: Result,
    client: Client,
    accepted_ids: set[str],
    expected: set[str],
    timeout_s: float = 90,
) -> Result:
    stored = wait_stored(client, accepted_ids, timeout_s)
    result.stored = len(stored & accepted_ids)
    result.lost = len(accepted_ids - stored)
    extra = stored - accepted_ids
    if extra:
        result.notes.append(f"{len(extra)} stored ids never sent")
    # The queries' dedup semantics: one row per event_id once ReplacingMergeTree collapsed.
    final = "SELECT count() - uniqExact(event_id), count() FROM events FINAL"
    result.duplicates, _ = client.query(final).result_rows[0]
    raw_rows = client.query("SELECT count() FROM events").result_rows[0][0]
    if raw_rows > len(stored):
        result.notes.append(f"{raw_rows - len(stored)} re-delivered rows not yet merged")
    found = wait_nudges(client, expected, timeout_s)
    twice = client.query(
        "SELECT count() FROM (SELECT nudge_id FROM nudges FINAL WHERE run_id = 'live'"
        " GROUP BY nudge_id HAVING count() > 1)"
    ).result_rows[0][0]
    twice += client.query(
        "SELECT count() FROM (SELECT user_key, kind, trigger_event_id FROM nudges FINAL"
        " WHERE run_id = 'live' GROUP BY user_key, kind, trigger_event_id"
        " HAVING uniqExact(nudge_id) > 1)"
    ).result_rows[0][0]
    result.nudges_twice = twice
    result.decision_diff = len(found ^ expected)
    result.notes.append(f"nudges {len(found)}/{len(expected)}")
    return result


# --- scenarios ---------------------------------------------------------------------


def worker_crash(
    warehouse: str,
    tmp: Path,
    events: int,
    kills: int,
    seconds: float,
    seed: int = 5,
    settle_s: float = 90,
) -> Result:
    """One worker, SIGKILLed ``kills`` times at random moments while traffic flows, restarted.

    10–90 % of the traffic is cut into ``kills`` equal spans and each kill falls at a
    random moment of its own span, so the kills are spread over the run (independent
    draws bunch up). A kill may still hit a worker recovering from the previous one;
    the notes say how many hit one that was up (its log says ``Ready``).
    """
    result = Result(f"worker SIGKILL x{kills}")
    records = traffic(seed, max(20, events // 25), events)
    ids = event_ids(records)
    expected = expected_nudges(records)
    rng = random.Random(seed)
    moments = kill_moments(rng, kills)
    with fresh_broker(tmp) as broker, fresh_database(warehouse, "crash") as client:
        worker = Worker(tmp, broker.bootstrap_servers, warehouse, client.database, 0).start()

        def on_tick(done: float) -> None:
            while moments and done >= moments[0]:
                moments.pop(0)
                worker.kill_and_restart(rng)

        try:
            asyncio.run(produce_paced(broker.bootstrap_servers, records, seconds, on_tick))
            result.sent = result.accepted = len(ids)
            settle_and_count(result, client, ids, expected, timeout_s=settle_s)
        finally:
            worker.stop()
        worker.note_kills(result)
    return result


def kill_moments(rng: random.Random, kills: int) -> list[float]:
    """10–90 % of the traffic cut into ``kills`` equal spans, a random moment in each."""
    span = 0.8 / max(kills, 1)
    return [0.1 + span * (n + rng.random()) for n in range(kills)]


def crash_with_wall_clock(
    warehouse: str,
    tmp: Path,
    events: int,
    kills: int,
    seconds: float,
    pauses: int = 4,
    seed: int = 8,
    settle_s: float = 90,
) -> Result:
    """One worker on the wall clock, SIGKILLed ``kills`` times while identities are handed
    over and, in ``pauses`` idle spells, watermark records written; restarted each time.

    The traffic keeps its identify events. Each pause is long enough for the partitions
    to be idle and caught up (the worker writes watermark records, which fire every cart
    of the day at once: the traffic is historical). The reference decisions are a replay
    of the raw log as it stands after the run — its hand-over and watermark records
    included, duplicates from re-done batches too.
    """
    result = Result(f"SIGKILL x{kills}, wall clock + hand-overs")
    records = traffic(seed, max(20, events // 25), events, identifies=True)
    ids = event_ids(records)
    rng = random.Random(seed)
    pause_at = [(n + 1) / (pauses + 1) for n in range(pauses)]
    kill_at = kill_moments(rng, kills)
    with fresh_broker(tmp) as broker, fresh_database(warehouse, "wallclock") as client:
        brokers = broker.bootstrap_servers
        worker = Worker(tmp, brokers, warehouse, client.database, 0, wall_clock=True).start()

        def on_tick(done: float) -> None:
            while kill_at and done >= kill_at[0]:
                kill_at.pop(0)
                worker.kill_and_restart(rng)
            while pause_at and done >= pause_at[0]:
                pause_at.pop(0)
                time.sleep(3.0)  # idle: watermark records, if the worker is up

        try:
            asyncio.run(produce_paced(brokers, records, seconds, on_tick))
            result.sent = result.accepted = len(ids)
            wait_stored(client, ids, settle_s)
            log = asyncio.run(read_raw_log(brokers, ids))
            engine_records = sum(is_handover(r.value) or is_watermark(r.value) for r in log)
            result.notes.append(f"{engine_records} engine records in the log")
            settle_and_count(result, client, ids, replayed_nudges(log), timeout_s=settle_s)
        finally:
            worker.stop()
        worker.note_kills(result)
    return result


async def read_raw_log(brokers: str, ids: set[str]) -> list[RecordedEvent]:
    """Every record of ``telemetry.raw``, each partition in offset order; it must hold
    every event id sent (a reference made from part of the log proves nothing)."""
    async with TopicScan([brokers], "telemetry.raw", TimeRange(0, 2**62)) as scan:
        log = [record async for batch in scan.batches() for record, _ in batch]
    read = {orjson.loads(r.value).get("event_id") for r in log}
    if not ids <= read:
        raise AssertionError(f"the raw log read back lacks {len(ids - read)} events")
    return log


def replayed_nudges(log: list[RecordedEvent]) -> set[str]:
    runner = ReplayRunner(
        default_rules(), DEFAULT_USER_PARTITIONS, EngineTopics.for_namespace(None, "telemetry.raw")
    )
    runner.feed(log)
    return {
        decision.nudge_id
        for topic, _, value, _ in runner.take_outputs()
        if topic == "nudges" and isinstance(decision := load_decision(value), Nudge)
    }


def worker_takeover(
    warehouse: str,
    tmp: Path,
    events: int,
    seconds: float,
    seed: int = 6,
    settle_s: float = 120,
) -> Result:
    """Two workers; one is SIGKILLed halfway and stays dead: the other takes its partitions."""
    result = Result("2 workers, 1 killed")
    records = traffic(seed, max(20, events // 25), events)
    ids = event_ids(records)
    expected = expected_nudges(records)
    with fresh_broker(tmp) as broker, fresh_database(warehouse, "takeover") as client:
        brokers = broker.bootstrap_servers
        workers = [Worker(tmp, brokers, warehouse, client.database, i).start() for i in (0, 1)]
        killed = []

        def on_tick(done: float) -> None:
            if done >= 0.5 and not killed:
                workers[1].kill()
                killed.append(time.monotonic())

        try:
            asyncio.run(produce_paced(brokers, records, seconds, on_tick))
            result.sent = result.accepted = len(ids)
            settle_and_count(result, client, ids, expected, timeout_s=settle_s)
        finally:
            for worker in workers:
                worker.stop()
        if workers[0].tracebacks():
            result.notes.append(f"tracebacks in {workers[0].tracebacks()}")
    return result


def warehouse_outage(
    tmp: Path,
    events: int,
    down_s: float,
    seed: int = 7,
    seconds: float = 5,
    settle_s: float = 90,
) -> Result:
    """The warehouse server is stopped under a running worker, then started again.

    The first half of the traffic is produced over 60 % of ``seconds`` and stored; the
    server stops; the second half follows over the rest while it is down.
    """
    result = Result(f"warehouse down {down_s:g}s")
    tmp.mkdir(parents=True, exist_ok=True)
    records = traffic(seed, max(20, events // 25), events)
    ids = event_ids(records)
    expected = expected_nudges(records)
    half = len(records) // 2
    port = support.free_port()
    url = f"http://{support.LOOPBACK}:{port}"
    data = tmp / "warehouse-data"

    def start_warehouse(n: int) -> ManagedProcess:
        process = support.python_process(
            "warehouse",
            [
                *("-m", "pipeline.local.warehouse", "--data-path", str(data)),
                *("--host", support.LOOPBACK, "--port", str(port), "--log-level", "warning"),
            ],
            tmp / f"warehouse.{n}.log",
        )
        process.start()
        support.wait_for(lambda: support.http_ok(f"{url}/ping", "Ok."), 30, "warehouse")
        return process

    warehouse = start_warehouse(1)
    try:
        with fresh_broker(tmp) as broker, fresh_database(url, "whdown") as client:
            worker = Worker(tmp, broker.bootstrap_servers, url, client.database, 0).start()
            try:
                brokers = broker.bootstrap_servers
                asyncio.run(produce_paced(brokers, records[:half], seconds * 0.6))
                wait_stored(client, event_ids(records[:half]) - event_ids(sentinels()), settle_s)
                warehouse.stop(10)
                asyncio.run(produce_paced(brokers, records[half:], seconds * 0.4))
                time.sleep(down_s)
                log = worker.log.read_text(errors="replace")
                retries = log.count("warehouse insert failed")
                result.notes.append(f"{retries} insert retries logged while down")
                if not retries:
                    result.notes.append("NO RETRY SEEN")
                    result.lost += 1
                warehouse = start_warehouse(2)
                client.close()  # its connection died with the server
                client = clickhouse_connect.get_client(dsn=url, database=client.database)
                result.sent = result.accepted = len(ids)
                settle_and_count(result, client, ids, expected, timeout_s=settle_s)
            finally:
                worker.stop()
            if worker.tracebacks():
                result.notes.append(f"tracebacks in {worker.tracebacks()}")
    finally:
        warehouse.stop(10)
    return result


POISON = [
    b"\xff\xfe\x00 not utf-8",
    b"{",
    b"[]",
    b"null",
    b'{"event_id": 1}',
    b'{"type": "nudge", "nudge_id": 5}',
    b'{"kind": "handover", "user_id": "u", "state": "!!!not base64"}',
    b'{"kind": "handover", "user_id": "u", "state": "AAAA"}',
    b'{"kind": "claim"}',
    b'{"command": "erase"}',
    b'{"command": "erase", "user_key": ""}',
    b'{"command": "format_disk", "user_key": "u"}',
    b"9" * 5000,
    b'{"a":' * 2000 + b"1" + b"}" * 2000,
]
# Every topic a worker or the dispatcher consumes.
POISONED_TOPICS = (
    "telemetry.raw",
    "identity.handover",
    "control",
    "nudges",
    "vip",
    "receipts",
    "telemetry.dlq",
)


async def produce_raw(brokers: str, topic: str, values: list[bytes], key: bytes | None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def dead_letters_by_topic(client: Client) -> dict[str, int]:
    rows = client.query(
        "SELECT source_topic, uniqExact(partition, offset) FROM dead_letters GROUP BY source_topic"
    ).result_rows
    return dict(rows)


def broker_outage(warehouse: str, tmp: Path, batches: int, down_s: float) -> Result:
    """Collector and worker while the broker is stopped and started again (empty: Tansu).

    While it is down the collector answers 503 with Retry-After and never 202; a store
    backend resending the same batches (same event ids) after Retry-After gets them all
    in once it is back; the worker, left running, carries on with the new broker.
    """
    from tests.collector_server import SERVER_KEY, collector_settings, event, running_api

    result = Result(f"broker down {down_s:g}s")
    headers = {"Authorization": f"Bearer {SERVER_KEY}"}
    sent: dict[str, list[dict]] = {}
    accepted: set[str] = set()
    port = support.free_port()
    with fresh_database(warehouse, "brokerdown") as client:
        broker = Broker(port=port, log_path=tmp / "broker.1.log").start()
        asyncio.run(ensure_topics(broker.bootstrap_servers, broker_topics()))
        worker = Worker(tmp, broker.bootstrap_servers, warehouse, client.database, 0).start()
        settings = collector_settings(broker.bootstrap_servers, produce_timeout_s=2.0)
        try:
            with running_api(settings) as url, httpx.Client(base_url=url, timeout=30) as http:

                def post(name: str) -> httpx.Response:
                    return http.post("/v1/track", json={"batch": sent[name]}, headers=headers)

                for n in range(batches):
                    sent[f"before-{n}"] = [event() for _ in range(20)]
                    assert post(f"before-{n}").status_code == 202
                    accepted.update(e["event_id"] for e in sent[f"before-{n}"])
                # Tansu keeps records in memory: what the sink has not read yet is lost
                # with it (Kafka would keep it), so the outage starts once they are stored.
                wait_stored(client, accepted, 60)
                broker.stop()
                refused, statuses = [], set()
                deadline = time.monotonic() + down_s
                while time.monotonic() < deadline:
                    name = f"during-{len(refused)}"
                    sent[name] = [event() for _ in range(20)]
                    response = post(name)
                    statuses.add(response.status_code)
                    if response.status_code == 503:
                        assert int(response.headers["retry-after"]) >= 1
                    refused.append(name)
                    time.sleep(0.3)
                result.notes.append(f"while down: {sorted(statuses)} x{len(refused)}")
                if statuses != {503}:
                    result.notes.append("NOT ONLY 503 WHILE DOWN")
                    result.duplicates += 1
                broker = Broker(port=port, log_path=tmp / "broker.2.log").start()
                asyncio.run(ensure_topics(broker.bootstrap_servers, broker_topics()))
                retry_deadline = time.monotonic() + 60
                for name in refused:  # the store backend resends each refused batch
                    while True:
                        response = post(name)
                        if response.status_code == 202:
                            accepted.update(e["event_id"] for e in sent[name])
                            break
                        assert response.status_code == 503, response.text
                        assert time.monotonic() < retry_deadline, "collector never came back"
                        time.sleep(float(response.headers.get("retry-after", "1")))
                for n in range(batches):
                    sent[f"after-{n}"] = [event() for _ in range(20)]
                    assert post(f"after-{n}").status_code == 202
                    accepted.update(e["event_id"] for e in sent[f"after-{n}"])
            result.sent = sum(len(batch) for batch in sent.values())
            result.accepted = len(accepted)
            settle_and_count(result, client, accepted, set(), timeout_s=90)
        finally:
            worker.stop()
            broker.stop()
        if worker.tracebacks():
            result.notes.append(f"tracebacks in {worker.tracebacks()}")
    return result
