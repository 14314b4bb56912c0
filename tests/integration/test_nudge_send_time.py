"""High-intent nudges at each shopper's best hour, on the real parts, against the truth.

test_dispatch.py's stack (broker, warehouse, API, provider simulator, a real dispatcher
process) and its engine (whose sink brings nudges and receipts to the warehouse).
Generated shoppers have a hidden preferred hour (pipeline/local/simulate.py): most of
their past reads fall in it. The send-hour snapshot is taken from those receipts with
the leader's own function, in force just before the nudges' decision times; the rules
send high-intent nudges at the best hour, a 20 % control at a random hour.

Time is data: the nudges were decided a day ago (back-dated, with a two-day maximum
age and a 23-hour maximum delay), so every aimed instant has passed and the dispatcher
sends at once what a timely dispatcher would have held until then; a few nudges decided
now are held (``send_time_until``), not sent. The shoppers then read as ``read_chance``
says for the local hour each message was aimed at, and ``GET /v1/metrics/send_time``
compares the arms. Each receipt's arm and hour are recomputed from the recorded snapshot
and the nudge (``policy.aim``): no mismatch. Last, the whole loop on the engine: a
shopper's events make a high-intent nudge, held for their best hour, and their order of
the product withdraws it before it is sent.
"""

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import yaml
from click.testing import CliRunner

from api.privacy.store import ConsentDecision, PrivacyStore
from pipeline.campaigns.best_hour import in_control
from pipeline.cli import main
from pipeline.dispatch import policy
from pipeline.dispatch.dispatcher import held_until
from pipeline.dispatch.send_hours import load_snapshots, take_snapshot
from pipeline.domain.ids import in_holdout
from pipeline.domain.rules import default_rules, load_rules
from pipeline.local.simulate import preferred_hour, read_chance
from schemas import pii
from schemas.messages import SEND_TIME_UNTIL_PREFIX, Nudge
from schemas.time import epoch_ms, from_ms, iso_z
from tests.integration import test_dispatch
from tests.integration.test_best_hour import ENOUGH, SEED, _history, _insert
from tests.integration.test_dispatch import (
    MASTER,
    READ,
    SERVER,
    _loop,
    consent,
    dispatch_rules,
    produce,
    sim_messages,
    track,
    wait_until,
)
from tests.rows import receipt
from tests.shoppers import event_of

stack = test_dispatch.stack
engine = test_dispatch.engine

SHOPPERS = 300
MAX_DELAY_S = 23 * 3600


@pytest.fixture(scope="module")
def best_hour_rules(stack):
    path = dispatch_rules(stack["tmp"] / "best-hour-rules.yaml")
    raw = yaml.safe_load(path.read_text())
    raw["dispatch"]["channel_plan"]["default"] = ["sms"]
    raw["dispatch"]["max_age_s"]["high_intent"] = 2 * 86_400
    raw["high_intent"]["send_time"] = {
        "mode": "best_hour",
        "max_delay_s": MAX_DELAY_S,
        "control_share": 0.2,
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def loop_shopper(user: str) -> bool:
    """Outside the default rules' holdout (the engine's) and the send-time control."""
    plan = default_rules().plan
    return not in_holdout(user, plan.salt, plan.holdout_share) and not in_control(
        "high_intent", user, 0.2
    )


def linger(user: str, product: str, at: datetime, zone_name: str) -> dict:
    """Forty seconds on a product's specs: four of them make its high-intent nudge."""
    props = {"product_id": product, "dwell_ms": 40_000}
    return event_of("spec_linger", user, at, f"s-{user}", properties=props, timezone=zone_name)


def ordered(user: str, product: str, zone_name: str) -> dict:
    props = {
        "order_id": f"o-{user}-{uuid.uuid4().hex[:6]}",
        "items": [{"product_id": product, "quantity": 1, "amount": 120.0}],
        "total": 120.0,
        "currency": "EUR",
    }
    at = datetime.now(UTC)
    return event_of("order_placed", user, at, f"s-{user}", properties=props, timezone=zone_name)


def high_intent(user: str, decided: datetime, tz: str) -> Nudge:
    """A fixed id per shopper: the control's random hour, and so the figures, do not
    depend on the run."""
    return Nudge(
        nudge_id=uuid.uuid5(uuid.NAMESPACE_OID, f"send-time:{user}").hex,
        kind="high_intent",
        user_key=user,
        user_id=user,
        status="emit",
        triggered_at=decided,
        decided_at=decided,
        product_id="p1",
        discount_percent=10,
        channels=("sms",),
        score=9.0,
        rules_version="test",
        trigger_event_id=uuid.uuid4().hex,
        timezone=tz,
    )


def test_nudges_go_at_the_learned_hour_and_are_read_more_than_at_random_hours(
    stack, engine, best_hour_rules
):
    ch = stack["ch"]
    rules = load_rules(best_hour_rules)
    zone_name = rules.suppression.default_timezone  # daytime now: no quiet hours
    tz = ZoneInfo(zone_name)
    now = datetime.now(UTC).replace(microsecond=0)
    decided_from = now - timedelta(hours=24, minutes=40)
    users = [f"sendtime-{i}" for i in range(SHOPPERS)]  # the module's own database
    hidden = {u: preferred_hour(SEED, u) for u in users}
    # A few shoppers decided now, whose learned hour is three hours ahead: held.
    later = [f"sendtime-later-{i}" for i in range(40)]
    later = [u for u in later if not in_control("high_intent", u, 0.2)][:3]
    # And one whose nudge the engine decides from its events, then withdraws on an order.
    buyer = next(u for u in (f"sendtime-buyer-{i}" for i in range(40)) if loop_shopper(u))
    ahead = (now.astimezone(tz).hour + 3) % 24
    hidden |= {u: ahead for u in [*later, buyer]}

    # History: reads (some clicked) over the month before the decisions, as the truth has
    # it (test_best_hour's shoppers' history), and the held shoppers' reads at their hour.
    zones = SimpleNamespace(user_keys=users, timezones=dict.fromkeys(users, zone_name))
    past, rich = _history(zones, hidden, decided_from)
    for user in [*later, buyer]:
        for i in range(ENOUGH):
            day = decided_from - timedelta(days=i + 1)
            at = day.astimezone(tz).replace(hour=ahead, minute=7, second=0).astimezone(UTC)
            past.append(receipt(f"past-{user}-{i}", user, "high_intent", "sms", "read", at))
    _insert(ch, past)

    # The leader's snapshot, taken just before the decisions and in force from then.
    taken = epoch_ms(decided_from) - 1000
    snapshot = take_snapshot(ch, zone_name, taken, taken + 1)
    assert [s.snapshot_id for s in load_snapshots(ch, [snapshot.snapshot_id])] == [
        snapshot.snapshot_id
    ]

    PrivacyStore(ch, pii.MasterKey.from_secret(MASTER)).record(
        [
            ConsentDecision(u, "sms", True, now, str(uuid.uuid4()), f"+1555030{i:04d}", "marketing")
            for i, u in enumerate([*users, *later])
        ]
    )
    # Decided a day ago, 7 s apart (every aim within 23 h has passed), and a few now.
    nudges = [
        high_intent(u, decided_from + timedelta(seconds=7 * i), zone_name)
        for i, u in enumerate(users)
    ]
    held = [high_intent(u, now, zone_name) for u in later]
    stack["dispatcher"].start(
        rules=str(best_hour_rules), send_hour_snapshot_s="1", bandit_lead_s="3600"
    )
    asyncio.run_coroutine_threadsafe(
        produce(stack["broker"], [*nudges, *held], per_second=100), _loop()
    ).result(30)

    wanted = {n.nudge_id for n in nudges}
    held_ids = {n.nudge_id for n in held}

    def sent() -> set[str]:
        return {m["message_id"] for m in sim_messages(stack)} & (wanted | held_ids)

    wait_until(lambda: sent() == wanted, 60, "every back-dated nudge sent")

    def arms() -> dict[str, tuple[str, str, int, str]]:
        rows = ch.query(
            "SELECT message_id, status, send_arm, send_hour, detail FROM receipts"
            " WHERE status IN ('sent', 'held') AND message_id IN {ids:Array(String)}",
            parameters={"ids": sorted(wanted | held_ids)},
        ).result_rows
        return {m: (status, arm, hour, detail) for m, status, arm, hour, detail in rows}

    wait_until(lambda: len(arms()) == len(wanted) + len(held), 60, "receipts in the warehouse")
    recorded = arms()

    # Held, not sent: decided now, their hour three hours ahead.
    for n in held:
        status, arm, hour, detail = recorded[n.nudge_id]
        aimed = n.decided_at.astimezone(tz).replace(minute=0, second=0) + timedelta(hours=3)
        assert (status, arm, hour) == ("held", "best_hour", ahead), n.nudge_id
        assert detail == held_until(epoch_ms(aimed), SEND_TIME_UNTIL_PREFIX)
    assert not sent() & held_ids

    # Determinism: every arm and hour recomputed from the recorded snapshot and the nudge.
    send_rules = policy.SendRules.of(rules)
    in_store = load_snapshots(ch, [snapshot.snapshot_id])
    aims = {}
    mismatches = 0
    for n in [*nudges, *held]:
        got = policy.aim(
            send_rules,
            n.kind,
            n.nudge_id,
            n.user_key,
            epoch_ms(n.decided_at),
            n.timezone,
            in_store,
        )
        assert got is not None
        aims[n.nudge_id] = got
        _, arm, hour, _ = recorded[n.nudge_id]
        mismatches += (arm, hour) != (got.arm, -1 if got.hour is None else got.hour)
    assert mismatches == 0

    best = [n for n in nudges if aims[n.nudge_id].arm == "best_hour"]
    control = [n for n in nudges if aims[n.nudge_id].arm == "random_hour"]
    assert len(control) > 30 and len(best) > 3 * len(control) * 0.8
    # Every aim is within the delay and at the start of its hour, or the decision itself.
    for n in nudges:
        got = aims[n.nudge_id]
        assert epoch_ms(n.decided_at) <= got.at_ms <= epoch_ms(n.decided_at) + MAX_DELAY_S * 1000
        assert got.hour is not None  # a fixed-offset zone: every hour is within 23 h
        local = from_ms(got.at_ms).astimezone(tz)
        assert local.hour == got.hour and (got.at_ms == epoch_ms(n.decided_at) or local.minute == 0)

    # The learned hour against the truth, for the best-hour arm's shoppers with history.
    learned = [n for n in best if n.user_key in rich]
    accuracy = sum(aims[n.nudge_id].hour == hidden[n.user_key] for n in learned) / len(learned)
    assert accuracy >= 0.95, accuracy

    # The shoppers read as the truth has it, at the local hour each message was aimed at.
    reads = []
    for n in nudges:
        got = aims[n.nudge_id]
        chance = read_chance(hidden[n.user_key], from_ms(got.at_ms).astimezone(tz).hour)
        if random.Random(f"{SEED}:{n.user_key}").random() < chance:
            reads.append(receipt(n.nudge_id, n.user_key, "high_intent", "sms", "read", now))
    _insert(ch, reads)

    span = {"from": iso_z(now - timedelta(hours=1)), "to": iso_z(now + timedelta(hours=1))}
    response = stack["http"].get(
        f"{stack['api']}/v1/metrics/send_time",
        params={**span, "kind": "high_intent"},
        headers=READ,
    )
    assert response.status_code == 200, response.text
    rows = {r["arm"]: r for r in response.json()["rows"]}
    # In a full session this module's engine also decides earlier modules' events (the
    # raw topic is shared), and its dispatcher sends the odd high-intent nudge of theirs
    # in the experiment: the endpoint counts those too, so they are counted here apart.
    ours = sorted(wanted | held_ids)
    foreign = {
        arm: (int(n), int(sent_n), int(read_n))
        for arm, n, sent_n, read_n in ch.query(
            "SELECT arm, count(), countIf(was_sent), countIf(was_read) FROM ("
            " SELECT message_id, anyIf(send_arm, send_arm != '') AS arm,"
            " max(status = 'sent') AS was_sent,"
            " max(status IN ('read', 'clicked')) AS was_read FROM receipts"
            " WHERE kind = 'high_intent' AND message_id NOT IN {ours:Array(String)}"
            " AND message_id IN (SELECT message_id FROM receipts WHERE send_arm != '')"
            " GROUP BY message_id) GROUP BY arm",
            parameters={"ours": ours},
        ).result_rows
    }
    other = {arm: foreign.get(arm, (0, 0, 0)) for arm in ("best_hour", "random_hour")}
    assert sum(n for n, _, _ in other.values()) <= 5, other  # a handful at most
    assert rows["best_hour"]["messages"] == len(best) + len(held) + other["best_hour"][0]
    assert rows["random_hour"]["messages"] == len(control) + other["random_hour"][0]
    assert rows["best_hour"]["sent"] == len(best) + other["best_hour"][1]
    foreign_reads = other["best_hour"][2] + other["random_hour"][2]
    assert rows["best_hour"]["read"] + rows["random_hour"]["read"] == len(reads) + foreign_reads
    assert rows["best_hour"]["read_rate"] > rows["random_hour"]["read_rate"]
    assert rows["difference"]["ci_low"] > 0
    # The kind in words states the same arms, number by number.
    summary = stack["http"].get(
        f"{stack['api']}/v1/summaries/nudges",
        params={**span, "kind": "high_intent"},
        headers=READ,
    )
    assert summary.status_code == 200, summary.text
    arms = summary.json()["figures"]["send_time"]
    stated = {
        "best_hour_messages": rows["best_hour"]["messages"],
        "best_hour_read": rows["best_hour"]["read"],
        "best_hour_read_share": pytest.approx(rows["best_hour"]["read_rate"]),
        "random_hour_messages": rows["random_hour"]["messages"],
        "random_hour_read": rows["random_hour"]["read"],
        "random_hour_read_share": pytest.approx(rows["random_hour"]["read_rate"]),
        "difference": pytest.approx(rows["difference"]["read_rate"]),
        "difference_low": pytest.approx(rows["difference"]["ci_low"]),
        "difference_high": pytest.approx(rows["difference"]["ci_high"]),
    }
    assert {name: arms[name] for name in stated} == stated
    said = (
        f"read {100 * rows['best_hour']['read_rate']:.1f} % at the learned best hour vs"
        f" {100 * rows['random_hour']['read_rate']:.1f} % at random hours"
    )
    assert said in summary.json()["text"], summary.json()["text"]
    print(
        f"learned = hidden for {accuracy:.1%} of {len(learned)} best-hour shoppers with history;"
        f" read rate best hour {rows['best_hour']['read_rate']:.3f}"
        f" ({rows['best_hour']['read']}/{rows['best_hour']['messages']},"
        f" CI [{rows['best_hour']['ci_low']:.3f}, {rows['best_hour']['ci_high']:.3f}]),"
        f" random hour {rows['random_hour']['read_rate']:.3f}"
        f" ({rows['random_hour']['read']}/{rows['random_hour']['messages']},"
        f" CI [{rows['random_hour']['ci_low']:.3f}, {rows['random_hour']['ci_high']:.3f}]),"
        f" difference {rows['difference']['read_rate']:.3f}"
        f" [{rows['difference']['ci_low']:.3f}, {rows['difference']['ci_high']:.3f}];"
        f" {mismatches} mismatches of {len(aims)} recomputed aims;"
        f" other modules' nudges in the experiment (messages, sent, read): {other}"
    )

    # The backtest recomputes the same from the warehouse: the nudges (with their zone)
    # as the engine's sink recorded them, the recorded snapshots and the rules.
    def decisions() -> int:
        return ch.query(
            "SELECT uniqExact(nudge_id) FROM nudges WHERE nudge_id IN {ids:Array(String)}",
            parameters={"ids": sorted(wanted)},
        ).result_rows[0][0]

    wait_until(lambda: decisions() == len(nudges), 60, "the decisions in the warehouse")
    env = {
        "INTENTFLOW_CLICKHOUSE_URL": stack["warehouse"],
        "INTENTFLOW_CLICKHOUSE_DATABASE": ch.database,
        "INTENTFLOW_RULES": str(best_hour_rules),
    }
    span = ["--from", iso_z(decided_from), "--to", iso_z(decided_from + timedelta(hours=1))]
    result = CliRunner().invoke(main, ["backtest", "send-times", *span], env=env)
    assert result.exit_code == 0, result.output
    assert f"{len(nudges)} nudges" in result.output and "0 mismatches" in result.output
    print(result.output.strip())

    # The leader records its own snapshots (in force an hour on: not these nudges').
    def taken_by_leader() -> int:
        return ch.query(
            "SELECT count() FROM send_hour_snapshots WHERE user_key = ''"
            " AND effective_from > now64(3) + INTERVAL 30 MINUTE"
        ).result_rows[0][0]

    wait_until(lambda: taken_by_leader() > 0, 30, "a leader's send-hour snapshot")

    # The whole loop: the engine decides a high-intent nudge from the shopper's events, the
    # dispatcher holds it for their best hour, and buying the product meanwhile withdraws
    # it (the engine's cancellation): it is never sent.
    track(stack, [consent(buyer, "sms", True, "+15550309999")])
    track(
        stack,
        [
            linger(buyer, "loop-camera", now - timedelta(seconds=40 - 10 * i), zone_name)
            for i in range(4)
        ],
    )

    def buyer_receipts() -> dict[str, tuple[str, str]]:
        rows = ch.query(
            "SELECT status, message_id, detail FROM receipts"
            " WHERE user_key = {u:String} AND kind = 'high_intent'",
            parameters={"u": buyer},
        ).result_rows
        return {status: (message_id, detail) for status, message_id, detail in rows}

    wait_until(lambda: "held" in buyer_receipts(), 60, "the engine's nudge held for the hour")
    message_id, detail = buyer_receipts()["held"]
    assert detail.startswith(SEND_TIME_UNTIL_PREFIX), detail
    track(stack, [ordered(buyer, "loop-camera", zone_name)], headers=SERVER)
    wait_until(lambda: "cancelled" in buyer_receipts(), 60, "the held nudge withdrawn")
    assert buyer_receipts()["cancelled"] == (message_id, "order_placed")
    assert "sent" not in buyer_receipts() and not sim_messages(stack, message_id)
