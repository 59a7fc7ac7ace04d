-- Write combining (`PgConfig::write_combining`): the appends of several commands, each with an
-- exact expected version, to distinct streams, as ONE statement sent in autocommit: one round
-- trip, one transaction, one commit for them all.
--
-- Per stream, numbered k = 1.. in the batch's order, sorted by (category, stream id): category
-- $1, stream id $2, expected version $3 (0 for no stream), command id $4 (NULL for none), the
-- request's fingerprint $5, the time $6 in microseconds since the epoch (NULL: the server's now),
-- whether the command id is kept $7, and its number of events $8. Per event: its stream's k $9,
-- its place in that stream's append $10 (1..), type $11, schema version $12, payload $13 and
-- metadata $14; sorted by (k, place).
--
-- Each stream is checked on its own, as `append_exact.sql` checks one: its newest version in the
-- statement's snapshot must be the one expected, and its command id must not be recorded. The
-- events of the streams that pass go in with `ON CONFLICT DO NOTHING`, so a version another
-- writer took after the snapshot refuses only its stream (a status, not a unique violation,
-- which would abort the whole transaction). A stream is all or nothing: when another writer took
-- some of its versions but not all (or recorded one of the batch's command ids) after the
-- snapshot, `combined_append_refused` (migration 13) raises and the whole statement rolls back;
-- the store answers those appends on their own and sends the others again.
--
-- Why every stream's versions stay in transaction-id order, as with one exact append: the
-- version each stream is checked against is committed and visible in the statement's snapshot,
-- so the transaction that wrote it had its id before the snapshot was taken; this statement
-- is the first and only one of its transaction and takes its id at its first insert, after the
-- snapshot, so its id is higher (a visible transaction's id is below the snapshot's xmax, every
-- id assigned later is at or above it). Versions another writer took after the snapshot are
-- never followed by this statement's versions of that stream: it inserts nothing there (every
-- version taken) or rolls back (some taken). A READ COMMITTED transaction of one statement per
-- stream would not have this: its later statements take fresh snapshots after its id, and may
-- store v+1 under an id lower than v's.
--
-- Locks: each INSERT takes its rows from a sorted SELECT, which PostgreSQL inserts in that
-- order: the events' keys in (category, stream id, version) order, then `streams` in (category,
-- stream id) order, then `commands` in command id order (the same tables in the same order as
-- `append_exact.sql`; `written` aggregates every row `inserted` returns before `command` sees
-- one, and `command` reads `new_streams` first). That the executor runs the data-modifying CTEs
-- in this order is how PostgreSQL evaluates them today, not a promise of SQL. In one process
-- the combiner never sends two statements that share a stream or a command id, so its own
-- statements take no lock the other holds; against another process's writes, the order makes
-- a deadlock unlikely, and one that happens anyway (SQLSTATE 40P01, detected by the server)
-- rolls this statement back, after which the store sends its appends again in halves.
--
-- Plans: each array is read through a scalar subquery, `unnest((SELECT $1::text[]))`, so that
-- the planner cannot count its elements. Counting them (as it does for a parameter's value in a
-- custom plan) makes every custom plan look cheaper than the generic one, so PostgreSQL planned
-- this statement anew at every execution: about 0.8 ms of planning against 0.2 ms of execution
-- for 4 appends (pg_stat_statements, 2026-12-03). Hidden, both estimate alike, and the generic
-- plan is kept after the first five.
--
-- One row back per stream, in k order: the stream's version as checked, whether its command id
-- was recorded before, how many of its events went in (all or none), the transaction id (NULL
-- when nothing went in) and the sequence of its last event.
WITH s AS MATERIALIZED (
       SELECT u.k::int4 AS k, u.c, u.i, u.x, u.cmd, u.f, u.r, u.kept, u.n
         FROM unnest((SELECT $1::text[]), (SELECT $2::text[]), (SELECT $3::int8[]), (SELECT $4::text[]),
                     (SELECT $5::text[]), (SELECT $6::int8[]), (SELECT $7::bool[]), (SELECT $8::int4[]))
              WITH ORDINALITY AS u(c, i, x, cmd, f, r, kept, n, k)),
     head AS MATERIALIZED (
       SELECT s.k,
              coalesce((SELECT e.version FROM {schema}.events e
                         WHERE e.category = s.c AND e.stream_id = s.i
                         ORDER BY e.version DESC LIMIT 1), 0) AS version,
              s.cmd IS NOT NULL AND EXISTS (SELECT 1 FROM {schema}.commands d WHERE d.command_id = s.cmd) AS recorded
         FROM s),
     ok AS MATERIALIZED (
       SELECT s.* FROM s JOIN head h ON h.k = s.k WHERE h.version = s.x AND NOT h.recorded),
     inserted AS (
       INSERT INTO {schema}.events (category, stream_id, version, event_type, schema_version, payload, metadata)
       SELECT ok.c, ok.i, ok.x + ev.n, ev.t, ev.v, ev.p::json, ev.m::json
         FROM unnest((SELECT $9::int4[]), (SELECT $10::int4[]), (SELECT $11::text[]), (SELECT $12::int4[]),
                     (SELECT $13::text[]), (SELECT $14::text[])) AS ev(k, n, t, v, p, m)
         JOIN ok ON ok.k = ev.k
        ORDER BY ok.c, ok.i, ev.n
       ON CONFLICT (category, stream_id, version) DO NOTHING
       RETURNING category, stream_id, sequence),
     written AS MATERIALIZED (
       SELECT ok.k, count(i.sequence) AS count, max(i.sequence) AS sequence
         FROM ok LEFT JOIN inserted i ON i.category = ok.c AND i.stream_id = ok.i
        GROUP BY ok.k),
     new_streams AS (
       INSERT INTO {schema}.streams (category, stream_id)
       SELECT ok.c, ok.i FROM ok JOIN written w ON w.k = ok.k
        WHERE ok.x = 0 AND w.count = ok.n
        ORDER BY ok.c, ok.i
       ON CONFLICT (category, stream_id) DO NOTHING
       RETURNING 1),
     command AS (
       INSERT INTO {schema}.commands
         (command_id, category, stream_id, first_version, last_version, transaction_id, sequence, fingerprint,
          recorded_at, kept)
       SELECT ok.cmd, ok.c, ok.i, ok.x + 1, ok.x + ok.n, pg_current_xact_id(), w.sequence, ok.f,
              coalesce(timestamptz 'epoch' + ok.r * interval '1 microsecond', now()), coalesce(ok.kept, false)
         FROM ok JOIN written w ON w.k = ok.k
        WHERE ok.cmd IS NOT NULL AND w.count = ok.n AND (SELECT count(*) FROM new_streams) >= 0
        ORDER BY ok.cmd
       ON CONFLICT (command_id) DO NOTHING
       RETURNING command_id),
     refused AS (
       SELECT array_agg(ok.k ORDER BY ok.k) FILTER (WHERE w.count > 0 AND w.count < ok.n) AS streams,
              array_agg(ok.k ORDER BY ok.k) FILTER (WHERE ok.cmd IS NOT NULL AND w.count = ok.n
                                                      AND c.command_id IS NULL) AS commands
         FROM ok JOIN written w ON w.k = ok.k LEFT JOIN command c ON c.command_id = ok.cmd)
SELECT s.k, h.version AS actual, h.recorded, coalesce(w.count, 0) AS written,
       pg_current_xact_id_if_assigned()::text AS transaction_id, w.sequence
  FROM s JOIN head h ON h.k = s.k LEFT JOIN written w ON w.k = s.k CROSS JOIN refused r
 WHERE CASE WHEN r.streams IS NULL AND r.commands IS NULL THEN true
            ELSE {schema}.combined_append_refused(r.streams, r.commands) END
 ORDER BY s.k
