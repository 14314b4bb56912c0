"""intentflow · Storefront funnel: funnels with step conversion, traffic, orders, revenue."""

from grafana_foundation_sdk.builders import barchart, stat, table, timeseries
from grafana_foundation_sdk.builders.common import TableSortByFieldState
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    VisibilityMode,
)

from dashboards.builders.common import (
    TIME_RANGE,
    Column,
    api_query,
    custom,
    dashboard,
    exclude,
    legend,
    panel,
    reduce,
    series,
    textbox,
    transformation,
    units,
)

FUNNEL_COLUMNS: list[Column] = [
    ("step", "number"),
    ("name", "string"),
    ("breakdown", "string"),
    ("users", "number"),
    ("conversion_from_previous", "number"),
    ("conversion_from_first", "number"),
]
FUNNEL_PARAMS = [("steps", "${steps}"), ("window", "${window}"), *TIME_RANGE]
CONVERSIONS = ("conversion_from_previous", "conversion_from_first")
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


REFERRAL_COLUMNS: list[Column] = [
    ("code", "string"),
    ("referrer", "string"),
    ("visitors", "number"),
    ("signed_up", "number"),
    ("buyers", "number"),
    ("orders", "number"),
    ("revenue", "number"),
]


def per_interval(title: str, description: str, metric: str, height: int) -> timeseries.Panel:
    return panel(timeseries.Panel(), title, description, [series(metric)], (12, height)).legend(
        legend(False)
    )


def build() -> dashboard_models.Dashboard:
    funnel = api_query("/v1/metrics/funnel", FUNNEL_PARAMS, FUNNEL_COLUMNS)
    by = api_query(
        "/v1/metrics/funnel", [*FUNNEL_PARAMS, ("breakdown", "${breakdown}")], FUNNEL_COLUMNS
    )
    steps = (
        panel(
            barchart.Panel(),
            "Funnel: users reaching each step",
            "Users who did the steps of $steps in order, each within $window s of the first "
            "(ClickHouse windowFunnel over event time).",
            [funnel],
            (12, 9),
        )
        .x_field("name")
        .show_value(VisibilityMode.ALWAYS)
        .legend(legend(False))
        .with_transformation(exclude("step", "breakdown", *CONVERSIONS))
    )
    conversion = panel(
        table.Panel(),
        "Step conversion",
        "Conversion from the previous step and from the first step.",
        [funnel],
        (12, 9),
    ).with_transformation(exclude("breakdown"))
    overall = (
        panel(
            stat.Panel(),
            "Overall conversion",
            "Share of the users of the first step who reached the last one.",
            [funnel],
            (6, 6),
        )
        .unit("percentunit")
        .reduce_options(reduce(["lastNotNull"], "/^conversion_from_first$/"))
        .color_mode(BigValueColorMode.VALUE)
        .graph_mode(BigValueGraphMode.NONE)
    )
    first_step = (
        panel(
            stat.Panel(),
            "Users at the first step",
            "Users who did the funnel's first step in the time range.",
            [funnel],
            (6, 6),
        )
        .reduce_options(reduce(["firstNotNull"], "/^users$/"))
        .color_mode(BigValueColorMode.NONE)
        .graph_mode(BigValueGraphMode.NONE)
    )
    by_breakdown = (
        panel(
            barchart.Panel(),
            "Users at each step by $breakdown",
            "The funnel per value of $breakdown, taken from each user's earliest first-step event.",
            [by],
            (12, 10),
        )
        .x_field("breakdown")
        .show_value(VisibilityMode.NEVER)
        .x_tick_label_rotation(-45)
        .with_transformation(
            transformation(
                "groupingToMatrix",
                {
                    "rowField": "breakdown",
                    "columnField": "name",
                    "valueField": "users",
                    "emptyValue": "zero",
                },
            )
        )
        .with_transformation(
            # groupingToMatrix names the first column "breakdown\name".
            transformation(
                "renameByRegex", {"regex": "breakdown\\\\name", "renamePattern": "breakdown"}
            )
        )
    )
    funnel_table = panel(
        table.Panel(),
        "Funnel by $breakdown",
        "Every step of every $breakdown value, zeros included.",
        [by],
        (12, 10),
    ).sort_by([TableSortByFieldState().display_name("users").desc(True)])
    referrals = (
        panel(
            table.Panel(),
            "Referral links: visitors → sign-ups → buyers",
            "New customers who first came through a shopper's referral link in the range, "
            "and what they did by its end (sign-ups, orders, revenue), per link and its "
            "referrer (api/queries/referrals.py).",
            [api_query("/v1/metrics/referrals", TIME_RANGE, REFERRAL_COLUMNS)],
            (24, 8),
        )
        .sort_by([TableSortByFieldState().display_name("visitors").desc(True)])
        .decimals(2)
    )
    panels = [
        steps,
        units(conversion, "percentunit", *CONVERSIONS),
        overall,
        first_step,
        per_interval(
            "Events per $__interval",
            "Events by event time, every bucket present (zero-filled).",
            "events",
            6,
        ),
        per_interval(
            "Orders per $__interval", "Distinct orders (order_placed) by event time.", "orders", 7
        ),
        per_interval(
            "Revenue per $__interval",
            "Sum of order totals by event time, all currencies summed.",
            "revenue",
            7,
        ).decimals(2),
        by_breakdown,
        units(funnel_table, "percentunit", *CONVERSIONS),
        referrals,
    ]
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
        "now-24h",
        panels,
        variables,
    )
