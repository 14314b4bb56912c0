"""State per active user: serialized bytes, RocksDB bytes on disk, and memory while cached.

    python -m benchmarks.state [--users 100000 1000000]

An active user here has a short realistic session folded into their state:
consent, a few product views with spec lingering across products and
categories, a cart with two items. 100k distinct states are built by the real
fold; larger counts repeat those sessions under new user keys. States are
written the way the worker writes them (``state_to_bytes`` into RocksDB with
the options Faust opens its tables with), compacted, and the directory
measured. Memory is the RSS growth of holding the states as the worker's
cache does, per state: between batches in their stored form
(``EncodedState``, target ≤ 1.5 KB), and, for reference, decoded
(``UserState``), as they are while a batch folds them. The price of waiting
encoded is one decode per user per batch that touches it: its time is
measured beside the encode every flush already pays, and as CPU per event of
the engine's processor over this store (real RocksDB, a flush every 1,000
events, the worker benchmark's events) with idle states resting encoded,
beside the same with every state kept decoded. Target: ≤ 1 KiB serialised
per user.
"""

import argparse
import asyncio
import gc
import random
import resource
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from aiokafka.partitioner import murmur2
from rocksdict import Options, Rdict, WriteBatch

from benchmarks.fold import make_events
from pipeline.domain import apply, default_rules, state_from_bytes, state_to_bytes
from pipeline.engine.clock import PartitionClock
from pipeline.engine.processor import EngineProcessor, EngineTopics
from pipeline.engine.state_store import EncodedState, UserStateStore
from schemas.events import parse_event

PARTITIONS = 4
BATCH = 1_000

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def session(rng: random.Random, user: str) -> list:
    at = START + timedelta(seconds=rng.randrange(86_400))
    products = [f"p{rng.randrange(5000)}" for _ in range(4)]
    steps = [
        (
            "consent",
            {"channel": "whatsapp", "granted": True, "phone_ref": "ref", "purpose": "marketing"},
        )
    ]
    for product in products:
        category = f"c{int(product[1:]) % 40}"
        steps.append(("product_view", {"product_id": product, "category": category}))
        if rng.random() < 0.5:
            dwell = rng.randrange(2000, 30_000)
            steps.append(("spec_linger", {"product_id": product, "dwell_ms": dwell}))
    for product in products[:2]:
        steps.append(("add_to_cart", {"product_id": product, "quantity": 1, "price": 19.9}))
    events = []
    for name, properties in steps:
        at += timedelta(seconds=rng.randrange(5, 90))
        raw = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "name": name,
            "timestamp": at.isoformat(),
            "anonymous_id": f"anon-{user}",
            "user_id": user,
            "properties": properties,
            "context": {"timezone": "Europe/Berlin"},
        }
        events.append(parse_event(raw, received_at=at))
    return events


def build_states(count: int, seed: int = 5) -> list[bytes]:
    rules, rng = default_rules(), random.Random(seed)
    out = []
    for i in range(count):
        user = f"user-{i:07d}"
        state = None
        for event in session(rng, user):
            state, _ = apply(state, event, rules)
        out.append(state_to_bytes(state))
    return out


def rocksdb_bytes(encoded: list[bytes], copies: int, path: Path) -> int:
    db = Rdict(str(path), Options(raw_mode=True))  # as faust.stores.rocksdb opens tables
    for copy in range(copies):
        batch = WriteBatch(raw_mode=True)
        for i, value in enumerate(encoded):
            batch.put(f"user-{copy}-{i:07d}".encode(), value)
        db.write(batch)
    db.flush()
    db.compact_range(None, None)
    db.close()
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def memory_per_entry(make) -> float:
    """RSS growth per entry of a cache of ``make()`` values, keyed as the worker's."""
    gc.collect()
    before = rss_bytes()
    cache = make()
    gc.collect()
    memory = (rss_bytes() - before) / len(cache)
    del cache
    gc.collect()
    return memory


def codec_us(encoded: list[bytes]) -> tuple[float, float]:
    """Median µs to decode one state, and to encode one (what every flush pays)."""
    decodes, encodes = [], []
    states = [state_from_bytes(value) for value in encoded]
    for _ in range(3):
        # Each decoded state dropped, as the worker drops it at the next flush: keeping
        # them all would time the garbage collector walking them instead.
        started = time.perf_counter()
        for value in encoded:
            state_from_bytes(value)
        decodes.append((time.perf_counter() - started) / len(encoded) * 1e6)
        started = time.perf_counter()
        for state in states:
            state_to_bytes(state)
        encodes.append((time.perf_counter() - started) / len(encoded) * 1e6)
    return sorted(decodes)[1], sorted(encodes)[1]


class _Acknowledged:
    """Outputs that every send succeeds on at once: only the store's own work is timed."""

    def __init__(self) -> None:
        self._offsets: dict[tuple[str, int], int] = {}

    async def send_all(self, records: list) -> dict[tuple[str, int], int]:
        last = {}
        for topic, _key, _value, partition in records:
            offset = self._offsets.get((topic, partition), -1) + 1
            self._offsets[topic, partition] = last[topic, partition] = offset
        return last


def engine_us_per_event(records: list[tuple[int, bytes, bytes]], idle_flushes: int) -> float:
    """CPU µs per event of the engine's processor over the write-behind store."""
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        dbs = {p: Rdict(f"{tmp}/p{p}", Options(raw_mode=True)) for p in range(PARTITIONS)}
        table = SimpleNamespace(
            data=SimpleNamespace(_db_for_partition=dbs.__getitem__),
            changelog_topic=SimpleNamespace(get_topic_name=lambda: "bench-changelog"),
        )
        outputs = _Acknowledged()
        store = UserStateStore(
            table, outputs, state_to_bytes, state_from_bytes, idle_flushes=idle_flushes
        )
        topics = EngineTopics.for_namespace(None, "bench.telemetry.raw")
        engine = EngineProcessor(
            default_rules(), store, PartitionClock(), topics, lambda upgrade: "unsigned"
        )

        async def fold_all() -> float:
            offsets = [0] * PARTITIONS
            started = time.process_time()
            for number, (partition, key, value) in enumerate(records, start=1):
                engine.on_raw(partition, offsets[partition], key, value)
                offsets[partition] += 1
                if number % BATCH == 0:
                    await outputs.send_all(engine.drain())
                    await store.flush()
            await store.flush()
            return time.process_time() - started

        try:
            return asyncio.run(fold_all()) / len(records) * 1e6
        finally:
            for db in dbs.values():
                db.close()


def engine_figures(events: int = 120_000, users: int = 20_000) -> dict:
    parsed, _ = make_events(events, users)
    records = []
    for event in parsed:
        key = event.key.encode()
        records.append(((murmur2(key) & 0x7FFFFFFF) % PARTITIONS, key, event.to_json()))
    resting, kept = [], []
    for _ in range(3):  # interleaved: the machine's load shifts between runs
        resting.append(engine_us_per_event(records, idle_flushes=50))
        kept.append(engine_us_per_event(records, idle_flushes=len(records)))
    return {
        "engine_store_us_per_event": sorted(resting)[1],
        "engine_store_kept_decoded_us_per_event": sorted(kept)[1],
    }


def run(user_counts: tuple[int, ...] = (100_000, 1_000_000), distinct: int = 100_000) -> dict:
    encoded = build_states(distinct)
    serialized = sum(map(len, encoded)) / len(encoded)
    # Fresh copies (bytes(v) would be v itself), as each flush encodes its own.
    waiting = memory_per_entry(
        lambda: {f"user-{i:07d}": EncodedState(bytes(bytearray(v))) for i, v in enumerate(encoded)}
    )
    decoded = memory_per_entry(
        lambda: {f"user-{i:07d}": state_from_bytes(v) for i, v in enumerate(encoded)}
    )
    decode_us, encode_us = codec_us(encoded[:20_000])
    results: dict = {
        "state_bytes_per_user": serialized,
        "state_memory_bytes_per_cached_user": waiting,
        "state_memory_bytes_per_decoded_user": decoded,
        "state_decode_us": decode_us,
        "state_encode_us": encode_us,
        **engine_figures(),
    }
    for count in user_counts:
        copies = max(1, count // distinct)
        with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp:
            size = rocksdb_bytes(encoded, copies, Path(tmp) / "db")
        results[f"rocksdb_bytes_per_user_{count}"] = size / (copies * len(encoded))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    for name, value in run(tuple(args.users)).items():
        print(f"{name:40} {value:>10,.0f}")


if __name__ == "__main__":
    main()
