"""``DELETE /v1/users/{user_id}`` (admin): erase a user everywhere the project keeps data.

Warehouse tables (found by their id columns, the consent store and its keys
included), then the stream stores: an ``erase`` command per subject on the
``control`` topic, keyed like the user's state, for the engine's and the
dispatcher's tables. Answers with what was removed where.
"""

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Path, status

from api.auth import AdminCaller
from api.deps import ClickHouseDep, ResourcesDep
from api.privacy.audit import record_action, subject_hash
from api.privacy.erasure import erase_warehouse
from api.producer import BrokerUnavailable
from api.routing import GuardedRoute
from schemas.dispatch_tables import PII_KEYS, PRIVACY_TABLES
from schemas.topics import CONTROL

router = APIRouter(prefix="/v1/users", tags=["users"], route_class=GuardedRoute)

STREAM_STORES = [
    "engine: user state (RocksDB table and its changelog, tombstoned)",
    "dispatcher: message and user records (RocksDB table and its changelog, tombstoned)",
]


@router.delete("/{user_id}", summary="Erase a user (right to erasure)")
async def erase_user(
    user_id: Annotated[str, Path(min_length=1, max_length=256)],
    caller: AdminCaller,
    clickhouse: ClickHouseDep,
    resources: ResourcesDep,
) -> dict[str, Any]:
    try:
        erased = await asyncio.to_thread(erase_warehouse, clickhouse, user_id)
    except Exception as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"warehouse unavailable: {type(exc).__name__}"
        ) from None
    commands = [
        (subject.encode(), orjson.dumps({"command": "erase", "user_key": subject}))
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
        "subjects": len(erased.subjects),
        "warehouse": {t: n for t, n in erased.rows.items() if t not in PRIVACY_TABLES},
        "privacy_store": {t: erased.rows.get(t, 0) for t in PRIVACY_TABLES},
        "keys_shredded": erased.rows.get(PII_KEYS, 0),
        "errors": erased.errors,
        "remaining": erased.remaining,
        "streams": streams,
    }
