"""What every metrics query shares: the time range (times are written by schemas/time.py)."""

from dataclasses import dataclass

# The range, bound as epoch milliseconds: [start, end).
RANGE_FILTER = "fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC') <= {column} AND {column} < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')"  # noqa: E501


@dataclass(frozen=True, slots=True)
class TimeRange:
    start_ms: int
    end_ms: int

    def params(self) -> dict[str, int]:
        return {"start_ms": self.start_ms, "end_ms": self.end_ms}


def in_range(column: str) -> str:
    """The range condition on ``column`` (an identifier written here, never user input)."""
    return RANGE_FILTER.replace("{column}", column)
