"""The dashboards are code: dashboards/json/ is exactly what dashboards/builders/
generate (nobody edits the JSON by hand), and Grafana's Foundation SDK reads every
file back into its own types (typed panel options, Infinity queries) without
dropping or changing a field it was given."""

import json
from typing import Any

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel
from grafana_foundation_sdk.models.prometheus import Dataquery as PrometheusQuery

from dashboards import generate
from dashboards.builders import infinity

NAMES = sorted(generate.DASHBOARDS)


@pytest.fixture(scope="module", autouse=True)
def sdk_decoders() -> None:
    # The SDK's decoders for core panels and queries (Prometheus's among them), and ours
    # for Infinity's query.
    register_default_plugins()
    infinity.register()


def committed(name: str) -> dict[str, Any]:
    return json.loads((generate.JSON_DIR / name).read_text())


def missing_or_changed(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Paths of ``expected`` that ``actual`` lacks or holds another value at; keys only
    in ``actual`` (defaults the decoder fills in) are allowed."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return [
            found
            for key, value in expected.items()
            for found in (
                missing_or_changed(value, actual[key], f"{path}.{key}")
                if key in actual
                else [f"{path}.{key} missing"]
            )
        ]
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [
            found
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for found in missing_or_changed(e, a, f"{path}[{i}]")
        ]
    return [] if expected == actual else [f"{path}: {expected!r} became {actual!r}"]


def test_the_json_files_are_the_dashboards_generated() -> None:
    on_disk = {path.name for path in generate.JSON_DIR.glob("*.json")}
    assert on_disk == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_committed_json_is_what_the_builders_generate(name: str) -> None:
    text = (generate.JSON_DIR / name).read_text()
    assert text == generate.render()[name], f"{name} differs: run python -m dashboards.generate"


@pytest.mark.parametrize("name", NAMES)
def test_the_sdk_decodes_every_dashboard_into_its_types_without_loss(name: str) -> None:
    data = committed(name)
    decoded = Dashboard.from_json(data)
    assert decoded.panels
    for panel in decoded.panels:
        assert isinstance(panel, Panel), panel
        assert panel.targets, panel.title
        for target in panel.targets:
            assert isinstance(target, infinity.Query | PrometheusQuery), (
                f"{panel.title}: {type(target)}"
            )
            if isinstance(target, PrometheusQuery):
                assert target.expr and target.datasource, panel.title
        # A panel kind the SDK knows gets its options decoded into that kind's type.
        assert not isinstance(panel.options, dict), f"{panel.title}: options left untyped"
    encoded = json.loads(json.dumps(decoded, cls=JSONEncoder))
    assert missing_or_changed(data, encoded) == []
