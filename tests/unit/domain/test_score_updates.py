"""The fold's score updates (fold._score) equal scoring.add / scoring.bump exactly.

The user's score is updated inline (almost every event touches it); the product's and
category's call scoring. Floating point: the same operations in the same order give the
same integers; a reordered decay could flip a last bit, a rounding, then a threshold.
Compared on random signal sequences: parts, totals, anchors, and the readings the
high-intent trigger is given.
"""

from types import SimpleNamespace
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain import fold, high_intent
from pipeline.domain.scoring import add, bump
from pipeline.domain.state import NO_TIME, Intent, ProductIntent, UserState

from .builders import rules_with

PLAN = rules_with().plan
assert PLAN.max_categories and PLAN.max_products >= 2
SIGNAL = st.tuples(
    st.sampled_from(["pv", "sl", "ac", "ds"]),
    st.one_of(st.integers(1, 3_000), st.integers(1, PLAN.cap * 2)),
    # Gaps from none to many half-lives (re-anchoring), sometimes late (negative).
    st.one_of(st.integers(0, 5_000), st.integers(-60_000, 3 * 86_400_000)),
    st.sampled_from(["p1", "p2", None]),
    st.sampled_from(["c1", "c2", None]),
)
EVENT = SimpleNamespace(event_id=UUID(int=1))


@settings(max_examples=300, deadline=None)
@given(st.lists(SIGNAL, min_size=1, max_size=40))
def test_score_updates_equal_scoring_add(signals) -> None:
    state = UserState("u")
    user = Intent(NO_TIME)
    products: dict[str, ProductIntent] = {}
    categories: dict = {}
    seen: list = []
    expected: list = []
    original = high_intent.check
    high_intent.check = lambda *args: seen.append((args[1], args[3], args[4]))
    try:
        ts = 1_700_000_000_000
        for code, amount, gap, product, category in signals:
            ts += gap
            if product is not None:
                # Never armed: the trigger is always called, so every reading is compared.
                state.products.setdefault(product, ProductIntent(ts)).armed = False
            fold._score(state, code, amount, ts, PLAN, [], EVENT, product, category)  # type: ignore[arg-type]
            bump(user, code, amount, ts, PLAN.decay_user, PLAN.cap)
            if product is not None:
                score = products.setdefault(product, ProductIntent(ts))
                before, after = add(score, code, amount, ts, PLAN.decay_product, PLAN.cap)
                expected.append((product, before, after))
            if category is not None:
                group = categories.setdefault(category, Intent(ts))
                bump(group, code, amount, ts, PLAN.decay_category, PLAN.cap)
    finally:
        high_intent.check = original
    assert seen == expected
    assert (state.user.t, state.user.parts, state.user.total) == (user.t, user.parts, user.total)
    for key, score in products.items():
        mine = state.products[key]
        assert (mine.t, mine.parts, mine.total) == (score.t, score.parts, score.total)
    for key, group in categories.items():
        mine = state.categories[key]
        assert (mine.t, mine.parts, mine.total) == (group.t, group.parts, group.total)
