"""``make bench``: every benchmark, each figure beside its reference from the same run.

    python -m benchmarks [--quick] [--only NAME ...]

Writes ``benchmarks/results.json`` — one object whose keys are the figures, each
with its value, the reference measured in the same run, their ratio, the target
and whether it was met — and prints the same as a table. ``--quick`` runs
smaller sizes (a smoke run, not figures to report).
"""

import argparse
import importlib
import json
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("results.json")

# module, run() keyword arguments for a full run and for --quick
SUITES: dict[str, tuple[dict, dict]] = {
    "fold": ({}, {"events": 50_000}),
    "state": ({}, {"user_counts": (100_000,), "distinct": 20_000}),
    "collector": ({}, {"seconds": 2.0, "runs": 1}),
    "worker": ({}, {"events": 30_000, "users": 5_000}),
    "replay": ({}, {"events": 10_000, "users": 500}),
    "sink": ({}, {"events": 20_000}),
    "funnel": ({}, {"rows": 1_000_000, "repeat": 5}),
    "consent_lookup": ({}, {"rows": 200_000, "repeat": 3}),
}

# figure: (value key, reference key or None, what the reference is, target, higher is better)
# Targets are issue #19's: a target under 10 is a ratio to the same-run reference.
FIGURES = {
    "worker_events_per_s": (
        "worker_events_per_s",
        "bare_faust_events_per_s",
        "bare batched Faust agent, same topic",
        2.0,
        True,
    ),
    "worker2_events_per_s": (
        "worker2_events_per_s",
        "worker_events_per_s",
        "one worker process",
        1.7,
        True,
    ),
    # Issue #19: the worker (engine and sink) at least as fast as Quix Streams doing the
    # per-user work with RocksDB state and changelog (benchmarks/quix_reference.py).
    "worker_vs_quix_events_per_s": (
        "worker_events_per_s",
        "quix_stateful_events_per_s",
        "Quix Streams, RocksDB state + changelog, same events",
        1.0,
        True,
    ),
    "quix_stateful_events_per_s": (
        "quix_stateful_events_per_s",
        "bare_faust_events_per_s",
        "bare batched Faust agent, same topic",
        None,
        True,
    ),
    "bare_faust_events_per_s": (
        "bare_faust_events_per_s",
        "raw_consume_events_per_s",
        "raw aiokafka getmany + orjson.loads",
        None,
        True,
    ),
    "raw_consume_events_per_s": ("raw_consume_events_per_s", None, "", None, True),
    "fold_events_per_s": (
        "fold_events_per_s",
        "fold_reference_events_per_s",
        "orjson.loads + a dict update per event",
        250_000,
        True,
    ),
    "latency_p50_ms": (
        "latency_p50_ms",
        "round_trip_p50_ms",
        "bare produce → consume round trip",
        15,
        False,
    ),
    "latency_p99_ms": (
        "latency_p99_ms",
        "round_trip_p99_ms",
        "bare produce → consume round trip",
        50,
        False,
    ),
    # The nudge's record timestamp (the worker's send) splits the produce → nudge p50.
    "latency_to_worker_send_p50_ms": (
        "latency_to_worker_send_p50_ms",
        "latency_p50_ms",
        "produce → nudge p50 (the share before the worker's send)",
        None,
        False,
    ),
    "collector_events_per_s": (
        "collector_events_per_s",
        "collector_reference_events_per_s",
        "bare FastAPI endpoint: parse + produce",
        0.8,
        True,
    ),
    "segment_events_per_s": (
        "segment_events_per_s",
        "collector_events_per_s",
        "/v1/track with the same events, same run",
        None,
        True,
    ),
    "replay_file_events_per_s": (
        "replay_file_events_per_s",
        "fold_events_per_s_reference",
        "the fold alone on the same events",
        150_000,
        True,
    ),
    "replay_topic_events_per_s": (
        "replay_topic_events_per_s",
        "fold_events_per_s_reference",
        "the fold alone on the same events",
        100_000,
        True,
    ),
    "sink_rows_per_s": (
        "sink_rows_per_s",
        "sink_reference_rows_per_s",
        "one clickhouse-connect insert of the same rows",
        0.75,
        True,
    ),
    "sink_insert_rows_per_s": (
        "sink_insert_rows_per_s",
        "sink_reference_rows_per_s",
        "one clickhouse-connect insert of the same rows",
        100_000,
        True,
    ),
    "funnel_p95_ms": (
        "funnel_p95_ms",
        "funnel_reference_ms",
        "SELECT count() over the same table",
        250,
        False,
    ),
    # The collector's consent read over a 5 M-event history: from identity_links, against
    # the same read taking the links from events (the statement before migration 0300).
    "consent_lookup_ms": (
        "consent_lookup_ms",
        "consent_lookup_over_events_ms",
        "the same read with the links taken from events",
        None,
        False,
    ),
    "state_bytes_per_user": ("state_bytes_per_user", None, "", 1024, False),
    "rocksdb_bytes_per_user_1000000": ("rocksdb_bytes_per_user_1000000", None, "", 1024, False),
    "state_memory_bytes_per_cached_user": (
        "state_memory_bytes_per_cached_user",
        "state_memory_bytes_per_decoded_user",
        "the same states held decoded",
        1_500,
        False,
    ),
    "state_decode_us": (
        "state_decode_us",
        "state_encode_us",
        "encoding it, which every flush pays",
        None,
        False,
    ),
    "engine_store_us_per_event": (
        "engine_store_us_per_event",
        "engine_store_kept_decoded_us_per_event",
        "the same with every state kept decoded",
        None,
        False,
    ),
}


def _met(value: float, reference: float | None, target: float | None, higher: bool) -> bool | None:
    if target is None:
        return None
    # Targets below 10 are ratios to the reference; others are absolute.
    measured = value / reference if target < 10 and reference else value
    return measured >= target if higher else measured <= target


def figures(raw: dict) -> dict:
    out = {}
    for name, (key, reference_key, reference_is, target, higher) in FIGURES.items():
        if key not in raw:
            continue
        value = raw[key]
        reference = raw.get(reference_key) if reference_key else None
        out[name] = {
            "value": value,
            "reference": reference,
            "reference_is": reference_is or None,
            "ratio": value / reference if reference else None,
            "target": target,
            "target_is": None if target is None else ("ratio" if target < 10 else "absolute"),
            "met": _met(value, reference, target, higher),
        }
    return out


def machine() -> dict:
    def version(package: str) -> str:
        from importlib.metadata import version as v

        return v(package)

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cores": len(__import__("os").sched_getaffinity(0)),
        "memory_gb": round(int(open("/proc/meminfo").read().split()[1]) / 1024 / 1024, 1),
        "faust-streaming": version("faust-streaming"),
        "aiokafka": version("aiokafka"),
        "chdb": version("chdb"),
        "clickhouse-connect": version("clickhouse-connect"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
    }


def print_table(table: dict) -> None:
    print(f"\n{'figure':36} {'value':>12} {'reference':>12} {'ratio':>7} {'target':>9}  met")
    for name, f in table.items():
        ref = f"{f['reference']:,.1f}" if f["reference"] is not None else "—"
        ratio = f"{f['ratio']:.2f}" if f["ratio"] is not None else "—"
        target = "—" if f["target"] is None else f"{f['target']:,}"
        met = {True: "yes", False: "NO", None: ""}[f["met"]]
        print(f"{name:36} {f['value']:>12,.1f} {ref:>12} {ratio:>7} {target:>9}  {met}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", nargs="+", choices=sorted(SUITES), help="run only these")
    args = parser.parse_args()
    raw: dict = {}
    timings = {}
    for name, (full, quick) in SUITES.items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        started = time.monotonic()
        module = importlib.import_module(f"benchmarks.{name}")
        raw.update(module.run(**(quick if args.quick else full)))
        timings[name] = round(time.monotonic() - started, 1)
    table = figures(raw)
    print_table(table)
    document = {
        "command": " ".join(["python -m benchmarks", *sys.argv[1:]]),
        "quick": args.quick,
        "machine": machine(),
        "seconds": timings,
        **table,
        "raw": raw,
    }
    RESULTS.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\nwritten: {RESULTS}")


if __name__ == "__main__":
    main()
