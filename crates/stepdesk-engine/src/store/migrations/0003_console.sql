-- Stepdesk schema, version 3: what the console asks of the engine.

-- The triggering event's name on the run itself, so the runs list filters by it with an
-- index instead of joining every run to its event.
ALTER TABLE runs ADD COLUMN event_name TEXT;
UPDATE runs SET event_name = (SELECT name FROM events WHERE internal_id = runs.event_id);
CREATE INDEX runs_by_event_name ON runs(event_name, id);
CREATE INDEX runs_by_trigger    ON runs(trigger_kind, id);
-- Function statistics read the runs that ended in a time window.
CREATE INDEX runs_by_function_ended ON runs(function_id, ended_at) WHERE ended_at IS NOT NULL;
