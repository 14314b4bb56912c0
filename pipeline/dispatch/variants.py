"""The variant bandit's periodic step (schemas/bandit.py): snapshots taken and loaded.

The dispatcher's leader takes, every ``bandit_snapshot_s``, one snapshot per nudge
kind whose template lists variants: the evidence the warehouse holds then, recorded
in force ``bandit_lead_s`` later. Every dispatcher reloads the snapshots on its
control poll (as the channel switches), so each has a snapshot before the first
decision it applies to, and a nudge's variant depends on its decision time and the
recorded snapshots only, never on when a dispatcher happened to load them.
"""

from typing import TYPE_CHECKING, get_args

from pipeline.domain.rules import Rules, WhatsAppTemplate
from schemas.bandit import Snapshot
from schemas.bandit_tables import load_snapshots, take_snapshot
from schemas.messages import NudgeKind

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


def with_variants(rules: Rules) -> dict[str, WhatsAppTemplate]:
    """kind → its template, for the nudge kinds that list variants."""
    templates = rules.dispatch.templates
    return {
        kind: getattr(templates, kind)
        for kind in get_args(NudgeKind)
        if getattr(templates, kind).variants
    }


def take_snapshots(client: "Client", rules: Rules, now_ms: int, lead_ms: int) -> list[Snapshot]:
    return [
        take_snapshot(
            client, kind, [v.name for v in spec.variants], spec.success, now_ms, now_ms + lead_ms
        )
        for kind, spec in with_variants(rules).items()
    ]


def snapshots_in_use(client: "Client", rules: Rules, now_ms: int) -> dict[str, list[Snapshot]]:
    """The snapshots a decision still sendable at ``now_ms`` may have been chosen with:
    those in force since the oldest such decision (its kind's maximum age ago)."""
    kinds = with_variants(rules)
    if not kinds:
        return {}
    oldest_s = max(getattr(rules.dispatch.max_age_s, kind) for kind in kinds)
    loaded = load_snapshots(client, now_ms - oldest_s * 1000)
    return {kind: loaded.get(kind, []) for kind in kinds}
