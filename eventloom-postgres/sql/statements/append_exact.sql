-- An append with an exact expected version ($3; 0 for no stream) in one statement, without a
-- lock: the events ($4..$7) go in at versions $3 + 1.. only when the stream's newest version
-- is $3 in the statement's snapshot and the command id $8 (NULL for none) is not recorded yet
-- (recorded with the request's fingerprint $9, NULL for none, the time $10 in microseconds since
-- the epoch, NULL for the server's now, and whether it is kept, $11);
-- with them the command's outcome and, for a new stream, its row in `streams`. Writers that
-- race past the check collide on the primary key of `events` (or of `commands`): the one that
-- inserts first wins, the others wait for it and fail with a unique_violation.
--
-- Why the order of events stays right without the lock: the version checked is committed, so
-- the writer that made it has its transaction id already, and this statement takes its own (at
-- its first insert) only after its snapshot: a stream's versions follow their transaction ids,
-- and (transaction id, sequence) orders a stream's events by version.
--
-- The stream's newest version is one backward probe of the primary key, whatever the planner
-- thinks of the stream's length (`max(version)` is planned as an aggregate over every index
-- entry of the stream when the statistics say streams are short: 17 ms on a stream of 100,000
-- events).
--
-- With a channel $12 (at most once per debounce, see `Announcements` in event_store.rs) it also
-- NOTIFYs that channel when the events went in, delivered at this transaction's commit, as
-- `append_one.sql` does (the HAVING clause is evaluated once, after the inserts).
--
-- One row back: the stream's version as checked, whether the command id was recorded before,
-- and, when the events went in, the transaction id and the last event's sequence.
WITH head AS (
       SELECT coalesce((SELECT e.version FROM {schema}.events e
                         WHERE e.category = $1 AND e.stream_id = $2
                         ORDER BY e.version DESC LIMIT 1), 0) AS version),
     inserted AS (
       INSERT INTO {schema}.events (category, stream_id, version, event_type, schema_version, payload, metadata)
       SELECT $1, $2, $3 + u.n, u.t, u.v, u.p::json, u.m::json
         FROM unnest($4::text[], $5::int4[], $6::text[], $7::text[]) WITH ORDINALITY AS u(t, v, p, m, n)
        WHERE (SELECT h.version FROM head h) = $3
          AND NOT EXISTS (SELECT 1 FROM {schema}.commands d WHERE d.command_id = $8)
        ORDER BY u.n
       RETURNING sequence, transaction_id::text AS tx),
     new_stream AS (
       INSERT INTO {schema}.streams (category, stream_id)
       SELECT $1, $2 WHERE $3 = 0 AND EXISTS (SELECT 1 FROM inserted)
       ON CONFLICT (category, stream_id) DO NOTHING),
     command AS (
       INSERT INTO {schema}.commands
         (command_id, category, stream_id, first_version, last_version, transaction_id, sequence, fingerprint,
          recorded_at, kept)
       SELECT $8, $1, $2, $3 + 1, $3 + count(*), pg_current_xact_id(), max(i.sequence), $9::text,
              coalesce(timestamptz 'epoch' + $10::int8 * interval '1 microsecond', now()), coalesce($11::bool, false)
         FROM inserted i
        WHERE $8 IS NOT NULL HAVING count(*) > 0)
SELECT (SELECT h.version FROM head h) AS actual,
       EXISTS (SELECT 1 FROM {schema}.commands d WHERE d.command_id = $8) AS recorded,
       max(i.tx) AS transaction_id, max(i.sequence) AS sequence
  FROM inserted i
HAVING $12::text IS NULL OR count(*) = 0 OR pg_notify($12::text, '') IS NOT NULL
