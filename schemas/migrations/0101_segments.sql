-- Saved segments: a rule tree (schemas/segments.py) over the profiles view, as JSON.
-- A segment is immutable once stored (a changed audience is a new segment), so a
-- campaign that names one always meant the same rule.
CREATE TABLE IF NOT EXISTS segments
(
    segment_id String,
    name String,
    description String,
    rules String,
    created_at DateTime64(3, 'UTC'),
    -- The admin key's hash prefix.
    created_by String
)
ENGINE = ReplacingMergeTree(created_at)
ORDER BY segment_id
