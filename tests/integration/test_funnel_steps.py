"""``funnel_steps``, the pre-aggregation funnels read, on the real warehouse.

Events go in the way the sink writes them (into ``events``; the materialized view
fills ``funnel_steps``), and every answer is compared with the raw ``windowFunnel``
over ``events`` (``funnel(..., raw=True)``, the definition):
- many request shapes: steps, windows from 1 s to 90 days, ranges cut at any
  millisecond and across a month boundary, every breakdown;
- re-delivered events (stored twice in the arrays) change nothing;
- a step-1 and a step-2 event at the same millisecond chain, whatever their order;
- an erasure reaches ``funnel_steps`` too, including a row of another user that
  carries an erased anonymous id, and the answers still equal the raw query's.
"""

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from clickhouse_connect.driver.client import Client

from api.privacy.erasure import erase_warehouse
from api.queries.common import TimeRange
from api.queries.funnel import BREAKDOWN_COLUMNS, funnel
from pipeline.local.simulate import generate_events
from pipeline.sink.rows import EVENTS, event_row
from schemas.events import parse_event
from schemas.pii import MasterKey
from tests.rows import insert

# Simulated events fall in the 3 days before END: across the March/April boundary.
END = datetime(2024, 4, 2, 12, 0, tzinfo=UTC)
ALL = TimeRange(0, 4_000_000_000_000)
NAMES = ["page_view", "product_view", "add_to_cart", "checkout_started", "order_placed"]


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def rows_of(raw: list[dict]) -> list[tuple]:
    return [
        event_row(parse_event(item, received_at=datetime.fromisoformat(item["timestamp"])))
        for item in raw
    ]


def same(client: Client, steps: list[str], window_s: int, span: TimeRange, by: str | None):
    got = funnel(client, steps, window_s, span, by)
    assert got == funnel(client, steps, window_s, span, by, raw=True)
    return got


@pytest.fixture(scope="module")
def simulated(clickhouse: Client) -> list[tuple]:
    rows = rows_of(generate_events(7, 150, 8000, END, days=3))
    random.Random(3).shuffle(rows)
    for start in range(0, len(rows), 900):
        insert(clickhouse, EVENTS, rows[start : start + 900], f"fs-{start}")
    return rows


def shapes() -> list[tuple[list[str], int, tuple[int, int], str | None]]:
    start = ms(END - timedelta(days=3))
    rng = random.Random(19)
    cases: list[tuple[list[str], int, tuple[int, int], str | None]] = [
        (NAMES[:4], 3600, (start, ms(END)), None),
        (NAMES, 86_400, (start, ms(END)), "device"),
        (["search", "product_view"], 600, (start, ms(END)), None),
        (["product_view", "add_to_cart"], 1, (start, ms(END)), "product_id"),
        (["add_to_cart", "page_view", "order_placed"], 90 * 86_400, (0, ms(END) * 2), None),
    ]
    for _ in range(12):
        steps = rng.sample([*NAMES, "search"], rng.randint(1, 5))
        lo = start + rng.randint(0, 2 * 86_400_000)
        hi = lo + rng.randint(1, 86_400_000 * 2)
        window = rng.choice([1, 30, 600, 3600, 86_400])
        by = rng.choice([None, *BREAKDOWN_COLUMNS])
        cases.append((steps, window, (lo, hi), by))
    return cases


@pytest.mark.parametrize(("steps", "window_s", "span", "by"), shapes())
def test_equals_the_raw_query(
    clickhouse: Client,
    simulated: list[tuple],
    steps: list[str],
    window_s: int,
    span: tuple[int, int],
    by: str | None,
) -> None:
    same(clickhouse, steps, window_s, TimeRange(*span), by)


def test_the_month_boundary_and_full_range_hold_funnels(
    clickhouse: Client, simulated: list[tuple]
) -> None:
    months = clickhouse.command("SELECT uniqExact(month) FROM funnel_steps")
    assert months == 2
    rows = same(clickhouse, NAMES[:4], 86_400, ALL, "device")
    assert sum(r.users for r in rows if r.step == 2) > 0


def test_redelivered_events_change_nothing(clickhouse: Client, simulated: list[tuple]) -> None:
    span = TimeRange(ms(END - timedelta(days=3)), ms(END))
    before = [same(clickhouse, NAMES[:4], 3600, span, by) for by in (None, "device")]
    stored = clickhouse.command("SELECT sum(length(times)) FROM funnel_steps")
    # Re-delivered with other boundaries: events and funnel_steps hold them twice...
    insert(clickhouse, EVENTS, simulated[500:3100], "fs-again-a")
    insert(clickhouse, EVENTS, simulated[3100:4000], "fs-again-b")
    assert clickhouse.command("SELECT sum(length(times)) FROM funnel_steps") > stored
    # ...and no answer changes, merged or not.
    assert [same(clickhouse, NAMES[:4], 3600, span, by) for by in (None, "device")] == before
    clickhouse.command("OPTIMIZE TABLE funnel_steps FINAL")
    assert [same(clickhouse, NAMES[:4], 3600, span, by) for by in (None, "device")] == before


def event(name: str, at: datetime, anonymous: str, user: str | None = None) -> dict:
    item = {
        "event_id": str(uuid.uuid4()),
        "name": name,
        "timestamp": at.isoformat(),
        "anonymous_id": anonymous,
        "properties": {
            "product_id": "p-1",
            "quantity": 1,
            "price": 10.0,
            "url": "https://s.example/",
        },
        "context": {"device": "mobile"},
    }
    if user is not None:
        item["user_id"] = user
    return item


def test_steps_at_the_same_millisecond_chain_in_either_order(clickhouse: Client) -> None:
    at = datetime(2024, 5, 5, 10, 0, 0, 123000, tzinfo=UTC)
    span = TimeRange(ms(at), ms(at) + 1)
    # Inserted step 2 first, in separate inserts (two rows of funnel_steps).
    insert(clickhouse, EVENTS, rows_of([event("add_to_cart", at, "anon-tie")]), "fs-tie-2")
    insert(clickhouse, EVENTS, rows_of([event("product_view", at, "anon-tie")]), "fs-tie-1")
    rows = same(clickhouse, ["product_view", "add_to_cart"], 1, span, "device")
    assert [(r.step, r.breakdown, r.users) for r in rows] == [(1, "mobile", 1), (2, "mobile", 1)]
    # The other way round does not chain.
    rows = same(clickhouse, ["add_to_cart", "product_view"], 1, span, None)
    assert [(r.step, r.users) for r in rows] == [(1, 1), (2, 1)]
    late = TimeRange(ms(at) + 1, ms(at) + 2)
    assert [r.users for r in same(clickhouse, ["product_view"], 1, late, None)] == [0]


def test_an_erasure_reaches_funnel_steps(clickhouse: Client) -> None:
    """The erased user's rows, those of the anonymous id they claimed first, and another
    user's event carrying that anonymous id go from funnel_steps as from events."""
    t0 = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
    user, anonymous, other = "u-erase-me", "anon-erase-me", "u-other"
    journey = [
        event("page_view", t0, anonymous),
        event("product_view", t0 + timedelta(minutes=1), anonymous),
        event("identify", t0 + timedelta(minutes=2), anonymous, user),
        event("add_to_cart", t0 + timedelta(minutes=3), anonymous, user),
        # Another user's event with the erased anonymous id: events loses it too.
        event("page_view", t0 + timedelta(minutes=4), anonymous, other),
        event("product_view", t0 + timedelta(minutes=5), "anon-other", other),
        event("page_view", t0, "anon-bystander"),
        event("product_view", t0 + timedelta(minutes=1), "anon-bystander"),
    ]
    insert(clickhouse, EVENTS, rows_of(journey), "fs-erase")
    span = TimeRange(ms(t0), ms(t0 + timedelta(hours=1)))
    steps = ["page_view", "product_view", "add_to_cart"]
    ids = {"ids": [user, anonymous]}
    held = (
        "SELECT count() FROM funnel_steps WHERE user_key IN {ids:Array(String)}"
        " OR user_id IN {ids:Array(String)} OR anonymous_id IN {ids:Array(String)}"
    )
    assert clickhouse.query(held, parameters=ids).result_rows[0][0] > 0
    assert [r.users for r in same(clickhouse, steps, 3600, span, None)] == [3, 3, 0]

    result = erase_warehouse(clickhouse, user, MasterKey.from_secret("test-funnel-master"))

    assert not result.errors and not result.remaining
    assert result.rows["funnel_steps"] > 0
    assert clickhouse.query(held, parameters=ids).result_rows[0][0] == 0
    # The other user's step 1 went with the anonymous id; the bystander is intact.
    assert [r.users for r in same(clickhouse, steps, 3600, span, None)] == [1, 1, 0]
