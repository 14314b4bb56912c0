-- Referral links (schemas/referrals.py): each code and the shopper who shares it
-- (user_key: erasing the referrer removes the row, api/privacy/erasure.py). A code is
-- derived from the referrer's id, so creating it again writes the same row: one row a
-- code after merges, and readers take argMax by created_at before them.
CREATE TABLE IF NOT EXISTS referral_links
(
    code String,
    user_key String,
    created_at DateTime64(3, 'UTC'),
    -- Who asked for it: an admin key's or a server key's hash prefix (api/privacy/audit.py).
    created_by LowCardinality(String)
)
ENGINE = ReplacingMergeTree(created_at)
ORDER BY code;
