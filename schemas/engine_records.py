"""Records the engine writes into the raw topic itself, read back in order with the events.

Two things happen to a partition that no event of its own causes, at a moment
the wall clock or another partition decides. Written into the partition's log,
they take a position there; the engine acts when it reads them back, and a
replay of the topic or of an export reads the same records at the same
positions, so it makes exactly the decisions the live run made.

- **Watermark records.** Live, an idle partition's deadlines (a cart going
  idle, a nudge held for quiet hours) must fire although no event moves event
  time. When the partition is idle and caught up, the worker appends
  ``{"intentflow_watermark": <epoch ms>, ...}``; the watermark moves when the
  record is read.
- **Hand-over records.** An identify folds the anonymous shopper's state on the
  anonymous id's partition; the state then goes to the user's partition, keyed
  by the user id, as ``{"intentflow_handover": 1, "user_id", "anonymous_id",
  "at", "state", ...}``, and is merged when read there — before or after the
  user's next events, as the log says.

Both carry ISO ``timestamp`` and ``received_at`` so exports select and order
them by time like events. The collector serialises events it validated, which
never begin with these fields.
"""

import base64
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

WATERMARK = "intentflow_watermark"
HANDOVER = "intentflow_handover"
WATERMARK_PREFIX = b'{"' + WATERMARK.encode() + b'":'
HANDOVER_PREFIX = b'{"' + HANDOVER.encode() + b'":'


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _load(value: bytes, what: str) -> dict:
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not a {what} record") from exc
    if not isinstance(record, dict):
        raise ValueError(f"not a {what} record")
    return record


def _millis(record: dict, field: str) -> int:
    value = record.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{field} must be a non-negative epoch millisecond count")
    return value


# --- watermarks ---------------------------------------------------------------


def watermark_record(at_ms: int) -> bytes:
    return orjson.dumps({WATERMARK: at_ms, "timestamp": _iso(at_ms), "received_at": _iso(at_ms)})


def is_watermark(value: bytes | None) -> bool:
    return value is not None and value.startswith(WATERMARK_PREFIX)


def read_watermark(value: bytes) -> int:
    """The watermark a record carries; ``ValueError`` when it is not a readable one."""
    return _millis(_load(value, "watermark"), WATERMARK)


# --- identity hand-overs --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Handover:
    user_id: str
    anonymous_id: str
    at_ms: int
    # The anonymous state, in the engine's own byte form (pipeline/domain/state.py).
    state: bytes

    def to_record(self, arrival_ms: int) -> bytes:
        return orjson.dumps(
            {
                HANDOVER: 1,
                "user_id": self.user_id,
                "anonymous_id": self.anonymous_id,
                "at": self.at_ms,
                "state": base64.b64encode(self.state).decode(),
                "timestamp": _iso(self.at_ms),
                "received_at": _iso(arrival_ms),
            }
        )


def is_handover(value: bytes | None) -> bool:
    return value is not None and value.startswith(HANDOVER_PREFIX)


def read_handover(value: bytes) -> Handover:
    """The hand-over a record carries; ``ValueError`` when it is not a readable one."""
    record = _load(value, "hand-over")
    user_id, anonymous_id = record.get("user_id"), record.get("anonymous_id")
    if not (isinstance(user_id, str) and user_id and isinstance(anonymous_id, str)):
        raise ValueError("a hand-over names its user_id and anonymous_id")
    try:
        state = base64.b64decode(record["state"], validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError("a hand-over carries the anonymous state in base64") from exc
    return Handover(user_id, anonymous_id, _millis(record, "at"), state)
