"""Topic names and partition counts, declared once.

Everything keyed by user shares one partition count so that a user's events,
state and decisions are co-partitioned (Faust tables need that).
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int | None = None


USER_PARTITIONS = 4

TELEMETRY_RAW = TopicSpec("telemetry.raw", USER_PARTITIONS)
TELEMETRY_DLQ = TopicSpec("telemetry.dlq", 1)
NUDGES = TopicSpec("nudges", USER_PARTITIONS)
VIP = TopicSpec("vip", USER_PARTITIONS)
RECEIPTS = TopicSpec("receipts", USER_PARTITIONS)
# Internal: moves anonymous state to the user's partition after an identify.
IDENTITY = TopicSpec("identity.handover", USER_PARTITIONS)
# Commands to the engine keyed by user (erasure), co-partitioned with its state.
CONTROL = TopicSpec("control", USER_PARTITIONS)

SOURCE_TOPICS: tuple[TopicSpec, ...] = (
    TELEMETRY_RAW,
    TELEMETRY_DLQ,
    NUDGES,
    VIP,
    RECEIPTS,
    IDENTITY,
    CONTROL,
)


def namespaced(spec: TopicSpec, namespace: str | None) -> TopicSpec:
    """The same topic inside an isolated namespace (replays write to their own topics)."""
    if not namespace:
        return spec
    return TopicSpec(f"{namespace}.{spec.name}", spec.partitions, spec.retention_ms)
