-- Whether stored transaction ids are at or past this server's next one: they came from another
-- cluster.
SELECT coalesce(max(transaction_id) >= pg_snapshot_xmax(pg_current_snapshot()), false) AS restored FROM {schema}.events
