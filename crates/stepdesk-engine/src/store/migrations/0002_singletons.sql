-- Functions with a singleton key run one run per key value at a time; runs triggered
-- meanwhile wait in `singleton_queue` (in arrival order) and start when the slot frees up.
CREATE TABLE singletons (
    function_id TEXT NOT NULL,
    key         TEXT NOT NULL,
    run_id      TEXT NOT NULL,      -- the run holding the slot
    PRIMARY KEY (function_id, key)
) WITHOUT ROWID;
CREATE INDEX singletons_by_run ON singletons(run_id);

CREATE TABLE singleton_queue (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    function_id TEXT NOT NULL,
    key         TEXT NOT NULL,
    run_id      TEXT NOT NULL UNIQUE
);
CREATE INDEX singleton_queue_by_key ON singleton_queue(function_id, key, seq);
