"""Send-time optimisation on the real broker and warehouse, against the simulator's truth.

Generated shoppers each have a hidden preferred hour (pipeline/local/simulate.py): most
of their past reads and clicks fall in it, and a message arriving near it is likelier
read. A best-hour campaign learns each member's hour from those receipts in the
warehouse, the launcher aims and publishes (the deferred through the release path), and
the members read their messages as the truth says. The test compares: the learned hour
is the hidden one for shoppers with enough history, and the campaign report's best-hour
arm is read more than the random-hour control, the interval's lower bound above zero;
the campaign's summary states the same figures.
"""

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from pipeline.local.broker import ensure_topics
from pipeline.local.simulate import preferred_hour, read_chance, reading_hour
from pipeline.sink.rows import RECEIPTS, receipt_row
from schemas.campaigns import CAMPAIGN_COLUMNS, member_message_id
from schemas.topics import TopicSpec
from tests.collector_server import READ_KEY
from tests.integration.test_campaign_failures import campaign_row
from tests.integration.test_campaign_quiet_hours import _messages, _run
from tests.integration.test_console import signed_in
from tests.rows import receipt
from tests.shoppers import write_shoppers

MASTER = "test-pii-master-key"
READ = {"Authorization": f"Bearer {READ_KEY}"}
SEED, SHOPPERS = 2126, 600
# Shoppers with this many past reads have "enough history"; the others have at most one.
ENOUGH, RICH_SHARE = 8, 0.75


def _local(day: datetime, hour: int, minute: int, tz: ZoneInfo) -> datetime:
    return day.astimezone(tz).replace(hour=hour, minute=minute, second=0).astimezone(UTC)


def _history(shoppers, hidden: dict[str, int], now: datetime) -> tuple[list, set[str]]:
    """Past campaign messages' reads (and some clicks) over the last 30 days, as the
    truth has them: mostly at each shopper's hidden hour, in their zone."""
    rng = random.Random(SEED)
    receipts, rich = [], set()
    for user in shoppers.user_keys:
        tz = ZoneInfo(shoppers.timezones[user] or "UTC")
        reads = ENOUGH if rng.random() < RICH_SHARE else rng.randint(0, 1)
        if reads >= ENOUGH:
            rich.add(user)
        for i in range(reads):
            day = now - timedelta(days=rng.randint(1, 30))
            at = _local(day, reading_hour(rng, hidden[user]), rng.randrange(60), tz)
            message = f"past-{user}-{i}"
            receipts.append(receipt(message, user, "campaign", "whatsapp", "read", at))
            if rng.random() < 0.3:
                clicked = at + timedelta(minutes=2)
                receipts.append(receipt(message, user, "campaign", "whatsapp", "clicked", clicked))
    return receipts, rich


def _insert(clickhouse: Client, receipts: list) -> None:
    rows = [list(receipt_row(r)) for r in receipts]
    clickhouse.insert(RECEIPTS.name, rows, column_names=list(RECEIPTS.columns))


def test_best_hours_converge_to_the_hidden_ones_and_beat_random_hours(
    broker: str, clickhouse: Client, api: str, http: httpx.Client
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    prefix = "besthour"  # the module's own database: the same shoppers every run
    shoppers = write_shoppers(
        clickhouse, SHOPPERS, seed=SEED, now=now, master=MASTER, prefix=prefix, consent_share=0.9
    )
    hidden = {u: preferred_hour(SEED, u) for u in shoppers.user_keys}
    past, rich = _history(shoppers, hidden, now)
    _insert(clickhouse, past)

    campaign_id = uuid.uuid5(uuid.NAMESPACE_OID, "best-hour-test").hex  # a fixed control arm
    # Created and updated at the launch's own now, so the launched row supersedes it.
    times = {"created_at": now, "updated_at": now}
    campaign = campaign_row(
        "best hour", now, prefix, campaign_id=campaign_id, send_time="best_hour", **times
    )
    clickhouse.insert("campaigns", [[campaign[c] for c in CAMPAIGN_COLUMNS]], CAMPAIGN_COLUMNS)
    topic = TopicSpec(f"besthour-{uuid.uuid4().hex[:8]}.nudges", 4)
    asyncio.run(ensure_topics(broker, [topic]))

    # A day of polls in one step: every aimed time is within 23 hours of the launch.
    steps = [("launch", now), ("release", now + timedelta(hours=24))]
    launched, released = asyncio.run(_run(clickhouse, broker, topic, campaign, steps))
    targets = {
        user: (arm, hour, send_after.replace(tzinfo=UTC))
        for user, arm, hour, send_after in clickhouse.query(
            "SELECT user_key, send_arm, send_hour, send_after FROM campaign_members FINAL"
            " WHERE campaign_id = {c:String} AND member_group = 'target'",
            parameters={"c": campaign_id},
        ).result_rows
    }
    assert launched.targeted == len(targets) > 0
    assert released == launched.deferred > 0, "aimed messages wait, then take the release path"
    messages = asyncio.run(_messages(broker, topic, len(targets)))
    assert set(messages) == {member_message_id(campaign_id, u) for u in targets}

    # The learned hour against the truth, for the best-hour arm's shoppers with history.
    best = {u: h for u, (arm, h, _) in targets.items() if arm == "best_hour"}
    control = {u: h for u, (arm, h, _) in targets.items() if arm == "random_hour"}
    assert best.keys() | control.keys() == targets.keys() and len(control) > 50
    learned = [u for u in best if u in rich]
    accuracy = sum(best[u] == hidden[u] for u in learned) / len(learned)
    assert accuracy >= 0.95, accuracy
    # The random arm's hours are not the learned ones: about 1 in 24 hits the truth.
    assert sum(control[u] == hidden[u] for u in control) / len(control) < 0.2
    for user, (_, hour, send_after) in targets.items():
        tz = ZoneInfo(shoppers.timezones[user] or "UTC")
        assert send_after.astimezone(tz).hour == hour or send_after == now, user

    # The members read their messages as the truth has it, at the hour each arrived.
    reads = []
    for user, (_, _, send_after) in targets.items():
        tz = ZoneInfo(shoppers.timezones[user] or "UTC")
        chance = read_chance(hidden[user], send_after.astimezone(tz).hour)
        if random.Random(f"{SEED}:{user}").random() < chance:
            message = member_message_id(campaign_id, user)
            at = send_after + timedelta(minutes=5)
            reads.append(
                receipt(message, user, "campaign", "whatsapp", "read", at, campaign_id=campaign_id)
            )
    _insert(clickhouse, reads)

    response = http.get(f"/v1/campaigns/{campaign_id}", headers=READ)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["send_time"] == "best_hour"
    assert (report["best_hour_targets"], report["random_hour_targets"]) == (
        len(best),
        len(control),
    )
    assert report["best_hour_read"] + report["random_hour_read"] == len(reads)
    assert report["best_hour_read_rate"] > report["random_hour_read_rate"]
    assert report["send_time_uplift_ci_low"] > 0
    # The campaign in words: the arms' figures are the report's, number by number.
    summary = http.get(f"/v1/summaries/campaigns/{campaign_id}", headers=READ)
    assert summary.status_code == 200, summary.text
    arms = summary.json()["figures"]["send_time"]
    expected = {
        "best_hour_messages": report["best_hour_targets"],
        "best_hour_read": report["best_hour_read"],
        "random_hour_messages": report["random_hour_targets"],
        "random_hour_read": report["random_hour_read"],
        "difference": pytest.approx(report["send_time_uplift"]),
        "difference_low": pytest.approx(report["send_time_uplift_ci_low"]),
        "difference_high": pytest.approx(report["send_time_uplift_ci_high"]),
    }
    assert {name: arms[name] for name in expected} == expected
    assert (arms["best_hour_read_share"], arms["random_hour_read_share"]) == pytest.approx(
        (report["best_hour_read_rate"], report["random_hour_read_rate"])
    )
    said = (
        f"read {100 * report['best_hour_read_rate']:.1f} % at the learned best hour"
        f" vs {100 * report['random_hour_read_rate']:.1f} % at random hours,"
        f" {100 * report['send_time_uplift']:+.1f} pt"
    )
    assert said in summary.json()["text"], summary.json()["text"]
    with signed_in(api, READ_KEY) as console:
        page = console.get(f"/console/campaigns/{campaign_id}").text
    shown = f"Best hour: {report['best_hour_read']} of {report['best_hour_targets']} read"
    assert 'id="campaign-send-time"' in page and shown in page
    print(
        f"learned = hidden for {accuracy:.1%} of {len(learned)} shoppers with history;"
        f" read rate best hour {report['best_hour_read_rate']:.3f}"
        f" ({report['best_hour_read']}/{report['best_hour_targets']}),"
        f" random hour {report['random_hour_read_rate']:.3f}"
        f" ({report['random_hour_read']}/{report['random_hour_targets']}),"
        f" uplift {report['send_time_uplift']:.3f}"
        f" [{report['send_time_uplift_ci_low']:.3f}, {report['send_time_uplift_ci_high']:.3f}]"
    )
