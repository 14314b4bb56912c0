"""The score agent: raw telemetry → per-user fold → nudges, VIP upgrades, dead letters.

Per batch: every record goes through the ``EngineProcessor``; then its outputs
are produced and acknowledged, then the dirty user states are flushed (RocksDB
plus changelog), and only then does Faust ack the batch's offsets. A crash
anywhere re-delivers the batch; the fold drops event ids it has already seen
and the decisions keep their ids, so downstream consumers drop the repeats.
"""

import logging
import time
from dataclasses import asdict
from typing import Any

import faust
from faust.exceptions import SameNode

from pipeline.domain.profile import profile
from pipeline.domain.rules import rules_from
from pipeline.domain.state import state_from_bytes, state_to_bytes
from pipeline.engine.batched import BatchedAgents
from pipeline.engine.clock import PartitionClock
from pipeline.engine.outputs import KafkaOutputs
from pipeline.engine.processor import EngineProcessor, EngineTopics
from pipeline.engine.rocksdb_memory import share_memory
from pipeline.engine.state_store import UserStateStore
from pipeline.faust_transport import RAW_BYTES
from pipeline.settings import WorkerSettings
from pipeline.sink.agents import SinkConfig
from pipeline.sink.held import HeldEventSink, NoEventSink
from pipeline.sink.writer import WarehouseWriter
from pipeline.warehouse.erasures import engine_erasures
from schemas.messages import VipUpgrade
from schemas.time import now_ms
from schemas.tokens import sign_token, token_keys

log = logging.getLogger(__name__)


def register_scoring(app: faust.App, settings: WorkerSettings) -> None:
    rules = rules_from(settings.rules)
    keys = token_keys(settings)
    topics = EngineTopics.for_namespace(settings.namespace, settings.source_topic)
    # Raw bytes in: the engine parses, so a poison record becomes a dead letter, not a crash.
    raw_topic = app.topic(topics.raw, **RAW_BYTES)
    identity_topic = app.topic(topics.identity, **RAW_BYTES)
    control_topic = app.topic(topics.control, **RAW_BYTES)
    state_table = app.Table(
        "user-state", partitions=settings.user_partitions, key_type=bytes, value_type=bytes
    )
    share_memory(state_table, settings.state_memory_bytes)
    outputs = KafkaOutputs(settings.bootstrap_servers)
    store = UserStateStore(state_table, outputs, state_to_bytes, state_from_bytes)
    clock = PartitionClock()

    def sign_vip(upgrade: VipUpgrade) -> str:
        return sign_token(upgrade.claims(), keys)

    engine = EngineProcessor(rules, store, clock, topics, sign_vip, engine_erasures(settings))
    # Live only: the events the engine parsed go to the warehouse in the same pass.
    events_sink: HeldEventSink | NoEventSink = NoEventSink()
    if not settings.namespace:
        writer = WarehouseWriter(settings.clickhouse_url, settings.clickhouse_database)
        config = SinkConfig()
        events_sink = HeldEventSink(topics.raw, writer, config.batch_size, config.within_s)
    indexed: set[int] = set()

    async def ship() -> None:
        await outputs.send_all(engine.drain())
        await store.flush()

    # The agents and the wall-clock timer share the engine: one step at a time.
    batched = BatchedAgents(ship)

    def ensure_indexed(partition: int) -> None:
        # Deadlines live in the stored states; index them once per assignment.
        if partition not in indexed:
            indexed.add(partition)
            pending = engine.rebuild_deadlines(partition)
            log.info("partition %d: %d pending deadlines indexed", partition, pending)

    # Per raw partition: when a record was last fed (monotonic), its offset, and the
    # last watermark record written; what decides that a partition is idle.
    last_fed: dict[int, float] = {}
    fed_offsets: dict[int, int] = {}
    marked: dict[int, int] = {}

    def feed_raw(events: list) -> None:
        now = time.monotonic()
        for event in events:
            message = event.message
            ensure_indexed(message.partition)
            last_fed[message.partition] = now
            fed_offsets[message.partition] = message.offset
            parsed = engine.on_raw(message.partition, message.offset, message.key, message.value)
            events_sink.hold(event, parsed)

    def feed_identities(events: list) -> None:
        for event in events:
            message = event.message
            ensure_indexed(message.partition)
            engine.on_identity(message.partition, message.offset, message.key, message.value)

    def feed_commands(events: list) -> None:
        for event in events:
            message = event.message
            engine.on_control(message.partition, message.offset, message.key, message.value)

    batch = settings.batching

    @app.agent(raw_topic, name="score_events")
    async def score_events(stream: faust.StreamT) -> None:
        await batched.run(stream, "raw", feed_raw, **batch, after=events_sink.flush_if_due)

    @app.agent(identity_topic, name="hand_over_identities")
    async def hand_over_identities(stream: faust.StreamT) -> None:
        await batched.run(stream, "identity", feed_identities, **batch)

    @app.agent(control_topic, name="apply_commands")
    async def apply_commands(stream: faust.StreamT) -> None:
        await batched.run(stream, "control", feed_commands, **batch)

    if settings.wall_clock_watermark:
        lateness_ms = int(settings.allowed_lateness_s * 1000)

        async def caught_up(tp: Any) -> bool:
            """Read to the end of the partition's log and nothing fetched for a while."""
            partition = tp.partition
            if time.monotonic() - last_fed.get(partition, 0.0) < settings.watermark_idle_s:
                return False
            highwater = app.consumer.highwater(tp)
            if highwater is None:
                return False
            read = fed_offsets.get(partition)
            position = read + 1 if read is not None else await app.consumer.position(tp)
            # Tansu's highwater can fall short of a batch's tail (docs/local-stack.md):
            # the idle time above is what covers that tail.
            return position is not None and position >= highwater

        async def mark_idle_partitions() -> None:
            floor = now_ms() - lateness_ms
            for tp in app.consumer.assignment():
                if tp.topic != topics.raw:
                    continue
                partition = tp.partition
                ensure_indexed(partition)
                due = clock.next_deadline(partition)
                if due is None or due > floor:
                    continue
                # One watermark record in flight per partition.
                if marked.get(partition, -1) > clock.watermark(partition):
                    continue
                if await caught_up(tp):
                    engine.mark_watermark(partition, floor)
                    marked[partition] = floor

        @app.timer(interval=settings.watermark_interval_s, on_leader=False)
        async def follow_wall_clock() -> None:
            # Live only: an idle partition's deadlines still fire, in order with its log.
            if app.rebalancing:
                return
            await batched.step("wall clock", mark_idle_partitions)

    @app.page("/users/{user_key}/profile")
    async def user_profile(web: faust.web.Web, request: faust.web.Request, user_key: str):
        # Interactive query: Faust's router forwards the request to the worker
        # that owns the key's partition, so this reads the live state, cache
        # included. The router hashes keys with Faust's producer, which never
        # writes the changelog (ours does), so it must learn its partitions first.
        await app.producer._ensure_producer().partitions_for(store.changelog_topic)
        try:
            return await app.router.route_req(state_table.name, user_key, web, request)
        except SameNode:
            pass
        tp = app.producer.key_partition(store.changelog_topic, user_key.encode())
        state = store.get(user_key, tp.partition)
        if state is None:
            return web.json({"detail": "no state for this user"}, status=404)
        return web.json(asdict(profile(state, now_ms(), rules)))

    @app.timer(interval=0.25, on_leader=False)
    async def flush_held_events() -> None:
        # An idle stream still gets its last events recorded and committed.
        await events_sink.flush_if_due()

    @app.on_partitions_revoked.connect
    async def forget_revoked(app: faust.App, revoked: set, **kwargs: object) -> None:
        partitions = {tp.partition for tp in revoked if tp.topic == topics.raw}
        async with batched.lock:
            await ship()
            await events_sink.drain()
            indexed.difference_update(partitions)
            for partition in partitions:
                for known in (last_fed, fed_offsets, marked):
                    known.pop(partition, None)
            clock.forget(partitions)
            store.forget(partitions)

    @app.on_before_shutdown.connect
    async def stop_outputs(app: faust.App, **kwargs: object) -> None:
        await batched.step("shutdown")
        await outputs.stop()
        await events_sink.drain()
        events_sink.close()
