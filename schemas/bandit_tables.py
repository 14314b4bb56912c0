"""The bandit's snapshots in the warehouse: taken from the receipts, recorded, read back.

Shared by the dispatcher (takes them, chooses with them), the replay check
(``intentflow backtest variants``) and the API (``GET /v1/metrics/variants``); the DDL
is ``schemas/migrations/0270`` and ``0271`` (the receipts' ``variant``).

Why a table and not a topic: the dispatcher already reads its operators' switches from
the warehouse on a poll (``CHANNEL_PAUSES_SQL``), the evidence is computed from
warehouse rows (receipts, orders), and a replay of a day, the API and the console read
snapshots by time, which a table answers with one query. The table is append-only
and every snapshot carries the time it is in force from, so "the snapshot a nudge
was chosen with" is a fact of the data, whatever was loaded when.

A snapshot's evidence, per variant of its kind: *sends* are the messages with a
``sent`` receipt carrying the variant; *successes* are those of them with a
``clicked`` receipt (success ``click``) or with an ``order_placed`` event carrying
the message's id as ``utm_message_id`` (success ``conversion``). Only what the
warehouse held before the snapshot was taken counts.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from schemas.bandit import Arm, Snapshot, snapshot_id, variant_at
from schemas.runs import LIVE_RUN
from schemas.time import from_ms

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

BANDIT_SNAPSHOTS = "bandit_snapshots"
SNAPSHOT_COLUMNS = (
    "snapshot_id",
    "kind",
    "effective_from",
    "variant",
    "sends",
    "successes",
    "success",
)
Success = Literal["click", "conversion"]

_SUCCEEDED = {
    "click": """SELECT DISTINCT message_id FROM receipts
      WHERE status = 'clicked' AND at < fromUnixTimestamp64Milli({before_ms:Int64}, 'UTC')""",
    "conversion": """SELECT DISTINCT utm_message_id AS message_id FROM events
      WHERE name = 'order_placed' AND utm_message_id != ''
        AND timestamp < fromUnixTimestamp64Milli({before_ms:Int64}, 'UTC')""",
}

# Bound parameters: kind, before_ms. {succeeded}: one of _SUCCEEDED (written here).
EVIDENCE_SQL = """
SELECT s.chosen AS variant, count() AS sends, countIf(c.message_id != '') AS successes
FROM (
    SELECT message_id, any(variant) AS chosen
    FROM receipts
    WHERE kind = {kind:String} AND status = 'sent' AND variant != ''
      AND at < fromUnixTimestamp64Milli({before_ms:Int64}, 'UTC')
    GROUP BY message_id
) AS s
LEFT JOIN ({succeeded}) AS c ON s.message_id = c.message_id
GROUP BY s.chosen
"""

# Bound parameter: since_ms. Every snapshot in force from ``since_ms`` on, and per kind
# the one in force at ``since_ms`` (the latest before it).
SNAPSHOTS_SQL = f"""
SELECT snapshot_id, kind, toUnixTimestamp64Milli(effective_from), variant, sends, successes
FROM {BANDIT_SNAPSHOTS} FINAL
WHERE snapshot_id IN (
    SELECT snapshot_id FROM {BANDIT_SNAPSHOTS} FINAL
    WHERE effective_from >= fromUnixTimestamp64Milli({{since_ms:Int64}}, 'UTC')
    UNION ALL
    SELECT argMax(snapshot_id, effective_from) FROM {BANDIT_SNAPSHOTS} FINAL
    WHERE effective_from < fromUnixTimestamp64Milli({{since_ms:Int64}}, 'UTC')
    GROUP BY kind
)
ORDER BY kind, effective_from, variant
"""


def take_snapshot(
    client: "Client",
    kind: str,
    variants: Sequence[str],
    success: Success,
    taken_ms: int,
    effective_from_ms: int,
) -> Snapshot:
    """The evidence about ``variants`` (in this order) the warehouse held at ``taken_ms``,
    recorded as the snapshot of ``kind`` in force from ``effective_from_ms``."""
    sql = EVIDENCE_SQL.replace("{succeeded}", _SUCCEEDED[success])
    rows = client.query(sql, parameters={"kind": kind, "before_ms": taken_ms}).result_rows
    counts = {variant: (int(sends), int(won)) for variant, sends, won in rows}
    snapshot = Snapshot(
        snapshot_id(kind, effective_from_ms),
        kind,
        effective_from_ms,
        tuple(Arm(v, *counts.get(v, (0, 0))) for v in variants),
    )
    record_snapshot(client, snapshot, success)
    return snapshot


def record_snapshot(client: "Client", snapshot: Snapshot, success: Success) -> None:
    at = from_ms(snapshot.effective_from_ms)
    rows = [
        [snapshot.snapshot_id, snapshot.kind, at, a.variant, a.sends, a.successes, success]
        for a in snapshot.arms
    ]
    client.insert(BANDIT_SNAPSHOTS, rows, column_names=list(SNAPSHOT_COLUMNS))


def load_snapshots(client: "Client", since_ms: int) -> dict[str, list[Snapshot]]:
    """kind → its snapshots in force from ``since_ms`` on (and the one in force then),
    oldest first."""
    arms: dict[tuple[str, str, int], list[Arm]] = {}
    rows = client.query(SNAPSHOTS_SQL, parameters={"since_ms": since_ms}).result_rows
    for sid, kind, effective_ms, variant, sends, successes in rows:
        arms.setdefault((sid, kind, int(effective_ms)), []).append(
            Arm(variant, int(sends), int(successes))
        )
    by_kind: dict[str, list[Snapshot]] = {}
    for (sid, kind, effective_ms), its_arms in arms.items():
        by_kind.setdefault(kind, []).append(Snapshot(sid, kind, effective_ms, tuple(its_arms)))
    for snapshots in by_kind.values():
        snapshots.sort(key=lambda s: s.effective_from_ms)
    return by_kind


# Bound parameters: run_id, start_ms, end_ms (the decisions' time range). Every nudge
# decided in the range that was sent, with the variant its receipts carry.
SENDS_SQL = """
SELECT n.nudge_id, n.kind, toUnixTimestamp64Milli(n.decided_at), s.chosen
FROM (
    SELECT nudge_id, kind, decided_at FROM nudges FINAL
    WHERE run_id = {run_id:String} AND status = 'emit'
      AND decided_at >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
      AND decided_at < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
) AS n
INNER JOIN (
    SELECT message_id, any(variant) AS chosen FROM receipts
    WHERE status = 'sent' GROUP BY message_id
) AS s ON s.message_id = n.nudge_id
ORDER BY n.decided_at, n.nudge_id
"""


@dataclass(frozen=True, slots=True)
class Mismatch:
    nudge_id: str
    kind: str
    recorded: str  # '' when the send carried no variant
    recomputed: str


@dataclass(frozen=True, slots=True)
class VariantReplay:
    sends: int
    with_variant: int
    mismatches: tuple[Mismatch, ...]


def replay_variants(client: "Client", start_ms: int, end_ms: int) -> VariantReplay:
    """Every live send of a nudge decided in [start, end): its variant recomputed from the
    recorded snapshots and its nudge id, compared with the variant it was sent with."""
    params = {"run_id": LIVE_RUN, "start_ms": start_ms, "end_ms": end_ms}
    sends = client.query(SENDS_SQL, parameters=params).result_rows
    snapshots = load_snapshots(client, start_ms)
    mismatches = []
    for nudge_id, kind, decided_ms, recorded in sends:
        recomputed = variant_at(snapshots.get(kind, []), nudge_id, int(decided_ms)) or ""
        if recomputed != recorded:
            mismatches.append(Mismatch(nudge_id, kind, recorded, recomputed))
    return VariantReplay(len(sends), sum(1 for *_, v in sends if v), tuple(mismatches))
