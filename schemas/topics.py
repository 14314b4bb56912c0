"""Topic names and partition counts, declared once.

Everything keyed by user shares one partition count so that a user's events,
state and decisions are co-partitioned (Faust tables need that). That count is
a setting (``INTENTFLOW_USER_PARTITIONS``, schemas/settings.py): ``source_topics``
gives the topics at it; the constants below carry the default.
"""

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int | None = None


# The default of INTENTFLOW_USER_PARTITIONS (docs/production.md: choosing the count).
DEFAULT_USER_PARTITIONS = 4

TELEMETRY_RAW = TopicSpec("telemetry.raw", DEFAULT_USER_PARTITIONS)
TELEMETRY_DLQ = TopicSpec("telemetry.dlq", 1)
NUDGES = TopicSpec("nudges", DEFAULT_USER_PARTITIONS)
VIP = TopicSpec("vip", DEFAULT_USER_PARTITIONS)
RECEIPTS = TopicSpec("receipts", DEFAULT_USER_PARTITIONS)
# Internal: moves anonymous state to the user's partition after an identify.
IDENTITY = TopicSpec("identity.handover", DEFAULT_USER_PARTITIONS)
# Commands to the engine keyed by user (erasure), co-partitioned with its state.
CONTROL = TopicSpec("control", DEFAULT_USER_PARTITIONS)

# Keyed by user: they take the configured partition count.
USER_KEYED: frozenset[str] = frozenset(
    spec.name for spec in (TELEMETRY_RAW, NUDGES, VIP, RECEIPTS, IDENTITY, CONTROL)
)


def source_topics(user_partitions: int = DEFAULT_USER_PARTITIONS) -> tuple[TopicSpec, ...]:
    """Every source topic, the user-keyed ones at ``user_partitions``."""
    return tuple(
        replace(spec, partitions=user_partitions) if spec.name in USER_KEYED else spec
        for spec in (TELEMETRY_RAW, TELEMETRY_DLQ, NUDGES, VIP, RECEIPTS, IDENTITY, CONTROL)
    )


SOURCE_TOPICS: tuple[TopicSpec, ...] = source_topics()


def namespaced(spec: TopicSpec, namespace: str | None) -> TopicSpec:
    """The same topic inside an isolated namespace (replays write to their own topics)."""
    if not namespace:
        return spec
    return TopicSpec(f"{namespace}.{spec.name}", spec.partitions, spec.retention_ms)
