-- Stepdesk schema, version 3: what the console asks of the engine.

-- The triggering event's name on the run itself, so the runs list filters by it with an
-- index instead of joining every run to its event. Both new filters' indexes hold the
-- status: the list reads them one status at a time (newest first within each), and counts
-- a status of a rare event name from the index alone.
ALTER TABLE runs ADD COLUMN event_name TEXT;
UPDATE runs SET event_name = (SELECT name FROM events WHERE internal_id = runs.event_id);
CREATE INDEX runs_by_event_name ON runs(event_name, status, id);
CREATE INDEX runs_by_trigger    ON runs(trigger_kind, status, id);
-- Function statistics read the runs of a function that ended in a time window: covering,
-- so a week of a busy function is read from the index alone.
CREATE INDEX runs_by_function_ended
    ON runs(function_id, ended_at, status, started_at, queued_at) WHERE ended_at IS NOT NULL;

-- Cron fires asked for by hand ("Run now", "Replay" of a past scheduled time). Kept apart
-- from `cron_fires`, whose key makes each scheduled time fire once for the scheduler: a
-- replay is a new run for a time that already fired, and must not take that key.
CREATE TABLE cron_manual_fires (
    run_id       TEXT PRIMARY KEY,
    function_id  TEXT NOT NULL,
    scheduled_at INTEGER NOT NULL,
    fired_at     INTEGER NOT NULL,
    kind         TEXT NOT NULL      -- run_now | replay
);
CREATE INDEX cron_manual_fires_by_function ON cron_manual_fires(function_id, fired_at);

-- "Rerun from step": the new run starts from this step (a hash) of the run it reruns, whose
-- earlier steps' results are copied into it (`steps.reused_from` names the run they come
-- from); the step may get an edited input.
ALTER TABLE runs ADD COLUMN rerun_from_step TEXT;
ALTER TABLE runs ADD COLUMN rerun_step_input TEXT;
ALTER TABLE steps ADD COLUMN reused_from TEXT;

-- Engine starts, so that what a restart cut short can be told apart from what is running.
CREATE TABLE boots (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER           -- set by a clean shutdown
);
-- When a `run` step's current attempt began executing (NULL when it is not executing).
ALTER TABLE steps ADD COLUMN running_since INTEGER;
-- Step attempts that were executing when Stepdesk stopped, found at the next start.
CREATE TABLE interruptions (
    run_id          TEXT NOT NULL,
    hash            TEXT NOT NULL,
    step_id         TEXT NOT NULL,
    started_at      INTEGER,         -- when the interrupted attempt began
    boot_id         INTEGER,         -- the boot it was executing in
    stopped_at      INTEGER,         -- that boot's clean end, if it had one
    resumed_boot_id INTEGER NOT NULL,
    resumed_at      INTEGER NOT NULL -- the start that found it
);
CREATE INDEX interruptions_by_run ON interruptions(run_id);
CREATE INDEX steps_running ON steps(status) WHERE status = 'running';

-- Search by content: runs whose event, output or error, or any step's output or error holds
-- the words. `search` is keyed by the run's rowid and keeps no copy of the text
-- (contentless). It is filled by a background indexer, not inside the writes that change
-- runs: those only note the run in `search_queue` (a trigger, one small row), and the
-- indexer tokenizes the queued runs in batches after they committed, so ingestion and
-- step execution stay fast.
CREATE VIRTUAL TABLE search USING fts5(
    body, content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TABLE search_queue (run_id TEXT PRIMARY KEY) WITHOUT ROWID;
-- (The triggers test for the row rather than INSERT OR IGNORE: a statement's own conflict
-- clause, as in the steps upsert, overrides the one of the statements its triggers run.)
CREATE TRIGGER search_run_new AFTER INSERT ON runs BEGIN
    INSERT INTO search_queue (run_id) SELECT new.id
        WHERE NOT EXISTS (SELECT 1 FROM search_queue WHERE run_id = new.id);
END;
CREATE TRIGGER search_run_status AFTER UPDATE OF status ON runs BEGIN
    INSERT INTO search_queue (run_id) SELECT new.id
        WHERE NOT EXISTS (SELECT 1 FROM search_queue WHERE run_id = new.id);
END;
CREATE TRIGGER search_step_new AFTER INSERT ON steps
    WHEN new.output IS NOT NULL OR new.error IS NOT NULL BEGIN
    INSERT INTO search_queue (run_id) SELECT new.run_id
        WHERE NOT EXISTS (SELECT 1 FROM search_queue WHERE run_id = new.run_id);
END;
CREATE TRIGGER search_step_result AFTER UPDATE OF output, error ON steps
    WHEN new.output IS NOT NULL OR new.error IS NOT NULL BEGIN
    INSERT INTO search_queue (run_id) SELECT new.run_id
        WHERE NOT EXISTS (SELECT 1 FROM search_queue WHERE run_id = new.run_id);
END;
-- Runs stored before this version are indexed in the background too.
INSERT OR IGNORE INTO search_queue (run_id) SELECT id FROM runs;
