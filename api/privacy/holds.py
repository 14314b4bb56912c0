"""Which events of a request must wait for its consent write, and which may go at once.

A consent is recorded (and its phone sealed) before anything of its shopper is
produced (api/privacy/consent.py). Other shoppers of the same request need not
wait for that write: their events are produced while it is in flight. A shopper
is held when the request holds a consent naming one of their ids (``user_id`` or
``anonymous_id``: an identified consent and the same browser's anonymous events
are one shopper). All of a held shopper's events in the request wait, in their
order, so the request keeps each shopper's order on the topic.

Requests are not ordered against each other (as before this split): a tracker sends
one batch at a time. Holding a shopper across this process's concurrent requests was
tried and measured: the benchmark's concurrent batches share shoppers, the holds
chained the requests and made consent groups half as large (docs/collector.md).
"""

from schemas.events import Event


def _ids(event: Event) -> tuple[str, ...]:
    return (event.anonymous_id, event.user_id) if event.user_id else (event.anonymous_id,)


def split_held(events: list[Event]) -> tuple[list[Event], list[Event]]:
    """(held, free): the events of the shoppers with a consent here, and the others."""
    held_ids = {i for event in events if event.name == "consent" for i in _ids(event)}
    if not held_ids:
        return [], events
    held: list[Event] = []
    free: list[Event] = []
    for event in events:
        if any(i in held_ids for i in _ids(event)):
            held.append(event)
        else:
            free.append(event)
    return held, free
