"""The sink agents: topics → batched, idempotent warehouse inserts (Quix-style sinks).

One agent per topic. Each takes up to ``batch_size`` records or what arrived
within ``within_s`` (``take_events``), turns them into rows with the pure
processors, inserts them, and only then returns to Faust, which acks the batch's
offsets after the loop body (pipeline/agents/score.py). A warehouse outage
blocks the agent in its retry loop: offsets stay uncommitted, nothing is lost;
a crash re-delivers the batch, which the dedup tokens and ReplacingMergeTree
keep from being counted twice.

Live only: a worker with a namespace (a replay) registers no sink; a replay
records its own decisions under its run id (pipeline/replay), and telemetry,
receipts and dead letters are the live run's alone.
"""

import logging
from dataclasses import dataclass

import faust

from pipeline.faust_transport import RAW_BYTES
from pipeline.metrics import DEAD_LETTERS, took_batch
from pipeline.settings import WorkerSettings
from pipeline.sink.batch import SinkBatch
from pipeline.sink.processors import (
    DECODE_ERRORS,
    Processor,
    decision_processor,
    process_dead_letter,
    process_receipt,
)
from pipeline.sink.rows import DEAD_LETTERS as DEAD_LETTERS_TABLE
from pipeline.sink.rows import dead_letter_row
from pipeline.sink.writer import WarehouseWriter
from schemas.deadletter import DeadLetter
from schemas.runs import LIVE_RUN
from schemas.topics import NUDGES, RECEIPTS, TELEMETRY_DLQ, VIP

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SinkConfig:
    # ~10k rows per insert keeps parts few and the client's per-insert overhead small.
    batch_size: int = 10_000
    within_s: float = 1.0


def sink_topics(settings: WorkerSettings) -> list[tuple[str, str, Processor]]:
    """(agent name, topic, processor) of every topic the live worker records."""
    decisions = decision_processor(LIVE_RUN)
    # The events table is fed by the score agent, which parses the raw topic
    # anyway (pipeline/sink/held.py).
    return [
        ("sink_dead_letters", TELEMETRY_DLQ.name, process_dead_letter),
        ("sink_nudges", NUDGES.name, decisions),
        ("sink_vip", VIP.name, decisions),
        ("sink_receipts", RECEIPTS.name, process_receipt),
    ]


def fill_batch(topic: str, events: list, processor: Processor) -> SinkBatch:
    """Rows of one ``take_events`` batch; an unreadable record becomes a ``dead_letters`` row."""
    batch = SinkBatch(topic)
    for event in events:
        message = event.message
        try:
            output = processor(message.value or b"", int(message.timestamp * 1000))
        except DECODE_ERRORS as exc:
            # Only our code writes these topics: say where, never what (personal data),
            # and record it as a dead letter (location, reason, size) so it shows up in
            # /v1/metrics/dead_letters rather than only in a log line.
            log.error(
                "%s[%d]@%d: cannot be read (%s); dead-lettered",
                topic,
                message.partition,
                message.offset,
                type(exc).__name__,
            )
            letter = DeadLetter.of(
                topic=topic,
                partition=message.partition,
                offset=message.offset,
                key=message.key,
                value=message.value,
                reason=f"unreadable_{type(exc).__name__}",
            )
            output = (DEAD_LETTERS_TABLE, dead_letter_row(letter, int(message.timestamp * 1000)))
            DEAD_LETTERS.labels(letter.reason).inc()
        batch.add_message(message, output)
    return batch


def register_sink(
    app: faust.App, settings: WorkerSettings, config: SinkConfig = SinkConfig()
) -> None:
    if settings.namespace:
        return
    for agent_name, topic_name, processor in sink_topics(settings):
        _register_one(app, settings, config, agent_name, topic_name, processor)


def _register_one(
    app: faust.App,
    settings: WorkerSettings,
    config: SinkConfig,
    agent_name: str,
    topic_name: str,
    processor: Processor,
) -> None:
    # A client per agent: inserts of different topics run in parallel threads.
    writer = WarehouseWriter(settings.clickhouse_url, settings.clickhouse_database)
    topic = app.topic(topic_name, **RAW_BYTES)

    async def sink(stream: faust.StreamT) -> None:
        async for events in stream.take_events(config.batch_size, within=config.within_s):
            took_batch(events)
            batch = fill_batch(topic_name, events, processor)
            await writer.write(batch)

    app.agent(topic, name=agent_name)(sink)

    @app.on_before_shutdown.connect
    async def close_writer(app: faust.App, **kwargs: object) -> None:
        writer.close()
