-- Stepdesk schema, version 5: functions of SDK apps.
-- The order in which a run's steps finished (1, 2, ...), which a driver of an SDK function
-- sends as the SDK's `ctx.stack`. NULL for unfinished steps, and for steps that finished
-- before this version (they count as finished first, in the order the run reached them).
ALTER TABLE steps ADD COLUMN done_seq INTEGER;
-- Where a function comes from: NULL for Stepdesk's own (compiled-in) functions, else the
-- source that synced it (an SDK app's id). `archived_at` is set when the function's source
-- no longer has it: it matches no event and no cron, and its runs stay.
ALTER TABLE functions ADD COLUMN source TEXT;
ALTER TABLE functions ADD COLUMN archived_at INTEGER;
