"""Consent by purpose and phone changes, on the real parts: broker,
warehouse, the API, the provider simulator and the dispatcher as real processes (the
``stack`` of test_dispatch.py, reused with a database of this module's own).

Nothing here depends on the time of day: the dispatcher applies no quiet hours (the
engine decides them; these nudges are produced or forced directly).
"""

import asyncio
import uuid

import pytest

from tests.integration.test_dispatch import (
    ADMIN,
    SERVER,
    WRITE,
    consent,
    nudge,
    produce,
    sim_messages,
    statuses,
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
    wait_until(
        lambda: ("suppressed", "", "no_consent") in statuses(stack, message_id),
        30,
        "the nudge suppressed for want of marketing consent",
    )
    assert sim_messages(stack, message_id) == []

    # Agreeing to offers on WhatsApp (the phone is already known) lets the next one out.
    write_key(stack, [consent(user, "whatsapp", True, purpose="marketing")])
    message_id = send_nudge(stack, user)
    wait_until(lambda: len(sim_messages(stack, message_id)) == 1, 30, "the nudge sent")
    [sent] = sim_messages(stack, message_id)
    assert (sent["channel"], sent["to_masked"]) == ("whatsapp", "+1 ••••••5555")


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
