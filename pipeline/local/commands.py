"""``intentflow local ...``: the whole stack on one machine."""

import sys
from pathlib import Path

import click
from pydantic import ValidationError

from pipeline.local.settings import LocalStackSettings
from pipeline.local.stack import run_local_stack


@click.group("local")
def local_group() -> None:
    """Run the local stack: Tansu broker, chDB warehouse, workers and API on this machine."""


@local_group.command("up")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for warehouse data, worker state, logs and local.env "
    "(default: INTENTFLOW_DATA_DIR, else .local-stack).",
)
@click.option(
    "--api-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port of the API on 127.0.0.1 (default 8000).",
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=None,
    help="Number of stream worker processes, at most the topics' partitions (default 1).",
)
@click.option(
    "--partitions",
    type=click.IntRange(1),
    default=None,
    help="Partitions of the user-keyed topics (default: INTENTFLOW_USER_PARTITIONS, else 4).",
)
@click.option(
    "--simulate/--no-simulate",
    default=None,
    help="Once the stack is up, send simulated storefront traffic to the API (default: off).",
)
def up_command(
    data_dir: Path | None,
    api_port: int | None,
    workers: int | None,
    partitions: int | None,
    simulate: bool | None,
) -> None:
    """Start the stack, print its URLs and keys (also in DATA_DIR/local.env), run until Ctrl-C.

    Broker data is in memory and lost on stop; warehouse data persists in DATA_DIR.
    """
    options = {
        "data_dir": data_dir,
        "api_port": api_port,
        "workers": workers,
        "user_partitions": partitions,
        "simulate": simulate,
    }
    try:
        settings = LocalStackSettings(**{k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        raise click.UsageError(
            "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        ) from None
    sys.exit(run_local_stack(settings))
