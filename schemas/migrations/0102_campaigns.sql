-- Campaigns (docs/segments.md): the definition and its state, one row per change
-- (ReplacingMergeTree keeps the newest by updated_at; queries take argMax by it).
CREATE TABLE IF NOT EXISTS campaigns
(
    campaign_id String,
    name String,
    segment_id String,
    -- The segment's rule as it was when the campaign was made.
    rules String,
    template LowCardinality(String),
    product String,
    discount_percent Float64,
    -- Channels the campaign may use, in the dispatcher's order (WhatsApp, then SMS).
    channels Array(LowCardinality(String)),
    holdout_share Float64,
    send_at DateTime64(3, 'UTC'),
    -- Launches wait out these local hours (start == end: no quiet hours).
    quiet_start UInt8,
    quiet_end UInt8,
    timezone String,
    -- scheduled → launched
    status LowCardinality(String),
    created_at DateTime64(3, 'UTC'),
    created_by String,
    launched_at Nullable(DateTime64(3, 'UTC')),
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY campaign_id;

-- Who a launched campaign reached, fixed at launch: every member of the segment with
-- its group (target: messaged; holdout: consenting but held back to measure uplift;
-- no_consent: not messageable on the campaign's channels) and its message id (a hash
-- of campaign and user, so a re-launch after a crash publishes the same ids).
-- user_key makes erasure find these rows.
CREATE TABLE IF NOT EXISTS campaign_members
(
    campaign_id String,
    user_key String,
    message_id String,
    member_group LowCardinality(String),
    channels Array(LowCardinality(String)),
    added_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(added_at)
ORDER BY (campaign_id, user_key)
SETTINGS non_replicated_deduplication_window = 10000
