"""The variant bandit (schemas/bandit.py): its properties, and its convergence on
simulated shoppers whose preferred variant the test knows and the bandit does not."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.bandit import (
    Arm,
    Snapshot,
    allocation,
    choose,
    in_force,
    snapshot_id,
    variant_at,
)

names = st.lists(
    st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), min_size=2, max_size=5, unique=True
)


@st.composite
def snapshots(draw) -> Snapshot:
    arms = []
    for name in draw(names):
        sends = draw(st.integers(0, 10_000))
        arms.append(Arm(name, sends, draw(st.integers(0, sends))))
    at = draw(st.integers(0, 2**41))
    kind = draw(st.sampled_from(["cart_rescue", "high_intent"]))
    return Snapshot(snapshot_id(kind, at), kind, at, tuple(arms))


nudge_ids = st.text(min_size=1, max_size=40)


@given(snapshots(), nudge_ids)
def test_the_choice_is_always_one_of_the_variants(snapshot, nudge_id):
    assert choose(snapshot, nudge_id) in {arm.variant for arm in snapshot.arms}


@given(snapshots(), nudge_ids)
def test_the_same_snapshot_and_nudge_always_get_the_same_variant(snapshot, nudge_id):
    listed_otherwise = Snapshot(
        snapshot.snapshot_id, snapshot.kind, snapshot.effective_from_ms, snapshot.arms[::-1]
    )
    assert choose(snapshot, nudge_id) == choose(snapshot, nudge_id)
    assert choose(snapshot, nudge_id) == choose(listed_otherwise, nudge_id)


@settings(max_examples=25)
@given(snapshots())
def test_allocation_is_a_distribution_over_the_variants(snapshot):
    shares = allocation(snapshot, draws=500)
    assert set(shares) == {arm.variant for arm in snapshot.arms}
    assert abs(sum(shares.values()) - 1) < 1e-9
    assert all(0 <= share <= 1 for share in shares.values())


@settings(max_examples=25)
@given(names, st.integers(0, 2**41))
def test_a_variant_with_overwhelming_evidence_wins_nearly_always(variants, at):
    best, *others = variants
    arms = (Arm(best, 5000, 2500), *(Arm(v, 5000, 250) for v in others))
    snapshot = Snapshot(snapshot_id("cart_rescue", at), "cart_rescue", at, arms)
    chosen = [choose(snapshot, f"nudge-{i}") for i in range(200)]
    assert chosen.count(best) >= 198
    assert allocation(snapshot, draws=500)[best] >= 0.99


def test_the_snapshot_in_force_is_the_latest_from_before_the_decision():
    arms = (Arm("a", 0, 0), Arm("b", 0, 0))
    first, second = (
        Snapshot(snapshot_id("cart_rescue", t), "cart_rescue", t, arms) for t in (1000, 2000)
    )
    assert in_force([second, first], 999) is None
    assert variant_at([second, first], "n", 999) is None
    assert in_force([second, first], 1000) is first
    assert in_force([second, first], 1999) is first
    assert in_force([second, first], 2000) is second


# --- convergence on simulated shoppers -------------------------------------------------

# The simulator's truth, hidden from the bandit: per kind, the click rate of each
# variant; the shoppers prefer one variant of each kind.
TRUTH = {
    "cart_rescue": {"plain": 0.10, "urgent": 0.30, "friendly": 0.10},
    "high_intent": {"short": 0.10, "long": 0.10, "social_proof": 0.30},
}
PREFERRED = {"cart_rescue": "urgent", "high_intent": "social_proof"}
ROUNDS, PER_ROUND = 20, 200


def simulate(kind: str) -> tuple[dict[str, float], float, float]:
    """Rounds of batched Thompson sampling: each round's nudges get their variant from
    the snapshot in force, shoppers click as the truth says, and a new snapshot records
    the evidence. The last allocation, the bandit's regret and uniform allocation's
    (expected clicks lost against always sending the preferred variant)."""
    truth = TRUTH[kind]
    best = max(truth.values())
    shoppers = random.Random(f"shoppers-{kind}")
    counts = {variant: [0, 0] for variant in truth}
    regret = 0.0
    at = 1_700_000_000_000
    for round_ in range(ROUNDS):
        snapshot = Snapshot(
            snapshot_id(kind, at),
            kind,
            at,
            tuple(Arm(v, sends, clicks) for v, (sends, clicks) in counts.items()),
        )
        for i in range(PER_ROUND):
            variant = choose(snapshot, f"{kind}-{round_}-{i}")
            regret += best - truth[variant]
            counts[variant][0] += 1
            counts[variant][1] += shoppers.random() < truth[variant]
        at += 300_000
    final = Snapshot(
        snapshot_id(kind, at),
        kind,
        at,
        tuple(Arm(v, sends, clicks) for v, (sends, clicks) in counts.items()),
    )
    uniform = ROUNDS * PER_ROUND * (best - sum(truth.values()) / len(truth))
    return allocation(final), regret, uniform


def test_allocation_converges_to_the_variant_the_shoppers_prefer():
    for kind, preferred in PREFERRED.items():
        shares, regret, uniform = simulate(kind)
        assert shares[preferred] >= 0.9, (kind, shares)
        assert regret < uniform / 2, (kind, regret, uniform)
