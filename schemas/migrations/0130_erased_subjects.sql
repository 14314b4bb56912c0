-- The erasure list: every subject (user id or anonymous id) erased, as a keyed hash
-- (HMAC-SHA-256 under the PII master key, schemas/erasure.py), never the id itself,
-- with the time of its erasure. Every reader of the raw log honours it: the engine
-- (a re-read by a new consumer group or after a reset), `intentflow export` and
-- `intentflow replay` (topic or file) drop a subject's events received at or before
-- its erasure. Events received later (a shopper who comes back) are a new history.
-- Erasure finds tables by user_key/user_id/anonymous_id columns: this one has none,
-- so an erasure never erases the list itself. A second erasure of a subject keeps
-- the later time (ReplacingMergeTree by erased_at; readers take max(erased_at)).
CREATE TABLE IF NOT EXISTS erased_subjects
(
    subject_hash String,
    erased_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(erased_at)
ORDER BY subject_hash
