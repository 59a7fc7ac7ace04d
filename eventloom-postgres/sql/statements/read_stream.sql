-- Events $3.. of the stream ($1, $2), at most $4. The stream is known: its category and id are
-- not sent back with every row. Casts get their own names: an ORDER BY on a bare column name
-- would otherwise sort by the output column (text!) rather than the table's column.
SELECT e.version, e.event_type, e.schema_version,
       e.payload::text AS payload_text, e.metadata::text AS metadata_text,
       e.transaction_id::text AS transaction_text, e.sequence
  FROM {schema}.events e
 WHERE e.category = $1 AND e.stream_id = $2 AND e.version >= $3
 ORDER BY e.version LIMIT $4
