-- The oldest transaction that holds an id, in any database of the cluster: a running one from
-- pg_stat_activity or a prepared one from pg_prepared_xacts, whichever is older.
SELECT pid, datname::text AS database, state, backend_xid::text AS transaction,
       coalesce(extract(epoch FROM now() - xact_start), 0)::float8 AS seconds, NULL::text AS prepared,
       age(backend_xid) AS a
  FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
UNION ALL
SELECT NULL::integer, database::text, 'prepared', transaction::text,
       coalesce(extract(epoch FROM now() - prepared), 0)::float8, gid, age(transaction) AS a
  FROM pg_prepared_xacts
ORDER BY a DESC LIMIT 1
