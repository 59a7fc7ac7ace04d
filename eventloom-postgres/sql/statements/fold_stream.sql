-- Events $3.. of the stream ($1, $2), at most $4, for folding into an aggregate: as
-- read_stream.sql without the metadata, which a fold does not read (it is most of a small
-- event's bytes). The schema version comes as NULL when it is 1 (the column is NOT NULL, so
-- NULL can mean nothing else): each value the server sends costs it a call of the type's send
-- function, a NULL none, and a fold of 10,000 events of schema 1 took a tenth less
-- (docs/benchmarks.md, "Where the long stream's time goes").
SELECT e.version, e.event_type, NULLIF(e.schema_version, 1) AS schema_version_past_1,
       e.payload::text AS payload_text,
       e.transaction_id, e.sequence
  FROM {schema}.events e
 WHERE e.category = $1 AND e.stream_id = $2 AND e.version >= $3
 ORDER BY e.version LIMIT $4
