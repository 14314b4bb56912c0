"""The partition counts the broker's topics really have, against the configured ones.

A user's events, state (Faust's tables and their changelogs) and decisions must
share partition numbers; a topic made at another count than
``INTENTFLOW_USER_PARTITIONS`` would route users to the wrong state. Such a topic
is refused before anything reads it, naming both counts: partitions cannot be
changed in place (docs/production.md, "Partitions").
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from schemas.topics import TopicSpec

log = logging.getLogger(__name__)

# What to read on a mismatch.
GROWING = "docs/production.md, 'Partitions'"


class PartitionMismatch(RuntimeError):
    """Existing topics have other partition counts than the ones configured."""


def mismatch_message(found: Mapping[str, int], specs: Iterable[TopicSpec]) -> str | None:
    """What is wrong with existing topics whose partition count is not their spec's; None
    if all agree. Topics missing from ``found`` are not judged here."""
    wrong = [
        f"topic {spec.name} has {found[spec.name]} partitions, {spec.partitions} configured"
        for spec in specs
        if spec.name in found and found[spec.name] != spec.partitions
    ]
    if not wrong:
        return None
    return (
        "; ".join(wrong) + " (INTENTFLOW_USER_PARTITIONS sets the user-keyed topics'; "
        f"partitions cannot change in place: see {GROWING})"
    )


async def describe_partitions(admin: AIOKafkaAdminClient, names: Iterable[str]) -> dict[str, int]:
    """Partition count of each of ``names`` that exists.

    Every topic is described, not the ones named: a broker that auto-creates topics
    (Tansu, at 4 partitions) would create a named one that does not exist yet.
    """
    wanted = set(names)
    return {
        topic["topic"]: len(topic["partitions"])
        for topic in await admin.describe_topics(None)
        if topic["topic"] in wanted and topic.get("error_code", 0) == 0 and topic["partitions"]
    }


@asynccontextmanager
async def admin_client(
    bootstrap_servers: str | list[str], client_id: str, timeout_s: float = 10.0
) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=int(timeout_s * 1000),
        client_id=client_id,
    )
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        yield admin
    finally:
        await admin.close()


async def verify_partitions(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> dict[str, int]:
    """The partition count of each existing topic of ``specs``; ``PartitionMismatch`` when
    one has another count than its spec."""
    found = await describe_partitions(admin, [spec.name for spec in specs])
    message = mismatch_message(found, specs)
    if message is not None:
        raise PartitionMismatch(message)
    return found


async def _verify(bootstrap_servers: list[str], specs: list[TopicSpec], timeout_s: float) -> None:
    async with admin_client(bootstrap_servers, "intentflow-partitions", timeout_s) as admin:
        await asyncio.wait_for(verify_partitions(admin, specs), timeout_s)


def verify_partitions_before_start(
    bootstrap_servers: list[str], specs: list[TopicSpec], timeout_s: float = 10.0
) -> None:
    """``verify_partitions`` on a private event loop (the worker's loop is not running yet).

    A broker that does not answer is not a mismatch: the worker starts and waits for
    it as Faust does, and Faust's own co-partitioning check stays the backstop.
    """
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_verify(bootstrap_servers, specs, timeout_s))
    except (KafkaError, OSError, TimeoutError) as exc:
        log.warning("partition counts not checked, the broker did not answer: %s", exc)
    finally:
        loop.close()
