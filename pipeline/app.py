"""The Faust application, built from frozen worker settings.

Agents are not declared at import time: each engine module exposes a
``register_xxx(app, settings)`` function and is listed in ``AGENT_REGISTRATIONS``,
so the same modules serve the live app, replays (own namespace) and tests.
"""

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import faust

from pipeline.agents.score import register_scoring
from pipeline.dispatch.agent import register_dispatch
from pipeline.engine.rocksdb_memory import shared_memory
from pipeline.faust_transport import KeepQueuedFlowControl, low_latency_transport
from pipeline.metrics import measure_lag
from pipeline.settings import WorkerSettings
from pipeline.sink import register_sink
from schemas.topics import USER_KEYED, TopicSpec, namespaced, source_topics

log = logging.getLogger(__name__)

Registration = Callable[[faust.App, WorkerSettings], None]
# How often a worker that serves metrics measures its consumer lag.
LAG_INTERVAL_S = 5.0

# The engine's agents plug in here, in the order they should be registered.
AGENT_REGISTRATIONS: tuple[Registration, ...] = (register_scoring, register_sink)
# The live edge only (``intentflow dispatcher``), never in a replay: see docs/dispatch.md.
DISPATCH_REGISTRATIONS: tuple[Registration, ...] = (register_dispatch,)


def faust_app_id(settings: WorkerSettings) -> str:
    """The app id, which is also the consumer group; a replay namespace gets its own."""
    if settings.namespace:
        return f"{settings.app_id}.{settings.namespace}"
    return settings.app_id


def state_dir(settings: WorkerSettings) -> Path:
    """RocksDB tables of one worker process: wiped when the (memory-only) broker restarts."""
    return settings.data_dir / "faust" / faust_app_id(settings) / f"worker-{settings.worker_index}"


def co_partitioned_topics(app: faust.App, settings: WorkerSettings) -> list[TopicSpec]:
    """The topics that must have ``user_partitions``: the user-keyed ones (in the app's
    namespace), the telemetry it reads, and its tables' changelogs."""
    user_keyed = [
        namespaced(spec, settings.namespace)
        for spec in source_topics(settings.user_partitions)
        if spec.name in USER_KEYED
    ]
    names = {settings.source_topic} | {
        table.changelog_topic.get_topic_name() for table in app.tables.values()
    }
    names -= {spec.name for spec in user_keyed}
    return user_keyed + [TopicSpec(name, settings.user_partitions) for name in sorted(names)]


def create_app(
    settings: WorkerSettings,
    registrations: Sequence[Registration] = AGENT_REGISTRATIONS,
) -> faust.App:
    datadir = state_dir(settings)
    # Faust creates only the last level of its data directory.
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        faust_app_id(settings),
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers],
        store=settings.store,
        datadir=str(datadir),
        autodiscover=False,
        # Everything keyed by user is co-partitioned (schemas/topics.py).
        topic_partitions=settings.user_partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        # Tansu has no transactions: at-least-once plus idempotent effects.
        processing_guarantee="at_least_once",
        producer_acks=-1,
        broker_session_timeout=settings.broker_session_timeout,
        broker_commit_interval=settings.broker_commit_interval,
        recovery_consistency_check=settings.recovery_consistency_check,
        web_enabled=settings.web_enabled,
        web_bind="127.0.0.1" if settings.env == "local" else "0.0.0.0",
        web_port=settings.web_port,
        **({"web_host": settings.web_host} if settings.web_host else {}),
    )
    app.transport = low_latency_transport(app, settings.consumer_fetch_max_wait_ms)
    # Before any stream queue exists: they register with the app's flow control.
    app.flow_control = KeepQueuedFlowControl(loop=app.loop)
    for register in registrations:
        register(app, settings)
    if settings.metrics_port is not None:

        @app.timer(interval=LAG_INTERVAL_S, on_leader=False)
        async def measure_consumer_lag() -> None:
            try:
                measure_lag(app.consumer)
            except Exception as exc:  # a gauge is never worth stopping the stream for
                log.warning("consumer lag not measured: %s", type(exc).__name__)
            shared_memory(settings.state_memory_bytes).report()

    return app
