"""A campaign member's send time: the launch, or the end of the quiet hours the launch
falls into in the member's own zone (the campaign's when theirs is unknown)."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from pipeline.campaigns.launcher import send_after

ZONES = ["Asia/Kolkata", "America/New_York", "Europe/Berlin", "UTC", "", "Not/AZone"]
HALF_HOUR = timedelta(minutes=30)


def quiet(at: datetime, start: int, end: int, zone: str) -> bool:
    """The oracle: the local hour of ``at`` in [start, end), wrapping midnight."""
    if start == end:
        return False
    hour = at.astimezone(ZoneInfo(zone)).hour
    return start <= hour < end if start < end else hour >= start or hour < end


def first_outside(now: datetime, start: int, end: int, zone: str) -> datetime:
    """The first instant from ``now`` outside quiet hours, by stepping half hours (every
    local hour of these zones begins on a UTC half hour)."""
    if not quiet(now, start, end, zone):
        return now
    step = now.replace(minute=0, second=0, microsecond=0)
    while step <= now or quiet(step, start, end, zone):
        step += HALF_HOUR
    return step


@given(
    now=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
    ),
    start=st.integers(0, 23),
    end=st.integers(0, 23),
    member_zone=st.sampled_from(ZONES),
    campaign_zone=st.sampled_from(["Asia/Kolkata", "America/New_York", "UTC"]),
)
def test_a_member_waits_exactly_until_their_quiet_hours_end(
    now: datetime, start: int, end: int, member_zone: str, campaign_zone: str
) -> None:
    campaign = {"quiet_start": start, "quiet_end": end, "timezone": campaign_zone}
    effective = member_zone if member_zone in ZONES[:4] else campaign_zone
    found = send_after(now, campaign, member_zone)
    assert found == first_outside(now, start, end, effective)
    assert now <= found < now + timedelta(hours=25)


def test_members_in_different_zones_wait_differently() -> None:
    # 22:00 in Berlin is 02:30 in Kolkata and 16:00 in New York.
    now = datetime(2026, 11, 21, 21, 0, tzinfo=UTC)
    campaign = {"quiet_start": 21, "quiet_end": 9, "timezone": "America/New_York"}
    assert send_after(now, campaign, "Europe/Berlin") == datetime(2026, 11, 22, 8, tzinfo=UTC)
    assert send_after(now, campaign, "Asia/Kolkata") == datetime(2026, 11, 22, 3, 30, tzinfo=UTC)
    assert send_after(now, campaign, "America/New_York") == now
    assert send_after(now, campaign, "") == now  # unknown: the campaign's zone
    assert send_after(now, {**campaign, "quiet_start": 0, "quiet_end": 0}, "Asia/Kolkata") == now
