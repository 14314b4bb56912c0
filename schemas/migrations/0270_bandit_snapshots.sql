-- The evidence a message-variant bandit chooses with (schemas/bandit.py): one row per
-- (snapshot, variant), taken periodically from the receipts by the dispatcher's leader
-- (pipeline/dispatch/variants.py). A snapshot is in force from effective_from on: the
-- dispatcher chooses a nudge's variant with the latest one of its kind whose
-- effective_from is at or before the nudge's decision time, and a replay recomputes
-- every choice from these rows. success says what counted: 'click' or 'conversion'.
-- The id is the kind and effective_from, so a re-recorded snapshot collapses.
CREATE TABLE IF NOT EXISTS bandit_snapshots
(
    snapshot_id String,
    kind LowCardinality(String),
    effective_from DateTime64(3, 'UTC'),
    variant String,
    sends UInt64,
    successes UInt64,
    success LowCardinality(String),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(effective_from)
ORDER BY (kind, snapshot_id, variant)
SETTINGS non_replicated_deduplication_window = 10000;
