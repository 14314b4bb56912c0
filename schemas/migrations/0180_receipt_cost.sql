-- What a sent message cost, from the rules' rate card (dispatch.rate_card, its currency),
-- on the dispatcher's "sent" receipt; 0 on every other step. Read by
-- /v1/metrics/costs (cost per channel and per attributed conversion).
ALTER TABLE receipts ADD COLUMN IF NOT EXISTS cost Float64 DEFAULT 0;
ALTER TABLE receipts ADD COLUMN IF NOT EXISTS currency LowCardinality(String) DEFAULT '';
