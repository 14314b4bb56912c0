-- Redemptions of single-use VIP discount tokens (POST /v1/tokens/redeem).
--
-- Append-only: every attempt that passed verification inserts a row, then reads
-- back the earliest row of its token; only the attempt that finds its own row
-- first has redeemed the token. The warehouse's clock (now64) orders the rows,
-- so API processes need not agree on time. Keyed by user_key for erasure.
CREATE TABLE IF NOT EXISTS token_redemptions
(
    token_id String,
    redemption_id UUID,
    user_key String,
    order_id String,
    redeemed_at DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
ORDER BY (token_id, redeemed_at, redemption_id);
