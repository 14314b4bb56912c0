"""The erasure list: which subjects were erased, and when, as keyed hashes.

An event on the raw log is immutable (Kafka has no delete, Tansu no compaction),
so erasure cannot remove a subject's records from it. Instead every reader of
the log drops the records of an erased subject: the engine (a new consumer group,
an offset reset), ``intentflow export`` and ``intentflow replay`` (a topic or a
file). A record belongs to an erased subject when its ``user_id`` or its
``anonymous_id`` was erased at or after the record was received (``received_at``,
set by the collector); later records are a new history (a shopper who comes back).

The list holds HMAC-SHA-256 hashes of the ids under the PII master key: the
warehouse table never names whom it erased, and one cannot test a guessed id
against it without the server secret. Pure: no I/O; the readers load the rows
with ``LOAD_QUERY``.
"""

import hmac
from collections.abc import Iterable
from typing import Any

from schemas.pii import MasterKey
from schemas.time import epoch_ms

ERASED_SUBJECTS = "erased_subjects"
ERASED_COLUMNS = ("subject_hash", "erased_at")
LOAD_QUERY = (
    f"SELECT subject_hash, toUnixTimestamp64Milli(max(erased_at)) FROM {ERASED_SUBJECTS}"
    " GROUP BY subject_hash"
)


def subject_hash(master: MasterKey, subject: str) -> str:
    """The keyed hash of one id, exactly as given (ids are case-sensitive)."""
    return hmac.new(master.kek, b"erased-subject\x1f" + subject.encode(), "sha256").hexdigest()


class ErasureList:
    """Erased subjects' hashes and erasure times (epoch ms); asks whether a record is erased."""

    def __init__(self, master: MasterKey, rows: Iterable[tuple[str, int]] = ()) -> None:
        self._master = master
        self._erased_at: dict[str, int] = {}
        # Ids repeat (a shopper's every event): hash each once.
        self._hashes: dict[str, str] = {}
        for digest, at_ms in rows:
            self.add_hash(digest, int(at_ms))

    def __len__(self) -> int:
        return len(self._erased_at)

    def add_hash(self, digest: str, at_ms: int) -> None:
        self._erased_at[digest] = max(at_ms, self._erased_at.get(digest, at_ms))

    def add(self, subject: str, at_ms: int) -> None:
        self.add_hash(self._hash(subject), at_ms)

    def _hash(self, subject: str) -> str:
        digest = self._hashes.get(subject)
        if digest is None:
            if len(self._hashes) >= 200_000:
                self._hashes.clear()
            digest = self._hashes[subject] = subject_hash(self._master, subject)
        return digest

    def _erased(self, subject: Any, received_ms: int) -> bool:
        if not isinstance(subject, str) or not subject:
            return False
        at = self._erased_at.get(self._hash(subject))
        return at is not None and received_ms <= at

    def covers(self, user_id: Any, anonymous_id: Any, received_ms: int) -> bool:
        """True when the record (received at ``received_ms``) belongs to an erased subject."""
        if not self._erased_at:
            return False
        return self._erased(user_id, received_ms) or self._erased(anonymous_id, received_ms)

    def covers_event(self, event: Any) -> bool:
        """``covers`` for a parsed ``Event``; one without a receipt time counts as old."""
        if not self._erased_at:
            return False
        received = event.received_at
        received_ms = epoch_ms(received) if received is not None else 0
        return self.covers(event.user_id, event.anonymous_id, received_ms)
