-- Consent per user and channel: granted or revoked, and when (event time). Written by the
-- collector before the consent event is produced, read by the dispatcher at send time.
CREATE TABLE IF NOT EXISTS consents
(
    user_key String,
    channel LowCardinality(String),
    granted UInt8,
    decided_at DateTime64(3, 'UTC'),
    event_id String,
    recorded_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(decided_at)
ORDER BY (user_key, channel)
