"""Running a Faust worker process for the app built from the settings."""

import logging
import sys

import click
import faust

from pipeline.app import co_partitioned_topics, create_app
from pipeline.settings import WorkerSettings
from pipeline.topic_layout import PartitionMismatch, verify_partitions_before_start
from schemas.process_metrics import serving_metrics

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# sysexits.h EX_CONFIG: a restart cannot help until the configuration changes.
CONFIG_ERROR_EXIT = 78

log = logging.getLogger(__name__)

# Faust and its client log per-partition chatter at INFO; keep it one notch down.
_NOISY_LOGGERS = ("aiokafka", "faust.transport", "faust.tables", "mode")


def configure_logging(level_name: str) -> None:
    """Log levels are set here, not by ``faust.Worker``: its ``warn`` level starts a
    terminal spinner that puts the root logger at DEBUG (docs/local-stack.md).
    Log lines carry ids and counts, never event payloads (they hold personal data).
    """
    level = logging.getLevelName(level_name.upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown log level {level_name!r}")
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def run_worker(app: faust.App, settings: WorkerSettings) -> None:
    """Run until SIGTERM/SIGINT; exits the process (Faust's worker calls sys.exit)."""
    configure_logging(settings.log_level)
    try:
        verify_partitions_before_start(
            settings.bootstrap_servers, co_partitioned_topics(app, settings)
        )
    except PartitionMismatch as exc:
        log.critical("refusing to start: %s", exc)
        sys.exit(CONFIG_ERROR_EXIT)
    worker = faust.Worker(app, loglevel=settings.log_level, override_logging=False, quiet=True)
    # The spinner is only useful on a terminal and rewrites logging setup when it is.
    worker.spinner = None
    with serving_metrics(settings):
        worker.execute_from_commandline()


@click.command("worker")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default=None,
    help="Log level of this worker (default: INTENTFLOW_LOG_LEVEL, else info).",
)
def worker_command(log_level: str | None) -> None:
    """Run a stream worker: the Faust app built from INTENTFLOW_* settings.

    Connects to INTENTFLOW_KAFKA_BROKERS, keeps RocksDB state under
    INTENTFLOW_DATA_DIR/faust/, and runs until SIGTERM or SIGINT.
    """
    overrides = {"log_level": log_level} if log_level else {}
    settings = WorkerSettings(**overrides)
    run_worker(create_app(settings), settings)
