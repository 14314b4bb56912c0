"""A replay reading records with the fast path decides exactly what it decides with load_event."""

from datetime import UTC, datetime

from aiokafka.partitioner import murmur2

from pipeline.domain import default_rules
from pipeline.local.simulate import generate_events
from pipeline.replay.namespace import run_topics
from pipeline.replay.recorded import RecordedEvent
from pipeline.replay.runner import ReplayRunner, longest_deadline_ms
from schemas.events import load_event, parse_event

PARTITIONS = 4


def records() -> list[RecordedEvent]:
    out, offsets = [], [0] * PARTITIONS
    end = datetime(2025, 11, 21, tzinfo=UTC)
    for raw in generate_events(11, 300, 6_000, end, days=1.0):
        event = parse_event(raw, received_at=datetime.fromisoformat(raw["timestamp"]))
        key = event.key.encode()
        partition = (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
        value = event.to_json()
        if offsets[partition] % 97 == 5:  # a few records no collector would write
            value = value.replace(b'"name":"', b'"name":"X', 1)
        out.append(RecordedEvent(partition, offsets[partition], key, value, event.ts_ms, 0))
        offsets[partition] += 1
    return out


def replay(recorded: list[RecordedEvent], fast: bool) -> ReplayRunner:
    rules = default_rules()
    runner = ReplayRunner(rules, PARTITIONS, run_topics("t", "telemetry.raw"), False)
    if not fast:
        runner.processor._decode = load_event
    runner.feed(recorded)
    runner.finish((runner.last_event_ms or 0) + longest_deadline_ms(rules))
    return runner


def test_fast_and_pydantic_reads_replay_to_the_same_outputs_and_orders() -> None:
    recorded = records()
    fast, slow = replay(recorded, True), replay(recorded, False)
    assert slow.processor.dead_letters > 0  # the bad records are dead-lettered either way
    assert fast.outputs == slow.outputs
    assert fast.orders == slow.orders
    assert fast.counts == slow.counts
    assert any(topic.endswith("nudges") for topic, *_ in fast.outputs)
