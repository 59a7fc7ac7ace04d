-- The newest version of the stream ($1, $2), 0 when it has none: one backward probe of the
-- primary key (see append_exact.sql).
SELECT coalesce((SELECT e.version FROM {schema}.events e WHERE e.category = $1 AND e.stream_id = $2
                  ORDER BY e.version DESC LIMIT 1), 0) AS version
