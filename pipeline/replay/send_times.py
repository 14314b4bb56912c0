"""``intentflow backtest send-times --from --to``: live's best-hour aims recomputed.

Every live nudge decided in the range that the dispatcher handled: its send-time arm
and hour (pipeline/dispatch/send_hours.py) recomputed by ``policy.aim`` from the
recorded snapshots, the nudge (id, shopper, decision time, zone) and the rules live ran
with, compared with those its receipts carry; as ``backtest variants`` does for the
message variants. None is expected to differ.
"""

import sys
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import click

from pipeline.dispatch import policy
from pipeline.dispatch.send_hours import snapshots_between
from pipeline.domain.rules import Rules, rules_from
from pipeline.replay.options import ISO_MOMENT
from schemas.messages import FORCED_RULES_VERSION
from schemas.runs import LIVE_RUN
from schemas.settings import CommonSettings
from schemas.time import epoch_ms, iso_z
from schemas.warehouse import warehouse_of

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

# --- the replay ----------------------------------------------------------------------

# Bound parameters: run_id, kinds, start_ms, end_ms (the decisions' time range). Every
# emitted nudge of the kinds decided in the range with a dispatcher receipt, and the arm
# and hour its receipts carry ('' and -1: none).
SENDS_SQL = """
SELECT n.nudge_id, n.kind, n.user_key, toUnixTimestamp64Milli(n.decided_at), n.timezone,
       n.rules_version, s.arm, s.hour
FROM (
    SELECT nudge_id, kind, user_key, decided_at, timezone, rules_version FROM nudges FINAL
    WHERE run_id = {run_id:String} AND status = 'emit' AND kind IN {kinds:Array(String)}
      AND decided_at >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
      AND decided_at < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
) AS n
INNER JOIN (
    SELECT message_id, max(send_arm) AS arm, max(send_hour) AS hour FROM receipts
    WHERE status IN ('held', 'sent', 'expired', 'suppressed', 'cancelled')
    GROUP BY message_id
) AS s ON s.message_id = n.nudge_id
ORDER BY n.decided_at, n.nudge_id
"""


@dataclass(frozen=True, slots=True)
class Mismatch:
    nudge_id: str
    recorded: tuple[str, int]  # arm ('' outside the experiment), hour (-1: as decided)
    recomputed: tuple[str, int]


@dataclass(frozen=True, slots=True)
class SendTimeReplay:
    nudges: int
    aimed: int  # held for a best or random hour
    mismatches: tuple[Mismatch, ...]


def replay_send_times(client: "Client", rules: Rules, start_ms: int, end_ms: int) -> SendTimeReplay:
    """Every live nudge decided in [start, end) that the dispatcher handled: its arm and
    hour recomputed (``policy.aim``) from the recorded snapshots, the nudge and ``rules``
    (the rules live ran with), compared with those its receipts carry."""
    send_rules = policy.SendRules.of(rules)
    kinds = sorted(send_rules.best_hour) or ["high_intent"]
    params = {"run_id": LIVE_RUN, "kinds": kinds, "start_ms": start_ms, "end_ms": end_ms}
    rows = client.query(SENDS_SQL, parameters=params).result_rows
    snapshots = snapshots_between(client, start_ms, end_ms) if send_rules.best_hour else []
    mismatches, aimed = [], 0
    for nudge_id, kind, user_key, decided_ms, zone_name, version, arm, hour in rows:
        got = policy.aim(
            send_rules,
            kind,
            nudge_id,
            user_key,
            int(decided_ms),
            zone_name or None,
            snapshots,
            forced=version == FORCED_RULES_VERSION,
        )
        recomputed = ("", -1) if got is None else (got.arm, -1 if got.hour is None else got.hour)
        aimed += int(hour) != -1
        if recomputed != (arm, int(hour)):
            mismatches.append(Mismatch(nudge_id, (arm, int(hour)), recomputed))
    return SendTimeReplay(len(rows), aimed, tuple(mismatches))


@click.command("send-times")
@click.option("--from", "from_", type=ISO_MOMENT, required=True, help="Start of the decisions.")
@click.option("--to", type=ISO_MOMENT, required=True, help="End of the decisions (exclusive).")
def send_times_command(from_: datetime, to: datetime) -> None:
    """Recompute the send-time arm and hour of every live nudge decided in the range from
    the recorded send-hour snapshots, the nudges and the rules (INTENTFLOW_RULES), and
    list those whose receipts say otherwise. Exits 1 when one does (none is expected)."""
    settings = CommonSettings()
    client = warehouse_of(settings)
    try:
        replay = replay_send_times(
            client, rules_from(settings.rules), epoch_ms(from_), epoch_ms(to)
        )
    finally:
        client.close()
    click.echo(
        f"{replay.nudges} nudges from {iso_z(from_)} to {iso_z(to)}, "
        f"{replay.aimed} aimed at an hour, {len(replay.mismatches)} mismatches"
    )
    for m in replay.mismatches:
        click.echo(f"  {m.nudge_id}: recorded {m.recorded}, replay {m.recomputed}")
    if replay.mismatches:
        sys.exit(1)
