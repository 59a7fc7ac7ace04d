-- Up to $3 streams of the category $1 after the id $2, in id order, each with its newest
-- version (one backward probe of the primary key each; NULL for a stream without events).
SELECT s.stream_id,
       (SELECT e.version FROM {schema}.events e WHERE e.category = s.category AND e.stream_id = s.stream_id
         ORDER BY e.version DESC LIMIT 1) AS version
  FROM {schema}.streams s
 WHERE s.category = $1 AND s.stream_id > $2
 ORDER BY s.stream_id LIMIT $3
