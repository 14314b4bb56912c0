"""The dispatcher's processor: decisions, delivery receipts, commands and the clock in;
provider calls made, records updated and receipts out.

The Faust agent (``pipeline.dispatch.agent``) feeds batches and ships ``drain()``
(receipts first, then the table flush, then Faust commits offsets). A message
is handled once: its record exists from the batch that read its decision.

Neither Meta's Cloud API nor Twilio deduplicates a resend, and a duplicate marketing
message is worse than a missing one. So every provider call is preceded by its
*intent*: the record, in stage ``sending`` on that channel, is stored and flushed
(``checkpoint``) before the request leaves. An intent whose answer never came (the
dispatcher died mid-call; a connection dropped after the request went out) is not
resent: a status webhook that names the message reconciles it (the provider took
it, or failed it, and the fallback goes on from there); with none within
``send_unknown_after_s`` it ends ``unknown``, with the reason.
"""

import asyncio
import dataclasses
import heapq
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from clickhouse_connect.driver.exceptions import OperationalError
from pydantic import ValidationError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from pipeline.dispatch import policy, pricing
from pipeline.dispatch.catalog import Catalog, NoCatalog
from pipeline.dispatch.channels import Channel, Outgoing, SendResult
from pipeline.dispatch.directory import Contact, Directory
from pipeline.dispatch.records import (
    EXPIRY_PREFIX,
    INDEX_MARK,
    PENDING_PREFIX,
    IndexEntry,
    MessageRecord,
    Record,
    UserRecord,
    expiry_key,
    message_key,
    parse_expiry_key,
    pending_key,
    user_key_of,
)
from pipeline.dispatch.send_hours import HourSnapshot
from pipeline.dispatch.settings import DispatchSettings
from pipeline.domain.rules import Rules, default_rules
from pipeline.engine.outputs import Record as OutRecord
from pipeline.metrics import DISPATCH_OUTCOMES
from schemas import pii
from schemas.bandit import Snapshot, variant_at
from schemas.catalog import Product
from schemas.messages import (
    HELD_UNTIL_PREFIX,
    SEND_TIME_UNTIL_PREFIX,
    CampaignMessage,
    Nudge,
    NudgeCancellation,
    NudgeHeld,
    Receipt,
    VipUpgrade,
    load_decision,
)
from schemas.receipt_ids import receipt_id
from schemas.templates import TEMPLATES, Tracking, render
from schemas.time import epoch_ms, from_ms

log = logging.getLogger(__name__)

PROVIDER_STATUSES = frozenset({"accepted", "delivered", "read", "clicked", "failed"})
DELIVERED = frozenset({"delivered", "read", "clicked"})
# A webhook that shows the provider took the message (enough to reconcile an intent).
TAKEN = DELIVERED | {"accepted"}
# Why a send ended "unknown": its answer was lost and no webhook named it in time.
NO_ANSWER = "no_provider_answer"


class RecordStore(Protocol):
    def get(self, key: str, partition: int) -> Record | None: ...
    def put(self, key: str, partition: int, state: Record) -> None: ...
    def delete(self, key: str, partition: int) -> None: ...
    def scan(self, partition: int) -> Iterable[tuple[str, Record]]: ...
    def scan_prefix(self, partition: int, prefix: str) -> Iterable[tuple[str, Record]]: ...


@dataclass(slots=True)
class _Work:
    partition: int
    record: MessageRecord
    why: str | None = None
    resume: bool = False  # a held record re-evaluated


def held_until(ms: int, prefix: str = HELD_UNTIL_PREFIX) -> str:
    """A ``held`` receipt's detail: quiet hours, and when they end (UTC); or, with
    ``SEND_TIME_UNTIL_PREFIX``, the best hour, and when it starts."""
    return prefix + from_ms(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


# A hold's reason → its ``held`` receipt's detail prefix.
_HELD_PREFIX = {"quiet_hours": HELD_UNTIL_PREFIX, "send_time": SEND_TIME_UNTIL_PREFIX}


class Dispatcher:
    def __init__(
        self,
        store: RecordStore,
        directory: Directory,
        channels: dict[str, Channel],
        settings: DispatchSettings,
        receipts_topic: str,
        rules: Rules | None = None,
        checkpoint: Callable[[], Awaitable[None]] | None = None,
        catalog: Catalog | NoCatalog | None = None,
    ) -> None:
        self.store = store
        # Makes what was saved so far durable (records, receipts): the agent's ship.
        self._checkpoint = checkpoint or _nothing
        # Quiet hours, their maximum hold, the maximum ages, the channel plan per country
        # and the WhatsApp templates: the engine's rules file.
        self.rules = rules or default_rules()
        self.send_rules = policy.SendRules.of(self.rules)
        # What messages say about their products.
        self.catalog = catalog or NoCatalog()
        self.directory = directory
        self.channels = channels
        self.settings = settings
        self.receipts_topic = receipts_topic
        self.paused: frozenset[str] = frozenset()
        # kind → the variant bandit's recorded snapshots, oldest first (the agent loads
        # them from the warehouse on a poll): a nudge's variant is chosen with the one
        # in force at its decision time.
        self.snapshots: dict[str, list[Snapshot]] = {}
        # The learned send hours' recorded snapshots, oldest first (loaded likewise, only
        # when a rule sends at the best hour): a nudge is aimed with the one in force at
        # its decision time (policy.aim).
        self.hour_snapshots: list[HourSnapshot] = []
        self._out: list[OutRecord] = []
        self._audit: list[list[Any]] = []
        # partition → message id → (deadline ms, held): held and awaiting messages.
        self._deadlines: dict[int, dict[str, tuple[int, bool]]] = {}
        # partition → no delivery-timeout fallback before this (ms): set on assignment.
        self._grace_until: dict[int, int] = {}
        self._sending = asyncio.Semaphore(settings.send_concurrency)

    def drain(self) -> list[OutRecord]:
        out, self._out = self._out, []
        return out

    def drain_audit(self) -> list[list[Any]]:
        rows, self._audit = self._audit, []
        return rows

    # --- index -------------------------------------------------------------------

    def _index(self, partition: int, record: MessageRecord) -> None:
        deadlines = self._deadlines.setdefault(partition, {})
        if _pending(record):
            # A paused channel is looked at every tick; quiet hours and the best hour only
            # at their deadline.
            every_tick = record.stage == "held" and record.hold == "channels_paused"
            deadlines[record.message_id] = (record.deadline_ms, every_tick)
        else:
            deadlines.pop(record.message_id, None)

    def rebuild(self, partition: int, now_ms: int | None = None) -> int:
        """After an assignment: index the held and awaiting messages stored on the partition.

        Reads only the pending index (``p:`` keys), so its cost is what is in flight, not
        every message ever sent; a partition stored before the index existed is scanned
        once to build it. With ``now_ms``, delivery timeouts wait ``fallback_grace_s`` from
        then, so that "delivered" receipts which arrived while no dispatcher owned the
        partition are read before any SMS is sent in their place.
        """
        self._deadlines[partition] = {}
        if now_ms is not None:
            self._grace_until[partition] = now_ms + int(self.settings.fallback_grace_s * 1000)
        if self.store.get(INDEX_MARK, partition) is None:
            self._build_indexes(partition, now_ms)
        for key, _ in list(self.store.scan_prefix(partition, PENDING_PREFIX)):
            record = self.store.get(message_key(key[len(PENDING_PREFIX) :]), partition)
            if isinstance(record, MessageRecord):
                self._index(partition, record)
            else:
                self.store.delete(key, partition)  # its message was erased
        return len(self._deadlines[partition])

    def _build_indexes(self, partition: int, now_ms: int | None) -> None:
        """Once per partition stored before the indexes: the full scan they replace."""
        records = [r for _, r in self.store.scan(partition) if isinstance(r, MessageRecord)]
        for record in records:
            if _pending(record):
                self.store.put(pending_key(record.message_id), partition, IndexEntry(now_ms or 0))
            elif record.expires_ms is None:
                self._save(partition, record, record.created_ms if now_ms is None else now_ms)
        self.store.put(INDEX_MARK, partition, IndexEntry(now_ms or 0))

    def _expires(self, record: MessageRecord, now_ms: int) -> int:
        """A finished record is kept ``record_retention_s``, and at least until its decision
        is too old to send: a re-delivery before then must still find it."""
        keep = now_ms + int(self.settings.record_retention_s * 1000)
        max_age = self.send_rules.max_age_ms.get(record.kind)
        if max_age is None or record.forced:
            return keep
        triggered = record.created_ms if record.triggered_ms is None else record.triggered_ms
        return max(keep, triggered + max_age + 1)

    def expire(self, now_ms: int) -> int:
        """Delete finished records whose time has come, earliest first, at most
        ``tick_max_messages`` per call; their ids leave the user's record too."""
        budget = self.settings.tick_max_messages
        removed = 0
        for partition in list(self._deadlines):
            due: list[tuple[str, int, str]] = []
            for key, _ in self.store.scan_prefix(partition, EXPIRY_PREFIX):
                at, message_id = parse_expiry_key(key)
                if at > now_ms or len(due) >= budget - removed:
                    break
                due.append((key, at, message_id))
            for key, at, message_id in due:
                self.store.delete(key, partition)
                record = self.store.get(message_key(message_id), partition)
                if not isinstance(record, MessageRecord) or record.expires_ms != at:
                    continue  # erased, or pending again: nothing of it to delete here
                self.store.delete(message_key(message_id), partition)
                self._forget_message(record.user_key, message_id, partition, now_ms)
                removed += 1
            if removed >= budget:
                break
        return removed

    def _forget_message(self, user_key: str, message_id: str, partition: int, now_ms: int) -> None:
        user = self.store.get(user_key_of(user_key), partition)
        if not isinstance(user, UserRecord):
            return
        user.messages = [m for m in user.messages if m != message_id]
        if not user.messages and user.sent_within_day(now_ms) == 0:
            self.store.delete(user_key_of(user_key), partition)
        else:
            self.store.put(user_key_of(user_key), partition, user)

    def forget(self, partitions: set[int]) -> None:
        for partition in partitions:
            self._deadlines.pop(partition, None)
            self._grace_until.pop(partition, None)

    def pending(self) -> int:
        return sum(len(d) for d in self._deadlines.values())

    # --- records -----------------------------------------------------------------

    def _user(self, user_key: str, partition: int) -> UserRecord:
        found = self.store.get(user_key_of(user_key), partition)
        return found if isinstance(found, UserRecord) else UserRecord()

    def _save(self, partition: int, record: MessageRecord, now_ms: int) -> None:
        was_pending = record.message_id in self._deadlines.get(partition, {})
        pending = _pending(record)
        if pending and record.expires_ms is not None:  # finished no more (not expected)
            self.store.delete(expiry_key(record.expires_ms, record.message_id), partition)
            record.expires_ms = None
        elif not pending and record.outcome is not None and record.expires_ms is None:
            record.expires_ms = self._expires(record, now_ms)
            key = expiry_key(record.expires_ms, record.message_id)
            self.store.put(key, partition, IndexEntry(now_ms))
        self.store.put(message_key(record.message_id), partition, record)
        if pending and not was_pending:
            self.store.put(pending_key(record.message_id), partition, IndexEntry(now_ms))
        elif was_pending and not pending:
            self.store.delete(pending_key(record.message_id), partition)
        self._index(partition, record)

    def _receipt(
        self,
        record: MessageRecord,
        status: str,
        now_ms: int,
        channel: str | None = None,
        detail: str | None = None,
        provider_message_id: str | None = None,
        cost: float | None = None,
    ) -> None:
        receipt = Receipt(
            receipt_id=receipt_id(record.message_id, channel, status, detail or ""),
            message_id=record.message_id,
            kind=record.kind,  # type: ignore[arg-type]
            user_key=record.user_key,
            campaign_id=record.content.get("campaign_id"),
            channel=channel,  # type: ignore[arg-type]
            status=status,  # type: ignore[arg-type]
            at=from_ms(now_ms),
            provider_message_id=provider_message_id,
            detail=detail,
            cost=cost,
            currency=None if cost is None else self.rules.dispatch.rate_card.currency,
            variant=record.variant,
            send_arm=record.send_arm,  # type: ignore[arg-type]
            send_hour=record.send_hour,
        )
        self._out.append((self.receipts_topic, record.user_key.encode(), receipt.to_json(), None))
        DISPATCH_OUTCOMES.labels(channel or "none", status).inc()

    # --- decisions ---------------------------------------------------------------

    async def on_decisions(self, items: list[tuple[int, bytes]], now_ms: int) -> None:
        work: list[_Work] = []
        reserved: dict[str, int] = {}
        for partition, value in items:
            try:
                decision = load_decision(value)
            except ValidationError:
                log.warning("partition %d: a decision that does not parse was skipped", partition)
                continue
            if isinstance(decision, NudgeCancellation):
                self._cancel(partition, decision, now_ms)
                continue
            if isinstance(decision, NudgeHeld):
                # Held by the engine; the nudge follows when the hold ends. Audited only.
                self._audit.append(_engine_audit_row(decision))
                continue
            if isinstance(decision, Nudge) and decision.status != "emit":
                # Recorded by the engine with its reason; nothing to send. Audited.
                self._audit.append(_engine_audit_row(decision))
                continue
            record = self._new_record(decision, now_ms)
            found = self.store.get(message_key(record.message_id), partition)
            if found is not None and not (
                isinstance(found, MessageRecord) and found.stage == "new"
            ):
                continue  # handled before: a re-delivery
            user = self._user(record.user_key, partition)
            if found is None:
                user.messages.append(record.message_id)
                self.store.put(user_key_of(record.user_key), partition, user)
            # else: stored by a batch that died before planning it (an earlier wave's
            # checkpoint made it durable); its batch is read again, so it is planned now.
            sent_today = user.sent_within_day(now_ms) + reserved.get(record.user_key, 0)
            if policy.cap_reached(sent_today, self.settings.daily_cap, record.forced):
                record.outcome = "suppressed"
                self._receipt(record, "suppressed", now_ms, detail="frequency_cap")
                self._save(partition, record, now_ms)
                continue
            reserved[record.user_key] = reserved.get(record.user_key, 0) + 1
            record.stage = "new"  # handled from here on; planned in this batch's waves
            self._save(partition, record, now_ms)
            work.append(_Work(partition, record))
        await self._run(work, now_ms)

    def _new_record(
        self, decision: Nudge | VipUpgrade | CampaignMessage, now_ms: int
    ) -> MessageRecord:
        if isinstance(decision, CampaignMessage):
            return _campaign_record(decision, now_ms)
        subjects = [decision.user_key]
        if decision.anonymous_id and decision.anonymous_id != decision.user_key:
            subjects.append(decision.anonymous_id)
        if isinstance(decision, VipUpgrade):
            message_id, kind = decision.token_id, "vip_upgrade"
            content = {"discount_percent": decision.discount_percent, "token": decision.token}
            triggered = decision.issued_at
        else:
            triggered = decision.triggered_at
            message_id, kind = decision.nudge_id, decision.kind
            product = decision.product_id or (
                decision.items[0].product_id if decision.items else None
            )
            content = {"discount_percent": decision.discount_percent, "product": product}
        forced = isinstance(decision, Nudge) and decision.origin == "admin_force"
        aimed = (
            policy.aim(
                self.send_rules,
                kind,
                message_id,
                decision.user_key,
                epoch_ms(decision.decided_at),
                decision.timezone,
                self.hour_snapshots,
                forced=forced,
            )
            if isinstance(decision, Nudge)
            else None
        )
        return MessageRecord(
            message_id=message_id,
            kind=kind,
            user_key=decision.user_key,
            subjects=subjects,
            created_ms=now_ms,
            forced=forced,
            content=content,
            triggered_ms=epoch_ms(triggered),
            timezone=decision.timezone,
            variant=self._variant(decision) if isinstance(decision, Nudge) else None,
            send_arm=None if aimed is None else aimed.arm,
            send_hour=None if aimed is None else aimed.hour,
            send_at_ms=None if aimed is None or aimed.hour is None else aimed.at_ms,
        )

    def _variant(self, nudge: Nudge) -> str | None:
        """An emitted nudge's variant, when its kind has some (the holdout's nudges are
        suppressed by the engine and never get here): chosen with the snapshot in force
        at its decision time, so a dispatcher catching up chooses what a timely one did."""
        if not getattr(self.rules.dispatch.templates, nudge.kind).variants:
            return None
        snapshots = self.snapshots.get(nudge.kind, [])
        return variant_at(snapshots, nudge.nudge_id, epoch_ms(nudge.decided_at))

    def _cancel(self, partition: int, cancellation: NudgeCancellation, now_ms: int) -> None:
        key = message_key(cancellation.nudge_id)
        record = self.store.get(key, partition)
        if isinstance(record, MessageRecord) and record.stage == "awaiting":
            # Already sent: too late to withdraw, but no SMS follows it.
            record.stage, record.deadline_ms = "sent", None
            self._save(partition, record, now_ms)
            return
        if isinstance(record, MessageRecord) and record.stage == "sending":
            # Its call's answer is still to come: whatever it says, no SMS follows it.
            record.content["cancelled"] = cancellation.reason
            self._save(partition, record, now_ms)
            return
        if isinstance(record, MessageRecord) and record.stage != "held":
            return
        if record is None:
            record = MessageRecord(
                cancellation.nudge_id,
                cancellation.kind,
                cancellation.user_key,
                [cancellation.user_key],
                now_ms,
            )
            user = self._user(record.user_key, partition)
            user.messages.append(record.message_id)
            self.store.put(user_key_of(record.user_key), partition, user)
        assert isinstance(record, MessageRecord)
        record.stage, record.deadline_ms, record.outcome = "done", None, "cancelled"
        self._receipt(record, "cancelled", now_ms, detail=cancellation.reason)
        self._save(partition, record, now_ms)

    # --- delivery receipts --------------------------------------------------------

    async def on_receipts(self, items: list[tuple[int, bytes]], now_ms: int) -> None:
        work: list[_Work] = []
        for partition, value in items:
            try:
                receipt = Receipt.model_validate_json(value)
            except ValidationError:
                log.warning("partition %d: a receipt that does not parse was skipped", partition)
                continue
            self._audit.append(_audit_row(receipt))
            # A click through our tracked link (api/routes/links.py) carries no provider id
            # but proves the message arrived on its channel, as a provider's "delivered" does.
            shopper_clicked = receipt.status == "clicked" and receipt.channel is not None
            if receipt.status not in PROVIDER_STATUSES or (
                receipt.provider_message_id is None and not shopper_clicked
            ):
                continue  # our own steps
            record = self.store.get(message_key(receipt.message_id), partition)
            if not isinstance(record, MessageRecord):
                continue
            if record.sending is not None and receipt.channel == record.sending:
                # An intent whose answer was lost: the provider's webhook says what happened
                # (after "unknown" too: the send is then known, but nothing follows it).
                late = record.stage != "sending"
                if receipt.status in TAKEN:
                    self._taken(
                        partition,
                        record,
                        receipt.channel,
                        receipt.provider_message_id,
                        now_ms,
                        detail="reconciled",
                    )
                    cancelled = bool(record.content.get("cancelled"))
                    if record.stage == "awaiting" and (
                        late or cancelled or receipt.status in DELIVERED
                    ):
                        record.stage, record.deadline_ms = "sent", None
                    self._save(partition, record, now_ms)
                elif receipt.status == "failed" and not late:
                    record.sending = None
                    if record.content.get("cancelled"):  # cancelled while in flight
                        self._finish(record, "cancelled", record.content["cancelled"], now_ms)
                        self._save(partition, record, now_ms)
                    else:
                        work.append(_Work(partition, record, why=f"{receipt.channel}_failed"))
                continue
            if receipt.status in DELIVERED:
                if record.stage == "awaiting" and receipt.channel == record.channel:
                    record.stage, record.deadline_ms = "sent", None
                    self._save(partition, record, now_ms)
                elif _late_delivery(record, receipt.channel):
                    # A WhatsApp delivery after the SMS went out: recorded, nothing sent.
                    record.late.append(str(receipt.channel))
                    self._save(partition, record, now_ms)
            elif (
                receipt.status == "failed"
                and record.stage == "awaiting"
                and receipt.channel == record.channel
            ):
                work.append(_Work(partition, record, why=f"{receipt.channel}_failed"))
            # "accepted" after the answer: the provider has it, as its answer said.
        await self._run(work, now_ms)

    # --- the clock ----------------------------------------------------------------

    async def tick(self, now_ms: int) -> None:
        """Delivery timeouts fall back; held messages are re-evaluated (resume, revoke, expiry).

        At most ``tick_max_messages`` per tick, earliest deadline first: a tick holds the
        agents' lock, and receipts read between ticks may make a fallback unnecessary.
        """
        due: list[tuple[int, int, str]] = []
        for partition, deadlines in self._deadlines.items():
            in_grace = now_ms < self._grace_until.get(partition, 0)
            for message_id, (deadline, held) in deadlines.items():
                if held or (deadline <= now_ms and not in_grace):
                    due.append((deadline, partition, message_id))
        work: list[_Work] = []
        for _, partition, message_id in heapq.nsmallest(self.settings.tick_max_messages, due):
            record = self.store.get(message_key(message_id), partition)
            if not isinstance(record, MessageRecord):
                self._deadlines[partition].pop(message_id, None)
            elif record.stage == "sending":
                # No answer and no webhook: it may have gone out, so it is never resent.
                self._sent_unknown(partition, record, now_ms)
            elif record.stage == "held":
                work.append(_Work(partition, record, resume=True))
            else:
                work.append(_Work(partition, record, why="delivery_timeout"))
        await self._run(work, now_ms)
        self.expire(now_ms)

    # --- commands -----------------------------------------------------------------

    def on_control(self, partition: int, value: bytes) -> None:
        """``{"command": "erase", "user_key": ...}``: drop the user's records for good."""
        try:
            command = orjson.loads(value)
            if command.get("command") != "erase" or not isinstance(command.get("user_key"), str):
                return  # commands for others
        except (orjson.JSONDecodeError, AttributeError):
            log.warning("partition %d: a control record that does not parse was skipped", partition)
            return
        user_key = command["user_key"]
        user = self.store.get(user_key_of(user_key), partition)
        if isinstance(user, UserRecord):
            for message_id in user.messages:
                record = self.store.get(message_key(message_id), partition)
                if isinstance(record, MessageRecord) and record.expires_ms is not None:
                    self.store.delete(expiry_key(record.expires_ms, message_id), partition)
                self.store.delete(pending_key(message_id), partition)
                self.store.delete(message_key(message_id), partition)
                self._deadlines.get(partition, {}).pop(message_id, None)
            self.store.delete(user_key_of(user_key), partition)

    # --- the warehouse --------------------------------------------------------------

    async def warehouse(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A blocking warehouse call in a thread: each try bounded by the client's
        ``send_receive_timeout``, network failures retried a few times, then raised."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(OperationalError),
            stop=stop_after_attempt(self.settings.warehouse_attempts),
            wait=wait_exponential_jitter(initial=0.2, max=2.0),
            reraise=True,
            before_sleep=lambda state: log.warning(
                "warehouse call failed (%s); retrying",
                type(state.outcome.exception()).__name__ if state.outcome else "?",
            ),
        ):
            with attempt:
                return await asyncio.to_thread(call, *args, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- stepping -----------------------------------------------------------------

    async def _run(self, work: list[_Work], now_ms: int) -> None:
        """Each message's next step; every provider call preceded by its stored intent.

        In waves of at most ``send_concurrency`` messages: plan each (send-time gate,
        channel), store their intents and checkpoint them, call the providers
        concurrently, take the answers. A crash mid-wave leaves at most one wave of
        intents without an answer (never resent); a refusal plans the fallback in the
        next round.
        """
        if not work:
            return
        subjects = {w.record.user_key: w.record.subjects for w in work}
        contacts = await self.warehouse(self.directory.contacts, subjects)
        countries = {user: self._calling_code(contact) for user, contact in contacts.items()}
        products = await self.warehouse(self.catalog.products, [product_of(w) for w in work])
        # Messages released from quiet hours in this run, per user: the cap counts them
        # before their sends are noted (the sends run concurrently).
        released: dict[str, int] = {}
        wave = self.settings.send_concurrency
        while work:
            fallbacks: list[_Work] = []
            for start in range(0, len(work), wave):
                sends: list[tuple[_Work, Contact, str]] = []
                for item in work[start : start + wave]:
                    user = item.record.user_key
                    contact = contacts.get(user, Contact())
                    item.record.calling_code = countries.get(user)
                    order = policy.channel_order(self.rules, item.record.calling_code)
                    channel = self._plan(item, contact, order, now_ms, released)
                    if channel is not None:
                        sends.append((item, contact, channel))
                if not sends:
                    continue
                await self._checkpoint()  # the intents are durable before a request leaves
                results = await asyncio.gather(
                    *(
                        self._send(
                            item.record, channel, contact, products.get(product_of(item)), now_ms
                        )
                        for item, contact, channel in sends
                    )
                )
                for (item, _, channel), (result, cost) in zip(sends, results, strict=True):
                    if self._answered(item, channel, result, cost, now_ms):
                        fallbacks.append(item)
            work = fallbacks

    def _calling_code(self, contact: Contact) -> str | None:
        """The country of the shopper's phone (WhatsApp's, else SMS's): the channel plan
        and the price follow it."""
        sealed = contact.phones.get("whatsapp") or contact.phones.get("sms")
        try:
            phone = None if sealed is None else self.directory.phone(sealed)
        except pii.PiiError:
            return None
        return pii.calling_code(phone) if phone is not None and pii.is_e164(phone) else None

    def _plan(
        self,
        work: _Work,
        contact: Contact,
        order: tuple[str, ...],
        now_ms: int,
        released: dict[str, int],
    ) -> str | None:
        """The channel to call next, its intent saved; None when nothing is sent now."""
        record, partition, why = work.record, work.partition, work.why
        consented = frozenset(contact.consented)
        if record.content.get("channels"):  # a campaign's channel policy
            consented &= frozenset(record.content["channels"])
        reach = policy.Reach(consented, self.paused, order)
        if not record.tried and self._not_now(work, reach, now_ms, released):
            self._save(partition, record, now_ms)
            return None
        step = policy.next_step(reach, tuple(record.tried), why)
        if isinstance(step, policy.Hold):
            if record.stage != "held" or record.hold != "channels_paused":
                record.stage, record.hold = "held", "channels_paused"
                record.deadline_ms = now_ms + int(self.settings.hold_max_s * 1000)
            elif record.deadline_ms is not None and now_ms >= record.deadline_ms:
                self._finish(record, "suppressed", "channels_paused", now_ms)
            self._save(partition, record, now_ms)
            return None
        if isinstance(step, policy.Stop):
            if step.status == "suppressed":
                # A held message whose consent went away was queued: it is cancelled.
                status, reason = (
                    ("cancelled", "consent_revoked") if work.resume else ("suppressed", step.reason)
                )
                self._finish(record, status, reason, now_ms)
            else:
                record.stage = "sent" if record.provider_ids else "done"
                record.deadline_ms = None
                record.outcome = record.outcome or ("sent" if record.provider_ids else "failed")
            self._save(partition, record, now_ms)
            return None
        if step.fallback_from is not None:
            self._receipt(record, "fallback", now_ms, step.fallback_from, step.reason)
        # Tried from the intent on: whatever happens to this call, it is never repeated.
        record.tried.append(step.channel)
        record.stage, record.sending, record.hold = "sending", step.channel, None
        record.deadline_ms = now_ms + int(self.settings.send_unknown_after_s * 1000)
        self._save(partition, record, now_ms)
        return step.channel

    def _answered(
        self, work: _Work, channel: str, result: SendResult, cost: float, now_ms: int
    ) -> bool:
        """Take a provider's answer; True when the next channel is to be tried."""
        record, partition = work.record, work.partition
        if result.unknown:
            # The request may have gone out: the intent waits for a webhook, or "unknown".
            log.info("%s answer for %s lost; awaiting its webhooks", channel, record.message_id)
            return False
        record.sending = None
        if result.error is not None:
            self._receipt(record, "failed", now_ms, channel, result.error)
            work.why = f"{channel}_failed"
            return True
        assert result.provider_message_id is not None
        self._taken(partition, record, channel, result.provider_message_id, now_ms, cost=cost)
        self._save(partition, record, now_ms)
        return False

    def _taken(
        self,
        partition: int,
        record: MessageRecord,
        channel: str,
        provider_message_id: str | None,
        now_ms: int,
        detail: str | None = None,
        cost: float | None = None,
    ) -> None:
        """The provider took the message on ``channel``: sent, priced, and counted for the
        cap. Without the answer's price (a reconciled send), the template's is assumed."""
        # An "unknown" send was counted for the cap when it ended so.
        first = not record.provider_ids and record.outcome != "unknown"
        record.sending = None
        record.provider_ids[channel] = provider_message_id or ""
        record.channel, record.outcome = channel, "sent"
        if cost is None:
            cost = self._list_price(record, channel)
        self._receipt(
            record,
            "sent",
            now_ms,
            channel,
            detail=detail,
            provider_message_id=provider_message_id,
            cost=cost,
        )
        if first:
            user = self._user(record.user_key, partition)
            user.note_send(now_ms)
            self.store.put(user_key_of(record.user_key), partition, user)
        if channel == policy.CHANNEL_ORDER[0]:
            record.stage = "awaiting"
            record.deadline_ms = now_ms + int(self.settings.delivery_timeout_s * 1000)
        else:
            record.stage, record.deadline_ms = "sent", None

    def _sent_unknown(self, partition: int, record: MessageRecord, now_ms: int) -> None:
        """An intent no answer or webhook ever settled: counted for the cap (it may have
        reached the shopper), never resent, ended with the reason."""
        if not record.provider_ids:
            user = self._user(record.user_key, partition)
            user.note_send(now_ms)
            self.store.put(user_key_of(record.user_key), partition, user)
        # ``sending`` stays: a webhook that comes later still settles what happened.
        record.stage, record.deadline_ms = "done", None
        record.outcome = "sent" if record.provider_ids else "unknown"
        self._receipt(record, "unknown", now_ms, record.sending, NO_ANSWER)
        self._save(partition, record, now_ms)

    def _not_now(
        self, work: _Work, reach: policy.Reach, now_ms: int, released: dict[str, int]
    ) -> bool:
        """The send-time gate before a message's first channel: expired, held for the
        shopper's best hour or for quiet hours, or (released from either) over the daily
        cap. True when it is not sent now.
        No consent at all is left to the channel step, which records it."""
        record = work.record
        if isinstance(policy.next_step(reach), policy.Stop):
            return False
        verdict = policy.at_send_time(
            self.send_rules,
            record.kind,
            record.created_ms if record.triggered_ms is None else record.triggered_ms,
            now_ms,
            record.timezone,
            held_since_ms=record.held_ms,
            forced=record.forced,
            # A campaign's own quiet hours (per member zone) are kept by its launcher.
            quiet_hours=record.kind != "campaign",
            aimed_ms=record.send_at_ms,
        )
        if isinstance(verdict, policy.Expire):
            self._finish(record, "expired", verdict.reason, now_ms)
            return True
        if isinstance(verdict, policy.Wait):
            if record.hold != verdict.reason or record.hold_until_ms != verdict.until_ms:
                detail = held_until(verdict.until_ms, _HELD_PREFIX[verdict.reason])
                self._receipt(record, "held", now_ms, detail=detail)
            record.stage, record.hold = "held", verdict.reason
            record.hold_until_ms = verdict.until_ms
            if verdict.reason == "quiet_hours":  # their maximum hold counts from here
                record.held_ms = now_ms if record.held_ms is None else record.held_ms
            record.deadline_ms = verdict.wake_ms
            return True
        if record.hold in ("quiet_hours", "send_time"):  # released: the cap is checked again
            record.hold = None
            user = self._user(record.user_key, work.partition)
            sent_today = user.sent_within_day(now_ms) + released.get(record.user_key, 0)
            if policy.cap_reached(sent_today, self.settings.daily_cap, record.forced):
                self._finish(record, "suppressed", "frequency_cap", now_ms)
                return True
            released[record.user_key] = released.get(record.user_key, 0) + 1
        return False

    def _finish(self, record: MessageRecord, status: str, reason: str, now_ms: int) -> None:
        record.stage, record.deadline_ms, record.outcome = "done", None, status
        self._receipt(record, status, now_ms, detail=reason)

    def _list_price(
        self, record: MessageRecord, channel: str, sms_text: str = "", free_form: bool = False
    ) -> float:
        card, code = self.rules.dispatch.rate_card, record.calling_code
        if channel == "sms":
            return pricing.sms_cost(card, sms_text or " ", code)
        if free_form:  # inside the service window: a service message
            return pricing.whatsapp_cost(card, None, code)
        template = getattr(self.rules.dispatch.templates, record.kind)
        return pricing.whatsapp_cost(card, template.category, code)

    async def _send(
        self,
        record: MessageRecord,
        channel: str,
        contact: Contact,
        product: Product | None,
        now_ms: int,
    ) -> tuple[SendResult, float]:
        """The provider's answer, and what the message costs if it was taken."""
        sealed = contact.phones.get(channel)
        if sealed is None:
            return SendResult(error="no_phone"), 0.0
        try:
            phone = self.directory.phone(sealed)
        except pii.PiiError:
            return SendResult(error="phone_unavailable"), 0.0
        content = record.content
        spec = getattr(self.rules.dispatch.templates, record.kind, None)
        templates = TEMPLATES
        variant = None if spec is None else spec.variant(record.variant)
        if variant is not None:
            templates = {
                **TEMPLATES,
                record.kind: dataclasses.replace(TEMPLATES[record.kind], **variant.texts()),
            }
            if variant.whatsapp_template is not None:
                spec = spec.model_copy(update={"name": variant.whatsapp_template})
        rendered = render(
            kind=record.kind,
            message_id=record.message_id,
            storefront_url=self.settings.storefront_url,
            discount_percent=float(content.get("discount_percent") or 0),
            product=product,
            token=content.get("token"),
            tracking=Tracking(
                self.settings.link_secret.get_secret_value(),
                self.settings.public_api_url,
                record.user_key,
            ),
            template_spec=spec,
            templates=templates,
        )
        # WhatsApp takes free-form only within 24 h of the shopper's last message to us.
        window_open = contact.window_open(channel, now_ms)
        outgoing = Outgoing(
            record.message_id, record.kind, record.user_key, phone, rendered, window_open
        )
        async with self._sending:
            result = await self.channels[channel].send(outgoing)
        free_form = window_open and channel == "whatsapp"
        return result, self._list_price(record, channel, rendered.sms, free_form)


def product_of(work: "_Work") -> str | None:
    return work.record.content.get("product")


def _campaign_record(message: CampaignMessage, now_ms: int) -> MessageRecord:
    return MessageRecord(
        message_id=message.message_id,
        kind="campaign",
        user_key=message.user_key,
        subjects=[message.user_key, *message.anonymous_ids],
        created_ms=now_ms,
        triggered_ms=epoch_ms(message.launched_at),
        content={
            "discount_percent": message.discount_percent,
            "product": message.product,
            "campaign_id": message.campaign_id,
            "channels": list(message.channels),
        },
    )


def _pending(record: MessageRecord) -> bool:
    return record.stage in ("held", "sending", "awaiting") and record.deadline_ms is not None


async def _nothing() -> None:
    return None


def _late_delivery(record: MessageRecord, channel: str | None) -> bool:
    return channel != record.channel and channel in record.tried and channel not in record.late


def _engine_audit_row(decision: Nudge | NudgeHeld) -> list[Any]:
    """A decision the engine did not emit (suppressed, or held for quiet hours), audited
    under its nudge id: every non-send leaves a trace, nothing personal in it."""
    if isinstance(decision, NudgeHeld):
        at, status = decision.held_at, "held"
        detail = held_until(epoch_ms(decision.release_at))
    else:
        at, status, detail = decision.decided_at, decision.status, decision.reason or ""
    return [
        receipt_id(decision.nudge_id, None, f"engine:{status}", detail),
        at,
        "engine",
        "message_state",
        decision.user_key,
        decision.nudge_id,
        "",
        status,
        detail,
    ]


def _audit_row(receipt: Receipt) -> list[Any]:
    actor = (
        "provider"
        if receipt.provider_message_id and receipt.status in PROVIDER_STATUSES
        else "dispatcher"
    )
    return [
        receipt.receipt_id,
        receipt.at,
        actor,
        "message_state",
        receipt.user_key,
        receipt.message_id,
        receipt.channel or "",
        receipt.status,
        receipt.detail or "",
    ]
