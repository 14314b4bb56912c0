"""``intentflow dispatcher``: the dispatch worker role, apart from the scoring workers.

Its own app id (``<app id>.dispatch``), hence its own consumer group and state
directory: killing or restarting it never moves the engine's partitions.
"""

import click

from pipeline.app import DISPATCH_REGISTRATIONS, create_app
from pipeline.dispatch.settings import DispatchSettings
from pipeline.worker import run_worker


def dispatcher_settings(**overrides: object) -> DispatchSettings:
    base = DispatchSettings(**overrides)
    return base.model_copy(update={"app_id": f"{base.app_id}.dispatch", "web_enabled": False})


@click.command("dispatcher")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default=None,
    help="Log level (default: INTENTFLOW_LOG_LEVEL, else info).",
)
def dispatcher_command(log_level: str | None) -> None:
    """Run the dispatcher: nudges and VIP upgrades out on WhatsApp, SMS as the fallback.

    Reads INTENTFLOW_* settings (INTENTFLOW_PROVIDER_URL, INTENTFLOW_DELIVERY_TIMEOUT_S, ...);
    runs until SIGTERM or SIGINT.
    """
    settings = dispatcher_settings(**({"log_level": log_level} if log_level else {}))
    run_worker(create_app(settings, DISPATCH_REGISTRATIONS), settings)
