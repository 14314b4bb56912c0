"""The dispatch agents: decisions (``nudges``, ``vip``), receipts and control commands in.

Runs as its own worker role (``intentflow dispatcher``: own app id, consumer
group and state), never in a replay: dispatch is the live edge. Every batch is
handled under one lock shared with the wall-clock timer, then shipped: receipts
produced and acknowledged, the records flushed (RocksDB + changelog), and only
then does Faust commit the batch's offsets.
"""

import asyncio
import logging
import time

import clickhouse_connect
import faust
import httpx

from pipeline.dispatch.channels import HttpChannel
from pipeline.dispatch.directory import Directory
from pipeline.dispatch.dispatcher import AUDIT_COLUMNS, Dispatcher
from pipeline.dispatch.records import record_from_bytes, record_to_bytes
from pipeline.dispatch.settings import DispatchSettings
from pipeline.engine.outputs import KafkaOutputs
from pipeline.engine.state_store import UserStateStore
from pipeline.settings import WorkerSettings
from schemas import pii
from schemas.dispatch_tables import AUDIT_LOG
from schemas.topics import CONTROL, NUDGES, RECEIPTS, USER_PARTITIONS, VIP, namespaced

log = logging.getLogger(__name__)
# httpx logs every request at INFO: one line per message sent is noise here.
logging.getLogger("httpx").setLevel(logging.WARNING)

RAW_BYTES = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


def _now_ms() -> int:
    return int(time.time() * 1000)


def register_dispatch(app: faust.App, settings: WorkerSettings) -> None:
    if not isinstance(settings, DispatchSettings):
        settings = DispatchSettings(**settings.model_dump())

    def name(spec) -> str:
        return namespaced(spec, settings.namespace).name

    decisions_topic = app.topic(name(NUDGES), name(VIP), **RAW_BYTES)
    receipts_topic = app.topic(name(RECEIPTS), **RAW_BYTES)
    control_topic = app.topic(name(CONTROL), **RAW_BYTES)
    table = app.Table(
        "dispatch-state", partitions=USER_PARTITIONS, key_type=bytes, value_type=bytes
    )
    outputs = KafkaOutputs(settings.bootstrap_servers)
    store = UserStateStore(table, outputs, record_to_bytes, record_from_bytes)
    warehouse = clickhouse_connect.get_client(
        dsn=settings.clickhouse_url,
        database=settings.clickhouse_database,
        connect_timeout=3,
        autogenerate_session_id=False,
    )
    master = pii.MasterKey.from_secret(settings.pii_master_key.get_secret_value())
    http = httpx.AsyncClient(
        timeout=settings.provider_timeout_s,
        limits=httpx.Limits(max_connections=settings.send_concurrency),
    )
    channels = {
        name: HttpChannel(name, settings.provider_url, http, settings.send_attempts)
        for name in ("whatsapp", "sms")
    }
    dispatcher = Dispatcher(store, Directory(warehouse, master), channels, settings, name(RECEIPTS))
    indexed: set[int] = set()
    lock = asyncio.Lock()
    last_poll = 0.0

    def ensure_indexed(partition: int) -> None:
        if partition not in indexed:
            indexed.add(partition)
            log.info(
                "partition %d: %d messages in flight", partition, dispatcher.rebuild(partition)
            )

    async def ship() -> None:
        await outputs.send_all(dispatcher.drain())
        await store.flush()
        rows = dispatcher.drain_audit()
        if rows:
            await asyncio.to_thread(warehouse.insert, AUDIT_LOG, rows, column_names=AUDIT_COLUMNS)

    async def refresh_pauses() -> None:
        nonlocal last_poll
        if time.monotonic() - last_poll < settings.control_poll_s:
            return
        last_poll = time.monotonic()
        try:
            dispatcher.paused = await asyncio.to_thread(
                Directory.paused_channels, dispatcher.directory
            )
        except Exception as exc:  # keep the last known switches while the warehouse is away
            log.warning("cannot read channel switches: %s", type(exc).__name__)

    @app.agent(decisions_topic, name="dispatch_decisions")
    async def dispatch_decisions(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            async with lock:
                items = []
                for event in events:
                    ensure_indexed(event.message.partition)
                    items.append((event.message.partition, event.message.value))
                await refresh_pauses()
                await dispatcher.on_decisions(items, _now_ms())
                await ship()

    @app.agent(receipts_topic, name="dispatch_receipts")
    async def dispatch_receipts(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            async with lock:
                items = []
                for event in events:
                    ensure_indexed(event.message.partition)
                    items.append((event.message.partition, event.message.value))
                await dispatcher.on_receipts(items, _now_ms())
                await ship()

    @app.agent(control_topic, name="dispatch_commands")
    async def dispatch_commands(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            async with lock:
                for event in events:
                    ensure_indexed(event.message.partition)
                    dispatcher.on_control(event.message.partition, event.message.value)
                await ship()

    @app.timer(interval=0.5, on_leader=False)
    async def follow_wall_clock() -> None:
        # The live edge: delivery timeouts and held messages run on the wall clock.
        if app.rebalancing:
            return
        async with lock:
            for tp in app.consumer.assignment():
                if tp.topic == name(NUDGES):
                    ensure_indexed(tp.partition)
            await refresh_pauses()
            await dispatcher.tick(_now_ms())
            await ship()

    @app.on_partitions_revoked.connect
    async def forget_revoked(app: faust.App, revoked: set, **kwargs: object) -> None:
        partitions = {tp.partition for tp in revoked if tp.topic == name(NUDGES)}
        async with lock:
            await ship()
            indexed.difference_update(partitions)
            dispatcher.forget(partitions)
            store.forget(partitions)

    @app.on_before_shutdown.connect
    async def stop_outputs(app: faust.App, **kwargs: object) -> None:
        async with lock:
            await ship()
        await outputs.stop()
        await http.aclose()
        warehouse.close()
