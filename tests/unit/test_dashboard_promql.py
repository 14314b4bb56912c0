"""The pipeline-health dashboard's PromQL names only series the processes export, shows
every intentflow metric family, and is the listing docs/production.md prints.

Prometheus's own query parser is Go (no Python binding is installed here), so metric
names are read with a small tokenizer: strings, label matchers ``{...}``, ranges
``[...]`` and grouping clauses ``by (...)`` are cut out; an identifier then followed by
``(`` is a function or an aggregation, a keyword is a keyword, and every other
identifier is a metric name (followed by ``{``, ``[``, ``)``, whitespace or the end).
"""

import json
import re
from typing import Any

import pytest
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR
from prometheus_client.metrics import MetricWrapperBase

import pipeline.metrics
import schemas.process_metrics
from dashboards import generate
from dashboards.builders import pipeline_health
from tests import support

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# Not inside a number or a duration (the "m" of "offset 5m").
_IDENTIFIER = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*(?=\s*(\()|[\s{\[)]|$)")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
_KEYWORDS |= {"and", "or", "unless", "offset", "inf", "nan"}
# Series Prometheus itself writes for every scrape target.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {
        match.group(0)
        for match in _IDENTIFIER.finditer(text)
        if match.group(1) is None and match.group(0).lower() not in _KEYWORDS
    }


def exported_series() -> set[str]:
    """Every series name the processes' registries can expose: the families of
    schemas/process_metrics.py and pipeline/metrics.py with their type's suffixes, and
    prometheus_client's default process, platform and GC collectors."""
    names = set()
    for module in (schemas.process_metrics, pipeline.metrics):
        for collector in vars(module).values():
            if not isinstance(collector, MetricWrapperBase):
                continue
            for family in collector.describe():
                suffixes = {
                    "counter": ("_total",),
                    "histogram": ("_bucket", "_count", "_sum"),
                    "gauge": ("",),
                }[family.type]
                names |= {family.name + suffix for suffix in suffixes}
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        names |= {s.name for family in collector.collect() for s in family.samples}
    return names


def intentflow_families() -> set[str]:
    return {
        family.name
        for module in (schemas.process_metrics, pipeline.metrics)
        for collector in vars(module).values()
        if isinstance(collector, MetricWrapperBase)
        for family in collector.describe()
    }


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every Prometheus query of the committed dashboards."""
    found = []
    for name in generate.DASHBOARDS:
        dashboard: dict[str, Any] = json.loads((generate.JSON_DIR / name).read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                if target["datasource"]["type"] == "prometheus":
                    found.append((f"{name}: {panel['title']}", target["expr"]))
    return found


def test_the_tokenizer_reads_metric_names_not_functions_labels_or_keywords() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, target) "
        '(rate(intentflow_flush_seconds_bucket{job="w", topic=~"a(b)"}[$__rate_interval]))) '
        "/ on (job) group_left up offset 5m "
        "+ sum without (le) (irate(other_total[1m])) * 60"
    )
    assert metric_names(expr) == {"intentflow_flush_seconds_bucket", "up", "other_total"}


def test_a_misspelled_metric_name_is_caught() -> None:
    misspelled = "sum by (topic) (rate(intentflow_recods_in_total[$__rate_interval]))"
    assert metric_names(misspelled) - exported_series() == {"intentflow_recods_in_total"}
    # A family named without its type's suffix is no series either.
    assert metric_names("rate(intentflow_records_in[5m])") - exported_series()


def test_the_dashboard_reads_prometheus() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 12, exprs
    assert {where.split(": ")[0] for where, _ in exprs} == {"pipeline-health.json"}


@pytest.mark.parametrize("where,expr", dashboard_exprs(), ids=lambda v: v[:60])
def test_every_promql_names_only_exported_series(where: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{where}: no metric in {expr!r}"
    unknown = names - exported_series() - SCRAPE_SERIES
    assert not unknown, f"{where}: {sorted(unknown)} is exported by no process"


def test_every_intentflow_metric_family_has_a_panel() -> None:
    shown = {name for _, expr in dashboard_exprs() for name in metric_names(expr)}
    families = intentflow_families()
    assert families, "no metric families found"
    missing = {
        family
        for family in families
        if not any(name == family or name.startswith(f"{family}_") for name in shown)
    }
    assert not missing, f"no panel shows {sorted(missing)}"


def test_docs_production_lists_the_dashboards_promql() -> None:
    text = (support.PROJECT_ROOT / "docs" / "production.md").read_text()
    blocks = re.findall(r"```promql\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "docs/production.md should hold one promql listing"
    expected = pipeline_health.promql_listing()
    assert blocks[0].strip() == expected, f"paste this into docs/production.md:\n{expected}"
    listed = [line for line in expected.splitlines() if not line.startswith("#")]
    assert listed == [expr for _, expr in dashboard_exprs()]
