"""Message variants (schemas/bandit.py): each variant's evidence, rate and share of nudges.

Read from the bandit's recorded snapshots (schemas/bandit_tables.py, whose SQL is
shared with the dispatcher and the replay check): per nudge kind, the snapshot in
force at ``at_ms``; per variant its sends and successes, the success rate with its
95 % Wilson interval, and the allocation (the share of nudges it gets now).
"""

from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from api.queries.uplift import wilson
from schemas.bandit import allocation, in_force
from schemas.bandit_tables import load_snapshots
from schemas.time import iso_ms


@dataclass(frozen=True, slots=True)
class VariantRow:
    kind: str
    variant: str
    sends: int
    successes: int
    rate: float
    ci_low: float
    ci_high: float
    allocation: float
    snapshot_id: str
    effective_from: str


def variant_rows(client: Client, at_ms: int, kind: str | None = None) -> list[VariantRow]:
    rows = []
    for its_kind, snapshots in sorted(load_snapshots(client, at_ms).items()):
        current = in_force(snapshots, at_ms)
        if current is None or (kind is not None and its_kind != kind):
            continue
        shares = allocation(current)
        for arm in sorted(current.arms, key=lambda a: a.variant):
            low, high = wilson(arm.successes, arm.sends)
            rows.append(
                VariantRow(
                    its_kind,
                    arm.variant,
                    arm.sends,
                    arm.successes,
                    arm.successes / arm.sends if arm.sends else 0.0,
                    low,
                    high,
                    shares[arm.variant],
                    current.snapshot_id,
                    iso_ms(current.effective_from_ms),
                )
            )
    return rows
