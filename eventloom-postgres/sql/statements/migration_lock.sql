-- The advisory lock $1 for the rest of the transaction: migrations (and renumbering) of any
-- schema, by any process, one at a time.
SELECT pg_advisory_xact_lock($1)
