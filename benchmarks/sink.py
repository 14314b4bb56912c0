"""How fast the warehouse sink moves rows, beside one plain clickhouse-connect insert.

    .venv/bin/python -m benchmarks.sink [--events N]

On a fresh local warehouse (its own process), median of 3 runs each:
- sink: raw ``telemetry.raw`` records → ``fill_batch`` (parse, validate, row) →
  ``WarehouseWriter.write_batch`` (column-oriented insert with a dedup token),
  in the agent's batches of 10,000; what one sink agent sustains;
- sink insert: the same writer from ready rows (the insert path alone);
- reference: one ``client.insert("events", rows)`` of the same ready rows
  (clickhouse-connect's default row-oriented insert), in the same run.
"""

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple

import clickhouse_connect

from benchmarks.warehouse_process import migrated_warehouse
from pipeline.local.simulate import generate_events
from pipeline.sink.agents import SinkConfig, fill_batch
from pipeline.sink.batch import SinkBatch
from pipeline.sink.processors import process_event
from pipeline.sink.rows import EVENTS
from pipeline.sink.writer import WarehouseWriter
from schemas.events import parse_event

START = datetime(2025, 11, 20, tzinfo=UTC)


class _Message(NamedTuple):
    """The fields of a Faust message the sink reads (pipeline/sink/batch.py)."""

    partition: int
    offset: int
    key: bytes
    value: bytes
    timestamp: float


class _Event(NamedTuple):
    message: _Message


def _median_seconds(run: Callable[[], None], before: Callable[[], None], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        before()
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(events: int = 100_000) -> dict:
    raw = generate_events(1, max(1, events // 40), events, START, days=7)
    parsed = [parse_event(e, received_at=START) for e in raw]
    messages = [
        _Event(_Message(i % 4, i // 4, event.key.encode(), event.to_json(), 0.0))
        for i, event in enumerate(parsed)
    ]
    size = SinkConfig().batch_size
    chunks = [messages[i : i + size] for i in range(0, len(messages), size)]
    with migrated_warehouse() as url:
        client = clickhouse_connect.get_client(dsn=url, database="bench")
        writer = WarehouseWriter(url, "bench")
        generation = iter(range(1_000_000))

        def truncate() -> None:
            client.command("TRUNCATE TABLE events")

        def sink() -> None:
            # A new topic name per run: the dedup tokens must not drop a repeat run.
            topic = f"raw-{next(generation)}"
            for chunk in chunks:
                writer.write_batch(fill_batch(topic, chunk, process_event))

        batches = [fill_batch("ready", chunk, process_event) for chunk in chunks]
        rows = [row for batch in batches for row in batch.rows[EVENTS]]

        def sink_insert() -> None:
            for batch in batches:
                fresh = SinkBatch(
                    f"ready-{next(generation)}", batch.rows, batch.offsets, origins=batch.origins
                )
                writer.write_batch(fresh)

        def reference() -> None:
            client.insert("events", rows, column_names=EVENTS.columns)

        def decode() -> None:
            for chunk in chunks:
                fill_batch("decode", chunk, process_event)

        sink_s = _median_seconds(sink, truncate)
        insert_s = _median_seconds(sink_insert, truncate)
        reference_s = _median_seconds(reference, truncate)
        decode_s = _median_seconds(decode, lambda: None)
        stored = client.command("SELECT count() FROM events")
        writer.close()
        client.close()
    assert stored == len(rows), "every row lands once"
    result = {
        "sink_rows_per_s": round(len(rows) / sink_s),
        "sink_insert_rows_per_s": round(len(rows) / insert_s),
        "sink_decode_rows_per_s": round(len(rows) / decode_s),
        "sink_reference_rows_per_s": round(len(rows) / reference_s),
    }
    print(f"rows: {len(rows):,} in batches of {size:,} (median of 3)")
    print(f"  sink, from raw records:      {result['sink_rows_per_s']:>10,} rows/s")
    print(f"    of which decode + rows:    {result['sink_decode_rows_per_s']:>10,} rows/s")
    print(f"  sink insert, from rows:      {result['sink_insert_rows_per_s']:>10,} rows/s")
    print(f"  reference client.insert:     {result['sink_reference_rows_per_s']:>10,} rows/s")
    print(
        f"  sink insert / reference:     {insert_s and reference_s / insert_s:>10.2f}x; "
        f"sink / reference: {reference_s / sink_s:.2f}x"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    run(parser.parse_args().events)


if __name__ == "__main__":
    main()
