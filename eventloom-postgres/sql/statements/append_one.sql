-- The common case of `append_exact` (one event, no command id, a stream that exists) as a plain
-- INSERT: no CTEs, no arrays, no other table opened. No row back: the stream was not at $3.
-- The stream's newest version is one backward probe of the primary key (see append_exact.sql).
-- With a channel $8 (at most once per debounce, see `Announcements` in event_store.rs) it also
-- NOTIFYs that channel, delivered at this transaction's commit: the wake-up of other processes'
-- subscribers without a transaction of its own (pg_notify returns void, which IS NOT NULL).
INSERT INTO {schema}.events (category, stream_id, version, event_type, schema_version, payload, metadata)
SELECT $1::text, $2::text, $3::bigint + 1, $4::text, $5::int4, $6::text::json, $7::text::json
 WHERE coalesce((SELECT e.version FROM {schema}.events e WHERE e.category = $1 AND e.stream_id = $2
                  ORDER BY e.version DESC LIMIT 1), 0) = $3
   AND ($8::text IS NULL OR pg_notify($8::text, '') IS NOT NULL)
RETURNING transaction_id::text, sequence
