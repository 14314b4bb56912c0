-- Which user ids and anonymous ids the events pair, looked up by either id.
--
-- The consent store checks a phone change against the phones of every id linked to
-- the user (api/privacy/store.py). It found those links by reading `events` by
-- `user_id` and `anonymous_id`, which are not in its key: a scan of the whole event
-- history in the collector's request path (~85 ms over 10 M events on the local
-- warehouse, growing with the history; benchmarks/RESULTS.md). Here each pair is
-- stored twice, once under each of its ids (`user_key`, the table's key), so a lookup
-- reads the few rows of the ids asked.
--
-- Filled by the materialized view on every insert into `events`, as `funnel_steps`
-- is: a pair is here once its event is in `events`, as before. Repeats (the same pair
-- in many events, re-delivered events) are folded by the merges; readers use DISTINCT.
--
-- Erasure: `user_key`, `user_id` and `anonymous_id` are erasure's id columns
-- (api/privacy/erasure.py finds tables by them), so erasing an id removes every pair
-- that holds it, under either of its ids.
CREATE TABLE IF NOT EXISTS identity_links
(
    user_key String,
    user_id String,
    anonymous_id String
)
ENGINE = ReplacingMergeTree
ORDER BY (user_key, user_id, anonymous_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS identity_links_mv TO identity_links AS
SELECT DISTINCT arrayJoin([user_id, anonymous_id]) AS user_key, user_id, anonymous_id
FROM events
WHERE user_id != '' AND anonymous_id != '';

-- The pairs of the events stored before the view existed (one-off; a pair inserted
-- twice is folded like any repeat).
INSERT INTO identity_links
SELECT DISTINCT arrayJoin([user_id, anonymous_id]) AS user_key, user_id, anonymous_id
FROM events
WHERE user_id != '' AND anonymous_id != '';
