-- Send-time optimisation for nudges (pipeline/dispatch/send_hours.py): on every receipt
-- the dispatcher writes for a message aimed at a best hour, its arm ('best_hour', or
-- 'random_hour': the control) and the local hour (0-23) it was held for, -1 when it went
-- as decided (nothing learned, or the hour came later than max_delay_s). '' and -1 for
-- messages outside the experiment, and on webhooks' receipts.
ALTER TABLE receipts ADD COLUMN IF NOT EXISTS send_arm LowCardinality(String) DEFAULT '';
ALTER TABLE receipts ADD COLUMN IF NOT EXISTS send_hour Int8 DEFAULT -1;
