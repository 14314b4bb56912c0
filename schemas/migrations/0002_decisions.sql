-- The engine's decisions: nudges (emitted and suppressed), their cancellations and
-- VIP upgrades. `run_id` is 'live' for the live workers and a replay's run id for a
-- backtest, so a replay writes beside live data and is compared with it by run_id.
-- The nudges columns are a contract shared with the replay writer: add columns
-- only with defaults.
--
-- Ids are stable hashes (a re-run makes the same id): ReplacingMergeTree keyed by
-- (run_id, id) keeps one row per decision (the latest inserted_at); queries count
-- uniqExact(id), which a not-yet-merged duplicate cannot change.
-- Partitioned by month of decision time, the range every nudge query filters on.
CREATE TABLE IF NOT EXISTS nudges
(
    run_id LowCardinality(String),
    nudge_id String,
    kind LowCardinality(String),
    user_key String,
    user_id String,
    status LowCardinality(String),
    reason LowCardinality(String),
    triggered_at DateTime64(3, 'UTC'),
    decided_at DateTime64(3, 'UTC'),
    product_id String,
    cart_id String,
    items String,
    discount_percent Float64,
    channels Array(LowCardinality(String)),
    score Float64,
    signals String,
    rules_version LowCardinality(String),
    trigger_event_id String,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(decided_at)
ORDER BY (run_id, nudge_id)
SETTINGS non_replicated_deduplication_window = 10000;

-- One row per (nudge, cause): a nudge may be withdrawn by an order and by an emptied cart.
CREATE TABLE IF NOT EXISTS nudge_cancellations
(
    run_id LowCardinality(String),
    nudge_id String,
    kind LowCardinality(String),
    user_key String,
    reason LowCardinality(String),
    at DateTime64(3, 'UTC'),
    rules_version LowCardinality(String),
    trigger_event_id String,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(at)
ORDER BY (run_id, nudge_id, trigger_event_id)
SETTINGS non_replicated_deduplication_window = 10000;

-- The claims of each VIP token, never the signed token itself (it is a bearer credential).
CREATE TABLE IF NOT EXISTS vip_upgrades
(
    run_id LowCardinality(String),
    token_id String,
    user_key String,
    user_id String,
    discount_percent Float64,
    issued_at DateTime64(3, 'UTC'),
    expires_at DateTime64(3, 'UTC'),
    order_count UInt32,
    rules_version LowCardinality(String),
    trigger_event_id String,
    channels Array(LowCardinality(String)) DEFAULT [],
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(issued_at)
ORDER BY (run_id, token_id)
SETTINGS non_replicated_deduplication_window = 10000;
