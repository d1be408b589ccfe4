-- Stepdesk schema, version 4: expressions.
-- A wait's `if` expression (CEL, Inngest's rules) and the JSON of the part of the run's
-- triggering event it reads, taken when the wait began (so matching needs only the incoming
-- event). The same columns serve cancellation rules, stored as pauses of kind `cancel`
-- (hash `cancel:N`, the rule's index): found by event name like waits, removed with the run's
-- other pauses when it ends.
ALTER TABLE pauses ADD COLUMN if_expr TEXT;
ALTER TABLE pauses ADD COLUMN if_event TEXT;
