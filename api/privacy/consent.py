"""The collector's consent step: record every consent decision, seal the phone, strip it.

Runs before anything is produced: the event that reaches ``telemetry.raw``
carries ``phone_ref`` (the stored, encrypted copy) and ``phone_masked`` only,
and the decision is already in the store the dispatcher checks at send time,
so a revoke blocks sending before the event is even on the topic.

A consent that would replace a user's phone with another, sent with a public
write key, is kept pending (``phone_change_needs_verification``): it is not
produced, and is reported back to the caller as pending (docs/dispatch.md).
"""

import asyncio
import functools
import weakref

from api.deps import ResourcesDep, SettingsDep
from api.privacy.store import ConsentDecision, ConsentWrite, PrivacyStore
from schemas import pii
from schemas.events import Event


class ConsentStoreUnavailable(Exception):
    """The consent store could not record the decisions; nothing may be produced."""


@functools.lru_cache(maxsize=4)
def master_key(secret: str) -> pii.MasterKey:
    return pii.MasterKey.from_secret(secret)


def privacy_store(resources: ResourcesDep, settings: SettingsDep) -> PrivacyStore:
    return PrivacyStore(
        resources.clickhouse(), master_key(settings.pii_master_key.get_secret_value())
    )


def _decision(event: Event, trusted: bool) -> ConsentDecision:
    props = event.properties
    return ConsentDecision(
        user_key=event.key,
        channel=props["channel"],
        granted=props["granted"] is True,
        decided_at=event.timestamp,
        event_id=str(event.event_id),
        phone=props.get("phone"),
        # Without a purpose a consent is for transactional messages (order updates) only.
        purpose="marketing" if props.get("purpose") == "marketing" else "transactional",
        trusted=trusted,
    )


def _without_phone(event: Event, stored) -> Event:
    # Whatever the client sent under these names is not trusted either.
    props = {
        k: v for k, v in event.properties.items() if k not in ("phone", "phone_ref", "phone_masked")
    }
    if stored is not None:
        props["phone_ref"] = stored.phone_ref
        props["phone_masked"] = stored.masked
    return event.model_copy(update={"properties": props})


class ConsentRecorder:
    """Group commit, pipelined: the decisions of requests that arrive while a group is
    being planned go together in the next group, so concurrent batches share the
    warehouse round trips, and a group's inserts do not hold up the next group.

    Planning (the reads a phone change is checked against, and new data keys) runs one
    group at a time; up to ``max_writing`` planned groups are stored at once
    (``INTENTFLOW_CONSENT_WRITERS``; with one, a group forms while the previous one is
    planned and stored, the largest groups and the fewest statements). A group
    planned while an earlier one's phones may not be stored yet counts those phones as
    in use, so a write key cannot slip a second phone in between two writes: the check
    is as strict as when the writes ran one after the other. A group's callers get its
    answer once all of it is stored (or its error)."""

    def __init__(self, store: PrivacyStore, max_writing: int = 1) -> None:
        self._store = store
        self._waiting: list[tuple[list[ConsentDecision], asyncio.Future]] = []
        self._planner: asyncio.Task | None = None
        self._writing = asyncio.Semaphore(max_writing)
        self._writes: set[asyncio.Task] = set()
        # Phone hashes per user key that planned groups put in use, until stored.
        self._unwritten: list[dict[str, set[str]]] = []

    async def record(self, decisions: list[ConsentDecision]) -> dict:
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((decisions, done))
        if self._planner is None or self._planner.done():
            self._planner = asyncio.create_task(self._plan_while_waiting())
        return await done

    def _in_use_unwritten(self) -> dict[str, set[str]]:
        merged: dict[str, set[str]] = {}
        for phones in self._unwritten:
            for user_key, hashes in phones.items():
                merged.setdefault(user_key, set()).update(hashes)
        return merged

    async def _plan_while_waiting(self) -> None:
        while self._waiting:
            # A free writer first: while all are busy, more requests join the group.
            await self._writing.acquire()
            group, self._waiting = self._waiting, []
            try:
                planned = await asyncio.to_thread(
                    self._store.plan,
                    [d for decisions, _ in group for d in decisions],
                    self._in_use_unwritten(),
                )
            except Exception as exc:
                self._writing.release()
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                continue
            self._unwritten.append(planned.phones)
            task = asyncio.create_task(self._write(planned, group))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _write(self, planned: ConsentWrite, group: list) -> None:
        try:
            await asyncio.to_thread(self._store.write, planned)
        except Exception as exc:
            for _, done in group:
                if not done.done():
                    done.set_exception(exc)
        else:
            for _, done in group:
                if not done.done():
                    done.set_result(planned.stored)
        finally:
            self._unwritten.remove(planned.phones)
            self._writing.release()


# One recorder per API process (per Resources), made on first use.
_recorders: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def protect_consents(
    events: list[Event], resources: ResourcesDep, settings: SettingsDep, trusted: bool = False
) -> tuple[list[Event], list[dict]]:
    """The events to produce (consents recorded, their phones replaced by a reference)
    and the consents kept pending (``{"event_id", "reason"}``), which are not produced.

    ``trusted``: sent with the server key, so a consent may replace a user's phone."""
    consents = [event for event in events if event.name == "consent"]
    if not consents:
        return events, []
    try:
        recorder = _recorders.get(resources)
        if recorder is None:
            # Building the store connects to the warehouse: inside the guard.
            recorder = _recorders[resources] = ConsentRecorder(
                privacy_store(resources, settings), settings.consent_writers
            )
        stored = await recorder.record([_decision(e, trusted) for e in consents])
    except Exception as exc:
        raise ConsentStoreUnavailable(type(exc).__name__) from exc
    produce, pending = [], []
    for event in events:
        phone = stored.get(str(event.event_id)) if event.name == "consent" else None
        if phone is not None and phone.pending:
            pending.append({"event_id": str(event.event_id), "reason": phone.pending})
        elif event.name == "consent":
            produce.append(_without_phone(event, phone))
        else:
            produce.append(event)
    return produce, pending
