"""The dispatch agents: decisions (``nudges``, ``vip``), receipts and control commands in.

Runs as its own worker role (``intentflow dispatcher``: own app id, consumer
group and state), never in a replay: dispatch is the live edge. Every batch is
handled under one lock shared with the wall-clock timer, then shipped: receipts
produced and acknowledged, the records flushed (RocksDB + changelog), and only
then does Faust commit the batch's offsets.
"""

import asyncio
import contextlib
import faulthandler
import gc
import io
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import get_args

import faust
import httpx

from pipeline.dispatch.catalog import Catalog
from pipeline.dispatch.channels import TwilioSmsChannel, WhatsAppChannel
from pipeline.dispatch.directory import Directory
from pipeline.dispatch.dispatcher import Dispatcher
from pipeline.dispatch.records import record_from_bytes, record_to_bytes
from pipeline.dispatch.send_hours import Loaded, enabled, take_snapshot
from pipeline.dispatch.settings import DispatchSettings
from pipeline.dispatch.variants import snapshots_in_use, take_snapshots, with_variants
from pipeline.domain.rules import Channel, rules_from
from pipeline.engine.batched import BatchedAgents
from pipeline.engine.outputs import KafkaOutputs
from pipeline.engine.rocksdb_memory import share_memory
from pipeline.engine.state_store import UserStateStore
from pipeline.faust_transport import RAW_BYTES
from pipeline.metrics import CHANNEL_PAUSED
from pipeline.settings import WorkerSettings
from schemas import pii
from schemas.dispatch_tables import AUDIT_COLUMNS, AUDIT_LOG
from schemas.time import now_ms
from schemas.topics import CONTROL, NUDGES, RECEIPTS, VIP, namespaced
from schemas.warehouse import warehouse_of

log = logging.getLogger(__name__)
# httpx logs every request at INFO: one line per message sent is noise here.
logging.getLogger("httpx").setLevel(logging.WARNING)


# The exit status of a dispatcher that stopped on a failed batch (see ``failing_hard``).
BATCH_FAILED_EXIT = 70


@contextlib.contextmanager
def failing_hard(what: str) -> Iterator[None]:
    """A batch that fails after its bounded retries stops the worker at once, loudly.

    Not Faust's default (the actor is restarted and ``take_events`` acks the failed
    batch's events, so their offsets are committed unprocessed), not a clean shutdown
    (that commits too): exiting like a SIGKILL leaves the batch uncommitted, and the
    restarted dispatcher redoes it; its flushed send intents are never resent.
    """
    try:
        yield
    except Exception:
        log.critical(
            "%s failed; exiting (status %d) without committing it",
            what,
            BATCH_FAILED_EXIT,
            exc_info=True,
        )
        logging.shutdown()
        os._exit(BATCH_FAILED_EXIT)


def _await_chain(awaitable: object) -> list[str]:
    """Where a suspended coroutine chain is parked: one ``file:line function`` per frame."""
    lines: list[str] = []
    for _ in range(64):
        if awaitable is None:
            break
        frame = next(
            (
                getattr(awaitable, a)
                for a in ("cr_frame", "ag_frame", "gi_frame")
                if getattr(awaitable, a, None) is not None
            ),
            None,
        )
        if frame is not None:
            code = frame.f_code
            lines.append(f"    {code.co_filename}:{frame.f_lineno} {code.co_name}")
            awaitable = next(
                (
                    getattr(awaitable, a)
                    for a in ("cr_await", "ag_await", "gi_yieldfrom")
                    if getattr(awaitable, a, None) is not None
                ),
                None,
            )
            continue
        # Wrappers without frames (coroutine_wrapper, async_generator_asend, a
        # Future): look through to the coroutine or generator they hold.
        inner = [
            r
            for r in gc.get_referents(awaitable)
            if any(hasattr(r, a) for a in ("cr_frame", "ag_frame", "gi_frame"))
        ]
        if not inner:
            lines.append(f"    awaiting {awaitable!r:.300}")
            break
        awaitable = inner[0]
    return lines


def dump_stacks() -> None:
    """Every asyncio task's await chain and every thread's stack, on stderr (no locals)."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"--- task {task.get_name()}\n")
        out.write("\n".join(_await_chain(task.get_coro())) + "\n")
    sys.stderr.write(out.getvalue())
    sys.stderr.flush()
    faulthandler.dump_traceback(all_threads=True)


def register_dispatch(app: faust.App, settings: WorkerSettings) -> None:
    if not isinstance(settings, DispatchSettings):
        settings = DispatchSettings(**settings.model_dump())

    def name(spec) -> str:
        return namespaced(spec, settings.namespace).name

    decisions_topic = app.topic(name(NUDGES), name(VIP), **RAW_BYTES)
    receipts_topic = app.topic(name(RECEIPTS), **RAW_BYTES)
    control_topic = app.topic(name(CONTROL), **RAW_BYTES)
    table = app.Table(
        "dispatch-state", partitions=settings.user_partitions, key_type=bytes, value_type=bytes
    )
    share_memory(table, settings.state_memory_bytes)
    outputs = KafkaOutputs(settings.bootstrap_servers)
    store = UserStateStore(table, outputs, record_to_bytes, record_from_bytes)
    warehouse = warehouse_of(settings)
    master = pii.MasterKey.from_secret(settings.pii_master_key.get_secret_value())
    http = httpx.AsyncClient(
        timeout=settings.provider_timeout_s,
        limits=httpx.Limits(max_connections=settings.send_concurrency),
    )
    channels = {
        "whatsapp": WhatsAppChannel(
            http,
            api_url=settings.whatsapp_api_url,
            api_version=settings.whatsapp_api_version,
            phone_number_id=settings.whatsapp_phone_number_id,
            access_token=settings.whatsapp_access_token.get_secret_value(),
            attempts=settings.send_attempts,
        ),
        "sms": TwilioSmsChannel(
            http,
            api_url=settings.twilio_api_url,
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            sender=settings.twilio_from,
            public_api_url=settings.public_api_url,
            attempts=settings.send_attempts,
        ),
    }
    rules = rules_from(settings.rules)
    dispatcher = Dispatcher(
        store,
        Directory(warehouse, master),
        channels,
        settings,
        name(RECEIPTS),
        rules,  # quiet hours and maximum ages, as the engine's
        checkpoint=lambda: ship(),  # send intents are flushed before the provider calls
        catalog=Catalog(warehouse),
    )
    indexed: set[int] = set()
    last_poll = 0.0
    variants = with_variants(rules)
    best_hours = enabled(rules)
    hour_snapshots = Loaded()

    def ensure_indexed(partition: int) -> None:
        if partition not in indexed:
            indexed.add(partition)
            log.info(
                "partition %d: %d messages in flight",
                partition,
                dispatcher.rebuild(partition, now_ms()),
            )

    async def ship() -> None:
        await outputs.send_all(dispatcher.drain())
        await store.flush()
        rows = dispatcher.drain_audit()
        if rows:
            await dispatcher.warehouse(
                warehouse.insert, AUDIT_LOG, rows, column_names=list(AUDIT_COLUMNS)
            )

    async def refresh_pauses() -> None:
        nonlocal last_poll
        if time.monotonic() - last_poll < settings.control_poll_s:
            return
        last_poll = time.monotonic()
        try:
            dispatcher.paused = await asyncio.to_thread(dispatcher.directory.paused_channels)
        except Exception as exc:  # keep the last known switches while the warehouse is away
            log.warning("cannot read channel switches: %s", type(exc).__name__)
            return
        for channel in {*get_args(Channel), *dispatcher.paused}:
            CHANNEL_PAUSED.labels(channel).set(int(channel in dispatcher.paused))
        if variants:
            try:
                dispatcher.snapshots = await asyncio.to_thread(
                    snapshots_in_use, warehouse, rules, now_ms()
                )
            except Exception as exc:  # the last snapshots loaded stay in use meanwhile
                log.warning("cannot read the variant snapshots: %s", type(exc).__name__)
        if best_hours:
            try:
                dispatcher.hour_snapshots = await asyncio.to_thread(
                    hour_snapshots.refresh, warehouse, rules, now_ms()
                )
            except Exception as exc:  # the last snapshots loaded stay in use meanwhile
                log.warning("cannot read the send-hour snapshots: %s", type(exc).__name__)

    batched = BatchedAgents(ship, guard=failing_hard)
    batch = settings.batching

    def items_of(events: list) -> list[tuple[int, bytes]]:
        items = []
        for event in events:
            ensure_indexed(event.message.partition)
            items.append((event.message.partition, event.message.value))
        return items

    async def feed_decisions(events: list) -> None:
        items = items_of(events)
        await refresh_pauses()
        await dispatcher.on_decisions(items, now_ms())

    async def feed_receipts(events: list) -> None:
        await dispatcher.on_receipts(items_of(events), now_ms())

    def feed_commands(events: list) -> None:
        for partition, value in items_of(events):
            dispatcher.on_control(partition, value)

    @app.agent(decisions_topic, name="dispatch_decisions")
    async def dispatch_decisions(stream: faust.StreamT) -> None:
        await batched.run(stream, "a decisions batch", feed_decisions, **batch)

    @app.agent(receipts_topic, name="dispatch_receipts")
    async def dispatch_receipts(stream: faust.StreamT) -> None:
        await batched.run(stream, "a receipts batch", feed_receipts, **batch)

    @app.agent(control_topic, name="dispatch_commands")
    async def dispatch_commands(stream: faust.StreamT) -> None:
        await batched.run(stream, "a control batch", feed_commands, **batch)

    @app.timer(interval=0.5, on_leader=False)
    async def follow_wall_clock() -> None:
        # The live edge: delivery timeouts and held messages run on the wall clock.
        if app.rebalancing:
            return

        async def tick() -> None:
            for tp in app.consumer.assignment():
                if tp.topic == name(NUDGES):
                    ensure_indexed(tp.partition)
            await refresh_pauses()
            await dispatcher.tick(now_ms())

        await batched.step("a clock tick", tick)

    if variants:

        @app.timer(interval=settings.bandit_snapshot_s, on_leader=True)
        async def snapshot_variants() -> None:
            # One leader records the evidence; every dispatcher loads it on its poll.
            lead_ms = int(settings.bandit_lead_s * 1000)
            try:
                await dispatcher.warehouse(take_snapshots, warehouse, rules, now_ms(), lead_ms)
            except Exception as exc:  # the next period tries again; choices go on meanwhile
                log.warning("cannot take the variant snapshots: %s", type(exc).__name__)

    if best_hours:

        @app.timer(interval=settings.send_hour_snapshot_s, on_leader=True)
        async def snapshot_send_hours() -> None:
            # One leader learns the hours; every dispatcher loads them on its poll.
            lead_ms = int(settings.bandit_lead_s * 1000)
            taken = now_ms()
            zone = rules.suppression.default_timezone
            try:
                await dispatcher.warehouse(take_snapshot, warehouse, zone, taken, taken + lead_ms)
            except Exception as exc:  # the next period tries again; aims go on meanwhile
                log.warning("cannot take the send-hour snapshot: %s", type(exc).__name__)

    @app.on_partitions_revoked.connect
    async def forget_revoked(app: faust.App, revoked: set, **kwargs: object) -> None:
        partitions = {tp.partition for tp in revoked if tp.topic == name(NUDGES)}
        async with batched.lock:
            with failing_hard("the flush before a revocation"):
                await ship()
            indexed.difference_update(partitions)
            dispatcher.forget(partitions)
            store.forget(partitions)

    @app.task
    async def install_stack_dump() -> None:
        # ``kill -USR2 <pid>``: every thread's and every task's stack on stderr (no locals:
        # they may hold a phone in clear). Mode's own SIGUSR1 dump prints locals.
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR2, dump_stacks)

    @app.on_before_shutdown.connect
    async def stop_outputs(app: faust.App, **kwargs: object) -> None:
        await batched.step("the flush before shutdown")
        await outputs.stop()
        await http.aclose()
        warehouse.close()
