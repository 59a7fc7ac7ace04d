-- The primary's WAL insert position: past the commit record of every transaction that has
-- committed, which a replica has replayed once its replay position reaches it.
SELECT pg_current_wal_insert_lsn()::text AS lsn
