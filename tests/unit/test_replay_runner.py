"""The replay runner: the live engine's logic over records, deterministic in how
partitions interleave, firing the deadlines inside the range at the end."""

from datetime import UTC, datetime

from aiokafka.partitioner import murmur2

from pipeline.domain.rules import default_rules
from pipeline.local.simulate import generate_events
from pipeline.replay.namespace import run_topics
from pipeline.replay.recorded import RecordedEvent
from pipeline.replay.runner import ReplayRunner, longest_deadline_ms
from pipeline.replay.source import ArrivalMerge
from schemas.events import parse_event
from schemas.messages import Nudge, VipUpgrade, load_decision

START = datetime(2026, 1, 10, tzinfo=UTC)
RULES = default_rules()
PARTITIONS = 4


def recorded(seed: int, users: int, events: int) -> list[RecordedEvent]:
    """Simulated traffic as the collector logs it: keyed by Event.key, offsets per partition."""
    offsets = [0] * PARTITIONS
    out = []
    for raw in generate_events(seed, users, events, START, 1.0):
        event = parse_event(raw, received_at=datetime.fromisoformat(raw["timestamp"]))
        key = event.key.encode()
        partition = (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
        ms = int(event.timestamp.timestamp() * 1000)
        value = event.to_json()
        out.append(RecordedEvent(partition, offsets[partition], key, value, ms, ms))
        offsets[partition] += 1
    return out


def replay(records: list[RecordedEvent], end_ms: int | None = None) -> list:
    runner = ReplayRunner(RULES, PARTITIONS, run_topics("unit", "telemetry.raw"), False)
    for start in range(0, len(records), 500):
        runner.feed(records[start : start + 500])
    runner.finish(end_ms or (runner.last_event_ms or 0) + longest_deadline_ms(RULES))
    topics = {runner.topics.nudges, runner.topics.vip}
    return [load_decision(v) for t, _, v, _ in runner.take_outputs() if t in topics]


def test_the_same_records_give_the_same_decisions_with_both_kinds_of_nudge():
    records = recorded(5, 300, 6_000)
    first, second = replay(records), replay(records)
    nudges = [d for d in first if isinstance(d, Nudge)]
    assert {n.kind for n in nudges} == {"cart_rescue", "high_intent"}
    assert any(n.user_key.startswith("user-") for n in nudges), "identified users are nudged"
    assert first == second


def test_partitions_merge_in_arrival_order_however_the_fetches_are_cut():
    records = recorded(5, 100, 2_000)
    selected = [(r, {}) for r in records]
    for chunk in (1, 7, 500):
        merge = ArrivalMerge({p: False for p in range(PARTITIONS)})
        out = []
        per_partition = {p: [s for s in selected if s[0].partition == p] for p in range(PARTITIONS)}
        while any(per_partition.values()):
            for p in range(PARTITIONS):
                head, per_partition[p] = per_partition[p][:chunk], per_partition[p][chunk:]
                merge.push(p, head, finished=not per_partition[p])
                out += merge.drain()
        out += merge.drain(final=True)
        in_partition_order = sorted(out, key=lambda s: (s[0].partition, s[0].offset))
        assert in_partition_order == sorted(selected, key=lambda s: (s[0].partition, s[0].offset))
        arrivals = [r.arrival_ms for r, _ in out]
        assert arrivals == sorted(arrivals)


def test_the_end_of_the_range_fires_the_deadlines_inside_it_and_no_later_ones():
    records = recorded(5, 300, 6_000)
    last = max(r.event_ms for r in records)
    early = {d.model_dump_json(): d for d in replay(records, end_ms=last)}
    full = {d.model_dump_json(): d for d in replay(records)}
    assert set(early) < set(full)
    fired_later = [d for text, d in full.items() if text not in early]
    assert {d.kind for d in fired_later} == {"cart_rescue"}
    assert all(d.triggered_at > datetime.fromtimestamp(last / 1000, UTC) for d in fired_later)


def test_a_replay_never_mints_a_vip_token():
    records = recorded(8, 40, 6_000)
    upgrades = [d for d in replay(records) if isinstance(d, VipUpgrade)]
    assert upgrades, "the traffic should hold third orders"
    assert all(u.token is None for u in upgrades)


def test_identity_hand_overs_are_routed_to_the_users_partition():
    records = recorded(5, 300, 6_000)
    runner = ReplayRunner(RULES, PARTITIONS, run_topics("unit", "telemetry.raw"), False)
    runner.feed(records)
    assert runner.counts["identity_hops"] > 0
    for user_id in {k for k in runner.orders.values() if k.user_key.startswith("user-")}:
        partition = (murmur2(user_id.user_key.encode()) & 0x7FFFFFFF) % PARTITIONS
        assert runner.processor.store.get(user_id.user_key, partition) is not None
