-- Delivery receipts (sent, delivered, read, clicked, failed, ...), one row per receipt_id.
--
-- Sorted by message: the nudge metrics and attribution look up a message's
-- receipts (its first read/click) by message_id. receipt_id is a hash that
-- includes the message, so a duplicate shares the whole key and collapses;
-- queries use uniqExact(message_id) and min(at), which duplicates cannot change.
-- Partitioned by month of the receipt's time.
CREATE TABLE IF NOT EXISTS receipts
(
    receipt_id String,
    message_id String,
    kind LowCardinality(String),
    user_key String,
    campaign_id String,
    channel LowCardinality(String),
    status LowCardinality(String),
    at DateTime64(3, 'UTC'),
    provider_message_id String,
    detail String,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(at)
ORDER BY (message_id, receipt_id)
SETTINGS non_replicated_deduplication_window = 10000;
