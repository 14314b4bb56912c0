"""``DELETE /v1/users/{user_id}`` (admin): erase a user everywhere the project keeps data.

The subjects: the user id and the anonymous ids the user claimed first
(api/privacy/erasure.py). First they go on the erasure list (keyed hashes), which
every reader of the raw log honours; then warehouse tables (found by their id
columns, the consent store and its keys included); then the stream stores: an
``erase`` command per subject on the ``control`` topic, keyed like the user's
state, for the engine's and the dispatcher's tables. Answers with who was erased
and why, and each place and how it was made unreadable.
"""

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path

from api.auth import AdminCaller
from api.deps import ClickHouseDep, ResourcesDep, SettingsDep
from api.privacy.audit import record_action, subject_hash
from api.privacy.consent import master_key
from api.privacy.erasure import erase_warehouse
from api.producer import BrokerUnavailable
from api.routing import GuardedRoute
from schemas import pii
from schemas.dispatch_tables import PII_KEYS, PRIVACY_TABLES
from schemas.erasure import ERASED_SUBJECTS
from schemas.time import epoch_ms
from schemas.topics import CONTROL, IDENTITY, TELEMETRY_RAW

router = APIRouter(prefix="/v1/users", tags=["users"], route_class=GuardedRoute)

STREAM_STORES = [
    "engine: user state (RocksDB table and its changelog, tombstoned)",
    "dispatcher: message and user records (RocksDB table and its changelog, tombstoned)",
]


def _places(erased, streams: dict[str, Any]) -> list[dict[str, str]]:
    """Each place that held the subjects' data, and how it was made unreadable."""
    places = [
        {
            "place": f"log: {TELEMETRY_RAW.name} (every reader: engine re-reads, new consumer "
            "groups, intentflow export, intentflow replay of the topic or of any file)",
            "how": f"listed in {ERASED_SUBJECTS} ({erased.listed} keyed hashes): readers drop "
            "the subjects' events received up to the erasure",
        },
        {
            "place": f"log: {IDENTITY.name} (identity claims and hand-overs)",
            "how": f"the engine drops those of subjects listed in {ERASED_SUBJECTS}",
        },
    ]
    for table, rows in sorted(erased.rows.items()):
        how = f"{rows} rows deleted"
        if table == PII_KEYS:
            how += ": wrapped data keys shredded, sealed phones in any copy no longer open"
        places.append({"place": f"warehouse: {table}", "how": how})
    for store in STREAM_STORES:
        how = f"erase command on {CONTROL.name}" if streams["commands"] else "NOT DONE: retry"
        places.append({"place": store, "how": how})
    return places


@router.delete("/{user_id}", summary="Erase a user (right to erasure)")
async def erase_user(
    user_id: Annotated[str, Path(min_length=1, max_length=256)],
    caller: AdminCaller,
    clickhouse: ClickHouseDep,
    resources: ResourcesDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    master = master_key(settings.pii_master_key.get_secret_value())
    # An id that is an e-mail or phone was stored as its token (api/privacy/traits.py).
    user_id = pii.redact_id(master, user_id)
    erased = await asyncio.to_thread(erase_warehouse, clickhouse, user_id, master)
    at_ms = epoch_ms(erased.erased_at) if erased.erased_at else 0
    commands = [
        (
            subject.id.encode(),
            orjson.dumps({"command": "erase", "user_key": subject.id, "at": at_ms}),
        )
        for subject in erased.subjects
    ]
    try:
        await resources.events.publish(CONTROL.name, commands)
        streams = {"topic": CONTROL.name, "commands": len(commands), "stores": STREAM_STORES}
    except BrokerUnavailable:
        streams = {"topic": CONTROL.name, "commands": 0, "error": "event log unavailable; retry"}
    await record_action(
        clickhouse,
        caller,
        "user_erased",
        detail=f"{subject_hash(user_id)} subjects={len(commands)}",
    )
    complete = not erased.errors and not erased.remaining and streams["commands"] == len(commands)
    return {
        "user_id": user_id,
        "complete": complete,
        "subjects": [{"id": s.id, "linked_by": s.linked_by} for s in erased.subjects],
        "not_erased": [{"id": d.id, "reason": d.reason} for d in erased.declined],
        "places": _places(erased, streams),
        "warehouse": {t: n for t, n in erased.rows.items() if t not in PRIVACY_TABLES},
        "privacy_store": {t: erased.rows.get(t, 0) for t in PRIVACY_TABLES},
        "keys_shredded": erased.rows.get(PII_KEYS, 0),
        "errors": erased.errors,
        "remaining": erased.remaining,
        "streams": streams,
    }
