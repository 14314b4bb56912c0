-- Funnels read a per-user pre-aggregation of `events`, filled by the warehouse itself.
--
-- One row per (event name, user, month of event time) after merges: the event times
-- (epoch ms) and, aligned with them, the columns a funnel may break down by. The
-- funnel query (api/queries/funnel.py) reads the rows of its step names only, so about
-- 200k users × a few rows instead of every event. Times are kept exact: any range and
-- any window give the answer the raw windowFunnel over `events` gives.
--
-- Filled by the materialized view on every insert into `events` (not by the sink): a
-- re-delivered event appears twice in the arrays, like the duplicates `events` holds
-- until its merges, and cannot change a funnel (the same time twice for the same name
-- changes no chain). The arrays are SimpleAggregateFunction(groupArrayArray): a merge
-- concatenates every column of two rows in the same order, so they stay aligned.
--
-- Erasure: the three id columns of `events` are in the key, so the erasure's DELETE
-- (api/privacy/erasure.py finds tables by these columns) removes exactly the rows
-- made from the events it removes, including a row of another user_key that carries
-- an erased anonymous id. Same partitioning as `events` (month of event time), so an
-- insert the sink split by month stays within the partition limit here too.
CREATE TABLE IF NOT EXISTS funnel_steps
(
    name LowCardinality(String),
    user_key String,
    user_id String,
    anonymous_id String,
    month UInt32,
    times SimpleAggregateFunction(groupArrayArray, Array(Int64)),
    product_id SimpleAggregateFunction(groupArrayArray, Array(String)),
    category SimpleAggregateFunction(groupArrayArray, Array(String)),
    device SimpleAggregateFunction(groupArrayArray, Array(String)),
    country SimpleAggregateFunction(groupArrayArray, Array(String)),
    utm_source SimpleAggregateFunction(groupArrayArray, Array(String)),
    utm_medium SimpleAggregateFunction(groupArrayArray, Array(String)),
    utm_campaign SimpleAggregateFunction(groupArrayArray, Array(String)),
    currency SimpleAggregateFunction(groupArrayArray, Array(String))
)
ENGINE = AggregatingMergeTree
PARTITION BY month
ORDER BY (name, user_key, user_id, anonymous_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS funnel_steps_mv TO funnel_steps AS
SELECT
    name,
    user_key,
    user_id,
    anonymous_id,
    toYYYYMM(timestamp) AS month,
    groupArray(toUnixTimestamp64Milli(timestamp)) AS times,
    groupArray(product_id) AS product_id,
    groupArray(toString(category)) AS category,
    groupArray(toString(device)) AS device,
    groupArray(toString(country)) AS country,
    groupArray(toString(utm_source)) AS utm_source,
    groupArray(toString(utm_medium)) AS utm_medium,
    groupArray(toString(utm_campaign)) AS utm_campaign,
    groupArray(toString(currency)) AS currency
FROM events
GROUP BY name, user_key, user_id, anonymous_id, month;

-- The events stored before the view existed. Events inserted between the view's
-- creation and this statement land twice, and a re-run after a crash adds everything
-- twice: duplicates cannot change a funnel (above). One-off, so no partition limit.
INSERT INTO funnel_steps
SELECT
    name,
    user_key,
    user_id,
    anonymous_id,
    toYYYYMM(timestamp) AS month,
    groupArray(toUnixTimestamp64Milli(timestamp)) AS times,
    groupArray(product_id) AS product_id,
    groupArray(toString(category)) AS category,
    groupArray(toString(device)) AS device,
    groupArray(toString(country)) AS country,
    groupArray(toString(utm_source)) AS utm_source,
    groupArray(toString(utm_medium)) AS utm_medium,
    groupArray(toString(utm_campaign)) AS utm_campaign,
    groupArray(toString(currency)) AS currency
FROM events
GROUP BY name, user_key, user_id, anonymous_id, month
SETTINGS max_partitions_per_insert_block = 0;
