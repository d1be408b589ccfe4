-- Stepdesk schema, version 1.
-- Times are milliseconds since the Unix epoch (UTC). Ids are ULIDs, so ordering by id is
-- ordering by creation time.

CREATE TABLE events (
    internal_id TEXT PRIMARY KEY,   -- server-assigned ULID, returned by POST /e/{key}
    event_id    TEXT NOT NULL,      -- the event's own `id` (the sender's, or internal_id)
    name        TEXT NOT NULL,
    ts          INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    payload     TEXT NOT NULL       -- the full event: {name, data, user, id, ts, v}
);
CREATE INDEX events_by_name ON events(name, internal_id);

CREATE TABLE functions (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    config     TEXT NOT NULL,       -- JSON: triggers, retries, failure handler
    updated_at INTEGER NOT NULL
);

CREATE TABLE runs (
    id                TEXT PRIMARY KEY,
    function_id       TEXT NOT NULL,
    status            TEXT NOT NULL,    -- Running | Completed | Failed | Cancelled
    trigger_kind      TEXT NOT NULL,    -- event | cron | invoke | rerun
    event_id          TEXT,             -- internal_id of the triggering event
    queued_at         INTEGER NOT NULL,
    started_at        INTEGER,
    ended_at          INTEGER,
    wake_at           INTEGER,          -- when the executor should run it next; NULL = not runnable
    attempt           INTEGER NOT NULL DEFAULT 0, -- failed function-level attempts so far
    output            TEXT,
    error             TEXT,
    cron_scheduled_at INTEGER,
    late              INTEGER NOT NULL DEFAULT 0,
    parent_run_id     TEXT,             -- set on runs started by step.invoke
    parent_step       TEXT,
    rerun_of          TEXT
);
CREATE INDEX runs_by_function        ON runs(function_id, id);
CREATE INDEX runs_by_status          ON runs(status, id);
CREATE INDEX runs_by_function_status ON runs(function_id, status, id);
CREATE INDEX runs_by_event           ON runs(event_id);
CREATE INDEX runs_to_wake            ON runs(wake_at) WHERE wake_at IS NOT NULL;

-- One run per (function, event id) within 24 hours, for events that carry their own id.
CREATE TABLE run_keys (
    function_id TEXT NOT NULL,
    key         TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (function_id, key)
) WITHOUT ROWID;

-- Memoized step state. A step is identified by the SHA-1 of its id (`hash`).
CREATE TABLE steps (
    run_id     TEXT NOT NULL,
    hash       TEXT NOT NULL,
    step_id    TEXT NOT NULL,       -- the user's id, with `:N` for repeats
    kind       TEXT NOT NULL,       -- run | sleep | wait_for_event | invoke | send_event
    status     TEXT NOT NULL,       -- completed | failed | retrying | sleeping | waiting | invoking
    seq        INTEGER NOT NULL,    -- order in which the run reached the step
    attempts   INTEGER NOT NULL DEFAULT 0,
    started_at INTEGER,
    ended_at   INTEGER,
    wake_at    INTEGER,             -- sleep until / wait or invoke deadline
    input      TEXT,
    output     TEXT,
    error      TEXT,
    PRIMARY KEY (run_id, hash)
);

-- Failed attempts of steps (hash) and of the function body (hash = '$function').
CREATE TABLE step_attempts (
    run_id     TEXT NOT NULL,
    hash       TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER NOT NULL,
    error      TEXT NOT NULL,
    retry_at   INTEGER,
    PRIMARY KEY (run_id, hash, attempt)
);

-- Runs suspended on an event (wait_for_event) or on a child run (invoke).
CREATE TABLE pauses (
    run_id       TEXT NOT NULL,
    hash         TEXT NOT NULL,
    kind         TEXT NOT NULL,     -- wait | invoke
    event_name   TEXT,
    match_field  TEXT,              -- e.g. data.userId
    match_value  TEXT,              -- JSON value the incoming event's field must equal
    child_run_id TEXT,
    expires_at   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (run_id, hash)
);
CREATE INDEX pauses_by_event ON pauses(event_name) WHERE event_name IS NOT NULL;
CREATE INDEX pauses_by_child ON pauses(child_run_id) WHERE child_run_id IS NOT NULL;

-- Cron bookkeeping: each (function, scheduled time) fires at most once, ever.
CREATE TABLE cron_state (
    function_id TEXT PRIMARY KEY,
    cron        TEXT NOT NULL,
    anchor      INTEGER NOT NULL    -- no fire at or before this time is owed
);
CREATE TABLE cron_fires (
    function_id  TEXT NOT NULL,
    scheduled_at INTEGER NOT NULL,
    run_id       TEXT NOT NULL,
    fired_at     INTEGER NOT NULL,
    late         INTEGER NOT NULL,
    PRIMARY KEY (function_id, scheduled_at)
);
