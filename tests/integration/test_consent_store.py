"""The consent store's write (api/privacy/store.py) against a real warehouse: what its one
read statement finds decides a write key's phone change, under linked keys too."""

import asyncio
import random
import re
import threading
import uuid
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from api.privacy.consent import ConsentRecorder
from api.privacy.erasure import erase_warehouse
from api.privacy.store import (
    LOOKUP,
    LOOKUP_OVER_EVENTS,
    SKIP_INDEXES_WITH_FINAL,
    USERS_BY_PHONE,
    ConsentDecision,
    ConsentWrite,
    PrivacyStore,
    phone_hash,
)
from schemas import pii
from schemas.dispatch_tables import PHONE_CHANGE_NEEDS_VERIFICATION, PII_KEYS, PII_PHONES
from schemas.warehouse import warehouse_client

MASTER = pii.MasterKey.from_secret("test-pii-master-key")


def decision(user: str, phone: str | None, trusted: bool = False, **fields) -> ConsentDecision:
    values = {"channel": "whatsapp", "granted": True, "purpose": "marketing"}
    values.update(fields)
    return ConsentDecision(
        user_key=user,
        decided_at=datetime.now(UTC),
        event_id=str(uuid.uuid4()),
        phone=phone,
        trusted=trusted,
        **values,
    )


def link(clickhouse: Client, user_id: str, anonymous_id: str) -> None:
    """An event tying a browser's anonymous id to a user id (as an identify does)."""
    insert_events(clickhouse, [("identify", user_id, anonymous_id)])


def insert_events(clickhouse: Client, events: list[tuple[str, str, str]]) -> None:
    """(name, user id, anonymous id) events, as the sink stores them (user_key: the user
    id, else the anonymous id)."""
    clickhouse.insert(
        "events",
        [
            [uuid.uuid4(), name, datetime.now(UTC), user_id or anonymous_id, anonymous_id, user_id]
            for name, user_id, anonymous_id in events
        ],
        column_names=["event_id", "name", "timestamp", "user_key", "anonymous_id", "user_id"],
    )


def test_a_phone_under_a_linked_key_makes_another_phone_a_pending_change(clickhouse: Client):
    store = PrivacyStore(clickhouse, MASTER)
    user, browser = f"user-{uuid.uuid4()}", f"anon-{uuid.uuid4()}"
    link(clickhouse, user, browser)
    first = decision(browser, "+12025550171")
    assert store.record([first])[first.event_id].pending is None

    # Under the user id, from a write key: another phone is a change, kept pending; the
    # same phone is not; a server key may change it.
    other = decision(user, "+12025550172")
    same = decision(user, "+12025550171", channel="sms")
    stored = store.record([other, same])
    assert stored[other.event_id].pending == PHONE_CHANGE_NEEDS_VERIFICATION
    assert stored[same.event_id].pending is None
    trusted = decision(user, "+12025550172", trusted=True)
    assert store.record([trusted])[trusted.event_id].pending is None
    assert {c["purpose"]: c["granted"] for c in store.consents(user)} == {"marketing": True}

    # An unlinked shopper's first phone is theirs; a revoke with a new phone needs no check.
    stranger = decision(f"anon-{uuid.uuid4()}", "+12025550173")
    assert store.record([stranger])[stranger.event_id].pending is None
    revoke = decision(browser, "+12025550174", granted=False)
    assert revoke.event_id not in store.record([revoke])
    assert [c["granted"] for c in store.consents(browser)] == [False]


def test_a_phone_stored_before_its_hash_is_opened_to_check_a_change(clickhouse: Client):
    store = PrivacyStore(clickhouse, MASTER)
    user = f"user-{uuid.uuid4()}"
    first = decision(user, "+12025550181")
    store.record([first])
    # As a phone stored before migration 0142: no hash beside it.
    clickhouse.command(
        f"ALTER TABLE {PII_PHONES} UPDATE phone_hash = '' WHERE user_key = {{u:String}}",
        parameters={"u": user},
        settings={"mutations_sync": 2},
    )
    change = decision(user, "+12025550182")
    same = decision(user, "+12025550181", channel="sms")
    stored = store.record([change, same])
    assert stored[change.event_id].pending == PHONE_CHANGE_NEEDS_VERIFICATION
    assert stored[same.event_id].pending is None
    # One data key per user, reused.
    keys = clickhouse.query(
        f"SELECT count() FROM {PII_KEYS} WHERE user_key = {{u:String}}", parameters={"u": user}
    ).result_rows
    assert keys == [(1,)]


async def test_a_group_is_written_while_an_earlier_one_is_held_and_counts_its_phone(
    warehouse: str, clickhouse: Client
):
    # The API's own kind of client: no server session, so statements may overlap.
    store = PrivacyStore(warehouse_client(warehouse, clickhouse.database, timeout_s=30), MASTER)
    entered, release = threading.Event(), threading.Event()
    write = store.write

    def first_held(planned: ConsentWrite) -> None:
        if not entered.is_set():
            entered.set()
            assert release.wait(30), "never released"
        write(planned)

    store.write = first_held  # type: ignore[method-assign]
    recorder = ConsentRecorder(store, max_writing=2)
    user = f"user-{uuid.uuid4()}"
    first = decision(user, "+12025550191")
    first_answer = asyncio.ensure_future(recorder.record([first]))
    await asyncio.to_thread(entered.wait, 20)

    # The next group is planned and stored while the first is still being written; the
    # first's phone counts as in use, so a write key's other phone for the user is pending.
    change, stranger = decision(user, "+12025550192"), decision(f"anon-{uuid.uuid4()}", None)
    try:
        second = await asyncio.wait_for(recorder.record([change, stranger]), 20)
        assert not first_answer.done()
    finally:
        release.set()
    assert second[change.event_id].pending == PHONE_CHANGE_NEEDS_VERIFICATION
    assert (await first_answer)[first.event_id].pending is None
    assert [c["granted"] for c in store.consents(user)] == [True]
    [(masked,)] = clickhouse.query(
        f"SELECT masked FROM {PII_PHONES} FINAL WHERE user_key = {{u:String}}",
        parameters={"u": user},
    ).result_rows
    assert masked.endswith("0191")


def test_the_lookup_finds_what_the_events_link_without_reading_them(clickhouse: Client):
    store = PrivacyStore(clickhouse, MASTER)
    run = uuid.uuid4().hex[:8]
    users = [f"user-{run}-{i}" for i in range(8)]
    browsers = [f"anon-{run}-{i}" for i in range(12)]
    rng = random.Random(20261206)
    # Pairs in any shape: repeated, an id paired with itself, events of one id only, and
    # inserts in several parts, as the sink's batches make them.
    for _ in range(4):
        events = []
        for _ in range(40):
            user = rng.choice([*users, ""])
            browser = rng.choice([*browsers, user or browsers[0], ""])
            if user or browser:
                events.append((rng.choice(["page_view", "identify"]), user, browser))
        insert_events(clickhouse, events)
    # Phones under some of the ids, as trusted servers send them.
    store.record(
        [decision(key, f"+1202555{i:04d}", trusted=True) for i, key in enumerate(users[:3])]
        + [decision(key, f"+1202556{i:04d}", trusted=True) for i, key in enumerate(browsers[:5])]
    )
    kinds: set[str] = set()
    for checked in [[u] for u in users] + [[b] for b in browsers] + [users[:2] + browsers[:2]]:
        params = {"keys": checked, "checked": checked}
        found = sorted(clickhouse.query(LOOKUP, parameters=params).result_rows)
        expected = sorted(clickhouse.query(LOOKUP_OVER_EVENTS, parameters=params).result_rows)
        assert found == expected, checked
        kinds.update(kind for kind, *_ in found)
    assert kinds == {"k", "l", "p"}  # keys, links and linked phones were all compared

    # And the consent write's read never scans the event history: the warehouse's own
    # estimate of what it reads names the links' table, not `events`.
    params = {"keys": users[:2], "checked": users[:2]}
    read = clickhouse.query(f"EXPLAIN ESTIMATE {LOOKUP}", parameters=params).result_rows
    assert "events" not in {table for _, table, *_ in read}
    assert "identity_links" in {table for _, table, *_ in read}


def test_an_erasure_reaches_the_links(clickhouse: Client):
    """Erasing a user takes the pairs holding their ids, under either id; a bystander's
    pair stays."""
    run = uuid.uuid4().hex[:8]
    user, browser, other = f"user-{run}", f"anon-{run}", f"user-{run}-other"
    insert_events(
        clickhouse,
        [
            ("page_view", "", browser),
            ("identify", user, browser),
            ("identify", other, f"anon-{run}-other"),
        ],
    )
    held = (
        "SELECT count() FROM identity_links WHERE user_key IN {ids:Array(String)}"
        " OR user_id IN {ids:Array(String)} OR anonymous_id IN {ids:Array(String)}"
    )
    assert clickhouse.query(held, parameters={"ids": [user, browser]}).result_rows == [(2,)]

    result = erase_warehouse(clickhouse, user, MASTER)

    assert not result.errors and not result.remaining
    assert result.rows["identity_links"] == 2
    assert clickhouse.query(held, parameters={"ids": [user, browser]}).result_rows == [(0,)]
    assert clickhouse.query(held, parameters={"ids": [other]}).result_rows == [(2,)]


def test_a_reply_finds_the_users_whose_phone_it_is_now_through_the_index(clickhouse: Client):
    """``users_by_phone`` (every inbound message): the users whose newest phone on the
    channel is the sender's, and no read of every stored phone to find them."""
    store = PrivacyStore(clickhouse, MASTER)
    run = uuid.uuid4().hex[:8]
    moved, kept, other_channel = (f"user-{run}-{n}" for n in ("moved", "kept", "sms"))
    old, new = "+12025550201", "+12025550202"
    store.record([decision(moved, old, trusted=True), decision(kept, old, trusted=True)])
    store.record([decision(other_channel, old, trusted=True, channel="sms")])
    store.record([decision(moved, new, trusted=True)])  # newer: the phone changed
    # Other shoppers' phones around them, in several parts, as a store's history is.
    for part in range(4):
        clickhouse.insert(
            PII_PHONES,
            [
                [f"filler-{run}-{part}-{i}", "whatsapp", f"h-{part}-{i}", datetime.now(UTC)]
                for i in range(10_000)
            ],
            column_names=["user_key", "channel", "phone_hash", "decided_at"],
        )

    assert store.users_by_phone("whatsapp", old) == [kept]
    assert store.users_by_phone("whatsapp", new) == [moved]
    assert store.users_by_phone("sms", old) == [other_channel]
    assert store.users_by_phone("whatsapp", "+12025550299") == []

    # No read of every phone: the hash's bloom filter skips the granules without it.
    params = {"c": "whatsapp", "h": phone_hash(MASTER, old)}
    plan = clickhouse.query(
        f"EXPLAIN indexes = 1 {USERS_BY_PHONE}", parameters=params, settings=SKIP_INDEXES_WITH_FINAL
    ).result_rows
    text = "\n".join(line for (line,) in plan)
    assert "phone_hash_bloom" in text, text
    found = re.search(r"Granules: (\d+)/(\d+)", text[text.index("phone_hash_bloom") :])
    assert found is not None, text
    selected, total = int(found[1]), int(found[2])
    assert total >= 5 and selected < total, text
