-- Dead-lettered records: where they were, why, and how big, never their bytes.
-- The original record may hold personal data; it stays on telemetry.dlq (which
-- has a retention) for re-driving. user_key is the record's Kafka key (the
-- user key on telemetry.raw) so erasure finds these rows too.
--
-- One row per source record (topic, partition, offset): ReplacingMergeTree on that key.
-- A small table (bad input is rare): the key serves dedup, not queries.
CREATE TABLE IF NOT EXISTS dead_letters
(
    source_topic LowCardinality(String),
    partition UInt32,
    offset UInt64,
    reason LowCardinality(String),
    -- [{"loc": [...], "msg": "..."}]: field paths and rules broken, no values.
    errors String,
    user_key String,
    value_bytes UInt32,
    -- When it was dead-lettered (the dead-letter record's Kafka timestamp).
    at DateTime64(3, 'UTC'),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(at)
ORDER BY (source_topic, partition, offset)
SETTINGS non_replicated_deduplication_window = 10000;
