-- Consent by purpose (docs/dispatch.md): 'transactional' (order updates) or 'marketing'
-- (nudges, VIP upgrades, campaigns), decided per channel and purpose. Decisions recorded
-- before this migration were asked as "order updates" and stay transactional only.
-- The purpose joins the sorting key so a marketing decision does not replace the
-- transactional one of the same channel (ReplacingMergeTree keeps one row per key).
-- ClickHouse adds a column to the sorting key only without a default: rows from before
-- read '' here, which readers take as 'transactional'.
ALTER TABLE consents
    ADD COLUMN IF NOT EXISTS purpose LowCardinality(String) AFTER channel,
    MODIFY ORDER BY (user_key, channel, purpose);
