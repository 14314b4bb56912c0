"""``intentflow backtest compare RUN_A RUN_B``: two runs' decisions side by side;
``intentflow backtest variants --from --to``: live's message variants recomputed;
``intentflow backtest send-times --from --to``: live's best-hour aims (send_times.py).

The queries and the report are schemas/backtests.py's (the API serves the same);
this module runs them on the warehouse and prints the result.
"""

import sys
from datetime import datetime

import click

from pipeline.replay.options import ISO_MOMENT
from pipeline.replay.send_times import send_times_command
from schemas.backtests import (
    BacktestComparison,
    OnlyIn,
    RunTotals,
    UnknownRun,
    compare_in_warehouse,
)
from schemas.bandit_tables import replay_variants
from schemas.settings import CommonSettings
from schemas.time import epoch_ms, iso_z
from schemas.warehouse import warehouse_of


def _totals_lines(totals: RunTotals) -> list[str]:
    kinds = ", ".join(f"{k} {n:,}" for k, n in totals.nudges_by_kind.items()) or "none"
    reasons = ", ".join(f"{r} {n:,}" for r, n in totals.suppressions_by_reason.items()) or "none"
    converted = (
        "no orders known" if totals.converted_users is None else f"{totals.converted_users:,}"
    )
    return [
        f"run {totals.run_id} (rules {', '.join(totals.rules_versions) or '-'}): "
        f"{totals.decisions:,} decisions",
        f"  nudges by kind: {kinds}",
        f"  users nudged: {totals.users_nudged:,}; converted after a nudge: {converted}",
        f"  suppressed by reason: {reasons}",
    ]


def _only_in_lines(label: str, items: list[OnlyIn], nudges: int, users: int) -> list[str]:
    lines = [f"nudged only by {label}: {users:,} users, {nudges:,} nudges"]
    lines += [
        f"  {item.nudge_id} {item.user_key} {item.kind} at {item.decided_at:%Y-%m-%d %H:%M:%S}"
        f" — other run: {item.reason}"
        for item in items[:20]
    ]
    if len(items) > 20:
        lines.append(f"  … {len(items) - 20:,} more (--json lists them all)")
    return lines


def report_lines(report: BacktestComparison) -> list[str]:
    return [
        *_totals_lines(report.a),
        *_totals_lines(report.b),
        *_only_in_lines(
            report.a.run_id, report.only_in_a, report.only_in_a_nudges, report.only_in_a_users
        ),
        *_only_in_lines(
            report.b.run_id, report.only_in_b, report.only_in_b_nudges, report.only_in_b_users
        ),
    ]


@click.group("backtest")
def backtest_group() -> None:
    """Backtests: compare replay runs with each other or with live ('live'); how well
    intent predicts purchases; weights fitted to them."""


@click.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the API's answer).")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=100_000,
    show_default=True,
    help="At most this many nudges listed per side (totals always count all).",
)
def compare_command(run_a: str, run_b: str, as_json: bool, limit: int) -> None:
    """Compare two runs' decisions: by kind, users nudged, suppressions, conversions.

    Lists the nudges of users nudged by one run and not the other, with why the
    other run did not. RUN_A or RUN_B may be 'live'. The warehouse comes from
    INTENTFLOW_CLICKHOUSE_URL and INTENTFLOW_CLICKHOUSE_DATABASE.
    """
    settings = CommonSettings()
    client = warehouse_of(settings)
    try:
        report = compare_in_warehouse(client, run_a, run_b, limit)
    except UnknownRun as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        client.close()
    if as_json:
        click.echo(report.model_dump_json(), file=sys.stdout)
    else:
        click.echo("\n".join(report_lines(report)), file=sys.stdout)


@click.command("variants")
@click.option("--from", "from_", type=ISO_MOMENT, required=True, help="Start of the decisions.")
@click.option("--to", type=ISO_MOMENT, required=True, help="End of the decisions (exclusive).")
def variants_command(from_: datetime, to: datetime) -> None:
    """Recompute the message variant of every live send of a nudge decided in the range,
    from the recorded bandit snapshots and the nudge ids, and list the sends whose
    recorded variant differs. Exits 1 when one does (none is expected)."""
    settings = CommonSettings()
    client = warehouse_of(settings)
    try:
        replay = replay_variants(client, epoch_ms(from_), epoch_ms(to))
    finally:
        client.close()
    click.echo(
        f"{replay.sends} sends from {iso_z(from_)} to {iso_z(to)}, "
        f"{replay.with_variant} with a variant, {len(replay.mismatches)} mismatches"
    )
    for m in replay.mismatches:
        click.echo(
            f"  {m.kind} {m.nudge_id}: sent {m.recorded or '-'}, replay {m.recomputed or '-'}"
        )
    if replay.mismatches:
        sys.exit(1)


backtest_group.add_command(compare_command)
backtest_group.add_command(variants_command)
backtest_group.add_command(send_times_command)
