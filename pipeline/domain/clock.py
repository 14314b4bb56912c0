"""Event time in integer epoch milliseconds, and the shopper's local calendar.

Pure: every function takes the instant it reasons about. Time zones come from
the IANA names events carry (``context.timezone``); an unknown name falls back
to the rules' default zone rather than failing a decision.
"""

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.time import epoch_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


# One conversion for the whole project (schemas/time.py).
to_ms = epoch_ms


def to_datetime(ms: int) -> datetime:
    return EPOCH + ms * _MS


@lru_cache(maxsize=1024)
def zone(name: str | None, default: str) -> ZoneInfo:
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo(default)


def local_day(ms: int, tz: ZoneInfo) -> int:
    """The shopper's calendar day (proleptic ordinal) at an instant."""
    return datetime.fromtimestamp(ms / 1000, tz).date().toordinal()


def _at(day: date, clock: time, tz: ZoneInfo) -> int:
    return to_ms(datetime.combine(day, clock, tzinfo=tz))


def quiet_until(ms: int, tz: ZoneInfo, start: time, end: time) -> int | None:
    """When the quiet hours around ``ms`` end, or None if ``ms`` is not in quiet hours.

    ``start > end`` is a window over midnight (21:00-08:00).
    """
    local = datetime.fromtimestamp(ms / 1000, tz)
    now, today = local.time().replace(tzinfo=None), local.date()
    if start < end:
        return _at(today, end, tz) if start <= now < end else None
    if now >= start:
        return _at(today + timedelta(days=1), end, tz)
    if now < end:
        return _at(today, end, tz)
    return None
