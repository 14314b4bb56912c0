"""``make demo``'s rules are the default rules at a demo's pace, and nothing else: a change
to the default rules reaches the demo, or this test says where the two drifted apart."""

from pathlib import Path

import yaml

from pipeline.domain.rules import default_rules, load_rules

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEMO = PROJECT_ROOT / "pipeline" / "local" / "demo_rules.yaml"
DEFAULT = PROJECT_ROOT / "pipeline" / "domain" / "default_rules.yaml"


def leaves(tree: object, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        found: dict[str, object] = {}
        for key, value in tree.items():
            found.update(leaves(value, f"{prefix}{key}."))
        return found
    return {prefix.rstrip("."): tree}


def test_the_demo_rules_differ_from_the_default_only_in_pace_and_treatment() -> None:
    demo, default = (leaves(yaml.safe_load(p.read_text())) for p in (DEMO, DEFAULT))
    differing = {k for k in demo.keys() | default.keys() if demo.get(k) != default.get(k)}
    assert differing == {
        "version",
        "cart_rescue.timeout_s",
        "cart_rescue.checkout_timeout_s",
        "cart_rescue.exit_intent_grace_s",
        "suppression.frequency_cap_per_day",
        "suppression.quiet_hours.start",
        "suppression.quiet_hours.end",
        "suppression.quiet_hours.max_hold_s",
        "suppression.holdout_share",
    }


def test_the_demo_rules_load_and_version_their_decisions_apart() -> None:
    demo = load_rules(DEMO)
    assert demo.version != default_rules().version
    assert demo.suppression.quiet_hours is None and demo.suppression.holdout_share == 0
    assert demo.cart_rescue.exit_intent_grace_s < demo.cart_rescue.timeout_s <= 60
