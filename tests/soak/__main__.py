"""``make soak``: the whole local stack under steady simulated traffic for a long while,
then one line per process and a verdict (docs/reliability.md, "Soak").

    python -m tests.soak [--minutes 30] [--rate EVENTS_PER_S] [--workers 1]

``intentflow local up`` runs as a subprocess on ``make demo``'s rules (a cart idle 60 s
is rescued, so decisions, sends and webhooks flow within minutes). This process sends
the simulator's shoppers (``pipeline.local.simulate``) to the collector at half of
what one worker sustains: a fixed population that comes back round after round, each
round's events with fresh ids and stamped with the time they are sent. Every
``--sample-s`` it reads each process's ``/metrics`` (resident memory, consumer lag,
dead letters, decisions, records produced) and, for the parts that serve none (the
broker, the warehouse, the provider simulator), their resident memory from /proc;
error lines are counted in every part's log. The verdict is ``tests.soak.verdict``.
Exit status 1 unless it passes.
"""

import argparse
import asyncio
import os
import re
import sys
import tempfile
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import httpx

from pipeline.local.simulate import generate_events, post_events
from schemas.topics import TELEMETRY_RAW
from tests import support
from tests.soak.verdict import MB, Allowance, Sample, judge, table

# One worker process (engine and sink) sustained this in the latest full `make bench` run
# on this kind of machine, quiet (benchmarks/RESULTS.md, the run at 5c1e6be; issue 19's
# own run gave 6,266).
WORKER_MAX_EVENTS_S = 4_852
DEMO_RULES = support.PROJECT_ROOT / "pipeline" / "local" / "demo_rules.yaml"
# Tansu's memory storage keeps every record it is given (no retention, no compaction:
# docs/local-stack.md); measured ~480 B per changelog record, a raw event ~1 KB.
BROKER_BYTES_PER_RECORD = 2048
_ERROR_LINE = re.compile(r"\bERROR\b|\bCRITICAL\b|Traceback \(most recent call last\)")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Parts that serve no /metrics: their memory is read from /proc, found by command line.
_BY_COMMAND = {"broker": "tansu", "warehouse": "pipeline.local.warehouse"}
_BY_COMMAND["provider-sim"] = "provider-sim"


@dataclass
class Traffic:
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    failed_requests: int = 0
    rounds: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def retimed(event: dict[str, Any], round_no: int, at: datetime) -> dict[str, Any]:
    """The template's event as a returning shopper's: a fresh id, sent now."""
    fresh = {
        **event,
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{event['event_id']}/{round_no}")),
    }
    fresh["timestamp"] = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if event["name"] == "order_placed":
        props = dict(event["properties"])
        props["order_id"] = f"{props['order_id']}-r{round_no}"
        fresh["properties"] = props
    return fresh


def send_traffic(
    api: str,
    keys: dict[str, str],
    template: list[dict[str, Any]],
    rate: float,
    stop: threading.Event,
    out: Traffic,
) -> None:
    """Post ``template`` round after round at ``rate`` events/s until ``stop``."""
    chunk = max(100, int(rate))  # about a second of traffic per call
    rounds = 0
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            for offset in range(0, len(template), chunk):
                if stop.is_set():
                    return
                now = datetime.now(UTC)
                events = [
                    retimed(e, rounds, now + timedelta(seconds=i / rate))
                    for i, e in enumerate(template[offset : offset + chunk])
                ]
                summary = post_events(
                    events,
                    api,
                    keys["INTENTFLOW_WRITE_KEY"],
                    keys["INTENTFLOW_SERVER_KEY"],
                    rate=rate,
                    client=client,
                )
                with out.lock:
                    out.sent += summary.sent
                    out.accepted += summary.accepted
                    out.rejected += summary.rejected
                    out.failed_requests += summary.failed_requests
                    for reason, n in summary.rejection_reasons.items():
                        out.reasons[reason] = out.reasons.get(reason, 0) + n
            rounds += 1
            with out.lock:
                out.rounds = max(out.rounds, rounds)


def senders(
    api: str, keys: dict[str, str], args: argparse.Namespace, stop: threading.Event, out: Traffic
) -> list[threading.Thread]:
    """``args.senders`` threads, each posting its own shoppers (a shopper's events stay in
    order on one thread) at its share of the rate: one collector request at a time is
    bound by the request's latency, not by the collector's CPU."""
    template = generate_events(20_261_205, args.shoppers, args.shoppers * 10, datetime.now(UTC))
    shares: list[list[dict[str, Any]]] = [[] for _ in range(args.senders)]
    for event in template:
        shares[zlib.crc32(event["anonymous_id"].encode()) % args.senders].append(event)
    return [
        threading.Thread(
            target=send_traffic,
            args=(api, keys, share, args.rate / args.senders, stop, out),
            daemon=True,
        )
        for share in shares
    ]


def proc_rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1]) * 1024
    return 0.0


def proc_cpu_s(pid: int) -> float:
    # /proc/PID/stat: utime and stime (fields 14 and 15) in clock ticks.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_percent(samples: list[Sample], window_s: float = 60.0) -> list[tuple[float, str]]:
    """Each sample's CPU use over the window before it, in % of one core."""
    points = []
    for sample in samples[1:]:
        earlier = next(s for s in samples if s.t_s >= sample.t_s - window_s)
        spent, span = sample.cpu_s - earlier.cpu_s, sample.t_s - earlier.t_s
        points.append((sample.t_s, f"{100 * spent / span:.0f}" if span else "—"))
    return points


def pid_running(root_pid: int, fragment: str) -> int:
    for pid in support.descendants(root_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if fragment in cmdline:
            return pid
    raise RuntimeError(f"no process running {fragment!r} under {root_pid}")


class ErrorLines:
    """Error lines a log has gained, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.count = path, 0, 0

    def skip_existing(self) -> None:
        try:
            self.offset = self.path.stat().st_size
        except FileNotFoundError:
            self.offset = 0

    def read(self) -> int:
        try:
            with self.path.open("rb") as log:
                log.seek(self.offset)
                data = log.read()
        except FileNotFoundError:
            return self.count
        complete = data.rfind(b"\n") + 1
        self.offset += complete
        text = _ANSI.sub("", data[:complete].decode("utf-8", "replace"))
        self.count += sum(1 for line in text.splitlines() if _ERROR_LINE.search(line))
        return self.count


# chDB's own accounting of its memory: what it tracks (allocations), its mark and
# primary-index caches, and mmapped files; printed to tell caches from a leak.
CHDB_MEMORY = ("MemoryTracking", "MarkCacheBytes", "PrimaryIndexCacheBytes", "MMappedFileBytes")


def chdb_memory(client: Any) -> dict[str, float]:
    try:
        rows = client.query(
            "SELECT metric, value FROM system.metrics WHERE metric IN %(names)s",
            parameters={"names": CHDB_MEMORY},
        ).result_rows
    except Exception as exc:  # a figure for the printout, never the soak's failure
        return {"unreadable": 0.0, type(exc).__name__: 0.0}
    return {metric: float(value) for metric, value in rows}


def summed(samples: support.MetricSamples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def worst(samples: support.MetricSamples, name: str) -> float | None:
    values = [v for (n, _), v in samples.items() if n == name]
    return max(values) if values else None


def each_minute(points: list[tuple[float, str]]) -> str:
    """The first of ``(t_s, text)`` points in each minute, then the last."""
    marks, minute = [], 0.0
    for t_s, text in points:
        if t_s >= minute:
            marks.append(text)
            minute += 60
    return " ".join(marks) + f" → {points[-1][1]}"


def tail_fetch_ms(brokers: str) -> float | None:
    # Tansu 0.6's memory storage lists every batch a partition holds on each fetch
    # (docs/reliability.md, "The 30-minute run"): this shows that cost as it grows.
    try:
        return asyncio.run(support.tail_fetch_ms(brokers, TELEMETRY_RAW.name))
    except Exception:  # a figure for the printout, never the soak's failure
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup-minutes", type=float, help="default: a third of --minutes")
    parser.add_argument("--rate", type=float, default=WORKER_MAX_EVENTS_S / 2, help="events/s")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--shoppers", type=int, default=5_000, help="the returning population")
    parser.add_argument("--senders", type=int, default=4, help="concurrent collector clients")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--lag-bound-s", type=float, default=10.0, help="in seconds of traffic")
    args = parser.parse_args(argv)
    warmup_s = 60 * (args.warmup_minutes if args.warmup_minutes is not None else args.minutes / 3)
    lag_bound = args.rate * args.lag_bound_s

    root = Path(tempfile.mkdtemp(prefix="intentflow-soak-"))
    env = support.child_env(RULES=str(DEMO_RULES))
    print(f"soak: starting the local stack ({args.workers} worker(s)); logs in {root}", flush=True)
    # The stack stops when the block ends: after the finally below has stopped the senders.
    with support.local_stack(root, "--workers", str(args.workers), env=env) as stack:
        data_dir, log_path, api = stack.data_dir, stack.log_path, stack.api
        stop = threading.Event()
        traffic = Traffic()
        threads: list[threading.Thread] = []
        series: dict[str, list[Sample]] = {}
        produced: list[tuple[float, float]] = []
        chdb_figures: list[tuple[float, dict[str, float]]] = []
        # The broker's cost of a fetch at the raw topic's tail (see tail_fetch_ms).
        tail_fetches: list[tuple[float, float | None]] = []
        try:
            metrics = stack.metrics
            pids = {
                name: pid_running(stack.process.pid, fragment)
                for name, fragment in _BY_COMMAND.items()
            }
            logs = {
                name: ErrorLines(data_dir / "logs" / f"{name}.log") for name in [*metrics, *pids]
            }
            keys = stack.env
            warehouse = clickhouse_connect.get_client(
                dsn=keys["INTENTFLOW_CLICKHOUSE_URL"], connect_timeout=10, send_receive_timeout=30
            )

            threads = senders(api, keys, args, stop, traffic)
            # Errors are counted from here: Tansu logs an ERROR for a consumer group it has
            # not stored yet while the workers first join (start-up, not the soak's).
            for lines in logs.values():
                lines.skip_existing()
            started = time.monotonic()
            for thread in threads:
                thread.start()
            print(
                f"soak: {args.minutes:g} min at {args.rate:.0f} events/s (half of one worker's "
                f"{WORKER_MAX_EVENTS_S}), warm-up {warmup_s / 60:g} min, a sample every "
                f"{args.sample_s:g} s",
                flush=True,
            )
            next_sample = started
            while True:
                now = time.monotonic() - started
                records_out = 0.0
                for name, url in metrics.items():
                    scraped = support.scrape_metrics(url)
                    records_out += summed(scraped, "intentflow_records_out_total")
                    series.setdefault(name, []).append(
                        Sample(
                            now,
                            summed(scraped, "process_resident_memory_bytes"),
                            worst(scraped, "intentflow_consumer_lag"),
                            logs[name].read() + summed(scraped, "intentflow_dead_letters_total"),
                            summed(scraped, "intentflow_decisions_total"),
                            summed(scraped, "process_cpu_seconds_total"),
                        )
                    )
                for name, pid in pids.items():
                    series.setdefault(name, []).append(
                        Sample(now, proc_rss(pid), None, logs[name].read(), 0.0, proc_cpu_s(pid))
                    )
                produced.append((now, records_out))
                chdb_figures.append((now, chdb_memory(warehouse)))
                tail_fetches.append((now, tail_fetch_ms(keys["INTENTFLOW_KAFKA_BROKERS"])))
                if stack.process.poll() is not None:
                    raise RuntimeError(f"the stack exited:\n{log_path.read_text()[-3000:]}")
                if now >= args.minutes * 60:
                    break
                if len(series["worker-0"]) % 6 == 0:
                    print(
                        f"  {now / 60:5.1f} min: sent {traffic.sent}, accepted {traffic.accepted}",
                        flush=True,
                    )
                next_sample += args.sample_s
                time.sleep(max(0.0, next_sample - time.monotonic()))
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)

    elapsed = produced[-1][0]
    after_warmup = [records for t, records in produced if t >= warmup_s]
    records_after = after_warmup[-1] - after_warmup[0] if after_warmup else 0.0
    allowances = {
        "broker": Allowance(
            f"Tansu's memory storage keeps all {records_after:.0f} records produced after "
            f"warm-up, changelogs included: ≤ {BROKER_BYTES_PER_RECORD} B each",
            records_after * BROKER_BYTES_PER_RECORD,
        )
    }
    judgement = judge(series, warmup_s, lag_bound, allowances)
    if traffic.rejected or traffic.failed_requests:
        judgement.failures.append(
            f"collector: {traffic.rejected} events rejected, "
            f"{traffic.failed_requests} requests failed {dict(traffic.reasons)}"
        )
    print(
        f"\nsoak: {elapsed / 60:.1f} min, warm-up {warmup_s / 60:g} min; sent {traffic.sent} "
        f"events ({traffic.sent / elapsed:.0f}/s of {args.rate:.0f} asked), accepted "
        f"{traffic.accepted}, {traffic.rounds} full rounds of {args.shoppers} shoppers; "
        f"lag bound {lag_bound:.0f} records ({args.lag_bound_s:g} s of traffic); "
        f"{records_after:.0f} records produced after warm-up; errors: lines at ERROR or "
        "tracebacks logged once the stack was up, and records dead-lettered"
    )
    print(table(judgement))
    print("by minute (from the start, then the last sample): resident memory MB | lag")
    for name, samples in series.items():
        marks = [each_minute([(s.t_s, f"{s.rss_bytes / MB:.0f}") for s in samples])]
        if any(s.lag is not None for s in samples):
            marks.append(
                each_minute([(s.t_s, "—" if s.lag is None else f"{s.lag:.0f}") for s in samples])
            )
        print(f"  {name:<13} " + "  |  ".join(marks))
    print("CPU, % of one core over the minute before, by minute:")
    for name, samples in series.items():
        print(f"  {name:<13} " + each_minute(cpu_percent(samples)))
    warm_chdb = next((f for t, f in chdb_figures if t >= warmup_s), chdb_figures[-1][1])
    end_chdb = chdb_figures[-1][1]
    changes = [
        f"{name} {warm_chdb.get(name, 0) / MB:.0f} → {end_chdb.get(name, 0) / MB:.0f}"
        for name in CHDB_MEMORY
    ]
    print("warehouse, chDB's own accounting at warm-up → end (MB): " + ", ".join(changes))
    print(
        f"broker, ms to fetch the last batch of each {TELEMETRY_RAW.name} partition, by minute: "
        + each_minute([(t, "—" if ms is None else f"{ms:.0f}") for t, ms in tail_fetches])
    )
    print(judgement.verdict())
    print(f"logs: {root}")
    return 0 if judgement.ok else 1


if __name__ == "__main__":
    sys.exit(main())
