"""Send-time optimisation, pure: the learned best hour (a population-smoothed histogram of
a member's reads and clicks), the random-hour control and the aimed send time."""

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from api.console.segments import _schedule
from pipeline.campaigns.best_hour import (
    CONTROL_SHARE,
    PRIOR_WEIGHT,
    WINDOW,
    arm_and_hour,
    best_hour,
    hour_counts,
    in_control,
    next_at_hour,
    pooled,
    random_hour,
)
from pipeline.campaigns.launcher import aimed_send_after
from pipeline.local.simulate import preferred_hour, reading_hour

hours = st.integers(0, 23)
histograms = st.lists(st.integers(0, 50), min_size=24, max_size=24)
moments = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
)
ZONES = ["Asia/Kolkata", "America/New_York", "Europe/Berlin", "UTC", "Asia/Kathmandu"]
NO_QUIET = {"quiet_start": 0, "quiet_end": 0, "timezone": "UTC"}


@given(own=histograms, population=histograms)
def test_the_best_hour_is_an_hour_or_none_only_without_any_history(own, population) -> None:
    found = best_hour(own, population)
    if not any(own) and not any(population):
        assert found is None
    else:
        assert found in range(24)


@given(population=histograms.filter(any))
def test_without_history_a_member_gets_the_populations_best_hour(population) -> None:
    top = max(population)
    assert best_hour([0] * 24, population) == population.index(top)  # earliest of ties


@given(population=histograms, hour=hours, reads=st.integers(0, 30))
def test_enough_history_at_one_hour_wins_over_any_prior(population, hour, reads) -> None:
    # More reads at one hour than the prior's whole weight: no population can outvote it.
    own = hour_counts([hour] * (int(PRIOR_WEIGHT) + 1 + reads))
    assert best_hour(own, population) == hour


def test_the_population_is_its_members_pooled() -> None:
    assert pooled([]) == [0] * 24
    assert pooled([hour_counts([1, 1, 5]), hour_counts([5, 23])]) == hour_counts([1, 1, 5, 5, 23])


def test_the_prior_decides_between_equally_read_hours() -> None:
    own = hour_counts([8, 20])
    population = hour_counts([20] * 10 + [8] * 3)
    assert best_hour(own, population) == 20
    assert best_hour(own, [0] * 24) == 8  # a tie, broken to the earliest hour


def test_the_control_is_a_stable_share_and_its_hours_are_uniform() -> None:
    users = [f"user-{i}" for i in range(20_000)]
    control = [u for u in users if in_control("c1", u)]
    assert abs(len(control) / len(users) - CONTROL_SHARE) < 0.01
    assert control == [u for u in users if in_control("c1", u)]
    assert control != [u for u in users if in_control("c2", u)]  # drawn per campaign
    per_hour = hour_counts(random_hour("c1", u) for u in users)
    assert min(per_hour) > 0.85 * len(users) / 24 and max(per_hour) < 1.15 * len(users) / 24
    arm, hour = arm_and_hour("c1", control[0], hour_counts([5] * 9), hour_counts([5]))
    assert (arm, hour) == ("random_hour", random_hour("c1", control[0]))
    treated = next(u for u in users if not in_control("c1", u))
    assert arm_and_hour("c1", treated, hour_counts([5] * 9), [0] * 24) == ("best_hour", 5)


@given(now=moments, hour=hours, zone=st.sampled_from(ZONES))
def test_the_next_occurrence_of_an_hour_is_at_that_local_hour_within_a_day(now, hour, zone) -> None:
    aimed = next_at_hour(now, hour, ZoneInfo(zone))
    assert now <= aimed <= now + timedelta(hours=24)
    assert aimed.astimezone(ZoneInfo(zone)).hour == hour or aimed == now
    if now.astimezone(ZoneInfo(zone)).hour == hour:
        assert aimed == now


@given(now=moments, hour=hours, zone=st.sampled_from(ZONES), start=hours, end=hours)
def test_quiet_hours_still_win_and_the_message_lives_to_be_sent(
    now, hour, zone, start, end
) -> None:
    campaign = {"quiet_start": start, "quiet_end": end, "timezone": "UTC"}
    after = aimed_send_after(now, campaign, zone, hour)
    # Within the window, else as created (the end of a quiet period of at most 23 hours,
    # 24 on the night the clocks go back): before the campaign message's 24 h age.
    assert now <= after <= now + max(WINDOW, timedelta(hours=24))
    local = after.astimezone(ZoneInfo(zone)).hour
    if start != end:
        in_quiet = start <= local < end if start < end else local >= start or local < end
        assert not in_quiet


def test_a_member_is_aimed_at_their_hour_and_none_means_as_created() -> None:
    now = datetime(2026, 3, 2, 10, 20, tzinfo=UTC)  # 15:50 in Kolkata
    after = aimed_send_after(now, NO_QUIET, "Asia/Kolkata", 19)
    assert after == datetime(2026, 3, 2, 13, 30, tzinfo=UTC)  # 19:00 in Kolkata
    assert aimed_send_after(now, NO_QUIET, "Asia/Kolkata", None) == now
    quiet_evenings = {**NO_QUIET, "quiet_start": 18, "quiet_end": 9}
    # 19:00 is quiet: the message waits for the quiet hours' end, next morning at 9.
    morning = aimed_send_after(now, quiet_evenings, "Asia/Kolkata", 19)
    assert morning == datetime(2026, 3, 3, 3, 30, tzinfo=UTC)


def test_the_consoles_box_asks_for_a_best_hour_campaign() -> None:
    assert _schedule({"best_hour": "on"})["send_time"] == "best_hour"
    assert "send_time" not in _schedule({})  # the API's default: as created


def test_the_learned_hour_converges_to_the_simulators_hidden_one() -> None:
    """Shoppers read as the simulator's truth has it; with more history, more of them get
    their hidden hour: from none (no history anywhere: nothing learned) to every one."""
    rng = random.Random(21)
    users = [f"shopper-{i}" for i in range(600)]
    hidden = {u: preferred_hour(21, u) for u in users}
    accuracy = {}
    for reads in (0, 1, 2, 4, 8, 16):
        own = {u: hour_counts(reading_hour(rng, hidden[u]) for _ in range(reads)) for u in users}
        population = pooled(own.values())
        hits = sum(best_hour(own[u], population) == hidden[u] for u in users)
        accuracy[reads] = hits / len(users)
    # (Two reads that disagree are a tie, broken to the earlier hour: no better than one.)
    assert accuracy[0] == 0 and accuracy[1] > 0.7
    assert accuracy[2] < accuracy[4] < accuracy[8] <= accuracy[16]
    assert accuracy[8] >= 0.95 and accuracy[16] == 1.0
