"""A user's recent decisions, with their reasons, as the live pipeline recorded them."""

from clickhouse_connect.driver.client import Client

from api.queries.common import LIVE_RUN

# Tables are ReplacingMergeTree: FINAL on one user's few rows collapses re-deliveries.
RECENT_DECISIONS_SQL = """
SELECT * FROM (
    SELECT nudge_id AS id, kind, status, reason, decided_at, product_id, discount_percent,
           score, signals, rules_version
    FROM nudges FINAL
    WHERE run_id = {run_id:String} AND user_key = {user_key:String}
    UNION ALL
    SELECT token_id, 'vip_upgrade', 'emit', '', issued_at, '', discount_percent,
           0, '[]', rules_version
    FROM vip_upgrades FINAL
    WHERE run_id = {run_id:String} AND user_key = {user_key:String}
)
ORDER BY decided_at DESC, id
LIMIT {limit:UInt32}
"""


def recent_decisions(client: Client, user_key: str, limit: int = 20) -> list[dict]:
    result = client.query(
        RECENT_DECISIONS_SQL,
        parameters={"run_id": LIVE_RUN, "user_key": user_key, "limit": limit},
    )
    return list(result.named_results())
