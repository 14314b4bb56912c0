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
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from click.testing import CliRunner

from api.privacy.store import ConsentDecision, PrivacyStore
from pipeline.cli import main
from schemas import pii
from schemas.bandit import Arm, Snapshot, snapshot_id, variant_at
from schemas.bandit_tables import record_snapshot
from schemas.time import epoch_ms, iso_z
from tests.integration import test_dispatch
from tests.integration.test_dispatch import (
    MASTER,
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

    env = {
        "INTENTFLOW_CLICKHOUSE_URL": stack["warehouse"],
        "INTENTFLOW_CLICKHOUSE_DATABASE": stack["ch"].database,
    }
    span = ["--from", iso_z(now - timedelta(hours=1)), "--to", iso_z(now + timedelta(hours=1))]
    result = CliRunner().invoke(main, ["backtest", "variants", *span], env=env)
    assert result.exit_code == 0, result.output
    assert f"{len(nudges)} sends" in result.output
    assert f"{len(nudges)} with a variant, 0 mismatches" in result.output

    # A recorded choice that differs from the recomputed one is reported.
    victim = nudges[0]
    stack["ch"].command(
        "ALTER TABLE receipts UPDATE variant = 'tampered' WHERE message_id = {id:String}",
        parameters={"id": victim.nudge_id},
        settings={"mutations_sync": 1},
    )
    result = CliRunner().invoke(main, ["backtest", "variants", *span], env=env)
    assert result.exit_code == 1
    assert "1 mismatches" in result.output and victim.nudge_id in result.output
