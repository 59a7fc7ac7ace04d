-- What `read_all` would return after the position ($1, $2), counted on `events_in_order` (no
-- payload read), and at most $3 index entries visited.
SELECT count(*) FROM (
  SELECT 1 FROM {schema}.events e
   WHERE (e.transaction_id, e.sequence) > ($1::text::xid8, $2)
     AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
   ORDER BY e.transaction_id, e.sequence LIMIT $3) c
