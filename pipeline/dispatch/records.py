"""What the dispatcher keeps per message and per user, and their byte form.

One Faust table holds both, keyed ``m:<message id>`` and ``u:<user key>``, on
the user's partition. A message record exists from the moment its decision is
handled: a re-delivered nudge finds it and is dropped. The user record holds
recent send times (the cap) and the user's message ids (erasure finds them).

Two indexes in the same table keep the dispatcher's work bounded by what is live:
``p:<message id>`` for every pending (held, sending or awaiting) message, the only keys a
rebuild reads after an assignment; and ``x:<expiry ms, 13 digits>:<message id>``
for every finished message, in time order, so the clock tick deletes the expired
ones from the front without scanning the rest. ``i:index`` marks a partition
whose indexes are complete (written by the first rebuild after an upgrade).
"""

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import orjson

# new: its decision read, not yet planned (a crash before its wave leaves it so: the
# batch, uncommitted, is read again and plans it);
# held: waiting for quiet hours to end, for the shopper's best hour or for a paused
# channel (``hold`` says which);
# sending: the intent to call the provider on ``sending`` is stored, its answer is not
# (in flight, or lost in a crash: reconciled from webhooks, else ``unknown``);
# awaiting: sent on WhatsApp, SMS may follow; sent: on its last channel;
# done: ended with nothing in flight (cancelled, suppressed, expired...).
Stage = Literal["new", "held", "sending", "awaiting", "sent", "done"]
Hold = Literal["quiet_hours", "send_time", "channels_paused"]
DAY_MS = 86_400_000


@dataclass(slots=True)
class MessageRecord:
    message_id: str
    kind: str
    user_key: str
    # Keys the user's consent may be stored under (user id, then anonymous id).
    subjects: list[str]
    created_ms: int
    stage: Stage = "done"
    channel: str | None = None
    tried: list[str] = field(default_factory=list)
    deadline_ms: int | None = None
    outcome: str | None = None
    forced: bool = False
    # What the templates need: discount_percent, product, token.
    content: dict[str, Any] = field(default_factory=dict)
    provider_ids: dict[str, str] = field(default_factory=dict)
    late: list[str] = field(default_factory=list)
    # Set when the message is finished: it is deleted at this time (epoch ms).
    expires_ms: int | None = None
    # Send-time checks: when the decision's trigger happened (its age), the shopper's zone
    # (quiet hours), why it is held and, for quiet hours, since and until when.
    triggered_ms: int | None = None
    timezone: str | None = None
    hold: Hold | None = None
    held_ms: int | None = None
    hold_until_ms: int | None = None
    # The channel of the provider call whose intent is stored (stage "sending").
    sending: str | None = None
    # The country calling code of the shopper's phone: the channel plan and the price.
    calling_code: str | None = None
    # The message variant chosen for it (schemas/bandit.py); None: the kind's own message.
    variant: str | None = None
    # Send-time optimisation (policy.aim), fixed when its decision is read: the arm
    # ("best_hour", "random_hour"; None: outside the experiment), the local hour it is held
    # for (None: as decided) and the instant it may go. Records stored before these
    # fields read back with the defaults (outside the experiment).
    send_arm: str | None = None
    send_hour: int | None = None
    send_at_ms: int | None = None


@dataclass(slots=True)
class UserRecord:
    sends_ms: list[int] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def sent_within_day(self, now_ms: int) -> int:
        return sum(1 for at in self.sends_ms if at > now_ms - DAY_MS)

    def note_send(self, now_ms: int) -> None:
        self.sends_ms = [at for at in self.sends_ms if at > now_ms - DAY_MS] + [now_ms]


@dataclass(slots=True)
class IndexEntry:
    """The value of an index key (the key says it all); ``at_ms``: when it was written."""

    at_ms: int = 0


Record = MessageRecord | UserRecord | IndexEntry
PENDING_PREFIX = "p:"
EXPIRY_PREFIX = "x:"
INDEX_MARK = "i:index"
_TAGS = {MessageRecord: "m", UserRecord: "u", IndexEntry: "i"}
_TYPES = {tag: kind for kind, tag in _TAGS.items()}


def message_key(message_id: str) -> str:
    return f"m:{message_id}"


def pending_key(message_id: str) -> str:
    return f"{PENDING_PREFIX}{message_id}"


def expiry_key(expires_ms: int, message_id: str) -> str:
    return f"{EXPIRY_PREFIX}{expires_ms:013d}:{message_id}"


def parse_expiry_key(key: str) -> tuple[int, str]:
    at, _, message_id = key[len(EXPIRY_PREFIX) :].partition(":")
    return int(at), message_id


def user_key_of(user_key: str) -> str:
    return f"u:{user_key}"


def record_to_bytes(record: Record) -> bytes:
    return orjson.dumps({"t": _TAGS[type(record)], **asdict(record)})


def record_from_bytes(data: bytes) -> Record:
    raw = orjson.loads(data)
    return _TYPES[raw.pop("t")](**raw)
