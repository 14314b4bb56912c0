"""Consumer lag per partition: committed offsets of our consumer groups against end offsets.

aiokafka's admin client has no ListOffsets call, so end offsets come from a
short-lived consumer that joins no group. On Tansu (the local stack) end
offsets are wrong for multi-record batches (docs/local-stack.md): rows say
``approximate`` there.
"""

import asyncio
from dataclasses import dataclass, replace

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas.topics import NUDGES, TELEMETRY_RAW, VIP, TopicSpec


@dataclass(frozen=True, slots=True)
class LagRow:
    group: str
    topic: str
    partition: int
    committed: int  # -1: nothing committed yet
    end_offset: int
    lag: int
    approximate: bool


def watched_groups(app_id: str, user_partitions: int) -> list[tuple[str, TopicSpec]]:
    """The worker reads the raw topic; the dispatcher (its own group) the decisions."""
    dispatch = f"{app_id}.dispatch"
    watched = [(app_id, TELEMETRY_RAW), (dispatch, NUDGES), (dispatch, VIP)]
    return [(group, replace(spec, partitions=user_partitions)) for group, spec in watched]


async def consumer_lag(
    admin: AIOKafkaAdminClient,
    bootstrap_servers: list[str],
    app_id: str,
    user_partitions: int,
    approximate: bool,
    timeout_s: float = 3.0,
) -> list[LagRow]:
    watched = watched_groups(app_id, user_partitions)
    partitions = {
        spec.name: [TopicPartition(spec.name, p) for p in range(spec.partitions)]
        for _, spec in watched
    }
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await asyncio.wait_for(consumer.start(), timeout_s)
    try:
        everything = [tp for tps in partitions.values() for tp in tps]
        ends = await asyncio.wait_for(consumer.end_offsets(everything), timeout_s)
    finally:
        await consumer.stop()
    rows = []
    for group, spec in watched:
        # Tansu needs the partitions named (docs/local-stack.md).
        offsets = await asyncio.wait_for(
            admin.list_consumer_group_offsets(group, partitions=partitions[spec.name]), timeout_s
        )
        for tp in partitions[spec.name]:
            meta = offsets.get(tp)
            committed = meta.offset if meta is not None and meta.offset >= 0 else -1
            end = ends.get(tp, 0)
            lag = max(end - max(committed, 0), 0)
            rows.append(LagRow(group, tp.topic, tp.partition, committed, end, lag, approximate))
    return rows
