"""A state is flushed only with the outputs it caused (pipeline/engine/batched.py).

Real RocksDB under the write-behind store; the output sender is gated so the
interleaving of two agents is deterministic, and it fails on demand to stand
for a crash between one agent's flush and the other's send.
"""

import asyncio
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from rocksdict import Options, Rdict

from pipeline.domain.state import state_from_bytes, state_to_bytes
from pipeline.engine.batched import BatchedAgents
from pipeline.engine.clock import PartitionClock
from pipeline.engine.memory_store import MemoryStateStore
from pipeline.engine.processor import EngineProcessor
from pipeline.engine.state_store import UserStateStore
from schemas.engine_records import watermark_record
from schemas.messages import Nudge, VipUpgrade, load_decision
from schemas.time import epoch_ms as ms
from tests.unit.engine.test_processor import (
    RULES,
    T0,
    TOPICS,
    consent,
    engine,
    journeys,
    raw,
    users_outside_holdout,
)


class GatedOutputs:
    """Holds the first send until ``release``; after ``calls_before_crash`` sends, every
    send fails: the worker died there."""

    def __init__(self, calls_before_crash: int | None = None) -> None:
        self.sent: list[tuple] = []
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self._calls_left = calls_before_crash
        self._offsets: dict[tuple[str, int], int] = {}
        self._first = True

    async def send_all(self, records: list[tuple]) -> dict[tuple[str, int], int]:
        if self._calls_left is not None:
            if self._calls_left == 0:
                raise ConnectionError("the worker died here")
            self._calls_left -= 1
        if self._first:
            self._first = False
            self.holding.set()
            await self.release.wait()
        last = {}
        for topic, _key, _value, partition in records:
            if partition is not None:
                offset = self._offsets.get((topic, partition), -1) + 1
                self._offsets[topic, partition] = last[topic, partition] = offset
        self.sent.extend(records)
        return last


def worker(
    dbs: dict[int, Rdict], outputs: object, idle_flushes: int = 50
) -> tuple[EngineProcessor, BatchedAgents]:
    table = SimpleNamespace(
        data=SimpleNamespace(_db_for_partition=dbs.__getitem__),
        changelog_topic=SimpleNamespace(get_topic_name=lambda: "user-state-changelog"),
    )
    store = UserStateStore(
        table,
        outputs,  # type: ignore[arg-type]
        state_to_bytes,
        state_from_bytes,
        idle_flushes=idle_flushes,
    )
    engine = EngineProcessor(RULES, store, PartitionClock(), TOPICS, lambda upgrade: "signed")

    async def ship() -> None:  # the score agent's ship
        await outputs.send_all(engine.drain())  # type: ignore[attr-defined]
        await store.flush()

    return engine, BatchedAgents(ship)


def vip_orders(user: str) -> list[bytes]:
    item = {"product_id": "p1", "quantity": 1, "amount": 10.0}
    return [
        raw(
            "order_placed",
            T0,
            user,
            order_id=f"{user}-{n}",
            items=[item],
            total=10.0,
            currency="EUR",
        )
        for n in range(RULES.vip.order_count)
    ]


def vip_upgrades(records: list[tuple]) -> list[VipUpgrade]:
    decisions = [load_decision(value) for topic, _, value, _ in records if topic == TOPICS.vip]
    return [d for d in decisions if isinstance(d, VipUpgrade)]


def test_a_state_is_never_flushed_before_the_outputs_it_caused(tmp_path: Path):
    dbs = {0: Rdict(str(tmp_path / "p0"), Options(raw_mode=True))}
    browsing, buying = raw("page_view", T0, "shopper-a", url="/"), vip_orders("shopper-b")

    async def crash_between_two_agents() -> None:
        # Agent a's step sends twice (its outputs, then the changelog); then the crash.
        outputs = GatedOutputs(calls_before_crash=2)
        engine, batched = worker(dbs, outputs)

        def feed(records: list[bytes]):
            def work() -> None:
                for offset, value in enumerate(records):
                    engine.on_raw(0, offset, b"k", value)

            return work

        first = asyncio.create_task(batched.step("agent a", feed([browsing])))
        await outputs.holding.wait()  # agent a is awaiting its outputs' acknowledgement
        second = asyncio.create_task(batched.step("agent b", feed(buying)))
        for _ in range(20):
            await asyncio.sleep(0)
        outputs.release.set()
        await first  # agent a shipped: its outputs sent, the states flushed
        with pytest.raises(ConnectionError):
            await second
        assert vip_upgrades(outputs.sent) == []

    async def restart_and_redeliver() -> list[VipUpgrade]:
        outputs = GatedOutputs()
        outputs.release.set()
        engine, batched = worker(dbs, outputs)

        def redeliver() -> None:  # agent b's offsets were never committed
            for offset, value in enumerate(buying):
                engine.on_raw(0, offset, b"k", value)

        await batched.step("agent b again", redeliver)
        return vip_upgrades(outputs.sent)

    try:
        asyncio.run(crash_between_two_agents())
        (upgrade,) = asyncio.run(restart_and_redeliver())
    finally:
        dbs[0].close()
    assert upgrade.user_key == "shopper-b"


def test_a_restarted_worker_goes_on_from_the_watermark_its_states_were_made_under(
    tmp_path: Path,
):
    """A watermark record was read, shipped and committed; then the worker died. The
    next owner must fold what follows under that watermark, as a replay of the log does."""
    dbs = {0: Rdict(str(tmp_path / "p0"), Options(raw_mode=True))}
    (shopper,) = users_outside_holdout(1)
    now_ms = ms(T0 + timedelta(days=3))
    cart = [
        consent(T0, shopper),
        raw("add_to_cart", T0, shopper, product_id="p1", quantity=1, price=9.0),
    ]

    def kinds(records: list[tuple]) -> list[str]:
        decided = [load_decision(v) for t, _, v, _ in records if t == TOPICS.nudges]
        return [d.kind for d in decided if isinstance(d, Nudge)]

    async def live() -> list[str]:
        first = GatedOutputs()
        first.release.set()
        engine, batched = worker(dbs, first)
        await batched.step(
            "the watermark record", lambda: engine.on_raw(0, 0, b"", watermark_record(now_ms))
        )
        # The worker died here; the next one is assigned the partition.
        then = GatedOutputs()
        then.release.set()
        engine, batched = worker(dbs, then)
        engine.rebuild_deadlines(0)

        def fold() -> None:
            for offset, value in enumerate(cart, start=1):
                engine.on_raw(0, offset, shopper.encode(), value)

        await batched.step("the records after it", fold)
        return kinds(then.sent)

    replay = EngineProcessor(RULES, MemoryStateStore(), PartitionClock(), TOPICS, lambda u: "")
    for offset, value in enumerate([watermark_record(now_ms), *cart]):
        replay.on_raw(0, offset, shopper.encode(), value)
    try:
        assert kinds(replay.drain()) == ["cart_rescue"]  # the cart was overdue at once
        assert asyncio.run(live()) == ["cart_rescue"]
    finally:
        dbs[0].close()


def test_states_resting_encoded_between_batches_decide_as_states_kept_in_memory(tmp_path: Path):
    records = journeys(11, users_outside_holdout(40))
    in_memory = engine()
    for offset, value in enumerate(records):
        in_memory.on_raw(0, offset, b"k", value)
    expected = decisions_of(in_memory.drain())
    dbs = {0: Rdict(str(tmp_path / "p0"), Options(raw_mode=True))}

    async def one_batch_per_record() -> list:
        outputs = GatedOutputs()
        outputs.release.set()
        # Every state not written by the last flush waits encoded and is decoded on touch.
        processor, _ = worker(dbs, outputs, idle_flushes=1)
        made = []
        for offset, value in enumerate(records):
            processor.on_raw(0, offset, b"k", value)
            out = processor.drain()
            made.extend(out)
            await outputs.send_all(out)
            await processor.store.flush()  # type: ignore[attr-defined]
        return decisions_of(made)

    try:
        assert len(expected) > 5, "the journeys should decide something"
        assert asyncio.run(one_batch_per_record()) == expected
    finally:
        dbs[0].close()


def decisions_of(records: list[tuple]) -> list:
    return [load_decision(v) for topic, _, v, _ in records if topic in (TOPICS.nudges, TOPICS.vip)]
