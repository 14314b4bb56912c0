"""Writes the dashboard JSON in dashboards/json/ (Grafana provisions those files).

    python -m dashboards.generate

Each dashboard is built by its module in dashboards/builders/ with Grafana's
Foundation SDK. tests/unit/test_dashboards_sdk.py checks that the committed files
are this output and decode with the SDK; tests/integration/test_dashboards.py
replays each panel's request against a stack that has processed a day of traffic.
"""

import json
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards.builders import campaigns, nudges, pipeline_health, storefront_funnel

JSON_DIR = Path(__file__).resolve().parent / "json"

DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "storefront-funnel.json": storefront_funnel.build,
    "nudges.json": nudges.build,
    "pipeline-health.json": pipeline_health.build,
    "campaigns.json": campaigns.build,
}


def render() -> dict[str, str]:
    """File name → JSON text, as committed."""
    return {
        name: json.dumps(build(), cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main() -> None:
    JSON_DIR.mkdir(exist_ok=True)
    for name, text in render().items():
        (JSON_DIR / name).write_text(text)


if __name__ == "__main__":
    main()
