"""Token redemptions: the first redemption of a token wins, any later one is a replay,
except a retry for the same order (a checkout retried after its order failed to reach
us must not lose its discount; another order does)."""

import uuid
from datetime import datetime

from clickhouse_connect.driver.client import Client

FIRST_REDEMPTION_SQL = """
SELECT redemption_id, redeemed_at, order_id FROM token_redemptions
WHERE token_id = {token_id:String} ORDER BY redeemed_at, redemption_id LIMIT 1
"""


def claim_redemption(
    client: Client, token_id: str, user_key: str, order_id: str
) -> datetime | None:
    """Record this attempt; the first redemption's time if this is it or a retry of it (the
    same non-empty ``order_id``), else None."""
    redemption_id = uuid.uuid4()
    client.insert(
        "token_redemptions",
        [[token_id, redemption_id, user_key, order_id]],
        column_names=["token_id", "redemption_id", "user_key", "order_id"],
    )
    first = client.query(FIRST_REDEMPTION_SQL, parameters={"token_id": token_id}).first_row
    if first[0] != redemption_id and not (order_id and first[2] == order_id):
        return None
    return first[1]
