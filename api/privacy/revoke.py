"""An operator revokes a shopper's consent on one channel for one purpose.

The same two steps as a STOP reply (api/privacy/opt_out.py): the decision reaches
the consent store first, so the dispatcher's next check refuses (and a queued
message is cancelled with ``consent_revoked``); then a ``consent`` event goes to
``telemetry.raw`` so the engine decides no more nudges on that channel. The
action is written to the audit log.
"""

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Literal

from api.auth import Caller
from api.privacy.audit import record_action
from api.privacy.consent import privacy_store
from api.privacy.store import ConsentDecision
from api.resources import Resources
from api.settings import ApiSettings
from schemas.events import parse_event
from schemas.topics import TELEMETRY_RAW

Purpose = Literal["marketing", "transactional"]


class RevokeFailed(Exception):
    """The consent store or the log did not take the revoke; ``stage`` says which."""

    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage


async def revoke_consent(
    resources: Resources,
    settings: ApiSettings,
    caller: Caller,
    user_key: str,
    channel: str,
    purpose: Purpose,
) -> str:
    """Revoke; returns the consent event's id. The store is written before the log."""
    now = datetime.now(UTC)
    event_id = str(uuid.uuid4())
    decision = ConsentDecision(
        user_key, channel, False, now, event_id, purpose=purpose, trusted=True
    )
    store = privacy_store(resources, settings)
    try:
        await asyncio.to_thread(store.record, [decision])
    except Exception:
        raise RevokeFailed("consent store") from None
    event = parse_event(
        {
            "event_id": event_id,
            "name": "consent",
            "timestamp": now.isoformat(),
            "anonymous_id": user_key,
            "properties": {"channel": channel, "granted": False, "purpose": purpose},
        },
        received_at=now,
    )
    try:
        await resources.events.publish(TELEMETRY_RAW.name, [(event.key.encode(), event.to_json())])
    except Exception:
        raise RevokeFailed("event log") from None
    await record_action(
        resources.clickhouse(),
        caller,
        "consent_revoke",
        user_key=user_key,
        channel=channel,
        detail=purpose,
    )
    return event_id
