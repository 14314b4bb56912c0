"""What every metrics query shares: the time range and how times are written."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

LIVE_RUN = "live"
# The range, bound as epoch milliseconds: [start, end).
RANGE_FILTER = "fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC') <= {column} AND {column} < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')"  # noqa: E501


@dataclass(frozen=True, slots=True)
class TimeRange:
    start_ms: int
    end_ms: int

    def params(self) -> dict[str, int]:
        return {"start_ms": self.start_ms, "end_ms": self.end_ms}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_ms(epoch_ms: int) -> str:
    """``2024-05-01T12:00:00.000Z``: the one time format of every response."""
    moment = _EPOCH + timedelta(milliseconds=epoch_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def in_range(column: str) -> str:
    """The range condition on ``column`` (an identifier written here, never user input)."""
    return RANGE_FILTER.replace("{column}", column)
