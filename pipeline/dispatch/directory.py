"""The dispatcher's read side of the consent store: who may be messaged where, and the phone.

Read fresh for every batch (consent is checked at send time); phones stay
sealed until the moment of sending. Consent given before login sits under the
anonymous id: a user's decision per channel and purpose is the newest under any of
their keys. Every kind the dispatcher sends (cart rescue, high intent, VIP upgrade,
campaign) is marketing, so ``Contact.consented`` holds the channels consented *for
marketing*; consent to order updates alone (transactional) is not enough.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from schemas import pii
from schemas.dispatch_tables import (
    CHANNEL_PAUSES_SQL,
    CONSENTS,
    PII_KEYS,
    PII_PHONES,
    SERVICE_WINDOWS,
)
from schemas.time import epoch_ms

SERVICE_WINDOW_MS = 24 * 3_600_000


@dataclass(frozen=True, slots=True)
class SealedPhone:
    subject: str
    channel: str
    sealed: bytes
    # The user's data key, still wrapped by the master key.
    wrapped_key: bytes


@dataclass(slots=True)
class Contact:
    # Channels with marketing consent and a phone: what the dispatcher may use.
    consented: set[str] = field(default_factory=set)
    # Channels with transactional consent (order updates) and a phone.
    transactional: set[str] = field(default_factory=set)
    phones: dict[str, SealedPhone] = field(default_factory=dict)
    # channel → when the shopper last wrote to us there (epoch ms): the 24-hour
    # customer-service window in which WhatsApp takes a free-form message.
    last_inbound_ms: dict[str, int] = field(default_factory=dict)

    def window_open(self, channel: str, now_ms: int) -> bool:
        last = self.last_inbound_ms.get(channel)
        return last is not None and now_ms - last < SERVICE_WINDOW_MS


class Directory:
    def __init__(self, client: Client, master: pii.MasterKey) -> None:
        self._client = client
        self._master = master

    def contacts(self, subjects: dict[str, list[str]]) -> dict[str, Contact]:
        """user key → what may be used, for users given with all their subject keys.

        Four queries per batch whatever its size; nothing is cached between
        batches, so a revoke or an erasure counts from the next batch on.
        """
        every = sorted({s for keys in subjects.values() for s in keys})
        if not every:
            return {}
        params = {"keys": every}
        decisions: dict[tuple[str, str, str], tuple[datetime, bool]] = {}
        for subject, channel, purpose, granted, decided_at in self._client.query(
            f"SELECT user_key, channel, purpose, granted, decided_at FROM {CONSENTS} FINAL"
            " WHERE user_key IN {keys:Array(String)}",
            parameters=params,
        ).result_rows:
            # '' is a decision recorded before purposes existed: order updates.
            key = (subject, channel, purpose or "transactional")
            if key not in decisions or decided_at > decisions[key][0]:
                decisions[key] = (decided_at, bool(granted))
        wrapped_keys = {
            (subject, key_id): pii.from_text(wrapped)
            for subject, key_id, wrapped in self._client.query(
                f"SELECT user_key, key_id, wrapped FROM {PII_KEYS}"
                " WHERE user_key IN {keys:Array(String)}",
                parameters=params,
            ).result_rows
        }
        phones: dict[tuple[str, str], tuple[datetime, SealedPhone]] = {}
        for subject, channel, key_id, text, decided_at in self._client.query(
            f"SELECT user_key, channel, key_id, ciphertext, decided_at FROM {PII_PHONES} FINAL"
            " WHERE user_key IN {keys:Array(String)}",
            parameters=params,
        ).result_rows:
            wrapped = wrapped_keys.get((subject, key_id))
            if wrapped is None:
                continue  # key shredded: the phone is unreadable, as intended
            phones[(subject, channel)] = (
                decided_at,
                SealedPhone(subject, channel, pii.from_text(text), wrapped),
            )
        inbound: dict[tuple[str, str], int] = {}
        for subject, channel, last in self._client.query(
            f"SELECT user_key, channel, max(last_inbound_at) FROM {SERVICE_WINDOWS}"
            " WHERE user_key IN {keys:Array(String)} GROUP BY user_key, channel",
            parameters=params,
        ).result_rows:
            # The column is UTC; clickhouse-connect may hand it back naive.
            inbound[(subject, channel)] = epoch_ms(
                last if last.tzinfo else last.replace(tzinfo=UTC)
            )
        out: dict[str, Contact] = {}
        for user_key, keys in subjects.items():
            contact = Contact()
            for channel in ("whatsapp", "sms"):
                times = [inbound[(s, channel)] for s in keys if (s, channel) in inbound]
                if times:
                    contact.last_inbound_ms[channel] = max(times)
            for channel in ("whatsapp", "sms"):
                phone = max(
                    (phones[(s, channel)] for s in keys if (s, channel) in phones),
                    default=None,
                    key=lambda p: p[0],
                )
                if phone is None:
                    continue
                contact.phones[channel] = phone[1]
                for purpose, consented in (
                    ("marketing", contact.consented),
                    ("transactional", contact.transactional),
                ):
                    newest = max(
                        (
                            decisions[(s, channel, purpose)]
                            for s in keys
                            if (s, channel, purpose) in decisions
                        ),
                        default=None,
                        key=lambda d: d[0],
                    )
                    if newest is not None and newest[1]:
                        consented.add(channel)
            out[user_key] = contact
        return out

    def phone(self, sealed: SealedPhone) -> str:
        """The phone in clear, for the provider call only; raises ``pii.PiiError``."""
        data_key = pii.unwrap_key(self._master, sealed.subject, sealed.wrapped_key)
        return pii.decrypt_phone(data_key, sealed.subject, sealed.channel, sealed.sealed)

    def paused_channels(self) -> frozenset[str]:
        rows = self._client.query(CHANNEL_PAUSES_SQL).result_rows
        return frozenset(channel for channel, paused in rows if paused)
