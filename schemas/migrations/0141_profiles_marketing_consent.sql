-- The profiles view of 0103 with consent for marketing only: consent_whatsapp,
-- consent_sms, consent_email and channels (what segments filter on and campaigns send
-- on) count a channel when the shopper agreed to offers on it, not order updates only.
CREATE OR REPLACE VIEW profiles AS
WITH
identities AS (
    SELECT anonymous_id, min(user_id) AS known_id
    FROM events
    WHERE user_id != '' AND anonymous_id != ''
    GROUP BY anonymous_id
),
resolved AS (
    SELECT
        if(e.user_id != '', e.user_id, if(i.known_id != '', i.known_id, e.user_key)) AS profile_key,
        e.event_id AS event_id, e.name AS name, e.timestamp AS timestamp,
        e.anonymous_id AS anonymous_id, e.session_id AS session_id,
        e.category AS category, e.order_id AS order_id, e.revenue AS revenue,
        e.device AS device, e.country AS country, e.timezone AS timezone
    FROM events AS e
    LEFT JOIN identities AS i ON e.anonymous_id = i.anonymous_id
),
activity AS (
    SELECT
        profile_key,
        uniqExactIf(order_id, name = 'order_placed' AND order_id != '') AS orders,
        uniqExactIf(session_id, session_id != '') AS visits,
        min(timestamp) AS first_seen,
        max(timestamp) AS last_seen,
        if(countIf(name = 'order_placed') = 0, NULL,
           maxIf(timestamp, name = 'order_placed')) AS last_order,
        argMaxIf(country, timestamp, country != '') AS country,
        argMaxIf(device, timestamp, device != '') AS device,
        argMaxIf(timezone, timestamp, timezone != '') AS timezone,
        arraySort(groupUniqArrayIf(8)(anonymous_id, anonymous_id != profile_key AND anonymous_id != '')) AS anonymous_ids
    FROM resolved
    GROUP BY profile_key
),
spend AS (
    SELECT profile_key, sum(total) AS total_spend
    FROM (
        SELECT profile_key, order_id, any(revenue) AS total
        FROM resolved
        WHERE name = 'order_placed' AND order_id != ''
        GROUP BY profile_key, order_id
    )
    GROUP BY profile_key
),
categories AS (
    -- The three categories with the most distinct events; ties broken by name.
    SELECT profile_key,
           arraySlice(arrayMap(x -> x.2, arraySort(groupArray((-hits, category)))), 1, 3) AS top_categories
    FROM (
        SELECT profile_key, category, uniqExact(event_id) AS hits
        FROM resolved
        WHERE category != ''
        GROUP BY profile_key, category
    )
    GROUP BY profile_key
),
tiers AS (
    SELECT DISTINCT user_key AS profile_key FROM vip_upgrades WHERE run_id = 'live'
),
scores AS (
    SELECT user_key AS profile_key, argMax(score, (decided_at, nudge_id)) AS intent_score
    FROM nudges
    WHERE run_id = 'live'
    GROUP BY user_key
),
subject_consent AS (
    -- The newest decision per channel under any of the shopper's keys (as the dispatcher reads it).
    -- Marketing consent only: campaigns and segments address shoppers with offers.
    SELECT if(i.known_id != '', i.known_id, c.user_key) AS profile_key, c.channel AS channel,
           argMax(c.granted, c.decided_at) AS granted
    FROM consents AS c
    LEFT JOIN identities AS i ON c.user_key = i.anonymous_id
    WHERE c.purpose = 'marketing'
    GROUP BY profile_key, channel
),
phones AS (
    SELECT DISTINCT if(i.known_id != '', i.known_id, p.user_key) AS profile_key, p.channel AS channel
    FROM pii_phones AS p
    LEFT JOIN identities AS i ON p.user_key = i.anonymous_id
),
reach AS (
    SELECT c.profile_key AS profile_key,
           maxIf(c.granted, c.channel = 'whatsapp' AND ph.channel = 'whatsapp') AS consent_whatsapp,
           maxIf(c.granted, c.channel = 'sms' AND ph.channel = 'sms') AS consent_sms,
           maxIf(c.granted, c.channel = 'email') AS consent_email
    FROM subject_consent AS c
    LEFT JOIN phones AS ph ON c.profile_key = ph.profile_key AND c.channel = ph.channel
    GROUP BY c.profile_key
)
SELECT
    a.profile_key AS user_key,
    a.anonymous_ids AS anonymous_ids,
    s.total_spend AS total_spend,
    a.orders AS orders,
    a.visits AS visits,
    a.first_seen AS first_seen,
    a.last_seen AS last_seen,
    a.last_order AS last_order,
    c.top_categories AS top_categories,
    sc.intent_score AS intent_score,
    if(t.profile_key != '', 'vip', 'standard') AS tier,
    r.consent_whatsapp AS consent_whatsapp,
    r.consent_sms AS consent_sms,
    r.consent_email AS consent_email,
    arrayFilter(
        x -> x != '',
        [if(r.consent_whatsapp = 1, 'whatsapp', ''), if(r.consent_sms = 1, 'sms', ''),
         if(r.consent_email = 1, 'email', '')]
    ) AS channels,
    a.country AS country,
    a.device AS device,
    a.timezone AS timezone
FROM activity AS a
LEFT JOIN spend AS s ON a.profile_key = s.profile_key
LEFT JOIN categories AS c ON a.profile_key = c.profile_key
LEFT JOIN tiers AS t ON a.profile_key = t.profile_key
LEFT JOIN scores AS sc ON a.profile_key = sc.profile_key
LEFT JOIN reach AS r ON a.profile_key = r.profile_key
SETTINGS join_use_nulls = 0
