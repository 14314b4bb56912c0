"""Send intents: providers have no idempotency keys, so no provider call is ever repeated.

Every call is preceded by its intent, stored and checkpointed; a dispatcher that dies
after the checkpoint and before the answer finds the intent on restart: a webhook
naming the message reconciles it, and without one it ends "unknown", never resent.
A crash here is what it is in the agent: what was not checkpointed is lost, and the
batch is read again.
"""

import asyncio
import contextlib
import copy
from collections import Counter
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.dispatch.channels import Outgoing, SendResult
from pipeline.dispatch.dispatcher import NO_ANSWER, Dispatcher
from pipeline.dispatch.records import MessageRecord, message_key
from pipeline.domain.rules import default_rules
from pipeline.metrics import DISPATCH_OUTCOMES
from schemas.messages import NudgeCancellation, Receipt
from schemas.receipt_ids import receipt_id
from schemas.time import epoch_ms

from .test_fallback_grace import MemoryStore
from .test_fallback_grace import settings as dispatch_settings
from .test_send_time import DAY_ZONE, NIGHT, Reachable, nudge, receipts, steps

NOW_MS = epoch_ms(NIGHT + timedelta(minutes=1))
UNKNOWN_AFTER_MS = 120_000


class Crash(BaseException):
    """The process dying mid-call (not an Exception: nothing may catch it)."""


class Provider:
    """A provider that takes every request it receives, and may leave one unanswered."""

    def __init__(self, channel: str, calls: list[tuple[str, str]]) -> None:
        self.channel = channel
        self.calls = calls  # (message id, channel): what the provider received, in order
        self.crash_on: int | None = None  # the call that never gets its answer back
        self.answer: SendResult | None = None  # instead of success

    async def send(self, message: Outgoing) -> SendResult:
        await asyncio.sleep(0)
        self.calls.append((message.message_id, self.channel))
        if self.crash_on is not None and len(self.calls) == self.crash_on:
            raise Crash
        return self.answer or SendResult(provider_message_id=f"{self.channel}-{len(self.calls)}")


class Checkpoints:
    """The agent's ship: what the store holds when called is what survives a crash."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.durable: dict[int, dict[str, Any]] = {}
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1
        self.durable = copy.deepcopy(self.store.data)


def dispatcher(calls: list[tuple[str, str]], store: MemoryStore | None = None):
    store = store or MemoryStore()
    checkpoints = Checkpoints(store)
    providers = {c: Provider(c, calls) for c in ("whatsapp", "sms")}
    d = Dispatcher(
        store,
        Reachable(),  # type: ignore[arg-type]
        providers,  # type: ignore[arg-type]
        dispatch_settings(send_unknown_after_s=UNKNOWN_AFTER_MS / 1000, send_concurrency=2),
        "receipts",
        default_rules(),
        checkpoint=checkpoints,
    )
    return d, store, providers, checkpoints


def day_nudge(n: int) -> Any:
    # Daytime in the shopper's zone, fresh: nothing holds it back.
    return nudge(n, timezone=DAY_ZONE, user_key=f"u{n}")


def decide(d: Dispatcher, decisions: list[Any], now_ms: int = NOW_MS) -> None:
    asyncio.run(d.on_decisions([(0, x.to_json()) for x in decisions], now_ms))


def webhook(message_id: str, user: str, status: str, channel: str = "whatsapp") -> bytes:
    return Receipt(
        receipt_id=receipt_id(message_id, channel, status, "webhook"),
        message_id=message_id,
        kind="high_intent",
        user_key=user,
        channel=channel,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        at=NIGHT,
        provider_message_id=f"wamid.{message_id}",
        detail="131026" if status == "failed" else None,
    ).to_json()


def restart(calls: list[tuple[str, str]], checkpoints: Checkpoints):
    """A new dispatcher on what the last checkpoint made durable."""
    store = MemoryStore()
    store.data = copy.deepcopy(checkpoints.durable)
    d, store, providers, new_checkpoints = dispatcher(calls, store)
    d.rebuild(0, NOW_MS)
    return d, store, providers, new_checkpoints


def crash_mid_send(calls: list[tuple[str, str]], n: Any) -> tuple[Dispatcher, MemoryStore]:
    """The dispatcher dies in its first provider call, and is restarted."""
    d, _, providers, checkpoints = dispatcher(calls)
    providers["whatsapp"].crash_on = 1
    with contextlib.suppress(Crash):
        decide(d, [n])
    d, store, _, _ = restart(calls, checkpoints)
    return d, store


def test_the_intent_is_checkpointed_before_the_provider_sees_the_request() -> None:
    calls: list[tuple[str, str]] = []
    d, store, providers, checkpoints = dispatcher(calls)
    seen: list[tuple[int, str | None]] = []
    original = providers["whatsapp"].send

    async def spying(message: Outgoing) -> SendResult:
        durable = checkpoints.durable.get(0, {}).get(message_key(message.message_id))
        seen.append((checkpoints.count, durable.stage if durable else None))
        return await original(message)

    providers["whatsapp"].send = spying  # type: ignore[method-assign]
    decide(d, [day_nudge(1)])
    assert seen == [(1, "sending")]
    record = store.get(message_key(day_nudge(1).nudge_id), 0)
    assert isinstance(record, MessageRecord)
    assert (record.stage, record.sending, record.outcome) == ("awaiting", None, "sent")


def test_a_crash_mid_send_is_reconciled_by_the_providers_webhook_never_resent() -> None:
    calls: list[tuple[str, str]] = []
    n = day_nudge(1)
    d, store = crash_mid_send(calls, n)
    decide(d, [n])  # the uncommitted batch, read again
    assert calls == [(n.nudge_id, "whatsapp")]
    asyncio.run(d.on_receipts([(0, webhook(n.nudge_id, "u1", "accepted"))], NOW_MS))
    assert ("sent", "reconciled") in steps(d)
    record = store.get(message_key(n.nudge_id), 0)
    assert isinstance(record, MessageRecord) and record.stage == "awaiting"
    assert record.provider_ids == {"whatsapp": f"wamid.{n.nudge_id}"}
    assert calls == [(n.nudge_id, "whatsapp")]


def test_a_crash_mid_send_without_a_webhook_ends_unknown_and_counts_for_the_cap() -> None:
    calls: list[tuple[str, str]] = []
    n = day_nudge(1)
    d, store = crash_mid_send(calls, n)
    asyncio.run(d.tick(NOW_MS + UNKNOWN_AFTER_MS - 1))
    assert steps(d) == []
    asyncio.run(d.tick(NOW_MS + UNKNOWN_AFTER_MS))
    assert steps(d) == [("unknown", NO_ANSWER)]
    record = store.get(message_key(n.nudge_id), 0)
    assert isinstance(record, MessageRecord)
    assert (record.stage, record.outcome) == ("done", "unknown")
    assert d._user("u1", 0).sent_within_day(NOW_MS + UNKNOWN_AFTER_MS) == 1
    asyncio.run(d.tick(NOW_MS + 10 * UNKNOWN_AFTER_MS))
    assert calls == [(n.nudge_id, "whatsapp")]  # never resent, no SMS in its place
    # A webhook that comes after all: the send is known, counted once, nothing follows.
    later = NOW_MS + 11 * UNKNOWN_AFTER_MS
    asyncio.run(d.on_receipts([(0, webhook(n.nudge_id, "u1", "delivered"))], later))
    assert steps(d) == [("sent", "reconciled")]
    record = store.get(message_key(n.nudge_id), 0)
    assert isinstance(record, MessageRecord)
    assert (record.stage, record.outcome, record.deadline_ms) == ("sent", "sent", None)
    assert d._user("u1", 0).sent_within_day(later) == 1
    asyncio.run(d.tick(later + 10 * UNKNOWN_AFTER_MS))
    assert calls == [(n.nudge_id, "whatsapp")]


def test_a_lost_answer_then_a_failed_webhook_falls_back_to_sms_once() -> None:
    calls: list[tuple[str, str]] = []
    d, _, providers, _ = dispatcher(calls)
    providers["whatsapp"].answer = SendResult(unknown=True)
    n = day_nudge(1)
    decide(d, [n])
    assert [s for s, _ in steps(d)] == []  # neither sent nor failed: not known yet
    asyncio.run(d.on_receipts([(0, webhook(n.nudge_id, "u1", "failed"))], NOW_MS + 5_000))
    assert [r.status for r in receipts(d)] == ["fallback", "sent"]
    asyncio.run(d.tick(NOW_MS + 10 * UNKNOWN_AFTER_MS))
    assert calls == [(n.nudge_id, "whatsapp"), (n.nudge_id, "sms")]


@settings(max_examples=60, deadline=None)
@given(
    messages=st.integers(min_value=1, max_value=6),
    failing=st.sets(st.integers(min_value=1, max_value=6)),
    crashes=st.lists(st.integers(min_value=1, max_value=12), max_size=3),
    webhooks=st.booleans(),
)
def test_whatever_the_crashes_no_message_reaches_a_channel_twice(
    messages: int, failing: set[int], crashes: list[int], webhooks: bool
) -> None:
    """Crash at any call (several times), restart from the last checkpoint, read the batch
    again, deliver (or not) the webhooks of what the provider took: each (message,
    channel) is called at most once, every message ends sent, failed or unknown, and a
    crash costs at most one wave of unknowns."""
    calls: list[tuple[str, str]] = []
    decisions = [day_nudge(n) for n in range(1, messages + 1)]
    failing_ids = {day_nudge(n).nudge_id for n in failing}
    d, _, providers, checkpoints = dispatcher(calls)

    def arm(providers: dict[str, Provider]) -> None:
        crash_at = next((c for c in sorted(crashes) if c > len(calls)), None)
        for provider in providers.values():
            provider.crash_on = crash_at

    for _ in range(len(crashes) + 1):
        arm(providers)
        try:
            decide(d, decisions)
            break
        except Crash:
            d, _, providers, checkpoints = restart(calls, checkpoints)
    arm(providers)
    for _ in range(len(crashes) + 1):
        try:
            if webhooks:  # the provider reports on each message it took
                items = [
                    (
                        0,
                        webhook(
                            m, f"u{int(m, 16)}", "failed" if m in failing_ids else "accepted", c
                        ),
                    )
                    for m, c in calls
                ]
                asyncio.run(d.on_receipts(items, NOW_MS + 1_000))
            asyncio.run(d.tick(NOW_MS + 10 * UNKNOWN_AFTER_MS))
            asyncio.run(d.tick(NOW_MS + 20 * UNKNOWN_AFTER_MS))
            break
        except Crash:
            d, _, providers, checkpoints = restart(calls, checkpoints)
            arm(providers)
    assert len(calls) == len(set(calls)), calls
    store = d.store
    records = [store.get(message_key(n.nudge_id), 0) for n in decisions]
    # A crash leaves at most one wave (send_concurrency) of calls without an answer.
    unknown = sum(1 for r in records if isinstance(r, MessageRecord) and r.outcome == "unknown")
    assert unknown <= 2 * len(crashes)
    for n in decisions:
        record = store.get(message_key(n.nudge_id), 0)
        assert isinstance(record, MessageRecord), n.nudge_id
        assert record.stage in ("awaiting", "sent", "done"), record
        assert record.outcome in ("sent", "failed", "unknown"), record
        assert record.sending is None or record.stage == "done", record  # an unknown call


def test_a_tracked_click_proves_delivery_and_stops_the_sms_fallback() -> None:
    calls: list[tuple[str, str]] = []
    d, store, _, _ = dispatcher(calls)
    n = day_nudge(1)
    decide(d, [n])
    click = Receipt(
        receipt_id=receipt_id(n.nudge_id, "whatsapp", "clicked", "tracked_link"),
        message_id=n.nudge_id,
        kind="high_intent",
        user_key="u1",
        channel="whatsapp",
        status="clicked",
        at=NIGHT,
        detail="tracked_link",  # our redirect's receipt: no provider id
    ).to_json()
    asyncio.run(d.on_receipts([(0, click)], NOW_MS + 1_000))
    record = store.get(message_key(n.nudge_id), 0)
    assert isinstance(record, MessageRecord) and record.stage == "sent"
    asyncio.run(d.tick(NOW_MS + 3_600_000))  # long past the delivery timeout
    assert calls == [(n.nudge_id, "whatsapp")]


def test_a_cancellation_while_the_answer_is_lost_stops_the_fallback() -> None:
    """An order placed while a lost WhatsApp send awaits its webhooks: a later "failed"
    must not bring the SMS to a shopper who has bought."""
    calls: list[tuple[str, str]] = []
    d, store, providers, _ = dispatcher(calls)
    providers["whatsapp"].answer = SendResult(unknown=True)
    n = day_nudge(1)
    decide(d, [n])
    cancel = NudgeCancellation(
        nudge_id=n.nudge_id,
        kind="high_intent",
        user_key="u1",
        reason="order_placed",
        at=NIGHT,
        rules_version="r1",
        trigger_event_id="e2",
    )
    decide(d, [cancel])
    asyncio.run(d.on_receipts([(0, webhook(n.nudge_id, "u1", "failed"))], NOW_MS + 5_000))
    assert ("cancelled", "order_placed") in steps(d)
    asyncio.run(d.tick(NOW_MS + 10 * UNKNOWN_AFTER_MS))
    assert calls == [(n.nudge_id, "whatsapp")]
    record = store.get(message_key(n.nudge_id), 0)
    assert isinstance(record, MessageRecord) and record.outcome == "cancelled"


def test_the_providers_accepted_webhook_after_its_answer_starts_no_fallback() -> None:
    # Meta's "sent" status (our "accepted") routinely arrives after the send's answer.
    # It says the provider has the message: nothing fails, no SMS follows.
    calls: list[tuple[str, str]] = []
    d, store, _, _ = dispatcher(calls)
    n = day_nudge(1)
    decide(d, [n])
    asyncio.run(d.on_receipts([(0, webhook(n.nudge_id, "u1", "accepted"))], NOW_MS + 1_000))
    record = store.get(message_key(n.nudge_id), 0)
    assert isinstance(record, MessageRecord) and record.stage == "awaiting"
    asyncio.run(d.on_receipts([(0, webhook(n.nudge_id, "u1", "read"))], NOW_MS + 2_000))
    asyncio.run(d.tick(NOW_MS + 10 * UNKNOWN_AFTER_MS))
    assert calls == [(n.nudge_id, "whatsapp")]
    assert "fallback" not in [r.status for r in receipts(d)]


def test_every_receipt_written_is_counted_by_channel_and_status() -> None:
    def outcomes() -> Counter:
        return Counter(
            {
                (s.labels["channel"], s.labels["status"]): s.value
                for metric in DISPATCH_OUTCOMES.collect()
                for s in metric.samples
                if s.name.endswith("_total")
            }
        )

    before = outcomes()
    d, _, _, _ = dispatcher([])
    decide(d, [day_nudge(1), day_nudge(2)])
    written = Counter((r.channel or "none", r.status) for r in receipts(d))
    assert written[("whatsapp", "sent")] == 2
    assert outcomes() - before == written
