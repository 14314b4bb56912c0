-- The shopper's zone a nudge was decided with (Nudge.timezone, from the events'
-- context.timezone; '' when unknown: the rules' default_timezone). A best-hour nudge is
-- aimed at a local hour in this zone (pipeline/dispatch/send_hours.py), so
-- `intentflow backtest send-times` needs it to recompute every aim.
ALTER TABLE nudges ADD COLUMN IF NOT EXISTS timezone LowCardinality(String) DEFAULT '';
