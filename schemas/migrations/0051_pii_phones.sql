-- A user's phone per channel, AES-GCM sealed with the user's data key; only the masked
-- form is readable without it. The newest by event time wins (as consent does).
CREATE TABLE IF NOT EXISTS pii_phones
(
    user_key String,
    channel LowCardinality(String),
    phone_ref String,
    key_id String,
    ciphertext String,
    masked String,
    decided_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(decided_at)
ORDER BY (user_key, channel)
