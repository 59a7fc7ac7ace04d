-- The last event `read_all` can return: one backward probe of `events_in_order` from the
-- horizon down.
SELECT e.transaction_id::text AS transaction_text, e.sequence
  FROM {schema}.events e
 WHERE e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY e.transaction_id DESC, e.sequence DESC LIMIT 1
