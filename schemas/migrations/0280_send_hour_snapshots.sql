-- Send-time optimisation for nudges (docs/dispatch.md, "Send time: the best hour"): the
-- learned hours a dispatcher aims high-intent nudges at, as recorded snapshots
-- (pipeline/dispatch/send_hours.py), taken periodically by the dispatcher's leader from
-- the receipts. A snapshot is in force from effective_from on: a nudge is aimed with the
-- latest one whose effective_from is at or before its decision time, and a replay
-- recomputes every aim from these rows. One row per shopper with history: their best
-- local hour (0-23) under the population prior; and one row with user_key '' for the
-- population: its best hour (-1: no history at all) and its histogram of reads and
-- clicks per local hour (hours, 24 counts), the prior and the hour of shoppers without
-- history. The id is effective_from, so a re-recorded snapshot collapses. Ordered by
-- user_key first: every dispatcher reads the population rows (the heads) on each poll.
CREATE TABLE IF NOT EXISTS send_hour_snapshots
(
    snapshot_id String,
    effective_from DateTime64(3, 'UTC'),
    user_key String,
    hour Int8,
    hours Array(UInt32),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(effective_from)
ORDER BY (user_key, snapshot_id)
SETTINGS non_replicated_deduplication_window = 10000;
