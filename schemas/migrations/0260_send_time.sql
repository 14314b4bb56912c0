-- Send-time optimisation (docs/segments.md, "Send time"): a campaign sends each member
-- as created (at launch, after quiet hours) or at the member's best hour, learned from
-- their reads and clicks (pipeline/campaigns/best_hour.py).
ALTER TABLE campaigns ADD COLUMN IF NOT EXISTS send_time LowCardinality(String) DEFAULT 'as_created';

-- The member's arm, fixed at launch: '' (as created), 'best_hour', or 'random_hour' (the
-- control: a deterministic share of members sent at a uniformly random hour, so the
-- effect is measured against it); and the local hour (0-23) it aimed at, -1 for none.
ALTER TABLE campaign_members ADD COLUMN IF NOT EXISTS send_arm LowCardinality(String) DEFAULT '';
ALTER TABLE campaign_members ADD COLUMN IF NOT EXISTS send_hour Int8 DEFAULT -1;
