-- Backtests (docs/replay.md): one row per replay run, and the orders its replayed
-- traffic held, so `backtest compare` can count conversions after a nudge even for
-- traffic replayed from a file that the events table never saw.
--
-- A re-run of a run id deletes that run's rows first (nudges, cancellations, VIP
-- upgrades, these) and writes them again; ReplacingMergeTree keeps one row per key
-- should a writer be interrupted and retried.
CREATE TABLE IF NOT EXISTS replay_runs
(
    run_id String,
    rules_version LowCardinality(String),
    -- 'topic' or 'file', and the topic name or the file path.
    source LowCardinality(String),
    source_name String,
    range_from Nullable(DateTime64(3, 'UTC')),
    range_to Nullable(DateTime64(3, 'UTC')),
    -- Where every partition's watermark was moved at the end (deadlines up to it fired).
    watermark_end DateTime64(3, 'UTC'),
    events UInt64,
    dead_letters UInt64,
    nudges UInt64,
    suppressed UInt64,
    cancellations UInt64,
    vip_upgrades UInt64,
    started_at DateTime64(3, 'UTC'),
    finished_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(finished_at)
ORDER BY run_id;

CREATE TABLE IF NOT EXISTS replay_orders
(
    run_id LowCardinality(String),
    order_id String,
    user_key String,
    ordered_at DateTime64(3, 'UTC'),
    total Float64
)
ENGINE = ReplacingMergeTree
ORDER BY (run_id, order_id);
