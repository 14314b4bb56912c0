-- The 24-hour customer-service window: the last time each user wrote to us on a channel
-- (any inbound message, written by the provider webhooks). WhatsApp takes a free-form
-- message only within 24 h of it; outside, only an approved template. Newest wins.
-- Erased with the user (it has a user_key column).
CREATE TABLE IF NOT EXISTS service_windows
(
    user_key String,
    channel LowCardinality(String),
    last_inbound_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(last_inbound_at)
ORDER BY (user_key, channel);
