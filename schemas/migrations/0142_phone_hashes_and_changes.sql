-- A keyed hash (HMAC of the E.164 number, key derived from pii_master_key) beside the
-- sealed phone: an inbound message (a STOP reply) is matched to its user without the
-- number being stored in clear. '' for phones stored before this migration.
ALTER TABLE pii_phones ADD COLUMN IF NOT EXISTS phone_hash String DEFAULT '';

-- A phone a public write key tried to put in place of the one a user already has: kept
-- sealed and pending (reason phone_change_needs_verification), never used for sending.
CREATE TABLE IF NOT EXISTS phone_changes
(
    user_key String,
    channel LowCardinality(String),
    purpose LowCardinality(String),
    granted UInt8,
    phone_ref String,
    key_id String,
    ciphertext String,
    masked String,
    phone_hash String,
    reason LowCardinality(String),
    decided_at DateTime64(3, 'UTC'),
    event_id String,
    recorded_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(recorded_at)
ORDER BY (user_key, channel, event_id);
