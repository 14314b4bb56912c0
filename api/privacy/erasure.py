"""Erasure: every warehouse row of a user and of the anonymous ids bound to them, then the streams.

Which anonymous ids go with a user: only those the user *claimed first*. An
anonymous id is bound to the user id of its first ``identify`` (by receipt time at
the collector, then event time, then event id); a later identify pairing it with
another user id is ignored, for erasure as for the engine's hand-over
(pipeline/engine/processor.py). Anyone holding the public write key can send an
identify pairing an id of theirs with someone else's anonymous id; such a pairing
neither merges the victim's state into theirs nor makes erasing them erase the
victim. An anonymous id seen beside the user only in other events is not linked.

Before anything is deleted, every subject goes on the erasure list
(schemas/erasure.py: keyed hashes and the erasure time), which every reader of the
raw log honours. Tables are found by their columns (``user_key``, ``user_id``,
``anonymous_id``) rather than listed, so a table added by a later migration is
erased too. The consent store's rows go with them, the wrapped data keys included:
a sealed phone left in any log can no longer be opened ("crypto-shredding").
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client

from schemas.dispatch_tables import PII_KEYS
from schemas.erasure import ERASED_COLUMNS, ERASED_SUBJECTS, subject_hash
from schemas.pii import MasterKey
from schemas.time import iso_z

ID_COLUMNS = ("user_key", "user_id", "anonymous_id")
# The table of every accepted event: the only record of who claimed an anonymous id.
EVENTS_TABLE = "events"
# Per anonymous id the user was seen with, its first identify's user id and event, the
# time, and how many of its identifies name the user. The ids come from
# `identity_links` (the pairs of `events` by either id, migration 0300), so only the
# identifies are read from `events` (`name` leads its key), not the whole history.
CLAIMS = (
    "SELECT anonymous_id,"
    " argMin(user_id, (received_at, timestamp, event_id)),"
    " argMin(toString(event_id), (received_at, timestamp, event_id)),"
    " min(received_at),"
    " countIf(user_id = {u:String})"
    f" FROM {EVENTS_TABLE}"
    " WHERE name = 'identify' AND user_id != '' AND anonymous_id != ''"
    " AND anonymous_id != {u:String} AND anonymous_id IN"
    " (SELECT anonymous_id FROM identity_links"
    " WHERE user_key = {u:String} AND user_id = {u:String})"
    " GROUP BY anonymous_id ORDER BY anonymous_id"
)


@dataclass(frozen=True, slots=True)
class Subject:
    """One id erased, and why."""

    id: str
    linked_by: str


@dataclass(frozen=True, slots=True)
class Declined:
    """An anonymous id seen with the user but bound to someone else: not erased."""

    id: str
    reason: str


@dataclass(slots=True)
class WarehouseErasure:
    subjects: list[Subject]
    declined: list[Declined] = field(default_factory=list)
    listed: int = 0
    erased_at: datetime | None = None
    rows: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    remaining: dict[str, int] = field(default_factory=dict)


def _tables(client: Client) -> dict[str, list[str]]:
    rows = client.query(
        "SELECT c.table, groupArray(c.name) FROM system.columns AS c"
        " INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table"
        " WHERE c.database = currentDatabase() AND c.name IN {cols:Array(String)}"
        " AND t.engine LIKE '%MergeTree%' GROUP BY c.table ORDER BY c.table",
        parameters={"cols": list(ID_COLUMNS)},
    ).result_rows
    return {table: sorted(columns) for table, columns in rows}


def _condition(columns: list[str]) -> str:
    return " OR ".join(f"{quote_identifier(c)} IN {{subjects:Array(String)}}" for c in columns)


def linked_subjects(
    client: Client, user_id: str, tables: dict[str, list[str]]
) -> tuple[list[Subject], list[Declined]]:
    """The user id, and each anonymous id the user claimed first (its first identify)."""
    subjects = [Subject(user_id, "requested")]
    if EVENTS_TABLE not in tables:
        return subjects, []
    rows = client.query(CLAIMS, parameters={"u": user_id}).result_rows
    declined = []
    for anonymous_id, owner, event_id, first_at, claims in rows:
        if owner == user_id:
            at = iso_z(first_at) if isinstance(first_at, datetime) else str(first_at)
            why = f"anonymous id first claimed by this user: identify {event_id} received {at}"
            subjects.append(Subject(anonymous_id, why))
        elif claims:
            reason = "claimed first by another user id; only this user's own rows with it erased"
            declined.append(Declined(anonymous_id, reason))
    return subjects, declined


def _list_erased(client: Client, master: MasterKey, subjects: list[Subject], at: datetime) -> int:
    # First: from here on no reader of the raw log returns these subjects' events.
    rows = [[subject_hash(master, s.id), at] for s in subjects]
    client.insert(ERASED_SUBJECTS, rows, column_names=list(ERASED_COLUMNS))
    return len(rows)


def erase_warehouse(client: Client, user_id: str, master: MasterKey) -> WarehouseErasure:
    tables = _tables(client)
    result = WarehouseErasure(*linked_subjects(client, user_id, tables))
    result.erased_at = datetime.now(UTC)
    result.listed = _list_erased(client, master, result.subjects, result.erased_at)
    params: dict[str, Any] = {"subjects": [s.id for s in result.subjects]}
    # Keys last: until the rows holding ciphertexts are gone, the keys still exist.
    order = sorted(tables, key=lambda t: (t == PII_KEYS, t))
    for table in order:
        condition = _condition(tables[table])
        name = quote_identifier(table)
        try:
            count = client.query(
                f"SELECT count() FROM {name} WHERE {condition}", parameters=params
            ).result_rows[0][0]
            if count:
                client.command(
                    f"DELETE FROM {name} WHERE {condition}",
                    parameters=params,
                    settings={"mutations_sync": 2},
                )
            result.rows[table] = int(count)
            left = client.query(
                f"SELECT count() FROM {name} WHERE {condition}", parameters=params
            ).result_rows[0][0]
            if left:
                result.remaining[table] = int(left)
        except Exception as exc:
            result.errors[table] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return result
