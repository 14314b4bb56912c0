"""The behavioural features of profiles, and whether each is in a segment: what a
lookalike model learns from (api/lookalikes.py).

One row per profile of the ``profiles`` view (migration 0100 and later): spend, orders,
visits, the engine's intent score, days since first seen / last seen / last order (at
``now_ms``, so the same call gives the same rows), the VIP tier, marketing consents,
top categories, country and device. ``member`` is the segment's own compiled rule.
Contact data never leaves the warehouse: only the user key, which the API masks.
"""

from clickhouse_connect.driver.client import Client

from schemas.segments import Group, compile_rule

# Profiles most recently seen first, up to the limit: a lookalike is for active shoppers.
_FEATURES = """
SELECT
    user_key,
    toUInt8({condition}) AS member,
    total_spend, orders, visits, intent_score,
    dateDiff('second', first_seen, fromUnixTimestamp64Milli({{now_ms:Int64}}, 'UTC')) / 86400,
    dateDiff('second', last_seen, fromUnixTimestamp64Milli({{now_ms:Int64}}, 'UTC')) / 86400,
    if(isNull(last_order), -1,
       dateDiff('second', last_order, fromUnixTimestamp64Milli({{now_ms:Int64}}, 'UTC')) / 86400),
    tier = 'vip', consent_whatsapp, consent_sms, consent_email,
    top_categories, country, device
FROM profiles
ORDER BY last_seen DESC, user_key
LIMIT {{limit:UInt32}}
"""


def profile_features(client: Client, rule: Group, now_ms: int, limit: int) -> list[tuple]:
    """(user_key, member, spend, orders, visits, intent, days since first seen, last seen,
    last order or -1, vip, consent whatsapp, sms, email, categories, country, device)."""
    compiled = compile_rule(rule, now_ms)
    result = client.query(
        _FEATURES.format(condition=compiled.sql),
        parameters={**compiled.params, "now_ms": now_ms, "limit": limit},
    )
    return [tuple(row) for row in result.result_rows]
