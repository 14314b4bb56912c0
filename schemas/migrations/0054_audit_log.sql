-- Every admin action (actor = the admin key's hash prefix) and every message state change
-- (receipts, written by the dispatcher). entry_id is the receipt id or an action id, so a
-- re-written entry collapses.
CREATE TABLE IF NOT EXISTS audit_log
(
    entry_id String,
    at DateTime64(3, 'UTC'),
    actor String,
    action LowCardinality(String),
    user_key String,
    message_id String,
    channel String,
    status String,
    detail String
)
ENGINE = ReplacingMergeTree
ORDER BY entry_id
