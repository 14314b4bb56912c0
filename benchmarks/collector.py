"""Collector throughput: accepted events/s for batches of 100, against one API process.

    python -m benchmarks.collector [--seconds 4] [--runs 3] [--concurrency 8] [--history N]

The same events are also sent as Segment batches to ``/segment/v1/batch`` (the
write key as the basic-auth user, as Segment's SDKs send it), beside ``/v1/track``
in the same run: the cost of the Segment mapping is their ratio.

Starts a Tansu broker and, one after the other, two single-worker uvicorn
processes on it: the collector (``api.main:create_app``) and a reference, a bare
FastAPI endpoint that parses the same body and produces every event to Kafka
with the same producer settings, no validation or auth. Each is loaded for a
few seconds per run by an HTTP client in this process; the median of the runs
is reported, with the collector/reference ratio. Reported, not asserted: the
machine is shared. ``--history N`` first stores N generated events in the warehouse
(``benchmarks.consent_lookup``'s), as a store with a past has them: what the consent
write reads must not grow with them.
"""

import argparse
import asyncio
import base64
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import clickhouse_connect
import httpx
import orjson
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request, Response

from benchmarks.consent_lookup import load_history
from benchmarks.warehouse_process import migrated_warehouse
from pipeline.local.broker import Broker, ensure_topics
from pipeline.local.ports import free_port
from pipeline.local.simulate import generate_events, is_server_event
from schemas.keys import hash_api_key, new_api_key
from schemas.topics import SOURCE_TOPICS, TELEMETRY_RAW

ROOT = Path(__file__).resolve().parent.parent
BATCH = 100


def reference_app() -> FastAPI:
    """The floor: parse the body, produce each event keyed by user, await the acks."""
    producer: AIOKafkaProducer | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal producer
        producer = AIOKafkaProducer(
            bootstrap_servers=os.environ["INTENTFLOW_KAFKA_BROKERS"],
            acks="all",
            linger_ms=5,
            max_batch_size=256 * 1024,
        )
        await producer.start()
        yield
        await producer.stop()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/track", status_code=202)
    async def track(request: Request) -> Response:
        assert producer is not None
        events = orjson.loads(await request.body())["batch"]
        futures = [
            await producer.send(
                TELEMETRY_RAW.name,
                orjson.dumps(event),
                key=(event.get("user_id") or event["anonymous_id"]).encode(),
            )
            for event in events
        ]
        await asyncio.gather(*futures)
        return Response(orjson.dumps({"accepted": len(events)}), 202)

    return app


def bodies(count: int, consents: bool = True) -> list[bytes]:
    """Realistic browser events (the simulator's), with timestamps near now."""
    events = generate_events(
        1, users=count * BATCH // 20, events=count * BATCH * 2, end=datetime.now(UTC), days=1
    )
    browser = [
        event
        for event in events
        if not is_server_event(event) and (consents or event["name"] != "consent")
    ][: count * BATCH]
    return [orjson.dumps({"batch": browser[i : i + BATCH]}) for i in range(0, len(browser), BATCH)]


# Our standard events as a Segment SDK's calls name them (schemas/segment.py, reversed).
SEGMENT_NAMES = {
    "product_view": "Product Viewed",
    "add_to_cart": "Product Added",
    "remove_from_cart": "Product Removed",
    "checkout_started": "Checkout Started",
    "search": "Products Searched",
}


def segment_message(event: dict) -> dict:
    """One of our client events as the Segment message an SDK would send for it."""
    message = {
        "messageId": event["event_id"],
        "anonymousId": event["anonymous_id"],
        "timestamp": event["timestamp"],
        "properties": event.get("properties", {}),
        "context": {"page": {"url": "https://shop.example/"}, "userAgent": "Mozilla/5.0"},
    }
    if event.get("user_id"):
        message["userId"] = event["user_id"]
    if event["name"] == "page_view":
        message["type"] = "page"
    elif event["name"] == "identify":
        message.update(type="identify", traits=event["properties"].get("traits", {}))
    else:
        message.update(type="track", event=SEGMENT_NAMES.get(event["name"], event["name"]))
    return message


def segment_bodies(payloads: list[bytes]) -> list[bytes]:
    """The same batches as Segment batches, as analytics-python sends them."""
    sent_at = datetime.now(UTC).isoformat()
    return [
        orjson.dumps(
            {
                "batch": [segment_message(e) for e in orjson.loads(body)["batch"]],
                "sentAt": sent_at,
            }
        )
        for body in payloads
    ]


def auth_headers(key: str, path: str) -> dict[str, str]:
    if path.startswith("/segment/"):
        basic = base64.b64encode(f"{key}:".encode()).decode()
        return {"Authorization": f"Basic {basic}", "Content-Type": "application/json"}
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


async def load(
    url: str,
    key: str,
    payloads: list[bytes],
    seconds: float,
    concurrency: int,
    path: str = "/v1/track",
) -> float:
    """Accepted events/s while ``concurrency`` clients post batches for ``seconds``."""
    accepted = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency)
    headers = auth_headers(key, path)
    expected = 200 if path.startswith("/segment/") else 202
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker(offset: int) -> None:
            nonlocal accepted
            n = offset
            while time.monotonic() < deadline:
                response = await client.post(
                    path, content=payloads[n % len(payloads)], headers=headers
                )
                if response.status_code != expected:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
                answer = response.json()
                if answer.get("rejected"):
                    raise RuntimeError(f"rejected: {str(answer['rejected'])[:300]}")
                accepted += answer["accepted"]
                n += concurrency

        started = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        return accepted / (time.monotonic() - started)


def start_api(factory: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            factory,
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
            return process
        except httpx.TransportError:
            if process.poll() is not None:
                raise RuntimeError(f"{factory} exited with {process.returncode}") from None
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError(f"{factory} did not start")


async def measure(
    factory: str,
    env: dict[str, str],
    key: str,
    payloads: list[bytes],
    args: argparse.Namespace,
    path: str = "/v1/track",
) -> list[float]:
    port = free_port()
    process = start_api(factory, port, env)
    try:
        url = f"http://127.0.0.1:{port}"
        # Warm-up: connections, metadata.
        await load(url, key, payloads, 1.0, args.concurrency, path)
        return [
            await load(url, key, payloads, args.seconds, args.concurrency, path)
            for _ in range(args.runs)
        ]
    finally:
        process.terminate()
        process.wait(10)


async def measure_alternating(
    factory: str,
    env: dict[str, str],
    key: str,
    cases: list[tuple[list[bytes], str]],
    args: argparse.Namespace,
) -> list[list[float]]:
    """Per case (payloads, path), its runs; the cases take turns within each run."""
    port = free_port()
    process = start_api(factory, port, env)
    try:
        url = f"http://127.0.0.1:{port}"
        for payloads, path in cases:  # warm-up: connections, metadata
            await load(url, key, payloads, 1.0, args.concurrency, path)
        figures: list[list[float]] = [[] for _ in cases]
        for _ in range(args.runs):
            for runs, (payloads, path) in zip(figures, cases, strict=True):
                runs.append(await load(url, key, payloads, args.seconds, args.concurrency, path))
        return figures
    finally:
        process.terminate()
        process.wait(10)


def _runs(figures: list[float]) -> str:
    return ", ".join(f"{x:,.0f}" for x in figures)


async def measure_both(seconds: float, runs: int, concurrency: int, history: int = 0) -> dict:
    args = argparse.Namespace(seconds=seconds, runs=runs, concurrency=concurrency)
    key = new_api_key("write")
    payloads = bodies(200)
    # Consents are recorded in the warehouse before their events are produced.
    with Broker() as broker, migrated_warehouse("bench") as warehouse:
        if history:
            with clickhouse_connect.get_client(
                dsn=warehouse, database="bench", send_receive_timeout=600
            ) as client:
                load_history(client, history)
        await ensure_topics(broker.bootstrap_servers, SOURCE_TOPICS)
        env = {
            "INTENTFLOW_KAFKA_BROKERS": broker.bootstrap_servers,
            "INTENTFLOW_CLICKHOUSE_URL": warehouse,
            "INTENTFLOW_CLICKHOUSE_DATABASE": "bench",
            "INTENTFLOW_WRITE_KEY_HASHES": hash_api_key(key),
            "INTENTFLOW_RATE_LIMIT_EVENTS_PER_S": "10000000",
            "INTENTFLOW_RATE_LIMIT_BURST": "10000000",
        }
        # /v1/track and /segment/v1/batch on one API process, runs alternating, so
        # both see the same machine (it is shared, and its load moves).
        collector, segment = await measure_alternating(
            "api.main:create_app",
            env,
            key,
            [(payloads, "/v1/track"), (segment_bodies(payloads), "/segment/v1/batch")],
            args,
        )
        # Consents are written to the consent store before producing (a warehouse
        # round trip per group of requests): the same traffic without them, for the bound.
        without = await measure("api.main:create_app", env, key, bodies(200, False), args)
        reference = await measure("benchmarks.collector:reference_app", env, key, payloads, args)
    return {
        "collector_events_per_s": statistics.median(collector),
        "collector_reference_events_per_s": statistics.median(reference),
        "collector_runs": collector,
        "segment_events_per_s": statistics.median(segment),
        "segment_runs": segment,
        "collector_without_consents_events_per_s": statistics.median(without),
        "bytes_per_event": len(payloads[0]) // BATCH,
    }


def run(seconds: float = 4.0, runs: int = 3, concurrency: int = 8, history: int = 0) -> dict:
    return asyncio.run(measure_both(seconds, runs, concurrency, history))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--history", type=int, default=0, help="events stored beforehand")
    args = parser.parse_args()
    result = run(args.seconds, args.runs, args.concurrency, args.history)
    c, r = result["collector_events_per_s"], result["collector_reference_events_per_s"]
    print(
        f"batches of {BATCH} events, {result['bytes_per_event']} bytes/event, "
        f"{args.concurrency} concurrent clients, {args.runs} runs of {args.seconds:g} s, "
        f"{args.history:,} events stored beforehand"
    )
    print(f"collector: {c:,.0f} events/s accepted (median; runs {_runs(result['collector_runs'])})")
    print(f"reference: {r:,.0f} events/s (median)")
    without = result["collector_without_consents_events_per_s"]
    print(f"collector, traffic without consents: {without:,.0f} events/s")
    print(f"ratio collector/reference: {c / r:.2f}")
    sg = result["segment_events_per_s"]
    print(
        f"/segment/v1/batch: {sg:,.0f} events/s accepted (median; runs "
        f"{_runs(result['segment_runs'])}); ratio segment//v1/track: {sg / c:.2f}"
    )


if __name__ == "__main__":
    main()
