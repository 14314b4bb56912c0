"""Token redemptions: the first redemption of a token wins, any later one is a replay."""

import uuid
from datetime import datetime

from clickhouse_connect.driver.client import Client

FIRST_REDEMPTION_SQL = """
SELECT redemption_id, redeemed_at FROM token_redemptions
WHERE token_id = {token_id:String} ORDER BY redeemed_at, redemption_id LIMIT 1
"""


def claim_redemption(
    client: Client, token_id: str, user_key: str, order_id: str
) -> datetime | None:
    """Record this attempt; its time if it is the token's first redemption, else None."""
    redemption_id = uuid.uuid4()
    client.insert(
        "token_redemptions",
        [[token_id, redemption_id, user_key, order_id]],
        column_names=["token_id", "redemption_id", "user_key", "order_id"],
    )
    first = client.query(FIRST_REDEMPTION_SQL, parameters={"token_id": token_id}).first_row
    if first[0] != redemption_id:
        return None
    return first[1]
