-- Functions with a singleton key run at most one run per key value at a time.
CREATE TABLE singletons (
    function_id TEXT NOT NULL,
    key         TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    PRIMARY KEY (function_id, key)
) WITHOUT ROWID;
