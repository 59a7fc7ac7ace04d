-- The primary's WAL flush position: what it can send to replicas now.
SELECT pg_current_wal_flush_lsn()::text AS lsn
