"""The consent and phone store in the warehouse (tables of schemas/dispatch_tables.py).

Blocking clickhouse-connect calls; async callers run them in a thread. Phones
are sealed with the user's data key before they leave this module; the data
key exists in the clear only in memory, for one call. Beside each sealed phone
is its keyed hash (``pii.pseudonym``), so an inbound reply is matched to its
user without the number being stored in clear.

A phone changes only through a trusted path: a decision that is not ``trusted``
(a public write key) sets a phone for a user who has none, but a *different*
phone for a user who has one is kept pending in ``phone_changes``
(``phone_change_needs_verification``) and the decision is not applied: the
consent and phone in use stay as they were (docs/dispatch.md).
"""

import os
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from schemas import pii
from schemas.dispatch_tables import (
    CONSENTS,
    OPT_OUTS,
    PHONE_CHANGE_NEEDS_VERIFICATION,
    PHONE_CHANGES,
    PII_KEYS,
    PII_PHONES,
    SERVICE_WINDOWS,
)


@dataclass(frozen=True, slots=True)
class ConsentDecision:
    user_key: str
    channel: str
    granted: bool
    decided_at: datetime
    event_id: str
    phone: str | None = None
    purpose: str = "transactional"
    # Sent with the server key (or by the server itself): may replace a user's phone.
    trusted: bool = False


@dataclass(frozen=True, slots=True)
class StoredPhone:
    phone_ref: str
    masked: str
    # Set when the phone was kept pending instead of applied, with the reason.
    pending: str | None = None


@dataclass(frozen=True, slots=True)
class ConsentWrite:
    """A planned consent write (``PrivacyStore.plan``), stored by ``PrivacyStore.write``."""

    stored: dict[str, StoredPhone]
    inserts: list[tuple[str, list[list], list[str]]]
    # The phone hashes it puts in use, per user key.
    phones: dict[str, set[str]]


def opt_out_event_id(channel: str, provider_event_id: str, user_key: str) -> str:
    """The consent event id of an opt-out: a re-delivered webhook makes the same one."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"opt-out:{channel}:{provider_event_id}:{user_key}"))


def phone_hash(master: pii.MasterKey, phone: str) -> str:
    """The keyed hash stored beside a sealed phone (matches inbound messages to users)."""
    return pii.pseudonym(master, "phone", phone)


_PHONE_CHANGE_COLUMNS = [
    "user_key",
    "channel",
    "purpose",
    "granted",
    "phone_ref",
    "key_id",
    "ciphertext",
    "masked",
    "phone_hash",
    "reason",
    "decided_at",
    "event_id",
    "recorded_at",
]
_PHONE_COLUMNS = [
    "user_key",
    "channel",
    "phone_ref",
    "key_id",
    "ciphertext",
    "masked",
    "phone_hash",
    "decided_at",
]
_CONSENT_COLUMNS = [
    "user_key",
    "channel",
    "purpose",
    "granted",
    "decided_at",
    "event_id",
    "recorded_at",
]

# record's reads in one statement, each row tagged: 'k' a user's earliest data key,
# 'l' a (user id, anonymous id) pair the events link to a checked key, 'p' a phone in
# use under a checked key or a key linked to it (the dispatcher uses the newest phone
# under any of them, so all are checked).
_KEYS = (
    "SELECT 'k', user_key, argMin(key_id, (created_at, key_id)),"
    " argMin(wrapped, (created_at, key_id)), '', ''"
    f" FROM {PII_KEYS} WHERE user_key IN {{keys:Array(String)}} GROUP BY user_key"
)
# The links come from `identity_links`, the pairs of `events` keyed by either id
# (migration 0300): the rows of the checked keys, never a scan of the event history.
LOOKUP = (
    f"{_KEYS} UNION ALL"
    " SELECT DISTINCT 'l', user_id, anonymous_id, '', '', '' FROM identity_links"
    " WHERE user_key IN {checked:Array(String)}"
    " UNION ALL"
    " SELECT 'p', user_key, toString(channel), key_id, ciphertext, phone_hash"
    f" FROM {PII_PHONES} FINAL WHERE user_key IN {{checked:Array(String)}}"
    " OR user_key IN (SELECT if(user_key = user_id, anonymous_id, user_id)"
    " FROM identity_links WHERE user_key IN {checked:Array(String)})"
)
# The definition: the same read with the links taken from `events` itself, which has
# neither id in its key (the statement before migration 0300). The reference of
# tests/integration/test_consent_store.py and benchmarks/consent_lookup.py.
LOOKUP_OVER_EVENTS = (
    f"{_KEYS} UNION ALL"
    " SELECT DISTINCT 'l', user_id, anonymous_id, '', '', '' FROM events"
    " WHERE (user_id IN {checked:Array(String)} OR anonymous_id IN {checked:Array(String)})"
    " AND user_id != '' AND anonymous_id != ''"
    " UNION ALL"
    " SELECT 'p', user_key, toString(channel), key_id, ciphertext, phone_hash"
    f" FROM {PII_PHONES} FINAL WHERE user_key IN {{checked:Array(String)}}"
    " OR user_key IN (SELECT user_id FROM events"
    " WHERE anonymous_id IN {checked:Array(String)} AND user_id != '')"
    " OR user_key IN (SELECT anonymous_id FROM events"
    " WHERE user_id IN {checked:Array(String)} AND anonymous_id != '')"
)

# Every inbound message's users: those whose newest phone on the channel has the hash,
# found through the hash's bloom filter (migration 0310) rather than by reading every
# stored phone. With FINAL that takes the two settings below, set here rather than left
# to a server's defaults; the exact mode also reads the newer rows of the keys the index
# kept, so a phone changed since is not taken for the current one.
USERS_BY_PHONE = (
    f"SELECT user_key FROM {PII_PHONES} FINAL"
    " WHERE channel = {c:String} AND phone_hash = {h:String} ORDER BY user_key"
)
SKIP_INDEXES_WITH_FINAL = {
    "use_skip_indexes_if_final": 1,
    "use_skip_indexes_if_final_exact_mode": 1,
}

# The consent store's inserts of one write go at once (api/privacy/consent.py).
_INSERTS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="privacy-insert")


class PrivacyStore:
    def __init__(self, client: Client, master: pii.MasterKey) -> None:
        self._client = client
        self._master = master

    def _keys_from(
        self, wanted: list[str], rows: Iterable[tuple[str, str, str]]
    ) -> tuple[dict[str, tuple[str, bytes]], list[list]]:
        """The data keys of ``wanted`` from their stored rows (the earliest of each user's),
        new ones made for the rest, with the rows to store them.

        Two first consents racing may both create a key: both are kept, each
        ciphertext records its key id, and the earliest key is used from then on.
        """
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
        return found, new_rows

    def _insert_keys(self, rows: list[list]) -> None:
        self._client.insert(
            PII_KEYS, rows, column_names=["user_key", "key_id", "wrapped", "created_at"]
        )

    def _hashes_from(self, rows: list, subjects: set[str]) -> dict[str, set[str]]:
        wrapped = {}
        if any(not row[4] for row in rows):
            wrapped = {
                (user_key, key_id): pii.from_text(text)
                for user_key, key_id, text in self._client.query(
                    f"SELECT user_key, key_id, wrapped FROM {PII_KEYS}"
                    " WHERE user_key IN {keys:Array(String)}",
                    parameters={"keys": sorted(subjects)},
                ).result_rows
            }
        found: dict[str, set[str]] = {}
        for user_key, channel, key_id, text, hashed in rows:
            if not hashed:
                try:
                    data_key = pii.unwrap_key(self._master, user_key, wrapped[(user_key, key_id)])
                    phone = pii.decrypt_phone(data_key, user_key, channel, pii.from_text(text))
                except (KeyError, pii.PiiError):
                    continue
                hashed = phone_hash(self._master, phone)
            found.setdefault(user_key, set()).add(hashed)
        return found

    def _lookup(
        self, with_phone: list[ConsentDecision]
    ) -> tuple[dict[str, tuple[str, bytes]], list[list], dict[str, set[str]], dict[str, set[str]]]:
        """What ``record`` reads, in one round trip: the data keys of the users given a
        phone (and the rows of the keys to create), the keys linked to each user whose
        phone change is checked (not trusted), and the phones in use under those."""
        wanted = sorted({d.user_key for d in with_phone})
        checked = sorted({d.user_key for d in with_phone if not d.trusted})
        if not wanted:
            return {}, [], {}, {}
        key_rows, links, phone_rows = [], [], []
        for kind, a, b, c, d, e in self._client.query(
            LOOKUP, parameters={"keys": wanted, "checked": checked}
        ).result_rows:
            if kind == "k":
                key_rows.append((a, b, c))
            elif kind == "l":
                links.append((a, b))
            else:
                phone_rows.append((a, b, c, d, e))
        keys, new_keys = self._keys_from(wanted, key_rows)
        related = {key: {key} for key in checked}
        for user_id, anonymous_id in links:
            for key in (user_id, anonymous_id):
                if key in related:
                    related[key] |= {user_id, anonymous_id}
        subjects: set[str] = set().union(*related.values())
        return keys, new_keys, related, self._hashes_from(phone_rows, subjects)

    def record(self, decisions: list[ConsentDecision]) -> dict[str, StoredPhone]:
        """Store consent decisions (phones sealed first); returns each phone's ref by event id.

        A phone offered without trust in place of a user's phone is stored pending, and
        its decision is not applied (the returned ``StoredPhone.pending`` says why)."""
        planned = self.plan(decisions)
        self.write(planned)
        return planned.stored

    def write(self, planned: "ConsentWrite") -> None:
        """Store what ``plan`` decided; returns once all of it is stored."""
        self._insert_all(planned.inserts)

    def plan(
        self, decisions: list[ConsentDecision], unwritten: Mapping[str, set[str]] | None = None
    ) -> "ConsentWrite":
        """Read what the decisions depend on and decide them: the rows to insert and each
        phone's ref. Stores only the data keys it creates (before any phone sealed with
        them). ``unwritten``: phone hashes per user key that writes planned before this one
        put in use and that may not be stored yet; they count as in use."""
        if not decisions:
            return ConsentWrite({}, [], {})
        with_phone = [d for d in decisions if d.phone]
        keys, new_keys, related, in_use = self._lookup(with_phone)
        for user_key, hashes in (unwritten or {}).items():
            in_use.setdefault(user_key, set()).update(hashes)
        if new_keys:
            # Before any phone sealed with them: a phone is never stored unreadable.
            self._insert_keys(new_keys)
        stored: dict[str, StoredPhone] = {}
        phones: dict[str, set[str]] = {}
        phone_rows, pending_rows, pending_ids = [], [], set()
        now = datetime.now(UTC)
        for decision in with_phone:
            assert decision.phone is not None
            key_id, data_key = keys[decision.user_key]
            sealed = pii.encrypt_phone(
                data_key, decision.user_key, decision.channel, decision.phone
            )
            hashed = phone_hash(self._master, decision.phone)
            subjects = related.get(decision.user_key, {decision.user_key})
            known = set().union(*(in_use.get(s, set()) for s in subjects))
            ref = StoredPhone(uuid.UUID(bytes=os.urandom(16)).hex, pii.mask_phone(decision.phone))
            if not decision.trusted and known and hashed not in known:
                if not decision.granted:
                    continue  # a revoke needs no verification; the new phone is not kept
                stored[decision.event_id] = StoredPhone(
                    ref.phone_ref, ref.masked, PHONE_CHANGE_NEEDS_VERIFICATION
                )
                pending_ids.add(decision.event_id)
                pending_rows.append(
                    [
                        decision.user_key,
                        decision.channel,
                        decision.purpose,
                        int(decision.granted),
                        ref.phone_ref,
                        key_id,
                        pii.to_text(sealed),
                        ref.masked,
                        hashed,
                        PHONE_CHANGE_NEEDS_VERIFICATION,
                        decision.decided_at,
                        decision.event_id,
                        now,
                    ]
                )
                continue
            in_use.setdefault(decision.user_key, set()).add(hashed)
            phones.setdefault(decision.user_key, set()).add(hashed)
            stored[decision.event_id] = ref
            phone_rows.append(
                [
                    decision.user_key,
                    decision.channel,
                    ref.phone_ref,
                    key_id,
                    pii.to_text(sealed),
                    ref.masked,
                    hashed,
                    decision.decided_at,
                ]
            )
        inserts = []
        if pending_rows:
            inserts.append((PHONE_CHANGES, pending_rows, _PHONE_CHANGE_COLUMNS))
        if phone_rows:
            inserts.append((PII_PHONES, phone_rows, _PHONE_COLUMNS))
        applied = [d for d in decisions if d.event_id not in pending_ids]
        if applied:
            consent_rows = [
                [d.user_key, d.channel, d.purpose, int(d.granted), d.decided_at, d.event_id, now]
                for d in applied
            ]
            inserts.append((CONSENTS, consent_rows, _CONSENT_COLUMNS))
        return ConsentWrite(stored, inserts, phones)

    def _insert_all(self, inserts: list[tuple[str, list[list], list[str]]]) -> None:
        """One multi-row INSERT per table, all at once (their round trips overlap); returns
        once every one is stored, raises if any failed."""
        # A client with a server session queues its statements (schemas/warehouse.py
        # makes none; some tools' clients have one): then one after the other.
        if len(inserts) <= 1 or self._client.get_client_setting("session_id"):
            for table, rows, columns in inserts:
                self._client.insert(table, rows, column_names=columns)
            return
        futures = [
            _INSERTS.submit(self._client.insert, table, rows, column_names=columns)
            for table, rows, columns in inserts
        ]
        for future in futures:
            future.exception()  # wait for all before raising any
        for future in futures:
            future.result()

    def users_by_phone(self, channel: str, phone: str) -> list[str]:
        """The subjects whose phone in use on ``channel`` is ``phone`` (by its keyed hash)."""
        return [
            user_key
            for (user_key,) in self._client.query(
                USERS_BY_PHONE,
                parameters={"c": channel, "h": phone_hash(self._master, phone)},
                settings=SKIP_INDEXES_WITH_FINAL,
            ).result_rows
        ]

    def opt_out(
        self, channel: str, phone: str, keyword: str, provider_event_id: str, at: datetime
    ) -> list[str]:
        """A STOP reply from ``phone``: marketing consent on ``channel`` revoked at ``at``
        for every subject using that phone there, and the opt-out recorded for the metric.
        Returns the subjects (none when the phone is unknown)."""
        users = self.users_by_phone(channel, phone)
        if not users:
            return []
        self.record(
            [
                ConsentDecision(
                    user_key,
                    channel,
                    False,
                    at,
                    opt_out_event_id(channel, provider_event_id, user_key),
                    purpose="marketing",
                    trusted=True,
                )
                for user_key in users
            ]
        )
        self._client.insert(
            OPT_OUTS,
            [[at, user_key, channel, keyword, provider_event_id] for user_key in users],
            column_names=["at", "user_key", "channel", "keyword", "provider_event_id"],
        )
        return users

    def open_service_windows(self, channel: str, messages: Iterable[tuple[str, datetime]]) -> int:
        """Inbound messages (phone, time) on ``channel``: each opens the 24-hour service
        window of every subject using that phone there. Returns the rows written."""
        rows = [
            [user_key, channel, at]
            for phone, at in messages
            for user_key in self.users_by_phone(channel, phone)
        ]
        if rows:
            self._client.insert(
                SERVICE_WINDOWS, rows, column_names=["user_key", "channel", "last_inbound_at"]
            )
        return len(rows)

    def consents(self, user_key: str) -> list[dict]:
        """The user's current consent per channel and purpose, phones masked (for admins)."""
        rows = self._client.query(
            # '' is a decision recorded before purposes existed: order updates.
            "SELECT c.channel, c.purpose, c.granted, c.decided, p.masked FROM ("
            " SELECT channel, if(purpose = '', 'transactional', purpose) AS purpose,"
            " argMax(granted, decided_at) AS granted, max(decided_at) AS decided"
            f" FROM {CONSENTS} FINAL WHERE user_key = {{k:String}} GROUP BY channel, purpose"
            f") AS c LEFT JOIN (SELECT channel, masked FROM {PII_PHONES} FINAL"
            " WHERE user_key = {k:String}) AS p ON p.channel = c.channel"
            " ORDER BY c.channel, c.purpose",
            parameters={"k": user_key},
        ).result_rows
        return [
            {
                "channel": c,
                "purpose": p,
                "granted": bool(g),
                "decided_at": at,
                "phone": m or None,
            }
            for c, p, g, at, m in rows
        ]
