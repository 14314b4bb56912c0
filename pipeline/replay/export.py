"""``intentflow export``: the events of an event-time range of a topic, to a file.

Each partition is read from its beginning and filtered by each record's own
event timestamp (pipeline/replay/source.py says why); records keep their
original partition and offset, so a replay from the file orders them exactly
as the live engine did.
"""

import asyncio
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click

from pipeline.progress import Progress
from pipeline.replay.options import ISO_MOMENT
from pipeline.replay.recorded import ExportHeader, RecordFileError, RecordWriter, file_format
from pipeline.replay.source import ScanCounts, TimeRange, TopicScan
from pipeline.settings import WorkerSettings
from pipeline.warehouse.erasures import command_erasures
from schemas.erasure import ErasureList
from schemas.time import epoch_ms


@dataclass(frozen=True, slots=True)
class ExportResult:
    written: int
    counts: ScanCounts
    partitions: int
    elapsed_s: float


async def export_range(
    bootstrap_servers: list[str],
    topic: str,
    window: TimeRange,
    out: Path,
    erasures: ErasureList,
    progress: Progress | None = None,
) -> ExportResult:
    scan = TopicScan(bootstrap_servers, topic, window, erasures=erasures)
    if progress is not None:
        progress.fraction = scan.progress
    # Written under a temporary name: a failed export leaves no half file behind.
    partial = out.with_name(f".partial-{out.name}")
    started = time.monotonic()
    try:
        async with scan:
            header = ExportHeader(topic, scan.partitions, window.from_ms, window.to_ms)
            with RecordWriter(partial, header) as writer:
                async for batch in scan.batches():
                    for record, event in batch:
                        writer.write(record, event)
                    if progress is not None:
                        progress.advance(len(batch))
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(out)
    elapsed = time.monotonic() - started
    return ExportResult(writer.count, scan.counts, scan.partitions, elapsed)


@click.command("export")
@click.option("--topic", default="telemetry.raw", show_default=True, help="Topic to read.")
@click.option(
    "--from", "from_", type=ISO_MOMENT, required=True, help="Start of the event-time range."
)
@click.option(
    "--to", type=ISO_MOMENT, required=True, help="End of the event-time range (exclusive)."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File to write: .ndjson.gz, .ndjson.zst, .ndjson or .parquet (by its name).",
)
def export_command(topic: str, from_: datetime, to: datetime, out: Path) -> None:
    """Export a topic's events of an event-time range to a file, for replays.

    Selects by each event's own timestamp (late events included), reading every
    partition from its beginning; keeps each record's partition and offset.
    Leaves out the events of erased users (the warehouse's erasure list: it
    must be readable). Brokers come from INTENTFLOW_KAFKA_BROKERS.
    """
    try:
        file_format(out)
        window = TimeRange(epoch_ms(from_), epoch_ms(to))
    except (RecordFileError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    settings = WorkerSettings()
    erasures = command_erasures(settings)
    progress = Progress("export")
    try:
        result = asyncio.run(
            export_range(settings.bootstrap_servers, topic, window, out, erasures, progress)
        )
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        progress.close()
    counts = result.counts
    rate = counts.read / result.elapsed_s if result.elapsed_s else 0.0
    click.echo(
        f"exported {result.written:,} events of {counts.read:,} read from {topic} "
        f"({result.partitions} partitions) to {out}; {counts.unplaceable:,} records without "
        f"a readable event time skipped; {counts.erased:,} records of erased users left out; "
        f"{result.elapsed_s:.1f} s, {rate:,.0f} records/s",
        file=sys.stdout,
    )
