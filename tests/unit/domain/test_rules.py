"""Rules files: the shipped default loads; a bad file is refused with its path and field."""

from pathlib import Path

import pytest
import yaml

from pipeline.domain import RulesError, default_rules, load_rules, rules_from

from .builders import default_raw_rules


def write(tmp_path: Path, raw, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw) if not isinstance(raw, str) else raw)
    return path


def test_the_default_rules_load_and_are_frozen():
    rules = default_rules()
    assert rules.version and rules.vip.order_count == 3
    assert rules.plan.hi_threshold == round(rules.high_intent.threshold * 1000)
    with pytest.raises(ValueError):
        rules.version = "other"  # type: ignore[misc]
    assert rules_from(None) is rules


def test_maximum_ages_default_per_kind_when_a_file_omits_them(tmp_path):
    raw = default_raw_rules()
    raw.pop("dispatch")
    ages = load_rules(write(tmp_path, raw)).dispatch.max_age_s
    assert ages == default_rules().dispatch.max_age_s
    assert ages.vip_upgrade == 7 * 86_400 and ages.campaign == 86_400


def test_a_good_file_loads(tmp_path):
    raw = default_raw_rules()
    raw["version"] = "candidate-2"
    raw["vip"]["order_count"] = 5
    rules = load_rules(write(tmp_path, raw))
    assert (rules.version, rules.vip.order_count, rules.plan.vip_orders) == ("candidate-2", 5, 5)


def test_a_toml_file_loads(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text('version = "t1"\n[suppression]\nexperiment_salt = "s"\n')
    assert load_rules(path).version == "t1"


def variants(raw: dict, kind: str, *listed: dict) -> None:
    raw["dispatch"]["templates"][kind]["variants"] = list(listed)


def test_a_template_may_list_variants(tmp_path):
    raw = default_raw_rules()
    variants(raw, "cart_rescue", {"name": "plain"}, {"name": "urgent", "sms": "Now! {cta}"})
    spec = load_rules(write(tmp_path, raw)).dispatch.templates.cart_rescue
    assert [v.name for v in spec.variants] == ["plain", "urgent"] and spec.success == "click"
    assert spec.variant("urgent").texts() == {"sms": "Now! {cta}"}
    assert spec.variant("gone") is None and spec.variant(None) is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r["high_intent"].update(hysteresis=1.5), "high_intent.hysteresis"),
        (lambda r: r["scoring"]["weights"].update(teleport=1.0), "scoring.weights"),
        (lambda r: r["suppression"]["quiet_hours"].update(start="25:00"), "quiet_hours.start"),
        (lambda r: r["suppression"].update(default_timezone="Mars/Base"), "default_timezone"),
        (lambda r: r["cart_rescue"].update(exit_intent_grace_s=99_999), "cart_rescue"),
        (lambda r: r.pop("version"), "version"),
        (lambda r: r.update(surprise=1), "surprise"),
        (lambda r: r["dispatch"]["max_age_s"].update(campaign=0), "dispatch.max_age_s.campaign"),
        (lambda r: r["dispatch"]["max_age_s"].update(sms_blast=60), "max_age_s.sms_blast"),
        # Every nudge held through quiet hours would then expire at send time.
        (lambda r: r["dispatch"]["max_age_s"].update(cart_rescue=3600), "max_age_s.cart_rescue"),
        # Message variants: two or more, distinct names, known placeholders, nudges only.
        (lambda r: variants(r, "cart_rescue", {"name": "a"}), "cart_rescue.variants"),
        (lambda r: variants(r, "cart_rescue", {"name": "a"}, {"name": "a"}), "cart_rescue"),
        (
            lambda r: variants(r, "high_intent", {"name": "a", "sms": "{phone}"}, {"name": "b"}),
            "high_intent.variants.0",
        ),
        (lambda r: variants(r, "campaign", {"name": "a"}, {"name": "b"}), "templates"),
    ],
)
def test_a_bad_file_is_refused_naming_the_path_and_the_field(tmp_path, change, field):
    raw = default_raw_rules()
    change(raw)
    path = write(tmp_path, raw)
    with pytest.raises(RulesError) as refused:
        load_rules(path)
    assert str(path) in str(refused.value) and field in str(refused.value)


@pytest.mark.parametrize("text", ["version: [unclosed", "- a list\n- not a mapping\n"])
def test_unreadable_yaml_is_refused(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(RulesError, match=str(path)):
        load_rules(path)


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "nope.yaml")
