"""The intent domain: pure, deterministic per-user logic, folded by event time.

No broker, warehouse or web imports; time is always an argument. The agent
calls, per user key::

    state, decisions = apply(state, event, rules)          # every event
    state, decisions = advance(state, watermark_ms, rules)  # deadlines passed
    next_deadline(state)                                    # its deadline index
    wants_merge(state, event) / merge(user, anon, rules, at_ms)  # identify
    state_to_bytes(state) / state_from_bytes(data)          # storage, hand-over
"""

from pipeline.domain.fold import Decision, advance, apply, next_deadline
from pipeline.domain.identity import merge, wants_merge
from pipeline.domain.profile import Profile, ScoreView, profile
from pipeline.domain.rules import Rules, RulesError, default_rules, load_rules, rules_from
from pipeline.domain.state import UserState, state_from_bytes, state_to_bytes

__all__ = [
    "Decision",
    "Profile",
    "Rules",
    "RulesError",
    "ScoreView",
    "UserState",
    "advance",
    "apply",
    "default_rules",
    "load_rules",
    "merge",
    "next_deadline",
    "profile",
    "rules_from",
    "state_from_bytes",
    "state_to_bytes",
    "wants_merge",
]
