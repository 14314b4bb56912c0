"""The worker's latency levers: throughput and produce → nudge latency per setting, one run.

    python -m benchmarks.latency_levers [--events 60000] [--users 20000] [--rounds 2]
        [--only defaults within_5ms ...] [--latency-rate EVENTS_PER_S]

On one Tansu broker and one warehouse, each setting below is run ``rounds`` times,
interleaved (A, B, C, A, B, C, ...): the live worker's throughput over its own copy
of the worker benchmark's events (``benchmarks.worker.worker_rate``), then its
produce → nudge latency (``benchmarks.worker.measure_latency``) at one rate for
every setting: half the first setting's throughput in the first round, or
``--latency-rate`` (to compare code measured at different throughputs at one rate).
Prints every measurement and the median per setting.
"""

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from benchmarks.fold import make_events
from benchmarks.warehouse_process import migrated_warehouse
from benchmarks.worker import WAREHOUSE_DATABASE, measure_latency, worker_rate
from pipeline.local.broker import Broker, ensure_topics
from schemas.topics import SOURCE_TOPICS

# name: extra INTENTFLOW_* settings; "defaults" is pipeline/settings.py's (batch_within_s
# 0.02, batch_idle_s 0.001, consumer_fetch_max_wait_ms 10).
SETTINGS: dict[str, dict[str, str]] = {
    "defaults": {},
    "within_5ms": {"batch_within_s": "0.005"},
    "within_10ms": {"batch_within_s": "0.01"},
    "fetch_wait_5ms": {"consumer_fetch_max_wait_ms": "5"},
    "idle_0_5ms": {"batch_idle_s": "0.0005"},
    # A batch handed over only when full or at the end of its window, never when caught up.
    "no_idle_cut": {"batch_idle_s": "1"},
    # RocksDB's memtables as large as Faust's own (3 × 64 MB per partition) would hold
    # them: the budget's price in throughput (pipeline/engine/rocksdb_memory.py).
    "state_memory_1024": {"state_memory_mb": "1024"},
    "within_and_fetch_5ms": {
        "batch_within_s": "0.005",
        "consumer_fetch_max_wait_ms": "5",
    },
}
FIGURES = (
    "worker_events_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_to_worker_send_p50_ms",
    "round_trip_p50_ms",
)


def run(
    events: int = 60_000,
    users: int = 20_000,
    rounds: int = 2,
    latency_events: int = 6_000,
    settings: dict[str, dict[str, str]] = SETTINGS,
    latency_rate: float | None = None,
) -> dict[str, list[dict]]:
    parsed, _ = make_events(events, users)
    records = [(event.key.encode(), event.to_json()) for event in parsed]
    measured: dict[str, list[dict]] = {name: [] for name in settings}
    rate = latency_rate
    with (
        tempfile.TemporaryDirectory(prefix="bench-levers-") as tmp,
        Broker() as broker,
        migrated_warehouse(WAREHOUSE_DATABASE) as warehouse,
    ):
        brokers = broker.bootstrap_servers
        work = Path(tmp)
        asyncio.run(ensure_topics(brokers, SOURCE_TOPICS))
        for round_ in range(rounds):
            for index, (name, extra) in enumerate(settings.items()):
                namespace = f"lever{index}r{round_}"
                throughput = worker_rate(brokers, warehouse, work, records, namespace, **extra)
                if rate is None:
                    rate = throughput / 2
                result = measure_latency(
                    brokers, work, rate, latency_events, f"latency{index}r{round_}", **extra
                )
                result.update(worker_events_per_s=throughput, latency_rate=rate)
                measured[name].append(result)
                print(f"round {round_ + 1} {name}: " + _line(result), flush=True)
    return measured


def _line(result: dict) -> str:
    return ", ".join(f"{figure} {result[figure]:,.1f}" for figure in FIGURES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=list(SETTINGS), help="these, in this order")
    parser.add_argument(
        "--latency-rate", type=float, help="events/s (default: half the first throughput)"
    )
    args = parser.parse_args()
    chosen = {name: SETTINGS[name] for name in args.only} if args.only else SETTINGS
    measured = run(
        args.events, args.users, args.rounds, settings=chosen, latency_rate=args.latency_rate
    )
    rate = next(iter(measured.values()))[0]["latency_rate"]
    print(f"\nmedians of {args.rounds} rounds; latency at {rate:,.0f} events/s:")
    print(f"| setting | {' | '.join(FIGURES)} |")
    print(f"|---|{'---:|' * len(FIGURES)}")
    for name, results in measured.items():
        medians = [statistics.median(r[f] for r in results) for f in FIGURES]
        print(f"| {name} | " + " | ".join(f"{m:,.1f}" for m in medians) + " |")


if __name__ == "__main__":
    main()
