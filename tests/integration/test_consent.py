"""Consent by purpose, STOP replies and phone changes, on the real parts: broker,
warehouse, the API, the provider simulator and the dispatcher as real processes (the
``stack`` of test_dispatch.py, reused with a database of this module's own).

Nothing here depends on the time of day: the dispatcher applies no quiet hours (the
engine decides them; these nudges are produced or forced directly).
"""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.collector_server import consume_matching
from tests.integration.test_dispatch import (
    ADMIN,
    READ,
    SERVER,
    WRITE,
    consent,
    dispatcher_caught_up,
    nudge,
    produce,
    sim_messages,
    statuses,
    switch_channels,
    wait_until,
)
from tests.integration.test_dispatch import stack as _dispatch_stack  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def dispatching(_dispatch_stack):  # noqa: F811 (the fixture imported above)
    _dispatch_stack["dispatcher"].start(delivery_timeout_s="3")
    return _dispatch_stack


def post_track(stack, events: list[dict], headers) -> dict:
    response = stack["http"].post(
        f"{stack['api']}/v1/track", json={"batch": events}, headers=headers
    )
    assert response.status_code == 202 and not response.json()["rejected"], response.text
    return response.json()


def write_key(stack, events: list[dict]) -> dict:
    return post_track(stack, events, WRITE)


def force_send(stack, user: str) -> str:
    response = stack["http"].post(
        f"{stack['api']}/v1/admin/messages/send",
        json={"user_id": user, "product_id": "p-force"},
        headers=ADMIN,
    )
    assert response.status_code == 202, response.text
    return response.json()["message_id"]


def reply(stack, channel: str, phone: str, text: str) -> dict:
    """The shopper answers on their phone: the simulator posts the provider's webhook."""
    response = stack["http"].post(
        f"{stack['sim']}/v1/{channel}/inbound", json={"from": phone, "text": text}
    )
    assert response.status_code == 200, response.text
    return response.json()


def counts(answer: dict) -> dict:
    """What our webhook said about a reply: messages read, users opted out."""
    return {k: answer["answer"][k] for k in ("messages", "opted_out")}


def consents_of(stack, user: str) -> dict[tuple[str, str], bool]:
    response = stack["http"].post(
        f"{stack['api']}/v1/admin/messages/preview", json={"user_id": user}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    return {(r["channel"], r["purpose"]): r["granted"] for r in response.json()["recipients"]}


def send_nudge(stack, user: str) -> str:
    """A nudge as the engine publishes it (decided earlier with WhatsApp allowed)."""
    decided = nudge(user)
    asyncio.run(produce(stack["broker"], [decided], per_second=100))
    return decided.nudge_id


# --- consent by purpose ------------------------------------------------------------------


def test_order_updates_consent_alone_does_not_let_a_nudge_out_at_send_time(dispatching):
    stack = dispatching
    user = f"updates-{uuid.uuid4().hex[:8]}"
    # The demo's "order updates on WhatsApp": no purpose, so transactional only.
    write_key(stack, [consent(user, "whatsapp", True, "+15550105555", purpose=None)])
    assert consents_of(stack, user) == {("whatsapp", "transactional"): True}

    message_id = send_nudge(stack, user)
    # The first wait of the module also covers the dispatcher joining its group.
    wait_until(
        lambda: ("suppressed", "", "no_consent") in statuses(stack, message_id),
        90,
        "the nudge suppressed for want of marketing consent",
    )
    assert sim_messages(stack, message_id) == []

    # Agreeing to offers on WhatsApp (the phone is already known) lets the next one out.
    write_key(stack, [consent(user, "whatsapp", True, purpose="marketing")])
    message_id = send_nudge(stack, user)
    wait_until(lambda: len(sim_messages(stack, message_id)) == 1, 30, "the nudge sent")
    [sent] = sim_messages(stack, message_id)
    assert (sent["channel"], sent["to_masked"]) == ("whatsapp", "+1 ••••••5555")


# --- STOP replies ------------------------------------------------------------------------


def test_a_stop_reply_revokes_marketing_cancels_the_queued_message_and_counts(dispatching):
    stack = dispatching
    http, api = stack["http"], stack["api"]
    user = f"stop-{uuid.uuid4().hex[:8]}"
    phone = "+15550108888"
    write_key(
        stack,
        [
            consent(user, "whatsapp", True, phone, purpose="transactional"),
            consent(user, "whatsapp", True, phone, purpose="marketing"),
        ],
    )
    since = datetime.now(UTC) - timedelta(minutes=1)
    switch_channels(stack, "pause", "whatsapp")
    try:
        message_id = send_nudge(stack, user)
        dispatcher_caught_up(stack)  # a held message writes no receipt: its offset tells
        assert statuses(stack, message_id) == set()  # queued: its only channel is paused
        assert sim_messages(stack, message_id) == []

        answer = reply(stack, "whatsapp", phone, "  Stop ")
        assert answer["webhook_status"] == 200, answer
        assert counts(answer) == {"messages": 1, "opted_out": 1}
        wait_until(
            lambda: ("cancelled", "", "consent_revoked") in statuses(stack, message_id),
            20,
            "the queued message cancelled",
        )
    finally:
        switch_channels(stack, "resume", "whatsapp")
    # Marketing revoked on WhatsApp only; order updates stay as they were.
    assert consents_of(stack, user) == {
        ("whatsapp", "marketing"): False,
        ("whatsapp", "transactional"): True,
    }
    # The engine hears of it too: a consent event (marketing, revoked) on the raw topic.
    raw = asyncio.run(
        consume_matching(
            stack["broker"],
            lambda v: v["name"] == "consent" and v["anonymous_id"] == user,
            until=bool,
        )
    )
    assert raw[0]["properties"] == {"channel": "whatsapp", "granted": False, "purpose": "marketing"}
    # A re-delivered webhook, or a non-STOP reply, changes nothing more.
    assert counts(reply(stack, "whatsapp", phone, "thanks!")) == {"messages": 1, "opted_out": 0}

    def opted_out() -> int:
        response = http.get(
            f"{api}/v1/metrics/opt_outs",
            params={
                "from": since.isoformat(),
                "to": datetime.now(UTC).isoformat(),
                "interval": "1h",
            },
            headers=READ,
        )
        assert response.status_code == 200, response.text
        return sum(r["count"] for r in response.json()["rows"] if r["channel"] == "whatsapp")

    assert opted_out() >= 1
    # The phone is matched by its keyed hash: it is nowhere in clear in the warehouse.
    for table in ("opt_outs", "pii_phones", "consents", "service_windows"):
        dump = stack["ch"].query(f"SELECT * FROM {table}").result_rows
        assert phone not in repr(dump) and phone[1:] not in repr(dump), table


def test_an_sms_stop_in_twilios_shape_revokes_sms_marketing(dispatching):
    stack = dispatching
    user = f"sms-stop-{uuid.uuid4().hex[:8]}"
    phone = "+15550109999"
    write_key(
        stack,
        [
            consent(user, "sms", True, phone, purpose="marketing"),
            consent(user, "whatsapp", True, phone, purpose="marketing"),
        ],
    )
    answer = reply(stack, "sms", phone, "UNSUBSCRIBE")
    # Twilio reads the answer to an incoming SMS as TwiML: an empty one sends nothing back.
    assert answer["webhook_status"] == 200 and "<Response>" in answer["answer"], answer
    assert consents_of(stack, user) == {
        ("sms", "marketing"): False,
        ("whatsapp", "marketing"): True,
    }


def service_window(stack, user: str) -> dict[str, datetime]:
    rows = (
        stack["ch"]
        .query(
            "SELECT channel, max(last_inbound_at) FROM service_windows"
            " WHERE user_key = {u:String} GROUP BY channel",
            parameters={"u": user},
        )
        .result_rows
    )
    return {channel: at.replace(tzinfo=UTC) if at.tzinfo is None else at for channel, at in rows}


def test_any_inbound_message_opens_the_users_service_window_on_that_channel(dispatching):
    stack = dispatching
    user = f"window-{uuid.uuid4().hex[:8]}"
    phone = "+15550104545"
    write_key(
        stack,
        [
            consent(user, "whatsapp", True, phone, purpose="marketing"),
            consent(user, "sms", True, phone, purpose="marketing"),
        ],
    )
    assert service_window(stack, user) == {}
    before = datetime.now(UTC) - timedelta(seconds=5)
    assert counts(reply(stack, "whatsapp", phone, "is it in blue?"))["messages"] == 1
    opened = service_window(stack, user)
    assert set(opened) == {"whatsapp"} and opened["whatsapp"] >= before
    assert reply(stack, "sms", phone, "hello")["webhook_status"] == 200
    assert set(service_window(stack, user)) == {"whatsapp", "sms"}
    # An unknown sender opens nobody's window.
    assert counts(reply(stack, "whatsapp", "+15550104546", "hi")) == {"messages": 1, "opted_out": 0}


# --- a phone changes only through a trusted path -----------------------------------------


def test_a_write_key_cannot_redirect_a_shoppers_messages_to_another_phone(dispatching):
    stack = dispatching
    victim = f"victim-{uuid.uuid4().hex[:8]}"
    write_key(stack, [consent(victim, "whatsapp", True, "+15550106666")])  # first phone: set

    # The probe: a browser-side consent for the victim with the attacker's phone, on the
    # channel in use and on the SMS fallback; then a force-send.
    forged = consent(victim, "whatsapp", True, "+15550107777")
    forged_sms = consent(victim, "sms", True, "+15550107777")
    answers = [write_key(stack, [forged]), write_key(stack, [forged_sms])]
    message_id = force_send(stack, victim)
    wait_until(lambda: len(sim_messages(stack, message_id)) == 1, 30, "the force-send sent")
    [sent] = sim_messages(stack, message_id)
    assert (sent["channel"], sent["to_masked"]) == ("whatsapp", "+1 ••••••6666")
    # Neither consent was applied: both are reported pending with the reason.
    assert [(a["accepted"], a["pending"]) for a in answers] == [
        (0, [{"event_id": e["event_id"], "reason": "phone_change_needs_verification"}])
        for e in (forged, forged_sms)
    ]
    assert consents_of(stack, victim) == {("whatsapp", "marketing"): True}

    # The store backend (server key) may change it: the shopper changed it in their account.
    post_track(stack, [consent(victim, "whatsapp", True, "+15550107777")], SERVER)
    message_id = force_send(stack, victim)
    wait_until(lambda: len(sim_messages(stack, message_id)) == 1, 30, "the second force-send")
    assert sim_messages(stack, message_id)[0]["to_masked"] == "+1 ••••••7777"
