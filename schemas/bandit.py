"""Message variants that learn: batched Thompson sampling over recorded snapshots. Pure.

A nudge kind's template may list variants (``dispatch.templates.<kind>.variants`` in
the rules). The evidence about them is a *snapshot*: per variant, the messages sent
and those that succeeded (a click, or an order: the kind's ``success`` setting), as
the warehouse held them when the snapshot was taken, and the time from which it is in
force (``effective_from_ms``). Snapshots are recorded (schemas/bandit_tables.py), so
they are data like the nudges: the dispatcher chooses a nudge's variant with the
latest snapshot of its kind in force at the nudge's *decision time*, and a replay of
a day recomputes every choice from the same snapshots and nudge ids.

``choose`` is one Thompson draw: a Beta(1 + successes, 1 + failures) sample per
variant, the largest wins. Its randomness is seeded by a stable hash of the snapshot
id and the nudge id only (never Python's ``hash()``, never the clock), so the same
nudge under the same snapshot gets the same variant, in any process, at any time.
``allocation`` is each variant's probability of being the best under the snapshot's
posteriors (the share of nudges it gets), by a Monte Carlo with a fixed seed.
"""

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

# Draws of the allocation's Monte Carlo: its figures are within about ±0.01.
ALLOCATION_DRAWS = 4000


@dataclass(frozen=True, slots=True)
class Arm:
    """One variant's evidence: messages sent with it, and those that succeeded."""

    variant: str
    sends: int
    successes: int

    def __post_init__(self) -> None:
        if not 0 <= self.successes <= self.sends:
            raise ValueError(f"{self.variant}: successes must be within 0..sends")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The evidence of one nudge kind's variants, in force from ``effective_from_ms``."""

    snapshot_id: str
    kind: str
    effective_from_ms: int
    arms: tuple[Arm, ...]

    def __post_init__(self) -> None:
        if not self.arms:
            raise ValueError("a snapshot has at least one variant")


def snapshot_id(kind: str, effective_from_ms: int) -> str:
    """A snapshot's id: its kind and the time it is in force from (one per kind and time)."""
    return f"{kind}@{effective_from_ms}"


def _rng(*parts: str) -> random.Random:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def _draw(rng: random.Random, arms: Sequence[Arm]) -> int:
    samples = [rng.betavariate(1 + a.successes, 1 + a.sends - a.successes) for a in arms]
    return max(range(len(arms)), key=samples.__getitem__)


def _arms(snapshot: Snapshot) -> list[Arm]:
    """The arms in variant-name order: a choice never depends on how rows were listed."""
    return sorted(snapshot.arms, key=lambda arm: arm.variant)


def choose(snapshot: Snapshot, nudge_id: str) -> str:
    """The variant a nudge gets under ``snapshot``: one Thompson draw seeded by both ids."""
    arms = _arms(snapshot)
    return arms[_draw(_rng(snapshot.snapshot_id, nudge_id), arms)].variant


def allocation(snapshot: Snapshot, draws: int = ALLOCATION_DRAWS) -> dict[str, float]:
    """Each variant's probability of being the best: the share of nudges it gets."""
    arms = _arms(snapshot)
    rng = _rng("allocation", snapshot.snapshot_id)
    wins = [0] * len(arms)
    for _ in range(draws):
        wins[_draw(rng, arms)] += 1
    return {arm.variant: won / draws for arm, won in zip(arms, wins, strict=True)}


class Recorded(Protocol):
    """Anything recorded in force from a time: the bandit's snapshots, and the dispatcher's
    send-hour snapshots (pipeline/dispatch/send_hours.py)."""

    @property
    def effective_from_ms(self) -> int: ...


R = TypeVar("R", bound=Recorded)


def in_force(snapshots: Sequence[R], at_ms: int) -> R | None:
    """The latest snapshot with ``effective_from_ms <= at_ms`` (None before the first)."""
    best: R | None = None
    for snapshot in snapshots:
        if snapshot.effective_from_ms <= at_ms and (
            best is None or snapshot.effective_from_ms > best.effective_from_ms
        ):
            best = snapshot
    return best


def variant_at(snapshots: Sequence[Snapshot], nudge_id: str, decided_ms: int) -> str | None:
    """A nudge's variant: chosen with the snapshot in force at its decision time (None
    before its kind's first snapshot: the kind's own message is sent)."""
    snapshot = in_force(snapshots, decided_ms)
    return None if snapshot is None else choose(snapshot, nudge_id)
