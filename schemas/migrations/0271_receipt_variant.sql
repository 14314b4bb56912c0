-- The message variant the dispatcher chose (schemas/bandit.py), on every receipt it
-- writes for the message; '' for a kind without variants, and on webhooks' receipts.
ALTER TABLE receipts ADD COLUMN IF NOT EXISTS variant String DEFAULT '';
