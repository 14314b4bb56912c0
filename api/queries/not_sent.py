"""Every non-send, by outcome, where it was decided, message kind and reason.

Outcomes: ``held`` (quiet hours), ``expired`` (stale, or held past the maximum hold),
``suppressed`` (holdout, frequency cap, consent, paused channels...) and ``cancelled``
(an order or cart change, a revoked consent). ``stage`` says who decided it:
``decision`` — the engine, by event time (nudges, nudge_holds, nudge_cancellations);
``send`` — the dispatcher, at send time (its receipts). A nudge the engine held and the
dispatcher later expired counts once in each stage, for what each did.

``still_held`` counts the engine's holds started in the range that have no final
nudge yet ("held until X" right now); each count is of distinct ids.
"""

from clickhouse_connect.driver.client import Client

from api.queries.common import TimeRange, in_range
from schemas.messages import HELD_UNTIL_PREFIX, SEND_TIME_UNTIL_PREFIX

NOT_SENT = ("held", "expired", "suppressed", "cancelled")
_IN = ", ".join(f"'{status}'" for status in NOT_SENT)  # constants, not input

_SQL = f"""
SELECT outcome, stage, kind, reason, uniqExact(id) AS messages FROM (
    SELECT 'suppressed' AS outcome, 'decision' AS stage, kind, reason, nudge_id AS id
    FROM nudges
    WHERE run_id = {{run_id:String}} AND status = 'suppressed' AND {in_range("decided_at")}
    UNION ALL
    SELECT 'held', 'decision', kind, reason, nudge_id
    FROM nudge_holds
    WHERE run_id = {{run_id:String}} AND {in_range("held_at")}
    UNION ALL
    SELECT 'cancelled', 'decision', kind, reason, nudge_id
    FROM nudge_cancellations
    WHERE run_id = {{run_id:String}} AND {in_range("at")}
    UNION ALL
    SELECT status, 'send', kind,
           multiIf(startsWith(detail, '{HELD_UNTIL_PREFIX}'), 'quiet_hours',
                   startsWith(detail, '{SEND_TIME_UNTIL_PREFIX}'), 'send_time', detail),
           message_id
    FROM receipts
    WHERE {{run_id:String}} = 'live' AND status IN ({_IN}) AND {in_range("at")}
)
GROUP BY outcome, stage, kind, reason
ORDER BY outcome, stage, kind, reason
"""

_STILL_HELD = f"""
SELECT kind, uniqExact(nudge_id)
FROM nudge_holds
WHERE run_id = {{run_id:String}} AND {in_range("held_at")}
  AND nudge_id NOT IN (
      -- A hold's final nudge is decided at or after the hold: the range start bounds it.
      SELECT nudge_id FROM nudges
      WHERE run_id = {{run_id:String}}
        AND decided_at >= fromUnixTimestamp64Milli({{start_ms:Int64}}, 'UTC')
  )
GROUP BY kind
ORDER BY kind
"""


def not_sent(client: Client, span: TimeRange, run_id: str) -> list[dict]:
    params = {**span.params(), "run_id": run_id}
    rows = [
        {"outcome": o, "stage": s, "kind": k, "reason": r, "messages": int(n)}
        for o, s, k, r, n in client.query(_SQL, parameters=params).result_rows
    ]
    rows += [
        {
            "outcome": "still_held",
            "stage": "decision",
            "kind": k,
            "reason": "quiet_hours",
            "messages": int(n),
        }
        for k, n in client.query(_STILL_HELD, parameters=params).result_rows
    ]
    return rows
