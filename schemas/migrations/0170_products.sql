-- The product catalog: what messages say about a product (schemas/catalog.py).
-- Written by PUT /v1/products (a storefront's server key; updated_at = when the API
-- received the upsert) and by the sink from events whose properties name a product
-- (updated_at = the event's time). The newest row of a product wins whole: merges
-- keep the row with the highest updated_at (equal: the later insert), and readers
-- take argMax by (updated_at, inserted_at), so they agree before merges happen.
-- No personal data: products only (erasure has nothing to do here).
-- Empty strings stand for unknown fields; price is NULL when unknown.
CREATE TABLE IF NOT EXISTS products
(
    product_id String,
    name String,
    price Nullable(Float64),
    currency LowCardinality(String),
    image_url String,
    url String,
    category String,
    updated_at DateTime64(3, 'UTC'),
    source LowCardinality(String),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY product_id;
