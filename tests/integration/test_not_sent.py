"""Every non-send is visible in the warehouse: the profile's "why / why not" and the
breakdown ``GET /v1/metrics/nudges/not_sent``, on the real warehouse.

Rows are written with the sink's own row functions, as the live sink writes them.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from pipeline.sink.rows import (
    NUDGE_HOLDS,
    NUDGES,
    RECEIPTS,
    hold_row,
    nudge_row,
    receipt_row,
)
from schemas.keys import hash_api_key
from schemas.messages import Nudge, NudgeHeld, Receipt
from schemas.receipt_ids import receipt_id
from tests import support
from tests.rows import insert

READ_KEY = "test-read-key"
AUTH = {"Authorization": f"Bearer {READ_KEY}"}
T0 = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)  # data lives here; no clock is read
RELEASE = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)


api = support.in_process_api(read_key_hashes=hash_api_key(READ_KEY))


def nudge(n: int, user: str, status: str = "emit", reason: str | None = None) -> Nudge:
    return Nudge(
        nudge_id=f"{n:032x}",
        kind="high_intent",
        user_key=user,
        status=status,  # type: ignore[arg-type]
        reason=reason,  # type: ignore[arg-type]
        triggered_at=T0,
        decided_at=T0 if status != "emit" or n != 2 else RELEASE,
        product_id="p1",
        discount_percent=10,
        score=9.0,
        rules_version="r1",
        trigger_event_id=f"e{n}",
    )


def held(n: int, user: str) -> NudgeHeld:
    return NudgeHeld(
        nudge_id=f"{n:032x}",
        kind="high_intent",
        user_key=user,
        held_at=T0,
        release_at=RELEASE,
        rules_version="r1",
        trigger_event_id=f"e{n}",
    )


def receipt(n: int, user: str, status: str, detail: str, at: datetime) -> Receipt:
    return Receipt(
        receipt_id=receipt_id(f"{n:032x}", None, status, detail),
        message_id=f"{n:032x}",
        kind="high_intent",
        user_key=user,
        status=status,  # type: ignore[arg-type]
        at=at,
        detail=detail,
    )


@pytest.fixture(scope="module")
def data(clickhouse: Client) -> None:
    # 1: held by the engine, not yet released. 2: held by the engine, then released (emit)
    # and expired by the dispatcher as stale. 3: holdout. 4: held by the dispatcher.
    insert(
        clickhouse,
        NUDGE_HOLDS,
        [hold_row(held(1, "ann"), "live"), hold_row(held(2, "bob"), "live")],
        "holds",
    )
    insert(
        clickhouse,
        NUDGES,
        [
            nudge_row(nudge(2, "bob"), "live"),
            nudge_row(nudge(3, "cy", "suppressed", "holdout"), "live"),
            nudge_row(nudge(4, "di"), "live"),
        ],
        "nudges",
    )
    until = "quiet_hours_until:2026-03-03T08:00:00Z"
    insert(
        clickhouse,
        RECEIPTS,
        [
            receipt_row(receipt(2, "bob", "expired", "stale", RELEASE)),
            receipt_row(receipt(4, "di", "held", until, T0 + timedelta(minutes=1))),
        ],
        "receipts",
    )


def profile(api: TestClient, user: str) -> list[dict[str, Any]]:
    response = api.get(f"/v1/users/{user}/profile", headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()["decisions"]


def test_the_profile_says_why_not(api: TestClient, data: None) -> None:
    [ann] = profile(api, "ann")
    assert (ann["status"], ann["reason"], ann["held_until"]) == (
        "held",
        "quiet_hours",
        "2026-03-03T08:00:00Z",
    )
    [bob] = profile(api, "bob")  # released: the final nudge replaces the hold
    assert (bob["status"], bob["held_until"]) == ("emit", None)
    assert (bob["delivery"], bob["delivery_detail"]) == ("expired", "stale")
    [cy] = profile(api, "cy")
    assert (cy["status"], cy["reason"], cy["delivery"]) == ("suppressed", "holdout", "")
    [di] = profile(api, "di")
    assert (di["delivery"], di["delivery_detail"]) == (
        "held",
        "quiet_hours_until:2026-03-03T08:00:00Z",
    )


def test_the_breakdown_counts_every_non_send(api: TestClient, data: None) -> None:
    response = api.get(
        "/v1/metrics/nudges/not_sent",
        params={"from": "2026-03-01T00:00:00Z", "to": "2026-03-05T00:00:00Z"},
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    rows = {
        (r["outcome"], r["stage"], r["kind"], r["reason"]): r["messages"]
        for r in response.json()["rows"]
    }
    assert rows == {
        ("held", "decision", "high_intent", "quiet_hours"): 2,
        ("still_held", "decision", "high_intent", "quiet_hours"): 1,
        ("suppressed", "decision", "high_intent", "holdout"): 1,
        ("expired", "send", "high_intent", "stale"): 1,
        ("held", "send", "high_intent", "quiet_hours"): 1,
    }
