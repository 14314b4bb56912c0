"""intentflow · Campaigns: reach, delivery, conversions, revenue and uplift vs holdout."""

from grafana_foundation_sdk.builders import barchart, stat, table
from grafana_foundation_sdk.builders.common import TableSortByFieldState
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    StackingMode,
    VisibilityMode,
)

from dashboards.builders.common import (
    TIME_RANGE,
    Column,
    api_query,
    dashboard,
    exclude,
    legend,
    numbers,
    only,
    panel,
    reduce,
    units,
)
from dashboards.builders.infinity import QueryBuilder

FUNNEL = ["audience", "sent", "delivered", "read", "clicked", "converted"]
REACH = ["targeted", "holdout", "no_consent", "waiting", "failed"]
UPLIFT = ["treated_rate", "holdout_rate", "uplift", "uplift_ci_low", "uplift_ci_high"]
NAME: Column = ("name", "string")
# A best-hour campaign's arms (pipeline/campaigns/best_hour.py): targets at their best
# local hour vs the random-hour control, each arm's readers and rate, the difference.
ARM_RATES = ["best_hour_read_rate", "random_hour_read_rate"]
SEND_TIME_UPLIFT = ["send_time_uplift", "send_time_uplift_ci_low", "send_time_uplift_ci_high"]
ARMS = [
    "best_hour_targets",
    "best_hour_read",
    "random_hour_targets",
    "random_hour_read",
    *ARM_RATES,
    *SEND_TIME_UPLIFT,
]
SEND_TIME: Column = ("send_time", "string")


def campaigns_query(columns: list[Column]) -> QueryBuilder:
    """GET /v1/campaigns: one row per campaign created in the range, live outcomes."""
    return api_query("/v1/campaigns", TIME_RANGE, [NAME, *columns])


def attributed(title: str, field: str, decimals: int) -> stat.Panel:
    return (
        panel(
            stat.Panel(),
            title,
            "Orders whose utm_message_id names a campaign message, at or after its first "
            "read or click and within the attribution window.",
            [campaigns_query(numbers("orders", "revenue"))],
            (6, 6),
        )
        .decimals(decimals)
        .reduce_options(reduce(["sum"], f"/^{field}$/"))
        .color_mode(BigValueColorMode.NONE)
        .graph_mode(BigValueGraphMode.NONE)
    )


def build() -> dashboard_models.Dashboard:
    funnel = (
        panel(
            barchart.Panel(),
            "Campaign funnel: audience → sent → delivered → read → clicked → converted",
            "Members fixed at launch, then distinct targeted messages with a receipt of each "
            "status, and those with an attributed order.",
            [campaigns_query(numbers(*FUNNEL))],
            (12, 9),
        )
        .x_field("name")
        .show_value(VisibilityMode.AUTO)
        .legend(legend(True))
    )
    reach = (
        panel(
            barchart.Panel(),
            "Who was messaged",
            "Members targeted, held out (consenting, kept back to measure uplift), not "
            "reachable on the campaign's channels, targets waiting for their quiet hours "
            "to end (in their own time zone), and messages failed on every channel.",
            [campaigns_query(numbers(*REACH))],
            (12, 9),
        )
        .x_field("name")
        .stacking(StackingMode.NONE)
        .legend(legend(True))
    )
    uplift = panel(
        table.Panel(),
        "Uplift vs holdout",
        "Share of members ordering within the attribution window after launch, targeted "
        "vs held out, and the difference with its 95 % interval (Newcombe).",
        [campaigns_query(numbers(*UPLIFT))],
        (12, 6),
    )
    every_campaign = panel(
        table.Panel(),
        "Campaigns",
        "Every campaign created in the range with its state and every count of "
        "GET /v1/campaigns (live while it runs).",
        [
            campaigns_query(
                [
                    ("status", "string"),
                    ("channels", "string"),
                    ("created_at", "timestamp"),
                    *numbers(*FUNNEL[:5], "failed", "converted", "revenue"),
                ]
            )
        ],
        (24, 8),
    ).sort_by([TableSortByFieldState().display_name("created_at").desc(True)])
    arms = (
        panel(
            table.Panel(),
            "Send time: best hour vs random hour",
            "Best-hour campaigns only: targets sent at their learned best local hour vs the "
            "random-hour control, how many of each read or clicked their message, the read "
            "rates and their difference with its 95 % interval (Newcombe).",
            [campaigns_query([SEND_TIME, *numbers(*ARMS)])],
            (12, 7),
        )
        .with_transformation(only("send_time", "best_hour"))
        .with_transformation(exclude("send_time"))
    )
    arm_rates = (
        panel(
            barchart.Panel(),
            "Read rate by send-time arm",
            "Best-hour campaigns only: the share of each arm's targets that read or clicked "
            "their message, at the best hour vs at a random hour.",
            [campaigns_query([SEND_TIME, *numbers(*ARM_RATES)])],
            (12, 7),
        )
        .unit("percentunit")
        .x_field("name")
        .show_value(VisibilityMode.AUTO)
        .legend(legend(True))
        .with_transformation(only("send_time", "best_hour"))
        .with_transformation(exclude("send_time"))
    )
    return dashboard(
        "intentflow-campaigns",
        "intentflow · Campaigns",
        "Campaigns to segments: reach, delivery, conversions, revenue and uplift vs holdout.",
        "now-7d",
        [
            funnel,
            reach,
            attributed("Campaign revenue", "revenue", 2),
            attributed("Campaign orders", "orders", 0),
            units(uplift, "percentunit", *UPLIFT),
            every_campaign,
            units(arms, "percentunit", *ARM_RATES, *SEND_TIME_UPLIFT),
            arm_rates,
        ],
    )
