"""The maths of ``backtest intent``: labels without leakage, AUC, and the trigger's
precision, recall and lift, on a hand-computed example and as properties."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.replay.intent_eval import Moment, Point, auc, evaluate, labels_of

H = 10
# Three shoppers over [0, 50]; every label and count below is worked out by hand.
POINTS = [
    Point("a", 2, 1.0),  # (2, 12]: no order of a -> negative
    Point("a", 8, 5.0),  # (8, 18] holds a's order at 15 -> positive
    Point("a", 14, 7.0),  # (14, 24] holds 15 -> positive
    Point("b", 5, 6.0),  # (5, 15]: b orders at 40 -> negative
    Point("b", 35, 3.0),  # (35, 45] holds 40 -> positive
    Point("c", 20, 9.0),  # c never orders -> negative
    Point("c", 45, 2.0),  # 45 + 10 is past the end: unknown, left out
]
ORDERS = [Moment("a", 15), Moment("b", 40)]
TRIGGERS = [Moment("a", 8), Moment("b", 5), Moment("c", 20)]


def test_a_small_fixed_example_gives_the_hand_computed_report():
    report = evaluate(POINTS, ORDERS, TRIGGERS, H, 0, 50, "v1")
    assert (report.examples, report.users, report.positives) == (6, 3, 3)
    assert report.base_rate == 0.5
    # Positives score 5, 7, 3; negatives 1, 6, 9: 4 of the 9 pairs are ranked right.
    assert report.auc == pytest.approx(4 / 9)
    # Only a's trigger at 8 is followed by an order within 10 (a's at 15).
    assert (report.triggers, report.triggers_followed) == (3, 1)
    assert report.precision == pytest.approx(1 / 3)
    # a's order at 15 had a trigger in [5, 15); b's at 40 none in [30, 40).
    assert (report.orders, report.orders_preceded) == (2, 1)
    assert report.recall == 0.5
    assert report.lift == pytest.approx((1 / 3) / 0.5)


def test_the_order_at_the_decision_point_itself_is_not_its_label():
    # An order at the very moment of the point is not "within H after" it.
    assert labels_of([Point("a", 15, 1.0)], [Moment("a", 15)], H, 50) == [False]
    assert labels_of([Point("a", 14, 1.0)], [Moment("a", 15)], H, 50) == [True]
    # Exactly H later still counts; a moment later does not.
    assert labels_of([Point("a", 5, 1.0)], [Moment("a", 15)], H, 50) == [True]
    assert labels_of([Point("a", 4, 1.0)], [Moment("a", 15)], H, 50) == [False]


def test_triggers_and_orders_whose_window_leaves_the_traffic_are_not_judged():
    report = evaluate([], [Moment("a", 5)], [Moment("a", 45)], H, 0, 50, "v1")
    assert report.triggers == 0 and report.precision is None
    assert report.orders == 0 and report.recall is None
    assert report.auc is None and report.base_rate is None and report.lift is None


def test_a_horizon_must_be_positive():
    with pytest.raises(ValueError):
        evaluate(POINTS, ORDERS, TRIGGERS, 0, 0, 50, "v1")


# --- properties -------------------------------------------------------------------

labels_with_both = st.lists(st.booleans(), min_size=2, max_size=60).filter(
    lambda labels: any(labels) and not all(labels)
)
scored = labels_with_both.flatmap(
    lambda labels: st.tuples(
        st.lists(st.integers(-50, 50), min_size=len(labels), max_size=len(labels)),
        st.just(labels),
    )
)


@given(scored)
def test_auc_is_a_probability_and_swapping_the_classes_mirrors_it(case):
    scores, labels = case
    value = auc(scores, labels)
    assert value is not None and 0.0 <= value <= 1.0
    mirrored = auc(scores, [not label for label in labels])
    assert mirrored == pytest.approx(1 - value)


@given(labels_with_both)
def test_a_perfect_ranking_has_auc_one_and_its_reverse_zero(labels):
    perfect = [float(index) + (1000 if label else 0) for index, label in enumerate(labels)]
    assert auc(perfect, labels) == 1.0
    assert auc([-s for s in perfect], labels) == 0.0


@given(scored)
def test_auc_depends_only_on_the_order_of_the_scores(case):
    scores, labels = case
    # Strictly increasing on the integers, exactly representable.
    transformed = [3 * s**3 + s + 7 for s in scores]
    assert auc(transformed, labels) == auc(scores, labels)


@given(st.lists(st.booleans(), max_size=30).filter(lambda ls: all(ls) or not any(ls)))
def test_auc_is_undefined_without_both_classes(labels):
    assert auc([1.0] * len(labels), labels) is None


moments = st.lists(
    st.tuples(st.sampled_from("abc"), st.integers(0, 100)).map(lambda t: Moment(*t)),
    max_size=20,
)
points = st.lists(
    st.tuples(st.sampled_from("abcd"), st.integers(0, 100), st.floats(0, 50)).map(
        lambda t: Point(*t)
    ),
    max_size=40,
)


@given(points, moments, moments, st.integers(1, 60))
def test_every_share_is_between_zero_and_one_and_counts_nest(ps, orders, triggers, horizon):
    report = evaluate(ps, orders, triggers, horizon, 0, 100, "v1")
    assert report.positives <= report.examples <= len(ps)
    assert report.users <= report.examples
    assert report.triggers_followed <= report.triggers <= len(triggers)
    assert report.orders_preceded <= report.orders <= len(orders)
    for share in (report.base_rate, report.precision, report.recall, report.auc):
        assert share is None or 0.0 <= share <= 1.0
    if report.precision is not None and report.base_rate:
        assert report.lift == pytest.approx(report.precision / report.base_rate)
