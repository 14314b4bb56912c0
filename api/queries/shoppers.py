"""Shoppers for the console's table: profiles (the ``profiles`` view), newest activity
first, with the newest masked phone and the latest consent per channel and purpose.

The search is bound (a case-insensitive substring of the user key); nothing the
caller sends becomes SQL text.
"""

from dataclasses import dataclass
from datetime import datetime

from clickhouse_connect.driver.client import Client

from api.queries.segments import mask_identifier

SHOPPERS_SQL = """
SELECT p.user_key, p.intent_score, p.top_categories, p.orders, p.total_spend, p.tier,
       p.last_seen, ph.masked, c.consents, count() OVER () AS total
FROM (
    SELECT * FROM profiles
    WHERE {q:String} = '' OR positionCaseInsensitive(user_key, {q:String}) > 0
) AS p
LEFT JOIN (
    SELECT user_key, argMax(masked, decided_at) AS masked FROM pii_phones GROUP BY user_key
) AS ph ON p.user_key = ph.user_key
LEFT JOIN (
    SELECT user_key, groupArray((channel, purpose, granted)) AS consents
    FROM (
        -- '' is a decision recorded before purposes were asked: transactional (0140).
        SELECT user_key, channel, if(purpose = '', 'transactional', purpose) AS purpose,
               argMax(granted, decided_at) AS granted
        FROM consents
        GROUP BY user_key, channel, purpose
    )
    GROUP BY user_key
) AS c ON p.user_key = c.user_key
ORDER BY p.last_seen DESC, p.user_key
LIMIT {limit:UInt32} OFFSET {offset:UInt32}
SETTINGS join_use_nulls = 0
"""


@dataclass(frozen=True, slots=True)
class Shopper:
    user_key: str  # for links: the console is an operator's tool, as the profile API
    shown_as: str  # e-mail or phone used as an id, masked
    intent_score: float
    top_categories: list[str]
    orders: int
    total_spend: float
    tier: str
    last_seen: datetime
    phone: str  # masked; '' without one
    consents: dict[str, bool]  # "whatsapp/marketing" -> granted


def shoppers(client: Client, q: str, limit: int, offset: int) -> tuple[int, list[Shopper]]:
    """(shoppers matching ``q``, one page of them)."""
    result = client.query(SHOPPERS_SQL, parameters={"q": q, "limit": limit, "offset": offset})
    rows = result.result_rows
    found = []
    for key, score, cats, orders, spend, tier, last_seen, masked, consents, _ in rows:
        found.append(
            Shopper(
                user_key=key,
                shown_as=mask_identifier(key),
                intent_score=float(score or 0.0),
                top_categories=list(cats or []),
                orders=int(orders or 0),
                total_spend=float(spend or 0.0),
                tier=tier,
                last_seen=last_seen,
                phone=masked or "",
                consents={f"{ch}/{purpose}": bool(g) for ch, purpose, g in consents or []},
            )
        )
    return (int(rows[0][-1]) if rows else 0), found
