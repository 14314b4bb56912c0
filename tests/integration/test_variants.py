"""Message variants on the real parts: the dispatcher (a real process, test_dispatch.py's
stack: broker, warehouse, API, provider simulator) chooses each nudge's variant with the
recorded snapshot in force at its decision time, sends it and records it; the engine's
sink brings nudges and receipts to the warehouse, where ``intentflow backtest
variants`` recomputes every choice; the holdout's nudges get no variant.

The snapshots here are the test's own: in the first, variant ``urgent`` has
overwhelming evidence; in the second, taken later, ``plain`` has. Nudges decided
between them must get ``urgent``, nudges decided after the second ``plain`` (and each
exactly the variant ``schemas.bandit`` draws for it). SMS only, so the simulator shows
each variant's own text.
"""

import asyncio
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from click.testing import CliRunner, Result

from api.privacy.store import ConsentDecision, PrivacyStore
from api.queries.uplift import wilson
from pipeline.cli import main
from pipeline.local.simulate import click_chance, preferred_variant
from schemas import pii
from schemas.bandit import Arm, Snapshot, allocation, snapshot_id, variant_at
from schemas.bandit_tables import record_snapshot, take_snapshot
from schemas.time import epoch_ms, from_ms, iso_z
from tests.integration import test_dispatch
from tests.integration.test_console import signed_in
from tests.integration.test_dispatch import (
    ADMIN_KEY,
    MASTER,
    READ,
    _loop,
    dispatch_rules,
    nudge,
    produce,
    sim_messages,
    wait_until,
)

# test_dispatch.py's processes, started afresh for this module (its own database).
stack = test_dispatch.stack
engine = test_dispatch.engine

TEXTS = {"plain": "Hi {name}, your cart is saved. {cta}", "urgent": "{name}, last call! {cta}"}
SHOWS = {"plain": "your cart is saved", "urgent": "last call!"}


@pytest.fixture(scope="module")
def variant_rules(stack):
    path = dispatch_rules(stack["tmp"] / "variant-rules.yaml")
    raw = yaml.safe_load(path.read_text())
    raw["dispatch"]["channel_plan"]["default"] = ["sms"]
    raw["dispatch"]["templates"]["cart_rescue"]["variants"] = [
        {"name": name, "sms": text} for name, text in TEXTS.items()
    ]
    path.write_text(yaml.safe_dump(raw))
    return path


def winning(variant: str, at_ms: int) -> Snapshot:
    arms = tuple(Arm(v, 5000, 2500 if v == variant else 100) for v in sorted(TEXTS))
    return Snapshot(snapshot_id("cart_rescue", at_ms), "cart_rescue", at_ms, arms)


def test_variants_follow_the_snapshots_are_recorded_and_replay_exactly(
    stack, engine, variant_rules
):
    now = datetime.now(UTC)
    first = winning("urgent", epoch_ms(now - timedelta(minutes=10)))
    second = winning("plain", epoch_ms(now - timedelta(minutes=5)))
    for snapshot in (first, second):
        record_snapshot(stack["ch"], snapshot, "click")
    users = [f"variant-{uuid.uuid4().hex[:10]}" for _ in range(12)]
    PrivacyStore(stack["ch"], pii.MasterKey.from_secret(MASTER)).record(
        [
            ConsentDecision(u, "sms", True, now, str(uuid.uuid4()), f"+1555020{i:04d}", "marketing")
            for i, u in enumerate(users)
        ]
    )
    # Half decided under the first snapshot, half under the second: time as data.
    decided = [now - timedelta(minutes=7 if i % 2 else 1) for i in range(len(users))]
    nudges = [
        nudge(u, triggered_at=d).model_copy(update={"decided_at": d})
        for u, d in zip(users, decided, strict=True)
    ]
    held_out = nudge(f"variant-holdout-{uuid.uuid4().hex[:8]}").model_copy(
        update={"status": "suppressed", "reason": "holdout"}
    )
    stack["dispatcher"].start(rules=str(variant_rules), bandit_snapshot_s="1", bandit_lead_s="3600")
    asyncio.run_coroutine_threadsafe(
        produce(stack["broker"], [*nudges, held_out], per_second=100), _loop()
    ).result(30)

    wanted = {n.nudge_id for n in nudges}

    def sent() -> dict[str, dict]:
        return {m["message_id"]: m for m in sim_messages(stack) if m["message_id"] in wanted}

    wait_until(lambda: len(sent()) == len(nudges), 45, "every nudge sent")
    for n in nudges:
        expected = (
            "urgent"
            if n.decided_at < datetime.fromtimestamp(second.effective_from_ms / 1000, UTC)
            else "plain"
        )
        assert variant_at([first, second], n.nudge_id, epoch_ms(n.decided_at)) == expected
        assert SHOWS[expected] in str(sent()[n.nudge_id]["content"]), n.nudge_id
    assert not sim_messages(stack, held_out.nudge_id)

    def receipts() -> dict[str, str]:
        rows = (
            stack["ch"]
            .query(
                "SELECT message_id, variant FROM receipts WHERE status = 'sent'"
                " AND message_id IN {ids:Array(String)}",
                parameters={"ids": sorted(wanted | {held_out.nudge_id})},
            )
            .result_rows
        )
        return dict(rows)

    def decisions() -> int:
        return (
            stack["ch"]
            .query(
                "SELECT uniqExact(nudge_id) FROM nudges WHERE nudge_id IN {ids:Array(String)}",
                parameters={"ids": sorted(wanted)},
            )
            .result_rows[0][0]
        )

    wait_until(
        lambda: len(receipts()) == len(nudges) and decisions() == len(nudges),
        60,
        "the sends and decisions in the warehouse",
    )
    recorded = receipts()
    assert held_out.nudge_id not in recorded
    assert recorded == {
        n.nudge_id: variant_at([first, second], n.nudge_id, epoch_ms(n.decided_at)) for n in nudges
    }

    # The leader records its own snapshots (in force an hour on: not these nudges').
    def taken() -> list[tuple]:
        return (
            stack["ch"]
            .query(
                "SELECT DISTINCT variant FROM bandit_snapshots"
                " WHERE effective_from > now64(3) + INTERVAL 30 MINUTE"
            )
            .result_rows
        )

    wait_until(lambda: sorted(taken()) == [("plain",), ("urgent",)], 30, "a leader's snapshot")

    # Its evidence: the sends recorded per variant (the simulator's shoppers never click).
    def newest() -> list[tuple]:
        return (
            stack["ch"]
            .query(
                "SELECT variant, argMax(sends, effective_from), argMax(successes, effective_from)"
                " FROM bandit_snapshots WHERE kind = 'cart_rescue'"
                " GROUP BY variant ORDER BY variant"
            )
            .result_rows
        )

    counted = [(v, list(recorded.values()).count(v), 0) for v in sorted(TEXTS)]
    wait_until(lambda: [tuple(r) for r in newest()] == counted, 30, "a snapshot of every send")

    env = {
        "INTENTFLOW_CLICKHOUSE_URL": stack["warehouse"],
        "INTENTFLOW_CLICKHOUSE_DATABASE": stack["ch"].database,
    }

    def replay_at(decided_ms: int) -> Result:
        """``backtest variants`` over one millisecond of decisions. The session's broker
        is shared: other modules' nudges, sent without variants before this test recorded
        its (back-dated) snapshots, reach this database too, decided minutes from these."""
        span = ["--from", iso_z(from_ms(decided_ms)), "--to", iso_z(from_ms(decided_ms + 1))]
        return CliRunner().invoke(main, ["backtest", "variants", *span], env=env)

    moments = Counter(epoch_ms(n.decided_at) for n in nudges)
    assert len(moments) == 2  # one decision instant per snapshot
    for moment, group in moments.items():
        result = replay_at(moment)
        assert result.exit_code == 0, result.output
        assert f"{group} sends" in result.output
        assert f"{group} with a variant, 0 mismatches" in result.output

    # A recorded choice that differs from the recomputed one is reported.
    victim = nudges[0]
    stack["ch"].command(
        "ALTER TABLE receipts UPDATE variant = 'tampered' WHERE message_id = {id:String}",
        parameters={"id": victim.nudge_id},
        settings={"mutations_sync": 1},
    )
    result = replay_at(epoch_ms(victim.decided_at))
    assert result.exit_code == 1
    assert "1 mismatches" in result.output and victim.nudge_id in result.output

    # The metrics and the console show the snapshot in force now: the second.
    response = stack["http"].get(f"{stack['api']}/v1/metrics/variants", headers=READ)
    assert response.status_code == 200, response.text
    rows = {r["variant"]: r for r in response.json()["rows"] if r["kind"] == "cart_rescue"}
    assert set(rows) == set(TEXTS)
    for arm in second.arms:
        row = rows[arm.variant]
        assert (row["sends"], row["successes"]) == (arm.sends, arm.successes)
        assert row["snapshot_id"] == second.snapshot_id
        assert row["rate"] == pytest.approx(arm.successes / arm.sends)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson(arm.successes, arm.sends))
    assert rows["plain"]["allocation"] >= 0.99
    with signed_in(stack["api"], ADMIN_KEY) as console:
        page = console.get("/console/").text
    assert 'id="variants"' in page and "variant-cart_rescue-plain" in page


def test_a_snapshot_counts_clicks_or_orders_as_its_kind_says(clickhouse):
    """The evidence query on seeded rows: sends per variant, successes by click or order."""
    client = clickhouse
    t = datetime(2026, 1, 5, 12, tzinfo=UTC)
    # (message, status, minutes after t, variant): m4 went out without a variant.
    steps = [
        ("m1", "sent", 0, "a"),
        ("m2", "sent", 0, "a"),
        ("m3", "sent", 0, "b"),
        ("m4", "sent", 0, ""),
        ("m1", "clicked", 1, ""),
        ("m3", "clicked", 120, ""),
    ]
    client.insert(
        "receipts",
        [
            [f"{m}-{status}", m, "high_intent", status, t + timedelta(minutes=after), variant]
            for m, status, after, variant in steps
        ],
        column_names=["receipt_id", "message_id", "kind", "status", "at", "variant"],
    )
    client.insert(
        "events",
        [[uuid.uuid4().hex, "order_placed", t + timedelta(minutes=5), "m2"]],
        column_names=["event_id", "name", "timestamp", "utm_message_id"],
    )
    before = epoch_ms(t + timedelta(hours=1))  # m3's click comes after: not counted
    clicks = take_snapshot(client, "high_intent", ["a", "b"], "click", before, before)
    orders = take_snapshot(client, "high_intent", ["a", "b", "c"], "conversion", before, before + 1)
    assert clicks.arms == (Arm("a", 2, 1), Arm("b", 1, 0))
    assert orders.arms == (Arm("a", 2, 1), Arm("b", 1, 0), Arm("c", 0, 0))


# The simulator's shoppers, each with a hidden preferred variant (pipeline/local/simulate.py).
SHOPPERS_SEED, SHOPPERS_N = 2127, 2000
HIGH_INTENT_VARIANTS = ("social_proof", "short", "long")  # most shoppers prefer the first
ROUNDS, PER_ROUND = 12, 150


def test_the_allocation_converges_to_the_variant_the_simulated_shoppers_prefer(clickhouse):
    """Rounds as the dispatcher runs them, on the warehouse: the evidence snapshot taken
    from the receipts (its own query), each nudge's variant drawn with the snapshot in
    force at its decision time, sends and clicks recorded as receipts, the clicks as the
    simulator's shoppers make them. The allocation ends on the variant most of them
    prefer, and the bandit loses fewer clicks than a uniform split would."""
    client = clickhouse
    shoppers = [f"variant-shopper-{i}" for i in range(SHOPPERS_N)]
    truth = {u: preferred_variant(SHOPPERS_SEED, u, HIGH_INTENT_VARIANTS) for u in shoppers}
    majority = Counter(truth.values()).most_common(1)[0][0]
    assert majority == HIGH_INTENT_VARIANTS[0]

    def expected_clicks(variant: str) -> float:  # over the population, per message
        return sum(click_chance(truth[u], variant) for u in shoppers) / len(shoppers)

    best = max(expected_clicks(v) for v in HIGH_INTENT_VARIANTS)
    uniform = sum(best - expected_clicks(v) for v in HIGH_INTENT_VARIANTS) / 3
    rng = random.Random(SHOPPERS_SEED)
    at = datetime(2026, 3, 2, 9, tzinfo=UTC)  # the module's database: no other high_intent
    regret, choices = 0.0, Counter()
    for round_ in range(ROUNDS):
        taken = epoch_ms(at)
        snapshot = take_snapshot(
            client, "high_intent", list(HIGH_INTENT_VARIANTS), "click", taken, taken + 1
        )
        rows = []
        for i in range(PER_ROUND):
            nudge_id = uuid.uuid5(uuid.NAMESPACE_OID, f"variant-round-{round_}-{i}").hex
            user = rng.choice(shoppers)
            variant = variant_at([snapshot], nudge_id, taken + 2 + i)
            choices[variant] += round_ == ROUNDS - 1
            regret += best - expected_clicks(variant)
            sent_at = at + timedelta(seconds=10 + i)
            rows.append(receipt_of(nudge_id, user, "sent", sent_at, variant))
            if rng.random() < click_chance(truth[user], variant):
                rows.append(receipt_of(nudge_id, user, "clicked", sent_at + timedelta(minutes=1)))
        client.insert("receipts", rows, column_names=VARIANT_RECEIPT_COLUMNS)
        at += timedelta(minutes=5)
    final = take_snapshot(
        client, "high_intent", list(HIGH_INTENT_VARIANTS), "click", epoch_ms(at), epoch_ms(at)
    )
    shares = allocation(final)
    print(
        f"allocation {shares}; last round {dict(choices)}; regret {regret:.1f} clicks,"
        f" uniform split's {uniform * ROUNDS * PER_ROUND:.1f}"
    )
    assert shares[majority] >= 0.9, shares
    assert choices[majority] >= 0.8 * PER_ROUND, choices
    assert regret < uniform * ROUNDS * PER_ROUND / 2, regret
    assert sum(a.sends for a in final.arms) == ROUNDS * PER_ROUND


VARIANT_RECEIPT_COLUMNS = [
    "receipt_id", "message_id", "kind", "user_key", "status", "at", "variant"
]  # fmt: skip


def receipt_of(message: str, user: str, status: str, at: datetime, variant: str = "") -> list:
    return [f"{message}-{status}", message, "high_intent", user, status, at, variant]
