"""Names of the warehouse tables the privacy store, the admin API and the dispatcher share.

Their DDL is in ``schemas/migrations/0050``–``0054``, ``0140``–``0143`` and ``0160``;
see docs/dispatch.md.
"""

# Wrapped per-user data keys (append-only; a ciphertext names the key that sealed it).
PII_KEYS = "pii_keys"
# Encrypted phone per user and channel, newest by event time wins.
PII_PHONES = "pii_phones"
# Consent decisions per user, channel and purpose, newest by event time wins.
CONSENTS = "consents"
# Phones a public write key offered in place of a user's phone: sealed, pending, unused.
PHONE_CHANGES = "phone_changes"
# Opt-outs by reply (STOP, UNSUBSCRIBE, ...), for the metric.
OPT_OUTS = "opt_outs"
# Why a phone change was not applied.
PHONE_CHANGE_NEEDS_VERIFICATION = "phone_change_needs_verification"
# The last inbound message per user and channel: the 24-hour customer-service window.
SERVICE_WINDOWS = "service_windows"
# Channel pause switches set by operators; the dispatcher polls them.
CHANNEL_CONTROLS = "channel_controls"
CHANNEL_CONTROL_COLUMNS = ("channel", "paused", "at", "actor")
# Each channel's switch as last set: (channel, paused). The API and the dispatcher read it.
CHANNEL_PAUSES_SQL = f"SELECT channel, argMax(paused, at) FROM {CHANNEL_CONTROLS} GROUP BY channel"
# Admin actions and every message state change.
AUDIT_LOG = "audit_log"
# Written by the API (admin actions) and the dispatcher (message state changes).
AUDIT_COLUMNS = (
    "entry_id",
    "at",
    "actor",
    "action",
    "user_key",
    "message_id",
    "channel",
    "status",
    "detail",
)

PRIVACY_TABLES = (PII_KEYS, PII_PHONES, CONSENTS, PHONE_CHANGES)
