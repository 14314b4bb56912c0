"""Funnel latency over 10 M events on the local warehouse, beside a plain count.

    .venv/bin/python -m benchmarks.funnel [--rows N] [--repeat R]

A fresh local warehouse (its own process) gets N events generated inside
ClickHouse (``numbers()`` and ``rand``: 200,000 users, 8 event names, 30 days),
inserted into the real ``events`` table from the migrations, so the warehouse's
materialized view fills ``funnel_steps`` as it does for the sink's inserts (no
merge is forced). Then the API's funnel query (4 steps, 1-day window, the whole 30
days; and the same with a breakdown by device) runs R times: p50 and p95 in ms,
beside the median of ``SELECT count()`` over the same range, measured in the same
run. The raw ``windowFunnel`` over ``events`` (the definition, and the query
before ``funnel_steps``) runs R times too, as a reference line.
"""

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

import clickhouse_connect

from api.queries.common import TimeRange
from api.queries.funnel import funnel
from benchmarks.warehouse_process import migrated_warehouse
from pipeline.sink.rows import ms

START = datetime(2025, 10, 1, tzinfo=UTC)
DAYS = 30
STEPS = ["page_view", "product_view", "add_to_cart", "order_placed"]

GENERATE = """
INSERT INTO events (event_id, name, timestamp, received_at, user_key, anonymous_id, device)
SELECT
    generateUUIDv4(number) AS event_id,
    ['page_view', 'page_view', 'product_view', 'product_view', 'search', 'deep_scroll',
     'add_to_cart', 'order_placed'][1 + rand(1) % 8] AS name,
    fromUnixTimestamp64Milli(toInt64({start_ms:Int64} + rand64(2) % {span_ms:Int64}), 'UTC')
        AS timestamp,
    timestamp AS received_at,
    concat('u', toString(rand(3) % 200000)) AS user_key,
    user_key AS anonymous_id,
    ['desktop', 'mobile', 'tablet'][1 + rand(4) % 3] AS device
FROM numbers({rows:UInt64})
"""


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(rows: int = 10_000_000, repeat: int = 20) -> dict:
    span = TimeRange(ms(START), ms(START + timedelta(days=DAYS)))
    with migrated_warehouse() as url:
        client = clickhouse_connect.get_client(
            dsn=url, database="bench", send_receive_timeout=600, autogenerate_session_id=False
        )
        started = time.perf_counter()
        # In chunks: one huge INSERT ... SELECT would hold every part in memory.
        chunk = 2_000_000
        for offset in range(0, rows, chunk):
            client.command(
                GENERATE,
                parameters={
                    "start_ms": span.start_ms,
                    "span_ms": span.end_ms - span.start_ms,
                    "rows": min(chunk, rows - offset),
                },
            )
        load_s = time.perf_counter() - started
        stored = client.command("SELECT count() FROM events")

        def timed(*calls) -> list[list[float]]:
            """Each call ``repeat`` times, interleaved: on a shared machine a burst of
            load then hits every figure alike, not just the one measured at that moment."""
            for call in calls:
                call()  # warm-up
            samples: list[list[float]] = [[] for _ in calls]
            for _ in range(repeat):
                for call, taken in zip(calls, samples, strict=True):
                    t = time.perf_counter()
                    call()
                    taken.append((time.perf_counter() - t) * 1000)
            return samples

        def count() -> None:
            client.command(
                "SELECT count() FROM events WHERE timestamp >= fromUnixTimestamp64Milli("
                "{s:Int64}, 'UTC') AND timestamp < fromUnixTimestamp64Milli({e:Int64}, 'UTC')",
                parameters={"s": span.start_ms, "e": span.end_ms},
            )

        plain, by_device, raw, reference = timed(
            lambda: funnel(client, STEPS, 86_400, span),
            lambda: funnel(client, STEPS, 86_400, span, "device"),
            lambda: funnel(client, STEPS, 86_400, span, raw=True),
            count,
        )
        example = funnel(client, STEPS, 86_400, span)
        if example != funnel(client, STEPS, 86_400, span, raw=True):
            raise AssertionError("funnel_steps and the raw query disagree")
        parts = client.command(
            "SELECT count() FROM system.parts WHERE database = 'bench'"
            " AND table = 'funnel_steps' AND active"
        )
        # Right after the load every insert is still its own part (a user's rows not yet
        # combined); the background merges get there in time. Measured merged as well.
        client.command("OPTIMIZE TABLE funnel_steps FINAL")
        merged, merged_reference = timed(lambda: funnel(client, STEPS, 86_400, span), count)
        if funnel(client, STEPS, 86_400, span) != example:
            raise AssertionError("merging funnel_steps changed the answer")
        client.close()
    result = {
        "funnel_p50_ms": round(statistics.median(plain), 1),
        "funnel_p95_ms": round(_percentile(plain, 0.95), 1),
        "funnel_breakdown_p50_ms": round(statistics.median(by_device), 1),
        "funnel_breakdown_p95_ms": round(_percentile(by_device, 0.95), 1),
        "funnel_reference_ms": round(statistics.median(reference), 1),
        "funnel_merged_p50_ms": round(statistics.median(merged), 1),
        "funnel_merged_p95_ms": round(_percentile(merged, 0.95), 1),
        "funnel_merged_reference_ms": round(statistics.median(merged_reference), 1),
        "funnel_raw_p50_ms": round(statistics.median(raw), 1),
        "funnel_raw_p95_ms": round(_percentile(raw, 0.95), 1),
    }
    print(
        f"events: {stored:,} generated in {load_s:.1f}s (funnel_steps filled by its view, "
        f"{parts} active parts); {repeat} runs each"
    )
    print(
        f"  funnel ({len(STEPS)} steps, 1 d window): p50 {result['funnel_p50_ms']} ms, "
        f"p95 {result['funnel_p95_ms']} ms"
    )
    print(
        f"  same by device:                p50 {result['funnel_breakdown_p50_ms']} ms, "
        f"p95 {result['funnel_breakdown_p95_ms']} ms"
    )
    print(
        f"  same, funnel_steps merged:     p50 {result['funnel_merged_p50_ms']} ms, "
        f"p95 {result['funnel_merged_p95_ms']} ms "
        f"(count() beside it: {result['funnel_merged_reference_ms']} ms)"
    )
    print(
        f"  raw windowFunnel over events:  p50 {result['funnel_raw_p50_ms']} ms, "
        f"p95 {result['funnel_raw_p95_ms']} ms (reference)"
    )
    print(f"  reference SELECT count():      {result['funnel_reference_ms']} ms (median)")
    for figure in ("funnel_p50_ms", "funnel_p95_ms", "funnel_merged_p95_ms"):
        ratio = result[figure] / result["funnel_reference_ms"]
        print(f"  {figure} / count():{' ' * (22 - len(figure))}{ratio:.1f}x")
    print("  users per step: " + ", ".join(f"{r.name} {r.users:,}" for r in example))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    run(args.rows, args.repeat)


if __name__ == "__main__":
    main()
