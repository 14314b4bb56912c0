-- Nudges the engine holds for quiet hours (schemas.messages.NudgeHeld): one row per
-- held nudge, written when the hold starts, so "held until X" is visible (profile,
-- metrics) while the nudges table has no final row for that id yet. A separate table
-- rather than a "held" row in nudges: that ReplacingMergeTree keeps one row per
-- (run_id, nudge_id), and a held row and its final row could share inserted_at (one
-- batch) or land in different monthly partitions.
-- Partitioned by month of the hold; the id is the nudge's, so a re-run collapses.
CREATE TABLE IF NOT EXISTS nudge_holds
(
    run_id LowCardinality(String),
    nudge_id String,
    kind LowCardinality(String),
    user_key String,
    reason LowCardinality(String),
    held_at DateTime64(3, 'UTC'),
    release_at DateTime64(3, 'UTC'),
    rules_version LowCardinality(String),
    trigger_event_id String,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(held_at)
ORDER BY (run_id, nudge_id)
SETTINGS non_replicated_deduplication_window = 10000;
