-- Wrapped per-user data keys (schemas/pii.py). Append-only: two first consents racing
-- each add a key; every ciphertext names the key_id that sealed it, so both stay
-- readable, and new phones use the user's earliest key. Erasure deletes them all.
CREATE TABLE IF NOT EXISTS pii_keys
(
    user_key String,
    key_id String,
    wrapped String,
    created_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (user_key, created_at, key_id)
