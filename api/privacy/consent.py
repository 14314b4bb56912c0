"""The collector's consent step: record every consent decision, seal the phone, strip it.

Runs before anything is produced: the event that reaches ``telemetry.raw``
carries ``phone_ref`` (the stored, encrypted copy) and ``phone_masked`` only,
and the decision is already in the store the dispatcher checks at send time,
so a revoke blocks sending before the event is even on the topic.
"""

import asyncio
import functools

from api.deps import ResourcesDep, SettingsDep
from api.privacy.store import ConsentDecision, PrivacyStore
from schemas import pii
from schemas.events import Event


class ConsentStoreUnavailable(Exception):
    """The consent store could not record the decisions; nothing may be produced."""


@functools.lru_cache(maxsize=4)
def master_key(secret: str) -> pii.MasterKey:
    return pii.MasterKey.from_secret(secret)


def privacy_store(resources: ResourcesDep, settings: SettingsDep) -> PrivacyStore:
    return PrivacyStore(
        resources.clickhouse(), master_key(settings.pii_master_key.get_secret_value())
    )


def _decision(event: Event) -> ConsentDecision:
    props = event.properties
    return ConsentDecision(
        user_key=event.key,
        channel=props["channel"],
        granted=props["granted"] is True,
        decided_at=event.timestamp,
        event_id=str(event.event_id),
        phone=props.get("phone"),
    )


def _without_phone(event: Event, stored) -> Event:
    # Whatever the client sent under these names is not trusted either.
    props = {
        k: v for k, v in event.properties.items() if k not in ("phone", "phone_ref", "phone_masked")
    }
    if stored is not None:
        props["phone_ref"] = stored.phone_ref
        props["phone_masked"] = stored.masked
    return event.model_copy(update={"properties": props})


async def protect_consents(
    events: list[Event], resources: ResourcesDep, settings: SettingsDep
) -> list[Event]:
    """The events to produce: consents recorded and their phones replaced by a reference."""
    consents = [event for event in events if event.name == "consent"]
    if not consents:
        return events
    store = privacy_store(resources, settings)
    try:
        stored = await asyncio.to_thread(store.record, [_decision(e) for e in consents])
    except Exception as exc:
        raise ConsentStoreUnavailable(type(exc).__name__) from exc
    return [
        _without_phone(event, stored.get(str(event.event_id))) if event.name == "consent" else event
        for event in events
    ]
