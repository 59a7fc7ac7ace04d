-- Events $3.. of the stream ($1, $2), at most $4, for folding into an aggregate: as
-- read_stream.sql without the metadata, which a fold does not read (it is most of a small
-- event's bytes).
SELECT e.version, e.event_type, e.schema_version,
       e.payload::text AS payload_text,
       e.transaction_id, e.sequence
  FROM {schema}.events e
 WHERE e.category = $1 AND e.stream_id = $2 AND e.version >= $3
 ORDER BY e.version LIMIT $4
