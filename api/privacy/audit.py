"""The audit log: admin actions written here; message state changes by the dispatcher."""

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from api.auth import Caller
from schemas.dispatch_tables import AUDIT_COLUMNS, AUDIT_LOG

COLUMNS = list(AUDIT_COLUMNS)


def actor_of(caller: Caller) -> str:
    # The key's hash names the operator's (or store backend's) key without holding the secret.
    return f"{caller.scope.value}:{caller.key_hash[:12]}"


def subject_hash(user_key: str) -> str:
    """Names an erased user in the audit log without keeping the user's key."""
    return "erased:" + hashlib.sha256(user_key.encode()).hexdigest()[:16]


async def record_action(
    client: Client,
    caller: Caller,
    action: str,
    *,
    user_key: str = "",
    message_id: str = "",
    channel: str = "",
    detail: str = "",
) -> None:
    row = [
        uuid.uuid4().hex,
        datetime.now(UTC),
        actor_of(caller),
        action,
        user_key,
        message_id,
        channel,
        "",
        detail,
    ]
    await asyncio.to_thread(client.insert, AUDIT_LOG, [row], column_names=COLUMNS)


def read_log(
    client: Client, user_key: str | None, message_id: str | None, limit: int
) -> list[dict[str, Any]]:
    where, params = [], {"limit": limit}
    if user_key:
        where.append("user_key = {user_key:String}")
        params["user_key"] = user_key
    if message_id:
        where.append("message_id = {message_id:String}")
        params["message_id"] = message_id
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    result = client.query(
        f"SELECT {', '.join(COLUMNS)} FROM {AUDIT_LOG} FINAL {clause}"
        " ORDER BY at DESC, entry_id LIMIT {limit:UInt32}",
        parameters=params,
    )
    return [dict(zip(COLUMNS, row, strict=True)) for row in result.result_rows]
