"""intentflow · Nudges: outcomes, suppressions, attributed revenue, uplift vs holdout."""

from grafana_foundation_sdk.builders import barchart, stat, table, timeseries
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    GraphDrawStyle,
    StackingMode,
    VisibilityMode,
)

from dashboards.builders.common import (
    INTERVAL,
    TIME_RANGE,
    Column,
    api_query,
    custom,
    dashboard,
    exclude,
    legend,
    numbers,
    only,
    panel,
    partition_by,
    reduce,
    series,
    units,
)
from dashboards.builders.infinity import QueryBuilder

OUTCOMES = ["sent", "delivered", "read", "clicked", "converted"]
REASONS = [
    "suppressed_no_consent",
    "suppressed_frequency_cap",
    "suppressed_quiet_hours_stale",
    "suppressed_holdout",
    "suppressed_order_placed",
    "suppressed_cart_emptied",
]
LABELS: list[Column] = [("kind", "string"), ("channel", "string")]
UPLIFT_COLUMNS: list[Column] = [
    ("group", "string"),
    ("users", "number"),
    ("converted", "number"),
    ("rate", "number"),
    ("ci_low", "number"),
    ("ci_high", "number"),
]
VARIANT_RATES = ["rate", "ci_low", "ci_high", "allocation"]
SEND_TIME_RATES = ["read_rate", "ci_low", "ci_high"]
VARIANT_COLUMNS: list[Column] = [
    ("kind", "string"),
    ("variant", "string"),
    *numbers("sends", "successes", *VARIANT_RATES),
]


def nudges_query(columns: list[Column]) -> QueryBuilder:
    """GET /v1/metrics/nudges: one row per kind and channel (and channel "all")."""
    return api_query("/v1/metrics/nudges", TIME_RANGE, columns)


def attributed(title: str, field: str, decimals: int) -> stat.Panel:
    money = nudges_query([*LABELS, *numbers("orders", "revenue")])
    return (
        panel(
            stat.Panel(),
            title,
            "Orders whose utm_message_id names a message, at or after its first read or "
            "click and within the attribution window; all kinds.",
            [money],
            (6, 6),
        )
        .unit("none")
        .decimals(decimals)
        .reduce_options(reduce(["sum"], f"/^{field}$/"))
        .color_mode(BigValueColorMode.NONE)
        .graph_mode(BigValueGraphMode.NONE)
        .with_transformation(only("channel", "all"))
    )


def build() -> dashboard_models.Dashboard:
    message_funnel = (
        panel(
            barchart.Panel(),
            "Message funnel: sent → delivered → read → clicked → converted",
            "Distinct messages per kind with a receipt of each status in the range, and those "
            "with an attributed order (channel = all: each message once).",
            [nudges_query([*LABELS, *numbers(*OUTCOMES)])],
            (12, 9),
        )
        .x_field("kind")
        .show_value(VisibilityMode.AUTO)
        .legend(legend(True))
        .with_transformation(only("channel", "all"))
        .with_transformation(exclude("channel"))
    )
    suppressions = (
        panel(
            barchart.Panel(),
            "Suppressions by reason",
            "Decisions not sent, by kind and reason (the holdout's are measured for uplift).",
            [nudges_query([*LABELS, *numbers(*REASONS)])],
            (12, 9),
        )
        .x_field("kind")
        .stacking(StackingMode.NORMAL)
        .legend(legend(True))
        .with_transformation(only("channel", "all"))
        .with_transformation(exclude("channel"))
    )
    decided = panel(
        timeseries.Panel(),
        "Nudges decided per $__interval",
        "Nudge decisions with status emit, by decision time.",
        [series("nudges")],
        (12, 6),
    ).legend(legend(False))
    outcomes = panel(
        table.Panel(),
        "Outcomes by kind and channel",
        "Every count of GET /v1/metrics/nudges; a WhatsApp → SMS fallback shows on both "
        "channels' rows and once under all.",
        [
            nudges_query(
                [
                    *LABELS,
                    *numbers("emitted", "suppressed", "cancelled", *OUTCOMES, "failed"),
                    *numbers("orders", "revenue"),
                ]
            )
        ],
        (24, 8),
    )
    uplift_all = panel(
        table.Panel(),
        "Uplift vs holdout (all kinds)",
        "Share of users converting after their first nudge decision, nudged vs holdout, "
        "with 95 % intervals (Wilson; Newcombe for the difference).",
        [api_query("/v1/metrics/uplift", TIME_RANGE, UPLIFT_COLUMNS)],
        (12, 7),
    )
    uplift_kind = (
        panel(
            barchart.Panel(),
            "Conversion rate, nudged vs holdout: $kind",
            "Conversion rate per group for $kind decisions, and their difference (uplift).",
            [api_query("/v1/metrics/uplift", [*TIME_RANGE, ("kind", "${kind}")], UPLIFT_COLUMNS)],
            (12, 7),
        )
        .unit("percentunit")
        .x_field("group")
        .show_value(VisibilityMode.ALWAYS)
        .legend(legend(False))
        .with_transformation(exclude("users", "converted"))
    )
    not_sent = panel(
        table.Panel(),
        "Not sent, and why",
        "Every non-send of GET /v1/metrics/nudges/not_sent: held (quiet hours), expired "
        "(stale, or held past the maximum hold), suppressed, cancelled. Stage decision: "
        "the engine, by event time; send: the dispatcher at send time. still_held: held "
        "by the engine and not yet released.",
        [
            api_query(
                "/v1/metrics/nudges/not_sent",
                TIME_RANGE,
                [
                    ("outcome", "string"),
                    ("stage", "string"),
                    ("kind", "string"),
                    ("reason", "string"),
                    ("messages", "number"),
                ],
            )
        ],
        (24, 8),
    )
    opt_outs = (
        panel(
            timeseries.Panel(),
            "Opt-outs by reply",
            "Inbound STOP / UNSUBSCRIBE replies per channel (each revokes the shopper's "
            "marketing consent on that channel and cancels what is queued).",
            [
                api_query(
                    "/v1/metrics/opt_outs",
                    [INTERVAL, *TIME_RANGE],
                    [
                        ("t", "timestamp", "time"),
                        ("channel", "string"),
                        ("count", "number"),
                        ("users", "number"),
                    ],
                )
            ],
            (24, 7),
        )
        .draw_style(GraphDrawStyle.BARS)
        .fill_opacity(80)
        .with_transformation(exclude("users"))
        .with_transformation(partition_by("channel"))
    )
    costs = panel(
        table.Panel(),
        "Cost per channel",
        "What the messages sent in the range cost (the rules' rate card, recorded with "
        "each send), and the cost per attributed conversion.",
        [
            api_query(
                "/v1/metrics/costs",
                TIME_RANGE,
                [
                    ("channel", "string"),
                    ("currency", "string"),
                    *numbers("messages", "cost", "conversions", "revenue"),
                    ("cost_per_message", "number", "cost / message"),
                    ("cost_per_conversion", "number", "cost / conversion"),
                ],
            )
        ],
        (24, 6),
    )
    variants = panel(
        table.Panel(),
        "Message variants",
        "Per nudge kind with variants, the bandit's snapshot in force now "
        "(GET /v1/metrics/variants): each variant's sends and successes, its success rate "
        "with the 95 % interval (Wilson) and its allocation, the share of the next nudges "
        "it gets. No time range: the snapshot is the current state.",
        [api_query("/v1/metrics/variants", [], VARIANT_COLUMNS)],
        (24, 7),
    )
    send_time = panel(
        table.Panel(),
        "High intent: best hour vs random hour",
        "High-intent nudges held for the shopper's learned best hour against the random-hour "
        "control (GET /v1/metrics/send_time): per arm the nudges first held or sent in the "
        "range, those sent and those read or clicked, the read rate with its 95 % interval "
        "(Wilson); the difference row: best hour minus random hour (Newcombe).",
        [
            api_query(
                "/v1/metrics/send_time",
                [*TIME_RANGE, ("kind", "high_intent")],
                [("arm", "string"), *numbers("messages", "sent", "read", *SEND_TIME_RATES)],
            )
        ],
        (24, 6),
    )
    panels = [
        message_funnel,
        suppressions,
        attributed("Attributed revenue", "revenue", 2),
        attributed("Attributed orders", "orders", 0),
        decided,
        outcomes,
        units(uplift_all, "percentunit", "rate", "ci_low", "ci_high"),
        uplift_kind,
        not_sent,
        opt_outs,
        costs,
        units(variants, "percentunit", *VARIANT_RATES),
        units(send_time, "percentunit", *SEND_TIME_RATES),
    ]
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
        "now-7d",
        panels,
        variables,
    )
