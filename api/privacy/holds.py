"""Which events of a request must wait for a consent write, and which may go at once.

A consent is recorded (and its phone sealed) before anything of its shopper is
produced (api/privacy/consent.py). Other shoppers of the same request need not
wait for that write: their events are produced while it is in flight. A shopper
is held when the request holds a consent naming one of their ids (``user_id`` or
``anonymous_id``: an identified consent and the same browser's anonymous events
are one shopper), or when an earlier request of this process is still holding
them. All of a held shopper's events wait, in their order, so the topic keeps
each shopper's order: within a request, and across this process's requests
(a later request's events of that shopper go after the earlier ones).
"""

import asyncio
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from schemas.events import Event


def _ids(event: Event) -> tuple[str, ...]:
    return (event.anonymous_id, event.user_id) if event.user_id else (event.anonymous_id,)


class UserHolds:
    """The shoppers whose events wait for a consent write, per API process."""

    def __init__(self) -> None:
        # id → resolved when the request holding it has produced (or failed).
        self._holds: dict[str, asyncio.Future[None]] = {}

    def split(self, events: list[Event]) -> tuple[list[Event], list[Event]]:
        """(held, free): the events that wait for a consent write, and the others."""
        held_ids = {i for event in events if event.name == "consent" for i in _ids(event)}
        holds = self._holds
        if not held_ids and not holds:
            return [], events
        held: list[Event] = []
        free: list[Event] = []
        for event in events:
            ids = _ids(event)
            if any(i in held_ids or i in holds for i in ids):
                held.append(event)
            else:
                free.append(event)
        return held, free

    @contextmanager
    def holding(self, held: list[Event]) -> Iterator[list[asyncio.Future[None]]]:
        """Hold the shoppers of ``held`` until the block ends; yields the earlier holds on
        them, which the block waits for before producing."""
        done = asyncio.get_running_loop().create_future()
        ids = {i for event in held for i in _ids(event)}
        earlier = {self._holds[i] for i in ids if i in self._holds}
        for i in ids:
            self._holds[i] = done
        try:
            yield list(earlier)
        finally:
            done.set_result(None)
            for i in ids:
                if self._holds.get(i) is done:
                    del self._holds[i]


# One per API process (per Resources), made on first use.
_holds: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def user_holds(resources: object) -> UserHolds:
    holds = _holds.get(resources)
    if holds is None:
        holds = _holds[resources] = UserHolds()
    return holds
