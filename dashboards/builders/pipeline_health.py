"""intentflow · Pipeline health: throughput, dead letters, consumer lag, component status.

The first panels read the API (/v1/health, and the warehouse and consumer-group
figures of the metrics API); the rest read Prometheus, which scrapes every
process's own /metrics (docs/production.md, "Metrics"). ``PROMQL`` is the one list of
those expressions: docs/production.md shows the same ones, and
tests/unit/test_dashboard_promql.py holds the doc, the panels and the metric names of
schemas/process_metrics.py and pipeline/metrics.py together.
"""

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
    promql,
    reduce,
    series,
)
from dashboards.builders.infinity import QueryBuilder

# Title → (description, unit, [(PromQL, legend)]): a time series panel each, in this order.
RATE = "$__rate_interval"
PROMQL: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "Records in per topic": (
        "Records the agents took from Kafka per second, per process kind and topic "
        "(workers: telemetry.raw and the internal topics; dispatcher: nudges, vip, "
        "receipts, control).",
        "ops",
        [(f"sum by (job, topic) (rate(intentflow_records_in_total[{RATE}]))", "{{job}} {{topic}}")],
    ),
    "Records out per topic": (
        "Records Kafka acknowledged per second: the collector's telemetry.raw, the "
        "workers' decisions, dead letters and changelogs, the campaign launcher's nudges.",
        "ops",
        [
            (
                f"sum by (job, topic) (rate(intentflow_records_out_total[{RATE}]))",
                "{{job}} {{topic}}",
            )
        ],
    ),
    "Decisions per minute by kind and status": (
        "What the engine published: emitted, suppressed, held (quiet hours) and cancelled "
        "decisions per kind.",
        "short",
        [
            (
                f"sum by (kind, status) (rate(intentflow_decisions_total[{RATE}])) * 60",
                "{{kind}} {{status}}",
            )
        ],
    ),
    "Dead letters by reason (process counters)": (
        "Records dead-lettered per interval by the engine and the sink, by reason; the "
        "panel above counts the same from the warehouse.",
        "short",
        [(f"sum by (reason) (increase(intentflow_dead_letters_total[{RATE}]))", "{{reason}}")],
    ),
    "Consumer lag: worst partition per topic": (
        "Highwater minus the next offset to read, as each process sees its own "
        "partitions every 5 s (approximate on Tansu, exact on Kafka).",
        "short",
        [("max by (job, topic) (intentflow_consumer_lag)", "{{job}} {{topic}}")],
    ),
    "Consumer lag per partition (workers)": (
        "The workers' lag per raw partition, one series per owner and partition: a "
        "partition whose owner is stuck stands out, and a rebalance shows as partitions "
        "changing owner.",
        "short",
        [
            (
                'max by (instance, partition) (intentflow_consumer_lag{job="intentflow-worker", '
                'topic="telemetry.raw"})',
                "{{instance}} p{{partition}}",
            )
        ],
    ),
    "Records per batch (p50, p95)": (
        "How many records an agent takes at once: small batches under load mean the "
        "agent is not the bottleneck; batches at the batch size mean it is.",
        "short",
        [
            (
                "histogram_quantile(0.5, sum by (le, topic) "
                f"(rate(intentflow_batch_records_bucket[{RATE}])))",
                "p50 {{topic}}",
            ),
            (
                "histogram_quantile(0.95, sum by (le, topic) "
                f"(rate(intentflow_batch_records_bucket[{RATE}])))",
                "p95 {{topic}}",
            ),
        ],
    ),
    "Flush latency (p50, p99)": (
        "Making a batch durable: state (RocksDB and changelog acknowledged) and "
        "warehouse (an insert, retries included).",
        "s",
        [
            (
                "histogram_quantile(0.5, sum by (le, target) "
                f"(rate(intentflow_flush_seconds_bucket[{RATE}])))",
                "p50 {{target}}",
            ),
            (
                "histogram_quantile(0.99, sum by (le, target) "
                f"(rate(intentflow_flush_seconds_bucket[{RATE}])))",
                "p99 {{target}}",
            ),
        ],
    ),
    "Send latency (p50, p99)": (
        "From handing a batch to the Kafka producer to every acknowledgement, per "
        "producer (worker, collector, campaigns).",
        "s",
        [
            (
                "histogram_quantile(0.5, sum by (le, producer) "
                f"(rate(intentflow_send_seconds_bucket[{RATE}])))",
                "p50 {{producer}}",
            ),
            (
                "histogram_quantile(0.99, sum by (le, producer) "
                f"(rate(intentflow_send_seconds_bucket[{RATE}])))",
                "p99 {{producer}}",
            ),
        ],
    ),
    "Dispatcher outcomes per minute": (
        "Receipts the dispatcher wrote, by channel and status (sent, delivered, failed, "
        "expired...).",
        "short",
        [
            (
                f"sum by (channel, status) (rate(intentflow_dispatch_outcomes_total[{RATE}])) * 60",
                "{{channel}} {{status}}",
            )
        ],
    ),
    "Provider latency (p95)": (
        "One HTTP request to Meta or Twilio, retries apart, by channel.",
        "s",
        [
            (
                "histogram_quantile(0.95, sum by (le, channel) "
                f"(rate(intentflow_provider_request_seconds_bucket[{RATE}])))",
                "p95 {{channel}}",
            )
        ],
    ),
    "Provider error share": (
        "The share of requests to Meta or Twilio that were not 2xx (4xx, 5xx, or a "
        "transport error), by channel.",
        "percentunit",
        [
            (
                "sum by (channel) (rate(intentflow_provider_request_seconds_count"
                f'{{outcome!="2xx"}}[{RATE}])) / sum by (channel) '
                f"(rate(intentflow_provider_request_seconds_count[{RATE}]))",
                "{{channel}}",
            )
        ],
    ),
    "Channels paused, as the dispatcher sees them": (
        "1 while the dispatcher holds sends on a channel an operator paused; back to 0 "
        "once it has seen the resume (it polls the switches every control_poll_s).",
        "short",
        [("max by (channel) (intentflow_channel_paused)", "{{channel}}")],
    ),
    "Processes up": (
        "Every process Prometheus scrapes: 1 while its /metrics answers, 0 when not.",
        "short",
        [('up{job=~"intentflow-.*"}', "{{job}} {{instance}}")],
    ),
    "Resident memory per process": (
        "A process whose memory keeps growing after warm-up is a leak or an unbounded "
        "cache (make soak measures it on the local stack).",
        "bytes",
        [('process_resident_memory_bytes{job=~"intentflow-.*"}', "{{job}} {{instance}}")],
    ),
    "RocksDB memory per worker": (
        "The block cache every table partition of a process shares, memtables included, "
        "and the memtables alone: it stays near INTENTFLOW_STATE_MEMORY_MB however many "
        "partitions the process owns.",
        "bytes",
        [("intentflow_state_memory_bytes", "{{job}} {{instance}} {{part}}")],
    ),
}

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
        "Throughput, dead letters, consumer lag and component status; below, every "
        "process's own metrics from Prometheus.",
        "now-6h",
        [status, detail, throughput, dead_letters, lag, offsets, *prometheus_panels()],
    )


def promql_listing() -> str:
    """``PROMQL`` as docs/production.md shows it: each panel's title as a comment, then
    its expressions, one a line (tests/unit/test_dashboard_promql.py keeps them equal)."""
    lines = []
    for title, (_, _, queries) in PROMQL.items():
        lines.append(f"# {title}")
        lines += [expr for expr, _ in queries]
    return "\n".join(lines)


def prometheus_panels() -> list[timeseries.Panel]:
    """One time series panel per entry of ``PROMQL``, two to a row."""
    panels = []
    for title, (description, unit, queries) in PROMQL.items():
        targets = [
            promql(expr, legend_format, ref_id=chr(ord("A") + i))
            for i, (expr, legend_format) in enumerate(queries)
        ]
        panels.append(panel(timeseries.Panel(), title, description, targets, (12, 8)).unit(unit))
    return panels
