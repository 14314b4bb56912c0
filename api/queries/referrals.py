"""Referral links: storing a referrer's code, and the referral funnel.

A visitor is referred by a code when an event of theirs in the range carries
``utm_source=referral``, ``utm_medium=link`` and the code as ``utm_campaign`` (the
landing of ``/v1/ref/{code}``, schemas/referrals.py); their first such event is the
visit. From there, per code:

- ``signed_up``: the visitor's anonymous id was identified as a user (an ``identify``)
  at or after the visit and before the range's end;
- ``buyers`` / ``orders`` / ``revenue``: orders at or after the visit and before the
  end, placed under the visitor's anonymous id or the user id it was identified as;
  each order once (an event re-delivered is the same order id), its total once.

A referral brings a *new* customer: a visitor identified as a user before the visit
(an existing customer), or as the referrer, is left out. Codes not in
``referral_links`` (never issued, or whose referrer was erased) attribute nothing.
"""

from dataclasses import dataclass
from datetime import datetime

from clickhouse_connect.driver.client import Client

from api.queries.common import TimeRange, in_range
from schemas.referrals import REFERRAL_COLUMNS, REFERRAL_LINKS, REFERRAL_MEDIUM, REFERRAL_SOURCE

_END = "fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')"

FUNNEL_SQL = f"""
WITH
    links AS (
        SELECT code, argMax(user_key, created_at) AS referrer
        FROM {REFERRAL_LINKS} GROUP BY code
    ),
    visits AS (
        SELECT utm_campaign AS code, anonymous_id, min(timestamp) AS visited_at
        FROM events
        WHERE utm_source = {{source:String}} AND utm_medium = {{medium:String}}
          AND anonymous_id != '' AND utm_campaign IN (SELECT code FROM links)
          AND {in_range("timestamp")}
        GROUP BY code, anonymous_id
    ),
    identified AS (
        SELECT anonymous_id, argMin(user_id, timestamp) AS identified_as,
               min(timestamp) AS identified_at
        FROM events
        WHERE name = 'identify' AND user_id != '' AND timestamp < {_END}
          AND anonymous_id IN (SELECT anonymous_id FROM visits)
        GROUP BY anonymous_id
    ),
    referred AS (
        SELECT v.code AS code, l.referrer AS referrer, v.anonymous_id AS anonymous_id,
               v.visited_at AS visited_at, i.identified_as AS user_id
        FROM visits AS v
        INNER JOIN links AS l ON l.code = v.code
        LEFT JOIN identified AS i ON i.anonymous_id = v.anonymous_id
        -- New customers only: never identified before the visit, and not the referrer.
        WHERE (i.identified_as = '' OR i.identified_at >= v.visited_at)
          AND i.identified_as != l.referrer
    ),
    orders AS (
        SELECT order_id, any(anonymous_id) AS placed_by, any(user_id) AS placed_as,
               min(timestamp) AS placed_at, any(revenue) AS total
        FROM events
        WHERE name = 'order_placed' AND order_id != '' AND timestamp < {_END}
          AND (anonymous_id IN (SELECT anonymous_id FROM referred)
               OR user_id IN (SELECT user_id FROM referred WHERE user_id != ''))
        GROUP BY order_id
    ),
    bought AS (
        SELECT code, order_id, any(visitor) AS buyer, any(total) AS order_total
        FROM (
            SELECT r.code AS code, o.order_id AS order_id, r.anonymous_id AS visitor,
                   o.total AS total
            FROM referred AS r INNER JOIN orders AS o ON o.placed_by = r.anonymous_id
            WHERE o.placed_at >= r.visited_at
            UNION ALL
            SELECT r.code, o.order_id, r.anonymous_id, o.total
            FROM referred AS r INNER JOIN orders AS o ON o.placed_as = r.user_id
            WHERE r.user_id != '' AND o.placed_at >= r.visited_at
        )
        GROUP BY code, order_id
    )
SELECT
    r.code, any(r.referrer), count(), countIf(r.user_id != ''),
    any(b.buyers), any(b.orders), any(b.revenue)
FROM referred AS r
LEFT JOIN (
    SELECT code, uniqExact(buyer) AS buyers, count() AS orders, sum(order_total) AS revenue
    FROM bought GROUP BY code
) AS b ON b.code = r.code
GROUP BY r.code
ORDER BY count() DESC, r.code
"""


@dataclass(frozen=True, slots=True)
class ReferralRow:
    code: str
    referrer: str
    visitors: int
    signed_up: int
    buyers: int
    orders: int
    revenue: float


def save_referral(client: Client, code: str, referrer: str, at: datetime, by: str) -> None:
    client.insert(REFERRAL_LINKS, [(code, referrer, at, by)], column_names=list(REFERRAL_COLUMNS))


def referral_funnel(client: Client, span: TimeRange) -> list[ReferralRow]:
    params = {**span.params(), "source": REFERRAL_SOURCE, "medium": REFERRAL_MEDIUM}
    rows = client.query(FUNNEL_SQL, parameters=params).result_rows
    return [
        ReferralRow(code, referrer, int(v), int(s), int(b), int(o), float(rev))
        for code, referrer, v, s, b, o, rev in rows
    ]
