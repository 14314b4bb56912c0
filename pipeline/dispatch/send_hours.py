"""Send-time optimisation for high-intent nudges: the learned hours, as recorded snapshots.

A rule may hold its high-intent nudges until each shopper's best local hour
(``high_intent.send_time.mode: best_hour``; pipeline/dispatch/policy.py ``aim``). The
hour is learned from the shopper's reads and clicks (pipeline/campaigns/best_hour.py,
the campaigns' learner, over ``LOOKBACK``, in the zone of their profile), but never by
querying the warehouse per nudge: that would make a nudge's hold depend on when a
dispatcher happened to see it. Like the variant bandit's (schemas/bandit_tables.py), the
evidence is a *snapshot*: the dispatcher's leader takes one every
``send_hour_snapshot_s``, recorded in ``send_hour_snapshots`` (migration 0280) in force
``bandit_lead_s`` later; every dispatcher loads the new ones on its control poll, and a
nudge is aimed with the snapshot in force at its **decision time**. A replay recomputes
every aim from the same rows (pipeline/replay/send_times.py).

A snapshot holds each shopper-with-history's best hour under the population prior, and
the population's histogram (its best hour is that of shoppers without history). Only
taken and loaded when a rule enables best-hour sending: otherwise no query at all.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline.campaigns.best_hour import HOURS, LOOKBACK, best_hour, pooled
from pipeline.domain.clock import zone
from pipeline.domain.rules import Rules
from pipeline.warehouse.reading_hours import history_zones, hour_histories
from schemas.bandit import in_force
from schemas.time import from_ms

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

SEND_HOUR_SNAPSHOTS = "send_hour_snapshots"
SNAPSHOT_COLUMNS = ("snapshot_id", "effective_from", "user_key", "hour", "hours")
# The population's row in a snapshot.
POPULATION = ""
LOOKBACK_MS = int(LOOKBACK.total_seconds() * 1000)


@dataclass(frozen=True, slots=True)
class HourSnapshot:
    """Each shopper's learned best local hour, in force from ``effective_from_ms``;
    ``population``: reads and clicks per local hour, pooled (the prior)."""

    snapshot_id: str
    effective_from_ms: int
    hours: Mapping[str, int] = field(default_factory=dict)
    population: tuple[int, ...] = (0,) * HOURS

    @property
    def population_hour(self) -> int | None:
        """The hour of a shopper without history; None when nobody has any."""
        return best_hour((0,) * HOURS, self.population)


def snapshot_id(effective_from_ms: int) -> str:
    return f"send_hour@{effective_from_ms}"


def learned_hour(snapshots: Sequence[HourSnapshot], user_key: str, decided_ms: int) -> int | None:
    """The shopper's best hour under the snapshot in force at the decision time: their own,
    else the population's; None before the first snapshot or without any history."""
    snapshot = in_force(snapshots, decided_ms)
    if snapshot is None:
        return None
    own = snapshot.hours.get(user_key)
    return snapshot.population_hour if own is None else own


def enabled(rules: Rules) -> bool:
    """Whether any rule sends at a best hour (else nothing here runs)."""
    return rules.high_intent.send_time.mode == "best_hour"


# --- the warehouse -------------------------------------------------------------------


def take_snapshot(
    client: "Client", default_timezone: str, taken_ms: int, effective_from_ms: int
) -> HourSnapshot:
    """The hours learned from the reads and clicks the warehouse held at ``taken_ms``,
    recorded as the snapshot in force from ``effective_from_ms``."""
    since = taken_ms - LOOKBACK_MS
    zones = history_zones(client, since, taken_ms)
    histories = hour_histories(
        client, since, taken_ms, lambda user_key: zone(zones.get(user_key), default_timezone)
    )
    population = pooled(histories.values())
    learned = {user_key: best_hour(own, population) for user_key, own in histories.items()}
    snapshot = HourSnapshot(
        snapshot_id(effective_from_ms),
        effective_from_ms,
        {user_key: hour for user_key, hour in learned.items() if hour is not None},
        tuple(population),
    )
    record_snapshot(client, snapshot)
    return snapshot


def record_snapshot(client: "Client", snapshot: HourSnapshot) -> None:
    at = from_ms(snapshot.effective_from_ms)
    head = snapshot.population_hour
    rows = [
        [
            snapshot.snapshot_id,
            at,
            POPULATION,
            -1 if head is None else head,
            list(snapshot.population),
        ]
    ]
    rows += [[snapshot.snapshot_id, at, user, hour, []] for user, hour in snapshot.hours.items()]
    client.insert(SEND_HOUR_SNAPSHOTS, rows, column_names=list(SNAPSHOT_COLUMNS))


# Bound parameter: since_ms. The ids of every snapshot in force from ``since_ms`` on, and
# of the one in force at ``since_ms`` (the latest before it), from their population rows.
HEADS_SQL = f"""
SELECT snapshot_id FROM {SEND_HOUR_SNAPSHOTS} FINAL
WHERE user_key = '' AND (
    effective_from >= fromUnixTimestamp64Milli({{since_ms:Int64}}, 'UTC')
    OR effective_from = (
        SELECT max(effective_from) FROM {SEND_HOUR_SNAPSHOTS}
        WHERE user_key = ''
          AND effective_from < fromUnixTimestamp64Milli({{since_ms:Int64}}, 'UTC')
    )
)
"""
# Bound parameter: ids.
ROWS_SQL = f"""
SELECT snapshot_id, toUnixTimestamp64Milli(effective_from), user_key, hour, hours
FROM {SEND_HOUR_SNAPSHOTS} FINAL
WHERE snapshot_id IN {{ids:Array(String)}}
"""


def load_snapshots(client: "Client", ids: Sequence[str]) -> list[HourSnapshot]:
    """The snapshots named, oldest first."""
    if not ids:
        return []
    found: dict[str, tuple[int, dict[str, int], tuple[int, ...]]] = {}
    rows = client.query(ROWS_SQL, parameters={"ids": list(ids)}).result_rows
    for sid, effective_ms, user_key, hour, hours in rows:
        _, users, _ = found.setdefault(sid, (int(effective_ms), {}, (0,) * HOURS))
        if user_key == POPULATION:
            found[sid] = (int(effective_ms), users, tuple(int(n) for n in hours))
        else:
            users[user_key] = int(hour)
    snapshots = [HourSnapshot(sid, at, users, pop) for sid, (at, users, pop) in found.items()]
    return sorted(snapshots, key=lambda s: s.effective_from_ms)


class Loaded:
    """A dispatcher's snapshots in use: on each poll, only new ones are read (a snapshot
    holds a row per shopper with history), and those no decision still sendable can have
    been aimed with are dropped."""

    def __init__(self) -> None:
        self.by_id: dict[str, HourSnapshot] = {}

    def refresh(self, client: "Client", rules: Rules, now_ms: int) -> list[HourSnapshot]:
        since = now_ms - rules.dispatch.max_age_s.high_intent * 1000
        ids = [
            sid for (sid,) in client.query(HEADS_SQL, parameters={"since_ms": since}).result_rows
        ]
        new = load_snapshots(client, [sid for sid in ids if sid not in self.by_id])
        self.by_id = {sid: self.by_id[sid] for sid in ids if sid in self.by_id}
        self.by_id.update({s.snapshot_id: s for s in new})
        return sorted(self.by_id.values(), key=lambda s: s.effective_from_ms)


def snapshots_between(client: "Client", start_ms: int, end_ms: int) -> list[HourSnapshot]:
    """Every snapshot a decision in [start, end) may have been aimed with."""
    ids = [sid for (sid,) in client.query(HEADS_SQL, parameters={"since_ms": start_ms}).result_rows]
    return [s for s in load_snapshots(client, ids) if s.effective_from_ms < end_ms]
