"""How fast a replay runs, from a file and from a topic, beside the fold alone.

    .venv/bin/python -m benchmarks.replay [--events N] [--users U]

Same simulated events for all three, measured in the same run (median of 3):
- ``replay_file_events_per_s``: an export (.parquet) read back and replayed through
  the live engine's processor (parse + validate + fold + watermarks + outputs);
- ``replay_topic_events_per_s``: the same records read from a Tansu topic
  (each partition from its beginning, filtered by event time, merged by arrival);
- ``fold_events_per_s_reference``: ``apply`` alone over already-parsed events.
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from pipeline.domain import apply, default_rules
from pipeline.local.broker import Broker, ensure_topics
from pipeline.local.simulate import generate_events
from pipeline.replay.namespace import run_topics
from pipeline.replay.recorded import ExportHeader, RecordedEvent, RecordReader, write_records
from pipeline.replay.runner import ReplayRunner, longest_deadline_ms
from pipeline.replay.source import TimeRange, TopicScan
from schemas.events import Event, parse_event
from schemas.topics import TopicSpec

END = datetime(2025, 11, 21, tzinfo=UTC)
PARTITIONS = 4
TOPIC = "bench.telemetry.raw"


def make_records(events: int, users: int) -> tuple[list[Event], list[RecordedEvent]]:
    parsed, records, offsets = [], [], [0] * PARTITIONS
    for raw in generate_events(7, users, events, END, days=1.0):
        event = parse_event(raw, received_at=datetime.fromisoformat(raw["timestamp"]))
        key = event.key.encode()
        partition = (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
        ms = int(event.timestamp.timestamp() * 1000)
        records.append(RecordedEvent(partition, offsets[partition], key, event.to_json(), ms, ms))
        offsets[partition] += 1
        parsed.append(event)
    return parsed, records


def fold_rate(events: list[Event]) -> float:
    rules, states = default_rules(), {}
    started = time.perf_counter()
    for event in events:
        key = event.key
        states[key], _ = apply(states.get(key), event, rules)
    return len(events) / (time.perf_counter() - started)


def file_rate(path: Path) -> float:
    rules = default_rules()
    started = time.perf_counter()
    with RecordReader(path) as reader:
        runner = ReplayRunner(
            rules, PARTITIONS, run_topics("bench", TOPIC), reader.header.handovers_logged
        )
        for batch in reader.batches():
            runner.feed(batch)
            runner.take_outputs()
        runner.finish((runner.last_event_ms or 0) + longest_deadline_ms(rules))
    return runner.records / (time.perf_counter() - started)


async def produce(brokers: str, records: list[RecordedEvent]) -> None:
    await ensure_topics(brokers, [TopicSpec(TOPIC, PARTITIONS)])
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=5, max_batch_size=1 << 20)
    await producer.start()
    try:
        for r in records:
            await producer.send(TOPIC, r.value, key=r.key, partition=r.partition)
        await producer.flush()
    finally:
        await producer.stop()


async def topic_rate(brokers: str) -> float:
    rules = default_rules()
    window = TimeRange(0, int((END + timedelta(days=1)).timestamp() * 1000))
    started = time.perf_counter()
    async with TopicScan([brokers], TOPIC, window, fetch_timeout_ms=50) as scan:
        # Generated traffic: no live worker wrote hand-over records into this topic.
        runner = ReplayRunner(rules, scan.partitions, run_topics("bench", TOPIC), False)
        async for batch in scan.batches():
            runner.feed(record for record, _ in batch)
            runner.take_outputs()
    runner.finish(window.to_ms)
    return runner.records / (time.perf_counter() - started)


def run(events: int = 50_000, users: int = 2_500) -> dict:
    parsed, records = make_records(events, users)
    with tempfile.TemporaryDirectory() as folder, Broker() as broker:
        path = Path(folder) / "bench.parquet"
        # Generated traffic holds no hand-over records: the older format says so.
        header = ExportHeader(TOPIC, PARTITIONS, None, None, version=1)
        write_records(path, header, ((r, {}) for r in records))
        asyncio.run(produce(broker.bootstrap_servers, records))
        fold, from_file, from_topic = [], [], []
        for _ in range(3):
            fold.append(fold_rate(parsed))
            from_file.append(file_rate(path))
            from_topic.append(asyncio.run(topic_rate(broker.bootstrap_servers)))
    return {
        "events": len(records),
        "replay_file_events_per_s": round(statistics.median(from_file)),
        "replay_topic_events_per_s": round(statistics.median(from_topic)),
        "fold_events_per_s_reference": round(statistics.median(fold)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=2_500)
    args = parser.parse_args()
    result = run(args.events, args.users)
    fold = result["fold_events_per_s_reference"]
    print(f"events: {result['events']:,}")
    for name in ("replay_file_events_per_s", "replay_topic_events_per_s"):
        rate = result[name]
        print(f"{name:<30} {rate:>10,} events/s  ({rate / fold:.2f} × the fold alone)")
    print(f"{'fold_events_per_s_reference':<30} {fold:>10,} events/s")


if __name__ == "__main__":
    main()
