"""What every intentflow dashboard shares: the datasources, the query to the metrics
API, panel placement and the dashboard's own settings.

Every panel queries the metrics API (docs/metrics.md) through a provisioned Infinity
datasource (dashboards/provisioning/datasources/intentflow.yaml): a path, query
parameters with Grafana's time macros and the dashboard's template variables, the
root selector ``rows`` and typed columns.
"""

from collections.abc import Sequence
from typing import Any, TypeVar

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models.common import DataSourceRef

from dashboards.builders import infinity

API = DataSourceRef(type_val=infinity.PLUGIN_ID, uid="intentflow-api")
# The same API, keeping non-2xx bodies: /v1/health answers 503 with the component list.
HEALTH = DataSourceRef(type_val=infinity.PLUGIN_ID, uid="intentflow-health")

# The stack's Prometheus (dashboards/provisioning/datasources/prometheus.yaml): the
# processes' own /metrics (docs/production.md, "Metrics"). Built into Grafana.
PROMETHEUS = DataSourceRef(type_val="prometheus", uid="intentflow-prometheus")

# Grafana's time range and interval, interpolated by Grafana before the request.
TIME_RANGE = (("from", "${__from:date:iso}"), ("to", "${__to:date:iso}"))
INTERVAL = ("interval", "${__interval}")

# selector, type (string|number|timestamp) and, when it differs from the selector, name
Column = tuple[str, infinity.ColumnType] | tuple[str, infinity.ColumnType, str]
SERIES_COLUMNS: list[Column] = [("t", "timestamp", "time"), ("value", "number")]


def numbers(*selectors: str) -> list[Column]:
    return [(selector, "number") for selector in selectors]


PanelBuilder = TypeVar("PanelBuilder")


def api_query(
    path: str,
    params: Sequence[tuple[str, str]],
    columns: Sequence[Column],
    *,
    root: str = "rows",
    datasource: DataSourceRef = API,
    computed: Sequence[tuple[str, infinity.ColumnType, str]] = (),
) -> infinity.QueryBuilder:
    """GET ``path`` of the metrics API; the rows under ``root`` become the panel's table."""
    query = infinity.QueryBuilder(path).ref_id("A").datasource(datasource).root_selector(root)
    for key, value in params:
        query.param(key, value)
    for column in columns:
        query.column(*column)
    for expression, kind, text in computed:
        query.computed_column(expression, kind, text)
    return query


def series(
    metric: str,
    columns: Sequence[Column] = SERIES_COLUMNS,
    computed: Sequence[tuple[str, infinity.ColumnType, str]] = (),
) -> infinity.QueryBuilder:
    """GET /v1/metrics/timeseries: one zero-filled bucket of ``metric`` per $__interval."""
    params = [("metric", metric), INTERVAL, *TIME_RANGE]
    return api_query("/v1/metrics/timeseries", params, columns, computed=computed)


def promql(expr: str, legend_format: str, ref_id: str = "A") -> prometheus.Dataquery:
    """A PromQL range query on the stack's Prometheus; ``legend_format`` names each
    series from its labels (``{{topic}}``). Rates use Grafana's ``$__rate_interval``
    (at least four scrape intervals, so a rate always spans two samples)."""
    return (
        prometheus.Dataquery()
        .ref_id(ref_id)
        .datasource(PROMETHEUS)
        .expr(expr)
        .legend_format(legend_format)
        .range()
    )


def panel(
    builder: PanelBuilder,
    title: str,
    description: str,
    queries: Sequence[infinity.QueryBuilder | prometheus.Dataquery],
    size: tuple[int, int],
) -> PanelBuilder:
    """A panel of any kind, ``size`` (width of 24 columns, height) wide, reading
    ``queries``; the panel's datasource is its first query's."""
    width, height = size
    # The SDK's panel builders (stat.Panel, table.Panel...) share these methods, not a base.
    any_kind: Any = builder
    return (
        any_kind.title(title)
        .description(description)
        .datasource(queries[0].build().datasource)
        .targets(list(queries))
        .span(width)
        .height(height)
    )


def units(builder: PanelBuilder, unit: str, *fields: str) -> PanelBuilder:
    """Overrides the unit of the named fields (a table's rates shown as percentages)."""
    any_kind: Any = builder
    for field in fields:
        any_kind.override_by_name(
            field, [dashboard_models.DynamicConfigValue(id_val="unit", value=unit)]
        )
    return builder


def legend(show: bool) -> common_builders.VizLegendOptions:
    return common_builders.VizLegendOptions().show_legend(show)


def reduce(
    calcs: list[str], fields: str, *, values: bool = False
) -> common_builders.ReduceDataOptions:
    """Which fields (a regex on their names) a stat or gauge reduces, and how."""
    return common_builders.ReduceDataOptions().calcs(calcs).fields(fields).values(values)


def transformation(id_val: str, options: dict[str, Any]) -> dashboard_models.DataTransformerConfig:
    return dashboard_models.DataTransformerConfig(id_val=id_val, options=options)


def exclude(*names: str) -> dashboard_models.DataTransformerConfig:
    return transformation("organize", {"excludeByName": dict.fromkeys(names, True)})


def only(field: str, value: str) -> dashboard_models.DataTransformerConfig:
    """Keeps the rows whose ``field`` equals ``value``."""
    matcher = {"fieldName": field, "config": {"id": "equal", "options": {"value": value}}}
    return transformation(
        "filterByValue", {"type": "include", "match": "any", "filters": [matcher]}
    )


def partition_by(field: str) -> dashboard_models.DataTransformerConfig:
    """One series per value of ``field`` (a time series per channel, per reason...)."""
    return transformation("partitionByValues", {"fields": [field]})


def textbox(
    name: str, label: str, value: str, description: str
) -> dashboard_builders.TextBoxVariable:
    option = dashboard_models.VariableOption(selected=True, text=value, value=value)
    return (
        dashboard_builders.TextBoxVariable(name)
        .label(label)
        .description(description)
        .default_value(value)
        .current(dashboard_models.VariableOption(text=value, value=value))
        .options([option])
        .hide(dashboard_models.VariableHide.DONT_HIDE)
    )


def custom(
    name: str, label: str, choices: list[tuple[str, str]], current: str, description: str
) -> dashboard_builders.CustomVariable:
    """A custom variable; ``choices`` are (text, value), written ``text : value``."""
    text = next(t for t, v in choices if v == current)
    return (
        dashboard_builders.CustomVariable(name)
        .label(label)
        .description(description)
        .values(",".join(v if t == v else f"{t} : {v}" for t, v in choices))
        .current(dashboard_models.VariableOption(text=text, value=current))
        .options(
            [
                dashboard_models.VariableOption(selected=v == current, text=t, value=v)
                for t, v in choices
            ]
        )
        .multi(False)
        .include_all(False)
        .hide(dashboard_models.VariableHide.DONT_HIDE)
    )


def dashboard(
    uid: str,
    title: str,
    description: str,
    time_from: str,
    panels: Sequence[Any],
    variables: Sequence[Any] = (),
) -> dashboard_models.Dashboard:
    """An intentflow dashboard: read-only (provisioned from this code), UTC, refreshed
    every minute, linked to the others by their shared tag. Panels are numbered and
    placed left to right in the 24-column grid, in the order given."""
    builder = (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["intentflow"])
        .timezone("utc")
        .readonly()
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .refresh("1m")
        .version(1)
        .time(time_from, "now")
        .variables(list(variables))
        .annotations([])
        .link(
            dashboard_builders.DashboardLink("intentflow")
            .type(dashboard_models.DashboardLinkType.DASHBOARDS)
            .tags(["intentflow"])
            .as_dropdown(False)
            .include_vars(False)
            .keep_time(True)
        )
    )
    for number, each in enumerate(panels, start=1):
        builder.with_panel(each.id(number))
    return builder.build()
