-- Every accepted event (telemetry.raw minus what the engine dead-letters), one row per event_id.
--
-- Duplicates (a batch re-delivered after a crash, a client's resend) share every
-- column of the sorting key, so ReplacingMergeTree collapses them on merge; until
-- then, every metrics query is written so a duplicate cannot change its answer
-- (uniqExact(event_id), windowFunnel's max level, one total per order_id), and
-- the sink's insert_deduplication_token drops a re-sent identical batch outright
-- (non_replicated_deduplication_window keeps the tokens of the last 10,000 inserts).
--
-- Partitioned by month of event time: time-range queries prune partitions, a late
-- event lands in its own month, and retention drops whole months.
-- Sorted by (name, day, user_key, ...): funnels and timeseries filter on a few
-- event names and a time range, then group by user; the low-cardinality name first
-- and the day second let the primary index skip everything else.
CREATE TABLE IF NOT EXISTS events
(
    event_id UUID,
    name LowCardinality(String),
    timestamp DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    -- user_id when known, else anonymous_id: the key funnels count and erasure finds.
    user_key String,
    anonymous_id String,
    user_id String,
    session_id String,
    product_id String,
    category LowCardinality(String),
    order_id String,
    -- The order total (order_placed only; 0 otherwise), in `currency`.
    revenue Float64,
    currency LowCardinality(String),
    utm_source LowCardinality(String),
    utm_medium LowCardinality(String),
    utm_campaign LowCardinality(String),
    -- Set on links in our messages: ties an order to the message that led to it.
    utm_message_id String,
    url String,
    referrer String,
    device LowCardinality(String),
    country LowCardinality(String),
    -- The event's properties as JSON text (standard events' normalised by their model).
    properties String,
    -- Already truncated by the collector (IPv4 /24, IPv6 /48).
    ip String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (name, toDate(timestamp), user_key, timestamp, event_id)
SETTINGS non_replicated_deduplication_window = 10000;
