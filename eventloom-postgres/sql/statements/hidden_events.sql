-- Every committed event that `read_all` cannot return yet, for `PgEventStore::holdback`.
SELECT count(*) FROM {schema}.events WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot())
