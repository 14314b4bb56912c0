"""Topic records → warehouse rows: decode one record, hand it to its row function.

A record that cannot be decoded yields no row. On ``telemetry.raw`` that is
expected (the engine dead-letters invalid events, with the reason); on the
decision and receipt topics, which only our code writes, it is counted and
logged by the caller, never stored half-read.
"""

from collections.abc import Callable

import orjson
from pydantic import ValidationError

from pipeline.sink.rows import (
    DEAD_LETTERS,
    NUDGE_CANCELLATIONS,
    NUDGE_HOLDS,
    NUDGES,
    RECEIPTS,
    VIP_UPGRADES,
    Table,
    cancellation_row,
    dead_letter_row,
    event_rows,
    hold_row,
    nudge_row,
    receipt_row,
    vip_row,
)
from schemas.deadletter import DeadLetter
from schemas.events import EventError
from schemas.fast_events import fast_load_event
from schemas.messages import (
    Nudge,
    NudgeCancellation,
    NudgeHeld,
    Receipt,
    VipUpgrade,
    load_decision,
)

# A decoded record: the table it goes to and its row (or several: an event and its
# catalog entry); None when it is not stored.
Output = tuple[Table, tuple] | list[tuple[Table, tuple]] | None
# value bytes and the record's Kafka timestamp (ms) → output
Processor = Callable[[bytes, int], Output]


def process_event(value: bytes, timestamp_ms: int) -> Output:
    try:
        # Our collector's records: read fast, the same rows (tests/unit/test_fast_events.py).
        event = fast_load_event(value)
    except EventError:
        return None  # dead-lettered by the engine, with its reason
    return event_rows(event)


def decision_processor(run_id: str) -> Processor:
    """Nudges, their holds and cancellations (``nudges`` topic) and VIP upgrades (``vip``)
    of one run."""

    def process_decision(value: bytes, timestamp_ms: int) -> Output:
        decision = load_decision(value)
        if isinstance(decision, Nudge):
            return NUDGES, nudge_row(decision, run_id)
        if isinstance(decision, NudgeCancellation):
            return NUDGE_CANCELLATIONS, cancellation_row(decision, run_id)
        if isinstance(decision, NudgeHeld):
            return NUDGE_HOLDS, hold_row(decision, run_id)
        if isinstance(decision, VipUpgrade):
            return VIP_UPGRADES, vip_row(decision, run_id)
        return None

    return process_decision


def process_receipt(value: bytes, timestamp_ms: int) -> Output:
    return RECEIPTS, receipt_row(Receipt.model_validate_json(value))


def process_dead_letter(value: bytes, timestamp_ms: int) -> Output:
    letter = DeadLetter.model_validate_json(value)
    return DEAD_LETTERS, dead_letter_row(letter, timestamp_ms)


# What a malformed record on a topic only our code writes raises.
DECODE_ERRORS = (ValidationError, orjson.JSONDecodeError, ValueError)
