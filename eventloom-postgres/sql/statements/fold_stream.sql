-- Events $3.. of the stream ($1, $2), at most $4, for folding into an aggregate: as
-- read_stream.sql without the metadata, which a fold does not read (it is most of a small
-- event's bytes). $3 is at least 1; $5 is the last version the page may reach ($3 + $4 - 1,
-- capped by the caller).
--
-- Each value the server sends costs it a call of its type's send function, and a NULL none; a
-- fold of 10,000 events spent a fifth of its time on the transaction id and sequence of every
-- row (docs/benchmarks.md, "Where the long stream's time goes"), and folding an aggregate needs
-- only its last event's position. So the page's first row (version $3) alone carries the
-- version and position of the page's last event, the stream's newest at or below $5, read by
-- subqueries that run once, in this statement's snapshot; the other rows carry NULLs. The
-- schema version comes as NULL when it is 1 (the column is NOT NULL: NULL means nothing else).
SELECT e.version, e.event_type, NULLIF(e.schema_version, 1) AS schema_version_past_1,
       e.payload::text AS payload_text,
       CASE WHEN e.version = $3 THEN
         (SELECT l.version FROM {schema}.events l
           WHERE l.category = $1 AND l.stream_id = $2 AND l.version <= $5 ORDER BY l.version DESC LIMIT 1)
       END AS last_version,
       CASE WHEN e.version = $3 THEN
         (SELECT l.transaction_id FROM {schema}.events l
           WHERE l.category = $1 AND l.stream_id = $2 AND l.version <= $5 ORDER BY l.version DESC LIMIT 1)
       END AS last_transaction_id,
       CASE WHEN e.version = $3 THEN
         (SELECT l.sequence FROM {schema}.events l
           WHERE l.category = $1 AND l.stream_id = $2 AND l.version <= $5 ORDER BY l.version DESC LIMIT 1)
       END AS last_sequence
  FROM {schema}.events e
 WHERE e.category = $1 AND e.stream_id = $2 AND e.version >= $3
 ORDER BY e.version LIMIT $4
