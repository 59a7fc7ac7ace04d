-- Committed events that `read_all` cannot return yet (at or past the oldest running
-- transaction), counted up to $1.
SELECT count(*) FROM (
  SELECT 1 FROM {schema}.events
   WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot()) LIMIT $1) c
