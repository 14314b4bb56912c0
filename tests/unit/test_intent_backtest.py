"""``backtest intent`` and ``backtest fit`` below the command: the trace a rule set leaves on
recorded traffic (the score at the shopper's clock, shoppers joined across their ids),
and weights fitted to it turned into a rule set that loads."""

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.domain.rules import default_rules, rules_from
from pipeline.domain.signals import SIGNAL_CODES
from pipeline.local.simulate import simulate_shoppers
from pipeline.replay.fit import SCALE_QUANTILE, TooFewToLearn, fit_rules
from pipeline.replay.intent import IntentTrace, rules_yaml, trace_intent
from pipeline.replay.intent_eval import Moment, Point, labels_of
from pipeline.replay.replay import recorded_source
from tests.support import TEST_SECRETS, write_export

T0 = datetime(2026, 2, 2, 10, 0, tzinfo=UTC)
HOUR_MS = 3_600_000


def event(name: str, minutes: float, properties: dict, user_id: str | None = None, anon="a-1"):
    raw = {
        "event_id": str(uuid.UUID(int=random.Random(f"{name}{minutes}").getrandbits(128))),
        "name": name,
        "timestamp": (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z"),
        "anonymous_id": anon,
        "properties": properties,
        "context": {},
    }
    if user_id:
        raw["user_id"] = user_id
    return raw


ITEM = {"product_id": "pho-001", "category": "phones", "price": 499.0}
ORDER_ITEM = {"product_id": "pho-001", "quantity": 1, "amount": 499.0, "tax": 0.0, "discount": 0.0}


def test_a_late_event_is_scored_at_the_shoppers_clock_and_ids_are_joined(tmp_path: Path):
    raw = [
        event("product_view", 0, ITEM),
        event("add_to_cart", 10, {**ITEM, "quantity": 1}),
        # Recorded after the cart, stamped before it: the engine has folded the cart.
        event("page_view", 5, {"url": "https://shop.example/"}),
        event("identify", 20, {"traits": {}}, user_id="user-1"),
        event(
            "order_placed",
            30,
            {"order_id": "o-1", "items": [ORDER_ITEM], "total": 499.0, "currency": "EUR"},
            user_id="user-1",
        ),
        # Someone else, much later: the traffic runs past every point's horizon.
        event("page_view", 180, {"url": "https://shop.example/"}, anon="a-2"),
    ]
    path = write_export(tmp_path / "day.ndjson", raw, partitions=1)
    trace = asyncio.run(trace_intent(default_rules(), recorded_source(path, None, None, ())))
    whole = trace.resolved()
    mine = [p for p in whole.points if p.person == "user-1"]
    minute = 60_000
    start = trace.start_ms
    assert [p.at_ms - start for p in mine] == [0, 10 * minute, 10 * minute, 20 * minute]
    # The score after the late page view is no less than the cart's: it knows the cart.
    assert mine[2].score >= mine[1].score > mine[0].score
    assert whole.orders == [Moment("user-1", start + 30 * minute)]
    labels = labels_of(whole.points, whole.orders, HOUR_MS, whole.end_ms)
    assert [label for p, label in zip(whole.points, labels, strict=True) if p in mine] == [True] * 4


def synthetic_trace(n: int = 600, seed: int = 3) -> IntentTrace:
    """Decision points whose order is likelier with carts and a little less likely with
    page views (browsers who do not buy: a negative coefficient, which rules cannot have)."""
    rng = random.Random(seed)
    trace = IntentTrace(default_rules())
    for i in range(n):
        person, at = f"p{i}", i * 10
        carts, views = rng.choice((0, 0, 1, 2, 3)), rng.uniform(0, 10)
        trace.points.append(Point(person, at, 0.0))
        trace.parts.append({SIGNAL_CODES["add_to_cart"]: carts, SIGNAL_CODES["page_view"]: views})
        if rng.random() < 0.3 + 0.2 * carts - 0.03 * views:
            trace.orders.append(Moment(person, at + 5))
    trace.end_ms = n * 10 + HOUR_MS
    return trace


def test_fitted_weights_are_nonnegative_scaled_to_the_base_range_and_load(tmp_path: Path):
    base = default_rules()
    candidate, fitted = fit_rules(synthetic_trace(), base, 3600, "fit-test")
    weights = candidate.scoring.weights
    assert weights["add_to_cart"] > 0
    assert all(w >= 0 for w in weights.values())
    assert weights["page_view"] == 0  # its coefficient was negative
    assert fitted.coefficients["page_view"] == 0
    assert fitted.auc_fitted is not None and fitted.auc_fitted > 0.6
    # Same 95th percentile as the base rules' score over the same points.
    trace = synthetic_trace()
    base_scores = [
        min(0.2 * p[SIGNAL_CODES["page_view"]] + 3.0 * p[SIGNAL_CODES["add_to_cart"]], 50.0)
        for p in trace.parts
    ]
    fitted_scores = [
        weights["page_view"] * p[SIGNAL_CODES["page_view"]]
        + weights["add_to_cart"] * p[SIGNAL_CODES["add_to_cart"]]
        for p in trace.parts
    ]
    assert np.quantile(fitted_scores, SCALE_QUANTILE) == pytest.approx(
        np.quantile(base_scores, SCALE_QUANTILE), rel=0.01
    )
    # Everything but the weights is the base's; the file reads back as the same rules.
    assert candidate.high_intent == base.high_intent
    assert candidate.version == "fit-test"
    path = tmp_path / "candidate.yaml"
    path.write_text(rules_yaml(candidate), encoding="utf-8")
    assert rules_from(path) == candidate


def test_fitting_needs_orders_and_non_orders():
    trace = synthetic_trace()
    trace.orders = []
    with pytest.raises(TooFewToLearn):
        fit_rules(trace, default_rules(), 3600, "fit-test")


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["intent", "--topic", "telemetry.raw"], "--topic needs both --from and --to"),
        (["fit", "--out", "candidate.yaml"], "give either --file or --topic"),
    ],
)
def test_the_commands_name_a_missing_source_before_reading_anything(args, reason):
    env = {"INTENTFLOW_ENV": "test"}
    env |= {f"INTENTFLOW_{name.upper()}": value for name, value in TEST_SECRETS.items()}
    result = CliRunner().invoke(main, ["backtest", *args], env=env)
    assert result.exit_code == 2 and reason in result.output


def test_no_score_knows_the_traffic_after_its_decision_point(tmp_path: Path):
    events = simulate_shoppers(4, users=60, events=4_000, end=T0, days=2).events
    cut = events[len(events) // 2]["timestamp"]
    cut_ms = int(datetime.fromisoformat(cut).timestamp() * 1000)

    def points(name: str, raw: list[dict]) -> list[Point]:
        path = write_export(tmp_path / name, raw)
        source = recorded_source(path, None, None, ())
        return asyncio.run(trace_intent(default_rules(), source)).points

    full = points("full.ndjson", events)
    before_cut = points("cut.ndjson", [e for e in events if e["timestamp"] < cut])
    assert len(before_cut) > 1000
    assert [p for p in full if p.at_ms < cut_ms] == before_cut
