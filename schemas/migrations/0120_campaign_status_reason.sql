-- Why a campaign is in its status (docs/segments.md): '' while scheduled or launched;
-- the launcher's error for 'failed' (a campaign that cannot launch stops only itself),
-- who cancelled it for 'cancelled'. Written with the status, by INSERT … SELECT from the
-- campaign's current row (schemas.campaigns.STATUS_CHANGE_SQL).
ALTER TABLE campaigns ADD COLUMN IF NOT EXISTS status_reason String DEFAULT '';
