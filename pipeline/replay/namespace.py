"""A replay run's isolated namespace: its id, its topics, and resetting them for a re-run.

Every output of run ``R`` goes to ``replay.R.<topic>`` (``schemas.topics.namespaced``):
the live dispatcher consumes ``nudges`` and ``vip`` and never sees them. Only
topics inside the ``replay.`` prefix are ever deleted.
"""

import contextlib
import re

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnknownTopicOrPartitionError

from pipeline.engine.processor import EngineTopics
from pipeline.local.broker import ensure_topics
from schemas.runs import LIVE_RUN
from schemas.topics import NUDGES, TELEMETRY_DLQ, VIP, TopicSpec, namespaced

NAMESPACE_PREFIX = "replay."
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_run_id(run_id: str) -> str:
    if not RUN_ID_PATTERN.match(run_id):
        raise ValueError("a run id is 1-64 letters, digits, '-' or '_', starting with one")
    if run_id == LIVE_RUN:
        raise ValueError("'live' names what the live pipeline decided; pick another run id")
    return run_id


def replay_namespace(run_id: str) -> str:
    return f"{NAMESPACE_PREFIX}{check_run_id(run_id)}"


def run_topics(run_id: str, source_topic: str) -> EngineTopics:
    return EngineTopics.for_namespace(replay_namespace(run_id), source_topic)


def output_specs(run_id: str, partitions: int) -> list[TopicSpec]:
    namespace = replay_namespace(run_id)
    return [
        TopicSpec(namespaced(spec, namespace).name, partitions)
        for spec in (NUDGES, VIP, TELEMETRY_DLQ)
    ]


async def reset_run_topics(bootstrap_servers: list[str], run_id: str, partitions: int) -> None:
    """Delete the run's output topics if a previous run left them, then create them empty."""
    specs = output_specs(run_id, partitions)
    assert all(spec.name.startswith(NAMESPACE_PREFIX) for spec in specs)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="intentflow-replay")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        stale = [spec.name for spec in specs if spec.name in existing]
        if stale:
            with contextlib.suppress(UnknownTopicOrPartitionError):
                await admin.delete_topics(stale)
    finally:
        await admin.close()
    await ensure_topics(bootstrap_servers, specs)
