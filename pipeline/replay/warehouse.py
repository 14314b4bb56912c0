"""A replay run's rows in the warehouse, tagged with its run id (never 'live').

Decisions become rows through the sink's own row functions (pipeline/sink/rows.py),
so a backtest's rows are exactly what the live sink writes for the same decisions.
Re-running a run id deletes its rows first.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from clickhouse_connect.driver.client import Client

from pipeline.replay.namespace import check_run_id
from pipeline.replay.runner import RecordedOrder
from pipeline.sink.rows import (
    NUDGE_CANCELLATIONS,
    NUDGE_HOLDS,
    NUDGES,
    VIP_UPGRADES,
    Table,
    cancellation_row,
    hold_row,
    ms,
    nudge_row,
    vip_row,
)
from schemas.messages import Nudge, NudgeCancellation, NudgeHeld, VipUpgrade

REPLAY_RUNS = Table(
    "replay_runs",
    (
        "run_id",
        "rules_version",
        "source",
        "source_name",
        "range_from",
        "range_to",
        "watermark_end",
        "events",
        "dead_letters",
        "nudges",
        "suppressed",
        "cancellations",
        "vip_upgrades",
        "started_at",
        "finished_at",
    ),
)
REPLAY_ORDERS = Table("replay_orders", ("run_id", "order_id", "user_key", "ordered_at", "total"))
RUN_TABLES = (NUDGES, NUDGE_CANCELLATIONS, NUDGE_HOLDS, VIP_UPGRADES, REPLAY_ORDERS, REPLAY_RUNS)
_INSERT_CHUNK = 50_000


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    rules_version: str
    source: str
    source_name: str
    range_from_ms: int | None
    range_to_ms: int | None
    watermark_end_ms: int
    events: int
    dead_letters: int
    nudges: int
    suppressed: int
    cancellations: int
    vip_upgrades: int
    started_at: datetime
    finished_at: datetime


def delete_run(client: Client, run_id: str) -> None:
    """Remove every row of the run (a re-run replaces its results)."""
    check_run_id(run_id)
    for table in RUN_TABLES:
        # Synchronous, so the run's new rows are never deleted by a late mutation.
        client.command(
            f"ALTER TABLE {table.name} DELETE WHERE run_id = {{run:String}}",
            parameters={"run": run_id},
            settings={"mutations_sync": 2},
        )


def _insert(client: Client, table: Table, rows: Sequence[tuple], attempt: str) -> None:
    for start in range(0, len(rows), _INSERT_CHUNK):
        chunk = rows[start : start + _INSERT_CHUNK]
        # A re-run inserts the very blocks its first run did, which the tables' block
        # dedup would drop once delete_run removed the originals: a token per attempt.
        client.insert(
            table.name,
            list(chunk),
            column_names=list(table.columns),
            settings={"insert_deduplication_token": f"{attempt}:{table.name}:{start}"},
        )


def write_run(
    client: Client,
    run: RunRecord,
    decisions: Sequence[Nudge | NudgeHeld | NudgeCancellation | VipUpgrade],
    orders: Sequence[RecordedOrder],
) -> dict[str, int]:
    """Insert the run's decisions, orders and run row; returns rows written per table."""
    run_id = check_run_id(run.run_id)
    by_table: dict[Table, list[tuple]] = {
        NUDGES: [],
        NUDGE_CANCELLATIONS: [],
        NUDGE_HOLDS: [],
        VIP_UPGRADES: [],
    }
    for decision in decisions:
        if isinstance(decision, Nudge):
            by_table[NUDGES].append(nudge_row(decision, run_id))
        elif isinstance(decision, NudgeCancellation):
            by_table[NUDGE_CANCELLATIONS].append(cancellation_row(decision, run_id))
        elif isinstance(decision, NudgeHeld):
            by_table[NUDGE_HOLDS].append(hold_row(decision, run_id))
        else:
            by_table[VIP_UPGRADES].append(vip_row(decision, run_id))
    by_table[REPLAY_ORDERS] = [
        (run_id, o.order_id, o.user_key, o.ordered_ms, o.total) for o in orders
    ]
    attempt = f"replay:{run_id}:{ms(run.started_at)}"
    for table, rows in by_table.items():
        _insert(client, table, rows, attempt)
    _insert(client, REPLAY_RUNS, [_run_row(run)], attempt)
    return {table.name: len(rows) for table, rows in by_table.items()}


def _run_row(run: RunRecord) -> tuple:
    return (
        run.run_id,
        run.rules_version,
        run.source,
        run.source_name,
        run.range_from_ms,
        run.range_to_ms,
        run.watermark_end_ms,
        run.events,
        run.dead_letters,
        run.nudges,
        run.suppressed,
        run.cancellations,
        run.vip_upgrades,
        ms(run.started_at),
        ms(run.finished_at),
    )
