"""Writes the dashboard JSON in dashboards/json/ (Grafana provisions those files).

    python dashboards/generate.py

Every panel queries the metrics API (docs/metrics.md) through the provisioned
Infinity datasource: a path, query parameters with Grafana's time macros and
the dashboard's template variables, root selector ``rows`` and typed columns.
tests/integration/test_dashboards.py replays each panel's request against a
stack that has processed a day of traffic and checks the column types, and
checks that the JSON files are this script's output.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

JSON_DIR = Path(__file__).resolve().parent / "json"

INFINITY = "yesoreyeram-infinity-datasource"
API = {"type": INFINITY, "uid": "intentflow-api"}
HEALTH = {"type": INFINITY, "uid": "intentflow-health"}

# Grafana's time range and interval, interpolated by Grafana before the request.
TIME_RANGE = (("from", "${__from:date:iso}"), ("to", "${__to:date:iso}"))
INTERVAL = ("interval", "${__interval}")

Column = tuple[str, str, str]  # selector, display name, type (string|number|timestamp)


def column(selector: str, kind: str, text: str | None = None) -> Column:
    return selector, text or selector, kind


def target(
    path: str,
    params: list[tuple[str, str]],
    columns: list[Column],
    *,
    ref: str = "A",
    root: str = "rows",
    datasource: dict[str, str] = API,
    computed: Sequence[Column] = (),
) -> dict[str, Any]:
    """An Infinity query: JSON from a URL, parsed by the backend parser (alerting-capable)."""
    query: dict[str, Any] = {
        "refId": ref,
        "datasource": dict(datasource),
        "type": "json",
        "source": "url",
        "parser": "backend",
        "format": "table",
        "url": path,
        "url_options": {
            "method": "GET",
            "data": "",
            "params": [{"key": key, "value": value} for key, value in params],
            "headers": [],
        },
        "root_selector": root,
        "columns": [{"selector": s, "text": t, "type": k} for s, t, k in columns],
        "filters": [],
    }
    if computed:
        query["computed_columns"] = [{"selector": s, "text": t, "type": k} for s, t, k in computed]
    return query


class Layout:
    """Panels placed left to right in a 24-column grid, with unique ids."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = self.y = self.row_height = 0

    def add(self, panel: dict[str, Any], width: int, height: int) -> None:
        if self.x + width > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel = {"id": len(self.panels) + 1, **panel}
        panel["gridPos"] = {"h": height, "w": width, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += width
        self.row_height = max(self.row_height, height)


def panel(
    kind: str,
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    unit: str | None = None,
    options: dict[str, Any] | None = None,
    transformations: list[dict[str, Any]] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    defaults: dict[str, Any] | None = None,
) -> dict[str, Any]:
    field_defaults: dict[str, Any] = dict(defaults or {})
    if unit:
        field_defaults["unit"] = unit
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": dict(targets[0]["datasource"]),
        "targets": targets,
        "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
        "options": options or {},
        "transformations": transformations or [],
    }


def exclude(*names: str) -> dict[str, Any]:
    return {"id": "organize", "options": {"excludeByName": dict.fromkeys(names, True)}}


def only(field: str, value: str) -> dict[str, Any]:
    return {
        "id": "filterByValue",
        "options": {
            "type": "include",
            "match": "any",
            "filters": [
                {"fieldName": field, "config": {"id": "equal", "options": {"value": value}}}
            ],
        },
    }


def unit_override(field: str, unit: str) -> dict[str, Any]:
    return {
        "matcher": {"id": "byName", "options": field},
        "properties": [{"id": "unit", "value": unit}],
    }


def textbox(name: str, label: str, value: str, description: str) -> dict[str, Any]:
    return {
        "type": "textbox",
        "name": name,
        "label": label,
        "description": description,
        "query": value,
        "current": {"text": value, "value": value},
        "options": [{"selected": True, "text": value, "value": value}],
        "hide": 0,
    }


def custom(
    name: str, label: str, choices: list[tuple[str, str]], current: str, description: str
) -> dict[str, Any]:
    """A custom variable; ``choices`` are (text, value), written ``text : value``."""
    text = next(t for t, v in choices if v == current)
    return {
        "type": "custom",
        "name": name,
        "label": label,
        "description": description,
        "query": ",".join(v if t == v else f"{t} : {v}" for t, v in choices),
        "current": {"text": text, "value": current},
        "options": [{"selected": v == current, "text": t, "value": v} for t, v in choices],
        "multi": False,
        "includeAll": False,
        "hide": 0,
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    layout: Layout,
    variables: list[dict[str, Any]],
    time_from: str,
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["intentflow"],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "1m",
        "schemaVersion": 41,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": ["intentflow"],
                "title": "intentflow",
                "asDropdown": False,
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "panels": layout.panels,
    }


# --- Storefront funnel -----------------------------------------------------------

FUNNEL_COLUMNS = [
    column("step", "number"),
    column("name", "string"),
    column("breakdown", "string"),
    column("users", "number"),
    column("conversion_from_previous", "number"),
    column("conversion_from_first", "number"),
]
FUNNEL_PARAMS = [("steps", "${steps}"), ("window", "${window}"), *TIME_RANGE]
SERIES_COLUMNS = [column("t", "timestamp", "time"), column("value", "number")]
BREAKDOWNS = [
    ("device", "device"),
    ("category", "category"),
    ("product", "product_id"),
    ("country", "country"),
    ("UTM source", "utm_source"),
    ("UTM medium", "utm_medium"),
    ("UTM campaign", "utm_campaign"),
    ("currency", "currency"),
]


def series(metric: str, columns: list[Column] = SERIES_COLUMNS, **kw: Any) -> dict[str, Any]:
    params = [("metric", metric), INTERVAL, *TIME_RANGE]
    return target("/v1/metrics/timeseries", params, columns, **kw)


def storefront_funnel() -> dict[str, Any]:
    layout = Layout()
    funnel = target("/v1/metrics/funnel", FUNNEL_PARAMS, FUNNEL_COLUMNS)
    layout.add(
        panel(
            "barchart",
            "Funnel: users reaching each step",
            "Users who did the steps of $steps in order, each within $window s of the first "
            "(ClickHouse windowFunnel over event time).",
            [funnel],
            options={"xField": "name", "showValue": "always", "legend": {"showLegend": False}},
            transformations=[
                exclude("step", "breakdown", "conversion_from_previous", "conversion_from_first")
            ],
        ),
        12,
        9,
    )
    layout.add(
        panel(
            "table",
            "Step conversion",
            "Conversion from the previous step and from the first step.",
            [funnel],
            transformations=[exclude("breakdown")],
            overrides=[
                unit_override("conversion_from_previous", "percentunit"),
                unit_override("conversion_from_first", "percentunit"),
            ],
        ),
        12,
        9,
    )
    layout.add(
        panel(
            "stat",
            "Overall conversion",
            "Share of the users of the first step who reached the last one.",
            [funnel],
            unit="percentunit",
            options={
                "reduceOptions": {
                    "calcs": ["lastNotNull"],
                    "fields": "/^conversion_from_first$/",
                    "values": False,
                },
                "colorMode": "value",
                "graphMode": "none",
            },
        ),
        6,
        6,
    )
    layout.add(
        panel(
            "stat",
            "Users at the first step",
            "Users who did the funnel's first step in the time range.",
            [funnel],
            options={
                "reduceOptions": {
                    "calcs": ["firstNotNull"],
                    "fields": "/^users$/",
                    "values": False,
                },
                "colorMode": "none",
                "graphMode": "none",
            },
        ),
        6,
        6,
    )
    layout.add(
        panel(
            "timeseries",
            "Events per $__interval",
            "Events by event time, every bucket present (zero-filled).",
            [series("events")],
            options={"legend": {"showLegend": False}},
        ),
        12,
        6,
    )
    layout.add(
        panel(
            "timeseries",
            "Orders per $__interval",
            "Distinct orders (order_placed) by event time.",
            [series("orders")],
            options={"legend": {"showLegend": False}},
        ),
        12,
        7,
    )
    layout.add(
        panel(
            "timeseries",
            "Revenue per $__interval",
            "Sum of order totals by event time, all currencies summed.",
            [series("revenue")],
            defaults={"decimals": 2},
            options={"legend": {"showLegend": False}},
        ),
        12,
        7,
    )
    by = target(
        "/v1/metrics/funnel", [*FUNNEL_PARAMS, ("breakdown", "${breakdown}")], FUNNEL_COLUMNS
    )
    layout.add(
        panel(
            "barchart",
            "Users at each step by $breakdown",
            "The funnel per value of $breakdown, taken from each user's earliest first-step event.",
            [by],
            options={"xField": "breakdown", "showValue": "never", "xTickLabelRotation": -45},
            transformations=[
                {
                    "id": "groupingToMatrix",
                    "options": {
                        "rowField": "breakdown",
                        "columnField": "name",
                        "valueField": "users",
                        "emptyValue": "zero",
                    },
                },
                {
                    "id": "renameByRegex",
                    "options": {"regex": "breakdown\\\\name", "renamePattern": "breakdown"},
                },
            ],
        ),
        12,
        10,
    )
    layout.add(
        panel(
            "table",
            "Funnel by $breakdown",
            "Every step of every $breakdown value, zeros included.",
            [by],
            overrides=[
                unit_override("conversion_from_previous", "percentunit"),
                unit_override("conversion_from_first", "percentunit"),
            ],
            options={"sortBy": [{"displayName": "users", "desc": True}]},
        ),
        12,
        10,
    )
    variables = [
        textbox(
            "steps",
            "Steps",
            "page_view,product_view,add_to_cart,checkout_started,order_placed",
            "Comma-separated event names, in funnel order (1-10).",
        ),
        custom(
            "window",
            "Window",
            [("30 min", "1800"), ("1 h", "3600"), ("1 day", "86400"), ("7 days", "604800")],
            "86400",
            "Longest time from the first step to the last.",
        ),
        custom("breakdown", "Breakdown", BREAKDOWNS, "device", "Split the funnel by this field."),
    ]
    return dashboard(
        "intentflow-storefront-funnel",
        "intentflow · Storefront funnel",
        "Storefront funnels with step conversion, traffic, orders and revenue.",
        layout,
        variables,
        "now-24h",
    )


# --- Nudges ------------------------------------------------------------------------

OUTCOMES = ["sent", "delivered", "read", "clicked", "converted"]
REASONS = [
    "suppressed_no_consent",
    "suppressed_frequency_cap",
    "suppressed_quiet_hours_stale",
    "suppressed_holdout",
    "suppressed_order_placed",
    "suppressed_cart_emptied",
]
UPLIFT_COLUMNS = [
    column("group", "string"),
    column("users", "number"),
    column("converted", "number"),
    column("rate", "number"),
    column("ci_low", "number"),
    column("ci_high", "number"),
]


def nudges_target(columns: list[Column]) -> dict[str, Any]:
    return target("/v1/metrics/nudges", list(TIME_RANGE), columns)


def nudges() -> dict[str, Any]:
    layout = Layout()
    labels = [column("kind", "string"), column("channel", "string")]
    layout.add(
        panel(
            "barchart",
            "Message funnel: sent → delivered → read → clicked → converted",
            "Distinct messages per kind with a receipt of each status in the range, and those "
            "with an attributed order (channel = all: each message once).",
            [nudges_target([*labels, *(column(name, "number") for name in OUTCOMES)])],
            options={"xField": "kind", "showValue": "auto", "legend": {"showLegend": True}},
            transformations=[only("channel", "all"), exclude("channel")],
        ),
        12,
        9,
    )
    layout.add(
        panel(
            "barchart",
            "Suppressions by reason",
            "Decisions not sent, by kind and reason (the holdout's are measured for uplift).",
            [nudges_target([*labels, *(column(name, "number") for name in REASONS)])],
            options={"xField": "kind", "stacking": "normal", "legend": {"showLegend": True}},
            transformations=[only("channel", "all"), exclude("channel")],
        ),
        12,
        9,
    )
    money = [*labels, column("orders", "number"), column("revenue", "number")]
    for title, field, unit in (
        ("Attributed revenue", "revenue", "none"),
        ("Attributed orders", "orders", "none"),
    ):
        layout.add(
            panel(
                "stat",
                title,
                "Orders whose utm_message_id names a message, at or after its first read or "
                "click and within the attribution window; all kinds.",
                [nudges_target(money)],
                unit=unit,
                defaults={"decimals": 2 if field == "revenue" else 0},
                options={
                    "reduceOptions": {"calcs": ["sum"], "fields": f"/^{field}$/", "values": False},
                    "colorMode": "none",
                    "graphMode": "none",
                },
                transformations=[only("channel", "all")],
            ),
            6,
            6,
        )
    layout.add(
        panel(
            "timeseries",
            "Nudges decided per $__interval",
            "Nudge decisions with status emit, by decision time.",
            [series("nudges")],
            options={"legend": {"showLegend": False}},
        ),
        12,
        6,
    )
    layout.add(
        panel(
            "table",
            "Outcomes by kind and channel",
            "Every count of GET /v1/metrics/nudges; a WhatsApp → SMS fallback shows on both "
            "channels' rows and once under all.",
            [
                nudges_target(
                    [
                        *labels,
                        column("emitted", "number"),
                        column("suppressed", "number"),
                        column("cancelled", "number"),
                        *(column(name, "number") for name in OUTCOMES),
                        column("failed", "number"),
                        column("orders", "number"),
                        column("revenue", "number"),
                    ]
                )
            ],
        ),
        24,
        8,
    )
    uplift_all = target("/v1/metrics/uplift", list(TIME_RANGE), UPLIFT_COLUMNS)
    layout.add(
        panel(
            "table",
            "Uplift vs holdout (all kinds)",
            "Share of users converting after their first nudge decision, nudged vs holdout, "
            "with 95 % intervals (Wilson; Newcombe for the difference).",
            [uplift_all],
            overrides=[
                unit_override(name, "percentunit") for name in ("rate", "ci_low", "ci_high")
            ],
        ),
        12,
        7,
    )
    uplift_kind = target("/v1/metrics/uplift", [*TIME_RANGE, ("kind", "${kind}")], UPLIFT_COLUMNS)
    layout.add(
        panel(
            "barchart",
            "Conversion rate, nudged vs holdout: $kind",
            "Conversion rate per group for $kind decisions, and their difference (uplift).",
            [uplift_kind],
            unit="percentunit",
            options={"xField": "group", "showValue": "always", "legend": {"showLegend": False}},
            transformations=[exclude("users", "converted")],
        ),
        12,
        7,
    )
    layout.add(
        panel(
            "table",
            "Not sent, and why",
            "Every non-send of GET /v1/metrics/nudges/not_sent: held (quiet hours), expired "
            "(stale, or held past the maximum hold), suppressed, cancelled. Stage decision: "
            "the engine, by event time; send: the dispatcher at send time. still_held: held "
            "by the engine and not yet released.",
            [
                target(
                    "/v1/metrics/nudges/not_sent",
                    list(TIME_RANGE),
                    [
                        column("outcome", "string"),
                        column("stage", "string"),
                        column("kind", "string"),
                        column("reason", "string"),
                        column("messages", "number"),
                    ],
                )
            ],
        ),
        24,
        8,
    )
    layout.add(
        panel(
            "timeseries",
            "Opt-outs by reply",
            "Inbound STOP / UNSUBSCRIBE replies per channel (each revokes the shopper's "
            "marketing consent on that channel and cancels what is queued).",
            [
                target(
                    "/v1/metrics/opt_outs",
                    [INTERVAL, *TIME_RANGE],
                    [
                        column("t", "timestamp", "time"),
                        column("channel", "string"),
                        column("count", "number"),
                        column("users", "number"),
                    ],
                )
            ],
            defaults={"custom": {"drawStyle": "bars", "fillOpacity": 80}},
            transformations=[
                exclude("users"),
                {"id": "partitionByValues", "options": {"fields": ["channel"]}},
            ],
        ),
        24,
        7,
    )
    layout.add(
        panel(
            "table",
            "Cost per channel",
            "What the messages sent in the range cost (the rules' rate card, recorded with "
            "each send), and the cost per attributed conversion.",
            [
                target(
                    "/v1/metrics/costs",
                    list(TIME_RANGE),
                    [
                        column("channel", "string"),
                        column("currency", "string"),
                        column("messages", "number"),
                        column("cost", "number"),
                        column("conversions", "number"),
                        column("revenue", "number"),
                        column("cost_per_message", "number", "cost / message"),
                        column("cost_per_conversion", "number", "cost / conversion"),
                    ],
                )
            ],
        ),
        24,
        6,
    )
    variables = [
        custom(
            "kind",
            "Kind",
            [("cart rescue", "cart_rescue"), ("high intent", "high_intent")],
            "cart_rescue",
            "Message kind of the uplift comparison.",
        )
    ]
    return dashboard(
        "intentflow-nudges",
        "intentflow · Nudges",
        "Nudge outcomes, suppressions, attributed revenue and uplift against the holdout.",
        layout,
        variables,
        "now-7d",
    )


# --- Pipeline health -----------------------------------------------------------------


def status_mappings() -> list[dict[str, Any]]:
    colors = {"ok": "green", "down": "red", "degraded": "red"}
    return [
        {
            "type": "value",
            "options": {
                value: {"color": color, "index": i, "text": value}
                for i, (value, color) in enumerate(colors.items())
            },
        }
    ]


def pipeline_health() -> dict[str, Any]:
    layout = Layout()
    layout.add(
        panel(
            "stat",
            "Component status",
            "GET /v1/health: the broker, the warehouse, and whether a worker is in the consumer "
            "group. Answered even while a part is down (HTTP 503).",
            [
                target(
                    "/v1/health",
                    [],
                    [
                        column("status", "string", "overall"),
                        column("components.broker.status", "string", "broker"),
                        column("components.warehouse.status", "string", "warehouse"),
                        column("components.worker.status", "string", "worker"),
                    ],
                    root="",
                    datasource=HEALTH,
                )
            ],
            defaults={"mappings": status_mappings()},
            options={
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "/.*/", "values": False},
                "colorMode": "background",
                "graphMode": "none",
                "textMode": "value_and_name",
            },
        ),
        12,
        5,
    )
    layout.add(
        panel(
            "table",
            "Component detail",
            "What each check saw.",
            [
                target(
                    "/v1/health",
                    [],
                    [
                        column("components.broker.detail", "string", "broker"),
                        column("components.warehouse.detail", "string", "warehouse"),
                        column("components.worker.detail", "string", "worker"),
                    ],
                    root="",
                    datasource=HEALTH,
                )
            ],
        ),
        12,
        5,
    )
    layout.add(
        panel(
            "timeseries",
            "Events per second",
            "Events by event time, averaged over each $__interval bucket (late events count "
            "in their own bucket).",
            [
                series(
                    "events",
                    [column("t", "timestamp", "time"), column("value", "number", "events")],
                    computed=[column("events * 1000 / ${__interval_ms}", "number", "events/s")],
                )
            ],
            unit="ops",
            transformations=[exclude("events")],
            options={"legend": {"showLegend": False}},
        ),
        12,
        8,
    )
    layout.add(
        panel(
            "timeseries",
            "Dead letters by reason",
            "Records sent to telemetry.dlq per $__interval, by reason (sparse: only buckets "
            "with records).",
            [
                target(
                    "/v1/metrics/dead_letters",
                    [INTERVAL, *TIME_RANGE],
                    [
                        column("t", "timestamp", "time"),
                        column("reason", "string"),
                        column("source_topic", "string"),
                        column("count", "number"),
                    ],
                )
            ],
            defaults={"custom": {"drawStyle": "bars", "fillOpacity": 80}},
            transformations=[
                exclude("source_topic"),
                {"id": "partitionByValues", "options": {"fields": ["reason"]}},
            ],
        ),
        12,
        8,
    )
    layout.add(
        panel(
            "bargauge",
            "Consumer lag by partition",
            "End offset minus committed offset of the workers' group, per source partition. "
            "Approximate on the local stack's broker (Tansu), exact on Apache Kafka.",
            [
                target(
                    "/v1/metrics/consumer_lag",
                    [],
                    [
                        column("topic", "string"),
                        column("partition", "number"),
                        column("lag", "number"),
                    ],
                )
            ],
            options={
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "/^lag$/", "values": True},
                "orientation": "horizontal",
                "displayMode": "gradient",
            },
        ),
        12,
        8,
    )
    layout.add(
        panel(
            "table",
            "Consumer group offsets",
            "Committed and end offsets per partition (committed −1: nothing committed yet).",
            [
                target(
                    "/v1/metrics/consumer_lag",
                    [],
                    [
                        column("group", "string"),
                        column("topic", "string"),
                        column("partition", "number"),
                        column("committed", "number"),
                        column("end_offset", "number"),
                        column("lag", "number"),
                    ],
                )
            ],
        ),
        12,
        8,
    )
    return dashboard(
        "intentflow-pipeline-health",
        "intentflow · Pipeline health",
        "Throughput, dead letters, consumer lag and component status.",
        layout,
        [],
        "now-6h",
    )


# --- Campaigns -----------------------------------------------------------------------

CAMPAIGN_FUNNEL = ["audience", "sent", "delivered", "read", "clicked", "converted"]


def campaigns_target(columns: list[Column]) -> dict[str, Any]:
    """GET /v1/campaigns: one row per campaign created in the range, live outcomes."""
    return target("/v1/campaigns", list(TIME_RANGE), columns)


def campaigns() -> dict[str, Any]:
    layout = Layout()
    name = column("name", "string")
    layout.add(
        panel(
            "barchart",
            "Campaign funnel: audience → sent → delivered → read → clicked → converted",
            "Members fixed at launch, then distinct targeted messages with a receipt of each "
            "status, and those with an attributed order.",
            [campaigns_target([name, *(column(f, "number") for f in CAMPAIGN_FUNNEL)])],
            options={"xField": "name", "showValue": "auto", "legend": {"showLegend": True}},
        ),
        12,
        9,
    )
    layout.add(
        panel(
            "barchart",
            "Who was messaged",
            "Members targeted, held out (consenting, kept back to measure uplift), not "
            "reachable on the campaign's channels, targets waiting for their quiet hours "
            "to end (in their own time zone), and messages failed on every channel.",
            [
                campaigns_target(
                    [
                        name,
                        *(
                            column(f, "number")
                            for f in ("targeted", "holdout", "no_consent", "waiting", "failed")
                        ),
                    ]
                )
            ],
            options={"xField": "name", "stacking": "none", "legend": {"showLegend": True}},
        ),
        12,
        9,
    )
    for title, field in (("Campaign revenue", "revenue"), ("Campaign orders", "orders")):
        layout.add(
            panel(
                "stat",
                title,
                "Orders whose utm_message_id names a campaign message, at or after its first "
                "read or click and within the attribution window.",
                [campaigns_target([name, column("orders", "number"), column("revenue", "number")])],
                defaults={"decimals": 2 if field == "revenue" else 0},
                options={
                    "reduceOptions": {"calcs": ["sum"], "fields": f"/^{field}$/", "values": False},
                    "colorMode": "none",
                    "graphMode": "none",
                },
            ),
            6,
            6,
        )
    layout.add(
        panel(
            "table",
            "Uplift vs holdout",
            "Share of members ordering within the attribution window after launch, targeted "
            "vs held out, and the difference with its 95 % interval (Newcombe).",
            [
                campaigns_target(
                    [
                        name,
                        column("treated_rate", "number"),
                        column("holdout_rate", "number"),
                        column("uplift", "number"),
                        column("uplift_ci_low", "number"),
                        column("uplift_ci_high", "number"),
                    ]
                )
            ],
            overrides=[
                unit_override(f, "percentunit")
                for f in (
                    "treated_rate",
                    "holdout_rate",
                    "uplift",
                    "uplift_ci_low",
                    "uplift_ci_high",
                )
            ],
        ),
        12,
        6,
    )
    layout.add(
        panel(
            "table",
            "Campaigns",
            "Every campaign created in the range with its state and every count of "
            "GET /v1/campaigns (live while it runs).",
            [
                campaigns_target(
                    [
                        name,
                        column("status", "string"),
                        column("channels", "string"),
                        column("created_at", "timestamp"),
                        column("audience", "number"),
                        column("sent", "number"),
                        column("delivered", "number"),
                        column("read", "number"),
                        column("clicked", "number"),
                        column("failed", "number"),
                        column("converted", "number"),
                        column("revenue", "number"),
                    ]
                )
            ],
            options={"sortBy": [{"displayName": "created_at", "desc": True}]},
        ),
        24,
        8,
    )
    return dashboard(
        "intentflow-campaigns",
        "intentflow · Campaigns",
        "Campaigns to segments: reach, delivery, conversions, revenue and uplift vs holdout.",
        layout,
        [],
        "now-7d",
    )


DASHBOARDS = {
    "storefront-funnel.json": storefront_funnel,
    "nudges.json": nudges,
    "pipeline-health.json": pipeline_health,
    "campaigns.json": campaigns,
}


def render() -> dict[str, str]:
    """File name → JSON text, as committed."""
    return {
        name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main() -> None:
    JSON_DIR.mkdir(exist_ok=True)
    for name, text in render().items():
        (JSON_DIR / name).write_text(text)


if __name__ == "__main__":
    main()
