-- Whether this replica has replayed the WAL up to the primary's position $1.
SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, true) AS replayed
