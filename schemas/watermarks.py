"""Watermark records: the wall clock's moves of a partition's watermark, written into its log.

Live, an idle partition's deadlines (a cart going idle, a nudge held for quiet
hours) must fire although no event arrives to move event time. The worker does
not move the watermark itself: it appends a watermark record to the partition
of the raw topic and moves the watermark when it reads the record back, in
order with the events around it. A replay of the topic, or of an export, reads
the same records at the same positions and so makes exactly the decisions the
live run made, whatever the wall clock did.

``{"intentflow_watermark": <epoch ms>, "timestamp": ..., "received_at": ...}``:
the ISO times let exports select and order it by event time like an event. The
collector serialises events it validated, which never begin with this field.
"""

from datetime import UTC, datetime

import orjson

FIELD = "intentflow_watermark"
PREFIX = b'{"' + FIELD.encode() + b'":'


def watermark_record(at_ms: int) -> bytes:
    moment = datetime.fromtimestamp(at_ms / 1000, UTC).isoformat()
    return orjson.dumps({FIELD: at_ms, "timestamp": moment, "received_at": moment})


def is_watermark(value: bytes | None) -> bool:
    return value is not None and value.startswith(PREFIX)


def read_watermark(value: bytes) -> int:
    """The watermark a record carries; ``ValueError`` when it is not a readable one."""
    try:
        at = orjson.loads(value)[FIELD]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError("not a watermark record") from exc
    if not isinstance(at, int) or isinstance(at, bool) or at < 0:
        raise ValueError("a watermark is a non-negative epoch millisecond count")
    return at
