-- Operator switches: a paused channel is not used by the dispatcher (it polls this table).
CREATE TABLE IF NOT EXISTS channel_controls
(
    channel LowCardinality(String),
    paused UInt8,
    at DateTime64(3, 'UTC'),
    actor String
)
ENGINE = ReplacingMergeTree(at)
ORDER BY channel
