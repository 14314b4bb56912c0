-- Opt-outs by reply (STOP, UNSUBSCRIBE, ...): one row per inbound message, for the
-- opt-out metric. A re-delivered webhook has the same provider event id and collapses.
CREATE TABLE IF NOT EXISTS opt_outs
(
    at DateTime64(3, 'UTC'),
    user_key String,
    channel LowCardinality(String),
    keyword LowCardinality(String),
    provider_event_id String
)
ENGINE = ReplacingMergeTree
ORDER BY (channel, user_key, provider_event_id);
