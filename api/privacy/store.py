"""The consent and phone store in the warehouse (tables of schemas/dispatch_tables.py).

Blocking clickhouse-connect calls; async callers run them in a thread. Phones
are sealed with the user's data key before they leave this module; the data
key exists in the clear only in memory, for one call.
"""

import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from schemas import pii
from schemas.dispatch_tables import CONSENTS, PII_KEYS, PII_PHONES


@dataclass(frozen=True, slots=True)
class ConsentDecision:
    user_key: str
    channel: str
    granted: bool
    decided_at: datetime
    event_id: str
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class StoredPhone:
    phone_ref: str
    masked: str


class PrivacyStore:
    def __init__(self, client: Client, master: pii.MasterKey) -> None:
        self._client = client
        self._master = master

    def data_keys(self, user_keys: Iterable[str]) -> dict[str, tuple[str, bytes]]:
        """(key id, data key) per user, creating keys for users without one.

        Two first consents racing may both create a key: both are kept, each
        ciphertext records its key id, and the earliest key is used from then on.
        """
        wanted = sorted(set(user_keys))
        if not wanted:
            return {}
        rows = self._client.query(
            f"SELECT user_key, argMin(key_id, (created_at, key_id)),"
            f" argMin(wrapped, (created_at, key_id)) FROM {PII_KEYS}"
            " WHERE user_key IN {keys:Array(String)} GROUP BY user_key",
            parameters={"keys": wanted},
        ).result_rows
        found = {
            user_key: (key_id, pii.unwrap_key(self._master, user_key, pii.from_text(wrapped)))
            for user_key, key_id, wrapped in rows
        }
        new_rows = []
        now = datetime.now(UTC)
        for user_key in wanted:
            if user_key in found:
                continue
            data_key = pii.new_data_key()
            wrapped = pii.wrap_key(self._master, user_key, data_key)
            key_id = pii.key_id_of(wrapped)
            found[user_key] = (key_id, data_key)
            new_rows.append([user_key, key_id, pii.to_text(wrapped), now])
        if new_rows:
            self._client.insert(
                PII_KEYS, new_rows, column_names=["user_key", "key_id", "wrapped", "created_at"]
            )
        return found

    def record(self, decisions: list[ConsentDecision]) -> dict[str, StoredPhone]:
        """Store consent decisions (phones sealed first); returns each phone's ref by event id."""
        if not decisions:
            return {}
        with_phone = [d for d in decisions if d.phone]
        keys = self.data_keys(d.user_key for d in with_phone)
        stored: dict[str, StoredPhone] = {}
        phone_rows = []
        for decision in with_phone:
            assert decision.phone is not None
            key_id, data_key = keys[decision.user_key]
            sealed = pii.encrypt_phone(
                data_key, decision.user_key, decision.channel, decision.phone
            )
            ref = StoredPhone(uuid.UUID(bytes=os.urandom(16)).hex, pii.mask_phone(decision.phone))
            stored[decision.event_id] = ref
            phone_rows.append(
                [
                    decision.user_key,
                    decision.channel,
                    ref.phone_ref,
                    key_id,
                    pii.to_text(sealed),
                    ref.masked,
                    decision.decided_at,
                ]
            )
        if phone_rows:
            self._client.insert(
                PII_PHONES,
                phone_rows,
                column_names=[
                    "user_key",
                    "channel",
                    "phone_ref",
                    "key_id",
                    "ciphertext",
                    "masked",
                    "decided_at",
                ],
            )
        now = datetime.now(UTC)
        self._client.insert(
            CONSENTS,
            [
                [d.user_key, d.channel, int(d.granted), d.decided_at, d.event_id, now]
                for d in decisions
            ],
            column_names=[
                "user_key",
                "channel",
                "granted",
                "decided_at",
                "event_id",
                "recorded_at",
            ],
        )
        return stored

    def consents(self, user_key: str) -> list[dict]:
        """The user's current consent per channel, phones masked (for admins)."""
        rows = self._client.query(
            f"SELECT c.channel, c.granted, c.decided_at, p.masked FROM {CONSENTS} AS c FINAL"
            f" LEFT JOIN (SELECT channel, masked FROM {PII_PHONES} FINAL"
            " WHERE user_key = {k:String}) AS p ON p.channel = c.channel"
            " WHERE c.user_key = {k:String} ORDER BY c.channel",
            parameters={"k": user_key},
        ).result_rows
        return [
            {"channel": c, "granted": bool(g), "decided_at": at, "phone": m or None}
            for c, g, at, m in rows
        ]
