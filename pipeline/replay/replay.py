"""``intentflow replay``: a rule set over recorded traffic, in an isolated namespace.

The records (a topic's event-time range, or an export file) go through
``ReplayRunner`` — the live engine's processor, in-memory state, a watermark
only event time moves — per partition in their original offset order. At the
end every partition's watermark moves to the end of the range, so deadlines
inside it fire. Outputs go to ``replay.<run id>.*`` topics (recreated empty)
and to warehouse rows tagged with the run id (deleted first); a dry-run
dispatcher counts what would have been sent.
"""

import asyncio
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click

from pipeline.domain.rules import Rules, RulesError, load_rules
from pipeline.engine.outputs import KafkaOutputs, Record
from pipeline.progress import Progress
from pipeline.replay.dryrun import DryRunDispatcher
from pipeline.replay.namespace import check_run_id, reset_run_topics, run_topics
from pipeline.replay.options import ISO_MOMENT
from pipeline.replay.recorded import RecordedEvent, RecordFileError, RecordReader
from pipeline.replay.runner import ReplayRunner, longest_deadline_ms
from pipeline.replay.source import TimeRange, TopicScan
from pipeline.replay.warehouse import RunRecord, delete_run, write_run
from pipeline.settings import WorkerSettings
from pipeline.warehouse.erasures import command_erasures
from schemas.erasure import ErasureList
from schemas.messages import Nudge, NudgeCancellation, NudgeHeld, VipUpgrade, load_decision
from schemas.time import epoch_ms
from schemas.warehouse import BATCH_TIMEOUT_S, warehouse_client

# Outputs are produced in chunks this large (decisions are ~1 % of events).
_SEND_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    run_id: str
    rules: Rules
    # Exactly one source: a topic and an event-time range, or a file.
    topic: str | None = None
    window: TimeRange | None = None
    file: Path | None = None
    bootstrap_servers: tuple[str, ...] = ()
    # None: no warehouse rows (the run's topics still get its decisions).
    clickhouse_url: str | None = None
    clickhouse_database: str = "intentflow"
    write_topics: bool = True
    # Erased subjects, whose records are skipped (schemas/erasure.py); the command
    # always loads them, and refuses to run when it cannot.
    erasures: ErasureList | None = None

    def __post_init__(self) -> None:
        check_run_id(self.run_id)
        if (self.file is None) == (self.topic is None):
            raise ValueError("give either --file or --topic with --from/--to")
        if self.topic is not None and self.window is None:
            raise ValueError("--topic needs --from and --to")


@dataclass(slots=True)
class ReplaySummary:
    run_id: str
    rules_version: str
    source: str
    source_name: str
    events: int = 0
    unplaceable: int = 0
    # Records of erased subjects skipped (schemas/erasure.py).
    erased: int = 0
    watermark_end_ms: int = 0
    elapsed_s: float = 0.0
    decisions: list[Nudge | NudgeHeld | NudgeCancellation | VipUpgrade] = field(
        default_factory=list
    )
    dead_letters: int = 0
    orders: int = 0
    would_send: Counter[str] = field(default_factory=Counter)
    warehouse_rows: dict[str, int] = field(default_factory=dict)
    topics: tuple[str, ...] = ()

    @property
    def nudges(self) -> list[Nudge]:
        return [d for d in self.decisions if isinstance(d, Nudge)]

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s else 0.0

    def lines(self) -> list[str]:
        nudges = self.nudges
        emitted = Counter(n.kind for n in nudges if n.status == "emit")
        suppressed = Counter(n.reason for n in nudges if n.status == "suppressed")
        cancellations = sum(isinstance(d, NudgeCancellation) for d in self.decisions)
        upgrades = sum(isinstance(d, VipUpgrade) for d in self.decisions)
        users = len({n.user_key for n in nudges if n.status == "emit"})
        out = [
            f"run {self.run_id} (rules {self.rules_version}) from {self.source} "
            f"{self.source_name}: {self.events:,} events in {self.elapsed_s:.1f} s "
            f"({self.events_per_s:,.0f} events/s)",
            "nudges emitted: "
            + (", ".join(f"{k} {n}" for k, n in sorted(emitted.items())) or "none")
            + f"; users nudged {users:,}",
            "suppressed: "
            + (", ".join(f"{r} {n}" for r, n in sorted(suppressed.items())) or "none"),
            f"cancellations {cancellations:,}, VIP upgrades {upgrades:,}, "
            f"dead letters {self.dead_letters:,}, orders seen {self.orders:,}",
            "would send (dry run, nothing sent): "
            + (", ".join(f"{c} {n}" for c, n in sorted(self.would_send.items())) or "nothing"),
        ]
        if self.unplaceable:
            out.append(f"{self.unplaceable:,} records without a readable event time skipped")
        if self.erased:
            out.append(f"{self.erased:,} records of erased users skipped")
        if self.topics:
            out.append("topics: " + ", ".join(self.topics))
        if self.warehouse_rows:
            rows = ", ".join(f"{t} {n:,}" for t, n in self.warehouse_rows.items())
            out.append(f"warehouse rows (run_id {self.run_id}): {rows}")
        return out


class _Shipper:
    """Sends the run's outputs to its topics in chunks and keeps its decisions."""

    def __init__(self, outputs: KafkaOutputs | None, decision_topics: set[str], dlq: str) -> None:
        self._outputs = outputs
        self._decision_topics = decision_topics
        self._dlq = dlq
        self._pending: list[Record] = []
        self.decisions: list[Nudge | NudgeHeld | NudgeCancellation | VipUpgrade] = []
        self.dead_letters = 0

    async def add(self, records: list[Record], flush: bool = False) -> None:
        for topic, _, value, _ in records:
            if topic in self._decision_topics and value is not None:
                self.decisions.append(load_decision(value))
            elif topic == self._dlq:
                self.dead_letters += 1
        if self._outputs is None:
            return
        self._pending.extend(records)
        if flush or len(self._pending) >= _SEND_CHUNK:
            pending, self._pending = self._pending, []
            await self._outputs.send_all(pending)


class _FileSource:
    """An export file: its header names the source topic, partitions and range."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self._reader = RecordReader(path)
        self.unplaceable = 0

    async def __aenter__(self) -> "_FileSource":
        header = self._reader.__enter__().header
        self.topic, self.partitions, self.end_ms = header.topic, header.partitions, header.to_ms
        self.handovers_logged = header.handovers_logged
        self.progress = self._reader.progress
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._reader.__exit__(*exc_info)

    async def batches(self) -> AsyncIterator[list[RecordedEvent]]:
        for batch in self._reader.batches():
            yield batch
            await asyncio.sleep(0)  # let the producer's acknowledgements through


class _TopicSource:
    """A topic's event-time range, read from each partition's beginning."""

    def __init__(self, servers: list[str], topic: str, window: TimeRange) -> None:
        self.name = self.topic = topic
        self.end_ms: int | None = window.to_ms
        # The live workers write hand-overs into the topic they read.
        self.handovers_logged = True
        self._scan = TopicScan(servers, topic, window)
        self.progress = self._scan.progress

    async def __aenter__(self) -> "_TopicSource":
        await self._scan.__aenter__()
        self.partitions = self._scan.partitions
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._scan.__aexit__(*exc_info)

    @property
    def unplaceable(self) -> int:
        return self._scan.counts.unplaceable

    async def batches(self) -> AsyncIterator[list[RecordedEvent]]:
        async for batch in self._scan.batches():
            yield [record for record, _ in batch]


RecordedSource = _FileSource | _TopicSource


def recorded_source(
    file: Path | None, topic: str | None, window: TimeRange | None, servers: tuple[str, ...]
) -> RecordedSource:
    """Recorded traffic to read (an async context manager): a file, or a topic's range."""
    if file is not None:
        return _FileSource(file)
    assert topic is not None and window is not None
    return _TopicSource(list(servers), topic, window)


def source_window(
    topic: str | None, from_: datetime | None, to: datetime | None, file: Path | None
) -> TimeRange | None:
    """The event-time range of ``--topic --from --to`` (None for ``--file``); ValueError
    when the options do not name exactly one source."""
    if (from_ is None) != (to is None) or (topic is not None and from_ is None):
        raise ValueError("--topic needs both --from and --to")
    if file is not None and from_ is not None:
        raise ValueError("--from/--to select from a topic; a file replays its whole range")
    if (file is None) == (topic is None):
        raise ValueError("give either --file or --topic with --from/--to")
    return TimeRange(epoch_ms(from_), epoch_ms(to)) if from_ and to else None


def _source(request: ReplayRequest) -> RecordedSource:
    return recorded_source(request.file, request.topic, request.window, request.bootstrap_servers)


async def run_replay(request: ReplayRequest, progress: Progress | None = None) -> ReplaySummary:
    rules = request.rules
    started_at = datetime.now(UTC)
    began = time.monotonic()
    async with _source(request) as source:
        # Dead letters name the original topic, as the live engine's do.
        topics = run_topics(request.run_id, source.topic)
        runner = ReplayRunner(
            rules, source.partitions, topics, source.handovers_logged, request.erasures
        )
        outputs = None
        names: tuple[str, ...] = ()
        if request.write_topics:
            servers = list(request.bootstrap_servers)
            await reset_run_topics(servers, request.run_id, source.partitions)
            outputs = KafkaOutputs(servers)
            names = (topics.nudges, topics.vip, topics.dlq)
        shipper = _Shipper(outputs, {topics.nudges, topics.vip}, topics.dlq)
        if progress is not None:
            progress.fraction = source.progress
        try:
            async for batch in source.batches():
                runner.feed(batch)
                await shipper.add(runner.take_outputs())
                if progress is not None:
                    progress.advance(len(batch))
            end_ms = source.end_ms
            if end_ms is None:
                end_ms = (runner.last_event_ms or 0) + longest_deadline_ms(rules)
            runner.finish(end_ms)
            await shipper.add(runner.take_outputs(), flush=True)
        finally:
            if outputs is not None:
                await outputs.stop()
    summary = ReplaySummary(
        run_id=request.run_id,
        rules_version=rules.version,
        source="file" if request.file is not None else "topic",
        source_name=source.name,
        events=runner.records,
        unplaceable=source.unplaceable,
        erased=runner.processor.skipped_erased,
        watermark_end_ms=end_ms,
        decisions=shipper.decisions,
        dead_letters=shipper.dead_letters,
        orders=len(runner.orders),
        topics=names,
    )
    dispatcher = DryRunDispatcher()
    for decision in summary.decisions:
        dispatcher.dispatch(decision)
    summary.would_send = dispatcher.would_send
    summary.elapsed_s = time.monotonic() - began
    if request.clickhouse_url is not None:
        summary.warehouse_rows = _record(request, summary, runner, started_at)
    return summary


def _record(
    request: ReplayRequest, summary: ReplaySummary, runner: ReplayRunner, started_at: datetime
) -> dict[str, int]:
    nudges = summary.nudges
    window = request.window
    run = RunRecord(
        run_id=request.run_id,
        rules_version=summary.rules_version,
        source=summary.source,
        source_name=summary.source_name,
        range_from_ms=window.from_ms if window else None,
        range_to_ms=window.to_ms if window else None,
        watermark_end_ms=summary.watermark_end_ms,
        events=summary.events,
        dead_letters=summary.dead_letters,
        nudges=sum(n.status == "emit" for n in nudges),
        suppressed=sum(n.status == "suppressed" for n in nudges),
        cancellations=sum(isinstance(d, NudgeCancellation) for d in summary.decisions),
        vip_upgrades=sum(isinstance(d, VipUpgrade) for d in summary.decisions),
        started_at=started_at,
        finished_at=datetime.now(UTC),
    )
    client = warehouse_client(
        request.clickhouse_url,
        request.clickhouse_database,
        timeout_s=BATCH_TIMEOUT_S,
    )
    try:
        delete_run(client, request.run_id)
        return write_run(client, run, summary.decisions, list(runner.orders.values()))
    finally:
        client.close()


@click.command("replay")
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The rule set to try (YAML or TOML), e.g. a copy of the defaults with another version.",
)
@click.option(
    "--run-id",
    required=True,
    help="Names the run: its topics (replay.<id>.*) and warehouse rows. Re-running replaces it.",
)
@click.option("--topic", help="Replay this topic's events of --from/--to (by event time).")
@click.option("--from", "from_", type=ISO_MOMENT, help="Start of the event-time range (--topic).")
@click.option("--to", type=ISO_MOMENT, help="End of the event-time range, exclusive (--topic).")
@click.option(
    "--file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Replay an export (intentflow export) instead of a topic.",
)
@click.option(
    "--no-warehouse",
    is_flag=True,
    help="Do not write warehouse rows (the run's topics still get its decisions).",
)
def replay_command(
    rules_path: Path,
    run_id: str,
    topic: str | None,
    from_: datetime | None,
    to: datetime | None,
    file: Path | None,
    no_warehouse: bool,
) -> None:
    """Replay recorded traffic through a rule set into an isolated namespace.

    The live engine's logic, per partition in the original offset order, with a
    watermark only event time moves; outputs go to replay.<run-id>.* topics and
    to warehouse rows tagged with the run id; nothing is sent to anyone.
    Brokers and warehouse come from INTENTFLOW_* settings.
    """
    settings = WorkerSettings()
    erasures = command_erasures(settings)
    try:
        rules = load_rules(rules_path)
        request = ReplayRequest(
            run_id=run_id,
            rules=rules,
            topic=topic,
            window=source_window(topic, from_, to, file),
            file=file,
            bootstrap_servers=tuple(settings.bootstrap_servers),
            clickhouse_url=None if no_warehouse else settings.clickhouse_url,
            clickhouse_database=settings.clickhouse_database,
            erasures=erasures,
        )
    except (RulesError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    progress = Progress(f"replay {run_id}")
    try:
        summary = asyncio.run(run_replay(request, progress))
    except (RecordFileError, LookupError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        progress.close()
    click.echo("\n".join(summary.lines()), file=sys.stdout)
