"""Query parameters every route parses the same way: times, time ranges, durations.

The one home for turning caller text into numbers and times. Digits are ASCII
only and bounded in length before ``int()`` sees them (``str.isdigit()`` also
takes "²" or "١٢", and ``int()`` of 5,000 digits raises), and every time is
bounded to what the warehouse's DateTime64 and Python's datetime can hold, so a
hostile value is a 422 naming the parameter, never a 500.
"""

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import Depends, Path, Query
from fastapi.exceptions import RequestValidationError

from api.queries.common import TimeRange
from schemas.tags import TAGS

DEFAULT_SPAN = timedelta(days=7)
MAX_SPAN_MS = 400 * 86_400_000
# Times a caller may name: 1970-01-01 up to (not including) 2200-01-01, UTC.
MIN_TIME_MS = 0
MAX_TIME_MS = int(datetime(2200, 1, 1, tzinfo=UTC).timestamp() * 1000)
_MAX_TIME_TEXT = 64
_EPOCH_MS = re.compile(r"[0-9]{1,16}", re.ASCII)
_DURATION = re.compile(r"([0-9]{1,10})(ms|s|m|h|d)?", re.ASCII)
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
# Campaign and segment ids: uuid4().hex.
HEX_ID = r"^[0-9a-f]{32}$"


def invalid(field: str, message: str) -> RequestValidationError:
    """A 422 in FastAPI's own shape: ``{"detail": [{"loc": ["query", field], "msg": ...}]}``."""
    return RequestValidationError(
        [{"loc": ("query", field), "msg": message, "type": "value_error"}]
    )


def parse_time(field: str, value: str) -> int:
    """ISO-8601 with a zone, or integer epoch milliseconds → epoch milliseconds."""
    text = value.strip()
    if len(text) > _MAX_TIME_TEXT or not text.isascii():
        raise invalid(field, "must be ISO-8601 with a zone or epoch milliseconds")
    if _EPOCH_MS.fullmatch(text):
        epoch_ms = int(text)
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise invalid(field, "must be ISO-8601 with a zone or epoch milliseconds") from None
        if moment.tzinfo is None:
            raise invalid(field, "must have a zone, e.g. 2024-05-01T00:00:00Z")
        try:
            epoch_ms = int(moment.timestamp() * 1000)
        except (OverflowError, ValueError):
            epoch_ms = -1
    if not MIN_TIME_MS <= epoch_ms < MAX_TIME_MS:
        raise invalid(field, "must be between 1970-01-01 and 2200-01-01")
    return epoch_ms


def time_range(
    start: Annotated[
        str | None, Query(alias="from", description="ISO-8601 with a zone, or epoch ms")
    ] = None,
    end: Annotated[
        str | None, Query(alias="to", description="ISO-8601 with a zone, or epoch ms")
    ] = None,
) -> TimeRange:
    end_ms = parse_time("to", end) if end else int(datetime.now(UTC).timestamp() * 1000)
    if start:
        start_ms = parse_time("from", start)
    else:
        start_ms = end_ms - int(DEFAULT_SPAN.total_seconds() * 1000)
    if end_ms <= start_ms:
        raise invalid("to", "must be after from")
    if end_ms - start_ms > MAX_SPAN_MS:
        raise invalid("to", "the range may span at most 400 days")
    return TimeRange(start_ms, end_ms)


def interval_seconds(
    interval: Annotated[str, Query(description="30s, 5m, 1h, 1d, or seconds")] = "1h",
) -> int:
    match = _DURATION.fullmatch(interval.strip())
    if match is None:
        raise invalid("interval", "must be a duration such as 30s, 5m, 1h, 1d, or seconds")
    amount, unit = int(match.group(1)), match.group(2) or "s"
    milliseconds = amount * _UNIT_MS[unit]
    seconds = max(1, -(-milliseconds // 1000))  # rounded up to whole seconds
    return seconds


TimeRangeDep = Annotated[TimeRange, Depends(time_range)]
IntervalDep = Annotated[int, Depends(interval_seconds)]


# An auto-tag to filter segments or campaigns by (schemas/tags.py): any other is a 422.
TagQuery = Annotated[
    Literal[tuple(TAGS)] | None,  # type: ignore[valid-type]
    Query(description="Only those carrying this auto-tag: " + ", ".join(TAGS)),
]

CampaignIdPath = Annotated[str, Path(pattern=HEX_ID)]
SegmentIdPath = Annotated[str, Path(pattern=HEX_ID)]
