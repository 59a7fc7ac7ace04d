-- How far this replica is behind the primary's WAL position $1: bytes not replayed yet, how
-- long ago the last transaction it replayed committed, and whether replay is paused.
SELECT pg_is_in_recovery() AS in_recovery,
       greatest(coalesce(pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_replay_lsn()), 0), 0)::float8 AS bytes,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS seconds,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END AS paused
