"""The offer a nudge's message made: what a storefront needs to honour its link.

A nudge may have several rows (a re-run, a hold released later): the latest
inserted wins, as ReplacingMergeTree keeps it. Only live decisions count, and
only emitted ones: a suppressed nudge was never sent, so no link names it.
"""

from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from schemas.runs import LIVE_RUN

OFFER_SQL = """
SELECT
    argMax(kind, inserted_at),
    argMax(user_key, inserted_at),
    argMax(user_id, inserted_at),
    argMax(status, inserted_at),
    argMax(product_id, inserted_at),
    argMax(items, inserted_at),
    argMax(discount_percent, inserted_at),
    toUnixTimestamp64Milli(argMax(decided_at, inserted_at))
FROM nudges
WHERE run_id = {run_id:String} AND nudge_id = {nudge_id:String}
GROUP BY nudge_id
"""


@dataclass(frozen=True, slots=True)
class NudgeOffer:
    message_id: str
    kind: str
    user_key: str
    user_id: str
    product_id: str
    items_json: str  # the nudge's cart as the sink wrote it: [{product_id, quantity, price}]
    discount_percent: float
    decided_at_ms: int


def nudge_offer(client: Client, message_id: str) -> NudgeOffer | None:
    """The emitted live nudge ``message_id``, or None."""
    rows = client.query(
        OFFER_SQL, parameters={"run_id": LIVE_RUN, "nudge_id": message_id}
    ).result_rows
    if not rows:
        return None
    kind, user_key, user_id, status, product_id, items, discount, decided_at_ms = rows[0]
    if status != "emit":
        return None
    return NudgeOffer(
        message_id, kind, user_key, user_id, product_id, items, float(discount), int(decided_at_ms)
    )
