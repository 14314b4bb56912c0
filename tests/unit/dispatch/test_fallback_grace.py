"""Delivery-timeout fallbacks wait a grace after an assignment; warehouse calls are bounded."""

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest
from clickhouse_connect.driver.exceptions import OperationalError

from pipeline.dispatch.directory import Contact
from pipeline.dispatch.dispatcher import Dispatcher
from pipeline.dispatch.records import MessageRecord, Record, message_key
from pipeline.dispatch.settings import DispatchSettings
from pipeline.faust_transport import KeepQueuedFlowControl
from schemas.messages import Receipt

T0 = 1_700_000_000_000


class MemoryStore:
    def __init__(self) -> None:
        self.data: dict[int, dict[str, Record]] = {}

    def get(self, key: str, partition: int) -> Record | None:
        return self.data.get(partition, {}).get(key)

    def put(self, key: str, partition: int, state: Record) -> None:
        self.data.setdefault(partition, {})[key] = state

    def delete(self, key: str, partition: int) -> None:
        self.data.get(partition, {}).pop(key, None)

    def scan(self, partition: int) -> Iterable[tuple[str, Record]]:
        return list(self.data.get(partition, {}).items())

    def scan_prefix(self, partition: int, prefix: str) -> Iterable[tuple[str, Record]]:
        return sorted(
            (k, v) for k, v in self.data.get(partition, {}).items() if k.startswith(prefix)
        )


class NoConsent:
    """A directory where nobody may be reached: a fallback ends the message, sends nothing."""

    def __init__(self) -> None:
        self.lookups = 0

    def contacts(self, subjects: dict[str, list[str]]) -> dict[str, Contact]:
        self.lookups += 1
        return {user: Contact() for user in subjects}


def settings(**overrides: object) -> DispatchSettings:
    return DispatchSettings(
        env="test",
        token_secret="test-token-secret-of-at-least-32-bytes",
        pii_master_key="test-pii-master-key",
        link_secret="test-link-secret",
        **overrides,
    )


def awaiting(message_id: str, deadline_ms: int) -> MessageRecord:
    return MessageRecord(
        message_id=message_id,
        kind="cart_rescue",
        user_key="u1",
        subjects=["u1"],
        created_ms=T0 - 60_000,
        stage="awaiting",
        channel="whatsapp",
        tried=["whatsapp"],
        deadline_ms=deadline_ms,
        outcome="sent",
        provider_ids={"whatsapp": "wa-1"},
    )


def dispatcher(store: MemoryStore, directory: NoConsent, **overrides: object) -> Dispatcher:
    return Dispatcher(store, directory, {}, settings(**overrides), "receipts")  # type: ignore[arg-type]


def test_an_expired_deadline_waits_the_grace_after_an_assignment() -> None:
    store, directory = MemoryStore(), NoConsent()
    # The deadline passed while no dispatcher owned the partition.
    store.put(message_key("m1"), 0, awaiting("m1", T0 - 1_000))
    d = dispatcher(store, directory, fallback_grace_s=5.0)
    assert d.rebuild(0, T0) == 1

    asyncio.run(d.tick(T0 + 4_000))
    assert directory.lookups == 0 and d.drain() == []
    assert store.get(message_key("m1"), 0).stage == "awaiting"

    asyncio.run(d.tick(T0 + 5_000))
    assert directory.lookups == 1
    assert store.get(message_key("m1"), 0).stage == "sent"  # no SMS consent: nothing more


def test_a_delivery_read_during_the_grace_stops_the_fallback() -> None:
    store, directory = MemoryStore(), NoConsent()
    store.put(message_key("m1"), 0, awaiting("m1", T0 - 1_000))
    d = dispatcher(store, directory, fallback_grace_s=5.0)
    d.rebuild(0, T0)
    delivered = Receipt(
        receipt_id="0" * 32,
        message_id="m1",
        kind="cart_rescue",
        user_key="u1",
        channel="whatsapp",
        status="delivered",
        at=datetime.fromtimestamp(T0 / 1000, UTC),
        provider_message_id="wa-1",
    ).to_json()
    asyncio.run(d.on_receipts([(0, delivered)], T0 + 1_000))
    asyncio.run(d.tick(T0 + 10_000))
    assert directory.lookups == 0
    assert store.get(message_key("m1"), 0).stage == "sent"
    assert d.pending() == 0


def test_without_an_assignment_time_deadlines_fire_at_once() -> None:
    store, directory = MemoryStore(), NoConsent()
    store.put(message_key("m1"), 0, awaiting("m1", T0 - 1_000))
    d = dispatcher(store, directory)
    d.rebuild(0)
    asyncio.run(d.tick(T0))
    assert directory.lookups == 1


def test_warehouse_network_errors_are_retried_then_raised() -> None:
    d = dispatcher(MemoryStore(), NoConsent(), warehouse_attempts=3)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("connection refused")
        return "ok"

    assert asyncio.run(d.warehouse(flaky)) == "ok" and len(calls) == 3

    def down() -> str:
        raise OperationalError("timed out")

    with pytest.raises(OperationalError):
        asyncio.run(d.warehouse(down))


def test_resuming_flow_keeps_what_the_queues_hold() -> None:
    """Faust's recovery resumes flow after its seek; mode's resume() wiped the queues."""

    class Queue:
        cleared = False

        def clear(self) -> None:
            self.cleared = True

    flow, queue = KeepQueuedFlowControl(), Queue()
    flow.manage_queue(queue)  # type: ignore[arg-type]
    flow.resume()
    assert flow.is_active() and not queue.cleared
    flow.suspend()
    flow.clear()  # revocation clears explicitly
    assert not flow.is_active() and queue.cleared


def test_a_failed_batch_exits_at_once_without_a_clean_shutdown(monkeypatch) -> None:
    from pipeline.dispatch import agent

    exits = []
    monkeypatch.setattr(agent.os, "_exit", lambda status: exits.append(status))
    monkeypatch.setattr(agent.logging, "shutdown", lambda: None)
    with agent.failing_hard("a test batch"):
        raise OperationalError("warehouse gone")
    assert exits == [agent.BATCH_FAILED_EXIT]
    with agent.failing_hard("a good batch"):
        pass
    assert exits == [agent.BATCH_FAILED_EXIT]


def test_a_tick_handles_a_bounded_number_of_timeouts_earliest_first() -> None:
    store, directory = MemoryStore(), NoConsent()
    # message id → (partition, deadline): expired deadlines in no particular order.
    due = {f"m{i}": (i % 2, T0 - 1_000 * (i % 7) - i) for i in range(25)}
    for message_id, (partition, deadline) in due.items():
        store.put(message_key(message_id), partition, awaiting(message_id, deadline))
    d = dispatcher(store, directory, tick_max_messages=10)
    d.rebuild(0)
    d.rebuild(1)
    assert d.pending() == 25

    def fallen_back() -> set[str]:
        return {m for m, (p, _) in due.items() if store.get(message_key(m), p).stage == "sent"}

    asyncio.run(d.tick(T0))
    earliest = sorted(due, key=lambda m: due[m][1])
    assert fallen_back() == set(earliest[:10]) and d.pending() == 15
    asyncio.run(d.tick(T0))
    assert fallen_back() == set(earliest[:20])
    asyncio.run(d.tick(T0))
    assert fallen_back() == set(due) and d.pending() == 0
    assert directory.lookups == 3  # one contact lookup per tick, not per message
