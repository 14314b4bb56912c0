"""A shopper's reply through a provider: STOP / UNSUBSCRIBE revokes marketing consent.

The sender's phone is matched to its users by the keyed hash stored beside each
sealed phone (``PrivacyStore.users_by_phone``); nothing is stored in clear. The
revoke reaches the consent store first (so the dispatcher's next batch or tick
sees it: a queued message is cancelled with ``consent_revoked``), then a
``consent`` event (marketing, revoked) goes to ``telemetry.raw`` so the engine
decides no more nudges (``no_consent``). Each opt-out is a row of ``opt_outs``
(the metric). Replies that are not a STOP word are acknowledged and ignored.

Every inbound message, STOP or not, opens that user's 24-hour customer-service window
on the channel (a ``service_windows`` row): WhatsApp then takes free-form messages.
"""

import asyncio
import logging
from datetime import UTC, datetime

from api.deps import ResourcesDep, SettingsDep
from api.privacy.consent import privacy_store
from api.privacy.store import opt_out_event_id
from schemas.events import parse_event
from schemas.inbound import InboundMessage, stop_keyword
from schemas.topics import TELEMETRY_RAW

log = logging.getLogger(__name__)


async def handle_replies(
    channel: str, messages: list[InboundMessage], resources: ResourcesDep, settings: SettingsDep
) -> int:
    """Open the service window of every sender's users, then apply the STOP replies among
    ``messages``; returns how many users opted out."""
    if not messages:
        return 0
    store = privacy_store(resources, settings)
    # Any message, a STOP included, opens the 24-hour customer-service window.
    await asyncio.to_thread(
        store.open_service_windows, channel, [(m.phone, m.at) for m in messages]
    )
    stops = [(m, word) for m in messages if (word := stop_keyword(m.text)) is not None]
    if not stops:
        return 0
    now = datetime.now(UTC)
    events = []
    for message, word in stops:
        # Decided at reception: the reply is the shopper's newest word on this channel.
        users = await asyncio.to_thread(
            store.opt_out, channel, message.phone, word, message.provider_event_id, now
        )
        for user_key in users:
            event = parse_event(
                {
                    "event_id": opt_out_event_id(channel, message.provider_event_id, user_key),
                    "name": "consent",
                    "timestamp": now.isoformat(),
                    "anonymous_id": user_key,
                    "properties": {"channel": channel, "granted": False, "purpose": "marketing"},
                },
                received_at=now,
            )
            events.append((event.key.encode(), event.to_json()))
    if events:
        await resources.events.publish(TELEMETRY_RAW.name, events)
    log.info("%s: %d opt-out repl(ies), %d user(s)", channel, len(stops), len(events))
    return len(events)
