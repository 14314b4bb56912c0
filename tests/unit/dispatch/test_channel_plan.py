"""The channel plan per destination country: which channels, in which order, by the
E.164 calling code of the shopper's phone (rules: ``dispatch.channel_plan``)."""

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pipeline.dispatch import policy
from pipeline.domain.rules import default_rules, parse_rules

from .test_send_time import DAY_ZONE, NIGHT_MS, Reachable, decide, make, nudge, steps

CHANNELS = ("whatsapp", "sms")


def planned(by_calling_code: dict[str, list[str]], default: list[str] | None = None):
    raw = default_rules().model_dump()
    raw["dispatch"]["channel_plan"] = {"by_calling_code": by_calling_code}
    if default is not None:
        raw["dispatch"]["channel_plan"]["default"] = default
    return parse_rules(raw, source="test")


class PhoneIn(Reachable):
    def __init__(self, phone: str, consented: tuple[str, ...] = CHANNELS) -> None:
        super().__init__(consented)
        self.number = phone

    def phone(self, sealed: Any) -> str:
        return self.number


def test_the_calling_code_picks_the_plan_and_others_get_the_default() -> None:
    rules = planned({"1": ["sms"], "91": ["whatsapp"]})
    assert policy.channel_order(rules, "1") == ("sms",)
    assert policy.channel_order(rules, "91") == ("whatsapp",)
    assert policy.channel_order(rules, "44") == ("whatsapp", "sms")
    assert policy.channel_order(rules, None) == ("whatsapp", "sms")


def test_us_shoppers_get_sms_only_when_the_plan_says_so() -> None:
    rules = planned({"1": ["sms"]})
    d, _, channels = make(PhoneIn("+14155550142"), rules)
    decide(d, nudge(1, timezone=DAY_ZONE), now_ms=NIGHT_MS)
    assert channels["whatsapp"].sent == []
    assert channels["sms"].sent == [nudge(1).nudge_id]
    assert [s for s, _ in steps(d)] == ["sent"]


def test_a_shopper_consented_only_where_the_plan_does_not_send_is_suppressed_with_why() -> None:
    rules = planned({"1": ["sms"]})
    d, _, channels = make(PhoneIn("+14155550142", ("whatsapp",)), rules)
    decide(d, nudge(1, timezone=DAY_ZONE), now_ms=NIGHT_MS)
    assert channels["whatsapp"].sent == channels["sms"].sent == []
    assert steps(d) == [("suppressed", policy.NOT_IN_PLAN)]


def test_elsewhere_whatsapp_stays_first() -> None:
    rules = planned({"1": ["sms"]})
    d, _, channels = make(PhoneIn("+447700900123"), rules)
    decide(d, nudge(1, timezone=DAY_ZONE), now_ms=NIGHT_MS)
    assert channels["whatsapp"].sent == [nudge(1).nudge_id]
    assert channels["sms"].sent == []


orders = st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=2, unique=True).map(tuple)
subsets = st.frozensets(st.sampled_from(CHANNELS))


@given(order=orders, consented=subsets, paused=subsets, tried=st.lists(st.sampled_from(CHANNELS)))
def test_no_step_ever_uses_a_channel_outside_the_plan(order, consented, paused, tried) -> None:
    step = policy.next_step(policy.Reach(consented, paused, order), tuple(dict.fromkeys(tried)))
    if isinstance(step, policy.Send):
        assert step.channel in order
        assert step.channel in consented and step.channel not in paused
