"""The summary's text: never fails, states shares within 0..100 %, and calls an uplift
not distinguishable from zero exactly when its 95 % interval contains zero."""

import re
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from api.queries.uplift import uplift_rows
from schemas.summaries import (
    MIN_HOLDOUT_USERS,
    NOT_DISTINGUISHABLE,
    NudgeFigures,
    SendTimeFigures,
    summary_text,
)

counts = st.integers(min_value=0, max_value=10**7)


@st.composite
def figures(draw: st.DrawFn) -> NudgeFigures:
    nudged_users, holdout_users = draw(counts), draw(counts)
    nudged_converted = draw(st.integers(0, nudged_users))
    holdout_converted = draw(st.integers(0, holdout_users))
    # The interval as the metrics compute it (Newcombe), or any ordered one.
    computed = uplift_rows((nudged_users, nudged_converted), (holdout_users, holdout_converted))[2]
    bounds = st.floats(-1.0, 1.0)
    low, high = draw(
        st.just((computed.ci_low, computed.ci_high)) | st.tuples(bounds, bounds).map(sorted)
    )
    return NudgeFigures(
        kind=draw(st.sampled_from(["cart_rescue", "high_intent"])),
        sent=draw(counts),
        read=draw(counts),
        fallback=draw(counts),
        nudged_users=nudged_users,
        nudged_converted=nudged_converted,
        holdout_users=holdout_users,
        holdout_converted=holdout_converted,
        uplift=computed.rate,
        uplift_low=low,
        uplift_high=high,
    )


@given(figures())
def test_shares_stated_are_percentages(f: NudgeFigures) -> None:
    text = summary_text(f)
    for value in re.findall(r"(-?[\d.]+) %", text):
        assert 0.0 <= float(value) <= 100.0, text


@given(figures())
def test_uplift_not_distinguishable_exactly_when_its_interval_contains_zero(
    f: NudgeFigures,
) -> None:
    text = summary_text(f)
    comparable = f.nudged_users > 0 and f.holdout_users >= MIN_HOLDOUT_USERS
    assert bool(re.search(r"uplift [+-]", text)) == comparable, text
    says_zero = NOT_DISTINGUISHABLE in text
    assert says_zero == (comparable and f.uplift_low <= 0 <= f.uplift_high), text


@given(counts, counts)
def test_a_small_holdout_is_named_instead_of_an_uplift(nudged: int, holdout: int) -> None:
    holdout %= MIN_HOLDOUT_USERS
    f = NudgeFigures("cart_rescue", 0, 0, 0, nudged + 1, 0, holdout, 0, 0.0, -1.0, 1.0)
    assert "too small to estimate an uplift" in summary_text(f)


def test_zero_counts_read_as_nothing_happened() -> None:
    f = NudgeFigures("high_intent", 0, 0, 0, 0, 0, 0, 0, 0.0, -1.0, 1.0)
    assert summary_text(f) == (
        "High intent: nothing sent; no shopper nudged, so no conversions to compare."
    )


def test_the_issue_example() -> None:
    f = NudgeFigures(
        "cart_rescue", 12_480, 7_613, 2_246, 10_000, 310, 1_000, 22, 0.009, 0.004, 0.014
    )
    assert summary_text(f) == (
        "Cart rescue: 12,480 sent, 61.0 % read; SMS fallback carried 18.0 %; "
        "conversions 3.1 % vs 2.2 % in the holdout, uplift +0.9 pt [+0.4, +1.4]."
    )


@st.composite
def send_times(draw: st.DrawFn) -> SendTimeFigures:
    best, random_ = draw(counts), draw(counts)
    best_read, random_read = draw(st.integers(0, best)), draw(st.integers(0, random_))
    computed = uplift_rows((best, best_read), (random_, random_read))[2]
    return SendTimeFigures(
        best, best_read, random_, random_read, computed.rate, computed.ci_low, computed.ci_high
    )


@given(figures(), send_times())
def test_send_time_arms_are_compared_only_with_a_control_to_compare(
    f: NudgeFigures, arms: SendTimeFigures
) -> None:
    assert "best hour" not in summary_text(f)
    text = summary_text(replace(f, send_time=arms))
    for value in re.findall(r"(-?[\d.]+) %", text):
        assert 0.0 <= float(value) <= 100.0, text
    compared = "at random hours" in text
    assert compared == (arms.random_hour_messages >= MIN_HOLDOUT_USERS), text
    zero = f"pt [{100 * arms.difference_low:+.1f}, {100 * arms.difference_high:+.1f}], "
    says_zero = zero + NOT_DISTINGUISHABLE in text
    assert says_zero == (compared and arms.difference_low <= 0 <= arms.difference_high), text


def test_the_issue_example_with_best_hours() -> None:
    f = NudgeFigures(
        "campaign", 580, 293, 0, 0, 0, 0, 0, 0.0, -1.0, 1.0,
        SendTimeFigures(460, 273, 120, 20, 0.427, 0.338, 0.498),
    )  # fmt: skip
    assert summary_text(f, "Campaign") == (
        "Campaign: 580 sent, 50.5 % read; SMS fallback carried 0.0 %; no shopper nudged, so no "
        "conversions to compare; read 59.3 % at the learned best hour vs 16.7 % at random "
        "hours, +42.7 pt [+33.8, +49.8]."
    )
    small = replace(f, send_time=SendTimeFigures(460, 273, 12, 2, 0.43, -0.1, 0.6))
    assert summary_text(small).endswith(
        "read 59.3 % at the learned best hour; the random-hour control (12 messages) is too "
        "small to compare against."
    )
