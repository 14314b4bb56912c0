"""The newest decisions and receipts, interleaved (the console's live timeline), and one
shopper's receipts."""

from typing import Any

from clickhouse_connect.driver.client import Client

from api.queries.segments import mask_identifier
from schemas.messages import RECEIPT_LIFECYCLE
from schemas.runs import LIVE_RUN
from schemas.time import as_utc, epoch_ms, iso_ms

TIMELINE_SQL = """
SELECT at, what, kind, status, detail, user_key, channel FROM (
    SELECT decided_at AS at, 'decision' AS what, kind, status, reason AS detail, user_key,
           '' AS channel
    FROM nudges
    WHERE run_id = {run_id:String} AND decided_at > now64(3) - INTERVAL {days:UInt32} DAY
    ORDER BY decided_at DESC LIMIT {limit:UInt32}
    UNION ALL
    SELECT at, 'receipt', kind, status, detail, user_key, channel
    FROM receipts
    WHERE at > now64(3) - INTERVAL {days:UInt32} DAY
    ORDER BY at DESC LIMIT {limit:UInt32}
)
ORDER BY at DESC, what
LIMIT {limit:UInt32}
"""


def timeline(client: Client, limit: int = 30, days: int = 30) -> list[dict[str, Any]]:
    result = client.query(
        TIMELINE_SQL, parameters={"run_id": LIVE_RUN, "limit": limit, "days": days}
    )
    return [
        {
            "at": iso_ms(epoch_ms(as_utc(at))),
            "what": what,
            "kind": kind,
            "status": status,
            "detail": detail,
            "user": mask_identifier(user_key),
            "user_key": user_key,
            "channel": channel,
        }
        for at, what, kind, status, detail, user_key, channel in result.result_rows
    ]


RECEIPTS_SQL = """
SELECT message_id, kind, channel, status, at, detail
FROM receipts FINAL
WHERE user_key = {user_key:String}
ORDER BY at DESC, message_id, channel
LIMIT {limit:UInt32}
"""


def receipts_of(client: Client, user_key: str, limit: int = 200) -> list[dict[str, Any]]:
    """One shopper's receipts, newest first: each message's path from sent to clicked."""
    result = client.query(RECEIPTS_SQL, parameters={"user_key": user_key, "limit": limit})
    return [
        {
            "message_id": message_id,
            "kind": kind,
            "channel": channel,
            "status": status,
            "at": iso_ms(epoch_ms(as_utc(at))),
            "detail": detail,
        }
        for message_id, kind, channel, status, at, detail in result.result_rows
    ]


def message_steps(receipts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One message's receipts (``receipts_of`` rows) in the order they happened.

    Providers' webhooks carry whole seconds, so by time alone a delivery stamped
    12:00:00 precedes our send at 12:00:00.400. Within one second, each channel's steps
    come together (channels in the order they were first tried: WhatsApp's fallback
    before the SMS it led to) and in lifecycle order (sent, accepted, delivered, read…).
    """
    first_at: dict[str | None, str] = {}
    for receipt in receipts:
        channel = receipt["channel"]
        first_at[channel] = min(first_at.get(channel, receipt["at"]), receipt["at"])
    rank = {status: i for i, status in enumerate(RECEIPT_LIFECYCLE, 1)}
    return sorted(
        receipts,
        key=lambda r: (
            r["at"][:19],  # the whole second
            first_at[r["channel"]],
            rank.get(r["status"], 0),
            r["at"],
        ),
    )
