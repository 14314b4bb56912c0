"""A user's recent decisions, with their reasons, as the live pipeline recorded them.

"Why / why not": each decision's engine status and reason; a nudge the engine holds
for quiet hours (a ``nudge_holds`` row, no final nudge yet) as ``held`` with
``held_until``; and what the dispatcher last did with it (``delivery``, from its
receipts: sent, delivered..., or held, expired, suppressed, cancelled with the detail).
"""

from clickhouse_connect.driver.client import Client

from schemas.runs import LIVE_RUN

# Tables are ReplacingMergeTree: FINAL on one user's few rows collapses re-deliveries.
RECENT_DECISIONS_SQL = """
SELECT d.id AS id, d.kind AS kind, d.status AS status, d.reason AS reason,
       d.decided_at AS decided_at, d.held_until AS held_until, d.product_id AS product_id,
       d.discount_percent AS discount_percent, d.score AS score, d.signals AS signals,
       d.rules_version AS rules_version, r.delivery AS delivery,
       r.delivery_detail AS delivery_detail
FROM (
    SELECT nudge_id AS id, kind, status, reason, decided_at,
           CAST(NULL, 'Nullable(DateTime64(3, \\'UTC\\'))') AS held_until, product_id,
           discount_percent, score, signals, rules_version
    FROM nudges FINAL
    WHERE run_id = {run_id:String} AND user_key = {user_key:String}
    UNION ALL
    SELECT token_id, 'vip_upgrade', 'emit', '', issued_at,
           CAST(NULL, 'Nullable(DateTime64(3, \\'UTC\\'))'), '', discount_percent,
           0, '[]', rules_version
    FROM vip_upgrades FINAL
    WHERE run_id = {run_id:String} AND user_key = {user_key:String}
    UNION ALL
    SELECT nudge_id, kind, 'held', reason, held_at, toNullable(release_at), '', 0,
           0, '[]', rules_version
    FROM nudge_holds FINAL
    WHERE run_id = {run_id:String} AND user_key = {user_key:String}
      AND nudge_id NOT IN (
          SELECT nudge_id FROM nudges
          WHERE run_id = {run_id:String} AND user_key = {user_key:String}
      )
) AS d
LEFT JOIN (
    SELECT message_id, argMax(status, at) AS delivery, argMax(detail, at) AS delivery_detail
    FROM receipts FINAL
    WHERE user_key = {user_key:String} AND {run_id:String} = 'live'
    GROUP BY message_id
) AS r ON d.id = r.message_id
ORDER BY decided_at DESC, id
LIMIT {limit:UInt32}
"""


def recent_decisions(client: Client, user_key: str, limit: int = 20) -> list[dict]:
    result = client.query(
        RECENT_DECISIONS_SQL,
        parameters={"run_id": LIVE_RUN, "user_key": user_key, "limit": limit},
    )
    return list(result.named_results())
