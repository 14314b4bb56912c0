"""intentflow · Pipeline health: throughput, dead letters, consumer lag, component status."""

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models.common import (
    BarGaugeDisplayMode,
    BigValueColorMode,
    BigValueGraphMode,
    BigValueTextMode,
    GraphDrawStyle,
    VizOrientation,
)

from dashboards.builders.common import (
    HEALTH,
    INTERVAL,
    TIME_RANGE,
    Column,
    api_query,
    dashboard,
    exclude,
    legend,
    panel,
    partition_by,
    reduce,
    series,
)
from dashboards.builders.infinity import QueryBuilder

STATUS_COLORS = {"ok": "green", "down": "red", "degraded": "red"}


def status_mapping() -> dashboard_models.ValueMap:
    return dashboard_models.ValueMap(
        {
            status: dashboard_models.ValueMappingResult(text=status, color=color, index=i)
            for i, (status, color) in enumerate(STATUS_COLORS.items())
        }
    )


def health_query(columns: list[Column]) -> QueryBuilder:
    """GET /v1/health: one object (no rows array), read even when it answers 503."""
    return api_query("/v1/health", [], columns, root="", datasource=HEALTH)


def build() -> dashboard_models.Dashboard:
    status = (
        panel(
            stat.Panel(),
            "Component status",
            "GET /v1/health: the broker, the warehouse, and whether a worker is in the "
            "consumer group. Answered even while a part is down (HTTP 503).",
            [
                health_query(
                    [
                        ("status", "string", "overall"),
                        ("components.broker.status", "string", "broker"),
                        ("components.warehouse.status", "string", "warehouse"),
                        ("components.worker.status", "string", "worker"),
                    ]
                )
            ],
            (12, 5),
        )
        .mappings([status_mapping()])
        .reduce_options(reduce(["lastNotNull"], "/.*/"))
        .color_mode(BigValueColorMode.BACKGROUND)
        .graph_mode(BigValueGraphMode.NONE)
        .text_mode(BigValueTextMode.VALUE_AND_NAME)
    )
    detail = panel(
        table.Panel(),
        "Component detail",
        "What each check saw.",
        [
            health_query(
                [
                    ("components.broker.detail", "string", "broker"),
                    ("components.warehouse.detail", "string", "warehouse"),
                    ("components.worker.detail", "string", "worker"),
                ]
            )
        ],
        (12, 5),
    )
    throughput = (
        panel(
            timeseries.Panel(),
            "Events per second",
            "Events by event time, averaged over each $__interval bucket (late events count "
            "in their own bucket).",
            [
                series(
                    "events",
                    [("t", "timestamp", "time"), ("value", "number", "events")],
                    computed=[("events * 1000 / ${__interval_ms}", "number", "events/s")],
                )
            ],
            (12, 8),
        )
        .unit("ops")
        .legend(legend(False))
        .with_transformation(exclude("events"))
    )
    dead_letters = (
        panel(
            timeseries.Panel(),
            "Dead letters by reason",
            "Records sent to telemetry.dlq per $__interval, by reason (sparse: only buckets "
            "with records).",
            [
                api_query(
                    "/v1/metrics/dead_letters",
                    [INTERVAL, *TIME_RANGE],
                    [
                        ("t", "timestamp", "time"),
                        ("reason", "string"),
                        ("source_topic", "string"),
                        ("count", "number"),
                    ],
                )
            ],
            (12, 8),
        )
        .draw_style(GraphDrawStyle.BARS)
        .fill_opacity(80)
        .with_transformation(exclude("source_topic"))
        .with_transformation(partition_by("reason"))
    )
    lag = (
        panel(
            bargauge.Panel(),
            "Consumer lag by partition",
            "End offset minus committed offset of the workers' group, per source partition. "
            "Approximate on the local stack's broker (Tansu), exact on Apache Kafka.",
            [
                api_query(
                    "/v1/metrics/consumer_lag",
                    [],
                    [("topic", "string"), ("partition", "number"), ("lag", "number")],
                )
            ],
            (12, 8),
        )
        .reduce_options(reduce(["lastNotNull"], "/^lag$/", values=True))
        .orientation(VizOrientation.HORIZONTAL)
        .display_mode(BarGaugeDisplayMode.GRADIENT)
    )
    offsets = panel(
        table.Panel(),
        "Consumer group offsets",
        "Committed and end offsets per partition (committed −1: nothing committed yet).",
        [
            api_query(
                "/v1/metrics/consumer_lag",
                [],
                [
                    ("group", "string"),
                    ("topic", "string"),
                    ("partition", "number"),
                    ("committed", "number"),
                    ("end_offset", "number"),
                    ("lag", "number"),
                ],
            )
        ],
        (12, 8),
    )
    return dashboard(
        "intentflow-pipeline-health",
        "intentflow · Pipeline health",
        "Throughput, dead letters, consumer lag and component status.",
        "now-6h",
        [status, detail, throughput, dead_letters, lag, offsets],
    )
