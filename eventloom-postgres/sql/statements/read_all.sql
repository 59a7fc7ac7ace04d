-- Up to $3 events after the position ($1, $2), in the order of the log, only below the oldest
-- running transaction: every transaction that could still commit an event before the last one
-- read has ended. (Casts get their own names, as in read_stream.sql.)
SELECT e.category, e.stream_id, e.version, e.event_type, e.schema_version,
       e.payload::text AS payload_text, e.metadata::text AS metadata_text,
       e.transaction_id::text AS transaction_text, e.sequence
  FROM {schema}.events e
 WHERE (e.transaction_id, e.sequence) > ($1::text::xid8, $2)
   AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY e.transaction_id, e.sequence LIMIT $3
